/* lhost.c — the Lua VM that runs the app. */
#include "lhost.h"

#include <errno.h>
#include <lauxlib.h>
#include <llhttp.h>
#include <lualib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "body.h"
#include "l_db.h"
#include "l_json.h"
#include "l_msgpack.h"
#include "l_redis.h"
#include "l_timer.h"
#include "embedded.h"
#include "l_body.h"
#include "l_io.h"
#include "lalloc.h"
#include "lcall.h"
#include "static.h"
#include "template.h"
#include "watch.h"
#include "ws.h"

#define EXCHANGE_MT "moonwire.exchange"

/* A page of this machine's browser listening for reloads (dev mode). */
typedef struct dev_page {
  ws_conn *ws;
  uint64_t seen; /* loop time of its last message (its pong) */
} dev_page;

typedef struct lh_waiter lh_waiter;

struct lhost {
  lua_State *L;
  mw_server *srv;
  mw_db *db;
  mw_static *st;
  int dispatch_ref, not_found_ref;
  int ex_mt_ref;          /* EXCHANGE_MT, by reference: no lookup by name per request */
  l_io *io;
  char client_dir[8400]; /* socket.io-client's dist/, "" if not installed */
  bool ok;                /* the current generation loaded (the first one included) */
  int reload_ref;         /* moonwire.reload */
  mw_watch *watch;        /* scripts/, views/, public/ (dev mode or --watch) */
  dev_page dev[64];       /* dev pages listening on /__moonwire/live */
  int ndev;
  uv_timer_t *dev_ping;   /* the dev pages' heartbeat (freed in its close callback) */
  uint64_t boot;          /* tells dev pages the server restarted */
  lalloc alloc;           /* the VM's allocator: small blocks recycled, the memory ceiling */
  bool watchdog;          /* this VM started a handler budget (lcall_watchdog_start) */
  lh_waiter *waiters;     /* Lua functions C owes a call */
  lh_waiter *ready;       /* drains heard of, to answer on the next loop turn */
  uv_idle_t *ready_idle;  /* active while ready is not empty (its own memory: freed when closed) */
};

/* A response as Lua sees it, carrying its request's headers packed (see
 * pack_headers): no Lua string to make for them, and they live as long as
 * the request's table does. res is NULL once answered, or while static.c
 * sends a file for it (res:sendFile); while a streamed body is open,
 * streaming is set and res stays. */
typedef struct exchange {
  http_res *res;
  bool dev;    /* dev mode, and a client on this machine: HTML pages get the dev helper */
  lhost *h;
  bool streaming;
  size_t hlen;
  char headers[];
} exchange;

/* A Lua function waiting for something C does later on an exchange's
 * behalf: the queue to drain (ex:wait), or static.c's word on a file
 * (ex:sendfile). The registry holds the function (and through it the
 * route's response and its exchange) until it is called. lhost_free
 * marks those still waiting dead (h NULL): the callback then only frees
 * the waiter. */
struct lh_waiter {
  lhost *h;
  exchange *ex;
  http_res *res; /* sendfile: the response handed to static.c */
  int ref;
  lh_waiter *prev, *next;
};

/* ---- module loading: embedded framework modules, app scripts ---- */

static int searcher_embedded(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  for (const mw_embedded *e = mw_embedded_lua; e->module; e++) {
    if (strcmp(e->module, name) == 0) {
      lua_pushfstring(L, "=[moonwire] %s", e->file);
      const char *chunk = lua_tostring(L, -1);
      if (luaL_loadbuffer(L, e->data, e->len, chunk) != LUA_OK) return lua_error(L);
      lua_pushstring(L, e->file);
      return 2;
    }
  }
  lua_pushfstring(L, "\n\tno embedded module '%s'", name);
  return 1;
}

/* Loads an app file with a chunk name relative to the app root
 * ("scripts/pets.lua"), so errors and tracebacks read scripts/pets.lua:12. */
static int load_relative(lua_State *L, const char *abspath, const char *relpath) {
  FILE *f = fopen(abspath, "rb");
  if (!f) return luaL_error(L, "cannot open %s", relpath);
  mw_str s = {0};
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) mw_str_append(&s, buf, n);
  fclose(f);
  char chunk[512];
  snprintf(chunk, sizeof chunk, "@%s", relpath);
  int r = luaL_loadbufferx(L, s.p ? s.p : "", s.len, chunk, "t");
  mw_str_free(&s);
  return r;
}

static int searcher_scripts_rel(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "moonwire.root");
  const char *root = lua_tostring(L, -1);
  const char *mod = luaL_gsub(L, name, ".", "/");
  const char *forms[] = {"scripts/%s.lua", "scripts/%s/init.lua"};
  for (int i = 0; i < 2; i++) {
    const char *relpath = lua_pushfstring(L, forms[i], mod);
    const char *abspath = lua_pushfstring(L, "%s/%s", root, relpath);
    FILE *f = fopen(abspath, "rb");
    if (f) {
      fclose(f);
      if (load_relative(L, abspath, relpath) != LUA_OK)
        return luaL_error(L, "error loading module '%s':\n\t%s", name, lua_tostring(L, -1));
      /* remembered, so that a reload loads it again */
      luaL_getsubtable(L, LUA_REGISTRYINDEX, "moonwire.app_modules");
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, name);
      lua_pop(L, 1);
      lua_pushstring(L, relpath);
      return 2;
    }
    lua_pop(L, 2);
  }
  lua_pushfstring(L, "\n\tno file 'scripts/%s.lua' in the app", mod);
  return 1;
}

static void install_searchers(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  /* preload stays first; then embedded framework modules, then the app's
   * scripts, then the standard path searchers (system Lua modules). */
  int n = (int)lua_rawlen(L, -1);
  for (int i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 2);
  }
  lua_pushcfunction(L, searcher_embedded);
  lua_rawseti(L, -2, 2);
  lua_pushcfunction(L, searcher_scripts_rel);
  lua_rawseti(L, -2, 3);
  lua_pop(L, 2);
}

/* ---- dev mode: the page helper, its live channel, reloads ---- */

static const char DEV_TAG[] = "<script src=\"/__moonwire/dev.js\"></script>";

/* Dev mode: a whole HTML page (one with a </body>) gets the dev helper's
 * script tag before its last </body>, in out; returns false for anything
 * else (a fragment, a plain string sent as text/html), which stays as it is. */
static bool inject_dev_tag(mw_str *out, const char *body, size_t len) {
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

/* Whether the response being built says Content-Type: text/html. */
static bool is_html(const http_res *res) {
  size_t n;
  const char *v = http_res_get(res, "content-type", &n);
  return v && n >= 9 && strncasecmp(v, "text/html", 9) == 0;
}

/* A dev page that says nothing for two pings is closed: every 15 s, or
 * every --ping-interval when given (tests make it short). */
#define DEV_PING_MS(h) ((h)->srv->cfg.ping_interval ? (h)->srv->cfg.ping_interval : 15000)

static void dev_send(ws_conn *ws, const char *json) { ws_send(ws, json, strlen(json), false); }

static void dev_broadcast(lhost *h, const char *json) {
  for (int i = 0; i < h->ndev; i++) dev_send(h->dev[i].ws, json);
}

static dev_page *dev_find(lhost *h, ws_conn *ws) {
  for (int i = 0; i < h->ndev; i++)
    if (h->dev[i].ws == ws) return &h->dev[i];
  return NULL;
}

/* Pages answer the heartbeat's {"type":"ping"} with anything. */
static void dev_on_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  (void)data, (void)len, (void)binary;
  lhost *h = ud;
  dev_page *p = h ? dev_find(h, ws) : NULL;
  if (p) p->seen = uv_now(h->srv->loop);
}

static void dev_on_close(void *ud, ws_conn *ws, int code) {
  (void)code;
  lhost *h = ud;
  if (!h) return; /* closed by lhost_stop */
  dev_page *p = dev_find(h, ws);
  if (p) *p = h->dev[--h->ndev];
}

static const ws_handler dev_ws = {dev_on_message, dev_on_close};

/* A page that missed two pings (a tab that is gone without a close, a
 * client that only holds the slot) is closed; the others are pinged. */
static void on_dev_ping(uv_timer_t *t) {
  lhost *h = t->data;
  uint64_t now = uv_now(h->srv->loop);
  for (int i = h->ndev - 1; i >= 0; i--) {
    if (now - h->dev[i].seen > 2 * DEV_PING_MS(h)) ws_close(h->dev[i].ws, 1001, "no answer");
    else dev_send(h->dev[i].ws, "{\"type\":\"ping\"}");
  }
}

/* Dev mode's details (tracebacks, the page helper, the live socket) are for
 * this machine's own browser: a server reachable from elsewhere (--host
 * 0.0.0.0) shows others the production pages. */
static bool is_loopback(const char *addr) {
  return addr && (strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 || strncmp(addr, "::ffff:127.", 11) == 0);
}

static bool dev_client(lhost *h, const http_req *req) { return h->srv->cfg.dev && is_loopback(req->remote_addr); }


/* Calls moonwire.reload's fname with the value on top of the stack (popped);
 * leaves its nres results. 0 on success. */
static int call_reload(lhost *h, const char *fname, int nargs, int nres) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->reload_ref);
  lua_getfield(L, -1, fname);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  return lcall_pcall(L, nargs, nres, fname);
}

/* GET /__moonwire/dev.js and the /__moonwire/live WebSocket (dev mode).
 * Returns 0 when it answered. */
static int dev_handle(lhost *h, const http_req *req, http_res *res) {
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
    /* Only pages of this app: another site open in the same browser must
     * not listen in, nor take the slots. */
    if (!http_req_same_origin(req)) {
      http_res_simple(res, 403, "text/plain; charset=utf-8", "the live-reload socket is for this app's own pages\n");
      return 0;
    }
    if (h->ndev >= (int)(sizeof h->dev / sizeof h->dev[0])) { /* full: the page heard from least recently goes */
      int oldest = 0;
      for (int i = 1; i < h->ndev; i++)
        if (h->dev[i].seen < h->dev[oldest].seen) oldest = i;
      ws_conn *old = h->dev[oldest].ws;
      h->dev[oldest] = h->dev[--h->ndev];
      ws_set_userdata(old, &dev_ws, NULL);
      ws_close(old, 1001, "too many dev pages");
    }
    ws_conn *ws = ws_accept(res, req, &dev_ws, h, 4096);
    if (!ws) return 0;
    h->dev[h->ndev++] = (dev_page){ws, uv_now(h->srv->loop)};
    if (!h->dev_ping && (h->dev_ping = malloc(sizeof *h->dev_ping))) {
      uv_timer_init(h->srv->loop, h->dev_ping);
      h->dev_ping->data = h;
      uv_timer_start(h->dev_ping, on_dev_ping, DEV_PING_MS(h), DEV_PING_MS(h));
      uv_unref((uv_handle_t *)h->dev_ping);
    }
    lua_pushinteger(h->L, (lua_Integer)h->boot);
    if (call_reload(h, "hello", 1, 1) == LUA_OK) dev_send(ws, lua_tostring(h->L, -1));
    lua_pop(h->L, 1);
    return 0;
  }
  return 1;
}

/* The watcher saw changes under scripts/, views/ or public/. */
static void on_files_changed(void *ud, const mw_watch_event *ev) {
  lhost *h = ud;
  lua_State *L = h->L;
  int top = lua_gettop(L);
  if (ev->what & MW_WATCH_PUBLIC) static_clear_cache(h->st);
  lua_createtable(L, 0, 6);
  lua_pushboolean(L, ev->what & MW_WATCH_SCRIPTS);
  lua_setfield(L, -2, "scripts");
  lua_pushboolean(L, ev->what & MW_WATCH_VIEWS);
  lua_setfield(L, -2, "views");
  lua_pushboolean(L, ev->what & MW_WATCH_PUBLIC);
  lua_setfield(L, -2, "public");
  lua_pushboolean(L, ev->css_only);
  lua_setfield(L, -2, "css_only");
  lua_pushinteger(L, ev->more);
  lua_setfield(L, -2, "more");
  lua_createtable(L, ev->nnames, 0);
  for (int i = 0; i < ev->nnames; i++) {
    lua_pushstring(L, ev->names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "names");
  if (call_reload(h, "files_changed", 1, 3) == LUA_OK) {
    bool failed = strcmp(lua_tostring(L, -2), "error") == 0;
    mw_log(failed ? MW_LOG_ERROR : MW_LOG_INFO, "%s", lua_tostring(L, -3));
    if (ev->what & MW_WATCH_SCRIPTS) h->ok = !failed ? true : h->ok;
    if (lua_isstring(L, -1)) dev_broadcast(h, lua_tostring(L, -1));
  }
  lua_settop(L, top);
}

/* Dev mode, while the app has never loaded: a 500 page showing the error;
 * the dev helper reloads it once a fixed version loads. */
static void load_error_page(lhost *h, http_res *res) {
  lua_State *L = h->L;
  mw_str page = {0};
  mw_str_appendz(&page, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<meta name=\"moonwire-load-error\" content=\"1\"><title>The app failed to load</title></head>"
                        "<body style=\"font-family:system-ui,sans-serif;margin:2rem\"><h1>The app failed to load</h1><pre>");
  if (call_reload(h, "error", 0, 1) == LUA_OK && lua_isstring(L, -1)) {
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

/* ---- the exchange: a response handle for Lua ---- */

/* The exchange's metatable is its methods' second upvalue: checking the
 * argument against it needs no registry lookup by name (luaL_checkudata's),
 * which every request paid twice. */
static exchange *check_ex(lua_State *L) {
  exchange *ex = lua_touserdata(L, 1);
  if (ex && lua_getmetatable(L, 1)) {
    bool ours = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (ours) return ex;
  }
  return luaL_checkudata(L, 1, EXCHANGE_MT); /* raises the usual error */
}

/* Adds the header name: value at the top of the stack (a string, or what
 * tostring would make of it) to res; raises an error for CR, LF or NUL. */
static void ex_header(lua_State *L, http_res *res, const char *name, size_t nl) {
  size_t vl;
  bool str = lua_type(L, -1) == LUA_TSTRING;
  const char *v = str ? lua_tolstring(L, -1, &vl) : luaL_tolstring(L, -1, &vl);
  if (http_res_header(res, name, nl, v, vl) == -EINVAL) {
    http_res_clear(res);
    luaL_error(L, "invalid header %s (CR, LF or NUL in it)", name);
  }
  if (!str) lua_pop(L, 1);
}

/* Adds the headers of the table at idx (name → value, a value may be an
 * array for repeats) to res. */
static void ex_headers(lua_State *L, http_res *res, int idx) {
  if (!lua_istable(L, idx)) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    /* Names that are not strings are skipped (and never converted in
     * place, which would confuse lua_next). */
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 1);
      continue;
    }
    size_t nl;
    const char *name = lua_tolstring(L, -2, &nl);
    if (lua_istable(L, -1)) {
      for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
        ex_header(L, res, name, nl);
        lua_pop(L, 1);
      }
      lua_pop(L, 1); /* the nil */
    } else {
      ex_header(L, res, name, nl);
    }
    lua_pop(L, 1);
  }
}

static int ex_status(lua_State *L, int idx) {
  lua_Integer status = luaL_checkinteger(L, idx);
  if (status < 100 || status > 999) return luaL_argerror(L, idx, "status must be 100..999");
  return (int)status;
}

/* A weak validator for a body, as Express makes one (W/"length-hash"):
 * a 64-bit hash of the bytes, a word at a time. Not a digest: it tells a
 * changed page from the one a client has. */
static uint64_t body_hash(const char *p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)n;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 32;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
  h ^= h >> 29;
  h *= 0xff51afd7ed558ccdu;
  return h ^ (h >> 32);
}

/* Express's req.fresh: the client's copy (If-None-Match against the
 * response's ETag, else If-Modified-Since against its Last-Modified) is
 * still good, unless it asked for no cache. */
static bool ex_fresh(const http_res *res) {
  const http_req *req = res->req;
  size_t n, tn;
  const char *v = http_req_header(req, "cache-control", &n);
  if (v && memmem(v, n, "no-cache", 8)) return false;
  if ((v = http_req_header(req, "if-none-match", &n))) {
    const char *tag = http_res_get(res, "etag", &tn);
    char t[256];
    if (!tag || tn >= sizeof t) return false;
    memcpy(t, tag, tn);
    t[tn] = '\0';
    return http_etag_match(v, n, t);
  }
  if ((v = http_req_header(req, "if-modified-since", &n))) {
    const char *lm = http_res_get(res, "last-modified", &tn);
    int64_t since = http_parse_date(v, n), mod = lm ? http_parse_date(lm, tn) : -1;
    return since >= 0 && mod >= 0 && mod <= since;
  }
  return false;
}

/* ex:finish(status, body, headers, etag) → true, or false if already
 * answered. headers is a table name → value (a value may be an array for
 * repeats). etag: give a GET or HEAD's 2xx body a weak ETag unless it has
 * one; either way, a client whose copy is fresh gets 304 (as Express's
 * res.send). A streamed response ends with its last piece. */
static int ex_finish(lua_State *L) {
  exchange *ex = check_ex(L);
  int status = ex_status(L, 2);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 3, "", &blen);
  if (!ex->res) {
    lua_pushboolean(L, 0);
    return 1;
  }
  http_res *res = ex->res;
  if (ex->streaming) { /* res:send on a streamed response: the last piece */
    if (blen) http_res_write_copy(res, body, blen);
    ex->res = NULL;
    ex->streaming = false;
    http_res_finish(res);
    lua_pushboolean(L, 1);
    return 1;
  }
  res->status = status;
  ex_headers(L, res, 4);
  ex->res = NULL;
  mw_str page = {0};
  if (ex->dev && is_html(res) && inject_dev_tag(&page, body, blen)) {
    body = page.p;
    blen = page.len;
  }
  const http_req *req = res->req;
  if (req && (req->method_id == HTTP_GET || req->method_id == HTTP_HEAD) && status >= 200 && status < 300) {
    if (lua_toboolean(L, 5) && !http_res_get(res, "etag", NULL)) {
      char tag[64];
      snprintf(tag, sizeof tag, "W/\"%zx-%016llx\"", blen, (unsigned long long)body_hash(body, blen));
      http_res_header(res, "ETag", 4, tag, strlen(tag));
    }
    if (ex_fresh(res)) { /* 304: no body, nor what describes one */
      res->status = 304;
      http_res_remove(res, "content-type");
      blen = 0;
    }
  }
  http_res_end(res, body, blen);
  mw_str_free(&page);
  lua_pushboolean(L, 1);
  return 1;
}

static int ex_done(lua_State *L) {
  exchange *ex = check_ex(L);
  lua_pushboolean(L, ex->res == NULL || ex->streaming);
  return 1;
}

/* ex:begin(status, headers) → true: the head goes out, the body follows in
 * pieces (chunked on HTTP/1.1). false when already answered. */
static int ex_begin(lua_State *L) {
  exchange *ex = check_ex(L);
  int status = ex_status(L, 2);
  if (!ex->res || ex->streaming) {
    lua_pushboolean(L, 0);
    return 1;
  }
  ex->res->status = status;
  ex_headers(L, ex->res, 3);
  ex->streaming = true;
  http_res_begin(ex->res, HTTP_LEN_STREAM);
  lua_pushboolean(L, 1);
  return 1;
}

/* A route writes on while the queue holds less than this; past it,
 * res:write waits for the drain. */
#define EX_QUEUE_HIGH (64 * 1024)

/* ex:write(s) → true (write on), false (wait: ex:wait), or nil, "closed"
 * when the client is gone. */
static int ex_write(lua_State *L) {
  exchange *ex = check_ex(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (!ex->res || !ex->streaming) return luaL_error(L, "the response is not being streamed");
  int r = http_res_write_copy(ex->res, s, len);
  size_t q = http_res_queued(ex->res);
  if (r == -EPIPE || q == SIZE_MAX) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (r) return luaL_error(L, "res:write: %s", strerror(-r));
  lua_pushboolean(L, q < EX_QUEUE_HIGH);
  return 1;
}

static lh_waiter *waiter_new(lua_State *L, lhost *h, exchange *ex, int fn) {
  lh_waiter *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  lua_pushvalue(L, fn);
  w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->h = h;
  w->ex = ex;
  w->next = h->waiters;
  if (h->waiters) h->waiters->prev = w;
  h->waiters = w;
  return w;
}

/* Pushes the waiting function and frees w; false when the host is gone. */
static bool waiter_take(lh_waiter *w) {
  lhost *h = w->h;
  if (!h) {
    free(w);
    return false;
  }
  if (w->prev) w->prev->next = w->next;
  else h->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, w->ref);
  luaL_unref(h->L, LUA_REGISTRYINDEX, w->ref);
  free(w);
  return true;
}

/* Calls the waiters whose drain came: fn(true) when the queue drained,
 * fn(nil) when the client went away. */
static void on_ready(uv_idle_t *idle) {
  lhost *h = idle->data;
  uv_idle_stop(idle);
  lh_waiter *list = h->ready;
  h->ready = NULL;
  while (list) {
    lh_waiter *w = list;
    list = w->next;
    exchange *ex = w->ex;
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
    free(w);
    if (ex->res && http_res_queued(ex->res) != SIZE_MAX) lua_pushboolean(L, 1);
    else lua_pushnil(L);
    if (lcall_pcall(L, 1, 0, "res:write") != LUA_OK) lua_pop(L, 1);
  }
}

/* The queue drained, or the client went away. The route hears of it on the
 * next loop turn, not now: the drain comes while the server flushes
 * queues, and a route that wrote again at once would have this connection
 * flushed again and again while the others wait. */
static void on_ex_drain(void *ud) {
  lh_waiter *w = ud;
  lhost *h = w->h;
  if (!h) {
    free(w);
    return;
  }
  if (w->prev) w->prev->next = w->next;
  else h->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = NULL;
  w->next = h->ready;
  h->ready = w;
  if (!h->ready_idle) {
    if (!(h->ready_idle = malloc(sizeof *h->ready_idle))) return;
    uv_idle_init(h->srv->loop, h->ready_idle);
    h->ready_idle->data = h;
  }
  uv_idle_start(h->ready_idle, on_ready);
}

/* ex:wait(fn): fn(true) once the queue has drained, fn(nil) if the client
 * goes away first. */
static int ex_wait(lua_State *L) {
  exchange *ex = check_ex(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!ex->res || !ex->streaming) return luaL_error(L, "the response is not being streamed");
  lh_waiter *w = waiter_new(L, ex->h, ex, 2);
  if (!w) return luaL_error(L, "out of memory");
  http_res_wait(ex->res, on_ex_drain, w);
  return 0;
}

/* ex:abort(): ends a streamed response cut short (the route failed). */
static int ex_abort(lua_State *L) {
  exchange *ex = check_ex(L);
  if (ex->res && ex->streaming) {
    http_res *res = ex->res;
    ex->res = NULL;
    ex->streaming = false;
    http_res_abort(res);
  }
  return 0;
}

/* static.c's word on a res:sendFile: fn(true) when the file is being sent,
 * fn(nil, message) when it could not be (the response is the route's
 * again). */
static void on_sendfile_done(void *ud, const http_req *req, http_res *res, int rc) {
  (void)req;
  lh_waiter *w = ud;
  exchange *ex = w->ex;
  lua_State *L = w->h ? w->h->L : NULL;
  if (rc != 0 && w->h) { /* untouched: the route answers */
    http_res_clear(res);
    res->status = 200;
    ex->res = res;
  }
  if (!waiter_take(w)) return;
  if (rc == 0) {
    lua_pushboolean(L, 1);
    lua_pushnil(L);
  } else {
    lua_pushnil(L);
    if (rc == 1) lua_pushliteral(L, "not found");
    else lua_pushstring(L, strerror(-rc));
  }
  if (lcall_pcall(L, 2, 0, "res:sendFile") != LUA_OK) lua_pop(L, 1);
}

/* ex:sendfile(status, headers, root, path, dotfiles, cache_control, fn) →
 * true (fn hears how it went), or nil and why at once (the response is
 * still the route's). */
static int ex_sendfile(lua_State *L) {
  exchange *ex = check_ex(L);
  int status = ex_status(L, 2);
  const char *root = luaL_checkstring(L, 4);
  size_t plen;
  const char *path = luaL_checklstring(L, 5, &plen);
  bool dotfiles = lua_toboolean(L, 6);
  const char *cc = luaL_optstring(L, 7, NULL);
  luaL_checktype(L, 8, LUA_TFUNCTION);
  if (!ex->res || ex->streaming) {
    lua_pushnil(L);
    lua_pushliteral(L, "the response was already sent");
    return 2;
  }
  if (strlen(path) != plen) { /* a NUL in it */
    lua_pushnil(L);
    lua_pushliteral(L, "not found");
    return 2;
  }
  http_res *res = ex->res;
  res->status = status;
  ex_headers(L, res, 3);
  lh_waiter *w = waiter_new(L, ex->h, ex, 8);
  if (!w) {
    http_res_clear(res);
    return luaL_error(L, "out of memory");
  }
  w->res = res;
  ex->res = NULL; /* static.c has it now */
  int r = static_send_file(ex->h->st, root, path, dotfiles, cc, res->req, res, on_sendfile_done, w);
  if (r != 0) {
    ex->res = res;
    http_res_clear(res);
    waiter_take(w);
    lua_pop(L, 1);
    lua_pushnil(L);
    if (r == 1) lua_pushliteral(L, "not found");
    else lua_pushstring(L, strerror(-r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A streamed response whose route was dropped unfinished (its coroutine
 * collected, or the VM closing) is cut short rather than left open. */
static int ex_gc(lua_State *L) {
  exchange *ex = lua_touserdata(L, 1);
  if (ex && ex->res && ex->streaming) {
    http_res *res = ex->res;
    ex->res = NULL;
    ex->streaming = false;
    http_res_abort(res);
  }
  return 0;
}

/* The request's body, for moonwire.app's req (see l_body.c): its size when
 * it was spooled to a file (else nil), reads of it, multipart parts. */
static const http_req *ex_req(exchange *ex) { return ex->res ? ex->res->req : NULL; }

static int ex_body_size(lua_State *L) {
  const http_req *req = ex_req(check_ex(L));
  if (!req || !req->body_file) return 0;
  lua_pushinteger(L, (lua_Integer)req->body_len);
  return 1;
}

static int ex_read_body(lua_State *L) { return l_body_read(L, ex_req(check_ex(L)), 2); }
static int ex_read_body_now(lua_State *L) { return l_body_read_now(L, ex_req(check_ex(L)), 2); }
static int ex_parts(lua_State *L) { return l_body_parts(L, ex_req(check_ex(L))); }

static const luaL_Reg ex_methods[] = {{"finish", ex_finish},         {"done", ex_done},
                                      {"begin", ex_begin},           {"write", ex_write},
                                      {"wait", ex_wait},             {"abort", ex_abort},
                                      {"sendfile", ex_sendfile},     {"body_size", ex_body_size},
                                      {"read_body", ex_read_body},   {"read_body_now", ex_read_body_now},
                                      {"parts", ex_parts},           {NULL, NULL}};

/* ---- moonwire.core: what the framework's Lua needs from C ---- */

static int core_log(lua_State *L) {
  static const char *levels[] = {"error", "warn", "info", "debug", NULL};
  int lvl = luaL_checkoption(L, 1, "info", levels);
  mw_log(lvl, "%s", luaL_checkstring(L, 2));
  return 0;
}

static int core_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)mw_now_ns() / 1e6);
  return 1;
}

/* time() → milliseconds since the epoch (wall clock). */
static int core_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

static int core_headers(lua_State *L);

/* random(n) → n unpredictable bytes (1..1024). */
static int core_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 1024, 1, "between 1 and 1024 bytes");
  unsigned char buf[1024];
  if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "no randomness available");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

/* hmac(key, data) → the HMAC-SHA256 of data under key, 32 raw bytes. */
static int core_hmac(lua_State *L) {
  size_t kl, dl;
  const char *key = luaL_checklstring(L, 1, &kl);
  const char *data = luaL_checklstring(L, 2, &dl);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)data, dl, md, &mdlen))
    return luaL_error(L, "hmac failed");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

/* equal(a, b) → whether two strings are equal, in a time that does not
 * tell where they differ (for tokens). */
static int core_equal(lua_State *L) {
  size_t al, bl;
  const char *a = luaL_checklstring(L, 1, &al);
  const char *b = luaL_checklstring(L, 2, &bl);
  lua_pushboolean(L, al == bl && CRYPTO_memcmp(a, b, al) == 0);
  return 1;
}

static int open_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"log", core_log},       {"now", core_now},   {"time", core_time},
                                 {"headers", core_headers}, {"random", core_random}, {"hmac", core_hmac},
                                 {"equal", core_equal},   {NULL, NULL}};
  luaL_newlib(L, fns);
  lhost *h = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushstring(L, h->srv->cfg.root);
  lua_setfield(L, -2, "root");
  lua_pushboolean(L, h->srv->cfg.dev);
  lua_setfield(L, -2, "dev");
  lua_pushstring(L, MW_VERSION);
  lua_setfield(L, -2, "version");
  if (h->srv->cfg.redis) {
    lua_pushstring(L, h->srv->cfg.redis);
    lua_setfield(L, -2, "redis");
  }
  return 1;
}

static int open_db(lua_State *L) {
  lhost *h = lua_touserdata(L, lua_upvalueindex(1));
  return l_db_push(L, h->db);
}

static void preload(lua_State *L, const char *name, lua_CFunction f, lhost *h) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, f, 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* ---- answering requests ---- */

/* Sets t[name lowercased] = value, joining a repeated header's values with
 * ", " (t at the top of the stack). */
static void set_header(lua_State *L, const char *hname, size_t hlen, const char *value, size_t vlen) {
  char name[256];
  size_t n = hlen < sizeof name ? hlen : sizeof name - 1;
  for (size_t j = 0; j < n; j++) {
    char ch = hname[j];
    name[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
  lua_pushlstring(L, name, n);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TSTRING) { /* repeated header: join with ", " */
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, value, vlen);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, value, vlen);
  }
  lua_rawset(L, -3);
}

void lhost_push_headers(lua_State *L, const http_req *req) {
  lua_createtable(L, 0, req->nheaders);
  for (int i = 0; i < req->nheaders; i++) {
    const http_header *hd = &req->headers[i];
    set_header(L, hd->name, hd->name_len, hd->value, hd->value_len);
  }
}

/* A request's headers travel to Lua packed in its exchange, and become a
 * table only if the app reads req.headers (moonwire.app): per header, the
 * name's length and the value's length (uint32_t each, native order), then
 * the name and the value. */
static size_t packed_size(const http_req *req) {
  size_t total = 0;
  for (int i = 0; i < req->nheaders; i++) total += 8 + req->headers[i].name_len + req->headers[i].value_len;
  return total;
}

static void pack_headers(const http_req *req, char *p) {
  for (int i = 0; i < req->nheaders; i++) {
    const http_header *hd = &req->headers[i];
    uint32_t len[2] = {(uint32_t)hd->name_len, (uint32_t)hd->value_len};
    memcpy(p, len, sizeof len);
    p += sizeof len;
    memcpy(p, hd->name, hd->name_len);
    p += hd->name_len;
    memcpy(p, hd->value, hd->value_len);
    p += hd->value_len;
  }
}

/* core.headers(ex) → the headers table of ex's request (lower-case names). */
static int core_headers(lua_State *L) {
  const exchange *ex = luaL_checkudata(L, 1, EXCHANGE_MT);
  const char *p = ex->headers, *end = p + ex->hlen;
  lua_newtable(L);
  while ((size_t)(end - p) >= 8) {
    uint32_t n[2];
    memcpy(n, p, sizeof n);
    p += sizeof n;
    set_header(L, p, n[0], p + n[0], n[1]);
    p += n[0] + n[1];
  }
  return 1;
}

/* Pushes the arguments app._dispatch and app._not_found take after ex:
 * method, url, rawpath, querystring, body, ip, and ex again (the packed
 * headers; ex is at stack index exi). */
static int push_req(lua_State *L, const http_req *req, int exi) {
  lua_pushstring(L, req->method);
  lua_pushlstring(L, req->url, req->url_len);
  if (req->path_len == req->url_len) lua_pushvalue(L, -1); /* no query: the same string, not hashed again */
  else lua_pushlstring(L, req->path, req->path_len);
  lua_pushlstring(L, req->query, req->query_len);
  if (req->body) lua_pushlstring(L, req->body, req->body_len);
  else lua_pushnil(L); /* spooled: read when req.body is (moonwire.app) */
  lua_pushstring(L, req->remote_addr ? req->remote_addr : "");
  lua_pushvalue(L, exi);
  return 7;
}

static void answer_500(http_res *res) {
  http_res_clear(res);
  http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
}

/* The bundle was there when the server started: gone now, or unreadable. */
static void on_client_miss(void *ud, const http_req *req, http_res *res, int rc) {
  (void)ud, (void)req;
  if (rc == 0) return; /* answered */
  if (rc < 0) answer_500(res);
  else http_res_simple(res, 404, "text/plain; charset=utf-8", "404 Not Found\n");
}

/* /socket.io/socket.io.js and friends, from the socket.io-client package. */
static int serve_client(lhost *h, const http_req *req, http_res *res) {
  static const char *files[] = {"socket.io.js",         "socket.io.min.js",         "socket.io.js.map",
                                "socket.io.min.js.map", "socket.io.esm.min.js",     "socket.io.esm.min.js.map",
                                NULL};
  const char *path = l_io_path(h->io);
  size_t plen = strlen(path);
  if (!h->client_dir[0] || req->path_len <= plen || memcmp(req->path, path, plen) != 0) return 1;
  const char *name = req->path + plen;
  size_t nlen = req->path_len - plen;
  for (int i = 0; files[i]; i++) {
    if (strlen(files[i]) == nlen && memcmp(files[i], name, nlen) == 0) {
      char file[8500];
      snprintf(file, sizeof file, "%s/%s", h->client_dir, files[i]);
      return static_serve_file(h->st, file, req, res, "public, max-age=0", on_client_miss, NULL);
    }
  }
  return 1;
}

static void find_client_dir(lhost *h) {
  const char *rel = "node_modules/socket.io-client/dist";
  char exe[4096];
  size_t len = sizeof exe;
  snprintf(h->client_dir, sizeof h->client_dir, "%s/%s", h->srv->cfg.root, rel);
  if (access(h->client_dir, R_OK) == 0) return;
  /* build/moonwire: the project's own node_modules sits one level up. */
  if (uv_exepath(exe, &len) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(h->client_dir, sizeof h->client_dir, "%s/../%s", exe, rel);
    if (access(h->client_dir, R_OK) == 0) return;
  }
  /* A build elsewhere: the checkout it was built from. */
  snprintf(h->client_dir, sizeof h->client_dir, "%s/%s", MW_SOURCE_DIR, rel);
  if (access(h->client_dir, R_OK) == 0) return;
  h->client_dir[0] = '\0';
}

/* A new exchange for res at the top of the stack (its request's headers
 * packed in it). */
static exchange *push_exchange(lhost *h, const http_req *req, http_res *res) {
  lua_State *L = h->L;
  size_t hlen = packed_size(req);
  exchange *ex = lua_newuserdatauv(L, sizeof *ex + hlen, 0);
  ex->res = res;
  ex->h = h;
  ex->dev = dev_client(h, req);
  ex->streaming = false;
  ex->hlen = hlen;
  pack_headers(req, ex->headers);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ex_mt_ref);
  lua_setmetatable(L, -2);
  return ex;
}

/* The app's 404 (views/404.html through app._not_found). */
static void answer_not_found(lhost *h, const http_req *req, http_res *res) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, lcall_msgh);                    /* top + 1 */
  exchange *ex = push_exchange(h, req, res); /* top + 2 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->not_found_ref);
  lua_pushvalue(L, top + 2);
  int nargs = push_req(L, req, top + 2);
  if (lcall_pcall_at(L, top + 1, 1 + nargs, 0, "not found") != LUA_OK && ex->res) answer_500(res);
  if (ex->res) { /* belt and braces: never leave a request hanging */
    ex->res = NULL;
    http_res_simple(res, 404, "text/plain; charset=utf-8", "404 Not Found\n");
  }
  lua_settop(L, top);
}

/* What a request no route took waits with while static.c looks for the
 * file: the methods the path's routes answer to (for 405). */
typedef struct static_next {
  lhost *h;
  size_t alen;
  char allow[];
} static_next;

/* public/ answered (rc 0); or no file for the request (rc 1), or reading
 * it failed (rc < 0): 405 when routes answer the path to other methods,
 * else the app's 404. */
static void on_static_miss(void *ud, const http_req *req, http_res *res, int rc) {
  static_next *next = ud;
  lhost *h = next->h;
  if (rc == 0) { /* public/ answered */
  } else if (rc < 0) {
    mw_log(MW_LOG_ERROR, "%s %.*s: reading the file failed: %s", req->method, (int)req->path_len, req->path,
           strerror(-rc));
    answer_500(res);
  } else if (!h->ok) {
    if (dev_client(h, req)) load_error_page(h, res);
    else http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
  } else if (next->alen) {
    res->status = 405;
    http_res_header(res, "Allow", 5, next->allow, next->alen);
    http_res_simple(res, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n");
  } else {
    answer_not_found(h, req, res);
  }
  free(next);
}

/* The request goes to public/, and to on_static_miss when no file is there. */
static void serve_static(lhost *h, const http_req *req, http_res *res, const char *allow, size_t alen) {
  static_next *next = malloc(sizeof *next + alen + 1);
  if (!next) {
    answer_500(res);
    return;
  }
  next->h = h;
  next->alen = alen;
  if (alen) memcpy(next->allow, allow, alen);
  next->allow[alen] = '\0';
  if (static_serve(h->st, req, res, on_static_miss, next) == 0) return; /* on_static_miss frees next */
  on_static_miss(next, req, res, 1);
}

static void lhost_handle(void *ud, const http_req *req, http_res *res) {
  lhost *h = ud;
  lua_State *L = h->L;
  if (h->io && l_io_handle_http(h->io, req, res) == 0) return;
  if (h->io && serve_client(h, req, res) == 0) return;
  if (dev_client(h, req) && dev_handle(h, req, res) == 0) return;
  if (!h->ok) {
    serve_static(h, req, res, NULL, 0);
    return;
  }
  int top = lua_gettop(L);
  /* The message handler goes first, under everything: lcall_pcall would
   * slide it under the arguments and out again on every request. */
  lua_pushcfunction(L, lcall_msgh);                   /* top + 1 */
  exchange *ex = push_exchange(h, req, res);          /* top + 2 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->dispatch_ref);
  lua_pushvalue(L, top + 2);
  int nargs = push_req(L, req, top + 2);
  if (lcall_pcall_at(L, top + 1, 1 + nargs, 2, "dispatch") != LUA_OK) {
    if (ex->res) answer_500(res);
    lua_settop(L, top);
    return;
  }
  if (lua_toboolean(L, -2)) { /* a route took it */
    lua_settop(L, top);
    return;
  }
  ex->res = NULL; /* public/ or the 404 answers it now */
  size_t alen = 0;
  const char *allow = lua_tolstring(L, -1, &alen);
  serve_static(h, req, res, allow, allow ? alen : 0);
  lua_settop(L, top);
}

/* ---- creation ---- */

int lhost_new(lhost **out, mw_server *srv, mw_db *db, mw_static *st) {
  lhost *h = calloc(1, sizeof *h);
  if (!h) return -ENOMEM;
  h->srv = srv;
  h->db = db;
  h->st = st;
  h->dispatch_ref = h->not_found_ref = h->reload_ref = LUA_NOREF;
  lua_State *L = luaL_newstate();
  if (!L) {
    free(h);
    return -ENOMEM;
  }
  h->L = L;
  lalloc_use(L, &h->alloc, srv->cfg.lua_memory);
  luaL_openlibs(L);
  lcall_init(L);
  if (srv->cfg.handler_budget_ms) h->watchdog = lcall_watchdog_start(srv->cfg.handler_budget_ms) == 0;
  lua_pushstring(L, srv->cfg.root);
  lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.root");
  install_searchers(L);
  preload(L, "moonwire.core", open_core, h);
  preload(L, "moonwire.db", open_db, h);
  l_timer_open(L, srv->loop, srv->cfg.test_clock);
  l_redis_open(L, srv->loop);
  if (l_io_new(&h->io, L, srv)) {
    lua_close(L);
    lalloc_drain(&h->alloc);
    if (h->watchdog) lcall_watchdog_stop();
    free(h);
    return -ENOMEM;
  }
  find_client_dir(h);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_moonwire_template_c);
  lua_setfield(L, -2, "moonwire.template_c");
  lua_pushcfunction(L, luaopen_moonwire_msgpack);
  lua_setfield(L, -2, "moonwire.msgpack");
  lua_pushcfunction(L, luaopen_moonwire_json_c);
  lua_setfield(L, -2, "moonwire.json_c");
  lua_pop(L, 1);

  luaL_newmetatable(L, EXCHANGE_MT);
  luaL_newlibtable(L, ex_methods);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3); /* the metatable, for check_ex */
  luaL_setfuncs(L, ex_methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ex_gc);
  lua_setfield(L, -2, "__gc");
  h->ex_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* also kept by name */

  *out = h;
  http_set_handler(srv, &(http_handler){lhost_handle, h});

  /* The framework: moonwire.app owns routes and the request path. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonwire.app");
  if (lcall_pcall(L, 1, 1, "loading moonwire.app") != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  lua_getfield(L, -1, "_dispatch");
  h->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "_not_found");
  h->not_found_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);

  /* Reloads (and the first load) go through moonwire.reload. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonwire.reload");
  if (lcall_pcall(L, 1, 1, "loading moonwire.reload") != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  h->reload_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  h->boot = mw_now_ns();

  if (srv->cfg.watch) {
    int r = mw_watch_start(&h->watch, srv->loop, srv->cfg.root, 30, on_files_changed, h);
    if (r) mw_log(MW_LOG_WARN, "watch: cannot watch the app's files: %s", uv_strerror(r));
  }

  /* The app: its first generation. */
  if (call_reload(h, "run", 0, 2) != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  if (!lua_toboolean(L, -2)) {
    mw_log(MW_LOG_ERROR, "loading scripts/app.lua: %s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return -1;
  }
  lua_pop(L, 2);
  h->ok = true;
  return 0;
}

bool lhost_ok(lhost *h) { return h->ok; }
int lhost_advance_clock(lhost *h, uint64_t ms) { return l_timer_advance(h->L, ms); }
lua_State *lhost_state(lhost *h) { return h->L; }

void lhost_stop(lhost *h) {
  if (!h) return;
  mw_watch_stop(h->watch);
  h->watch = NULL;
  if (h->dev_ping) {
    uv_close((uv_handle_t *)h->dev_ping, (uv_close_cb)free);
    h->dev_ping = NULL;
  }
  while (h->ndev) {
    ws_conn *ws = h->dev[--h->ndev].ws;
    ws_set_userdata(ws, &dev_ws, NULL);
    ws_close(ws, 1001, "server shutting down");
  }
  l_io_stop(h->io);
  l_timer_stop_all(h->L);
  l_redis_stop_all(h->L);
}

void lhost_free(lhost *h) {
  if (!h) return;
  lhost_stop(h);
  /* Callbacks still to come find their host gone and only free themselves. */
  for (lh_waiter *w = h->waiters; w; w = w->next) w->h = NULL;
  h->waiters = NULL;
  for (lh_waiter *w = h->ready, *next; w; w = next) {
    next = w->next;
    free(w);
  }
  h->ready = NULL;
  if (h->ready_idle) uv_close((uv_handle_t *)h->ready_idle, (uv_close_cb)free);
  if (h->L) l_body_stop(h->L); /* body reads still in flight call nothing */
  if (h->L) lua_close(h->L);
  lalloc_drain(&h->alloc);
  if (h->watchdog) lcall_watchdog_stop();
  l_io_free(h->io);
  free(h);
}
