/* lhost.c — the Lua VM that runs the app. */
#include "lhost.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "body.h"
#include "db.h"
#include "embedded.h"
#include "l_body.h"
#include "l_io.h"
#include "static.h"
#include "template.h"
#include "watch.h"
#include "ws.h"

#define EXCHANGE_MT "moonwire.exchange"

/* Small Lua objects (tables, their parts, strings, userdata) come and go
 * by the dozen with every request, and libc's malloc/free was a tenth of
 * the work of a request. They are recycled here instead: a freed block of
 * n bytes (Lua tells the size) goes on the list for exactly n bytes, and
 * the next allocation of n bytes takes it back. Exact sizes, so any block,
 * even one libc allocated before this allocator took over, can go on a
 * list. At most LPOOL_BYTES are kept; past that blocks go back to libc. */
#define LPOOL_MAX 256            /* blocks up to this size are recycled */
#define LPOOL_BYTES (512 * 1024) /* kept on the lists at most */

typedef struct lpool {
  void *free[LPOOL_MAX + 1]; /* free[n]: blocks of n bytes, linked through their first word */
  size_t bytes;              /* on the lists */
} lpool;

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
  ws_conn *dev[64];       /* dev pages listening on /__moonwire/live */
  int ndev;
  uint64_t boot;          /* tells dev pages the server restarted */
  lpool pool;             /* the VM's small blocks (lpool_alloc) */
};

/* A response as Lua sees it, carrying its request's headers packed (see
 * pack_headers): no Lua string to make for them, and they live as long as
 * the request's table does. res is NULL once answered. */
typedef struct exchange {
  http_res *res;
  const http_req *req;      /* valid while res is (the request lives until its answer) */
  size_t hlen;
  char headers[];
} exchange;

/* ---- the VM's allocator ---- */

static bool lpool_fits(size_t n) { return n >= sizeof(void *) && n <= LPOOL_MAX; }

static void lpool_put(lpool *p, void *b, size_t n) {
  if (p->bytes + n > LPOOL_BYTES) {
    free(b);
    return;
  }
  *(void **)b = p->free[n];
  p->free[n] = b;
  p->bytes += n;
}

static void *lpool_get(lpool *p, size_t n) {
  void *b = p->free[n];
  if (!b) return malloc(n);
  p->free[n] = *(void **)b;
  p->bytes -= n;
  return b;
}

/* lua_Alloc: as luaL_newstate's allocator, with small blocks recycled. */
static void *lpool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lpool *p = ud;
  if (!ptr) osize = 0; /* it then tells what kind of object is being made */
  if (nsize == 0) {
    if (lpool_fits(osize)) lpool_put(p, ptr, osize);
    else free(ptr);
    return NULL;
  }
  if (ptr && osize == nsize) return ptr;
  if (!lpool_fits(osize) && !lpool_fits(nsize)) return realloc(ptr, nsize);
  void *nb = lpool_fits(nsize) ? lpool_get(p, nsize) : malloc(nsize);
  /* Lua counts on a shrink never failing: the old block is big enough
   * (freed later as nsize bytes, it is only bigger than its list says). */
  if (!nb) return nsize < osize ? ptr : NULL;
  if (ptr) {
    memcpy(nb, ptr, osize < nsize ? osize : nsize);
    if (lpool_fits(osize)) lpool_put(p, ptr, osize);
    else free(ptr);
  }
  return nb;
}

/* Gives the kept blocks back (after lua_close). */
static void lpool_drain(lpool *p) {
  for (size_t n = 0; n <= LPOOL_MAX; n++) {
    while (p->free[n]) {
      void *b = p->free[n];
      p->free[n] = *(void **)b;
      free(b);
    }
  }
  p->bytes = 0;
}

/* Sanitizer builds keep libc's allocator, so that C code holding on to a
 * Lua string or userdata after the VM freed it is caught. */
static void use_lpool(lua_State *L, lpool *p) {
#if defined(__SANITIZE_ADDRESS__)
  (void)L, (void)p;
  return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  (void)L, (void)p;
  return;
#endif
#endif
  lua_setallocf(L, lpool_alloc, p);
}

/* ---- protected calls ---- */

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
    else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* lua_pcall with msgh already at stack index mh; logs errors. */
static int pcall_at(lua_State *L, int mh, int nargs, int nresults, const char *what) {
  int r = lua_pcall(L, nargs, nresults, mh);
  if (r != LUA_OK) mw_log(MW_LOG_ERROR, "%s: %s", what, lua_tostring(L, -1));
  return r;
}

int lhost_pcall(lua_State *L, int nargs, int nresults, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msgh);
  lua_insert(L, base);
  int r = pcall_at(L, base, nargs, nresults, what);
  lua_remove(L, base);
  return r;
}

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
  const char *p = res->headers.p, *end = p + res->headers.len;
  static const char name[] = "content-type:";
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    if ((size_t)(eol - p) > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
      const char *v = p + sizeof name - 1;
      while (v < eol && *v == ' ') v++;
      return (size_t)(eol - v) >= 9 && strncasecmp(v, "text/html", 9) == 0;
    }
    p = eol + 1;
  }
  return false;
}

static void dev_send(ws_conn *ws, const char *json) { ws_send(ws, json, strlen(json), false); }

static void dev_broadcast(lhost *h, const char *json) {
  for (int i = 0; i < h->ndev; i++) dev_send(h->dev[i], json);
}

static void dev_on_message(void *ud, ws_conn *ws, const char *data, size_t len, bool binary) {
  (void)ud, (void)ws, (void)data, (void)len, (void)binary; /* pages only listen */
}

static void dev_on_close(void *ud, ws_conn *ws, int code) {
  (void)code;
  lhost *h = ud;
  if (!h) return; /* closed by lhost_stop */
  for (int i = 0; i < h->ndev; i++) {
    if (h->dev[i] == ws) {
      h->dev[i] = h->dev[--h->ndev];
      return;
    }
  }
}

static const ws_handler dev_ws = {dev_on_message, dev_on_close};

/* Calls moonwire.reload's fname with the value on top of the stack (popped);
 * leaves its nres results. 0 on success. */
static int call_reload(lhost *h, const char *fname, int nargs, int nres) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->reload_ref);
  lua_getfield(L, -1, fname);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  return lhost_pcall(L, nargs, nres, fname);
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
    if (h->ndev >= (int)(sizeof h->dev / sizeof h->dev[0])) {
      http_res_simple(res, 503, "text/plain; charset=utf-8", "too many dev pages open\n");
      return 0;
    }
    ws_conn *ws = ws_accept(res, req, &dev_ws, h, 4096);
    if (!ws) return 0;
    h->dev[h->ndev++] = ws;
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
    res->headers.len = 0;
    luaL_error(L, "invalid header %s (CR, LF or NUL in it)", name);
  }
  if (!str) lua_pop(L, 1);
}

/* ex:finish(status, body, headers) → true, or false if already answered.
 * headers is a table name → value (a value may be an array for repeats). */
static int ex_finish(lua_State *L) {
  exchange *ex = check_ex(L);
  lua_Integer status = luaL_checkinteger(L, 2);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 3, "", &blen);
  if (!ex->res) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (status < 100 || status > 999) return luaL_argerror(L, 2, "status must be 100..999");
  http_res *res = ex->res;
  res->status = (int)status;
  if (lua_istable(L, 4)) {
    lua_pushnil(L);
    while (lua_next(L, 4)) {
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
  ex->res = NULL;
  lhost *h = lua_touserdata(L, lua_upvalueindex(1));
  mw_str page = {0};
  if (h->srv->cfg.dev && is_html(res) && inject_dev_tag(&page, body, blen)) {
    http_res_end(res, page.p, page.len);
    mw_str_free(&page);
  } else {
    http_res_end(res, body, blen);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int ex_done(lua_State *L) {
  lua_pushboolean(L, check_ex(L)->res == NULL);
  return 1;
}

/* The request's body, for moonwire.app's req (see l_body.c): its size when
 * it was spooled to a file (else nil), reads of it, multipart parts. */
static const http_req *ex_req(exchange *ex) { return ex->res ? ex->req : NULL; }

static int ex_body_size(lua_State *L) {
  const http_req *req = ex_req(check_ex(L));
  if (!req || !req->body_file) return 0;
  lua_pushinteger(L, (lua_Integer)req->body_len);
  return 1;
}

static int ex_read_body(lua_State *L) { return l_body_read(L, ex_req(check_ex(L)), 2); }
static int ex_read_body_now(lua_State *L) { return l_body_read_now(L, ex_req(check_ex(L)), 2); }
static int ex_parts(lua_State *L) { return l_body_parts(L, ex_req(check_ex(L))); }

static const luaL_Reg ex_methods[] = {{"finish", ex_finish},
                                      {"done", ex_done},
                                      {"body_size", ex_body_size},
                                      {"read_body", ex_read_body},
                                      {"read_body_now", ex_read_body_now},
                                      {"parts", ex_parts},
                                      {NULL, NULL}};

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

static int open_core(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"log", core_log}, {"now", core_now}, {"time", core_time}, {"headers", core_headers}, {NULL, NULL}};
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
  res->headers.len = 0;
  http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
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
      int r = static_serve_file(h->st, file, req, res, "public, max-age=0");
      if (r < 0) answer_500(res);
      return r == 1 ? 1 : 0;
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

static void lhost_handle(void *ud, const http_req *req, http_res *res) {
  lhost *h = ud;
  lua_State *L = h->L;
  if (h->io && l_io_handle_http(h->io, req, res) == 0) return;
  if (h->io && serve_client(h, req, res) == 0) return;
  if (h->srv->cfg.dev && dev_handle(h, req, res) == 0) return;
  if (!h->ok) {
    if (static_serve(h->st, req, res) == 0 || res->done) return;
    if (h->srv->cfg.dev) load_error_page(h, res);
    else http_res_simple(res, 500, "text/plain; charset=utf-8", "500 Internal Server Error\n");
    return;
  }
  int top = lua_gettop(L);
  /* The message handler goes first, under everything: lhost_pcall would
   * slide it under the arguments and out again on every request. */
  lua_pushcfunction(L, msgh);                         /* top + 1 */
  size_t hlen = packed_size(req);
  exchange *ex = lua_newuserdatauv(L, sizeof *ex + hlen, 0); /* top + 2 */
  ex->res = res;
  ex->req = req;
  ex->hlen = hlen;
  pack_headers(req, ex->headers);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ex_mt_ref);
  lua_setmetatable(L, -2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->dispatch_ref);
  lua_pushvalue(L, top + 2);
  int nargs = push_req(L, req, top + 2);
  if (pcall_at(L, top + 1, 1 + nargs, 2, "dispatch") != LUA_OK) {
    if (ex->res) answer_500(res);
    lua_settop(L, top);
    return;
  }
  if (lua_toboolean(L, -2)) { /* a route took it */
    lua_settop(L, top);
    return;
  }
  size_t alen = 0;
  const char *allow = lua_tolstring(L, -1, &alen);
  int sr = static_serve(h->st, req, res);
  if (sr <= 0) {
    ex->res = NULL;
    if (sr < 0) {
      mw_log(MW_LOG_ERROR, "%s %.*s: reading the file failed: %s", req->method, (int)req->path_len, req->path,
             strerror(-sr));
      answer_500(res);
    }
    lua_settop(L, top);
    return;
  }
  if (allow && alen) {
    ex->res = NULL;
    res->status = 405;
    http_res_header(res, "Allow", 5, allow, alen);
    http_res_simple(res, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n");
    lua_settop(L, top);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->not_found_ref);
  lua_pushvalue(L, top + 2);
  nargs = push_req(L, req, top + 2);
  if (pcall_at(L, top + 1, 1 + nargs, 0, "not found") != LUA_OK && ex->res) answer_500(res);
  if (ex->res) { /* belt and braces: never leave a request hanging */
    ex->res = NULL;
    http_res_simple(res, 404, "text/plain; charset=utf-8", "404 Not Found\n");
  }
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
  use_lpool(L, &h->pool);
  luaL_openlibs(L);
  lua_pushstring(L, srv->cfg.root);
  lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.root");
  install_searchers(L);
  preload(L, "moonwire.core", open_core, h);
  preload(L, "moonwire.db", open_db, h);
  l_timer_open(L, srv->loop, srv->cfg.test_clock);
  l_redis_open(L, srv->loop);
  if (l_io_new(&h->io, L, srv)) {
    lua_close(L);
    lpool_drain(&h->pool);
    free(h);
    return -ENOMEM;
  }
  find_client_dir(h);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_moonwire_template_c);
  lua_setfield(L, -2, "moonwire.template_c");
  lua_pushcfunction(L, luaopen_moonwire_msgpack);
  lua_setfield(L, -2, "moonwire.msgpack");
  lua_pop(L, 1);

  luaL_newmetatable(L, EXCHANGE_MT);
  luaL_newlibtable(L, ex_methods);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3); /* the metatable, for check_ex */
  luaL_setfuncs(L, ex_methods, 2);
  lua_setfield(L, -2, "__index");
  h->ex_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* also kept by name */

  *out = h;
  http_set_handler(srv, &(http_handler){lhost_handle, h});

  /* The framework: moonwire.app owns routes and the request path. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonwire.app");
  if (lhost_pcall(L, 1, 1, "loading moonwire.app") != LUA_OK) {
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
  if (lhost_pcall(L, 1, 1, "loading moonwire.reload") != LUA_OK) {
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
  while (h->ndev) {
    ws_conn *ws = h->dev[--h->ndev];
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
  if (h->L) l_body_stop(h->L); /* body reads still in flight call nothing */
  if (h->L) lua_close(h->L);
  lpool_drain(&h->pool);
  l_io_free(h->io);
  free(h);
}
