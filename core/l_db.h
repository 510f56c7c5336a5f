/* l_db.h — the Lua module "moonwire.db" over the application's mw_db
 * (db.h). */
#ifndef MW_L_DB_H
#define MW_L_DB_H

#include <lua.h>

#include "db.h"

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
 *                             re-raises the same value. fn may wait.
 * Inside a handler (once db._set_runner has been given app's coroutine
 * runner) each call waits, its coroutine suspended, while the statement runs
 * on a database thread. SQL errors raise
 * "<where>db.exec: <sqlite message> (in: <sql>)". */
int l_db_push(lua_State *L, mw_db *db);
/* The loader of moonwire.db (lmodule.h: its upvalue is the host's
 * lmodule_env): the module bound to the app's database. */
int luaopen_moonwire_db(lua_State *L);

#endif
