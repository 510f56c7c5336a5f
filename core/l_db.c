/* l_db.c — the Lua module "moonwire.db": exec, query, row, transaction over
 * the application's mw_db (db.c).
 *
 * Each call becomes a job (db.h): the SQL and the parameters copied out of
 * Lua. Inside a handler the job runs on a database thread while the
 * handler's coroutine waits (app._wait, through lua_callk), and the job's
 * completion resumes it (app._resume) on the loop thread, where the
 * continuation turns the rows into Lua values. Anywhere else (a script's
 * top level, a coroutine of the app's own) the job runs at once on the
 * calling thread. */
#include "l_db.h"

#include "lcall.h"
#include "lmodule.h"
#include "lrunner.h"
#include "mw.h"

#include <errno.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#define L_DB_MT "moonwire.db.link"
#define L_DB_TX_MT "moonwire.db.transaction"
#define L_DB_SQL_SHOWN 200 /* how much SQL an error message quotes */

typedef struct l_db_tx l_db_tx;

/* The module's functions share this userdata as upvalue 1; mw_db_close
 * clears link.db, so a closed database is noticed instead of used. */
typedef struct l_db_box {
  mw_db_link link;
  lua_State *main; /* the state's main thread: completions resume from it */
  l_db_tx *live; /* the transaction of this state holding the writer, if any */
  int posted;    /* writes of db._post queued or running */
} l_db_box;

/* A db.transaction call, a to-be-closed value on its coroutine's stack: if
 * the coroutine is closed or collected while the transaction is open, the
 * transaction is rolled back and the writer released. */
struct l_db_tx {
  mw_db_link link;  /* to the db, on its own: it may outlive the module */
  l_db_box *box;    /* NULL once the module is collected */
  lua_State *owner; /* the coroutine whose transaction it is (kept alive by the userdata's user value) */
  int step;
  bool async, nested, open;
  /* db.on_commit's functions (outermost transaction only): a registry
   * reference to their list, LUA_NOREF until the first one. */
  int outbox;
  /* A savepoint: how many the outer transaction's list held when it began
   * (its rollback drops those added since). */
  int mark;
};

/* db.rollback() raises this (its address): the innermost db.transaction
 * catches it, rolls back and returns without raising. */
static const char l_db_rollback_key = 0;

enum { TX_BEGUN = 1, TX_RAN, TX_COMMITTED, TX_UNDONE };

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

/* ---- jobs: the call's arguments in, the rows out ---- */

/* Sets p from the Lua value at idx; a string is copied into job->in. */
static int l_db_value(lua_State *L, mw_db_job *job, mw_db_param *p, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: p->type = SQLITE_NULL; return 0;
  case LUA_TBOOLEAN:
    p->type = SQLITE_INTEGER;
    p->v.i = lua_toboolean(L, idx);
    return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      p->type = SQLITE_INTEGER;
      p->v.i = (int64_t)lua_tointeger(L, idx);
    } else {
      p->type = SQLITE_FLOAT;
      p->v.f = (double)lua_tonumber(L, idx);
    }
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    p->type = SQLITE_TEXT;
    p->v.s.off = job->in.len;
    p->v.s.len = n;
    return mw_str_append(&job->in, s, n);
  }
  default:
    p->type = 0; /* no SQL equivalent: an error if the statement uses it */
    p->tname = luaL_typename(L, idx);
    return 0;
  }
}

/* A job for fname(sql, ...): the SQL and the arguments after it copied in
 * (positional ones, or one table of named and numbered values). Raises on
 * misuse: an argument with no SQL type. */
static mw_db_job *l_db_job(lua_State *L, mw_db *db, mw_db_kind kind, const char *sql, size_t len) {
  mw_db_job *job = mw_db_job_new(db);
  if (!job) luaL_error(L, "out of memory");
  job->kind = kind;
  job->owner = L;
  bool nomem = mw_str_append(&job->in, sql, len) != 0 || mw_str_appendc(&job->in, '\0') != 0;
  job->sql_len = len;
  int nargs = lua_gettop(L) - 1;
  if (!nomem && nargs == 1 && lua_type(L, 2) == LUA_TTABLE) {
    job->named = true;
    lua_pushnil(L);
    while (!nomem && lua_next(L, 2)) {
      mw_db_param *p = NULL;
      if (lua_type(L, -2) == LUA_TSTRING) {
        size_t n;
        const char *name = lua_tolstring(L, -2, &n);
        if (n && (p = mw_db_job_param(job))) {
          p->name = job->in.len;
          p->namelen = n;
          nomem = mw_str_append(&job->in, name, n) != 0;
        } else {
          nomem = n != 0;
        }
      } else if (lua_isinteger(L, -2)) {
        if ((p = mw_db_job_param(job))) p->index = (int64_t)lua_tointeger(L, -2);
        else nomem = true;
      }
      if (p && !nomem) nomem = l_db_value(L, job, p, -1) != 0;
      lua_pop(L, 1);
    }
    if (nomem) lua_pop(L, 1); /* the key lua_next left */
  } else {
    for (int i = 2; !nomem && i <= nargs + 1; i++) {
      mw_db_param *p = mw_db_job_param(job);
      if (!p || l_db_value(L, job, p, i)) {
        nomem = true;
      } else if (p->type == 0) {
        mw_db_job_free(db, job);
        luaL_argerror(L, i, lua_pushfstring(L, "cannot bind a %s", luaL_typename(L, i)));
      } else {
        p->index = i - 1;
      }
    }
  }
  if (nomem) {
    mw_db_job_free(db, job);
    luaL_error(L, "out of memory");
  }
  return job;
}

/* Pushes the first row of job's rows (or every row, as an array marked for
 * moonwire.json) or raises the job's error. When own, frees the job (before
 * raising). Returns the number of values pushed. */
static int l_db_outcome(lua_State *L, mw_db *db, mw_db_job *job, const char *fname, bool own) {
  if (job->rc != SQLITE_OK) {
    if (job->rc == -1) { /* a named value with no SQL type: as a misuse, without the SQL */
      luaL_where(L, 1);
      lua_pushfstring(L, "%s: %s", fname, job->err.p ? job->err.p : "cannot bind");
      lua_concat(L, 2);
    } else {
      l_db_pushmsg(L, fname, job->err.p ? job->err.p : "out of memory", job->in.p);
    }
    if (own) mw_db_job_free(db, job);
    return lua_error(L);
  }
  if (job->kind == MW_DB_EXEC || job->kind == MW_DB_SCRIPT) {
    lua_pushinteger(L, (lua_Integer)job->changes);
    lua_pushinteger(L, (lua_Integer)job->rowid);
    if (own) mw_db_job_free(db, job);
    return 2;
  }
  if (job->kind == MW_DB_ROW && job->nrows == 0) {
    if (own) mw_db_job_free(db, job);
    lua_pushnil(L);
    return 1;
  }
  int ncols = job->ncols;
  if (!lua_checkstack(L, ncols + 8)) {
    if (own) mw_db_job_free(db, job);
    return luaL_error(L, "%s: too many columns (%d)", fname, ncols);
  }
  int result = 0;
  if (job->kind == MW_DB_QUERY) {
    lua_createtable(L, job->nrows, 0);
    luaL_newmetatable(L, "moonwire.array"); /* shared with moonwire.json */
    lua_setmetatable(L, -2);
    result = lua_gettop(L);
  }
  const char *p = job->out.p;
  int names = lua_gettop(L) + 1;
  for (int c = 0; c < ncols; c++) {
    uint32_t n;
    memcpy(&n, p, sizeof n);
    lua_pushlstring(L, p + sizeof n, n);
    p += sizeof n + n;
  }
  for (int r = 0; r < job->nrows; r++) {
    lua_createtable(L, 0, ncols);
    for (int c = 0; c < ncols; c++) {
      unsigned char type = (unsigned char)*p++;
      switch (type) {
      case SQLITE_INTEGER: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        p += sizeof v;
        lua_pushinteger(L, (lua_Integer)v);
        break;
      }
      case SQLITE_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        p += sizeof v;
        lua_pushnumber(L, (lua_Number)v);
        break;
      }
      case SQLITE_TEXT:
      case SQLITE_BLOB: {
        uint32_t n;
        memcpy(&n, p, sizeof n);
        lua_pushlstring(L, p + sizeof n, n);
        p += sizeof n + n;
        break;
      }
      default: continue; /* NULL: the key stays absent */
      }
      lua_pushvalue(L, names + c);
      lua_insert(L, -2);
      lua_rawset(L, -3);
    }
    if (result) lua_rawseti(L, result, r + 1);
  }
  if (own) mw_db_job_free(db, job);
  if (result) {
    lua_settop(L, result);
  } else { /* the row, over the names */
    lua_replace(L, names);
    lua_settop(L, names);
  }
  return 1;
}

/* ---- waiting in a handler ---- */

/* Whether L is one of app's handler coroutines: its statements then run
 * off the loop while it waits. */
static bool l_db_async(lua_State *L, l_db_box *b, mw_db *db) {
  (void)b;
  /* Without the coroutine runner (a VM that runs no app) every call is
   * synchronous. */
  if (!mw_db_started(db) || !lua_isyieldable(L) || !lrunner_push(L, "current")) return false;
  lua_call(L, 0, 1);
  bool ours = lua_tothread(L, -1) == L;
  lua_pop(L, 1);
  return ours;
}

/* The owner a synchronous call runs for: L, or the coroutine whose
 * transaction holds the writer when that one is running L (a coroutine of
 * the app's own, resumed inside the transaction: its statements belong to
 * it). */
static void *l_db_sync_owner(lua_State *L, l_db_box *b, mw_db *db) {
  void *owner = mw_db_owner(db);
  if (!owner || owner == L || !b->live || b->live->owner != owner) return L;
  lua_State *co = owner; /* alive: its transaction's userdata holds it */
  lua_Debug ar;
  if (lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar)) return co; /* "normal": it resumed another */
  return L;
}

/* A job finished: resume the coroutine that waits for it. */
static void l_db_done(mw_db_job *job) {
  l_db_box *b = job->ud;
  lua_State *L = b->main;
  int top = lua_gettop(L);
  bool resume = lrunner_push(L, "resume"); /* loaded: the job was submitted by a waiting handler */
  lua_rawgeti(L, LUA_REGISTRYINDEX, job->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, job->ref);
  job->ref = LUA_NOREF;
  job->ud = NULL; /* read by the continuation: it is resumed by its job */
  if (resume) lcall_pcall(L, 1, 0, "db");
  lua_settop(L, top);
}

/* Submits job and suspends the running handler until it has finished; k
 * then continues with the job as its context (the job is db.c's again once
 * k has returned or raised). */
static int l_db_wait(lua_State *L, l_db_box *b, mw_db *db, mw_db_job *job, const char *fname, lua_KFunction k) {
  if (!lrunner_push(L, "wait")) return luaL_error(L, "%s: the coroutine runner is gone", fname);
  lua_pushthread(L);
  job->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the coroutine lives while its job runs */
  job->ud = b;
  job->done = l_db_done;
  mw_db_submit(db, job);
  lua_pushstring(L, fname);
  lua_callk(L, 1, 0, (lua_KContext)job, k);
  return k(L, LUA_OK, (lua_KContext)job);
}

/* A continuation's job: the one that just finished, or a raise when the
 * coroutine was woken by anything else (its job then finishes unnoticed). */
static mw_db_job *l_db_resumed(lua_State *L, lua_KContext ctx, const char *fname) {
  mw_db_job *job = (mw_db_job *)ctx;
  if (job->ud != NULL) {
    job->done = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, job->ref);
    job->ref = LUA_NOREF;
    luaL_error(L, "%s: the handler was woken before its statement finished", fname);
  }
  return job;
}

static const char *l_db_fname(mw_db_kind kind) {
  return kind == MW_DB_QUERY ? "db.query" : kind == MW_DB_ROW ? "db.row" : "db.exec";
}

static int l_db_call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mw_db_job *job = (mw_db_job *)ctx;
  const char *fname = l_db_fname(job->kind);
  l_db_resumed(L, ctx, fname);
  return l_db_outcome(L, NULL, job, fname, false);
}

/* db.exec, db.query, db.row */
static int l_db_call(lua_State *L, mw_db_kind kind) {
  l_db_box *b = l_db_box_of(L);
  mw_db *db = l_db_get(L);
  size_t len;
  const char *sql = l_db_checksql(L, &len);
  mw_db_job *job = l_db_job(L, db, kind, sql, len);
  if (l_db_async(L, b, db)) {
    if (mw_db_try_inline(db, job)) return l_db_outcome(L, db, job, l_db_fname(kind), true);
    lua_settop(L, 0); /* nothing of the call is needed past this point */
    return l_db_wait(L, b, db, job, l_db_fname(kind), l_db_call_k);
  }
  job->owner = l_db_sync_owner(L, b, db);
  mw_db_run_sync(db, job);
  return l_db_outcome(L, db, job, l_db_fname(kind), true);
}

/* db.exec(sql, ...) -> changes, last_insert_rowid */
static int l_db_exec(lua_State *L) { return l_db_call(L, MW_DB_EXEC); }

/* db.query(sql, ...) -> { row, ... }, marked as an array for moonwire.json
 * (empty, it is written [] rather than {}). */
static int l_db_query(lua_State *L) { return l_db_call(L, MW_DB_QUERY); }

/* db.row(sql, ...) -> first row or nil */
static int l_db_row(lua_State *L) { return l_db_call(L, MW_DB_ROW); }

/* A write of db._post has finished: nobody waits for it; a failure is
 * logged, as nobody else would hear of it. */
static void l_db_post_done(mw_db_job *job) {
  l_db_box *b = job->ud;
  if (b) b->posted--;
  if (job->rc != SQLITE_OK)
    mw_log(MW_LOG_ERROR, "db: a write made in the background failed: %s (in: %.*s)",
           job->err.p ? job->err.p : "out of memory", (int)(job->sql_len > L_DB_SQL_SHOWN ? L_DB_SQL_SHOWN : job->sql_len),
           job->in.p);
}

/* db._post(sql, ...): a write nobody waits for, for the framework's own
 * bookkeeping (the recovery log): queued for the writer thread, where
 * queued writes commit together (group commit), behind any handler's open
 * transaction; the caller goes on at once and a failure is logged. Before
 * the database threads run, or without them, it runs now. Raises on misuse
 * only. The caller caps its own backlog with db._backlog(). */
static int l_db_post(lua_State *L) {
  l_db_box *b = l_db_box_of(L);
  mw_db *db = l_db_get(L);
  size_t len;
  const char *sql = l_db_checksql(L, &len);
  mw_db_job *job = l_db_job(L, db, MW_DB_EXEC, sql, len);
  job->flags = MW_DB_WRITER;
  job->owner = job; /* no handler's: it waits for any open transaction */
  if (mw_db_started(db)) {
    job->done = l_db_post_done;
    job->ud = b; /* mw_db_forget drops the callback when the module goes */
    b->posted++;
    mw_db_submit(db, job);
    return 0;
  }
  job->owner = l_db_sync_owner(L, b, db);
  mw_db_run_sync(db, job);
  l_db_post_done(job);
  mw_db_job_free(db, job);
  return 0;
}

/* db._backlog() -> how many writes of db._post are queued or running. */
static int l_db_backlog(lua_State *L) {
  lua_pushinteger(L, l_db_box_of(L)->posted);
  return 1;
}

/* ---- db.transaction ---- */

static int l_db_tx_k(lua_State *L, int status, lua_KContext ctx);

/* Runs one of the transaction's own statements, then goes on with
 * l_db_tx_k at step next (the job as context; a synchronous job is freed
 * by the step). */
static int l_db_tx_run(lua_State *L, l_db_tx *tx, const char *sql, unsigned flags, int next) {
  mw_db *db = tx->link.db;
  if (!db) return luaL_error(L, "database is closed");
  tx->step = next;
  mw_db_job *job = mw_db_job_new(db);
  if (!job || mw_str_appendz(&job->in, sql)) {
    mw_db_job_free(db, job);
    return luaL_error(L, "out of memory");
  }
  job->sql_len = strlen(sql);
  job->kind = strchr(sql, ';') ? MW_DB_SCRIPT : MW_DB_EXEC;
  job->flags = flags | MW_DB_TXCTL | MW_DB_WRITER;
  job->owner = tx->owner;
  if (tx->async) return l_db_wait(L, tx->box, db, job, "db.transaction", l_db_tx_k);
  mw_db_run_sync(db, job);
  return l_db_tx_k(L, LUA_OK, (lua_KContext)job);
}

/* The transaction is over: the writer is free for others. */
static void l_db_tx_over(l_db_tx *tx) {
  tx->open = false;
  if (tx->box && tx->box->live == tx) tx->box->live = NULL;
}

/* The open transaction the code running in L belongs to, or NULL: the
 * handler's own, or the one of the coroutine that resumed L (a coroutine of
 * the app's own, run inside the transaction: as for its statements). */
static l_db_tx *l_db_current(lua_State *L, l_db_box *b) {
  l_db_tx *tx = b->live;
  if (!tx || !tx->open) return NULL;
  if (tx->owner == L) return tx;
  lua_Debug ar;
  if (lua_status(tx->owner) == LUA_OK && lua_getstack(tx->owner, 0, &ar)) return tx; /* "normal" */
  return NULL;
}

/* How many functions the outer transaction's list holds. */
static int l_db_outbox_len(lua_State *L, const l_db_tx *outer) {
  if (!outer || outer->outbox == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, outer->outbox);
  int n = (int)lua_rawlen(L, -1);
  lua_pop(L, 1);
  return n;
}

/* A transaction rolled back: its db.on_commit functions never run. A
 * savepoint drops those added since it began, the outermost all of them. */
static void l_db_outbox_drop(lua_State *L, l_db_tx *tx) {
  if (!tx->nested) {
    if (tx->outbox != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, tx->outbox);
    tx->outbox = LUA_NOREF;
    return;
  }
  l_db_tx *outer = tx->box ? tx->box->live : NULL;
  if (!outer || outer->owner != tx->owner || outer->outbox == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, outer->outbox);
  for (int i = (int)lua_rawlen(L, -1); i > tx->mark; i--) {
    lua_pushnil(L);
    lua_rawseti(L, -2, i);
  }
  lua_pop(L, 1);
}

/* The outermost transaction committed (and is over): its db.on_commit
 * functions run now, in order, each under its own protected call (one that
 * fails is logged; the others still run). */
static void l_db_outbox_run(lua_State *L, l_db_tx *tx) {
  if (tx->outbox == LUA_NOREF) return;
  int ref = tx->outbox;
  tx->outbox = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  int list = lua_gettop(L);
  int n = (int)lua_rawlen(L, list);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    if (lcall_pcall(L, 0, 0, "db.on_commit") != LUA_OK) lua_pop(L, 1);
  }
  lua_settop(L, list - 1);
}

static const char *l_db_tx_undo(const l_db_tx *tx) {
  return tx->nested ? "ROLLBACK TO mw_tx; RELEASE mw_tx" : "ROLLBACK";
}

/* Pushes the job's error as db.transaction's and frees a synchronous job. */
static void l_db_tx_pusherr(lua_State *L, l_db_tx *tx, mw_db_job *job) {
  l_db_pushmsg(L, "db.transaction", job->err.p ? job->err.p : "out of memory", job->in.p);
  if (!tx->async) mw_db_job_free(tx->link.db, job);
}

static int l_db_tx_k(lua_State *L, int status, lua_KContext ctx) {
  l_db_tx *tx = lua_touserdata(L, 2);
  mw_db_job *job = NULL;
  if (tx->step != TX_RAN) job = tx->async ? l_db_resumed(L, ctx, "db.transaction") : (mw_db_job *)ctx;
  switch (tx->step) {
  case TX_BEGUN:
    if (job->rc != SQLITE_OK) {
      l_db_tx_pusherr(L, tx, job);
      return lua_error(L);
    }
    if (!tx->async) mw_db_job_free(tx->link.db, job);
    tx->open = true;
    if (!tx->nested && tx->box) tx->box->live = tx;
    if (tx->nested && tx->box) tx->mark = l_db_outbox_len(L, tx->box->live);
    tx->step = TX_RAN;
    lua_pushvalue(L, 1);
    /* In a handler fn may wait (its statements do); elsewhere it runs
     * through as before. */
    if (tx->async) status = lua_pcallk(L, 0, LUA_MULTRET, 0, 0, l_db_tx_k);
    else status = lua_pcall(L, 0, LUA_MULTRET, 0);
    return l_db_tx_k(L, status, 0);
  case TX_RAN:
    if (status != LUA_OK && status != LUA_YIELD) /* the error value is on top: undo, then raise it */
      return l_db_tx_run(L, tx, l_db_tx_undo(tx), MW_DB_UNDO | (tx->nested ? 0 : MW_DB_END), TX_UNDONE);
    /* fn's results sit above the userdata, at 3 and up. */
    return l_db_tx_run(L, tx, tx->nested ? "RELEASE mw_tx" : "COMMIT", tx->nested ? 0 : MW_DB_END, TX_COMMITTED);
  case TX_COMMITTED:
    if (job->rc != SQLITE_OK) {
      /* E.g. a deferred foreign key still violated: the transaction is
       * still open, so undo it rather than leave it for the next request. */
      l_db_tx_pusherr(L, tx, job);
      return l_db_tx_run(L, tx, l_db_tx_undo(tx), MW_DB_UNDO | (tx->nested ? 0 : MW_DB_END), TX_UNDONE);
    }
    if (!tx->async) mw_db_job_free(tx->link.db, job);
    l_db_tx_over(tx);
    int nres = lua_gettop(L) - 2;
    if (!tx->nested) l_db_outbox_run(L, tx);
    return nres;
  case TX_UNDONE:
  default:
    /* Errors of the rollback are ignored: the original error matters more,
     * and SQLite may already have rolled back by itself. */
    if (!tx->async && job) mw_db_job_free(tx->link.db, job);
    l_db_outbox_drop(L, tx);
    l_db_tx_over(tx);
    if (lua_touserdata(L, -1) == (void *)&l_db_rollback_key) return 0; /* db.rollback(): no error */
    return lua_error(L); /* the same value fn raised */
  }
}

/* __close and __gc of a transaction: one abandoned while open (its
 * coroutine closed or collected, the state closing) is rolled back. */
static int l_db_tx_gc(lua_State *L) {
  l_db_tx *tx = luaL_checkudata(L, 1, L_DB_TX_MT);
  mw_db *db = tx->link.db;
  /* A savepoint in a handler goes with its outer transaction (the same
   * coroutine's), which rolls back the whole. */
  if (tx->open && db && !(tx->nested && tx->async)) {
    mw_db_job *job = mw_db_job_new(db);
    if (job && !mw_str_appendz(&job->in, l_db_tx_undo(tx))) {
      job->sql_len = job->in.len;
      job->kind = tx->nested ? MW_DB_SCRIPT : MW_DB_EXEC;
      job->flags = MW_DB_UNDO | MW_DB_TXCTL | MW_DB_WRITER | (tx->nested ? 0 : MW_DB_END);
      if (tx->async) {
        /* The coroutine may be freed, and its address reused by a new one,
         * before the rollback is done: the rollback job itself holds the
         * writer until then. Nobody waits for it. */
        job->owner = job;
        mw_db_hand_over(db, tx->owner, job);
        mw_db_submit(db, job);
      } else {
        job->owner = tx->owner;
        mw_db_run_sync(db, job);
        mw_db_job_free(db, job);
      }
    } else {
      mw_db_job_free(db, job);
    }
  }
  if (tx->open) l_db_outbox_drop(L, tx);
  else if (tx->outbox != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, tx->outbox);
  tx->outbox = LUA_NOREF;
  l_db_tx_over(tx);
  mw_db_link_remove(&tx->link);
  return 0;
}

/* db.transaction(fn) -> fn's results. The outermost call is BEGIN IMMEDIATE
 * (the write lock is taken up front, so COMMIT cannot hit SQLITE_BUSY);
 * calls inside a transaction use a savepoint. fn runs under pcall; in a
 * handler it may wait, and the writer stays its own meanwhile. */
static int l_db_transaction(lua_State *L) {
  l_db_box *b = l_db_box_of(L);
  mw_db *db = l_db_get(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  l_db_tx *tx = lua_newuserdatauv(L, sizeof *tx, 1); /* 2 */
  memset(tx, 0, sizeof *tx);
  tx->outbox = LUA_NOREF;
  if (luaL_newmetatable(L, L_DB_TX_MT)) {
    lua_pushcfunction(L, l_db_tx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_db_tx_gc);
    lua_setfield(L, -2, "__close");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, 2);
  mw_db_link_add(db, &tx->link);
  tx->box = b;
  tx->async = l_db_async(L, b, db);
  tx->owner = tx->async ? L : l_db_sync_owner(L, b, db);
  lua_pushthread(tx->owner); /* keeps the owner alive while tx is */
  if (tx->owner != L) lua_xmove(tx->owner, L, 1);
  lua_setiuservalue(L, 2, 1);
  lua_toclose(L, 2);
  tx->nested = mw_db_owner(db) == tx->owner;
  return l_db_tx_run(L, tx, tx->nested ? "SAVEPOINT mw_tx" : "BEGIN IMMEDIATE", tx->nested ? 0 : MW_DB_BEGIN,
                     TX_BEGUN);
}

/* db.on_commit(fn): fn runs once the transaction the running code is in
 * (its outermost one) has committed, after the COMMIT; it is dropped when
 * that transaction, or the savepoint fn was given in, rolls back. Outside
 * a transaction fn runs at once. Returns true when fn waits for a commit. */
static int l_db_on_commit(lua_State *L) {
  l_db_box *b = l_db_box_of(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  l_db_tx *tx = l_db_current(L, b);
  if (!tx) {
    lua_call(L, 0, 0);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (tx->outbox == LUA_NOREF) {
    lua_newtable(L);
    tx->outbox = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, tx->outbox);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* db.in_transaction() -> whether the running code is inside db.transaction. */
static int l_db_in_transaction(lua_State *L) {
  lua_pushboolean(L, l_db_current(L, l_db_box_of(L)) != NULL);
  return 1;
}

/* db.rollback(): leaves the innermost db.transaction's fn at once; that
 * transaction (or savepoint) is rolled back and db.transaction returns
 * nothing, without an error. Raises when not inside a transaction. */
static int l_db_rollback(lua_State *L) {
  if (!l_db_current(L, l_db_box_of(L))) return luaL_error(L, "db.rollback: not inside db.transaction(fn)");
  lua_pushlightuserdata(L, (void *)&l_db_rollback_key);
  return lua_error(L);
}

/* ---- the module ---- */

static int l_db_gc(lua_State *L) {
  l_db_box *b = luaL_checkudata(L, 1, L_DB_MT);
  /* Jobs still running finish unnoticed: nothing is left to resume. */
  if (b->link.db) mw_db_forget(b->link.db, b);
  if (b->live) b->live->box = NULL;
  b->live = NULL;
  mw_db_link_remove(&b->link);
  return 0;
}

int l_db_push(lua_State *L, mw_db *db) {
  static const luaL_Reg funcs[] = {
      {"exec", l_db_exec},
      {"query", l_db_query},
      {"row", l_db_row},
      {"transaction", l_db_transaction},
      {"on_commit", l_db_on_commit},
      {"in_transaction", l_db_in_transaction},
      {"rollback", l_db_rollback},
      {"_post", l_db_post},
      {"_backlog", l_db_backlog},
      {NULL, NULL},
  };
  lua_createtable(L, 0, (int)MW_ARRAY_LEN(funcs) - 1);
  l_db_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  b->main = lua_tothread(L, -1);
  lua_pop(L, 1);
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

int luaopen_moonwire_db(lua_State *L) { return l_db_push(L, lmodule_env_of(L)->db); }
