/* ws.c — WebSocket (RFC 6455), server side: the handshake, then wslay's
 * event API driven from the connection's reads. wslay does no I/O: its recv
 * callback hands out the bytes of the read being processed, its send
 * callback copies into the connection's write queue and never blocks, so
 * wslay never holds a half-sent frame and our own data frames can go straight
 * into the same queue.
 *
 * A wslay context is about 8.5 KB (two 4 KiB buffers). A connection holds
 * one only while it needs it: while a frame or a fragmented message is half
 * received, or once a close is under way. Between messages the context goes
 * back to a small pool, in the state it started in (no partial frame, no
 * message being assembled, nothing queued, no close), and the next connection
 * with bytes to read takes it. Ten thousand idle WebSockets hold no context
 * at all, and a busy server needs no more contexts than connections with a
 * half-received frame, with no allocation per message. */
#include "ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "b64.h"
#include "server.h"
#include "utf8.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_CLOSE_WAIT_MS 2000
#define WS_CODE_ABNORMAL 1006
#define WS_POOL_MAX 16 /* clean contexts kept for reuse */

/* A wslay context and the connection using it (its callbacks' user data). */
typedef struct wsctx {
  wslay_event_context_ptr ctx;
  ws_conn *ws;
  struct wsctx *next; /* in the pool */
} wsctx;

static wsctx *pool;
static int npool, nlive; /* contexts in the pool; contexts allocated */

/* For the unit test (not part of ws.h): contexts allocated, and how many of
 * them wait in the pool. */
void ws_context_counts(int *live, int *pooled) {
  *live = nlive;
  *pooled = npool;
}

struct ws_conn {
  mw_conn *c;
  wsctx *w;               /* NULL while idle (see the top of this file) */
  wslay_event_context_ptr ctx; /* w->ctx, or NULL */
  size_t max_msg;
  uint64_t fed;           /* bytes given to this context */
  uint64_t framed;        /* bytes of the frames it finished */
  uint64_t frame_size;    /* header + payload of the frame being received */
  bool in_frame;          /* between a frame's start and its end */
  bool fragmented;        /* a fragmented data message is being assembled */
  ws_handler h;           /* copied: callers may pass a temporary */
  void *ud;
  const char *in;         /* the unread part of the read being fed to wslay */
  size_t in_len;
  uint16_t fail_code;     /* set when we failed the connection ourselves */
  bool fix_close;         /* put 1002 into wslay's empty close (see feed) */
  bool in_recv;           /* inside wslay_event_recv: only queue, never send */
  bool closing;           /* a close frame is queued or received: no more data */
  bool done;              /* on_close has been called */
};

/* ---- UTF-8 ---- */

/* ---- handshake ---- */

static void trim(const char **p, size_t *len) {
  while (*len && (**p == ' ' || **p == '\t')) {
    (*p)++;
    (*len)--;
  }
  while (*len && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t')) (*len)--;
}

/* True when a header called name (any of them, if repeated) lists token in
 * its comma-separated value, compared case-insensitively. */
static bool header_has_token(const http_req *req, const char *name, const char *token) {
  for (int i = 0; i < req->nheaders; i++) {
    const http_header *h = &req->headers[i];
    if (!mw_ieq(h->name, h->name_len, name)) continue;
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end) {
      const char *comma = memchr(p, ',', (size_t)(end - p));
      const char *e = comma ? comma : end;
      const char *t = p;
      size_t tl = (size_t)(e - p);
      trim(&t, &tl);
      if (mw_ieq(t, tl, token)) return true;
      p = comma ? comma + 1 : end;
    }
  }
  return false;
}

static int header_count(const http_req *req, const char *name) {
  int n = 0;
  for (int i = 0; i < req->nheaders; i++)
    if (mw_ieq(req->headers[i].name, req->headers[i].name_len, name)) n++;
  return n;
}

/* Borrows req; writes accept only when it returns 0. */
int ws_handshake_check(const http_req *req, char accept[29]) {
  if (!req->method || strcmp(req->method, "GET") != 0) return 400;
  if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1)) return 400;
  if (!header_has_token(req, "Upgrade", "websocket")) return 400;
  if (!header_has_token(req, "Connection", "upgrade")) return 400;
  size_t vlen = 0;
  const char *v = http_req_header(req, "Sec-WebSocket-Version", &vlen);
  if (v) trim(&v, &vlen);
  if (!v || vlen != 2 || memcmp(v, "13", 2) != 0) return 426;
  size_t klen = 0;
  const char *k = http_req_header(req, "Sec-WebSocket-Key", &klen);
  if (!k || header_count(req, "Sec-WebSocket-Key") != 1) return 400;
  trim(&k, &klen);
  /* 16 bytes in base64: 22 alphabet characters and "==". */
  if (klen != 24 || k[22] != '=' || k[23] != '=') return 400;
  for (size_t i = 0; i < 22; i++)
    if (b64_value((unsigned char)k[i]) < 0) return 400;
  char buf[24 + sizeof WS_GUID];
  memcpy(buf, k, 24);
  memcpy(buf + 24, WS_GUID, sizeof WS_GUID - 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(buf, sizeof buf - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) return 500;
  b64_write(accept, md, 20, false); /* 28 characters */
  accept[28] = '\0';
  return 0;
}

/* ---- the connection ---- */

/* The close code to report: the peer's if its close frame came, else ours
 * if we sent one (an error we detected, or ws_close), else 1006. */
static int close_code(ws_conn *ws) {
  if (ws->fail_code) return ws->fail_code;
  if (!ws->ctx) return WS_CODE_ABNORMAL; /* no close was ever under way */
  if (wslay_event_get_close_received(ws->ctx)) return wslay_event_get_status_code_received(ws->ctx);
  if (wslay_event_get_close_sent(ws->ctx)) {
    int code = wslay_event_get_status_code_sent(ws->ctx);
    return code == WSLAY_CODE_NO_STATUS_RCVD ? WS_CODE_ABNORMAL : code;
  }
  return WS_CODE_ABNORMAL;
}

/* The WebSocket is over: end the connection (after the queued close frame,
 * unless now) and tell the handler, once. ws itself lives on until the
 * connection is freed (ws_on_close), so callers up the stack stay safe. */
static void finish(ws_conn *ws, bool now) {
  if (ws->done) return;
  ws->done = true;
  ws->closing = true;
  int code = close_code(ws);
  if (now) mw_conn_close(ws->c);
  else mw_conn_end(ws->c);
  if (ws->h.on_close) ws->h.on_close(ws->ud, ws, code);
}

/* Sends what wslay queued (pongs, close frames), then ends the connection
 * when wslay wants neither to read nor to write any more. recv_err is what
 * wslay_event_recv returned (0 when not called). */
static void pump(ws_conn *ws, int recv_err) {
  if (ws->done) return;
  int r = wslay_event_send(ws->ctx);
  if (!wslay_event_get_read_enabled(ws->ctx)) ws->closing = true;
  if (recv_err < 0 || r < 0) {
    finish(ws, false);
    return;
  }
  if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx)) finish(ws, false);
}

/* ---- contexts: taken when needed, given back when clean ---- */

static const struct wslay_event_callbacks ws_callbacks;

/* Gives ws a context (from the pool, or a new one). False when out of memory. */
static bool take(ws_conn *ws) {
  if (ws->w) return true;
  wsctx *w = pool;
  if (w) {
    pool = w->next;
    npool--;
  } else {
    w = calloc(1, sizeof *w);
    if (!w) return false;
    if (wslay_event_context_server_init(&w->ctx, &ws_callbacks, w) != 0) {
      free(w);
      return false;
    }
    nlive++;
  }
  w->ws = ws;
  w->next = NULL;
  wslay_event_config_set_max_recv_msg_length(w->ctx, ws->max_msg);
  ws->w = w;
  ws->ctx = w->ctx;
  ws->fed = ws->framed = 0;
  ws->in_frame = ws->fragmented = false;
  return true;
}

static void discard(ws_conn *ws) {
  if (!ws->w) return;
  wslay_event_context_free(ws->ctx);
  free(ws->w);
  nlive--;
  ws->w = NULL;
  ws->ctx = NULL;
}

/* Returns ws's context to the pool when it is as a new one would be: every
 * byte given to it belonged to a finished frame, no message is half
 * assembled, nothing waits to be sent, and no close was sent or received. */
static void give_back(ws_conn *ws) {
  if (!ws->w) return;
  wslay_event_context_ptr ctx = ws->ctx;
  bool clean = !ws->closing && !ws->done && !ws->in_frame && !ws->fragmented && ws->fed == ws->framed &&
               wslay_event_get_read_enabled(ctx) && wslay_event_get_write_enabled(ctx) &&
               !wslay_event_want_write(ctx) && !wslay_event_get_close_received(ctx) &&
               !wslay_event_get_close_sent(ctx);
  if (!clean) return;
  if (npool >= WS_POOL_MAX) {
    discard(ws);
    return;
  }
  wsctx *w = ws->w;
  w->ws = NULL;
  w->next = pool;
  pool = w;
  npool++;
  ws->w = NULL;
  ws->ctx = NULL;
}

static void feed(ws_conn *ws, const char *data, size_t len) {
  if (ws->done || ws->c->closing || len == 0) return;
  if (!take(ws)) { /* out of memory: this connection cannot go on */
    ws->fail_code = 1011;
    finish(ws, true);
    return;
  }
  ws->in = data;
  ws->in_len = len;
  ws->in_recv = true;
  int r = wslay_event_recv(ws->ctx);
  ws->in_recv = false;
  ws->in = NULL;
  ws->in_len = 0;
  /* Our callbacks never fail, so this is a frame-level protocol error (a
   * control frame over 125 bytes or fragmented, a non-minimal length), for
   * which wslay 1.1 queues a close without a code. Unless a close of ours
   * was queued already, make it say 1002 like wslay's other errors. */
  if (r == WSLAY_ERR_CALLBACK_FAILURE && !ws->closing) {
    ws->fail_code = WSLAY_CODE_PROTOCOL_ERROR;
    ws->fix_close = true;
  }
  pump(ws, r);
  give_back(ws);
}

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
  ws_conn *ws = ((wsctx *)ud)->ws;
  if (ws->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < ws->in_len ? len : ws->in_len;
  memcpy(buf, ws->in, n);
  ws->fed += n;
  ws->in += n;
  ws->in_len -= n;
  return (ssize_t)n;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
  ws_conn *ws = ((wsctx *)ud)->ws;
  if (ws->fix_close && len == 2 && data[0] == 0x88 && data[1] == 0) {
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
    ws->fix_close = false;
    mw_conn_write_copy(ws->c, close_1002, sizeof close_1002);
    return (ssize_t)len;
  }
  mw_conn_write_copy(ws->c, data, len); /* dropped if the connection is closing */
  return (ssize_t)len;
}

/* Fails the connection from inside wslay_event_recv: queue the close frame,
 * read no more (wslay's loop stops); pump() sends it afterwards. */
static void fail(ws_conn *ws, uint16_t code) {
  if (ws->fail_code) return;
  ws->closing = true;
  ws->fail_code = code;
  wslay_event_queue_close(ws->ctx, code, NULL, 0);
  wslay_event_shutdown_read(ws->ctx);
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
  ws_conn *ws = ((wsctx *)ud)->ws;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE) { /* wslay queued the reply */
    ws->closing = true;
    return;
  }
  if (ws->closing || ws->done) return; /* after ws_close: drain, don't deliver */
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return; /* ping/pong */
  const char *msg = arg->msg ? (const char *)arg->msg : "";
  bool binary = arg->opcode == WSLAY_BINARY_FRAME;
  if (!binary && !utf8_valid(msg, arg->msg_length)) {
    fail(ws, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA);
    return;
  }
  if (ws->h.on_message) ws->h.on_message(ws->ud, ws, msg, arg->msg_length, binary);
}

/* Each frame's size (a client's frames are masked, and wslay refuses
 * lengths not written in the fewest bytes), so that give_back knows whether
 * every byte fed belongs to a finished frame; and whether a fragmented
 * message is under way. Also: wslay takes a 1-byte close payload for "no
 * status code"; RFC 6455 5.5.1 makes it a protocol error. */
static void on_wslay_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
                                 void *ud) {
  ws_conn *ws = ((wsctx *)ud)->ws;
  uint64_t len = arg->payload_length;
  ws->frame_size = 2 + 4 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + len;
  ws->in_frame = true;
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) ws->fragmented = !arg->fin;
  else if (arg->opcode == WSLAY_CONTINUATION_FRAME && arg->fin) ws->fragmented = false;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1) fail(ws, WSLAY_CODE_PROTOCOL_ERROR);
}

static void on_wslay_frame_end(wslay_event_context_ptr ctx, void *ud) {
  ws_conn *ws = ((wsctx *)ud)->ws;
  ws->framed += ws->frame_size;
  ws->in_frame = false;
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = on_wslay_recv,
    .send_callback = on_wslay_send,
    .on_frame_recv_start_callback = on_wslay_frame_start,
    .on_frame_recv_end_callback = on_wslay_frame_end,
    .on_msg_recv_callback = on_wslay_msg,
};

static void ws_on_read(mw_conn *c, const char *data, size_t len) { feed(c->proto_data, data, len); }

static void ws_on_eof(mw_conn *c) {
  /* The peer can send nothing more, not even its close frame. */
  finish(c->proto_data, false);
}

static void ws_on_timeout(mw_conn *c) {
  /* Only armed by ws_close: the peer did not answer our close in time. */
  finish(c->proto_data, true);
}

static void ws_on_stop(mw_conn *c) { ws_close(c->proto_data, WSLAY_CODE_GOING_AWAY, "server stopping"); }

static void ws_on_close(mw_conn *c) {
  ws_conn *ws = c->proto_data;
  if (!ws->done) {
    ws->done = true;
    ws->closing = true;
    if (ws->h.on_close) ws->h.on_close(ws->ud, ws, close_code(ws));
  }
  discard(ws);
  free(ws);
  c->proto_data = NULL;
}

static const mw_proto ws_proto = {
    .on_read = ws_on_read,
    .on_eof = ws_on_eof,
    .on_timeout = ws_on_timeout,
    .on_stop = ws_on_stop,
    .on_close = ws_on_close,
};

static void answer_error(http_res *res, int status) {
  const char *body = "Bad WebSocket handshake\n";
  if (status == 426) {
    http_res_headerz(res, "Sec-WebSocket-Version", "13");
    body = "Unsupported WebSocket version (13 is spoken here)\n";
  } else if (status >= 500) {
    body = "Internal Server Error\n";
  }
  http_res_simple(res, status, "text/plain; charset=utf-8", body);
}

/* Borrows res and req (res is finished here either way and must not be
 * touched after); copies *h; ud stays the caller's. The ws_conn belongs to
 * its connection and is freed with it, after on_close. */
ws_conn *ws_accept(http_res *res, const http_req *req, const ws_handler *h, void *ud, size_t max_msg) {
  char accept[29];
  int st = ws_handshake_check(req, accept);
  if (st) {
    answer_error(res, st);
    return NULL;
  }
  /* Everything that can fail comes before the connection changes hands. */
  ws_conn *ws = calloc(1, sizeof *ws);
  if (!ws) {
    answer_error(res, 500);
    return NULL;
  }
  ws->max_msg = max_msg;
  if (h) ws->h = *h;
  ws->ud = ud;
  mw_str head = {0};
  int err = mw_str_appendf(&head,
                           "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\n",
                           accept);
  /* Headers the app added (Sec-WebSocket-Protocol, cookies) go along. */
  if (!err && res->hbuf.len) err = mw_str_append(&head, res->hbuf.p, res->hbuf.len);
  if (!err) err = mw_str_append(&head, "\r\n", 2);
  if (err) {
    mw_str_free(&head);
    free(ws);
    answer_error(res, 500);
    return NULL;
  }
  mw_str rest = {0};
  mw_conn *c = http_res_upgrade(res, head.p, head.len, &rest);
  mw_str_free(&head);
  if (!c) {
    free(ws);
    answer_error(res, 400);
    return NULL;
  }
  ws->c = c;
  c->proto = &ws_proto;
  c->proto_data = ws;
  /* Frames the client sent right behind its request. */
  feed(ws, rest.p, rest.len);
  mw_str_free(&rest);
  /* A stopping server has already called on_stop on its connections: this
   * one must go too, or it would hold the shutdown up. */
  if (c->srv->stopping) ws_close(ws, WSLAY_CODE_GOING_AWAY, "server stopping");
  if (!ws->done) mw_conn_resume(c);
  /* Those frames may already have closed it: the caller gets nothing to hold
   * (ws is freed with the connection, after on_close has run). */
  return ws->done ? NULL : ws;
}

/* ---- sending ---- */

/* Writes into the caller's out; owns nothing. */
size_t ws_frame_header(uint8_t out[10], size_t len, bool binary) {
  out[0] = 0x80 | (binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME);
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  uint64_t l = len;
  for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(l >> (56 - 8 * i));
  return 10;
}

/* Takes one reference to frame, also when it is dropped (closing). */
void ws_send_frame(ws_conn *ws, mw_buf *frame, size_t off, size_t len) {
  if (ws->closing || ws->done) {
    mw_buf_unref(frame);
    return;
  }
  mw_conn_write(ws->c, frame, off, len);
}

/* Copies data into one new frame buffer. -EPIPE once a close is under way. */
int ws_send(ws_conn *ws, const char *data, size_t len, bool binary) {
  if (ws->closing || ws->done || ws->c->closing) return -EPIPE;
  uint8_t hdr[10];
  size_t hl = ws_frame_header(hdr, len, binary);
  mw_buf *b = mw_buf_new(hl + len);
  if (!b) return -ENOMEM;
  memcpy(b->data, hdr, hl);
  if (len) memcpy(b->data + hl, data, len);
  mw_conn_write(ws->c, b, 0, hl + len);
  return 0;
}

/* Codes an endpoint may put in a close frame (as wslay checks them). */
static bool code_sendable(uint16_t code) {
  return (code >= 1000 && code <= 1011 && code != 1004 && code != 1005 && code != 1006) ||
         (code >= 3000 && code <= 4999);
}

/* Copies reason (cut to 123 bytes, dropped if not UTF-8); a code that may
 * not be sent becomes 1000. Safe inside on_message; once only. */
void ws_close(ws_conn *ws, uint16_t code, const char *reason) {
  if (ws->closing || ws->done) return;
  ws->closing = true;
  if (!code_sendable(code)) code = WSLAY_CODE_NORMAL_CLOSURE;
  size_t rlen = reason ? strlen(reason) : 0;
  if (rlen > 123) { /* wslay's limit; cut on a character boundary */
    rlen = 123;
    while (rlen && ((uint8_t)reason[rlen] & 0xC0) == 0x80) rlen--;
  }
  if (rlen && !utf8_valid(reason, rlen)) rlen = 0; /* the peer would fail us with 1007 */
  if (!take(ws)) {
    finish(ws, true);
    return;
  }
  int r = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen);
  if (r != 0 && r != WSLAY_ERR_NO_MORE_MSG) {
    finish(ws, false);
    return;
  }
  mw_conn_set_timeout(ws->c, WS_CLOSE_WAIT_MS);
  if (!ws->in_recv) pump(ws, 0); /* inside recv, feed() sends it on the way out */
}

void *ws_userdata(ws_conn *ws) { return ws->ud; }

/* Copies *h (kept as is when h is NULL); ud stays the caller's. */
void ws_set_userdata(ws_conn *ws, const ws_handler *h, void *ud) {
  if (h) ws->h = *h;
  ws->ud = ud;
}

size_t ws_buffered(ws_conn *ws) { return ws->c->wq_bytes; }

mw_conn *ws_conn_of(ws_conn *ws) { return ws->c; }
