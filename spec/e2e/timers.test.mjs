// moonwire.timer on the real clock, through the real binary: a callback that
// raises is logged with its traceback and its timer keeps running; a server
// with running timers shuts down cleanly. (Order and test-clock behaviour
// are in spec/timer_spec.lua.)
//
// Run from spec/e2e/ with `node --test timers.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FIXTURES, delay, request, serve } from './helpers.mjs';

const ROOT = path.resolve(FIXTURES, '../../fixtures/timers');
const T = { timeout: 20_000 };

/** GETs target until check(body) holds (at most 5 s); returns the last body. */
async function poll(srv, target, check) {
  const end = Date.now() + 5_000;
  let body;
  do {
    body = (await request(srv.url, target)).body;
    if (check(body)) return body;
    await delay(20);
  } while (Date.now() < end);
  return body;
}

describe('moonwire.timer', () => {
  test('an error in a callback is logged with file:line and a traceback, and the timer keeps running', T, async (t) => {
    const srv = await serve(t, { root: ROOT });
    const calls = Number(await poll(srv, '/calls', (body) => Number(body) >= 3));
    assert.ok(calls >= 3, `the failing timer ran ${calls} times`);
    const err = srv.stderr();
    assert.match(err, /timer\.every callback: scripts\/app\.lua:\d+: flaky timer failed on call 1/);
    assert.match(err, /stack traceback:\n\s+\[C\]: in function 'error'\n\s+scripts\/app\.lua:\d+/);
    assert.doesNotMatch(err, /failed on call 2\b/, 'only the odd calls fail');
  });

  test('the server stops with its timers running and exits 0', T, async (t) => {
    const srv = await serve(t, { root: ROOT });
    const log = await poll(srv, '/log', (body) => /tick2/.test(body));
    assert.match(log, /^tick1 .*tick2/);
    assert.equal(await srv.stop(), 0);
  });
});
