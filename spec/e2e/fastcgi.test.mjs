// moonwire's FastCGI responder (--fastcgi): the example app behind the real
// nginx with the README's configuration (pages over fastcgi_pass, the chat
// over proxy_pass with the real socket.io-client), Debian's cgi-fcgi, and
// records written by hand on a raw socket for what neither of them sends.
//
// Each test starts its own moonwire (and nginx) on free loopback ports and
// stops them. nginx and cgi-fcgi must be installed: the tests fail, not
// skip, without them (tools/deps.sh installs both).
//
// Run from spec/e2e/ with `node --test fastcgi.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';

import { io as ioClient } from 'socket.io-client';

import { REPO_ROOT, delay, makeTempDir, postForm, request, runBinary, startServer, tempDbPath } from './helpers.mjs';
import {
  FcgiConnection, STATUS, TYPE, begin, cgiFcgi, fcgiRequest, pairs, readPairs, record, serveFastcgi,
  startNginx, stream,
} from './fcgi.mjs';
import { WAIT, ask, setup } from './sio.mjs';

const T = { timeout: 30_000 };

/** moonwire (the example app) with --fastcgi, and nginx in front of it. */
async function stack(t, { env } = {}) {
  const srv = await setup(t, { args: ['--fastcgi', '127.0.0.1:0'], env });
  const m = /moonwire FastCGI responder on (\S+)/.exec(srv.stdout());
  assert.ok(m, `the FastCGI line on stdout:\n${srv.stdout()}`);
  const nginx = await startNginx(t, { fastcgi: m[1], httpPort: srv.port });
  t.after(() => {
    // What nginx thought of moonwire's answers: nothing worth an error.
    const bad = nginx.errorLog().split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
    assert.deepEqual(bad, [], 'nginx logged errors');
  });
  return { srv, nginx, fastcgi: m[1] };
}

/** The upstream nginx used for each request in its access log, as "METHOD URI STATUS UPSTREAM". */
function upstreams(nginx) {
  return nginx.accessLog().trim().split('\n').filter(Boolean);
}

// ==========================================================================
describe('behind nginx with the README configuration', () => {
  test('the pet pages over FastCGI: the list, a form POST that redirects, the new pet, 404 and 422', T, async (t) => {
    const { nginx, fastcgi } = await stack(t);
    const base = nginx.url;

    const empty = await request(base, '/pets');
    assert.equal(empty.status, 200);
    assert.match(empty.headers['content-type'], /^text\/html/);
    assert.match(empty.body, /No pets yet/);

    const created = await postForm(base, '/pets', { name: 'Mr Whiskers!', species: 'cat' });
    assert.equal(created.status, 303, created.body.slice(0, 300));
    assert.match(created.headers.location, /^\/pets\/\d+$/);

    const page = await request(base, created.headers.location);
    assert.equal(page.status, 200);
    assert.match(page.body, /Mr Whiskers!/, 'the form body reached the app');
    const list = await request(base, '/pets');
    assert.ok(list.body.includes(`href="${created.headers.location}"`), 'the list links to the new pet');

    const missing = await request(base, '/pets/999999');
    assert.equal(missing.status, 404);
    assert.match(missing.headers['content-type'], /^text\/html/);

    const invalid = await postForm(base, '/pets', { name: '', species: 'cat' });
    assert.equal(invalid.status, 422);
    assert.match(invalid.body, /<form/, 'the form again, with the message');

    const css = await request(base, '/style.css');
    assert.equal(css.status, 200);
    assert.match(css.headers['content-type'], /^text\/css/);
    const again = await request(base, '/style.css', { headers: { 'if-none-match': css.headers.etag } });
    assert.equal(again.status, 304, 'If-None-Match reached the app as a header');

    const head = await request(base, '/pets', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');

    const lines = upstreams(nginx);
    const pages = lines.filter((l) => / \/pets| \/style\.css/.test(l));
    assert.ok(pages.length >= 8, lines.join('\n'));
    for (const line of pages) assert.ok(line.endsWith(` ${fastcgi}`), `over FastCGI: ${line}`);
  });

  test('a body larger than nginx buffers in memory arrives whole', T, async (t) => {
    const { nginx } = await stack(t);
    const name = 'Bartholomew';
    const filler = 'y'.repeat(200_000); // in several STDIN records, through nginx's temp file
    const res = await postForm(nginx.url, '/pets', { name, species: 'dog', filler });
    assert.equal(res.status, 303, res.body.slice(0, 300));
    const page = await request(nginx.url, res.headers.location);
    assert.match(page.body, new RegExp(name));
  });

  for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
    test(`the chat through nginx with socket.io-client (${transports.join(' then ')})`, T, async (t) => {
      const { srv, nginx } = await stack(t, { env: { CHAT_LEAVE_GRACE_MS: '0' } });
      const chatPage = await request(nginx.url, '/');
      assert.equal(chatPage.status, 200);
      assert.match(chatPage.body, /<script src="\/socket.io\/socket.io.js"><\/script>/);
      const clientJs = await request(nginx.url, '/socket.io/socket.io.js');
      assert.equal(clientJs.status, 200);

      const connect = async () => {
        const socket = ioClient(nginx.url, { forceNew: true, reconnection: false, timeout: WAIT, transports });
        srv.track(() => socket.disconnect());
        await new Promise((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('connect_error', reject);
        });
        return socket;
      };
      const alice = await connect();
      const bob = await connect();
      if (transports.includes('websocket')) {
        for (const s of [alice, bob]) {
          if (s.io.engine.transport.name !== 'websocket') {
            await new Promise((resolve) => s.io.engine.once('upgrade', resolve));
          }
          assert.equal(s.io.engine.transport.name, 'websocket');
        }
      }
      assert.equal((await ask(alice, 'nickname', 'alice')).nickname, 'alice');
      assert.equal((await ask(bob, 'nickname', 'bob')).nickname, 'bob');

      const heard = new Promise((resolve) => bob.once('chat message', (msg) => resolve(msg)));
      const ack = await ask(alice, 'chat message', 'hello through nginx', 'alice-1');
      assert.ok(Number.isInteger(ack.id), JSON.stringify(ack));
      const msg = await heard;
      assert.equal(msg.text, 'hello through nginx');
      assert.equal(msg.nickname, 'alice');

      const sio = upstreams(nginx).filter((l) => l.includes(' /socket.io/'));
      assert.ok(sio.length > 0);
      for (const line of sio) assert.ok(line.endsWith(` 127.0.0.1:${srv.port}`), `over HTTP: ${line}`);
    });
  }
});

// ==========================================================================
describe('cgi-fcgi', () => {
  const env = (vars) => ({ GATEWAY_INTERFACE: 'CGI/1.1', SERVER_PROTOCOL: 'HTTP/1.1', REMOTE_ADDR: '127.0.0.1', ...vars });

  test('a page comes back CGI-style: Status, headers, blank line, body; no Connection header', T, async (t) => {
    const srv = await serveFastcgi(t);
    const { cgi, stdout } = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets' }));
    assert.ok(cgi, `a CGI response: ${stdout.toString('latin1').slice(0, 200)}`);
    assert.equal(cgi.lines[0], 'Status: 200 OK', 'the status comes first');
    assert.match(cgi.headers['content-type'], /^text\/html/);
    assert.equal(cgi.headers.connection, undefined);
    assert.equal(Number(cgi.headers['content-length']), Buffer.byteLength(cgi.body));
    assert.match(cgi.body, /No pets yet/);
  });

  test('a form POST on stdin creates a pet and redirects; the pet page shows it', T, async (t) => {
    const srv = await serveFastcgi(t);
    const body = 'name=Biscuit&species=rabbit';
    const { cgi } = await cgiFcgi(srv.fastcgi, env({
      REQUEST_METHOD: 'POST', REQUEST_URI: '/pets', CONTENT_TYPE: 'application/x-www-form-urlencoded',
      CONTENT_LENGTH: String(body.length),
    }), body);
    assert.equal(cgi.status, 303);
    assert.equal(cgi.reason, 'See Other');
    assert.match(cgi.headers.location, /^\/pets\/\d+$/);
    const page = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: cgi.headers.location }));
    assert.equal(page.cgi.status, 200);
    assert.match(page.cgi.body, /Biscuit/);
  });

  test('404, 422 and HEAD', T, async (t) => {
    const srv = await serveFastcgi(t);
    const missing = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/no/such/page' }));
    assert.equal(missing.cgi.lines[0], 'Status: 404 Not Found');
    const body = 'name=&species=cat';
    const invalid = await cgiFcgi(srv.fastcgi, env({
      REQUEST_METHOD: 'POST', REQUEST_URI: '/pets', CONTENT_TYPE: 'application/x-www-form-urlencoded',
      CONTENT_LENGTH: String(body.length),
    }), body);
    assert.equal(invalid.cgi.status, 422);
    const head = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'HEAD', REQUEST_URI: '/style.css' }));
    assert.equal(head.cgi.status, 200);
    assert.ok(Number(head.cgi.headers['content-length']) > 0);
    assert.equal(head.cgi.body, '');
  });

  test('without REQUEST_URI the URL is SCRIPT_NAME + PATH_INFO and QUERY_STRING', T, async (t) => {
    const srv = await serveFastcgi(t);
    const { cgi } = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', SCRIPT_NAME: '/api', PATH_INFO: '/pets', QUERY_STRING: 'x=1' }));
    assert.equal(cgi.status, 200);
    assert.match(cgi.headers['content-type'], /^application\/json/);
    assert.deepEqual(JSON.parse(cgi.body), []);
  });

  test('URL and headers over 16 KiB get 431', T, async (t) => {
    const srv = await serveFastcgi(t);
    const { cgi } = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets', HTTP_X_BIG: 'b'.repeat(17 * 1024) }));
    assert.equal(cgi.lines[0], 'Status: 431 Request Header Fields Too Large');
    const fine = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets', HTTP_X_BIG: 'b'.repeat(8 * 1024) }));
    assert.equal(fine.cgi.status, 200, 'under the limit, a long header (4-byte length) is fine');
  });

  test('--max-header-size holds over FastCGI too', T, async (t) => {
    const srv = await serveFastcgi(t, { args: ['--max-header-size', '65536'] });
    const { cgi } = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets', HTTP_X_BIG: 'b'.repeat(60 * 1024) }));
    assert.equal(cgi.status, 200, '60 KiB of headers under a 64 KiB limit');
    const over = await cgiFcgi(srv.fastcgi, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets', HTTP_X_BIG: 'b'.repeat(70 * 1024) }));
    assert.equal(over.cgi.lines[0], 'Status: 431 Request Header Fields Too Large');
  });

  test('a body over --max-body gets 413', T, async (t) => {
    const srv = await serveFastcgi(t, { args: ['--max-body', '100'] });
    const body = `name=${'n'.repeat(200)}&species=cat`;
    const { cgi } = await cgiFcgi(srv.fastcgi, env({
      REQUEST_METHOD: 'POST', REQUEST_URI: '/pets', CONTENT_TYPE: 'application/x-www-form-urlencoded',
      CONTENT_LENGTH: String(body.length),
    }), body);
    assert.equal(cgi.lines[0], 'Status: 413 Payload Too Large');
  });

  test('--fastcgi unix:/path listens on a Unix socket, removed when moonwire stops', T, async (t) => {
    const dir = makeTempDir('moonwire-sock-');
    const sock = path.join(dir, 'moonwire.sock');
    fs.writeFileSync(path.join(dir, 'keep'), ''); // only the socket goes
    const srv = await serveFastcgi(t, { fastcgi: `unix:${sock}` });
    assert.equal(srv.fastcgi, `unix:${sock}`);
    assert.ok(fs.statSync(sock).isSocket());
    const { cgi } = await cgiFcgi(sock, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets' }));
    assert.equal(cgi.status, 200);
    assert.equal(await srv.stop(), 0);
    assert.equal(fs.existsSync(sock), false, 'the socket file is removed');
    assert.equal(fs.existsSync(path.join(dir, 'keep')), true);
  });

  test('--help lists --fastcgi; an address that is neither unix:/path nor IP:port is refused at start-up', T, async () => {
    const help = await runBinary(['--help']);
    assert.match(help.stdout, /--fastcgi ADDR .*unix:\/path or host:port/);
    for (const bad of ['localhost:9000', '127.0.0.1', 'unix:', `unix:/tmp/${'x'.repeat(120)}`]) {
      const run = await runBinary(['--root', REPO_ROOT, '--db', tempDbPath(), '--port', '0', '--quiet', '--fastcgi', bad]);
      assert.equal(run.code, 1, bad);
      assert.match(run.stderr, /cannot listen for FastCGI on .*: (expected unix:\/path or IP:port|name too long)/, bad);
    }
  });

  test('a socket file left behind by an earlier run is replaced', T, async (t) => {
    const dir = makeTempDir('moonwire-sock-');
    const sock = path.join(dir, 'moonwire.sock');
    const first = await startServer({ args: ['--fastcgi', `unix:${sock}`] });
    first.signal('SIGKILL'); // no clean stop: the file stays
    await first.exited;
    assert.ok(fs.existsSync(sock));
    const second = await serveFastcgi(t, { fastcgi: `unix:${sock}` });
    const { cgi } = await cgiFcgi(sock, env({ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets' }));
    assert.equal(cgi.status, 200);
    assert.equal(await second.stop(), 0);
  });
});

// ==========================================================================
describe('records written by hand', () => {
  const GET = (uri, more = {}) => ({ REQUEST_METHOD: 'GET', REQUEST_URI: uri, ...more });

  test('the limits per client address hold on the HTTP listener, not on FastCGI, whose clients are all the web server', T, async (t) => {
    const srv = await serveFastcgi(t, { args: ['--max-conns-per-ip', '1', '--limit-loopback'] });
    const held = net.connect(srv.port, '127.0.0.1');
    t.after(() => held.destroy());
    await new Promise((resolve, reject) => { held.once('connect', resolve); held.once('error', reject); });
    await delay(100); // accepted: the address holds its one connection
    const refused = await request(srv.url, '/pets');
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '1');
    const conns = await Promise.all([1, 2, 3].map(() => FcgiConnection.open(srv.fastcgiPort)));
    t.after(() => conns.forEach((c) => c.destroy()));
    await Promise.all(conns.map((c) => c.write(fcgiRequest(1, GET('/pets')))));
    for (const c of conns) assert.equal((await c.response(1)).cgi.status, 200);
  });

  test('GET_VALUES is answered with FCGI_MPXS_CONNS=0, unknown names left out', T, async (t) => {
    const srv = await serveFastcgi(t);
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());
    await conn.write(record(TYPE.GET_VALUES, 0, pairs([['FCGI_MPXS_CONNS', ''], ['NO_SUCH_VALUE', '']])));
    const result = await conn.take((r) => r.type === TYPE.GET_VALUES_RESULT, 'GET_VALUES_RESULT');
    assert.equal(result.id, 0);
    assert.deepEqual(readPairs(result.content), [['FCGI_MPXS_CONNS', '0']]);
    // The connection goes on: a request after it is answered.
    await conn.write(fcgiRequest(1, GET('/pets')));
    assert.equal((await conn.response(1)).cgi.status, 200);
  });

  test('an unknown management record gets UNKNOWN_TYPE; the connection stays usable', T, async (t) => {
    const srv = await serveFastcgi(t);
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());
    await conn.write(record(42, 0, 'whatever'));
    const unknown = await conn.take((r) => r.type === TYPE.UNKNOWN_TYPE, 'UNKNOWN_TYPE');
    assert.equal(unknown.id, 0);
    assert.equal(unknown.content.length, 8);
    assert.equal(unknown.content[0], 42);
    await conn.write(fcgiRequest(1, GET('/pets')));
    assert.equal((await conn.response(1)).cgi.status, 200);
  });

  test('a second request during the first gets END_REQUEST with FCGI_CANT_MPX_CONN; the first is answered', T, async (t) => {
    const srv = await serveFastcgi(t);
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());
    await conn.write(Buffer.concat([begin(1, { keep: true }), record(TYPE.PARAMS, 1, pairs(GET('/pets')))]));
    await conn.write(Buffer.concat([begin(2, { keep: true }), stream(TYPE.PARAMS, 2, pairs(GET('/pets/new'))), stream(TYPE.STDIN, 2, '')]));
    const refused = await conn.response(2);
    assert.equal(refused.protocolStatus, STATUS.CANT_MPX_CONN);
    assert.equal(refused.stdout.length, 0, 'no output for the refused request');
    await conn.write(Buffer.concat([record(TYPE.PARAMS, 1), stream(TYPE.STDIN, 1, '')]));
    const first = await conn.response(1);
    assert.equal(first.protocolStatus, STATUS.REQUEST_COMPLETE);
    assert.equal(first.cgi.status, 200);
    assert.match(first.cgi.body, /No pets yet/, 'the first request, not the refused one');
    assert.equal(conn.closed, false);
  });

  test('FCGI_KEEP_CONN keeps the connection for the next request; without it the connection closes', T, async (t) => {
    const srv = await serveFastcgi(t);
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());
    for (const [id, uri] of [[1, '/pets'], [1, '/pets/new'], [7, '/style.css']]) {
      await conn.write(fcgiRequest(id, GET(uri), '', { keep: true }));
      const res = await conn.response(id);
      assert.equal(res.cgi.status, 200, uri);
      assert.equal(res.stdoutRecords.at(-1).content.length, 0, 'STDOUT ends with an empty record');
    }
    assert.equal(conn.closed, false);
    await conn.write(fcgiRequest(3, GET('/pets')));
    assert.equal((await conn.response(3)).cgi.status, 200);
    assert.ok(await conn.waitClose(), 'closed after the request without FCGI_KEEP_CONN');
  });

  test('records split anywhere, padding and 4-byte lengths are read', T, async (t) => {
    const srv = await serveFastcgi(t);
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());
    const uri = `/pets?${'q'.repeat(300)}`; // a value over 127 bytes: its length takes 4 bytes
    const params = pairs([['REQUEST_METHOD', 'GET'], ['REQUEST_URI', uri], [`HTTP_X_${'N'.repeat(200)}`, 'v']]);
    const bytes = Buffer.concat([
      begin(1, { keep: true }),
      stream(TYPE.PARAMS, 1, params, { chunk: 100, padding: 5 }),
      stream(TYPE.STDIN, 1, '', { padding: 3 }),
    ]);
    for (let i = 0; i < bytes.length; i += 7) {
      await conn.write(bytes.subarray(i, i + 7));
      await delay(1);
    }
    assert.equal((await conn.response(1)).cgi.status, 200);
  });

  test('a response over 64 KiB comes in several STDOUT records', T, async (t) => {
    const root = makeTempDir('moonwire-root-');
    fs.mkdirSync(path.join(root, 'public'));
    const big = 'z'.repeat(150_000);
    fs.writeFileSync(path.join(root, 'public', 'big.txt'), big);
    const srv = await serveFastcgi(t, { root });
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());
    await conn.write(fcgiRequest(1, GET('/big.txt')));
    const res = await conn.response(1);
    assert.equal(res.cgi.status, 200);
    assert.equal(res.cgi.body, big);
    assert.ok(res.stdoutRecords.length >= 4, `${res.stdoutRecords.length} records`);
    for (const r of res.stdoutRecords) assert.ok(r.content.length <= 65535);
  });

  test('a malformed record closes the connection', T, async (t) => {
    const srv = await serveFastcgi(t);
    for (const bad of [
      record(TYPE.BEGIN_REQUEST, 1, Buffer.alloc(8), { version: 2 }), // not FastCGI 1.0
      record(TYPE.STDOUT, 1, 'only an application sends this'),
      record(TYPE.BEGIN_REQUEST, 1, Buffer.alloc(3)),                  // BEGIN_REQUEST's body is 8 bytes
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),                // HTTP on the FastCGI port
    ]) {
      const conn = await FcgiConnection.open(srv.fastcgiPort);
      await conn.write(bad);
      assert.ok(await conn.waitClose(), `closed after ${JSON.stringify(bad.subarray(0, 8))}`);
      assert.deepEqual(conn.records, [], 'and nothing answered');
      conn.destroy();
    }
    // After a good request, a bad record on the same connection: the answer
    // given before still arrives. (/pets/new answers at once; a route that
    // waits, for its SQL say, is still waiting when the bad record closes
    // the connection.)
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    await conn.write(Buffer.concat([fcgiRequest(1, GET('/pets/new'), '', { keep: true }), record(TYPE.STDERR, 1, 'x')]));
    assert.equal((await conn.response(1)).cgi.status, 200);
    assert.ok(await conn.waitClose());
    conn.destroy();
  });

  test('an oversized body gets 413 (from CONTENT_LENGTH, or as STDIN grows), then the connection closes', T, async (t) => {
    const srv = await serveFastcgi(t, { args: ['--max-body', '1000'] });
    const post = { REQUEST_METHOD: 'POST', REQUEST_URI: '/pets', CONTENT_TYPE: 'application/x-www-form-urlencoded' };

    const announced = await FcgiConnection.open(srv.fastcgiPort);
    await announced.write(Buffer.concat([begin(1, { keep: true }), stream(TYPE.PARAMS, 1, pairs({ ...post, CONTENT_LENGTH: '5000' }))]));
    const early = await announced.response(1);
    assert.equal(early.cgi.lines[0], 'Status: 413 Payload Too Large');
    assert.ok(await announced.waitClose(), 'closed after the 413');
    announced.destroy();

    const unannounced = await FcgiConnection.open(srv.fastcgiPort);
    await unannounced.write(Buffer.concat([begin(1, { keep: true }), stream(TYPE.PARAMS, 1, pairs(post)), record(TYPE.STDIN, 1, 'a'.repeat(3000))]));
    const late = await unannounced.response(1);
    assert.equal(late.cgi.status, 413);
    assert.ok(await unannounced.waitClose());
    unannounced.destroy();

    // At the limit is fine.
    const ok = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => ok.destroy());
    const prefix = `name=${'n'.repeat(20)}&species=cat&x=`;
    const body = prefix + 'x'.repeat(1000 - prefix.length);
    await ok.write(fcgiRequest(1, { ...post, CONTENT_LENGTH: '1000' }, body));
    assert.equal((await ok.response(1)).cgi.status, 303);
  });

  test('a body shorter than CONTENT_LENGTH, a bad method or a bad URL gets 400', T, async (t) => {
    const srv = await serveFastcgi(t);
    for (const [params, body] of [
      [{ REQUEST_METHOD: 'POST', REQUEST_URI: '/pets', CONTENT_LENGTH: '50' }, 'name=cut'],
      [{ REQUEST_METHOD: 'BREW', REQUEST_URI: '/pets' }, ''],
      [{ REQUEST_URI: '/pets' }, ''],
      [{ REQUEST_METHOD: 'GET', REQUEST_URI: 'pets' }, ''],
      [{ REQUEST_METHOD: 'GET', REQUEST_URI: '/pe ts' }, ''],
      [{ REQUEST_METHOD: 'GET', REQUEST_URI: '/pets', HTTP_X_A: 'a\r\nInjected: yes' }, ''],
    ]) {
      const conn = await FcgiConnection.open(srv.fastcgiPort);
      await conn.write(fcgiRequest(1, params, body, { keep: true }));
      const res = await conn.response(1);
      assert.equal(res.cgi.status, 400, JSON.stringify(params));
      assert.ok(await conn.waitClose());
      conn.destroy();
    }
  });

  test('ABORT_REQUEST ends a request at once, arriving or waiting for its answer', T, async (t) => {
    // A long poll is an answer that waits: socket.io's polling GET.
    const srv = await serveFastcgi(t, { args: ['--ping-interval', '300', '--ping-timeout', '5000'] });
    const conn = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => conn.destroy());

    // Still arriving: PARAMS sent, STDIN not.
    await conn.write(Buffer.concat([begin(1, { keep: true }), stream(TYPE.PARAMS, 1, pairs(GET('/pets')))]));
    await conn.write(record(TYPE.ABORT_REQUEST, 1));
    const arriving = await conn.response(1);
    assert.equal(arriving.protocolStatus, STATUS.REQUEST_COMPLETE);
    assert.equal(arriving.stdout.length, 0);

    // Waiting for its answer.
    await conn.write(fcgiRequest(2, GET('/socket.io/?EIO=4&transport=polling'), '', { keep: true }));
    const open = await conn.response(2);
    assert.equal(open.cgi.status, 200);
    const sid = JSON.parse(open.cgi.body.slice(1)).sid;
    await conn.write(fcgiRequest(3, GET(`/socket.io/?EIO=4&transport=polling&sid=${sid}`), '', { keep: true }));
    await conn.write(record(TYPE.ABORT_REQUEST, 3));
    const waiting = await conn.response(3);
    assert.equal(waiting.stdout.length, 0, 'no answer: the poll was still waiting');
    assert.equal(waiting.protocolStatus, STATUS.REQUEST_COMPLETE);

    // The connection is free for the next request; the aborted poll's
    // answer (the next ping, a moment later) never shows up on it.
    await conn.write(fcgiRequest(4, GET('/pets'), '', { keep: true }));
    assert.equal((await conn.response(4)).cgi.status, 200);
    await delay(600);
    assert.deepEqual(conn.records.filter((r) => r.id === 3), []);
  });

  test('a connection that goes while its answer is awaited; a WebSocket upgrade is not tried', T, async (t) => {
    const srv = await serveFastcgi(t, { args: ['--ping-interval', '200', '--ping-timeout', '5000'] });
    const first = await FcgiConnection.open(srv.fastcgiPort);
    await first.write(fcgiRequest(1, GET('/socket.io/?EIO=4&transport=polling')));
    const sid = JSON.parse((await first.response(1)).cgi.body.slice(1)).sid;
    first.destroy();

    const poll = await FcgiConnection.open(srv.fastcgiPort);
    await poll.write(fcgiRequest(1, GET(`/socket.io/?EIO=4&transport=polling&sid=${sid}`)));
    await delay(50);
    poll.destroy(); // the answer comes later, to nobody
    await delay(400);

    const ws = await FcgiConnection.open(srv.fastcgiPort);
    t.after(() => ws.destroy());
    await ws.write(fcgiRequest(1, GET('/socket.io/?EIO=4&transport=websocket', {
      HTTP_CONNECTION: 'Upgrade', HTTP_UPGRADE: 'websocket', HTTP_SEC_WEBSOCKET_VERSION: '13',
      HTTP_SEC_WEBSOCKET_KEY: 'dGhlIHNhbXBsZSBub25jZQ==',
    })));
    const res = await ws.response(1);
    assert.equal(res.cgi.status, 400, 'answered as a plain request');
    // srv stops cleanly after the test (serve checks the exit status and,
    // in the sanitizer build, that nothing leaked).
  });
});
