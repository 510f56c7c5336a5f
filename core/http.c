/* http.c — HTTP/1.x on a connection: llhttp glue, request/response objects,
 * keep-alive and pipelining, limits, the access log. */
#include "http.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "body.h"
#include "compress.h"
#include "pool.h"
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
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
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
  res->req = req;
  res->head_only = req->method_id == HTTP_HEAD;
  res->keep_alive = req->keep_alive;
  res->http_minor = req->http_minor;
  res->carrier = c;
  res->carrier_data = data;
}

void http_res_reuse(http_res *res, const http_req *req, const http_carrier *c, void *data) {
  mw_str hbuf = res->hbuf;
  http_field *fields = res->fields;
  uint32_t fcap = res->fcap;
  http_res_init(res, req, c, data);
  res->hbuf = hbuf;
  mw_str_reset(&res->hbuf);
  res->fields = fields;
  res->fcap = fcap;
}

void http_res_dispose(http_res *res) {
  mw_str_free(&res->hbuf);
  free(res->fields);
  res->fields = NULL;
  res->nfields = res->fcap = 0;
}

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
  if (nlen + vlen > UINT32_MAX / 2 || res->hbuf.len > UINT32_MAX / 2) return -ENOMEM;
  if (res->nfields == res->fcap) {
    uint32_t cap = res->fcap ? res->fcap * 2 : 8;
    http_field *f = realloc(res->fields, cap * sizeof *f);
    if (!f) return -ENOMEM;
    res->fields = f;
    res->fcap = cap;
  }
  if (mw_str_reserve(&res->hbuf, nlen + vlen + 4)) return -ENOMEM;
  res->fields[res->nfields++] = (http_field){(uint32_t)res->hbuf.len, (uint32_t)nlen, (uint32_t)vlen};
  char *p = res->hbuf.p + res->hbuf.len;
  p = put(p, name, nlen);
  p = PUT_LIT(p, ": ");
  p = put(p, value, vlen);
  p = PUT_LIT(p, "\r\n");
  *p = '\0';
  res->hbuf.len = (size_t)(p - res->hbuf.p);
  return 0;
}

int http_res_headerz(http_res *res, const char *name, const char *value) {
  return http_res_header(res, name, strlen(name), value, strlen(value));
}

const char *http_res_get(const http_res *res, const char *name, size_t *len) {
  size_t nlen = strlen(name);
  for (uint32_t i = 0; i < res->nfields; i++) {
    const http_field *f = &res->fields[i];
    if (f->nlen == nlen && mw_ieq(res->hbuf.p + f->off, nlen, name)) {
      if (len) *len = f->vlen;
      return res->hbuf.p + f->off + f->nlen + 2;
    }
  }
  return NULL;
}

void http_res_remove(http_res *res, const char *name) {
  size_t nlen = strlen(name);
  uint32_t w = 0;
  size_t at = 0; /* where the kept lines go */
  for (uint32_t i = 0; i < res->nfields; i++) {
    http_field f = res->fields[i];
    size_t line = (size_t)f.nlen + f.vlen + 4;
    if (f.nlen == nlen && mw_ieq(res->hbuf.p + f.off, nlen, name)) continue;
    if (at != f.off) memmove(res->hbuf.p + at, res->hbuf.p + f.off, line);
    f.off = (uint32_t)at;
    res->fields[w++] = f;
    at += line;
  }
  res->nfields = w;
  res->hbuf.len = at;
  if (res->hbuf.p) res->hbuf.p[at] = '\0';
  if (mw_ieq(name, nlen, "content-type")) res->has_type = false;
}

void http_res_clear(http_res *res) {
  mw_str_reset(&res->hbuf);
  res->nfields = 0;
  res->has_type = false;
}

/* Does an If-None-Match list hold etag (weak comparison)? */
bool http_etag_match(const char *v, size_t len, const char *etag) {
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

static bool bodiless_status(int st) { return st < 200 || st == 204 || st == 304; }

/* gzip for a whole body when the response allows it (http_res_compressible),
 * the client accepts it, and the body is large enough: *body then becomes
 * the compressed buffer (a new reference; *copy cleared). */
static void maybe_gzip(http_res *res, mw_buf **body, size_t *off, const char **copy, size_t *len) {
  if (!res->compress_min || *len < res->compress_min || res->head_only || bodiless_status(res->status)) return;
  if (http_res_get(res, "content-encoding", NULL)) return;
  http_res_header(res, "Vary", 4, "Accept-Encoding", 15);
  size_t aelen;
  const char *ae = res->req ? http_req_header(res->req, "accept-encoding", &aelen) : NULL;
  if (!ae || !(mw_accept_encoding(ae, aelen) & MW_ENC_GZIP)) return;
  mw_buf *z;
  const char *in = *body ? (*body)->data + *off : *copy;
  if (mw_compress(MW_ENC_GZIP, in, *len, MW_GZIP_LEVEL_ONCE, &z)) return;
  if (z->len >= *len) { /* nothing gained */
    mw_buf_unref(z);
    return;
  }
  http_res_header(res, "Content-Encoding", 16, "gzip", 4);
  mw_buf_unref(*body);
  *body = z;
  *off = 0;
  *copy = NULL;
  *len = z->len;
}

/* Finishes res with len bytes of body: at off in body (a shared buffer) or,
 * when body is NULL, a copy of copy, which then follows the head in the
 * head's own buffer: one allocation and one write for a small response. */
static int res_finish(http_res *res, mw_buf *body, size_t off, const char *copy, size_t len) {
  if (res->done || res->started) {
    mw_buf_unref(body);
    return -EALREADY;
  }
  res->done = true;
  bool bodiless = bodiless_status(res->status);
  if (res->compress) maybe_gzip(res, &body, &off, &copy, &len);
  res->body_len = bodiless ? 0 : (int64_t)len;
  res->bytes_sent = bodiless ? 0 : len;
  bool send = !bodiless && !res->head_only && len;
  if (body) {
    res->carrier->head(res, NULL, 0);
    if (send) res->carrier->body(res, body, off, len);
    else mw_buf_unref(body);
  } else {
    res->carrier->head(res, send ? copy : NULL, send ? len : 0);
  }
  res->carrier->end(res);
  return 0;
}

int http_res_end_buf(http_res *res, mw_buf *body) { return res_finish(res, body, 0, NULL, body->len); }

int http_res_end_slice(http_res *res, mw_buf *body, size_t off, size_t len) {
  return res_finish(res, body, off, NULL, len);
}

int http_res_end(http_res *res, const char *body, size_t len) { return res_finish(res, NULL, 0, body, len); }

int http_res_simple(http_res *res, int status, const char *content_type, const char *body) {
  res->status = status;
  if (content_type) http_res_headerz(res, "Content-Type", content_type);
  return http_res_end(res, body, strlen(body));
}

/* ---- streamed responses ---- */

int http_res_begin(http_res *res, int64_t len) {
  if (res->done || res->started) return -EALREADY;
  res->started = true;
  res->body_len = bodiless_status(res->status) ? 0 : len;
  if (res->head_only && res->body_len > 0) res->bytes_sent = (size_t)res->body_len; /* logged as for a whole response */
  res->carrier->head(res, NULL, 0);
  return 0;
}

int http_res_write(http_res *res, mw_buf *buf, size_t off, size_t len) {
  if (!res->started || res->done) {
    mw_buf_unref(buf);
    return -EALREADY;
  }
  if (res->carrier->queued(res) == SIZE_MAX) {
    mw_buf_unref(buf);
    return -EPIPE;
  }
  if (len == 0 || res->head_only || bodiless_status(res->status)) {
    mw_buf_unref(buf);
    return 0;
  }
  /* A declared length is kept to: more would be taken as the next response. */
  if (res->body_len >= 0 && (uint64_t)res->bytes_sent + len > (uint64_t)res->body_len) {
    mw_buf_unref(buf);
    return -EMSGSIZE;
  }
  res->bytes_sent += len;
  res->carrier->body(res, buf, off, len);
  return 0;
}

int http_res_write_copy(http_res *res, const char *data, size_t len) {
  mw_buf *b = mw_buf_from(data, len);
  if (!b) return -ENOMEM;
  return http_res_write(res, b, 0, len);
}

int http_res_finish(http_res *res) {
  if (!res->started || res->done) return -EALREADY;
  res->done = true;
  res->on_drain = NULL;
  /* Shorter than the Content-Length sent: the client must not take it for
   * complete, nor the next response for the rest of it. */
  if (res->body_len > 0 && !res->head_only && (int64_t)res->bytes_sent < res->body_len) res->keep_alive = false;
  res->carrier->end(res);
  return 0;
}

int http_res_abort(http_res *res) {
  if (!res->started || res->done) return -EALREADY;
  res->aborted = true;
  res->keep_alive = false;
  return http_res_finish(res);
}

size_t http_res_queued(const http_res *res) { return res->done ? SIZE_MAX : res->carrier->queued(res); }

void http_res_wait(http_res *res, void (*cb)(void *ud), void *ud) {
  size_t q = res->carrier->queued(res);
  if (q == 0 || q == SIZE_MAX) { /* no drain to wait for */
    cb(ud);
    return;
  }
  res->on_drain = cb;
  res->drain_ud = ud;
}

void http_res_drained(http_res *res) {
  void (*cb)(void *) = res->on_drain;
  if (!cb) return;
  res->on_drain = NULL;
  cb(res->drain_ud);
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

bool http_req_same_origin(const http_req *req) {
  size_t olen, hlen;
  const char *origin = http_req_header(req, "origin", &olen);
  const char *host = http_req_header(req, "host", &hlen);
  if (!origin || !host) return false;
  const char *sep = memchr(origin, ':', olen); /* scheme://host[:port] */
  if (!sep || (size_t)(origin + olen - sep) < 3 || sep[1] != '/' || sep[2] != '/') return false;
  const char *o = sep + 3;
  size_t on = (size_t)(origin + olen - o);
  return on == hlen && strncasecmp(o, host, hlen) == 0;
}

/* ---- HTTP/1.x connections ---- */

typedef struct hdr_off {
  uint32_t no, nl, vo, vl;
} hdr_off;

typedef struct http_conn http_conn;

/* One request and its response, from its first byte until the response has
 * been queued. Freed by the carrier's end(), even if the connection is gone. */
typedef struct http_txn {
  bool chunked;           /* the body goes in chunks (a stream on HTTP/1.1) */
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
  bool field_open, headers_done;
  bool has_body;          /* body_begin was called */
  bool body_wait;         /* complete, waiting for the disk before dispatch */
  bool asterisk;          /* OPTIONS * */
} http_txn;

struct http_conn {
  mw_conn *c;
  const http_site *site;  /* the listener's user data (borrowed): who answers, under which settings */
  llhttp_t parser;
  http_txn *txn;          /* being parsed, or dispatched and unanswered */
  mw_str stash;           /* bytes received while a response was pending */
  bool busy;              /* txn dispatched, not yet answered */
  bool in_feed;           /* inside http_feed (answers queue, feed goes on) */
  bool detached;          /* the connection was handed to another protocol */
  bool peer_eof;
  bool held;              /* the next request waits until the queue drains */
  bool sending;           /* a streamed response's bytes are queued: the send timeout runs */
  bool body_paused;       /* reading stopped while the body waits for the disk */
  int handoff_to;         /* --workers: the worker this request goes to, once the queue is empty; -1: none */
};

/* After a response, pipelined requests are answered at once while the
 * queue holds less than this; past it the next waits for the drain. */
#define HTTP_PIPELINE_QUEUE (64 * 1024)

/* Finished transactions are kept, buffers and all, for the next requests:
 * a small request then allocates nothing while it is parsed. The spares are
 * server-wide (the loop is single-threaded) and few, so an idle connection
 * still holds no transaction (pool.h: none in sanitizer builds). */
#define TXN_SPARE_BYTES 16384 /* a transaction whose buffers grew past this is freed */
MW_POOL_DEFINE(txn_spares, 16);

static http_txn *txn_new(void) {
  http_txn *t = mw_pool_take(&txn_spares);
  if (!t) return calloc(1, sizeof(http_txn));
  http_txn kept = *t;
  memset(t, 0, sizeof *t);
  t->raw = kept.raw;
  t->body.mem = kept.body.mem;
  t->res.hbuf = kept.res.hbuf; /* emptied by http_res_reuse */
  t->res.fields = kept.res.fields;
  t->res.fcap = kept.res.fcap;
  mw_str_reset(&t->raw);
  mw_str_reset(&t->body.mem);
  t->hoff = kept.hoff;
  t->hcap = kept.hcap;
  t->req.headers = kept.req.headers;
  t->nhdrs_cap = kept.nhdrs_cap;
  return t;
}

static void txn_free(http_txn *t) {
  body_release(&t->body); /* its temporary files go */
  if (t->raw.cap <= TXN_SPARE_BYTES && t->body.mem.cap <= TXN_SPARE_BYTES && t->res.hbuf.cap <= TXN_SPARE_BYTES &&
      t->res.fcap <= 64 && t->hcap <= 64 && mw_pool_keep(&txn_spares, t))
    return;
  mw_str_free(&t->raw);
  body_dispose(&t->body);
  free(t->hoff);
  free(t->req.headers);
  http_res_dispose(&t->res);
  free(t);
}

static bool log_tty = false;
static int log_checked = 0;

void http_access_log(const http_opts *o, const http_req *req, const http_res *res) {
  if (o->quiet) return;
  if (!log_checked) {
    log_checked = 1;
    log_tty = isatty(STDOUT_FILENO);
  }
  double ms = (double)(mw_now_ns() - req->start_ns) / 1e6;
  int st = res->status;
  const char *color = "";
  if (log_tty) color = st >= 500 ? "\x1b[31m" : st >= 400 ? "\x1b[33m" : st >= 300 ? "\x1b[36m" : "\x1b[32m";
  printf("%s%s %.*s %s%d%s %.3f ms - %zu\n", log_tty ? "\x1b[0m" : "", req->method ? req->method : "-",
         req->url ? (int)req->url_len : 1, req->url ? req->url : "-", color, st, log_tty ? "\x1b[0m" : "", ms,
         res->bytes_sent);
}

static void access_log(http_conn *hc, http_txn *t) { http_access_log(&hc->site->opts, &t->req, &t->res); }

static void http_feed(http_conn *hc, const char *data, size_t len);

/* Bytes of a response wait in the queue: until the last has left, the send
 * timeout limits the client, counted from the last write that made
 * progress (nginx's send_timeout); the keep-alive timer starts only once
 * the queue has drained (http_on_drain). */
static void arm_send_timeout(http_conn *hc) { mw_conn_arm_send_timeout(hc->c); }

/* Ends the connection after what is queued, which still has the send
 * timeout to leave in. */
static void end_after_queue(http_conn *hc) {
  mw_conn *c = hc->c;
  mw_conn_end(c);
  if (c->wq_len && !c->closing) arm_send_timeout(hc);
}

/* Parses what arrived while a response was pending, and reads on. */
static void next_requests(http_conn *hc) {
  mw_conn *c = hc->c;
  if (hc->stash.len) {
    mw_str pending = hc->stash;
    hc->stash = (mw_str){0};
    http_feed(hc, pending.p, pending.len);
    mw_str_free(&pending);
  }
  if (!hc->busy && !hc->held && !hc->body_paused && !c->ending && !c->closing) mw_conn_resume(c);
}

static void continue_after_response(http_conn *hc) {
  if (hc->detached) return;
  mw_conn *c = hc->c;
  if (hc->peer_eof || c->srv->stopping) {
    if (hc->stash.len == 0 || c->srv->stopping) {
      end_after_queue(hc);
      return;
    }
  }
  if (c->wq_len) arm_send_timeout(hc);
  else mw_conn_set_timeout(c, hc->site->opts.keepalive_timeout_ms);
  /* A large response holds the next request back until it has left: a
   * client that pipelines without reading cannot pile answers up. */
  hc->held = c->wq_bytes > HTTP_PIPELINE_QUEUE;
  if (hc->in_feed || hc->held) return; /* the feed loop goes on by itself, or the drain does */
  next_requests(hc);
}

/* ---- the HTTP/1 writer: the carrier of responses on a connection ---- */

/* Shared bytes for chunk framing, made once (reachable until exit). */
static mw_buf *const_buf(mw_buf **slot, const char *s) {
  if (!*slot) *slot = mw_buf_from(s, strlen(s));
  return *slot ? mw_buf_ref(*slot) : NULL;
}
static mw_buf *crlf_buf, *last_chunk_buf;

/* Writes the status line, the header list, the framing the carrier adds
 * (Content-Length or Transfer-Encoding), Date and Connection, straight into
 * one buffer sized from its parts (every response comes here: no printf,
 * no intermediate string), followed by ilen bytes of body. */
/* An HTTP/1 head: the status line, the header lines in hbuf (as they are:
 * http_res keeps them as "Name: value\r\n" with an index), the framing
 * (chunked, or Content-Length when body_len >= 0), Date and Connection
 * where the version needs it, the blank line, then ibody (a body sent with
 * the head). One writer for every head this carrier sends, the refusals'
 * too. NULL when out of memory. */
static mw_buf *http1_head(int minor, int st, const mw_str *hbuf, bool chunked, int64_t body_len, bool keep_alive,
                          const char *ibody, size_t ilen) {
  const char *reason = http_status_text(st);
  size_t rlen = strlen(reason);
  const char *date = date_now();
  size_t dlen = strlen(date);
  size_t cap = sizeof "HTTP/1.1 -2147483648 \r\n" + rlen + hbuf->len + sizeof "Content-Length: \r\n" + 20 +
               sizeof "Transfer-Encoding: chunked\r\n" + sizeof "Date: \r\n" + dlen +
               sizeof "Connection: keep-alive\r\n" + 2 + ilen;
  mw_buf *head = mw_buf_new(cap);
  if (!head) return NULL;
  char *p = head->data;
  p = minor == 0 ? PUT_LIT(p, "HTTP/1.0 ") : PUT_LIT(p, "HTTP/1.1 ");
  if (st < 0) *p++ = '-';
  p = put_uint(p, st < 0 ? -(size_t)st : (size_t)st);
  *p++ = ' ';
  p = put(p, reason, rlen);
  p = PUT_LIT(p, "\r\n");
  if (hbuf->len) p = put(p, hbuf->p, hbuf->len);
  if (chunked) {
    p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
  } else if (body_len >= 0) {
    p = PUT_LIT(p, "Content-Length: ");
    p = put_uint(p, (size_t)body_len);
    p = PUT_LIT(p, "\r\n");
  }
  p = PUT_LIT(p, "Date: ");
  p = put(p, date, dlen);
  p = PUT_LIT(p, "\r\n");
  if (!keep_alive) {
    if (minor != 0) p = PUT_LIT(p, "Connection: close\r\n");
  } else if (minor == 0) {
    p = PUT_LIT(p, "Connection: keep-alive\r\n");
  }
  p = PUT_LIT(p, "\r\n");
  if (ilen) p = put(p, ibody, ilen);
  head->len = (size_t)(p - head->data);
  head->data[head->len] = '\0';
  return head;
}

static void tcp_head(http_res *res, const char *ibody, size_t ilen) {
  http_txn *t = res->carrier_data;
  http_conn *hc = t->hc;
  int st = res->status;
  bool bodiless = bodiless_status(st);
  bool stream = res->body_len == HTTP_LEN_STREAM && !bodiless;
  /* A body of unknown length: in chunks on HTTP/1.1, until the close on
   * 1.0 (whose clients cannot read chunks). */
  t->chunked = stream && res->http_minor != 0;
  if (stream && res->http_minor == 0 && !res->head_only) res->keep_alive = false;
  if (!hc) return;
  mw_buf *head = http1_head(res->http_minor, st, &res->hbuf, t->chunked, bodiless || stream ? -1 : res->body_len,
                            res->keep_alive, ibody, ilen);
  if (!head) {
    mw_conn_close(hc->c);
    return;
  }
  mw_conn_write(hc->c, head, 0, head->len);
}

static void tcp_body(http_res *res, mw_buf *buf, size_t off, size_t len) {
  http_txn *t = res->carrier_data;
  http_conn *hc = t->hc;
  if (!hc || hc->c->closing) {
    mw_buf_unref(buf);
    return;
  }
  mw_conn *c = hc->c;
  if (t->chunked) {
    mw_buf *size = mw_buf_new(20);
    if (!size) {
      mw_buf_unref(buf);
      mw_conn_close(c);
      return;
    }
    size->len = (size_t)snprintf(size->data, 20, "%zx\r\n", len);
    mw_conn_write(c, size, 0, size->len);
    mw_conn_write(c, buf, off, len);
    mw_buf *crlf = const_buf(&crlf_buf, "\r\n");
    if (crlf) mw_conn_write(c, crlf, 0, 2);
  } else {
    mw_conn_write(c, buf, off, len);
  }
  /* While a streamed body waits in the queue, the client has the send
   * timeout to take it (the drain clears it: then the producer sets the pace). */
  if (hc->busy && !hc->sending) {
    hc->sending = true;
    arm_send_timeout(hc);
  }
}

static size_t tcp_queued(const http_res *res) {
  const http_txn *t = res->carrier_data;
  if (!t->hc || t->hc->c->closing) return SIZE_MAX;
  return t->hc->c->wq_bytes;
}

static void tcp_end(http_res *res) {
  http_txn *t = res->carrier_data;
  http_conn *hc = t->hc;
  if (!hc) { /* the connection went away first */
    txn_free(t);
    return;
  }
  mw_conn *c = hc->c;
  if (t->chunked && !res->head_only && !res->aborted) {
    mw_buf *last = const_buf(&last_chunk_buf, "0\r\n\r\n");
    if (last) mw_conn_write(c, last, 0, 5);
  }
  access_log(hc, t);
  bool keep = res->keep_alive && !t->err_status;
  hc->txn = NULL;
  hc->busy = false;
  hc->sending = false;
  txn_free(t);
  if (!keep) {
    mw_str_free(&hc->stash);
    end_after_queue(hc);
    return;
  }
  continue_after_response(hc);
}

static const http_carrier http_tcp_carrier = {tcp_head, tcp_body, tcp_end, tcp_queued};

static http_txn *cur(llhttp_t *p) { return ((http_conn *)p->data)->txn; }

static int add_header_bytes(http_txn *t, size_t n) {
  t->hdr_bytes += n;
  if (t->hdr_bytes > t->hc->site->opts.max_header_size) {
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
  mw_conn_set_timeout(hc->c, hc->site->opts.header_timeout_ms);
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
  uint64_t ms = reading ? hc->site->opts.body_timeout_ms : 0;
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
  /* --workers: a session of another worker's is answered there. The
   * parser stops before the body; http_feed hands the connection over. */
  const mw_handoff *ho = c->srv->handoff;
  if (ho && r->query_len && (hc->handoff_to = ho->owner(ho->ud, r->query, r->query_len)) >= 0) return HPE_PAUSED;
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
    if (body_begin(&t->body, srv->loop, &hc->site->opts, r, length, &http_body_events, t) != BODY_OK) {
      t->err_status = t->body.status;
      t->err_why = t->body.why;
      return -1;
    }
    /* The client waits for this before it sends the body (curl for a
     * second, then sends anyway). */
    if (expect_continue) mw_conn_write_copy(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    uint64_t dl = hc->site->opts.body_deadline_ms;
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
  static const char type[] = "Content-Type: text/plain; charset=utf-8\r\n";
  const mw_str fields = {.p = (char *)type, .len = sizeof type - 1};
  size_t blen = strlen(body);
  mw_buf *head = http1_head(1, status, &fields, false, (int64_t)blen, false, body, blen);
  if (head) mw_conn_write(c, head, 0, head->len);
  if (t && !hc->site->opts.quiet) {
    if (!t->headers_done) { /* log what we know */
      t->req.method = llhttp_method_name(hc->parser.method);
      t->req.url = t->raw.p;
      t->req.url_len = t->url_len > 200 ? 200 : t->url_len;
    }
    t->res.status = status;
    t->res.bytes_sent = strlen(body);
    access_log(hc, t);
  } else if (!hc->site->opts.quiet) {
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
  http_res_reuse(&t->res, &t->req, &http_tcp_carrier, t);
  t->res.compress_min = hc->site->opts.compress ? hc->site->opts.compress_min : 0;
  if (srv->stopping) t->res.keep_alive = false;
  if (t->asterisk) answer_asterisk(&t->res);
  else if (hc->site->handler.handle) hc->site->handler.handle(hc->site->handler.ud, &t->req, &t->res);
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
  if (hc->busy || hc->held || c->closing || c->ending || c->eof) return;
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

/* Gives the connection to the worker that owns its request (--workers),
 * once what was queued for it has left. */
static void handoff_now(http_conn *hc) {
  mw_conn *c = hc->c;
  mw_str bytes = hc->stash;
  hc->stash = (mw_str){0};
  c->proto = NULL;
  c->proto_data = NULL;
  int to = hc->handoff_to;
  if (hc->in_feed) hc->detached = true; /* http_feed frees it on the way out */
  else free(hc);
  c->srv->handoff->give(c->srv->handoff->ud, c, to, &bytes);
}

/* The request whose head was just parsed belongs to another worker: its
 * head is written again from what was parsed, followed by rest (what was
 * read after it), and the connection goes there with those bytes. */
static void handoff(http_conn *hc, const char *rest, size_t len) {
  mw_conn *c = hc->c;
  http_txn *t = hc->txn;
  const http_req *r = &t->req;
  mw_str b = {0};
  int e = mw_str_appendf(&b, "%s %.*s HTTP/%d.%d\r\n", r->method, (int)r->url_len, r->url, r->http_major, r->http_minor);
  for (int i = 0; i < r->nheaders && !e; i++) {
    const http_header *h = &r->headers[i];
    e = mw_str_appendf(&b, "%.*s: %.*s\r\n", (int)h->name_len, h->name, (int)h->value_len, h->value);
  }
  if (!e) e = mw_str_append(&b, "\r\n", 2);
  if (!e) e = mw_str_append(&b, rest, len);
  hc->txn = NULL;
  txn_free(t);
  if (e) {
    mw_str_free(&b);
    mw_conn_close(c);
    return;
  }
  mw_str_free(&hc->stash);
  hc->stash = b;
  mw_conn_pause(c);
  mw_conn_set_timeout(c, 0);
  if (c->wq_len == 0) handoff_now(hc); /* else in http_on_drain */
}

/* Parses data; dispatches every complete request in order. While a request
 * awaits its answer the rest is kept in hc->stash and reading pauses. */
static void http_feed(http_conn *hc, const char *data, size_t len) {
  mw_conn *c = hc->c;
  hc->in_feed = true;
  while (len > 0 && !c->ending && !c->closing) {
    if (hc->busy || hc->held) { /* keep the rest for after the answer */
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
      if (hc->handoff_to >= 0) {
        handoff(hc, data, len);
        break;
      }
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
  if (!hc->busy && !hc->held && hc->txn == NULL && !c->ending && !c->closing && hc->peer_eof) end_after_queue(hc);
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
  access_log(hc, t);
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
  if (hc->busy || hc->held) return; /* answer first, then end */
  if (hc->txn) { /* a request cut short */
    mw_conn_close(c);
    return;
  }
  mw_conn_end(c);
}

static void http_on_timeout(mw_conn *c) {
  http_conn *hc = c->proto_data;
  /* A response still leaving: the client has another send timeout as long
   * as it took some of it since the last look. */
  if (hc && mw_conn_send_progressed(c)) return;
  http_txn *t = hc->txn;
  /* A request that did not arrive in time (its headers within
   * --header-timeout, its body within --body-timeout between reads and
   * --body-deadline in all) gets 408. */
  if (t && (!hc->busy || t->body_wait)) {
    t->err_why = t->headers_done ? "the request body did not arrive in time"
                                 : "the request headers did not arrive in time";
    reject(hc, 408);
    return;
  }
  /* A stalled reader, or idle keep-alive: close. */
  mw_conn_close(c);
}

/* The queue is empty: the last byte of the responses has left. */
static void http_on_drain(mw_conn *c) {
  http_conn *hc = c->proto_data;
  if (hc->detached) return;
  if (hc->handoff_to >= 0 && !hc->txn) {
    handoff_now(hc);
    return;
  }
  if (hc->busy) { /* a streamed response: its producer sets the pace again */
    if (hc->sending) {
      hc->sending = false;
      mw_conn_set_timeout(c, 0);
    }
    if (hc->txn) http_res_drained(&hc->txn->res);
    return;
  }
  /* Idle: the keep-alive timer starts now. A request being parsed keeps
   * the header timeout it has. */
  if (!hc->txn) mw_conn_set_timeout(c, hc->site->opts.keepalive_timeout_ms);
  if (hc->held) {
    hc->held = false;
    if (!hc->in_feed) next_requests(hc);
    if (!hc->busy && !hc->held && !hc->txn && hc->peer_eof && !c->ending && !c->closing) end_after_queue(hc);
  }
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
  http_txn *t = hc->txn;
  hc->txn = NULL;
  if (t) {
    if (hc->busy && !t->body_wait) { /* freed when its answer ends; a producer waiting for a drain hears of it now */
      t->hc = NULL;
      http_res_drained(&t->res);
    } else {
      txn_free(t); /* its temporary files with it */
    }
  }
  mw_str_free(&hc->stash);
  free(hc);
}

static const mw_proto http_proto = {
    .on_read = http_on_read,
    .on_eof = http_on_eof,
    .on_timeout = http_on_timeout,
    .on_drain = http_on_drain,
    .on_stop = http_on_stop,
    .on_close = http_on_close,
};

void http_conn_attach(mw_conn *c, void *ud) {
  http_conn *hc = calloc(1, sizeof *hc);
  if (!hc) {
    mw_conn_close(c);
    return;
  }
  hc->c = c;
  hc->site = ud;
  hc->handoff_to = -1;
  llhttp_init(&hc->parser, HTTP_REQUEST, &http_settings);
  hc->parser.data = hc;
  c->proto = &http_proto;
  c->proto_data = hc;
  mw_conn_set_timeout(c, hc->site->opts.header_timeout_ms);
}

void http_conn_refuse(mw_conn *c, void *ud) {
  static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 39\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                             "too many connections from your address\n";
  mw_conn_write_copy(c, busy, sizeof busy - 1);
  mw_conn_end(c);
}
