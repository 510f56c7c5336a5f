/* l_testing.c — moonwire.testing_c: runs the real server inside a test
 * process (busted) on its own libuv loop, on an ephemeral loopback port, and
 * talks to it over real sockets. The Lua side is core/embedded/lua/moonwire/testing.lua. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "db.h"
#include "migrate.h"
#include "lhost.h"
#include "server.h"
#include "static.h"

#define SERVER_MT "moonwire.testing.server"

typedef struct tserver {
  uv_loop_t loop;
  mw_server srv;
  http_site site;           /* the listener's user data */
  mw_db *db;
  mw_static *st;
  lhost *host;
  char root[PATH_MAX];
  char db_path[PATH_MAX];
  bool running, idle;
  struct wsclient *clients; /* WebSocket test clients, closed on shutdown */
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
  cfg.http.quiet = true;
  lua_getfield(L, 1, "root");
  if (!realpath(luaL_checkstring(L, -1), t->root)) return luaL_error(L, "root: %s", strerror(errno));
  lua_getfield(L, 1, "db");
  snprintf(t->db_path, sizeof t->db_path, "%s", luaL_checkstring(L, -1));
  lua_getfield(L, 1, "dev");
  cfg.app.dev = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
  lua_getfield(L, 1, "quiet");
  if (!lua_isnil(L, -1)) cfg.http.quiet = lua_toboolean(L, -1);
  lua_getfield(L, 1, "seed");
  cfg.app.seed = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "max_body");
  if (!lua_isnil(L, -1)) cfg.http.max_body = (size_t)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "handler_budget");
  if (!lua_isnil(L, -1)) cfg.app.handler_budget_ms = (uint64_t)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "lua_memory");
  if (!lua_isnil(L, -1)) cfg.app.lua_memory = (size_t)luaL_checkinteger(L, -1) << 20;
  lua_pop(L, 2);
  lua_getfield(L, 1, "clock");
  const char *clock = luaL_optstring(L, -1, "real");
  if (!strcmp(clock, "test")) cfg.app.test_clock = true;
  else if (strcmp(clock, "real")) return luaL_error(L, "clock: \"real\" or \"test\", not \"%s\"", clock);
  mw_db_opts db_opts;
  mw_db_opts_default(&db_opts);
  lua_getfield(L, 1, "db_busy_timeout");
  if (!lua_isnil(L, -1)) db_opts.busy_timeout_ms = (uint32_t)luaL_checkinteger(L, -1);
  lua_getfield(L, 1, "db_statement_timeout");
  if (!lua_isnil(L, -1)) db_opts.statement_timeout_ms = (uint32_t)luaL_checkinteger(L, -1);
  lua_pop(L, 8);
  cfg.app.root = t->root;
  cfg.db_path = t->db_path;
  uv_loop_init(&t->loop);
  char err[1024];
  if (mw_db_open(&t->db, t->db_path, err, sizeof err)) return luaL_error(L, "db: %s", err);
  mw_db_configure(t->db, &db_opts);
  char mdir[PATH_MAX + 32];
  snprintf(mdir, sizeof mdir, "%s/scripts/migrations", t->root);
  if (migrate_run(mw_db_handle(t->db), mdir, err, sizeof err)) {
    mw_db_close(t->db);
    t->db = NULL;
    return luaL_error(L, "migration failed: %s", err);
  }
  if (mw_db_start(t->db, &t->loop)) return luaL_error(L, "db: cannot start its threads");
  char pub[PATH_MAX + 16];
  snprintf(pub, sizeof pub, "%s/public", t->root);
  if (static_new(&t->st, &t->loop, pub)) return luaL_error(L, "public/: cannot set up");
  if (mw_server_init(&t->srv, &t->loop, &cfg.server)) return luaL_error(L, "out of memory");
  if (lhost_new(&t->host, &t->srv, &cfg.app, t->db, t->st) == -ENOMEM) return luaL_error(L, "out of memory");
  t->site = (http_site){*lhost_handler(t->host), cfg.http};
  int r = mw_server_listen(&t->srv, "127.0.0.1:0", &(mw_listen_opts){http_conn_attach, &t->site, http_conn_refuse}, NULL);
  if (r) return luaL_error(L, "listen: %s", uv_strerror(r));
  t->running = true;
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

static void run_timer_cb(uv_timer_t *h);
static void run_closed(uv_handle_t *h);

/* ---- a WebSocket client (for the Lua Socket.IO test client) ----
 *
 * srv:ws(target) → client, after the upgrade answered 101 (nil, status or
 * error message otherwise). client:send(data [, binary]) sends one masked
 * frame; client:receive(timeout_ms) → data, binary, or nil and "timeout" or
 * "closed"; client:close(). Pings are answered; the server's frames are never
 * fragmented but continuation frames are joined anyway. */

#define WSC_MT "moonwire.testing.ws"

typedef struct wsmsg {
  struct wsmsg *next;
  size_t len;
  bool binary;
  char data[];
} wsmsg;

typedef struct wsclient {
  uv_tcp_t tcp;
  uv_connect_t conn;
  mw_str in, frag;
  bool frag_binary;
  int status;       /* of the upgrade answer; 0 until it came */
  bool closed;      /* the connection is gone (or never was) */
  bool handle_closed;
  bool orphan;      /* the Lua object is gone: free once the handle closed */
  int error;
  uint32_t mask;
  wsmsg *head, *tail;
  tserver *t;
  struct wsclient *prev, *next; /* in t->clients while the handle is open */
} wsclient;

typedef struct wsref {
  wsclient *c;
  tserver *t;
} wsref;

static void wsc_free(wsclient *c) {
  while (c->head) {
    wsmsg *m = c->head;
    c->head = m->next;
    free(m);
  }
  mw_str_free(&c->in);
  mw_str_free(&c->frag);
  free(c);
}

static void wsc_closed(uv_handle_t *h) {
  wsclient *c = h->data;
  c->handle_closed = true;
  if (c->prev) c->prev->next = c->next;
  else c->t->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->orphan) wsc_free(c);
}

static void wsc_shut(wsclient *c) {
  if (c->closed) return;
  c->closed = true;
  uv_close((uv_handle_t *)&c->tcp, wsc_closed);
}

static void wsc_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

/* Sends one frame, masked as a client must. */
static void wsc_frame(wsclient *c, int opcode, const char *data, size_t len) {
  if (c->closed) return;
  uv_write_t *w = malloc(sizeof *w + 14 + len);
  if (!w) return;
  uint8_t *p = (uint8_t *)(w + 1), *start = p;
  *p++ = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    *p++ = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    *p++ = 0x80 | 126;
    *p++ = (uint8_t)(len >> 8);
    *p++ = (uint8_t)len;
  } else {
    *p++ = 0x80 | 127;
    for (int i = 7; i >= 0; i--) *p++ = (uint8_t)((uint64_t)len >> (8 * i));
  }
  c->mask = c->mask * 1103515245u + 12345u;
  uint8_t key[4] = {(uint8_t)(c->mask >> 24), (uint8_t)(c->mask >> 16), (uint8_t)(c->mask >> 8), (uint8_t)c->mask};
  memcpy(p, key, 4);
  p += 4;
  for (size_t i = 0; i < len; i++) p[i] = (uint8_t)data[i] ^ key[i % 4];
  p += len;
  uv_buf_t b = uv_buf_init((char *)start, (unsigned)(p - start));
  if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, wsc_written)) free(w);
}

static void wsc_push(wsclient *c, const char *data, size_t len, bool binary) {
  wsmsg *m = malloc(sizeof *m + len + 1);
  if (!m) return;
  m->next = NULL;
  m->len = len;
  m->binary = binary;
  memcpy(m->data, data, len);
  m->data[len] = '\0';
  if (c->tail) c->tail->next = m;
  else c->head = m;
  c->tail = m;
}

/* Parses what has arrived: the upgrade answer, then frames. */
static void wsc_parse(wsclient *c) {
  size_t off = 0;
  if (!c->status) {
    char *end = c->in.len ? memmem(c->in.p, c->in.len, "\r\n\r\n", 4) : NULL;
    if (!end) return;
    int status = 0;
    if (sscanf(c->in.p, "HTTP/1.1 %d", &status) != 1) status = -1;
    c->status = status;
    if (status != 101) {
      wsc_shut(c);
      return;
    }
    off = (size_t)(end + 4 - c->in.p);
  }
  for (;;) {
    const uint8_t *p = (const uint8_t *)c->in.p + off;
    size_t avail = c->in.len - off;
    if (avail < 2) break;
    int opcode = p[0] & 0x0f;
    bool fin = p[0] & 0x80, masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (uint64_t)p[2] << 8 | p[3];
      hdr = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
      hdr = 10;
    }
    if (masked) hdr += 4;
    if (avail < hdr || avail - hdr < len) break;
    char *payload = (char *)p + hdr;
    if (masked)
      for (uint64_t i = 0; i < len; i++) payload[i] ^= (char)p[hdr - 4 + i % 4];
    off += hdr + (size_t)len;
    if (opcode == 0x8) {
      wsc_frame(c, 0x8, payload, len >= 2 ? 2 : 0);
      wsc_shut(c);
      break;
    } else if (opcode == 0x9) {
      wsc_frame(c, 0xA, payload, (size_t)len);
    } else if (opcode == 0x1 || opcode == 0x2 || opcode == 0x0) {
      if (opcode != 0x0) c->frag_binary = opcode == 0x2;
      if (fin && opcode != 0x0 && c->frag.len == 0) {
        wsc_push(c, payload, (size_t)len, opcode == 0x2);
      } else {
        mw_str_append(&c->frag, payload, (size_t)len);
        if (fin) {
          wsc_push(c, c->frag.p, c->frag.len, c->frag_binary);
          mw_str_reset(&c->frag);
        }
      }
    }
  }
  if (off) {
    memmove(c->in.p, c->in.p + off, c->in.len - off);
    c->in.len -= off;
  }
}

static void wsc_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)sz;
  wsclient *c = h->data;
  mw_str_reserve(&c->in, 65536);
  *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len - 1));
}

static void wsc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  wsclient *c = s->data;
  if (n > 0) {
    c->in.len += (size_t)n;
    wsc_parse(c);
  } else if (n < 0) {
    if (!c->status) c->status = -1;
    wsc_shut(c);
  }
}

static void wsc_connected(uv_connect_t *req, int status) {
  wsclient *c = req->data;
  if (status < 0) {
    c->error = status;
    c->status = -1;
    wsc_shut(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, wsc_alloc, wsc_read);
}

static wsref *check_ws(lua_State *L) { return luaL_checkudata(L, 1, WSC_MT); }

/* Runs t's loop until done(c) or ms pass; true if done. */
static bool wsc_wait(tserver *t, wsclient *c, lua_Integer ms, bool (*done)(wsclient *)) {
  if (done(c)) return true;
  uv_timer_t timer;
  bool fired = false;
  uv_timer_init(&t->loop, &timer);
  timer.data = &fired;
  uv_update_time(&t->loop);
  uv_timer_start(&timer, run_timer_cb, (uint64_t)ms, 0);
  while (!fired && !done(c)) uv_run(&t->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, run_closed);
  uv_run(&t->loop, UV_RUN_NOWAIT);
  return done(c);
}

static bool wsc_upgraded(wsclient *c) { return c->status != 0; }
static bool wsc_has_msg(wsclient *c) { return c->head || c->closed; }

static int t_ws(lua_State *L) {
  tserver *t = check_srv(L);
  const char *target = luaL_checkstring(L, 2);
  wsclient *c = calloc(1, sizeof *c);
  if (!c) return luaL_error(L, "out of memory");
  c->mask = 0x9e3779b9u;
  c->t = t;
  c->next = t->clients;
  if (t->clients) t->clients->prev = c;
  t->clients = c;
  uv_tcp_init(&t->loop, &c->tcp);
  c->tcp.data = c->conn.data = c;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", mw_server_port(&t->srv), &addr);
  wsref *ref = lua_newuserdatauv(L, sizeof *ref, 0);
  ref->c = c;
  ref->t = t;
  luaL_setmetatable(L, WSC_MT);
  uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&addr, wsc_connected);
  char req[4096];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   target, mw_server_port(&t->srv));
  if (n < 0 || (size_t)n >= sizeof req) return luaL_error(L, "ws: target too long");
  uv_write_t *w = malloc(sizeof *w + (size_t)n);
  memcpy(w + 1, req, (size_t)n);
  uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
  if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, wsc_written)) free(w);
  if (!wsc_wait(t, c, 5000, wsc_upgraded) || c->status != 101) {
    lua_pushnil(L);
    if (c->error) lua_pushstring(L, uv_strerror(c->error));
    else if (c->status > 0) lua_pushinteger(L, c->status);
    else lua_pushliteral(L, "no answer to the upgrade");
    return 2;
  }
  return 1;
}

static int wsc_send(lua_State *L) {
  wsref *r = check_ws(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (r->c->closed) return luaL_error(L, "ws: the connection is closed");
  wsc_frame(r->c, lua_toboolean(L, 3) ? 0x2 : 0x1, data, len);
  uv_run(&r->t->loop, UV_RUN_NOWAIT);
  return 0;
}

static int wsc_receive(lua_State *L) {
  wsref *r = check_ws(L);
  lua_Integer ms = luaL_optinteger(L, 2, 2000);
  wsclient *c = r->c;
  if (!r->t->running) return luaL_error(L, "the test server was stopped");
  wsc_wait(r->t, c, ms, wsc_has_msg);
  if (c->head) {
    wsmsg *m = c->head;
    c->head = m->next;
    if (!c->head) c->tail = NULL;
    lua_pushlstring(L, m->data, m->len);
    lua_pushboolean(L, m->binary);
    free(m);
    return 2;
  }
  lua_pushnil(L);
  lua_pushstring(L, c->closed ? "closed" : "timeout");
  return 2;
}

static int wsc_close(lua_State *L) {
  wsref *r = check_ws(L);
  if (r->c && !r->c->closed) {
    wsc_frame(r->c, 0x8, "\x03\xe8", 2);
    wsc_shut(r->c);
    if (r->t->running) uv_run(&r->t->loop, UV_RUN_NOWAIT);
  }
  return 0;
}

static int wsc_is_closed(lua_State *L) {
  lua_pushboolean(L, check_ws(L)->c->closed);
  return 1;
}

static int wsc_gc(lua_State *L) {
  wsref *r = check_ws(L);
  wsclient *c = r->c;
  if (!c) return 0;
  r->c = NULL;
  c->orphan = true;
  wsc_shut(c);
  if (c->handle_closed) wsc_free(c);
  return 0;
}

/* srv:run(ms): lets the loop run for ms (timers, pending work). */
/* uv_stop as well: a timer that was already due fires in uv_run's timer
 * phase, before the poll, and without the stop the poll would then block
 * until the next timer (a connection's 10-second timeout, say). */
static void run_timer_cb(uv_timer_t *h) {
  *(bool *)h->data = true;
  uv_stop(h->loop);
}
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
 * then lets the loop run until their statements are done and send what
 * they wrote. */
static int t_advance(lua_State *L) {
  tserver *t = check_srv(L);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0, 2, "milliseconds must be >= 0");
  if (lhost_advance_clock(t->host, (uint64_t)ms)) return luaL_error(L, "advance: the server runs on the real clock (start it with clock = \"test\")");
  uv_run(&t->loop, UV_RUN_NOWAIT);
  /* The timers' handlers may wait for their statements: what they send
   * after those goes out too. */
  while (mw_db_pending(t->db)) uv_run(&t->loop, UV_RUN_ONCE);
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
  for (wsclient *c = t->clients; c; c = c->next) wsc_shut(c);
  t->srv.on_idle_stop = t_idle;
  mw_db_stop(t->db, MW_DB_STOP_WAIT_MS);
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

/* setenv(name, value or nil): sets or removes a variable of this process
 * (the app under test reads it with os.getenv). */
static int t_setenv(lua_State *L) {
  const char *k = luaL_checkstring(L, 1);
  if (lua_isnoneornil(L, 2)) unsetenv(k);
  else setenv(k, luaL_checkstring(L, 2), 1);
  return 0;
}

/* now() → milliseconds on a monotonic clock. */
static int t_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
  return 1;
}

int luaopen_moonwire_testing_c(lua_State *L) {
  static const luaL_Reg methods[] = {{"port", t_port}, {"raw", t_raw}, {"run", t_run}, {"advance", t_advance}, {"ws", t_ws}, {"stop", t_stop},
                                     {NULL, NULL}};
  static const luaL_Reg ws_methods[] = {{"send", wsc_send}, {"receive", wsc_receive}, {"close", wsc_close},
                                        {"closed", wsc_is_closed}, {NULL, NULL}};
  luaL_newmetatable(L, WSC_MT);
  luaL_newlib(L, ws_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, wsc_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, SERVER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, t_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"start", t_start}, {"now", t_now}, {"setenv", t_setenv}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
