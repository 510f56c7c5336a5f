/* test_http.c — the HTTP glue: bytes in through a connection, parsed
 * requests out to a handler, serialised responses in the write queue. No
 * socket: the connection is fed directly and its queue read back. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "body.h"
#include "config.h"
#include "http.h"
#include "server.h"

#include "check.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

static uv_loop_t loop;
static mw_server srv;

/* What the handler saw, and how it should answer. */
typedef struct seen {
  char method[16], url[256], path[256], query[256], body[4096], host[64], te[64];
  size_t body_len;
  int nheaders, count, http_minor;
  bool keep_alive, defer, spooled, multipart;
  /* multipart: "name=value" for fields, "name:filename:type:size" for files */
  char parts[8][128];
  char paths[8][256];
  bool path_existed[8];
  int nparts;
  char log[256]; /* "path len spooled;" for each request, in order */
  http_res *pending;
} seen;
static seen S;

static void copy(char *dst, size_t cap, const char *src, size_t len) {
  if (len >= cap) len = cap - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

static void handler(void *ud, const http_req *req, http_res *res) {
  (void)ud;
  S.count++;
  copy(S.method, sizeof S.method, req->method, strlen(req->method));
  copy(S.url, sizeof S.url, req->url, req->url_len);
  copy(S.path, sizeof S.path, req->path, req->path_len);
  copy(S.query, sizeof S.query, req->query, req->query_len);
  size_t blen = 0;
  const char *body = http_req_body(req, &blen); /* read from its file when spooled */
  copy(S.body, sizeof S.body, body ? body : "", body ? blen : 0);
  S.body_len = req->body_len;
  S.spooled = req->body_file != NULL && req->body == NULL;
  S.multipart = req->multipart;
  size_t ll = strlen(S.log);
  snprintf(S.log + ll, sizeof S.log - ll, "%s %zu %d;", S.path, S.body_len, S.spooled);
  S.nparts = 0;
  for (int i = 0; i < req->nparts && i < 8; i++) {
    const http_part *p = &req->parts[i];
    if (p->filename) {
      snprintf(S.parts[i], sizeof S.parts[i], "%.*s:%.*s:%.*s:%llu", (int)p->name_len, p->name, (int)p->filename_len,
               p->filename, (int)p->type_len, p->type, (unsigned long long)p->size);
      snprintf(S.paths[i], sizeof S.paths[i], "%s", p->path);
      struct stat st;
      S.path_existed[i] = stat(p->path, &st) == 0 && (uint64_t)st.st_size == p->size;
    } else {
      snprintf(S.parts[i], sizeof S.parts[i], "%.*s=%.*s", (int)p->name_len, p->name, (int)p->value_len, p->value);
      S.paths[i][0] = '\0';
    }
    S.nparts++;
  }
  size_t n = 0;
  const char *h = http_req_header(req, "HOST", &n);
  copy(S.host, sizeof S.host, h ? h : "", h ? n : 0);
  S.nheaders = req->nheaders;
  S.keep_alive = req->keep_alive;
  S.http_minor = req->http_minor;
  if (S.defer) {
    S.pending = res;
    return;
  }
  char answer[300];
  snprintf(answer, sizeof answer, "%s %s", S.method, S.path);
  http_res_simple(res, strcmp(S.path, "/gone") == 0 ? 304 : 200, "text/plain", answer);
}

/* Everything queued on c so far, as one string (caller frees). */
static char *queued(mw_conn *c) {
  mw_str out = {0};
  mw_str_append(&out, "", 0);
  for (uint32_t i = 0; i < c->wq_len; i++) mw_str_append(&out, c->wq[i].buf->data + c->wq[i].off, c->wq[i].len);
  return out.p;
}

static mw_conn *conn(void) {
  memset(&S, 0, sizeof S);
  return mw_conn_new(&srv, false, http_conn_attach, &app_site);
}

static void feed(mw_conn *c, const char *s) { c->proto->on_read(c, s, strlen(s)); }

static void done(mw_conn *c) {
  mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}

static void test_simple_get(void) {
  mw_conn *c = conn();
  feed(c, "GET /pets/1?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-A: 1\r\n\r\n");
  CHECK(S.count == 1);
  CHECK(strcmp(S.method, "GET") == 0);
  CHECK(strcmp(S.path, "/pets/1") == 0);
  CHECK(strcmp(S.query, "x=1&y=2") == 0);
  CHECK(strcmp(S.host, "example") == 0);
  CHECK(S.nheaders == 2);
  CHECK(S.keep_alive);
  char *out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(strstr(out, "Content-Length: 11\r\n") != NULL);
  CHECK(strstr(out, "Date: ") != NULL);
  CHECK(strstr(out, "Connection: close") == NULL);
  CHECK(strstr(out, "\r\n\r\nGET /pets/1") != NULL);
  CHECK(!c->ending);
  free(out);
  done(c);
}

static void test_byte_by_byte(void) {
  mw_conn *c = conn();
  const char *req = "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Long-Header-Name: value value\r\n\r\nhello";
  for (size_t i = 0; req[i]; i++) c->proto->on_read(c, req + i, 1);
  CHECK(S.count == 1);
  CHECK(strcmp(S.method, "POST") == 0);
  CHECK(strcmp(S.body, "hello") == 0);
  CHECK(strcmp(S.host, "h") == 0);
  done(c);
}

static void test_pipelining_in_order(void) {
  mw_conn *c = conn();
  feed(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(S.count == 3);
  char *out = queued(c);
  char *a = strstr(out, "GET /a"), *b = strstr(out, "GET /b"), *cc = strstr(out, "GET /c");
  CHECK(a && b && cc && a < b && b < cc);
  CHECK(count(out, "HTTP/1.1 200 OK") == 3);
  free(out);
  done(c);
}

static void test_pipelining_waits_for_deferred_answer(void) {
  mw_conn *c = conn();
  S.defer = true;
  feed(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(S.count == 1); /* the second waits */
  CHECK(c->wq_len == 0);
  S.defer = false;
  http_res_simple(S.pending, 200, "text/plain", "slow");
  CHECK(S.count == 2);
  char *out = queued(c);
  char *slow = strstr(out, "slow"), *next = strstr(out, "GET /next");
  CHECK(slow && next && slow < next);
  free(out);
  done(c);
}

static void test_chunked_body(void) {
  mw_conn *c = conn();
  feed(c, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  CHECK(S.count == 1);
  CHECK(strcmp(S.body, "hello world") == 0);
  done(c);
}

static void test_chunked_trailers_are_ignored(void) {
  mw_conn *c = conn();
  mw_str big = {0};
  mw_str_appendz(&big, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n");
  for (int i = 0; i < 50; i++) mw_str_appendf(&big, "X-Trailer-%d: %060d\r\n", i, i);
  mw_str_appendz(&big, "\r\n");
  c->proto->on_read(c, big.p, big.len);
  CHECK(S.count == 1);
  CHECK(strcmp(S.body, "abc") == 0);
  CHECK(strcmp(S.host, "h") == 0); /* header pointers still valid */
  CHECK(S.nheaders == 2);
  mw_str_free(&big);
  done(c);
}

static void test_http10(void) {
  mw_conn *c = conn();
  feed(c, "GET /old HTTP/1.0\r\n\r\n");
  CHECK(S.count == 1);
  CHECK(!S.keep_alive);
  char *out = queued(c);
  CHECK(strncmp(out, "HTTP/1.0 200 OK\r\n", 17) == 0);
  CHECK(c->ending);
  free(out);
  done(c);

  c = conn();
  feed(c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(S.keep_alive);
  out = queued(c);
  CHECK(strstr(out, "Connection: keep-alive\r\n") != NULL);
  CHECK(!c->ending);
  free(out);
  done(c);
}

static void test_connection_close(void) {
  mw_conn *c = conn();
  feed(c, "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(S.count == 1); /* nothing after a close is served */
  char *out = queued(c);
  CHECK(strstr(out, "Connection: close\r\n") != NULL);
  CHECK(c->ending);
  free(out);
  done(c);
}

static void test_head_and_304_have_no_body(void) {
  mw_conn *c = conn();
  feed(c, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
  char *out = queued(c);
  CHECK(strstr(out, "Content-Length: 7\r\n") != NULL); /* "HEAD /h" */
  CHECK(strstr(out, "\r\n\r\n")[4] == '\0');
  free(out);
  done(c);

  c = conn();
  feed(c, "GET /gone HTTP/1.1\r\nHost: h\r\n\r\n");
  out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 304 Not Modified", 25) == 0);
  CHECK(strstr(out, "Content-Length") == NULL);
  CHECK(strstr(out, "\r\n\r\n")[4] == '\0');
  free(out);
  done(c);
}

static void test_malformed_is_400(void) {
  const char *bad[] = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\n\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mw_conn *c = conn();
    feed(c, bad[i]);
    char *out = queued(c);
    if (strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) != 0) fprintf(stderr, "input %zu: %.40s\n", i, out);
    CHECK(strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    CHECK(strstr(out, "Connection: close") != NULL);
    CHECK(c->ending);
    CHECK(S.count == 0);
    free(out);
    done(c);
  }
}

static void test_header_limit_is_431(void) {
  mw_conn *c = conn();
  mw_str big = {0};
  mw_str_appendz(&big, "GET / HTTP/1.1\r\nHost: h\r\n");
  for (int i = 0; i < 200; i++) mw_str_appendf(&big, "X-Filler-%d: %080d\r\n", i, i);
  mw_str_appendz(&big, "\r\n");
  c->proto->on_read(c, big.p, big.len);
  char *out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 431 ", 13) == 0);
  CHECK(S.count == 0);
  free(out);
  done(c);
  /* A long URL counts too. */
  c = conn();
  mw_str_reset(&big);
  mw_str_appendz(&big, "GET /");
  for (int i = 0; i < 17000; i++) mw_str_appendc(&big, 'a');
  mw_str_appendz(&big, " HTTP/1.1\r\n\r\n");
  c->proto->on_read(c, big.p, big.len);
  out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 431 ", 13) == 0);
  free(out);
  done(c);
  /* Just under the limit is fine. */
  c = conn();
  mw_str_reset(&big);
  mw_str_appendz(&big, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
  for (int i = 0; i < 15000; i++) mw_str_appendc(&big, 'b');
  mw_str_appendz(&big, "\r\n\r\n");
  c->proto->on_read(c, big.p, big.len);
  CHECK(S.count == 1);
  mw_str_free(&big);
  done(c);
}

static void test_body_limit_is_413(void) {
  app_site.opts.max_body = 10;
  mw_conn *c = conn();
  feed(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
  char *out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 413 ", 13) == 0);
  CHECK(S.count == 0);
  free(out);
  done(c);
  c = conn();
  feed(c, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n");
  out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 413 ", 13) == 0);
  CHECK(S.count == 0);
  free(out);
  done(c);
  c = conn();
  feed(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789");
  CHECK(S.count == 1);
  done(c);
  app_site.opts.max_body = 1024 * 1024;
}

static void test_upgrade_request_is_answered_then_closed(void) {
  mw_conn *c = conn();
  feed(c, "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: something\r\n\r\n\x01\x02\x03");
  CHECK(S.count == 1);
  CHECK(c->ending);
  done(c);
}

static void test_response_headers(void) {
  http_req req = {.method = "GET", .method_id = HTTP_GET, .keep_alive = true, .http_minor = 1};
  http_res res;
  http_res_init(&res, &req, NULL, NULL);
  CHECK(http_res_headerz(&res, "X-Ok", "fine") == 0);
  CHECK(http_res_headerz(&res, "X-Bad", "a\r\nSet-Cookie: x") == -EINVAL);
  CHECK(http_res_headerz(&res, "X-Bad\n", "a") == -EINVAL);
  CHECK(http_res_headerz(&res, "Bad:Name", "a") == -EINVAL);
  CHECK(http_res_headerz(&res, "Content-Length", "999") == 0); /* ignored: the core writes it */
  CHECK(strcmp(res.hbuf.p, "X-Ok: fine\r\n") == 0);
  /* a list until written: looked up, removed, cleared */
  CHECK(http_res_headerz(&res, "Content-Type", "text/html") == 0 && res.has_type);
  CHECK(http_res_headerz(&res, "Vary", "Origin") == 0);
  CHECK(http_res_headerz(&res, "x-ok", "again") == 0);
  size_t n;
  const char *v = http_res_get(&res, "content-type", &n);
  CHECK(v && n == 9 && memcmp(v, "text/html", 9) == 0);
  v = http_res_get(&res, "X-OK", &n);
  CHECK(v && n == 4 && memcmp(v, "fine", 4) == 0);
  CHECK(http_res_get(&res, "X-Nope", &n) == NULL);
  http_res_remove(&res, "x-ok");
  CHECK(strcmp(res.hbuf.p, "Content-Type: text/html\r\nVary: Origin\r\n") == 0 && res.nfields == 2);
  v = http_res_get(&res, "vary", &n);
  CHECK(v && n == 6 && memcmp(v, "Origin", 6) == 0);
  http_res_remove(&res, "Content-Type");
  CHECK(!res.has_type && strcmp(res.hbuf.p, "Vary: Origin\r\n") == 0);
  http_res_clear(&res);
  CHECK(res.nfields == 0 && res.hbuf.len == 0 && http_res_get(&res, "vary", NULL) == NULL);
  http_res_dispose(&res);
}

static void test_dates(void) {
  char buf[32];
  http_date(784111777, buf);
  CHECK(strcmp(buf, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
  CHECK(http_parse_date(buf, strlen(buf)) == 784111777);
  CHECK(http_parse_date("yesterday", 9) == -1);
  CHECK(http_parse_date("Sun, 06 Nov 1994 08:49:37 GMTX", 30) == -1);
  CHECK(strcmp(http_status_text(431), "Request Header Fields Too Large") == 0);
}

/* Shutdown right after a deferred answer was given (as long polls are
 * answered when the server stops): the answer is still queued, so the
 * connection ends after sending it instead of closing at once. */
/* A streamed body: chunked on HTTP/1.1, until the close on 1.0, nothing
 * of it for HEAD; a known length is kept to. */
static void test_streamed_response(void) {
  mw_conn *c = conn();
  S.defer = true;
  feed(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  http_res *res = S.pending;
  CHECK(res != NULL);
  http_res_headerz(res, "Content-Type", "text/plain");
  CHECK(http_res_begin(res, HTTP_LEN_STREAM) == 0);
  CHECK(http_res_begin(res, HTTP_LEN_STREAM) == -EALREADY);
  CHECK(http_res_write_copy(res, "hello", 5) == 0);
  CHECK(http_res_write_copy(res, "", 0) == 0); /* no empty chunk: that would end the body */
  CHECK(http_res_write_copy(res, " world!", 7) == 0);
  CHECK(http_res_queued(res) > 0 && http_res_queued(res) != SIZE_MAX);
  CHECK(http_res_end(res, "x", 1) == -EALREADY);
  CHECK(http_res_finish(res) == 0);
  char *out = queued(c);
  CHECK(strstr(out, "Transfer-Encoding: chunked\r\n") != NULL);
  CHECK(strstr(out, "Content-Length") == NULL);
  CHECK(strstr(out, "\r\n\r\n5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n") != NULL);
  CHECK(!c->ending);
  free(out);
  done(c);

  c = conn(); /* HTTP/1.0: no chunks, the close ends the body */
  S.defer = true;
  feed(c, "GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  res = S.pending;
  CHECK(http_res_begin(res, HTTP_LEN_STREAM) == 0);
  CHECK(http_res_write_copy(res, "abc", 3) == 0);
  CHECK(http_res_finish(res) == 0);
  out = queued(c);
  CHECK(strncmp(out, "HTTP/1.0 200 OK\r\n", 17) == 0);
  CHECK(strstr(out, "Transfer-Encoding") == NULL && strstr(out, "Content-Length") == NULL);
  CHECK(strstr(out, "keep-alive") == NULL);
  CHECK(strstr(out, "\r\n\r\nabc") != NULL);
  CHECK(c->ending);
  free(out);
  done(c);

  c = conn(); /* HEAD: the head GET would get, no body */
  S.defer = true;
  feed(c, "HEAD /s HTTP/1.1\r\nHost: h\r\n\r\n");
  res = S.pending;
  CHECK(http_res_begin(res, HTTP_LEN_STREAM) == 0);
  CHECK(http_res_write_copy(res, "abc", 3) == 0);
  CHECK(http_res_finish(res) == 0);
  out = queued(c);
  CHECK(strstr(out, "Transfer-Encoding: chunked\r\n") != NULL);
  CHECK(strstr(out, "\r\n\r\n")[4] == '\0');
  free(out);
  done(c);

  c = conn(); /* a known length: no more than it, and a short body ends the connection */
  S.defer = true;
  feed(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  res = S.pending;
  CHECK(http_res_begin(res, 4) == 0);
  CHECK(http_res_write_copy(res, "abc", 3) == 0);
  CHECK(http_res_write_copy(res, "de", 2) == -EMSGSIZE);
  CHECK(http_res_finish(res) == 0);
  out = queued(c);
  CHECK(strstr(out, "Content-Length: 4\r\n") != NULL && strstr(out, "\r\n\r\nabc") != NULL);
  CHECK(c->ending);
  free(out);
  done(c);
}

/* A producer waiting for the queue to drain hears when the client goes
 * away instead, and can only end the response. */
static bool drained;
static void on_drained(void *ud) {
  http_res *res = ud;
  drained = true;
  CHECK(http_res_queued(res) == SIZE_MAX);
  CHECK(http_res_write_copy(res, "more", 4) == -EPIPE);
  CHECK(http_res_finish(res) == 0); /* frees the exchange */
}

static void test_stream_client_gone(void) {
  mw_conn *c = conn();
  S.defer = true;
  feed(c, "GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
  http_res *res = S.pending;
  CHECK(http_res_begin(res, HTTP_LEN_STREAM) == 0);
  CHECK(http_res_write_copy(res, "hello", 5) == 0);
  drained = false;
  http_res_wait(res, on_drained, res);
  CHECK(!drained); /* the queue holds the chunk */
  done(c);
  CHECK(drained);
}

static void test_stop_keeps_an_unsent_answer(void) {
  mw_conn *c = conn();
  S.defer = true;
  feed(c, "GET /poll HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(S.pending != NULL);
  if (S.pending) http_res_simple(S.pending, 200, "text/plain", "late");
  CHECK(c->wq_len > 0 && !c->ending);
  mw_server_stop(&srv);
  CHECK(!c->closing && c->ending);
  char *out = queued(c);
  CHECK(strstr(out, "\r\n\r\nlate") != NULL);
  free(out);
  done(c);
}


/* ---- the loop, for what happens later: bodies on disk, timeouts ---- */

static char tmpdir[64];

static void on_tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until cond(c) holds or ms pass; returns cond(c). */
static bool run_until(bool (*cond)(mw_conn *c), mw_conn *c, uint64_t ms) {
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  uv_update_time(&loop);
  uint64_t end = uv_now(&loop) + ms;
  while (!cond(c) && uv_now(&loop) < end) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return cond(c);
}

static bool answered(mw_conn *c) {
  (void)c;
  return S.count > 0;
}

/* Once the loop runs, answers are written: the tests that run it use a
 * connection over a socket pair and read the other end. */
static int peer = -1;
static mw_str got;
static bool peer_eof;

static mw_conn *sconn(void) {
  memset(&S, 0, sizeof S);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) abort();
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  mw_conn *c = mw_conn_new(&srv, true, http_conn_attach, &app_site);
  uv_pipe_open(&c->pipe, sv[0]);
  peer = sv[1];
  mw_str_reset(&got);
  mw_str_append(&got, "", 0);
  peer_eof = false;
  return c;
}

/* What the server wrote so far. */
static const char *received(void) {
  char buf[65536];
  ssize_t n;
  while ((n = read(peer, buf, sizeof buf)) > 0) mw_str_append(&got, buf, (size_t)n);
  if (n == 0) peer_eof = true;
  return got.p;
}

/* The server ended the connection (it may be freed already). */
static bool ended(mw_conn *c) {
  (void)c;
  received();
  return peer_eof;
}

static bool two_answers(mw_conn *c) {
  (void)c;
  return count(received(), "HTTP/1.1 200 OK") == 2;
}

static void sdone(void) {
  close(peer);
  peer = -1;
  for (mw_conn *c = srv.conns; c; c = c->next) mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

/* Files left in the temporary directory. */
static int tmp_files(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

/* Nothing left of the bodies: no byte held, no file (a file may still be
 * on its way to being created when the request ends: then it goes after). */
static bool tmp_empty(mw_conn *c) {
  (void)c;
  return body_memory_held() == 0 && tmp_files() == 0;
}

static void test_expect_continue(void) {
  mw_conn *c = conn();
  feed(c, "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
  char *out = queued(c);
  CHECK(strcmp(out, "HTTP/1.1 100 Continue\r\n\r\n") == 0); /* before the body, which the client holds back */
  CHECK(S.count == 0);
  free(out);
  feed(c, "hello");
  CHECK(S.count == 1 && strcmp(S.body, "hello") == 0);
  out = queued(c);
  CHECK(count(out, "100 Continue") == 1 && strstr(out, "HTTP/1.1 200 OK") != NULL);
  free(out);
  done(c);
  /* A body over --max-body: 413 at once, no 100, the connection ends. */
  app_site.opts.max_body = 10;
  c = conn();
  feed(c, "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
  out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 413 ", 13) == 0 && strstr(out, "100 Continue") == NULL);
  CHECK(strstr(out, "--max-body") != NULL);
  CHECK(c->ending);
  free(out);
  done(c);
  app_site.opts.max_body = 1024 * 1024;
  /* Any other expectation: 417. */
  c = conn();
  feed(c, "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx");
  out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 417 Expectation Failed\r\n", 33) == 0 && S.count == 0);
  free(out);
  done(c);
  /* HTTP/1.0 knows no expectations; a request without a body needs no 100. */
  const char *no100[] = {"POST /up HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
                         "GET /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"};
  for (size_t i = 0; i < MW_ARRAY_LEN(no100); i++) {
    c = conn();
    feed(c, no100[i]);
    out = queued(c);
    CHECK(S.count == 1 && strstr(out, "100 Continue") == NULL && strstr(out, " 200 OK\r\n") != NULL);
    free(out);
    done(c);
  }
}

static void test_host_and_targets(void) {
  struct {
    const char *req;
    int status;
    const char *url, *path, *query, *host;
  } cases[] = {
      {"GET /a HTTP/1.1\r\n\r\n", 400, 0, 0, 0, 0},                            /* HTTP/1.1 needs Host */
      {"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, 0, 0, 0},     /* once */
      {"GET /a HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, 0, 0, 0, 0},
      {"GET /a HTTP/1.0\r\n\r\n", 200, "/a", "/a", "", ""},                    /* HTTP/1.0 may leave it out */
      {"GET http://example.com:8080/pets/1?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", 200, "/pets/1?x=1", "/pets/1",
       "x=1", "example.com:8080"},
      {"GET HTTPS://example.com/ HTTP/1.1\r\n\r\n", 200, "/", "/", "", "example.com"},
      {"GET http://example.com?q=2 HTTP/1.1\r\nHost: example.com\r\n\r\n", 200, "/?q=2", "/", "q=2", "example.com"},
      {"GET http://[::1]:3000 HTTP/1.1\r\n\r\n", 200, "/", "/", "", "[::1]:3000"},
      {"GET http://user:pw@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, 0, 0, 0, 0},
      {"GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, 0, 0, 0},
      {"GET ftp://example.com/a HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, 0, 0, 0},
      {"GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, 0, 0, 0},  /* authority-form is CONNECT's */
      {"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, 0, 0, 0, 0},
      {"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, 0, 0, 0},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(cases); i++) {
    mw_conn *c = conn();
    feed(c, cases[i].req);
    char *out = queued(c);
    int st = strncmp(out, "HTTP/1.", 7) == 0 ? atoi(out + 9) : 0;
    CHECK(st == cases[i].status);
    if (st != cases[i].status) fprintf(stderr, "case %zu: %.60s\n", i, out);
    if (cases[i].status == 200) {
      CHECK(S.count == 1 && strcmp(S.url, cases[i].url) == 0 && strcmp(S.path, cases[i].path) == 0 &&
            strcmp(S.query, cases[i].query) == 0 && strcmp(S.host, cases[i].host) == 0);
      if (strcmp(S.url, cases[i].url) || strcmp(S.host, cases[i].host))
        fprintf(stderr, "case %zu: url %s path %s host %s\n", i, S.url, S.path, S.host);
    } else {
      CHECK(S.count == 0 && c->ending);
    }
    free(out);
    done(c);
  }
  /* No path and a long query: put together at the end of the request's
   * buffer, which grows meanwhile (the query is copied from that buffer). */
  {
    mw_conn *c = conn();
    mw_str req = {0}, url = {0};
    mw_str_appendz(&req, "GET http://example.com?");
    mw_str_appendz(&url, "/?");
    for (int i = 0; i < 200; i++) {
      mw_str_appendc(&req, (char)('a' + i % 26));
      mw_str_appendc(&url, (char)('a' + i % 26));
    }
    mw_str_appendz(&req, " HTTP/1.1\r\n\r\n");
    c->proto->on_read(c, req.p, req.len);
    CHECK(S.count == 1 && strcmp(S.url, url.p) == 0 && strcmp(S.host, "example.com") == 0);
    mw_str_free(&req);
    mw_str_free(&url);
    done(c);
  }
  /* OPTIONS *: the server's methods, without a handler. */
  mw_conn *c = conn();
  feed(c, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  char *out = queued(c);
  CHECK(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(out, "Allow: GET, HEAD, POST") && S.count == 0);
  CHECK(!c->ending);
  free(out);
  done(c);
}

/* A body over --body-buffer goes to an unlinked file; the handler gets it
 * once all of it is there, and nothing is left behind. */
static void test_spooled_body(void) {
  app_site.opts.body_buffer = 64;
  char body[3000];
  for (size_t i = 0; i < sizeof body; i++) body[i] = (char)('a' + i % 26);
  for (int chunked = 0; chunked < 2; chunked++) {
    mw_conn *c = sconn();
    mw_str req = {0};
    if (chunked) {
      mw_str_appendz(&req, "POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (size_t off = 0; off < sizeof body; off += 1000) mw_str_appendf(&req, "3e8\r\n%.1000s\r\n", body + off);
      mw_str_appendz(&req, "0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    } else {
      mw_str_appendf(&req, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", sizeof body);
      mw_str_append(&req, body, sizeof body);
      mw_str_appendz(&req, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    /* In pieces, as a network would bring it. */
    for (size_t off = 0; off < req.len; off += 700) c->proto->on_read(c, req.p + off, req.len - off < 700 ? req.len - off : 700);
    CHECK(S.count == 0); /* the disk has it first */
    S.defer = true;
    CHECK(run_until(answered, c, 5000));
    CHECK(S.spooled && S.body_len == sizeof body && memcmp(S.body, body, sizeof body) == 0);
    S.defer = false;
    http_res_simple(S.pending, 200, "text/plain", "stored");
    /* The pipelined request came after, and only then. */
    CHECK(strcmp(S.log, "/big 3000 1;/next 0 0;") == 0);
    CHECK(tmp_files() == 0); /* unlinked from the start */
    CHECK(run_until(two_answers, c, 2000) && strstr(got.p, "stored") != NULL);
    mw_str_free(&req);
    sdone();
  }
  CHECK(body_memory_held() == 0);
  app_site.opts.body_buffer = 64 * 1024;
}

static const char FORM[] = "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"title\"\r\n\r\n"
                           "Hi there\r\n"
                           "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\n"
                           "Content-Type: text/plain\r\n\r\n"
                           "line one --XyZ\r\n-XyZ\r\n\r\n--Xy\r\n"
                           "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"doc\"; filename=\"empty.bin\"\r\n\r\n"
                           "\r\n"
                           "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"skipped\"; filename=\"\"\r\n\r\n"
                           "\r\n"
                           "--XyZ--\r\n";

static void post_form(mw_conn *c, const char *ctype, const char *body, size_t len) {
  mw_str req = {0};
  mw_str_appendf(&req, "POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", ctype, len);
  mw_str_append(&req, body, len);
  c->proto->on_read(c, req.p, req.len);
  mw_str_free(&req);
}

static void test_multipart(void) {
  mw_conn *c = sconn();
  post_form(c, "multipart/form-data; boundary=XyZ", FORM, sizeof FORM - 1);
  CHECK(run_until(answered, c, 5000));
  CHECK(S.multipart && S.body_len == 0 && S.nparts == 3);
  CHECK(strcmp(S.parts[0], "title=Hi there") == 0);
  CHECK(strcmp(S.parts[1], "doc:a.txt:text/plain:28") == 0); /* "line one --XyZ\r\n-XyZ\r\n\r\n--Xy" */
  CHECK(strcmp(S.parts[2], "doc:empty.bin:application/octet-stream:0") == 0);
  CHECK(S.path_existed[1] && S.path_existed[2]);
  CHECK(strncmp(S.paths[1], tmpdir, strlen(tmpdir)) == 0);
  sdone();
  CHECK(run_until(tmp_empty, NULL, 5000)); /* removed after the response */
  /* What is refused, and why. */
  struct {
    const char *ctype, *body;
    int status;
    const char *why;
  } bad[] = {
      {"multipart/form-data", FORM, 400, "boundary"},
      {"multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nabc", 400,
       "ends before its closing boundary"},
      {"multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XyZ--", 400,
       "malformed"},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) {
    c = sconn();
    post_form(c, bad[i].ctype, bad[i].body, strlen(bad[i].body));
    CHECK(run_until(ended, c, 5000));
    const char *out = received();
    CHECK(atoi(out + 9) == bad[i].status && strstr(out, bad[i].why) != NULL && S.count == 0);
    if (!strstr(out, bad[i].why)) fprintf(stderr, "bad %zu: %s\n", i, out);
    sdone();
  }
  /* The limits: 413 with the flag that sets each. */
  struct {
    size_t *limit, value;
    const char *why;
  } limits[] = {
      {&app_site.opts.upload_max_files, 1, "--upload-max-files"},
      {&app_site.opts.upload_max_file_size, 20, "--upload-max-file-size"},
      {&app_site.opts.upload_max_fields, 0, "--upload-max-fields"},
      {&app_site.opts.upload_max_field_size, 5, "--upload-max-field-size"},
      {&app_site.opts.upload_max_part_header, 60, "--upload-max-part-header"},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(limits); i++) {
    size_t kept = *limits[i].limit;
    *limits[i].limit = limits[i].value;
    c = sconn();
    post_form(c, "multipart/form-data; boundary=XyZ", FORM, sizeof FORM - 1);
    CHECK(run_until(ended, c, 5000));
    const char *out = received();
    CHECK(strncmp(out, "HTTP/1.1 413 ", 13) == 0 && strstr(out, limits[i].why) != NULL && S.count == 0);
    if (!strstr(out, limits[i].why)) fprintf(stderr, "limit %zu: %s\n", i, out);
    sdone();
    *limits[i].limit = kept;
  }
  CHECK(run_until(tmp_empty, NULL, 5000));
  CHECK(body_memory_held() == 0);
}

/* A body gets --body-timeout between reads and --body-deadline in all;
 * past either, 408 and the end of the connection. */
static void test_body_timeouts(void) {
  app_site.opts.body_timeout_ms = 60;
  mw_conn *c = sconn();
  feed(c, "POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab");
  CHECK(run_until(ended, c, 3000));
  const char *out = received();
  CHECK(strncmp(out, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0 && strstr(out, "body") && S.count == 0);
  sdone();
  /* Each byte in time, but the whole too slow. */
  app_site.opts.body_timeout_ms = 1000;
  app_site.opts.body_deadline_ms = 150;
  c = sconn();
  feed(c, "POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
  int sent = 0;
  while (!ended(c) && sent < 100) {
    feed(c, "x");
    sent++;
    run_until(ended, c, 20);
  }
  CHECK(ended(c) && sent < 50);
  CHECK(strncmp(received(), "HTTP/1.1 408 ", 13) == 0);
  sdone();
  /* Steady and in time: served. */
  app_site.opts.body_timeout_ms = 200;
  app_site.opts.body_deadline_ms = 5000;
  c = sconn();
  feed(c, "POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
  for (int i = 0; i < 5; i++) {
    run_until(ended, c, 50);
    feed(c, "y");
  }
  CHECK(S.count == 1 && strcmp(S.body, "yyyyy") == 0);
  sdone();
  app_site.opts.body_timeout_ms = 60000;
  app_site.opts.body_deadline_ms = 300000;
  /* The header timeout stays a deadline: headers trickled in never get it back. */
  app_site.opts.header_timeout_ms = 100;
  c = sconn();
  const char *head = "GET / HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  for (size_t i = 0; head[i] && !ended(c); i++) {
    c->proto->on_read(c, head + i, 1);
    run_until(ended, c, 10);
  }
  CHECK(run_until(ended, c, 1000));
  out = received();
  CHECK(strncmp(out, "HTTP/1.1 408 ", 13) == 0 && strstr(out, "headers"));
  sdone();
  app_site.opts.header_timeout_ms = 10000;
}

/* A body large enough that reading pauses while it goes to disk: the
 * connection reads again after the answer, and serves the next request. */
static void test_keep_alive_after_spooled_body(void) {
  mw_conn *c = sconn();
  mw_conn_resume(c);
  mw_str req = {0};
  mw_str_appendz(&req, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n\r\n");
  for (int i = 0; i < 30000; i++) mw_str_appendz(&req, "0123456789");
  c->proto->on_read(c, req.p, req.len); /* one read: the end comes while reading is paused */
  CHECK(run_until(answered, c, 5000) && S.spooled && S.body_len == 300000);
  const char *next = "GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
  CHECK(write(peer, next, strlen(next)) == (ssize_t)strlen(next));
  CHECK(run_until(two_answers, c, 3000));
  CHECK(S.count == 2 && strcmp(S.path, "/after") == 0);
  mw_str_free(&req);
  sdone();
}

/* A client gone while its body is on its way to disk: nothing is left. */
static void test_gone_mid_body(void) {
  app_site.opts.body_buffer = 16;
  mw_conn *c = sconn();
  mw_str req = {0};
  mw_str_appendz(&req, "POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
                       "Content-Length: 100000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\n");
  for (int i = 0; i < 500; i++) mw_str_appendz(&req, "0123456789");
  c->proto->on_read(c, req.p, req.len);
  mw_conn_close(c); /* while the file is being created and written */
  CHECK(run_until(tmp_empty, NULL, 5000));
  sdone();
  mw_str_reset(&req);
  c = sconn();
  mw_str_appendz(&req, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n");
  for (int i = 0; i < 500; i++) mw_str_appendz(&req, "0123456789");
  c->proto->on_read(c, req.p, req.len);
  c->proto->on_eof(c);
  CHECK(run_until(tmp_empty, NULL, 5000));
  sdone();
  CHECK(body_memory_held() == 0);
  mw_str_free(&req);
  app_site.opts.body_buffer = 64 * 1024;
}

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/moonwire-test-http-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  cfg.http.tmp_dir = tmpdir;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg.server);
  app_site = (http_site){{handler, NULL}, cfg.http};

  test_simple_get();
  test_byte_by_byte();
  test_pipelining_in_order();
  test_pipelining_waits_for_deferred_answer();
  test_chunked_body();
  test_chunked_trailers_are_ignored();
  test_http10();
  test_connection_close();
  test_head_and_304_have_no_body();
  test_malformed_is_400();
  test_header_limit_is_431();
  test_body_limit_is_413();
  test_upgrade_request_is_answered_then_closed();
  test_response_headers();
  test_dates();
  test_streamed_response();
  test_stream_client_gone();
  test_expect_continue();
  test_host_and_targets();
  test_spooled_body();
  test_multipart();
  test_body_timeouts();
  test_keep_alive_after_spooled_body();
  test_gone_mid_body();

  test_stop_keeps_an_unsent_answer(); /* last: the server is stopping after it */

  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  rmdir(tmpdir);
  mw_str_free(&got);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
