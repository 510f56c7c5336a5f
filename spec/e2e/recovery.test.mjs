// Connection state recovery kept in the app's SQLite file
// (connectionStateRecovery.store = "sqlite"), with the unmodified
// socket.io-client: a client connected while the server stops (SIGTERM) and
// starts again on the same database comes back with its id, rooms, data and
// every packet it missed, once and in order. Garbled rows are skipped with a
// log line; expired ones are pruned. The fixture is fixtures/recovery/.
//
// Run from spec/e2e/ with `node --test recovery.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { io as ioClient } from 'socket.io-client';

import { FIXTURES, assertCleanExit, delay, request, startServer, tempDbPath } from './helpers.mjs';
import { WAIT, ask, connected, next, until } from './sio.mjs';

const ROOT = path.join(FIXTURES, 'recovery');
const T = { timeout: 30_000 };

const MODES = {
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
};

// A server on the database file db, on port (0: any); stopped when the test
// ends if it still runs. env: RECOVERY_MS, RECOVERY_MAX_PACKETS.
async function start(t, db, { port = 0, env = {} } = {}) {
  const srv = await startServer({ root: ROOT, db, env, args: ['--port', String(port)] });
  t.after(async () => {
    if (srv.proc.exitCode === null && srv.proc.signalCode === null) await srv.stop();
  });
  return srv;
}

// Stops srv with SIGTERM and checks it went cleanly.
async function stop(srv) {
  assertCleanExit(await srv.stop(), srv.stderr());
}

function client(t, url, opts = {}) {
  const socket = ioClient(url, { forceNew: true, timeout: WAIT, ...opts });
  t.after(() => { socket.disconnect(); socket.io.disconnect(); });
  return socket;
}

async function publish(srv, room, from, to = from) {
  const res = await request(srv.url, `/publish?room=${room}&from=${from}&to=${to}`, { method: 'POST' });
  assert.equal(res.status, 200, res.body);
}

async function rows(srv) {
  const res = await request(srv.url, '/rows');
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body);
}

// The rows once the writes queued for the database have run: the same
// count twice, 200 ms apart.
async function settled(srv) {
  let last = await rows(srv);
  for (let i = 0; i < 50; i++) {
    await delay(200);
    const now = await rows(srv);
    if (JSON.stringify(now) === JSON.stringify(last)) return now;
    last = now;
  }
  return last;
}

// The values of every 'news' event, without the offset recovery adds.
const values = (got) => got.map((args) => args[0]);

describe('connection state recovery across a restart (store = "sqlite")', () => {
  for (const [mode, opts] of Object.entries(MODES)) {
    test(`a client connected through SIGTERM and a restart gets its id, rooms, data and what it missed, once and in order (${mode})`, T, async (t) => {
      const db = tempDbPath();
      const first = await start(t, db);
      // No reconnection of its own: it comes back when the test says, after
      // the new server has published what it missed.
      const reader = client(t, first.url, { ...opts, reconnection: false });
      const news = [];
      reader.on('news', (...args) => news.push(args));
      await connected(reader);
      await ask(reader, 'join', 'sports', 'ada');
      const id = reader.id;
      assert.equal(reader.recovered, false);
      await publish(first, 'sports', 1);
      await publish(first, 'weather', 100);
      await until(() => news.length === 1, 'the first news');

      const gone = next(reader, 'disconnect', 10_000);
      await stop(first);
      const [reason] = await gone;
      assert.equal(reason, 'transport close', 'the client may come back');

      const second = await start(t, db, { port: first.port });
      await publish(second, 'sports', 2, 4);
      await publish(second, 'weather', 101);
      reader.connect();
      await connected(reader, 5_000);
      assert.equal(reader.recovered, true, 'the client sees socket.recovered');
      assert.equal(reader.id, id);
      await until(() => news.length === 4, 'the missed news');
      const me = await ask(reader, 'whoami');
      assert.equal(me.id, id);
      assert.equal(me.recovered, true);
      assert.equal(me.data.name, 'ada', 'socket.data came back');
      assert.deepEqual(me.rooms, [id, 'sports'].sort(), 'its rooms came back');
      await publish(second, 'sports', 5);
      await until(() => news.length === 5, 'news after recovery');
      await delay(100);
      assert.deepEqual(values(news), [1, 2, 3, 4, 5]);
      reader.disconnect();
      await stop(second);
    });
  }

  test('with its own reconnection the client comes back on its own; every packet arrives once', T, async (t) => {
    const db = tempDbPath();
    const first = await start(t, db);
    const reader = client(t, first.url, { transports: ['websocket'], reconnectionDelay: 200, reconnectionDelayMax: 200 });
    const news = [];
    reader.on('news', (...args) => news.push(args));
    await connected(reader);
    await ask(reader, 'join', 'sports', 'ada');
    const id = reader.id;
    await publish(first, 'sports', 1);
    await until(() => news.length === 1, 'the first news');
    await stop(first);
    const second = await start(t, db, { port: first.port });
    await next(reader, 'connect', 10_000);
    assert.equal(reader.recovered, true);
    assert.equal(reader.id, id);
    await publish(second, 'sports', 2);
    await until(() => news.length === 2, 'the second news');
    await delay(100);
    assert.deepEqual(values(news), [1, 2]);
    reader.disconnect();
    await stop(second);
  });

  test('past maxDisconnectionDuration a restart brings back nothing, and the expired rows are gone', T, async (t) => {
    const db = tempDbPath();
    const env = { RECOVERY_MS: '300' };
    const first = await start(t, db, { env });
    const reader = client(t, first.url, { transports: ['websocket'], reconnection: false });
    const news = [];
    reader.on('news', (...args) => news.push(args));
    await connected(reader);
    await ask(reader, 'join', 'sports', 'ada');
    const id = reader.id;
    await publish(first, 'sports', 1);
    await until(() => news.length === 1, 'the first news');
    await stop(first);
    await delay(600);
    const second = await start(t, db, { port: first.port, env });
    assert.deepEqual(await rows(second), { packets: 0, sessions: 0 });
    reader.connect();
    await connected(reader, 5_000);
    assert.equal(reader.recovered, false);
    assert.notEqual(reader.id, id);
    reader.disconnect();
    await stop(second);
  });

  test('the log read back is bounded by maxPackets, as in memory', T, async (t) => {
    const db = tempDbPath();
    const env = { RECOVERY_MAX_PACKETS: '5' };
    const first = await start(t, db, { env });
    await publish(first, 'sports', 1, 40);
    await stop(first);
    const second = await start(t, db, { env });
    assert.deepEqual(await rows(second), { packets: 5, sessions: 0 });
    await stop(second);
  });

  test('the writes waiting for the database are capped (maxPackets); the log read back stops at the hole this leaves', T, async (t) => {
    const db = tempDbPath();
    const env = { RECOVERY_MAX_PACKETS: '5' };
    const first = await start(t, db, { env });
    // While a transaction holds the writer, 40 packets are logged: 5 of
    // them wait for the database, the others stay in memory only.
    const held = request(first.url, '/hold?ms=500', { method: 'POST' });
    await delay(100);
    await publish(first, 'sports', 1, 40);
    assert.equal((await held).status, 200);
    assert.deepEqual(await settled(first), { packets: 5, sessions: 0 });
    assert.match(first.stderr() + first.stdout(), /recovery: 5 writes are waiting for the database \(maxPackets\)/);
    // Caught up: written again.
    await publish(first, 'sports', 41);
    assert.deepEqual(await settled(first), { packets: 6, sessions: 0 });
    assert.match(first.stderr() + first.stdout(), /recovery: the database caught up/);
    await stop(first);
    const second = await start(t, db, { env });
    assert.deepEqual(await rows(second), { packets: 1, sessions: 0 }, 'only the packet after the hole is kept');
    assert.match(second.stderr() + second.stdout(), /recovery: the packet log read back stops at a hole \(seq 40 is missing\)/);
    await stop(second);
  });

  test('garbled rows are skipped with a log line; the server starts and good sessions still recover', T, async (t) => {
    const db = tempDbPath();
    const first = await start(t, db);
    const reader = client(t, first.url, { transports: ['websocket'], reconnection: false });
    const news = [];
    reader.on('news', (...args) => news.push(args));
    await connected(reader);
    await ask(reader, 'join', 'sports', 'ada');
    const id = reader.id;
    await publish(first, 'sports', 1);
    await until(() => news.length === 1, 'the first news');
    const res = await request(first.url, '/garble', { method: 'POST' });
    assert.equal(res.status, 200, res.body);
    await stop(first);

    const second = await start(t, db, { port: first.port });
    await publish(second, 'sports', 2);
    reader.connect();
    await connected(reader, 5_000);
    assert.equal(reader.recovered, true);
    assert.equal(reader.id, id);
    await until(() => news.length === 2, 'the missed news');
    assert.deepEqual(values(news), [1, 2]);
    const log = second.stderr() + second.stdout();
    for (const what of ['(bad-rooms): its rooms do not decode', '(bad-data): its data is not JSON', '(no-sid): no sid',
      'moonwire_recovery_packets (0): its rooms do not decode']) {
      assert.ok(log.includes(`recovery: ignoring a garbled row of moonwire_recovery_`), log);
      assert.ok(log.includes(what), `the log names ${what}:\n${log}`);
    }
    reader.disconnect();
    await stop(second);
  });
});
