// A mixed cluster on one Redis: two moonwire processes (one with --redis,
// one with io.configure{ adapter = ... }) and a Node socket.io 4 server with
// @socket.io/redis-adapter, each with clients of the unmodified
// socket.io-client. Broadcasts, rooms, except, fetchSockets, socketsJoin and
// friends, broadcast acks and serverSideEmit must cross every pair, and
// Redis going away must cost nothing but the cross-server traffic.
//
// Every server speaks the command protocol described at the top of
// fixtures/redis/node-server.mjs (the moonwire side is fixtures/redis/).
//
// Run from spec/e2e/ with `node --test redis.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { createClient } from 'redis';

import { FIXTURES, delay, runBinary } from './helpers.mjs';
import { startNodeServer, startRedis } from './redis.mjs';
import { WAIT, ask, client, connected, next, record, setup, until } from './sio.mjs';

const ROOT = path.join(FIXTURES, 'redis');
const T = { timeout: 30_000 };

// Redis says how many servers share a namespace: its subscribers to the
// request channel. Resolves once all of them have subscribed.
async function subscribed(url, count, nsps = ['/', '/admin']) {
  const r = createClient({ url });
  await r.connect();
  try {
    const end = Date.now() + 10_000;
    for (;;) {
      const got = await r.pubSubNumSub(nsps.map((n) => `socket.io-request#${n}#`));
      if (Object.values(got).every((n) => n === count)) return;
      if (Date.now() > end) throw new Error(`not every server subscribed: ${JSON.stringify(got)}`);
      await delay(20);
    }
  } finally {
    await r.quit();
  }
}

// Two moonwire servers (a, b) and a Node one (n, unless node is false) on a
// Redis of their own.
async function cluster(t, { requestsTimeout, node = true } = {}) {
  const redis = await startRedis(t);
  const env = requestsTimeout ? { REQUESTS_TIMEOUT: String(requestsTimeout) } : {};
  const a = await setup(t, { root: ROOT, args: ['--redis', redis.url], env: { SERVER_NAME: 'a', ...env } });
  const b = await setup(t, { root: ROOT, env: { SERVER_NAME: 'b', REDIS_URL: redis.url, ...env } });
  // The Node server's clients are closed before it stops (hooks run in order).
  const closers = [];
  t.after(() => { for (const close of closers.splice(0)) close(); });
  if (!node) {
    await subscribed(redis.url, 2);
    return { redis, a, b, servers: [a, b] };
  }
  const n = await startNodeServer(t, { redisUrl: redis.url, name: 'n', requestsTimeout });
  n.track = (close) => closers.push(close);
  await subscribed(redis.url, 3);
  return { redis, a, b, n, servers: [a, b, n] };
}

async function join(srv, nsp = '/', opts = {}) {
  const socket = await connected(client(srv, nsp, opts));
  return socket;
}

const sorted = (list) => [...list].sort();

// Asks get() until ok(value) holds (or WAIT passes) and returns the last
// value, for things that settle across servers (the caller asserts on it).
async function eventually(get, ok, timeout = WAIT) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await get();
    if (ok(v) || Date.now() > end) return v;
    await delay(20);
  }
}

describe('a mixed cluster: two moonwire processes and a Node socket.io server on one Redis', () => {
  test('a broadcast from any server reaches the clients of every server, binary included', T, async (t) => {
    const { servers } = await cluster(t);
    const clients = await Promise.all(servers.map((s) => join(s)));
    const got = clients.map((c) => record(c, 'news'));
    for (const [i, sender] of clients.entries()) {
      const payload = { from: i, list: [1, 'two', null, { deep: true }], none: {} };
      await ask(sender, 'emit', { event: 'news', args: [payload, Buffer.from([0, 1, 2, 255])] });
      await until(() => got.every((g) => g.length === i + 1), `news ${i} on every server`);
      for (const g of got) {
        const [value, bin] = g[i];
        assert.deepEqual(value, payload);
        assert.ok(Buffer.isBuffer(bin), 'binary arrives as binary');
        assert.deepEqual([...bin], [0, 1, 2, 255]);
      }
    }
  });

  // notepack.io (the Node server's msgpack) writes a whole number of 2^64 or
  // more as a wrapped uint64, so 1e300 and 1e21 go only through moonwire.
  test('JSON values arrive exactly on every server: numbers at the edges, empty arrays', T, async (t) => {
    const { servers } = await cluster(t);
    const clients = await Promise.all(servers.map((s) => join(s)));
    const got = clients.map((c) => record(c, 'exact'));
    const values = [9007199254740991, -9007199254740991, 0.30000000000000004, 5e-324, 1 / 3, 123456789012345,
      -1e-7, 2 ** 63, [], [[]], { a: [], b: {}, n: [1.5, null] }, null, 'e\u0301😀'];
    for (const [i, sender] of clients.entries()) {
      const args = i < 2 ? [...values, 1e300, 1e21] : values;
      await ask(sender, 'emit', { event: 'exact', args });
      await until(() => got.every((g) => g.length === i + 1), `exact ${i} on every server`);
      for (const [j, g] of got.entries()) assert.deepStrictEqual(g[i], args, `sent through server ${i}, received on ${j}`);
    }
  });

  test('rooms, except and socket.broadcast hold across servers', T, async (t) => {
    const { a, b, n } = await cluster(t);
    const [a1, a2, b1, n1] = await Promise.all([join(a), join(a), join(b), join(n)]);
    await ask(a1, 'join', 'red');
    await ask(b1, 'join', ['red', 'blue']);
    await ask(n1, 'join', 'red');
    await ask(a2, 'join', 'blue');
    const all = { a1, a2, b1, n1 };
    const got = Object.fromEntries(Object.entries(all).map(([k, c]) => [k, record(c, 'm')]));
    const who = (tag) => sorted(Object.keys(got).filter((k) => got[k].some(([v]) => v === tag)));
    const settle = async (tag, expected) => {
      await until(() => who(tag).length >= expected.length, `${tag} to ${expected}`);
      await delay(100); // and nobody else
      assert.deepEqual(who(tag), sorted(expected), tag);
    };

    await ask(n1, 'emit', { event: 'm', args: ['red from n'], to: ['red'] });
    await settle('red from n', ['a1', 'b1', 'n1']);
    await ask(a2, 'emit', { event: 'm', args: ['red or blue from a'], to: ['red', 'blue'] });
    await settle('red or blue from a', ['a1', 'a2', 'b1', 'n1']);
    await ask(b1, 'emit', { event: 'm', args: ['all but blue from b'], except: ['blue'] });
    await settle('all but blue from b', ['a1', 'n1']);
    await ask(a1, 'emit', { event: 'm', args: ['red but blue from a'], to: ['red'], except: ['blue'] });
    await settle('red but blue from a', ['a1', 'n1']);
    await ask(b1, 'emit', { event: 'm', args: ['broadcast from b'], broadcast: true });
    await settle('broadcast from b', ['a1', 'a2', 'n1']);
    await ask(n1, 'emit', { event: 'm', args: ['broadcast to red from n'], broadcast: true, to: ['red'] });
    await settle('broadcast to red from n', ['a1', 'b1']);
    await ask(a1, 'emit', { event: 'm', args: ['local from a'], local: true });
    await settle('local from a', ['a1', 'a2']);
    // A socket's own id is a room everywhere.
    await ask(n1, 'emit', { event: 'm', args: ['to b1 from n'], to: [b1.id] });
    await settle('to b1 from n', ['b1']);
  });

  test('namespaces stay apart', T, async (t) => {
    const { a, n } = await cluster(t);
    const [root, admin, nAdmin] = await Promise.all([join(a), join(a, '/admin'), join(n, '/admin')]);
    const rootGot = record(root, 'm');
    const adminGot = record(admin, 'm');
    await ask(nAdmin, 'emit', { event: 'm', args: ['admins'] });
    await until(() => adminGot.length === 1, 'the admin news on a');
    await delay(100);
    assert.deepEqual(rootGot, []);
  });

  test('fetchSockets sees every server\'s sockets with rooms, data and handshake', T, async (t) => {
    const { a, b, n } = await cluster(t);
    const opts = (who) => ({ query: { who }, auth: { token: who }, extraHeaders: { 'x-test': who } });
    const [a1, b1, n1] = await Promise.all([join(a, '/', opts('a1')), join(b, '/', opts('b1')), join(n, '/', opts('n1'))]);
    await ask(a1, 'setData', { name: 'ada', n: 1 });
    await ask(b1, 'setData', { name: 'bob', tags: ['x'] });
    await ask(n1, 'setData', { name: 'nia' });
    await ask(b1, 'join', 'red');
    await ask(n1, 'join', 'red');

    for (const asker of [a1, b1, n1]) {
      const { sockets, err } = await ask(asker, 'fetch', {});
      assert.equal(err, undefined);
      const byId = Object.fromEntries(sockets.map((s) => [s.id, s]));
      assert.deepEqual(sorted(Object.keys(byId)), sorted([a1.id, b1.id, n1.id]));
      assert.deepEqual(byId[a1.id].data, { name: 'ada', n: 1 });
      assert.deepEqual(byId[b1.id].data, { name: 'bob', tags: ['x'] });
      assert.deepEqual(byId[n1.id].data, { name: 'nia' });
      assert.deepEqual(byId[b1.id].rooms, sorted([b1.id, 'red']));
      assert.deepEqual(byId[n1.id].rooms, sorted([n1.id, 'red']));
      for (const [s, who] of [[a1, 'a1'], [b1, 'b1'], [n1, 'n1']]) {
        const hs = byId[s.id].handshake;
        assert.equal(hs.query.who, who);
        assert.deepEqual(hs.auth, { token: who });
        assert.equal(hs.headers['x-test'], who);
        assert.match(hs.address, /127\.0\.0\.1/);
      }
    }
    const inRed = await ask(a1, 'fetch', { to: ['red'] });
    assert.deepEqual(sorted(inRed.sockets.map((s) => s.id)), sorted([b1.id, n1.id]));
    const notRed = await ask(n1, 'fetch', { except: ['red'] });
    assert.deepEqual(notRed.sockets.map((s) => s.id), [a1.id]);
  });

  test('socketsJoin, socketsLeave, disconnectSockets and a remote socket\'s emit reach other servers', T, async (t) => {
    const { a, b, n } = await cluster(t);
    const [a1, b1, n1] = await Promise.all([join(a), join(b), join(n)]);
    const rooms = async (asker) => {
      const { sockets } = await ask(asker, 'fetch', {});
      return Object.fromEntries(sockets.map((s) => [s.id, s.rooms.filter((r) => r !== s.id)]));
    };
    await ask(n1, 'socketsJoin', { room: 'everyone' });
    let seen = await eventually(() => rooms(a1), (r) => Object.values(r).every((x) => x.includes('everyone')));
    assert.deepEqual(seen, { [a1.id]: ['everyone'], [b1.id]: ['everyone'], [n1.id]: ['everyone'] });

    await ask(a1, 'socketsLeave', { to: [b1.id, n1.id], room: 'everyone' });
    seen = await eventually(() => rooms(b1), (r) => r[n1.id].length === 0 && r[b1.id].length === 0);
    assert.deepEqual(seen, { [a1.id]: ['everyone'], [b1.id]: [], [n1.id]: [] });

    const got = record(n1, 'direct');
    assert.equal(await ask(b1, 'remoteEmit', { id: n1.id, event: 'direct', args: ['hi from b'] }), true);
    await until(() => got.length === 1, 'the remote emit');
    assert.deepEqual(got[0], ['hi from b']);

    const gone = [next(b1, 'disconnect'), next(n1, 'disconnect')];
    await ask(a1, 'disconnectSockets', { except: [a1.id] });
    const reasons = await Promise.all(gone);
    assert.deepEqual(reasons.map(([r]) => r), ['io server disconnect', 'io server disconnect']);
    assert.equal(a1.connected, true);
  });

  test('broadcast acks gather every server\'s answers, and time out with what came', T, async (t) => {
    const { a, b, n } = await cluster(t);
    const clients = await Promise.all([join(a), join(a), join(b), join(n)]);
    clients.forEach((c, i) => c.on('question', (q, cb) => cb(`${q} ${i}`)));
    for (const asker of [clients[0], clients[2], clients[3]]) {
      const { err, responses } = await ask(asker, 'emitAck', { event: 'question', args: ['q'], timeout: 2000 });
      assert.equal(err, null);
      assert.deepEqual(sorted(responses), ['q 0', 'q 1', 'q 2', 'q 3']);
    }
    const rooms = await ask(clients[3], 'emitAck', { event: 'question', args: ['r'], to: [clients[2].id, clients[3].id], timeout: 2000 });
    assert.deepEqual(sorted(rooms.responses), ['r 2', 'r 3']);

    const silent = await join(b);
    silent.on('question', () => {}); // never answers
    const late = await ask(clients[0], 'emitAck', { event: 'question', args: ['t'], timeout: 500 });
    assert.equal(late.err, 'operation has timed out');
    assert.deepEqual(sorted(late.responses), ['t 0', 't 1', 't 2', 't 3']);
  });

  test('serverSideEmit reaches the other servers, not the sender, and acks come back from each', T, async (t) => {
    const { a, b, n } = await cluster(t);
    const [a1, b1, n1] = await Promise.all([join(a), join(b), join(n)]);
    await ask(a1, 'serverSideEmit', { event: 'hello', args: ['from a', { x: 1 }] });
    await ask(n1, 'serverSideEmit', { event: 'hello', args: ['from n'] });
    // What a server heard, once count things came (and a moment for more).
    const heard = async (c, count) => {
      const all = [];
      await eventually(async () => all.push(...await ask(c, 'heard')), () => all.length >= count);
      await delay(100);
      all.push(...await ask(c, 'heard'));
      return all;
    };
    assert.deepEqual(await heard(b1, 2), [{ from: 'hello', args: ['from a', { x: 1 }] }, { from: 'hello', args: ['from n'] }]);
    assert.deepEqual(await heard(a1, 1), [{ from: 'hello', args: ['from n'] }]);
    assert.deepEqual(await heard(n1, 1), [{ from: 'hello', args: ['from a', { x: 1 }] }]);

    for (const [asker, others] of [[a1, ['b', 'n']], [b1, ['a', 'n']], [n1, ['a', 'b']]]) {
      const { err, responses } = await ask(asker, 'serverSideEmitWithAck', { event: 'ping-server', args: [42] });
      assert.equal(err, undefined);
      assert.deepEqual(sorted(responses.map((r) => r.server)), others);
      for (const r of responses) assert.deepEqual(r.args, [42]);
    }
  });
});

describe('bad input from Redis', () => {
  // Only moonwire servers: @socket.io/redis-adapter 8 throws on a broadcast
  // that is not msgpack, and the Node process dies of it.
  test('garbage on the channels is ignored with one warning, and the cluster goes on', T, async (t) => {
    const { redis, a, b } = await cluster(t, { node: false });
    const [a1, b1] = await Promise.all([join(a), join(b)]);
    const r = createClient({ url: redis.url });
    await r.connect();
    const garbage = [
      Buffer.from([0xc1]), Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x00]), Buffer.from('not msgpack'),
      Buffer.from([0x93, 0xa1, 0x78, 0xc0, 0xc0]), // [uid, nil, nil]
      Buffer.from([0x93, 0xa1, 0x78, 0x81, 0xa4, 0x64, 0x61, 0x74, 0x61, 0x90, 0x80]), // { data: [] }
    ];
    for (const g of garbage) {
      await r.publish(Buffer.from('socket.io#/#'), g);
      await r.publish(Buffer.from('socket.io#/#room#'), g);
      await r.publish(Buffer.from('socket.io-request#/#'), g);
      await r.publish(Buffer.from('socket.io-response#/#'), g);
    }
    for (const req of ['{', '[]', '{"type":5}', '{"type":2,"opts":"x"}', '{"type":6,"data":"x"}',
      '{"type":7,"requestId":"q","packet":{"data":["ev"]},"opts":{"flags":{"timeout":-5}}}', '{"type":9,"requestId":7}']) {
      await r.publish('socket.io-request#/#', req);
      await r.publish('socket.io-response#/#', req);
    }
    await r.quit();
    const got = [record(a1, 'm'), record(b1, 'm')];
    await ask(b1, 'emit', { event: 'm', args: ['still here'] });
    await until(() => got.every((g) => g.length === 1), 'a broadcast after the garbage');
    const { sockets } = await ask(a1, 'fetch', {});
    assert.equal(sockets.length, 2);
    for (const srv of [a, b]) {
      assert.equal(srv.stderr().match(/did not decode/g)?.length <= 3, true, srv.stderr());
      assert.doesNotMatch(srv.stderr(), /stack traceback/);
    }
  });
});

describe('--redis', () => {
  test('a URL the client cannot take is refused at start, with the reason', async () => {
    for (const [url, why] of [['http://127.0.0.1:6379', 'expected redis://host:port'], ['redis://h:99999', 'a bad port'],
      ['redis://h:6379/x', 'a bad database number'], ['redis://', 'no host']]) {
      const { code, stderr } = await runBinary(['--port', '0', '--redis', url]);
      assert.equal(code, 2);
      assert.equal(stderr.trim(), `moonwire: --redis ${url}: ${why}`);
    }
  });

  test('an unreachable Redis is logged once and retried; the server runs meanwhile and exits cleanly', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--redis', 'redis://127.0.0.1:1'], env: { SERVER_NAME: 'alone' } });
    const [c1, c2] = await Promise.all([join(srv), join(srv)]);
    const got = record(c2, 'm');
    await ask(c1, 'emit', { event: 'm', args: ['alone'] });
    await until(() => got.length === 1, 'local delivery without Redis');
    await delay(1000); // several retries
    assert.equal(srv.stderr().match(/redis: cannot connect to 127\.0\.0\.1:1 \(Connection refused\); retrying/g)?.length, 1, srv.stderr());
    const { err } = await ask(c1, 'fetch', {});
    assert.equal(err, 'fetchSockets: redis is not connected');
  });
});

describe('Redis going away', () => {
  test('local delivery goes on, requests fail with an error, and the cluster heals when Redis is back', { timeout: 60_000 }, async (t) => {
    const { redis, a, b, n } = await cluster(t, { requestsTimeout: 1000 });
    const [a1, a2, b1, n1] = await Promise.all([join(a), join(a), join(b), join(n)]);
    const got = { a2: record(a2, 'm'), b1: record(b1, 'm'), n1: record(n1, 'm') };

    await redis.kill();
    await delay(200);
    await ask(a1, 'emit', { event: 'm', args: ['while down'] });
    await until(() => got.a2.length === 1, 'local delivery while Redis is down');
    const fetched = await ask(a1, 'fetch', {});
    assert.equal(typeof fetched.err, 'string', 'fetchSockets says it could not ask the others');
    const emitted = await ask(a1, 'emitAck', { event: 'nobody-answers', timeout: 300 });
    assert.equal(emitted.err, 'operation has timed out');
    const sse = await ask(a1, 'serverSideEmitWithAck', { event: 'ping-server', args: [] });
    assert.equal(typeof sse.err, 'string');
    assert.deepEqual(got.b1, []);
    assert.deepEqual(got.n1, []);

    await redis.restart();
    await subscribed(redis.url, 3);
    await ask(a1, 'emit', { event: 'm', args: ['back'] });
    await until(() => got.b1.length === 1 && got.n1.length === 1, 'cross-server delivery after the restart');
    assert.deepEqual(got.b1[0], ['back']);
    const { sockets } = await ask(b1, 'fetch', {});
    assert.deepEqual(sorted(sockets.map((s) => s.id)), sorted([a1.id, a2.id, b1.id, n1.id]));

    // Each state change is logged once, however many retries there were.
    for (const srv of [a, b]) {
      assert.equal(srv.stderr().match(/redis: lost the connection/g)?.length, 1, srv.stderr());
    }
  });
});

describe('the example chat on two servers sharing Redis', () => {
  test('who is online, private messages and the join and leave notices span the servers; a page that reloads onto the other server makes no notice', T, async (t) => {
    const redis = await startRedis(t);
    const env = { CHAT_LEAVE_GRACE_MS: '1000' };
    const a = await setup(t, { args: ['--redis', redis.url], env });
    const b = await setup(t, { args: ['--redis', redis.url], env });
    await subscribed(redis.url, 2, ['/']);
    const sync = async (s) => assert.ok((await ask(s, 'nickname', '')).error);

    const ann = client(a, '/');
    await connected(ann);
    assert.deepEqual(await ask(ann, 'nickname', 'ann'), { nickname: 'ann', online: ['ann'] });
    const joined = record(ann, 'user joined');
    const left = record(ann, 'user left');
    const lists = record(ann, 'online');

    // bob's nickname leaves the moment it is connected, while the server
    // is still asking the other one who is online: it must find its handler.
    const bob = client(b, '/');
    const named = ask(bob, 'nickname', 'bob');
    await connected(bob);
    assert.deepEqual(await named, { nickname: 'bob', online: ['ann', 'bob'] });
    await until(() => joined.length === 1 && lists.length === 1, '"bob joined" and the list, from the other server');
    assert.deepEqual(lists[0], [['ann', 'bob']]);
    assert.equal((await ask(ann, 'private message', { to: 'bob', text: 'hi bob' })).to, 'bob');

    const cy = client(a, '/');
    await connected(cy);
    await ask(cy, 'nickname', 'cy');
    await until(() => joined.length === 2, '"cy joined"');
    cy.disconnect();
    const again = client(b, '/');
    await connected(again);
    assert.deepEqual(await ask(again, 'nickname', 'cy'), { nickname: 'cy', online: ['ann', 'bob', 'cy'] });
    await delay(1500);
    await sync(ann);
    assert.deepEqual(left, [], 'no "cy left" for a reload onto the other server');
    assert.equal(joined.length, 2, `no second "cy joined": ${JSON.stringify(joined)}`);

    bob.disconnect();
    await until(() => left.length === 1, '"bob left" after the grace delay', 5_000);
    assert.deepEqual(left, [[{ nickname: 'bob' }]]);
    await until(() => lists.at(-1)?.[0].join() === 'ann,cy', 'the list without bob');
  });
});
