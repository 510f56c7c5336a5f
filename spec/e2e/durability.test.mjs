// A route that wrote to SQLite and answered 2xx has committed: killing the
// server with SIGKILL right after the answer loses nothing. Fifty times,
// each with a fresh process on the same database file, then every row is
// checked.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { request, serve, startServer, tempDbPath } from './helpers.mjs';

test('kill -9 right after a 201 from a route that inserted: the row is there, 50 times out of 50', { timeout: 120_000 }, async (t) => {
  const db = tempDbPath();
  const ids = [];
  for (let i = 0; i < 50; i++) {
    const srv = await startServer({ db });
    const res = await request(srv.url, '/api/pets', {
      method: 'POST', body: JSON.stringify({ name: `Survivor ${i}`, species: 'cat' }),
      headers: { 'content-type': 'application/json' },
    });
    srv.signal('SIGKILL'); // at once: no shutdown, no checkpoint
    await srv.exited;
    assert.equal(res.status, 201, res.body);
    ids.push(JSON.parse(res.body).id);
  }
  const srv = await serve(t, { db });
  const names = new Map(JSON.parse((await request(srv.url, '/api/pets')).body).map((p) => [p.id, p.name]));
  const lost = ids.filter((id, i) => names.get(id) !== `Survivor ${i}`);
  assert.deepEqual(lost, [], `rows answered 201 and then lost: ${lost.join(', ')}`);
});
