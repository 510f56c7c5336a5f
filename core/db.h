/* db.h — the application's SQLite database: one connection, a cache of
 * prepared statements, and the Lua module "moonwire.db" (l_db.c).
 *
 * Single-threaded: the connection, its statement cache and the Lua module
 * are used from the event-loop thread only. */
#ifndef MW_DB_H
#define MW_DB_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <sqlite3.h>

typedef struct mw_db mw_db;

/* Opens (creating if needed) the database file at path, creating its parent
 * directory if missing (one level), and turns on WAL journaling, foreign keys
 * and a 5000 ms busy timeout. Borrows path. On success *out owns the new
 * handle (close with mw_db_close) and 0 is returned; otherwise a negative
 * errno, *out = NULL, and a message in err (when err and errlen are given). */
int mw_db_open(mw_db **out, const char *path, char *err, size_t errlen);

/* Finalizes every cached statement, detaches every Lua module bound to db (its
 * functions then raise "database is closed") and closes the connection.
 * Takes ownership of db; NULL is accepted. Logs when SQLite refuses to close
 * (statements prepared elsewhere and not finalized). */
void mw_db_close(mw_db *db);

/* The underlying connection, borrowed (valid until mw_db_close). */
sqlite3 *mw_db_handle(mw_db *db);

/* A prepared statement for sql (len bytes, or strlen(sql) when len is
 * (size_t)-1), from the cache or freshly prepared into it. The statement
 * stays owned by the cache (never finalize it): hand it back with
 * mw_db_release; one still out at the next mw_db_prepare is reset then.
 * Borrows sql. Returns 0; -EINVAL when sql holds more than one statement or
 * none (*multi, when given, is then set to 1 for "more than one"); -EIO, or
 * -EBUSY for a locked schema, on an SQLite error (see sqlite3_errmsg); or
 * -ENOMEM. */
int mw_db_prepare(mw_db *db, const char *sql, size_t len, sqlite3_stmt **out, int *multi);

/* Resets st and clears its bindings so the cache can hand it out again.
 * Borrows both; NULL st is accepted. */
void mw_db_release(mw_db *db, sqlite3_stmt *st);

/* How many statements the cache holds right now (for tests and stats). */
int mw_db_cached(const mw_db *db);

/* Pushes the "moonwire.db" module table bound to db (which may be NULL: every
 * function then raises "database is closed"). Borrows db: mw_db_close may come
 * before or after the Lua state is closed. Returns 1, the number of values
 * pushed, so a lua_CFunction can `return l_db_push(L, db);`.
 *
 * In Lua (parameters: positional `?` values, or one table for :name, @name,
 * $name and numbered ones; nil -> NULL, boolean -> 1/0, integer, float,
 * string -> TEXT; rows: tables keyed by column name, NULL columns absent):
 *   db.exec(sql, ...)      -> changes, last_insert_rowid  (several statements
 *                             without parameters run as a script)
 *   db.query(sql, ...)     -> { row, ... }
 *   db.row(sql, ...)       -> first row or nil
 *   db.transaction(fn)     -> fn's results; BEGIN IMMEDIATE ... COMMIT, or a
 *                             savepoint when nested; on error rolls back and
 *                             re-raises the same value. fn cannot yield.
 * SQL errors raise "<where>db.exec: <sqlite message> (in: <sql>)". */
int l_db_push(lua_State *L, mw_db *db);

/* Internal, shared by db.c and l_db.c: a Lua module's link to its db. The
 * module adds its link when pushed and removes it when collected; mw_db_close
 * sets link->db to NULL for every link still attached. */
typedef struct mw_db_link {
  mw_db *db;
  struct mw_db_link *prev, *next;
} mw_db_link;
/* Attaches link (borrowed, must outlive the attachment) to db. */
void mw_db_link_add(mw_db *db, mw_db_link *link);
/* Detaches link if still attached; a never-attached zeroed link is accepted. */
void mw_db_link_remove(mw_db_link *link);

#endif
