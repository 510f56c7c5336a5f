// End-to-end tests of the Socket.IO features past the protocol, with the
// unmodified socket.io-client: connection state recovery, per-packet
// middleware (socket:use), dynamic namespaces, emitWithAck inside handlers
// and routes, and onAnyOutgoing. The fixture is fixtures/complete/.
//
// Run from spec/e2e/ with `node --test complete.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FIXTURES, delay, request } from './helpers.mjs';
import { WAIT, ask, client, connect, connected, next, record, setup, until } from './sio.mjs';

const ROOT = path.join(FIXTURES, 'complete');
const T = { timeout: 20_000 };

const MODES = {
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
};

// A client that reconnects by itself after reconnectionDelay ms.
function reconnecting(srv, opts = {}) {
  return client(srv, '/', { reconnection: true, reconnectionDelay: 300, reconnectionDelayMax: 300, ...opts });
}

// The values of every 'news' event, without the offset that recovery adds.
const values = (got) => got.map((args) => args[0]);

// A reconnecting reader in room "sports" that has had one piece of news
// (so it holds an offset), and a publisher.
async function readerWithNews(srv, opts) {
  const reader = reconnecting(srv, opts);
  const news = record(reader, 'news');
  await connected(reader);
  await ask(reader, 'join', 'sports', 'ada');
  const publisher = await connect(srv);
  publisher.emit('publish', 'sports', 1);
  await until(() => news.length === 1, 'the first news');
  return { reader, news, publisher };
}

describe('connection state recovery', () => {
  for (const [mode, opts] of Object.entries(MODES)) {
    test(`a cut client comes back with its id, rooms and data, and gets what it missed, once and in order (${mode})`, T, async (t) => {
      const srv = await setup(t, { root: ROOT, env: { RECOVERY_MS: '5000' } });
      const { reader, news, publisher } = await readerWithNews(srv, opts);
      assert.equal(reader.recovered, false);
      assert.equal(typeof news[0][1], 'string', 'a broadcast carries its offset as the last argument');
      const id = reader.id;
      const before = (await ask(reader, 'whoami')).middlewareRuns;

      const disconnected = next(reader, 'disconnect');
      assert.equal(await ask(publisher, 'cut', id), true);
      const [reason] = await disconnected;
      // A long-polling client between two polls still gets the close packet
      // with its next poll, so it too sees "transport close".
      assert.equal(reason, 'transport close');
      // While it is away: three for its room, one for a room it is not in.
      publisher.emit('publish', 'sports', 2);
      publisher.emit('publish', 'weather', 'not for ada');
      publisher.emit('publish', 'sports', 3);
      publisher.emit('publish', 'sports', 4);

      await next(reader, 'connect');
      assert.equal(reader.recovered, true, 'the client sees socket.recovered');
      assert.equal(reader.id, id);
      await until(() => news.length === 4, 'the missed news');
      const me = await ask(reader, 'whoami');
      assert.equal(me.id, id);
      assert.equal(me.recovered, true);
      assert.equal(me.data.name, 'ada', 'socket.data came back');
      assert.equal(me.middlewareRuns, before, 'skipMiddlewares: a recovered socket skips io.use');
      // Its room came back too: a new broadcast to it arrives.
      publisher.emit('publish', 'sports', 5);
      await until(() => news.length === 5, 'news after recovery');
      await delay(50);
      assert.deepEqual(values(news), [1, 2, 3, 4, 5]);
    });
  }

  test('past maxDisconnectionDuration the client gets a fresh session', T, async (t) => {
    const srv = await setup(t, { root: ROOT, env: { RECOVERY_MS: '100' } });
    const { reader, news, publisher } = await readerWithNews(srv, {
      transports: ['websocket'], reconnectionDelay: 700, reconnectionDelayMax: 700,
    });
    const id = reader.id;
    await ask(publisher, 'cut', id);
    publisher.emit('publish', 'sports', 2);
    await next(reader, 'connect', 5_000);
    assert.equal(reader.recovered, false);
    assert.notEqual(reader.id, id);
    const me = await ask(reader, 'whoami');
    assert.equal(me.recovered, false);
    assert.deepEqual(values(news), [1], 'nothing is replayed to a new session');
  });

  test('a session whose backlog was cut (maxPackets) is not recovered', T, async (t) => {
    const srv = await setup(t, { root: ROOT, env: { RECOVERY_MS: '5000', RECOVERY_MAX_PACKETS: '3' } });
    const { reader, news, publisher } = await readerWithNews(srv, { transports: ['websocket'] });
    const id = reader.id;
    await ask(publisher, 'cut', id);
    for (let i = 2; i <= 6; i++) publisher.emit('publish', 'sports', i);
    await next(reader, 'connect', 5_000);
    assert.equal(reader.recovered, false);
    assert.notEqual(reader.id, id);
    await delay(50);
    assert.deepEqual(values(news), [1]);
  });

  test('is off unless configured: no pid, no offsets', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const reader = await connect(srv, '/', { transports: ['websocket'] });
    const news = record(reader, 'news');
    await ask(reader, 'join', 'sports', 'ada');
    reader.emit('publish', 'sports', 1);
    await until(() => news.length === 1, 'the news');
    assert.deepEqual(news[0], [1]);
    assert.equal(reader._pid, undefined);
  });
});

describe('socket:use, per-packet middleware', () => {
  test('next(err) drops the packet and emits "error" on the server socket', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const socket = await connect(srv);
    const reached = record(socket, 'reached forbidden');
    socket.emit('forbidden');
    const [err] = await next(socket, 'middleware error');
    assert.equal(err, 'forbidden is not allowed');
    assert.equal(await ask(socket, 'shout', 'still here'), 'STILL HERE', 'a middleware can change the packet');
    assert.deepEqual(reached, []);
  });
});

describe('dynamic namespaces', () => {
  test('io.of(pattern) makes a child namespace for a matching name, refuses others', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const a = client(srv, '/workspace-101');
    const hello = next(a, 'hello');
    await connected(a);
    assert.deepEqual(await hello, ['/workspace-101']);
    const b = client(srv, '/workspace-7');
    const helloB = next(b, 'hello');
    await connected(b);
    await helloB;
    // The parent broadcasts to every child.
    const gotA = next(a, 'all workspaces');
    const gotB = next(b, 'all workspaces');
    b.emit('shout all', 'hi');
    assert.deepEqual(await gotA, ['/workspace-7', 'hi']);
    assert.deepEqual(await gotB, ['/workspace-7', 'hi']);
    await assert.rejects(connected(client(srv, '/workspace-abc')), /Invalid namespace/);
  });

  test('io.of(function) decides, and may take its time', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const ok = client(srv, '/team-blue', { auth: { token: 'letmein' } });
    const hello = next(ok, 'hello');
    await connected(ok);
    assert.deepEqual(await hello, ['/team-blue']);
    await assert.rejects(connected(client(srv, '/team-red', { auth: { token: 'nope' } })), /Invalid namespace/);
    await assert.rejects(connected(client(srv, '/elsewhere')), /Invalid namespace/);
  });
});

describe('emitWithAck in Lua', () => {
  test('a handler waits for the client\'s answer, or for the timeout', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const socket = await connect(srv);
    socket.on('question', (q, cb) => cb(`42 to ${q}`));
    socket.emit('quiz', 1000);
    assert.deepEqual(await next(socket, 'quiz result'), [null, '42 to six times seven?']);

    const silent = await connect(srv);
    silent.on('question', () => { /* never answers */ });
    silent.emit('quiz', 50);
    assert.deepEqual(await next(silent, 'quiz result'), ['operation has timed out', null]);
  });

  test('a route waits for a socket\'s answer and then responds', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const socket = await connect(srv);
    socket.on('question', (q, cb) => setTimeout(() => cb(`answer to ${q}`), 20));
    const res = await request(srv.url, `/ask/${socket.id}?q=life`);
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { answer: 'answer to life' });

    socket.off('question');
    socket.on('question', () => { /* never answers */ });
    const late = await request(srv.url, `/ask/${socket.id}?q=x&ms=50`);
    assert.equal(late.status, 504);
    assert.deepEqual(JSON.parse(late.body), { error: 'operation has timed out' });
  });
});

describe('onAnyOutgoing', () => {
  test('sees the socket\'s own emits and the broadcasts that reach it', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const socket = await connect(srv);
    await ask(socket, 'watch outgoing');
    socket.emit('send me', 'one');
    await next(socket, 'direct');
    socket.emit('broadcast', 'two');
    await next(socket, 'everyone');
    assert.deepEqual(await ask(socket, 'outgoing'), ['direct:one', 'everyone:two']);
  });
});
