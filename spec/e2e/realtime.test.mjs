// End-to-end tests of the realtime half: Engine.IO v4 and Socket.IO v5 as
// the unmodified official clients (socket.io-client, engine.io-client) and
// raw HTTP / WebSocket peers see them.
//
// Each test starts its own moonwire on a free port with the fixture app in
// fixtures/realtime/ (one handler per behaviour checked here) and stops it
// when it ends: serve() checks a clean exit (status 0, no sanitizer report).
// Every client a test opens is closed before its server is stopped.
//
// Run from spec/e2e/ with `node --test realtime.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { Socket as EngineSocket } from 'engine.io-client';
import { io as ioClient } from 'socket.io-client';
import WebSocket from 'ws';

import { FIXTURES, REPO_ROOT, assertCleanExit, delay, request, serve, startServer } from './helpers.mjs';
import { WAIT, ask, client, connect, connected, next, record, setup as setupWith, until } from './sio.mjs';

const FIXTURE = path.join(FIXTURES, 'realtime');
const CONFIGURED = path.join(FIXTURE, 'configured');
const CLIENT_DIST = path.join(REPO_ROOT, 'node_modules/socket.io-client/dist');

const T = { timeout: 20_000 };

// The transport choices of the client: the default (HTTP long-polling first,
// then an upgrade to WebSocket), WebSocket only, long-polling only.
const MODES = {
  default: {},
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
};

// ==========================================================================
// helpers

/** Starts moonwire with the fixture app (see sio.mjs setup). */
function setup(t, { args = [], root = FIXTURE } = {}) {
  return setupWith(t, { args, root });
}

/**
 * An array the app sent. Lua has one table type, so an empty list may come
 * out as {} (whether [] survives a round trip is checked on its own, in
 * "null and empty values"); elsewhere an empty object counts as [].
 */
function list(value) {
  if (value && !Array.isArray(value) && typeof value === 'object' && Object.keys(value).length === 0) return [];
  return value;
}

/** Emits with an ack and resolves every value of the ack. */
function askAll(socket, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT).emit(...args, (err, ...values) => (err ? reject(err) : resolve(values)));
  });
}

/**
 * A round trip through socket: when it resolves, anything the server sent to
 * this socket before has arrived (one transport keeps the order). Used to
 * check that something did NOT arrive.
 */
async function sync(socket) {
  assert.equal(await ask(socket, 'echo', 'sync'), 'sync');
}

/** Waits until the transport of socket's engine is name (after an upgrade). */
async function transportBecomes(socket, name, timeout = WAIT) {
  await until(() => socket.io.engine?.transport?.name === name, `the transport to become ${name} (it is ${socket.io.engine?.transport?.name})`, timeout);
}

/** The engine endpoint URL for raw requests. */
function eioUrl(srv, query, p = '/socket.io/') {
  return `${srv.url}${p}?${query}`;
}

/** Opens a raw Engine.IO long-polling session; resolves { sid, open (the handshake data) }. */
async function pollingHandshake(srv, p = '/socket.io/', headers = {}) {
  const res = await request(srv.url, `${p}?EIO=4&transport=polling`, { headers });
  assert.equal(res.status, 200, `polling handshake: ${res.status} ${res.body}`);
  assert.equal(res.body[0], '0', `the handshake answer is an open packet: ${res.body}`);
  const open = JSON.parse(res.body.slice(1));
  return { sid: open.sid, open, res };
}

/** Asserts an Engine.IO error answer: status, and the JSON body { code, message }. */
function assertEioError(res, status, code, message) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.body}`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/, 'an Engine.IO error is JSON');
  assert.deepEqual(JSON.parse(res.body), { code, message });
}

/**
 * Asserts that the server closed the polling session sid. A server may
 * answer the next GET with a close packet ("1") that was waiting for it, as
 * the reference server does; the session must be unknown after that.
 */
async function assertSessionGone(srv, sid, p = '/socket.io/') {
  const target = `${p}?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  let res = await request(srv.url, target);
  if (res.status === 200) {
    assert.ok(res.body.split('\x1e').includes('1'), `the session is still open: GET answered 200 ${JSON.stringify(res.body)}`);
    res = await request(srv.url, target);
  }
  assertEioError(res, 400, 1, 'Session ID unknown');
}

/**
 * A raw WebSocket (the ws package) with a queue of received messages.
 * Text messages are strings, binary ones Buffers.
 */
class RawWs {
  static open(srv, query = 'EIO=4&transport=websocket', { path: p = '/socket.io/', ...options } = {}) {
    const url = `ws://127.0.0.1:${srv.port}${p}?${query}`;
    const raw = new RawWs(new WebSocket(url, options));
    srv.track(() => raw.ws.terminate());
    return raw;
  }

  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.closed = false;
    this.closeCode = null;
    this.status = null; // HTTP status of a refused upgrade
    this.opened = false;
    ws.on('open', () => { this.opened = true; });
    ws.on('message', (data, isBinary) => this.messages.push(isBinary ? Buffer.from(data) : data.toString('utf8')));
    ws.on('close', (code) => { this.closed = true; this.closeCode = code; });
    ws.on('unexpected-response', (req, res) => {
      this.status = res.statusCode;
      res.resume();
      this.closed = true;
      req.destroy();
    });
    ws.on('error', () => { this.closed = true; });
  }

  /** Resolves the next message (pings "2" included unless skipPings). */
  async next({ skipPings = false, timeout = WAIT } = {}) {
    for (;;) {
      await until(() => this.messages.length > 0 || this.closed, 'a WebSocket message', timeout);
      if (this.messages.length === 0) throw new Error(`the WebSocket closed (code ${this.closeCode}, status ${this.status}) instead of sending a message`);
      const m = this.messages.shift();
      if (skipPings && m === '2') { this.send('3'); continue; }
      return m;
    }
  }

  send(data) { this.ws.send(data); }

  /** Resolves true when the server closes within timeout ms. */
  async waitClose(timeout = WAIT) {
    try {
      await until(() => this.closed, 'the WebSocket to close', timeout);
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves once the upgrade is answered: 'open' or the refusal status. */
  async outcome(timeout = WAIT) {
    await until(() => this.opened || this.closed, 'the upgrade to be answered', timeout);
    return this.opened ? 'open' : this.status;
  }
}

/** Engine.IO open, then Socket.IO CONNECT to the main namespace, over a raw WebSocket. */
async function rawSocketIo(srv) {
  const raw = RawWs.open(srv);
  const open = await raw.next();
  assert.equal(open[0], '0', `open packet expected, got ${open}`);
  raw.send('40');
  const ok = await raw.next();
  assert.match(ok, /^40\{"sid":"[^"]+"\}$/);
  raw.sid = JSON.parse(ok.slice(2)).sid;
  return raw;
}

const UTF8_SAMPLES = [
  'héllo wörld — ça va ? Ñandú',
  '你好，世界 / こんにちは / 안녕하세요',
  'emoji 🚀🎉 👩‍👩‍👧‍👦 🇫🇷 and a lone ZWJ‍ char',
  'مرحبا بالعالم שלום',
  'control-ish: tab\t newline\n quote" backslash\\ record-separator-looking text',
];

// ==========================================================================
describe('socket.io-client basics', () => {
  test('the seed test: connect, emit "chat message", receive it back', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    assert.ok(socket.id, 'a connected socket has an id');
    const got = next(socket, 'chat message');
    socket.emit('chat message', 'hello world');
    assert.deepEqual(await got, ['hello world']);
  });

  test('default transports: long-polling first, then the upgrade to websocket', T, async (t) => {
    const srv = await setup(t);
    const socket = client(srv);
    const upgraded = next(socket.io, 'open').then(() => next(socket.io.engine, 'upgrade'));
    await connected(socket);
    const [transport] = await upgraded;
    assert.equal(transport.name, 'websocket');
    await transportBecomes(socket, 'websocket');
    // Still the same session, and it still works.
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
    const got = next(socket, 'chat message');
    socket.emit('chat message', 'after upgrade');
    assert.deepEqual(await got, ['after upgrade']);
  });

  test('websocket-only client: connects straight over websocket', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv, '/', MODES.websocket);
    assert.equal(socket.io.engine.transport.name, 'websocket');
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
  });

  test('polling-only client: stays on long-polling and works', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv, '/', MODES.polling);
    assert.equal(socket.io.engine.transport.name, 'polling');
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
    await delay(300);
    assert.equal(socket.io.engine.transport.name, 'polling');
    assert.ok(socket.connected);
  });

  for (const [mode, opts] of Object.entries(MODES)) {
    describe(`transport: ${mode}`, () => {
      test('client → server ack (the ferret example)', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const answer = await new Promise((resolve) => socket.emit('ferret', 'tobi', resolve));
        assert.equal(answer, 'woot');
        assert.equal(await socket.timeout(WAIT).emitWithAck('ferret', 'tobi'), 'woot');
      });

      test('server → client ack', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        socket.on('question', (q, ack) => {
          assert.equal(q, 'q');
          ack('forty-two', { n: 42 });
        });
        const answer = next(socket, 'answer was');
        socket.emit('ask client');
        assert.deepEqual(await answer, ['forty-two', { n: 42 }]);
      });

      test('echo: JSON values of every kind come back unchanged', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const values = [1, '2', { 3: [true] }, [1, 2, 3], 1.5, -7, 0, true, false, 'x', { nested: { deep: { list: ['a', { b: 'c' }] } } }, 2 ** 40];
        assert.deepEqual(await askAll(socket, 'echo', ...values), values);
        assert.deepEqual(await askAll(socket, 'echo'), [], 'an ack with no values');
      });

      test('binary round trip: Buffers in, the same bytes back as Buffers', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const bytes = Buffer.from([0, 1, 2, 127, 128, 254, 255, 0x1e, 0x0a]);
        const [back] = await askAll(socket, 'echo', bytes);
        assert.ok(Buffer.isBuffer(back), `binary should come back as a Buffer, got ${typeof back}: ${JSON.stringify(back)}`);
        assert.ok(back.equals(bytes), `bytes differ: ${back.toString('hex')} vs ${bytes.toString('hex')}`);

        // Mixed with JSON, nested, several attachments, an empty one.
        const a = Buffer.from('first'), b = Buffer.alloc(0), c = Buffer.from([255, 0, 255]);
        const values = ['text', { file: a, meta: { list: [b, c] } }, 7];
        const echoed = await askAll(socket, 'echo', ...values);
        assert.equal(echoed[0], 'text');
        assert.equal(echoed[2], 7);
        assert.ok(Buffer.isBuffer(echoed[1].file) && echoed[1].file.equals(a));
        assert.ok(Buffer.isBuffer(echoed[1].meta.list[0]) && echoed[1].meta.list[0].length === 0);
        assert.ok(Buffer.isBuffer(echoed[1].meta.list[1]) && echoed[1].meta.list[1].equals(c));

        // As an event (BINARY_EVENT) rather than an ack (BINARY_ACK).
        const ev = next(socket, 'echoed');
        socket.emit('echo event', c, 'tail');
        const [e1, e2] = await ev;
        assert.ok(Buffer.isBuffer(e1) && e1.equals(c));
        assert.equal(e2, 'tail');
      });

      test('binary made on the server arrives as a Buffer', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const got = next(socket, 'binary');
        socket.emit('binary');
        const [buf] = await got;
        assert.ok(Buffer.isBuffer(buf), `expected a Buffer, got ${JSON.stringify(buf)}`);
        assert.deepEqual([...buf], [0, 1, 2, 255]);

        const [nested] = await askAll(socket, 'binary nested');
        assert.equal(nested.name, 'blob');
        assert.deepEqual([...nested.file], [0, 1, 2, 255]);
        assert.equal(nested.parts.length, 2);
        assert.equal(nested.parts[0].toString(), 'a');
        assert.equal(nested.parts[1].length, 0);
      });

      test('binary as Lua sees it: io.isbinary, #v, v.data', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const info = await ask(socket, 'binary info', Buffer.from([0, 1, 2, 255]));
        assert.deepEqual(info, { isbinary: true, length: 4, hex: '000102ff', plain_string: false });
      });

      test('UTF-8 text (accents, CJK, emoji, RTL) round-trips', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        assert.deepEqual(await askAll(socket, 'echo', ...UTF8_SAMPLES), UTF8_SAMPLES);
        for (const s of UTF8_SAMPLES) {
          const m = await ask(socket, 'measure', s);
          assert.deepEqual(m, { bytes: Buffer.byteLength(s), chars: [...s].length }, `Lua should see the UTF-8 bytes of ${JSON.stringify(s)}`);
        }
        const got = next(socket, 'chat message');
        socket.emit('chat message', UTF8_SAMPLES[2]);
        assert.deepEqual(await got, [UTF8_SAMPLES[2]]);
      });

      test('large messages (300 kB text and binary) round-trip', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const text = 'abcdé😀'.repeat(30_000); // ~330 kB of UTF-8
        assert.equal(await ask(socket, 'echo', text), text);
        const bin = Buffer.alloc(300_000);
        for (let i = 0; i < bin.length; i++) bin[i] = (i * 7) & 0xff;
        const back = await ask(socket, 'echo', bin);
        assert.ok(Buffer.isBuffer(back) && back.equals(bin), 'the 300 kB binary came back different');
      });

      test('many messages in a burst arrive complete and in order', T, async (t) => {
        const srv = await setup(t);
        const socket = await connect(srv, '/', opts);
        const got = record(socket, 'echoed');
        const N = 200;
        for (let i = 0; i < N; i++) socket.emit('echo event', i, `m${i}`);
        await until(() => got.length === N, `${N} echoed events (got ${got.length})`, 10_000);
        assert.deepEqual(got.map(([i]) => i), Array.from({ length: N }, (_, i) => i));
      });
    });
  }

  // Lua has one table type, but a decoded array is marked as one: what
  // arrived as [] leaves as [] (json.test.mjs covers every JSON type).
  test('null and empty values: null stays null, [] and {} come back as they were sent', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv, '/', MODES.websocket);
    assert.deepEqual(await askAll(socket, 'echo', 'a', null, 'b'), ['a', null, 'b'], 'null in the middle of the arguments');
    assert.deepEqual(await askAll(socket, 'echo', { list: [1], obj: {}, s: '' }), [{ list: [1], obj: {}, s: '' }]);
    assert.deepEqual(await askAll(socket, 'echo', []), [[]], 'an empty array argument');
  });

  test('onAny sees every event with its arguments', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv, '/', MODES.websocket);
    socket.emit('unknown event', 1, 2, 3);
    socket.emit('another', 'x');
    socket.emit('chat message', 'hello');
    const [count, last] = await askAll(socket, 'count');
    assert.equal(count, 3, 'three events before "count"');
    assert.deepEqual(last, { event: 'chat message', nargs: 1, first: 'hello' });
  });

  test('a handler that raises is logged; the socket and the server carry on', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    socket.emit('raise');
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
    assert.ok(socket.connected);
    await until(() => /raised on purpose/.test(srv.stderr()), 'the error in stderr');
  });
});

// ==========================================================================
describe('acks with timeouts', () => {
  test('server side: socket:timeout(ms):emit gets "operation has timed out" when the client never acks', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    socket.on('no-answer', () => { /* never calls the ack */ });
    const result = next(socket, 'timeout result');
    const started = Date.now();
    socket.emit('ask with timeout', 200);
    const [err] = await result;
    assert.equal(err, 'operation has timed out');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 150, `the timeout fired after ${elapsed} ms, before its 200 ms`);
  });

  test('server side: an ack in time gives err = nil and the values', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    socket.on('no-answer', (ack) => ack('here', 2));
    const result = next(socket, 'timeout result');
    socket.emit('ask with timeout', 2000);
    assert.deepEqual(await result, ['no error', 'here', 2]);
  });

  test('server side: an ack that comes too late is ignored', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    socket.on('no-answer', (ack) => setTimeout(() => ack('late'), 300));
    const results = record(socket, 'timeout result');
    socket.emit('ask with timeout', 100);
    await until(() => results.length === 1, 'the timeout result');
    await delay(400);
    await sync(socket);
    assert.deepEqual(results, [['operation has timed out']], 'the callback runs once');
  });

  test('client side: socket.timeout(ms).emit against a handler that never acks', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    const err = await new Promise((resolve) => socket.timeout(200).emit('never ack', 'x', (e) => resolve(e)));
    assert.ok(err instanceof Error, 'the callback gets an error');
    assert.equal(err.message, 'operation has timed out');
    await assert.rejects(socket.timeout(200).emitWithAck('never ack'), /operation has timed out/);
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot', 'the socket still works');
  });
});

// ==========================================================================
describe('broadcast and rooms', () => {
  async function three(srv, opts = MODES.websocket) {
    return Promise.all([
      connect(srv, '/', { ...opts, auth: { name: 'alice' } }),
      connect(srv, '/', { ...opts, auth: { name: 'bob' } }),
      connect(srv, '/', { ...opts, auth: { name: 'carol' } }),
    ]);
  }

  test('io.emit reaches everyone; socket.broadcast everyone but the sender', T, async (t) => {
    const srv = await setup(t);
    const [a, b, c] = await three(srv);
    const all = [a, b, c].map((s) => record(s, 'chat message'));
    b.emit('chat message', 'to all');
    await until(() => all.every((got) => got.length === 1), 'everyone to get the chat message');
    for (const got of all) assert.deepEqual(got, [['to all']]);

    const bc = [a, b, c].map((s) => record(s, 'broadcast'));
    a.emit('broadcast', 'not for me');
    await until(() => bc[1].length === 1 && bc[2].length === 1, 'b and c to get the broadcast');
    await sync(a);
    assert.deepEqual(bc[0], [], 'the sender does not get its own broadcast');
    assert.deepEqual(bc[1], [['not for me']]);
    assert.deepEqual(bc[2], [['not for me']]);
  });

  test('the three transport modes broadcast to each other', T, async (t) => {
    const srv = await setup(t);
    const sockets = await Promise.all(Object.values(MODES).map((opts) => connect(srv, '/', opts)));
    const got = sockets.map((s) => record(s, 'chat message'));
    sockets[2].emit('chat message', 'from polling');
    sockets[1].emit('chat message', 'from websocket');
    await until(() => got.every((g) => g.length === 2), 'two messages on every socket');
    for (const g of got) assert.deepEqual(g.flat().sort(), ['from polling', 'from websocket']);
  });

  test('no message is lost or reordered while clients upgrade from polling to websocket', T, async (t) => {
    const srv = await setup(t);
    const sender = await connect(srv, '/', MODES.websocket);
    const N = 300;
    const clients = [];
    const sending = (async () => {
      for (let i = 0; i < N; i++) {
        sender.emit('chat message', i);
        await delay(4);
        // Clients join (and upgrade) while the messages flow.
        if (i % 40 === 0 && clients.length < 6) {
          const c = client(srv);
          c.got = record(c, 'chat message');
          clients.push(c);
        }
      }
    })();
    await sending;
    await Promise.all(clients.map((c) => connected(c)));
    await until(() => clients.every((c) => c.got.at(-1)?.[0] === N - 1), 'every client to get the last message', 5_000);
    for (const [k, c] of clients.entries()) {
      const seq = c.got.map(([i]) => i);
      const first = seq[0];
      const expected = Array.from({ length: N - first }, (_, j) => first + j);
      assert.ok(first < N - 20, `client ${k} connected too late to say anything (first message ${first})`);
      assert.deepEqual(seq, expected, `client ${k} (transport ${c.io.engine.transport.name}) missed or reordered messages after its first one (${first})`);
    }
  });

  test('messages a client sends while it upgrades all arrive, in order', T, async (t) => {
    const srv = await setup(t);
    const sockets = await Promise.all(Array.from({ length: 4 }, () => connect(srv)));
    const got = sockets.map((s) => record(s, 'echoed'));
    const N = 100;
    // Right after connecting, every client is in the middle of its upgrade.
    for (let i = 0; i < N; i++) {
      for (const s of sockets) s.emit('echo event', i);
      if (i % 5 === 0) await delay(2);
    }
    await until(() => got.every((g) => g.length >= N), `${N} echoes on every client (got ${got.map((g) => g.length)})`, 5_000);
    for (const [k, g] of got.entries()) assert.deepEqual(g.map(([i]) => i), Array.from({ length: N }, (_, i) => i), `client ${k}`);
    for (const s of sockets) assert.equal(s.io.engine.transport.name, 'websocket');
  });

  test('twenty clients all get a broadcast', T, async (t) => {
    const srv = await setup(t);
    const sockets = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(srv, '/', i % 2 ? MODES.websocket : MODES.polling)));
    const got = sockets.map((s) => record(s, 'chat message'));
    sockets[0].emit('chat message', 'fan-out');
    await until(() => got.every((g) => g.length === 1), 'twenty deliveries');
    assert.equal(await ask(sockets[3], 'fetch'), 20);
  });

  test('rooms: join, io.to, socket:to, except, leave', T, async (t) => {
    const srv = await setup(t);
    const [a, b, c] = await three(srv);
    const got = [a, b, c].map((s) => record(s, 'room message'));
    const reset = () => got.forEach((g) => g.splice(0));

    assert.deepEqual(await ask(a, 'join', 'r1'), [a.id, 'r1'].sort(), 'a socket is in its own room and the joined one');
    await ask(b, 'join', 'r1');
    await ask(b, 'join', 'r2');

    // io.to(room): every member, the sender not being one.
    c.emit('to room', 'r1', 'hello r1');
    await until(() => got[0].length === 1 && got[1].length === 1, 'a and b to get the room message');
    await sync(c);
    assert.deepEqual(got[0], [['r1', 'hello r1']]);
    assert.deepEqual(got[1], [['r1', 'hello r1']]);
    assert.deepEqual(got[2], [], 'c is not in r1');
    reset();

    // socket:to(room): members except the sender.
    a.emit('to room from me', 'r1', 'from a');
    await until(() => got[1].length === 1, 'b to get it');
    await sync(a);
    assert.deepEqual(got[0], [], 'socket:to excludes the sender');
    assert.deepEqual(got[1], [['r1', 'from a']]);
    assert.deepEqual(got[2], []);
    reset();

    // io.to(r1):except(r2): a only.
    c.emit('to room except', 'r1', 'r2', 'not r2');
    await until(() => got[0].length === 1, 'a to get it');
    await sync(b);
    assert.deepEqual(got[1], [], 'b is in r2');
    reset();

    // io.except(r1): c only, as an 'except message'.
    const ex = [a, b, c].map((s) => record(s, 'except message'));
    a.emit('except', 'r1', 'outsiders');
    await until(() => ex[2].length === 1, 'c to get it');
    await Promise.all([sync(a), sync(b)]);
    assert.deepEqual(ex[0], []);
    assert.deepEqual(ex[1], []);
    assert.deepEqual(ex[2], [['outsiders']]);

    // A direct message: every socket is in the room named by its id.
    c.emit('to room', a.id, 'just a');
    await until(() => got[0].length === 1, 'a to get its private message');
    await Promise.all([sync(b), sync(c)]);
    assert.deepEqual(got[1], []);
    assert.deepEqual(got[2], []);
    reset();

    // leave: a is out of r1.
    assert.deepEqual(await ask(a, 'leave', 'r1'), [a.id]);
    c.emit('to room', 'r1', 'after leave');
    await until(() => got[1].length === 1, 'b to get it');
    await sync(a);
    assert.deepEqual(got[0], [], 'a left r1');
  });

  test('io.to(r1):to(r2) reaches the members of either room once', T, async (t) => {
    const srv = await setup(t);
    const [a, b, c] = await three(srv);
    await ask(a, 'join', 'r1');
    await ask(b, 'join', 'r1');
    await ask(b, 'join', 'r2');
    const got = [a, b, c].map((s) => record(s, 'room message'));
    c.emit('to rooms', 'r1', 'r2', 'union');
    await until(() => got[0].length === 1 && got[1].length === 1, 'a and b to get it');
    await Promise.all([sync(b), sync(c)]);
    assert.equal(got[1].length, 1, 'b is in both rooms and gets it once');
    assert.deepEqual(got[2], []);
  });

  test('whoami: rooms, data and fetchSockets see joins and leaves', T, async (t) => {
    const srv = await setup(t);
    const [a, b] = await three(srv);
    await ask(a, 'join', 'lobby');
    await ask(b, 'join', 'lobby');
    const me = await ask(a, 'whoami');
    assert.equal(me.id, a.id, 'socket.id on the server is the id the client got');
    assert.deepEqual(me.rooms, [a.id, 'lobby'].sort());
    assert.deepEqual(me.data, { name: 'alice' });

    const [ids, names] = await askAll(a, 'fetch room', 'lobby');
    assert.deepEqual(ids, [a.id, b.id].sort());
    assert.deepEqual(names, ['alice', 'bob'], 'fetched sockets carry their data');

    await ask(b, 'set data', 'mood', 'happy');
    const bme = await ask(b, 'whoami');
    assert.deepEqual(bme.data, { name: 'bob', mood: 'happy' }, 'socket.data keeps what handlers store');
    assert.equal(await ask(a, 'fetch'), 3);
  });

  test('a socket that goes away leaves its rooms; "disconnecting" still sees them', T, async (t) => {
    const srv = await setup(t);
    const [a, b] = await three(srv);
    await ask(b, 'join', 'lobby');
    const leaving = next(a, 'leaving');
    const bid = b.id;
    b.disconnect();
    const [id, rooms, reason] = await leaving;
    assert.equal(id, bid);
    assert.deepEqual(rooms, [bid, 'lobby'].sort(), 'socket.rooms in "disconnecting" still has the rooms');
    assert.equal(reason, 'client namespace disconnect');
    const [ids] = await askAll(a, 'fetch room', 'lobby');
    assert.deepEqual(list(ids), [], 'a disconnected socket is in no room');
    assert.equal(await ask(a, 'fetch'), 2);
  });

  test('io.socketsJoin, io.to(r):socketsJoin, io.socketsLeave', T, async (t) => {
    const srv = await setup(t);
    const [a, b, c] = await three(srv);
    await ask(a, 'sockets join', 'everyone');
    for (const s of [a, b, c]) assert.ok((await ask(s, 'whoami')).rooms.includes('everyone'));

    await ask(a, 'join', 'red');
    await ask(c, 'sockets join from', 'red', 'crimson');
    assert.ok((await ask(a, 'whoami')).rooms.includes('crimson'));
    assert.ok(!(await ask(b, 'whoami')).rooms.includes('crimson'), 'only members of red joined crimson');

    await ask(b, 'sockets leave', 'everyone');
    for (const s of [a, b, c]) assert.ok(!(await ask(s, 'whoami')).rooms.includes('everyone'));
  });

  test('fetched sockets: emit, join, leave, disconnect through them', T, async (t) => {
    const srv = await setup(t);
    const [a, b, c] = await three(srv);
    await ask(a, 'join', 'team');
    await ask(b, 'join', 'team');
    const got = [a, b, c].map((s) => record(s, 'fetched'));
    c.emit('fetched emit', 'team', 'via fetch');
    await until(() => got[0].length === 1 && got[1].length === 1, 'a and b to get it');
    await sync(c);
    assert.deepEqual(got[0], [['via fetch', a.id]]);
    assert.deepEqual(got[1], [['via fetch', b.id]]);
    assert.deepEqual(got[2], []);

    await ask(c, 'fetched join', 'team', 'squad');
    assert.ok((await ask(a, 'whoami')).rooms.includes('squad'));
    await ask(c, 'fetched leave', 'team', 'squad');
    assert.ok(!(await ask(b, 'whoami')).rooms.includes('squad'));

    const gone = [next(a, 'disconnect'), next(b, 'disconnect')];
    c.emit('fetched disconnect', 'team');
    assert.deepEqual((await Promise.all(gone)).map(([r]) => r), ['io server disconnect', 'io server disconnect']);
    assert.ok(c.connected);
    assert.equal(await ask(c, 'fetch'), 1);
  });

  test('io.to(room):disconnectSockets and io.disconnectSockets', T, async (t) => {
    const srv = await setup(t);
    const [a, b, c] = await three(srv);
    await ask(a, 'join', 'doomed');
    await ask(b, 'join', 'doomed');
    const gone = [next(a, 'disconnect'), next(b, 'disconnect')];
    c.emit('disconnect room', 'doomed');
    assert.deepEqual((await Promise.all(gone)).map(([r]) => r), ['io server disconnect', 'io server disconnect']);
    await sync(c);
    assert.ok(c.connected, 'c was not in the room');

    const last = next(c, 'disconnect');
    c.emit('disconnect all');
    assert.equal((await last)[0], 'io server disconnect');
  });

  test('volatile emits reach an idle websocket client', T, async (t) => {
    const srv = await setup(t);
    const [a, b] = await three(srv);
    const mine = next(a, 'volatile');
    a.emit('volatile', 'v1');
    assert.deepEqual(await mine, ['v1']);
    const theirs = next(b, 'volatile all');
    a.emit('volatile all', 'v2');
    assert.deepEqual(await theirs, ['v2']);
  });

  test('socket.volatile.broadcast and socket.broadcast.volatile reach the others, not the sender', T, async (t) => {
    const srv = await setup(t);
    const [a, b] = await three(srv);
    const atA = record(a, 'volatile others');
    const atB = record(b, 'volatile others');
    a.emit('volatile others', 'v3');
    await until(() => atB.length === 2, 'both volatile broadcasts at b');
    await sync(a);
    assert.deepEqual(atB, [['v3 (volatile.broadcast)'], ['v3 (broadcast.volatile)']]);
    assert.deepEqual(atA, []);
  });
});

// ==========================================================================
describe('namespaces and middleware', () => {
  test('/admin with the right token: connects and gets "welcome"', T, async (t) => {
    const srv = await setup(t);
    const admin = client(srv, '/admin', { auth: { token: 'secret' } });
    const welcome = next(admin, 'welcome');
    await connected(admin);
    assert.deepEqual(await welcome, ['admin', admin.id]);
    assert.equal(await ask(admin, 'ping admin'), 'pong from admin');
  });

  test('/admin middleware rejection: connect_error with message and data', T, async (t) => {
    const srv = await setup(t);
    for (const auth of [{ token: 'wrong' }, {}]) {
      const admin = client(srv, '/admin', { auth });
      const [err] = await next(admin, 'connect_error');
      assert.equal(err.message, 'not authorized');
      assert.deepEqual(err.data, { code: 401 });
      assert.ok(!admin.connected);
    }
  });

  test('main namespace middleware: next("...") refuses with that message', T, async (t) => {
    const srv = await setup(t);
    const denied = client(srv, '/', { auth: { deny: true } });
    const [err] = await next(denied, 'connect_error');
    assert.equal(err.message, 'denied by middleware');
    await connect(srv, '/', { auth: { deny: false } });
  });

  test('an unknown namespace: connect_error "Invalid namespace"', T, async (t) => {
    const srv = await setup(t);
    const nope = client(srv, '/nope');
    const [err] = await next(nope, 'connect_error');
    assert.equal(err.message, 'Invalid namespace');
  });

  test('namespaces share one connection and stay separate', T, async (t) => {
    const srv = await setup(t);
    // Without forceNew, io(url) and io(url + '/admin') share a Manager: one
    // Engine.IO session carries both namespaces.
    const main = ioClient(srv.url, { reconnection: false, transports: ['websocket'] });
    const admin = ioClient(`${srv.url}/admin`, { reconnection: false, transports: ['websocket'], auth: { token: 'secret' } });
    srv.track(() => { admin.disconnect(); main.disconnect(); main.io.disconnect(); });
    await Promise.all([connected(main), connected(admin)]);
    assert.equal(main.io, admin.io, 'one Manager');
    assert.notEqual(main.id, admin.id, 'one socket id per namespace');

    const news = record(admin, 'admin news');
    const mainNews = record(main, 'admin news');
    main.emit('tell admins', 'hi admins');
    await until(() => news.length === 1, 'admin to get the news');
    await sync(main);
    assert.deepEqual(news, [['hi admins']]);
    assert.deepEqual(mainNews, [], 'admin:emit does not reach the main namespace');
    assert.equal(await ask(admin, 'fetch'), 1);
    assert.equal(await ask(main, 'fetch'), 1, 'the admin socket is not in the main namespace');

    // Leaving /admin keeps the main namespace connected on the same session.
    admin.disconnect();
    await delay(100);
    assert.ok(main.connected);
    assert.equal(await ask(main, 'ferret', 'tobi'), 'woot');
  });
});

// ==========================================================================
describe('handshake', () => {
  for (const [mode, opts] of Object.entries(MODES)) {
    test(`auth, query, headers and address reach the server (${mode})`, T, async (t) => {
      const srv = await setup(t);
      const socket = await connect(srv, '/', {
        ...opts,
        auth: { name: 'dora', token: 'abc', n: 3 },
        query: { room: 'lobby', 'with space': 'a b&c' },
        extraHeaders: { 'X-Test': 'yes' },
      });
      const me = await ask(socket, 'whoami');
      assert.deepEqual(me.handshake.auth, { name: 'dora', token: 'abc', n: 3 });
      assert.equal(me.handshake.query.room, 'lobby');
      assert.equal(me.handshake.query['with space'], 'a b&c', 'query values are decoded');
      assert.equal(me.handshake.query.EIO, '4');
      assert.equal(me.handshake.query.transport, mode === 'websocket' ? 'websocket' : 'polling');
      assert.equal(me.handshake.address, '127.0.0.1');
      assert.match(me.handshake.url, /^\/socket\.io\/\?/);
      assert.match(me.handshake.url, /room=lobby/);
      // As socket.io has them: issued is Date.now() at the handshake, time the same instant as a date string.
      assert.ok(Math.abs(me.handshake.issued - Date.now()) < 60_000, `issued ${me.handshake.issued} is milliseconds since the epoch`);
      assert.equal(Math.floor(Date.parse(me.handshake.time) / 1000), Math.floor(me.handshake.issued / 1000));
      assert.equal(me.handshake.headers['x-test'], 'yes', 'headers by lower-case name');
      assert.equal(me.handshake.headers.host, `127.0.0.1:${srv.port}`);
      assert.deepEqual(me.data, { name: 'dora' }, 'set from auth by the connection handler');
    });
  }

  test('no auth: socket.handshake.auth is an empty table', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);
    const me = await ask(socket, 'whoami');
    assert.deepEqual(me.handshake.auth, {});
    assert.deepEqual(me.data, { name: 'anonymous' });
  });
});

// ==========================================================================
describe('disconnection and reconnection', () => {
  test('server-side disconnect: "io server disconnect", no automatic reconnection, manual connect() works', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv, '/', { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    const firstId = socket.id;
    const reconnects = record(socket, 'connect');
    const gone = next(socket, 'disconnect');
    socket.emit('disconnect me');
    assert.equal((await gone)[0], 'io server disconnect');
    await delay(400);
    assert.equal(reconnects.length, 0, 'after "io server disconnect" the client does not reconnect by itself');
    assert.ok(!socket.connected);

    socket.connect();
    await connected(socket);
    assert.notEqual(socket.id, firstId, 'a new socket id');
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
  });

  test('a polling client whose session is killed reconnects by itself', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv, '/', { ...MODES.polling, reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    const firstId = socket.id;
    const sid = socket.io.engine.id;
    const gone = next(socket, 'disconnect');
    const back = next(socket.io, 'reconnect', 5_000);
    // An invalid Engine.IO payload posted on its session makes the server close it.
    await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, { method: 'POST', body: 'abc', headers: { 'content-type': 'text/plain;charset=UTF-8' } }).catch(() => {});
    const [reason] = await gone;
    assert.ok(['transport close', 'transport error', 'parse error'].includes(reason), `unexpected disconnect reason ${reason}`);
    await back;
    await connected(socket);
    assert.notEqual(socket.id, firstId);
    assert.notEqual(socket.io.engine.id, sid, 'a new Engine.IO session');
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
  });

  test('the server sees each disconnect reason', T, async (t) => {
    const srv = await setup(t, { args: ['--ping-interval', '200', '--ping-timeout', '200'] });
    const observer = await connect(srv, '/', MODES.websocket);
    const left = record(observer, 'left');
    const reasonOf = async (id) => {
      await until(() => left.some(([who]) => who === id), `the "left" of ${id}`);
      return left.find(([who]) => who === id)[1];
    };

    const x = await connect(srv, '/', MODES.websocket);
    const xid = x.id;
    x.disconnect();
    assert.equal(await reasonOf(xid), 'client namespace disconnect');

    const y = await connect(srv, '/', MODES.websocket);
    const yid = y.id;
    y.io.engine.close();
    assert.equal(await reasonOf(yid), 'transport close');

    const z = await connect(srv, '/', MODES.polling);
    const zid = z.id;
    z.emit('disconnect me');
    assert.equal(await reasonOf(zid), 'server namespace disconnect');

    // A raw client that stops answering pings.
    const raw = await rawSocketIo(srv);
    assert.ok(await raw.waitClose(2_000), 'a client that never answers pings is closed');
    assert.equal(await reasonOf(raw.sid), 'ping timeout');
  });

  test('SIGTERM with clients connected: they are disconnected and the server exits 0', T, async (t) => {
    const srv = await startServer({ root: FIXTURE });
    const sockets = await Promise.all(Object.values(MODES).map((opts) =>
      connected(ioClient(srv.url, { forceNew: true, reconnection: false, ...opts }))));
    const raw = new RawWs(new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket`));
    await raw.next();
    t.after(() => { for (const s of sockets) s.io.disconnect(); raw.ws.terminate(); });
    const gone = sockets.map((s) => next(s, 'disconnect', 5_000));
    const started = Date.now();
    const code = await srv.stop();
    assertCleanExit(code, srv.stderr());
    assert.ok(Date.now() - started < 3_000, `stopping took ${Date.now() - started} ms`);
    for (const [reason] of await Promise.all(gone)) {
      assert.ok(['transport close', 'transport error', 'io server disconnect'].includes(reason), `reason ${reason}`);
    }
    assert.ok(await raw.waitClose(1_000));
  });
});

// ==========================================================================
describe('heartbeat and timeouts', () => {
  const FAST = ['--ping-interval', '200', '--ping-timeout', '200'];

  test('the open packet carries the configured timings and limits', T, async (t) => {
    const srv = await setup(t, { args: [...FAST, '--max-http-buffer-size', '1000'] });
    const { open } = await pollingHandshake(srv);
    assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.equal(typeof open.sid, 'string');
    assert.ok(open.sid.length >= 10);
    assert.deepEqual(open.upgrades, ['websocket']);
    assert.equal(open.pingInterval, 200);
    assert.equal(open.pingTimeout, 200);
    assert.equal(open.maxPayload, 1000);
  });

  test('defaults: pingInterval 25000, pingTimeout 20000, maxPayload 1000000', T, async (t) => {
    const srv = await setup(t);
    const { open } = await pollingHandshake(srv);
    assert.equal(open.pingInterval, 25000);
    assert.equal(open.pingTimeout, 20000);
    assert.equal(open.maxPayload, 1000000);
    const raw = RawWs.open(srv);
    const wsOpen = JSON.parse((await raw.next()).slice(1));
    assert.deepEqual(wsOpen.upgrades, [], 'nothing to upgrade to from websocket');
  });

  test('clients that answer pings stay connected (both transports)', T, async (t) => {
    const srv = await setup(t, { args: FAST });
    const sockets = await Promise.all([connect(srv, '/', MODES.websocket), connect(srv, '/', MODES.polling), connect(srv)]);
    const drops = sockets.map((s) => record(s, 'disconnect'));
    await delay(1_500);
    assert.deepEqual(drops, [[], [], []], 'no disconnect while pings are answered');
    for (const s of sockets) assert.equal(await ask(s, 'ferret', 'tobi'), 'woot');
  });

  test('a raw WebSocket that never answers pings is closed within ~1 s', T, async (t) => {
    const srv = await setup(t, { args: FAST });
    const raw = await rawSocketIo(srv);
    const started = Date.now();
    assert.ok(await raw.waitClose(1_500), 'the server should close it after pingInterval + pingTimeout');
    const elapsed = Date.now() - started;
    assert.ok(raw.messages.includes('2'), `the server pinged first (got ${JSON.stringify(raw.messages)})`);
    assert.ok(elapsed >= 250, `closed after ${elapsed} ms, sooner than pingInterval + pingTimeout`);
  });

  test('a raw WebSocket that answers pings stays open', T, async (t) => {
    const srv = await setup(t, { args: FAST });
    const raw = await rawSocketIo(srv);
    let pings = 0;
    raw.ws.on('message', (d) => { if (d.toString() === '2') { pings++; raw.send('3'); } });
    await delay(1_200);
    assert.ok(!raw.closed, 'still open');
    assert.ok(pings >= 3, `pinged ${pings} times in 1.2 s with a 200 ms interval`);
  });

  test('a long-polling session that stops polling is closed after the ping timeout', T, async (t) => {
    const srv = await setup(t, { args: FAST });
    const { sid } = await pollingHandshake(srv);
    await delay(800);
    const res = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    assertEioError(res, 400, 1, 'Session ID unknown');
  });

  test('connectTimeout: an Engine.IO session that never sends CONNECT is closed', T, async (t) => {
    const srv = await setup(t, { args: ['--connect-timeout', '300'] });
    const raw = RawWs.open(srv);
    assert.equal((await raw.next())[0], '0');
    const started = Date.now();
    assert.ok(await raw.waitClose(1_500), 'closed after connectTimeout');
    assert.ok(Date.now() - started >= 200, 'not before the timeout');

    const { sid } = await pollingHandshake(srv);
    await delay(700);
    await assertSessionGone(srv, sid);

    // A client that does connect in time is not affected.
    const ok = await connect(srv, '/', MODES.websocket);
    await delay(500);
    assert.ok(ok.connected);
  });
});

// ==========================================================================
describe('limits and invalid input', () => {
  test('a string with a lone UTF-16 surrogate arrives with U+FFFD in its place; pairs stay', T, async (t) => {
    const srv = await setup(t);
    for (const [mode, opts] of Object.entries({ websocket: MODES.websocket, polling: MODES.polling })) {
      const socket = await connect(srv, '/', opts);
      assert.equal(await ask(socket, 'echo', 'a\uD800b'), 'a\uFFFDb', `${mode}: a lone high surrogate`);
      assert.equal(await ask(socket, 'echo', '\uDC00x\uD83D'), '\uFFFDx\uFFFD', `${mode}: a lone low one, and one at the end`);
      assert.equal(await ask(socket, 'echo', '😀 \\ud800 \uD800'), '😀 \\ud800 \uFFFD', `${mode}: a pair, and an escaped backslash before "ud800"`);
    }
    assert.doesNotMatch(srv.stderr(), /dropped/);
  });

  test('maxHttpBufferSize: a 2000-byte message on a 1000-byte server disconnects the client', T, async (t) => {
    const srv = await setup(t, { args: ['--max-http-buffer-size', '1000'] });
    for (const [mode, opts] of Object.entries({ websocket: MODES.websocket, polling: MODES.polling })) {
      const socket = await connect(srv, '/', opts);
      assert.equal(await ask(socket, 'echo', 'x'.repeat(500)), 'x'.repeat(500), `${mode}: a 500-byte message is fine`);
      const gone = next(socket, 'disconnect');
      socket.emit('echo', 'y'.repeat(2000), () => {});
      const [reason] = await gone;
      assert.ok(['transport close', 'transport error'].includes(reason), `${mode}: disconnect reason ${reason}`);
    }
  });

  test('maxHttpBufferSize: a polling POST over the limit gets 413', T, async (t) => {
    const srv = await setup(t, { args: ['--max-http-buffer-size', '1000'] });
    const { sid } = await pollingHandshake(srv);
    const res = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: `4${'z'.repeat(2000)}` });
    assert.equal(res.status, 413);
  });

  test('an invalid Socket.IO packet over polling ("4garbage") closes the session', T, async (t) => {
    const srv = await setup(t);
    const { sid } = await pollingHandshake(srv);
    const post = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '4garbage' });
    assert.ok([200, 400].includes(post.status), `POST answered ${post.status}`);
    assertEioError(await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`), 400, 1, 'Session ID unknown');
  });

  test('an invalid Engine.IO packet over polling ("abc") closes the session', T, async (t) => {
    const srv = await setup(t);
    const { sid } = await pollingHandshake(srv);
    const post = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: 'abc' });
    assert.ok([200, 400].includes(post.status), `POST answered ${post.status}`);
    // Gone at once, as the Engine.IO v4 test suite requires: no close packet
    // kept for a client that broke the protocol.
    assertEioError(await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`), 400, 1, 'Session ID unknown');
  });

  for (const bad of ['4abc', '42{}', '42abc["x"]', '4', '9', 'x']) {
    test(`an invalid packet over websocket (${JSON.stringify(bad)}) closes the connection`, T, async (t) => {
      const srv = await setup(t);
      const raw = await rawSocketIo(srv);
      raw.send(bad);
      assert.ok(await raw.waitClose(WAIT), `the server kept the connection open after ${JSON.stringify(bad)}`);
    });
  }

  test('invalid UTF-8 in a WebSocket text frame closes the connection', T, async (t) => {
    const srv = await setup(t);
    const raw = await rawSocketIo(srv);
    // ws checks what it sends; write the frame by hand: FIN+text, masked, 4 bytes.
    const payload = Buffer.from([0x34, 0x32, 0xc3, 0x28]); // "42" then an invalid sequence
    const mask = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
    raw.ws._socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
    assert.ok(await raw.waitClose(WAIT));
    assert.ok([1007, 1002, 1006].includes(raw.closeCode), `close code ${raw.closeCode}`);
  });

  test('the server survives a client that vanishes mid-poll and mid-upgrade', T, async (t) => {
    const srv = await setup(t);
    const { sid } = await pollingHandshake(srv);
    const controller = new AbortController();
    fetch(`${srv.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { signal: controller.signal }).catch(() => {});
    await delay(50);
    controller.abort();
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
    ws.on('error', () => {});
    srv.track(() => ws.terminate());
    await delay(100);
    ws.terminate();
    await delay(100);
    const socket = await connect(srv);
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
  });
});

// ==========================================================================
describe('Engine.IO HTTP answers', () => {
  test('errors are JSON {code, message} as the reference server sends them', T, async (t) => {
    const srv = await setup(t);
    assertEioError(await request(srv.url, '/socket.io/?EIO=4&transport=polling&sid=nope'), 400, 1, 'Session ID unknown');
    assertEioError(await request(srv.url, '/socket.io/?EIO=4&transport=carrier-pigeon'), 400, 0, 'Transport unknown');
    assertEioError(await request(srv.url, '/socket.io/?EIO=4'), 400, 0, 'Transport unknown');
    assertEioError(await request(srv.url, '/socket.io/?EIO=3&transport=polling'), 400, 5, 'Unsupported protocol version');
    assertEioError(await request(srv.url, '/socket.io/?EIO=abc&transport=polling'), 400, 5, 'Unsupported protocol version');
    assertEioError(await request(srv.url, '/socket.io/?transport=polling'), 400, 5, 'Unsupported protocol version');
    assertEioError(await request(srv.url, '/socket.io/?EIO=4&transport=polling', { method: 'POST', body: '40' }), 400, 2, 'Bad handshake method');
    // transport=websocket without an Upgrade.
    assertEioError(await request(srv.url, '/socket.io/?EIO=4&transport=websocket'), 400, 3, 'Bad request');
    // A polling session asked for over another transport without an upgrade.
    const { sid } = await pollingHandshake(srv);
    assertEioError(await request(srv.url, `/socket.io/?EIO=4&transport=websocket&sid=${sid}`), 400, 3, 'Bad request');
  });

  test('a WebSocket upgrade with an unknown sid or a bad query is refused', T, async (t) => {
    const srv = await setup(t);
    for (const q of ['EIO=4&transport=websocket&sid=nope', 'EIO=3&transport=websocket', 'transport=websocket', 'EIO=4&transport=abc', 'EIO=4']) {
      const raw = RawWs.open(srv, q);
      const outcome = await raw.outcome();
      if (outcome === 'open') {
        // Refusing after the upgrade (as the reference server does for
        // EIO=3) is allowed: no open packet, and the server closes it.
        assert.ok(await raw.waitClose(WAIT), `upgrade with ${q} accepted and left open`);
        assert.ok(!raw.messages.some((m) => typeof m === 'string' && m[0] === '0'), `upgrade with ${q} opened a session`);
      } else {
        assert.equal(outcome, 400, `upgrade with ${q}: status ${outcome}`);
      }
    }
  });

  test('polling answers: text/plain open packet, POST "ok", packets joined with \\x1e', T, async (t) => {
    const srv = await setup(t);
    const { sid, res } = await pollingHandshake(srv);
    assert.match(res.headers['content-type'], /^text\/plain/);
    const connectPost = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '40' });
    assert.equal(connectPost.status, 200);
    assert.equal(connectPost.body, 'ok');
    const connectAck = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    assert.match(connectAck.body, /^40\{"sid":"[^"]+"\}$/);
    // Two events with acks in one POST: both answers arrive, separated by \x1e.
    const post = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
      method: 'POST', body: '421["ferret","a"]\x1e422["echo","é",2]',
    });
    assert.equal(post.body, 'ok');
    let body = '';
    for (let i = 0; i < 5 && body.split('\x1e').length < 2; i++) {
      const poll = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
      body += (body ? '\x1e' : '') + poll.body;
    }
    assert.deepEqual(body.split('\x1e'), ['431["woot"]', '432["é",2]']);
  });

  test('upgrade by hand: probe, noop for the pending GET, "5", then websocket only', T, async (t) => {
    const srv = await setup(t);
    const { sid } = await pollingHandshake(srv);
    const q = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    await request(srv.url, q, { method: 'POST', body: '40' });
    assert.match((await request(srv.url, q)).body, /^40\{"sid":/);

    const pending = request(srv.url, q); // a long-poll waiting when the probe comes
    await delay(50);
    const ws = RawWs.open(srv, `EIO=4&transport=websocket&sid=${sid}`);
    assert.equal(await ws.outcome(), 'open');
    ws.send('2probe');
    assert.equal(await ws.next(), '3probe');
    assert.equal((await pending).body, '6', 'the waiting GET ends with a noop');

    // A browser whose "6" crossed its probe polls once more before it pauses:
    // that GET must end too (the reference server answers it with a noop
    // within 100 ms), or the client never sends "5" and the upgrade hangs.
    const late = await request(srv.url, q, { timeout: 2_000 });
    assert.equal(late.status, 200);
    assert.equal(late.body, '6', 'a GET during the upgrade ends with a noop');

    ws.send('5');
    ws.send('421["ferret","tobi"]');
    assert.equal(await ws.next({ skipPings: true }), '431["woot"]');
    assertEioError(await request(srv.url, q), 400, 3, 'Bad request');
  });

  test('duplicate GET on one session closes it (the first GET gets a close packet)', T, async (t) => {
    const srv = await setup(t);
    const { sid } = await pollingHandshake(srv);
    const first = request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    await delay(30);
    const second = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
    assert.ok([400, 500].includes(second.status));
    const firstRes = await first;
    assert.equal(firstRes.status, 200);
    assert.equal(firstRes.body, '1');
    assertEioError(await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`), 400, 1, 'Session ID unknown');
  });

  test('--transports websocket: polling handshakes are refused, websocket works', T, async (t) => {
    const srv = await setup(t, { args: ['--transports', 'websocket'] });
    assertEioError(await request(srv.url, '/socket.io/?EIO=4&transport=polling'), 400, 0, 'Transport unknown');
    const socket = await connect(srv, '/', MODES.websocket);
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
  });

  test('--transports polling: no upgrade offered; a default client stays on polling', T, async (t) => {
    const srv = await setup(t, { args: ['--transports', 'polling'] });
    const { open } = await pollingHandshake(srv);
    assert.deepEqual(open.upgrades, []);
    const raw = RawWs.open(srv);
    assert.notEqual(await raw.outcome(), 'open', 'websocket is not offered');
    const socket = await connect(srv);
    await delay(300);
    assert.equal(socket.io.engine.transport.name, 'polling');
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
  });

  test('--io-path moves the endpoint (and the client bundle)', T, async (t) => {
    const srv = await setup(t, { args: ['--io-path', '/rt/'] });
    const socket = await connect(srv, '/', { path: '/rt/' });
    assert.equal(await ask(socket, 'ferret', 'tobi'), 'woot');
    const moved = await request(srv.url, '/socket.io/?EIO=4&transport=polling');
    assert.equal(moved.status, 404, 'nothing at /socket.io/ any more');
    const bundle = await request(srv.url, '/rt/socket.io.js');
    assert.equal(bundle.status, 200);
  });

  test('routes and static files still answer next to the endpoint', T, async (t) => {
    const srv = await setup(t);
    const res = await request(srv.url, '/health');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok');
  });
});

// ==========================================================================
describe('CORS and Origin', () => {
  const ALLOWED = 'http://allowed.example';
  const EVIL = 'http://evil.example';

  test('polling from the allowed origin gets Access-Control-Allow-Origin', T, async (t) => {
    const srv = await setup(t, { args: ['--cors-origin', ALLOWED] });
    const { sid, res } = await pollingHandshake(srv, '/socket.io/', { origin: ALLOWED });
    assert.equal(res.headers['access-control-allow-origin'], ALLOWED);
    assert.match(res.headers.vary ?? '', /origin/i, 'Vary: Origin when the answer depends on it');
    const post = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '40', headers: { origin: ALLOWED } });
    assert.equal(post.status, 200);
    assert.equal(post.headers['access-control-allow-origin'], ALLOWED);
  });

  test('a preflight from the allowed origin is answered', T, async (t) => {
    const srv = await setup(t, { args: ['--cors-origin', ALLOWED] });
    const res = await request(srv.url, '/socket.io/?EIO=4&transport=polling', {
      method: 'OPTIONS',
      headers: { origin: ALLOWED, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.ok([200, 204].includes(res.status), `preflight answered ${res.status}`);
    assert.equal(res.headers['access-control-allow-origin'], ALLOWED);
    assert.match(res.headers['access-control-allow-methods'] ?? '', /POST/);
  });

  test('polling from another origin gets no CORS permission', T, async (t) => {
    const srv = await setup(t, { args: ['--cors-origin', ALLOWED] });
    const res = await request(srv.url, '/socket.io/?EIO=4&transport=polling', { headers: { origin: EVIL } });
    const acao = res.headers['access-control-allow-origin'];
    assert.ok(res.status === 403 || (acao !== EVIL && acao !== '*'), `status ${res.status}, Access-Control-Allow-Origin ${acao}`);
  });

  test('a WebSocket upgrade from another origin gets 403; the allowed one and none are accepted', T, async (t) => {
    const srv = await setup(t, { args: ['--cors-origin', ALLOWED, '--cors-origin', 'http://second.example'] });
    assert.equal(await RawWs.open(srv, undefined, { origin: EVIL }).outcome(), 403);
    assert.equal(await RawWs.open(srv, undefined, { origin: ALLOWED }).outcome(), 'open');
    assert.equal(await RawWs.open(srv, undefined, { origin: 'http://second.example' }).outcome(), 'open', '--cors-origin repeats');
    assert.equal(await RawWs.open(srv).outcome(), 'open', 'non-browser clients send no Origin');
  });
});

// ==========================================================================
describe('io.configure from Lua', () => {
  test('timings, limit, transports and CORS set in Lua are used', T, async (t) => {
    const srv = await setup(t, { root: CONFIGURED });
    assertEioError(await request(srv.url, '/socket.io/?EIO=4&transport=polling'), 400, 0, 'Transport unknown');
    const raw = RawWs.open(srv);
    const open = JSON.parse((await raw.next()).slice(1));
    assert.equal(open.pingInterval, 250);
    assert.equal(open.pingTimeout, 150);
    assert.equal(open.maxPayload, 5000);
    // connectTimeout 400: never sending CONNECT gets the session closed.
    assert.ok(await raw.waitClose(1_500), 'closed by connectTimeout');
    assert.equal(await RawWs.open(srv, undefined, { origin: 'http://evil.example' }).outcome(), 403);
    const socket = await connect(srv, '/', MODES.websocket);
    assert.equal(await ask(socket, 'echo', 'configured'), 'configured');
  });
});

// ==========================================================================
describe('the client bundle at /socket.io/', () => {
  const FILES = [
    ['socket.io.js', /javascript/],
    ['socket.io.min.js', /javascript/],
    ['socket.io.js.map', /json/],
    ['socket.io.esm.min.js', /javascript/],
  ];

  for (const [file, type] of FILES) {
    test(`/socket.io/${file} is the client's dist file with caching headers`, T, async (t) => {
      const srv = await setup(t);
      const res = await request(srv.url, `/socket.io/${file}`);
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'] ?? '', type);
      assert.ok(res.raw.equals(fs.readFileSync(path.join(CLIENT_DIST, file))), `the body should be node_modules/socket.io-client/dist/${file}`);
      assert.ok(res.headers.etag, 'an ETag');
      assert.ok(res.headers['cache-control'], 'a Cache-Control header');
      const again = await request(srv.url, `/socket.io/${file}`, { headers: { 'if-none-match': res.headers.etag } });
      assert.equal(again.status, 304);
      assert.equal(again.body, '');
    });
  }

  test('an unknown file under /socket.io/ is not the bundle', T, async (t) => {
    const srv = await setup(t);
    const res = await request(srv.url, '/socket.io/socket.io.nope.js');
    assert.ok(res.status >= 400, `got ${res.status}`);
  });
});

// ==========================================================================
describe('raw Engine.IO endpoint (moonwire.engine) with engine.io-client', () => {
  function engineClient(srv, opts = {}) {
    const sock = new EngineSocket(srv.url, { path: '/engine.io/', ...opts });
    srv.track(() => sock.close());
    const messages = [];
    sock.on('message', (m) => messages.push(m));
    return { sock, messages };
  }

  for (const [mode, opts] of Object.entries(MODES)) {
    test(`send and receive messages, then close (${mode})`, T, async (t) => {
      const srv = await setup(t);
      const observer = await connect(srv, '/', MODES.websocket);
      const opened = next(observer, 'engine open');
      const { sock, messages } = engineClient(srv, opts);
      await next(sock, 'open');
      assert.deepEqual(await opened, [sock.id], 'the Lua side got the connection with the same id');
      await until(() => messages.length >= 1, 'the hello');
      assert.equal(messages[0], `id:${sock.id}`);

      sock.send('hello');
      sock.send('wörld 🌍');
      await until(() => messages.length >= 3, 'the echoes');
      assert.deepEqual(messages.slice(1, 3), ['hello', 'wörld 🌍']);

      sock.send(Buffer.from([0, 1, 2, 255]));
      await until(() => messages.length >= 4, 'the binary echo');
      assert.ok(Buffer.isBuffer(messages[3]) || messages[3] instanceof ArrayBuffer, `binary comes back as binary: ${typeof messages[3]}`);
      assert.deepEqual([...Buffer.from(messages[3])], [0, 1, 2, 255]);

      if (mode === 'default') await until(() => sock.transport.name === 'websocket', 'the upgrade');

      const closed = next(observer, 'engine closed');
      const id = sock.id;
      sock.close();
      const [who, reason] = await closed;
      assert.equal(who, id);
      assert.equal(reason, 'transport close');
    });
  }

  test('the raw endpoint is not Socket.IO, and /socket.io/ is not the raw endpoint', T, async (t) => {
    const srv = await setup(t);
    const { sock, messages } = engineClient(srv, MODES.websocket);
    await next(sock, 'open');
    await until(() => messages.length >= 1, 'the hello');
    sock.send('40');
    await until(() => messages.length >= 2, 'the echo');
    assert.equal(messages[1], '40', 'a "40" on the raw endpoint is a plain message, echoed');
  });
});
