/* db.c — the SQLite connection and its prepared-statement cache. */
#include "db.h"

#include "mw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DB_CACHE_SIZE 64

typedef struct db_cached {
  char *sql; /* the key, NULL when the slot is free */
  size_t len;
  uint64_t hash;
  uint64_t used; /* tick of the last use, for LRU eviction */
  sqlite3_stmt *st;
} db_cached;

struct mw_db {
  sqlite3 *sq;
  db_cached cache[DB_CACHE_SIZE];
  int ncached;
  uint64_t tick;
  /* The statement handed out and not yet released. A Lua error (say, out of
   * memory while building a row) can longjmp past mw_db_release; the next
   * prepare resets it so it does not hold a read transaction open forever. */
  sqlite3_stmt *active;
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
  if (!db) {
    db_seterr(err, errlen, "%s%s", "out of memory", "");
    return -ENOMEM;
  }
  db->links.next = db->links.prev = &db->links;
  int rc = sqlite3_open_v2(path, &db->sq, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    db_seterr(err, errlen, "cannot open %s: %s", path, db->sq ? sqlite3_errmsg(db->sq) : sqlite3_errstr(rc));
    sqlite3_close(db->sq); /* a handle is returned even on most failures */
    free(db);
    return db_errno(rc);
  }
  sqlite3_extended_result_codes(db->sq, 1);
  sqlite3_busy_timeout(db->sq, 5000);

  /* journal_mode answers with the mode actually in effect; anything but
   * "wal" (e.g. "memory" for :memory:) is worth a warning, not a failure. */
  sqlite3_stmt *st = NULL;
  rc = sqlite3_prepare_v2(db->sq, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (on_disk && (!mode || strcmp(mode, "wal") != 0))
      mw_log(MW_LOG_WARN, "db %s: journal_mode is %s, not wal", path, mode ? mode : "?");
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db->sq, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    /* Typically "file is not a database": fail now rather than on first use. */
    db_seterr(err, errlen, "cannot set up %s: %s", path, sqlite3_errmsg(db->sq));
    sqlite3_close(db->sq);
    free(db);
    return db_errno(rc);
  }
  *out = db;
  return 0;
}

sqlite3 *mw_db_handle(mw_db *db) { return db->sq; }

static void db_slot_clear(db_cached *c) {
  sqlite3_finalize(c->st);
  free(c->sql);
  memset(c, 0, sizeof *c);
}

void mw_db_close(mw_db *db) {
  if (!db) return;
  for (mw_db_link *l = db->links.next; l != &db->links;) {
    mw_db_link *next = l->next;
    l->db = NULL;
    l->prev = l->next = l;
    l = next;
  }
  for (int i = 0; i < DB_CACHE_SIZE; i++)
    if (db->cache[i].sql) db_slot_clear(&db->cache[i]);
  int rc = sqlite3_close(db->sq);
  if (rc != SQLITE_OK) {
    /* Someone prepared a statement through mw_db_handle and never finalized
     * it; the connection (and the file lock) is leaked. Say so loudly. */
    mw_log(MW_LOG_ERROR, "db: sqlite3_close failed: %s", sqlite3_errmsg(db->sq));
  }
  free(db);
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

static uint64_t db_hash(const char *s, size_t len) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211u;
  }
  return h;
}

/* True when the text after a statement is more than blanks, comments and
 * semicolons. Lexical on purpose: preparing the rest could fail for a
 * reason (a table the first statement creates) that running it would not. */
static bool db_has_more(const char *p, const char *end) {
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
      return true;
    }
  }
  return false;
}

int mw_db_prepare(mw_db *db, const char *sql, size_t len, sqlite3_stmt **out, int *multi) {
  *out = NULL;
  if (multi) *multi = 0;
  if (len == (size_t)-1) len = strlen(sql);
  if (db->active) mw_db_release(db, db->active);
  uint64_t h = db_hash(sql, len);
  db->tick++;
  for (int i = 0; i < DB_CACHE_SIZE; i++) {
    db_cached *c = &db->cache[i];
    if (c->sql && c->hash == h && c->len == len && memcmp(c->sql, sql, len) == 0) {
      c->used = db->tick;
      db->active = c->st;
      *out = c->st;
      return 0;
    }
  }
  if (len > INT32_MAX - 1) return -EINVAL;
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(db->sq, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &st, &tail);
  if (rc != SQLITE_OK) return db_errno(rc) == -EBUSY ? -EBUSY : -EIO;
  if (!st) return -EINVAL; /* only blanks or comments */
  if (tail && db_has_more(tail, sql + len)) {
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
    if (!db->cache[i].sql) {
      victim = i;
      break;
    }
    if (victim < 0 || db->cache[i].used < db->cache[victim].used) victim = i;
  }
  db_cached *c = &db->cache[victim];
  if (c->sql) {
    db_slot_clear(c);
    db->ncached--;
  }
  c->sql = key;
  c->len = len;
  c->hash = h;
  c->used = db->tick;
  c->st = st;
  db->ncached++;
  db->active = st;
  *out = st;
  return 0;
}

void mw_db_release(mw_db *db, sqlite3_stmt *st) {
  if (!st) return;
  /* reset's return value repeats the step error, already reported. */
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (db->active == st) db->active = NULL;
}

int mw_db_cached(const mw_db *db) { return db->ncached; }
