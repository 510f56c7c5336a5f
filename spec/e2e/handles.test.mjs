// Stale handles, as the app sees them through the real binary and the real
// socket.io client: a socket whose client has left may still be used by a
// timer (nothing happens, nothing raises, the handle's actions say false),
// while a response sent twice raises at the route's line. The convention
// is written down in core/l_io.c and core/l_exchange.c.
//
// Run from spec/e2e/ with `node --test handles.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FIXTURES, delay, request } from './helpers.mjs';
import { connect, setup } from './sio.mjs';

const ROOT = path.join(FIXTURES, 'handles');
const T = { timeout: 20_000 };

/** GETs target until its JSON has no `pending` (at most 5 s). */
async function settled(srv, target) {
  const end = Date.now() + 5_000;
  for (;;) {
    const body = JSON.parse((await request(srv.url, target)).body);
    if (!body.pending || Date.now() > end) return body;
    await delay(20);
  }
}

describe('stale handles', () => {
  test('a timer using a socket whose client left: nothing raises, actions say false, queries say closed', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const socket = await connect(srv);
    const id = socket.id;
    socket.disconnect();
    const r = await settled(srv, `/left/${id}`);
    assert.ok(!r.pending, 'the timer ran');
    for (const call of ['emit', 'join', 'leave', 'disconnect']) {
      assert.equal(r[call].raised, false, `socket:${call} on a socket whose client left: ${r[call].err}`);
    }
    assert.equal(r.connected, false);
    assert.equal(r.rooms, 'none');
    assert.deepEqual(r.handle, {
      send: false, join: false, leave: false, disconnect: false, close_transport: false,
      accept: false, bind: false, reject: false, set_id: [false, 'gone'],
      id_is_nil: true, connected: false, buffered: 0, transport: 'closed', rooms: 'none',
    });
    assert.equal(r.misuse.raised, true, 'a wrong argument raises on a stale handle too');
    assert.match(r.misuse.err, /bad argument #1 to 'join' \(string expected, got table\)/);
    assert.doesNotMatch(srv.stderr(), /timer\.after callback/, 'nothing was logged as an error');
  });

  test('a second res:send raises "already sent" at the route\'s line; the client gets the first', T, async (t) => {
    const srv = await setup(t, { root: ROOT });
    const first = await request(srv.url, '/twice');
    assert.equal(first.status, 200);
    assert.equal(first.body, 'first');
    const r = await settled(srv, '/twice/result');
    assert.equal(r.send.raised, true);
    assert.match(r.send.err, /scripts\/app\.lua:\d+: res:send: the response was already sent/);
    assert.equal(r.write.raised, true);
    assert.match(r.write.err, /res:write: the response was already sent/);
  });
});
