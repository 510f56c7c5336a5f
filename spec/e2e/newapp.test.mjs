// `moonwire new DIR`: the app it writes is served at once, answers on its
// socket, and its own specs pass with busted.
//
// Run from spec/e2e/ with `node --test newapp.test.mjs`.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { REPO_ROOT, makeTempDir, request, runBinary } from './helpers.mjs';
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

  for (const template of ['chat', 'pets']) {
    test(`--template ${template}: the example's ${template}, whose specs pass and whose server answers`, { ...T, timeout: 90_000 }, async (t) => {
      const dir = path.join(makeTempDir(), `my-${template}`);
      const made = await runBinary(['new', dir, '--template', template]);
      assert.equal(made.code, 0, made.stderr);
      assert.match(made.stdout, new RegExp(`from the example ${template}`));
      const own = template === 'chat'
        ? ['scripts/chat.lua', 'scripts/migrations/001_messages.sql', 'views/chat.html', 'public/chat.js', 'spec/chat_spec.lua']
        : ['scripts/pets.lua', 'scripts/seeds.lua', 'scripts/migrations/002_pets.sql', 'views/pets/show.html',
          'views/partials/pet_form.html', 'public/pets.js', 'spec/pets_spec.lua'];
      for (const file of [...own, 'scripts/app.lua', 'scripts/text.lua', 'views/layout.html', 'public/style.css',
        'Makefile', '.busted', 'README.md']) {
        assert.ok(fs.existsSync(path.join(dir, file)), `${file} was created`);
      }
      // The example's files as they are in the repository, not copies kept elsewhere.
      for (const file of own) {
        assert.equal(fs.readFileSync(path.join(dir, file), 'utf8'), fs.readFileSync(path.join(REPO_ROOT, file), 'utf8'), file);
      }
      assert.ok(!fs.existsSync(path.join(dir, template === 'chat' ? 'scripts/pets.lua' : 'scripts/chat.lua')));
      assert.ok(!fs.existsSync(path.join(dir, 'scripts/feed.lua')));
      assert.match(fs.readFileSync(path.join(dir, 'scripts/app.lua'), 'utf8'), new RegExp(`^-- my-${template}: a moonwire app`));
      assert.match(fs.readFileSync(path.join(dir, 'Makefile'), 'utf8'), /--seed/);

      if (HAVE_BUSTED) {
        const env = { ...process.env };
        if (process.env.MOONWIRE_LUA_PRELOAD) env.LD_PRELOAD = process.env.MOONWIRE_LUA_PRELOAD;
        const run = spawnSync('busted', [], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
        assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
        assert.match(run.stdout, /\d+ successes \/ 0 failures \/ 0 errors/);
      } else {
        t.diagnostic('busted is not installed: the specs were not run');
      }

      const srv = await setup(t, { root: dir, args: ['--seed'] });
      if (template === 'pets') {
        assert.match(srv.stderr(), /seeds: the pet store was empty; added 5 pets/);
        const home = await request(srv.url, '/');
        assert.equal(home.status, 302);
        assert.equal(home.headers.location, '/pets');
        const list = await request(srv.url, '/pets');
        assert.equal(list.status, 200);
        assert.match(list.body, /Rex/);
        assert.equal(JSON.parse((await request(srv.url, '/api/pets')).body).length, 5);
        assert.equal((await request(srv.url, '/pets.js')).status, 200);
      } else {
        const page = await request(srv.url, '/');
        assert.equal(page.status, 200);
        assert.equal((await request(srv.url, '/chat.js')).status, 200);
        const ada = await connect(srv);
        assert.equal((await ask(ada, 'nickname', 'Ada')).nickname, 'Ada');
      }
    });
  }

  test('refuses a template it does not have', T, async () => {
    const dir = path.join(makeTempDir(), 'nope');
    const out = await runBinary(['new', dir, '--template', 'shop']);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /no template "shop" \(there are: chat, pets\)/);
    assert.ok(!fs.existsSync(dir), 'nothing was made');
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
