// Hot reload through the real binary: a file under scripts/ is rewritten
// while a real socket.io-client is connected, and the same connection gets
// the new code; a broken file keeps the old code and reports the error;
// timers are never duplicated; views/ and public/ changes reach the next
// request. Each test works on its own copy of fixtures/reload.
//
// Run from spec/e2e/ with `node --test reload.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { delay, makeAppRoot, request } from './helpers.mjs';
import { WAIT, ask, connect, next, record, setup, until } from './sio.mjs';

const T = { timeout: 30_000 };

/** Rewrites file (relative to root), replacing from with to. */
function edit(root, file, from, to) {
  const p = path.join(root, file);
  const text = fs.readFileSync(p, 'utf8');
  assert.ok(text.includes(from), `${file} has ${from}`);
  fs.writeFileSync(p, text.replaceAll(from, to));
}

/** Polls GET target until its body matches re; returns the body. */
async function bodyBecomes(srv, target, re, timeout = WAIT) {
  const end = Date.now() + timeout;
  let body;
  for (;;) {
    body = (await request(srv.url, target)).body;
    if (re.test(body)) return body;
    if (Date.now() > end) throw new Error(`GET ${target} never matched ${re}: ${body}`);
    await delay(20);
  }
}

async function start(t) {
  const root = makeAppRoot('reload');
  const srv = await setup(t, { root });
  return { root, srv };
}

describe('hot reload', () => {
  test('an edited handler runs for the same connection, which keeps its id, rooms and data', T, async (t) => {
    const { root, srv } = await start(t);
    const socket = await connect(srv, '/', { transports: ['websocket'], auth: { name: 'ada' } });
    const disconnects = record(socket, 'disconnect');
    const before = await ask(socket, 'whoami');
    assert.equal(await ask(socket, 'version'), 'v1');

    edit(root, 'scripts/app.lua', '"v1"', '"v2"');
    await bodyBecomes(srv, '/version', /^v2 /);

    assert.equal(await ask(socket, 'version'), 'v2', 'the next event runs the new code');
    const after = await ask(socket, 'whoami');
    assert.equal(after.id, before.id);
    assert.equal(after.name, 'ada', 'socket.data stays');
    assert.equal(after.club, true, 'rooms stay');
    assert.equal(after.reloaded, true, 'the new connection handler saw socket.reloaded');
    assert.equal(before.reloaded, false);
    assert.ok(socket.connected);
    assert.deepEqual(disconnects, []);
    assert.match(srv.stderr(), /reload: scripts\/app\.lua changed: generation \d+ loaded in [\d.]+ ms/);
  });

  test('each event is handled exactly once after several reloads', T, async (t) => {
    const { root, srv } = await start(t);
    const socket = await connect(srv, '/', { transports: ['websocket'] });
    const club = record(socket, 'club');
    for (const [from, to] of [['"v1"', '"v2"'], ['"v2"', '"v3"'], ['"v3"', '"v4"']]) {
      edit(root, 'scripts/app.lua', from, to);
      await bodyBecomes(srv, '/version', new RegExp(`^${to.replaceAll('"', '')} `));
    }
    assert.equal(await ask(socket, 'count'), 1, 'one handler ran, from the new generation');
    assert.equal(await ask(socket, 'count'), 2);
    socket.emit('to club', 'hi');
    await until(() => club.length > 0, 'the club message');
    await ask(socket, 'version'); // a round trip: anything else sent has arrived
    assert.deepEqual(club, [['v4:hi']], 'one broadcast, from the new code');
  });

  test('events sent while a reload happens are each answered once, by the old or the new code', T, async (t) => {
    const { root, srv } = await start(t);
    const socket = await connect(srv, '/', { transports: ['websocket'] });
    const answers = [];
    let stop = false;
    const sender = (async () => {
      while (!stop) {
        const batch = Array.from({ length: 20 }, () => ask(socket, 'version'));
        answers.push(...await Promise.all(batch)); // ask rejects if an ack does not come
      }
    })();
    await until(() => answers.length >= 40, 'answers before the reload');
    edit(root, 'scripts/app.lua', '"v1"', '"v2"');
    await until(() => answers.includes('v2') && answers.filter((a) => a === 'v2').length >= 40, 'answers after the reload');
    stop = true;
    await sender;
    const firstNew = answers.indexOf('v2');
    assert.ok(answers.slice(0, firstNew).every((a) => a === 'v1'));
    assert.ok(answers.slice(firstNew).every((a) => a === 'v2'), 'once the new code answers, the old one never does');
  });

  test('a module required by app.lua is loaded again', T, async (t) => {
    const { root, srv } = await start(t);
    edit(root, 'scripts/helper.lua', 'helper1', 'helper2');
    await bodyBecomes(srv, '/version', /^v1 helper2$/);
  });

  test('a broken file keeps the old code running and logs file:line with a traceback', T, async (t) => {
    const { root, srv } = await start(t);
    const socket = await connect(srv, '/', { transports: ['websocket'] });
    edit(root, 'scripts/app.lua', 'local calls = 0', 'local calls = = 0');
    await until(() => /load failed/.test(srv.stderr()), 'the failed reload in the log');
    assert.match(srv.stderr(), /scripts\/app\.lua:\d+: unexpected symbol near '='/);
    assert.equal(await ask(socket, 'version'), 'v1', 'the old handlers still answer');
    assert.equal(await ask(socket, 'count'), 1);
    assert.match((await request(srv.url, '/version')).body, /^v1 /, 'and the old routes');

    // An error while running the file (not a syntax error) is caught the same way.
    edit(root, 'scripts/app.lua', 'local calls = = 0', 'local calls = nil + 0');
    await until(() => (srv.stderr().match(/load failed/g) ?? []).length >= 2, 'the second failed reload');
    assert.match(srv.stderr(), /scripts\/app\.lua:\d+: attempt to perform arithmetic on a nil value/);
    assert.match(srv.stderr(), /stack traceback:/);
    assert.equal(await ask(socket, 'count'), 2, 'the old generation, state and all, is still the one running');

    edit(root, 'scripts/app.lua', 'local calls = nil + 0', 'local calls = 100');
    edit(root, 'scripts/app.lua', '"v1"', '"v2"');
    await bodyBecomes(srv, '/version', /^v2 /);
    assert.equal(await ask(socket, 'count'), 101);
  });

  test('the timers of an old generation stop: after a reload only the new code ticks', T, async (t) => {
    const { root, srv } = await start(t);
    await bodyBecomes(srv, '/ticks', /v1/);
    for (const [from, to] of [['"v1"', '"v2"'], ['"v2"', '"v3"']]) {
      edit(root, 'scripts/app.lua', from, to);
      await bodyBecomes(srv, '/version', new RegExp(`^${to.replaceAll('"', '')} `));
    }
    // A version that fails to load must not leave its timers running either
    // (its timer is made before the error).
    edit(root, 'scripts/app.lua', 'local calls = 0', 'local calls = 0 error("broken on purpose")');
    edit(root, 'scripts/app.lua', '"v3"', '"broken"');
    await until(() => /broken on purpose/.test(srv.stderr()), 'the failed reload');
    const ticks = (await bodyBecomes(srv, '/ticks', /(v3 .*){5}$/)).split(' ');
    const first = ticks.indexOf('v3');
    assert.deepEqual(ticks.slice(first).filter((v) => v !== 'v3'), [], `after v3 ticked, nothing else did: ${ticks.join(' ')}`);
    await delay(200);
    const later = (await request(srv.url, '/ticks')).body.split(' ');
    const from = later.indexOf('v3');
    assert.deepEqual(later.slice(from).filter((v) => v !== 'v3'), [], 'the old timers stay stopped');
  });

  test('views/ and public/ changes show in the next request', T, async (t) => {
    const { root, srv } = await start(t);
    assert.match((await request(srv.url, '/page')).body, /page one/);
    edit(root, 'views/page.html', 'page one', 'page two');
    await bodyBecomes(srv, '/page', /page two/);
    assert.match((await request(srv.url, '/page.css')).body, /0, 0, 255/);
    edit(root, 'public/page.css', '0, 0, 255', '255, 0, 0');
    await bodyBecomes(srv, '/page.css', /255, 0, 0/);
  });

  test('--production does not watch files; --production --watch does', T, async (t) => {
    const root = makeAppRoot('reload');
    const srv = await setup(t, { root, args: ['--production'] });
    edit(root, 'scripts/app.lua', '"v1"', '"v2"');
    await delay(300);
    assert.match((await request(srv.url, '/version')).body, /^v1 /);

    const root2 = makeAppRoot('reload');
    const srv2 = await setup(t, { root: root2, args: ['--production', '--watch'] });
    edit(root2, 'scripts/app.lua', '"v1"', '"v2"');
    await bodyBecomes(srv2, '/version', /^v2 /);
  });
});
