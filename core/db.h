/* db.h — the application's SQLite database: a writer connection and reader
 * connections, each with a cache of prepared statements, the threads that
 * run statements off the event loop; the Lua module "moonwire.db" is
 * l_db.h.
 *
 * Threads. Once mw_db_start has run, statements that handlers submit run on
 * database threads: every write on one writer thread (one connection, so
 * writes are serialised as SQLite wants them; queued writes of no
 * transaction commit together, a group commit), reads that take long on
 * up to DB_READERS_MAX reader threads (one connection each; WAL lets them
 * read while the writer writes); quick reads run at once on a read-only
 * connection of the loop thread (mw_db_try_inline: a hop to a thread would
 * cost more than they do). Results come back to the loop thread through a
 * uv_async and are turned into Lua values there: no thread but the loop's
 * ever touches Lua. Before mw_db_start, and for code outside a handler (a
 * script's top level), statements run on the caller's thread, on the
 * writer connection.
 *
 * Every function here is for the loop thread unless it says otherwise. */
#ifndef MW_DB_H
#define MW_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>
#include <uv.h>

#include "mw.h"

typedef struct mw_db mw_db;

#define MW_DB_BUSY_TIMEOUT_MS 5000       /* --db-busy-timeout */
#define MW_DB_STATEMENT_TIMEOUT_MS 10000 /* --db-statement-timeout */
/* On SIGTERM, statements still running after this are interrupted, so the
 * requests waiting for them are answered within the shutdown grace. */
#define MW_DB_STOP_WAIT_MS 2000

typedef struct mw_db_opts {
  /* How long a write waits for the database's write lock, held by another
   * process (or for another handler's transaction to end), before it fails
   * with "database is locked by another process". */
  uint32_t busy_timeout_ms;
  /* How long one statement may run before it is interrupted; 0: no limit. */
  uint32_t statement_timeout_ms;
} mw_db_opts;

/* Fills o with the defaults above. */
void mw_db_opts_default(mw_db_opts *o);

/* Opens (creating if needed) the database file at path, creating its parent
 * directory if missing (one level), and turns on WAL journaling and foreign
 * keys, with the default options. Borrows path. On success *out owns the
 * new handle (close with mw_db_close) and 0 is returned; otherwise a
 * negative errno, *out = NULL, and a message in err (when err and errlen
 * are given). */
int mw_db_open(mw_db **out, const char *path, char *err, size_t errlen);

/* Sets the busy deadline and the statement budget (copied). */
void mw_db_configure(mw_db *db, const mw_db_opts *opts);

/* Starts the database threads: from now on statements submitted from
 * handlers run off loop, and their results come back on loop (borrowed; it
 * must outlive db). Reader threads start when reads first need them.
 * Returns 0, or a negative errno (db then stays synchronous). Without
 * thread support in SQLite (sqlite3_threadsafe() == 0) it logs a warning,
 * returns 0 and stays synchronous. */
int mw_db_start(mw_db *db, uv_loop_t *loop);

/* Shutdown begins: any statement still running wait_ms from now is
 * interrupted, and so is any started after that ("the server is shutting
 * down"), so in-flight requests can be answered and the server can stop. */
void mw_db_stop(mw_db *db, uint32_t wait_ms);

/* Lets queued and running statements finish (at most a bounded wait, then
 * interrupts them), stops the threads, finalizes every cached statement,
 * detaches every Lua module bound to db (its functions then raise "database
 * is closed") and closes the connections. Jobs not delivered are dropped
 * without their callbacks. Takes ownership of db; NULL is accepted. Logs
 * when SQLite refuses to close (statements prepared elsewhere and not
 * finalized). */
void mw_db_close(mw_db *db);

/* The writer connection, borrowed (valid until mw_db_close). Only for the
 * loop thread while no database thread runs (before mw_db_start), e.g. in
 * tests. */
sqlite3 *mw_db_handle(mw_db *db);

/* A prepared statement of the writer connection for sql (len bytes, or
 * strlen(sql) when len is (size_t)-1), from the cache or freshly prepared
 * into it; the same rule as mw_db_handle for threads. The statement stays
 * owned by the cache (never finalize it): hand it back with mw_db_release;
 * one still out at the next mw_db_prepare is reset then. Borrows sql.
 * Returns 0; -EINVAL when sql holds more than one statement or none (*multi,
 * when given, is then set to 1 for "more than one"); -EIO, or -EBUSY for a
 * locked schema, on an SQLite error (see sqlite3_errmsg); or -ENOMEM. */
int mw_db_prepare(mw_db *db, const char *sql, size_t len, sqlite3_stmt **out, int *multi);

/* Resets st and clears its bindings so the cache can hand it out again.
 * Borrows both; NULL st is accepted. */
void mw_db_release(mw_db *db, sqlite3_stmt *st);

/* How many statements the writer's cache holds right now (for tests). */
int mw_db_cached(const mw_db *db);

/* How many groups of writes have been run in one transaction (or tried:
 * see db.c's db_run_group), for tests and stats. */
int mw_db_groups(mw_db *db);

/* How many submitted jobs have not been delivered yet. */
int mw_db_pending(const mw_db *db);

/* How many reader threads run now (for tests and stats). */
int mw_db_readers(mw_db *db);


/* ---- internal, shared by db.c and l_db.c ---- */

/* A Lua module's link to its db. The module adds its link when pushed and
 * removes it when collected; mw_db_close sets link->db to NULL for every
 * link still attached. */
typedef struct mw_db_link {
  mw_db *db;
  struct mw_db_link *prev, *next;
} mw_db_link;
/* Attaches link (borrowed, must outlive the attachment) to db. */
void mw_db_link_add(mw_db *db, mw_db_link *link);
/* Detaches link if still attached; a never-attached zeroed link is accepted. */
void mw_db_link_remove(mw_db_link *link);

/* What a job runs. */
typedef enum mw_db_kind {
  MW_DB_EXEC,   /* one statement, stepped to the end: changes, last rowid */
  MW_DB_QUERY,  /* one statement: every row */
  MW_DB_ROW,    /* one statement: the first row */
  MW_DB_SCRIPT, /* several statements without parameters (sqlite3_exec) */
} mw_db_kind;

/* Job flags. */
enum {
  MW_DB_WRITER = 1, /* never on a reader connection */
  MW_DB_BEGIN = 2,  /* takes the writer for the job's owner (BEGIN IMMEDIATE) */
  MW_DB_END = 4,    /* gives it back once the connection is out of its transaction */
  MW_DB_UNDO = 8,   /* a rollback: runs even when SQLite already ended the transaction */
  MW_DB_TXCTL = 16, /* db.transaction's own BEGIN, SAVEPOINT, RELEASE, COMMIT, ROLLBACK */
};

/* One value to bind: a parameter, by position, or by name from a table. */
typedef struct mw_db_param {
  int type;          /* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_NULL; or 0: no SQL equivalent */
  const char *tname; /* for type 0: the Lua type's name (a static string) */
  size_t name, namelen; /* the key's offset in job->in and its length (named); namelen 0: positional */
  int64_t index;     /* positional or numbered (t[i]): the parameter's index, from 1 */
  union {
    int64_t i;
    double f;
    struct {
      size_t off, len; /* in job->in */
    } s;
  } v;
} mw_db_param;

typedef struct mw_db_job mw_db_job;
/* Called on the loop thread with the finished job, which the callback may
 * read until it returns; db.c frees it afterwards. */
typedef void (*mw_db_done_fn)(mw_db_job *job);

struct mw_db_job {
  /* ---- the request, set by the submitter ---- */
  mw_db_kind kind;
  unsigned flags;
  void *owner;        /* whose transaction the job belongs to (a coroutine) */
  mw_db_done_fn done; /* NULL: nobody waits (the job is dropped when done) */
  void *ud;           /* the submitter's, for done (and mw_db_forget) */
  int ref;            /* the submitter's */
  mw_str in;          /* the SQL, NUL-terminated, then parameter names and strings */
  size_t sql_len;
  mw_db_param *params;
  int nparams, params_cap;
  bool named; /* params came from one table: bind by name or number */

  /* ---- the outcome, set by db.c ---- */
  int rc;           /* SQLITE_OK, or the primary code of the failure */
  mw_str err;       /* the failure's message */
  int64_t changes, rowid;
  int ncols, nrows;
  mw_str out; /* column names, then rows: see db.c's row format */
  bool bounced; /* a reader could not run it; it went to the writer */

  /* ---- db.c's bookkeeping ---- */
  mw_db_job *next;
  int where;          /* the queue it is on */
  bool in_tx;         /* submitted as part of its owner's open transaction */
  bool autocommit;    /* the writer connection was out of any transaction afterwards */
  bool reader;        /* ran (or was meant to run) on a reader */
  bool async;         /* submitted with mw_db_submit (a handler's) */
  uint64_t busy_deadline; /* mw_now_ns() past which waiting for a lock fails */
  uint64_t budget_ns;     /* how long the statement may run; 0: no limit */
  mw_db_job *iprev, *inext; /* the loop's list of jobs in flight */
};

/* A job to fill in and submit (or free): from a pool, zeroed except for
 * its buffers, which it keeps. NULL when out of memory. */
mw_db_job *mw_db_job_new(mw_db *db);
/* Gives a job that was never submitted back to the pool. */
void mw_db_job_free(mw_db *db, mw_db_job *job);
/* Room for one more parameter (NULL when out of memory). */
mw_db_param *mw_db_job_param(mw_db_job *job);

/* Runs job off the loop (reader or writer, by its SQL and flags, behind any
 * other owner's transaction): job->done is called on the loop thread, from
 * a later loop iteration, once it has finished. Takes ownership of job.
 * Only once mw_db_started. */
void mw_db_submit(mw_db *db, mw_db_job *job);

/* Runs job now on the loop thread when it is a read that finishes quickly
 * (see db.c's DB_INLINE_TICKS): returns true with the outcome in job (done is
 * not called: the caller reads it, then frees the job with
 * mw_db_job_free). Otherwise returns false with job as it was, to be
 * submitted. Only once mw_db_started. */
bool mw_db_try_inline(mw_db *db, mw_db_job *job);

/* Runs job now on the caller's (the loop's) thread, on the writer
 * connection, after whatever the writer thread has queued; done is not
 * called: the caller reads the outcome, then frees the job with
 * mw_db_job_free. Returns 0, or -EBUSY (job->rc, job->err set) when another
 * owner's transaction holds the writer (a synchronous caller cannot wait
 * for it to end). */
int mw_db_run_sync(mw_db *db, mw_db_job *job);

/* True once mw_db_start has started the threads: mw_db_submit may be used. */
bool mw_db_started(const mw_db *db);

/* The owner whose transaction holds the writer, or NULL. */
void *mw_db_owner(mw_db *db);

/* The writer, held by from's transaction, is to's from now on (when from
 * is about to go away and to will end the transaction). */
void mw_db_hand_over(mw_db *db, void *from, void *to);

/* Drops the callbacks of every job submitted with ud: they finish
 * unnoticed (the Lua state that waited for them is gone). */
void mw_db_forget(mw_db *db, void *ud);

/* The format of job->out for MW_DB_QUERY and MW_DB_ROW: ncols column names,
 * each a uint32_t length then the bytes; then nrows rows of ncols values,
 * each one type byte (SQLITE_INTEGER: int64_t; SQLITE_FLOAT: double;
 * SQLITE_TEXT, SQLITE_BLOB: uint32_t length then the bytes; SQLITE_NULL:
 * nothing), all in native byte order, unaligned. */

#endif
