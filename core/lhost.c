/* lhost.c — the Lua VM that runs the app: its modules (the framework's,
 * embedded; the app's scripts; the built-in C modules, listed below), the
 * request path into the app's routes, reloads, start and shutdown.
 *
 * The concepts it puts together live in their own units: the HTTP exchange
 * as Lua sees it (l_exchange.c), dev mode (devmode.c), moonwire.core
 * (l_core.c), the protected calls and their budget (lcall.c). */
#include "lhost.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "db.h"
#include "devmode.h"
#include "embedded.h"
#include "l_body.h"
#include "l_core.h"
#include "l_db.h"
#include "l_exchange.h"
#include "l_io.h"
#include "l_json.h"
#include "l_msgpack.h"
#include "l_redis.h"
#include "l_workers.h"
#include "l_timer.h"
#include "lalloc.h"
#include "lcall.h"
#include "lmodule.h"
#include "static.h"
#include "template.h"
#include "watch.h"

struct lhost {
  lua_State *L;
  mw_server *srv;
  lhost_opts opts;        /* a copy */
  http_handler handler; /* lhost_handle and this host: the listeners' user data */
  mw_db *db;
  mw_static *st;
  lmodule_env env;        /* what the built-in modules are handed */
  int dispatch_ref, not_found_ref;
  l_io *io;
  l_exchanges *ex;        /* requests as Lua sees them */
  devmode dev;            /* the page helper, its live socket, the load-error page */
  char client_dir[8400]; /* socket.io-client's dist/, "" if not installed */
  bool ok;                /* the current generation loaded (the first one included) */
  int reload_ref;         /* moonwire.reload */
  mw_watch *watch;        /* scripts/, views/, public/ (dev mode or --watch) */
  lalloc alloc;           /* the VM's allocator: small blocks recycled, the memory ceiling */
  bool watchdog;          /* this VM started a handler budget (lcall_watchdog_start) */
};

/* The built-in C modules, as Lua's linit.c lists the standard libraries.
 * Each loader goes into package.preload with the host's lmodule_env as its
 * upvalue, and runs on the first require; at shutdown every stop runs, in
 * this order. moonwire.io_c is not here: the Socket.IO server (l_io.c) is
 * a part of the request path the host routes requests to, made with the
 * VM and registering its own module. */
static const lmodule builtins[] = {
    {"moonwire.core", luaopen_moonwire_core, NULL},
    {"moonwire.db", luaopen_moonwire_db, NULL},
    {"moonwire.timer", luaopen_moonwire_timer, l_timer_stop_all},
    {"moonwire.redis_c", luaopen_moonwire_redis_c, l_redis_stop_all},
    {"moonwire.workers_c", luaopen_moonwire_workers_c, l_workers_stop_all},
    {"moonwire.template_c", luaopen_moonwire_template_c, NULL},
    {"moonwire.msgpack", luaopen_moonwire_msgpack, NULL},
    {"moonwire.json_c", luaopen_moonwire_json_c, NULL},
    {NULL, NULL, NULL},
};

static void preload_builtins(lhost *h) {
  lua_State *L = h->L;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const lmodule *m = builtins; m->name; m++) {
    lua_pushlightuserdata(L, &h->env);
    lua_pushcclosure(L, m->open, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
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

/* ---- reloads ---- */

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
  if (lcall_field(L, h->reload_ref, "files_changed", 1, 3) == LUA_OK) {
    bool failed = strcmp(lua_tostring(L, -2), "error") == 0;
    mw_log(failed ? MW_LOG_ERROR : MW_LOG_INFO, "%s", lua_tostring(L, -3));
    if (ev->what & MW_WATCH_SCRIPTS) h->ok = !failed ? true : h->ok;
    if (lua_isstring(L, -1)) devmode_broadcast(&h->dev, lua_tostring(L, -1));
  }
  lua_settop(L, top);
}

/* ---- answering requests ---- */

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
  snprintf(h->client_dir, sizeof h->client_dir, "%s/%s", h->opts.root, rel);
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

/* The app's 404 (views/404.html through app._not_found). */
static void answer_not_found(lhost *h, const http_req *req, http_res *res) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, lcall_msgh); /* top + 1 */
  l_exchange *ex = l_exchange_push(h->ex, req, res, devmode_client(&h->dev, req)); /* top + 2 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->not_found_ref);
  lua_pushvalue(L, top + 2);
  int nargs = l_exchange_push_req(L, req, top + 2);
  if (lcall_pcall_at(L, top + 1, 1 + nargs, 0, "not found") != LUA_OK && l_exchange_res(ex)) {
    l_exchange_detach(ex); /* answered here: res is gone once it is */
    answer_500(res);
  }
  if (l_exchange_res(ex)) { /* belt and braces: never leave a request hanging */
    l_exchange_detach(ex);
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
    if (devmode_client(&h->dev, req)) devmode_error_page(&h->dev, res);
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
  if (devmode_client(&h->dev, req) && devmode_handle(&h->dev, req, res) == 0) return;
  if (!h->ok) {
    serve_static(h, req, res, NULL, 0);
    return;
  }
  int top = lua_gettop(L);
  /* The message handler goes first, under everything: lcall_pcall would
   * slide it under the arguments and out again on every request. */
  lua_pushcfunction(L, lcall_msgh); /* top + 1 */
  l_exchange *ex = l_exchange_push(h->ex, req, res, devmode_client(&h->dev, req)); /* top + 2 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->dispatch_ref);
  lua_pushvalue(L, top + 2);
  int nargs = l_exchange_push_req(L, req, top + 2);
  if (lcall_pcall_at(L, top + 1, 1 + nargs, 2, "dispatch") != LUA_OK) {
    if (l_exchange_res(ex)) {
      l_exchange_detach(ex); /* a handler that kept ex must not reach res once it is answered */
      answer_500(res);
    }
    lua_settop(L, top);
    return;
  }
  if (lua_toboolean(L, -2)) { /* a route took it */
    lua_settop(L, top);
    return;
  }
  l_exchange_detach(ex); /* public/ or the 404 answers it now */
  size_t alen = 0;
  const char *allow = lua_tolstring(L, -1, &alen);
  serve_static(h, req, res, allow, allow ? alen : 0);
  lua_settop(L, top);
}

/* ---- creation ---- */

/* math.random's seed. Lua's own is the time in seconds and the VM's
 * address, which the workers of --workers share (forked from one process,
 * they allocate alike) when they start within one second: each would draw
 * the same numbers. The system's randomness instead; Lua's seed stays when
 * there is none. */
static void seed_random(lua_State *L) {
  uint64_t s[2];
  if (getrandom(s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) return;
  lua_getglobal(L, "math");
  lua_getfield(L, -1, "randomseed");
  lua_pushinteger(L, (lua_Integer)s[0]);
  lua_pushinteger(L, (lua_Integer)s[1]);
  lua_call(L, 2, 0);
  lua_pop(L, 1);
}

int lhost_new(lhost **out, mw_server *srv, const lhost_opts *o, mw_db *db, mw_static *st) {
  lhost *h = calloc(1, sizeof *h);
  if (!h) return -ENOMEM;
  h->srv = srv;
  h->opts = *o;
  o = &h->opts;
  h->db = db;
  h->st = st;
  h->env = (lmodule_env){.srv = srv, .opts = o, .db = db};
  h->dispatch_ref = h->not_found_ref = h->reload_ref = LUA_NOREF;
  lua_State *L = luaL_newstate();
  if (!L) {
    free(h);
    return -ENOMEM;
  }
  h->L = L;
  lalloc_use(L, &h->alloc, o->lua_memory);
  luaL_openlibs(L);
  seed_random(L);
  lcall_init(L);
  if (o->handler_budget_ms) h->watchdog = lcall_watchdog_start(o->handler_budget_ms) == 0;
  lua_pushstring(L, o->root);
  lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.root");
  install_searchers(L);
  preload_builtins(h);
  devmode_init(&h->dev, srv, L, o->dev, o->io.ping_interval);
  if (l_io_new(&h->io, L, srv, &o->io, o->dev) || l_exchanges_new(&h->ex, L, srv->loop, st)) {
    lua_close(L);
    lalloc_drain(&h->alloc);
    if (h->watchdog) lcall_watchdog_stop();
    l_io_free(h->io);
    free(h);
    return -ENOMEM;
  }
  find_client_dir(h);

  *out = h;
  h->handler = (http_handler){lhost_handle, h};

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
  h->reload_ref = h->dev.reload_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  if (o->watch) {
    int r = mw_watch_start(&h->watch, srv->loop, o->root, 30, on_files_changed, h);
    if (r) mw_log(MW_LOG_WARN, "watch: cannot watch the app's files: %s", uv_strerror(r));
  }

  /* The app: its first generation. */
  if (lcall_field(L, h->reload_ref, "run", 0, 2) != LUA_OK) {
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

const char *lhost_refusal(lhost *h) {
  lua_getfield(h->L, LUA_REGISTRYINDEX, "moonwire.refuse_start");
  const char *why = lua_tostring(h->L, -1); /* the registry keeps the string */
  lua_pop(h->L, 1);
  return why;
}
int lhost_advance_clock(lhost *h, uint64_t ms) { return l_timer_advance(h->L, ms); }

void lhost_stop(lhost *h) {
  if (!h) return;
  mw_watch_stop(h->watch);
  h->watch = NULL;
  devmode_stop(&h->dev);
  l_io_stop(h->io);
  for (const lmodule *m = builtins; m->name; m++)
    if (m->stop) m->stop(h->L);
}

const http_handler *lhost_handler(lhost *h) { return &h->handler; }

void lhost_free(lhost *h) {
  if (!h) return;
  lhost_stop(h);
  l_exchanges_free(h->ex); /* callbacks still to come find the VM gone */
  if (h->L) l_body_stop(h->L); /* body reads still in flight call nothing */
  if (h->L) lua_close(h->L);
  lalloc_drain(&h->alloc);
  if (h->watchdog) lcall_watchdog_stop();
  l_io_free(h->io);
  free(h);
}
