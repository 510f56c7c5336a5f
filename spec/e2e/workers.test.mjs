// `moonwire --workers 2`: two worker processes on one port, with clients of
// the unmodified socket.io-client over long-polling only, WebSocket only,
// and polling upgraded to WebSocket. The kernel spreads connections over the
// workers (SO_REUSEPORT), so each test connects until both workers have
// clients (a session's worker is the first character of its sid: A, B).
// Broadcasts, rooms, fetchSockets, broadcast acks and serverSideEmit must
// span the workers; a polling request that reaches the other worker is
// handed to its session's; a killed worker is restarted.
//
// The app is fixtures/redis/ (the cluster member of redis.test.mjs) without
// Redis. Run from spec/e2e/ with `node --test workers.test.mjs`.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FIXTURES, delay, makeAppRoot, postForm, request, runBinary } from './helpers.mjs';
import { startRedis } from './redis.mjs';
import { WAIT, ask, client, connected, record, setup, until } from './sio.mjs';

const ROOT = path.join(FIXTURES, 'redis');
const T = { timeout: 60_000 };

const workerOf = (socket) => 'AB'.indexOf(socket.io.engine.id[0]);

// Clients connected until each worker has at least `each` of them (at most
// 40 tries: the kernel's spread is a hash of the client's port).
async function spread(srv, opts, each = 2) {
  const socks = [];
  const errors = [];
  for (let i = 0; i < 40; i++) {
    const s = client(srv, '/', opts);
    s.on('connect_error', (e) => errors.push(e.message));
    s.on('disconnect', (why) => errors.push(`disconnect: ${why}`));
    await connected(s);
    socks.push(s);
    const per = [0, 1].map((w) => socks.filter((x) => workerOf(x) === w).length);
    if (per.every((n) => n >= each)) return { socks, errors };
  }
  throw new Error(`the clients all landed on one worker: ${socks.map((s) => s.io.engine.id[0]).join('')}`);
}

function cases(name, opts) {
  describe(`--workers 2, ${name}`, () => {
    test('a broadcast from a client of either worker reaches the clients of both', T, async (t) => {
      const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
      const { socks, errors } = await spread(srv, opts);
      const got = socks.map((s) => record(s, 'news'));
      for (const w of [0, 1]) {
        const sender = socks.find((s) => workerOf(s) === w);
        await ask(sender, 'emit', { event: 'news', args: [{ from: w }, Buffer.from([1, 2, 255])] });
        await until(() => got.every((g) => g.length === w + 1), `the broadcast from worker ${w} on every client`);
        for (const g of got) {
          assert.deepEqual(g[w][0], { from: w });
          assert.deepEqual([...g[w][1]], [1, 2, 255]);
        }
      }
      assert.deepEqual(errors, [], 'no client lost its session');
    });

    test('rooms span the workers; fetchSockets, broadcast acks and serverSideEmit see both', T, async (t) => {
      const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
      const { socks, errors } = await spread(srv, opts);
      const a = socks.filter((s) => workerOf(s) === 0);
      const b = socks.filter((s) => workerOf(s) === 1);
      const red = [a[0], b[0]];
      for (const s of red) assert.equal(await ask(s, 'join', 'red'), true);
      const got = socks.map((s) => record(s, 'm'));
      await ask(b[1], 'emit', { event: 'm', args: ['to red'], to: ['red'] });
      await until(() => red.every((s) => got[socks.indexOf(s)].length === 1), 'the room on both workers');
      await delay(100); // and nobody else
      assert.deepEqual(got.map((g) => g.length), socks.map((s) => (red.includes(s) ? 1 : 0)));

      const fetched = await ask(a[1], 'fetch', {});
      assert.deepEqual(fetched.sockets.map((s) => s.id).sort(), socks.map((s) => s.id).sort());
      const inRed = await ask(b[1], 'fetch', { to: ['red'] });
      assert.deepEqual(inRed.sockets.map((s) => s.id).sort(), red.map((s) => s.id).sort());

      for (const s of socks) s.on('question', (q, ack) => ack(`${q}: ${s.id}`));
      const acked = await ask(a[1], 'emitAck', { event: 'question', args: ['who'], timeout: 2000 });
      assert.equal(acked.err, null);
      assert.deepEqual(acked.responses.sort(), socks.map((s) => `who: ${s.id}`).sort());

      const sse = await ask(b[0], 'serverSideEmitWithAck', { event: 'ping-server', args: [1] });
      assert.deepEqual(sse.responses.map((r) => r.args), [[1]], 'one answer: the other worker');

      await ask(a[0], 'socketsJoin', { room: 'blue' });
      await ask(b[1], 'emit', { event: 'm', args: ['to blue'], to: ['blue'] });
      await until(() => got.every((g) => g.some(([v]) => v === 'to blue')), 'socketsJoin on both workers');
      assert.deepEqual(errors, [], 'no client lost its session');
    });
  });
}

cases('long-polling only', { transports: ['polling'] });
cases('WebSocket only', { transports: ['websocket'] });
cases('polling upgraded to WebSocket', {});

describe('--workers 2, the sessions', () => {
  test('a polling client never hears "Session ID unknown": every request reaches its session\'s worker', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2', '--ping-interval', '200', '--ping-timeout', '2000'] });
    const { socks, errors } = await spread(srv, { transports: ['polling'] }, 3);
    // Many polls and posts, on keep-alive connections the kernel gave to
    // either worker: a second of heartbeats and messages.
    const end = Date.now() + 1500;
    while (Date.now() < end) await Promise.all(socks.map((s) => ask(s, 'whoami')));
    assert.deepEqual(errors, []);
    assert.ok(socks.every((s) => s.connected));
  });

  test('an upgrade whose sid belongs to the other worker is handed there', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    const { socks, errors } = await spread(srv, {});
    await until(() => socks.every((s) => s.io.engine.transport.name === 'websocket'), 'every client upgraded');
    assert.deepEqual(errors, []);
  });

  test('a request for an unknown session of a worker, or of no worker, gets "Session ID unknown"', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    for (const mark of ['A', 'B', 'Z']) { // Z: a worker there is not
      const sid = `${mark}${'x'.repeat(19)}`;
      const r = await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
      assert.equal(r.status, 400);
      assert.deepEqual(JSON.parse(r.body), { code: 1, message: 'Session ID unknown' });
    }
  });
});

describe('--workers 2 with --redis', () => {
  test('each worker is a server on Redis: broadcasts and rooms span them, polling stays sticky', T, async (t) => {
    const redis = await startRedis(t);
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2', '--redis', redis.url] });
    const { socks, errors } = await spread(srv, { transports: ['polling'] });
    const a = socks.find((s) => workerOf(s) === 0);
    const b = socks.find((s) => workerOf(s) === 1);
    await ask(a, 'join', 'red');
    await ask(b, 'join', 'red');
    const got = socks.map((s) => record(s, 'm'));
    // Sent again until it arrives: each worker subscribes to Redis on its own time.
    const arrived = () => got[socks.indexOf(a)].length >= 1 && got[socks.indexOf(b)].length >= 1;
    for (let i = 0; i < 30 && !arrived(); i++) {
      await ask(b, 'emit', { event: 'm', args: ['to red'], to: ['red'] });
      await delay(100);
    }
    assert.ok(arrived(), 'the room on both workers, through Redis');
    assert.ok(got.every((g, i) => g.length === 0 || [a, b].includes(socks[i])), 'nobody else');
    const fetched = await ask(a, 'fetch', {});
    assert.deepEqual(fetched.sockets.map((s) => s.id).sort(), socks.map((s) => s.id).sort());
    assert.deepEqual(errors, []);
  });
});

describe('--workers 2, the processes', () => {
  const children = (pid) => {
    try {
      return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
    } catch { return []; }
  };

  test('a killed worker is restarted, and its clients connect again', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    const { socks } = await spread(srv, { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 200 });
    const pids = children(srv.proc.pid);
    assert.equal(pids.length, 2, 'two workers');
    const victims = socks.filter((s) => workerOf(s) === 0);
    const lost = victims.map((s) => new Promise((resolve) => s.once('disconnect', resolve)));
    // Which pid is worker 0: the one whose death disconnects the A clients.
    let killed;
    for (const pid of pids) {
      process.kill(pid, 'SIGKILL');
      killed = pid;
      const gone = await Promise.race([Promise.all(lost).then(() => true), delay(1500).then(() => false)]);
      if (gone) break;
    }
    await until(() => socks.every((s) => s.connected), 'every client connected again', 10_000);
    await until(() => children(srv.proc.pid).length === 2, 'the worker restarted', 10_000);
    assert.ok(!children(srv.proc.pid).includes(killed));
    assert.match(srv.stderr(), /worker \d \(pid \d+\) killed by signal 9; restarting it/);
    // The restarted worker serves: new clients reach both workers again,
    // and it has its number back (moonwire.workers).
    const again = await spread(srv, {}, 1);
    const ids = await Promise.all([0, 1].map((w) => ask(again.socks.find((s) => workerOf(s) === w), 'random')));
    assert.deepEqual(ids.map((r) => [r.worker, r.count]), [[1, 2], [2, 2]]);
    const got = socks.map((s) => record(s, 'after'));
    await ask(socks[0], 'emit', { event: 'after', args: [1] });
    await until(() => got.every((g) => g.length === 1), 'a broadcast to every client after the restart');
  });

  test('a worker that stops reading is killed past 64 MiB of messages for it, and restarted', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    const { socks } = await spread(srv, { transports: ['websocket'] }, 1);
    const pids = children(srv.proc.pid);
    process.kill(pids[0], 'SIGSTOP');
    t.after(() => { try { process.kill(pids[0], 'SIGCONT'); } catch { /* killed */ } });
    // The clients that still answer are the other worker's.
    const answers = await Promise.all(socks.map((s) => s.timeout(500).emitWithAck('whoami').then(() => true, () => false)));
    const sender = socks[answers.indexOf(true)];
    assert.ok(sender, 'a client of the running worker');
    const big = 'x'.repeat(900_000);
    for (let i = 0; i < 80 && !/has not read/.test(srv.stderr()); i++) {
      await sender.timeout(10_000).emitWithAck('emit', { event: 'big', args: [big] });
    }
    await until(() => /worker \d \(pid \d+\) has not read \d+ bytes of messages; killing it/.test(srv.stderr()), 'the stuck worker killed', 10_000);
    await until(() => children(srv.proc.pid).length === 2 && !children(srv.proc.pid).includes(pids[0]), 'a new worker', 10_000);
  });

  test('while the supervisor takes nothing, a worker drops its messages to the others past 64 MiB, and carries on', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    const { socks } = await spread(srv, { transports: ['websocket'] }, 1);
    const sender = socks.find((s) => workerOf(s) === 0);
    const other = socks.find((s) => workerOf(s) === 1);
    const got = record(other, 'small');
    process.kill(srv.proc.pid, 'SIGSTOP');
    t.after(() => { try { process.kill(srv.proc.pid, 'SIGCONT'); } catch { /* exited */ } });
    const big = 'x'.repeat(900_000);
    for (let i = 0; i < 120 && !/messages to the other workers are dropped/.test(srv.stderr()); i++) {
      // Acked by the worker itself: it goes on serving its clients.
      await sender.timeout(10_000).emitWithAck('emit', { event: 'big', args: [big], to: ['nobody'] });
    }
    assert.match(srv.stderr(), /workers: the supervisor has not taken \d+ bytes of messages; messages to the other workers are dropped/);
    process.kill(srv.proc.pid, 'SIGCONT');
    await until(() => /the supervisor takes messages again/.test(srv.stderr()), 'the queue drained', 10_000);
    await ask(sender, 'emit', { event: 'small', args: ['after'] });
    await until(() => got.length === 1, 'a broadcast to the other worker once the supervisor reads again', 10_000);
  });

  test('SIGTERM stops every worker and the supervisor exits 0', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    const pids = children(srv.proc.pid);
    assert.equal(pids.length, 2);
    srv.signal('SIGTERM');
    assert.equal(await srv.exited, 0);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} stopped`);
  });

  test('every worker reloads an edited script', T, async (t) => {
    const root = makeAppRoot('reload');
    const srv = await setup(t, { root, args: ['--workers', '2', '--watch'] });
    const app = path.join(root, 'scripts', 'app.lua');
    const before = fs.readFileSync(app, 'utf8');
    assert.match((await request(srv.url, '/version')).body, /^v1 /);
    fs.writeFileSync(app, before.replace('local VERSION = "v1"', 'local VERSION = "v2"'));
    // Fresh connections land on either worker: twenty in a row answer v2.
    let streak = 0;
    const end = Date.now() + 10_000;
    while (streak < 20 && Date.now() < end) {
      const r = await request(srv.url, '/version', { headers: { connection: 'close' } });
      streak = r.status === 200 && r.body.startsWith('v2 ') ? streak + 1 : 0;
      if (!streak) await delay(50);
    }
    assert.equal(streak, 20);
  });

  test('each worker knows its number, and draws its own math.random numbers', T, async (t) => {
    const srv = await setup(t, { root: ROOT, args: ['--workers', '2'] });
    const { socks, errors } = await spread(srv, {}, 1);
    const got = [0, 1].map((w) => ask(socks.find((s) => workerOf(s) === w), 'random'));
    const [a, b] = await Promise.all(got);
    assert.deepEqual([a.worker, b.worker], [1, 2], 'workers.id: 1 for the sessions marked A, 2 for B');
    assert.deepEqual([a.count, b.count], [2, 2], 'workers.count');
    assert.notEqual(a.first, b.first, 'forked alike, seeded apart');
    assert.deepEqual(errors, []);
  });

  test('--workers takes 1 to 64 or auto', async () => {
    for (const bad of ['0', '65', 'x', '']) {
      const r = await runBinary(['--workers', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--workers takes a number between 1 and 64, or auto/);
    }
    const help = await runBinary(['--help']);
    assert.match(help.stdout, /--workers N/);
  });
});

describe('--workers 2, the example chat', () => {
  // A chat client on worker w (0: A, 1: B): clients connect until one lands there.
  async function on(srv, w) {
    for (let i = 0; i < 40; i++) {
      const s = client(srv, '/');
      await connected(s);
      if (workerOf(s) === w) return s;
      s.disconnect();
    }
    throw new Error(`no client landed on worker ${w} in 40 tries`);
  }
  // A round trip (an empty nickname, refused): what the server sent this
  // socket before has arrived once it resolves.
  const sync = async (s) => assert.ok((await ask(s, 'nickname', '')).error);

  test('who is online, private messages and the join and leave notices span the workers; a page that reloads onto the other worker makes no notice', T, async (t) => {
    const srv = await setup(t, { args: ['--workers', '2'], env: { CHAT_LEAVE_GRACE_MS: '1000' } });
    const ann = await on(srv, 0);
    assert.deepEqual(await ask(ann, 'nickname', 'ann'), { nickname: 'ann', online: ['ann'] });
    const joined = record(ann, 'user joined');
    const left = record(ann, 'user left');
    const lists = record(ann, 'online');
    const pms = record(ann, 'private message');

    const bob = await on(srv, 1);
    assert.deepEqual(await ask(bob, 'nickname', 'bob'), { nickname: 'bob', online: ['ann', 'bob'] }, "ann, on the other worker, is online");
    await until(() => joined.length === 1, '"bob joined" from the other worker');
    assert.deepEqual(joined[0], [{ nickname: 'bob' }]);
    await until(() => lists.length === 1, 'the list with bob');
    assert.deepEqual(lists[0], [['ann', 'bob']]);

    assert.equal((await ask(bob, 'private message', { to: 'ann', text: 'hi ann' })).to, 'ann');
    await until(() => pms.length === 1, "bob's private message");
    assert.equal(pms[0][0].text, 'hi ann');
    assert.equal((await ask(ann, 'private message', { to: 'bob', text: 'hi bob' })).to, 'bob', 'bob, on the other worker, is online');

    // cy's page on worker A reloads, and its new socket lands on worker B.
    const cy = await on(srv, 0);
    assert.equal((await ask(cy, 'nickname', 'cy')).nickname, 'cy');
    await until(() => joined.length === 2, '"cy joined"');
    cy.disconnect();
    const again = await on(srv, 1);
    assert.deepEqual(await ask(again, 'nickname', 'cy'), { nickname: 'cy', online: ['ann', 'bob', 'cy'] });
    await delay(1500); // past worker A's grace delay
    await sync(ann);
    assert.deepEqual(left, [], 'no "cy left" for a reload onto the other worker');
    assert.equal(joined.length, 2, 'no second "cy joined"');

    // bob goes for good: "bob left" once, from his worker, and the list without him.
    bob.disconnect();
    await until(() => left.length === 1, '"bob left" after the grace delay', 5_000);
    assert.deepEqual(left, [[{ nickname: 'bob' }]]);
    await until(() => lists.at(-1)?.[0].join() === 'ann,cy', 'the list without bob');
    await delay(300);
    await sync(ann);
    assert.equal(left.length, 1, 'one "bob left"');
  });
});

describe('--workers 2, the example chat when a worker dies', () => {
  test('a name that waited out its delay on a worker that died does not stay online on the others', T, async (t) => {
    const srv = await setup(t, { args: ['--workers', '2'], env: { CHAT_LEAVE_GRACE_MS: '300' } });
    const land = async (w) => {
      for (let i = 0; i < 40; i++) {
        const s = client(srv, '/');
        await connected(s);
        if (workerOf(s) === w) return s;
        s.disconnect();
      }
      throw new Error(`no client landed on worker ${w}`);
    };
    const ann = await land(1);
    assert.equal((await ask(ann, 'nickname', 'ann')).nickname, 'ann');
    const cy = await land(0);
    assert.deepEqual(await ask(cy, 'nickname', 'cy'), { nickname: 'cy', online: ['ann', 'cy'] });
    // Worker 1 (sessions marked A, forked first) dies within cy's delay,
    // after telling the other one that cy is leaving.
    const first = Math.min(...execFileSync('pgrep', ['-P', String(srv.proc.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number));
    cy.disconnect();
    await delay(100);
    process.kill(first, 'SIGKILL');
    await delay(2 * 300 + 1000 + 500); // past the lapse of its word, and its restart
    assert.deepEqual(await ask(ann, 'nickname', 'anna'), { nickname: 'anna', online: ['anna'] }, 'cy is not online any more');
  });
});

describe('--workers 2, forms and sessions', () => {
  test('without MOONWIRE_SECRET (dev mode) a form and a session made by one worker are good on the other', T, async (t) => {
    const srv = await setup(t, { args: ['--dev', '--workers', '2'], env: { MOONWIRE_SECRET: '' } });
    // Each request is a connection of its own, which the kernel gives to
    // either worker: over 12 rounds, form and POST meet different workers.
    for (let i = 0; i < 12; i++) {
      const form = await request(srv.url, '/pets/new');
      assert.equal(form.status, 200);
      const cookie = /_csrf=([0-9a-f]+)/.exec(form.headers['set-cookie'].join(';'))[1];
      const token = /name="_csrf" value="([0-9a-f]+)"/.exec(form.body)[1];
      const posted = await postForm(srv.url, '/pets', { _csrf: token, name: `Pet ${i}`, species: 'cat' },
        { headers: { origin: srv.url, cookie: `_csrf=${cookie}` } });
      assert.equal(posted.status, 303, `round ${i}: ${posted.body.slice(0, 200)}`);
      // The flash lives in the session cookie the POST's worker signed.
      const session = posted.headers['set-cookie'].map((c) => c.split(';')[0]).join('; ');
      const page = await request(srv.url, posted.headers.location, { headers: { cookie: session } });
      assert.equal(page.status, 200);
      assert.match(page.body, new RegExp(`Pet ${i} the cat was added`), `round ${i}: the flash, read by either worker`);
    }
  });
});
