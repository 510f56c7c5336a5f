/* body.c — request bodies: held in memory, spooled to a temporary file, or
 * parsed as multipart/form-data with its files written to disk. */
#include "body.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pool.h"

/* Bytes of one body waiting for the disk past which its connection stops
 * reading (one read may add up to 64 KiB more), and under which it reads
 * again. */
#define BODY_HIGH (64 * 1024)
#define BODY_LOW (32 * 1024)

/* Request body bytes in memory across all connections (one loop thread),
 * and of them those on their way to the disk. */
static size_t gauge, waiting;

size_t body_memory_held(void) { return gauge; }

/* Filesystem requests in flight, of every kind (see body_io_pending). */
static size_t io_pending;

size_t body_io_pending(void) { return io_pending; }

static const char *tmp_dir(const http_opts *opts) {
  if (opts->tmp_dir && *opts->tmp_dir) return opts->tmp_dir;
  const char *t = getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

/* ---- file work nobody waits for ---- */

static void on_bg_done(uv_fs_t *req) {
  uv_fs_req_cleanup(req);
  free(req);
  io_pending--;
}

static void bg_close(uv_loop_t *loop, int fd) {
  uv_fs_t *req = malloc(sizeof *req);
  if (!req || uv_fs_close(loop, req, fd, on_bg_done)) {
    free(req);
    close(fd);
    return;
  }
  io_pending++;
}

/* Borrows path (libuv copies it). */
static void bg_unlink(uv_loop_t *loop, const char *path) {
  uv_fs_t *req = malloc(sizeof *req);
  if (!req || uv_fs_unlink(loop, req, path, on_bg_done)) {
    free(req);
    unlink(path);
    return;
  }
  io_pending++;
}

/* ---- the spool file, as readers see it ---- */

body_file *body_file_ref(body_file *f) {
  f->refs++;
  return f;
}

void body_file_unref(body_file *f) {
  if (!f || --f->refs) return;
  if (f->fd >= 0) bg_close(f->loop, f->fd);
  free(f->loaded);
  free(f);
}

ssize_t body_file_pread(body_file *f, uint64_t off, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(f->fd, buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

struct body_read {
  uv_fs_t req;
  body_file *f;
  body_read_cb cb;
  void *ud;
  char data[];
};

static void on_read_done(uv_fs_t *req) {
  body_read *r = (body_read *)req;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  io_pending--;
  if (r->cb) r->cb(r->ud, n < 0 ? (int)n : 0, r->data, n < 0 ? 0 : (size_t)n);
  body_file_unref(r->f);
  free(r);
}

body_read *body_file_read(body_file *f, uint64_t off, size_t n, body_read_cb cb, void *ud) {
  if (off >= f->size) n = 0;
  else if (n > f->size - off) n = (size_t)(f->size - off);
  body_read *r = malloc(sizeof *r + n + 1);
  if (!r) return NULL;
  r->f = body_file_ref(f);
  r->cb = cb;
  r->ud = ud;
  uv_buf_t buf = uv_buf_init(r->data, (unsigned)n);
  if (uv_fs_read(f->loop, &r->req, f->fd, &buf, 1, (int64_t)off, on_read_done)) {
    body_file_unref(f);
    free(r);
    return NULL;
  }
  io_pending++;
  return r;
}

void body_read_cancel(body_read *r) { r->cb = NULL; }

const char *http_req_body(const http_req *req, size_t *len) {
  body_file *f = req->body_file;
  if (!f) {
    *len = req->body_len;
    return req->body ? req->body : "";
  }
  if (!f->loaded) {
    char *p = malloc(f->size + 1);
    if (!p) {
      errno = ENOMEM;
      return NULL;
    }
    ssize_t n = body_file_pread(f, 0, p, f->size);
    if (n < 0 || (uint64_t)n != f->size) {
      free(p);
      errno = n < 0 ? (int)-n : EIO;
      return NULL;
    }
    p[n] = '\0';
    f->loaded = p;
  }
  *len = f->size;
  return f->loaded;
}

/* ---- chunks: bytes on their way to the disk ---- */

/* Bytes wait for the disk in fixed-size chunks, taken from one region of
 * address space reserved at first use (1 GiB of addresses: pages are only
 * real once touched), and given back to the system in one go once no chunk
 * is in use. With chunks from malloc, a thousand uploads arriving at once
 * left 90 MB of freed but resident heap behind while the clients trickled
 * on (glibc keeps it; malloc_trim took seconds to return it), and one mmap
 * per chunk spent most of the time in TLB shootdowns at munmap. Past the
 * region, chunks come from malloc. Sanitizer builds use malloc only, so
 * that a chunk used after its end is caught. */
#define CHUNK_BYTES (64 * 1024)
#define ARENA_MAX ((size_t)1 << 30)
#define ARENA_RELEASE 16 /* chunks touched before a release is worth a system call */


typedef struct chunk {
  struct chunk *next;
  uint32_t start, end; /* the bytes still to write: data[start, end) */
  bool heap;           /* from malloc, not the region */
  char data[];
} chunk;

#define CHUNK_ROOM (CHUNK_BYTES - offsetof(chunk, data))

static struct {
  char *base;      /* NULL until first use; MAP_FAILED: none to be had */
  size_t slots;    /* chunks it holds */
  size_t bump;     /* chunks touched since the last release */
  size_t used;     /* chunks in use */
  chunk *free;     /* touched chunks not in use */
  uint64_t released; /* when the touched chunks last went back */
  bool idle;       /* none in use since the last time they could not go back */
} arena;

/* The touched chunks go back to the system once none is in use, at most
 * once a second (touching them again costs a page fault each page: during
 * a burst, the disk catching up now and then must not cost that), or when
 * the next one is needed after that second. */
static void arena_release(void) {
  uint64_t now = mw_now_ns();
  if (arena.bump < ARENA_RELEASE || now - arena.released < 1000000000ull) {
    arena.idle = true;
    return;
  }
  madvise(arena.base, arena.bump * CHUNK_BYTES, MADV_DONTNEED);
  arena.released = now;
  arena.bump = 0;
  arena.free = NULL;
  arena.idle = false;
}

static chunk *chunk_new(void) {
  chunk *c = NULL;
#if !MW_SANITIZED
  if (!arena.base) {
    size_t size = ARENA_MAX;
    arena.base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    arena.slots = arena.base == MAP_FAILED ? 0 : size / CHUNK_BYTES;
  }
  if (arena.used == 0 && arena.idle) arena_release();
  if (arena.free) {
    c = arena.free;
    arena.free = c->next;
  } else if (arena.bump < arena.slots) {
    c = (chunk *)(arena.base + arena.bump++ * CHUNK_BYTES);
  }
  if (c) {
    arena.used++;
    c->heap = false;
  }
#endif
  if (!c) {
    if (!(c = malloc(CHUNK_BYTES))) return NULL;
    c->heap = true;
  }
  c->next = NULL;
  c->start = c->end = 0;
  return c;
}

static void chunk_free(chunk *c) {
  if (c->heap) {
    free(c);
    return;
  }
  c->next = arena.free;
  arena.free = c;
  if (--arena.used == 0) arena_release();
}

typedef struct chunks {
  chunk *head, *tail;
  size_t bytes;
} chunks;

static int chunks_append(chunks *q, const char *data, size_t len) {
  while (len) {
    chunk *t = q->tail;
    if (!t || t->end == CHUNK_ROOM) {
      if (!(t = chunk_new())) return -ENOMEM;
      if (q->tail) q->tail->next = t;
      else q->head = t;
      q->tail = t;
    }
    size_t n = CHUNK_ROOM - t->end < len ? CHUNK_ROOM - t->end : len;
    memcpy(t->data + t->end, data, n);
    t->end += (uint32_t)n;
    q->bytes += n;
    data += n;
    len -= n;
  }
  return 0;
}

/* Drops n written bytes from the front. */
static void chunks_consume(chunks *q, size_t n) {
  q->bytes -= n;
  while (n) {
    chunk *h = q->head;
    size_t take = h->end - h->start < n ? h->end - h->start : n;
    h->start += (uint32_t)take;
    n -= take;
    if (h->start == h->end) {
      q->head = h->next;
      if (!q->head) q->tail = NULL;
      chunk_free(h);
    }
  }
}

static void chunks_free(chunks *q) {
  for (chunk *c = q->head, *n; c; c = n) {
    n = c->next;
    chunk_free(c);
  }
  *q = (chunks){0};
}

/* ---- the sink: spooling, multipart ---- */

/* A file the sink writes: the spool, or one uploaded file. */
typedef struct body_out {
  struct body_out *next; /* in the sink's queue */
  int fd;                /* -1 until created */
  char *path;            /* the spool's own; an upload's belongs to its part */
  chunks pend;           /* bytes waiting for the disk */
  uint64_t off;          /* where the next write goes */
  bool last;             /* every byte has come */
  bool spool;
  bool unlinked;         /* the spool's name is gone */
} body_out;

struct body_sink {
  body_sink *prev, *next; /* in receiving, while its body arrives */
  bool listed;
  http_body *b;          /* NULL once released: it then winds down and frees itself */
  uv_loop_t *loop;
  const http_opts *opts;
  uv_fs_t req;           /* the one filesystem request in flight */
  bool busy;
  chunks inflight;       /* the bytes being written */
  size_t held;           /* in pend and inflight, counted in the gauge */
  body_out *head, *tail; /* files with work left, in order */
  body_file *file;       /* the spool (NULL for multipart) */
  bool paused, ending, failed, told;
  /* multipart */
  bool multipart;
  mp_parser mp;
  http_part *parts;      /* the request's parts, in order */
  char **blocks;         /* blocks[i]: parts[i]'s strings (and a field's value) */
  int nparts, pcap;
  int cur;               /* the part being read, -1 between parts */
  body_out *cur_out;     /* its file */
  bool skip;             /* the part is dropped (a file input left empty) */
  mw_str field;          /* the value of the field being read */
  size_t nfiles, nfields;
};

/* A callback's "stop": the status is in the body already. */
#define REFUSED 1000

static int refuse(http_body *b, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(http_body *b, int status, const char *fmt, ...) {
  b->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->why, sizeof b->why, fmt, ap);
  va_end(ap);
  return BODY_FAIL;
}

/* The bodies still arriving, and whether they are all held back because
 * more than a quarter of --body-memory waits for the disk: then every
 * one of them stops reading (not only the one whose read crossed the line,
 * which would let each connection add a read's worth first), until the
 * disk has caught up to half of that. Only bytes the disk will take
 * count: bodies held in memory (at most --body-memory, see body_begin)
 * cannot hold uploads back. A quarter: with 1,000 uploads arriving at
 * once, a lower bound on what waits made the disk take them twice as fast
 * (fewer pages touched) as with all of --body-memory. */
static body_sink *receiving;
static bool throttled;

static void list_add(body_sink *s) {
  s->next = receiving;
  if (receiving) receiving->prev = s;
  receiving = s;
  s->listed = true;
}

static void list_remove(body_sink *s) {
  if (!s->listed) return;
  if (s->prev) s->prev->next = s->next;
  else receiving = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->listed = false;
}

static void hold(body_sink *s, size_t n) {
  s->held += n;
  gauge += n;
  waiting += n;
  if (throttled || waiting <= s->opts->body_memory / 4) return;
  throttled = true;
  for (body_sink *t = receiving; t; t = t->next) {
    if (t == s || t->paused) continue; /* s is told by body_feed's return */
    t->paused = true;
    t->b->ev->pause(t->b->ud);
  }
}

static void unhold(body_sink *s, size_t n) {
  s->held -= n;
  gauge -= n;
  waiting -= n;
}

/* After the disk caught up: the bodies held back read again, but for
 * except (its on_fs decides for it). */
static void unthrottle(const http_opts *opts, body_sink *except) {
  if (!throttled || waiting > opts->body_memory / 8) return;
  throttled = false;
  for (body_sink *t = receiving, *n; t; t = n) {
    n = t->next;
    if (t == except || !t->paused || t->held >= BODY_LOW) continue;
    t->paused = false;
    t->b->ev->resume(t->b->ud);
  }
}

/* A new name in the temporary directory: prefix and 16 random hex digits. */
static char *temp_name(const http_opts *opts, const char *prefix) {
  unsigned char rnd[8];
  if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL)) {
    uint64_t t = mw_now_ns() ^ (uint64_t)getpid() << 32;
    memcpy(rnd, &t, sizeof rnd);
  }
  mw_str s = {0};
  mw_str_appendf(&s, "%s/%s", tmp_dir(opts), prefix);
  for (size_t i = 0; i < sizeof rnd; i++) mw_str_appendf(&s, "%02x", rnd[i]);
  return s.p;
}

static body_out *out_new(body_sink *s, bool spool, char *path) {
  body_out *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->fd = -1;
  o->spool = spool;
  o->path = path;
  if (s->tail) s->tail->next = o;
  else s->head = o;
  s->tail = o;
  return o;
}

static void out_free(body_sink *s, body_out *o) {
  unhold(s, o->pend.bytes);
  chunks_free(&o->pend);
  if (o->spool) free(o->path);
  free(o);
}

static int out_append(body_sink *s, body_out *o, const char *data, size_t len) {
  if (chunks_append(&o->pend, data, len)) return -ENOMEM;
  hold(s, len);
  return 0;
}

static void on_fs(uv_fs_t *req);

/* Starts the next piece of disk work, unless one is in flight: create the
 * file at the head of the queue, drop the spool's name, write what waits,
 * close a finished upload. Never calls back (libuv never does at once). */
static void pump(body_sink *s) {
  while (!s->busy && s->head && !s->failed) {
    body_out *o = s->head;
    int r;
    s->req.data = s;
    if (o->fd < 0) {
      r = uv_fs_open(s->loop, &s->req, o->path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, on_fs);
    } else if (o->spool && !o->unlinked) {
      r = uv_fs_unlink(s->loop, &s->req, o->path, on_fs);
    } else if (s->inflight.bytes || o->pend.bytes) {
      if (!s->inflight.bytes) { /* what waits becomes what is written */
        s->inflight = o->pend;
        o->pend = (chunks){0};
      }
      uv_buf_t iov[16];
      unsigned n = 0;
      for (chunk *c = s->inflight.head; c && n < MW_ARRAY_LEN(iov); c = c->next)
        iov[n++] = uv_buf_init(c->data + c->start, c->end - c->start);
      r = uv_fs_write(s->loop, &s->req, o->fd, iov, n, (int64_t)o->off, on_fs);
    } else if (o->last) {
      s->head = o->next;
      if (!s->head) s->tail = NULL;
      if (o->spool) { /* the file stays open: the request reads it */
        out_free(s, o);
        continue;
      }
      int fd = o->fd;
      out_free(s, o);
      r = uv_fs_close(s->loop, &s->req, fd, on_fs);
    } else {
      return; /* waiting for more bytes */
    }
    if (r) {
      http_body *b = s->b;
      s->failed = true;
      if (b) refuse(b, 500, "the request body could not be stored: %s", uv_strerror(r));
      return;
    }
    s->busy = true;
    io_pending++;
  }
}

static bool should_pause(body_sink *s) { return s->held >= BODY_HIGH || throttled; }

static void sink_destroy(body_sink *s);

static void on_fs(uv_fs_t *req) {
  body_sink *s = req->data;
  ssize_t res = req->result;
  uv_fs_type type = req->fs_type;
  uv_fs_req_cleanup(req);
  s->busy = false;
  io_pending--;
  body_out *o = s->head;
  http_body *b = s->b;
  if (type == UV_FS_OPEN) {
    if (res >= 0) {
      o->fd = (int)res;
      if (o->spool && s->file) s->file->fd = o->fd;
    } else if (res == UV_EEXIST && b) { /* a name already taken: another one */
      char *path = temp_name(s->opts, o->spool ? "moonwire-body-" : "moonwire-upload-");
      if (path && o->spool) {
        free(o->path);
        o->path = path;
      } else if (path) { /* an upload: its part owns the name */
        for (int i = 0; i < s->nparts; i++)
          if (s->parts[i].path == o->path) s->parts[i].path = path;
        free(o->path);
        o->path = path;
      } else {
        s->failed = true;
      }
    } else {
      s->failed = true;
      if (b) {
        refuse(b, 500, "the request body could not be stored: a temporary file cannot be created in %s: %s",
               tmp_dir(s->opts), uv_strerror((int)res));
        mw_log(MW_LOG_ERROR, "%s", b->why);
      }
    }
  } else if (type == UV_FS_UNLINK) {
    o->unlinked = true; /* if it failed, the name is removed at the end instead */
    if (res == 0) {
      free(o->path);
      o->path = NULL;
    }
  } else if (type == UV_FS_WRITE) {
    if (res <= 0) {
      s->failed = true;
      if (b) {
        refuse(b, 500, "the request body could not be stored: %s", res ? uv_strerror((int)res) : "nothing written");
        mw_log(MW_LOG_ERROR, "writing a request body to %s: %s", tmp_dir(s->opts), b->why);
      }
    } else {
      o->off += (uint64_t)res;
      unhold(s, (size_t)res);
      chunks_consume(&s->inflight, (size_t)res);
    }
  }
  /* UV_FS_CLOSE: the upload was taken off the queue when it began. */
  if (!b) { /* released while this was in flight */
    const http_opts *opts = s->opts;
    sink_destroy(s);
    unthrottle(opts, NULL);
    return;
  }
  pump(s);
  unthrottle(s->opts, s);
  /* At most one event, last: the carrier may release the body in it. */
  if (s->failed) {
    if (!s->told) {
      s->told = true;
      b->ev->failed(b->ud);
    }
  } else if (s->ending) {
    if (!s->busy && !s->head && !s->told) {
      s->told = true;
      b->ev->ready(b->ud);
    }
  } else if (s->paused && s->held < BODY_LOW && !should_pause(s)) {
    s->paused = false;
    b->ev->resume(b->ud);
  }
}

/* Closes and removes everything (no request in flight), and frees s. */
static void sink_destroy(body_sink *s) {
  list_remove(s);
  for (body_out *o = s->head, *n; o; o = n) {
    n = o->next;
    if (o->fd >= 0 && !(o->spool && s->file)) bg_close(s->loop, o->fd);
    if (o->spool && o->path && o->fd >= 0) bg_unlink(s->loop, o->path);
    out_free(s, o);
  }
  unhold(s, s->inflight.bytes);
  chunks_free(&s->inflight);
  body_file_unref(s->file);
  for (int i = 0; i < s->nparts; i++) {
    if (s->parts[i].path) {
      bg_unlink(s->loop, s->parts[i].path);
      free((char *)s->parts[i].path);
    }
    free(s->blocks[i]);
  }
  free(s->parts);
  free(s->blocks);
  if (s->multipart) mp_free(&s->mp);
  mw_str_free(&s->field);
  free(s);
}

static body_sink *sink_new(http_body *b) {
  body_sink *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->b = b;
  s->loop = b->loop;
  s->opts = b->opts;
  s->cur = -1;
  b->sink = s;
  list_add(s);
  return s;
}

/* Turns b into a spooled body: the file is created, what was held in
 * memory is its first bytes. */
static int start_spool(http_body *b) {
  body_sink *s = sink_new(b);
  char *path = s ? temp_name(b->opts, "moonwire-body-") : NULL;
  body_out *o = path ? out_new(s, true, path) : NULL;
  if (o) {
    s->file = calloc(1, sizeof *s->file);
    if (s->file) {
      s->file->fd = -1;
      s->file->refs = 1;
      s->file->loop = b->loop;
    }
  }
  if (!s || !o || !s->file) {
    if (s && !o) free(path);
    return refuse(b, 500, "out of memory");
  }
  if (b->mem.len) { /* what was held in memory goes first */
    if (out_append(s, o, b->mem.p, b->mem.len)) return refuse(b, 500, "out of memory");
    gauge -= b->counted;
    b->counted = 0;
    mw_str_free(&b->mem);
  }
  return BODY_OK;
}

/* ---- multipart ---- */

static int mp_on_part(void *ud, const mp_part *p) {
  body_sink *s = ud;
  http_body *b = s->b;
  const http_opts *opts = s->opts;
  s->skip = false;
  s->cur_out = NULL;
  s->cur = -1;
  bool file = p->filename != NULL;
  if (file && p->filename_len == 0) { /* a file input left empty: browsers send filename="" */
    s->skip = true;
    return 0;
  }
  if (file && ++s->nfiles > opts->upload_max_files) {
    refuse(b, 413, "more than %zu files in the form (--upload-max-files)", opts->upload_max_files);
    return REFUSED;
  }
  if (!file && ++s->nfields > opts->upload_max_fields) {
    refuse(b, 413, "more than %zu fields in the form (--upload-max-fields)", opts->upload_max_fields);
    return REFUSED;
  }
  if (s->nparts == s->pcap) {
    int cap = s->pcap ? s->pcap * 2 : 8;
    http_part *ps = realloc(s->parts, (size_t)cap * sizeof *ps);
    if (ps) s->parts = ps;
    char **bs = ps ? realloc(s->blocks, (size_t)cap * sizeof *bs) : NULL;
    if (!bs) goto oom;
    s->blocks = bs;
    s->pcap = cap;
  }
  /* The strings in one block: name, then a file's filename and type (a
   * field's value is added at its end). */
  static const char octet[] = "application/octet-stream";
  const char *type = p->type_len ? p->type : octet;
  size_t tlen = file ? (p->type_len ? p->type_len : sizeof octet - 1) : 0;
  char *block = malloc(p->name_len + (file ? p->filename_len + tlen + 3 : 1));
  if (!block) goto oom;
  http_part *hp = &s->parts[s->nparts];
  memset(hp, 0, sizeof *hp);
  s->blocks[s->nparts] = block;
  memcpy(block, p->name, p->name_len);
  block[p->name_len] = '\0';
  hp->name = block;
  hp->name_len = p->name_len;
  if (file) {
    char *fname = block + p->name_len + 1;
    memcpy(fname, p->filename, p->filename_len);
    fname[p->filename_len] = '\0';
    char *t = fname + p->filename_len + 1;
    memcpy(t, type, tlen);
    t[tlen] = '\0';
    hp->filename = fname;
    hp->filename_len = p->filename_len;
    hp->type = t;
    hp->type_len = tlen;
    char *path = temp_name(opts, "moonwire-upload-");
    body_out *o = path ? out_new(s, false, path) : NULL;
    if (!o) {
      free(path);
      free(block);
      goto oom;
    }
    hp->path = path;
    s->cur_out = o;
  }
  s->cur = s->nparts++;
  mw_str_reset(&s->field);
  return 0;
oom:
  refuse(b, 500, "out of memory");
  return REFUSED;
}

static int mp_on_data(void *ud, const char *data, size_t len) {
  body_sink *s = ud;
  http_body *b = s->b;
  if (s->skip || s->cur < 0) return 0;
  http_part *hp = &s->parts[s->cur];
  if (s->cur_out) {
    size_t max = s->opts->upload_max_file_size;
    if (max && hp->size + len > max) {
      refuse(b, 413, "the file in field '%.*s' is over %zu bytes (--upload-max-file-size)", (int)hp->name_len,
             hp->name, max);
      return REFUSED;
    }
    hp->size += len;
    if (out_append(s, s->cur_out, data, len)) {
      refuse(b, 500, "out of memory");
      return REFUSED;
    }
    return 0;
  }
  if (s->field.len + len > s->opts->upload_max_field_size) {
    refuse(b, 413, "field '%.*s' is over %zu bytes (--upload-max-field-size)", (int)hp->name_len, hp->name,
           s->opts->upload_max_field_size);
    return REFUSED;
  }
  if (mw_str_append(&s->field, data, len)) {
    refuse(b, 500, "out of memory");
    return REFUSED;
  }
  return 0;
}

static int mp_on_part_end(void *ud) {
  body_sink *s = ud;
  if (s->skip || s->cur < 0) return 0;
  http_part *hp = &s->parts[s->cur];
  if (s->cur_out) {
    s->cur_out->last = true;
  } else {
    /* The value goes into the part's block, after the name. */
    size_t used = hp->name_len + 1;
    char *block = realloc(s->blocks[s->cur], used + s->field.len + 1);
    if (!block) {
      refuse(s->b, 500, "out of memory");
      return REFUSED;
    }
    s->blocks[s->cur] = block;
    hp->name = block;
    if (s->field.len) memcpy(block + used, s->field.p, s->field.len);
    block[used + s->field.len] = '\0';
    hp->value = block + used;
    hp->value_len = s->field.len;
  }
  s->cur = -1;
  s->cur_out = NULL;
  return 0;
}

static const mp_callbacks mp_cb = {mp_on_part, mp_on_data, mp_on_part_end};

/* ---- the body ---- */

int body_begin(http_body *b, uv_loop_t *loop, const http_opts *opts, const http_req *req, int64_t length,
               const body_events *ev, void *ud) {
  b->len = 0;
  b->counted = 0;
  b->sink = NULL;
  b->opts = opts;
  b->loop = loop;
  b->ev = ev;
  b->ud = ud;
  b->status = 0;
  b->why[0] = '\0';
  mw_str_reset(&b->mem);
  if (length > 0 && (uint64_t)length > opts->max_body)
    return refuse(b, 413, "the body is over %zu bytes (--max-body)", opts->max_body);
  if (length == 0) return BODY_OK;
  size_t ctlen = 0;
  const char *ct = http_req_header(req, "content-type", &ctlen);
  if (ct && mp_is_form_data(ct, ctlen)) {
    const char *bnd;
    size_t blen;
    if (mp_boundary(ct, ctlen, &bnd, &blen))
      return refuse(b, 400, "multipart/form-data without a valid boundary parameter in its Content-Type");
    body_sink *s = sink_new(b);
    if (!s) return refuse(b, 500, "out of memory");
    s->multipart = true;
    mp_init(&s->mp, bnd, blen, opts->upload_max_part_header, &mp_cb, s);
    return BODY_OK;
  }
  /* Known to be larger than the buffer, or no room left in memory: to
   * disk from the first byte (as nginx does). */
  if (length > 0 && ((uint64_t)length > opts->body_buffer || gauge + (uint64_t)length > opts->body_memory))
    return start_spool(b);
  return BODY_OK;
}

int body_feed(http_body *b, const char *data, size_t len) {
  if (b->status) return BODY_FAIL;
  if (b->len + len > b->opts->max_body) return refuse(b, 413, "the body is over %zu bytes (--max-body)", b->opts->max_body);
  b->len += len;
  body_sink *s = b->sink;
  if (!s) {
    if (b->mem.len + len <= b->opts->body_buffer && gauge + len <= b->opts->body_memory) {
      if (mw_str_append(&b->mem, data, len)) return refuse(b, 500, "out of memory");
      b->counted += len;
      gauge += len;
      return BODY_OK;
    }
    if (start_spool(b)) return BODY_FAIL;
    s = b->sink;
  }
  if (s->failed) return BODY_FAIL;
  if (s->multipart) {
    int r = mp_feed(&s->mp, data, len);
    if (r == REFUSED) return BODY_FAIL;
    if (r == MP_EHEADER)
      return refuse(b, 413, "a part's headers are over %zu bytes (--upload-max-part-header)",
                    b->opts->upload_max_part_header);
    if (r == MP_ENOMEM) return refuse(b, 500, "out of memory");
    if (r) return refuse(b, 400, "malformed multipart/form-data body");
  } else if (out_append(s, s->tail, data, len)) {
    return refuse(b, 500, "out of memory");
  }
  pump(s);
  if (s->failed) return BODY_FAIL;
  if (should_pause(s)) {
    s->paused = true;
    return BODY_WAIT;
  }
  return BODY_OK;
}

int body_end(http_body *b) {
  if (b->status) return BODY_FAIL;
  body_sink *s = b->sink;
  if (!s) return BODY_OK;
  if (s->failed) return BODY_FAIL;
  if (s->multipart) {
    int r = mp_finish(&s->mp);
    if (r == MP_EUNTERMINATED) return refuse(b, 400, "the multipart/form-data body ends before its closing boundary");
    if (r) return refuse(b, 400, "malformed multipart/form-data body");
  } else {
    s->tail->last = true;
  }
  s->ending = true;
  s->paused = false;
  list_remove(s);
  pump(s);
  if (s->failed) return BODY_FAIL;
  if (s->busy || s->head) return BODY_WAIT;
  s->told = true;
  return BODY_OK;
}

void body_fill(http_body *b, http_req *req) {
  body_sink *s = b->sink;
  req->body_file = NULL;
  req->parts = NULL;
  req->nparts = 0;
  req->multipart = false;
  if (!s) {
    req->body = b->mem.p ? b->mem.p : "";
    req->body_len = b->mem.len;
  } else if (s->multipart) {
    req->body = "";
    req->body_len = 0;
    req->multipart = true;
    req->nparts = s->nparts;
    req->parts = s->parts;
  } else {
    s->file->size = b->len;
    req->body = NULL;
    req->body_len = b->len;
    req->body_file = s->file;
  }
}

void body_release(http_body *b) {
  gauge -= b->counted;
  b->counted = 0;
  mw_str_reset(&b->mem);
  body_sink *s = b->sink;
  b->sink = NULL;
  if (!s) return;
  list_remove(s);
  s->b = NULL;
  const http_opts *opts = s->opts;
  if (!s->busy) sink_destroy(s);
  unthrottle(opts, NULL); /* what it held is gone */
}

void body_dispose(http_body *b) {
  body_release(b);
  mw_str_free(&b->mem);
}
