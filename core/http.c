/* http.c — HTTP/1.x on a connection: llhttp glue, request/response objects,
 * keep-alive and pipelining, limits, the access log. */
#include "http.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "body.h"
#include "server.h"

/* ---- responses ---- */

const char *http_status_text(int s) {
  switch (s) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Entity";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

void http_date(int64_t t, char *out) {
  struct tm tm;
  time_t tt = (time_t)t;
  gmtime_r(&tt, &tm);
  strftime(out, 30, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int64_t http_parse_date(const char *s, size_t len) {
  char buf[64];
  if (len >= sizeof buf) return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end) return -1;
  return (int64_t)timegm(&tm);
}

/* The Date header changes once a second: format it once a second. */
static const char *date_now(void) {
  static char buf[32];
  static time_t last;
  time_t now = time(NULL);
  if (now != last) {
    last = now;
    http_date(now, buf);
  }
  return buf;
}

void http_res_init(http_res *res, const http_req *req, const http_carrier *c, void *data) {
  memset(res, 0, sizeof *res);
  res->status = 200;
  res->head_only = req->method_id == HTTP_HEAD;
  res->keep_alive = req->keep_alive;
  res->http_minor = req->http_minor;
  res->carrier = c;
  res->carrier_data = data;
}

void http_res_dispose(http_res *res) { mw_str_free(&res->headers); }

/* Appends the decimal digits of v at p; returns the end. */
static char *put_uint(char *p, size_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

static char *put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static bool header_safe(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return false;
  return true;
}

int http_res_header(http_res *res, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (nlen == 0 || !header_safe(name, nlen) || !header_safe(value, vlen) || memchr(name, ':', nlen))
    return -EINVAL;
  /* Every header of every response comes here: the names the core treats
   * specially are told apart by length before any comparison. */
  switch (nlen) {
  case 4:
    if (mw_ieq(name, nlen, "date")) return 0;
    break;
  case 10:
    if (mw_ieq(name, nlen, "connection")) return 0;
    break;
  case 12:
    if (mw_ieq(name, nlen, "content-type")) res->has_type = true;
    break;
  case 14:
    if (mw_ieq(name, nlen, "content-length")) return 0;
    break;
  case 17:
    if (mw_ieq(name, nlen, "transfer-encoding")) return 0;
    break;
  }
  if (mw_str_reserve(&res->headers, nlen + vlen + 4)) return -ENOMEM;
  char *p = res->headers.p + res->headers.len;
  p = put(p, name, nlen);
  p = PUT_LIT(p, ": ");
  p = put(p, value, vlen);
  p = PUT_LIT(p, "\r\n");
  *p = '\0';
  res->headers.len = (size_t)(p - res->headers.p);
  return 0;
}

int http_res_headerz(http_res *res, const char *name, const char *value) {
  return http_res_header(res, name, strlen(name), value, strlen(value));
}

/* Finishes res with body (a shared buffer) or, when body is NULL, with a
 * copy of copy/clen, which then follows the head in the head's own buffer:
 * one allocation and one write-queue item for the whole response. */
static int res_finish(http_res *res, mw_buf *body, const char *copy, size_t clen) {
  if (res->done) {
    mw_buf_unref(body);
    return -EALREADY;
  }
  res->done = true;
  int st = res->status;
  bool bodiless = st < 200 || st == 204 || st == 304;
  size_t blen = body ? body->len : clen;
  size_t inline_len = body || bodiless || res->head_only ? 0 : clen;
  /* Every response goes through here: the head is written straight into
   * its buffer (no printf, no intermediate string), sized from its parts. */
  const char *reason = http_status_text(st);
  size_t rlen = strlen(reason);
  const char *date = date_now();
  size_t dlen = strlen(date);
  size_t cap = sizeof "HTTP/1.1 -2147483648 \r\n" + rlen + res->headers.len + sizeof "Content-Length: \r\n" + 20 +
               sizeof "Date: \r\n" + dlen + sizeof "Connection: keep-alive\r\n" + 2 + inline_len;
  mw_buf *head = mw_buf_new(cap);
  if (!head) {
    mw_buf_unref(body);
    return -ENOMEM;
  }
  char *p = head->data;
  p = res->http_minor == 0 ? PUT_LIT(p, "HTTP/1.0 ") : PUT_LIT(p, "HTTP/1.1 ");
  if (st < 0) *p++ = '-';
  p = put_uint(p, st < 0 ? -(size_t)st : (size_t)st);
  *p++ = ' ';
  p = put(p, reason, rlen);
  p = PUT_LIT(p, "\r\n");
  if (res->headers.len) p = put(p, res->headers.p, res->headers.len);
  if (!bodiless) {
    p = PUT_LIT(p, "Content-Length: ");
    p = put_uint(p, blen);
    p = PUT_LIT(p, "\r\n");
  }
  p = PUT_LIT(p, "Date: ");
  p = put(p, date, dlen);
  p = PUT_LIT(p, "\r\n");
  if (!res->keep_alive) {
    if (res->http_minor != 0) p = PUT_LIT(p, "Connection: close\r\n");
  } else if (res->http_minor == 0) {
    p = PUT_LIT(p, "Connection: keep-alive\r\n");
  }
  p = PUT_LIT(p, "\r\n");
  if (inline_len) p = put(p, copy, inline_len);
  head->len = (size_t)(p - head->data);
  head->data[head->len] = '\0';
  if (bodiless || res->head_only) {
    mw_buf_unref(body);
    body = NULL;
  }
  res->bytes_sent = bodiless ? 0 : blen;
  res->carrier->end(res, head, body);
  return 0;
}

int http_res_end_buf(http_res *res, mw_buf *body) { return res_finish(res, body, NULL, 0); }

int http_res_end(http_res *res, const char *body, size_t len) { return res_finish(res, NULL, body, len); }

int http_res_simple(http_res *res, int status, const char *content_type, const char *body) {
  res->status = status;
  if (content_type) http_res_headerz(res, "Content-Type", content_type);
  return http_res_end(res, body, strlen(body));
}

const char *http_req_header(const http_req *req, const char *name, size_t *len) {
  for (int i = 0; i < req->nheaders; i++) {
    const http_header *h = &req->headers[i];
    if (mw_ieq(h->name, h->name_len, name)) {
      if (len) *len = h->value_len;
      return h->value;
    }
  }
  return NULL;
}

/* ---- HTTP/1.x connections ---- */

typedef struct hdr_off {
  uint32_t no, nl, vo, vl;
} hdr_off;

typedef struct http_conn http_conn;

/* One request and its response, from its first byte until the response has
 * been queued. Freed by the carrier's end(), even if the connection is gone. */
typedef struct http_txn {
  http_req req;
  http_res res;
  http_conn *hc;          /* NULL once the connection is gone */
  mw_str raw;             /* url and header bytes */
  http_body body;         /* the request body as it arrives (body.c) */
  hdr_off *hoff;
  uint32_t nh, hcap;
  uint32_t nhdrs_cap;     /* room in req.headers */
  uint32_t url_len;
  size_t hdr_bytes;
  int err_status;         /* 400/413/431 decided while parsing */
  const char *err_why;    /* and why, for the client (NULL: the status says it) */
  uint64_t body_deadline; /* loop time the whole body is due by; 0: none */
  bool field_open, value_open, headers_done;
  bool has_body;          /* body_begin was called */
  bool body_wait;         /* complete, waiting for the disk before dispatch */
  bool asterisk;          /* OPTIONS * */
} http_txn;

struct http_conn {
  mw_conn *c;
  llhttp_t parser;
  http_txn *txn;          /* being parsed, or dispatched and unanswered */
  mw_str stash;           /* bytes received while a response was pending */
  bool busy;              /* txn dispatched, not yet answered */
  bool in_feed;           /* inside http_feed (answers queue, feed goes on) */
  bool detached;          /* the connection was handed to another protocol */
  bool peer_eof;
  bool body_paused;       /* reading stopped while the body waits for the disk */
};

/* Finished transactions are kept, buffers and all, for the next requests:
 * a small request then allocates nothing while it is parsed. The spares are
 * server-wide (the loop is single-threaded) and few, so an idle connection
 * still holds no transaction. Sanitizer builds keep none, so that a
 * transaction used after its end is caught. */
#if defined(__SANITIZE_ADDRESS__)
#define TXN_SPARES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TXN_SPARES 0
#endif
#endif
#ifndef TXN_SPARES
#define TXN_SPARES 16
#endif
#define TXN_SPARE_BYTES 16384 /* a transaction whose buffers grew past this is freed */

static http_txn *txn_spare[TXN_SPARES + 1];
static int ntxn_spare;

static http_txn *txn_new(void) {
  if (!ntxn_spare) return calloc(1, sizeof(http_txn));
  http_txn *t = txn_spare[--ntxn_spare];
  http_txn kept = *t;
  memset(t, 0, sizeof *t);
  t->raw = kept.raw;
  t->body.mem = kept.body.mem;
  t->res.headers = kept.res.headers;
  mw_str_reset(&t->raw);
  mw_str_reset(&t->body.mem);
  mw_str_reset(&t->res.headers);
  t->hoff = kept.hoff;
  t->hcap = kept.hcap;
  t->req.headers = kept.req.headers;
  t->nhdrs_cap = kept.nhdrs_cap;
  return t;
}

static void txn_free(http_txn *t) {
  body_release(&t->body); /* its temporary files go */
  if (ntxn_spare < TXN_SPARES && t->raw.cap <= TXN_SPARE_BYTES && t->body.mem.cap <= TXN_SPARE_BYTES &&
      t->res.headers.cap <= TXN_SPARE_BYTES && t->hcap <= 64) {
    txn_spare[ntxn_spare++] = t;
    return;
  }
  mw_str_free(&t->raw);
  body_dispose(&t->body);
  free(t->hoff);
  free(t->req.headers);
  http_res_dispose(&t->res);
  free(t);
}

static bool log_tty = false;
static int log_checked = 0;

static void access_log(mw_server *srv, http_txn *t) {
  if (srv->cfg.quiet) return;
  if (!log_checked) {
    log_checked = 1;
    log_tty = isatty(STDOUT_FILENO);
  }
  double ms = (double)(mw_now_ns() - t->req.start_ns) / 1e6;
  int st = t->res.status;
  const char *color = "";
  if (log_tty) color = st >= 500 ? "\x1b[31m" : st >= 400 ? "\x1b[33m" : st >= 300 ? "\x1b[36m" : "\x1b[32m";
  printf("%s%s %.*s %s%d%s %.3f ms - %zu%s\n", log_tty ? "\x1b[0m" : "", t->req.method,
         (int)t->req.url_len, t->req.url ? t->req.url : "", color, st, log_tty ? "\x1b[0m" : "",
         ms, t->res.bytes_sent, "");
}

static void http_feed(http_conn *hc, const char *data, size_t len);

static void continue_after_response(http_conn *hc) {
  if (hc->detached) return;
  mw_conn *c = hc->c;
  if (hc->peer_eof || c->srv->stopping) {
    if (hc->stash.len == 0 || c->srv->stopping) {
      mw_conn_end(c);
      return;
    }
  }
  mw_conn_set_timeout(c, c->srv->cfg.keepalive_timeout_ms);
  if (hc->in_feed) return; /* the feed loop goes on by itself */
  if (hc->stash.len) {
    mw_str pending = hc->stash;
    hc->stash = (mw_str){0};
    http_feed(hc, pending.p, pending.len);
    mw_str_free(&pending);
  }
  if (!hc->busy && !c->ending && !c->closing) mw_conn_resume(c);
}

static void carrier_end(http_res *res, mw_buf *head, mw_buf *body) {
  http_txn *t = res->carrier_data;
  http_conn *hc = t->hc;
  if (!hc) { /* the connection went away first */
    mw_buf_unref(head);
    mw_buf_unref(body);
    txn_free(t);
    return;
  }
  mw_conn *c = hc->c;
  mw_conn_write(c, head, 0, head->len);
  if (body) mw_conn_write(c, body, 0, body->len);
  access_log(c->srv, t);
  bool keep = res->keep_alive && !t->err_status;
  hc->txn = NULL;
  hc->busy = false;
  txn_free(t);
  if (!keep) {
    mw_str_free(&hc->stash);
    mw_conn_end(c);
    return;
  }
  continue_after_response(hc);
}

static const http_carrier http_tcp_carrier = {carrier_end};

static http_txn *cur(llhttp_t *p) { return ((http_conn *)p->data)->txn; }

static int add_header_bytes(http_txn *t, size_t n) {
  t->hdr_bytes += n;
  if (t->hdr_bytes > HTTP_MAX_HEADER_BYTES) {
    t->err_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  http_conn *hc = p->data;
  http_txn *t = txn_new();
  if (!t) return -1;
  t->hc = hc;
  t->req.start_ns = mw_now_ns();
  t->req.remote_addr = hc->c->addr;
  hc->txn = t;
  mw_conn_set_timeout(hc->c, hc->c->srv->cfg.header_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  http_txn *t = cur(p);
  if (add_header_bytes(t, len)) return -1;
  t->url_len += (uint32_t)len;
  return mw_str_append(&t->raw, at, len) ? -1 : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  http_txn *t = cur(p);
  if (add_header_bytes(t, len + (t->field_open ? 0 : 4))) return -1;
  /* Chunked trailers arrive after the headers: counted, not kept (the
   * request's header pointers into raw must not move). */
  if (t->headers_done) return 0;
  if (!t->field_open) {
    if (t->nh == t->hcap) {
      uint32_t cap = t->hcap ? t->hcap * 2 : 16;
      hdr_off *h = realloc(t->hoff, cap * sizeof *h);
      if (!h) return -1;
      t->hoff = h;
      t->hcap = cap;
    }
    t->hoff[t->nh++] = (hdr_off){(uint32_t)t->raw.len, 0, 0, 0};
    t->field_open = true;
  }
  t->hoff[t->nh - 1].nl += (uint32_t)len;
  return mw_str_append(&t->raw, at, len) ? -1 : 0;
}

static int on_header_field_complete(llhttp_t *p) {
  http_txn *t = cur(p);
  t->field_open = false;
  if (t->headers_done) return 0;
  if (t->nh) t->hoff[t->nh - 1].vo = (uint32_t)t->raw.len;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  http_txn *t = cur(p);
  if (add_header_bytes(t, len)) return -1;
  if (t->headers_done) return 0;
  t->hoff[t->nh - 1].vl += (uint32_t)len;
  return mw_str_append(&t->raw, at, len) ? -1 : 0;
}

/* A body that waits for the disk must still arrive in time: between two
 * reads at most --body-timeout (nginx's client_body_timeout), in all at
 * most --body-deadline from its headers. While reading is paused for the
 * disk (reading = false), only the deadline runs. */
static void arm_body_timer(http_conn *hc, bool reading) {
  http_txn *t = hc->txn;
  mw_conn *c = hc->c;
  uint64_t ms = reading ? c->srv->cfg.body_timeout_ms : 0;
  if (t->body_deadline) {
    uint64_t now = uv_now(c->srv->loop);
    uint64_t left = t->body_deadline > now ? t->body_deadline - now : 1;
    if (!ms || left < ms) ms = left;
  }
  mw_conn_set_timeout(c, ms);
}

static bool authority_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch && strchr("-._~!$&'()*+,;=%[]:", ch));
}

static int add_hoff(http_txn *t, hdr_off h) {
  if (t->nh == t->hcap) {
    uint32_t cap = t->hcap ? t->hcap * 2 : 16;
    hdr_off *hs = realloc(t->hoff, cap * sizeof *hs);
    if (!hs) return -1;
    t->hoff = hs;
    t->hcap = cap;
  }
  t->hoff[t->nh++] = h;
  return 0;
}

/* RFC 9112 §3.2 and §3.2.2: the request target and Host. An origin-form
 * target (/path?q) stands; an absolute-form one (http://host:port/path?q,
 * what proxies are sent) becomes its origin-form for the route, and its
 * authority replaces the Host header; "*" is for OPTIONS only; CONNECT
 * (authority-form) asks for a tunnel, which this server does not open. An
 * HTTP/1.1 request needs exactly one Host (absolute-form aside), any
 * request at most one. Works on offsets in raw (it may grow). Returns 0 or
 * the status that refuses the request; *off and *len: the url in raw. */
static int check_target(http_txn *t, const llhttp_t *p, uint32_t *off, uint32_t *len) {
  const char *u = t->raw.p;
  uint32_t n = t->url_len, nhost = 0, host = 0;
  for (uint32_t i = 0; i < t->nh; i++) {
    if (mw_ieq(u + t->hoff[i].no, t->hoff[i].nl, "host") && nhost++ == 0) host = i;
  }
  *off = 0;
  *len = n;
  if (p->method == HTTP_CONNECT) {
    t->err_why = "this server opens no tunnels (CONNECT)";
    return 405;
  }
  if (nhost > 1) {
    t->err_why = "more than one Host header";
    return 400;
  }
  if (n >= 1 && u[0] == '/') {
    if (nhost == 0 && p->http_major == 1 && p->http_minor >= 1) {
      t->err_why = "an HTTP/1.1 request without a Host header";
      return 400;
    }
    return 0;
  }
  if (n == 1 && u[0] == '*') {
    if (p->method != HTTP_OPTIONS) return 400;
    t->asterisk = true;
    return 0;
  }
  /* absolute-form: scheme "://" authority [path] ["?" query] */
  uint32_t i = 0;
  while (i < n && u[i] != ':') i++;
  if (!(mw_ieq(u, i, "http") || mw_ieq(u, i, "https")) || n - i < 3 || memcmp(u + i, "://", 3) != 0) {
    t->err_why = "a request target that is neither a path nor an http(s) URL";
    return 400;
  }
  uint32_t a = i + 3, e = a;
  while (e < n && u[e] != '/' && u[e] != '?' && u[e] != '#') e++;
  if (e == a) return 400;
  for (uint32_t k = a; k < e; k++) {
    if (!authority_char((unsigned char)u[k])) { /* userinfo ("user@host") included: RFC 9110 §4.2.4 */
      t->err_why = "a request target with a bad authority";
      return 400;
    }
  }
  if (e < n && u[e] == '/') {
    *off = e;
    *len = n - e;
  } else { /* no path: "/" and what follows, put together after the headers */
    *off = (uint32_t)t->raw.len;
    *len = 1 + (n - e);
    /* Room first: what is appended comes from raw itself. */
    if (mw_str_reserve(&t->raw, 1 + n - e)) return 500;
    mw_str_appendc(&t->raw, '/');
    mw_str_append(&t->raw, t->raw.p + e, n - e);
  }
  if (nhost) {
    t->hoff[host].vo = a;
    t->hoff[host].vl = e - a;
  } else {
    uint32_t name = (uint32_t)t->raw.len;
    if (mw_str_append(&t->raw, "Host", 4) || add_hoff(t, (hdr_off){name, 4, a, e - a})) return 500;
  }
  return 0;
}

static bool is_token(const char *v, size_t n, const char *tok) {
  while (n && (*v == ' ' || *v == '\t')) v++, n--;
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  return mw_ieq(v, n, tok);
}

static void on_body_pause(void *ud);
static void on_body_resume(void *ud);
static void on_body_ready(void *ud);
static void on_body_failed(void *ud);
static const body_events http_body_events = {on_body_pause, on_body_resume, on_body_ready, on_body_failed};

static int on_headers_complete(llhttp_t *p) {
  http_conn *hc = p->data;
  http_txn *t = hc->txn;
  http_req *r = &t->req;
  mw_conn *c = hc->c;
  if (mw_str_append(&t->raw, "", 0)) return -1; /* make sure raw.p exists */
  r->method_id = p->method;
  r->method = llhttp_method_name(p->method);
  r->http_major = p->http_major;
  r->http_minor = p->http_minor;
  t->headers_done = true;
  r->url = t->raw.p; /* for the access log, should it be refused */
  r->url_len = t->url_len;
  uint32_t uoff, ulen;
  int st = check_target(t, p, &uoff, &ulen);
  if (st) {
    t->err_status = st;
    return -1;
  }
  r->url = t->raw.p + uoff;
  r->url_len = ulen;
  const char *q = memchr(r->url, '?', r->url_len);
  r->path = r->url;
  r->path_len = q ? (size_t)(q - r->url) : r->url_len;
  r->query = q ? q + 1 : "";
  r->query_len = q ? r->url_len - r->path_len - 1 : 0;
  if (t->nh) {
    if (t->nh > t->nhdrs_cap) {
      http_header *hs = realloc(r->headers, t->nh * sizeof *hs);
      if (!hs) return -1;
      r->headers = hs;
      t->nhdrs_cap = t->nh;
    }
    for (uint32_t i = 0; i < t->nh; i++) {
      r->headers[i] = (http_header){t->raw.p + t->hoff[i].no, t->hoff[i].nl, t->raw.p + t->hoff[i].vo,
                                    t->hoff[i].vl};
    }
    r->nheaders = (int)t->nh;
  }
  /* Expect (RFC 9110 §10.1.1): 100-continue is the only expectation there
   * is; HTTP/1.0 requests have none. */
  bool expect_continue = false;
  if (p->http_major == 1 && p->http_minor >= 1) {
    for (int i = 0; i < r->nheaders; i++) {
      const http_header *h = &r->headers[i];
      if (!mw_ieq(h->name, h->name_len, "expect")) continue;
      if (!is_token(h->value, h->value_len, "100-continue")) {
        t->err_status = 417;
        t->err_why = "the only expectation this server meets is 100-continue";
        return -1;
      }
      expect_continue = true;
    }
  }
  int64_t length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : (p->flags & F_CHUNKED) ? -1 : 0;
  if (length != 0) {
    mw_server *srv = c->srv;
    t->has_body = true;
    /* An oversized Content-Length is refused at once, before a byte of the
     * body is read (nginx does the same). */
    if (body_begin(&t->body, srv->loop, &srv->cfg, r, length, &http_body_events, t) != BODY_OK) {
      t->err_status = t->body.status;
      t->err_why = t->body.why;
      return -1;
    }
    /* The client waits for this before it sends the body (curl for a
     * second, then sends anyway). */
    if (expect_continue) mw_conn_write_copy(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    uint64_t dl = srv->cfg.body_deadline_ms;
    t->body_deadline = dl ? uv_now(srv->loop) + dl : 0;
    arm_body_timer(hc, true);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  http_conn *hc = p->data;
  http_txn *t = hc->txn;
  switch (body_feed(&t->body, at, len)) {
  case BODY_OK:
    if (!hc->body_paused) arm_body_timer(hc, true);
    return 0;
  case BODY_WAIT: /* the disk is behind: stop reading until it catches up */
    hc->body_paused = true;
    mw_conn_pause(hc->c);
    arm_body_timer(hc, false);
    return 0;
  default:
    t->err_status = t->body.status;
    t->err_why = t->body.why;
    return -1;
  }
}

static int on_message_complete(llhttp_t *p) {
  http_conn *hc = p->data;
  http_txn *t = hc->txn;
  if (t->has_body) {
    int r = body_end(&t->body);
    if (r == BODY_FAIL) {
      t->err_status = t->body.status;
      t->err_why = t->body.why;
      return -1;
    }
    t->body_wait = r == BODY_WAIT;
  }
  t->req.upgrade = p->upgrade;
  t->req.keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  /* Stop here: the next pipelined request waits until this one is answered. */
  return HPE_PAUSED;
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Answers a request the parser refused (with t->err_why, when there is
 * one), then ends the connection. */
static void reject(http_conn *hc, int status) {
  mw_conn *c = hc->c;
  http_txn *t = hc->txn;
  char body[320];
  if (t && t->err_why && *t->err_why)
    snprintf(body, sizeof body, "%d %s: %s\n", status, http_status_text(status), t->err_why);
  else
    snprintf(body, sizeof body, "%d %s\n", status, http_status_text(status));
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\nDate: %s\r\n\r\n",
                   status, http_status_text(status), strlen(body), date_now());
  mw_conn_write_copy(c, head, (size_t)n);
  mw_conn_write_copy(c, body, strlen(body));
  if (t && !c->srv->cfg.quiet) {
    if (!t->headers_done) { /* log what we know */
      t->req.method = llhttp_method_name(hc->parser.method);
      t->req.url = t->raw.p;
      t->req.url_len = t->url_len > 200 ? 200 : t->url_len;
    }
    t->res.status = status;
    t->res.bytes_sent = strlen(body);
    access_log(c->srv, t);
  } else if (!c->srv->cfg.quiet) {
    printf("- - %d - - %zu\n", status, strlen(body));
  }
  if (t) {
    txn_free(t);
    hc->txn = NULL;
  }
  hc->busy = false;
  mw_str_free(&hc->stash);
  mw_conn_end(c);
}

/* OPTIONS *: what the server as a whole answers to (RFC 9110 §9.3.7). */
static void answer_asterisk(http_res *res) {
  http_res_headerz(res, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  http_res_end(res, "", 0);
}

/* Hands the complete request to the handler. */
static void serve(http_conn *hc) {
  http_txn *t = hc->txn;
  mw_server *srv = hc->c->srv;
  hc->body_paused = false; /* reading goes on after the answer (continue_after_response) */
  mw_conn_set_timeout(hc->c, 0);
  if (t->has_body) {
    body_fill(&t->body, &t->req);
  } else {
    t->req.body = "";
    t->req.body_len = 0;
  }
  mw_str kept = t->res.headers; /* a spare transaction's buffer, empty */
  http_res_init(&t->res, &t->req, &http_tcp_carrier, t);
  t->res.headers = kept;
  if (srv->stopping) t->res.keep_alive = false;
  if (t->asterisk) answer_asterisk(&t->res);
  else if (srv->handle) srv->handle(srv->handle_ud, &t->req, &t->res);
  else http_res_simple(&t->res, 404, "text/plain; charset=utf-8", "Not Found\n");
}

static void dispatch(http_conn *hc) {
  hc->busy = true;
  if (hc->txn->body_wait) { /* served once the disk has the whole body */
    mw_conn_pause(hc->c);
    arm_body_timer(hc, false);
    return;
  }
  serve(hc);
}

/* The body events (ud: the transaction; its connection is there, or the
 * transaction and its body would have been released). */
static void on_body_pause(void *ud) {
  http_txn *t = ud;
  http_conn *hc = t->hc;
  hc->body_paused = true;
  mw_conn_pause(hc->c);
  arm_body_timer(hc, false);
}

static void on_body_resume(void *ud) {
  http_txn *t = ud;
  http_conn *hc = t->hc;
  mw_conn *c = hc->c;
  hc->body_paused = false;
  if (hc->busy || c->closing || c->ending || c->eof) return;
  arm_body_timer(hc, true);
  mw_conn_resume(c);
}

static void on_body_ready(void *ud) {
  http_txn *t = ud;
  t->body_wait = false;
  serve(t->hc);
}

static void on_body_failed(void *ud) {
  http_txn *t = ud;
  t->err_status = t->body.status;
  t->err_why = t->body.why;
  reject(t->hc, t->err_status);
}

/* Parses data; dispatches every complete request in order. While a request
 * awaits its answer the rest is kept in hc->stash and reading pauses. */
static void http_feed(http_conn *hc, const char *data, size_t len) {
  mw_conn *c = hc->c;
  hc->in_feed = true;
  while (len > 0 && !c->ending && !c->closing) {
    if (hc->busy) { /* keep the rest for after the answer */
      if (mw_str_append(&hc->stash, data, len)) mw_conn_close(c);
      mw_conn_pause(c);
      break;
    }
    llhttp_errno_t err = llhttp_execute(&hc->parser, data, len);
    if (err == HPE_OK) break;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      const char *pos = llhttp_get_error_pos(&hc->parser);
      size_t used = pos ? (size_t)(pos - data) : len;
      data += used;
      len -= used;
      llhttp_resume(&hc->parser);
      if (hc->txn->req.upgrade) {
        /* What follows belongs to the next protocol (if the handler takes
         * the connection over) and is never parsed as HTTP. */
        if (len && mw_str_append(&hc->stash, data, len)) mw_conn_close(c);
        len = 0;
        mw_conn_pause(c);
      }
      dispatch(hc);
      if (hc->detached) break;
      continue;
    }
    http_txn *t = hc->txn;
    int status = t && t->err_status ? t->err_status : 400;
    reject(hc, status);
    break;
  }
  hc->in_feed = false;
  if (hc->detached) {
    free(hc);
    return;
  }
  if (!hc->busy && hc->txn == NULL && !c->ending && !c->closing && hc->peer_eof) mw_conn_end(c);
}

mw_conn *http_res_upgrade(http_res *res, const char *head, size_t len, mw_str *rest) {
  if (res->done || res->carrier != &http_tcp_carrier) return NULL;
  http_txn *t = res->carrier_data;
  http_conn *hc = t->hc;
  if (!hc || !t->req.upgrade || hc->c->closing || hc->c->ending) return NULL;
  mw_conn *c = hc->c;
  res->done = true;
  res->status = 101;
  mw_conn_write_copy(c, head, len);
  access_log(c->srv, t);
  hc->txn = NULL;
  hc->busy = false;
  txn_free(t);
  *rest = hc->stash;
  hc->stash = (mw_str){0};
  mw_conn_set_timeout(c, 0);
  c->proto = NULL;
  c->proto_data = NULL;
  if (hc->in_feed) hc->detached = true; /* http_feed frees it on the way out */
  else free(hc);
  return c;
}

static void http_on_read(mw_conn *c, const char *data, size_t len) {
  http_conn *hc = c->proto_data;
  http_feed(hc, data, len);
}

static void http_on_eof(mw_conn *c) {
  http_conn *hc = c->proto_data;
  hc->peer_eof = true;
  mw_conn_pause(c);
  if (hc->busy) return; /* answer first, then end */
  if (hc->txn) { /* a request cut short */
    mw_conn_close(c);
    return;
  }
  mw_conn_end(c);
}

static void http_on_timeout(mw_conn *c) {
  http_conn *hc = c->proto_data;
  http_txn *t = hc->txn;
  /* A request that did not arrive in time (its headers within
   * --header-timeout, its body within --body-timeout between reads and
   * --body-deadline in all) gets 408; an idle keep-alive connection just
   * closes. */
  if (t && (!hc->busy || t->body_wait)) {
    t->err_why = t->headers_done ? "the request body did not arrive in time"
                                 : "the request headers did not arrive in time";
    reject(hc, 408);
    return;
  }
  mw_conn_close(c);
}

static void http_on_stop(mw_conn *c) {
  http_conn *hc = c->proto_data;
  /* Only idle connections go now: a request still arriving or being answered
   * finishes first, and the connection ends after its response. An answer
   * given just before (a long poll answered at shutdown) may still sit in
   * the write queue: end after it rather than drop it. */
  if (!hc->busy && !hc->txn && hc->stash.len == 0) {
    if (c->wq_len) mw_conn_end(c);
    else mw_conn_close(c);
  }
}

static void http_on_close(mw_conn *c) {
  http_conn *hc = c->proto_data;
  if (hc->txn) {
    if (hc->busy && !hc->txn->body_wait) hc->txn->hc = NULL; /* freed when its answer comes */
    else txn_free(hc->txn);                                  /* its temporary files with it */
  }
  mw_str_free(&hc->stash);
  free(hc);
}

static const mw_proto http_proto = {
    .on_read = http_on_read,
    .on_eof = http_on_eof,
    .on_timeout = http_on_timeout,
    .on_stop = http_on_stop,
    .on_close = http_on_close,
};

void http_conn_attach(mw_conn *c) {
  http_conn *hc = calloc(1, sizeof *hc);
  if (!hc) {
    mw_conn_close(c);
    return;
  }
  hc->c = c;
  llhttp_init(&hc->parser, HTTP_REQUEST, &http_settings);
  hc->parser.data = hc;
  c->proto = &http_proto;
  c->proto_data = hc;
  mw_conn_set_timeout(c, c->srv->cfg.header_timeout_ms);
}

void http_set_handler(mw_server *srv, const http_handler *h) {
  srv->handle = h->handle;
  srv->handle_ud = h->ud;
}
