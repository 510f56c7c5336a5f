/* fcgi.c — FastCGI 1.0 responder: records in, the same http_req and handler
 * as HTTP, the response out as STDOUT records. Written from the FastCGI
 * Specification 1.0 (Open Market, 1996). */
#include "fcgi.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "body.h"
#include "http.h"
#include "pool.h"
#include "server.h"

/* ---- records ---- */

static size_t record_size(const uint8_t *h) { return FCGI_HEADER_LEN + ((size_t)h[4] << 8 | h[5]) + h[6]; }

static int deliver(const uint8_t *h, const char *content, fcgi_record_cb cb, void *ud) {
  fcgi_record r = {h[1], (uint16_t)(h[2] << 8 | h[3]), content, (size_t)h[4] << 8 | h[5]};
  return cb(ud, &r);
}

int fcgi_parse(fcgi_parser *p, const char *data, size_t len, fcgi_record_cb cb, void *ud) {
  while (len > 0) {
    /* The usual case: whole records in what was read, handed on in place. */
    if (p->have == 0 && len >= FCGI_HEADER_LEN) {
      const uint8_t *h = (const uint8_t *)data;
      if (h[0] != FCGI_VERSION_1) return FCGI_EMALFORMED;
      size_t size = record_size(h);
      if (len >= size) {
        int r = deliver(h, data + FCGI_HEADER_LEN, cb, ud);
        if (r) return r;
        data += size;
        len -= size;
        continue;
      }
    }
    /* A record split across reads: gathered, header first. */
    if (p->have < FCGI_HEADER_LEN) {
      size_t n = FCGI_HEADER_LEN - p->have < len ? FCGI_HEADER_LEN - p->have : len;
      memcpy(p->head + p->have, data, n);
      p->have += n;
      data += n;
      len -= n;
      if (p->have < FCGI_HEADER_LEN) break;
      if (p->head[0] != FCGI_VERSION_1) return FCGI_EMALFORMED;
      size_t rest = record_size(p->head) - FCGI_HEADER_LEN;
      if (rest && !(p->rest = malloc(rest))) {
        p->have = 0;
        return -ENOMEM;
      }
    }
    size_t size = record_size(p->head);
    size_t n = size - p->have < len ? size - p->have : len;
    if (n) memcpy(p->rest + (p->have - FCGI_HEADER_LEN), data, n);
    p->have += n;
    data += n;
    len -= n;
    if (p->have == size) {
      int r = deliver(p->head, p->rest ? p->rest : "", cb, ud); /* never NULL, even when empty */
      fcgi_parser_free(p); /* an idle connection holds no buffer */
      if (r) return r;
    }
  }
  return 0;
}

void fcgi_parser_free(fcgi_parser *p) {
  free(p->rest);
  p->rest = NULL;
  p->have = 0;
}

void fcgi_put_header(char out[FCGI_HEADER_LEN], int type, unsigned id, size_t len, unsigned padding) {
  uint8_t *o = (uint8_t *)out;
  o[0] = FCGI_VERSION_1;
  o[1] = (uint8_t)type;
  o[2] = (uint8_t)(id >> 8);
  o[3] = (uint8_t)id;
  o[4] = (uint8_t)(len >> 8);
  o[5] = (uint8_t)len;
  o[6] = (uint8_t)padding;
  o[7] = 0;
}

/* ---- name-value pairs ---- */

/* A length: one byte below 128, else four with the top bit set. */
static int nv_len(const uint8_t *b, size_t len, size_t *pos, size_t *out) {
  size_t p = *pos;
  if (p >= len) return -1;
  if (b[p] < 0x80) {
    *out = b[p];
    *pos = p + 1;
    return 0;
  }
  if (len - p < 4) return -1;
  *out = (size_t)(b[p] & 0x7f) << 24 | (size_t)b[p + 1] << 16 | (size_t)b[p + 2] << 8 | b[p + 3];
  *pos = p + 4;
  return 0;
}

int fcgi_nv_next(const char *buf, size_t len, size_t *pos, fcgi_nv *nv) {
  if (*pos >= len) return 0;
  const uint8_t *b = (const uint8_t *)buf;
  size_t p = *pos, nlen, vlen;
  if (nv_len(b, len, &p, &nlen) || nv_len(b, len, &p, &vlen)) return -EINVAL;
  if (nlen > len - p || vlen > len - p - nlen) return -EINVAL;
  nv->name = buf + p;
  nv->name_len = nlen;
  nv->value = buf + p + nlen;
  nv->value_len = vlen;
  *pos = p + nlen + vlen;
  return 1;
}

static char *put_nv_len(char *o, size_t n) {
  if (n < 0x80) {
    *o++ = (char)n;
    return o;
  }
  *o++ = (char)(0x80 | n >> 24);
  *o++ = (char)(n >> 16);
  *o++ = (char)(n >> 8);
  *o++ = (char)n;
  return o;
}

int fcgi_nv_append(mw_str *s, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (nlen > 0x7fffffff || vlen > 0x7fffffff) return -EINVAL;
  if (mw_str_reserve(s, 8 + nlen + vlen)) return -ENOMEM;
  char *o = s->p + s->len;
  o = put_nv_len(o, nlen);
  o = put_nv_len(o, vlen);
  memcpy(o, name, nlen);
  memcpy(o + nlen, value, vlen);
  s->len = (size_t)(o + nlen + vlen - s->p);
  s->p[s->len] = '\0';
  return 0;
}

/* ---- requests ---- */

typedef struct fcgi_conn fcgi_conn;

/* One request, from its BEGIN_REQUEST until the handler's answer, which may
 * come after the connection is gone or the request was aborted: then it is
 * dropped, and the request freed with it. */
typedef struct fcgi_txn {
  http_req req;
  http_res res;
  fcgi_conn *fc;          /* NULL once the connection is gone or the request aborted */
  mw_str params;          /* the PARAMS stream (header names rewritten in place) */
  http_body body;         /* the STDIN stream, as it arrives (body.c) */
  mw_str url;             /* the url, when it had to be put together */
  http_header *headers;
  int hcap;
  uint16_t id;
  bool keep_conn;         /* FCGI_KEEP_CONN: the connection outlives the request */
  bool params_done, stdin_done, dispatched, refused, has_length;
  bool body_wait;         /* STDIN complete, waiting for the disk */
  size_t content_length;
  uint64_t body_deadline; /* loop time the whole STDIN is due by; 0: none */
  char addr[48];          /* REMOTE_ADDR */
} fcgi_txn;

struct fcgi_conn {
  mw_conn *c;
  const http_site *site;  /* the listener's user data (borrowed): who answers, under which settings */
  fcgi_parser parser;
  fcgi_txn *txn;          /* the active request: arriving, or waiting for its answer */
  bool peer_eof;
  bool paused;            /* reading stopped until the answers queued so far are written */
  bool sending;           /* a streamed response's bytes are queued: the send timeout runs */
  bool body_paused;       /* reading stopped while the body waits for the disk */
};

/* Replies queued past this stop the reading until they are written: a peer
 * that sends without reading cannot make the queue grow without bound. */
#define FCGI_WQ_HIGH (1024 * 1024)

/* Finished requests are kept, buffers and all, for the next ones (as http.c
 * does; pool.h: none in sanitizer builds). */
#define FCGI_SPARE_BYTES 16384
MW_POOL_DEFINE(txn_spares, 16);

static fcgi_txn *txn_new(void) {
  fcgi_txn *t = mw_pool_take(&txn_spares);
  if (!t) return calloc(1, sizeof(fcgi_txn));
  fcgi_txn kept = *t;
  memset(t, 0, sizeof *t);
  t->params = kept.params;
  t->body.mem = kept.body.mem;
  t->url = kept.url;
  t->res.hbuf = kept.res.hbuf; /* emptied by http_res_reuse */
  t->res.fields = kept.res.fields;
  t->res.fcap = kept.res.fcap;
  mw_str_reset(&t->params);
  mw_str_reset(&t->body.mem);
  mw_str_reset(&t->url);
  t->headers = kept.headers;
  t->hcap = kept.hcap;
  return t;
}

static void txn_free(fcgi_txn *t) {
  body_release(&t->body); /* its temporary files go */
  if (t->params.cap <= FCGI_SPARE_BYTES && t->body.mem.cap <= FCGI_SPARE_BYTES && t->url.cap <= FCGI_SPARE_BYTES &&
      t->res.hbuf.cap <= FCGI_SPARE_BYTES && t->res.fcap <= 64 && t->hcap <= 64 && mw_pool_keep(&txn_spares, t))
    return;
  mw_str_free(&t->params);
  body_dispose(&t->body);
  mw_str_free(&t->url);
  free(t->headers);
  http_res_dispose(&t->res);
  free(t);
}

/* The request's connection lets go of it: freed now, or, when the handler
 * has it, when the answer ends (a producer waiting for a drain hears of it
 * now). */
static void txn_release(fcgi_txn *t) {
  if (t->dispatched) {
    t->fc = NULL;
    http_res_drained(&t->res);
  } else {
    txn_free(t);
  }
}

static void access_log(fcgi_conn *fc, fcgi_txn *t) { http_access_log(&fc->site->opts, &t->req, &t->res); }

/* ---- writing ---- */

static void end_request(mw_conn *c, unsigned id, int protocol_status) {
  char rec[FCGI_HEADER_LEN + 8] = {0};
  fcgi_put_header(rec, FCGI_END_REQUEST, id, 8, 0);
  rec[FCGI_HEADER_LEN + 4] = (char)protocol_status; /* appStatus (4 bytes before it): 0 */
  mw_conn_write_copy(c, rec, sizeof rec);
}

/* Answers wait in the queue: until they have left, the send timeout
 * (between writes that make progress) limits the web server; the
 * keep-alive timer starts on the drain (fcgi_on_drain). */
static void arm_send_timeout(fcgi_conn *fc) { mw_conn_arm_send_timeout(fc->c); }

/* After a request: the connection waits for the next one only when the web
 * server asked for that (FCGI_KEEP_CONN). Returns nonzero when it ends. */
static int next_request(fcgi_conn *fc, bool keep) {
  mw_conn *c = fc->c;
  if (!keep || fc->peer_eof || c->srv->stopping) {
    mw_conn_end(c);
    if (c->wq_len && !c->closing) arm_send_timeout(fc);
    return 1;
  }
  if (c->wq_len) arm_send_timeout(fc);
  else mw_conn_set_timeout(c, fc->site->opts.keepalive_timeout_ms);
  return 0;
}

/* Sends len bytes at off in buf (one reference taken over) as STDOUT
 * records of at most 64 KiB - 1: their headers share one small buffer, the
 * contents are slices of buf. Nothing is copied. */
static void stdout_records(mw_conn *c, unsigned id, mw_buf *buf, size_t off, size_t len) {
  size_t nrec = (len + FCGI_MAX_CONTENT - 1) / FCGI_MAX_CONTENT;
  mw_buf *hb = nrec ? mw_buf_new(nrec * FCGI_HEADER_LEN) : NULL;
  if (nrec && !hb) {
    mw_buf_unref(buf);
    mw_conn_close(c);
    return;
  }
  for (size_t k = 0; k < nrec; k++) {
    size_t clen = len < FCGI_MAX_CONTENT ? len : FCGI_MAX_CONTENT;
    fcgi_put_header(hb->data + k * FCGI_HEADER_LEN, FCGI_STDOUT, id, clen, 0);
    mw_conn_write(c, mw_buf_ref(hb), k * FCGI_HEADER_LEN, FCGI_HEADER_LEN);
    mw_conn_write(c, mw_buf_ref(buf), off, clen);
    off += clen;
    len -= clen;
  }
  mw_buf_unref(hb);
  mw_buf_unref(buf);
}

/* The CGI head: "Status: 200 OK", the header list, Content-Length when the
 * length is known, a blank line; then ilen bytes of body, all in one
 * buffer with room for its record header in front. No Connection or Date:
 * the web server's connection to its client is its own business. */
static void fcgi_head(http_res *res, const char *ibody, size_t ilen) {
  fcgi_txn *t = res->carrier_data;
  fcgi_conn *fc = t->fc;
  if (!fc) return;
  int st = res->status;
  const char *reason = http_status_text(st);
  bool bodiless = st < 200 || st == 204 || st == 304;
  size_t cap = FCGI_HEADER_LEN + sizeof "Status: -2147483648 \r\n" + strlen(reason) + res->hbuf.len +
               sizeof "Content-Length: \r\n" + 20 + 2 + ilen;
  mw_buf *b = mw_buf_new(cap);
  if (!b) {
    mw_conn_close(fc->c);
    return;
  }
  char *p = b->data + FCGI_HEADER_LEN;
  p += snprintf(p, cap - FCGI_HEADER_LEN, "Status: %d %s\r\n", st, reason);
  if (res->hbuf.len) {
    memcpy(p, res->hbuf.p, res->hbuf.len);
    p += res->hbuf.len;
  }
  if (!bodiless && res->body_len != HTTP_LEN_STREAM) p += sprintf(p, "Content-Length: %lld\r\n", (long long)res->body_len);
  memcpy(p, "\r\n", 2);
  p += 2;
  if (ilen) {
    memcpy(p, ibody, ilen);
    p += ilen;
  }
  size_t len = (size_t)(p - b->data) - FCGI_HEADER_LEN;
  b->len = (size_t)(p - b->data);
  if (len <= FCGI_MAX_CONTENT) { /* the usual case: one record, one write */
    fcgi_put_header(b->data, FCGI_STDOUT, t->id, len, 0);
    mw_conn_write(fc->c, b, 0, b->len);
  } else {
    stdout_records(fc->c, t->id, b, FCGI_HEADER_LEN, len);
  }
}

static void fcgi_body(http_res *res, mw_buf *buf, size_t off, size_t len) {
  fcgi_txn *t = res->carrier_data;
  fcgi_conn *fc = t->fc;
  if (!fc || fc->c->closing) {
    mw_buf_unref(buf);
    return;
  }
  stdout_records(fc->c, t->id, buf, off, len);
  /* A streamed body waits in the queue: the send timeout runs until the drain. */
  if (t->dispatched && res->started && !fc->sending) {
    fc->sending = true;
    arm_send_timeout(fc);
  }
}

static size_t fcgi_queued(const http_res *res) {
  const fcgi_txn *t = res->carrier_data;
  if (!t->fc || t->fc->c->closing) return SIZE_MAX;
  return t->fc->c->wq_bytes;
}

/* The empty STDOUT that ends the stream, then END_REQUEST. */
static void fcgi_end(http_res *res) {
  fcgi_txn *t = res->carrier_data;
  fcgi_conn *fc = t->fc;
  if (!fc) { /* the connection went away, or the web server aborted the request */
    txn_free(t);
    return;
  }
  if (res->aborted) { /* no END_REQUEST: the web server sees the response cut short */
    access_log(fc, t);
    fc->txn = NULL;
    txn_free(t);
    mw_conn_end(fc->c);
    return;
  }
  char tail[2 * FCGI_HEADER_LEN + 8];
  fcgi_put_header(tail, FCGI_STDOUT, t->id, 0, 0);
  fcgi_put_header(tail + FCGI_HEADER_LEN, FCGI_END_REQUEST, t->id, 8, 0);
  memset(tail + 2 * FCGI_HEADER_LEN, 0, 8); /* appStatus 0, FCGI_REQUEST_COMPLETE */
  mw_conn_write_copy(fc->c, tail, sizeof tail);
  access_log(fc, t);
  bool keep = t->keep_conn && !t->refused;
  fc->txn = NULL;
  fc->sending = false;
  txn_free(t);
  next_request(fc, keep);
}

static const http_carrier fcgi_carrier = {fcgi_head, fcgi_body, fcgi_end, fcgi_queued};

static void res_start(fcgi_txn *t, const http_opts *o) {
  http_res_reuse(&t->res, &t->req, &fcgi_carrier, t);
  t->res.compress_min = o->compress ? o->compress_min : 0;
}

/* ---- reading ---- */

/* A record that breaks the protocol: what was answered so far goes out,
 * then the connection ends. */
static int malformed(fcgi_conn *fc) {
  if (fc->txn) {
    txn_release(fc->txn);
    fc->txn = NULL;
  }
  mw_conn_end(fc->c);
  return 1;
}

/* Answers a request that never reaches the handler (400, 408, 413, 431),
 * as HTTP does (with why, when there is one), and ends the connection
 * after it. */
static int refuse(fcgi_conn *fc, int status, const char *why) {
  fcgi_txn *t = fc->txn;
  t->refused = true;
  res_start(t, &fc->site->opts);
  char body[320];
  if (why && *why) snprintf(body, sizeof body, "%d %s: %s\n", status, http_status_text(status), why);
  else snprintf(body, sizeof body, "%d %s\n", status, http_status_text(status));
  http_res_simple(&t->res, status, "text/plain; charset=utf-8", body);
  return 1;
}

static const struct {
  int id;
  const char *name;
} methods[] = {
#define XX(num, name, string) {num, #string},
    HTTP_METHOD_MAP(XX)
#undef XX
};

static bool nv_is(const fcgi_nv *nv, const char *lit, size_t litlen) {
  return nv->name_len == litlen && memcmp(nv->name, lit, litlen) == 0;
}
#define NV_IS(nv, lit) nv_is((nv), (lit), sizeof(lit) - 1)

static bool token_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool value_safe(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return false;
  return true;
}

static int add_header(fcgi_txn *t, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (t->req.nheaders == t->hcap) {
    int cap = t->hcap ? t->hcap * 2 : 16;
    http_header *h = realloc(t->headers, (size_t)cap * sizeof *h);
    if (!h) return -1;
    t->headers = h;
    t->hcap = cap;
  }
  t->headers[t->req.nheaders++] = (http_header){name, nlen, value, vlen};
  t->req.headers = t->headers;
  return 0;
}

/* HTTP_USER_AGENT is the header user-agent: rewritten in the PARAMS buffer. */
static int http_var(fcgi_txn *t, const fcgi_nv *nv) {
  char *name = t->params.p + (nv->name - t->params.p) + 5;
  size_t nlen = nv->name_len - 5;
  for (size_t i = 0; i < nlen; i++) {
    char ch = name[i];
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
    else if (ch == '_') ch = '-';
    if (!token_char((unsigned char)ch)) return 400;
    name[i] = ch;
  }
  if (!value_safe(nv->value, nv->value_len)) return 400;
  return add_header(t, name, nlen, nv->value, nv->value_len) ? 500 : 0;
}

static int parse_length(fcgi_txn *t, const char *s, size_t n) {
  if (n == 0 || n > 18) return 400;
  size_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 400;
    v = v * 10 + (size_t)(s[i] - '0');
  }
  t->has_length = true;
  t->content_length = v;
  return 0;
}

/* The request target: REQUEST_URI as the client sent it, else SCRIPT_NAME +
 * PATH_INFO; with QUERY_STRING when it is not in there already. */
static int make_url(fcgi_txn *t, const fcgi_nv *uri, const fcgi_nv *script, const fcgi_nv *pinfo, const fcgi_nv *qs) {
  http_req *r = &t->req;
  bool has_query = uri && memchr(uri->value, '?', uri->value_len);
  if (uri && (has_query || !qs->value_len)) {
    r->url = uri->value;
    r->url_len = uri->value_len;
  } else {
    int e = 0;
    if (uri) e |= mw_str_append(&t->url, uri->value, uri->value_len);
    else e |= mw_str_append(&t->url, script->value, script->value_len) |
              mw_str_append(&t->url, pinfo->value, pinfo->value_len);
    if (qs->value_len) e |= mw_str_appendc(&t->url, '?') | mw_str_append(&t->url, qs->value, qs->value_len);
    if (e || !t->url.p) return 400;
    r->url = t->url.p;
    r->url_len = t->url.len;
  }
  if (r->url_len == 0 || r->url[0] != '/') return 400;
  for (size_t i = 0; i < r->url_len; i++) {
    unsigned char ch = (unsigned char)r->url[i];
    if (ch <= ' ' || ch == 0x7f) return 400;
  }
  const char *q = memchr(r->url, '?', r->url_len);
  r->path = r->url;
  r->path_len = q ? (size_t)(q - r->url) : r->url_len;
  r->query = q ? q + 1 : "";
  r->query_len = q ? r->url_len - r->path_len - 1 : 0;
  return 0;
}

/* Makes t->req from the CGI variables. Returns 0, or the status that refuses
 * the request: 400 for a bad one, 431 when its url and headers are over
 * HTTP's limit, 413 when CONTENT_LENGTH is over --max-body. */
static int build_request(fcgi_txn *t, const http_opts *o) {
  static const fcgi_nv none = {"", 0, "", 0};
  fcgi_nv nv, method = none, uri = none, script = none, pinfo = none, qs = none;
  bool has_uri = false;
  http_req *r = &t->req;
  size_t pos = 0, header_bytes = 0;
  int k, st = 0;
  if (mw_str_append(&t->params, "", 0)) return 500; /* params.p exists, even when empty */
  while (!st && (k = fcgi_nv_next(t->params.p, t->params.len, &pos, &nv)) == 1) {
    if (nv.name_len > 5 && memcmp(nv.name, "HTTP_", 5) == 0) {
      st = http_var(t, &nv);
      header_bytes += nv.name_len - 5 + nv.value_len + 4;
    } else if (NV_IS(&nv, "CONTENT_TYPE") && nv.value_len) {
      st = value_safe(nv.value, nv.value_len) ? add_header(t, "content-type", 12, nv.value, nv.value_len) : 400;
      header_bytes += 12 + nv.value_len + 4;
    } else if (NV_IS(&nv, "CONTENT_LENGTH") && nv.value_len) {
      st = parse_length(t, nv.value, nv.value_len);
      if (!st) st = add_header(t, "content-length", 14, nv.value, nv.value_len) ? 500 : 0;
    } else if (NV_IS(&nv, "REQUEST_METHOD")) {
      method = nv;
    } else if (NV_IS(&nv, "REQUEST_URI")) {
      uri = nv;
      has_uri = true;
    } else if (NV_IS(&nv, "SCRIPT_NAME")) {
      script = nv;
    } else if (NV_IS(&nv, "PATH_INFO")) {
      pinfo = nv;
    } else if (NV_IS(&nv, "QUERY_STRING")) {
      qs = nv;
    } else if (NV_IS(&nv, "REMOTE_ADDR")) {
      size_t n = nv.value_len < sizeof t->addr - 1 ? nv.value_len : sizeof t->addr - 1;
      memcpy(t->addr, nv.value, n);
      t->addr[n] = '\0';
    }
  }
  if (st) return st;
  if (k < 0) return 400; /* a pair running past the end of the stream */
  r->method = NULL;
  for (size_t i = 0; i < MW_ARRAY_LEN(methods); i++) {
    size_t mlen = strlen(methods[i].name);
    if (method.value_len == mlen && memcmp(method.value, methods[i].name, mlen) == 0) {
      r->method = methods[i].name;
      r->method_id = methods[i].id;
      break;
    }
  }
  if ((st = make_url(t, has_uri ? &uri : NULL, &script, &pinfo, &qs))) return st;
  if (!r->method) return 400;
  if (r->url_len + header_bytes > o->max_header_size) return 431;
  if (t->has_length && t->content_length > o->max_body) return 413;
  return 0;
}

/* As over HTTP (http.c): STDIN must keep coming, --body-timeout between
 * records and --body-deadline in all; while reading waits for the disk
 * (reading = false), only the deadline runs. */
static void arm_body_timer(fcgi_conn *fc, bool reading) {
  fcgi_txn *t = fc->txn;
  mw_conn *c = fc->c;
  uint64_t ms = reading ? fc->site->opts.body_timeout_ms : 0;
  if (t->body_deadline) {
    uint64_t now = uv_now(c->srv->loop);
    uint64_t left = t->body_deadline > now ? t->body_deadline - now : 1;
    if (!ms || left < ms) ms = left;
  }
  mw_conn_set_timeout(c, ms);
}

/* Hands the complete request to the handler. */
static int serve(fcgi_conn *fc) {
  fcgi_txn *t = fc->txn;
  if (fc->body_paused) { /* the body is all there: the next request may come */
    fc->body_paused = false;
    if (!fc->paused && !fc->peer_eof) mw_conn_resume(fc->c);
  }
  t->dispatched = true;
  body_fill(&t->body, &t->req);
  mw_conn_set_timeout(fc->c, 0);
  res_start(t, &fc->site->opts);
  /* The handler may answer now (t is freed then) or later. */
  if (fc->site->handler.handle) fc->site->handler.handle(fc->site->handler.ud, &t->req, &t->res);
  else http_res_simple(&t->res, 404, "text/plain; charset=utf-8", "Not Found\n");
  return 0;
}

static int dispatch(fcgi_conn *fc) {
  fcgi_txn *t = fc->txn;
  if (t->has_length && t->body.len != t->content_length) return refuse(fc, 400, NULL); /* cut short */
  int r = body_end(&t->body);
  if (r == BODY_FAIL) return refuse(fc, t->body.status, t->body.why);
  if (r == BODY_WAIT) { /* served once the disk has the whole body */
    t->body_wait = true;
    arm_body_timer(fc, false);
    return 0;
  }
  return serve(fc);
}

static void on_body_pause(void *ud) {
  fcgi_txn *t = ud;
  fcgi_conn *fc = t->fc;
  fc->body_paused = true;
  mw_conn_pause(fc->c);
  arm_body_timer(fc, false);
}

static void on_body_resume(void *ud) {
  fcgi_txn *t = ud;
  fcgi_conn *fc = t->fc;
  fc->body_paused = false;
  if (t->stdin_done || fc->paused || fc->peer_eof || fc->c->closing || fc->c->ending) return;
  arm_body_timer(fc, true);
  mw_conn_resume(fc->c);
}

static void on_body_ready(void *ud) {
  fcgi_txn *t = ud;
  t->body_wait = false;
  serve(t->fc);
}

static void on_body_failed(void *ud) {
  fcgi_txn *t = ud;
  refuse(t->fc, t->body.status, t->body.why);
}

static const body_events fcgi_body_events = {on_body_pause, on_body_resume, on_body_ready, on_body_failed};

static int begin_request(fcgi_conn *fc, const fcgi_record *r) {
  mw_conn *c = fc->c;
  if (r->len != 8) return malformed(fc);
  const uint8_t *b = (const uint8_t *)r->content;
  int role = b[0] << 8 | b[1];
  bool keep = b[2] & FCGI_KEEP_CONN;
  if (fc->txn) {
    if (fc->txn->id == r->id) return malformed(fc); /* begun twice */
    end_request(c, r->id, FCGI_CANT_MPX_CONN);     /* one at a time */
    return 0;
  }
  if (role != FCGI_RESPONDER) {
    end_request(c, r->id, FCGI_UNKNOWN_ROLE);
    return next_request(fc, keep);
  }
  if (c->srv->stopping) {
    end_request(c, r->id, FCGI_OVERLOADED);
    mw_conn_end(c);
    return 1;
  }
  fcgi_txn *t = txn_new();
  if (!t) {
    mw_conn_close(c);
    return 1;
  }
  t->fc = fc;
  t->id = r->id;
  t->keep_conn = keep;
  t->req.start_ns = mw_now_ns();
  t->req.http_major = t->req.http_minor = 1;
  snprintf(t->addr, sizeof t->addr, "%s", c->addr);
  t->req.remote_addr = t->addr;
  fc->txn = t;
  /* Its parameters are its headers: --header-timeout for all of them. */
  mw_conn_set_timeout(c, fc->site->opts.header_timeout_ms);
  return 0;
}

static size_t fcgi_max_params(const http_opts *o) {
  size_t n = o->max_header_size + 48 * 1024;
  return n > FCGI_MAX_PARAMS_BYTES ? n : FCGI_MAX_PARAMS_BYTES;
}

static int on_params(fcgi_conn *fc, const fcgi_record *r) {
  fcgi_txn *t = fc->txn;
  mw_conn *c = fc->c;
  if (t->params_done) return malformed(fc); /* the stream went on after its end */
  if (r->len == 0) {
    t->params_done = true;
    int st = build_request(t, &fc->site->opts);
    if (st) return refuse(fc, st, NULL);
    mw_server *srv = c->srv;
    int64_t length = t->has_length ? (int64_t)t->content_length : -1;
    if (body_begin(&t->body, srv->loop, &fc->site->opts, &t->req, length, &fcgi_body_events, t) != BODY_OK)
      return refuse(fc, t->body.status, t->body.why);
    uint64_t dl = fc->site->opts.body_deadline_ms;
    t->body_deadline = dl ? uv_now(srv->loop) + dl : 0;
    arm_body_timer(fc, true);
    return 0;
  }
  if (t->params.len + r->len > fcgi_max_params(&fc->site->opts)) return refuse(fc, 431, NULL);
  if (mw_str_append(&t->params, r->content, r->len)) return refuse(fc, 500, NULL);
  return 0;
}

static int on_stdin(fcgi_conn *fc, const fcgi_record *r) {
  fcgi_txn *t = fc->txn;
  mw_conn *c = fc->c;
  if (t->stdin_done) return malformed(fc);
  /* The responder role sends PARAMS, then STDIN (FastCGI 1.0 §6.2): the
   * body is read knowing its type and length. */
  if (!t->params_done) return refuse(fc, 400, "STDIN before the end of PARAMS");
  if (r->len == 0) {
    t->stdin_done = true;
    return dispatch(fc);
  }
  switch (body_feed(&t->body, r->content, r->len)) {
  case BODY_OK:
    if (!fc->body_paused) arm_body_timer(fc, true);
    return 0;
  case BODY_WAIT: /* the disk is behind: stop reading until it catches up */
    fc->body_paused = true;
    mw_conn_pause(c);
    arm_body_timer(fc, false);
    return 0;
  default:
    return refuse(fc, t->body.status, t->body.why);
  }
}

/* The web server gave up on the request: END_REQUEST at once, and the
 * handler's answer, if it is still to come, is dropped. */
static int abort_request(fcgi_conn *fc) {
  fcgi_txn *t = fc->txn;
  unsigned id = t->id;
  bool keep = t->keep_conn;
  fc->txn = NULL;
  txn_release(t);
  end_request(fc->c, id, FCGI_REQUEST_COMPLETE);
  return next_request(fc, keep);
}

/* Records with request id 0. GET_VALUES is answered with what is known of
 * the names asked (FCGI_MPXS_CONNS: no multiplexing); any other type gets
 * UNKNOWN_TYPE. */
static int management(fcgi_conn *fc, const fcgi_record *r) {
  mw_conn *c = fc->c;
  if (r->type != FCGI_GET_VALUES) {
    char rec[FCGI_HEADER_LEN + 8] = {0};
    fcgi_put_header(rec, FCGI_UNKNOWN_TYPE, 0, 8, 0);
    rec[FCGI_HEADER_LEN] = (char)r->type;
    mw_conn_write_copy(c, rec, sizeof rec);
    return 0;
  }
  mw_str out = {0};
  size_t pos = 0;
  fcgi_nv nv;
  int k, e = mw_str_append(&out, "\0\0\0\0\0\0\0\0", FCGI_HEADER_LEN);
  bool mpxs = false;
  while ((k = fcgi_nv_next(r->content, r->len, &pos, &nv)) == 1) {
    if (NV_IS(&nv, "FCGI_MPXS_CONNS") && !mpxs) {
      mpxs = true;
      e |= fcgi_nv_append(&out, nv.name, nv.name_len, "0", 1);
    }
  }
  if (k < 0 || e) {
    mw_str_free(&out);
    return malformed(fc);
  }
  fcgi_put_header(out.p, FCGI_GET_VALUES_RESULT, 0, out.len - FCGI_HEADER_LEN, 0);
  mw_conn_write_copy(c, out.p, out.len);
  mw_str_free(&out);
  return 0;
}

static int on_record(void *ud, const fcgi_record *r) {
  fcgi_conn *fc = ud;
  if (fc->c->closing || fc->c->ending) return 1;
  if (r->id == 0) return management(fc, r);
  /* Records for a request that is not active are ignored (the spec's rule:
   * a request rejected with CANT_MPX_CONN still sends its streams). */
  bool active = fc->txn && fc->txn->id == r->id;
  switch (r->type) {
  case FCGI_BEGIN_REQUEST: return begin_request(fc, r);
  case FCGI_ABORT_REQUEST: return active ? abort_request(fc) : 0;
  case FCGI_PARAMS: return active ? on_params(fc, r) : 0;
  case FCGI_STDIN: return active ? on_stdin(fc, r) : 0;
  case FCGI_DATA: return 0; /* a Filter's second stream: a Responder reads none */
  default: return malformed(fc); /* a type only an application sends, or none at all */
  }
}

/* ---- the connection ---- */

static void fcgi_on_read(mw_conn *c, const char *data, size_t len) {
  fcgi_conn *fc = c->proto_data;
  int r = fcgi_parse(&fc->parser, data, len, on_record, fc);
  if (c->closing || c->ending) return;
  if (r < 0) {
    malformed(fc);
    return;
  }
  if (c->wq_bytes > FCGI_WQ_HIGH) {
    mw_conn_pause(c);
    fc->paused = true;
  }
}

static void fcgi_on_drain(mw_conn *c) {
  fcgi_conn *fc = c->proto_data;
  if (!fc->txn) mw_conn_set_timeout(c, fc->site->opts.keepalive_timeout_ms); /* idle from now */
  if (fc->sending) { /* a streamed response: its producer sets the pace again */
    fc->sending = false;
    mw_conn_set_timeout(c, 0);
  }
  if (fc->txn && fc->txn->dispatched) http_res_drained(&fc->txn->res);
  if (c->closing || c->proto_data != fc) return;
  if (!fc->paused) return;
  fc->paused = false;
  if (!fc->peer_eof && !fc->body_paused) mw_conn_resume(c);
}

static void fcgi_on_eof(mw_conn *c) {
  fcgi_conn *fc = c->proto_data;
  fc->peer_eof = true;
  if (fc->txn && fc->txn->dispatched) return; /* answer first, then end */
  if (fc->txn) {                              /* a request cut short */
    mw_conn_close(c);
    return;
  }
  mw_conn_end(c);
}

static void fcgi_on_timeout(mw_conn *c) {
  fcgi_conn *fc = c->proto_data;
  /* Answers still leaving: another send timeout as long as some left
   * since the last look. */
  if (fc && mw_conn_send_progressed(c)) return;
  fcgi_txn *t = fc->txn;
  /* A body too slow (--body-timeout between records, --body-deadline in
   * all) gets 408, as over HTTP; parameters that never end, or an idle
   * connection, just close. */
  if (t && t->params_done && !t->dispatched && !t->refused) {
    refuse(fc, 408, "the request body did not arrive in time");
    return;
  }
  mw_conn_close(c);
}

static void fcgi_on_stop(mw_conn *c) {
  fcgi_conn *fc = c->proto_data;
  /* A request arriving or being answered finishes first (next_request ends
   * the connection after it, as the server is stopping). */
  if (fc->txn) return;
  if (c->wq_len) mw_conn_end(c);
  else mw_conn_close(c);
}

static void fcgi_on_close(mw_conn *c) {
  fcgi_conn *fc = c->proto_data;
  if (fc->txn) txn_release(fc->txn);
  fcgi_parser_free(&fc->parser);
  free(fc);
}

static const mw_proto fcgi_proto = {
    .on_read = fcgi_on_read,
    .on_eof = fcgi_on_eof,
    .on_timeout = fcgi_on_timeout,
    .on_drain = fcgi_on_drain,
    .on_stop = fcgi_on_stop,
    .on_close = fcgi_on_close,
};

void fcgi_conn_attach(mw_conn *c, void *ud) {
  fcgi_conn *fc = calloc(1, sizeof *fc);
  if (!fc) {
    mw_conn_close(c);
    return;
  }
  fc->c = c;
  fc->site = ud;
  c->proto = &fcgi_proto;
  c->proto_data = fc;
  mw_conn_set_timeout(c, fc->site->opts.header_timeout_ms);
}
