/* test_http.c — the HTTP glue: bytes in through a connection, parsed
 * requests out to a handler, serialised responses in the write queue. No
 * socket: the connection is fed directly and its queue read back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "server.h"

#include "check.h"

static uv_loop_t loop;
static mw_server srv;

/* What the handler saw, and how it should answer. */
typedef struct seen {
  char method[16], path[256], query[256], body[4096], host[64], te[64];
  int nheaders, count, http_minor;
  bool keep_alive, defer;
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
  copy(S.path, sizeof S.path, req->path, req->path_len);
  copy(S.query, sizeof S.query, req->query, req->query_len);
  copy(S.body, sizeof S.body, req->body, req->body_len);
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
  char body[300];
  snprintf(body, sizeof body, "%s %s", S.method, S.path);
  http_res_simple(res, strcmp(S.path, "/gone") == 0 ? 304 : 200, "text/plain", body);
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
  return mw_conn_new(&srv);
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
  srv.cfg.max_body = 10;
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
  srv.cfg.max_body = 1024 * 1024;
}

static void test_upgrade_request_is_answered_then_closed(void) {
  mw_conn *c = conn();
  feed(c, "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: something\r\n\r\n\x01\x02\x03");
  CHECK(S.count == 1);
  CHECK(c->ending);
  done(c);
}

static void test_response_headers(void) {
  http_req req = {.method = "GET", .method_id = 1, .keep_alive = true, .http_minor = 1};
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

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.quiet = true;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg);
  http_set_handler(&srv, &(http_handler){handler, NULL});

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

  test_stop_keeps_an_unsent_answer(); /* last: the server is stopping after it */

  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
