// `moonwire new DIR`: the app it writes is served at once, answers on its
// socket, and its own specs pass with busted.
//
// Run from spec/e2e/ with `node --test newapp.test.mjs`.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { makeTempDir, request, runBinary } from './helpers.mjs';
import { ask, connect, next, setup } from './sio.mjs';

const T = { timeout: 30_000 };
const HAVE_BUSTED = spawnSync('busted', ['--version']).status === 0;

describe('moonwire new', () => {
  test('creates an app that moonwire serves at once', T, async (t) => {
    const dir = path.join(makeTempDir(), 'hackathon');
    const made = await runBinary(['new', dir]);
    assert.equal(made.code, 0, made.stderr);
    for (const file of ['scripts/app.lua', 'views/index.html', 'views/layout.html', 'public/app.js',
      'public/style.css', 'spec/app_spec.lua', 'README.md', 'Makefile', '.busted']) {
      assert.ok(fs.existsSync(path.join(dir, file)), `${file} was created`);
    }
    assert.match(fs.readFileSync(path.join(dir, 'README.md'), 'utf8'), /make run[\s\S]*make test/);
    assert.match(fs.readFileSync(path.join(dir, 'scripts/app.lua'), 'utf8'), /^-- hackathon: a moonwire app/);

    const srv = await setup(t, { root: dir });
    const page = await request(srv.url, '/');
    assert.equal(page.status, 200);
    assert.match(page.body, /<title>hackathon<\/title>[\s\S]*Say hello/);
    assert.equal((await request(srv.url, '/app.js')).status, 200);
    assert.equal((await request(srv.url, '/socket.io/socket.io.js')).status, 200);

    const [ada, bob] = [await connect(srv), await connect(srv)];
    const heard = next(bob, 'hello');
    assert.deepEqual(await ask(ada, 'hello', 'Ada'), { greeting: 'Hello, Ada!' });
    assert.deepEqual(await heard, ['Ada']);
  });

  test("the new app's specs pass with busted", { ...T, skip: HAVE_BUSTED ? false : 'busted is not installed' }, async () => {
    const dir = path.join(makeTempDir(), 'specced');
    assert.equal((await runBinary(['new', dir])).code, 0);
    const env = { ...process.env };
    if (process.env.MOONWIRE_LUA_PRELOAD) env.LD_PRELOAD = process.env.MOONWIRE_LUA_PRELOAD;
    const run = spawnSync('busted', [], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /3 successes \/ 0 failures \/ 0 errors/);
  });

  test('refuses a directory that is not empty, and a missing DIR', T, async () => {
    const dir = makeTempDir();
    fs.writeFileSync(path.join(dir, 'keep.txt'), 'mine');
    const again = await runBinary(['new', dir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists and is not an empty directory/);
    assert.equal(fs.readFileSync(path.join(dir, 'keep.txt'), 'utf8'), 'mine', 'nothing was touched');
    const bare = await runBinary(['new']);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /usage: moonwire new DIR/);
  });
});
