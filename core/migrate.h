/* migrate.h — schema migrations: the app's scripts/migrations/NNN_name.sql
 * files, applied in order at start, each in its own transaction, and
 * recorded by name in the table moonwire_migrations (name, applied_at), as
 * knex or Lapis record theirs. `moonwire migrate --status` lists them. */
#ifndef MW_MIGRATE_H
#define MW_MIGRATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sqlite3.h>

#include "config.h"

/* Applies every migration under dir (borrowed; a missing dir means none)
 * that db (borrowed, the caller's thread only) has not recorded, in the
 * order of their numbers, each with its record in one transaction, and
 * logs each one applied. Returns 0, or a negative errno with the failing
 * file and SQLite's message in err: the migrations before it stay applied,
 * the failing one leaves nothing behind. */
int migrate_run(sqlite3 *db, const char *dir, char *err, size_t errlen);

/* Prints each migration of dir as "applied  NAME  WHEN" or "pending  NAME"
 * to out, for the database at path (opened read-only; a missing file has
 * nothing applied). Returns 0 or a negative errno with a message in err. */
int migrate_status(const char *path, const char *dir, FILE *out, char *err, size_t errlen);

/* `moonwire migrate [--status] [options]`: argv[0] is "migrate"; the other
 * arguments are the server's (--root, --db). Applies the pending
 * migrations, or with --status lists them. Returns the exit status. */
int migrate_command(int argc, char **argv);

#endif
