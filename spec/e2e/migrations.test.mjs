// Schema migrations (scripts/migrations/NNN_name.sql) and seeds, against a
// real SQLite file that outlives the server: applied once, in the order of
// their numbers, each in a transaction; a failing one stops the start with
// the file and SQLite's message; `moonwire migrate --status` lists them;
// --seed fills only an empty pet store.
//
// Run from spec/e2e/ with `node --test migrations.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { assertCleanExit, makeTempDir, request, runBinary, startServer, tempDbPath } from './helpers.mjs';

const T = { timeout: 30_000 };

// An app whose one route lists its tables and the rows of notes.
const APP = `
local app = require "moonwire.app"
local db = require "moonwire.db"
app.get("/tables", function(req, res)
  local names = {}
  for _, r in ipairs(db.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")) do
    names[#names + 1] = r.name
  end
  res:json(names)
end)
app.get("/notes", function(req, res) res:json(db.query("SELECT * FROM notes ORDER BY id")) end)
`;

function makeApp(migrations) {
  const root = makeTempDir('moonwire-migrate-');
  fs.mkdirSync(path.join(root, 'scripts/migrations'), { recursive: true });
  fs.writeFileSync(path.join(root, 'scripts/app.lua'), APP);
  for (const [name, sql] of Object.entries(migrations)) addMigration(root, name, sql);
  return root;
}

function addMigration(root, name, sql) {
  fs.writeFileSync(path.join(root, 'scripts/migrations', name), sql);
}

async function run(root, db, args = []) {
  const srv = await startServer({ root, db, args });
  return srv;
}

async function stop(srv) {
  assertCleanExit(await srv.stop(), srv.stderr());
}

// Lines of --status, without the applied_at times.
async function status(root, db) {
  const out = await runBinary(['migrate', '--status', '--root', root, '--db', db]);
  assert.equal(out.code, 0, out.stderr);
  return out.stdout.replace(/  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g, '').trim().split('\n');
}

describe('migrations', () => {
  test('are applied once, in the order of their numbers, and --status tells which', T, async () => {
    const db = tempDbPath();
    // 10 comes after 9 (numbers, not text), and needs what 9 made.
    const root = makeApp({
      '9_notes.sql': 'CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);\nINSERT INTO notes (text) VALUES (\'first\');\n',
      '10_notes_tag.sql': 'ALTER TABLE notes ADD COLUMN tag TEXT;\nUPDATE notes SET tag = \'seeded\';\n',
    });
    assert.deepEqual(await status(root, db), ['pending  9_notes.sql', 'pending  10_notes_tag.sql', '0 applied, 2 pending']);

    let srv = await run(root, db);
    const log = srv.stderr();
    assert.ok(log.indexOf('applied scripts/migrations/9_notes.sql') >= 0, log);
    assert.ok(log.indexOf('applied scripts/migrations/10_notes_tag.sql') > log.indexOf('9_notes.sql'), log);
    assert.deepEqual(JSON.parse((await request(srv.url, '/notes')).body), [{ id: 1, text: 'first', tag: 'seeded' }]);
    const tables = JSON.parse((await request(srv.url, '/tables')).body);
    assert.ok(tables.includes('moonwire_migrations'), tables);
    await stop(srv);

    addMigration(root, '11_more.sql', 'INSERT INTO notes (text, tag) VALUES (\'second\', \'new\');\n');
    assert.deepEqual(await status(root, db),
      ['applied  9_notes.sql', 'applied  10_notes_tag.sql', 'pending  11_more.sql', '2 applied, 1 pending']);

    srv = await run(root, db);
    assert.doesNotMatch(srv.stderr(), /9_notes|10_notes_tag/, 'the applied ones are not run again');
    assert.match(srv.stderr(), /applied scripts\/migrations\/11_more\.sql/);
    const notes = JSON.parse((await request(srv.url, '/notes')).body);
    assert.deepEqual(notes.map((n) => n.text), ['first', 'second'], 'each INSERT ran once');
    await stop(srv);
    assert.match((await status(root, db)).at(-1), /^3 applied, 0 pending$/);
    fs.rmSync(path.join(root, 'scripts/migrations/11_more.sql'));
    assert.deepEqual((await status(root, db)).slice(-2), ['applied  11_more.sql  (its file is gone)', '3 applied, 0 pending']);
  });

  test('a failing migration stops the start with its file and SQLite\'s message, and leaves nothing behind', T, async () => {
    const db = tempDbPath();
    const root = makeApp({
      '001_notes.sql': 'CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);\n',
      '002_broken.sql': 'CREATE TABLE half (id INTEGER);\nCREAT TABLE oops (id INTEGER);\n',
    });
    const out = await runBinary(['--root', root, '--port', '0', '--db', db, '--quiet']);
    assert.equal(out.code, 1, out.stdout + out.stderr);
    assert.match(out.stderr, /migration failed, not starting: scripts\/migrations\/002_broken\.sql: near "CREAT": syntax error/);
    assert.doesNotMatch(out.stdout, /listening/);
    assert.deepEqual(await status(root, db), ['applied  001_notes.sql', 'pending  002_broken.sql', '1 applied, 1 pending']);

    // Fixed: it runs, and the half-made table of the failed try is not there.
    addMigration(root, '002_broken.sql', 'CREATE TABLE fixed (id INTEGER);\n');
    const srv = await run(root, db);
    const tables = JSON.parse((await request(srv.url, '/tables')).body);
    assert.deepEqual(tables, ['fixed', 'moonwire_migrations', 'notes']);
    await stop(srv);
  });

  test('a .sql file not named NNN_name.sql, or two with one number, stop the start', T, async () => {
    const root = makeApp({ 'notes.sql': 'CREATE TABLE notes (id INTEGER);\n' });
    const out = await runBinary(['--root', root, '--port', '0', '--db', tempDbPath(), '--quiet']);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /scripts\/migrations\/notes\.sql: a migration is named NNN_name\.sql/);

    const twice = makeApp({ '1_a.sql': 'SELECT 1;', '01_b.sql': 'SELECT 1;' });
    const out2 = await runBinary(['migrate', '--status', '--root', twice, '--db', tempDbPath()]);
    assert.equal(out2.code, 1);
    assert.match(out2.stderr, /01_b\.sql and 1_a\.sql have the same number/);
  });

  test('`moonwire migrate` applies them without serving', T, async () => {
    const db = tempDbPath();
    const root = makeApp({ '001_notes.sql': 'CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);\n' });
    const out = await runBinary(['migrate', '--root', root, '--db', db]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /applied scripts\/migrations\/001_notes\.sql/);
    assert.match(out.stdout, /^applied  001_notes\.sql  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n1 applied, 0 pending\n$/);
  });
});

describe('the example app\'s first run', () => {
  test('--seed fills an empty pet store, says so, and leaves a store with pets alone', T, async () => {
    const db = tempDbPath();
    let srv = await startServer({ db });
    assert.deepEqual(JSON.parse((await request(srv.url, '/api/pets')).body), [], 'no --seed: no pets');
    await stop(srv);

    srv = await startServer({ db, args: ['--seed'] });
    assert.match(srv.stderr(), /seeds: the pet store was empty; added 5 pets/);
    const pets = JSON.parse((await request(srv.url, '/api/pets')).body);
    assert.deepEqual(pets.map((p) => p.name), ['Rex', 'Tom', 'Bugs', 'Polly', 'Nemo']);
    await stop(srv);

    srv = await startServer({ db, args: ['--seed'] });
    assert.doesNotMatch(srv.stderr(), /seeds:/);
    assert.equal(JSON.parse((await request(srv.url, '/api/pets')).body).length, 5);
    await stop(srv);
  });
});
