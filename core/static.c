/* static.c — files under the app's public/ directory: path normalisation,
 * content types, conditional GET, and a cache of small files revalidated by
 * stat on every request (so an edit shows on the next request). */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ST_CACHE_FILE_MAX (256 * 1024)      /* larger files are read each time */
#define ST_CACHE_TOTAL_MAX (32 * 1024 * 1024) /* bytes, entries' overhead included */
#define ST_CACHE_ENTRIES_MAX 4096
#define ST_BUCKETS 1024 /* a power of two */
#define ST_DEFAULT_CACHE_CONTROL "public, max-age=0"

/* ---- path normalisation ---- */

static int st_hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int static_normalize(const char *path, size_t len, char *out, size_t cap) {
  if (len == 0 || path[0] != '/') return -400;
  /* First, malformed anywhere is 400, whatever else the path holds. */
  for (size_t i = 0; i < len; i++) {
    if (path[i] == '\0') return -400;
    if (path[i] != '%') continue;
    if (i + 2 >= len) return -400;
    int hi = st_hex((unsigned char)path[i + 1]), lo = st_hex((unsigned char)path[i + 2]);
    if (hi < 0 || lo < 0 || (hi | lo) == 0) return -400; /* %00 is a NUL */
    i += 2;
  }
  if (cap == 0) return -414;
  size_t n = 0; /* out[0..n) is the accepted prefix */
  size_t i = 1;
  while (i < len) {
    size_t j = i;
    while (j < len && path[j] != '/') j++;
    /* Decode the segment right after the prefix and its separator; it is
     * only kept (by adding the '/') when it is an ordinary name. */
    size_t start = n ? n + 1 : 0, k = start;
    for (size_t p = i; p < j; p++) {
      unsigned char c = (unsigned char)path[p];
      if (c == '%') {
        c = (unsigned char)(st_hex((unsigned char)path[p + 1]) << 4 | st_hex((unsigned char)path[p + 2]));
        p += 2;
        /* An encoded slash is never a separator, and a file name cannot hold it. */
        if (c == '/') return -404;
      }
      if (c == '\\') return -404; /* a separator elsewhere: never let it through */
      if (k + 1 >= cap) return -414;
      out[k++] = (char)c;
    }
    size_t seg = k - start;
    const char *s = out + start;
    if (seg == 0 || (seg == 1 && s[0] == '.')) {
      /* empty or ".": nothing */
    } else if (seg == 2 && s[0] == '.' && s[1] == '.') {
      if (n == 0) return -404; /* above the root */
      while (n > 0 && out[n - 1] != '/') n--;
      if (n > 0) n--; /* the separator before the dropped segment */
    } else if (s[0] == '.') {
      return -404; /* hidden: .env, .git, ... */
    } else {
      if (n) out[n] = '/';
      n = k;
    }
    i = j + 1;
  }
  out[n] = '\0';
  return (int)n;
}

/* ---- content types ---- */

static const struct {
  const char *ext, *type;
} st_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"xml", "application/xml"},
    {"csv", "text/csv; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
};

const char *static_mime(const char *name, size_t len) {
  size_t dot = len;
  for (size_t i = len; i > 0; i--) {
    if (name[i - 1] == '/') break;
    if (name[i - 1] == '.') {
      dot = i - 1;
      break;
    }
  }
  if (dot < len) {
    const char *ext = name + dot + 1;
    size_t elen = len - dot - 1;
    for (size_t i = 0; i < MW_ARRAY_LEN(st_types); i++)
      if (mw_ieq(ext, elen, st_types[i].ext)) return st_types[i].type;
  }
  return "application/octet-stream";
}

/* ---- the cache ---- */

typedef struct st_entry {
  char *key; /* the absolute path opened */
  size_t key_len;
  uint64_t hash;
  struct st_entry *hnext;       /* bucket chain */
  struct st_entry *prev, *next; /* LRU list, most recent first */
  /* What the file looked like when read: any change means re-read. ctime
   * catches a replacement that restored size and mtime (rsync -t). */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime, ctime;
  mw_buf *body;
} st_entry;

struct mw_static {
  char *root; /* realpath of the public directory, NULL when missing */
  size_t root_len;
  st_entry *buckets[ST_BUCKETS];
  st_entry lru; /* sentinel */
  size_t bytes, entries;
};

static size_t st_cost(const st_entry *e) { return sizeof *e + e->key_len + 1 + (size_t)e->size; }

static uint64_t st_hash(const char *s, size_t len) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211u;
  }
  return h;
}

static st_entry *st_find(mw_static *st, const char *key, size_t len, uint64_t h) {
  for (st_entry *e = st->buckets[h & (ST_BUCKETS - 1)]; e; e = e->hnext)
    if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0) return e;
  return NULL;
}

static void st_lru_unlink(st_entry *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
}

static void st_lru_front(mw_static *st, st_entry *e) {
  e->next = st->lru.next;
  e->prev = &st->lru;
  st->lru.next->prev = e;
  st->lru.next = e;
}

static void st_remove(mw_static *st, st_entry *e) {
  st_entry **pp = &st->buckets[e->hash & (ST_BUCKETS - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  st_lru_unlink(e);
  st->bytes -= st_cost(e);
  st->entries--;
  mw_buf_unref(e->body); /* responses in flight keep their own reference */
  free(e->key);
  free(e);
}

static bool st_same_file(const st_entry *e, const struct stat *sb) {
  return e->dev == sb->st_dev && e->ino == sb->st_ino && e->size == sb->st_size &&
         e->mtime.tv_sec == sb->st_mtim.tv_sec && e->mtime.tv_nsec == sb->st_mtim.tv_nsec &&
         e->ctime.tv_sec == sb->st_ctim.tv_sec && e->ctime.tv_nsec == sb->st_ctim.tv_nsec;
}

/* Remembers body for key; failures only mean no caching. Borrows body (the
 * cache takes its own reference). */
static void st_cache_put(mw_static *st, const char *key, const struct stat *sb, mw_buf *body) {
  size_t klen = strlen(key);
  uint64_t h = st_hash(key, klen);
  st_entry *old = st_find(st, key, klen, h);
  if (old) st_remove(st, old);
  size_t cost = sizeof(st_entry) + klen + 1 + (size_t)sb->st_size;
  if (cost > ST_CACHE_TOTAL_MAX) return;
  while (st->lru.prev != &st->lru && (st->bytes + cost > ST_CACHE_TOTAL_MAX || st->entries >= ST_CACHE_ENTRIES_MAX))
    st_remove(st, st->lru.prev);
  st_entry *e = calloc(1, sizeof *e);
  char *k = malloc(klen + 1);
  if (!e || !k) {
    free(e);
    free(k);
    return;
  }
  memcpy(k, key, klen + 1);
  e->key = k;
  e->key_len = klen;
  e->hash = h;
  e->dev = sb->st_dev;
  e->ino = sb->st_ino;
  e->size = sb->st_size;
  e->mtime = sb->st_mtim;
  e->ctime = sb->st_ctim;
  e->body = mw_buf_ref(body);
  e->hnext = st->buckets[h & (ST_BUCKETS - 1)];
  st->buckets[h & (ST_BUCKETS - 1)] = e;
  st_lru_front(st, e);
  st->bytes += cost;
  st->entries++;
}

void static_clear_cache(mw_static *st) {
  while (st->lru.next != &st->lru) st_remove(st, st->lru.next);
}

int static_new(mw_static **out, const char *public_dir) {
  *out = NULL;
  mw_static *st = calloc(1, sizeof *st);
  if (!st) return -ENOMEM;
  st->lru.next = st->lru.prev = &st->lru;
  char *root = realpath(public_dir, NULL);
  struct stat sb;
  if (!root) {
    if (errno == ENOMEM) {
      free(st);
      return -ENOMEM;
    }
    mw_log(MW_LOG_DEBUG, "static: no directory %s (%s): serving no files", public_dir, strerror(errno));
  } else if (stat(root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    mw_log(MW_LOG_WARN, "static: %s is not a directory: serving no files", public_dir);
    free(root);
    root = NULL;
  }
  st->root = root;
  st->root_len = root ? strlen(root) : 0;
  /* "/" as the public directory: keep the prefix test below simple. */
  if (root && st->root_len == 1) st->root_len = 0;
  *out = st;
  return 0;
}

void static_free(mw_static *st) {
  if (!st) return;
  static_clear_cache(st);
  free(st->root);
  free(st);
}

/* ---- serving ---- */

static bool st_method_ok(const http_req *req) {
  return req->method && (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0);
}

/* True when the real (symlink-free) path is the root or below it. */
static bool st_inside(const mw_static *st, const char *real) {
  return strncmp(real, st->root, st->root_len) == 0 && (real[st->root_len] == '/' || real[st->root_len] == '\0');
}

/* Does an If-None-Match list (len bytes) hold our tag (weak comparison:
 * W/ prefixes are ignored on both sides)? */
static bool st_etag_match(const char *v, size_t len, const char *etag) {
  const char *ours = etag + (strncmp(etag, "W/", 2) == 0 ? 2 : 0);
  size_t olen = strlen(ours);
  size_t i = 0;
  while (i < len) {
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    if (i >= len) break;
    if (v[i] == '*') return true;
    if (len - i >= 2 && v[i] == 'W' && v[i + 1] == '/') i += 2;
    if (i >= len || v[i] != '"') return false; /* malformed: no match */
    size_t j = i + 1;
    while (j < len && v[j] != '"') j++;
    if (j >= len) return false;
    if (j + 1 - i == olen && memcmp(v + i, ours, olen) == 0) return true;
    i = j + 1;
  }
  return false;
}

/* Reads the whole file behind fd (size bytes expected) into a new buffer. */
static int st_read_all(int fd, size_t size, mw_buf **out) {
  mw_buf *b = mw_buf_new(size);
  if (!b) return -ENOMEM;
  size_t got = 0;
  while (got < size) {
    ssize_t r = pread(fd, b->data + got, size - got, (off_t)got);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = -errno;
      mw_buf_unref(b);
      return e;
    }
    if (r == 0) break; /* shrank meanwhile: serve what is there */
    got += (size_t)r;
  }
  b->len = got;
  b->data[got] = '\0';
  *out = b;
  return 0;
}

static void st_tags(const struct stat *sb, char etag[64], char lastmod[32]) {
  /* Nanoseconds too: an edit within the same second must change the tag. */
  uint64_t mtime_ns = (uint64_t)sb->st_mtim.tv_sec * 1000000000u + (uint64_t)sb->st_mtim.tv_nsec;
  snprintf(etag, 64, "W/\"%jx-%jx\"", (uintmax_t)sb->st_size, (uintmax_t)mtime_ns);
  http_date((int64_t)sb->st_mtim.tv_sec, lastmod);
}

static int st_headers(http_res *res, const char *type, const char *etag, const char *lastmod, const char *cc) {
  int rc = type ? http_res_headerz(res, "Content-Type", type) : 0;
  if (!rc) rc = http_res_headerz(res, "ETag", etag);
  if (!rc) rc = http_res_headerz(res, "Last-Modified", lastmod);
  if (!rc) rc = http_res_headerz(res, "Cache-Control", cc);
  return rc;
}

/* Serves the regular file at path. nofollow refuses a symlink as the last
 * component (path came from realpath: this narrows a swap race). */
static int st_send(mw_static *st, const char *path, bool nofollow, const http_req *req, http_res *res,
                   const char *cache_control) {
  struct stat sb;
  if ((nofollow ? lstat(path, &sb) : stat(path, &sb)) != 0 || !S_ISREG(sb.st_mode)) return 1;
  char etag[64], lastmod[32];
  st_tags(&sb, etag, lastmod);
  if (!cache_control) cache_control = ST_DEFAULT_CACHE_CONTROL;

  /* Conditional GET: If-None-Match decides when present (RFC 9110 13.2.2). */
  bool fresh = false;
  size_t vlen;
  const char *v = http_req_header(req, "If-None-Match", &vlen);
  if (v) {
    fresh = st_etag_match(v, vlen, etag);
  } else if ((v = http_req_header(req, "If-Modified-Since", &vlen))) {
    int64_t since = http_parse_date(v, vlen);
    fresh = since >= 0 && (int64_t)sb.st_mtim.tv_sec <= since;
  }
  int rc;
  if (fresh) {
    res->status = 304;
    if ((rc = st_headers(res, NULL, etag, lastmod, cache_control))) return rc;
    return http_res_end(res, "", 0);
  }

  mw_buf *body = NULL;
  size_t klen = strlen(path);
  st_entry *e = st_find(st, path, klen, st_hash(path, klen));
  if (e && st_same_file(e, &sb)) {
    body = mw_buf_ref(e->body);
    st_lru_unlink(e);
    st_lru_front(st, e);
  } else {
    if (e) st_remove(st, e); /* stale */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0) return errno == ENOMEM || errno == EMFILE || errno == ENFILE ? -errno : 1;
    /* What is read is described by fstat, not by the earlier stat. */
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
      close(fd);
      return 1;
    }
    st_tags(&sb, etag, lastmod);
    rc = (uintmax_t)sb.st_size > SIZE_MAX / 2 ? -EFBIG : st_read_all(fd, (size_t)sb.st_size, &body);
    close(fd);
    if (rc) return rc;
    /* Only cache what matches the stat it is keyed by, and not a file
     * modified in the last two seconds: file times move in coarse ticks, so
     * a second edit that soon could leave size and times unchanged and the
     * cache stale (git's "racy" files). Such files are read every time. */
    bool racy = (int64_t)sb.st_mtim.tv_sec >= (int64_t)time(NULL) - 2;
    if (!racy && sb.st_size <= ST_CACHE_FILE_MAX && body->len == (size_t)sb.st_size)
      st_cache_put(st, path, &sb, body);
  }

  res->status = 200;
  if ((rc = st_headers(res, static_mime(path, klen), etag, lastmod, cache_control))) {
    mw_buf_unref(body);
    return rc;
  }
  return http_res_end_buf(res, body);
}

/* Appends s (n bytes) to out, percent-encoding what is not safe in a path. */
static int st_append_encoded(mw_str *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~/!$&'()*+,;=:@", c);
    int rc = safe && c ? mw_str_appendc(out, (char)c)
                       : mw_str_append(out, (char[]){'%', hex[c >> 4], hex[c & 15]}, 3);
    if (rc) return rc;
  }
  return 0;
}

/* 301 to the directory's URL with a trailing slash. Built from the
 * normalised path, not the raw one: "//evil.example/dir" must not become a
 * protocol-relative Location. */
static int st_redirect_dir(const char *rel, const http_req *req, http_res *res) {
  mw_str loc = {0};
  int rc = mw_str_appendc(&loc, '/');
  if (!rc) rc = st_append_encoded(&loc, rel, strlen(rel));
  if (!rc) rc = mw_str_appendc(&loc, '/');
  if (!rc && req->query_len) {
    rc = mw_str_appendc(&loc, '?');
    if (!rc) rc = mw_str_append(&loc, req->query, req->query_len);
  }
  if (!rc) rc = http_res_headerz(res, "Location", loc.p);
  mw_str_free(&loc);
  if (rc) return rc;
  return http_res_simple(res, 301, "text/plain; charset=utf-8", "Moved Permanently\n");
}

int static_serve(mw_static *st, const http_req *req, http_res *res) {
  if (!st_method_ok(req) || !st->root) return 1;
  char rel[PATH_MAX], full[PATH_MAX], real[PATH_MAX];
  int n = static_normalize(req->path, req->path_len, rel, sizeof rel);
  if (n == -400) return http_res_simple(res, 400, "text/plain; charset=utf-8", "Bad Request\n");
  if (n < 0) return 1;
  int w = n ? snprintf(full, sizeof full, "%s/%s", st->root, rel) : snprintf(full, sizeof full, "%s", st->root);
  if (w < 0 || (size_t)w >= sizeof full) return 1;
  if (!realpath(full, real)) return errno == ENOMEM ? -ENOMEM : 1;
  if (!st_inside(st, real)) return 1;
  struct stat sb;
  if (stat(real, &sb) != 0) return 1;
  bool slash = req->path_len > 0 && req->path[req->path_len - 1] == '/';
  if (S_ISDIR(sb.st_mode)) {
    if (!slash) return st_redirect_dir(rel, req, res);
    /* index.html may itself be a symlink: resolve and check again. */
    w = snprintf(full, sizeof full, "%s/index.html", real);
    if (w < 0 || (size_t)w >= sizeof full) return 1;
    if (!realpath(full, real)) return errno == ENOMEM ? -ENOMEM : 1;
    if (!st_inside(st, real)) return 1;
  } else if (slash) {
    return 1; /* "file.css/" names a directory that is not there */
  }
  return st_send(st, real, true, req, res, NULL);
}

int static_serve_file(mw_static *st, const char *abs_path, const http_req *req, http_res *res,
                      const char *cache_control) {
  if (!st_method_ok(req)) return 1;
  return st_send(st, abs_path, false, req, res, cache_control);
}
