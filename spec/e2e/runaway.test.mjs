// A handler that never ends, or that allocates without end, must not stop
// the server: each call into Lua has a time budget (--handler-budget) and
// the VM a memory ceiling (--lua-memory). The handler fails like an error
// (a route 500s, an event handler's error is logged with its file:line) and
// everyone else is answered right after.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { assertCleanExit, delay, makeAppRoot, request, startServer } from './helpers.mjs';
import { connect, setup, WAIT } from './sio.mjs';

const T = { timeout: 60_000 };
const BUDGET = ['--handler-budget', '300', '--lua-memory', '64'];
const CEILING = ['--handler-budget', '10000', '--lua-memory', '64'];

async function waitFor(fn, what, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

function ask(socket, event, ...args) {
  return socket.timeout(WAIT).emitWithAck(event, ...args);
}

describe('handler budget', () => {
  for (const route of ['/spin', '/spin-pcall', '/spin-wrap']) {
    test(`a route that never ends (${route}) gets 500, and the server answers the next request`, T, async (t) => {
      const srv = await setup(t, { root: makeAppRoot('runaway'), args: BUDGET });
      const spun = request(srv.url, route, { timeout: 20_000 });
      // Queued behind the runaway: answered as soon as it is stopped.
      const hello = request(srv.url, '/hello', { timeout: 20_000 });
      const res = await spun;
      assert.equal(res.status, 500);
      assert.match(res.body, /handler stopped: it ran longer than its 300 ms budget/);
      assert.equal((await hello).body, 'hello');
      await waitFor(() => /scripts\/app\.lua:\d+: handler stopped: it ran longer than its 300 ms budget/.test(srv.stderr()), 'the error in the log');
      assert.equal((await request(srv.url, '/hello')).body, 'hello');
    });
  }

  test('a socket handler that never ends is stopped; the socket and the others go on', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('runaway'), args: BUDGET });
    const a = await connect(srv);
    const b = await connect(srv, '/', { transports: ['polling'] });
    a.emit('spin');
    assert.equal(await ask(b, 'echo', 'still here'), 'still here');
    assert.equal(await ask(a, 'echo', 'me too'), 'me too');
    await waitFor(() => /handler for 'spin': scripts\/app\.lua:\d+: handler stopped/.test(srv.stderr()), 'the error in the log');
  });

  test('a timer that never ends is stopped', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('runaway'), args: BUDGET });
    assert.equal((await request(srv.url, '/spin-timer')).body, 'armed');
    await waitFor(() => /handler stopped/.test(srv.stderr()), 'the timer to be stopped');
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
  });

  test('an edit that loops at load time does not replace the running app', T, async (t) => {
    const root = makeAppRoot('runaway');
    const srv = await setup(t, { root, args: [...BUDGET, '--watch'] });
    const file = path.join(root, 'scripts', 'app.lua');
    fs.writeFileSync(file, `${fs.readFileSync(file, 'utf8')}\nwhile true do end\n`);
    await waitFor(() => /handler stopped/.test(srv.stderr()), 'the reload to be stopped');
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
  });

  test('SIGTERM during a runaway: the server stops cleanly once it is cut', T, async (t) => {
    const srv = await startServer({ root: makeAppRoot('runaway'), args: BUDGET });
    const spun = request(srv.url, '/spin', { timeout: 20_000 }).catch((e) => e);
    await delay(50);
    srv.signal('SIGTERM');
    assertCleanExit(await srv.stop(), srv.stderr());
    const res = await spun;
    assert.ok(res instanceof Error || res.status === 500, 'the runaway request ends');
  });

  test('--handler-budget 0 turns the budget off', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('runaway'), args: ['--handler-budget', '0'] });
    // A handler may then run as long as it likes: this one is long, not endless.
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
    assert.doesNotMatch(srv.stderr(), /without a time budget/);
  });
});

describe('memory ceiling', () => {
  test('a route that allocates without end gets 500; the memory is collected; the server goes on', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('runaway'), args: CEILING });
    const before = Number((await request(srv.url, '/memory')).body);
    const res = await request(srv.url, '/hog', { timeout: 30_000 });
    assert.equal(res.status, 500);
    await waitFor(() => /scripts\/app\.lua:\d+: handler stopped: the Lua VM is over its memory limit of 64 MiB/.test(srv.stderr()), 'the error in the log');
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
    const after = Number((await request(srv.url, '/memory')).body);
    assert.ok(after < before + 4096, `the VM holds ${after} KiB after the runaway, ${before} KiB before`);
  });

  test('one allocation past the ceiling fails that handler only', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('runaway'), args: CEILING });
    const res = await request(srv.url, '/hog-once');
    assert.equal(res.status, 500);
    await waitFor(() => /not enough memory/.test(srv.stderr()), 'the error in the log');
    assert.equal((await request(srv.url, '/hello')).body, 'hello');
  });
});
