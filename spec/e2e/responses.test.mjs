// End-to-end tests: responses as a client sees them — large downloads to
// slow readers, files streamed from disk, Range, preconditions, content
// types, compression, and routes that stream. Run from spec/e2e/ with
// `node --test responses.test.mjs`.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';

import { BIN, REPO_ROOT, RawConnection, delay, makeAppRoot, request, serve } from './helpers.mjs';
import { serveFastcgi, startNginx } from './fcgi.mjs';

const T = { timeout: 60_000 };

/** A file of n pseudo-random bytes (the same for the same seed). */
function bytes(n, seed = 1) {
  const out = Buffer.alloc(Math.ceil(n / 4) * 4);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, n);
}

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

/** An app root (the responses fixture) with more files in public/: { name: Buffer|string }. */
function appWith(files = {}) {
  const root = makeAppRoot('responses');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, 'public', name)), { recursive: true });
    fs.writeFileSync(path.join(root, 'public', name), content);
  }
  return root;
}

/**
 * GETs target on a raw socket and reads the response the way a slow client
 * does: one read (at most 64 KiB) every pauseMs, or nothing at all for
 * stallMs first. Resolves { head (string), body (Buffer), closed } once the
 * server closes the connection or the body is complete.
 */
function slowGet(port, target, { pauseMs = 0, stallMs = 0, extra = '', timeout = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks = [];
    let received = 0, head = null, length = -1, done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      resolve({ head: end < 0 ? all.toString('latin1') : all.subarray(0, end).toString('latin1'),
        body: end < 0 ? Buffer.alloc(0) : all.subarray(end + 4), closed });
    };
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`${target}: no end within ${timeout} ms (${received} bytes)`)); }, timeout);
    socket.on('connect', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`);
      if (stallMs) {
        socket.pause();
        setTimeout(() => socket.resume(), stallMs);
      }
    });
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      if (head === null) {
        const all = Buffer.concat(chunks);
        const end = all.indexOf('\r\n\r\n');
        if (end >= 0) {
          head = all.subarray(0, end).toString('latin1');
          const m = /content-length: (\d+)/i.exec(head);
          length = m ? end + 4 + Number(m[1]) : -1;
        }
      }
      if (length >= 0 && received >= length) return finish(false);
      if (pauseMs) {
        socket.pause();
        setTimeout(() => socket.resume(), pauseMs);
      }
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

describe('large responses to slow clients', () => {
  const BIG = bytes(32 * 1024 * 1024, 7);

  test('a client that reads slowly gets every byte, past the keep-alive timeout', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'big.bin': BIG }), args: ['--keepalive-timeout', '1000'] });
    // About 7 MB/s: the download takes 4–5 s, the kernel's buffers hold ~10 MB.
    const r = await slowGet(server.port, '/big.bin', { pauseMs: 8 });
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.equal(r.body.length, BIG.length, 'every byte arrived');
    assert.equal(sha(r.body), sha(BIG));
  });

  test('a client that stops reading is dropped after --send-timeout', T, async (t) => {
    const server = await serve(t, {
      root: appWith({ 'big.bin': BIG }),
      args: ['--send-timeout', '1000', '--keepalive-timeout', '60000'],
    });
    // Reads nothing for 4 s, then takes what the kernel still holds: the
    // server has given up on it by then and the connection ends short.
    const r = await slowGet(server.port, '/big.bin', { stallMs: 4000, timeout: 20_000 });
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.ok(r.closed, 'the server closed the connection');
    assert.ok(r.body.length < BIG.length, `cut short (${r.body.length} of ${BIG.length} bytes)`);
    // The server still answers others.
    const ok = await request(server.url, '/hello');
    assert.equal(ok.body, 'hello');
  });
});

/** Resolves once predicate() (async) holds, polling; fails after timeout ms. */
async function until(predicate, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms`);
    await delay(50);
  }
}

/** Downloads target, counting bytes and hashing them without keeping them. */
function download(base, target, { headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(target, base), { headers, agent: false }, (res) => {
      const hash = crypto.createHash('sha256');
      let length = 0, zeros = true;
      res.on('data', (c) => {
        length += c.length;
        hash.update(c);
        if (zeros && c.some((b) => b !== 0)) zeros = false;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, length, sha: hash.digest('hex'), zeros }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

describe('files streamed from disk', () => {
  test('a file larger than the memory the server may use downloads whole', T, async (t) => {
    // Each GET read the whole file into memory: under a 256 MB data limit a
    // 600 MB file was a 500. Now it goes in 64 KiB reads.
    const LIMIT = ['prlimit', `--data=${256 * 1024 * 1024}`, '--'];
    // A sanitizer build maps more than such a limit allows: it cannot start under it.
    if (spawnSync(LIMIT[0], [...LIMIT.slice(1), BIN, '--version']).status !== 0) return t.skip('the binary does not start under a 256 MB data limit (a sanitizer build)');
    const root = appWith();
    fs.closeSync(fs.openSync(path.join(root, 'public/sparse.bin'), 'w'));
    fs.truncateSync(path.join(root, 'public/sparse.bin'), 600 * 1024 * 1024); // sparse: no disk used
    const server = await serve(t, { root, prefix: LIMIT });
    const r = await download(server.url, '/sparse.bin');
    assert.equal(r.status, 200);
    assert.equal(r.length, 600 * 1024 * 1024);
    assert.ok(r.zeros);
    const head = await request(server.url, '/sparse.bin', { method: 'HEAD' });
    assert.equal(head.headers['content-length'], String(600 * 1024 * 1024));
  });

  test('the same bytes over HTTP, HTTP/1.0 and through nginx over FastCGI', T, async (t) => {
    const BIG = bytes(5 * 1024 * 1024 + 123, 3);
    const srv = await serveFastcgi(t, { root: appWith({ 'big.bin': BIG, 'small.css': 'p{}'.repeat(100) }) });
    const nginx = await startNginx(t, { fastcgi: srv.fastcgi, httpPort: srv.port });
    for (const base of [srv.url, nginx.url]) {
      const r = await download(base, '/big.bin');
      assert.equal(r.status, 200);
      assert.equal(r.length, BIG.length);
      assert.equal(r.sha, sha(BIG));
      const part = await request(base, '/big.bin', { headers: { range: 'bytes=1000000-1999999' } });
      assert.equal(part.status, 206);
      assert.ok(part.raw.equals(BIG.subarray(1000000, 2000000)));
    }
    const conn = await RawConnection.open(srv.port);
    await conn.write('GET /big.bin HTTP/1.0\r\n\r\n');
    await conn.waitClose(20_000);
    const body = Buffer.from(conn.data.slice(conn.data.indexOf('\r\n\r\n') + 4), 'latin1');
    assert.equal(sha(body), sha(BIG));
  });
});

describe('Range and preconditions', () => {
  const DIGITS = '0123456789'.repeat(1000);

  test('206 with Content-Range, 416 past the end, the whole file for several ranges', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'digits.txt': DIGITS }) });
    const whole = await request(server.url, '/digits.txt');
    assert.equal(whole.headers['accept-ranges'], 'bytes');
    for (const [range, start, end] of [['bytes=0-9', 0, 9], ['bytes=9990-', 9990, 9999], ['bytes=-5', 9995, 9999],
      ['bytes=5-20000', 5, 9999], ['bytes=0-4,5-9', 0, 9]]) {
      const r = await request(server.url, '/digits.txt', { headers: { range } });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/10000`, range);
      assert.equal(r.body, DIGITS.slice(start, end + 1), range);
      assert.equal(r.headers['content-length'], String(end - start + 1));
    }
    const past = await request(server.url, '/digits.txt', { headers: { range: 'bytes=10000-' } });
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], 'bytes */10000');
    const several = await request(server.url, '/digits.txt', { headers: { range: 'bytes=0-1,100-101' } });
    assert.equal(several.status, 200);
    assert.equal(several.body, DIGITS);
    const bad = await request(server.url, '/digits.txt', { headers: { range: 'bytes=9-1' } });
    assert.equal(bad.status, 200);
  });

  test('If-Range: the part when the copy matches, the whole file when it changed', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'digits.txt': DIGITS }) });
    const first = await request(server.url, '/digits.txt');
    const { etag } = first.headers;
    const lastModified = first.headers['last-modified'];
    for (const ifRange of [etag, lastModified]) {
      const r = await request(server.url, '/digits.txt', { headers: { range: 'bytes=0-3', 'if-range': ifRange } });
      assert.equal(r.status, 206);
      assert.equal(r.body, '0123');
    }
    for (const ifRange of ['W/"1-1"', 'Tue, 01 Jan 2019 00:00:00 GMT']) {
      const r = await request(server.url, '/digits.txt', { headers: { range: 'bytes=0-3', 'if-range': ifRange } });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, 10000);
    }
  });

  test('If-Match and If-Unmodified-Since: 412 when the file is not the one the client has', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'digits.txt': DIGITS }) });
    const first = await request(server.url, '/digits.txt');
    const { etag } = first.headers;
    const lastModified = first.headers['last-modified'];
    const status = async (headers) => (await request(server.url, '/digits.txt', { headers })).status;
    assert.equal(await status({ 'if-match': '"something-else"' }), 412);
    assert.equal(await status({ 'if-match': etag }), 200);
    assert.equal(await status({ 'if-match': '*' }), 200);
    assert.equal(await status({ 'if-unmodified-since': 'Tue, 01 Jan 2019 00:00:00 GMT' }), 412);
    assert.equal(await status({ 'if-unmodified-since': lastModified }), 200);
    // RFC 9110's order: If-Match decides over If-Unmodified-Since; 412 comes before 304 and Range.
    assert.equal(await status({ 'if-match': etag, 'if-unmodified-since': 'Tue, 01 Jan 2019 00:00:00 GMT' }), 200);
    assert.equal(await status({ 'if-match': '"x"', 'if-none-match': etag }), 412);
    assert.equal(await status({ 'if-match': etag, 'if-none-match': etag }), 304);
    assert.equal(await status({ 'if-match': '"x"', range: 'bytes=0-1' }), 412);
  });
});

describe('content types', () => {
  const FILES = { 'a.avif': 'image/avif', 'a.ogg': 'audio/ogg', 'a.zip': 'application/zip',
    'site.webmanifest': 'application/manifest+json', 'a.apng': 'image/apng', 'a.wav': 'audio/x-wav',
    'a.jsonld': 'application/ld+json', 'a.css': 'text/css; charset=utf-8', 'a.txt': 'text/plain; charset=utf-8',
    'a.js': 'text/javascript; charset=utf-8', 'a.map': 'application/json' };

  test('from /etc/mime.types, with charset=utf-8 on text types', T, async (t) => {
    const files = Object.fromEntries(Object.keys(FILES).map((f) => [f, 'x']));
    const server = await serve(t, { root: appWith(files) });
    for (const [file, type] of Object.entries(FILES)) {
      assert.equal((await request(server.url, `/${file}`)).headers['content-type'], type, file);
    }
  });

  test('a built-in table, and a warning, when the file is missing', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'a.avif': 'x', 'a.css': 'x' }), env: { MOONWIRE_MIME_TYPES: '/nonexistent/mime.types' } });
    assert.equal((await request(server.url, '/a.avif')).headers['content-type'], 'image/avif');
    assert.equal((await request(server.url, '/a.css')).headers['content-type'], 'text/css; charset=utf-8');
    assert.match(server.stderr(), /\/nonexistent\/mime\.types.*built-in table/);
  });
});

describe('compression', () => {
  const TEXT = 'moonwire sends text compressed when the client accepts it\n'.repeat(400);

  test('gzip and brotli for text over 1 KiB, with Vary; not for small files, other types or a Range', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'app.js': TEXT, 'tiny.js': 'x()', 'photo.png': TEXT }) });
    const gz = await request(server.url, '/app.js', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers.vary, 'Accept-Encoding');
    assert.equal(zlib.gunzipSync(gz.raw).toString(), TEXT);
    assert.ok(gz.raw.length < TEXT.length / 10);
    const br = await request(server.url, '/app.js', { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.equal(zlib.brotliDecompressSync(br.raw).toString(), TEXT);
    assert.notEqual(br.headers.etag, gz.headers.etag, 'each coding has its own ETag');
    const plain = await request(server.url, '/app.js');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(plain.headers.vary, 'Accept-Encoding');
    assert.equal(plain.body, TEXT);
    assert.notEqual(plain.headers.etag, gz.headers.etag);
    const again = await request(server.url, '/app.js', { headers: { 'accept-encoding': 'gzip', 'if-none-match': gz.headers.etag } });
    assert.equal(again.status, 304);
    for (const [file, headers] of [['/tiny.js', {}], ['/photo.png', {}], ['/app.js', { range: 'bytes=0-7' }]]) {
      const r = await request(server.url, file, { headers: { 'accept-encoding': 'gzip, br', ...headers } });
      assert.equal(r.headers['content-encoding'], undefined, `${file} ${JSON.stringify(headers)}`);
    }
    const part = await request(server.url, '/app.js', { headers: { 'accept-encoding': 'gzip', range: 'bytes=0-7' } });
    assert.equal(part.status, 206);
    assert.equal(part.body, 'moonwire');
  });

  test('precompressed twins (file.br, file.gz) when not older than the file', T, async (t) => {
    const root = appWith({ 'app.js': TEXT });
    const gz = zlib.gzipSync(Buffer.from('the twin'));
    fs.writeFileSync(path.join(root, 'public/app.js.gz'), gz);
    const server = await serve(t, { root });
    const r = await request(server.url, '/app.js', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(r.headers['content-encoding'], 'gzip');
    assert.equal(zlib.gunzipSync(r.raw).toString(), 'the twin');
    // An older twin is stale: compressed from the file instead.
    const old = new Date(Date.now() - 3600_000);
    fs.utimesSync(path.join(root, 'public/app.js.gz'), old, old);
    const fresh = await request(server.url, '/app.js', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(zlib.gunzipSync(fresh.raw).toString(), TEXT);
  });

  test('--no-compress and --compress-min', T, async (t) => {
    const root = appWith({ 'app.js': TEXT });
    const off = await serve(t, { root, args: ['--no-compress'] });
    const r = await request(off.url, '/app.js', { headers: { 'accept-encoding': 'gzip, br' } });
    assert.equal(r.headers['content-encoding'], undefined);
    assert.equal(r.headers.vary, undefined);
    const high = await serve(t, { root, args: ['--compress-min', String(TEXT.length + 1)] });
    const r2 = await request(high.url, '/app.js', { headers: { 'accept-encoding': 'gzip, br' } });
    assert.equal(r2.headers['content-encoding'], undefined);
  });

  test('the socket.io client bundle is compressed', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const file = fs.readFileSync(path.join(REPO_ROOT, 'node_modules/socket.io-client/dist/socket.io.js'));
    const br = await request(server.url, '/socket.io/socket.io.js', { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.ok(zlib.brotliDecompressSync(br.raw).equals(file));
    assert.ok(br.raw.length < file.length / 3, `${br.raw.length} bytes of ${file.length}`);
    const gz = await request(server.url, '/socket.io/socket.io.js', { headers: { 'accept-encoding': 'gzip' } });
    assert.ok(zlib.gunzipSync(gz.raw).equals(file));
  });

  test('Engine.IO polling: gzip over 1 KiB when accepted, and Cache-Control: no-store', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const base = `/socket.io/?EIO=4&transport=polling`;
    const open = await request(server.url, base);
    assert.equal(open.headers['cache-control'], 'no-store');
    const { sid } = JSON.parse(open.body.slice(1));
    const poll = `${base}&sid=${sid}`;
    assert.equal((await request(server.url, poll, { method: 'POST', body: '40' })).body, 'ok');
    assert.match((await request(server.url, poll)).body, /^40/);
    const ask = async (id, headers) => {
      assert.equal((await request(server.url, poll, { method: 'POST', body: `42${id}["big",300]` })).body, 'ok');
      return request(server.url, poll, { headers });
    };
    const gz = await ask(1, { 'accept-encoding': 'gzip, deflate' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers['cache-control'], 'no-store');
    assert.equal(zlib.gunzipSync(gz.raw).toString(), `431["${'moonwire '.repeat(300)}"]`);
    const plain = await ask(2, {});
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(plain.body, `432["${'moonwire '.repeat(300)}"]`);
  });
});

describe('routes', () => {
  test('res:write streams a body in chunks; res:finish ends it', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const r = await request(server.url, '/stream?n=5&size=3');
    assert.equal(r.status, 200);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(r.body, 'aaabbbcccdddeee');
    // HTTP/1.0: no chunks, the close ends the body.
    const conn = await RawConnection.open(server.port);
    await conn.write('GET /stream?n=3&size=2 HTTP/1.0\r\n\r\n');
    assert.ok(await conn.waitClose(5_000));
    assert.match(conn.data, /^HTTP\/1\.0 200 OK\r\n/);
    assert.doesNotMatch(conn.data, /transfer-encoding|content-length/i);
    assert.ok(conn.data.endsWith('\r\n\r\naabbcc'));
    // HEAD: the head GET would get, no body.
    const head = await request(server.url, '/stream?n=3&size=2', { method: 'HEAD' });
    assert.equal(head.headers['transfer-encoding'], 'chunked');
    assert.equal(head.body, '');
  });

  test('a route writing to a slow client waits for it (back-pressure), then sends everything', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const n = 2000, size = 64 * 1024; // 128 MB, far more than the sockets' buffers
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(`GET /stream?n=${n}&size=${size} HTTP/1.1\r\nHost: test\r\n\r\n`);
    await delay(1500);
    const stalled = JSON.parse((await request(server.url, '/progress')).body);
    assert.ok(!stalled.done && stalled.written < n / 4, `the route waited for the client: ${JSON.stringify(stalled)}`);
    let received = 0;
    socket.on('data', (c) => { received += c.length; });
    socket.resume();
    await until(async () => JSON.parse((await request(server.url, '/progress')).body).done, 'the route finishes');
    await until(() => received >= n * size, 'every byte arrives');
    socket.destroy();
  });

  test('a client that leaves mid-stream: res:write returns nil, "closed"', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(`GET /stream?n=100000&size=65536 HTTP/1.1\r\nHost: test\r\n\r\n`);
    await delay(500);
    socket.destroy();
    await until(async () => JSON.parse((await request(server.url, '/progress')).body).closed, 'the route hears of it');
  });

  test('a route that fails mid-stream leaves the response visibly cut short', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const conn = await RawConnection.open(server.port);
    await conn.write('GET /fail-midway HTTP/1.1\r\nHost: test\r\n\r\n');
    assert.ok(await conn.waitClose(5_000), 'the connection ends');
    assert.match(conn.data, /second part/);
    assert.doesNotMatch(conn.data, /\r\n0\r\n\r\n$/, 'no last chunk: the body is incomplete');
    assert.match(server.stderr(), /boom/);
  });

  test('streamed through nginx over FastCGI', T, async (t) => {
    const srv = await serveFastcgi(t, { root: appWith() });
    const nginx = await startNginx(t, { fastcgi: srv.fastcgi, httpPort: srv.port });
    const r = await request(nginx.url, '/stream?n=30&size=10000');
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 300000);
    assert.equal(r.body.slice(0, 3), 'aaa');
  });

  test('res:sendFile: type, ETag, 304, Range; dotfiles and paths out of the app refused', T, async (t) => {
    const root = appWith({ 'data.txt': 'some data' });
    fs.writeFileSync(path.join(root, '.env'), 'SECRET=1');
    fs.writeFileSync(path.join(root, 'notes.md'), '# notes');
    const server = await serve(t, { root });
    const r = await request(server.url, '/file?path=notes.md');
    assert.equal(r.status, 200);
    assert.equal(r.body, '# notes');
    assert.equal(r.headers['content-type'], 'text/markdown; charset=utf-8');
    assert.equal((await request(server.url, '/file?path=notes.md', { headers: { 'if-none-match': r.headers.etag } })).status, 304);
    const part = await request(server.url, '/file?path=public/data.txt', { headers: { range: 'bytes=5-' } });
    assert.equal(part.status, 206);
    assert.equal(part.body, 'data');
    const dl = await request(server.url, '/download');
    assert.equal(dl.body, 'some data');
    assert.equal(dl.headers['content-disposition'], 'attachment; filename="data.txt"');
    assert.equal(dl.headers['cache-control'], 'public, max-age=60');
    for (const bad of ['.env', 'public/../.env', '../etc/passwd', 'missing.txt', 'public']) {
      const no = await request(server.url, `/file?path=${encodeURIComponent(bad)}`);
      assert.equal(no.status, 404, bad);
      assert.equal(no.body, 'no: not found', bad);
    }
    assert.equal((await request(server.url, '/file?path=.env&dotfiles=allow')).body, 'SECRET=1');
  });

  test('ETag on a GET route, 304 when the client has it; app.set("etag", false) turns it off', T, async (t) => {
    const server = await serve(t, { root: appWith() });
    const r = await request(server.url, '/hello');
    assert.match(r.headers.etag, /^W\/"5-[0-9a-f]+"$/);
    const again = await request(server.url, '/hello', { headers: { 'if-none-match': r.headers.etag } });
    assert.equal(again.status, 304);
    assert.equal(again.body, '');
    assert.equal((await request(server.url, '/hello', { headers: { 'if-none-match': '"other"' } })).status, 200);
    assert.equal((await request(server.url, '/hello', { method: 'POST' })).headers.etag, undefined);
    const dated = await request(server.url, '/dated', { headers: { 'if-modified-since': 'Wed, 01 Jan 2031 00:00:00 GMT' } });
    assert.equal(dated.status, 304);
    const off = await serve(t, { root: appWith(), env: { NO_ETAG: '1' } });
    assert.equal((await request(off.url, '/hello')).headers.etag, undefined);
  });
});
