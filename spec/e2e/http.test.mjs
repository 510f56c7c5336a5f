// End-to-end tests: HTTP behaviour as a browser or any other client sees it.
// Each test starts its own moonwire (on a free port, with a fresh database)
// and stops it when it ends. Run from spec/e2e/ with `node --test`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import {
  REPO_ROOT,
  FIXTURES,
  RawConnection,
  delay,
  makeAppRoot,
  makeTempDir,
  parseResponse,
  parseResponses,
  postForm,
  rawRequest,
  request,
  runBinary,
  serve,
  startServer,
} from './helpers.mjs';

const T = { timeout: 20_000 };
const STYLE_CSS = fs.readFileSync(path.join(REPO_ROOT, 'public/style.css'));

/** A GET request line and headers; extra is a string of more header lines. */
function get(target, extra = '') {
  return `GET ${target} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;
}

/** The values of a list-valued header (such as Allow), upper-cased. */
function tokens(value) {
  return (value ?? '').split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
}

/**
 * Sends a POST whose body is `size` bytes, in pieces, and stops sending as
 * soon as the server answers (a server may refuse a body before it is all
 * there). Resolves the parsed response.
 */
async function postLargeBody(port, { size, chunked = false, target = '/pets', bodyOf = (n) => 'a'.repeat(n) }) {
  const conn = await RawConnection.open(port);
  try {
    const framing = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`;
    await conn.write(`POST ${target} HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\n${framing}\r\nConnection: close\r\n\r\n`);
    const answered = () => conn.data.length > 0 || conn.closed;
    const body = bodyOf(size);
    const piece = 16 * 1024;
    for (let sent = 0; sent < size && !answered(); sent += piece) {
      const part = body.slice(sent, sent + piece);
      const bytes = chunked ? `${part.length.toString(16)}\r\n${part}\r\n` : part;
      // A server that stopped reading leaves the write pending: stop waiting
      // for it once the answer is there.
      await Promise.race([conn.write(bytes).catch(() => {}), conn.waitFor(answered, 10_000)]);
    }
    if (chunked && !answered()) await conn.write('0\r\n\r\n').catch(() => {});
    return await conn.readResponse({ timeout: 10_000 });
  } finally {
    conn.destroy();
  }
}

/** A valid pet form padded with an extra field to exactly n bytes. */
function paddedForm(n) {
  const start = 'name=Padded&species=cat&pad=';
  return start + 'p'.repeat(n - start.length);
}

// ==========================================================================
describe('pages and static files', () => {
  test('GET / answers 200 with the chat page inside the layout', T, async (t) => {
    const srv = await serve(t);
    const res = await request(srv.url, '/');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html/);
    assert.ok(res.headers.date, 'a Date header is expected');
    assert.match(res.body, /<!doctype html>/i);
    assert.match(res.body, /<meta charset="utf-8">/i);
    assert.match(res.body, /<title>[^<]*Chat[^<]*<\/title>/);
    assert.match(res.body, /<link rel="stylesheet" href="\/style.css">/);
    assert.match(res.body, /<a href="\/pets">Pets<\/a>/);
    assert.match(res.body, /<ul id="messages"/);
    assert.match(res.body, /<form id="form"/);
    assert.match(res.body, /<input id="input" autocomplete="off"/);
    assert.match(res.body, /<button>Send<\/button>/);
  });

  test('GET /style.css answers 200 text/css with the file, an ETag and Last-Modified', T, async (t) => {
    const srv = await serve(t);
    const res = await request(srv.url, '/style.css');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/css/);
    assert.ok(res.headers.etag, 'an ETag header is expected');
    assert.ok(res.headers['last-modified'], 'a Last-Modified header is expected');
    assert.ok(!Number.isNaN(Date.parse(res.headers['last-modified'])), 'Last-Modified should be an HTTP date');
    assert.equal(Number(res.headers['content-length']), STYLE_CSS.length);
    assert.ok(res.raw.equals(STYLE_CSS), 'the body should be the file as it is on disk');
  });

  test('GET /favicon.svg answers 200 image/svg+xml', T, async (t) => {
    const srv = await serve(t);
    const res = await request(srv.url, '/favicon.svg');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^image\/svg\+xml/);
    assert.match(res.body, /<svg/);
  });

  test('If-None-Match with the current ETag answers 304 without a body', T, async (t) => {
    const srv = await serve(t);
    const first = await request(srv.url, '/style.css');
    const etag = first.headers.etag;
    assert.ok(etag);

    const { data } = await rawRequest(srv.port, get('/style.css', `If-None-Match: ${etag}\r\nConnection: close\r\n`));
    const res = parseResponse(data, { closed: true });
    assert.equal(res.status, 304);
    assert.equal(data.slice(data.indexOf('\r\n\r\n') + 4), '', 'a 304 carries no body');
    assert.equal(res.headers.etag, etag);

    // The header is a list: one matching entry is enough.
    const listed = await request(srv.url, '/style.css', { headers: { 'if-none-match': `"nope", ${etag}` } });
    assert.equal(listed.status, 304);

    const other = await request(srv.url, '/style.css', { headers: { 'if-none-match': '"some-other-version"' } });
    assert.equal(other.status, 200);
    assert.ok(other.raw.equals(STYLE_CSS));
  });

  test('If-Modified-Since answers 304 when the file has not changed since', T, async (t) => {
    const srv = await serve(t);
    const first = await request(srv.url, '/style.css');
    const lastModified = first.headers['last-modified'];

    const { data } = await rawRequest(srv.port, get('/style.css', `If-Modified-Since: ${lastModified}\r\nConnection: close\r\n`));
    const res = parseResponse(data, { closed: true });
    assert.equal(res.status, 304);
    assert.equal(data.slice(data.indexOf('\r\n\r\n') + 4), '', 'a 304 carries no body');

    const older = await request(srv.url, '/style.css', { headers: { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:01 GMT' } });
    assert.equal(older.status, 200);
    assert.ok(older.raw.equals(STYLE_CSS));
  });

  test('HEAD of a static file has Content-Length and no body', T, async (t) => {
    const srv = await serve(t);
    const { data, closed } = await rawRequest(srv.port, `HEAD /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`);
    assert.ok(closed);
    const res = parseResponse(data, { head: true });
    assert.equal(res.status, 200);
    assert.equal(Number(res.headers['content-length']), STYLE_CSS.length);
    assert.equal(data.slice(data.indexOf('\r\n\r\n') + 4), '', 'HEAD answers carry no body');
  });

  test('HEAD of a page has the Content-Length of its GET and no body', T, async (t) => {
    const srv = await serve(t);
    const full = await request(srv.url, '/');
    const { data } = await rawRequest(srv.port, `HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`);
    const res = parseResponse(data, { head: true });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html/);
    assert.equal(Number(res.headers['content-length']), full.raw.length);
    assert.equal(data.slice(data.indexOf('\r\n\r\n') + 4), '', 'HEAD answers carry no body');
  });
});

// ==========================================================================
/** How many files the server process has open. */
function openFiles(srv) {
  return fs.readdirSync(`/proc/${srv.proc.pid}/fd`).length;
}

describe('connections', () => {
  test('moonwire raises its open-file limit to the hard limit at start', T, async (t) => {
    const srv = await serve(t, { prefix: ['prlimit', '--nofile=256:4096', '--'] });
    const limits = fs.readFileSync(`/proc/${srv.proc.pid}/limits`, 'utf8');
    assert.match(limits, /^Max open files\s+4096\s+4096\s/m);
  });

  test('near the open-file limit the server says so, and goes on once files are free', T, async (t) => {
    const srv = await serve(t, { prefix: ['prlimit', '--nofile=48:48', '--'] });
    const conns = [];
    t.after(() => { for (const c of conns) c.destroy(); });
    for (let i = 0; i < 60; i++) {
      try {
        conns.push(await RawConnection.open(srv.port));
      } catch { /* refused: expected past the limit */ }
    }
    const end = Date.now() + 5_000;
    while (!/near the open-file limit/.test(srv.stderr()) && Date.now() < end) await delay(20);
    assert.match(srv.stderr(), /\d+ connections open, near the open-file limit \(48\): new ones will be refused; raise it with ulimit -n/);
    assert.equal(srv.stderr().match(/near the open-file limit/g).length, 1, 'said once, not per connection');
    // At the limit, the connections it holds are still served (by a route:
    // a static file would need one more descriptor).
    const held = conns[0];
    await held.write(get('/api/pets'));
    assert.ok(await held.waitFor(() => /^HTTP\/1\.1 200 /.test(held.data)), `a held connection is answered: ${JSON.stringify(held.data.slice(0, 80))}`);
    for (const c of conns.splice(0)) c.destroy();
    await delay(100);
    assert.equal((await request(srv.url, '/style.css')).status, 200);
  });

  test('a connection whose client has closed its side is released, not kept lingering', T, async (t) => {
    const srv = await serve(t);
    const before = openFiles(srv);
    const conns = [];
    for (let i = 0; i < 6; i++) {
      const conn = await RawConnection.open(srv.port);
      if (i % 2) {
        await conn.write(get('/style.css')); // HTTP keep-alive
      } else {
        await conn.write(get('/socket.io/?EIO=4&transport=websocket', // a WebSocket
          'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'));
      }
      assert.equal((await conn.readResponse({ head: true })).status, i % 2 ? 200 : 101);
      conns.push(conn);
    }
    assert.equal(openFiles(srv), before + 6);
    for (const conn of conns) conn.socket.end(); // our FIN; the server answers with its own
    // The server's files go once both sides have closed. Before, each stayed
    // open for the 2-second linger meant for clients that never close.
    const end = Date.now() + 1500;
    while (openFiles(srv) > before && Date.now() < end) await delay(20);
    assert.equal(openFiles(srv), before, 'all six connections released');
  });

  test('keep-alive: two requests one after the other on one socket', T, async (t) => {
    const srv = await serve(t);
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());

    await conn.write(get('/style.css'));
    const first = await conn.readResponse();
    assert.equal(first.status, 200);
    assert.match(first.headers['content-type'], /^text\/css/);

    await conn.write(get('/'));
    const second = await conn.readResponse();
    assert.equal(second.status, 200);
    assert.match(second.body, /id="messages"/);
  });

  test('pipelining: requests written at once get their answers in order', T, async (t) => {
    const srv = await serve(t);
    const form = 'name=Piper&species=dog';
    const bytes =
      get('/') +
      `POST /pets HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\n\r\n${form}` +
      get('/style.css', 'Connection: close\r\n');
    const { data, closed } = await rawRequest(srv.port, bytes);
    assert.ok(closed, 'the server should close after the request that asked it to');
    const responses = parseResponses(data);
    assert.deepEqual(responses.map((r) => r.status), [200, 303, 200]);
    assert.match(responses[0].headers['content-type'], /^text\/html/);
    assert.match(responses[0].body, /id="messages"/);
    assert.match(responses[1].headers.location, /^\/pets\/\d+$/);
    assert.match(responses[2].headers['content-type'], /^text\/css/);
    assert.equal(responses[2].body, STYLE_CSS.toString('latin1'));
  });

  test('HTTP/1.0: the request is answered and the connection closes', T, async (t) => {
    const srv = await serve(t);
    const { data, closed } = await rawRequest(srv.port, 'GET /style.css HTTP/1.0\r\n\r\n');
    assert.ok(closed, 'an HTTP/1.0 connection without keep-alive should be closed after the answer');
    const res = parseResponse(data, { closed: true });
    assert.equal(res.status, 200);
    assert.equal(res.body, STYLE_CSS.toString('latin1'));
  });

  test('HTTP/1.0 with Connection: keep-alive keeps the connection open', T, async (t) => {
    const srv = await serve(t);
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());

    await conn.write('GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const first = await conn.readResponse();
    assert.equal(first.status, 200);
    assert.ok(first.headers['content-length'], 'a kept-alive HTTP/1.0 answer needs a Content-Length');

    await conn.write('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const second = await conn.readResponse();
    assert.equal(second.status, 200);
    assert.match(second.body, /id="messages"/);
  });

  test('idle keep-alive connections are closed after --keepalive-timeout', T, async (t) => {
    const srv = await serve(t, { args: ['--keepalive-timeout', '300'] });
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());

    await conn.write(get('/style.css'));
    assert.equal((await conn.readResponse()).status, 200);
    const answeredAt = performance.now();
    const closed = await conn.waitClose(5_000);
    assert.ok(closed, 'the idle connection should be closed');
    const idle = performance.now() - answeredAt;
    assert.ok(idle >= 150, `closed after ${idle.toFixed(0)} ms: too early for a 300 ms idle timeout`);
  });

  test('a client that sends half a request and stops is disconnected after --header-timeout', T, async (t) => {
    const srv = await serve(t, { args: ['--header-timeout', '300'] });
    const started = performance.now();
    const { data, closed } = await rawRequest(srv.port, 'GET / HTTP/1.1\r\nHost: test\r\n', { timeout: 5_000 });
    const elapsed = performance.now() - started;
    assert.ok(closed, 'the connection should be closed');
    assert.ok(elapsed >= 150, `closed after ${elapsed.toFixed(0)} ms: too early for a 300 ms timeout`);
    assert.ok(data === '' || /^HTTP\/1\.[01] 408 /.test(data), `expected nothing or a 408, got ${JSON.stringify(data.slice(0, 80))}`);
  });

  test('a client that trickles header bytes is still disconnected after --header-timeout', T, async (t) => {
    const srv = await serve(t, { args: ['--header-timeout', '300'] });
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    const started = performance.now();
    // One byte every 50 ms: each read is recent, but the headers never end.
    const line = 'GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ' + 'a'.repeat(200);
    for (const ch of line) {
      if (conn.closed || performance.now() - started > 3_000) break;
      await conn.write(ch).catch(() => {});
      await delay(50);
    }
    const closed = await conn.waitClose(1_000);
    const elapsed = performance.now() - started;
    assert.ok(closed, `the connection was still open after ${elapsed.toFixed(0)} ms of trickled headers`);
    assert.ok(elapsed < 2_000, `closed only after ${elapsed.toFixed(0)} ms for a 300 ms header timeout`);
  });
});

// ==========================================================================
describe('request bodies', () => {
  test('a chunked form body is read like any other (POST /pets → 303)', T, async (t) => {
    const srv = await serve(t);
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());

    const form = 'name=Chunky+Monkey&species=dog';
    await conn.write('POST /pets HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n');
    // Several chunks, sent separately, the last one with an extension.
    for (let i = 0; i < form.length; i += 7) {
      const part = form.slice(i, i + 7);
      await conn.write(`${part.length.toString(16)}\r\n${part}\r\n`);
      await delay(10);
    }
    await conn.write('0;done=1\r\n\r\n');
    const res = await conn.readResponse();
    assert.equal(res.status, 303);
    assert.match(res.headers.location, /^\/pets\/\d+$/);

    const page = await request(srv.url, res.headers.location);
    assert.equal(page.status, 200);
    assert.match(page.body, /Chunky Monkey/);
  });

  test('--max-body 1024: a bigger body is refused with 413, a smaller one is accepted', T, async (t) => {
    const srv = await serve(t, { args: ['--max-body', '1024'] });

    const big = await postLargeBody(srv.port, { size: 2_000 });
    assert.equal(big.status, 413);

    const bigChunked = await postLargeBody(srv.port, { size: 2_000, chunked: true });
    assert.equal(bigChunked.status, 413);

    const fits = await request(srv.url, '/pets', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: paddedForm(1000),
    });
    assert.equal(fits.status, 303, `a 1000-byte body is under the limit; got ${fits.status}`);

    // The server is still fine after refusing bodies.
    assert.equal((await request(srv.url, '/pets')).status, 200);
  });

  test('the default body limit is 1 MiB', T, async (t) => {
    const srv = await serve(t);
    const over = await postLargeBody(srv.port, { size: 1024 * 1024 + 1024 });
    assert.equal(over.status, 413);

    const under = await request(srv.url, '/pets', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: paddedForm(1024 * 1024 - 1024),
      timeout: 10_000,
    });
    assert.equal(under.status, 303, `a body just under 1 MiB should be accepted; got ${under.status}`);
  });
});

// ==========================================================================
describe('bad requests and unknown routes', () => {
  for (const [what, bytes] of [
    ['a request line that is not HTTP', 'GARBAGE\r\n\r\n'],
    ['an unknown protocol', 'GET / FOO/1.1\r\nHost: test\r\n\r\n'],
  ]) {
    test(`${what} gets 400 and the connection closes`, T, async (t) => {
      const srv = await serve(t);
      const { data, closed } = await rawRequest(srv.port, bytes);
      assert.ok(closed, 'the connection should be closed');
      const res = parseResponse(data, { closed: true });
      assert.ok(res, `expected a 400 answer, got ${JSON.stringify(data.slice(0, 80))}`);
      assert.equal(res.status, 400);
    });
  }

  test('request line and headers over 16 KiB get 431 and the connection closes', T, async (t) => {
    const srv = await serve(t);
    const one = await rawRequest(srv.port, get('/', `X-Fill: ${'a'.repeat(17 * 1024)}\r\n`));
    assert.ok(one.closed);
    assert.equal(parseResponse(one.data, { closed: true })?.status, 431);

    // Many small headers add up the same way.
    let many = '';
    for (let i = 0; i < 40; i++) many += `X-Fill-${i}: ${'b'.repeat(500)}\r\n`;
    const two = await rawRequest(srv.port, get('/', many));
    assert.ok(two.closed);
    assert.equal(parseResponse(two.data, { closed: true })?.status, 431);
  });

  test('--max-header-size moves the 431 line both ways', T, async (t) => {
    const small = await serve(t, { args: ['--max-header-size', '2048'] });
    const refused = await rawRequest(small.port, get('/', `X-Fill: ${'a'.repeat(3000)}\r\n`));
    assert.equal(parseResponse(refused.data, { closed: true })?.status, 431, 'over 2 KiB');
    const fine = await rawRequest(small.port, get('/style.css', `X-Fill: ${'a'.repeat(1000)}\r\nConnection: close\r\n`));
    assert.equal(parseResponse(fine.data, { closed: true })?.status, 200, 'under 2 KiB');
    const large = await serve(t, { args: ['--max-header-size', '65536'] });
    const big = await rawRequest(large.port, get('/style.css', `X-Fill: ${'a'.repeat(40 * 1024)}\r\nConnection: close\r\n`));
    assert.equal(parseResponse(big.data, { closed: true })?.status, 200, '40 KiB of headers under a 64 KiB limit');
    const bad = await runBinary(['--max-header-size', '10']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--max-header-size needs a number between 1024 and 1048576/);
  });

  test('a request target over 16 KiB is refused (431 or 414)', T, async (t) => {
    const srv = await serve(t);
    const { data, closed } = await rawRequest(srv.port, get(`/pets?q=${'a'.repeat(17 * 1024)}`));
    assert.ok(closed);
    assert.ok([414, 431].includes(parseResponse(data, { closed: true })?.status), JSON.stringify(data.slice(0, 80)));
  });

  test('headers well under 16 KiB are fine', T, async (t) => {
    const srv = await serve(t);
    const res = await request(srv.url, '/', { headers: { 'x-fill': 'a'.repeat(8 * 1024) } });
    assert.equal(res.status, 200);
  });

  test('an unknown method on a known path gets 405 with Allow', T, async (t) => {
    const srv = await serve(t);
    const del = await request(srv.url, '/pets', { method: 'DELETE' });
    assert.equal(del.status, 405);
    const allowed = tokens(del.headers.allow);
    for (const m of ['GET', 'HEAD', 'POST']) assert.ok(allowed.includes(m), `Allow: ${del.headers.allow} lacks ${m}`);
    assert.ok(!allowed.includes('DELETE'));

    const put = await request(srv.url, '/pets/1/edit', { method: 'PUT', body: '' });
    assert.equal(put.status, 405);
    const allowedNew = tokens(put.headers.allow);
    for (const m of ['GET', 'HEAD']) assert.ok(allowedNew.includes(m), `Allow: ${put.headers.allow} lacks ${m}`);
    assert.ok(!allowedNew.includes('PUT'));

    const post = await request(srv.url, '/', { method: 'POST', body: '' });
    assert.equal(post.status, 405);
    assert.ok(tokens(post.headers.allow).includes('GET'));
  });

  test('an unknown path gets 404 with the rendered views/404.html', T, async (t) => {
    const srv = await serve(t);
    for (const method of ['GET', 'POST']) {
      const res = await request(srv.url, '/no/such/page', { method, body: method === 'POST' ? '' : undefined });
      assert.equal(res.status, 404, `${method} /no/such/page`);
      assert.match(res.headers['content-type'], /^text\/html/);
      assert.match(res.body, /<h1>Page not found<\/h1>/);
      assert.match(res.body, /<a href="\/pets">Pets<\/a>/, 'the 404 page is inside the layout');
    }
  });
});

// ==========================================================================
describe('path traversal', () => {
  const attempts = [
    '/../../etc/passwd',
    '/%2e%2e/%2e%2e/etc/passwd',
    '/..%2f..%2fetc/passwd',
    '/.%2e/.%2e/etc/passwd',
    '/..%252f..%252fetc/passwd',
    '//etc/passwd',
    '/%2fetc%2fpasswd',
    '/style.css%00',
    '/style.css%00.png',
    '/%2e%2e%5cetc',
    '/..\\..\\etc\\passwd',
    '/scripts/app.lua',
    '/../scripts/app.lua',
    '/%2e%2e/scripts/app.lua',
    '/views/layout.html',
  ];

  test('escapes from public/ get 404 or 400, never the file', T, async (t) => {
    const srv = await serve(t);
    for (const target of attempts) {
      const { data } = await rawRequest(srv.port, get(target, 'Connection: close\r\n'));
      const res = parseResponse(data, { closed: true });
      assert.ok(res, `${target}: no answer`);
      assert.ok([400, 404].includes(res.status), `${target}: status ${res.status}`);
      assert.ok(!res.body.includes('root:'), `${target}: the answer shows /etc/passwd`);
      assert.ok(!res.body.includes('require "chat"'), `${target}: the answer shows the app's Lua source`);
      assert.ok(!res.body.includes('<%'), `${target}: the answer shows a raw template`);
    }
    // And the server still serves normally.
    assert.equal((await request(srv.url, '/style.css')).status, 200);
  });

  test('a symlink in public/ that points outside it is not followed', T, async (t) => {
    const root = makeAppRoot(REPO_ROOT, { only: ['scripts', 'views', 'public'] });
    const outside = makeTempDir('moonwire-outside-');
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'TOP-SECRET-4711\n');
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'public', 'leak.txt'));
    fs.symlinkSync(outside, path.join(root, 'public', 'outside'));

    const srv = await serve(t, { root });
    const ok = await request(srv.url, '/style.css');
    assert.equal(ok.status, 200, 'the copied app serves its own files');

    for (const target of ['/leak.txt', '/outside/secret.txt']) {
      const res = await request(srv.url, target);
      assert.equal(res.status, 404, `${target}: status ${res.status}`);
      assert.ok(!res.body.includes('TOP-SECRET'), `${target}: the answer shows the file outside public/`);
    }
  });
});

// ==========================================================================
describe('errors in Lua routes', () => {
  const root = path.join(FIXTURES, 'errors');

  test('--dev: a route that raises an error gets 500 showing the message and file:line', T, async (t) => {
    const srv = await serve(t, { root, args: ['--dev'] });
    const res = await request(srv.url, '/boom');
    assert.equal(res.status, 500);
    assert.match(res.body, /boom/);
    assert.match(res.body, /app\.lua:\d+/);
    assert.equal((await request(srv.url, '/ok')).body, 'ok', 'the server keeps serving');
  });

  test('--production: a route that raises an error gets a plain 500 without the message', T, async (t) => {
    const srv = await serve(t, { root, args: ['--production'] });
    const res = await request(srv.url, '/boom');
    assert.equal(res.status, 500);
    assert.ok(!res.body.includes('boom'), 'the error message must not be shown');
    assert.ok(!res.body.includes('app.lua'), 'source locations must not be shown');
    const ok = await request(srv.url, '/ok');
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'ok', 'the server keeps serving');
  });

  test('an error that is not a string also gets 500', T, async (t) => {
    for (const mode of ['--dev', '--production']) {
      const srv = await startServer({ root, args: [mode] });
      try {
        assert.equal((await request(srv.url, '/boom-table')).status, 500, mode);
        assert.equal((await request(srv.url, '/ok')).status, 200, mode);
      } finally {
        await srv.stop();
      }
    }
  });

  test('a route that returns without answering gets 500', T, async (t) => {
    for (const mode of ['--dev', '--production']) {
      const srv = await startServer({ root, args: [mode] });
      try {
        assert.equal((await request(srv.url, '/silent')).status, 500, mode);
        assert.equal((await request(srv.url, '/ok')).status, 200, mode);
      } finally {
        await srv.stop();
      }
    }
  });

  test('many failing requests in a row do not stop the server', T, async (t) => {
    const srv = await serve(t, { root, args: ['--production'] });
    for (let i = 0; i < 50; i++) {
      assert.equal((await request(srv.url, i % 2 ? '/boom' : '/silent')).status, 500);
    }
    assert.equal((await request(srv.url, '/ok')).body, 'ok');
  });
});

// ==========================================================================
describe('access log', () => {
  // One line per request: METHOD PATH STATUS TIME ms - SIZE (terminal colours allowed).
  const stripColours = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
  const logLine = (method, target, status) =>
    new RegExp(`^${method} ${target.replace(/[/?]/g, '\\$&')} ${status} \\d+(?:\\.\\d+)? ms - (\\d+)$`, 'm');

  async function waitForLine(srv, re) {
    const deadline = performance.now() + 3_000;
    while (performance.now() < deadline) {
      const m = re.exec(stripColours(srv.stdout()));
      if (m) return m;
      await delay(20);
    }
    assert.fail(`no access log line matching ${re} in stdout:\n${srv.stdout()}`);
  }

  test('without --quiet each request is logged with method, path, status, time and size', T, async (t) => {
    const srv = await serve(t, { quiet: false });

    const list = await request(srv.url, '/pets');
    const m = await waitForLine(srv, logLine('GET', '/pets', 200));
    assert.equal(Number(m[1]), list.raw.length, 'the logged size is the body size');

    await request(srv.url, '/nope');
    await waitForLine(srv, logLine('GET', '/nope', 404));

    await postForm(srv.url, '/pets', { name: 'Logged', species: 'cat' });
    await waitForLine(srv, /^POST \/pets 303 \d+(?:\.\d+)? ms - /m);
  });

  test('with --quiet requests are not logged', T, async (t) => {
    const srv = await startServer({ quiet: true });
    await request(srv.url, '/pets');
    await request(srv.url, '/style.css');
    assert.equal(await srv.stop(), 0);
    const out = stripColours(srv.stdout());
    assert.ok(!/^(GET|POST) \//m.test(out), `unexpected access log in stdout:\n${out}`);
  });
});

// ==========================================================================
describe('shutdown', () => {
  const slowRoot = path.join(FIXTURES, 'slow');

  test('SIGTERM makes the server exit with code 0', T, async () => {
    const srv = await startServer();
    assert.equal((await request(srv.url, '/')).status, 200);
    assert.equal(await srv.stop(), 0);
  });

  test('SIGTERM with an idle keep-alive connection open still exits promptly with 0', T, async (t) => {
    const srv = await startServer();
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    await conn.write(get('/style.css'));
    assert.equal((await conn.readResponse()).status, 200);
    assert.equal(await srv.stop(), 0);
    assert.ok(await conn.waitClose(1_000), 'the idle connection is closed');
  });

  test('a request being handled when SIGTERM arrives is still answered', T, async (t) => {
    const srv = await startServer({ root: slowRoot });
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    await conn.write(get('/slow?ms=600', 'Connection: close\r\n'));
    await delay(150); // the route is now busy
    srv.signal('SIGTERM');
    const res = await conn.readResponse({ timeout: 5_000 });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'slow done');
    assert.equal(await srv.stop(), 0);
  });

  test('a request whose body is still arriving when SIGTERM arrives is still answered', T, async (t) => {
    const srv = await startServer({ root: slowRoot });
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    await conn.write('POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n12345');
    await delay(100);
    srv.signal('SIGTERM');
    await delay(100);
    await conn.write('67890');
    const res = await conn.readResponse({ timeout: 5_000 });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'got 10 bytes');
    assert.equal(await srv.stop(), 0);
  });
});

// ==========================================================================
describe('command line', () => {
  test('--help lists every flag', T, async () => {
    const { code, stdout, stderr } = await runBinary(['--help']);
    assert.equal(code, 0);
    const text = stdout + stderr;
    for (const flag of ['--root', '--port', '--host', '--db', '--dev', '--production', '--quiet',
      '--max-body', '--max-header-size', '--header-timeout', '--keepalive-timeout', '--body-timeout', '--body-deadline', '--body-buffer',
      '--body-memory', '--tmp-dir', '--upload-max-files', '--upload-max-file-size', '--upload-max-fields',
      '--upload-max-field-size', '--upload-max-part-header', '--help', '--version']) {
      assert.ok(text.includes(flag), `--help does not mention ${flag}:\n${text}`);
    }
  });

  test('--version prints a version', T, async () => {
    const { code, stdout, stderr } = await runBinary(['--version']);
    assert.equal(code, 0);
    assert.match(stdout + stderr, /\d+\.\d+\.\d+/);
  });

  test('an unknown flag is refused with a message', T, async () => {
    const { code, stderr } = await runBinary(['--no-such-flag']);
    assert.notEqual(code, 0);
    assert.match(stderr, /no-such-flag/);
  });

  test('--host 127.0.0.1 listens there', T, async (t) => {
    const srv = await serve(t, { args: ['--host', '127.0.0.1'] });
    assert.equal((await request(srv.url, '/')).status, 200);
  });

  test('the listening line names the real port when --port 0 is given', T, async (t) => {
    const srv = await serve(t);
    assert.ok(srv.port > 0);
    assert.equal((await request(srv.url, '/style.css')).status, 200);
  });
});
