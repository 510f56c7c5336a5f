/* fuzz_ws.c — the WebSocket frame path: a fixed upgrade request through the
 * HTTP glue, then the input as client frames (wslay, our close handling,
 * UTF-8, sends from inside callbacks), on a connection without a socket. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "server.h"
#include "utf8.h"
#include "ws.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

static uv_loop_t loop;
static mw_server srv;
static int closes; /* on_close calls for the current input */

/* Echoes, and lets the message pick a few server actions, so sends and
 * closes from inside wslay's callbacks get exercised. */
static void on_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  if (!binary && !utf8_valid(data, len)) abort(); /* the promise to on_message */
  if (len >= 5 && memcmp(data, "close", 5) == 0) {
    char reason[200]; /* the rest of the message, cut (ws_close cuts to 123) */
    size_t rl = len - 5 < sizeof reason - 1 ? len - 5 : sizeof reason - 1;
    memcpy(reason, data + 5, rl);
    reason[rl] = '\0';
    ws_close(ws, (uint16_t)(rl ? 3000 + (uint8_t)reason[0] : 1000), reason);
    return;
  }
  if (len >= 5 && memcmp(data, "bcast", 5) == 0) {
    uint8_t h[10];
    size_t hl = ws_frame_header(h, len, binary);
    mw_buf *b = mw_buf_new(hl + len);
    if (!b) return;
    memcpy(b->data, h, hl);
    memcpy(b->data + hl, data, len);
    ws_send_frame(ws, b, 0, hl + len);
    return;
  }
  ws_send(ws, data, len, binary);
}

static void on_close(void *ud, ws_conn *ws, int code) {
  closes++;
  if (code < 1000 || code > 4999) abort();
  if (ws_send(ws, "x", 1, false) != -EPIPE) abort();
}

static const ws_handler wsh = {on_message, on_close};

static void handler(void *ud, const http_req *req, http_res *res) { ws_accept(res, req, &wsh, NULL, 4096); }

static void setup(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  uv_loop_init(&loop);
  if (mw_server_init(&srv, &loop, &cfg.server)) abort();
  app_site = (http_site){{handler, NULL}, cfg.http};
}

static const char upgrade[] = "GET /chat HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    setup();
    ready = 1;
  }
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  if (!c) return 0;
  closes = 0;
  c->proto->on_read(c, upgrade, sizeof upgrade - 1);
  /* Feed in two parts, as a network would, to reach the split-frame paths. */
  size_t cut = size ? data[0] % (size + 1) : 0;
  if (!c->closing) c->proto->on_read(c, (const char *)data, cut);
  if (!c->closing && size > cut) c->proto->on_read(c, (const char *)data + cut, size - cut);
  /* End the way the last byte says, as the server would call it. */
  if (size && !c->closing && !c->ending) {
    switch (data[size - 1] % 4) {
    case 1: c->proto->on_eof(c); break;
    case 2: c->proto->on_timeout(c); break;
    case 3: c->proto->on_stop(c); break;
    default: break;
    }
  }
  mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
  if (closes != 1) abort(); /* exactly once, whatever happened */
  return 0;
}
