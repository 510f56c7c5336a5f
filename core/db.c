/* db.c — the SQLite connections, their prepared-statement caches, and the
 * threads that run statements off the event loop (see db.h).
 *
 * Who runs what:
 *   - the writer thread: every job on the writer queue (wq), in order, on
 *     the writer connection (queued plain writes together: group commit).
 *     The loop thread uses the same connection for synchronous statements
 *     (mw_db_run_sync), only while the writer thread is idle and its queue
 *     empty (wbusy under mu);
 *   - reader threads (started when reads need them, at most
 *     DB_READERS_MAX): read-only statements from the reader queue (rq), one
 *     read-only connection each;
 *   - the loop thread: quick reads on a read-only connection of its own
 *     (lr, mw_db_try_inline); submits jobs, holds back the writes of other
 *     owners while a transaction holds the writer (the gate: owner,
 *     parked), and delivers finished jobs (the done queue, drained on a
 *     uv_async).
 * mu guards the three queues, wbusy, the readers' busy state and quit;
 * everything else belongs to one thread at a time as said above. */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"

#define DB_CACHE_SIZE 64
/* Reader connections, each on its own thread. Two clients each running a
 * long query in a loop still leave two for everyone else. */
#define DB_READERS_MAX 4
/* Reads are taken in order by the first reader; another one takes the next
 * read only when every reader before it has been busy this long. So reads
 * finish in the order they were asked for (a chat's SELECT after its
 * INSERT keeps the messages in order), unless one of them is slow. */
#define DB_OVERFLOW_NS (10 * 1000000ull)
#define DB_REOPEN_NS (1000 * 1000000ull) /* a connection that did not open is tried again after */
/* The nice value of reader threads: at 10 the scheduler gives the loop
 * about ten times the CPU of a reader when they share a core (GET /hello
 * on one core during an endless query: 26,000 req/s at 10, 19,000 at 0,
 * 28,000 without the query). */
#define DB_READER_NICE 10
/* The progress handler (budget and shutdown checks) runs every this many
 * SQLite VM instructions: tens of microseconds apart. */
#define DB_PROGRESS_OPS 1000
/* A read first runs on the loop thread, on a read-only connection of its
 * own, for at most this many progress handler calls (of DB_PROGRESS_OPS
 * SQLite VM instructions each: 50,000 instructions, about a millisecond):
 * most reads (a row by its key: about a hundred) take a few microseconds,
 * less than the hop to a thread and back would cost. One that takes more is
 * interrupted, runs again on a reader thread, and its statement goes to a
 * reader thread from then on. Counted in instructions rather than time, so
 * that a loop thread descheduled mid-statement does not send a quick
 * statement away for good. */
#define DB_INLINE_TICKS 50
/* mw_db_close lets queued and running statements go on this long at most. */
#define DB_CLOSE_WAIT_MS 2000
/* Group commit: writes waiting for the writer thread that belong to no
 * transaction run together, this many at most, in one transaction: one
 * sync to disk for all of them instead of one each (a burst of chat
 * messages, each an INSERT). Each is answered only once that transaction
 * has committed. */
#define DB_BATCH_MAX 64
/* Finished jobs kept for reuse, and the buffer size past which one is not. */
#define DB_POOL_MAX 64
#define DB_POOL_KEEP 65536

enum { Q_NONE, Q_WRITER, Q_READER, Q_RUNNING, Q_DONE, Q_PARKED };
enum { WHY_NONE, WHY_BUDGET, WHY_STOP };

typedef struct db_cached {
  char *sql; /* the key, NULL when the slot is free */
  size_t len;
  uint64_t hash;
  uint64_t used; /* tick of the last use, for LRU eviction */
  sqlite3_stmt *st;
  bool slow;  /* the loop's connection: it ran past DB_INLINE_TICKS once */
  bool local; /* asks what only the writer's connection knows (changes()...) */
} db_cached;

typedef struct db_queue {
  mw_db_job *head, *tail;
} db_queue;

typedef struct db_conn {
  mw_db *db;
  sqlite3 *sq;
  db_cached cache[DB_CACHE_SIZE];
  int ncached;
  uint64_t tick;
  /* The statement handed out and not yet released. A Lua error (say, out of
   * memory while building a row) can longjmp past mw_db_release; the next
   * prepare resets it so it does not hold a read transaction open forever. */
  sqlite3_stmt *active;
  db_cached *last; /* the entry of the statement prepared last */
  bool inl;        /* the loop thread's read connection */
  bool batch;      /* running one job of a group (the writer thread) */
  /* The running job's clocks, for the progress and busy handlers (the
   * connection's thread only). */
  uint64_t deadline;      /* interrupt past it; 0: no budget */
  unsigned ticks;         /* progress handler calls in this job (the loop's connection) */
  uint64_t busy_deadline; /* give up waiting for a lock past it */
  int why;                /* why the progress handler interrupted */
  /* Readers only. */
  bool reader;
  int index;
  uv_thread_t thread;
  uv_cond_t cond;   /* the reader waits on it */
  bool started;     /* its thread runs (the loop sets it, under mu) */
  bool busy;        /* running a job (under mu) */
  bool waiting;     /* waiting on cond (under mu) */
  uint64_t since;   /* when the job it runs started (under mu) */
  bool failed;      /* could not open its connection: hands every job to the writer */
  uint64_t retry_at; /* when a failed connection tries to open again */
} db_conn;

struct mw_db {
  char *path;
  bool on_disk;
  db_conn w;
  db_conn r[DB_READERS_MAX];
  db_conn lr; /* the loop thread's reads (opened on first use) */
  int nreaders_max; /* 0 when readers cannot share the database (:memory:) */
  mw_db_opts opts;
  uint64_t stop_at; /* mw_db_stop: interrupt past it (0: not stopping); atomic */

  /* threads */
  bool threaded;
  uv_loop_t *loop;
  uv_async_t *async;
  uv_mutex_t mu;
  uv_cond_t wcond; /* the writer thread waits on it */
  uv_cond_t idle;  /* a synchronous caller waits on it for the writer */
  uv_thread_t wthread;
  db_queue wq, rq, done;
  int nreaders; /* reader threads started */
  int ngroups;  /* groups of jobs run in one transaction (or tried) */
  bool wbusy;
  bool quit;

  /* the loop thread's */
  void *owner;         /* whose transaction holds the writer */
  bool owner_raw;      /* taken by a BEGIN run as a plain statement (synchronously) */
  db_queue parked;     /* writes of other owners, waiting for the writer */
  uv_timer_t *park_timer;
  mw_db_job *inflight; /* submitted, not yet delivered */
  mw_db_job *pool;
  int npool;
  mw_db_link links; /* circular list head of attached Lua modules */
};

static void db_seterr(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
  if (err && errlen) snprintf(err, errlen, fmt, a, b);
}

/* Creates the directory holding path when it is missing; only the last
 * level, as documented (data/app.db creates data/). */
static int db_mkparent(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path) return 0;
  size_t n = (size_t)(slash - path);
  char *dir = malloc(n + 1);
  if (!dir) return -ENOMEM;
  memcpy(dir, path, n);
  dir[n] = '\0';
  int rc = 0;
  struct stat sb;
  if (stat(dir, &sb) != 0) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) rc = -errno;
  } else if (!S_ISDIR(sb.st_mode)) {
    rc = -ENOTDIR;
  }
  free(dir);
  return rc;
}

static int db_errno(int sqlite_rc) {
  switch (sqlite_rc & 0xff) {
  case SQLITE_NOMEM: return -ENOMEM;
  case SQLITE_PERM:
  case SQLITE_READONLY:
  case SQLITE_AUTH: return -EACCES;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return -EBUSY;
  case SQLITE_CANTOPEN: return -ENOENT;
  case SQLITE_NOTADB:
  case SQLITE_CORRUPT: return -EILSEQ;
  default: return -EIO;
  }
}

static uint64_t db_stop_at(mw_db *db) { return __atomic_load_n(&db->stop_at, __ATOMIC_RELAXED); }

/* ---- the handlers SQLite calls while a statement runs (its thread) ---- */

/* Interrupts the statement past its budget or the shutdown deadline. */
static int db_on_progress(void *ud) {
  db_conn *c = ud;
  if (c->inl && ++c->ticks > DB_INLINE_TICKS) {
    c->why = WHY_BUDGET;
    return 1;
  }
  uint64_t now = mw_now_ns(), stop = db_stop_at(c->db);
  if (stop && now >= stop) {
    c->why = WHY_STOP;
    return 1;
  }
  if (c->deadline && now >= c->deadline) {
    c->why = WHY_BUDGET;
    return 1;
  }
  return 0;
}

/* The database is locked (by another process: in this one only the writer
 * writes). Waits, as sqlite3_busy_timeout would, until the job's own busy
 * deadline; the time waited does not count against the statement budget.
 * It runs on the database thread, so the loop is not held. */
static int db_on_busy(void *ud, int count) {
  static const uint8_t delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
  db_conn *c = ud;
  uint64_t now = mw_now_ns(), stop = db_stop_at(c->db);
  uint64_t until = c->busy_deadline;
  if (stop && stop < until) until = stop;
  if (now >= until) return 0;
  uint64_t ns = (uint64_t)(count < (int)sizeof delays ? delays[count] : 100) * 1000000u;
  if (ns > until - now) ns = until - now;
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  if (c->deadline) c->deadline += mw_now_ns() - now;
  return 1;
}

/* ---- connections ---- */

static int db_conn_open(db_conn *c, mw_db *db, const char *path, int flags) {
  c->db = db;
  int rc = sqlite3_open_v2(path, &c->sq, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) return rc;
  sqlite3_extended_result_codes(c->sq, 1);
  sqlite3_busy_handler(c->sq, db_on_busy, c);
  sqlite3_progress_handler(c->sq, DB_PROGRESS_OPS, db_on_progress, c);
  return SQLITE_OK;
}

static void db_slot_clear(db_cached *c) {
  sqlite3_finalize(c->st);
  free(c->sql);
  memset(c, 0, sizeof *c);
}

static void db_conn_close(db_conn *c) {
  if (!c->sq) return;
  for (int i = 0; i < DB_CACHE_SIZE; i++)
    if (c->cache[i].sql) db_slot_clear(&c->cache[i]);
  c->ncached = 0;
  int rc = sqlite3_close(c->sq);
  if (rc != SQLITE_OK) {
    /* Someone prepared a statement through mw_db_handle and never finalized
     * it; the connection (and the file lock) is leaked. Say so loudly. */
    mw_log(MW_LOG_ERROR, "db: sqlite3_close failed: %s", sqlite3_errmsg(c->sq));
  }
  c->sq = NULL;
}

void mw_db_opts_default(mw_db_opts *o) {
  o->busy_timeout_ms = MW_DB_BUSY_TIMEOUT_MS;
  o->statement_timeout_ms = MW_DB_STATEMENT_TIMEOUT_MS;
}

int mw_db_open(mw_db **out, const char *path, char *err, size_t errlen) {
  *out = NULL;
  if (err && errlen) err[0] = '\0';
  /* ":memory:" and "" (temporary) have no directory to create. */
  bool on_disk = path[0] != '\0' && strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0;
  if (on_disk) {
    int rc = db_mkparent(path);
    if (rc) {
      db_seterr(err, errlen, "cannot create the directory of %s: %s", path, strerror(-rc));
      return rc;
    }
  }
  mw_db *db = calloc(1, sizeof *db);
  if (!db || !(db->path = strdup(path))) {
    free(db);
    db_seterr(err, errlen, "%s%s", "out of memory", "");
    return -ENOMEM;
  }
  db->on_disk = on_disk;
  /* Readers need a file they can share: an in-memory database is one per
   * connection. */
  db->nreaders_max = on_disk ? DB_READERS_MAX : 0;
  mw_db_opts_default(&db->opts);
  db->links.next = db->links.prev = &db->links;
  int rc = db_conn_open(&db->w, db, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (rc != SQLITE_OK) {
    db_seterr(err, errlen, "cannot open %s: %s", path, db->w.sq ? sqlite3_errmsg(db->w.sq) : sqlite3_errstr(rc));
    sqlite3_close(db->w.sq); /* a handle is returned even on most failures */
    free(db->path);
    free(db);
    return db_errno(rc);
  }

  /* journal_mode answers with the mode actually in effect; anything but
   * "wal" (e.g. "memory" for :memory:) is worth a warning, not a failure. */
  sqlite3 *sq = db->w.sq;
  db->w.busy_deadline = mw_now_ns() + (uint64_t)db->opts.busy_timeout_ms * 1000000u;
  sqlite3_stmt *st = NULL;
  rc = sqlite3_prepare_v2(sq, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (on_disk && (!mode || strcmp(mode, "wal") != 0)) {
      mw_log(MW_LOG_WARN, "db %s: journal_mode is %s, not wal", path, mode ? mode : "?");
      db->nreaders_max = 0; /* readers would wait for the writer anyway */
    }
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_OK) rc = sqlite3_exec(sq, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    /* Typically "file is not a database": fail now rather than on first use. */
    db_seterr(err, errlen, "cannot set up %s: %s", path, sqlite3_errmsg(sq));
    sqlite3_close(sq);
    free(db->path);
    free(db);
    return db_errno(rc);
  }
  *out = db;
  return 0;
}

void mw_db_configure(mw_db *db, const mw_db_opts *opts) { db->opts = *opts; }

sqlite3 *mw_db_handle(mw_db *db) { return db->w.sq; }

bool mw_db_started(const mw_db *db) { return db->threaded; }

void *mw_db_owner(mw_db *db) { return db->owner; }

void mw_db_hand_over(mw_db *db, void *from, void *to) {
  if (db->owner && db->owner == from) db->owner = to;
}

int mw_db_groups(mw_db *db) {
  if (!db->threaded) return 0;
  uv_mutex_lock(&db->mu);
  int n = db->ngroups;
  uv_mutex_unlock(&db->mu);
  return n;
}

int mw_db_pending(const mw_db *db) {
  int n = 0;
  for (const mw_db_job *j = db->inflight; j; j = j->inext) n++;
  return n;
}

int mw_db_readers(mw_db *db) {
  if (!db->threaded) return 0;
  uv_mutex_lock(&db->mu);
  int n = db->nreaders;
  uv_mutex_unlock(&db->mu);
  return n;
}

void mw_db_link_add(mw_db *db, mw_db_link *link) {
  link->db = db;
  link->next = db->links.next;
  link->prev = &db->links;
  db->links.next->prev = link;
  db->links.next = link;
}

void mw_db_link_remove(mw_db_link *link) {
  if (!link->next || link->next == link) return;
  link->prev->next = link->next;
  link->next->prev = link->prev;
  link->prev = link->next = link;
  link->db = NULL;
}

/* ---- the statement cache (per connection, its thread only) ---- */

/* Skips blanks, comments and semicolons from p; returns where the next
 * token starts (end when none). Lexical on purpose: preparing the rest
 * could fail for a reason (a table the first statement creates) that
 * running it would not. */
static const char *db_skip(const char *p, const char *end) {
  while (p < end) {
    if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v' || *p == ';') {
      p++;
    } else if (*p == '-' && p + 1 < end && p[1] == '-') {
      while (p < end && *p != '\n') p++;
    } else if (*p == '/' && p + 1 < end && p[1] == '*') {
      p += 2;
      while (p + 1 < end && !(p[0] == '*' && p[1] == '/')) p++;
      p = p + 1 < end ? p + 2 : end;
    } else {
      return p;
    }
  }
  return end;
}

/* Whether sql asks for state of one connection: changes(),
 * total_changes(), last_insert_rowid(). */
static bool db_asks_local(const char *sql, size_t len) {
  const char *end = sql + len;
  for (const char *q = sql; q + 7 <= end; q++) {
    if ((*q == 'c' || *q == 'C') && mw_ieq(q, 7, "changes")) return true;
    if ((*q == 'l' || *q == 'L') && q + 17 <= end && mw_ieq(q, 17, "last_insert_rowid")) return true;
  }
  return false;
}

static void db_release(db_conn *c, sqlite3_stmt *st) {
  if (!st) return;
  /* reset's return value repeats the step error, already reported. */
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (c->active == st) c->active = NULL;
}

static int db_prepare(db_conn *c, const char *sql, size_t len, sqlite3_stmt **out, int *multi) {
  *out = NULL;
  if (multi) *multi = 0;
  if (len == (size_t)-1) len = strlen(sql);
  if (c->active) db_release(c, c->active);
  uint64_t h = mw_hash64(sql, len);
  c->tick++;
  for (int i = 0; i < DB_CACHE_SIZE; i++) {
    db_cached *e = &c->cache[i];
    if (e->sql && e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) {
      e->used = c->tick;
      c->active = e->st;
      c->last = e;
      *out = e->st;
      return 0;
    }
  }
  if (len > INT32_MAX - 1) return -EINVAL;
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(c->sq, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &st, &tail);
  if (rc != SQLITE_OK) return db_errno(rc) == -EBUSY ? -EBUSY : -EIO;
  if (!st) return -EINVAL; /* only blanks or comments */
  if (tail && db_skip(tail, sql + len) < sql + len) {
    sqlite3_finalize(st);
    if (multi) *multi = 1;
    return -EINVAL;
  }
  char *key = malloc(len + 1);
  if (!key) {
    sqlite3_finalize(st);
    return -ENOMEM;
  }
  memcpy(key, sql, len);
  key[len] = '\0';
  /* A free slot, or else the least recently used one. */
  int victim = -1;
  for (int i = 0; i < DB_CACHE_SIZE; i++) {
    if (!c->cache[i].sql) {
      victim = i;
      break;
    }
    if (victim < 0 || c->cache[i].used < c->cache[victim].used) victim = i;
  }
  db_cached *e = &c->cache[victim];
  if (e->sql) {
    db_slot_clear(e);
    c->ncached--;
  }
  e->sql = key;
  e->len = len;
  e->hash = h;
  e->used = c->tick;
  e->st = st;
  e->slow = false;
  e->local = c->reader && db_asks_local(sql, len);
  c->ncached++;
  c->active = st;
  c->last = e;
  *out = st;
  return 0;
}

int mw_db_prepare(mw_db *db, const char *sql, size_t len, sqlite3_stmt **out, int *multi) {
  return db_prepare(&db->w, sql, len, out, multi);
}

void mw_db_release(mw_db *db, sqlite3_stmt *st) { db_release(&db->w, st); }

int mw_db_cached(const mw_db *db) { return db->w.ncached; }

/* ---- running one job on a connection (whichever thread holds it) ---- */

static void db_fail(db_conn *c, mw_db_job *job, int rc, const char *msg) {
  job->rc = rc & 0xff;
  if (job->rc == SQLITE_OK) job->rc = SQLITE_ERROR;
  mw_str_reset(&job->err);
  if (job->rc == SQLITE_INTERRUPT && c->why == WHY_BUDGET) {
    mw_str_appendf(&job->err, "statement stopped: it ran past its budget of %llu ms (--db-statement-timeout)",
                   (unsigned long long)(job->budget_ns / 1000000u));
  } else if (job->rc == SQLITE_INTERRUPT && c->why == WHY_STOP) {
    mw_str_appendz(&job->err, "statement stopped: the server is shutting down");
  } else if (job->rc == SQLITE_BUSY) {
    /* In this process only the writer connection writes: the lock is
     * another process's (a sqlite3 shell, a backup, another server). */
    mw_str_appendf(&job->err, "database is locked by another process (waited %u ms, --db-busy-timeout)",
                   c->db->opts.busy_timeout_ms);
  } else {
    mw_str_appendz(&job->err, msg ? msg : "unknown error");
  }
  if (!job->err.p) job->rc = SQLITE_NOMEM; /* the message could not be kept */
}

static void db_fail_errmsg(db_conn *c, mw_db_job *job, int rc) { db_fail(c, job, rc, sqlite3_errmsg(c->sq)); }

static inline int db_put(mw_db_job *job, const void *p, size_t n) {
  mw_str *o = &job->out;
  if (o->len + n >= o->cap && mw_str_reserve(o, n)) return -ENOMEM;
  memcpy(o->p + o->len, p, n);
  o->len += n;
  return 0;
}

static int db_put_bytes(mw_db_job *job, const void *p, size_t n) {
  uint32_t len = (uint32_t)n;
  if (db_put(job, &len, sizeof len)) return -ENOMEM;
  return n ? db_put(job, p, n) : 0;
}

static int db_put_names(mw_db_job *job, sqlite3_stmt *st) {
  for (int i = 0; i < job->ncols; i++) {
    const char *name = sqlite3_column_name(st, i);
    if (!name) name = "?";
    if (db_put_bytes(job, name, strlen(name))) return -ENOMEM;
  }
  return 0;
}

static int db_put_row(mw_db_job *job, sqlite3_stmt *st) {
  for (int i = 0; i < job->ncols; i++) {
    unsigned char type = (unsigned char)sqlite3_column_type(st, i);
    if (db_put(job, &type, 1)) return -ENOMEM;
    switch (type) {
    case SQLITE_INTEGER: {
      int64_t v = sqlite3_column_int64(st, i);
      if (db_put(job, &v, sizeof v)) return -ENOMEM;
      break;
    }
    case SQLITE_FLOAT: {
      double v = sqlite3_column_double(st, i);
      if (db_put(job, &v, sizeof v)) return -ENOMEM;
      break;
    }
    case SQLITE_TEXT: {
      const unsigned char *s = sqlite3_column_text(st, i);
      int n = sqlite3_column_bytes(st, i); /* after the conversion, per the docs */
      if (db_put_bytes(job, s ? (const void *)s : "", s ? (size_t)n : 0)) return -ENOMEM;
      break;
    }
    case SQLITE_BLOB: {
      const void *b = sqlite3_column_blob(st, i);
      int n = sqlite3_column_bytes(st, i);
      if (db_put_bytes(job, b ? b : "", b ? (size_t)n : 0)) return -ENOMEM;
      break;
    }
    default: break; /* NULL */
    }
  }
  job->nrows++;
  return 0;
}

/* The parameter of job for statement parameter i (named: by its name, or
 * by number for ? and ?NNN), or NULL when the call gave none (NULL then). */
static const mw_db_param *db_param_for(const mw_db_job *job, sqlite3_stmt *st, int i) {
  if (!job->named) return i <= job->nparams ? &job->params[i - 1] : NULL;
  const char *name = sqlite3_bind_parameter_name(st, i);
  bool by_name = name && name[0] != '?';
  size_t nlen = by_name ? strlen(name + 1) : 0;
  for (int k = 0; k < job->nparams; k++) {
    const mw_db_param *p = &job->params[k];
    if (by_name ? (p->namelen == nlen && memcmp(job->in.p + p->name, name + 1, nlen) == 0)
                : (p->namelen == 0 && p->index == i))
      return p;
  }
  return NULL;
}

/* Binds job's parameters to st; on failure fills job's error (rc -1 for a
 * value that has no SQL type: l_db.c words that one without the SQL). */
static int db_bind(db_conn *c, mw_db_job *job, sqlite3_stmt *st) {
  int nparams = sqlite3_bind_parameter_count(st);
  if (!job->named && job->nparams != nparams) {
    mw_str_reset(&job->err);
    mw_str_appendf(&job->err, "%d parameter%s given, the statement takes %d", job->nparams,
                   job->nparams == 1 ? "" : "s", nparams);
    job->rc = SQLITE_RANGE;
    return -1;
  }
  for (int i = 1; i <= nparams; i++) {
    const mw_db_param *p = db_param_for(job, st, i);
    int rc;
    switch (p ? p->type : SQLITE_NULL) {
    case SQLITE_NULL: rc = sqlite3_bind_null(st, i); break;
    case SQLITE_INTEGER: rc = sqlite3_bind_int64(st, i, (sqlite3_int64)p->v.i); break;
    case SQLITE_FLOAT: rc = sqlite3_bind_double(st, i, p->v.f); break;
    case SQLITE_TEXT:
      /* Static: job->in outlives the statement's use of it (released
       * before the job is handed back). */
      rc = sqlite3_bind_text64(st, i, job->in.p + p->v.s.off, (sqlite3_uint64)p->v.s.len, SQLITE_STATIC, SQLITE_UTF8);
      break;
    default: {
      const char *pname = sqlite3_bind_parameter_name(st, i);
      mw_str_reset(&job->err);
      if (pname) mw_str_appendf(&job->err, "cannot bind a %s to %s", p->tname, pname);
      else mw_str_appendf(&job->err, "cannot bind a %s to parameter %d", p->tname, i);
      job->rc = -1;
      return -1;
    }
    }
    if (rc != SQLITE_OK) {
      db_fail_errmsg(c, job, rc);
      return -1;
    }
  }
  return 0;
}

/* Whether sql starts with a word that begins or ends a transaction. */
static bool db_is_txctl(const char *sql, size_t len) {
  static const char *const words[] = {"begin", "commit", "end", "rollback", "savepoint", "release"};
  const char *end = sql + len, *p = db_skip(sql, end);
  size_t n = 0;
  while (p + n < end && ((p[n] | 0x20) >= 'a' && (p[n] | 0x20) <= 'z')) n++;
  for (size_t i = 0; i < MW_ARRAY_LEN(words); i++)
    if (strlen(words[i]) == n && mw_ieq(p, n, words[i])) return true;
  return false;
}

static const char DB_NO_RAW_TX[] =
    "BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE cannot be run from a handler (other handlers' statements "
    "would land in the transaction while this one waits): use db.transaction(fn)";

/* Runs job on c. Sets job->bounced instead when c is a reader that cannot
 * run it (it is not read-only, or does not prepare there: a temporary
 * table lives on the writer's connection only). */
static void db_run(db_conn *c, mw_db_job *job) {
  sqlite3 *sq = c->sq;
  c->why = WHY_NONE;
  c->deadline = job->budget_ns ? mw_now_ns() + job->budget_ns : 0;
  c->busy_deadline = job->busy_deadline;
  if (c->inl) {
    c->ticks = 0;
    c->busy_deadline = 0; /* a lock is waited for on a thread, never here */
  }
  job->rc = SQLITE_OK;
  const char *sql = job->in.p;
  if (c->failed) {
    job->bounced = true;
    return;
  }
  if (job->async && !(job->flags & MW_DB_TXCTL) && db_is_txctl(sql, job->sql_len)) {
    db_fail(c, job, SQLITE_MISUSE, DB_NO_RAW_TX);
    goto out;
  }
  if (job->in_tx && !(job->flags & MW_DB_UNDO) && sqlite3_get_autocommit(sq)) {
    /* SQLite rolled the transaction back by itself (an interrupt, a full
     * disk): what follows would run outside of it. */
    db_fail(c, job, SQLITE_ABORT, "the transaction was rolled back after an error inside it");
    goto out;
  }
  if (job->kind == MW_DB_SCRIPT) goto script;
  sqlite3_stmt *st = NULL;
  int multi = 0;
  int rc = db_prepare(c, sql, job->sql_len, &st, &multi);
  if (rc == -EINVAL && multi && job->kind == MW_DB_EXEC && !c->reader) {
    if (job->nparams || job->named) {
      db_fail(c, job, SQLITE_MISUSE, "parameters cannot be passed to several statements");
      goto out;
    }
    goto script;
  }
  if (rc == -EINVAL) {
    db_fail(c, job, SQLITE_MISUSE, multi ? "several statements given, only one is run at a time" : "no SQL statement");
    goto out;
  }
  if (rc != 0 && c->reader) {
    job->bounced = true;
    return;
  }
  if (rc != 0) {
    if (rc == -ENOMEM) db_fail(c, job, SQLITE_NOMEM, "out of memory");
    else db_fail_errmsg(c, job, sqlite3_errcode(sq));
    goto out;
  }
  if (c->reader && (c->last->local || !sqlite3_stmt_readonly(st))) {
    db_release(c, st);
    job->bounced = true;
    return;
  }
  if (c->inl && c->last->slow) {
    db_release(c, st);
    job->rc = SQLITE_INTERRUPT; /* known to take long: straight to a thread */
    return;
  }
  if (db_bind(c, job, st)) {
    db_release(c, st);
    goto out;
  }
  job->ncols = sqlite3_column_count(st);
  sqlite3_int64 before = sqlite3_total_changes64(sq);
  if (job->kind != MW_DB_EXEC && db_put_names(job, st)) {
    db_release(c, st);
    db_fail(c, job, SQLITE_NOMEM, "out of memory");
    goto out;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (job->kind == MW_DB_EXEC) continue;
    if (db_put_row(job, st)) {
      db_release(c, st);
      db_fail(c, job, SQLITE_NOMEM, "out of memory");
      goto out;
    }
    if (job->kind == MW_DB_ROW) {
      rc = SQLITE_DONE;
      break;
    }
  }
  if (rc != SQLITE_DONE) {
    /* The message is taken first: resetting may change it. */
    db_fail_errmsg(c, job, rc);
    db_release(c, st);
    goto out;
  }
  /* sqlite3_changes64 keeps the count of the last INSERT/UPDATE/DELETE, even
   * after a statement that changed nothing (CREATE, SELECT): report 0 then. */
  job->changes = sqlite3_total_changes64(sq) != before ? sqlite3_changes64(sq) : 0;
  job->rowid = sqlite3_last_insert_rowid(sq);
  db_release(c, st);
  goto out;

script: {
  /* A schema script: several statements, without parameters. */
  sqlite3_int64 before = sqlite3_total_changes64(sq);
  char *msg = NULL;
  int src = sqlite3_exec(sq, sql, NULL, NULL, &msg);
  if (src != SQLITE_OK) db_fail(c, job, src, msg ? msg : sqlite3_errmsg(sq));
  sqlite3_free(msg);
  job->changes = sqlite3_total_changes64(sq) != before ? sqlite3_changes64(sq) : 0;
  job->rowid = sqlite3_last_insert_rowid(sq);
}
out:
  if (c->reader || c->batch) return;
  if (job->async && !job->in_tx && !(job->flags & MW_DB_BEGIN) && !sqlite3_get_autocommit(sq)) {
    /* A script that began a transaction and left it open. */
    sqlite3_exec(sq, "ROLLBACK", NULL, NULL, NULL);
    db_fail(c, job, SQLITE_MISUSE, DB_NO_RAW_TX);
  }
  job->autocommit = sqlite3_get_autocommit(sq) != 0;
}

/* ---- queues ---- */

static void db_push(db_queue *q, mw_db_job *job, int where) {
  job->next = NULL;
  job->where = where;
  if (q->tail) q->tail->next = job;
  else q->head = job;
  q->tail = job;
}

static mw_db_job *db_pop(db_queue *q) {
  mw_db_job *job = q->head;
  if (!job) return NULL;
  q->head = job->next;
  if (!q->head) q->tail = NULL;
  job->next = NULL;
  return job;
}

/* A finished job goes to the loop (under mu). */
static void db_deliver_locked(mw_db *db, mw_db_job *job) {
  db_push(&db->done, job, Q_DONE);
  uv_async_send(db->async);
}

static void db_job_reset(mw_db_job *job);

/* Whether job may share a transaction with others: a plain statement of
 * nobody's transaction. */
static bool db_groupable(const mw_db_job *job) {
  return job->kind != MW_DB_SCRIPT && !job->in_tx &&
         !(job->flags & (MW_DB_BEGIN | MW_DB_END | MW_DB_UNDO | MW_DB_TXCTL));
}

/* Runs jobs[0..n) in one transaction (group commit). When it cannot be had,
 * or is lost (SQLite rolls the whole transaction back on some errors: an
 * interrupt, a full disk), or does not commit (a deferred foreign key),
 * the jobs not yet settled run again one by one, as they would have alone:
 * none of them is answered before its changes are committed. */
static void db_run_group(db_conn *c, mw_db_job **jobs, int n) {
  sqlite3 *sq = c->sq;
  int from = 0;
  uv_mutex_lock(&c->db->mu);
  c->db->ngroups++;
  uv_mutex_unlock(&c->db->mu);
  c->why = WHY_NONE;
  c->deadline = 0;
  c->busy_deadline = jobs[0]->busy_deadline;
  if (sqlite3_exec(sq, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) goto alone;
  c->batch = true;
  for (int i = 0; i < n; i++) {
    db_run(c, jobs[i]);
    if (sqlite3_get_autocommit(sq)) { /* lost, with jobs[i]'s error */
      c->batch = false;
      for (int k = 0; k < i; k++) {
        db_job_reset(jobs[k]);
        db_run(c, jobs[k]);
      }
      from = i + 1;
      goto alone;
    }
  }
  c->batch = false;
  c->why = WHY_NONE;
  c->deadline = 0;
  if (sqlite3_exec(sq, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
    for (int i = 0; i < n; i++) jobs[i]->autocommit = true;
    return;
  }
  sqlite3_exec(sq, "ROLLBACK", NULL, NULL, NULL);
  for (int i = 0; i < n; i++) db_job_reset(jobs[i]);
alone:
  for (int i = from; i < n; i++) db_run(c, jobs[i]);
}

static void db_writer_main(void *arg) {
  mw_db *db = arg;
  mw_db_job *jobs[DB_BATCH_MAX];
  uv_mutex_lock(&db->mu);
  for (;;) {
    while (!db->quit && (!db->wq.head || db->wbusy)) uv_cond_wait(&db->wcond, &db->mu);
    if (db->quit) break;
    int n = 0;
    jobs[n++] = db_pop(&db->wq);
    if (db_groupable(jobs[0]))
      while (n < DB_BATCH_MAX && db->wq.head && db_groupable(db->wq.head)) jobs[n++] = db_pop(&db->wq);
    for (int i = 0; i < n; i++) jobs[i]->where = Q_RUNNING;
    db->wbusy = true;
    uv_mutex_unlock(&db->mu);
    if (n == 1) db_run(&db->w, jobs[0]);
    else db_run_group(&db->w, jobs, n);
    uv_mutex_lock(&db->mu);
    db->wbusy = false;
    for (int i = 0; i < n; i++) db_deliver_locked(db, jobs[i]);
    uv_cond_broadcast(&db->idle);
  }
  uv_mutex_unlock(&db->mu);
}

/* Whether reader c may take the next read now; if not, *until says when to
 * look again (0: when woken). Under mu. */
static bool db_reader_may(mw_db *db, db_conn *c, uint64_t now, uint64_t *until) {
  *until = 0;
  for (int j = 0; j < c->index; j++) {
    db_conn *r = &db->r[j];
    if (!r->started || r->failed) continue;
    if (!r->busy) return false; /* it takes it */
    if (now - r->since < DB_OVERFLOW_NS) {
      uint64_t t = r->since + DB_OVERFLOW_NS;
      if (!*until || t < *until) *until = t;
      return false;
    }
  }
  return true;
}

/* Opens reader c's read-only connection. One that does not open (no file
 * descriptor left, say) leaves its reads to the writer, slower but right,
 * and is tried again a second later, so a passing shortage costs only
 * that while. Says so once per failure and once when it opens after all. */
static bool db_reader_open(db_conn *c, bool again) {
  mw_db *db = c->db;
  if (db_conn_open(c, db, db->path, SQLITE_OPEN_READONLY) == SQLITE_OK) {
    if (again) mw_log(MW_LOG_INFO, "db %s: a reader connection opened after all", db->path);
    return true;
  }
  if (!again)
    mw_log(MW_LOG_WARN, "db %s: a reader connection did not open: %s; its reads go to the writer meanwhile",
           db->path, c->sq ? sqlite3_errmsg(c->sq) : "out of memory");
  sqlite3_close(c->sq);
  c->sq = NULL;
  c->retry_at = mw_now_ns() + DB_REOPEN_NS;
  return false;
}

static void db_reader_main(void *arg) {
  db_conn *c = arg;
  mw_db *db = c->db;
#ifdef __linux__
  /* Reads come here because they are slow: on a core shared with the loop
   * the loop should win, so a long query costs its own handler, not
   * everyone's requests. (Linux takes a nice value per thread.) */
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), DB_READER_NICE);
#endif
  if (!db_reader_open(c, false)) {
    uv_mutex_lock(&db->mu);
    c->failed = true;
    uv_mutex_unlock(&db->mu);
  }
  uv_mutex_lock(&db->mu);
  for (;;) {
    if (db->quit) break;
    uint64_t until = 0;
    if (!db->rq.head || !db_reader_may(db, c, mw_now_ns(), &until)) {
      c->waiting = true;
      if (until) {
        uint64_t now = mw_now_ns();
        if (until > now) uv_cond_timedwait(&c->cond, &db->mu, until - now);
      } else {
        uv_cond_wait(&c->cond, &db->mu);
      }
      c->waiting = false;
      continue;
    }
    mw_db_job *job = db_pop(&db->rq);
    job->where = Q_RUNNING;
    c->busy = true;
    c->since = mw_now_ns();
    uv_mutex_unlock(&db->mu);
    if (c->failed && c->since >= c->retry_at && db_reader_open(c, true)) {
      uv_mutex_lock(&db->mu);
      c->failed = false;
      uv_mutex_unlock(&db->mu);
    }
    db_run(c, job);
    uv_mutex_lock(&db->mu);
    c->busy = false;
    db_deliver_locked(db, job);
  }
  uv_mutex_unlock(&db->mu);
  db_conn_close(c);
}

/* ---- the loop side ---- */

static void db_async_closed(uv_handle_t *h) { free(h); }

static void db_job_recycle(mw_db *db, mw_db_job *job);
static void db_submit_writer(mw_db *db, mw_db_job *job);
static void db_arm_park(mw_db *db);

/* While a job is in flight the async handle keeps the loop alive: what
 * waits for the job is resumed even if nothing else is going on. */
static void db_inflight_add(mw_db *db, mw_db_job *job) {
  if (!db->inflight) uv_ref((uv_handle_t *)db->async);
  job->iprev = NULL;
  job->inext = db->inflight;
  if (db->inflight) db->inflight->iprev = job;
  db->inflight = job;
}

static void db_inflight_remove(mw_db *db, mw_db_job *job) {
  if (job->iprev) job->iprev->inext = job->inext;
  else if (db->inflight == job) db->inflight = job->inext;
  if (job->inext) job->inext->iprev = job->iprev;
  job->iprev = job->inext = NULL;
  if (!db->inflight) uv_unref((uv_handle_t *)db->async);
}

/* Hands a finished job to its submitter and takes it back. */
static void db_finish(mw_db *db, mw_db_job *job) {
  db_inflight_remove(db, job);
  job->where = Q_NONE;
  if (job->done) job->done(job);
  db_job_recycle(db, job);
}

/* The writer is free again: let parked jobs in, in order, until one of
 * them takes it. */
static void db_unpark(mw_db *db) {
  while (db->parked.head && (!db->owner || db->parked.head->owner == db->owner)) db_submit_writer(db, db_pop(&db->parked));
  db_arm_park(db);
}

/* After a writer job: its transaction may have begun or ended. */
static void db_gate_after(mw_db *db, mw_db_job *job) {
  if (!db->owner || db->owner != job->owner || !job->autocommit) return;
  if (job->flags & (MW_DB_BEGIN | MW_DB_END)) {
    db->owner = NULL;
    db_unpark(db);
  }
}

static void db_on_async(uv_async_t *a) {
  mw_db *db = a->data;
  uv_mutex_lock(&db->mu);
  mw_db_job *list = db->done.head;
  db->done.head = db->done.tail = NULL;
  uv_mutex_unlock(&db->mu);
  while (list) {
    mw_db_job *job = list;
    list = job->next;
    job->next = NULL;
    if (job->bounced) {
      /* A reader could not run it: the writer will, from a clean slate
       * (left bounced, it would come back here after the writer ran it). */
      db_job_reset(job);
      job->reader = false;
      job->flags |= MW_DB_WRITER;
      job->where = Q_NONE;
      db_submit_writer(db, job);
      continue;
    }
    if (!job->reader) db_gate_after(db, job);
    db_finish(db, job);
  }
}

static void db_on_park_timer(uv_timer_t *t) {
  mw_db *db = t->data;
  uint64_t now = mw_now_ns();
  /* Deadlines grow along the queue (the same timeout from submission). */
  while (db->parked.head && db->parked.head->busy_deadline <= now) {
    mw_db_job *job = db_pop(&db->parked);
    job->rc = SQLITE_BUSY;
    mw_str_reset(&job->err);
    mw_str_appendz(&job->err, "database is busy: another handler's transaction held it past the busy timeout (--db-busy-timeout)");
    db_finish(db, job);
  }
  db_arm_park(db);
}

static void db_arm_park(mw_db *db) {
  if (!db->park_timer) return;
  if (!db->parked.head) {
    uv_timer_stop(db->park_timer);
    return;
  }
  uint64_t now = mw_now_ns(), at = db->parked.head->busy_deadline;
  uint64_t ms = at > now ? (at - now + 999999u) / 1000000u : 0;
  uv_timer_start(db->park_timer, db_on_park_timer, ms, 0);
}

static void db_submit_writer(mw_db *db, mw_db_job *job) {
  if (db->owner && db->owner != job->owner) {
    db_push(&db->parked, job, Q_PARKED);
    if (db->parked.head == job) db_arm_park(db);
    return;
  }
  job->in_tx = db->owner && !(job->flags & MW_DB_BEGIN);
  if (job->flags & MW_DB_BEGIN) db->owner = job->owner;
  uv_mutex_lock(&db->mu);
  db_push(&db->wq, job, Q_WRITER);
  uv_cond_signal(&db->wcond);
  uv_mutex_unlock(&db->mu);
}

/* Whether job may run on a reader: a query that reads, as far as its first
 * word says. A reader checks the rest before it runs it (read-only, and
 * asking nothing only the writer's connection knows: db_asks_local, done
 * once per statement), and hands the job to the writer otherwise. */
static bool db_for_reader(mw_db *db, const mw_db_job *job) {
  if (!db->nreaders_max || job->kind == MW_DB_EXEC || job->kind == MW_DB_SCRIPT || (job->flags & MW_DB_WRITER))
    return false;
  if (db->owner && db->owner == job->owner) return false; /* its own transaction's writes are on the writer */
  const char *p = job->in.p, *end = p + job->sql_len;
  p = db_skip(p, end);
  size_t n = (size_t)(end - p);
  return (n > 6 && mw_ieq(p, 6, "select")) || (n > 4 && mw_ieq(p, 4, "with")) || (n > 6 && mw_ieq(p, 6, "values"));
}

/* Starts one more reader thread when every reader is busy (under mu). */
static void db_more_readers_locked(mw_db *db) {
  for (int i = 0; i < db->nreaders; i++)
    if (!db->r[i].busy && !db->r[i].failed) return;
  if (db->nreaders >= db->nreaders_max) return;
  db_conn *c = &db->r[db->nreaders];
  c->reader = true;
  c->index = db->nreaders;
  c->db = db;
  if (uv_cond_init(&c->cond) != 0) return;
  if (uv_thread_create(&c->thread, db_reader_main, c) != 0) {
    uv_cond_destroy(&c->cond);
    return;
  }
  c->started = true;
  db->nreaders++;
}

void mw_db_submit(mw_db *db, mw_db_job *job) {
  uint64_t now = mw_now_ns();
  job->busy_deadline = now + (uint64_t)db->opts.busy_timeout_ms * 1000000u;
  job->budget_ns = (uint64_t)db->opts.statement_timeout_ms * 1000000u;
  job->rc = SQLITE_OK;
  job->bounced = false;
  job->async = true;
  db_inflight_add(db, job);
  if (db_for_reader(db, job)) {
    job->reader = true;
    uv_mutex_lock(&db->mu);
    db_push(&db->rq, job, Q_READER);
    db_more_readers_locked(db);
    /* Wake the first reader that waits: it takes the job, or looks again
     * once the readers before it have been busy long enough. */
    for (int i = 0; i < db->nreaders; i++) {
      if (db->r[i].waiting) {
        uv_cond_signal(&db->r[i].cond);
        break;
      }
    }
    uv_mutex_unlock(&db->mu);
    return;
  }
  db_submit_writer(db, job);
}

static void db_job_reset(mw_db_job *job) {
  job->rc = SQLITE_OK;
  job->bounced = false;
  job->ncols = job->nrows = 0;
  job->changes = job->rowid = 0;
  mw_str_reset(&job->out);
  mw_str_reset(&job->err);
}

bool mw_db_try_inline(mw_db *db, mw_db_job *job) {
  db_conn *c = &db->lr;
  if (!db->threaded || !db_for_reader(db, job)) return false;
  if (!c->sq) {
    if (c->failed && mw_now_ns() < c->retry_at) return false;
    c->reader = c->inl = true;
    c->db = db;
    if (!db_reader_open(c, c->failed)) {
      c->failed = true;
      return false;
    }
    c->failed = false;
  }
  job->budget_ns = (uint64_t)db->opts.statement_timeout_ms * 1000000u;
  db_run(c, job);
  if (job->bounced) { /* not a read after all: the writer's */
    db_job_reset(job);
    job->flags |= MW_DB_WRITER;
    return false;
  }
  if (job->rc == SQLITE_INTERRUPT || job->rc == SQLITE_BUSY) {
    if (job->rc == SQLITE_INTERRUPT && c->why == WHY_BUDGET && c->last) c->last->slow = true;
    db_job_reset(job);
    return false;
  }
  return true;
}

int mw_db_run_sync(mw_db *db, mw_db_job *job) {
  if (db->owner && db->owner != job->owner) {
    job->rc = SQLITE_BUSY;
    mw_str_reset(&job->err);
    mw_str_appendz(&job->err, "database is busy: a handler's transaction is open, and code outside of a handler "
                              "cannot wait for it to end");
    return -EBUSY;
  }
  uint64_t now = mw_now_ns();
  job->busy_deadline = now + (uint64_t)db->opts.busy_timeout_ms * 1000000u;
  job->budget_ns = (uint64_t)db->opts.statement_timeout_ms * 1000000u;
  job->in_tx = db->owner && !db->owner_raw && !(job->flags & MW_DB_BEGIN);
  if (job->flags & MW_DB_BEGIN) db->owner = job->owner;
  if (db->threaded) {
    /* After what the writer thread already has: in order, and it is the
     * connection's only user meanwhile. */
    uv_mutex_lock(&db->mu);
    while (db->wq.head || db->wbusy) uv_cond_wait(&db->idle, &db->mu);
    db->wbusy = true;
    uv_mutex_unlock(&db->mu);
  }
  db_run(&db->w, job);
  if (db->threaded) {
    uv_mutex_lock(&db->mu);
    db->wbusy = false;
    uv_cond_signal(&db->wcond);
    uv_mutex_unlock(&db->mu);
  }
  if (job->flags & (MW_DB_BEGIN | MW_DB_END)) {
    db_gate_after(db, job);
  } else if (!job->autocommit && !db->owner) {
    /* A BEGIN of its own: the writer is the caller's until it ends. */
    db->owner = job->owner;
    db->owner_raw = true;
  } else if (job->autocommit && db->owner == job->owner && db->owner_raw) {
    db->owner = NULL;
    db->owner_raw = false;
    if (db->threaded) db_unpark(db);
  }
  return 0;
}

int mw_db_start(mw_db *db, uv_loop_t *loop) {
  if (db->threaded) return 0;
  if (!sqlite3_threadsafe()) {
    mw_log(MW_LOG_WARN, "db: this SQLite is built without threads: statements run on the event loop");
    return 0;
  }
  db->loop = loop;
  db->async = malloc(sizeof *db->async);
  db->park_timer = malloc(sizeof *db->park_timer);
  if (!db->async || !db->park_timer) goto nomem;
  if (uv_mutex_init(&db->mu)) goto nomem;
  if (uv_cond_init(&db->wcond)) goto fail_mu;
  if (uv_cond_init(&db->idle)) goto fail_wcond;
  if (uv_async_init(loop, db->async, db_on_async)) goto fail_idle;
  db->async->data = db;
  uv_timer_init(loop, db->park_timer);
  db->park_timer->data = db;
  /* Neither keeps the loop alive on its own: jobs in flight do (see
   * db_inflight_add), and the park timer only runs while some are. */
  uv_unref((uv_handle_t *)db->async);
  uv_unref((uv_handle_t *)db->park_timer);
  if (uv_thread_create(&db->wthread, db_writer_main, db)) {
    uv_close((uv_handle_t *)db->async, db_async_closed);
    uv_close((uv_handle_t *)db->park_timer, db_async_closed);
    db->async = NULL;
    db->park_timer = NULL;
    uv_cond_destroy(&db->idle);
    uv_cond_destroy(&db->wcond);
    uv_mutex_destroy(&db->mu);
    return -EAGAIN;
  }
  db->threaded = true;
  return 0;
fail_idle:
  uv_cond_destroy(&db->idle);
fail_wcond:
  uv_cond_destroy(&db->wcond);
fail_mu:
  uv_mutex_destroy(&db->mu);
nomem:
  free(db->async);
  free(db->park_timer);
  db->async = NULL;
  db->park_timer = NULL;
  return -ENOMEM;
}

void mw_db_stop(mw_db *db, uint32_t wait_ms) {
  if (!db) return;
  uint64_t at = mw_now_ns() + (uint64_t)wait_ms * 1000000u;
  uint64_t cur = db_stop_at(db);
  if (!cur || at < cur) __atomic_store_n(&db->stop_at, at, __ATOMIC_RELAXED);
}

void mw_db_forget(mw_db *db, void *ud) {
  for (mw_db_job *j = db->inflight; j; j = j->inext)
    if (j->ud == ud) j->done = NULL;
}

/* ---- jobs ---- */

mw_db_job *mw_db_job_new(mw_db *db) {
  mw_db_job *job = db->pool;
  if (job) {
    db->pool = job->next;
    db->npool--;
    mw_str in = job->in, out = job->out, err = job->err;
    mw_db_param *params = job->params;
    int cap = job->params_cap;
    memset(job, 0, sizeof *job);
    mw_str_reset(&in);
    mw_str_reset(&out);
    mw_str_reset(&err);
    job->in = in;
    job->out = out;
    job->err = err;
    job->params = params;
    job->params_cap = cap;
    return job;
  }
  return calloc(1, sizeof *job);
}

static void db_job_destroy(mw_db_job *job) {
  mw_str_free(&job->in);
  mw_str_free(&job->out);
  mw_str_free(&job->err);
  free(job->params);
  free(job);
}

static void db_job_recycle(mw_db *db, mw_db_job *job) {
  if (db->npool >= DB_POOL_MAX || job->in.cap > DB_POOL_KEEP || job->out.cap > DB_POOL_KEEP ||
      job->err.cap > DB_POOL_KEEP || job->params_cap > 256) {
    db_job_destroy(job);
    return;
  }
  job->next = db->pool;
  db->pool = job;
  db->npool++;
}

void mw_db_job_free(mw_db *db, mw_db_job *job) {
  if (job) db_job_recycle(db, job);
}

mw_db_param *mw_db_job_param(mw_db_job *job) {
  if (job->nparams == job->params_cap) {
    int cap = job->params_cap ? job->params_cap * 2 : 8;
    mw_db_param *p = realloc(job->params, (size_t)cap * sizeof *p);
    if (!p) return NULL;
    job->params = p;
    job->params_cap = cap;
  }
  mw_db_param *p = &job->params[job->nparams++];
  memset(p, 0, sizeof *p);
  return p;
}

/* ---- closing ---- */

static bool db_idle_locked(mw_db *db) {
  if (db->wq.head || db->rq.head || db->wbusy) return false;
  for (int i = 0; i < db->nreaders; i++)
    if (db->r[i].busy) return false;
  return true;
}

static void db_drop_queue(db_queue *q) {
  mw_db_job *job;
  while ((job = db_pop(q))) db_job_destroy(job);
}

void mw_db_close(mw_db *db) {
  if (!db) return;
  for (mw_db_link *l = db->links.next; l != &db->links;) {
    mw_db_link *next = l->next;
    l->db = NULL;
    l->prev = l->next = l;
    l = next;
  }
  if (db->threaded) {
    /* What is queued or running gets a bounded time to finish (a timer's
     * write, a rollback of an abandoned transaction); past it, statements
     * are interrupted. */
    mw_db_stop(db, DB_CLOSE_WAIT_MS);
    uint64_t until = mw_now_ns() + (uint64_t)DB_CLOSE_WAIT_MS * 1000000u;
    uv_mutex_lock(&db->mu);
    for (;;) {
      if (db_idle_locked(db)) break;
      uint64_t now = mw_now_ns();
      if (now >= until) break;
      /* The writer broadcasts idle after each job; readers do not: poll. */
      uint64_t step = 10 * 1000000ull;
      uv_cond_timedwait(&db->idle, &db->mu, until - now < step ? until - now : step);
    }
    db->quit = true;
    uv_cond_broadcast(&db->wcond);
    for (int i = 0; i < db->nreaders; i++) uv_cond_signal(&db->r[i].cond);
    uv_mutex_unlock(&db->mu);
    sqlite3_interrupt(db->w.sq);
    uv_thread_join(&db->wthread);
    for (int i = 0; i < db->nreaders; i++) {
      uv_thread_join(&db->r[i].thread);
      uv_cond_destroy(&db->r[i].cond);
    }
    db_drop_queue(&db->wq);
    db_drop_queue(&db->rq);
    db_drop_queue(&db->done);
    db_drop_queue(&db->parked);
    uv_close((uv_handle_t *)db->async, db_async_closed);
    uv_close((uv_handle_t *)db->park_timer, db_async_closed);
    uv_cond_destroy(&db->idle);
    uv_cond_destroy(&db->wcond);
    uv_mutex_destroy(&db->mu);
  }
  db_conn_close(&db->w);
  db_conn_close(&db->lr);
  while (db->pool) {
    mw_db_job *job = db->pool;
    db->pool = job->next;
    db_job_destroy(job);
  }
  free(db->path);
  free(db);
}
