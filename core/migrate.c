/* migrate.c — see migrate.h. */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "mw.h"

#define MIGRATE_TABLE "moonwire_migrations"

/* The migrations found in a directory, sorted by number then name. */
typedef struct migrate_list {
  char **names;
  size_t n, cap;
} migrate_list;

static void list_free(migrate_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
  memset(l, 0, sizeof *l);
}

/* Whether name is NNN_name.sql: digits, an underscore, then a name of
 * letters, digits, '_' and '-'. */
static bool is_migration(const char *name) {
  const char *p = name;
  while (*p >= '0' && *p <= '9') p++;
  if (p == name || *p++ != '_') return false;
  const char *dot = strrchr(p, '.');
  if (!dot || dot == p || strcmp(dot, ".sql")) return false;
  for (; p < dot; p++)
    if (!(*p == '_' || *p == '-' || (*p >= '0' && *p <= '9') || ((*p | 32) >= 'a' && (*p | 32) <= 'z')))
      return false;
  return true;
}

static int by_number(const void *a, const void *b) {
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  unsigned long long nx = strtoull(x, NULL, 10), ny = strtoull(y, NULL, 10);
  if (nx != ny) return nx < ny ? -1 : 1;
  return strcmp(x, y);
}

/* Fills l with dir's migrations. A missing dir is an empty list; a .sql
 * file not named NNN_name.sql is an error (a typo would otherwise skip it
 * without a word). */
static int list_dir(const char *dir, migrate_list *l, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    int e = errno;
    snprintf(err, errlen, "%s: %s", dir, strerror(e));
    return -e;
  }
  struct dirent *e;
  int r = 0;
  while (!r && (e = readdir(d))) {
    const char *name = e->d_name;
    size_t len = strlen(name);
    if (name[0] == '.' || len < 4 || strcmp(name + len - 4, ".sql")) continue;
    if (!is_migration(name)) {
      snprintf(err, errlen, "scripts/migrations/%s: a migration is named NNN_name.sql (a number, then a name)", name);
      r = -EINVAL;
      break;
    }
    if (l->n == l->cap) {
      size_t cap = l->cap ? l->cap * 2 : 16;
      char **names = realloc(l->names, cap * sizeof *names);
      if (!names) {
        r = -ENOMEM;
        break;
      }
      l->names = names;
      l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) r = -ENOMEM;
    else l->n++;
  }
  closedir(d);
  if (r == -ENOMEM) snprintf(err, errlen, "out of memory");
  if (r) {
    list_free(l);
    return r;
  }
  if (l->n) qsort(l->names, l->n, sizeof *l->names, by_number);
  for (size_t i = 1; i < l->n; i++) {
    if (strtoull(l->names[i], NULL, 10) == strtoull(l->names[i - 1], NULL, 10)) {
      snprintf(err, errlen, "scripts/migrations: %s and %s have the same number", l->names[i - 1], l->names[i]);
      list_free(l);
      return -EINVAL;
    }
  }
  return 0;
}

/* The file's text, NUL-terminated, in *out (the caller frees it). */
static int read_file(const char *path, char **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", path, strerror(e));
    return -e;
  }
  struct stat st;
  if (fstat(fileno(f), &st)) {
    int e = errno;
    fclose(f);
    snprintf(err, errlen, "%s: %s", path, strerror(e));
    return -e;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  size_t n = fread(buf, 1, (size_t)st.st_size, f);
  fclose(f);
  buf[n] = '\0';
  *out = buf;
  return 0;
}

static int ensure_table(sqlite3 *db, char *err, size_t errlen) {
  char *msg = NULL;
  if (sqlite3_exec(db,
                   "CREATE TABLE IF NOT EXISTS " MIGRATE_TABLE " (name TEXT PRIMARY KEY, "
                   "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')))",
                   NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot create the table " MIGRATE_TABLE ": %s", msg ? msg : "?");
    sqlite3_free(msg);
    return -EIO;
  }
  return 0;
}

/* 1 when name is recorded, 0 when not, or a negative errno. */
static int is_applied(sqlite3 *db, const char *name) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM " MIGRATE_TABLE " WHERE name = ?", -1, &st, NULL) != SQLITE_OK) return -EIO;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* Runs one migration file and records it, all in one transaction. */
static int apply_one(sqlite3 *db, const char *dir, const char *name, char *err, size_t errlen) {
  char path[PATH_MAX + 256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *sql = NULL;
  int r = read_file(path, &sql, err, errlen);
  if (r) return r;
  char *msg = NULL;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "scripts/migrations/%s: cannot begin a transaction: %s", name, msg ? msg : "?");
    sqlite3_free(msg);
    free(sql);
    return -EIO;
  }
  r = 0;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "scripts/migrations/%s: %s", name, msg ? msg : sqlite3_errmsg(db));
    r = -EIO;
  } else {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT INTO " MIGRATE_TABLE " (name) VALUES (?)", -1, &st, NULL) != SQLITE_OK) {
      snprintf(err, errlen, "scripts/migrations/%s: cannot record it: %s", name, sqlite3_errmsg(db));
      r = -EIO;
    } else {
      sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
      if (sqlite3_step(st) != SQLITE_DONE) {
        snprintf(err, errlen, "scripts/migrations/%s: cannot record it: %s", name, sqlite3_errmsg(db));
        r = -EIO;
      }
      sqlite3_finalize(st);
    }
  }
  sqlite3_free(msg);
  msg = NULL;
  free(sql);
  if (!r && sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
    /* A migration that ended the transaction itself (its own COMMIT) lands here too. */
    snprintf(err, errlen, "scripts/migrations/%s: cannot commit: %s", name, msg ? msg : sqlite3_errmsg(db));
    r = -EIO;
  }
  sqlite3_free(msg);
  if (r && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return r;
}

int migrate_run(sqlite3 *db, const char *dir, char *err, size_t errlen) {
  migrate_list l;
  int r = list_dir(dir, &l, err, errlen);
  if (r || !l.n) return r;
  r = ensure_table(db, err, errlen);
  for (size_t i = 0; !r && i < l.n; i++) {
    int applied = is_applied(db, l.names[i]);
    if (applied < 0) {
      snprintf(err, errlen, "cannot read the table " MIGRATE_TABLE ": %s", sqlite3_errmsg(db));
      r = applied;
    } else if (!applied) {
      r = apply_one(db, dir, l.names[i], err, errlen);
      if (!r) mw_log(MW_LOG_INFO, "migrations: applied scripts/migrations/%s", l.names[i]);
    }
  }
  list_free(&l);
  return r;
}

int migrate_status(const char *path, const char *dir, FILE *out, char *err, size_t errlen) {
  migrate_list l;
  int r = list_dir(dir, &l, err, errlen);
  if (r) return r;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  struct stat sb;
  if (stat(path, &sb) == 0) {
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
      snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
      sqlite3_close(db);
      list_free(&l);
      return -EIO;
    }
    /* No table yet: nothing applied. */
    if (sqlite3_prepare_v2(db, "SELECT name, applied_at FROM " MIGRATE_TABLE " ORDER BY name", -1, &st, NULL) != SQLITE_OK)
      st = NULL;
  }
  size_t pending = 0, applied = 0;
  /* In the order they run; then any recorded one whose file is gone. */
  sqlite3_stmt *one = NULL;
  if (st && sqlite3_prepare_v2(db, "SELECT applied_at FROM " MIGRATE_TABLE " WHERE name = ?", -1, &one, NULL) != SQLITE_OK)
    one = NULL;
  for (size_t i = 0; i < l.n; i++) {
    const char *at = NULL;
    if (one) {
      sqlite3_reset(one);
      sqlite3_bind_text(one, 1, l.names[i], -1, SQLITE_STATIC);
      if (sqlite3_step(one) == SQLITE_ROW) at = (const char *)sqlite3_column_text(one, 0);
    }
    if (at) {
      fprintf(out, "applied  %s  %s\n", l.names[i], at);
      applied++;
    } else {
      fprintf(out, "pending  %s\n", l.names[i]);
      pending++;
    }
  }
  sqlite3_finalize(one);
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    bool have = false;
    for (size_t i = 0; i < l.n && !have; i++) have = !strcmp(l.names[i], name);
    if (have) continue;
    const char *at = (const char *)sqlite3_column_text(st, 1);
    fprintf(out, "applied  %s  %s  (its file is gone)\n", name, at ? at : "");
    applied++;
  }
  fprintf(out, "%zu applied, %zu pending\n", applied, pending);
  sqlite3_finalize(st);
  sqlite3_close(db);
  list_free(&l);
  return 0;
}

int migrate_command(int argc, char **argv) {
  bool status = false;
  char **args = calloc((size_t)argc + 1, sizeof *args);
  if (!args) return 1;
  int n = 0;
  args[n++] = "moonwire";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--status")) status = true;
    else args[n++] = argv[i];
  }
  mw_config cfg;
  mw_config_defaults(&cfg);
  int r = mw_config_parse(&cfg, n, args, stdout, stderr);
  free(args);
  if (r) return r > 0 ? 0 : 2;
  if (mw_config_resolve(&cfg, stderr)) return 2;
  char dir[PATH_MAX + 32], err[1024];
  snprintf(dir, sizeof dir, "%s/scripts/migrations", cfg.app.root);
  if (status) {
    r = migrate_status(cfg.db_path, dir, stdout, err, sizeof err);
  } else {
    mw_db *db = NULL;
    r = mw_db_open(&db, cfg.db_path, err, sizeof err);
    if (!r) r = migrate_run(mw_db_handle(db), dir, err, sizeof err);
    mw_db_close(db);
    if (!r) r = migrate_status(cfg.db_path, dir, stdout, err, sizeof err);
  }
  if (r) {
    fprintf(stderr, "moonwire migrate: %s\n", err);
    return 1;
  }
  return 0;
}
