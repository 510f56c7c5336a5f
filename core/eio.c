/* eio.c — Engine.IO v4 server: sessions, transports, upgrade, heartbeat. */
#include "eio.h"

#include <errno.h>
#include <llhttp.h> /* HTTP_GET, ...: http_req.method_id */
#include <openssl/rand.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "b64.h"
#include "eio_packet.h"
#include "hash.h"
#include "pct.h"
#include "server.h"
#include "turn.h"
#include "wlink.h"
#include "ws.h"

#define EIO_BUCKETS 4096

struct eio_session {
  char sid[21];
  eio_server *es;
  eio_session *hnext;       /* hash chain */
  eio_session *prev, *next; /* every session of the server */
  turn_item flush;          /* marked while polling output waits for the end of the turn */
  mw_timer timer;           /* heartbeat, then the linger (in the server's timers) */
  ws_conn *ws;              /* the websocket transport, once in use */
  ws_conn *probe;           /* a websocket being probed for the upgrade */
  http_res *get;            /* the pending long-poll GET */
  mw_str outq;              /* polling payload waiting for a GET */
  void *ud;
  uint64_t ping_mark;       /* websocket: the ping has left once the connection wrote this much */
  bool awaiting_pong, closed, probed;
  bool ping_queued;         /* polling: the ping still waits in outq for a GET */
  bool overflow;            /* over max_buffered: closes at the end of the loop turn */
  bool rate_warned;         /* said once this second that its messages are dropped */
  uint32_t rate_count;      /* packets received in the second that began at rate_window */
  uint64_t rate_window;
  bool lingering; /* closed, kept findable until the client's next poll takes the close packet */
  bool freeing;   /* gone: freed from the flush list at the end of the loop turn */
  bool polling;   /* counted in stats.polling: opened on polling and not upgraded or closed yet */
  max_align_t space[]; /* the handler's (eio_handler.space) */
};

void *eio_session_space(eio_session *s) { return s->space; }

/* A handshake waiting for allow_request's answer. req and res stay valid
 * until res is finished (http.c keeps the request even when its connection
 * goes), except req->remote_addr, which lives in the connection: copied. */
struct eio_pending {
  eio_server *es;
  const http_req *req;
  http_res *res;
  eio_pending *prev, *next; /* every handshake waiting on the server */
  void (*cancel)(void *ud, eio_pending *p);
  void *cancel_ud;
  void *ud;
  bool websocket;
  char addr[48];
};

struct eio_server {
  struct mw_server *srv;
  eio_options opt;
  eio_handler h;
  void *ud;
  eio_session *buckets[EIO_BUCKETS];
  eio_session *all;
  eio_pending *pending;
  turn_list flush;          /* polling sessions with output for their GET */
  int nsessions;
  int closing_handles;
  eio_stats stats; /* sessions is filled in by eio_server_stats */
};

void eio_options_defaults(eio_options *o, const char *path) {
  memset(o, 0, sizeof *o);
  snprintf(o->path, sizeof o->path, "%s", path);
  o->ping_interval = EIO_DEFAULT_PING_INTERVAL_MS;
  o->ping_timeout = EIO_DEFAULT_PING_TIMEOUT_MS;
  o->max_payload = EIO_DEFAULT_MAX_PAYLOAD;
  o->max_buffered = EIO_DEFAULT_MAX_BUFFERED;
  o->max_packet_rate = EIO_DEFAULT_MAX_PACKET_RATE;
  o->polling = o->websocket = true;
}

void eio_random_id(char out[21]) {
  unsigned char raw[15];
  if (RAND_bytes(raw, sizeof raw) != 1) abort(); /* no randomness: no safe ids */
  b64_write(out, raw, sizeof raw, true);
  out[20] = '\0';
}

/* ---- the session table ---- */

static uint32_t hash_sid(const char *sid, size_t len) { return mw_hash32(sid, len) % EIO_BUCKETS; }

static eio_session *find(eio_server *es, const char *sid, size_t len) {
  if (len != 20) return NULL;
  for (eio_session *s = es->buckets[hash_sid(sid, len)]; s; s = s->hnext)
    if (memcmp(s->sid, sid, 20) == 0) return s;
  return NULL;
}

static void unlink_session(eio_session *s) {
  eio_server *es = s->es;
  eio_session **pp = &es->buckets[hash_sid(s->sid, 20)];
  while (*pp && *pp != s) pp = &(*pp)->hnext;
  if (*pp) *pp = s->hnext;
  if (s->prev) s->prev->next = s->next;
  else es->all = s->next;
  if (s->next) s->next->prev = s->prev;
  turn_unmark(&es->flush, &s->flush);
  es->nsessions--;
}

/* ---- answering HTTP ---- */

static void add_cors(eio_server *es, const http_req *req, http_res *res) {
  if (!es->opt.norigins) return;
  size_t olen;
  const char *origin = http_req_header(req, "origin", &olen);
  if (!origin) return;
  for (int i = 0; i < es->opt.norigins; i++) {
    const char *o = es->opt.origins[i];
    if (!strcmp(o, "*") || (strlen(o) == olen && memcmp(o, origin, olen) == 0)) {
      http_res_header(res, "Access-Control-Allow-Origin", 27, origin, olen);
      http_res_headerz(res, "Access-Control-Allow-Credentials", "true");
      http_res_headerz(res, "Vary", "Origin");
      return;
    }
  }
}

/* The Origin policy, for both transports: a request from a browser page
 * (it has an Origin) must come from a listed origin, or without a list,
 * when same_origin is set (production), from a page of this server. A
 * WebSocket from another site would otherwise carry the user's cookies
 * (cross-site WebSocket hijacking); a polling handshake the same way. */
static bool origin_allowed(eio_server *es, const http_req *req) {
  size_t olen;
  const char *origin = http_req_header(req, "origin", &olen);
  if (!origin) return true; /* not a browser: no Origin to check */
  if (!es->opt.norigins) return !es->opt.same_origin || http_req_same_origin(req);
  for (int i = 0; i < es->opt.norigins; i++) {
    const char *o = es->opt.origins[i];
    if (!strcmp(o, "*") || (strlen(o) == olen && memcmp(o, origin, olen) == 0)) return true;
  }
  return false;
}

static void answer_error(http_res *res, int status, int code, const char *message) {
  char body[128];
  snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, message);
  http_res_simple(res, status, "application/json", body);
}

/* engine.io's FORBIDDEN: 403 {"code":4,"message":...}, the message being
 * the app's own text (escaped for JSON). */
static void answer_forbidden(http_res *res, const char *message) {
  mw_str body = {0};
  mw_str_appendz(&body, "{\"code\":4,\"message\":\"");
  for (const unsigned char *p = (const unsigned char *)message; *p; p++) {
    if (*p == '"' || *p == '\\') mw_str_appendf(&body, "\\%c", *p);
    else if (*p < 0x20) mw_str_appendf(&body, "\\u%04x", *p);
    else mw_str_appendc(&body, (char)*p);
  }
  mw_str_appendz(&body, "\"}");
  res->status = 403;
  http_res_headerz(res, "Content-Type", "application/json");
  http_res_end(res, body.p ? body.p : "", body.len);
  mw_str_free(&body);
}

/* As engine.io answers polls: never cached, and gzipped over the
 * threshold when the client accepts it (its httpCompression). */
static void answer_payload(http_res *res, const char *data, size_t len) {
  http_res_headerz(res, "Content-Type", "text/plain; charset=UTF-8");
  http_res_headerz(res, "Cache-Control", "no-store");
  http_res_compressible(res);
  http_res_end(res, data, len);
}

/* Finds key in a query string and decodes its value into out (cap bytes)
 * as engine.io reads it (form decoding: '+' a space, a malformed escape
 * kept as it is). The value is compared by its length: an escaped NUL is a
 * byte of it, not its end. Returns the value's length; -1 when key is
 * absent, -2 when its value does not fit (cut short, it could match). */
static ssize_t query_get(const char *q, size_t qlen, const char *key, char *out, size_t cap) {
  size_t klen = strlen(key);
  const char *end = q + qlen;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *pe = amp ? amp : end;
    if ((size_t)(pe - q) > klen && memcmp(q, key, klen) == 0 && q[klen] == '=') {
      ssize_t n = pct_decode(q + klen + 1, (size_t)(pe - q - klen - 1), out, cap, PCT_PLUS);
      return n < 0 ? -2 : n;
    }
    q = pe + 1;
  }
  return -1;
}

static bool query_is(const char *v, ssize_t n, const char *lit) {
  return n >= 0 && (size_t)n == strlen(lit) && memcmp(v, lit, (size_t)n) == 0;
}

/* ---- sending ---- */

static void mark_dirty(eio_session *s) {
  if (!s->closed) turn_mark(&s->es->flush, &s->flush);
}

/* Answers the pending GET with whatever is queued. */
static void flush_poll(eio_session *s) {
  if (!s->get || !s->outq.len) return;
  http_res *res = s->get;
  s->get = NULL;
  s->ping_queued = false;
  answer_payload(res, s->outq.p, s->outq.len);
  mw_str_reset(&s->outq);
}

static void session_close(eio_session *s, const char *reason, bool send_close);

static void free_session(eio_session *s);

static void flush_session(turn_list *l, turn_item *it) {
  eio_session *s = (eio_session *)((char *)it - offsetof(eio_session, flush));
  if (s->freeing) free_session(s);
  else if (s->overflow) session_close(s, "transport error", false); /* see room_for */
  else flush_poll(s);
}

size_t eio_buffered(eio_session *s) {
  if (s->closed) return 0;
  return s->ws ? ws_buffered(s->ws) : s->outq.len;
}

/* Whether s can take one more message. A client that stops reading while
 * messages keep coming (a broadcast storm) must not hold them all: past
 * max_buffered it is closed and what it holds is released now. The close
 * itself comes later, never in the middle of a broadcast that is walking
 * the sockets: a WebSocket's connection reports it from its close callback,
 * a polling session from the end of the loop turn (flush_session). */
static bool room_for(eio_session *s) {
  if (s->overflow) return false;
  size_t cap = s->es->opt.max_buffered, held = eio_buffered(s);
  if (!cap || held <= cap) return true;
  /* Writes wait for the end of the loop turn; a burst queued in one turn
   * would be judged before the client had a chance to take any of it. So
   * first give it what it can take now (the kernel's buffer, a pending
   * poll), as a server that writes every message at once would, and judge
   * what is left. */
  if (s->ws) {
    mw_conn_flush(ws_conn_of(s->ws));
    held = ws_buffered(s->ws);
  } else if (s->get) {
    flush_poll(s);
    held = s->outq.len;
  }
  if (held <= cap) return true;
  s->overflow = true;
  mw_log(MW_LOG_WARN, "eio: session %s is not reading: %zu bytes queued for it, over maxBackpressure (%zu); closing it",
         s->sid, held, cap);
  if (s->ws) {
    mw_conn_close(ws_conn_of(s->ws));
  } else {
    mw_str_free(&s->outq);
    mark_dirty(s);
  }
  return false;
}

static void send_packet(eio_session *s, int type, const char *data, size_t len, bool binary) {
  if (s->closed || !room_for(s)) return;
  if (type == EIO_MESSAGE) {
    s->es->stats.packets_out++;
    s->es->stats.bytes_out += len;
  }
  if (s->ws) {
    if (binary) {
      ws_send(s->ws, data, len, true);
    } else {
      mw_buf *b = mw_buf_new(10 + 1 + len);
      if (!b) return;
      uint8_t hdr[10];
      size_t hl = ws_frame_header(hdr, 1 + len, false);
      memcpy(b->data + 10 - hl, hdr, hl);
      b->data[10] = (char)('0' + type);
      if (len) memcpy(b->data + 11, data, len);
      ws_send_frame(s->ws, b, 10 - hl, hl + 1 + len);
    }
    return;
  }
  if (eio_payload_append(&s->outq, type, data, len, binary) != 0) {
    mw_log(MW_LOG_WARN, "eio: a text message with a record separator (0x1e) cannot go over polling; dropped");
    return;
  }
  mark_dirty(s);
}

int eio_msg_init(eio_msg *m, const char *data, size_t len, bool binary) {
  size_t prefix = binary ? 0 : 1;
  m->buf = mw_buf_new(10 + prefix + len);
  if (!m->buf) return -ENOMEM;
  uint8_t hdr[10];
  size_t hl = ws_frame_header(hdr, prefix + len, binary);
  m->frame_off = 10 - hl;
  memcpy(m->buf->data + m->frame_off, hdr, hl);
  if (!binary) m->buf->data[10] = '4';
  if (len) memcpy(m->buf->data + 10 + prefix, data, len);
  m->pkt_off = 10 + prefix;
  m->len = len;
  m->binary = binary;
  return 0;
}

void eio_msg_release(eio_msg *m) {
  mw_buf_unref(m->buf);
  m->buf = NULL;
}

void eio_send_msg(eio_session *s, const eio_msg *m) {
  if (s->closed || !room_for(s)) return;
  s->es->stats.packets_out++;
  s->es->stats.bytes_out += m->len;
  if (s->ws) {
    ws_send_frame(s->ws, mw_buf_ref(m->buf), m->frame_off, m->pkt_off + m->len - m->frame_off);
    return;
  }
  eio_payload_append(&s->outq, EIO_MESSAGE, m->buf->data + m->pkt_off, m->len, m->binary);
  mark_dirty(s);
}

void eio_send(eio_session *s, const char *data, size_t len, bool binary) {
  send_packet(s, EIO_MESSAGE, data, len, binary);
}

bool eio_writable(eio_session *s) {
  if (s->closed) return false;
  if (s->ws) return ws_buffered(s->ws) < 1024 * 1024;
  return s->get != NULL;
}

/* ---- closing ---- */

static void free_session(eio_session *s) {
  mw_str_free(&s->outq);
  free(s);
}

/* The last of s: unlinked, its timer stopped. It is freed at the end of
 * the loop turn, not now: the callers up the stack (a WebSocket's close, a
 * request's handler) may still look at it on their way out. */
static void release_session(eio_session *s) {
  mw_timer_stop(&s->es->srv->timers, &s->timer);
  s->freeing = true;
  turn_mark(&s->es->flush, &s->flush);
}

static void ws_noop_message(void *ud, ws_conn *ws, const char *d, size_t n, bool b) {}
static void ws_noop_close(void *ud, ws_conn *ws, int code) {}
static const ws_handler ws_detached = {ws_noop_message, ws_noop_close};

/* A lingering session's end: its close packet was taken, or never will be. */
static void linger_end(eio_session *s) {
  s->lingering = false;
  unlink_session(s);
  release_session(s);
}

static eio_session *session_of_timer(mw_timer *t) { return (eio_session *)((char *)t - offsetof(eio_session, timer)); }

static void on_linger_timeout(mw_timer *t) { linger_end(session_of_timer(t)); }

static void session_close(eio_session *s, const char *reason, bool send_close) {
  if (s->closed) return;
  eio_server *es = s->es;
  if (send_close && !s->ws) { /* tell a polling client before it goes */
    eio_payload_append(&s->outq, EIO_CLOSE, "", 0, false);
  }
  flush_poll(s);
  /* A polling client between two polls would find its session gone and see
   * a "transport error": keep the session (closed) until its next GET takes
   * the close packet, as engine.io does, for pingTimeout at most. Not when
   * the client broke the protocol: then the session is gone at once and its
   * next request gets "Session ID unknown" (the Engine.IO test suite's
   * "closes the session upon invalid packet format"). */
  bool client_error = !strcmp(reason, "parse error") || !strcmp(reason, "transport error");
  bool linger = send_close && !client_error && !s->ws && !s->probe && s->outq.len > 0;
  s->closed = true;
  es->stats.closed++;
  if (s->polling) {
    s->polling = false;
    es->stats.polling--;
  }
  if (!linger) unlink_session(s);
  mw_timer_stop(&es->srv->timers, &s->timer);
  if (s->get) { /* nothing more will come: let the poll return */
    answer_payload(s->get, "6", 1);
    s->get = NULL;
  }
  if (s->ws) {
    ws_set_userdata(s->ws, &ws_detached, NULL);
    ws_close(s->ws, 1000, "");
    s->ws = NULL;
  }
  if (s->probe) {
    ws_set_userdata(s->probe, &ws_detached, NULL);
    ws_close(s->probe, 1000, "");
    s->probe = NULL;
  }
  es->h.on_close(es->ud, s, reason);
  if (linger) {
    s->lingering = true;
    mw_timer_start(&es->srv->timers, &s->timer, es->opt.ping_timeout, on_linger_timeout);
    return;
  }
  release_session(s);
}

void eio_close(eio_session *s, const char *reason) { session_close(s, reason, true); }

/* ---- heartbeat ---- */

static void on_heartbeat(mw_timer *t) {
  eio_session *s = session_of_timer(t);
  if (s->awaiting_pong) {
    session_close(s, "ping timeout", false);
    return;
  }
  s->awaiting_pong = true;
  send_packet(s, EIO_PING, "", 0, false);
  /* Only a pong to a ping that has left counts (got_pong): a client that
   * answers blind while reading nothing is still timed out. */
  if (s->ws) s->ping_mark = ws_conn_of(s->ws)->queued_total;
  else s->ping_queued = true;
  mw_timer_start(&s->es->srv->timers, &s->timer, s->es->opt.ping_timeout, on_heartbeat);
}

static void got_pong(eio_session *s) {
  if (!s->awaiting_pong) return;
  if (s->ws ? mw_conn_sent(ws_conn_of(s->ws)) < s->ping_mark : s->ping_queued) return;
  s->awaiting_pong = false;
  mw_timer_start(&s->es->srv->timers, &s->timer, s->es->opt.ping_interval, on_heartbeat);
}

/* ---- incoming packets ---- */

/* Returns non-zero when the session closed (stop reading). */
/* Counts a packet from s against max_packet_rate. Returns false when it is
 * to be dropped; past twice the rate the session is closed. */
static bool within_rate(eio_session *s) {
  uint32_t max = s->es->opt.max_packet_rate;
  if (!max) return true;
  uint64_t now = uv_now(s->es->srv->loop);
  if (now - s->rate_window >= 1000) {
    s->rate_window = now;
    s->rate_count = 0;
    s->rate_warned = false;
  }
  if (++s->rate_count <= max) return true;
  if (s->rate_count > 2 * max) {
    mw_log(MW_LOG_WARN, "eio: session %s sent more than %u packets in a second; closing it", s->sid, 2 * max);
    session_close(s, "transport error", false);
    return false;
  }
  if (!s->rate_warned) {
    s->rate_warned = true;
    mw_log(MW_LOG_WARN, "eio: session %s sends more than %u packets a second (maxPacketRate); dropping the rest this second",
           s->sid, max);
  }
  return false;
}

static int on_packet(void *ud, const eio_packet *p) {
  eio_session *s = ud;
  if (s->closed) return 1;
  if (!within_rate(s) && p->type == EIO_MESSAGE) return s->closed ? 1 : 0;
  switch (p->type) {
  case EIO_MESSAGE:
    s->es->stats.packets_in++;
    s->es->stats.bytes_in += p->len;
    s->es->h.on_message(s->es->ud, s, p->data, p->len, p->binary);
    break;
  case EIO_PONG:
    got_pong(s);
    break;
  case EIO_CLOSE:
    session_close(s, "transport close", false);
    break;
  default: /* ping, upgrade, noop: nothing to do on an open transport */
    break;
  }
  return s->closed ? 1 : 0;
}

static void ws_on_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  eio_session *s = ud;
  eio_packet p;
  if (eio_packet_decode(data, len, binary, &p) != 0) {
    session_close(s, "parse error", false);
    return;
  }
  on_packet(s, &p);
}

static void ws_on_close(void *ud, ws_conn *ws, int code) {
  eio_session *s = ud;
  if (s->ws == ws) s->ws = NULL;
  bool clean = !s->overflow && (code == 1000 || code == 1001 || code == 1006 || code == 1005);
  session_close(s, clean ? "transport close" : "transport error", false);
}

static const ws_handler session_ws = {ws_on_message, ws_on_close};

/* Sends packets queued as a polling payload over a websocket, one frame
 * each (only what was queued before the websocket took over). */
static void replay_over_ws(ws_conn *ws, const mw_str *pending) {
  if (!pending->len) return;
  const char *p = pending->p, *end = pending->p + pending->len;
  mw_str scratch = {0};
  while (p < end) {
    const char *sep = memchr(p, EIO_SEPARATOR, (size_t)(end - p));
    const char *pe = sep ? sep : end;
    if (pe > p) {
      if (*p == 'b') {
        mw_str_reset(&scratch);
        if (b64_decode(&scratch, p + 1, (size_t)(pe - p - 1)) == 0)
          ws_send(ws, scratch.p ? scratch.p : "", scratch.len, true);
      } else if (*p != '0' + EIO_NOOP) {
        ws_send(ws, p, (size_t)(pe - p), false);
      }
    }
    p = pe + 1;
  }
  mw_str_free(&scratch);
}

/* The upgrade: 2probe → 3probe (and a noop to end the pending poll), then 5. */
static void probe_on_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  eio_session *s = ud;
  if (!binary && len == 6 && memcmp(data, "2probe", 6) == 0 && !s->probed) {
    s->probed = true;
    ws_send(ws, "3probe", 6, false);
    eio_payload_append(&s->outq, EIO_NOOP, "", 0, false);
    mark_dirty(s);
    return;
  }
  if (!binary && len == 1 && data[0] == '5' && s->probed) {
    /* Switch: whatever waits for a poll now goes over the websocket. */
    mw_str pending = s->outq;
    s->outq = (mw_str){0};
    if (s->get) {
      answer_payload(s->get, "6", 1);
      s->get = NULL;
    }
    s->ws = ws;
    s->probe = NULL;
    if (s->polling) {
      s->polling = false;
      s->es->stats.polling--;
    }
    ws_set_userdata(ws, &session_ws, s);
    replay_over_ws(ws, &pending);
    mw_str_free(&pending);
    if (s->ping_queued) { /* the ping went over the websocket just now */
      s->ping_queued = false;
      s->ping_mark = ws_conn_of(ws)->queued_total;
    }
    return;
  }
  /* Anything else during a probe: drop the probe, keep polling. */
  s->probe = NULL;
  ws_set_userdata(ws, &ws_detached, NULL);
  ws_close(ws, 1002, "bad upgrade");
}

static void probe_on_close(void *ud, ws_conn *ws, int code) {
  eio_session *s = ud;
  if (s->probe == ws) s->probe = NULL;
}

static const ws_handler probe_ws = {probe_on_message, probe_on_close};

/* ---- requests ---- */

static eio_session *session_new(eio_server *es) {
  eio_session *s = calloc(1, sizeof *s + es->h.space);
  if (!s) return NULL;
  s->es = es;
  do {
    eio_random_id(s->sid);
    if (wlink_self >= 0) s->sid[0] = wlink_sid_mark(wlink_self); /* --workers: whose session it is */
  } while (find(es, s->sid, 20));
  uint32_t b = hash_sid(s->sid, 20);
  s->hnext = es->buckets[b];
  es->buckets[b] = s;
  s->next = es->all;
  if (es->all) es->all->prev = s;
  es->all = s;
  es->nsessions++;
  return s;
}

static void open_packet(eio_session *s, bool polling, mw_str *out) {
  const eio_options *o = &s->es->opt;
  mw_str_appendf(out, "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%llu,\"pingTimeout\":%llu,\"maxPayload\":%zu}",
                 s->sid, polling && o->websocket ? "\"websocket\"" : "", (unsigned long long)o->ping_interval,
                 (unsigned long long)o->ping_timeout, o->max_payload);
}

static void open_session(eio_server *es, const http_req *req, http_res *res, bool websocket) {
  eio_session *s = session_new(es);
  if (!s) {
    http_res_simple(res, 500, "text/plain", "out of memory\n");
    return;
  }
  es->stats.opened++;
  if (!websocket) {
    s->polling = true;
    es->stats.polling++;
  }
  /* The handler sees the handshake request before the answer frees it. */
  mw_timer_start(&es->srv->timers, &s->timer, es->opt.ping_interval, on_heartbeat);
  es->h.on_open(es->ud, s, req);
  mw_str open = {0};
  if (websocket) {
    ws_conn *ws = ws_accept(res, req, &session_ws, s, es->opt.max_payload);
    if (!ws) {
      session_close(s, "transport error", false);
      return;
    }
    open_packet(s, false, &open);
    ws_send(ws, open.p, open.len, false);
    /* What the handler sent while opening waits in outq: it follows. */
    mw_str pending = s->outq;
    s->outq = (mw_str){0};
    s->ws = ws;
    replay_over_ws(ws, &pending);
    mw_str_free(&pending);
  } else {
    add_cors(es, req, res);
    open_packet(s, true, &open);
    answer_payload(res, open.p, open.len);
  }
  mw_str_free(&open);
}

static void unlink_pending(eio_pending *p) {
  eio_server *es = p->es;
  if (p->prev) p->prev->next = p->next;
  else es->pending = p->next;
  if (p->next) p->next->prev = p->prev;
}

/* Holds the handshake until allow_request answers (maybe at once). */
static void ask_allow(eio_server *es, const http_req *req, http_res *res, bool websocket) {
  eio_pending *p = calloc(1, sizeof *p);
  if (!p) {
    http_res_simple(res, 500, "text/plain", "out of memory\n");
    return;
  }
  p->es = es;
  p->req = req;
  p->res = res;
  p->websocket = websocket;
  /* The options may change while p waits: p keeps the hook it was given to. */
  p->cancel = es->opt.allow_cancel;
  p->cancel_ud = es->opt.allow_ud;
  snprintf(p->addr, sizeof p->addr, "%s", req->remote_addr ? req->remote_addr : "");
  p->next = es->pending;
  if (es->pending) es->pending->prev = p;
  es->pending = p;
  es->opt.allow_request(es->opt.allow_ud, p, req); /* p may be answered and freed already */
}

void eio_allow(eio_pending *p, bool ok, const char *message) {
  unlink_pending(p);
  http_req req = *p->req;
  req.remote_addr = p->addr;
  if (ok) {
    open_session(p->es, &req, p->res, p->websocket);
  } else {
    if (!p->websocket) add_cors(p->es, &req, p->res);
    answer_forbidden(p->res, message && *message ? message : "Forbidden");
  }
  free(p);
}

void eio_pending_set_userdata(eio_pending *p, void *ud) { p->ud = ud; }
void *eio_pending_userdata(eio_pending *p) { return p->ud; }

/* A request without sid. As in engine.io's verify(), allowRequest sees only
 * handshakes that are otherwise valid. */
static void handshake(eio_server *es, const http_req *req, http_res *res, bool websocket) {
  if (!websocket && req->method_id != HTTP_GET) {
    answer_error(res, 400, 2, "Bad handshake method");
    return;
  }
  if (es->opt.allow_request) ask_allow(es, req, res, websocket);
  else open_session(es, req, res, websocket);
}

static void poll_get(eio_session *s, const http_req *req, http_res *res) {
  if (s->get) { /* one GET at a time: a second one is a broken client */
    answer_error(res, 400, 3, "Bad request");
    session_close(s, "transport error", true);
    return;
  }
  add_cors(s->es, req, res);
  if (s->probe && s->probed && !s->outq.len) {
    /* Upgrading: answer at once so the client can send its "5". */
    answer_payload(res, "6", 1);
    return;
  }
  if (s->outq.len) {
    s->ping_queued = false;
    answer_payload(res, s->outq.p, s->outq.len);
    mw_str_reset(&s->outq);
    return;
  }
  s->get = res;
}

static void poll_post(eio_session *s, const http_req *req, http_res *res) {
  eio_server *es = s->es;
  add_cors(es, req, res);
  if (req->body_len > es->opt.max_payload) {
    http_res_simple(res, 413, "text/plain; charset=UTF-8", "Payload Too Large");
    session_close(s, "transport error", true);
    return;
  }
  size_t blen;
  const char *body = http_req_body(req, &blen); /* a large payload may have been spooled */
  if (!body) {
    answer_error(res, 500, 3, "Bad request");
    session_close(s, "transport error", true);
    return;
  }
  mw_str scratch = {0};
  int r = eio_payload_decode(body, blen, &scratch, on_packet, s);
  mw_str_free(&scratch);
  if (r < 0 && !s->closed) {
    answer_error(res, 400, 3, "Bad request");
    session_close(s, "parse error", true);
    return;
  }
  http_res_headerz(res, "Content-Type", "text/html");
  http_res_end(res, "ok", 2);
}

int eio_handle_http(eio_server *es, const http_req *req, http_res *res) {
  size_t plen = strlen(es->opt.path);
  /* "/socket.io/" and "/socket.io" both lead here. */
  if (!(req->path_len == plen && memcmp(req->path, es->opt.path, plen) == 0) &&
      !(plen > 1 && es->opt.path[plen - 1] == '/' && req->path_len == plen - 1 &&
        memcmp(req->path, es->opt.path, plen - 1) == 0))
    return 1;
  if (req->method_id == HTTP_OPTIONS) { /* CORS preflight */
    add_cors(es, req, res);
    http_res_headerz(res, "Access-Control-Allow-Methods", "GET, POST");
    size_t hl;
    const char *rh = http_req_header(req, "access-control-request-headers", &hl);
    if (rh) http_res_header(res, "Access-Control-Allow-Headers", 28, rh, hl);
    res->status = 204;
    http_res_end(res, "", 0);
    return 0;
  }
  char eio[8], transport[16], sid[32];
  ssize_t eio_len = query_get(req->query, req->query_len, "EIO", eio, sizeof eio);
  ssize_t transport_len = query_get(req->query, req->query_len, "transport", transport, sizeof transport);
  ssize_t sid_len = query_get(req->query, req->query_len, "sid", sid, sizeof sid);
  bool has_sid = sid_len != -1;
  if (!query_is(eio, eio_len, "4")) {
    answer_error(res, 400, 5, "Unsupported protocol version");
    return 0;
  }
  bool websocket = query_is(transport, transport_len, "websocket");
  bool polling = query_is(transport, transport_len, "polling");
  if ((!websocket && !polling) || (websocket && !es->opt.websocket) || (polling && !es->opt.polling)) {
    answer_error(res, 400, 0, "Transport unknown");
    return 0;
  }
  if (!origin_allowed(es, req)) {
    http_res_simple(res, 403, "application/json", "{\"code\":4,\"message\":\"Forbidden\"}");
    return 0;
  }
  if (websocket && !req->upgrade) {
    answer_error(res, 400, 3, "Bad request");
    return 0;
  }
  if (!has_sid) {
    handshake(es, req, res, websocket);
    return 0;
  }
  eio_session *s = sid_len < 0 ? NULL : find(es, sid, (size_t)sid_len);
  if (s && s->lingering && !websocket && req->method_id == HTTP_GET) { /* its last poll: the close packet */
    add_cors(es, req, res);
    answer_payload(res, s->outq.p, s->outq.len);
    mw_str_reset(&s->outq);
    linger_end(s);
    return 0;
  }
  if (!s || s->closed) {
    answer_error(res, 400, 1, "Session ID unknown");
    return 0;
  }
  if (websocket) {
    if (s->ws || s->probe) { /* one websocket per session: the extra one is closed */
      ws_conn *extra = ws_accept(res, req, &ws_detached, NULL, es->opt.max_payload);
      if (extra) ws_close(extra, 1008, "session already has a websocket");
      return 0;
    }
    ws_conn *ws = ws_accept(res, req, &probe_ws, s, es->opt.max_payload);
    if (ws) s->probe = ws;
    return 0;
  }
  if (s->ws) { /* upgraded: polling is over for this session */
    answer_error(res, 400, 3, "Bad request");
    return 0;
  }
  if (req->method_id == HTTP_GET) poll_get(s, req, res);
  else if (req->method_id == HTTP_POST) poll_post(s, req, res);
  else answer_error(res, 400, 2, "Bad handshake method");
  return 0;
}

/* ---- the endpoint ---- */

static void free_origins(eio_options *o) {
  for (int i = 0; i < o->norigins; i++) free(o->origins[i]);
  free(o->origins);
  o->origins = NULL;
  o->norigins = 0;
}

void eio_server_configure(eio_server *es, const eio_options *o) {
  char **origins = NULL;
  if (o->norigins) {
    origins = calloc((size_t)o->norigins, sizeof *origins);
    for (int i = 0; origins && i < o->norigins; i++) origins[i] = strdup(o->origins[i]);
  }
  free_origins(&es->opt);
  es->opt = *o;
  es->opt.origins = origins;
  if (!origins) es->opt.norigins = 0;
}

const eio_options *eio_server_options(eio_server *es) { return &es->opt; }

int eio_server_new(eio_server **out, struct mw_server *srv, const eio_options *o, const eio_handler *h,
                   void *ud) {
  eio_server *es = calloc(1, sizeof *es);
  if (!es) return -ENOMEM;
  es->srv = srv;
  es->h = *h;
  es->ud = ud;
  eio_server_configure(es, o);
  turn_init(&es->flush, srv->loop, flush_session, es);
  *out = es;
  return 0;
}

static void on_es_handle_closed(uv_handle_t *h) {
  eio_server *es = h->data;
  if (--es->closing_handles == 0) { /* both handles closed, in whatever order */
    free_origins(&es->opt);
    free(es);
  }
}

void eio_server_free(eio_server *es) {
  if (!es) return;
  while (es->all) {
    if (es->all->lingering) linger_end(es->all);
    else session_close(es->all, "server shutting down", true);
  }
  while (es->pending) { /* never answered: the client hears it now */
    eio_pending *p = es->pending;
    unlink_pending(p);
    if (p->cancel) p->cancel(p->cancel_ud, p);
    if (!p->websocket) add_cors(es, p->req, p->res);
    http_res_simple(p->res, 503, "text/plain; charset=UTF-8", "Server shutting down");
    free(p);
  }
  turn_run(&es->flush); /* frees the sessions just closed */
  es->closing_handles = 2;
  turn_close(&es->flush, on_es_handle_closed);
}

void eio_server_stats(eio_server *es, eio_stats *out) {
  *out = es->stats;
  out->sessions = es->stats.opened - es->stats.closed; /* not the lingering ones */
}

const char *eio_sid(eio_session *s) { return s->sid; }
const char *eio_transport(eio_session *s) { return s->ws ? "websocket" : "polling"; }
void *eio_userdata(eio_session *s) { return s->ud; }
void eio_set_userdata(eio_session *s, void *ud) { s->ud = ud; }
