/* test_db.c — the SQLite connection (db.c) and the Lua module (l_db.c),
 * driven through Lua snippets against a real temporary database file. */
#include "l_db.h"

#include <errno.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "mw.h"

/* Runs a Lua snippet that must not raise (its asserts are the checks). */
#define LUA(L, code)                                                                               \
  do {                                                                                             \
    if (luaL_dostring((L), (code)) == LUA_OK) {                                                    \
      passed++;                                                                                    \
      lua_settop((L), 0);                                                                          \
    } else {                                                                                       \
      fprintf(stderr, "%s:%d: Lua failed: %s\n", __FILE__, __LINE__, lua_tostring((L), -1));      \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static bool exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* No statement of the connection may be left mid-step after a call. */
static int busy_statements(mw_db *db) {
  int n = 0;
  for (sqlite3_stmt *st = sqlite3_next_stmt(mw_db_handle(db), NULL); st; st = sqlite3_next_stmt(mw_db_handle(db), st))
    n += sqlite3_stmt_busy(st) != 0;
  return n;
}

static int count_statements(mw_db *db) {
  int n = 0;
  for (sqlite3_stmt *st = sqlite3_next_stmt(mw_db_handle(db), NULL); st; st = sqlite3_next_stmt(mw_db_handle(db), st))
    n++;
  return n;
}

static void test_open_errors(const char *dir) {
  char path[512], err[256];
  mw_db *db = (mw_db *)1;
  /* Only one missing level is created. */
  snprintf(path, sizeof path, "%s/missing/deeper/app.db", dir);
  CHECK(mw_db_open(&db, path, err, sizeof err) == -ENOENT);
  CHECK(db == NULL);
  CHECK(strstr(err, "missing/deeper") != NULL);

  /* A file that is not a database is refused at open, not at first use. */
  snprintf(path, sizeof path, "%s/junk.db", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  for (int i = 0; i < 200; i++) fputs("this is not an SQLite database\n", f);
  fclose(f);
  CHECK(mw_db_open(&db, path, err, sizeof err) < 0);
  CHECK(db == NULL);
  CHECK(strstr(err, "not a database") != NULL);
  mw_db_close(NULL); /* accepted */
}

static void test_module(const char *dir) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/data/app.db", dir);
  mw_db *db = NULL;
  CHECK(mw_db_open(&db, path, err, sizeof err) == 0);
  CHECK(db != NULL);
  CHECK(exists(path));
  CHECK(mw_db_handle(db) != NULL);

  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  CHECK(l_db_push(L, db) == 1);
  CHECK(lua_istable(L, -1));
  lua_setglobal(L, "db");

  /* WAL and foreign keys are on. */
  LUA(L, "assert(db.row('PRAGMA journal_mode').journal_mode == 'wal')\n"
         "assert(db.row('PRAGMA foreign_keys').foreign_keys == 1)\n"
         "assert(db.row('PRAGMA synchronous').synchronous == 2)  -- FULL: a commit is on disk");

  /* A schema script: several statements, no parameters, run together
   * (the index refers to a table the same script creates). */
  LUA(L, "local changes, id = db.exec([[\n"
         "  -- owners and their pets\n"
         "  CREATE TABLE owners(id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n"
         "  CREATE TABLE pets(id INTEGER PRIMARY KEY, name TEXT UNIQUE, owner INTEGER REFERENCES owners(id),\n"
         "                    weight REAL, photo BLOB, alive INTEGER);\n"
         "  CREATE INDEX pets_owner ON pets(owner);\n"
         "  /* a trailing comment */ ;\n"
         "]])\n"
         "assert(changes == 0, changes)\n"
         "assert(math.type(id) == 'integer')");
  {
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", path);
    CHECK(exists(wal)); /* WAL really in use once something was written */
  }

  /* exec: changes and last_insert_rowid. */
  LUA(L, "local n, id = db.exec('INSERT INTO owners(name) VALUES (?)', 'ann')\n"
         "assert(n == 1 and id == 1, n .. ' ' .. id)\n"
         "n, id = db.exec('INSERT INTO owners(name) VALUES (?), (?)', 'bob', 'cy')\n"
         "assert(n == 2 and id == 3)\n"
         "n = db.exec('UPDATE owners SET name = name || ?', '!')\n"
         "assert(n == 3)\n"
         "n = db.exec('UPDATE owners SET name = ? WHERE id = ?', 'x', 999)\n"
         "assert(n == 0)\n"
         "db.exec('UPDATE owners SET name = substr(name, 1, length(name) - 1)')\n"
         /* a statement that changes nothing must not report the last count */
         "n = db.exec('CREATE TABLE scratch(x)')\n"
         "assert(n == 0, n)\n"
         "n = db.exec('SELECT * FROM owners')\n"
         "assert(n == 0, n)");

  /* Binding and column types. */
  LUA(L, "local n, id = db.exec('INSERT INTO pets(name, owner, weight, photo, alive) VALUES (?, ?, ?, ?, ?)',\n"
         "                      'rex', 1, 12.5, 'a\\0b\\255', true)\n"
         "assert(n == 1 and id == 1)\n"
         "db.exec('INSERT INTO pets(name, owner, weight, photo, alive) VALUES (?, ?, ?, ?, ?)', 'tom', nil, 3, nil, false)\n"
         "local r = db.row('SELECT * FROM pets WHERE name = ?', 'rex')\n"
         "assert(r.id == 1 and math.type(r.id) == 'integer')\n"
         "assert(r.name == 'rex' and r.owner == 1)\n"
         "assert(r.weight == 12.5 and math.type(r.weight) == 'float')\n"
         "assert(r.photo == 'a\\0b\\255' and #r.photo == 4)\n"
         "assert(r.alive == 1)\n"
         "local t = db.row('SELECT * FROM pets WHERE name = ?', 'tom')\n"
         "assert(t.owner == nil and t.photo == nil and t.alive == 0)\n"
         "assert(t.weight == 3 and math.type(t.weight) == 'float')  -- REAL affinity\n"
         "local keys = 0 for _ in pairs(t) do keys = keys + 1 end\n"
         "assert(keys == 4, 'NULL columns are absent keys')\n"
         "local v = db.row('SELECT ? AS i, ? AS f, ? AS s, ? AS b, ? AS z, x\\'00ff\\' AS blob',\n"
         "                 math.maxinteger, 2.0, 'hé', false, nil)\n"
         "assert(v.i == math.maxinteger and math.type(v.i) == 'integer')\n"
         "assert(v.f == 2.0 and math.type(v.f) == 'float')\n"
         "assert(v.s == 'hé' and v.b == 0 and v.z == nil)\n"
         "assert(v.blob == '\\0\\255')\n"
         "assert(db.row('SELECT typeof(?) AS t', 'x').t == 'text')\n"
         "assert(db.row('SELECT typeof(?) AS t', 1.5).t == 'real')\n"
         "assert(db.row('SELECT typeof(?) AS t', 7).t == 'integer')\n"
         "assert(db.row('SELECT typeof(?) AS t', nil).t == 'null')\n"
         "assert(db.row('SELECT ? + 1 AS n', -2^53).n == -2^53 + 1)");

  /* query and row. */
  LUA(L, "local rows = db.query('SELECT id, name FROM owners ORDER BY id')\n"
         "assert(#rows == 3 and rows[1].name == 'ann' and rows[3].name == 'cy' and rows[2].id == 2)\n"
         "assert(#db.query('SELECT * FROM owners WHERE id > ?', 100) == 0)\n"
         "assert(db.row('SELECT * FROM owners WHERE id = ?', 100) == nil)\n"
         "assert(select('#', db.row('SELECT 1 WHERE 0')) == 1)\n"
         "local r = db.row('SELECT id FROM owners ORDER BY id')\n"
         "assert(r.id == 1)  -- row stops after the first\n"
         "assert(db.row('SELECT count(*) AS n FROM owners').n == 3)");

  /* Named parameters, and a table for numbered ones. */
  LUA(L, "local r = db.row('SELECT :a AS a, @b AS b, $c AS c', {a = 1, b = 'two', c = 3.5})\n"
         "assert(r.a == 1 and r.b == 'two' and r.c == 3.5)\n"
         "r = db.row('SELECT :a AS a, :missing AS m', {a = true})\n"
         "assert(r.a == 1 and r.m == nil)\n"
         "r = db.row('SELECT ? AS x, ? AS y', {10, 'y'})\n"
         "assert(r.x == 10 and r.y == 'y')\n"
         "r = db.row('SELECT ?2 AS x, ?1 AS y', {10, 20})\n"
         "assert(r.x == 20 and r.y == 10)\n"
         "local n = db.exec('UPDATE owners SET name = :name WHERE id = :id', {id = 2, name = 'bo'})\n"
         "assert(n == 1 and db.row('SELECT name FROM owners WHERE id = 2').name == 'bo')\n"
         "r = db.row('SELECT :a || :a AS aa', {a = 'x'})\n"
         "assert(r.aa == 'xx')");

  /* SQL errors are Lua errors carrying the SQLite message, the SQL and the
   * caller's position. */
  LUA(L, "local ok, e = pcall(db.exec, 'INSERT INTO pets(name) VALUES (?)', 'rex')\n"
         "assert(not ok)\n"
         "assert(e:find('db.exec: UNIQUE constraint failed: pets.name (in: INSERT INTO pets(name) VALUES (?))', 1, true), e)\n"
         "ok, e = pcall(function()\n"
         "  db.query('SELEC 1')\n"
         "end)\n"
         "assert(e:find('^%[string \".-\"%]:5: db.query: near \"SELEC\": syntax error %(in: SELEC 1%)$'), e)\n"
         "ok, e = pcall(db.row, 'SELECT * FROM nope')\n"
         "assert(e:find('db.row: no such table: nope', 1, true), e)\n"
         /* an error raised while stepping, not while preparing */
         "ok, e = pcall(db.query, 'SELECT abs(-9223372036854775807 - 1) AS x')\n"
         "assert(not ok and e:find('integer overflow', 1, true), e)\n"
         "ok, e = pcall(db.exec, 'INSERT INTO pets(name, owner) VALUES (?, ?)', 'ghost', 42)\n"
         "assert(e:find('FOREIGN KEY constraint failed', 1, true), e)\n"
         "ok, e = pcall(db.exec, 'SELECT ?, ?', 1)\n"
         "assert(e:find('db.exec: 1 parameter given, the statement takes 2', 1, true), e)\n"
         "ok, e = pcall(db.exec, 'SELECT 1', 1, 2)\n"
         "assert(e:find('2 parameters given, the statement takes 0', 1, true), e)\n"
         "ok, e = pcall(db.exec, 'SELECT 1; SELECT 2', 1)\n"
         "assert(e:find('parameters cannot be passed to several statements', 1, true), e)\n"
         "ok, e = pcall(db.query, 'SELECT 1; SELECT 2')\n"
         "assert(e:find('db.query: several statements given', 1, true), e)\n"
         "ok, e = pcall(db.exec, '  -- nothing\\n')\n"
         "assert(e:find('db.exec: no SQL statement', 1, true), e)\n"
         "ok, e = pcall(db.exec, 'CREATE TABLE a1(x); CREATE TABLE owners(y); CREATE TABLE a2(x)')\n"
         "assert(e:find('table owners already exists', 1, true), e)\n"
         /* sqlite3_exec stops at the failing statement */
         "assert(db.row(\"SELECT 1 AS one FROM sqlite_master WHERE name = 'a1'\").one == 1)\n"
         "assert(db.row(\"SELECT 1 AS one FROM sqlite_master WHERE name = 'a2'\") == nil)\n"
         "local long = 'SELECT ' .. string.rep('1 + ', 300) .. 'nope'\n"
         "ok, e = pcall(db.row, long)\n"
         "assert(e:find('no such column: nope', 1, true) and e:find('...)', 1, true) and #e < 400, e)\n"
         "ok, e = pcall(db.exec, 'SELECT\\n   1\\n\\n  +  x')\n"
         "assert(e:find('(in: SELECT 1 + x)', 1, true), e)");

  /* Misuse is an argument error. */
  LUA(L, "local ok, e = pcall(db.exec, 42)\n"
         "assert(not ok and e:find('bad argument #1', 1, true) and e:find('string expected, got number', 1, true), e)\n"
         "ok, e = pcall(db.exec, {})\n"
         "assert(not ok and e:find('bad argument #1', 1, true) and e:find('string expected', 1, true), e)\n"
         "ok, e = pcall(db.query)\n"
         "assert(not ok and e:find('bad argument #1', 1, true), e)\n"
         "ok, e = pcall(db.row, 'SELECT ?', print)\n"
         "assert(not ok and e:find('bad argument #2', 1, true) and e:find('cannot bind a function', 1, true), e)\n"
         "ok, e = pcall(db.row, 'SELECT :x', {x = {}})\n"
         "assert(not ok and e:find('db.row: cannot bind a table to :x', 1, true), e)\n"
         "ok, e = pcall(function() return db.row('SELECT :x', {x = {}}) end)\n"
         "assert(e:find('^%[string \".-\"%]:%d+: db.row: cannot bind a table to :x'), e)\n"
         "ok, e = pcall(db.row, 'SELECT ?', {print})\n"
         "assert(not ok and e:find('db.row: cannot bind a function to parameter 1', 1, true), e)\n"
         "ok, e = pcall(db.exec, 'SELECT 1\\0')\n"
         "assert(not ok and e:find('NUL', 1, true), e)\n"
         "ok, e = pcall(db.transaction, 'x')\n"
         "assert(not ok and e:find('bad argument #1', 1, true), e)");
  CHECK(busy_statements(db) == 0);

  /* Transactions: commit returns fn's results. */
  LUA(L, "local a, b, c = db.transaction(function()\n"
         "  db.exec('INSERT INTO owners(name) VALUES (?)', 'dee')\n"
         "  return 1, nil, 'three'\n"
         "end)\n"
         "assert(a == 1 and b == nil and c == 'three')\n"
         "assert(select('#', db.transaction(function() end)) == 0)\n"
         "assert(db.row('SELECT count(*) AS n FROM owners').n == 4)");

  /* Rollback on error, re-raising the very same value. */
  LUA(L, "local before = db.row('SELECT count(*) AS n FROM owners').n\n"
         "local boom = setmetatable({}, {__tostring = function() return 'boom' end})\n"
         "local ok, e = pcall(db.transaction, function()\n"
         "  db.exec('INSERT INTO owners(name) VALUES (?)', 'eve')\n"
         "  error(boom)\n"
         "end)\n"
         "assert(not ok and rawequal(e, boom))\n"
         "assert(db.row('SELECT count(*) AS n FROM owners').n == before)\n"
         "ok, e = pcall(db.transaction, function()\n"
         "  db.exec('INSERT INTO owners(name) VALUES (?)', 'eve')\n"
         "  error('plain', 0)\n"
         "end)\n"
         "assert(e == 'plain')\n"
         "ok, e = pcall(db.transaction, function()\n"
         "  db.exec('INSERT INTO owners(name) VALUES (?)', 'eve')\n"
         "  db.exec('INSERT INTO pets(name) VALUES (?)', 'rex')  -- UNIQUE\n"
         "end)\n"
         "assert(e:find('UNIQUE constraint failed', 1, true), e)\n"
         "assert(db.row('SELECT count(*) AS n FROM owners').n == before)\n"
         "-- and the connection is usable, outside any transaction\n"
         "db.transaction(function() db.exec('INSERT INTO owners(name) VALUES (?)', 'fay') end)\n"
         "assert(db.row('SELECT count(*) AS n FROM owners').n == before + 1)");
  CHECK(sqlite3_get_autocommit(mw_db_handle(db)) != 0);

  /* Nested transactions are savepoints. */
  LUA(L, "local function count() return db.row('SELECT count(*) AS n FROM owners').n end\n"
         "local before = count()\n"
         "local r = db.transaction(function()\n"
         "  db.exec('INSERT INTO owners(name) VALUES (?)', 'outer')\n"
         "  local ok, e = pcall(db.transaction, function()\n"
         "    db.exec('INSERT INTO owners(name) VALUES (?)', 'inner1')\n"
         "    error('inner fails')\n"
         "  end)\n"
         "  assert(not ok and e:find('inner fails', 1, true))\n"
         "  assert(count() == before + 1)\n"
         "  local x = db.transaction(function()\n"
         "    db.exec('INSERT INTO owners(name) VALUES (?)', 'inner2')\n"
         "    return db.transaction(function()\n"
         "      db.exec('INSERT INTO owners(name) VALUES (?)', 'inner3')\n"
         "      return 'deep'\n"
         "    end)\n"
         "  end)\n"
         "  assert(x == 'deep')\n"
         "  return count()\n"
         "end)\n"
         "assert(r == before + 3 and count() == before + 3)\n"
         "assert(db.row(\"SELECT 1 AS y FROM owners WHERE name = 'inner1'\") == nil)\n"
         "assert(db.row(\"SELECT 1 AS y FROM owners WHERE name = 'inner3'\").y == 1)\n"
         /* an inner success is undone by the outer failure */
         "local ok = pcall(db.transaction, function()\n"
         "  db.transaction(function() db.exec('INSERT INTO owners(name) VALUES (?)', 'gone') end)\n"
         "  error('outer fails')\n"
         "end)\n"
         "assert(not ok and count() == before + 3)\n"
         "assert(db.row(\"SELECT 1 AS y FROM owners WHERE name = 'gone'\") == nil)");
  CHECK(sqlite3_get_autocommit(mw_db_handle(db)) != 0);

  /* A COMMIT that fails (deferred foreign key) raises and rolls back. */
  LUA(L, "db.exec('CREATE TABLE tags(pet INTEGER REFERENCES pets(id) DEFERRABLE INITIALLY DEFERRED, tag TEXT)')\n"
         "local ok, e = pcall(db.transaction, function()\n"
         "  db.exec('INSERT INTO tags VALUES (?, ?)', 999, 'orphan')\n"
         "  return 'not returned'\n"
         "end)\n"
         "assert(not ok and e:find('db.transaction: FOREIGN KEY constraint failed (in: COMMIT)', 1, true), e)\n"
         "assert(db.row('SELECT count(*) AS n FROM tags').n == 0)\n"
         "db.transaction(function() db.exec('INSERT INTO tags VALUES (?, ?)', 1, 'good') end)\n"
         "assert(db.row('SELECT count(*) AS n FROM tags').n == 1)");
  CHECK(sqlite3_get_autocommit(mw_db_handle(db)) != 0);

  /* The statement cache: the same SQL gets the same statement back... */
  sqlite3_stmt *a = NULL, *b = NULL;
  CHECK(mw_db_prepare(db, "SELECT 42", (size_t)-1, &a, NULL) == 0);
  CHECK(sqlite3_step(a) == SQLITE_ROW); /* left mid-step on purpose */
  CHECK(mw_db_prepare(db, "SELECT 42", 9, &b, NULL) == 0);
  CHECK(a == b);
  CHECK(!sqlite3_stmt_busy(b)); /* the forgotten release was made up for */
  mw_db_release(db, b);
  int multi = 0;
  CHECK(mw_db_prepare(db, "SELECT 1; SELECT 2", (size_t)-1, &a, &multi) == -EINVAL && multi == 1 && a == NULL);
  CHECK(mw_db_prepare(db, "SELEC", (size_t)-1, &a, &multi) == -EIO && multi == 0);

  /* ...and many distinct SQL strings, beyond its size, all work and keep
   * the number of live statements bounded. */
  LUA(L, "for round = 1, 2 do\n"
         "  for i = 1, 300 do\n"
         "    local r = db.row('SELECT ' .. i .. ' + ? AS v', round)\n"
         "    assert(r.v == i + round)\n"
         "  end\n"
         "end\n"
         "for i = 1, 100 do\n"
         "  assert(db.row('SELECT ? AS v', i).v == i)  -- one hot statement, reused\n"
         "end");
  CHECK(mw_db_cached(db) == 64);
  CHECK(count_statements(db) <= 64);
  CHECK(busy_statements(db) == 0);

  /* A second module on the same db, then closing the db under both Lua
   * modules: their functions now raise. */
  LUA(L, "db2 = db");
  lua_State *L2 = luaL_newstate();
  luaL_openlibs(L2);
  l_db_push(L2, db);
  lua_setglobal(L2, "db");
  LUA(L2, "assert(db.row('SELECT count(*) AS n FROM pets').n == 2)");
  lua_close(L2); /* the Lua state goes first here */

  mw_db_close(db);
  LUA(L, "local ok, e = pcall(db.exec, 'SELECT 1')\n"
         "assert(not ok and e:find('database is closed', 1, true), e)\n"
         "ok, e = pcall(db.query, 'SELECT 1')\n"
         "assert(e:find('database is closed', 1, true), e)\n"
         "ok, e = pcall(db.row, 'SELECT 1')\n"
         "assert(e:find('database is closed', 1, true), e)\n"
         "ok, e = pcall(db.transaction, function() end)\n"
         "assert(e:find('database is closed', 1, true), e)");
  lua_close(L);

  /* The data survived: reopen, and closing inside a transaction callback. */
  CHECK(mw_db_open(&db, path, err, sizeof err) == 0);
  L = luaL_newstate();
  luaL_openlibs(L);
  l_db_push(L, db);
  lua_setglobal(L, "db");
  lua_pushlightuserdata(L, db);
  lua_setglobal(L, "handle");
  LUA(L, "assert(db.row('SELECT count(*) AS n FROM owners').n >= 4)\n"
         "assert(db.row(\"SELECT name FROM pets WHERE id = 1\").name == 'rex')");
  lua_close(L); /* mw_db_close after the Lua state: the link was removed */
  mw_db_close(db);

  /* A module pushed without a database. */
  L = luaL_newstate();
  luaL_openlibs(L);
  l_db_push(L, NULL);
  lua_setglobal(L, "db");
  LUA(L, "local ok, e = pcall(db.row, 'SELECT 1')\n"
         "assert(not ok and e:find('database is closed', 1, true), e)");
  lua_close(L);

  /* An in-memory database works too (no directory, no WAL). */
  CHECK(mw_db_open(&db, ":memory:", err, sizeof err) == 0);
  L = luaL_newstate();
  luaL_openlibs(L);
  l_db_push(L, db);
  lua_setglobal(L, "db");
  LUA(L, "db.exec('CREATE TABLE t(x)')\n"
         "assert(db.exec('INSERT INTO t VALUES (1), (2)') == 2)");
  mw_db_close(db);
  lua_close(L);
}

/* ---- the threads: statements off the loop, resumed on it ---- */

/* Runs the loop until the Lua expression cond holds, at most 10 s. */
static bool run_until(uv_loop_t *loop, lua_State *L, const char *cond) {
  char code[512];
  snprintf(code, sizeof code, "return %s", cond);
  uint64_t end = mw_now_ns() + 10000000000ull;
  for (;;) {
    if (luaL_dostring(L, code) != LUA_OK) {
      fprintf(stderr, "run_until: %s\n", lua_tostring(L, -1));
      exit(1);
    }
    bool ok = lua_toboolean(L, -1);
    lua_settop(L, 0);
    if (ok) return true;
    if (mw_now_ns() > end) {
      luaL_dostring(L, "return tostring(errors[1]) .. ' pending? ' .. tostring(co and coroutine.status(co))");
      fprintf(stderr, "run_until: still not %s after 10 s (%s)\n", cond, lua_tostring(L, -1));
      lua_settop(L, 0);
      return false;
    }
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(500);
  }
}

/* A runner like moonwire.runner (found as C finds it, in package.loaded): spawn(fn) runs fn in a coroutine the
 * module may suspend; errors land in errors[]. */
static const char RUNNER[] =
    "ours = setmetatable({}, {__mode = 'k'})\n"
    "errors = {}\n"
    "local function current()\n"
    "  local co, main = coroutine.running()\n"
    "  if main or not ours[co] then return nil end\n"
    "  return co\n"
    "end\n"
    "local function resume(co, ...)\n"
    "  if coroutine.status(co) ~= 'suspended' then return false end\n"
    "  local ok, err = coroutine.resume(co, ...)\n"
    "  if not ok then errors[#errors + 1] = tostring(err) end\n"
    "  return true\n"
    "end\n"
    "package.loaded['moonwire.runner'] = { current = current, wait = function() return coroutine.yield() end,\n"
    "  resume = resume }\n"
    "function spawn(fn, ...)\n"
    "  local co = coroutine.create(fn)\n"
    "  ours[co] = true\n"
    "  resume(co, ...)\n"
    "  return co\n"
    "end\n"
    "FOREVER = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c'\n";

static void test_threads(const char *dir) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/threads.db", dir);
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  mw_db *db = NULL;
  CHECK(mw_db_open(&db, path, err, sizeof err) == 0);
  /* Generous limits, but where a test is about them: a loaded machine must
   * not make the others fail. */
  mw_db_opts opts;
  mw_db_opts_default(&opts);
  mw_db_configure(db, &opts);
  CHECK(mw_db_start(db, &loop) == 0);
  CHECK(mw_db_started(db));
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  l_db_push(L, db);
  lua_setglobal(L, "db");
  LUA(L, RUNNER);

  /* Outside a coroutine: synchronous, as at a script's top level. */
  LUA(L, "db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)')\n"
         "assert(db.exec('INSERT INTO t(v) VALUES (?), (?)', 'a', 'b') == 2)");

  /* In a coroutine: a write waits (the coroutine is suspended) and its
   * results come back on the loop; a quick read runs at once. */
  LUA(L, "co = spawn(function()\n"
         "  local n, id = db.exec('INSERT INTO t(v) VALUES (?)', 'c')\n"
         "  wrote = {n, id}\n"
         "  got = db.row('SELECT v FROM t WHERE id = ?', id).v\n"
         "  all = db.query('SELECT v FROM t ORDER BY id')\n"
         "  none = db.row('SELECT v FROM t WHERE id = 99')\n"
         "  changes = db.row('SELECT changes() AS n').n  -- the writer's, not a reader's\n"
         "end)\n"
         "assert(coroutine.status(co) == 'suspended' and wrote == nil)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(#errors == 0, errors[1])\n"
         "assert(wrote[1] == 1 and wrote[2] == 3 and got == 'c' and none == nil)\n"
         "assert(#all == 3 and all[3].v == 'c' and changes == 1, changes)");
  CHECK(mw_db_readers(db) == 0); /* quick reads ran on the loop's own connection */

  /* A temporary table lives on the writer's connection: a read of it is
   * handed over there. */
  LUA(L, "db.exec('CREATE TEMP TABLE scratch(x)')\n"
         "db.exec('INSERT INTO scratch VALUES (42)')\n"
         "co = spawn(function() temp = db.row('SELECT x FROM scratch').x end)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(#errors == 0, errors[1]) assert(temp == 42)");

  /* Two transactions at once, each waiting on its own statements: the
   * second begins only once the first has committed, and a plain write
   * waits too; a read goes on meanwhile and sees nothing uncommitted. */
  LUA(L, "order = {}\n"
         "local function tx(tag)\n"
         "  return spawn(function()\n"
         "    db.transaction(function()\n"
         "      for i = 1, 3 do db.exec('INSERT INTO t(v) VALUES (?)', tag .. i) order[#order + 1] = tag .. i end\n"
         "      inside = db.row('SELECT count(*) AS n FROM t WHERE v LIKE ?', tag .. '%').n  -- its own writes\n"
         "    end)\n"
         "    order[#order + 1] = tag .. ' committed'\n"
         "  end)\n"
         "end\n"
         "a, b = tx('p'), tx('q')\n"
         "w = spawn(function() db.exec('INSERT INTO t(v) VALUES (?)', 'w') order[#order + 1] = 'w' end)\n"
         "r = spawn(function() seen = db.row(\"SELECT count(*) AS n FROM t WHERE v LIKE 'p%'\").n end)\n"
         "assert(seen == 0, 'a read in the meantime sees nothing uncommitted')");
  CHECK(run_until(&loop, L, "coroutine.status(a) == 'dead' and coroutine.status(b) == 'dead' and coroutine.status(w) == 'dead'"));
  LUA(L, "assert(#errors == 0, errors[1])\n"
         "assert(table.concat(order, ' ') == 'p1 p2 p3 p committed q1 q2 q3 q committed w', table.concat(order, ' '))\n"
         "assert(inside == 3)");

  /* A transaction that waits (here: forever) holds the writer; a write of
   * someone else waits for it until the busy timeout, then fails. */
  opts.busy_timeout_ms = 200;
  mw_db_configure(db, &opts);
  LUA(L, "stuck = spawn(function()\n"
         "  db.transaction(function()\n"
         "    db.exec('INSERT INTO t(v) VALUES (?)', 'stuck')\n"
         "    db.transaction(function()\n"
         "      db.exec('INSERT INTO t(v) VALUES (?)', 'stuck')\n"
         "      coroutine.yield()  -- nothing will wake it\n"
         "    end)\n"
         "  end)\n"
         "end)\n"
         "late = spawn(function() local ok, e = pcall(db.exec, 'INSERT INTO t(v) VALUES (?)', 'late') lateerr = e end)");
  CHECK(run_until(&loop, L, "lateerr ~= nil"));
  opts.busy_timeout_ms = MW_DB_BUSY_TIMEOUT_MS;
  mw_db_configure(db, &opts);
  LUA(L, "assert(lateerr:find(\"db.exec: database is busy: another handler's transaction held it past the busy timeout\", 1, true), lateerr)");
  /* Abandoned (collected), the transaction is rolled back and the writer
   * is free again. */
  LUA(L, "stuck = nil collectgarbage() collectgarbage()\n"
         "after = spawn(function() db.exec('INSERT INTO t(v) VALUES (?)', 'after') done_after = true end)");
  CHECK(run_until(&loop, L, "done_after"));
  LUA(L, "assert(#errors == 0, errors[1])\n"
         "assert(db.row(\"SELECT count(*) AS n FROM t WHERE v = 'stuck'\").n == 0)\n"
         "assert(db.row(\"SELECT count(*) AS n FROM t WHERE v = 'after'\").n == 1)");
  CHECK(mw_db_owner(db) == NULL);

  /* A transaction whose fn fails after waiting is rolled back; nested
   * ones are savepoints. */
  LUA(L, "co = spawn(function()\n"
         "  txerr = select(2, pcall(db.transaction, function()\n"
         "    db.exec('INSERT INTO t(v) VALUES (?)', 'outer')\n"
         "    local ok = pcall(db.transaction, function()\n"
         "      db.exec('INSERT INTO t(v) VALUES (?)', 'inner')\n"
         "      error('inner fails')\n"
         "    end)\n"
         "    assert(not ok)\n"
         "    kept = db.row(\"SELECT count(*) AS n FROM t WHERE v IN ('outer', 'inner')\").n\n"
         "    error('outer fails')\n"
         "  end))\n"
         "end)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(#errors == 0, errors[1])\n"
         "assert(kept == 1 and txerr:find('outer fails', 1, true), txerr)\n"
         "assert(db.row(\"SELECT count(*) AS n FROM t WHERE v IN ('outer', 'inner')\").n == 0)");
  CHECK(mw_db_owner(db) == NULL);

  /* BEGIN by hand, in a coroutine, is refused: the writer is shared. */
  LUA(L, "co = spawn(function() rawerr = select(2, pcall(db.exec, 'begin immediate')) end)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(rawerr:find('cannot be run from a handler', 1, true) and rawerr:find('db.transaction', 1, true), rawerr)");
  CHECK(sqlite3_get_autocommit(mw_db_handle(db)) != 0);

  /* The statement budget: a runaway query is stopped, on a reader (after
   * its first millisecond on the loop) and on the writer; both still work. */
  opts.statement_timeout_ms = 300;
  mw_db_configure(db, &opts);
  LUA(L, "co = spawn(function()\n"
         "  rerr = select(2, pcall(db.row, FOREVER))\n"
         "  werr = select(2, pcall(db.exec, FOREVER))\n"
         "  still = db.row('SELECT count(*) AS n FROM t').n\n"
         "  db.exec('INSERT INTO t(v) VALUES (?)', 'still')\n"
         "end)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(#errors == 0, errors[1])\n"
         "assert(rerr:find('db.row: statement stopped: it ran past its budget of 300 ms (--db-statement-timeout) (in: WITH RECURSIVE', 1, true), rerr)\n"
         "assert(werr:find('db.exec: statement stopped: it ran past its budget of 300 ms', 1, true), werr)\n"
         "assert(still > 0)");
  CHECK(mw_db_readers(db) == 1);
  /* The same statement goes straight to the reader now: the loop only
   * ever holds it for its first millisecond. */
  LUA(L, "co = spawn(function() rerr2 = select(2, pcall(db.row, FOREVER)) end)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(rerr2:find('ran past its budget', 1, true), rerr2)");

  /* Another process's lock (here another connection's): a write waits for
   * it off the loop until the busy timeout, then fails with a clear word;
   * a read goes on. */
  opts.busy_timeout_ms = 200;
  mw_db_configure(db, &opts);
  sqlite3 *other = NULL;
  CHECK(sqlite3_open(path, &other) == SQLITE_OK);
  CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
  LUA(L, "co = spawn(function()\n"
         "  lockerr = select(2, pcall(db.exec, 'INSERT INTO t(v) VALUES (?)', 'locked'))\n"
         "  readable = db.row('SELECT count(*) AS n FROM t').n\n"
         "end)");
  CHECK(run_until(&loop, L, "coroutine.status(co) == 'dead'"));
  LUA(L, "assert(lockerr:find('db.exec: database is locked by another process (waited 200 ms, --db-busy-timeout) (in: INSERT', 1, true), lockerr)\n"
         "assert(readable > 0)\n"
         /* synchronous callers get the same */
         "local ok, e = pcall(db.exec, 'INSERT INTO t(v) VALUES (1)')\n"
         "assert(not ok and e:find('database is locked by another process', 1, true), e)");
  /* Released before the deadline, the write goes through. */
  opts.busy_timeout_ms = MW_DB_BUSY_TIMEOUT_MS;
  mw_db_configure(db, &opts);
  LUA(L, "co = spawn(function() db.exec('INSERT INTO t(v) VALUES (?)', 'unlocked') unlocked = true end)");
  CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
  CHECK(run_until(&loop, L, "unlocked"));
  sqlite3_close(other);

  /* Group commit: writes that queue up behind the writer commit together,
   * each answered once they have; one that fails, whether SQLite keeps the
   * transaction (a constraint), loses it (a runaway write, interrupted) or
   * refuses the commit (a deferred foreign key), fails alone. Another
   * connection's lock holds the writer while they queue. */
  LUA(L, "db.exec('CREATE TABLE g(id INTEGER PRIMARY KEY, k TEXT UNIQUE, owner INTEGER REFERENCES t(id) DEFERRABLE INITIALLY DEFERRED)')\n"
         "ENDLESS = \"INSERT INTO g(k) SELECT 'e' || x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)\"\n"
         "function burst(bad)\n"
         "  results = {}\n"
         "  local cos = {}\n"
         "  for i = 1, 12 do\n"
         "    cos[i] = spawn(function()\n"
         "      local sql, args = 'INSERT INTO g(k) VALUES (?)', { bad .. i }\n"
         "      if i == 6 then sql, args = bad == 'dup' and 'INSERT INTO g(k) VALUES (?)' or bad == 'fk' and 'INSERT INTO g(k, owner) VALUES (?, 999999)' or ENDLESS, { bad .. 2 } end\n"
         "      if i == 6 and bad == 'endless' then args = {} end\n"
         "      if i == 6 and bad == 'fk' then args = { 'fk-orphan' } end\n"
         "      local ok, a, b = pcall(db.exec, sql, table.unpack(args))\n"
         "      results[i] = ok and 'ok' or a\n"
         "    end)\n"
         "  end\n"
         "  return cos\n"
         "end");
  opts.statement_timeout_ms = 300;
  mw_db_configure(db, &opts);
  for (int round = 0; round < 3; round++) {
    static const char *bad[] = {"dup", "fk", "endless"};
    static const char *expect[] = {"UNIQUE constraint failed: g.k", "FOREIGN KEY constraint failed", "ran past its budget"};
    CHECK(sqlite3_open(path, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    int groups = mw_db_groups(db);
    char code[1024];
    snprintf(code, sizeof code, "burst('%s')", bad[round]);
    LUA(L, code);
    usleep(50000); /* the first write waits for the lock, the others queue behind it */
    CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    CHECK(run_until(&loop, L, "#results == 12 and results[12] ~= nil"));
    snprintf(code, sizeof code,
             "for i = 1, 12 do\n"
             "  if i == 6 then assert(results[i] ~= 'ok' and results[i]:find('%s', 1, true), results[i])\n"
             "  else assert(results[i] == 'ok', i .. ': ' .. tostring(results[i])) end\n"
             "end\n"
             "assert(db.row(\"SELECT count(*) AS n FROM g WHERE k LIKE '%s%%'\").n == 11)",
             expect[round], bad[round]);
    LUA(L, code);
    CHECK(mw_db_groups(db) > groups); /* they did go together */
  }
  opts.statement_timeout_ms = MW_DB_STATEMENT_TIMEOUT_MS;
  mw_db_configure(db, &opts);

  /* Shutting down: a running statement is interrupted once the wait is
   * over, and says why. */
  opts.statement_timeout_ms = 0; /* no budget */
  mw_db_configure(db, &opts);
  LUA(L, "co = spawn(function() stoperr = select(2, pcall(db.row, FOREVER)) end)");
  mw_db_stop(db, 100);
  CHECK(run_until(&loop, L, "stoperr ~= nil"));
  LUA(L, "assert(stoperr:find('statement stopped: the server is shutting down', 1, true), stoperr)");

  /* The Lua state goes while a statement still runs: it finishes
   * unnoticed, and the database closes cleanly after it. */
  LUA(L, "spawn(function() db.exec(FOREVER) end)\n"
         "spawn(function() db.row(FOREVER) end)");
  CHECK(mw_db_pending(db) == 2);
  lua_close(L);
  mw_db_close(db);
  uv_run(&loop, UV_RUN_DEFAULT); /* the handles' close callbacks */
  CHECK(uv_loop_close(&loop) == 0);
}

int main(void) {
  char dir[] = "/tmp/mw_test_db_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  test_open_errors(dir);
  test_module(dir);
  test_threads(dir);
  CHECK(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
  CHECK(!exists(dir));
  CHECK_REPORT();
  return failed != 0;
}
