/* static.c — files under the app's public/ directory (and any file the
 * app names): path normalisation, content types, conditional requests,
 * Range, compressed variants, files read on the threadpool and streamed in
 * bounded chunks, and a cache of small files and compressed variants
 * revalidated by stat on every request (so an edit shows on the next
 * request). */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include "compress.h"
#include "hash.h"
#include "pct.h"

#define ST_CACHE_FILE_MAX (256 * 1024)        /* larger files are streamed from disk each time */
#define ST_CACHE_TOTAL_MAX (32 * 1024 * 1024) /* bytes, entries' overhead included */
#define ST_CACHE_ENTRIES_MAX 4096
#define ST_BUCKETS 1024 /* a power of two */
#define ST_DEFAULT_CACHE_CONTROL "public, max-age=0"
/* Files are read in chunks of this size; a download has at most
 * ST_BUFS of them, while the connection's queue holds less than
 * ST_QUEUE_HIGH (the kernel's socket buffer holds more). */
#define ST_CHUNK (64 * 1024)
#define ST_BUFS 3
#define ST_QUEUE_HIGH (2 * ST_CHUNK)
/* A compressible file up to this size is compressed once (off the loop)
 * and the result kept; a larger one is sent as it is, unless a
 * precompressed twin (file.gz, file.br) is there. */
#define ST_COMPRESS_MAX (8 * 1024 * 1024)

/* ---- path normalisation ---- */

int static_normalize(const char *path, size_t len, char *out, size_t cap) {
  if (len == 0 || path[0] != '/') return -400;
  /* First, malformed anywhere is 400, whatever else the path holds. */
  for (size_t i = 0; i < len; i++) {
    if (path[i] == '\0') return -400;
    if (path[i] != '%') continue;
    if (i + 2 >= len) return -400;
    int hi = pct_hex((unsigned char)path[i + 1]), lo = pct_hex((unsigned char)path[i + 2]);
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
    size_t start = n ? n + 1 : 0;
    ssize_t seg_len = pct_decode(path + i, j - i, out + start, cap - 1 - start, PCT_STRICT);
    if (seg_len < 0) return -414; /* the escapes were checked above: it did not fit */
    size_t seg = (size_t)seg_len, k = start + seg;
    /* A slash here was encoded: never a separator, and a file name cannot
     * hold it; a backslash is a separator elsewhere: never let it through. */
    if (memchr(out + start, '/', seg) || memchr(out + start, '\\', seg)) return -404;
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

/* When /etc/mime.types is missing (a system without Debian's media-types):
 * the types a web app's files commonly have. */
static const struct {
  const char *ext, *type;
} st_builtin[] = {
    {"html", "text/html"},        {"htm", "text/html"},
    {"css", "text/css"},          {"js", "text/javascript"},
    {"mjs", "text/javascript"},   {"json", "application/json"},
    {"txt", "text/plain"},        {"svg", "image/svg+xml"},
    {"png", "image/png"},         {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},       {"gif", "image/gif"},
    {"webp", "image/webp"},       {"avif", "image/avif"},
    {"apng", "image/apng"},       {"ico", "image/vnd.microsoft.icon"},
    {"woff", "font/woff"},        {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},          {"otf", "font/otf"},
    {"mp3", "audio/mpeg"},        {"ogg", "audio/ogg"},
    {"wav", "audio/x-wav"},       {"mp4", "video/mp4"},
    {"webm", "video/webm"},       {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},   {"zip", "application/zip"},
    {"xml", "application/xml"},   {"csv", "text/csv"},
    {"md", "text/markdown"},      {"webmanifest", "application/manifest+json"},
    {"jsonld", "application/ld+json"}, {"gz", "application/gzip"},
};
/* What the file does not list but browsers ask for (source maps). */
static const struct {
  const char *ext, *type;
} st_extra[] = {{"map", "application/json"}};

#define ST_MIME_SLOTS 8192 /* a power of two, over twice the extensions the file lists */
#define ST_MIME_EXT_MAX 32

typedef struct st_mime_slot {
  char *ext; /* lower case */
  const char *type;
} st_mime_slot;

/* Loaded once (the first static_mime, static_new makes it early), never
 * changed after: read without locks from any thread. */
static st_mime_slot *st_mime_tab;
static size_t st_mime_n;
static bool st_mime_from_file;
static pthread_once_t st_mime_once = PTHREAD_ONCE_INIT;

/* Lower-cases s (len bytes) into out; false when too long. */
static bool st_lower(const char *s, size_t len, char out[ST_MIME_EXT_MAX + 1]) {
  if (len == 0 || len > ST_MIME_EXT_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  out[len] = '\0';
  return true;
}

/* The first type given for an extension wins. type is kept (not copied).
 * Returns whether it was. */
static bool st_mime_add(const char *ext, size_t elen, const char *type) {
  char key[ST_MIME_EXT_MAX + 1];
  if (!st_mime_tab || st_mime_n >= ST_MIME_SLOTS / 2 || !st_lower(ext, elen, key)) return false;
  size_t i = mw_hash64(key, elen) & (ST_MIME_SLOTS - 1);
  while (st_mime_tab[i].ext) {
    if (strcmp(st_mime_tab[i].ext, key) == 0) return false;
    i = (i + 1) & (ST_MIME_SLOTS - 1);
  }
  char *k = strdup(key);
  if (!k) return false;
  st_mime_tab[i] = (st_mime_slot){k, type};
  st_mime_n++;
  return true;
}

/* The types made for the table (one per mime.types line that gave an
 * extension), freed with it. */
static char **st_mime_types;
static size_t st_mime_ntypes, st_mime_types_cap;

/* A type as served: text types say their charset (everything moonwire
 * serves as text is UTF-8). Kept until exit (st_mime_unload). */
static const char *st_mime_type(const char *t, size_t len) {
  if (st_mime_ntypes == st_mime_types_cap) {
    size_t cap = st_mime_types_cap ? st_mime_types_cap * 2 : 256;
    char **types = realloc(st_mime_types, cap * sizeof *types);
    if (!types) return NULL;
    st_mime_types = types;
    st_mime_types_cap = cap;
  }
  bool text = len > 5 && mw_ieq(t, 5, "text/");
  char *out = malloc(len + (text ? sizeof "; charset=utf-8" : 1));
  if (!out) return NULL;
  memcpy(out, t, len);
  if (text) memcpy(out + len, "; charset=utf-8", sizeof "; charset=utf-8");
  else out[len] = '\0';
  st_mime_types[st_mime_ntypes++] = out;
  return out;
}

/* At exit, or when the module holding the table is unloaded (the Lua test
 * module is dlclose'd at the end of a busted run): a leak checker must not
 * find it unreachable. */
__attribute__((destructor)) static void st_mime_unload(void) {
  if (st_mime_tab)
    for (size_t i = 0; i < ST_MIME_SLOTS; i++) free(st_mime_tab[i].ext);
  free(st_mime_tab);
  st_mime_tab = NULL;
  for (size_t i = 0; i < st_mime_ntypes; i++) free(st_mime_types[i]);
  free(st_mime_types);
  st_mime_types = NULL;
  st_mime_ntypes = st_mime_types_cap = 0;
}

static void st_mime_load(void) {
  st_mime_tab = calloc(ST_MIME_SLOTS, sizeof *st_mime_tab);
  if (!st_mime_tab) return;
  const char *path = getenv("MOONWIRE_MIME_TYPES");
  if (!path || !*path) path = "/etc/mime.types";
  FILE *f = fopen(path, "r");
  if (f) {
    char line[4096];
    while (fgets(line, sizeof line, f)) {
      char *p = line;
      while (*p == ' ' || *p == '\t') p++;
      if (*p == '#' || *p == '\n' || !*p) continue;
      char *t = p;
      while (*p && *p != ' ' && *p != '\t' && *p != '\n') p++;
      size_t tlen = (size_t)(p - t);
      if (!memchr(t, '/', tlen)) continue;
      const char *type = NULL;
      bool kept = false;
      for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '\n' || *p == '#') break;
        char *e = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') p++;
        if (!type && !(type = st_mime_type(t, tlen))) break;
        kept |= st_mime_add(e, (size_t)(p - e), type);
      }
      if (type && !kept) free(st_mime_types[--st_mime_ntypes]); /* every extension of the line known already */
    }
    fclose(f);
    st_mime_from_file = st_mime_n > 0;
  }
  if (!st_mime_from_file) {
    mw_log(MW_LOG_WARN, "static: no content types in %s (%s): using a built-in table of %zu; install Debian's media-types",
           path, f ? "empty" : strerror(errno), MW_ARRAY_LEN(st_builtin));
    for (size_t i = 0; i < MW_ARRAY_LEN(st_builtin); i++) {
      const char *type = st_mime_type(st_builtin[i].type, strlen(st_builtin[i].type));
      if (type && !st_mime_add(st_builtin[i].ext, strlen(st_builtin[i].ext), type)) free(st_mime_types[--st_mime_ntypes]);
    }
  }
  for (size_t i = 0; i < MW_ARRAY_LEN(st_extra); i++) st_mime_add(st_extra[i].ext, strlen(st_extra[i].ext), st_extra[i].type);
}

const char *static_mime(const char *name, size_t len) {
  pthread_once(&st_mime_once, st_mime_load);
  size_t dot = len;
  for (size_t i = len; i > 0; i--) {
    if (name[i - 1] == '/') break;
    if (name[i - 1] == '.') {
      dot = i - 1;
      break;
    }
  }
  char key[ST_MIME_EXT_MAX + 1];
  if (dot < len && st_mime_tab && st_lower(name + dot + 1, len - dot - 1, key)) {
    size_t klen = len - dot - 1;
    for (size_t i = mw_hash64(key, klen) & (ST_MIME_SLOTS - 1); st_mime_tab[i].ext; i = (i + 1) & (ST_MIME_SLOTS - 1))
      if (strcmp(st_mime_tab[i].ext, key) == 0) return st_mime_tab[i].type;
  }
  return "application/octet-stream";
}

size_t static_mime_count(bool *from_file) {
  pthread_once(&st_mime_once, st_mime_load);
  if (from_file) *from_file = st_mime_from_file;
  return st_mime_n;
}

/* ---- Range ---- */

#define ST_RANGES_MAX 64 /* more ranges than this: the whole file (a client asking that many is odd) */

static bool st_ows(char c) { return c == ' ' || c == '\t'; }

/* Digits at v[*i..], at most 18 of them (no overflow). -1 when there are none. */
static int64_t st_digits(const char *v, size_t len, size_t *i) {
  int64_t n = 0;
  size_t j = *i;
  while (j < len && v[j] >= '0' && v[j] <= '9') {
    if (j - *i >= 18) return -2;
    n = n * 10 + (v[j] - '0');
    j++;
  }
  if (j == *i) return -1;
  *i = j;
  return n;
}

typedef struct st_span {
  uint64_t a, b; /* [a, b) */
} st_span;

static int st_span_cmp(const void *x, const void *y) {
  const st_span *p = x, *q = y;
  return p->a < q->a ? -1 : p->a > q->a;
}

int static_range(const char *v, size_t len, uint64_t size, uint64_t *start, uint64_t *end) {
  size_t i = 0;
  while (i < len && st_ows(v[i])) i++;
  if (len - i < 6 || !mw_ieq(v + i, 5, "bytes")) return STATIC_RANGE_WHOLE;
  i += 5;
  while (i < len && st_ows(v[i])) i++;
  if (i >= len || v[i] != '=') return STATIC_RANGE_WHOLE;
  i++;
  st_span spans[ST_RANGES_MAX];
  int n = 0, parsed = 0;
  for (;;) {
    while (i < len && (st_ows(v[i]) || v[i] == ',')) i++;
    if (i >= len) break;
    int64_t a = -1, b = -1;
    if (v[i] == '-') { /* suffix: the last b bytes */
      i++;
      if ((b = st_digits(v, len, &i)) < 0) return STATIC_RANGE_WHOLE;
    } else {
      if ((a = st_digits(v, len, &i)) < 0) return STATIC_RANGE_WHOLE;
      if (i >= len || v[i] != '-') return STATIC_RANGE_WHOLE;
      i++;
      if (i < len && v[i] >= '0' && v[i] <= '9') {
        if ((b = st_digits(v, len, &i)) < 0) return STATIC_RANGE_WHOLE;
        if (b < a) return STATIC_RANGE_WHOLE; /* invalid: the header is ignored */
      }
    }
    while (i < len && st_ows(v[i])) i++;
    if (i < len && v[i] != ',') return STATIC_RANGE_WHOLE;
    if (++parsed > ST_RANGES_MAX) return STATIC_RANGE_WHOLE;
    st_span s;
    if (a < 0) { /* -b */
      if (b == 0 || size == 0) continue;
      s.a = (uint64_t)b >= size ? 0 : size - (uint64_t)b;
      s.b = size;
    } else {
      if ((uint64_t)a >= size) continue; /* starts past the end: unsatisfiable */
      s.a = (uint64_t)a;
      s.b = b < 0 || (uint64_t)b >= size ? size : (uint64_t)b + 1;
    }
    spans[n++] = s;
  }
  if (parsed == 0) return STATIC_RANGE_WHOLE; /* "bytes=" and nothing: malformed */
  if (n == 0) return STATIC_RANGE_NONE;
  /* Overlapping or adjacent ranges merge (as range-parser's combine does). */
  qsort(spans, (size_t)n, sizeof *spans, st_span_cmp);
  st_span m = spans[0];
  for (int k = 1; k < n; k++) {
    if (spans[k].a > m.b) return STATIC_RANGE_WHOLE; /* a gap: several parts */
    if (spans[k].b > m.b) m.b = spans[k].b;
  }
  *start = m.a;
  *end = m.b;
  return STATIC_RANGE_PART;
}

/* Linux's openat2 (5.6), and its RESOLVE_CACHED (5.12): -1 not checked
 * yet, 0 missing (realpath and open are used), 1 there. */
static int st_openat2_ok = -1;

static int st_openat2(int dirfd, const char *path, int flags, uint64_t resolve) {
  struct open_how how = {.flags = (uint64_t)flags, .resolve = resolve};
  int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  return fd < 0 ? -errno : fd;
}

/* ---- the cache ---- */

/* A small file, or a compressed variant of a file, kept in memory. key is
 * the path opened, followed for a variant by "\n" and the coding; the stat
 * fields describe the file it was made from (any change means make it
 * again; ctime catches a replacement that restored size and mtime, as
 * rsync -t does). body NULL: a variant not worth having (it did not
 * shrink): the file is sent as it is. */
typedef struct st_entry {
  char *key;
  size_t key_len;
  uint64_t hash;
  struct st_entry *hnext;       /* bucket chain */
  struct st_entry *prev, *next; /* LRU list, most recent first */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime, ctime;
  mw_buf *body;
} st_entry;

typedef struct st_req st_req;
typedef struct st_zjob st_zjob;

/* The public directory, open (O_PATH) for openat2. Requests hold a
 * reference while their job may use it: it is reopened once a second (a
 * public/ replaced by another directory is seen), and the old one closed
 * when its last request is done. Loop thread only. */
typedef struct st_dirfd {
  int fd;
  int refs;
} st_dirfd;

/* Resolve jobs at most under way at once (each with any number of requests). */
#define ST_BATCHES 2

typedef struct st_batch {
  uv_work_t work;
  struct mw_static *st;
  st_req *list;
  bool busy;
} st_batch;

struct mw_static {
  uv_loop_t *loop;
  char *root; /* realpath of the public directory, NULL when missing */
  size_t root_len;
  st_entry *buckets[ST_BUCKETS];
  st_entry lru; /* sentinel */
  size_t bytes, entries;
  st_zjob *zjobs; /* compressions under way */
  st_batch batches[ST_BATCHES];
  st_req *queue, **queue_tail; /* waiting for a batch */
  st_dirfd *root_fd;           /* NULL: none (no openat2, or no directory) */
  uint64_t root_fd_at;         /* loop time it was opened */
  int live;       /* requests in flight */
  bool freed;     /* static_free was called while some were */
};

static size_t st_cost(const st_entry *e) { return sizeof *e + e->key_len + 1 + (e->body ? e->body->len : 0); }

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

/* The entry for key made from the file sb describes; a stale one is dropped. */
static st_entry *st_cache_get(mw_static *st, const char *key, const struct stat *sb) {
  size_t klen = strlen(key);
  st_entry *e = st_find(st, key, klen, mw_hash64(key, klen));
  if (!e) return NULL;
  if (!st_same_file(e, sb)) {
    st_remove(st, e);
    return NULL;
  }
  st_lru_unlink(e);
  st_lru_front(st, e);
  return e;
}

/* Only what matches the stat it is keyed by is kept, and not from a file
 * modified in the last two seconds: file times move in coarse ticks, so a
 * second edit that soon could leave size and times unchanged and the cache
 * stale (git's "racy" files). Such files are read every time. */
static bool st_racy(const struct stat *sb) { return (int64_t)sb->st_mtim.tv_sec >= (int64_t)time(NULL) - 2; }

/* Remembers body (NULL: "not worth it") for key; failures only mean no
 * caching. Borrows body (the cache takes its own reference). */
static void st_cache_put(mw_static *st, const char *key, const struct stat *sb, mw_buf *body) {
  if (st_racy(sb)) return;
  size_t klen = strlen(key);
  uint64_t h = mw_hash64(key, klen);
  st_entry *old = st_find(st, key, klen, h);
  if (old) st_remove(st, old);
  size_t cost = sizeof(st_entry) + klen + 1 + (body ? body->len : 0);
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
  e->body = body ? mw_buf_ref(body) : NULL;
  e->hnext = st->buckets[h & (ST_BUCKETS - 1)];
  st->buckets[h & (ST_BUCKETS - 1)] = e;
  st_lru_front(st, e);
  st->bytes += cost;
  st->entries++;
}

void static_clear_cache(mw_static *st) {
  while (st->lru.next != &st->lru) st_remove(st, st->lru.next);
}

int static_new(mw_static **out, uv_loop_t *loop, const char *public_dir) {
  *out = NULL;
  static_mime_count(NULL); /* the content types load now, not on a first request */
  mw_static *st = calloc(1, sizeof *st);
  if (!st) return -ENOMEM;
  st->loop = loop;
  st->lru.next = st->lru.prev = &st->lru;
  st->queue_tail = &st->queue;
  for (int i = 0; i < ST_BATCHES; i++) st->batches[i].st = st;
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
  if (root && (st->root_fd = calloc(1, sizeof *st->root_fd))) {
    st->root_fd->fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    st->root_fd->refs = 1;
    if (st->root_fd->fd >= 0 && st_openat2_ok < 0) {
      int fd = st_openat2(st->root_fd->fd, ".", O_PATH | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_CACHED);
      st_openat2_ok = fd >= 0 || (fd != -ENOSYS && fd != -EINVAL && fd != -EPERM);
      if (fd >= 0) close(fd);
      if (!st_openat2_ok)
        mw_log(MW_LOG_INFO, "static: no openat2 with RESOLVE_CACHED in this kernel: every file is looked up off the loop");
    }
    if (st->root_fd->fd < 0) {
      free(st->root_fd);
      st->root_fd = NULL;
    }
    st->root_fd_at = uv_now(loop);
  }
  *out = st;
  return 0;
}

static void st_free_now(mw_static *st) {
  static_clear_cache(st);
  if (st->root_fd) {
    close(st->root_fd->fd);
    free(st->root_fd);
  }
  free(st->root);
  free(st);
}

void static_free(mw_static *st) {
  if (!st) return;
  if (st->live) { /* the last request to end frees it */
    st->freed = true;
    return;
  }
  st_free_now(st);
}

/* A cache key: the file's device and inode (the same entry whatever name
 * or symlink led to it), and the coding of a variant made from it. */
static void st_key(char out[64], const struct stat *sb, const char *coding) {
  snprintf(out, 64, "%jx:%jx%s%s", (uintmax_t)sb->st_dev, (uintmax_t)sb->st_ino, coding ? ":" : "", coding ? coding : "");
}

/* ---- one request ---- */

enum { ST_PUBLIC, ST_FILE, ST_ROOTED };

/* A request for a file, from the job that finds it until its last byte is
 * queued. Owned by the module; freed by st_done. */
struct st_req {
  mw_static *st;
  const http_req *req;
  http_res *res;
  static_miss_fn miss;
  void *ud;
  char *cc;            /* Cache-Control: owned copy, or NULL for the default */
  /* what the job is to find */
  int mode;            /* ST_PUBLIC (a URL under public/), ST_FILE (a path as it is), ST_ROOTED (sendFile) */
  char *root;          /* ST_ROOTED: the directory it must be in (owned) */
  char *rel;           /* ST_PUBLIC: the normalised path; ST_ROOTED: the path under root (owned) */
  st_dirfd *root_fd;   /* ST_PUBLIC with openat2: the directory it is looked for in */
  bool slash;          /* ST_PUBLIC: the URL ended with '/' */
  int want;            /* codings the client accepts (twins are looked for) */
  char path[PATH_MAX];
  /* what it found */
  int rc;              /* 0 a file; 1 not ours; 2 a directory without its slash; <0 errno */
  char real[PATH_MAX];
  const char *type;
  int fd;              /* the file, or -1 */
  struct stat sb;
  int tfd, tenc;       /* a precompressed twin (file.br, file.gz) fresher than the file, or -1 */
  struct stat tsb;
  /* sending */
  uv_fs_t fs;
  int sfd;             /* what is read: fd or tfd */
  const struct stat *ssb;
  uint64_t pos, end;   /* bytes still to send: [pos, end) */
  mw_buf *bufs[ST_BUFS];
  mw_buf *rbuf;        /* being read into */
  bool reading, whole; /* whole: reading a small file in one go (to cache it) */
  bool told;           /* miss has heard how it ended */
  st_req *znext;       /* waiting for the same compression */
  st_req *next;        /* in a batch, or queued for the next */
};

/* A compression under way: the first request for a variant starts it, the
 * next ones for it wait on it, all are answered when it is done. */
struct st_zjob {
  st_zjob *next;
  mw_static *st;
  char *key;
  int enc, fd;
  struct stat sb;
  uv_work_t work;
  mw_buf *out;
  st_req *waiters;
};

static void st_dirfd_unref(mw_static *st, st_dirfd *d) {
  if (!d || --d->refs > 0 || d == st->root_fd) return;
  close(d->fd);
  free(d);
}

static void st_done(st_req *r) {
  mw_static *st = r->st;
  st_dirfd_unref(st, r->root_fd);
  if (r->fd >= 0) close(r->fd); /* a regular file opened to read: close(2) does not wait for a disk */
  if (r->tfd >= 0) close(r->tfd);
  for (int i = 0; i < ST_BUFS; i++) mw_buf_unref(r->bufs[i]);
  free(r->cc);
  free(r->root);
  free(r->rel);
  free(r);
  if (--st->live == 0 && st->freed) st_free_now(st);
}

static bool st_gone(const st_req *r) { return http_res_queued(r->res) == SIZE_MAX; }

/* The client left before anything was sent: the response is ended so its
 * exchange is freed, and nobody is told. */
static void st_abandon(st_req *r) {
  http_res *res = r->res;
  static_miss_fn tell = r->told ? NULL : r->miss;
  void *ud = r->ud;
  if (!res->done) {
    if (res->started) http_res_finish(res);
    else http_res_end(res, "", 0);
  }
  st_done(r);
  if (tell) tell(ud, NULL, NULL, 0);
}

static st_req *st_req_new(mw_static *st, const http_req *req, http_res *res, static_miss_fn miss, void *ud,
                          const char *cc) {
  st_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->st = st;
  r->req = req;
  r->res = res;
  r->miss = miss;
  r->ud = ud;
  r->fd = r->tfd = r->sfd = -1;
  if (cc && !(r->cc = strdup(cc))) {
    free(r);
    return NULL;
  }
  st->live++;
  return r;
}

static bool st_inside(const char *root, size_t root_len, const char *real) {
  return strncmp(real, root, root_len) == 0 && (real[root_len] == '/' || real[root_len] == '\0');
}

static bool st_newer_or_same(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec >= b->tv_nsec);
}

/* ---- finding the file ---- */

#define ST_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

static bool st_fatal(int err) { return err == -ENOMEM || err == -EMFILE || err == -ENFILE; }

/* Opens the precompressed twin of name (name.br, name.gz) the client
 * accepts, when it is a regular file (not a symlink) at least as new as the
 * file, as nginx's gzip_static. -EAGAIN when it would need the disk. */
static int st_twin(st_req *r, int dirfd, const char *name, uint64_t how) {
  static const struct {
    int enc;
    const char *suffix;
  } twins[] = {{MW_ENC_BR, ".br"}, {MW_ENC_GZIP, ".gz"}};
  for (size_t i = 0; i < MW_ARRAY_LEN(twins); i++) {
    char tp[PATH_MAX];
    int n = snprintf(tp, sizeof tp, "%s%s", name, twins[i].suffix);
    if (!(r->want & twins[i].enc) || n < 0 || (size_t)n >= sizeof tp) continue;
    int tfd = how == (uint64_t)-1 ? open(tp, ST_OPEN_FLAGS | O_NOFOLLOW)
                                  : st_openat2(dirfd, tp, ST_OPEN_FLAGS | O_NOFOLLOW, how);
    if (tfd == -EAGAIN) return -EAGAIN;
    if (tfd < 0) continue;
    if (fstat(tfd, &r->tsb) == 0 && S_ISREG(r->tsb.st_mode) && st_newer_or_same(&r->tsb.st_mtim, &r->sb.st_mtim)) {
      r->tfd = tfd;
      r->tenc = twins[i].enc;
      return 0;
    }
    close(tfd);
  }
  return 0;
}

/* Takes fd (the file found under name) for r: its stat, type, twin. */
static int st_take(st_req *r, int fd, const struct stat *sb, int dirfd, const char *name, uint64_t how) {
  r->fd = fd;
  r->sb = *sb;
  r->type = static_mime(name, strlen(name));
  if (name != r->real) snprintf(r->real, sizeof r->real, "%s", name); /* for messages */
  if (r->want && mw_compressible_type(r->type, strlen(r->type)) && st_twin(r, dirfd, name, how) == -EAGAIN) {
    close(r->fd);
    r->fd = -1;
    return -EAGAIN;
  }
  r->rc = 0;
  return 0;
}

/* With openat2: the path resolved and opened by the kernel in one call,
 * never leaving dirfd's directory (RESOLVE_BENEATH: ".." above it and
 * symlinks that lead out fail; absolute symlinks too); with cached, from
 * the kernel's caches only (RESOLVE_CACHED): -EAGAIN when the disk would
 * be needed, and nothing is left open. Else 0 with r->rc set. */
static int st_resolve_at(st_req *r, int dirfd, const char *rel, bool beneath, bool cached) {
  uint64_t how = (beneath ? RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS : 0) | (cached ? RESOLVE_CACHED : 0);
  char name[PATH_MAX];
  snprintf(name, sizeof name, "%s", *rel ? rel : ".");
  int fd = st_openat2(dirfd, name, ST_OPEN_FLAGS, how);
  struct stat sb;
  if (fd >= 0 && fstat(fd, &sb) != 0) {
    close(fd);
    fd = -ENOENT;
  }
  if (fd >= 0 && S_ISDIR(sb.st_mode) && r->mode == ST_PUBLIC) {
    close(fd);
    if (!r->slash) {
      r->rc = 2;
      return 0;
    }
    int n = snprintf(name, sizeof name, "%s%sindex.html", rel, *rel ? "/" : "");
    fd = n < 0 || (size_t)n >= sizeof name ? -ENAMETOOLONG : st_openat2(dirfd, name, ST_OPEN_FLAGS, how);
    if (fd >= 0 && fstat(fd, &sb) != 0) {
      close(fd);
      fd = -ENOENT;
    }
  } else if (fd >= 0 && r->slash) { /* "file.css/" names a directory that is not there */
    close(fd);
    fd = -ENOTDIR;
  }
  if (fd == -EAGAIN && cached) return -EAGAIN;
  if (fd >= 0 && !S_ISREG(sb.st_mode)) {
    close(fd);
    fd = -EISDIR;
  }
  if (fd < 0) {
    r->rc = st_fatal(fd) ? fd : 1;
    return 0;
  }
  return st_take(r, fd, &sb, dirfd, name, how);
}

/* Without openat2: realpath, a containment check, open. */
static void st_resolve_realpath(st_req *r) {
  bool nofollow = r->mode != ST_FILE;
  if (r->mode == ST_FILE) {
    snprintf(r->real, sizeof r->real, "%s", r->path);
  } else {
    const char *root = r->st->root;
    size_t root_len = r->st->root_len;
    char real_root[PATH_MAX];
    if (r->mode == ST_ROOTED) {
      if (!realpath(r->root, real_root)) {
        r->rc = errno == ENOMEM ? -ENOMEM : 1;
        return;
      }
      root = real_root;
      root_len = strlen(real_root);
      if (root_len == 1) root_len = 0; /* "/": every path is inside */
    }
    if (!realpath(r->path, r->real)) {
      r->rc = errno == ENOMEM ? -ENOMEM : 1;
      return;
    }
    if (!st_inside(root, root_len, r->real)) { /* a symlink that leads out */
      r->rc = 1;
      return;
    }
    if (r->mode == ST_PUBLIC) {
      struct stat sb;
      if (stat(r->real, &sb) != 0) {
        r->rc = 1;
        return;
      }
      if (S_ISDIR(sb.st_mode)) {
        if (!r->slash) {
          r->rc = 2;
          return;
        }
        /* index.html may itself be a symlink: resolve and check again. */
        char full[PATH_MAX];
        int n = snprintf(full, sizeof full, "%s/index.html", r->real);
        if (n < 0 || (size_t)n >= sizeof full || !realpath(full, r->real)) {
          r->rc = n > 0 && errno == ENOMEM ? -ENOMEM : 1;
          return;
        }
        if (!st_inside(root, root_len, r->real)) {
          r->rc = 1;
          return;
        }
      } else if (r->slash) {
        r->rc = 1;
        return;
      }
    }
  }
  /* nofollow narrows a symlink swap race after realpath. */
  int fd = open(r->real, ST_OPEN_FLAGS | (nofollow ? O_NOFOLLOW : 0));
  struct stat sb;
  if (fd < 0) {
    r->rc = st_fatal(-errno) ? -errno : 1;
    return;
  }
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    r->rc = 1;
    return;
  }
  st_take(r, fd, &sb, AT_FDCWD, r->real, (uint64_t)-1);
}

/* On the threadpool: from the path to an open regular file (O_NONBLOCK: a
 * FIFO swapped in must not hold the thread; it is refused as not regular),
 * its stat, type, and a twin when the client accepts one. Touches only r. */
static void st_resolve(st_req *r) {
  if (st_openat2_ok <= 0) {
    st_resolve_realpath(r);
    return;
  }
  if (r->mode == ST_PUBLIC) {
    st_resolve_at(r, r->root_fd->fd, r->rel, true, false);
  } else if (r->mode == ST_FILE) {
    st_resolve_at(r, AT_FDCWD, r->path, false, false);
  } else {
    int dirfd = open(r->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
      r->rc = st_fatal(-errno) ? -errno : 1;
      return;
    }
    st_resolve_at(r, dirfd, r->rel, true, false);
    close(dirfd);
  }
}

/* ---- answering ---- */

/* The weak validator of a representation: its size and mtime in
 * nanoseconds (an edit within the same second changes it), and the coding
 * of a variant compressed here. */
static void st_tag(char out[80], const struct stat *sb, const char *coding) {
  uint64_t mtime_ns = (uint64_t)sb->st_mtim.tv_sec * 1000000000u + (uint64_t)sb->st_mtim.tv_nsec;
  snprintf(out, 80, "W/\"%jx-%jx%s%s\"", (uintmax_t)sb->st_size, (uintmax_t)mtime_ns, coding ? "-" : "",
           coding ? coding : "");
}

/* Adds a header unless the response has one by that name already (a route
 * that set its own Content-Type or Cache-Control before res:sendFile). */
static int st_set(http_res *res, const char *name, const char *value) {
  if (http_res_get(res, name, NULL)) return 0;
  return http_res_headerz(res, name, value);
}

static bool st_get_or_head(const http_req *req) {
  return req->method_id == HTTP_GET || req->method_id == HTTP_HEAD;
}

/* RFC 9110 13.2.2, in its order: If-Match, or else If-Unmodified-Since,
 * failing gives 412; then If-None-Match, or else If-Modified-Since, for
 * GET and HEAD gives 304. A tag matches when it is the representation's
 * or the file's own (weak comparison, as Express). Returns 0, 304 or 412. */
static int st_preconditions(const http_req *req, const char *tag, const char *itag, time_t mtime) {
  size_t n;
  const char *v;
  if ((v = http_req_header(req, "if-match", &n))) {
    if (!http_etag_match(v, n, tag) && !http_etag_match(v, n, itag)) return 412;
  } else if ((v = http_req_header(req, "if-unmodified-since", &n))) {
    int64_t d = http_parse_date(v, n);
    if (d >= 0 && (int64_t)mtime > d) return 412;
  }
  bool safe = st_get_or_head(req);
  if ((v = http_req_header(req, "if-none-match", &n))) {
    if (http_etag_match(v, n, tag) || http_etag_match(v, n, itag)) return safe ? 304 : 412;
  } else if (safe && (v = http_req_header(req, "if-modified-since", &n))) {
    int64_t d = http_parse_date(v, n);
    if (d >= 0 && (int64_t)mtime <= d) return 304;
  }
  return 0;
}

/* If-Range: the range applies only to the representation the client has.
 * A date must be its Last-Modified exactly; a tag the one sent (our tags
 * are weak: matched as Express does, where RFC 9110 would ask a strong
 * one and never match). */
static bool st_if_range(const http_req *req, const char *itag, time_t mtime) {
  size_t n;
  const char *v = http_req_header(req, "if-range", &n);
  if (!v) return true;
  while (n && st_ows(*v)) v++, n--;
  while (n && st_ows(v[n - 1])) n--;
  if (n && (v[0] == '"' || v[0] == 'W')) return n == strlen(itag) && memcmp(v, itag, n) == 0;
  int64_t d = http_parse_date(v, n);
  return d >= 0 && d == (int64_t)mtime;
}

static void st_pump(st_req *r);

static void st_on_drain(void *ud) { st_pump(ud); }

/* Frees a request whose body has all been queued (or cut short). */
static void st_finish(st_req *r) {
  http_res_finish(r->res);
  st_done(r);
}

/* A chunk of a streamed file read on the threadpool: n bytes in b, or an
 * error. */
static void st_got_chunk(st_req *r, mw_buf *b, ssize_t n) {
  if (st_gone(r)) {
    st_abandon(r);
    return;
  }
  if (n <= 0) { /* an error, or the file shrank: what was sent is all there is */
    if (n < 0)
      mw_log(MW_LOG_ERROR, "static: reading %s: %s", r->real, uv_strerror((int)n));
    st_finish(r); /* short of its Content-Length: the connection ends after it */
    return;
  }
  b->len = (size_t)n;
  r->pos += (uint64_t)n;
  if (http_res_write(r->res, mw_buf_ref(b), 0, (size_t)n)) {
    st_abandon(r);
    return;
  }
  st_pump(r);
}

static void st_got_whole(st_req *r, mw_buf *b, ssize_t n);

/* A read on the threadpool is done: its buffer goes back to what it was
 * read for, a chunk of a stream or a small file read whole. */
static void st_on_read(uv_fs_t *fs) {
  st_req *r = fs->data;
  ssize_t n = fs->result;
  uv_fs_req_cleanup(fs);
  r->reading = false;
  mw_buf *b = r->rbuf;
  r->rbuf = NULL;
  if (r->whole) st_got_whole(r, b, n);
  else st_got_chunk(r, b, n);
}

/* Reads len bytes at pos of fd into b on the threadpool; st_on_read hands
 * b on (whole: to st_got_whole, else st_got_chunk). Returns 0, or a libuv
 * error and b is the caller's again. */
static int st_read_async(st_req *r, int fd, mw_buf *b, size_t len, uint64_t pos, bool whole) {
  uv_buf_t iov = uv_buf_init(b->data, (unsigned)len);
  r->rbuf = b;
  r->reading = true;
  r->whole = whole;
  r->fs.data = r;
  int e = uv_fs_read(r->st->loop, &r->fs, fd, &iov, 1, (int64_t)pos, st_on_read);
  if (e) {
    r->reading = false;
    r->rbuf = NULL;
  }
  return e;
}

/* preadv2 with RWF_NOWAIT (Linux 4.14): -1 not tried yet, 0 refused by
 * this kernel or file system, 1 there. */
static int st_nowait_ok = -1;

/* Reads len bytes at pos of fd into buf on the loop, but only from the page
 * cache: the bytes read, 0 at the end of the file, -EAGAIN when the disk
 * would be needed (or RWF_NOWAIT is not there), or a negative errno. A
 * threadpool hop per chunk cost far more CPU than the copy: pages in the
 * cache (a file read lately) are read here, the rest on the threadpool. */
static ssize_t st_read_cached(int fd, char *buf, size_t len, uint64_t pos) {
  if (st_nowait_ok == 0) return -EAGAIN;
  struct iovec v = {buf, len};
  ssize_t n = preadv2(fd, &v, 1, (off_t)pos, RWF_NOWAIT);
  if (n >= 0) {
    st_nowait_ok = 1;
    return n;
  }
  if (errno == EOPNOTSUPP || errno == ENOSYS || (errno == EINVAL && st_nowait_ok < 0)) {
    st_nowait_ok = 0;
    return -EAGAIN;
  }
  return -errno;
}

/* Queues the next chunks while the connection's queue is short enough and a
 * buffer is free (only the queue holds the others), else waits for the
 * drain: the kernel's socket buffer keeps the client busy meanwhile.
 * Chunks in the page cache are read at once; the others on the threadpool
 * (st_on_read pumps again). */
static void st_pump(st_req *r) {
  for (;;) {
    if (r->reading) return;
    if (r->pos >= r->end) {
      st_finish(r);
      return;
    }
    size_t q = http_res_queued(r->res);
    if (q == SIZE_MAX) {
      st_abandon(r);
      return;
    }
    mw_buf *b = NULL;
    for (int i = 0; i < ST_BUFS && !b; i++) {
      if (!r->bufs[i]) r->bufs[i] = mw_buf_new(ST_CHUNK);
      if (r->bufs[i] && r->bufs[i]->refs == 1) b = r->bufs[i];
    }
    if (q >= ST_QUEUE_HIGH || !b) {
      if (q == 0) { /* nothing queued and no buffer: out of memory */
        st_finish(r);
        return;
      }
      http_res_wait(r->res, st_on_drain, r);
      return;
    }
    size_t want = r->end - r->pos < ST_CHUNK ? (size_t)(r->end - r->pos) : ST_CHUNK;
    ssize_t n = st_read_cached(r->sfd, b->data, want, r->pos);
    if (n > 0) {
      b->len = (size_t)n;
      r->pos += (uint64_t)n;
      if (http_res_write(r->res, mw_buf_ref(b), 0, (size_t)n)) {
        st_abandon(r);
        return;
      }
      continue;
    }
    if (n == 0 || (n < 0 && n != -EAGAIN)) { /* the file shrank, or a read error */
      if (n < 0) mw_log(MW_LOG_ERROR, "static: reading %s: %s", r->real, strerror((int)-n));
      st_finish(r); /* short of its Content-Length: the connection ends after it */
      return;
    }
    int e = st_read_async(r, r->sfd, b, want, r->pos, false);
    if (e) {
      mw_log(MW_LOG_ERROR, "static: reading %s: %s", r->real, uv_strerror(e));
      st_finish(r);
    }
    return;
  }
}

/* A small file read whole: kept in the cache, then sent (the range of it
 * asked for). */
static void st_got_whole(st_req *r, mw_buf *b, ssize_t n) {
  if (n < 0) {
    mw_log(MW_LOG_ERROR, "static: reading %s: %s", r->real, uv_strerror((int)n));
    mw_buf_unref(b);
    http_res_finish(r->res); /* begun: the head said how long; the close says it is cut */
    st_done(r);
    return;
  }
  b->len = (size_t)n;
  b->data[n] = '\0';
  if (b->len == (size_t)r->ssb->st_size) {
    char key[64];
    st_key(key, r->ssb, NULL);
    st_cache_put(r->st, key, r->ssb, b);
  }
  if (st_gone(r)) {
    mw_buf_unref(b);
    st_abandon(r);
    return;
  }
  uint64_t end = r->end < b->len ? r->end : b->len;
  if (r->pos < end) http_res_write(r->res, b, (size_t)r->pos, (size_t)(end - r->pos));
  else mw_buf_unref(b);
  st_finish(r);
}

/* Sends [a, b) of the file behind fd (r->fd or the twin): from the cache,
 * read whole and cached when small, else streamed in chunks. The head is
 * written first (status and headers are set). */
static void st_send_fd(st_req *r, int fd, const struct stat *sb, uint64_t a, uint64_t b) {
  http_res *res = r->res;
  r->sfd = fd;
  r->ssb = sb;
  r->pos = a;
  r->end = b;
  if (res->head_only) { /* HEAD reads nothing */
    http_res_begin(res, (int64_t)(b - a));
    st_finish(r);
    return;
  }
  bool small = (uint64_t)sb->st_size <= ST_CACHE_FILE_MAX;
  if (small) {
    char key[64];
    st_key(key, sb, NULL);
    st_entry *e = st_cache_get(r->st, key, sb);
    if (e && e->body && e->body->len == (size_t)sb->st_size) {
      http_res_end_slice(res, mw_buf_ref(e->body), (size_t)a, (size_t)(b - a));
      st_done(r);
      return;
    }
  }
  http_res_begin(res, (int64_t)(b - a));
  if (b == a) {
    st_finish(r);
    return;
  }
  if (small) { /* read it all (to cache it), send the part asked for */
    mw_buf *buf = mw_buf_new((size_t)sb->st_size);
    if (!buf) {
      st_finish(r);
      return;
    }
    ssize_t got = st_read_cached(fd, buf->data, (size_t)sb->st_size, 0);
    if (got == (ssize_t)sb->st_size) { /* all in the page cache: no hop */
      st_got_whole(r, buf, got);
      return;
    }
    if (st_read_async(r, fd, buf, (size_t)sb->st_size, 0, true)) {
      mw_buf_unref(buf);
      st_finish(r);
    }
    return;
  }
  st_pump(r);
}

/* ---- compressing once ---- */

static void st_send_variant(st_req *r, mw_buf *body);

static void st_job_compress(uv_work_t *w) {
  st_zjob *z = w->data;
  size_t size = (size_t)z->sb.st_size;
  char *in = malloc(size ? size : 1);
  if (!in) return;
  size_t got = 0;
  while (got < size) {
    ssize_t n = pread(z->fd, in + got, size - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (got == size) {
    mw_buf *out = NULL;
    if (mw_compress(z->enc, in, size, z->enc == MW_ENC_BR ? MW_BROTLI_QUALITY : MW_GZIP_LEVEL, &out) == 0) {
      if (out->len < size) z->out = out;
      else mw_buf_unref(out); /* nothing gained: the file goes as it is */
    }
  }
  free(in);
}

static void st_after_compress(uv_work_t *w, int status) {
  st_zjob *z = w->data;
  mw_static *st = z->st;
  st_zjob **pp = &st->zjobs;
  while (*pp != z) pp = &(*pp)->next;
  *pp = z->next;
  if (status == 0) st_cache_put(st, z->key, &z->sb, z->out); /* NULL too: not worth compressing */
  for (st_req *r = z->waiters, *next; r; r = next) {
    next = r->znext;
    st_send_variant(r, z->out);
  }
  mw_buf_unref(z->out);
  close(z->fd);
  free(z->key);
  free(z);
  st->live--;
  if (st->live == 0 && st->freed) st_free_now(st);
}

/* Waits for the compression of r's file into enc (key names the
 * variant), starting it when nobody has. */
static void st_wait_compression(st_req *r, const char *key, int enc) {
  mw_static *st = r->st;
  for (st_zjob *z = st->zjobs; z; z = z->next) {
    if (z->enc == enc && strcmp(z->key, key) == 0 && st_same_file(&(st_entry){.dev = z->sb.st_dev,
                                                                               .ino = z->sb.st_ino,
                                                                               .size = z->sb.st_size,
                                                                               .mtime = z->sb.st_mtim,
                                                                               .ctime = z->sb.st_ctim},
                                                                  &r->sb)) {
      r->znext = z->waiters;
      z->waiters = r;
      return;
    }
  }
  st_zjob *z = calloc(1, sizeof *z);
  if (z) z->key = strdup(key);
  if (z) z->fd = dup(r->fd);
  if (!z || !z->key || z->fd < 0) {
    if (z) {
      if (z->fd >= 0) close(z->fd);
      free(z->key);
      free(z);
    }
    st_send_variant(r, NULL);
    return;
  }
  z->st = st;
  z->enc = enc;
  z->sb = r->sb;
  z->waiters = r;
  z->work.data = z;
  if (uv_queue_work(st->loop, &z->work, st_job_compress, st_after_compress)) {
    close(z->fd);
    free(z->key);
    free(z);
    st_send_variant(r, NULL);
    return;
  }
  st->live++;
  z->next = st->zjobs;
  st->zjobs = z;
}

/* The compressed variant is ready (body), or will not be (NULL: the file
 * goes as it is, under its own tag). */
static void st_send_variant(st_req *r, mw_buf *body) {
  http_res *res = r->res;
  if (st_gone(r)) {
    st_abandon(r);
    return;
  }
  if (body) {
    http_res_end_buf(res, mw_buf_ref(body));
    st_done(r);
    return;
  }
  char itag[80];
  st_tag(itag, &r->sb, NULL);
  http_res_remove(res, "content-encoding");
  http_res_remove(res, "etag");
  http_res_headerz(res, "ETag", itag);
  st_send_fd(r, r->fd, &r->sb, 0, (uint64_t)r->sb.st_size);
}

/* ---- the answer ---- */

static int st_redirect_dir(const char *rel, const http_req *req, http_res *res);

static void st_respond(st_req *r) {
  const http_req *req = r->req;
  http_res *res = r->res;
  bool get = req->method_id == HTTP_GET;
  size_t n;
  const char *range = get ? http_req_header(req, "range", &n) : NULL;
  size_t rlen = range ? n : 0;
  size_t tlen = strlen(r->type);
  bool compressible = res->compress_min && st_get_or_head(req) && mw_compressible_type(r->type, tlen);
  int accepted = 0;
  const char *ae;
  if (compressible && (ae = http_req_header(req, "accept-encoding", &n))) accepted = mw_accept_encoding(ae, n);

  /* Which representation: the file; its twin; or a variant compressed
   * here. Never a compressed one for a Range request. */
  char itag[80], tag[80];
  st_tag(itag, &r->sb, NULL);
  const struct stat *sb = &r->sb;
  int enc = 0, fd = r->fd;
  bool variant = false;
  mw_buf *cached = NULL;
  char vkey[64];
  if (!range && r->tfd >= 0) {
    enc = r->tenc;
    fd = r->tfd;
    sb = &r->tsb;
  } else if (!range && accepted && (size_t)r->sb.st_size >= res->compress_min && r->sb.st_size <= ST_COMPRESS_MAX) {
    int want = accepted & MW_ENC_BR ? MW_ENC_BR : MW_ENC_GZIP;
    st_key(vkey, &r->sb, mw_encoding_name(want));
    st_entry *e = st_cache_get(r->st, vkey, &r->sb);
    if (e && !e->body) {
      /* known not to shrink: the file as it is */
    } else if (e || !res->head_only) { /* HEAD reads nothing: a variant not made yet is not made for it */
      enc = want;
      variant = true;
      cached = e ? e->body : NULL;
    }
  }
  if (variant) st_tag(tag, &r->sb, enc == MW_ENC_BR ? "br" : "gz");
  else if (enc) st_tag(tag, sb, NULL);
  else memcpy(tag, itag, sizeof tag);

  int rc = compressible ? http_res_header(res, "Vary", 4, "Accept-Encoding", 15) : 0;
  char lastmod[32];
  http_date((int64_t)sb->st_mtim.tv_sec, lastmod);
  const char *cc = r->cc ? r->cc : ST_DEFAULT_CACHE_CONTROL;
  int pre = st_preconditions(req, tag, itag, sb->st_mtim.tv_sec);
  if (pre == 412) {
    res->status = 412;
    http_res_simple(res, 412, "text/plain; charset=utf-8", "Precondition Failed\n");
    st_done(r);
    return;
  }
  if (!rc) rc = st_set(res, "ETag", tag);
  if (!rc) rc = st_set(res, "Last-Modified", lastmod);
  if (!rc) rc = st_set(res, "Cache-Control", cc);
  if (pre == 304) {
    res->status = 304;
    if (rc) http_res_clear(res);
    http_res_end(res, "", 0);
    st_done(r);
    return;
  }
  if (!rc && !res->has_type) rc = http_res_headerz(res, "Content-Type", r->type);
  if (!rc) rc = http_res_header(res, "Accept-Ranges", 13, "bytes", 5);
  if (!rc && enc) rc = http_res_headerz(res, "Content-Encoding", mw_encoding_name(enc));
  uint64_t size = (uint64_t)sb->st_size, a = 0, b = size;
  if (!rc && range && !enc && st_if_range(req, itag, sb->st_mtim.tv_sec)) {
    char cr[80];
    switch (static_range(range, rlen, size, &a, &b)) {
    case STATIC_RANGE_NONE:
      snprintf(cr, sizeof cr, "bytes */%ju", (uintmax_t)size);
      http_res_headerz(res, "Content-Range", cr);
      http_res_remove(res, "content-type");
      http_res_simple(res, 416, "text/plain; charset=utf-8", "Range Not Satisfiable\n");
      st_done(r);
      return;
    case STATIC_RANGE_PART:
      res->status = 206;
      snprintf(cr, sizeof cr, "bytes %ju-%ju/%ju", (uintmax_t)a, (uintmax_t)(b - 1), (uintmax_t)size);
      rc = http_res_headerz(res, "Content-Range", cr);
      break;
    default:
      break;
    }
  }
  if (rc) {
    http_res_clear(res);
    res->status = 500;
    http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
    st_done(r);
    return;
  }
  if (variant) {
    if (cached) {
      http_res_end_buf(res, mw_buf_ref(cached));
      st_done(r);
    } else {
      st_wait_compression(r, vkey, enc);
    }
    return;
  }
  st_send_fd(r, fd, sb, a, b);
}

static void st_resolved(st_req *r) {
  if (r->rc == 0 && st_gone(r)) {
    st_abandon(r);
    return;
  }
  if (r->rc == 2) { /* ST_PUBLIC only */
    if (st_gone(r)) {
      st_abandon(r);
    } else {
      static_miss_fn tell = r->miss;
      void *ud = r->ud;
      st_redirect_dir(r->rel, r->req, r->res);
      st_done(r);
      tell(ud, NULL, NULL, 0);
    }
    return;
  }
  if (r->rc != 0) {
    if (st_gone(r)) {
      st_abandon(r);
      return;
    }
    static_miss_fn miss = r->miss;
    void *ud = r->ud;
    const http_req *req = r->req;
    http_res *res = r->res;
    int rc = r->rc;
    st_done(r);
    miss(ud, req, res, rc);
    return;
  }
  static_miss_fn tell = r->miss;
  void *ud = r->ud;
  r->told = true;
  st_respond(r); /* r, req and res may be gone after it */
  tell(ud, NULL, NULL, 0);
}

/* ---- resolving in batches ---- */

/* On the threadpool: every request of the batch. */
static void st_job_resolve(uv_work_t *w) {
  st_batch *b = w->data;
  for (st_req *r = b->list; r; r = r->next) st_resolve(r);
}

static void st_run_batch(mw_static *st, st_batch *b);

/* Back on the loop: each request answered (their writes leave together at
 * the end of the turn), then the requests queued meanwhile go as the next
 * batch. */
static void st_after_batch(uv_work_t *w, int status) {
  st_batch *b = w->data;
  mw_static *st = b->st;
  st_req *list = b->list;
  b->list = NULL;
  b->busy = false;
  while (list) {
    st_req *r = list;
    list = r->next;
    r->next = NULL;
    if (status) r->rc = status == UV_ECANCELED ? -ECANCELED : status;
    st_resolved(r);
  }
  if (st->queue) st_run_batch(st, b);
  if (--st->live == 0 && st->freed) st_free_now(st); /* the batch's own hold on st */
}

/* Hands the queued requests to batch b's job; on failure each is answered
 * 500. */
static void st_run_batch(mw_static *st, st_batch *b) {
  b->list = st->queue;
  st->queue = NULL;
  st->queue_tail = &st->queue;
  b->busy = true;
  b->work.data = b;
  if (uv_queue_work(st->loop, &b->work, st_job_resolve, st_after_batch) == 0) {
    st->live++;
    return;
  }
  b->busy = false;
  st_req *list = b->list;
  b->list = NULL;
  while (list) {
    st_req *r = list;
    list = r->next;
    http_res *res = r->res;
    static_miss_fn tell = r->miss;
    void *ud = r->ud;
    st_done(r);
    http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
    tell(ud, NULL, NULL, 0);
  }
}

/* Reopens the public directory once a second, from the kernel's caches
 * only (else later). */
static void st_root_refresh(mw_static *st) {
  uint64_t now = uv_now(st->loop);
  if (now - st->root_fd_at < 1000) return;
  int fd = st_openat2(AT_FDCWD, st->root, O_PATH | O_DIRECTORY | O_CLOEXEC, RESOLVE_CACHED);
  st_dirfd *d = fd >= 0 ? calloc(1, sizeof *d) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  d->fd = fd;
  d->refs = 1;
  st_dirfd *old = st->root_fd;
  st->root_fd = d;
  st->root_fd_at = now;
  st_dirfd_unref(st, old);
}

/* What the client accepts, for the twins. */
static void st_prepare(st_req *r) {
  size_t n;
  const char *ae;
  r->want = 0;
  if (r->res->compress_min && st_get_or_head(r->req) && (ae = http_req_header(r->req, "accept-encoding", &n)))
    r->want = mw_accept_encoding(ae, n);
  if (st_get_or_head(r->req) && http_req_header(r->req, "range", &n)) r->want = 0; /* never compressed: no twin */
}

/* Queues r for resolving. The threadpool hop (a wake-up there and back)
 * costs more CPU than the stat and open it does, so requests that arrive
 * while ST_BATCHES jobs are under way wait and go together in the next
 * one: under load most requests share a hop. Returns 0. */
static int st_start(st_req *r) {
  mw_static *st = r->st;
  st_prepare(r);
  *st->queue_tail = r;
  st->queue_tail = &r->next;
  for (int i = 0; i < ST_BATCHES; i++) {
    if (!st->batches[i].busy) {
      st_run_batch(st, &st->batches[i]);
      break;
    }
  }
  return 0;
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
  if (rc) return http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
  return http_res_simple(res, 301, "text/plain; charset=utf-8", "Moved Permanently\n");
}

/* Answers res at once (done is told, as always after a 0). */
static int st_answer(http_res *res, int status, const char *body, static_miss_fn done, void *ud) {
  http_res_simple(res, status, "text/plain; charset=utf-8", body);
  done(ud, NULL, NULL, 0);
  return 0;
}

static int st_oom(http_res *res, static_miss_fn done, void *ud) {
  return st_answer(res, 500, "500 Internal Server Error\n", done, ud);
}

int static_serve(mw_static *st, const http_req *req, http_res *res, static_miss_fn miss, void *ud) {
  if (!st_get_or_head(req) || !st->root) return 1;
  char rel[PATH_MAX];
  int n = static_normalize(req->path, req->path_len, rel, sizeof rel);
  if (n == -400) return st_answer(res, 400, "Bad Request\n", miss, ud);
  if (n < 0) return 1;
  st_req *r = st_req_new(st, req, res, miss, ud, NULL);
  if (!r) return st_oom(res, miss, ud);
  int w = n ? snprintf(r->path, sizeof r->path, "%s/%s", st->root, rel) : snprintf(r->path, sizeof r->path, "%s", st->root);
  if (w < 0 || (size_t)w >= sizeof r->path) {
    st_done(r);
    return 1;
  }
  if (!(r->rel = strdup(rel))) {
    st_done(r);
    return st_oom(res, miss, ud);
  }
  r->mode = ST_PUBLIC;
  r->slash = req->path_len > 0 && req->path[req->path_len - 1] == '/';
  if (st_openat2_ok > 0 && st->root_fd) {
    st_root_refresh(st);
    r->root_fd = st->root_fd;
    r->root_fd->refs++;
    /* From the kernel's caches, on the loop: no hop to a thread for a file
     * looked up lately, and never a wait for the disk (-EAGAIN then). */
    st_prepare(r);
    if (st_resolve_at(r, r->root_fd->fd, r->rel, true, true) == 0) {
      st_resolved(r);
      return 0;
    }
  }
  return st_start(r);
}

int static_serve_file(mw_static *st, const char *abs_path, const http_req *req, http_res *res,
                      const char *cache_control, static_miss_fn miss, void *ud) {
  if (!st_get_or_head(req)) return 1;
  st_req *r = st_req_new(st, req, res, miss, ud, cache_control);
  if (!r) return st_oom(res, miss, ud);
  int w = snprintf(r->path, sizeof r->path, "%s", abs_path);
  if (w < 0 || (size_t)w >= sizeof r->path) {
    st_done(r);
    return 1;
  }
  r->mode = ST_FILE;
  return st_start(r);
}

/* Whether rel is a path res:sendFile may open: no "." or ".." segment, no
 * dotfile unless allowed, no NUL. */
static bool st_rel_ok(const char *rel, bool dotfiles) {
  const char *p = rel;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (p[0] == '.' && (n == 1 || (n == 2 && p[1] == '.') || !dotfiles)) return false;
    p += n;
  }
  return true;
}

int static_send_file(mw_static *st, const char *root, const char *rel, bool dotfiles, const char *cache_control,
                     const http_req *req, http_res *res, static_miss_fn miss, void *ud) {
  if (!st_rel_ok(rel, dotfiles)) return 1;
  while (*rel == '/') rel++;
  if (!*rel) return 1;
  st_req *r = st_req_new(st, req, res, miss, ud, cache_control);
  if (!r) return -ENOMEM;
  int w = snprintf(r->path, sizeof r->path, "%s/%s", root, rel);
  if (w < 0 || (size_t)w >= sizeof r->path) {
    st_done(r);
    return 1;
  }
  if (!(r->root = strdup(root)) || !(r->rel = strdup(rel))) {
    st_done(r);
    return -ENOMEM;
  }
  r->mode = ST_ROOTED;
  return st_start(r);
}
