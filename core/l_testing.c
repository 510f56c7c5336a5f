/* l_testing.c — moonwire.testing_c: runs the real server inside a test
 * process (busted) on its own libuv loop, on an ephemeral loopback port, and
 * talks to it over real sockets. The Lua side is core/lua/moonwire/testing.lua. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db.h"
#include "lhost.h"
#include "server.h"
#include "static.h"

#define SERVER_MT "moonwire.testing.server"

typedef struct tserver {
  uv_loop_t loop;
  mw_server srv;
  mw_db *db;
  mw_static *st;
  lhost *host;
  char root[PATH_MAX];
  char db_path[PATH_MAX];
  bool running, idle;
} tserver;

static tserver *check_srv(lua_State *L) {
  tserver *t = luaL_checkudata(L, 1, SERVER_MT);
  if (!t->running) luaL_error(L, "the test server was stopped");
  return t;
}

/* start{ root = DIR, db = FILE, dev = true, max_body = N, ... } → server */
static int t_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  tserver *t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, SERVER_MT);
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.port = 0;
  cfg.quiet = true;
  lua_getfield(L, 1, "root");
  if (!realpath(luaL_checkstring(L, -1), t->root)) return luaL_error(L, "root: %s", strerror(errno));
  lua_getfield(L, 1, "db");
  snprintf(t->db_path, sizeof t->db_path, "%s", luaL_checkstring(L, -1));
  lua_getfield(L, 1, "dev");
  cfg.dev = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
  lua_getfield(L, 1, "quiet");
  if (!lua_isnil(L, -1)) cfg.quiet = lua_toboolean(L, -1);
  lua_getfield(L, 1, "max_body");
  if (!lua_isnil(L, -1)) cfg.max_body = (size_t)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "clock");
  const char *clock = luaL_optstring(L, -1, "real");
  if (!strcmp(clock, "test")) cfg.test_clock = true;
  else if (strcmp(clock, "real")) return luaL_error(L, "clock: \"real\" or \"test\", not \"%s\"", clock);
  lua_pop(L, 6);
  cfg.root = t->root;
  cfg.db_path = t->db_path;
  uv_loop_init(&t->loop);
  char err[256];
  if (mw_db_open(&t->db, t->db_path, err, sizeof err)) return luaL_error(L, "db: %s", err);
  char pub[PATH_MAX + 16];
  snprintf(pub, sizeof pub, "%s/public", t->root);
  if (static_new(&t->st, pub)) return luaL_error(L, "public/: cannot set up");
  if (mw_server_init(&t->srv, &t->loop, &cfg)) return luaL_error(L, "out of memory");
  int r = mw_server_listen(&t->srv);
  if (r) return luaL_error(L, "listen: %s", uv_strerror(r));
  t->running = true;
  if (lhost_new(&t->host, &t->srv, t->db, t->st) == -ENOMEM) return luaL_error(L, "out of memory");
  lua_pushboolean(L, lhost_ok(t->host));
  return 2;
}

static int t_port(lua_State *L) {
  lua_pushinteger(L, mw_server_port(&check_srv(L)->srv));
  return 1;
}

/* ---- a raw loopback client: write bytes, read until the server closes ---- */

typedef struct rawreq {
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_write_t wr;
  uv_timer_t timer;
  mw_str in;
  const char *out;
  size_t outlen;
  int closes;
  bool done, timed_out;
  int error;
} rawreq;

static void raw_closed(uv_handle_t *h) {
  rawreq *r = h->data;
  if (--r->closes == 0) r->done = true;
}

static void raw_finish(rawreq *r) {
  if (r->closes) return;
  r->closes = 2;
  uv_close((uv_handle_t *)&r->tcp, raw_closed);
  uv_close((uv_handle_t *)&r->timer, raw_closed);
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  rawreq *r = h->data;
  mw_str_reserve(&r->in, 65536);
  *b = uv_buf_init(r->in.p + r->in.len, (unsigned)(r->in.cap - r->in.len - 1));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  rawreq *r = s->data;
  if (n > 0) {
    r->in.len += (size_t)n;
    r->in.p[r->in.len] = '\0';
  } else if (n < 0) {
    if (n != UV_EOF) r->error = (int)n;
    raw_finish(r);
  }
}

static void raw_written(uv_write_t *w, int status) {
  rawreq *r = w->data;
  if (status < 0) {
    r->error = status;
    raw_finish(r);
  }
}

static void raw_connected(uv_connect_t *c, int status) {
  rawreq *r = c->data;
  if (status < 0) {
    r->error = status;
    raw_finish(r);
    return;
  }
  uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->outlen);
  r->wr.data = r;
  uv_write(&r->wr, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
  uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

static void raw_timeout(uv_timer_t *t) {
  rawreq *r = t->data;
  r->timed_out = true;
  raw_finish(r);
}

/* srv:raw(bytes [, timeout_ms]) → everything the server sent until it closed
 * the connection, and whether the timeout cut it short. */
static int t_raw(lua_State *L) {
  tserver *t = check_srv(L);
  size_t len;
  const char *bytes = luaL_checklstring(L, 2, &len);
  lua_Integer timeout = luaL_optinteger(L, 3, 5000);
  rawreq *r = calloc(1, sizeof *r);
  r->out = bytes;
  r->outlen = len;
  uv_tcp_init(&t->loop, &r->tcp);
  uv_timer_init(&t->loop, &r->timer);
  r->tcp.data = r->timer.data = r->conn.data = r;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", mw_server_port(&t->srv), &addr);
  uv_tcp_connect(&r->conn, &r->tcp, (struct sockaddr *)&addr, raw_connected);
  uv_timer_start(&r->timer, raw_timeout, (uint64_t)timeout, 0);
  while (!r->done) uv_run(&t->loop, UV_RUN_ONCE);
  lua_pushlstring(L, r->in.p ? r->in.p : "", r->in.len);
  lua_pushboolean(L, r->timed_out);
  int err = r->error;
  mw_str_free(&r->in);
  free(r);
  if (err) return luaL_error(L, "request failed: %s", uv_strerror(err));
  return 2;
}

/* srv:run(ms): lets the loop run for ms (timers, pending work). */
static void run_timer_cb(uv_timer_t *h) { *(bool *)h->data = true; }
static void run_closed(uv_handle_t *h) { (void)h; }

static int t_run(lua_State *L) {
  tserver *t = check_srv(L);
  lua_Integer ms = luaL_optinteger(L, 2, 0);
  uv_timer_t timer;
  bool fired = false;
  uv_timer_init(&t->loop, &timer);
  timer.data = &fired;
  uv_timer_start(&timer, run_timer_cb, (uint64_t)ms, 0);
  while (!fired) uv_run(&t->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, run_closed);
  uv_run(&t->loop, UV_RUN_NOWAIT);
  return 0;
}

/* srv:advance(ms): moves the test clock on by ms (app timers fire in order),
 * then lets the loop send what they wrote. */
static int t_advance(lua_State *L) {
  tserver *t = check_srv(L);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0, 2, "milliseconds must be >= 0");
  if (lhost_advance_clock(t->host, (uint64_t)ms)) return luaL_error(L, "advance: the server runs on the real clock (start it with clock = \"test\")");
  uv_run(&t->loop, UV_RUN_NOWAIT);
  return 0;
}

static void t_idle(mw_server *srv) {
  tserver *t = (tserver *)((char *)srv - offsetof(tserver, srv));
  t->idle = true;
}

static void walk_close(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void t_shutdown(tserver *t) {
  if (!t->running) return;
  t->running = false;
  t->srv.on_idle_stop = t_idle;
  mw_server_stop(&t->srv);
  for (int i = 0; i < 2000 && !t->idle && t->srv.nconns; i++) uv_run(&t->loop, UV_RUN_ONCE);
  lhost_free(t->host);
  t->host = NULL;
  mw_db_close(t->db);
  t->db = NULL;
  mw_server_close(&t->srv);
  uv_walk(&t->loop, walk_close, NULL);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  uv_loop_close(&t->loop);
  static_free(t->st);
  t->st = NULL;
}

static int t_stop(lua_State *L) {
  tserver *t = luaL_checkudata(L, 1, SERVER_MT);
  t_shutdown(t);
  return 0;
}

static int t_gc(lua_State *L) {
  tserver *t = luaL_checkudata(L, 1, SERVER_MT);
  if (t->running) t_shutdown(t);
  return 0;
}

int luaopen_moonwire_testing_c(lua_State *L) {
  static const luaL_Reg methods[] = {{"port", t_port}, {"raw", t_raw}, {"run", t_run}, {"advance", t_advance}, {"stop", t_stop},
                                     {NULL, NULL}};
  luaL_newmetatable(L, SERVER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, t_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"start", t_start}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
