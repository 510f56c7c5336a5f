// The database never freezes the server: a write waiting on a lock another
// process holds, a long query and a runaway one cost only the handler that
// ran them. Through the real binary, a real SQLite file, and a second
// process (the sqlite3 shell) holding the write lock.
//
// Run from spec/e2e/ with `node --test db.test.mjs`.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';

import { assertCleanExit, delay, makeAppRoot, request, runBinary, serve, startServer, tempDbPath } from './helpers.mjs';
import { client, connected, next, setup, until } from './sio.mjs';

const T = { timeout: 60_000 };
const ROOT = makeAppRoot('db');

/**
 * The sqlite3 shell holding the database's write lock (BEGIN IMMEDIATE)
 * until release() (COMMIT) is called.
 */
async function holdWriteLock(db) {
  const proc = spawn('sqlite3', [db], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  proc.stdin.write(".timeout 10000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  await until(() => out.includes('locked') || proc.exitCode !== null, 'the sqlite3 shell to take the lock', 15_000);
  assert.ok(out.includes('locked'), `sqlite3 did not take the lock: ${err}`);
  return {
    async release() {
      proc.stdin.end('COMMIT;\n');
      assert.equal(await exited, 0, `sqlite3: ${err}`);
    },
  };
}

/** A request whose outcome is noted when it comes: { promise, done, result }. */
function pending(promise) {
  const p = { done: false, result: undefined };
  p.promise = promise.then(
    (r) => { p.done = true; p.result = r; return r; },
    (e) => { p.done = true; p.result = e; throw e; },
  );
  return p;
}

/** Resolves when promise settles, or rejects after ms naming what. */
async function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms); });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const json = (r) => JSON.parse(r.body);

describe('a statement that waits does not hold the loop', () => {
  test('a static file and a plain route are answered while a write waits for a lock another process holds', T, async (t) => {
    const db = tempDbPath();
    const srv = await serve(t, { root: ROOT, db });
    const lock = await holdWriteLock(db);
    try {
      const write = pending(request(srv.url, '/items?tag=locked', { method: 'POST', timeout: 20_000 }));
      await delay(50); // the write is on its way to the lock
      const file = await within(request(srv.url, '/hello.txt', { timeout: 20_000 }), 15_000, 'GET /hello.txt');
      const hello = await within(request(srv.url, '/hello', { timeout: 20_000 }), 15_000, 'GET /hello');
      assert.equal(file.body, 'a static file\n');
      assert.equal(hello.body, 'hello');
      assert.equal(write.done, false, 'both were answered while the write still waited for the lock');
      await lock.release();
      // Released before the busy timeout (5 s by default): the write goes through.
      const r = await write.promise;
      assert.equal(r.status, 201, r.body);
    } finally {
      await lock.release().catch(() => {});
    }
    const rows = json(await request(srv.url, '/items'));
    assert.deepEqual(rows.map((r) => r.tag), ['locked']);
  });

  test('a static file and a plain route are answered while a query runs on and on; SIGTERM interrupts it', T, async () => {
    const srv = await startServer({ root: ROOT });
    const forever = pending(request(srv.url, '/forever', { timeout: 30_000 }));
    await delay(50);
    const file = await within(request(srv.url, '/hello.txt', { timeout: 20_000 }), 8_000, 'GET /hello.txt');
    const hello = await within(request(srv.url, '/hello', { timeout: 20_000 }), 8_000, 'GET /hello');
    assert.equal(file.status, 200);
    assert.equal(hello.body, 'hello');
    assert.equal(forever.done, false, 'answered while the query ran');
    // Shutting down: the running statement is given a bounded time, then
    // interrupted; its request gets a 500 and the server exits cleanly.
    const code = await srv.stop();
    const r = await forever.promise;
    assert.equal(r.status, 500);
    assertCleanExit(code, srv.stderr());
    assert.match(srv.stderr(), /statement stopped: the server is shutting down/);
  });

  test('a handler that was waiting for its statement when SIGTERM came may still emit and answer', T, async () => {
    const srv = await startServer({ root: ROOT });
    const r = pending(request(srv.url, '/wait-then-emit', { timeout: 30_000 }));
    await delay(100);
    const code = await srv.stop(); // the statement is interrupted; io.emit then reaches nobody
    assert.equal((await r.promise).body, 'emitted');
    assertCleanExit(code, srv.stderr());
  });

  test('a socket event handler and a timer use the database while a long query runs', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const forever = pending(request(srv.url, '/forever', { timeout: 30_000 }));
    await delay(50);
    const socket = client(srv);
    await within(connected(socket, 8_000), 8_000, 'connecting');
    const row = await within(socket.timeout(8_000).emitWithAck('add', 'from a socket'), 8_000, "the 'add' ack");
    assert.equal(row.tag, 'from a socket');
    const done = next(socket, 'done', 8_000);
    socket.emit('later', 'from a timer');
    const [timed] = await done;
    assert.equal(timed.tag, 'from a timer');
    assert.equal(timed.id, row.id + 1);
    assert.equal(forever.done, false, 'all of it while the query ran');
  });
});

describe('deadlines', () => {
  test('a runaway query is stopped at the statement budget: 500, the SQL and file:line in the log, the connections usable', T, async (t) => {
    const srv = await serve(t, { root: ROOT, args: ['--db-statement-timeout', '300'] });
    for (const method of ['GET', 'POST']) { // a reader's connection, then the writer's
      const r = await request(srv.url, '/forever', { method, timeout: 20_000 });
      assert.equal(r.status, 500, `${method} /forever`);
    }
    assert.match(srv.stderr(),
      /GET \/forever: scripts\/app\.lua:\d+: db\.row: statement stopped: it ran past its budget of 300 ms \(--db-statement-timeout\) \(in: WITH RECURSIVE c\(x\) AS/);
    assert.match(srv.stderr(), /POST \/forever: scripts\/app\.lua:\d+: db\.exec: statement stopped: it ran past its budget of 300 ms/);
    // The server goes on, and so do both kinds of connection.
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
    assert.equal((await request(srv.url, '/items?tag=after', { method: 'POST' })).status, 201);
    assert.deepEqual(json(await request(srv.url, '/items')).map((r) => r.tag), ['after']);
  });

  test('a write that waits past the busy timeout gets 500 and "database is locked by another process"', T, async (t) => {
    const db = tempDbPath();
    const srv = await serve(t, { root: ROOT, db, args: ['--db-busy-timeout', '300'] });
    const lock = await holdWriteLock(db);
    let r;
    try {
      r = await request(srv.url, '/items?tag=refused', { method: 'POST', timeout: 20_000 });
    } finally {
      await lock.release();
    }
    assert.equal(r.status, 500);
    assert.match(srv.stderr(),
      /POST \/items\?tag=refused: scripts\/app\.lua:\d+: db\.exec: database is locked by another process \(waited 300 ms, --db-busy-timeout\) \(in: INSERT INTO items/);
    // Once the lock is gone, writes go through again.
    assert.equal((await request(srv.url, '/items?tag=later', { method: 'POST' })).status, 201);
    assert.deepEqual(json(await request(srv.url, '/items')).map((r) => r.tag), ['later']);
  });
});

describe('the flags', () => {
  test('--help lists the database limits with their defaults; a bad value is refused', T, async () => {
    const { stdout } = await runBinary(['--help']);
    assert.match(stdout, /--db-busy-timeout MS .*\(default 5000\)/);
    assert.match(stdout, /--db-statement-timeout MS .*\(default 10000; 0: no limit\)/);
    for (const bad of [['--db-busy-timeout', '-1'], ['--db-statement-timeout', 'soon'], ['--db-busy-timeout']]) {
      const r = await runBinary(bad);
      assert.equal(r.code, 2, bad.join(' '));
      assert.match(r.stderr, /--db-(busy|statement)-timeout/);
    }
  });
});

describe('transactions', () => {
  test('two handlers writing in transactions that wait: each is all in one piece; reads go on meanwhile', T, async (t) => {
    const srv = await serve(t, { root: ROOT });
    // Each holds the writer for at least 5 × 100 ms.
    const a = pending(request(srv.url, '/tx?tag=a&n=5&sleep=100', { method: 'POST', timeout: 20_000 }));
    const b = pending(request(srv.url, '/tx?tag=b&n=5&sleep=100', { method: 'POST', timeout: 20_000 }));
    await delay(50);
    // A read while a transaction holds the writer is answered, and sees
    // nothing uncommitted.
    const during = await request(srv.url, '/items');
    assert.equal(a.done || b.done, false, 'answered while the transactions ran');
    assert.deepEqual(json(during), []);
    assert.equal((await a.promise).status, 201, a.result.body);
    assert.equal((await b.promise).status, 201, b.result.body);
    const rows = json(await request(srv.url, '/items'));
    assert.equal(rows.length, 10);
    // No interleaving: each transaction's rows have consecutive ids, in order.
    for (const tag of ['a', 'b']) {
      const mine = rows.filter((r) => r.tag === tag);
      assert.deepEqual(mine.map((r) => r.n), [1, 2, 3, 4, 5]);
      assert.deepEqual(mine.map((r) => r.id - mine[0].id), [0, 1, 2, 3, 4], `${tag}: ${JSON.stringify(rows)}`);
    }
  });

  test('a transaction that fails after waiting is rolled back and lets the next write in', T, async (t) => {
    const srv = await serve(t, { root: ROOT });
    const failed = pending(request(srv.url, '/tx?tag=gone&n=3&sleep=30&fail=1', { method: 'POST', timeout: 20_000 }));
    await delay(20);
    const write = await request(srv.url, '/items?tag=kept', { method: 'POST', timeout: 20_000 });
    assert.equal(write.status, 201);
    const r = await failed.promise;
    assert.equal(r.status, 500);
    assert.match(srv.stderr(), /POST \/tx\?tag=gone&n=3&sleep=30&fail=1: scripts\/app\.lua:\d+: the transaction fails on purpose/);
    assert.deepEqual(json(await request(srv.url, '/items')).map((x) => x.tag), ['kept']);
  });
});

describe('a full disk', () => {
  test('a write that does not fit gets 500 with a clear log line; the server serves on; committed rows stay', T, async (t) => {
    // PRAGMA max_page_count (here 12 pages of 4 KiB) stands in for a full
    // filesystem: SQLite answers "database or disk is full" (SQLITE_FULL) either way.
    const db = tempDbPath();
    const srv = await startServer({ root: ROOT, db, env: { DB_MAX_PAGES: '12' } });
    const body = 'x'.repeat(3000);
    let stored = 0;
    let refused = 0;
    for (let i = 0; i < 40 && refused < 3; i++) {
      const r = await request(srv.url, `/items?tag=row&n=${i}`, { method: 'POST', body });
      if (r.status === 201) stored++;
      else if (r.status === 500) refused++;
      else assert.fail(`unexpected ${r.status}`);
    }
    assert.ok(stored > 0 && refused === 3, `${stored} stored, ${refused} refused`);
    assert.match(srv.stderr(), /POST \/items\?tag=row&n=\d+: scripts\/app\.lua:\d+: db\.exec: database or disk is full \(in: INSERT INTO items/);
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
    assert.equal(json(await request(srv.url, '/items')).length, stored);
    assertCleanExit(await srv.stop(), srv.stderr());
    // The rows that were committed are there after a restart.
    const again = await serve(t, { root: ROOT, db });
    assert.equal(json(await request(again.url, '/items')).length, stored);
  });
});
