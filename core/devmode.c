/* devmode.c — dev mode: the page helper, its live channel, the load-error
 * page. */
#include "devmode.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "embedded.h"
#include "lcall.h"

static const char DEV_TAG[] = "<script src=\"/__moonwire/dev.js\"></script>";

/* A page that says nothing for two pings is closed: every 15 s, or every
 * --ping-interval when given (tests make it short). */
#define DEV_PING_MS 15000

void devmode_init(devmode *d, mw_server *srv, lua_State *L, bool on, uint64_t ping_ms) {
  *d = (devmode){.srv = srv, .on = on, .ping_ms = ping_ms ? ping_ms : DEV_PING_MS, .L = L,
                 .reload_ref = LUA_NOREF, .boot = mw_now_ns()};
}

/* Dev mode's details (tracebacks, the page helper, the live socket) are for
 * this machine's own browser: a server reachable from elsewhere (--host
 * 0.0.0.0) shows others the production pages. */
static bool is_loopback(const char *addr) {
  return addr && (strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 || strncmp(addr, "::ffff:127.", 11) == 0);
}

bool devmode_client(const devmode *d, const http_req *req) { return d->on && is_loopback(req->remote_addr); }

/* Whether the response being built says Content-Type: text/html. */
static bool is_html(const http_res *res) {
  size_t n;
  const char *v = http_res_get(res, "content-type", &n);
  return v && n >= 9 && strncasecmp(v, "text/html", 9) == 0;
}

bool devmode_inject(mw_str *out, const http_res *res, const char *body, size_t len) {
  if (!is_html(res)) return false;
  size_t at = len;
  for (size_t i = len >= 7 ? len - 7 + 1 : 0; i-- > 0;) {
    if (body[i] == '<' && strncasecmp(body + i, "</body>", 7) == 0) {
      at = i;
      break;
    }
  }
  if (at == len) return false;
  mw_str_append(out, body, at);
  mw_str_append(out, DEV_TAG, sizeof DEV_TAG - 1);
  mw_str_append(out, body + at, len - at);
  return true;
}

/* ---- the live channel ---- */

static void page_send(ws_conn *ws, const char *json) { ws_send(ws, json, strlen(json), false); }

void devmode_broadcast(devmode *d, const char *json) {
  for (int i = 0; i < d->npages; i++) page_send(d->pages[i].ws, json);
}

static devmode_page *page_find(devmode *d, ws_conn *ws) {
  for (int i = 0; i < d->npages; i++)
    if (d->pages[i].ws == ws) return &d->pages[i];
  return NULL;
}

/* Pages answer the heartbeat's {"type":"ping"} with anything. */
static void on_page_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  (void)data, (void)len, (void)binary;
  devmode *d = ud;
  devmode_page *p = d ? page_find(d, ws) : NULL;
  if (p) p->seen = uv_now(d->srv->loop);
}

static void on_page_close(void *ud, ws_conn *ws, int code) {
  (void)code;
  devmode *d = ud;
  if (!d) return; /* closed by devmode_stop */
  devmode_page *p = page_find(d, ws);
  if (p) *p = d->pages[--d->npages];
}

static const ws_handler page_ws = {on_page_message, on_page_close};

/* A page that missed two pings (a tab that is gone without a close, a
 * client that only holds the slot) is closed; the others are pinged. */
static void on_ping(uv_timer_t *t) {
  devmode *d = t->data;
  uint64_t now = uv_now(d->srv->loop);
  for (int i = d->npages - 1; i >= 0; i--) {
    if (now - d->pages[i].seen > 2 * d->ping_ms) ws_close(d->pages[i].ws, 1001, "no answer");
    else page_send(d->pages[i].ws, "{\"type\":\"ping\"}");
  }
}

/* The /__moonwire/live WebSocket: a page of this app joins the pages
 * told of reloads. */
static void live_accept(devmode *d, const http_req *req, http_res *res) {
  /* Only pages of this app: another site open in the same browser must
   * not listen in, nor take the slots. */
  if (!http_req_same_origin(req)) {
    http_res_simple(res, 403, "text/plain; charset=utf-8", "the live-reload socket is for this app's own pages\n");
    return;
  }
  if (d->npages >= (int)(sizeof d->pages / sizeof d->pages[0])) { /* full: the page heard from least recently goes */
    int oldest = 0;
    for (int i = 1; i < d->npages; i++)
      if (d->pages[i].seen < d->pages[oldest].seen) oldest = i;
    ws_conn *old = d->pages[oldest].ws;
    d->pages[oldest] = d->pages[--d->npages];
    ws_set_userdata(old, &page_ws, NULL);
    ws_close(old, 1001, "too many dev pages");
  }
  ws_conn *ws = ws_accept(res, req, &page_ws, d, 4096);
  if (!ws) return;
  d->pages[d->npages++] = (devmode_page){ws, uv_now(d->srv->loop)};
  if (!d->ping && (d->ping = malloc(sizeof *d->ping))) {
    uv_timer_init(d->srv->loop, d->ping);
    d->ping->data = d;
    uv_timer_start(d->ping, on_ping, d->ping_ms, d->ping_ms);
    uv_unref((uv_handle_t *)d->ping);
  }
  lua_pushinteger(d->L, (lua_Integer)d->boot);
  if (lcall_field(d->L, d->reload_ref, "hello", 1, 1) == LUA_OK) page_send(ws, lua_tostring(d->L, -1));
  lua_pop(d->L, 1);
}

int devmode_handle(devmode *d, const http_req *req, http_res *res) {
  static const char prefix[] = "/__moonwire/";
  if (req->path_len < sizeof prefix - 1 || memcmp(req->path, prefix, sizeof prefix - 1) != 0) return 1;
  const char *name = req->path + sizeof prefix - 1;
  size_t nlen = req->path_len - (sizeof prefix - 1);
  if (nlen == 6 && memcmp(name, "dev.js", 6) == 0) {
    for (const mw_embedded *e = mw_embedded_client; e->module; e++) {
      if (strcmp(e->file, "dev.js") == 0) {
        http_res_header(res, "Cache-Control", 13, "no-store", 8);
        http_res_simple(res, 200, "text/javascript; charset=utf-8", e->data);
        return 0;
      }
    }
    return 1;
  }
  if (nlen == 4 && memcmp(name, "live", 4) == 0) {
    live_accept(d, req, res);
    return 0;
  }
  return 1;
}

void devmode_error_page(devmode *d, http_res *res) {
  lua_State *L = d->L;
  mw_str page = {0};
  mw_str_appendz(&page, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<meta name=\"moonwire-load-error\" content=\"1\"><title>The app failed to load</title></head>"
                        "<body style=\"font-family:system-ui,sans-serif;margin:2rem\"><h1>The app failed to load</h1><pre>");
  if (lcall_field(L, d->reload_ref, "error", 0, 1) == LUA_OK && lua_isstring(L, -1)) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    for (size_t i = 0; i < n; i++) {
      switch (s[i]) {
      case '<': mw_str_appendz(&page, "&lt;"); break;
      case '>': mw_str_appendz(&page, "&gt;"); break;
      case '&': mw_str_appendz(&page, "&amp;"); break;
      default: mw_str_appendc(&page, s[i]);
      }
    }
  }
  lua_pop(L, 1);
  mw_str_appendz(&page, "</pre><p>Fix the file and save: this page reloads by itself.</p>");
  mw_str_append(&page, DEV_TAG, sizeof DEV_TAG - 1);
  mw_str_appendz(&page, "</body></html>\n");
  res->status = 500;
  http_res_header(res, "Content-Type", 12, "text/html; charset=utf-8", 24);
  http_res_end(res, page.p, page.len);
  mw_str_free(&page);
}

void devmode_stop(devmode *d) {
  if (d->ping) {
    uv_close((uv_handle_t *)d->ping, (uv_close_cb)free);
    d->ping = NULL;
  }
  while (d->npages) {
    ws_conn *ws = d->pages[--d->npages].ws;
    ws_set_userdata(ws, &page_ws, NULL);
    ws_close(ws, 1001, "server shutting down");
  }
}
