// End-to-end tests of allowRequest (io.configure{ allowRequest = fn(req,
// callback) }), engine.io's hook that lets a handshake in or refuses it
// before any session exists, with the official socket.io client and raw
// HTTP / WebSocket peers. The fixture app is fixtures/allow/ (its header
// lists what each ?mode= does).
//
// Run from spec/e2e/ with `node --test allow.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { Socket as EngineSocket } from 'engine.io-client';
import WebSocket from 'ws';

import { FIXTURES, RawConnection, assertCleanExit, delay, request, startServer } from './helpers.mjs';
import { WAIT, ask, client, connect, next, setup as setupWith, until } from './sio.mjs';

const FIXTURE = path.join(FIXTURES, 'allow');
const T = { timeout: 20_000 };

const MODES = {
  default: {},
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
};

function setup(t) {
  return setupWith(t, { root: FIXTURE });
}

/** A raw Engine.IO handshake over polling with extra query parameters. */
function handshake(srv, query = '', { headers = {}, p = '/socket.io/' } = {}) {
  return request(srv.url, `${p}?EIO=4&transport=polling${query ? `&${query}` : ''}`, { headers });
}

/** Asserts engine.io's FORBIDDEN answer: 403, JSON {"code":4,"message":message}. */
function assertForbidden(res, message) {
  assert.equal(res.status, 403, `status (body: ${res.body})`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/);
  assert.deepEqual(JSON.parse(res.body), { code: 4, message });
}

/**
 * A raw WebSocket handshake (no sid). Resolves { opened, status, body }:
 * opened when the upgrade went through, else the HTTP status and body.
 */
function wsHandshake(srv, query = '', { headers = {}, p = '/socket.io/' } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}${p}?EIO=4&transport=websocket${query ? `&${query}` : ''}`, { headers });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('no answer to the WebSocket handshake')); }, WAIT);
    ws.on('open', () => { clearTimeout(timer); ws.terminate(); resolve({ opened: true }); });
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => { clearTimeout(timer); req.destroy(); resolve({ opened: false, status: res.statusCode, body }); });
    });
    ws.on('error', () => {}); // after unexpected-response or terminate
  });
}

/** Resolves the connect_error of a socket that must not connect. */
async function refused(socket) {
  const [err] = await next(socket, 'connect_error');
  assert.equal(socket.connected, false);
  return err;
}

/** How many times allowRequest ran for tag. */
async function calls(srv, tag) {
  const res = await request(srv.url, `/calls/${tag}`);
  return JSON.parse(res.body).calls;
}

/** Waits until allowRequest has run n times for tag. */
async function waitCalls(srv, tag, n) {
  const end = Date.now() + WAIT;
  while ((await calls(srv, tag)) < n) {
    assert.ok(Date.now() < end, `allowRequest did not run ${n} times for ${tag}`);
    await delay(10);
  }
}

// ==========================================================================
describe('allowRequest lets handshakes in', () => {
  for (const [mode, opts] of Object.entries(MODES)) {
    test(`a handshake held 10 ms by a timer, then accepted: the client connects (${mode})`, T, async (t) => {
      const srv = await setup(t);
      const tag = `delay-${mode}`;
      const socket = await connect(srv, '/', { ...opts, query: { mode: 'delay', tag } });
      assert.equal(await ask(socket, 'echo', 'hi'), 'hi');
      assert.equal(await calls(srv, tag), 1);
    });
  }

  test('the polling handshake really waits for the callback', T, async (t) => {
    const srv = await setup(t);
    const start = Date.now();
    const res = await handshake(srv, 'mode=delay&ms=150');
    const took = Date.now() - start;
    assert.equal(res.status, 200);
    assert.match(res.body, /^0\{"sid":"/);
    assert.ok(took >= 140, `answered after ${took} ms, before the 150 ms timer`);
  });

  test('a WebSocket handshake held by a timer, then accepted, gets the open packet', T, async (t) => {
    const srv = await setup(t);
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&mode=delay`);
    srv.track(() => ws.terminate());
    const [data] = await next(ws, 'message');
    assert.match(data.toString(), /^0\{"sid":"[^"]+","upgrades":\[\]/);
  });

  test('the callback called twice: the first answer counts, the second is ignored', T, async (t) => {
    const srv = await setup(t);
    const res = await handshake(srv, 'mode=twice');
    assert.equal(res.status, 200);
    const socket = await connect(srv, '/', { query: { mode: 'twice' } });
    assert.equal(await ask(socket, 'echo', 'still here'), 'still here');
  });
});

// ==========================================================================
describe('allowRequest refuses handshakes', () => {
  test('refused by query: 403 with engine.io\'s JSON and the app\'s message', T, async (t) => {
    const srv = await setup(t);
    assertForbidden(await handshake(srv, 'mode=deny'), 'denied by query');
  });

  for (const [mode, opts] of Object.entries(MODES)) {
    test(`refused by query: the socket.io client gets connect_error (${mode})`, T, async (t) => {
      const srv = await setup(t);
      const socket = client(srv, '/', { ...opts, query: { mode: 'deny' } });
      await refused(socket);
    });
  }

  test('refused by header: 403 over polling, and a WebSocket is not upgraded', T, async (t) => {
    const srv = await setup(t);
    assertForbidden(await handshake(srv, '', { headers: { 'X-Deny': 'nope' } }), 'denied by header: nope');
    const ws = await wsHandshake(srv, '', { headers: { 'X-Deny': 'nope' } });
    assert.equal(ws.opened, false);
    assert.equal(ws.status, 403);
    assert.deepEqual(JSON.parse(ws.body), { code: 4, message: 'denied by header: nope' });
  });

  test('refused by header: the socket.io client (extraHeaders) gets connect_error', T, async (t) => {
    const srv = await setup(t);
    await refused(client(srv, '/', { transports: ['polling'], extraHeaders: { 'x-deny': 'client' } }));
    await refused(client(srv, '/', { transports: ['websocket'], extraHeaders: { 'x-deny': 'client' } }));
    await connect(srv, '/', { transports: ['polling'] }); // without the header: in
  });

  test('a message with quotes, a backslash and a newline is escaped into valid JSON', T, async (t) => {
    const srv = await setup(t);
    assertForbidden(await handshake(srv, 'mode=quote'), 'a "quoted" \\ message\nover two lines');
  });

  test('the 403 carries the CORS headers for an allowed Origin, as other answers do', T, async (t) => {
    const srv = await setup(t);
    const res = await handshake(srv, 'mode=deny', { headers: { Origin: 'http://allowed.example' } });
    assertForbidden(res, 'denied by query');
    assert.equal(res.headers['access-control-allow-origin'], 'http://allowed.example');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
  });

  test('an error in allowRequest: logged with its traceback, 403 "Forbidden", the server carries on', T, async (t) => {
    const srv = await setup(t);
    assertForbidden(await handshake(srv, 'mode=throw'), 'Forbidden');
    await until(() => /io allowRequest: scripts\/app\.lua:\d+: allowRequest raised on purpose/.test(srv.stderr()), 'the error in stderr');
    assert.match(srv.stderr(), /stack traceback:/);
    assert.equal((await wsHandshake(srv, 'mode=throw')).status, 403);
    await refused(client(srv, '/', { query: { mode: 'throw' } }));
    const socket = await connect(srv, '/');
    assert.equal(await ask(socket, 'echo', 'alive'), 'alive');
  });

  test('io.configure refuses an allowRequest that is not a function', T, async (t) => {
    const srv = await setup(t);
    const res = JSON.parse((await request(srv.url, '/configure-error')).body);
    assert.equal(res.ok, false);
    assert.match(res.err, /allowRequest must be a function/);
  });
});

// ==========================================================================
describe('what allowRequest sees, and what it does not gate', () => {
  for (const [mode, opts] of Object.entries(MODES)) {
    test(`the request: method, url, headers, query, address (${mode})`, T, async (t) => {
      const srv = await setup(t);
      const tag = `see-${mode}`;
      const socket = await connect(srv, '/', {
        ...opts,
        query: { tag, foo: 'bar baz', 'k&y': 'v=1' },
        extraHeaders: { 'X-Custom': 'Hello' },
      });
      const seen = await ask(socket, 'seen', tag);
      assert.equal(seen.method, 'GET');
      assert.match(seen.url, /^\/socket\.io\/\?/);
      assert.match(seen.url, new RegExp(`transport=${mode === 'websocket' ? 'websocket' : 'polling'}`));
      assert.equal(seen.headers['x-custom'], 'Hello', 'header names are lower-case');
      assert.equal(seen.query.foo, 'bar baz', 'the query is decoded');
      assert.equal(seen.query['k&y'], 'v=1');
      assert.equal(seen.query.EIO, '4');
      assert.equal(seen.query.sid, undefined, 'a handshake has no sid');
      assert.deepEqual(seen._query, seen.query);
      assert.equal(seen.querystring, seen.url.slice(seen.url.indexOf('?') + 1));
      assert.equal(seen.address, '127.0.0.1');
      // The route sees the same record.
      assert.deepEqual(JSON.parse((await request(srv.url, `/seen/${tag}`)).body), seen);
    });
  }

  test('requests with a sid are not asked: a polling session keeps working when allowRequest would refuse', T, async (t) => {
    const srv = await setup(t);
    const tag = 'once-polling';
    const socket = await connect(srv, '/', { transports: ['polling'], query: { mode: 'once', tag } });
    for (let i = 0; i < 5; i++) assert.equal(await ask(socket, 'echo', i), i);
    await delay(50);
    assert.equal(await ask(socket, 'echo', 'later'), 'later');
    assert.equal(await calls(srv, tag), 1, 'only the handshake was asked');
    // A new handshake with the same tag is refused: the gate is closed now.
    assertForbidden(await handshake(srv, `mode=once&tag=${tag}`), 'only once');
    assert.equal(await ask(socket, 'echo', 'after'), 'after');
  });

  test('the upgrade to websocket (it has a sid) is not asked either', T, async (t) => {
    const srv = await setup(t);
    const tag = 'once-upgrade';
    const socket = await connect(srv, '/', { query: { mode: 'once', tag } });
    await until(() => socket.io.engine?.transport?.name === 'websocket', 'the upgrade to websocket');
    assert.equal(await ask(socket, 'echo', 'upgraded'), 'upgraded');
    assert.equal(await calls(srv, tag), 1);
  });
});

// ==========================================================================
describe('handshakes left waiting', () => {
  test('a client that leaves while its handshake waits: the late answer is harmless', T, async (t) => {
    const srv = await setup(t);
    const conns = [];
    for (const transport of ['polling', 'websocket']) {
      const conn = await RawConnection.open(srv.port);
      const upgrade = transport === 'websocket'
        ? 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'
        : '';
      await conn.write(`GET /socket.io/?EIO=4&transport=${transport}&mode=delay&ms=150&tag=gone HTTP/1.1\r\nHost: x\r\n${upgrade}\r\n`);
      conns.push(conn);
    }
    await waitCalls(srv, 'gone', 2); // both are waiting for their timer
    // A reset, not a FIN: the server keeps a half-closed connection until it
    // has answered, but a reset frees the connection while the handshake
    // still waits.
    for (const conn of conns) {
      assert.equal(conn.data, '', 'no answer yet');
      conn.socket.resetAndDestroy();
    }
    await delay(300); // the timers fire after the clients left
    const socket = await connect(srv, '/');
    assert.equal(await ask(socket, 'echo', 'fine'), 'fine');
  });

  test('at shutdown, handshakes never answered get 503 and the server exits cleanly', T, async (t) => {
    const srv = await startServer({ root: FIXTURE });
    t.after(() => srv.proc.kill('SIGKILL'));
    // keep-alive, as browsers poll: the 503 must not be lost when the
    // connection is closed for the shutdown.
    const polling = handshake(srv, 'mode=never&tag=never', { headers: { Connection: 'keep-alive' } });
    const ws = wsHandshake(srv, 'mode=never&tag=never');
    await waitCalls(srv, 'never', 2);
    await delay(50); // still unanswered
    const code = srv.stop();
    const res = await polling;
    assert.equal(res.status, 503);
    const w = await ws;
    assert.equal(w.opened, false);
    assert.equal(w.status, 503);
    assertCleanExit(await code, srv.stderr());
  });
});

// ==========================================================================
describe('moonwire.engine takes allowRequest too', () => {
  test('refused: 403 with the message; accepted after a timer: engine.io-client opens and echoes', T, async (t) => {
    const srv = await setup(t);
    assertForbidden(await handshake(srv, 'deny=1', { p: '/engine.io/' }), 'engine says no');
    const sock = new EngineSocket(srv.url, { path: '/engine.io/' });
    srv.track(() => sock.close());
    await next(sock, 'open');
    const echoed = next(sock, 'message');
    sock.send('ping me');
    assert.deepEqual(await echoed, ['ping me']);
  });
});
