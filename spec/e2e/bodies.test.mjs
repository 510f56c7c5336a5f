// Request bodies and the request side of HTTP, end to end: Expect:
// 100-continue, Host and request targets (RFC 9112), OPTIONS on a route,
// slow bodies (408), large bodies spooled to disk, multipart/form-data
// uploads (req.files), over HTTP and over FastCGI behind nginx.
//
// The fixture app (fixtures/bodies) echoes what it got. Each test starts its
// own moonwire, usually with --tmp-dir pointing at an empty directory of its
// own, so that what the server left behind can be checked.
//
// Run from spec/e2e/ with `node --test bodies.test.mjs`.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FcgiConnection, TYPE, begin, pairs, record, startNginx, stream } from './fcgi.mjs';
import { RawConnection, delay, makeTempDir, parseResponse, rawRequest, request, serve } from './helpers.mjs';
import { client, connected, setup } from './sio.mjs';

const T = { timeout: 30_000 };
const ROOT = path.join(import.meta.dirname, 'fixtures', 'bodies');

/** moonwire with the fixture app and a temporary directory of its own. */
async function start(t, args = [], options = {}) {
  const tmp = makeTempDir('moonwire-tmp-');
  const srv = await serve(t, { root: ROOT, args: ['--tmp-dir', tmp, ...args], ...options });
  srv.tmp = tmp;
  return srv;
}

/** The names in dir. */
const left = (dir) => fs.readdirSync(dir);

/** Waits until dir is empty; resolves what is still there after timeout ms. */
async function emptied(dir, timeout = 5_000) {
  const end = Date.now() + timeout;
  while (left(dir).length && Date.now() < end) await delay(20);
  return left(dir);
}

/** Runs a command; resolves { code, stdout (Buffer), stderr }. */
function run(cmd, args, { timeout = 20_000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    proc.stdout.on('data', (c) => out.push(c));
    proc.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeout);
    proc.on('error', reject);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** Random bytes with CRLFs and boundary-like runs in them (curl's and undici's prefixes). */
function trickyBytes(n) {
  const buf = crypto.randomBytes(n);
  const traps = ['\r\n--', '\r\n------------------------', '\r\n------formdata-undici-', '--\r\n', '\r\n\r\n'];
  for (let pos = 100; pos < n - 40; pos += 4099) buf.write(traps[pos % traps.length], pos, 'latin1');
  return buf;
}

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// ==========================================================================
describe('Expect: 100-continue', () => {
  test('the server says 100 Continue when the headers are in, before the client sends its body', T, async (t) => {
    const srv = await start(t);
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    await conn.write('POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
    assert.ok(await conn.waitFor(() => conn.data.length >= 25, 3_000), `no 100 Continue; got ${JSON.stringify(conn.data)}`);
    assert.equal(conn.data, 'HTTP/1.1 100 Continue\r\n\r\n');
    conn.data = '';
    await conn.write('hello');
    const res = await conn.readResponse();
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
  });

  test('curl gets its 100 Continue for a large POST (it would wait a second for it, then send anyway)', T, async (t) => {
    const srv = await start(t, ['--max-body', String(4 * 1024 * 1024)]);
    const file = path.join(makeTempDir(), 'body.bin');
    // curl 7.88 asks for 100-continue from 1 MiB up (older ones from 1 KB).
    const body = crypto.randomBytes(1536 * 1024);
    fs.writeFileSync(file, body);
    const { code, stdout, stderr } = await run('curl', ['-sS', '-v', '--data-binary', `@${file}`,
      '-H', 'Content-Type: application/octet-stream', `${srv.url}/echo`]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /> Expect: 100-continue/);
    assert.match(stderr, /< HTTP\/1\.1 100 Continue/, 'curl saw no 100 Continue');
    assert.doesNotMatch(stderr, /Done waiting for 100-continue/);
    assert.ok(stdout.equals(body));
  });

  test('a body over --max-body is refused with 413 at once, without 100 Continue, and the connection closes', T, async (t) => {
    const srv = await start(t, ['--max-body', '1000']);
    const { data, closed } = await rawRequest(srv.port,
      'POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n');
    assert.ok(closed);
    assert.doesNotMatch(data, /100 Continue/);
    const res = parseResponse(data, { closed: true });
    assert.equal(res.status, 413);
    assert.match(res.body, /--max-body/);
  });

  test('an expectation other than 100-continue gets 417', T, async (t) => {
    const srv = await start(t);
    const { data } = await rawRequest(srv.port, 'POST /echo HTTP/1.1\r\nHost: test\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\nok');
    assert.equal(parseResponse(data, { closed: true }).status, 417);
  });
});

// ==========================================================================
describe('Host and request targets (RFC 9112)', () => {
  test('HTTP/1.1 without Host, or with two, gets 400; HTTP/1.0 may leave it out', T, async (t) => {
    const srv = await start(t);
    for (const bytes of ['GET /target HTTP/1.1\r\n\r\n', 'GET /target HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n']) {
      const { data, closed } = await rawRequest(srv.port, bytes);
      assert.ok(closed);
      const res = parseResponse(data, { closed: true });
      assert.equal(res.status, 400, JSON.stringify(bytes));
      assert.match(res.body, /Host/);
    }
    const { data } = await rawRequest(srv.port, 'GET /target HTTP/1.0\r\n\r\n');
    assert.equal(parseResponse(data, { closed: true }).status, 200);
  });

  test('an absolute-form target reaches the route as its path and query, with the Host it names', T, async (t) => {
    const srv = await start(t);
    const { data } = await rawRequest(srv.port,
      'GET http://example.test:8080/target?a=1&b=two HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n');
    const res = parseResponse(data, { closed: true });
    assert.equal(res.status, 200, data.slice(0, 200));
    assert.deepEqual(JSON.parse(res.body), { url: '/target?a=1&b=two', path: '/target', query: { a: '1', b: 'two' }, host: 'example.test:8080' });
    // No path at all: "/".
    const home = parseResponse((await rawRequest(srv.port, 'GET http://example.test HTTP/1.1\r\nConnection: close\r\n\r\n')).data, { closed: true });
    assert.equal(home.status, 200);
    assert.equal(home.body, 'home');
  });

  test('authority-form is only for CONNECT, which gets 405; "*" only for OPTIONS', T, async (t) => {
    const srv = await start(t);
    const status = async (bytes) => parseResponse((await rawRequest(srv.port, bytes)).data, { closed: true })?.status;
    assert.equal(await status('GET example.test:80 HTTP/1.1\r\nHost: example.test\r\n\r\n'), 400);
    assert.equal(await status('CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n'), 405);
    assert.equal(await status('GET * HTTP/1.1\r\nHost: test\r\n\r\n'), 400);
    const { data } = await rawRequest(srv.port, 'OPTIONS * HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n');
    const res = parseResponse(data, { closed: true });
    assert.equal(res.status, 200);
    assert.match(res.headers.allow, /GET, HEAD, POST/);
  });
});

// ==========================================================================
describe('OPTIONS on a route', () => {
  test('OPTIONS answers 200 with the path\'s methods in Allow, as Express does', T, async (t) => {
    const srv = await start(t);
    const res = await request(srv.url, '/echo', { method: 'OPTIONS' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.allow, 'POST, PUT, OPTIONS');
    assert.equal(res.body, 'POST, PUT, OPTIONS');
    // The example app's pet list.
    const pets = await serve(t);
    const list = await request(pets.url, '/pets', { method: 'OPTIONS' });
    assert.equal(list.status, 200);
    for (const m of ['GET', 'HEAD', 'POST', 'OPTIONS']) assert.ok(list.headers.allow.split(', ').includes(m), list.headers.allow);
  });

  test('a route the app registered for OPTIONS answers itself; other methods still get 405; unknown paths 404', T, async (t) => {
    const srv = await start(t);
    assert.equal((await request(srv.url, '/own-options', { method: 'OPTIONS' })).status, 204);
    const del = await request(srv.url, '/echo', { method: 'DELETE' });
    assert.equal(del.status, 405);
    assert.equal(del.headers.allow, 'POST, PUT, OPTIONS');
    assert.equal((await request(srv.url, '/nowhere', { method: 'OPTIONS' })).status, 404);
  });
});

// ==========================================================================
describe('slow bodies', () => {
  test('a body that stops arriving gets 408 after --body-timeout, and the connection closes', T, async (t) => {
    const srv = await start(t, ['--body-timeout', '300']);
    const started = performance.now();
    const { data, closed } = await rawRequest(srv.port,
      'POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nab', { timeout: 5_000 });
    const elapsed = performance.now() - started;
    assert.ok(closed, 'the connection should close');
    assert.ok(elapsed >= 150, `closed after ${elapsed.toFixed(0)} ms: too early for a 300 ms timeout`);
    const res = parseResponse(data, { closed: true });
    assert.equal(res?.status, 408, JSON.stringify(data.slice(0, 100)));
    assert.match(res.body, /did not arrive in time/);
  });

  test('a body trickled a byte at a time, each in time, still gets 408 after --body-deadline', T, async (t) => {
    const srv = await start(t, ['--body-timeout', '1000', '--body-deadline', '800']);
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    await conn.write('POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n');
    const started = performance.now();
    for (let i = 0; i < 100 && !conn.closed && !conn.data; i++) {
      await conn.write('x').catch(() => {});
      await delay(100);
    }
    assert.ok(await conn.waitClose(3_000), 'the connection should close');
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 5_000, `still open after ${elapsed.toFixed(0)} ms of trickling`);
    assert.equal(parseResponse(conn.data, { closed: true })?.status, 408);
  });

  test('a slow body that keeps coming within the limits is served', T, async (t) => {
    const srv = await start(t, ['--body-timeout', '600']);
    const conn = await RawConnection.open(srv.port);
    t.after(() => conn.destroy());
    await conn.write('POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n');
    for (const ch of 'hello') {
      await delay(200);
      await conn.write(ch);
    }
    const res = await conn.readResponse();
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
  });

  test('over FastCGI, STDIN that stops coming gets 408 after --body-timeout', T, async (t) => {
    const srv = await start(t, ['--body-timeout', '300', '--fastcgi', '127.0.0.1:0']);
    const port = Number(/moonwire FastCGI responder on \S+:(\d+)/.exec(srv.stdout())[1]);
    const conn = await FcgiConnection.open(port);
    t.after(() => conn.destroy());
    await conn.write(Buffer.concat([
      begin(1), stream(TYPE.PARAMS, 1, pairs({ REQUEST_METHOD: 'POST', REQUEST_URI: '/echo', CONTENT_LENGTH: '10' })),
      record(TYPE.STDIN, 1, 'ab'),
    ]));
    const res = await conn.response(1, 5_000);
    assert.equal(res.cgi.status, 408);
    assert.match(res.cgi.body, /did not arrive in time/);
  });
});

// ==========================================================================
describe('large bodies go to a temporary file', () => {
  test('a 3 MB body, with a length or chunked, reaches the route whole and nothing is left behind', T, async (t) => {
    const srv = await start(t, ['--max-body', String(10 * 1024 * 1024)]);
    const body = trickyBytes(3 * 1024 * 1024);
    const sized = await request(srv.url, '/echo', { method: 'POST', body, timeout: 15_000 });
    assert.equal(sized.status, 200);
    assert.equal(sha(sized.raw), sha(body));
    // Chunked (Node sends chunked without a length), read in pieces by the route.
    const chunked = await new Promise((resolve, reject) => {
      import('node:http').then(({ default: http }) => {
        const req = http.request(`${srv.url}/pieces?n=100000`, { method: 'POST', agent: false }, (res) => {
          const parts = [];
          res.on('data', (c) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, raw: Buffer.concat(parts) }));
        });
        req.on('error', reject);
        for (let off = 0; off < body.length; off += 65536) req.write(body.subarray(off, off + 65536));
        req.end();
      });
    });
    assert.equal(chunked.status, 200);
    assert.equal(sha(chunked.raw), sha(body));
    const pieces = chunked.headers['x-pieces'].split(',').map(Number);
    assert.equal(pieces.length, Math.ceil(body.length / 100000));
    assert.ok(pieces.slice(0, -1).every((n) => n === 100000), chunked.headers['x-pieces']);
    assert.deepEqual(await emptied(srv.tmp), []);
  });

  /** The server's open files in dir (a spooled body is one, unlinked: "(deleted)"). */
  const openIn = (srv, dir) => fs.readdirSync(`/proc/${srv.proc.pid}/fd`)
    .map((fd) => { try { return fs.readlinkSync(`/proc/${srv.proc.pid}/fd/${fd}`); } catch { return ''; } })
    .filter((target) => target.startsWith(`${dir}/`));

  /** Opens a connection that sends the headers of a body of `declared` bytes and `sent` of them. */
  async function partBody(srv, declared, sent) {
    const conn = await RawConnection.open(srv.port);
    await conn.write(`POST /size HTTP/1.1\r\nHost: test\r\nContent-Length: ${declared}\r\n\r\n`);
    await conn.write(Buffer.alloc(sent, 'b'));
    return conn;
  }

  async function waitOpen(srv, n) {
    const end = Date.now() + 5_000;
    while (openIn(srv, srv.tmp).length < n && Date.now() < end) await delay(20);
    return openIn(srv, srv.tmp);
  }

  test('a body over --body-buffer goes to an unlinked file in --tmp-dir as it arrives; a smaller one stays in memory', T, async (t) => {
    const srv = await start(t, ['--body-buffer', '1024']);
    const small = await partBody(srv, 1000, 900);
    const big = await partBody(srv, 2000, 1500);
    t.after(() => { small.destroy(); big.destroy(); });
    await waitOpen(srv, 1);
    await delay(200);
    // The file is made, then unlinked, off the loop: on a loaded machine
    // /proc may show it between the two for a moment.
    const end = Date.now() + 5_000;
    let files = openIn(srv, srv.tmp);
    while (files.length === 1 && !files[0].endsWith(' (deleted)') && Date.now() < end) {
      await delay(20);
      files = openIn(srv, srv.tmp);
    }
    assert.equal(files.length, 1, `one spooled body expected: ${files}`);
    assert.match(files[0], /moonwire-body-[0-9a-f]{16} \(deleted\)$/);
    assert.deepEqual(left(srv.tmp), [], 'unlinked at once: nothing to clean up if the process dies');
    await small.write(Buffer.alloc(100, 'b'));
    await big.write(Buffer.alloc(500, 'b'));
    assert.equal((await small.readResponse()).body, '1000');
    assert.equal((await big.readResponse()).body, '2000');
  });

  test('past --body-memory across all connections, even a small body goes to disk', T, async (t) => {
    const srv = await start(t, ['--body-memory', '1000']);
    const first = await partBody(srv, 800, 700);
    await delay(200);
    assert.equal(openIn(srv, srv.tmp).length, 0, 'the first fits in memory');
    const second = await partBody(srv, 800, 700);
    t.after(() => { first.destroy(); second.destroy(); });
    assert.equal((await waitOpen(srv, 1)).length, 1, 'the second goes to disk');
    await first.write(Buffer.alloc(100, 'b'));
    await second.write(Buffer.alloc(100, 'b'));
    assert.equal((await first.readResponse()).body, '800');
    assert.equal((await second.readResponse()).body, '800');
  });

  test('a form over the body buffer still has its _method override and its fields; a JSON body its req.json', T, async (t) => {
    const srv = await start(t, ['--body-buffer', '1024']);
    const form = `_method=PUT&text=${'z'.repeat(100_000)}`;
    const put = await request(srv.url, '/echo', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form,
    });
    assert.equal(put.status, 200, put.body.slice(0, 200));
    assert.equal(put.body, form);
    const items = Array.from({ length: 5000 }, (_, i) => `item number ${i}`);
    const json = await request(srv.url, '/json', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items }),
    });
    assert.deepEqual(JSON.parse(json.body), { items: 5000, last: 'item number 4999' });
  });

  test('a client that leaves in the middle of a large body leaves nothing behind', T, async (t) => {
    const srv = await start(t);
    const conn = await RawConnection.open(srv.port);
    await conn.write('POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n');
    await conn.write(Buffer.alloc(500_000, 'q'));
    await delay(100);
    conn.destroy();
    assert.deepEqual(await emptied(srv.tmp), []);
    assert.equal((await request(srv.url, '/target')).status, 200);
  });

  test('SIGTERM while a large body arrives: the server exits cleanly and leaves nothing behind', T, async (t) => {
    const tmp = makeTempDir('moonwire-tmp-');
    const { startServer, assertCleanExit } = await import('./helpers.mjs');
    const srv = await startServer({ root: ROOT, args: ['--tmp-dir', tmp] });
    const conn = await RawConnection.open(srv.port);
    await conn.write('POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n');
    await conn.write(Buffer.alloc(400_000, 'q'));
    await delay(100);
    srv.signal('SIGTERM');
    await delay(100);
    conn.destroy();
    assertCleanExit(await srv.stop(), srv.stderr());
    assert.deepEqual(left(tmp), []);
  });

  test('Engine.IO polling payloads over the body buffer still arrive', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--body-buffer', '1024'] });
    const socket = await connected(client(srv, '/', { transports: ['polling'] }));
    const big = 'p'.repeat(200_000);
    const back = await socket.timeout(5_000).emitWithAck('echo', big);
    assert.equal(back, big);
  });

  test(`many clients sending large bodies slowly at once: every body arrives whole, nothing is left behind`, { timeout: 120_000 }, async (t) => {
    // 1,000 clients is the figure in the README (bench/bodies.mjs); fewer here, to stay quick.
    const n = Number(process.env.MOONWIRE_E2E_BODY_CLIENTS ?? 200);
    const declared = 1024 * 1024;
    const sent = 900 * 1024;
    const srv = await start(t, ['--production']);
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'))[1]) / 1024;
    let peak = 0;
    const sampler = setInterval(() => { peak = Math.max(peak, rss()); }, 50);
    t.after(() => clearInterval(sampler));
    const conns = await Promise.all(Array.from({ length: n }, async () => {
      const conn = await RawConnection.open(srv.port);
      await conn.write(`POST /size HTTP/1.1\r\nHost: test\r\nContent-Length: ${declared}\r\n\r\n`);
      await conn.write(Buffer.alloc(sent, 's'));
      return conn;
    }));
    for (let i = 0; i < 5; i++) {
      await Promise.all(conns.map((c) => c.write('t')));
      await delay(200);
    }
    const trickling = rss();
    await Promise.all(conns.map((c) => c.write(Buffer.alloc(declared - sent - 5, 'u'))));
    const answers = await Promise.all(conns.map((c) => c.readResponse({ timeout: 60_000 })));
    for (const c of conns) c.destroy();
    clearInterval(sampler);
    assert.ok(answers.every((r) => r.status === 200 && r.body === String(declared)));
    assert.deepEqual(await emptied(srv.tmp), []);
    t.diagnostic(`${n} clients x ${sent} B then trickling: server RSS peak ${peak.toFixed(1)} MiB, ${trickling.toFixed(1)} MiB while they trickled`);
  });
});

// ==========================================================================
describe('multipart/form-data uploads', () => {
  test('curl -F: fields, a repeated field, and files of several MB with CRLFs and boundary-like bytes in them', T, async (t) => {
    const srv = await start(t, ['--max-body', String(20 * 1024 * 1024)]);
    const dir = makeTempDir();
    const keep = makeTempDir();
    const big = trickyBytes(5 * 1024 * 1024 + 123);
    const small = Buffer.from('tiny\r\n--\r\n');
    fs.writeFileSync(path.join(dir, 'photo.png'), big);
    fs.writeFileSync(path.join(dir, 'notes.txt'), small);
    const { code, stdout, stderr } = await run('curl', ['-sS', '-F', 'title=Holiday snaps', '-F', 'tag=sea', '-F', 'tag=sun',
      '-F', `photo=@${path.join(dir, 'photo.png')};type=image/png`, '-F', `photo=@${path.join(dir, 'notes.txt')}`,
      `${srv.url}/upload?keep=${keep}`]);
    assert.equal(code, 0, stderr);
    const got = JSON.parse(stdout.toString());
    assert.deepEqual(got.form, { title: 'Holiday snaps', tag: ['sea', 'sun'] });
    assert.equal(got.body, '');
    const [photo, notes] = got.files.photo;
    assert.deepEqual([photo.filename, photo.type, photo.size], ['photo.png', 'image/png', big.length]);
    assert.deepEqual([notes.filename, notes.type, notes.size], ['notes.txt', 'text/plain', small.length]);
    assert.equal(sha(fs.readFileSync(photo.kept)), sha(big));
    assert.ok(fs.readFileSync(notes.kept).equals(small));
    assert.deepEqual(await emptied(srv.tmp), [], 'kept files moved out, nothing else left');
  });

  test('Node FormData and fetch: the files are there during the request and removed after the response', T, async (t) => {
    const srv = await start(t);
    const form = new FormData();
    form.append('name', 'Rex');
    form.append('bio', 'line one\r\nline two');
    const bytes = trickyBytes(300_000);
    form.append('doc', new Blob([bytes], { type: 'application/pdf' }), 'cv.pdf');
    form.append('empty', new Blob([]), 'empty.txt');
    const res = await fetch(`${srv.url}/upload`, { method: 'POST', body: form });
    assert.equal(res.status, 200);
    const got = await res.json();
    assert.deepEqual(got.form, { name: 'Rex', bio: 'line one\r\nline two' });
    assert.deepEqual([got.files.doc.filename, got.files.doc.type, got.files.doc.size], ['cv.pdf', 'application/pdf', bytes.length]);
    assert.equal(got.files.empty.size, 0);
    assert.ok(got.files.doc.path.startsWith(srv.tmp));
    assert.deepEqual(await emptied(srv.tmp), []);
    assert.ok(!fs.existsSync(got.files.doc.path));
  });

  test('an unterminated body and a missing boundary get 400 with the reason', T, async (t) => {
    const srv = await start(t);
    const cut = '--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nno end';
    const one = await request(srv.url, '/upload', {
      method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=XyZ' }, body: cut,
    });
    assert.equal(one.status, 400);
    assert.match(one.body, /ends before its closing boundary/);
    const two = await request(srv.url, '/upload', {
      method: 'POST', headers: { 'content-type': 'multipart/form-data' }, body: cut,
    });
    assert.equal(two.status, 400);
    assert.match(two.body, /boundary/);
    assert.deepEqual(await emptied(srv.tmp), []);
  });

  test('upload limits answer 413 naming the flag, and leave no file behind', T, async (t) => {
    for (const [flag, value, expect] of [['--upload-max-files', '1', /more than 1 files/],
      ['--upload-max-file-size', '1000', /over 1000 bytes/], ['--upload-max-fields', '1', /more than 1 fields/],
      ['--upload-max-field-size', '3', /field 'a' is over 3 bytes/]]) {
      const srv = await start(t, [flag, value]);
      const form = new FormData();
      form.append('a', 'four');
      form.append('b', 'more');
      form.append('f1', new Blob([crypto.randomBytes(5000)]), 'one.bin');
      form.append('f2', new Blob([crypto.randomBytes(5000)]), 'two.bin');
      const res = await fetch(`${srv.url}/upload`, { method: 'POST', body: form });
      assert.equal(res.status, 413, flag);
      const text = await res.text();
      assert.match(text, expect);
      assert.ok(text.includes(flag), text);
      assert.deepEqual(await emptied(srv.tmp), [], flag);
    }
  });

  test('the example app\'s pet form works as multipart/form-data, its CSRF token a _csrf field like any other', T, async (t) => {
    const srv = await serve(t);
    const page = await request(srv.url, '/pets/new');
    const token = /name="_csrf" value="([0-9a-f]+)"/.exec(page.body)[1];
    const cookie = (page.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
    const post = (fields) => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      return fetch(`${srv.url}/pets`, { method: 'POST', body: form, redirect: 'manual', headers: { origin: srv.url, cookie } });
    };
    assert.equal((await post({ name: 'Forged', species: 'cat' })).status, 403);
    const made = await post({ name: 'Multipart Max', species: 'dog', _csrf: token });
    assert.equal(made.status, 303);
    const pet = await request(srv.url, made.headers.get('location'));
    assert.match(pet.body, /Multipart Max/);
  });

  test('behind nginx over FastCGI, an upload reaches the route the same way', T, async (t) => {
    const srv = await start(t, ['--fastcgi', '127.0.0.1:0']);
    const fastcgi = /moonwire FastCGI responder on (\S+)/.exec(srv.stdout())[1];
    const nginx = await startNginx(t, { fastcgi, httpPort: srv.port });
    const bytes = trickyBytes(200_000);
    const form = new FormData();
    form.append('title', 'via nginx');
    form.append('doc', new Blob([bytes], { type: 'image/gif' }), 'a.gif');
    const res = await fetch(`${nginx.url}/upload`, { method: 'POST', body: form });
    assert.equal(res.status, 200);
    const got = await res.json();
    assert.deepEqual(got.form, { title: 'via nginx' });
    assert.deepEqual([got.files.doc.filename, got.files.doc.size], ['a.gif', bytes.length]);
    assert.deepEqual(await emptied(srv.tmp), []);
  });
});
