/* l_db.c — the Lua module "moonwire.db": exec, query, row, transaction over
 * the application's mw_db (db.c). */
#include "db.h"

#include "mw.h"

#include <errno.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#define L_DB_MT "moonwire.db.link"
#define L_DB_SQL_SHOWN 200 /* how much SQL an error message quotes */

/* The module's functions share this userdata as upvalue 1; mw_db_close
 * clears link.db, so a closed database is noticed instead of used. */
typedef struct l_db_box {
  mw_db_link link;
} l_db_box;

static l_db_box *l_db_box_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static mw_db *l_db_get(lua_State *L) {
  mw_db *db = l_db_box_of(L)->link.db;
  if (!db) luaL_error(L, "database is closed");
  return db;
}

static const char *l_db_checksql(lua_State *L, size_t *len) {
  /* Strictly a string: a number would be coerced into nonsense SQL. */
  luaL_checktype(L, 1, LUA_TSTRING);
  const char *sql = lua_tolstring(L, 1, len);
  /* sqlite3_exec and error messages read it as a C string. */
  if (strlen(sql) != *len) luaL_argerror(L, 1, "SQL contains a NUL byte");
  return sql;
}

/* Pushes "<where>fname: msg (in: sql)", the SQL on one line and shortened. */
static void l_db_pushmsg(lua_State *L, const char *fname, const char *msg, const char *sql) {
  char shown[L_DB_SQL_SHOWN + 4];
  size_t n = 0;
  bool space = false;
  for (const char *p = sql; *p && n < L_DB_SQL_SHOWN; p++) {
    if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
      space = n > 0;
      continue;
    }
    if (space) shown[n++] = ' ';
    space = false;
    if (n < L_DB_SQL_SHOWN) shown[n++] = *p;
    if (n == L_DB_SQL_SHOWN && p[1]) {
      memcpy(shown + n, "...", 3);
      n += 3;
    }
  }
  shown[n] = '\0';
  luaL_where(L, 1);
  lua_pushfstring(L, "%s: %s (in: %s)", fname, msg, shown);
  lua_concat(L, 2);
}

/* Raises the connection's current error for sql, after releasing st (the
 * message is taken first: resetting may change it). Never returns. */
static int l_db_fail(lua_State *L, mw_db *db, sqlite3_stmt *st, const char *fname, const char *sql) {
  l_db_pushmsg(L, fname, sqlite3_errmsg(mw_db_handle(db)), sql);
  mw_db_release(db, st);
  return lua_error(L);
}

/* Raises the error of a failed mw_db_prepare (rc, multi). Never returns. */
static int l_db_prepare_fail(lua_State *L, mw_db *db, const char *fname, const char *sql, int rc, int multi) {
  if (rc == -ENOMEM) return luaL_error(L, "%s: out of memory", fname);
  if (rc == -EINVAL)
    l_db_pushmsg(L, fname, multi ? "several statements given, only one is run at a time" : "no SQL statement", sql);
  else
    l_db_pushmsg(L, fname, sqlite3_errmsg(mw_db_handle(db)), sql);
  return lua_error(L);
}

/* Prepares sql (one statement) or raises. */
static sqlite3_stmt *l_db_prepare(lua_State *L, mw_db *db, const char *fname, const char *sql, size_t len) {
  sqlite3_stmt *st = NULL;
  int multi = 0;
  int rc = mw_db_prepare(db, sql, len, &st, &multi);
  if (rc != 0) l_db_prepare_fail(L, db, fname, sql, rc, multi);
  return st;
}

/* Binds the Lua value at idx to parameter i. Returns an SQLite code, or -1
 * for a type that has no SQL equivalent. */
static int l_db_bind_one(lua_State *L, sqlite3_stmt *st, int i, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return sqlite3_bind_null(st, i);
  case LUA_TBOOLEAN: return sqlite3_bind_int(st, i, lua_toboolean(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return sqlite3_bind_int64(st, i, (sqlite3_int64)lua_tointeger(L, idx));
    return sqlite3_bind_double(st, i, (double)lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    /* Transient: a value read from a named-parameter table may have no
     * other reference once popped. */
    return sqlite3_bind_text64(st, i, s, (sqlite3_uint64)n, SQLITE_TRANSIENT, SQLITE_UTF8);
  }
  default: return -1;
  }
}

/* Binds the call's arguments after the SQL: positional ones, or one table
 * of named (:name, @name, $name) and numbered values. Raises on misuse. */
static void l_db_bind(lua_State *L, mw_db *db, sqlite3_stmt *st, const char *fname, const char *sql) {
  int nargs = lua_gettop(L) - 1;
  int nparams = sqlite3_bind_parameter_count(st);
  bool named = nargs == 1 && lua_type(L, 2) == LUA_TTABLE;
  if (!named && nargs != nparams) {
    mw_db_release(db, st);
    luaL_checkstack(L, 4, NULL);
    lua_pushfstring(L, "%d parameter%s given, the statement takes %d", nargs, nargs == 1 ? "" : "s", nparams);
    l_db_pushmsg(L, fname, lua_tostring(L, -1), sql);
    lua_error(L);
  }
  for (int i = 1; i <= nparams; i++) {
    int idx = i + 1;
    if (named) {
      const char *name = sqlite3_bind_parameter_name(st, i);
      /* "?" and "?NNN" have no name worth looking up: use t[i]. */
      if (!name || name[0] == '?')
        lua_geti(L, 2, i);
      else
        lua_getfield(L, 2, name + 1);
      idx = lua_gettop(L);
    }
    int rc = l_db_bind_one(L, st, i, idx);
    if (rc == -1) {
      const char *tname = luaL_typename(L, idx);
      const char *pname = sqlite3_bind_parameter_name(st, i);
      if (named) luaL_where(L, 1);
      if (named && pname)
        lua_pushfstring(L, "%s: cannot bind a %s to %s", fname, tname, pname);
      else if (named)
        lua_pushfstring(L, "%s: cannot bind a %s to parameter %d", fname, tname, i);
      mw_db_release(db, st);
      if (named) {
        lua_concat(L, 2);
        lua_error(L);
      }
      luaL_argerror(L, idx, lua_pushfstring(L, "cannot bind a %s", tname));
    }
    if (named) lua_pop(L, 1);
    if (rc != SQLITE_OK) l_db_fail(L, db, st, fname, sql);
  }
}

/* Pushes the current row as a table keyed by column name; NULL columns are
 * left out. The names sit on the stack from names_idx on. */
static void l_db_push_row(lua_State *L, sqlite3_stmt *st, int ncols, int names_idx) {
  lua_createtable(L, 0, ncols);
  for (int c = 0; c < ncols; c++) {
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_INTEGER: lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, c)); break;
    case SQLITE_FLOAT: lua_pushnumber(L, (lua_Number)sqlite3_column_double(st, c)); break;
    case SQLITE_TEXT: {
      const char *s = (const char *)sqlite3_column_text(st, c);
      int n = sqlite3_column_bytes(st, c); /* after the conversion, per the docs */
      lua_pushlstring(L, s ? s : "", s ? (size_t)n : 0);
      break;
    }
    case SQLITE_BLOB: {
      const void *b = sqlite3_column_blob(st, c);
      int n = sqlite3_column_bytes(st, c);
      lua_pushlstring(L, b ? b : "", b ? (size_t)n : 0);
      break;
    }
    default: continue; /* NULL: the key stays absent */
    }
    lua_pushvalue(L, names_idx + c);
    lua_insert(L, -2);
    lua_rawset(L, -3);
  }
}

/* Pushes the column names of st, returning the index of the first. */
static int l_db_push_names(lua_State *L, mw_db *db, sqlite3_stmt *st, int ncols, const char *fname) {
  if (!lua_checkstack(L, ncols + 8)) {
    mw_db_release(db, st);
    luaL_error(L, "%s: too many columns (%d)", fname, ncols);
  }
  int first = lua_gettop(L) + 1;
  for (int c = 0; c < ncols; c++) {
    const char *name = sqlite3_column_name(st, c);
    lua_pushstring(L, name ? name : "?");
  }
  return first;
}

/* db.exec(sql, ...) -> changes, last_insert_rowid */
static int l_db_exec(lua_State *L) {
  mw_db *db = l_db_get(L);
  size_t len;
  const char *sql = l_db_checksql(L, &len);
  sqlite3 *sq = mw_db_handle(db);
  sqlite3_stmt *st = NULL;
  int multi = 0;
  int rc = mw_db_prepare(db, sql, len, &st, &multi);
  if (rc == -EINVAL && multi) {
    /* A schema script: only without parameters, whose placement among the
     * statements would be guesswork. */
    if (lua_gettop(L) > 1) {
      l_db_pushmsg(L, "db.exec", "parameters cannot be passed to several statements", sql);
      return lua_error(L);
    }
    sqlite3_int64 before = sqlite3_total_changes64(sq);
    char *msg = NULL;
    if (sqlite3_exec(sq, sql, NULL, NULL, &msg) != SQLITE_OK) {
      l_db_pushmsg(L, "db.exec", msg ? msg : sqlite3_errmsg(sq), sql);
      sqlite3_free(msg);
      return lua_error(L);
    }
    lua_pushinteger(L, sqlite3_total_changes64(sq) != before ? sqlite3_changes64(sq) : 0);
    lua_pushinteger(L, sqlite3_last_insert_rowid(sq));
    return 2;
  }
  if (rc != 0) return l_db_prepare_fail(L, db, "db.exec", sql, rc, multi);
  l_db_bind(L, db, st, "db.exec", sql);
  sqlite3_int64 before = sqlite3_total_changes64(sq);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return l_db_fail(L, db, st, "db.exec", sql);
  /* sqlite3_changes64 keeps the count of the last INSERT/UPDATE/DELETE, even
   * after a statement that changed nothing (CREATE, SELECT): report 0 then. */
  sqlite3_int64 changes = sqlite3_total_changes64(sq) != before ? sqlite3_changes64(sq) : 0;
  mw_db_release(db, st);
  lua_pushinteger(L, changes);
  lua_pushinteger(L, sqlite3_last_insert_rowid(sq));
  return 2;
}

/* db.query(sql, ...) -> { row, ... }, marked as an array for moonwire.json
 * (empty, it is written [] rather than {}). */
static int l_db_query(lua_State *L) {
  mw_db *db = l_db_get(L);
  size_t len;
  const char *sql = l_db_checksql(L, &len);
  sqlite3_stmt *st = l_db_prepare(L, db, "db.query", sql, len);
  l_db_bind(L, db, st, "db.query", sql);
  int ncols = sqlite3_column_count(st);
  lua_newtable(L);
  luaL_newmetatable(L, "moonwire.array"); /* shared with moonwire.json */
  lua_setmetatable(L, -2);
  int result = lua_gettop(L);
  int names = l_db_push_names(L, db, st, ncols, "db.query");
  lua_Integer n = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    l_db_push_row(L, st, ncols, names);
    lua_rawseti(L, result, ++n);
  }
  if (rc != SQLITE_DONE) return l_db_fail(L, db, st, "db.query", sql);
  mw_db_release(db, st);
  lua_settop(L, result);
  return 1;
}

/* db.row(sql, ...) -> first row or nil */
static int l_db_row(lua_State *L) {
  mw_db *db = l_db_get(L);
  size_t len;
  const char *sql = l_db_checksql(L, &len);
  sqlite3_stmt *st = l_db_prepare(L, db, "db.row", sql, len);
  l_db_bind(L, db, st, "db.row", sql);
  int ncols = sqlite3_column_count(st);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    mw_db_release(db, st);
    lua_pushnil(L);
    return 1;
  }
  if (rc != SQLITE_ROW) return l_db_fail(L, db, st, "db.row", sql);
  int names = l_db_push_names(L, db, st, ncols, "db.row");
  l_db_push_row(L, st, ncols, names);
  mw_db_release(db, st);
  return 1;
}

/* Runs one fixed, parameterless statement and returns the SQLite code. On
 * failure, when L is given, pushes the error message (read before the
 * statement is reset). */
static int l_db_run(lua_State *L, mw_db *db, const char *sql) {
  sqlite3 *sq = mw_db_handle(db);
  sqlite3_stmt *st = NULL;
  int rc = mw_db_prepare(db, sql, (size_t)-1, &st, NULL);
  if (rc != 0) {
    rc = rc == -ENOMEM ? SQLITE_NOMEM : sqlite3_errcode(sq);
    if (rc == SQLITE_OK) rc = SQLITE_ERROR;
  } else {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK && L) l_db_pushmsg(L, "db.transaction", sqlite3_errmsg(sq), sql);
  mw_db_release(db, st);
  return rc;
}

/* Undoes what fn did. Errors are ignored: the original error matters more,
 * and SQLite may already have rolled back by itself (sqlite3_get_autocommit
 * then says so). */
static void l_db_rollback(mw_db *db, bool nested) {
  if (sqlite3_get_autocommit(mw_db_handle(db))) return;
  if (nested) {
    l_db_run(NULL, db, "ROLLBACK TO mw_tx");
    l_db_run(NULL, db, "RELEASE mw_tx");
  } else {
    l_db_run(NULL, db, "ROLLBACK");
  }
}

/* db.transaction(fn) -> fn's results. The outermost call is BEGIN IMMEDIATE
 * (the write lock is taken up front, so COMMIT cannot hit SQLITE_BUSY);
 * calls inside a transaction use a savepoint. fn runs under pcall, and
 * cannot yield. */
static int l_db_transaction(lua_State *L) {
  mw_db *db = l_db_get(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  bool nested = !sqlite3_get_autocommit(mw_db_handle(db));
  if (l_db_run(L, db, nested ? "SAVEPOINT mw_tx" : "BEGIN IMMEDIATE") != SQLITE_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  int rc = lua_pcall(L, 0, LUA_MULTRET, 0);
  db = l_db_box_of(L)->link.db; /* fn may have closed it */
  if (rc != LUA_OK) {
    if (db) l_db_rollback(db, nested);
    return lua_error(L); /* the same value fn raised */
  }
  if (!db) return luaL_error(L, "database is closed");
  if (l_db_run(L, db, nested ? "RELEASE mw_tx" : "COMMIT") != SQLITE_OK) {
    /* E.g. a deferred foreign key still violated: the transaction is still
     * open, so undo it rather than leave it for the next request. */
    l_db_rollback(db, nested);
    return lua_error(L);
  }
  return lua_gettop(L) - 1;
}

static int l_db_gc(lua_State *L) {
  l_db_box *b = luaL_checkudata(L, 1, L_DB_MT);
  mw_db_link_remove(&b->link);
  return 0;
}

int l_db_push(lua_State *L, mw_db *db) {
  static const luaL_Reg funcs[] = {
      {"exec", l_db_exec},
      {"query", l_db_query},
      {"row", l_db_row},
      {"transaction", l_db_transaction},
      {NULL, NULL},
  };
  lua_createtable(L, 0, (int)MW_ARRAY_LEN(funcs) - 1);
  l_db_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, L_DB_MT)) {
    lua_pushcfunction(L, l_db_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  /* Linked only once __gc is in place, so it is always unlinked. */
  if (db) mw_db_link_add(db, &b->link);
  luaL_setfuncs(L, funcs, 1);
  return 1;
}
