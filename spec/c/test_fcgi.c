/* test_fcgi.c — the FastCGI responder: the record parser and the name-value
 * pairs on their own, then records in through a connection without a
 * socket, requests out to a handler, and the records in its write queue. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "body.h"
#include "config.h"
#include "fcgi.h"
#include "http.h"
#include "server.h"

#include "check.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

static uv_loop_t loop;
static mw_server srv;

/* ---- the parser and the pairs ---- */

typedef struct got {
  int n;
  uint8_t type[16];
  uint16_t id[16];
  char content[16][256];
  size_t len[16];
  int stop_at; /* stop the parse at this record (1-based), 0: never */
} got;

static int collect(void *ud, const fcgi_record *r) {
  got *g = ud;
  if (g->n < 16) {
    g->type[g->n] = r->type;
    g->id[g->n] = r->id;
    g->len[g->n] = r->len;
    memcpy(g->content[g->n], r->content, r->len < 255 ? r->len : 255);
    g->content[g->n][r->len < 255 ? r->len : 255] = '\0';
  }
  g->n++;
  return g->stop_at && g->n == g->stop_at ? 42 : 0;
}

/* Appends a record (content, then padding bytes) to s. */
static void rec(mw_str *s, int type, unsigned id, const char *content, size_t len, unsigned padding) {
  char h[FCGI_HEADER_LEN];
  fcgi_put_header(h, type, id, len, padding);
  mw_str_append(s, h, sizeof h);
  mw_str_append(s, content, len);
  for (unsigned i = 0; i < padding; i++) mw_str_appendc(s, '\xee');
}

static void test_parser_whole_and_split(void) {
  mw_str s = {0};
  rec(&s, FCGI_PARAMS, 1, "abc", 3, 5);
  rec(&s, FCGI_STDIN, 258, "", 0, 0);
  rec(&s, FCGI_STDIN, 1, "hello", 5, 3);
  for (size_t step = 1; step <= s.len; step++) { /* every way of cutting it */
    fcgi_parser p = {0};
    got g = {0};
    int r = 0;
    for (size_t i = 0; i < s.len && !r; i += step)
      r = fcgi_parse(&p, s.p + i, i + step > s.len ? s.len - i : step, collect, &g);
    CHECK(r == 0);
    CHECK(g.n == 3);
    CHECK(g.type[0] == FCGI_PARAMS && g.id[0] == 1 && g.len[0] == 3 && strcmp(g.content[0], "abc") == 0);
    CHECK(g.type[1] == FCGI_STDIN && g.id[1] == 258 && g.len[1] == 0);
    CHECK(g.len[2] == 5 && strcmp(g.content[2], "hello") == 0);
    CHECK(p.have == 0 && p.rest == NULL); /* nothing held between records */
    fcgi_parser_free(&p);
  }
  mw_str_free(&s);
}

static void test_parser_errors(void) {
  fcgi_parser p = {0};
  got g = {0};
  mw_str s = {0};
  rec(&s, FCGI_PARAMS, 1, "x", 1, 0);
  s.p[0] = 2; /* version 2 */
  CHECK(fcgi_parse(&p, s.p, s.len, collect, &g) == FCGI_EMALFORMED);
  CHECK(g.n == 0);
  fcgi_parser_free(&p);
  /* Split: the version is checked once the header is in. */
  CHECK(fcgi_parse(&p, s.p, 3, collect, &g) == 0);
  CHECK(fcgi_parse(&p, s.p + 3, s.len - 3, collect, &g) == FCGI_EMALFORMED);
  fcgi_parser_free(&p);
  /* A callback stops the parse. */
  mw_str_reset(&s);
  rec(&s, FCGI_STDIN, 1, "a", 1, 0);
  rec(&s, FCGI_STDIN, 1, "b", 1, 0);
  rec(&s, FCGI_STDIN, 1, "c", 1, 0);
  g = (got){.stop_at = 2};
  CHECK(fcgi_parse(&p, s.p, s.len, collect, &g) == 42);
  CHECK(g.n == 2);
  fcgi_parser_free(&p);
  mw_str_free(&s);
}

static void test_pairs(void) {
  mw_str s = {0};
  char longv[300];
  memset(longv, 'v', sizeof longv);
  CHECK(fcgi_nv_append(&s, "A", 1, "1", 1) == 0);
  CHECK(fcgi_nv_append(&s, "LONG", 4, longv, sizeof longv) == 0);
  CHECK(fcgi_nv_append(&s, "EMPTY", 5, "", 0) == 0);
  CHECK(s.len == 2 + 2 + 1 + 4 + 4 + 300 + 2 + 5);
  CHECK((unsigned char)s.p[5] == 0x80 && s.p[8] == 0x2c); /* 300 in the 4-byte form */
  size_t pos = 0;
  fcgi_nv nv;
  CHECK(fcgi_nv_next(s.p, s.len, &pos, &nv) == 1 && nv.name_len == 1 && nv.value[0] == '1');
  CHECK(fcgi_nv_next(s.p, s.len, &pos, &nv) == 1 && nv.value_len == 300 && memcmp(nv.name, "LONG", 4) == 0);
  CHECK(fcgi_nv_next(s.p, s.len, &pos, &nv) == 1 && nv.value_len == 0 && nv.name_len == 5);
  CHECK(fcgi_nv_next(s.p, s.len, &pos, &nv) == 0);
  /* Cut anywhere inside the second pair: an error, and pos stays. */
  int bad = 0;
  for (size_t cut = 5; cut < 4 + 1 + 4 + 4 + 300; cut++) {
    pos = 0;
    if (fcgi_nv_next(s.p, cut, &pos, &nv) != 1 || fcgi_nv_next(s.p, cut, &pos, &nv) != -EINVAL || pos != 4) bad++;
  }
  CHECK(bad == 0);
  /* The 4-byte form for a short length is read too. */
  const char four[] = "\x80\x00\x00\x01\x01" "AB";
  pos = 0;
  CHECK(fcgi_nv_next(four, 7, &pos, &nv) == 1 && nv.name_len == 1 && nv.name[0] == 'A' && nv.value[0] == 'B');
  /* A length past the end, however large. */
  const char huge[] = "\xff\xff\xff\xff\x01" "AB";
  pos = 0;
  CHECK(fcgi_nv_next(huge, 7, &pos, &nv) == -EINVAL);
  mw_str_free(&s);
}

/* ---- through a connection ---- */

typedef struct seen {
  char method[16], url[512], path[256], query[256], body[4096], ua[64], ctype[64], clen[16], addr[48];
  char parts[256]; /* multipart: "name=value;" for a field, "name:filename:size;" for a file */
  size_t body_len;
  bool spooled;
  int count, nheaders;
  bool defer;
  size_t big; /* answer with this many bytes */
  http_res *pending;
} seen;
static seen S;

static void copy(char *dst, size_t cap, const char *src, size_t len) {
  if (!src) src = "", len = 0;
  if (len >= cap) len = cap - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

static void header(const http_req *req, const char *name, char *dst, size_t cap) {
  size_t n = 0;
  const char *v = http_req_header(req, name, &n);
  copy(dst, cap, v, n);
}

static void handler(void *ud, const http_req *req, http_res *res) {
  (void)ud;
  S.count++;
  copy(S.method, sizeof S.method, req->method, strlen(req->method));
  copy(S.url, sizeof S.url, req->url, req->url_len);
  copy(S.path, sizeof S.path, req->path, req->path_len);
  copy(S.query, sizeof S.query, req->query, req->query_len);
  size_t blen = 0;
  const char *body = http_req_body(req, &blen);
  copy(S.body, sizeof S.body, body, blen);
  S.body_len = req->body_len;
  S.spooled = req->body_file != NULL;
  S.parts[0] = '\0';
  for (int i = 0; i < req->nparts; i++) {
    const http_part *p = &req->parts[i];
    size_t l = strlen(S.parts);
    if (p->filename)
      snprintf(S.parts + l, sizeof S.parts - l, "%s:%s:%llu;", p->name, p->filename, (unsigned long long)p->size);
    else
      snprintf(S.parts + l, sizeof S.parts - l, "%s=%s;", p->name, p->value);
  }
  copy(S.addr, sizeof S.addr, req->remote_addr, strlen(req->remote_addr));
  header(req, "user-agent", S.ua, sizeof S.ua);
  header(req, "content-type", S.ctype, sizeof S.ctype);
  header(req, "content-length", S.clen, sizeof S.clen);
  S.nheaders = req->nheaders;
  if (S.defer) {
    S.pending = res;
    return;
  }
  if (S.big) {
    char *b = malloc(S.big);
    for (size_t i = 0; i < S.big; i++) b[i] = (char)('a' + i % 26);
    http_res_end(res, b, S.big);
    free(b);
    return;
  }
  char answer_[600];
  snprintf(answer_, sizeof answer_, "%s %s", S.method, S.url);
  http_res_simple(res, 200, "text/plain", answer_);
}

static mw_conn *conn(void) {
  memset(&S, 0, sizeof S);
  return mw_conn_new(&srv, false, fcgi_conn_attach, &app_site);
}

static void feed(mw_conn *c, const mw_str *s) { c->proto->on_read(c, s->p, s->len); }

static void done(mw_conn *c) {
  mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

/* Everything queued on c, as one string (caller frees). */
static mw_str queued(mw_conn *c) {
  mw_str out = {0};
  mw_str_append(&out, "", 0);
  for (uint32_t i = 0; i < c->wq_len; i++) mw_str_append(&out, c->wq[i].buf->data + c->wq[i].off, c->wq[i].len);
  return out;
}

/* The records of what c queued. */
typedef struct out {
  got rec;
  mw_str stdout_; /* STDOUT contents joined */
  int nstdout;
  size_t max_stdout;
  int end_status; /* protocolStatus of the last END_REQUEST, -1: none */
} out;

static int collect_out(void *ud, const fcgi_record *r) {
  out *o = ud;
  collect(&o->rec, r);
  if (r->type == FCGI_STDOUT) {
    mw_str_append(&o->stdout_, r->content, r->len);
    o->nstdout++;
    if (r->len > o->max_stdout) o->max_stdout = r->len;
  }
  if (r->type == FCGI_END_REQUEST && r->len == 8) o->end_status = (unsigned char)r->content[4];
  return 0;
}

static out read_out(mw_conn *c) {
  out o = {.end_status = -1};
  mw_str q = queued(c);
  fcgi_parser p = {0};
  CHECK(fcgi_parse(&p, q.p, q.len, collect_out, &o) == 0);
  CHECK(p.have == 0); /* whole records only */
  fcgi_parser_free(&p);
  mw_str_append(&o.stdout_, "", 0);
  mw_str_free(&q);
  return o;
}

static void begin(mw_str *s, unsigned id, bool keep) {
  char b[8] = {0, FCGI_RESPONDER, keep ? FCGI_KEEP_CONN : 0};
  rec(s, FCGI_BEGIN_REQUEST, id, b, 8, 0);
}

/* BEGIN_REQUEST, PARAMS from NULL-terminated name/value strings, STDIN. */
static void request(mw_str *s, unsigned id, bool keep, const char **vars, const char *body) {
  begin(s, id, keep);
  mw_str params = {0};
  for (int i = 0; vars[i]; i += 2) fcgi_nv_append(&params, vars[i], strlen(vars[i]), vars[i + 1], strlen(vars[i + 1]));
  if (params.len) rec(s, FCGI_PARAMS, id, params.p, params.len, 0);
  rec(s, FCGI_PARAMS, id, "", 0, 0);
  if (body && *body) rec(s, FCGI_STDIN, id, body, strlen(body), 0);
  rec(s, FCGI_STDIN, id, "", 0, 0);
  mw_str_free(&params);
}

static void test_get(void) {
  mw_conn *c = conn();
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/pets/1?x=1", "QUERY_STRING", "x=1",
                        "HTTP_USER_AGENT", "curl/8", "REMOTE_ADDR", "10.1.2.3", "SERVER_SOFTWARE", "nginx", NULL};
  request(&s, 1, false, vars, NULL);
  feed(c, &s);
  CHECK(S.count == 1);
  CHECK(strcmp(S.method, "GET") == 0);
  CHECK(strcmp(S.url, "/pets/1?x=1") == 0);
  CHECK(strcmp(S.path, "/pets/1") == 0);
  CHECK(strcmp(S.query, "x=1") == 0);
  CHECK(strcmp(S.ua, "curl/8") == 0);
  CHECK(strcmp(S.addr, "10.1.2.3") == 0);
  CHECK(S.nheaders == 1);
  out o = read_out(c);
  CHECK(strncmp(o.stdout_.p, "Status: 200 OK\r\nContent-Type: text/plain\r\n", 42) == 0);
  CHECK(strstr(o.stdout_.p, "Connection") == NULL);
  CHECK(strstr(o.stdout_.p, "Content-Length: 15\r\n") != NULL);
  CHECK(strstr(o.stdout_.p, "\r\n\r\nGET /pets/1?x=1") != NULL);
  CHECK(o.rec.n == 3); /* STDOUT, empty STDOUT, END_REQUEST */
  CHECK(o.rec.type[1] == FCGI_STDOUT && o.rec.len[1] == 0);
  CHECK(o.rec.type[2] == FCGI_END_REQUEST && o.rec.id[2] == 1 && o.end_status == FCGI_REQUEST_COMPLETE);
  CHECK(c->ending); /* no FCGI_KEEP_CONN */
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

/* A streamed body: STDOUT records as it is written (no Content-Length),
 * the empty STDOUT and END_REQUEST when it ends. */
static void test_streamed(void) {
  mw_conn *c = conn();
  S.defer = true;
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/s", NULL};
  request(&s, 4, true, vars, NULL);
  feed(c, &s);
  http_res *res = S.pending;
  CHECK(res != NULL);
  http_res_headerz(res, "Content-Type", "text/plain");
  CHECK(http_res_begin(res, HTTP_LEN_STREAM) == 0);
  CHECK(http_res_write_copy(res, "hello", 5) == 0);
  char *big = malloc(70000);
  memset(big, 'z', 70000);
  CHECK(http_res_write_copy(res, big, 70000) == 0);
  free(big);
  out o = read_out(c);
  CHECK(o.end_status == -1); /* not ended yet */
  mw_str_free(&o.stdout_);
  CHECK(http_res_finish(res) == 0);
  o = read_out(c);
  CHECK(strncmp(o.stdout_.p, "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhellozzz", 52) == 0);
  CHECK(strstr(o.stdout_.p, "Content-Length") == NULL);
  CHECK(o.stdout_.len == 44 + 5 + 70000);
  CHECK(o.max_stdout <= FCGI_MAX_CONTENT);
  CHECK(o.end_status == FCGI_REQUEST_COMPLETE);
  CHECK(!c->ending); /* FCGI_KEEP_CONN */
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

static void test_post_and_url_from_script_name(void) {
  mw_conn *c = conn();
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "POST",   "SCRIPT_NAME",  "/api",  "PATH_INFO",    "/pets",
                        "QUERY_STRING",   "a=b",    "CONTENT_TYPE", "text/x", "CONTENT_LENGTH", "11",
                        NULL};
  request(&s, 9, true, vars, "hello world");
  feed(c, &s);
  CHECK(S.count == 1);
  CHECK(strcmp(S.url, "/api/pets?a=b") == 0);
  CHECK(strcmp(S.path, "/api/pets") == 0);
  CHECK(strcmp(S.body, "hello world") == 0);
  CHECK(strcmp(S.ctype, "text/x") == 0);
  CHECK(strcmp(S.clen, "11") == 0);
  CHECK(!c->ending); /* FCGI_KEEP_CONN */
  /* The next request on the same connection, the same id again. */
  mw_str_reset(&s);
  const char *next[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/again", NULL};
  request(&s, 9, true, next, NULL);
  feed(c, &s);
  CHECK(S.count == 2 && strcmp(S.url, "/again") == 0);
  out o = read_out(c);
  CHECK(o.rec.n == 6);
  CHECK(strstr(o.stdout_.p, "POST /api/pets?a=b") && strstr(o.stdout_.p, "GET /again"));
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

static void test_big_response_in_records(void) {
  mw_conn *c = conn();
  S.big = 200000;
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/big", NULL};
  request(&s, 1, false, vars, NULL);
  feed(c, &s);
  out o = read_out(c);
  CHECK(o.max_stdout == FCGI_MAX_CONTENT);
  CHECK(o.nstdout == 5); /* 4 with content (200,000 + head), the empty one */
  const char *body = strstr(o.stdout_.p, "\r\n\r\n");
  CHECK(body && strlen(body + 4) == 200000);
  bool same = body != NULL;
  for (size_t i = 0; same && i < 200000; i++) same = body[4 + i] == (char)('a' + i % 26);
  CHECK(same);
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

static void test_head_has_no_body(void) {
  mw_conn *c = conn();
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "HEAD", "REQUEST_URI", "/h", NULL};
  request(&s, 1, false, vars, NULL);
  feed(c, &s);
  out o = read_out(c);
  CHECK(strstr(o.stdout_.p, "Content-Length: 7\r\n") != NULL);
  const char *end = strstr(o.stdout_.p, "\r\n\r\n");
  CHECK(end && end[4] == '\0');
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

static void test_management(void) {
  mw_conn *c = conn();
  mw_str s = {0}, q = {0};
  fcgi_nv_append(&q, "FCGI_MAX_CONNS", 14, "", 0);
  fcgi_nv_append(&q, "FCGI_MPXS_CONNS", 15, "", 0);
  fcgi_nv_append(&q, "FCGI_MPXS_CONNS", 15, "", 0);
  rec(&s, FCGI_GET_VALUES, 0, q.p, q.len, 0);
  rec(&s, 200, 0, "", 0, 0);
  feed(c, &s);
  out o = read_out(c);
  CHECK(o.rec.n == 2);
  CHECK(o.rec.type[0] == FCGI_GET_VALUES_RESULT && o.rec.id[0] == 0);
  CHECK(o.rec.len[0] == 18 && memcmp(o.rec.content[0], "\x0f\x01" "FCGI_MPXS_CONNS0", 18) == 0);
  CHECK(o.rec.type[1] == FCGI_UNKNOWN_TYPE && o.rec.len[1] == 8 && (unsigned char)o.rec.content[1][0] == 200);
  CHECK(!c->ending && !c->closing);
  mw_str_free(&o.stdout_);
  mw_str_free(&q);
  mw_str_free(&s);
  done(c);
}

static void test_one_request_at_a_time(void) {
  mw_conn *c = conn();
  S.defer = true;
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/slow", NULL};
  request(&s, 1, true, vars, NULL);
  const char *other[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/other", NULL};
  request(&s, 2, true, other, NULL); /* its streams are ignored */
  char role[8] = {0, FCGI_AUTHORIZER, 0};
  feed(c, &s);
  CHECK(S.count == 1 && strcmp(S.url, "/slow") == 0);
  out o = read_out(c);
  CHECK(o.rec.n == 1 && o.rec.type[0] == FCGI_END_REQUEST && o.rec.id[0] == 2 && o.end_status == FCGI_CANT_MPX_CONN);
  mw_str_free(&o.stdout_);
  S.defer = false;
  http_res_simple(S.pending, 200, "text/plain", "slow");
  o = read_out(c);
  CHECK(o.rec.n == 4 && o.rec.id[3] == 1 && o.end_status == FCGI_REQUEST_COMPLETE);
  CHECK(strstr(o.stdout_.p, "\r\n\r\nslow") != NULL);
  mw_str_free(&o.stdout_);
  /* A role other than Responder. */
  mw_str_reset(&s);
  rec(&s, FCGI_BEGIN_REQUEST, 3, role, 8, 0);
  feed(c, &s);
  o = read_out(c);
  CHECK(o.end_status == FCGI_UNKNOWN_ROLE && c->ending);
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

/* The answer comes after the connection is gone, or after ABORT_REQUEST: it
 * is dropped, and nothing leaks or is used after being freed (the sanitizer
 * build checks). */
static void test_late_answers(void) {
  mw_conn *c = conn();
  S.defer = true;
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/poll", NULL};
  request(&s, 1, true, vars, NULL);
  feed(c, &s);
  http_res *pending = S.pending;
  CHECK(pending != NULL);
  done(c);
  if (pending) http_res_simple(pending, 200, "text/plain", "late");

  c = conn();
  S.defer = true;
  feed(c, &s);
  pending = S.pending;
  mw_str_reset(&s);
  rec(&s, FCGI_ABORT_REQUEST, 1, "", 0, 0);
  feed(c, &s);
  out o = read_out(c);
  CHECK(o.rec.n == 1 && o.rec.type[0] == FCGI_END_REQUEST && o.end_status == FCGI_REQUEST_COMPLETE);
  mw_str_free(&o.stdout_);
  CHECK(!c->ending); /* FCGI_KEEP_CONN */
  if (pending) http_res_simple(pending, 200, "text/plain", "late");
  o = read_out(c);
  CHECK(o.rec.n == 1); /* nothing more */
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
}

/* Feeds one request; returns the status of its answer (0: none). */
static int status_of(const char **vars, const char *body, bool *ended) {
  mw_conn *c = conn();
  mw_str s = {0};
  request(&s, 1, true, vars, body);
  feed(c, &s);
  out o = read_out(c);
  int st = 0;
  if (strncmp(o.stdout_.p, "Status: ", 8) == 0) st = atoi(o.stdout_.p + 8);
  *ended = c->ending || c->closing;
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(c);
  return st;
}

static void test_refusals(void) {
  bool ended;
  static char big[HTTP_MAX_HEADER_BYTES + 1];
  memset(big, 'b', sizeof big - 1);
  const char *h431[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/", "HTTP_X", big, NULL};
  CHECK(status_of(h431, NULL, &ended) == 431 && ended && S.count == 0);
  big[HTTP_MAX_HEADER_BYTES - 100] = '\0';
  const char *fine[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/", "HTTP_X", big, NULL};
  CHECK(status_of(fine, NULL, &ended) == 200 && !ended);
  const char *len413[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/", "CONTENT_LENGTH", "2000", NULL};
  CHECK(status_of(len413, NULL, &ended) == 413 && ended);
  const char *body413[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/", NULL};
  CHECK(status_of(body413, big, &ended) == 413 && ended && S.count == 0);
  const char *cut[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/", "CONTENT_LENGTH", "10", NULL};
  CHECK(status_of(cut, "short", &ended) == 400 && ended && S.count == 0);
  const char *badlen[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/", "CONTENT_LENGTH", "1e3", NULL};
  CHECK(status_of(badlen, NULL, &ended) == 400);
  const char *nomethod[] = {"REQUEST_URI", "/", NULL};
  CHECK(status_of(nomethod, NULL, &ended) == 400);
  const char *badmethod[] = {"REQUEST_METHOD", "get", "REQUEST_URI", "/", NULL};
  CHECK(status_of(badmethod, NULL, &ended) == 400);
  const char *nourl[] = {"REQUEST_METHOD", "GET", NULL};
  CHECK(status_of(nourl, NULL, &ended) == 400);
  const char *ctl[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/a\tb", NULL};
  CHECK(status_of(ctl, NULL, &ended) == 400);
  const char *inject[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/", "HTTP_X", "a\r\nB: c", NULL};
  CHECK(status_of(inject, NULL, &ended) == 400);
  const char *badname[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/", "HTTP_X Y", "1", NULL};
  CHECK(status_of(badname, NULL, &ended) == 400);
}

static void test_malformed_closes(void) {
  /* Each: a record that breaks the protocol ends the connection unanswered. */
  static const char *bad[] = {
      "\x02\x01\x00\x01\x00\x08\x00\x00" "\x00\x01\x00\x00\x00\x00\x00\x00", /* version 2 */
      "\x01\x06\x00\x01\x00\x00\x00\x00",                                     /* STDOUT */
      "\x01\x01\x00\x01\x00\x02\x00\x00" "\x00\x01",                         /* short BEGIN_REQUEST */
      "\x01\x00\x00\x01\x00\x00\x00\x00",                                     /* type 0 */
  };
  static const size_t len[] = {16, 8, 10, 8};
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) {
    mw_conn *c = conn();
    c->proto->on_read(c, bad[i], len[i]);
    CHECK(c->ending || c->closing);
    CHECK(c->wq_len == 0);
    done(c);
  }
  /* A request begun twice, and a stream that goes on after its end. */
  mw_conn *c = conn();
  S.defer = true;
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/", NULL};
  request(&s, 1, true, vars, NULL);
  begin(&s, 1, true);
  feed(c, &s);
  CHECK(c->ending);
  if (S.pending) http_res_simple(S.pending, 200, "text/plain", "dropped");
  done(c);
  c = conn();
  mw_str_reset(&s);
  request(&s, 1, true, vars, NULL);
  rec(&s, FCGI_STDIN, 1, "more", 4, 0);
  S.defer = true;
  feed(c, &s);
  CHECK(c->ending);
  if (S.pending) http_res_simple(S.pending, 200, "text/plain", "dropped");
  done(c);
  mw_str_free(&s);
}


/* ---- bodies over a socket pair, the loop running ---- */

static int peer = -1;
static mw_str got_bytes;
static bool peer_eof;
static char tmpdir[64];

static mw_conn *sconn(void) {
  memset(&S, 0, sizeof S);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) abort();
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  mw_conn *c = mw_conn_new(&srv, true, fcgi_conn_attach, &app_site);
  uv_pipe_open(&c->pipe, sv[0]);
  peer = sv[1];
  mw_str_reset(&got_bytes);
  mw_str_append(&got_bytes, "", 0);
  peer_eof = false;
  return c;
}

static void received(void) {
  char buf[65536];
  ssize_t n;
  while ((n = read(peer, buf, sizeof buf)) > 0) mw_str_append(&got_bytes, buf, (size_t)n);
  if (n == 0) peer_eof = true;
}

static void on_tick(uv_timer_t *t) { (void)t; }

static bool closed_by_server(void) {
  received();
  return peer_eof;
}

static bool run_until(bool (*cond)(void), uint64_t ms) {
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  uv_update_time(&loop);
  uint64_t end = uv_now(&loop) + ms;
  while (!cond() && uv_now(&loop) < end) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return cond();
}

/* The STDOUT of what came back ends with END_REQUEST. */
static bool answered(void) {
  received();
  out o = {.end_status = -1};
  fcgi_parser p = {0};
  fcgi_parse(&p, got_bytes.p, got_bytes.len, collect_out, &o);
  fcgi_parser_free(&p);
  mw_str_free(&o.stdout_);
  return o.end_status >= 0;
}

/* The answer's STDOUT (caller frees). */
static mw_str answer(void) {
  out o = {.end_status = -1};
  fcgi_parser p = {0};
  fcgi_parse(&p, got_bytes.p, got_bytes.len, collect_out, &o);
  fcgi_parser_free(&p);
  mw_str_append(&o.stdout_, "", 0);
  return o.stdout_;
}

static bool settled(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n == 0 && body_memory_held() == 0;
}

static void sdone(void) {
  close(peer);
  peer = -1;
  for (mw_conn *c = srv.conns; c; c = c->next) mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

static void test_spooled_and_multipart(void) {
  app_site.opts.body_buffer = 100;
  app_site.opts.max_body = 100000;
  mw_conn *c = sconn();
  mw_str s = {0};
  char big[3000];
  for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('A' + i % 26);
  big[sizeof big - 1] = '\0';
  const char *vars[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/big", "CONTENT_LENGTH", "2999", NULL};
  request(&s, 1, true, vars, big);
  feed(c, &s);
  CHECK(run_until(answered, 5000));
  CHECK(S.count == 1 && S.spooled && S.body_len == 2999 && strcmp(S.body, big) == 0);
  sdone();
  c = sconn();
  mw_str_reset(&s);
  const char *form = "--b\r\nContent-Disposition: form-data; name=t\r\n\r\nhi\r\n"
                     "--b\r\nContent-Disposition: form-data; name=f; filename=x.txt\r\n\r\nfile body\r\n--b--\r\n";
  char len[24];
  snprintf(len, sizeof len, "%zu", strlen(form));
  const char *mvars[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/form", "CONTENT_TYPE",
                         "multipart/form-data; boundary=b", "CONTENT_LENGTH", len, NULL};
  request(&s, 1, true, mvars, form);
  feed(c, &s);
  CHECK(run_until(answered, 5000));
  CHECK(S.count == 1 && strcmp(S.parts, "t=hi;f:x.txt:9;") == 0);
  sdone();
  CHECK(run_until(settled, 5000));
  /* A malformed one is refused, as over HTTP. */
  c = sconn();
  mw_str_reset(&s);
  const char *bad = "--b\r\nno headers\r\n\r\n--b--";
  snprintf(len, sizeof len, "%zu", strlen(bad));
  request(&s, 1, true, mvars, bad);
  feed(c, &s);
  CHECK(run_until(answered, 5000));
  mw_str a = answer();
  CHECK(strncmp(a.p, "Status: 400 ", 12) == 0 && strstr(a.p, "multipart") && S.count == 0);
  mw_str_free(&a);
  sdone();
  mw_str_free(&s);
  app_site.opts.body_buffer = 64 * 1024;
  app_site.opts.max_body = 1000;
}

/* Writes all of s to the server through the socket (the server reading it
 * as it would from nginx), running the loop while the socket is full. */
static void send_all(const mw_str *s) {
  size_t off = 0;
  while (off < s->len) {
    ssize_t n = write(peer, s->p + off, s->len - off);
    if (n > 0) off += (size_t)n;
    else uv_run(&loop, UV_RUN_NOWAIT);
  }
}

static int ends;

static bool two_answers(void) {
  received();
  out o = {.end_status = -1};
  fcgi_parser p = {0};
  fcgi_parse(&p, got_bytes.p, got_bytes.len, collect_out, &o);
  fcgi_parser_free(&p);
  mw_str_free(&o.stdout_);
  ends = 0;
  for (int i = 0; i < o.rec.n && i < 16; i++) ends += o.rec.type[i] == FCGI_END_REQUEST;
  return ends >= 2;
}

/* A body large enough that reading pauses while it goes to disk: once it
 * is there, the connection reads again, and the next request is served. */
static void test_keep_conn_after_spooled_body(void) {
  app_site.opts.max_body = 1000000;
  mw_conn *c = sconn();
  mw_conn_resume(c);
  mw_str s = {0}, body = {0};
  for (int i = 0; i < 30000; i++) mw_str_appendz(&body, "0123456789");
  char len[24];
  snprintf(len, sizeof len, "%zu", body.len);
  const char *vars[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/big", "CONTENT_LENGTH", len, NULL};
  begin(&s, 1, true);
  mw_str params = {0};
  for (int i = 0; vars[i]; i += 2) fcgi_nv_append(&params, vars[i], strlen(vars[i]), vars[i + 1], strlen(vars[i + 1]));
  rec(&s, FCGI_PARAMS, 1, params.p, params.len, 0);
  rec(&s, FCGI_PARAMS, 1, "", 0, 0);
  for (size_t off = 0; off < body.len; off += 60000)
    rec(&s, FCGI_STDIN, 1, body.p + off, body.len - off < 60000 ? body.len - off : 60000, 0);
  rec(&s, FCGI_STDIN, 1, "", 0, 0);
  feed(c, &s); /* all at once, as one read would bring it: the end comes while reading is paused */
  CHECK(run_until(answered, 5000) && S.count == 1 && S.body_len == body.len);
  /* As nginx does: the next request once the answer is in. */
  mw_str_reset(&s);
  const char *next[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/after", NULL};
  request(&s, 2, true, next, NULL);
  send_all(&s);
  CHECK(run_until(two_answers, 3000));
  CHECK(S.count == 2 && strcmp(S.url, "/after") == 0);
  sdone();
  mw_str_free(&params);
  mw_str_free(&body);
  mw_str_free(&s);
  app_site.opts.max_body = 1000;
}

/* STDIN must keep coming: --body-timeout between records, 408 past it. */
static void test_body_timeout(void) {
  app_site.opts.body_timeout_ms = 60;
  mw_conn *c = sconn();
  mw_str s = {0};
  begin(&s, 1, true);
  mw_str params = {0};
  fcgi_nv_append(&params, "REQUEST_METHOD", 14, "POST", 4);
  fcgi_nv_append(&params, "REQUEST_URI", 11, "/slow", 5);
  fcgi_nv_append(&params, "CONTENT_LENGTH", 14, "10", 2);
  rec(&s, FCGI_PARAMS, 1, params.p, params.len, 0);
  rec(&s, FCGI_PARAMS, 1, "", 0, 0);
  rec(&s, FCGI_STDIN, 1, "ab", 2, 0);
  feed(c, &s);
  CHECK(run_until(answered, 3000));
  mw_str a = answer();
  CHECK(strncmp(a.p, "Status: 408 ", 12) == 0 && strstr(a.p, "did not arrive in time") && S.count == 0);
  mw_str_free(&a);
  sdone();
  app_site.opts.body_timeout_ms = 60000;
  /* STDIN before the end of PARAMS: 400. */
  c = sconn();
  mw_str_reset(&s);
  begin(&s, 1, true);
  rec(&s, FCGI_PARAMS, 1, params.p, params.len, 0);
  rec(&s, FCGI_STDIN, 1, "ab", 2, 0);
  feed(c, &s);
  CHECK(run_until(answered, 3000));
  a = answer();
  CHECK(strncmp(a.p, "Status: 400 ", 12) == 0 && strstr(a.p, "STDIN before") && S.count == 0);
  mw_str_free(&a);
  sdone();
  /* PARAMS are the headers: --header-timeout for all of them, however
   * steadily they trickle in. */
  app_site.opts.header_timeout_ms = 150;
  c = sconn();
  mw_conn_resume(c);
  mw_str_reset(&s);
  begin(&s, 1, true);
  send_all(&s);
  int sent = 0;
  for (; sent < 100 && !peer_eof; sent++) {
    mw_str_reset(&s);
    rec(&s, FCGI_PARAMS, 1, params.p, params.len, 0);
    send_all(&s);
    run_until(closed_by_server, 20);
  }
  CHECK(run_until(closed_by_server, 1000) && sent < 50);
  sdone();
  app_site.opts.header_timeout_ms = 10000;
  mw_str_free(&params);
  mw_str_free(&s);
}

/* Shutdown: an idle connection goes, one whose answer is awaited ends after it. */
static void test_stop(void) {
  mw_conn *idle = conn();
  mw_conn *busy = mw_conn_new(&srv, false, fcgi_conn_attach, &app_site);
  S.defer = true;
  mw_str s = {0};
  const char *vars[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/poll", NULL};
  request(&s, 1, true, vars, NULL);
  feed(busy, &s);
  mw_server_stop(&srv);
  CHECK(idle->closing);
  CHECK(!busy->closing && !busy->ending);
  http_res_simple(S.pending, 200, "text/plain", "bye");
  CHECK(busy->ending);
  out o = read_out(busy);
  CHECK(strstr(o.stdout_.p, "\r\n\r\nbye") != NULL);
  mw_str_free(&o.stdout_);
  mw_str_free(&s);
  done(busy);
}

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  cfg.http.max_body = 1000;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/moonwire-test-fcgi-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  cfg.http.tmp_dir = tmpdir;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg.server);
  app_site = (http_site){{handler, NULL}, cfg.http};

  test_parser_whole_and_split();
  test_parser_errors();
  test_pairs();
  test_get();
  test_streamed();
  test_post_and_url_from_script_name();
  test_big_response_in_records();
  test_head_has_no_body();
  test_management();
  test_one_request_at_a_time();
  test_late_answers();
  test_refusals();
  test_malformed_closes();
  test_spooled_and_multipart();
  test_body_timeout();
  test_keep_conn_after_spooled_body();

  test_stop(); /* last: the server is stopping after it */

  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  rmdir(tmpdir);
  mw_str_free(&got_bytes);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
