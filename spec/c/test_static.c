/* test_static.c — static files: path normalisation, content types, and
 * static_serve on a temporary public directory, responses captured through
 * an http_carrier. */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "check.h"

/* ---- static_normalize ---- */

static void check_norm(int line, const char *in, size_t len, size_t cap, int want, const char *want_out) {
  char out[8192];
  memset(out, 'X', sizeof out);
  int got = static_normalize(in, len, out, cap);
  bool ok = got == want && (want < 0 || (strcmp(out, want_out) == 0 && (size_t)got == strlen(want_out)));
  if (!ok) {
    fprintf(stderr, "%s:%d: static_normalize(\"%.*s\") = %d \"%s\", want %d \"%s\"\n", __FILE__, line,
            (int)(len > 200 ? 200 : len), in, got, got >= 0 ? out : "", want, want_out ? want_out : "");
    exit(1);
  }
  passed++;
}
#define NORM(in, want, out) check_norm(__LINE__, in, strlen(in), 4096, want, out)
#define NORM_OK(in, out) NORM(in, (int)strlen(out), out)

static void test_normalize(void) {
  NORM_OK("/", "");
  NORM_OK("//", "");
  NORM_OK("/a/b.css", "a/b.css");
  NORM_OK("/a//b", "a/b");
  NORM_OK("/a/./b", "a/b");
  NORM_OK("/./a/.", "a");
  NORM_OK("/a/../b", "b");
  NORM_OK("/a/b/..", "a");
  NORM_OK("/a/b/../", "a");
  NORM_OK("/a/b/../../", "");
  NORM_OK("/a/b/c/../../d", "a/d");
  NORM_OK("/a/%2e%2e/b", "b");
  NORM_OK("/%2e/a", "a");
  NORM_OK("/dir/", "dir");
  NORM_OK("/caf%C3%A9.txt", "caf\xC3\xA9.txt");
  NORM_OK("/%41%62c", "Abc");
  NORM_OK("/a%20b", "a b");
  NORM_OK("/a.b/c..d/e.", "a.b/c..d/e.");
  NORM_OK("/x%25y", "x%y"); /* decoded once only */
  NORM_OK("/%252e%252e/x", "%2e%2e/x");

  NORM("/..", -404, NULL);
  NORM("/../", -404, NULL);
  NORM("/../etc/passwd", -404, NULL);
  NORM("/a/../../etc/passwd", -404, NULL);
  NORM("/a/b/../../..", -404, NULL);
  NORM("/%2e%2e/%2e%2e/etc/passwd", -404, NULL);
  NORM("/%2E%2E/x", -404, NULL);
  NORM("/.%2e/x", -404, NULL);
  NORM("/a/%2e%2e/%2e%2e/x", -404, NULL);
  NORM("/a%2fb", -404, NULL);
  NORM("/a%2Fb", -404, NULL);
  NORM("/a/%2f/b", -404, NULL);
  NORM("/a\\b", -404, NULL);
  NORM("/a%5cb", -404, NULL);
  NORM("/..\\x", -404, NULL);
  NORM("/.env", -404, NULL);
  NORM("/%2eenv", -404, NULL);
  NORM("/a/.git/config", -404, NULL);
  NORM("/a/...", -404, NULL);
  NORM("/.well-known/x", -404, NULL);

  NORM("/%00", -400, NULL);
  NORM("/a%zz", -400, NULL);
  NORM("/a%4", -400, NULL);
  NORM("/a%", -400, NULL);
  NORM("/a%g0", -400, NULL);
  NORM("/%%41", -400, NULL);
  NORM("a/b", -400, NULL);
  NORM("", -400, NULL);
  NORM("/../%zz", -400, NULL); /* malformed wins, wherever it is */
  NORM("/.env%zz", -400, NULL);
  check_norm(__LINE__, "/a\0b", 4, 4096, -400, NULL); /* a raw NUL */

  /* Sizes: the NUL terminator counts. */
  check_norm(__LINE__, "/abc", 4, 4, 3, "abc");
  check_norm(__LINE__, "/abc", 4, 3, -414, NULL);
  check_norm(__LINE__, "/a/b", 4, 4, 3, "a/b");
  check_norm(__LINE__, "/a/b", 4, 3, -414, NULL);
  check_norm(__LINE__, "/", 1, 1, 0, "");
  check_norm(__LINE__, "/", 1, 0, -414, NULL);
  {
    static char big[6000];
    big[0] = '/';
    memset(big + 1, 'a', sizeof big - 2);
    check_norm(__LINE__, big, sizeof big - 1, 4096, -414, NULL);
    check_norm(__LINE__, big, sizeof big - 1, 8192, (int)sizeof big - 2, big + 1);
    /* 1000 short segments, normalised back down */
    char deep[4200];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "/d/.");
    snprintf(deep + n, sizeof deep - n, "/f");
    char want[2100];
    size_t m = 0;
    for (int i = 0; i < 1000; i++) m += (size_t)snprintf(want + m, sizeof want - m, "d/");
    snprintf(want + m, sizeof want - m, "f");
    NORM_OK(deep, want);
    /* a long encoded path: each %xx becomes one byte */
    char enc[3 * 1500 + 2];
    n = 0;
    enc[n++] = '/';
    for (int i = 0; i < 1500; i++) n += (size_t)snprintf(enc + n, sizeof enc - n, "%%62");
    char dec[1501];
    memset(dec, 'b', 1500);
    dec[1500] = '\0';
    NORM_OK(enc, dec);
  }
}

/* ---- static_mime ---- */

static const char *mime(const char *name) { return static_mime(name, strlen(name)); }

static void test_mime(void) {
  CHECK(strcmp(mime("index.html"), "text/html; charset=utf-8") == 0);
  CHECK(strcmp(mime("INDEX.HTM"), "text/html; charset=utf-8") == 0);
  CHECK(strcmp(mime("a/b/site.css"), "text/css; charset=utf-8") == 0);
  CHECK(strcmp(mime("app.js"), "text/javascript; charset=utf-8") == 0);
  CHECK(strcmp(mime("mod.mjs"), "text/javascript; charset=utf-8") == 0);
  CHECK(strcmp(mime("data.json"), "application/json") == 0);
  CHECK(strcmp(mime("app.js.map"), "application/json") == 0);
  CHECK(strcmp(mime("readme.txt"), "text/plain; charset=utf-8") == 0);
  CHECK(strcmp(mime("logo.svg"), "image/svg+xml") == 0);
  CHECK(strcmp(mime("a.png"), "image/png") == 0);
  CHECK(strcmp(mime("a.jpg"), "image/jpeg") == 0);
  CHECK(strcmp(mime("a.JPEG"), "image/jpeg") == 0);
  CHECK(strcmp(mime("a.gif"), "image/gif") == 0);
  CHECK(strcmp(mime("a.webp"), "image/webp") == 0);
  CHECK(strcmp(mime("favicon.ico"), "image/vnd.microsoft.icon") == 0);
  CHECK(strcmp(mime("f.woff"), "font/woff") == 0);
  CHECK(strcmp(mime("f.woff2"), "font/woff2") == 0);
  CHECK(strcmp(mime("f.ttf"), "font/ttf") == 0);
  CHECK(strcmp(mime("f.otf"), "font/otf") == 0);
  CHECK(strcmp(mime("s.mp3"), "audio/mpeg") == 0);
  CHECK(strcmp(mime("v.mp4"), "video/mp4") == 0);
  CHECK(strcmp(mime("v.webm"), "video/webm") == 0);
  CHECK(strcmp(mime("m.wasm"), "application/wasm") == 0);
  CHECK(strcmp(mime("d.pdf"), "application/pdf") == 0);
  CHECK(strcmp(mime("feed.xml"), "application/xml") == 0);
  CHECK(strcmp(mime("t.csv"), "text/csv; charset=utf-8") == 0);
  CHECK(strcmp(mime("README.md"), "text/markdown; charset=utf-8") == 0);
  CHECK(strcmp(mime("Makefile"), "application/octet-stream") == 0);
  CHECK(strcmp(mime("a.tar.gz"), "application/gzip") == 0);
  /* from /etc/mime.types (Debian's media-types), charset on text types */
  bool from_file = false;
  CHECK(static_mime_count(&from_file) > 1000 && from_file);
  CHECK(strcmp(mime("a.avif"), "image/avif") == 0);
  CHECK(strcmp(mime("a.ogg"), "audio/ogg") == 0);
  CHECK(strcmp(mime("a.zip"), "application/zip") == 0);
  CHECK(strcmp(mime("site.webmanifest"), "application/manifest+json") == 0);
  CHECK(strcmp(mime("a.apng"), "image/apng") == 0);
  CHECK(strcmp(mime("a.wav"), "audio/x-wav") == 0);
  CHECK(strcmp(mime("a.jsonld"), "application/ld+json") == 0);
  CHECK(strcmp(mime("a.AVIF"), "image/avif") == 0);
  CHECK(strcmp(mime("notes.srt"), "text/plain; charset=utf-8") == 0);
  CHECK(strcmp(mime("a.xhtml"), "application/xhtml+xml") == 0);
  CHECK(strcmp(mime("a.averyveryveryveryveryverylongextension"), "application/octet-stream") == 0);
  CHECK(strcmp(mime("x."), "application/octet-stream") == 0);
  CHECK(strcmp(mime("dir.html/file"), "application/octet-stream") == 0);
  CHECK(strcmp(mime("a.htmlx"), "application/octet-stream") == 0);
  CHECK(strcmp(mime(""), "application/octet-stream") == 0);
  CHECK(strcmp(static_mime("a.css.js", 5), "text/css; charset=utf-8") == 0); /* len respected */
}

/* ---- static_serve ---- */

/* One captured response: the head as an HTTP/1 carrier would write it, the
 * body as it came. */
typedef struct capture {
  int calls, ends, misses, miss_rc, told;
  int rc;
  char head[4096];
  mw_buf *body; /* the buffer of a body sent in one piece, else NULL */
  mw_str all;   /* every body byte */
  bool pieces;  /* the body came in pieces */
} capture;

static void cap_head(http_res *res, const char *ibody, size_t ilen) {
  capture *c = res->carrier_data;
  c->calls++;
  bool bodiless = res->status < 200 || res->status == 204 || res->status == 304;
  char len[64] = "";
  if (!bodiless && res->body_len >= 0) snprintf(len, sizeof len, "Content-Length: %lld\r\n", (long long)res->body_len);
  snprintf(c->head, sizeof c->head, "HTTP/1.1 %d %s\r\n%s%s\r\n", res->status, http_status_text(res->status),
           res->hbuf.p ? res->hbuf.p : "", len);
  if (ilen) {
    mw_str_append(&c->all, ibody, ilen);
    c->body = mw_buf_from(ibody, ilen);
  }
}

static void cap_body(http_res *res, mw_buf *buf, size_t off, size_t len) {
  capture *c = res->carrier_data;
  mw_str_append(&c->all, buf->data + off, len);
  if (!c->body && !c->pieces && off == 0 && len == buf->len) {
    c->body = buf;
    return;
  }
  c->pieces = true;
  mw_buf_unref(c->body);
  c->body = NULL;
  mw_buf_unref(buf);
}

static void cap_end(http_res *res) {
  capture *c = res->carrier_data;
  c->ends++;
}

static size_t cap_queued(const http_res *res) { return 0; }

static const http_carrier cap_carrier = {cap_head, cap_body, cap_end, cap_queued};

static void cap_free(capture *c) {
  mw_buf_unref(c->body);
  mw_str_free(&c->all);
  memset(c, 0, sizeof *c);
}

static int cap_status(const capture *c) {
  int st = 0;
  if (sscanf(c->head, "HTTP/1.%*d %d", &st) != 1) return -1;
  return st;
}

/* The value of header name in the captured head, or "" (static buffer). */
static const char *cap_header(const capture *c, const char *name) {
  static char val[512];
  val[0] = '\0';
  size_t nlen = strlen(name);
  for (const char *p = strstr(c->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
      const char *v = line + nlen + 1;
      while (*v == ' ') v++;
      const char *end = strstr(v, "\r\n");
      snprintf(val, sizeof val, "%.*s", (int)(end - v), v);
      return val;
    }
  }
  return val;
}

static bool cap_body_is(const capture *c, const char *want) {
  return c->ends == 1 && c->all.len == strlen(want) && memcmp(c->all.p ? c->all.p : "", want, c->all.len) == 0;
}

/* Runs one request (method, url and up to three headers) through static.c,
 * with the loop running until it is answered or found not to be ours. */
typedef struct call {
  mw_static *st;
  const char *file; /* static_serve_file when set */
  const char *cache_control;
  size_t compress_min; /* 0: no compression */
  const char *root, *rel; /* static_send_file when set */
  bool dotfiles;
} call;

static uv_loop_t *loop;

static void on_miss(void *ud, const http_req *req, http_res *res, int rc) {
  (void)req, (void)res;
  capture *c = ud;
  if (rc == 0) { /* static_send_file: answered */
    c->told++;
    return;
  }
  c->misses++;
  c->miss_rc = rc;
}

static int request3(call how, const char *method, const char *url, const char *h1, const char *v1, const char *h2,
                    const char *v2, const char *h3, const char *v3, capture *cap) {
  cap_free(cap); /* the previous response, if still held */
  http_header hs[3];
  int nh = 0;
  if (h1) hs[nh++] = (http_header){h1, strlen(h1), v1, strlen(v1)};
  if (h2) hs[nh++] = (http_header){h2, strlen(h2), v2, strlen(v2)};
  if (h3) hs[nh++] = (http_header){h3, strlen(h3), v3, strlen(v3)};
  const char *q = strchr(url, '?');
  http_req req = {
      .method = method,
      .method_id = strcmp(method, "HEAD") == 0 ? HTTP_HEAD : strcmp(method, "GET") == 0 ? HTTP_GET : HTTP_POST,
      .url = url,
      .url_len = strlen(url),
      .path = url,
      .path_len = q ? (size_t)(q - url) : strlen(url),
      .query = q ? q + 1 : "",
      .query_len = q ? strlen(q + 1) : 0,
      .headers = hs,
      .nheaders = nh,
      .body = "",
      .http_major = 1,
      .http_minor = 1,
      .keep_alive = true,
      .remote_addr = "127.0.0.1",
  };
  http_res res;
  http_res_init(&res, &req, &cap_carrier, cap);
  res.compress_min = how.compress_min;
  int rc = how.rel    ? static_send_file(how.st, how.root, how.rel, how.dotfiles, how.cache_control, &req, &res,
                                         on_miss, cap)
           : how.file ? static_serve_file(how.st, how.file, &req, &res, how.cache_control, on_miss, cap)
                      : static_serve(how.st, &req, &res, on_miss, cap);
  if (rc == 0) {
    while (!cap->ends && !cap->misses) uv_run(loop, UV_RUN_ONCE);
    if (cap->misses) rc = cap->miss_rc;
  }
  CHECK(cap->misses <= 1 && cap->ends <= 1);
  CHECK(rc != 0 || cap->told == 1); /* the caller hears of the answer, once */
  /* "not ours" must leave the response untouched for the caller */
  if (rc == 1) CHECK(!res.done && res.nfields == 0 && cap->calls == 0);
  if (rc == 0) CHECK(res.done && cap->calls == 1 && cap->ends == 1);
  http_res_dispose(&res);
  cap->rc = rc;
  return rc;
}

static int request(call how, const char *method, const char *url, const char *h1, const char *v1, const char *h2,
                   const char *v2, capture *cap) {
  return request3(how, method, url, h1, v1, h2, v2, NULL, NULL, cap);
}

#define GET(st, url, cap) request((call){.st = st}, "GET", url, NULL, NULL, NULL, NULL, cap)
#define GET_H(st, url, h, v, cap) request((call){.st = st}, "GET", url, h, v, NULL, NULL, cap)

static char tmp[64];

static void put(const char *rel, const char *content) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  FILE *f = fopen(p, "w");
  CHECK(f != NULL);
  CHECK(fwrite(content, 1, strlen(content), f) == strlen(content));
  CHECK(fclose(f) == 0);
}

/* Sets a file's mtime to t seconds (and nsec) since the epoch. */
static void set_mtime(const char *rel, time_t t, long nsec) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  struct timespec ts[2] = {{t, nsec}, {t, nsec}};
  CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
}

static void mk(const char *rel) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  CHECK(mkdir(p, 0755) == 0);
}

static void remove_rel(const char *rel) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  CHECK(remove(p) == 0);
}

static void link_to(const char *target, const char *rel) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  CHECK(symlink(target, p) == 0);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* ---- Range, preconditions, compression, sendFile ---- */

static void check_range(int line, const char *v, uint64_t size, int want, uint64_t a, uint64_t b) {
  uint64_t s = 99, e = 99;
  int got = static_range(v, strlen(v), size, &s, &e);
  if (got != want || (want == STATIC_RANGE_PART && (s != a || e != b))) {
    fprintf(stderr, "%s:%d: static_range(\"%s\", %ju) = %d [%ju, %ju), want %d [%ju, %ju)\n", __FILE__, line, v,
            (uintmax_t)size, got, (uintmax_t)s, (uintmax_t)e, want, (uintmax_t)a, (uintmax_t)b);
    exit(1);
  }
  passed++;
}
#define RANGE(v, size, want, a, b) check_range(__LINE__, v, size, STATIC_RANGE_##want, a, b)

static void test_range_parser(void) {
  RANGE("bytes=0-99", 1000, PART, 0, 100);
  RANGE("bytes=100-", 1000, PART, 100, 1000);
  RANGE("bytes=-100", 1000, PART, 900, 1000);
  RANGE("bytes=-2000", 1000, PART, 0, 1000); /* more than there is: all of it */
  RANGE("bytes=500-5000", 1000, PART, 500, 1000); /* clamped */
  RANGE("bytes=999-999", 1000, PART, 999, 1000);
  RANGE("Bytes = 0-0", 1000, PART, 0, 1);
  RANGE("bytes=0-0,1-1,2-9", 1000, PART, 0, 10); /* adjacent: merged */
  RANGE("bytes=0-50, 20-99", 1000, PART, 0, 100); /* overlapping: merged */
  RANGE("bytes=2000-, 0-9", 1000, PART, 0, 10); /* the unsatisfiable one dropped */
  RANGE("bytes=0-9,20-29", 1000, WHOLE, 0, 0); /* two parts: the whole file (no multipart) */
  RANGE("bytes=1000-", 1000, NONE, 0, 0);
  RANGE("bytes=5000-6000", 1000, NONE, 0, 0);
  RANGE("bytes=-0", 1000, NONE, 0, 0);
  RANGE("bytes=0-", 0, NONE, 0, 0); /* an empty file has no byte to give */
  RANGE("bytes=5-4", 1000, WHOLE, 0, 0); /* invalid: ignored */
  RANGE("bytes=", 1000, WHOLE, 0, 0);
  RANGE("bytes=a-b", 1000, WHOLE, 0, 0);
  RANGE("bytes=0-9;x", 1000, WHOLE, 0, 0);
  RANGE("items=0-9", 1000, WHOLE, 0, 0);
  RANGE("bytes 0-9", 1000, WHOLE, 0, 0);
  RANGE("bytes=-", 1000, WHOLE, 0, 0);
  RANGE("bytes=99999999999999999999-", 1000, WHOLE, 0, 0); /* past 18 digits: refused, not wrapped */
  RANGE("bytes=0-99999999999999999999", 1000, WHOLE, 0, 0);
  char many[1024] = "bytes=";
  for (int i = 0; i < 70; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%d-%d,", i, i);
  RANGE(many, 1000, WHOLE, 0, 0); /* over 64 ranges: the whole file */
}

static void test_ranges_and_preconditions(mw_static *st, time_t old) {
  capture c = {0};
  put("public/digits.txt", "0123456789");
  set_mtime("public/digits.txt", old, 5);
  CHECK(GET(st, "/digits.txt", &c) == 0 && cap_status(&c) == 200);
  CHECK(strcmp(cap_header(&c, "Accept-Ranges"), "bytes") == 0);
  char etag[128], lastmod[64];
  snprintf(etag, sizeof etag, "%s", cap_header(&c, "ETag"));
  snprintf(lastmod, sizeof lastmod, "%s", cap_header(&c, "Last-Modified"));

  /* 206 from the cached file, 416, a malformed range ignored */
  CHECK(GET_H(st, "/digits.txt", "Range", "bytes=2-4", &c) == 0 && cap_status(&c) == 206 && cap_body_is(&c, "234"));
  CHECK(strcmp(cap_header(&c, "Content-Range"), "bytes 2-4/10") == 0);
  CHECK(strcmp(cap_header(&c, "Content-Length"), "3") == 0);
  CHECK(GET_H(st, "/digits.txt", "Range", "bytes=-3", &c) == 0 && cap_status(&c) == 206 && cap_body_is(&c, "789"));
  CHECK(GET_H(st, "/digits.txt", "Range", "bytes=10-", &c) == 0 && cap_status(&c) == 416);
  CHECK(strcmp(cap_header(&c, "Content-Range"), "bytes */10") == 0);
  CHECK(GET_H(st, "/digits.txt", "Range", "bytes=4-2", &c) == 0 && cap_status(&c) == 200 &&
        cap_body_is(&c, "0123456789"));
  CHECK(GET_H(st, "/digits.txt", "Range", "bytes=0-1,5-6", &c) == 0 && cap_status(&c) == 200);
  /* HEAD with a Range: the same head, no body */
  CHECK(request((call){.st = st}, "HEAD", "/digits.txt", "Range", "bytes=2-4", NULL, NULL, &c) == 0);
  CHECK(cap_status(&c) == 200 && c.all.len == 0); /* Range is for GET */

  /* If-Range: the tag or the date the client has, else the whole file */
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "Range", "bytes=0-0", "If-Range", etag, &c) == 0);
  CHECK(cap_status(&c) == 206 && cap_body_is(&c, "0"));
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "Range", "bytes=0-0", "If-Range", lastmod, &c) == 0);
  CHECK(cap_status(&c) == 206);
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "Range", "bytes=0-0", "If-Range", "W/\"1-2\"", &c) == 0);
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "0123456789"));
  char date[32];
  http_date((int64_t)old - 10, date);
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "Range", "bytes=0-0", "If-Range", date, &c) == 0);
  CHECK(cap_status(&c) == 200);

  /* 412: If-Match that fails, or If-Unmodified-Since before the change */
  CHECK(GET_H(st, "/digits.txt", "If-Match", "\"nope\"", &c) == 0 && cap_status(&c) == 412);
  CHECK(GET_H(st, "/digits.txt", "If-Match", etag, &c) == 0 && cap_status(&c) == 200);
  CHECK(GET_H(st, "/digits.txt", "If-Match", "*", &c) == 0 && cap_status(&c) == 200);
  CHECK(GET_H(st, "/digits.txt", "If-Unmodified-Since", date, &c) == 0 && cap_status(&c) == 412);
  CHECK(GET_H(st, "/digits.txt", "If-Unmodified-Since", lastmod, &c) == 0 && cap_status(&c) == 200);
  CHECK(GET_H(st, "/digits.txt", "If-Unmodified-Since", "garbage", &c) == 0 && cap_status(&c) == 200);
  /* RFC 9110's order: If-Match wins over If-Unmodified-Since; 412 before 304 */
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "If-Match", etag, "If-Unmodified-Since", date, &c) == 0);
  CHECK(cap_status(&c) == 200);
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "If-Match", "\"nope\"", "If-None-Match", etag, &c) == 0);
  CHECK(cap_status(&c) == 412);
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "If-Match", etag, "If-None-Match", etag, &c) == 0);
  CHECK(cap_status(&c) == 304);
  /* a precondition is checked before the Range */
  CHECK(request((call){.st = st}, "GET", "/digits.txt", "If-Match", "\"nope\"", "Range", "bytes=0-1", &c) == 0);
  CHECK(cap_status(&c) == 412);
  cap_free(&c);
}

/* Inflates a gzip body; true when it gives want. */
static bool gunzip_is(const capture *c, const char *want, size_t wlen) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return false;
  char *out = malloc(wlen + 16);
  z.next_in = (Bytef *)c->all.p;
  z.avail_in = (uInt)c->all.len;
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)(wlen + 16);
  int r = inflate(&z, Z_FINISH);
  bool ok = r == Z_STREAM_END && z.total_out == wlen && memcmp(out, want, wlen) == 0;
  inflateEnd(&z);
  free(out);
  return ok;
}

static void test_compression(mw_static *st, time_t old) {
  capture c = {0};
  call z = {.st = st, .compress_min = 1024};
  size_t n = 20000;
  char *text = malloc(n + 1);
  for (size_t i = 0; i < n; i++) text[i] = "moonwire serves compressed text\n"[i % 32];
  text[n] = '\0';
  put("public/app.js", text);
  set_mtime("public/app.js", old, 0);

  /* gzip when asked, compressed once: the same buffer the second time */
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip", NULL, NULL, &c) == 0 && cap_status(&c) == 200);
  CHECK(strcmp(cap_header(&c, "Content-Encoding"), "gzip") == 0);
  CHECK(strcmp(cap_header(&c, "Vary"), "Accept-Encoding") == 0);
  CHECK(c.all.len < n / 10 && gunzip_is(&c, text, n));
  char gztag[128];
  snprintf(gztag, sizeof gztag, "%s", cap_header(&c, "ETag"));
  CHECK(strstr(gztag, "-gz\"") != NULL);
  mw_buf *first = c.body;
  c.body = NULL;
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip, deflate", NULL, NULL, &c) == 0);
  CHECK(c.body == first && gunzip_is(&c, text, n));
  mw_buf_unref(first);
  /* brotli preferred when both are accepted */
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip, deflate, br", NULL, NULL, &c) == 0);
  CHECK(strcmp(cap_header(&c, "Content-Encoding"), "br") == 0 && c.all.len < n / 10);
  CHECK(strstr(cap_header(&c, "ETag"), "-br\"") != NULL);
  /* not accepted, q=0, or no compression: as it is, still with Vary */
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "identity", NULL, NULL, &c) == 0 && cap_body_is(&c, text));
  CHECK(cap_header(&c, "Content-Encoding")[0] == '\0' && strcmp(cap_header(&c, "Vary"), "Accept-Encoding") == 0);
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip;q=0, br;q=0", NULL, NULL, &c) == 0);
  CHECK(cap_body_is(&c, text));
  CHECK(request((call){.st = st}, "GET", "/app.js", "Accept-Encoding", "gzip", NULL, NULL, &c) == 0);
  CHECK(cap_body_is(&c, text) && cap_header(&c, "Vary")[0] == '\0');
  /* a Range is answered from the file as it is */
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip", "Range", "bytes=0-8", &c) == 0);
  CHECK(cap_status(&c) == 206 && cap_body_is(&c, "moonwire ") && cap_header(&c, "Content-Encoding")[0] == '\0');
  /* 304 for the compressed variant's tag, with that tag */
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip", "If-None-Match", gztag, &c) == 0);
  CHECK(cap_status(&c) == 304 && strcmp(cap_header(&c, "ETag"), gztag) == 0);
  /* HEAD describes the cached variant */
  CHECK(request(z, "HEAD", "/app.js", "Accept-Encoding", "gzip", NULL, NULL, &c) == 0);
  CHECK(strcmp(cap_header(&c, "Content-Encoding"), "gzip") == 0 && c.all.len == 0);
  /* small or not text: never compressed */
  put("public/tiny.js", "x()");
  set_mtime("public/tiny.js", old, 0);
  CHECK(request(z, "GET", "/tiny.js", "Accept-Encoding", "gzip", NULL, NULL, &c) == 0 && cap_body_is(&c, "x()"));
  put("public/photo.png", text);
  set_mtime("public/photo.png", old, 0);
  CHECK(request(z, "GET", "/photo.png", "Accept-Encoding", "gzip", NULL, NULL, &c) == 0 && cap_body_is(&c, text));
  CHECK(cap_header(&c, "Vary")[0] == '\0');
  /* incompressible text: sent as it is, and that is remembered */
  char *noise = malloc(4001);
  uint32_t x = 12345;
  for (int i = 0; i < 4000; i++) {
    x = x * 1103515245u + 12345u;
    noise[i] = (char)(1 + (x >> 16) % 255);
  }
  noise[4000] = '\0';
  put("public/noise.txt", noise);
  set_mtime("public/noise.txt", old, 0);
  for (int i = 0; i < 2; i++) {
    CHECK(request(z, "GET", "/noise.txt", "Accept-Encoding", "br", NULL, NULL, &c) == 0 && cap_body_is(&c, noise));
    CHECK(cap_header(&c, "Content-Encoding")[0] == '\0' && strstr(cap_header(&c, "ETag"), "-br") == NULL);
  }
  free(noise);

  /* precompressed twins: served when present and not older than the file */
  put("public/app.js.gz", "GZTWIN");
  set_mtime("public/app.js.gz", old + 10, 0);
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip", NULL, NULL, &c) == 0 && cap_body_is(&c, "GZTWIN"));
  CHECK(strcmp(cap_header(&c, "Content-Encoding"), "gzip") == 0);
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/javascript; charset=utf-8") == 0);
  CHECK(strcmp(cap_header(&c, "Content-Length"), "6") == 0);
  put("public/app.js.br", "BRTWIN");
  set_mtime("public/app.js.br", old - 10, 0); /* older than app.js: stale, not used */
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "br, gzip", NULL, NULL, &c) == 0 && cap_body_is(&c, "GZTWIN"));
  set_mtime("public/app.js.br", old + 10, 0);
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "br, gzip", NULL, NULL, &c) == 0 && cap_body_is(&c, "BRTWIN"));
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "gzip", "Range", "bytes=0-1", &c) == 0);
  CHECK(cap_status(&c) == 206 && cap_body_is(&c, "mo")); /* a Range: the file itself */
  CHECK(request(z, "GET", "/app.js", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, text));
  /* a twin that is a symlink is not followed */
  remove_rel("public/app.js.br");
  link_to("../secret.txt", "public/app.js.br");
  CHECK(request(z, "GET", "/app.js", "Accept-Encoding", "br", NULL, NULL, &c) == 0);
  CHECK(strcmp(cap_header(&c, "Content-Encoding"), "br") == 0 && c.all.len < n / 10); /* compressed here instead */
  cap_free(&c);
  free(text);
}

static void test_send_file(mw_static *st) {
  capture c = {0};
  char root[512];
  snprintf(root, sizeof root, "%s", tmp);
  put("data.txt", "some data");
  put(".hidden", "dot");
  call f = {.st = st, .root = root, .rel = "data.txt"};
  CHECK(request(f, "GET", "/download", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, "some data"));
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/plain; charset=utf-8") == 0);
  CHECK(request(f, "GET", "/download", "Range", "bytes=5-", NULL, NULL, &c) == 0 && cap_status(&c) == 206);
  CHECK(cap_body_is(&c, "data"));
  CHECK(request(f, "POST", "/download", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, "some data"));
  f.rel = "public/sub/page.txt";
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 0 && cap_status(&c) == 200);
  f.rel = "/data.txt"; /* a leading slash is still under root */
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, "some data"));
  /* refused: dotfiles (unless allowed), "..", symlinks out of root, missing */
  f.rel = ".hidden";
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 1);
  f.dotfiles = true;
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, "dot"));
  f.rel = "public/../data.txt";
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 1);
  f.dotfiles = false;
  f.rel = "public/sub/index2.html"; /* a symlink to ../../secret.txt: outside public/, inside root */
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, "outside"));
  char pub[600];
  snprintf(pub, sizeof pub, "%s/public", tmp);
  f.root = pub;
  f.rel = "leak.txt"; /* a symlink out of root */
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 1);
  f.rel = "missing.txt";
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 1);
  f.rel = "sub";
  CHECK(request(f, "GET", "/d", NULL, NULL, NULL, NULL, &c) == 1); /* a directory */
  cap_free(&c);
}

static void test_serve(void) {
  snprintf(tmp, sizeof tmp, "/tmp/mw_test_static_XXXXXX");
  CHECK(mkdtemp(tmp) != NULL);
  mk("public");
  mk("public/sub");
  mk("public/empty");
  put("public/index.html", "<h1>home</h1>");
  put("public/style.css", "body{}");
  put("public/sub/index.html", "<h1>sub</h1>");
  put("public/sub/page.txt", "page one");
  put("public/caf\xC3\xA9.txt", "accent");
  put("public/.env", "SECRET=1");
  put("secret.txt", "outside");
  link_to("../secret.txt", "public/leak.txt");
  link_to("..", "public/up");
  link_to("style.css", "public/alias.css");
  link_to("sub", "public/subalias");
  link_to("../../secret.txt", "public/sub/index2.html");
  time_t old = time(NULL) - 3600;
  set_mtime("public/style.css", old, 123456789);
  set_mtime("public/index.html", old, 0);

  char pub[256];
  snprintf(pub, sizeof pub, "%s/public", tmp);
  mw_static *st = NULL;
  CHECK(static_new(&st, loop, pub) == 0 && st != NULL);
  capture c = {0};

  /* 200 with the headers */
  CHECK(GET(st, "/style.css", &c) == 0);
  CHECK(cap_status(&c) == 200);
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/css; charset=utf-8") == 0);
  CHECK(strcmp(cap_header(&c, "Content-Length"), "6") == 0);
  CHECK(strcmp(cap_header(&c, "Cache-Control"), "public, max-age=0") == 0);
  char etag[128], want[128], lastmod[64];
  snprintf(etag, sizeof etag, "%s", cap_header(&c, "ETag"));
  snprintf(want, sizeof want, "W/\"6-%jx\"", (uintmax_t)old * 1000000000u + 123456789u);
  CHECK(strcmp(etag, want) == 0);
  snprintf(lastmod, sizeof lastmod, "%s", cap_header(&c, "Last-Modified"));
  char date[32];
  http_date((int64_t)old, date);
  CHECK(strcmp(lastmod, date) == 0);
  CHECK(cap_body_is(&c, "body{}"));
  mw_buf *first = c.body;
  c.body = NULL;

  /* cached: the very same buffer is handed out again */
  CHECK(GET(st, "/style.css", &c) == 0);
  CHECK(c.body == first);
  cap_free(&c);
  CHECK(GET(st, "/alias.css", &c) == 0); /* a symlink inside: same file, same entry */
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "body{}") && c.body == first);
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/css; charset=utf-8") == 0);
  cap_free(&c);
  static_clear_cache(st);
  CHECK(GET(st, "/style.css", &c) == 0);
  CHECK(c.body != first && cap_body_is(&c, "body{}"));
  cap_free(&c);
  mw_buf_unref(first);

  /* 304 by ETag: exact, weak-compared, in a list, or * */
  char list[256];
  snprintf(list, sizeof list, "\"nope\", W/\"x\" ,%s", etag);
  const char *inm[] = {etag, etag + 2, list, "*", NULL};
  for (int i = 0; inm[i]; i++) {
    CHECK(GET_H(st, "/style.css", "If-None-Match", inm[i], &c) == 0);
    CHECK(cap_status(&c) == 304);
    CHECK(strcmp(cap_header(&c, "ETag"), etag) == 0);
    CHECK(c.body == NULL);
    CHECK(cap_header(&c, "Content-Length")[0] == '\0');
    cap_free(&c);
  }
  CHECK(GET_H(st, "/style.css", "If-None-Match", "W/\"6-0\"", &c) == 0);
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "body{}"));
  cap_free(&c);
  CHECK(GET_H(st, "/style.css", "If-None-Match", "garbage", &c) == 0);
  CHECK(cap_status(&c) == 200);
  cap_free(&c);

  /* 304 by date: at or after mtime; an unmatched If-None-Match wins */
  CHECK(GET_H(st, "/style.css", "If-Modified-Since", lastmod, &c) == 0);
  CHECK(cap_status(&c) == 304 && c.body == NULL);
  CHECK(strcmp(cap_header(&c, "ETag"), etag) == 0);
  cap_free(&c);
  http_date((int64_t)old + 100, date);
  CHECK(GET_H(st, "/style.css", "If-Modified-Since", date, &c) == 0);
  CHECK(cap_status(&c) == 304);
  cap_free(&c);
  http_date((int64_t)old - 1, date);
  CHECK(GET_H(st, "/style.css", "If-Modified-Since", date, &c) == 0);
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "body{}"));
  cap_free(&c);
  CHECK(GET_H(st, "/style.css", "If-Modified-Since", "yesterday", &c) == 0);
  CHECK(cap_status(&c) == 200);
  cap_free(&c);
  CHECK(request((call){.st = st}, "GET", "/style.css", "If-None-Match", "\"other\"", "If-Modified-Since",
                lastmod, &c) == 0);
  CHECK(cap_status(&c) == 200);
  cap_free(&c);

  /* HEAD: same headers and length, no body */
  CHECK(request((call){.st = st}, "HEAD", "/style.css", NULL, NULL, NULL, NULL, &c) == 0);
  CHECK(cap_status(&c) == 200 && c.body == NULL);
  CHECK(strcmp(cap_header(&c, "Content-Length"), "6") == 0);
  CHECK(strcmp(cap_header(&c, "ETag"), etag) == 0);
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/css; charset=utf-8") == 0);
  cap_free(&c);

  /* other methods are not ours */
  CHECK(request((call){.st = st}, "POST", "/style.css", NULL, NULL, NULL, NULL, &c) == 1);
  CHECK(request((call){.st = st}, "DELETE", "/style.css", NULL, NULL, NULL, NULL, &c) == 1);

  /* directories: index.html, and a redirect to add the slash */
  CHECK(GET(st, "/", &c) == 0);
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "<h1>home</h1>"));
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/html; charset=utf-8") == 0);
  cap_free(&c);
  CHECK(GET(st, "/index.html", &c) == 0 && cap_body_is(&c, "<h1>home</h1>"));
  cap_free(&c);
  CHECK(GET(st, "/sub/", &c) == 0);
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "<h1>sub</h1>"));
  cap_free(&c);
  CHECK(GET(st, "/sub", &c) == 0);
  CHECK(cap_status(&c) == 301 && strcmp(cap_header(&c, "Location"), "/sub/") == 0);
  cap_free(&c);
  CHECK(GET(st, "/sub?x=1&y=%20", &c) == 0);
  CHECK(cap_status(&c) == 301 && strcmp(cap_header(&c, "Location"), "/sub/?x=1&y=%20") == 0);
  cap_free(&c);
  CHECK(GET(st, "//sub", &c) == 0); /* never a protocol-relative Location */
  CHECK(cap_status(&c) == 301 && strcmp(cap_header(&c, "Location"), "/sub/") == 0);
  cap_free(&c);
  mk("public/a b?#%");
  CHECK(GET(st, "/a%20b%3F%23%25", &c) == 0); /* the Location is re-encoded */
  CHECK(cap_status(&c) == 301 && strcmp(cap_header(&c, "Location"), "/a%20b%3F%23%25/") == 0);
  CHECK(GET(st, "/x/../sub/./", &c) == 0 && cap_body_is(&c, "<h1>sub</h1>"));
  cap_free(&c);
  CHECK(GET(st, "/subalias/page.txt", &c) == 0 && cap_body_is(&c, "page one"));
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/plain; charset=utf-8") == 0);
  cap_free(&c);
  CHECK(GET(st, "/empty/", &c) == 1); /* no index.html */
  CHECK(GET(st, "/empty", &c) == 0 && cap_status(&c) == 301);
  cap_free(&c);
  CHECK(GET(st, "/caf%C3%A9.txt", &c) == 0 && cap_body_is(&c, "accent"));
  cap_free(&c);

  /* not found, hidden, malformed, outside */
  CHECK(GET(st, "/missing.css", &c) == 1);
  CHECK(GET(st, "/sub/missing/", &c) == 1);
  CHECK(GET(st, "/style.css/", &c) == 1);
  CHECK(GET(st, "/style.css/x", &c) == 1);
  CHECK(GET(st, "/.env", &c) == 1);
  CHECK(GET(st, "/%2eenv", &c) == 1);
  CHECK(GET(st, "/../secret.txt", &c) == 1);
  CHECK(GET(st, "/%2e%2e/secret.txt", &c) == 1);
  CHECK(GET(st, "/sub%2fpage.txt", &c) == 1);
  CHECK(GET(st, "/leak.txt", &c) == 1);      /* symlink to a file outside */
  CHECK(GET(st, "/up/secret.txt", &c) == 1); /* through a directory symlink */
  CHECK(GET(st, "/up/", &c) == 1);
  CHECK(GET(st, "/up", &c) == 1);
  CHECK(GET(st, "/sub/index2.html", &c) == 1);
  CHECK(GET(st, "/a%zz", &c) == 0);
  CHECK(cap_status(&c) == 400);
  cap_free(&c);
  CHECK(GET(st, "/%00", &c) == 0 && cap_status(&c) == 400);
  cap_free(&c);

  /* an index.html that is a symlink outside is refused too */
  mk("public/trap");
  link_to("../../secret.txt", "public/trap/index.html");
  CHECK(GET(st, "/trap/", &c) == 1);

  /* Edits show on the next request. A file written just now (never cached)
   * and rewritten at once, with the same size: */
  put("public/sub/page.txt", "page two");
  CHECK(GET(st, "/sub/page.txt", &c) == 0 && cap_body_is(&c, "page two"));
  snprintf(etag, sizeof etag, "%s", cap_header(&c, "ETag"));
  cap_free(&c);
  put("public/sub/page.txt", "page 3!!");
  CHECK(GET(st, "/sub/page.txt", &c) == 0 && cap_body_is(&c, "page 3!!"));
  cap_free(&c);
  /* ...an older, cached file rewritten in place, same size, a new mtime
   * only nanoseconds away (the ETag must change too): */
  CHECK(GET(st, "/style.css", &c) == 0 && cap_body_is(&c, "body{}"));
  first = c.body;
  c.body = NULL;
  CHECK(GET(st, "/style.css", &c) == 0 && c.body == first); /* cached */
  snprintf(etag, sizeof etag, "%s", cap_header(&c, "ETag"));
  cap_free(&c);
  put("public/style.css", "p{x:0}");
  set_mtime("public/style.css", old, 123456790);
  CHECK(GET(st, "/style.css", &c) == 0 && cap_body_is(&c, "p{x:0}"));
  CHECK(strcmp(cap_header(&c, "ETag"), etag) != 0);
  CHECK(GET_H(st, "/style.css", "If-None-Match", etag, &c) == 0 && cap_status(&c) == 200);
  cap_free(&c);
  mw_buf_unref(first);
  /* ...and a file replaced by rename, same size and same mtime: */
  CHECK(GET(st, "/style.css", &c) == 0 && cap_body_is(&c, "p{x:0}"));
  cap_free(&c);
  put("public/new.tmp", "q{y:1}");
  set_mtime("public/new.tmp", old, 123456790);
  {
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/public/new.tmp", tmp);
    snprintf(b, sizeof b, "%s/public/style.css", tmp);
    CHECK(rename(a, b) == 0);
  }
  CHECK(GET(st, "/style.css", &c) == 0 && cap_body_is(&c, "q{y:1}"));
  cap_free(&c);

  /* a file modified within the last two seconds is read every time, never
   * cached (file times are too coarse to tell a second quick edit apart) */
  put("public/fresh.txt", "fresh");
  set_mtime("public/fresh.txt", time(NULL), 0);
  CHECK(GET(st, "/fresh.txt", &c) == 0 && cap_body_is(&c, "fresh"));
  first = c.body;
  c.body = NULL;
  CHECK(GET(st, "/fresh.txt", &c) == 0 && cap_body_is(&c, "fresh") && c.body != first);
  cap_free(&c);
  mw_buf_unref(first);

  /* a large file (not cached) is streamed whole, in chunks */
  {
    size_t big = 600 * 1024;
    char *data = malloc(big + 1);
    CHECK(data != NULL);
    for (size_t i = 0; i < big; i++) data[i] = (char)('a' + i % 26);
    data[big] = '\0';
    put("public/big.bin", data);
    set_mtime("public/big.bin", old, 0);
    CHECK(GET(st, "/big.bin", &c) == 0 && cap_status(&c) == 200 && cap_body_is(&c, data));
    CHECK(strcmp(cap_header(&c, "Content-Type"), "application/octet-stream") == 0);
    CHECK(strcmp(cap_header(&c, "Content-Length"), "614400") == 0);
    CHECK(c.pieces && c.body == NULL);
    CHECK(GET(st, "/big.bin", &c) == 0 && cap_body_is(&c, data) && c.pieces);
    cap_free(&c);
    /* a part of it, across chunks */
    CHECK(GET_H(st, "/big.bin", "Range", "bytes=65530-131080", &c) == 0 && cap_status(&c) == 206);
    CHECK(c.all.len == 65551 && memcmp(c.all.p, data + 65530, 65551) == 0);
    CHECK(strcmp(cap_header(&c, "Content-Range"), "bytes 65530-131080/614400") == 0);
    cap_free(&c);
    /* HEAD reads nothing, says the length */
    CHECK(request((call){.st = st}, "HEAD", "/big.bin", NULL, NULL, NULL, NULL, &c) == 0);
    CHECK(cap_status(&c) == 200 && c.all.len == 0 && strcmp(cap_header(&c, "Content-Length"), "614400") == 0);
    cap_free(&c);
    free(data);
  }

  /* many small files: more than the cache keeps, all served right */
  mk("public/many");
  for (int i = 0; i < 300; i++) {
    char rel[64], body[64];
    snprintf(rel, sizeof rel, "public/many/f%d.txt", i);
    snprintf(body, sizeof body, "file %d", i);
    put(rel, body);
    set_mtime(rel, old, 0);
  }
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 300; i++) {
      char url[64], body[64];
      snprintf(url, sizeof url, "/many/f%d.txt", i);
      snprintf(body, sizeof body, "file %d", i);
      CHECK(GET(st, url, &c) == 0 && cap_body_is(&c, body));
      cap_free(&c);
    }
  }

  /* static_serve_file: any absolute file, with its own Cache-Control */
  char abs[512];
  snprintf(abs, sizeof abs, "%s/secret.txt", tmp);
  call f = {.st = st, .file = abs, .cache_control = "public, max-age=3600"};
  CHECK(request(f, "GET", "/socket.io/socket.io.js", NULL, NULL, NULL, NULL, &c) == 0);
  CHECK(cap_status(&c) == 200 && cap_body_is(&c, "outside"));
  CHECK(strcmp(cap_header(&c, "Cache-Control"), "public, max-age=3600") == 0);
  CHECK(strcmp(cap_header(&c, "Content-Type"), "text/plain; charset=utf-8") == 0);
  snprintf(etag, sizeof etag, "%s", cap_header(&c, "ETag"));
  cap_free(&c);
  CHECK(request(f, "GET", "/x", "If-None-Match", etag, NULL, NULL, &c) == 0 && cap_status(&c) == 304);
  cap_free(&c);
  CHECK(request(f, "HEAD", "/x", NULL, NULL, NULL, NULL, &c) == 0 && cap_status(&c) == 200 && !c.body);
  cap_free(&c);
  CHECK(request(f, "POST", "/x", NULL, NULL, NULL, NULL, &c) == 1);
  f.cache_control = NULL;
  CHECK(request(f, "GET", "/x", NULL, NULL, NULL, NULL, &c) == 0);
  CHECK(strcmp(cap_header(&c, "Cache-Control"), "public, max-age=0") == 0);
  cap_free(&c);
  snprintf(abs, sizeof abs, "%s/public/leak.txt", tmp); /* the caller's choice: symlinks followed */
  CHECK(request(f, "GET", "/x", NULL, NULL, NULL, NULL, &c) == 0 && cap_body_is(&c, "outside"));
  cap_free(&c);
  snprintf(abs, sizeof abs, "%s/nope.js", tmp);
  CHECK(request(f, "GET", "/x", NULL, NULL, NULL, NULL, &c) == 1);
  snprintf(abs, sizeof abs, "%s/public", tmp);
  CHECK(request(f, "GET", "/x", NULL, NULL, NULL, NULL, &c) == 1);

  test_ranges_and_preconditions(st, old);
  test_compression(st, old);
  test_send_file(st);

  static_free(st);

  /* A missing public directory: nothing is served, nothing fails. */
  snprintf(pub, sizeof pub, "%s/nope", tmp);
  CHECK(static_new(&st, loop, pub) == 0 && st != NULL);
  CHECK(GET(st, "/", &c) == 1);
  CHECK(GET(st, "/style.css", &c) == 1);
  static_clear_cache(st);
  static_free(st);
  static_free(NULL);

  cap_free(&c);
  CHECK(nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

int main(void) {
  loop = uv_default_loop();
  test_normalize();
  test_mime();
  test_range_parser();
  test_serve();
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  CHECK_REPORT();
  return failed != 0;
}
