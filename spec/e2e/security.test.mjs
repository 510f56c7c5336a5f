// What a page of another site, or a client on another machine, cannot do:
//
// - forms of the example app carry a CSRF token; a browser request that
//   changes something without it gets 403 and changes nothing;
// - the Origin policy covers both transports: a configured list refuses
//   polling handshakes from other origins too, and in production, without
//   a list, only pages of this server may connect;
// - dev mode's tracebacks, page helper and live-reload socket are for this
//   machine's own browser, and the live socket checks Origin, has a
//   heartbeat and cannot be filled up.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import WebSocket from 'ws';

import { FcgiConnection, fcgiRequest, serveFastcgi } from './fcgi.mjs';
import { delay, makeAppRoot, request, serve } from './helpers.mjs';

const T = { timeout: 30_000 };
const EVIL = 'http://evil.example';

function formBody(fields) { return new URLSearchParams(fields).toString(); }

async function petCount(srv) {
  return JSON.parse((await request(srv.url, '/api/pets')).body).length;
}

/** GET /pets/new like a browser: the form's token and the cookie it belongs to. */
async function formToken(srv) {
  const page = await request(srv.url, '/pets/new');
  const token = /name="_csrf" value="([0-9a-f]+)"/.exec(page.body)?.[1];
  const cookie = (page.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
  assert.ok(token, 'the form carries a token');
  assert.match(cookie, /^_csrf=[0-9a-f]{32}$/);
  return { token, cookie };
}

describe('CSRF: the example app\'s forms', () => {
  test('a form another site posts (no token) gets 403 and creates nothing', T, async (t) => {
    const srv = await serve(t);
    const before = await petCount(srv);
    const res = await request(srv.url, '/pets', {
      method: 'POST', body: formBody({ name: 'Intruder', species: 'cat' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: EVIL, 'sec-fetch-site': 'cross-site' },
    });
    assert.equal(res.status, 403);
    assert.match(res.body, /invalid CSRF token/);
    assert.equal(await petCount(srv), before);
  });

  test('a cross-site delete through _method=DELETE gets 403 and deletes nothing', T, async (t) => {
    const srv = await serve(t);
    const created = await request(srv.url, '/api/pets', {
      method: 'POST', body: JSON.stringify({ name: 'Keeper', species: 'dog' }), headers: { 'content-type': 'application/json' },
    });
    const { id } = JSON.parse(created.body);
    const res = await request(srv.url, `/pets/${id}`, {
      method: 'POST', body: formBody({ _method: 'DELETE' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: EVIL },
    });
    assert.equal(res.status, 403);
    assert.equal((await request(srv.url, `/api/pets/${id}`)).status, 200);
  });

  test('a token that does not match the cookie, or a cookie without a token, gets 403', T, async (t) => {
    const srv = await serve(t);
    const { token, cookie } = await formToken(srv);
    const post = (fields, headers) => request(srv.url, '/pets', {
      method: 'POST', body: formBody(fields),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: srv.url, ...headers },
    });
    assert.equal((await post({ name: 'A', species: 'cat' }, { cookie })).status, 403);
    assert.equal((await post({ name: 'A', species: 'cat', _csrf: token }, { cookie: '_csrf=00000000000000000000000000000000' })).status, 403);
    assert.equal((await post({ name: 'A', species: 'cat', _csrf: `${token}x` }, { cookie })).status, 403);
  });

  test('the form\'s own token goes through, as the field or the X-CSRF-Token header', T, async (t) => {
    const srv = await serve(t);
    const { token, cookie } = await formToken(srv);
    const res = await request(srv.url, '/pets', {
      method: 'POST', body: formBody({ name: 'Tokened', species: 'cat', _csrf: token }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: srv.url, cookie },
    });
    assert.equal(res.status, 303);
    const byHeader = await request(srv.url, '/pets', {
      method: 'POST', body: formBody({ name: 'Headed', species: 'dog' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: srv.url, cookie, 'x-csrf-token': token },
    });
    assert.equal(byHeader.status, 303);
  });

  test('a request that no browser sent (no Origin, no Sec-Fetch-Site) is not checked', T, async (t) => {
    const srv = await serve(t);
    const res = await request(srv.url, '/pets', {
      method: 'POST', body: formBody({ name: 'Curl', species: 'cat' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(res.status, 303);
  });
});

describe('Origin policy', () => {
  const handshake = (srv, origin) => request(srv.url, '/socket.io/?EIO=4&transport=polling', { headers: origin ? { origin } : {} });
  const upgrade = (srv, origin) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket`, origin ? { origin } : {});
    ws.once('open', () => { ws.terminate(); resolve(101); });
    ws.once('unexpected-response', (req, res) => { resolve(res.statusCode); req.destroy(); });
    ws.once('error', () => {});
  });

  test('production, no list: only pages of this server (and non-browser clients) connect, over both transports', T, async (t) => {
    const srv = await serve(t, { args: ['--production'], env: { MOONWIRE_SECRET: 'a secret for the example app' } });
    const self = `http://127.0.0.1:${srv.port}`;
    assert.equal((await handshake(srv, EVIL)).status, 403);
    assert.equal(await upgrade(srv, EVIL), 403);
    assert.equal((await handshake(srv, self)).status, 200);
    assert.equal(await upgrade(srv, self), 101);
    assert.equal((await handshake(srv)).status, 200);
    assert.equal(await upgrade(srv), 101);
  });

  test('a configured list refuses polling handshakes from other origins too', T, async (t) => {
    const srv = await serve(t, { args: ['--cors-origin', 'http://good.example'] });
    const bad = await handshake(srv, EVIL);
    assert.equal(bad.status, 403);
    assert.deepEqual(JSON.parse(bad.body), { code: 4, message: 'Forbidden' });
    const good = await handshake(srv, 'http://good.example');
    assert.equal(good.status, 200);
    assert.equal(good.headers['access-control-allow-origin'], 'http://good.example');
    assert.equal(await upgrade(srv, EVIL), 403);
  });

  test('dev mode without a list, or --cors-origin "*", lets any origin in', T, async (t) => {
    const dev = await serve(t);
    assert.equal((await handshake(dev, EVIL)).status, 200);
    const star = await serve(t, { args: ['--production', '--cors-origin', '*'], env: { MOONWIRE_SECRET: 'a secret for the example app' } });
    assert.equal((await handshake(star, EVIL)).status, 200);
    assert.equal(await upgrade(star, EVIL), 101);
  });
});

describe('dev mode is for this machine', () => {
  async function fcgiGet(srv, path, remote) {
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    await conn.write(fcgiRequest(1, { REQUEST_METHOD: 'GET', REQUEST_URI: path, SERVER_PROTOCOL: 'HTTP/1.1', REMOTE_ADDR: remote }));
    const res = await conn.response(1);
    conn.destroy();
    return res.cgi;
  }

  test('a traceback is shown to a client on this machine only', T, async (t) => {
    const srv = await serveFastcgi(t, { root: makeAppRoot('errors') });
    const far = await fcgiGet(srv, '/boom', '203.0.113.5');
    assert.equal(far.status, 500);
    assert.doesNotMatch(far.body, /stack traceback|scripts\/app\.lua/);
    const near = await fcgiGet(srv, '/boom', '127.0.0.1');
    assert.equal(near.status, 500);
    assert.match(near.body, /stack traceback/);
    const page = await fcgiGet(srv, '/__moonwire/dev.js', '203.0.113.5');
    assert.equal(page.status, 404);
  });

  const live = (srv, origin) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/__moonwire/live`, { origin });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => { resolve(res.statusCode); req.destroy(); });
    ws.once('error', () => {});
  });

  test('the live-reload socket takes this app\'s pages only', T, async (t) => {
    const srv = await serve(t);
    assert.equal(await live(srv, EVIL), 403);
    const ws = await live(srv, srv.url);
    assert.ok(ws instanceof WebSocket);
    ws.terminate();
  });

  test('the live-reload socket cannot be filled up: a new page takes the slot of the one heard from least', T, async (t) => {
    const srv = await serve(t);
    const first = await live(srv, srv.url);
    const closed = new Promise((resolve) => first.once('close', resolve));
    const held = [];
    for (let i = 0; i < 64; i++) held.push(await live(srv, srv.url));
    assert.ok(held.every((w) => w instanceof WebSocket), 'every page got in');
    await closed;
    held.forEach((w) => w.terminate());
  });

  test('a live-reload client that stops answering the heartbeat is closed; one that answers stays', T, async (t) => {
    const srv = await serve(t, { args: ['--ping-interval', '200'] });
    const silent = await live(srv, srv.url);
    const answering = await live(srv, srv.url);
    answering.on('message', (m) => { if (JSON.parse(m).type === 'ping') answering.send('pong'); });
    const closed = new Promise((resolve) => silent.once('close', resolve));
    await closed;
    await delay(300);
    assert.equal(answering.readyState, WebSocket.OPEN);
    answering.terminate();
  });
});
