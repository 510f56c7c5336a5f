/* test_ws.c — WebSocket on a connection: a real upgrade request through the
 * HTTP glue, then masked client frames in, server frames read back from the
 * write queue. No socket: the connection is fed directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "server.h"
#include "utf8.h"
#include "ws.h"

#include "check.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

static uv_loop_t loop;
static mw_server srv;

#define MAX_MSGS 16
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* What the handlers saw, and how they should behave. */
typedef struct seen {
  ws_conn *ws;              /* what ws_accept returned */
  int accepts;              /* handler calls */
  size_t max_msg;
  int nmsgs;
  char *msg[MAX_MSGS];
  size_t len[MAX_MSGS];
  bool binary[MAX_MSGS];
  int closes, code;
  ws_conn *close_ws;
  bool echo;                /* on_message sends the message back */
  bool close_on_msg;        /* on_message calls ws_close(4000) */
  int send_in_close;        /* what ws_send returned inside on_close */
  bool subprotocol;         /* the handler adds Sec-WebSocket-Protocol */
} seen;
static seen S;

static void on_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  CHECK(ud == &S);
  if (S.nmsgs < MAX_MSGS) {
    S.msg[S.nmsgs] = malloc(len + 1);
    memcpy(S.msg[S.nmsgs], data, len);
    S.msg[S.nmsgs][len] = '\0';
    S.len[S.nmsgs] = len;
    S.binary[S.nmsgs] = binary;
    S.nmsgs++;
  }
  if (S.echo) ws_send(ws, data, len, binary);
  if (S.close_on_msg) ws_close(ws, 4000, "enough");
}

static void on_close(void *ud, ws_conn *ws, int code) {
  S.closes++;
  S.code = code;
  S.close_ws = ws;
  S.send_in_close = ws_send(ws, "x", 1, false);
}

static const ws_handler wsh = {on_message, on_close};

static void handler(void *ud, const http_req *req, http_res *res) {
  S.accepts++;
  if (S.subprotocol) http_res_headerz(res, "Sec-WebSocket-Protocol", "chat");
  S.ws = ws_accept(res, req, &wsh, &S, S.max_msg ? S.max_msg : 1 << 20);
}

static void reset(void) {
  for (int i = 0; i < S.nmsgs; i++) free(S.msg[i]);
  memset(&S, 0, sizeof S);
}

/* Takes everything queued on c so far out of its queue (caller frees). */
static uint8_t *take(mw_conn *c, size_t *len) {
  mw_str out = {0};
  mw_str_append(&out, "", 0);
  for (uint32_t i = 0; i < c->wq_len; i++) {
    mw_str_append(&out, c->wq[i].buf->data + c->wq[i].off, c->wq[i].len);
    mw_buf_unref(c->wq[i].buf);
  }
  c->wq_len = 0;
  c->wq_bytes = 0;
  *len = out.len;
  return (uint8_t *)out.p;
}

static char *take_str(mw_conn *c) {
  size_t n;
  return (char *)take(c, &n);
}

static void feed(mw_conn *c, const void *data, size_t len) { c->proto->on_read(c, data, len); }

static void done(mw_conn *c) {
  mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

/* Appends a client frame (masked unless told otherwise) to out. */
static void frame(mw_str *out, bool fin, int opcode, const void *payload, size_t len, bool mask) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t h[14];
  size_t n = 0;
  h[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  uint8_t m = mask ? 0x80 : 0;
  if (len < 126) {
    h[n++] = (uint8_t)(m | len);
  } else if (len <= 0xffff) {
    h[n++] = m | 126;
    h[n++] = (uint8_t)(len >> 8);
    h[n++] = (uint8_t)len;
  } else {
    h[n++] = m | 127;
    for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  if (mask) {
    memcpy(h + n, key, 4);
    n += 4;
  }
  mw_str_append(out, h, n);
  const uint8_t *p = payload;
  for (size_t i = 0; i < len; i++) mw_str_appendc(out, (char)(mask ? p[i] ^ key[i % 4] : p[i]));
}

static void send_frame(mw_conn *c, bool fin, int opcode, const void *payload, size_t len) {
  mw_str f = {0};
  frame(&f, fin, opcode, payload, len, true);
  feed(c, f.p, f.len);
  mw_str_free(&f);
}

static void send_text(mw_conn *c, const char *s) { send_frame(c, true, 1, s, strlen(s)); }

static void send_close(mw_conn *c, int code, const char *reason) {
  uint8_t p[128] = {(uint8_t)(code >> 8), (uint8_t)code};
  size_t rl = strlen(reason);
  memcpy(p + 2, reason, rl);
  send_frame(c, true, 8, p, 2 + rl);
}

/* A server frame read back. */
typedef struct sframe {
  int fin, opcode;
  size_t len;
  const uint8_t *p;
} sframe;

/* Splits server output into frames; -1 when malformed or masked. */
static int parse(const uint8_t *b, size_t n, sframe *out, int max) {
  int k = 0;
  size_t i = 0;
  while (i < n) {
    if (k == max || n - i < 2 || (b[i + 1] & 0x80)) return -1;
    sframe f = {b[i] >> 7, b[i] & 0x0f, b[i + 1] & 0x7f, NULL};
    i += 2;
    size_t ext = f.len == 126 ? 2 : f.len == 127 ? 8 : 0;
    if (ext) {
      if (n - i < ext) return -1;
      f.len = 0;
      for (size_t j = 0; j < ext; j++) f.len = f.len << 8 | b[i + j];
      i += ext;
    }
    if (n - i < f.len) return -1;
    f.p = b + i;
    i += f.len;
    out[k++] = f;
  }
  return k;
}

/* The only frame queued since the last take: a close, whose code is returned
 * (-1 if the output is anything else). */
static int close_sent(mw_conn *c) {
  size_t n;
  uint8_t *b = take(c, &n);
  sframe f[4];
  int k = parse(b, n, f, 4);
  int code = -1;
  if (k == 1 && f[0].opcode == 8 && f[0].fin && f[0].len >= 2) code = f[0].p[0] << 8 | f[0].p[1];
  free(b);
  return code;
}

static void upgrade_request(mw_str *r, const char *key, const char *extra) {
  mw_str_appendf(r,
                 "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                 key, extra ? extra : "");
}

/* A connection upgraded to WebSocket, its 101 response taken off the queue. */
static mw_conn *ws_conn_new(void) {
  size_t max = S.max_msg;
  bool echo = S.echo, com = S.close_on_msg;
  reset();
  S.max_msg = max;
  S.echo = echo;
  S.close_on_msg = com;
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  mw_str r = {0};
  upgrade_request(&r, RFC_KEY, NULL);
  feed(c, r.p, r.len);
  mw_str_free(&r);
  char *head = take_str(c);
  CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
  free(head);
  CHECK(S.ws != NULL);
  return c;
}

static void test_handshake(void) {
  reset();
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  mw_str r = {0};
  upgrade_request(&r, RFC_KEY, NULL);
  feed(c, r.p, r.len);
  mw_str_free(&r);
  CHECK(S.accepts == 1);
  CHECK(S.ws != NULL);
  char *out = take_str(c);
  CHECK(strcmp(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n") == 0);
  free(out);
  CHECK(c->proto_data == S.ws);
  CHECK(ws_conn_of(S.ws) == c);
  CHECK(ws_userdata(S.ws) == &S);
  CHECK(!c->ending && !c->closing);
  done(c);
  CHECK(S.closes == 1 && S.code == 1006); /* closed under it: abnormal */
  CHECK(S.send_in_close == -EPIPE);
}

static void test_handshake_check(void) {
  http_header h[] = {
      {"upgrade", 7, "WebSocket", 9},
      {"CONNECTION", 10, "keep-alive, Upgrade", 19},
      {"Sec-WebSocket-Version", 21, " 13 ", 4},
      {"Sec-WebSocket-Key", 17, RFC_KEY " ", 25},
  };
  http_req req = {.method = "GET", .http_major = 1, .http_minor = 1, .headers = h, .nheaders = 4};
  char accept[29];
  CHECK(ws_handshake_check(&req, accept) == 0);
  CHECK(strcmp(accept, RFC_ACCEPT) == 0);
  h[1].value = "keep-alive,upgrade-ish";
  h[1].value_len = strlen(h[1].value);
  CHECK(ws_handshake_check(&req, accept) == 400); /* a token, not a prefix */
  h[1].value = "upgrade";
  h[1].value_len = 7;
  h[3].value = "dGhlIHNhbXBsZSBub25jZQ=";
  h[3].value_len = strlen(h[3].value);
  CHECK(ws_handshake_check(&req, accept) == 400);
  h[3].value = "dGhlIHNhbXBsZSBub25j*Q==";
  h[3].value_len = strlen(h[3].value);
  CHECK(ws_handshake_check(&req, accept) == 400);
  h[3].value = RFC_KEY;
  h[3].value_len = strlen(RFC_KEY);
  req.http_minor = 0;
  CHECK(ws_handshake_check(&req, accept) == 400);
  req.http_minor = 1;
  req.nheaders = 3; /* no key */
  CHECK(ws_handshake_check(&req, accept) == 400);
  req.nheaders = 2; /* no version either: the version is reported first */
  CHECK(ws_handshake_check(&req, accept) == 426);
}

/* Each must be answered with status and never reach WebSocket. */
static void bad_handshake(const char *request, const char *status, const char *expect, bool ends) {
  reset();
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  feed(c, request, strlen(request));
  CHECK(S.accepts == 1);
  CHECK(S.ws == NULL);
  char *out = take_str(c);
  if (strncmp(out, status, strlen(status)) != 0) fprintf(stderr, "got: %.60s\n", out);
  CHECK(strncmp(out, status, strlen(status)) == 0);
  CHECK(strstr(out, "Sec-WebSocket-Accept") == NULL);
  CHECK(strstr(out, "text/plain") != NULL);
  if (expect) CHECK(strstr(out, expect) != NULL);
  free(out);
  CHECK(c->ending == ends); /* upgrade requests are never kept alive */
  done(c);
  CHECK(S.closes == 0);
}

static void test_bad_handshakes(void) {
  bad_handshake("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n",
                "HTTP/1.1 400 ", NULL, true);
  bad_handshake("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
                "HTTP/1.1 426 ", "\r\nSec-WebSocket-Version: 13\r\n", true);
  bad_handshake("POST /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 400 ", NULL, true);
  bad_handshake("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                "HTTP/1.1 400 ", NULL, true);
  /* Without Connection: upgrade it is a plain GET: answered, kept alive. */
  bad_handshake("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                "HTTP/1.1 400 ", NULL, false);
  bad_handshake("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n",
                "HTTP/1.1 400 ", NULL, true);
}

static void test_text_and_binary(void) {
  mw_conn *c = ws_conn_new();
  send_text(c, "hello");
  const uint8_t bin[] = {0x00, 0xff, 0x10, 0x80, 0x00};
  send_frame(c, true, 2, bin, sizeof bin);
  send_text(c, ""); /* empty messages count too */
  const char *utf = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
  send_text(c, utf);
  CHECK(S.nmsgs == 4);
  CHECK(S.len[0] == 5 && memcmp(S.msg[0], "hello", 5) == 0 && !S.binary[0]);
  CHECK(S.len[1] == sizeof bin && memcmp(S.msg[1], bin, sizeof bin) == 0 && S.binary[1]);
  CHECK(S.len[2] == 0 && !S.binary[2]);
  CHECK(S.nmsgs == 4 && strcmp(S.msg[3], utf) == 0);
  CHECK(c->wq_len == 0); /* nothing to answer */
  CHECK(S.closes == 0);
  done(c);
  CHECK(S.closes == 1 && S.code == 1006);
}

static void test_byte_by_byte(void) {
  mw_conn *c = ws_conn_new();
  mw_str all = {0};
  char big[300];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
  frame(&all, true, 1, big, sizeof big, true); /* 16-bit length */
  frame(&all, true, 1, "tail", 4, true);
  frame(&all, true, 9, "pp", 2, true);
  for (size_t i = 0; i < all.len; i++) feed(c, all.p + i, 1);
  mw_str_free(&all);
  CHECK(S.nmsgs == 2);
  CHECK(S.len[0] == sizeof big && memcmp(S.msg[0], big, sizeof big) == 0);
  CHECK(S.nmsgs == 2 && strcmp(S.msg[1], "tail") == 0);
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 1 && f[0].opcode == 0xa && f[0].len == 2 && memcmp(f[0].p, "pp", 2) == 0);
  free(out);
  done(c);
}

static void test_fragmented(void) {
  mw_conn *c = ws_conn_new();
  mw_str all = {0};
  frame(&all, false, 1, "Hel", 3, true);
  frame(&all, true, 9, "mid", 3, true); /* a control frame between fragments */
  frame(&all, false, 0, "lo, ", 4, true);
  frame(&all, true, 0, "world", 5, true);
  frame(&all, false, 2, "\x01", 1, true);
  frame(&all, true, 0, "\x02", 1, true);
  feed(c, all.p, all.len);
  mw_str_free(&all);
  CHECK(S.nmsgs == 2);
  CHECK(strcmp(S.msg[0], "Hello, world") == 0 && !S.binary[0]);
  CHECK(S.nmsgs == 2 && S.len[1] == 2 && memcmp(S.msg[1], "\x01\x02", 2) == 0 && S.binary[1]);
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 1 && f[0].opcode == 0xa && f[0].len == 3 && memcmp(f[0].p, "mid", 3) == 0);
  free(out);
  /* A multi-byte character split across fragments is still valid. */
  frame(&all, false, 1, "\xe2\x82", 2, true);
  frame(&all, true, 0, "\xac", 1, true);
  feed(c, all.p, all.len);
  mw_str_free(&all);
  CHECK(S.nmsgs == 3 && strcmp(S.msg[2], "\xe2\x82\xac") == 0);
  CHECK(S.closes == 0);
  done(c);
}

void ws_context_counts(int *live, int *pooled);

/* Contexts held = allocated minus pooled. */
static int held(void) {
  int live, pooled;
  ws_context_counts(&live, &pooled);
  return live - pooled;
}

/* One more WebSocket on the same handler, without resetting S. */
static mw_conn *another_conn(void) {
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  mw_str r = {0};
  upgrade_request(&r, RFC_KEY, NULL);
  feed(c, r.p, r.len);
  mw_str_free(&r);
  free(take_str(c));
  return c;
}

/* Idle connections hold no wslay context; one with half a frame or half a
 * fragmented message keeps its own while others take and give back the
 * pooled ones, and no state passes from one connection to another. */
static void test_shared_contexts(void) {
  mw_conn *a = ws_conn_new();
  mw_conn *b = another_conn();
  CHECK(held() == 0);

  mw_str fa = {0}, fb = {0};
  frame(&fa, true, 1, "hello from a", 12, true);
  feed(a, fa.p, 9); /* the header and part of the payload */
  CHECK(held() == 1);

  frame(&fb, true, 1, "one from b", 10, true);
  frame(&fb, false, 1, "fr", 2, true); /* a fragmented message begins */
  feed(b, fb.p, fb.len);
  mw_str_free(&fb);
  CHECK(held() == 2);
  CHECK(S.nmsgs == 1 && strcmp(S.msg[0], "one from b") == 0);

  feed(a, fa.p + 9, fa.len - 9);
  mw_str_free(&fa);
  CHECK(S.nmsgs == 2 && strcmp(S.msg[1], "hello from a") == 0);
  CHECK(held() == 1);

  frame(&fb, true, 0, "ag", 2, true);
  feed(b, fb.p, fb.len);
  mw_str_free(&fb);
  CHECK(S.nmsgs == 3 && strcmp(S.msg[2], "frag") == 0);
  CHECK(held() == 0);

  /* A header split in two: its first byte alone keeps the context. */
  frame(&fa, true, 2, "\x01\x02\x03", 3, true);
  feed(a, fa.p, 1);
  CHECK(held() == 1);
  frame(&fb, true, 1, "b again", 7, true);
  feed(b, fb.p, fb.len);
  mw_str_free(&fb);
  feed(a, fa.p + 1, fa.len - 1);
  mw_str_free(&fa);
  CHECK(S.nmsgs == 5 && strcmp(S.msg[3], "b again") == 0);
  CHECK(S.nmsgs == 5 && S.len[4] == 3 && S.binary[4] && memcmp(S.msg[4], "\x01\x02\x03", 3) == 0);
  CHECK(held() == 0);

  /* A ping is answered and leaves nothing behind. */
  frame(&fa, true, 9, "p", 1, true);
  feed(a, fa.p, fa.len);
  mw_str_free(&fa);
  size_t n;
  uint8_t *out = take(a, &n);
  sframe f[2];
  CHECK(parse(out, n, f, 2) == 1 && f[0].opcode == 0xa);
  free(out);
  CHECK(held() == 0);

  /* Many messages on a busy connection: no new context each time. */
  int live0, pooled0;
  ws_context_counts(&live0, &pooled0);
  for (int i = 0; i < 200; i++) {
    frame(&fa, true, 1, "x", 1, true);
    feed(a, fa.p, fa.len);
    mw_str_free(&fa);
  }
  int live1, pooled1;
  ws_context_counts(&live1, &pooled1);
  CHECK(live1 == live0);
  CHECK(S.closes == 0);
  mw_conn_close(b);
  done(a);
}

static void test_ping_pong(void) {
  mw_conn *c = ws_conn_new();
  send_frame(c, true, 9, "12345", 5);
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 1);
  CHECK(f[0].fin == 1 && f[0].opcode == 0xa && f[0].len == 5 && memcmp(f[0].p, "12345", 5) == 0);
  free(out);
  send_frame(c, true, 0xa, "unsolicited", 11); /* a pong is ignored */
  CHECK(c->wq_len == 0 && S.nmsgs == 0 && S.closes == 0);
  done(c);
}

static void test_client_close(void) {
  mw_conn *c = ws_conn_new();
  ws_conn *ws = S.ws;
  send_close(c, 1001, "bye");
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 1);
  CHECK(f[0].opcode == 8 && f[0].len == 5 && f[0].p[0] == 0x03 && f[0].p[1] == 0xe9);
  free(out);
  CHECK(S.closes == 1 && S.code == 1001 && S.close_ws == ws);
  CHECK(S.send_in_close == -EPIPE);
  CHECK(c->ending);
  CHECK(ws_send(ws, "late", 4, false) == -EPIPE);
  ws_close(ws, 1000, NULL); /* ignored */
  send_text(c, "after"); /* nothing is read after the close */
  CHECK(S.nmsgs == 0 && c->wq_len == 0);
  done(c);
  CHECK(S.closes == 1);

  /* No status code: reported as 1005, answered with an empty close. */
  c = ws_conn_new();
  send_frame(c, true, 8, "", 0);
  out = take(c, &n);
  CHECK(parse(out, n, f, 4) == 1 && f[0].opcode == 8 && f[0].len == 0);
  free(out);
  CHECK(S.closes == 1 && S.code == 1005);
  done(c);
}

/* Feeds bytes to a fresh connection and expects a close with code. */
static void expect_close(const void *bytes, size_t len, int code, const char *what) {
  mw_conn *c = ws_conn_new();
  feed(c, bytes, len);
  int got = close_sent(c);
  if (got != code) fprintf(stderr, "%s: close %d, wanted %d\n", what, got, code);
  CHECK(got == code);
  CHECK(S.closes == 1 && S.code == code);
  CHECK(S.nmsgs == 0);
  CHECK(c->ending);
  CHECK(ws_send(S.ws, "x", 1, false) == -EPIPE);
  done(c);
  CHECK(S.closes == 1);
}

static void expect_close_frame(bool fin, int opcode, const void *p, size_t len, bool mask, int code,
                               const char *what) {
  mw_str f = {0};
  frame(&f, fin, opcode, p, len, mask);
  expect_close(f.p, f.len, code, what);
  mw_str_free(&f);
}

static void test_invalid_utf8(void) {
  const char *bad[] = {
      "\xc0\xaf",         /* overlong '/' */
      "\xe0\x80\xaf",     /* overlong, 3 bytes */
      "\xed\xa0\x80",     /* surrogate */
      "\xf4\x90\x80\x80", /* above U+10FFFF */
      "\xf8\x88\x80\x80\x80",
      "ok\x80",           /* bare continuation */
      "\xe2\x82",         /* truncated */
      "\xff",
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) expect_close_frame(true, 1, bad[i], strlen(bad[i]), true, 1007, bad[i]);
  /* Invalid across fragments. */
  mw_str all = {0};
  frame(&all, false, 1, "ab\xed", 3, true);
  frame(&all, true, 0, "\xa0\x80", 2, true);
  expect_close(all.p, all.len, 1007, "fragmented surrogate");
  mw_str_free(&all);
  /* Invalid close reason. */
  expect_close_frame(true, 8, "\x03\xe8\xc0\xaf", 4, true, 1007, "close reason");
}

static void test_protocol_errors(void) {
  expect_close_frame(true, 1, "hello", 5, false, 1002, "unmasked");
  uint8_t rsv[] = {0xc1, 0x80, 1, 2, 3, 4}; /* RSV1 set, empty masked text */
  expect_close(rsv, sizeof rsv, 1002, "rsv1");
  uint8_t rsv3[] = {0x91, 0x80, 1, 2, 3, 4};
  expect_close(rsv3, sizeof rsv3, 1002, "rsv3");
  expect_close_frame(true, 3, "x", 1, true, 1002, "opcode 3");
  expect_close_frame(true, 0xb, "x", 1, true, 1002, "opcode 0xb");
  expect_close_frame(true, 0, "x", 1, true, 1002, "continuation first");
  expect_close_frame(false, 9, "x", 1, true, 1002, "fragmented ping");
  char big[126] = {0};
  expect_close_frame(true, 9, big, sizeof big, true, 1002, "ping over 125");
  expect_close_frame(true, 8, "\x03", 1, true, 1002, "close of 1 byte");
  expect_close_frame(true, 8, "\x03\xed", 2, true, 1002, "close code 1005");
  expect_close_frame(true, 8, "\x00\x05", 2, true, 1002, "close code 5");
  mw_str all = {0};
  frame(&all, false, 1, "a", 1, true);
  frame(&all, true, 1, "b", 1, true); /* a new message inside a fragmented one */
  expect_close(all.p, all.len, 1002, "interleaved");
  mw_str_free(&all);
  /* A 16-bit length that fits in 7 bits is not minimal. */
  uint8_t nonmin[] = {0x81, 0xfe, 0x00, 0x05, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
  expect_close(nonmin, sizeof nonmin, 1002, "non-minimal length");
  uint8_t msb[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'x'};
  expect_close(msb, sizeof msb, 1002, "64-bit length with the top bit");
}

static void test_too_big(void) {
  S.max_msg = 64;
  char buf[100];
  memset(buf, 'z', sizeof buf);
  mw_conn *c = ws_conn_new();
  send_frame(c, true, 1, buf, 64); /* exactly the limit */
  CHECK(S.nmsgs == 1 && S.len[0] == 64);
  done(c);
  expect_close_frame(true, 2, buf, 65, true, 1009, "65 bytes");
  mw_str all = {0};
  frame(&all, false, 1, buf, 40, true);
  frame(&all, true, 0, buf, 40, true);
  expect_close(all.p, all.len, 1009, "fragments over the limit");
  mw_str_free(&all);
  /* A huge announced length is refused before any payload. */
  uint8_t huge[] = {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 'x'};
  expect_close(huge, sizeof huge, 1009, "huge length");
  S.max_msg = 0;
}

static void test_frames_with_the_request(void) {
  reset();
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  mw_str r = {0};
  upgrade_request(&r, RFC_KEY, NULL);
  frame(&r, true, 1, "early", 5, true);
  frame(&r, false, 2, "\x01", 1, true); /* half a message: the rest comes later */
  feed(c, r.p, r.len);
  mw_str_free(&r);
  CHECK(S.ws != NULL);
  CHECK(S.nmsgs == 1 && strcmp(S.msg[0], "early") == 0);
  char *out = take_str(c);
  CHECK(strncmp(out, "HTTP/1.1 101 ", 13) == 0 && strstr(out, "\r\n\r\n")[4] == '\0');
  free(out);
  send_frame(c, true, 0, "\x02", 1);
  CHECK(S.nmsgs == 2 && S.len[1] == 2 && S.binary[1]);
  done(c);

  /* The early frames close it: ws_accept returns NULL, on_close has run. */
  reset();
  c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  upgrade_request(&r, RFC_KEY, NULL);
  frame(&r, true, 1, "hi", 2, true);
  frame(&r, true, 8, "\x03\xe8", 2, true);
  feed(c, r.p, r.len);
  mw_str_free(&r);
  CHECK(S.ws == NULL);
  CHECK(S.nmsgs == 1 && S.closes == 1 && S.code == 1000);
  CHECK(c->ending);
  done(c);
  CHECK(S.closes == 1);
}

static void test_frame_header(void) {
  uint8_t h[10];
  CHECK(ws_frame_header(h, 0, false) == 2 && h[0] == 0x81 && h[1] == 0);
  CHECK(ws_frame_header(h, 125, true) == 2 && h[0] == 0x82 && h[1] == 125);
  CHECK(ws_frame_header(h, 126, false) == 4 && h[1] == 126 && h[2] == 0 && h[3] == 126);
  CHECK(ws_frame_header(h, 65535, false) == 4 && h[1] == 126 && h[2] == 0xff && h[3] == 0xff);
  CHECK(ws_frame_header(h, 65536, true) == 10 && h[0] == 0x82 && h[1] == 127);
  static const uint8_t l64[8] = {0, 0, 0, 0, 0, 1, 0, 0};
  CHECK(memcmp(h + 2, l64, 8) == 0);
}

static void test_send(void) {
  mw_conn *c = ws_conn_new();
  ws_conn *ws = S.ws;
  CHECK(ws_send(ws, "hi", 2, false) == 0);
  CHECK(ws_buffered(ws) == 4);
  char *big = malloc(70000);
  memset(big, 'q', 70000);
  CHECK(ws_send(ws, big, 70000, true) == 0);
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 2);
  CHECK(f[0].fin && f[0].opcode == 1 && f[0].len == 2 && memcmp(f[0].p, "hi", 2) == 0);
  CHECK(f[1].fin && f[1].opcode == 2 && f[1].len == 70000 && memcmp(f[1].p, big, 70000) == 0);
  CHECK(n == 4 + 10 + 70000);
  free(out);
  free(big);

  /* A broadcast: framed once, one buffer in two queues. */
  mw_conn *c2 = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  mw_str r = {0};
  upgrade_request(&r, RFC_KEY, NULL);
  feed(c2, r.p, r.len);
  mw_str_free(&r);
  free(take_str(c2));
  ws_conn *ws2 = S.ws;
  CHECK(ws2 && ws2 != ws);
  uint8_t h[10];
  size_t hl = ws_frame_header(h, 5, false);
  mw_buf *b = mw_buf_new(hl + 5);
  memcpy(b->data, h, hl);
  memcpy(b->data + hl, "all!!", 5);
  ws_send_frame(ws, mw_buf_ref(b), 0, b->len);
  ws_send_frame(ws2, b, 0, b->len);
  CHECK(b->refs == 2 && c->wq_len == 1 && c2->wq_len == 1 && c->wq[0].buf == c2->wq[0].buf);
  out = take(c2, &n);
  CHECK(parse(out, n, f, 4) == 1 && f[0].opcode == 1 && f[0].len == 5 && memcmp(f[0].p, "all!!", 5) == 0);
  free(out);
  free(take(c, &n));
  mw_conn_close(c2); /* freed with c, below */

  /* Replies sent from on_message come out in order with wslay's pongs. */
  S.echo = true;
  mw_str all = {0};
  frame(&all, true, 1, "one", 3, true);
  frame(&all, true, 9, "p", 1, true);
  frame(&all, true, 2, "two", 3, true);
  feed(c, all.p, all.len);
  mw_str_free(&all);
  S.echo = false;
  out = take(c, &n);
  CHECK(parse(out, n, f, 4) == 3);
  CHECK(f[0].opcode == 1 && f[0].len == 3 && memcmp(f[0].p, "one", 3) == 0);
  CHECK(f[1].opcode == 2 && f[1].len == 3 && memcmp(f[1].p, "two", 3) == 0);
  CHECK(f[2].opcode == 0xa && f[2].len == 1);
  free(out);
  done(c);
}

static void test_server_close(void) {
  mw_conn *c = ws_conn_new();
  ws_conn *ws = S.ws;
  ws_close(ws, 1000, "bye");
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 1 && f[0].opcode == 8 && f[0].len == 5 && memcmp(f[0].p, "\x03\xe8" "bye", 5) == 0);
  free(out);
  CHECK(ws_send(ws, "x", 1, false) == -EPIPE);
  ws_close(ws, 1001, NULL); /* once only */
  CHECK(c->wq_len == 0);
  CHECK(!c->ending && S.closes == 0);
  send_text(c, "in flight"); /* read, not delivered */
  send_frame(c, true, 9, "p", 1); /* no pong after our close */
  CHECK(S.nmsgs == 0 && c->wq_len == 0);
  send_close(c, 1000, "");
  CHECK(c->wq_len == 0); /* ours was the close */
  CHECK(S.closes == 1 && S.code == 1000);
  CHECK(c->ending);
  done(c);
  CHECK(S.closes == 1);

  /* The peer never answers: the timeout ends it. */
  c = ws_conn_new();
  ws_close(S.ws, 4001, NULL);
  CHECK(close_sent(c) == 4001);
  CHECK(mw_timer_active(&c->timer));
  c->proto->on_timeout(c);
  CHECK(S.closes == 1 && S.code == 4001);
  CHECK(c->closing);
  done(c);
  CHECK(S.closes == 1);

  /* A long reason is cut to fit a control frame, on a character boundary. */
  c = ws_conn_new();
  char reason[200] = "";
  for (int i = 0; i < 70; i++) strcat(reason, "\xc3\xa9"); /* 2 bytes each */
  ws_close(S.ws, 1000, reason);
  out = take(c, &n);
  CHECK(parse(out, n, f, 4) == 1 && f[0].opcode == 8 && f[0].len == 2 + 122);
  CHECK(utf8_valid((const char *)f[0].p + 2, f[0].len - 2));
  free(out);
  done(c);
}

static void test_close_from_on_message(void) {
  S.close_on_msg = true;
  S.echo = true;
  mw_conn *c = ws_conn_new();
  mw_str all = {0};
  frame(&all, true, 1, "first", 5, true);
  frame(&all, true, 1, "second", 6, true); /* after ws_close: not delivered */
  feed(c, all.p, all.len);
  mw_str_free(&all);
  S.close_on_msg = false;
  S.echo = false;
  CHECK(S.nmsgs == 1);
  size_t n;
  uint8_t *out = take(c, &n);
  sframe f[4];
  CHECK(parse(out, n, f, 4) == 2);
  CHECK(f[0].opcode == 1 && f[0].len == 5); /* the echo, then the close */
  CHECK(f[1].opcode == 8 && f[1].p[0] == 0x0f && f[1].p[1] == 0xa0);
  free(out);
  CHECK(S.closes == 0);
  send_close(c, 4000, "");
  CHECK(S.closes == 1 && S.code == 4000);
  done(c);
}

static void test_peer_vanishes(void) {
  mw_conn *c = ws_conn_new();
  c->proto->on_eof(c);
  CHECK(S.closes == 1 && S.code == 1006);
  CHECK(c->ending || c->closing);
  done(c);
  CHECK(S.closes == 1);

  c = ws_conn_new();
  send_frame(c, false, 1, "part", 4);
  done(c); /* reset / server shutdown */
  CHECK(S.closes == 1 && S.code == 1006);
}

static void test_server_stop(void) {
  mw_conn *c = ws_conn_new();
  c->proto->on_stop(c);
  CHECK(close_sent(c) == 1001);
  CHECK(S.closes == 0);
  send_close(c, 1001, "");
  CHECK(S.closes == 1 && S.code == 1001);
  done(c);
}

static void test_accept_details(void) {
  /* Headers the handler added go out with the 101. */
  reset();
  S.subprotocol = true;
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  mw_str r = {0};
  upgrade_request(&r, RFC_KEY, "Sec-WebSocket-Protocol: chat, superchat\r\n");
  feed(c, r.p, r.len);
  char *out = take_str(c);
  CHECK(strstr(out, "\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\nSec-WebSocket-Protocol: chat\r\n\r\n") != NULL);
  free(out);
  CHECK(S.ws != NULL);
  done(c);

  /* A server that is stopping answers, then closes with 1001 at once. */
  reset();
  srv.stopping = true;
  c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  feed(c, r.p, r.len);
  mw_str_free(&r);
  srv.stopping = false;
  CHECK(S.ws != NULL);
  size_t n;
  uint8_t *b = take(c, &n);
  CHECK(strncmp((char *)b, "HTTP/1.1 101 ", 13) == 0);
  const uint8_t *end = (uint8_t *)strstr((char *)b, "\r\n\r\n") + 4;
  sframe f[2];
  CHECK(parse(end, n - (size_t)(end - b), f, 2) == 1 && f[0].opcode == 8 && f[0].p[0] == 0x03 &&
        f[0].p[1] == 0xe9);
  free(b);
  CHECK(S.closes == 0);
  send_close(c, 1001, "");
  CHECK(S.closes == 1 && S.code == 1001);
  done(c);

  /* A code that may not go on the wire becomes 1000. */
  c = ws_conn_new();
  ws_close(S.ws, 1006, NULL);
  CHECK(close_sent(c) == 1000);
  done(c);

  /* A close reason that is not UTF-8 is left out rather than sent. */
  c = ws_conn_new();
  ws_close(S.ws, 1000, "bad \xff reason");
  b = take(c, &n);
  CHECK(parse(b, n, f, 2) == 1 && f[0].opcode == 8 && f[0].len == 2);
  free(b);
  done(c);
}

static void test_set_userdata(void) {
  mw_conn *c = ws_conn_new();
  static int other;
  ws_set_userdata(S.ws, &wsh, &other);
  CHECK(ws_userdata(S.ws) == &other);
  ws_set_userdata(S.ws, &wsh, &S);
  send_text(c, "x");
  CHECK(S.nmsgs == 1);
  done(c);
}

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg.server);
  app_site = (http_site){{handler, NULL}, cfg.http};

  test_handshake();
  test_handshake_check();
  test_bad_handshakes();
  test_text_and_binary();
  test_byte_by_byte();
  test_fragmented();
  test_shared_contexts();
  test_ping_pong();
  test_client_close();
  test_invalid_utf8();
  test_protocol_errors();
  test_too_big();
  test_frames_with_the_request();
  test_frame_header();
  test_send();
  test_server_close();
  test_close_from_on_message();
  test_peer_vanishes();
  test_server_stop();
  test_accept_details();
  test_set_userdata();
  reset();

  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
