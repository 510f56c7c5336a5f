/* l_redis.c — moonwire.redis_c: a Redis pub/sub client on the server's
 * libuv loop (hiredis and its libuv adapter), for the Redis adapter
 * (core/lua/moonwire/adapter.lua).
 *
 *   local r = require "moonwire.redis_c"
 *   local client, err = r.new(url, { message = fn(channel, payload, pattern), state = fn(up) })
 *   client:subscribe(ch)   client:unsubscribe(ch)   client:psubscribe(p)   client:punsubscribe(p)
 *   client:publish(ch, payload) → true, or false when Redis is not connected (dropped)
 *   client:numsub(ch, fn)       → later fn(count) or fn(nil, message), exactly once
 *   client:connected()          client:close()
 *
 * hiredis's async API runs on the loop through the event hooks below.
 * Two connections, as socket.io's adapter uses two clients: one publishes
 * and asks (PUBSUB NUMSUB), the other is in subscribed mode. Subscriptions
 * are remembered here and sent again after every reconnect. When either
 * connection fails both are dropped and made again, 100 ms later, then 200,
 * 400... up to 5 s; each change of state is logged once and reported to
 * Lua once (state(false), state(true)), however many attempts it takes.
 *
 * hiredis frees a context itself after a failed connect or a disconnect,
 * and defers redisAsyncFree called from inside that context's callbacks. So
 * a context never outlives its ac->data check: a context this client let go
 * of has ac->data NULL, and its late callbacks are ignored. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lcall.h"
#include "lhost.h"
#include "mw.h"

#define CLIENT_MT "moonwire.redis_client"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 5000

typedef struct name_list {
  char **v;
  size_t *len;
  size_t n, cap;
} name_list;

typedef struct rclient rclient;

/* A numsub waiting for its answer (or, with ac == NULL, for the loop turn
 * that tells it Redis is away). */
typedef struct pending {
  rclient *c; /* NULL once the client is gone: the reply is then dropped */
  int fn_ref;
  const char *msg; /* for the deferred ones */
  struct pending *prev, *next;
} pending;

struct rclient {
  lua_State *L;
  uv_loop_t *loop;
  char host[256];
  int port, db;
  char *user, *pass;
  char where[300]; /* host:port, for the log */
  redisAsyncContext *pub, *sub;
  bool pub_ready, sub_ready;
  bool sub_sent;      /* the subscriptions went out on this sub connection */
  bool sub_pinged;    /* its PING (after AUTH and SELECT) was answered */
  size_t sub_pending; /* subscriptions sent at connect and not yet confirmed */
  bool up;          /* as last told to Lua */
  bool down_logged; /* the current outage was logged */
  bool retrying;    /* the retry timer is armed */
  bool closed, in_gc;
  uint64_t backoff;
  uv_timer_t retry, deadline, defer;
  int open_handles;
  int handlers_ref;
  name_list channels, patterns;
  pending *waiting;  /* sent to Redis */
  pending *deferred; /* to be told "not connected" on the next loop turn */
  rclient *next_live;
  rclient **handle; /* the Lua handle's pointer to this client: cleared on close */
};

static rclient *live; /* every open client, for l_redis_stop_all */

/* ---- small helpers ---- */

static int list_find(name_list *l, const char *s, size_t n) {
  for (size_t i = 0; i < l->n; i++)
    if (l->len[i] == n && memcmp(l->v[i], s, n) == 0) return (int)i;
  return -1;
}

static bool list_add(name_list *l, const char *s, size_t n) {
  if (list_find(l, s, n) >= 0) return false;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    char **v = realloc(l->v, cap * sizeof *v);
    if (!v) return false;
    l->v = v;
    size_t *len = realloc(l->len, cap * sizeof *len);
    if (!len) return false;
    l->len = len;
    l->cap = cap;
  }
  char *copy = malloc(n + 1);
  if (!copy) return false;
  memcpy(copy, s, n);
  copy[n] = 0;
  l->v[l->n] = copy;
  l->len[l->n++] = n;
  return true;
}

static bool list_del(name_list *l, const char *s, size_t n) {
  int i = list_find(l, s, n);
  if (i < 0) return false;
  free(l->v[i]);
  l->v[i] = l->v[l->n - 1];
  l->len[i] = l->len[l->n - 1];
  l->n--;
  return true;
}

static void list_free(name_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  free(l->len);
  *l = (name_list){0};
}

static void unlink_pending(pending **head, pending *p) {
  if (p->prev) p->prev->next = p->next;
  else *head = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void push_pending(pending **head, pending *p) {
  p->prev = NULL;
  p->next = *head;
  if (*head) (*head)->prev = p;
  *head = p;
}

/* Calls handlers[name](...) with the nargs values on top of the stack. */
static void call_handler(rclient *c, const char *name, int nargs) {
  lua_State *L = c->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->handlers_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, nargs + 1);
    return;
  }
  lua_insert(L, -(nargs + 1));
  char what[48];
  snprintf(what, sizeof what, "redis %s handler", name);
  if (lcall_pcall(L, nargs, 0, what) != LUA_OK) lua_pop(L, 1);
}

/* fn(nil, msg) or fn(count) for a numsub, and its reference dropped. */
static void answer(lua_State *L, int fn_ref, long long count, const char *msg) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
  if (msg) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
  } else {
    lua_pushinteger(L, (lua_Integer)count);
    lua_pushnil(L);
  }
  if (lcall_pcall(L, 2, 0, "redis numsub callback") != LUA_OK) lua_pop(L, 1);
}

/* ---- connection state ---- */

static void connect_both(rclient *c);
static void on_retry(uv_timer_t *t);

/* Lets go of a context: its late callbacks see ac->data NULL. */
static void drop(redisAsyncContext **slot) {
  redisAsyncContext *ac = *slot;
  *slot = NULL;
  if (!ac) return;
  ac->data = NULL;
  redisAsyncFree(ac); /* deferred by hiredis when inside its callback */
}

/* Pending numsubs hear that the connection went. */
static void fail_waiting(rclient *c, const char *msg) {
  while (c->waiting) {
    pending *p = c->waiting;
    unlink_pending(&c->waiting, p);
    p->c = NULL; /* hiredis still holds it: freed when its callback comes */
    if (!c->in_gc) answer(c->L, p->fn_ref, 0, msg);
    else luaL_unref(c->L, LUA_REGISTRYINDEX, p->fn_ref);
    p->fn_ref = LUA_NOREF;
  }
}

/* Either connection failed (or never came): both go, and a retry is armed. */
static void went_down(rclient *c, const char *why) {
  if (c->closed || c->retrying) return;
  drop(&c->pub);
  drop(&c->sub);
  c->pub_ready = c->sub_ready = c->sub_sent = c->sub_pinged = false;
  uv_timer_stop(&c->deadline);
  fail_waiting(c, "redis connection lost");
  if (!c->down_logged) {
    c->down_logged = true;
    if (c->up) mw_log(MW_LOG_WARN, "redis: lost the connection to %s (%s); reconnecting", c->where, why);
    else mw_log(MW_LOG_WARN, "redis: cannot connect to %s (%s); retrying", c->where, why);
  }
  c->retrying = true;
  uv_timer_start(&c->retry, on_retry, c->backoff, 0);
  c->backoff = c->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff * 2;
  if (c->up) {
    c->up = false;
    lua_pushboolean(c->L, 0);
    call_handler(c, "state", 1);
  }
}

static void on_retry(uv_timer_t *t) {
  rclient *c = t->data;
  c->retrying = false;
  if (!c->closed) connect_both(c);
}

static void on_deadline(uv_timer_t *t) {
  rclient *c = t->data;
  if (!(c->pub_ready && c->sub_ready)) went_down(c, "timed out");
}

static void check_ready(rclient *c) {
  if (!c->pub_ready || !c->sub_ready || c->up) return;
  uv_timer_stop(&c->deadline);
  c->up = true;
  c->down_logged = false;
  c->backoff = BACKOFF_MIN_MS;
  mw_log(MW_LOG_INFO, "redis: connected to %s", c->where);
  lua_pushboolean(c->L, 1);
  call_handler(c, "state", 1);
}

/* The reply to the PING sent after AUTH and SELECT: the connection works. */
static void on_ping(redisAsyncContext *ac, void *r, void *priv) {
  rclient *c = ac->data;
  redisReply *reply = r;
  if (!c) return;
  if (!reply) return; /* the disconnect callback tells */
  if (reply->type == REDIS_REPLY_ERROR) {
    char why[200];
    snprintf(why, sizeof why, "%s", reply->str);
    went_down(c, why);
    return;
  }
  if (ac == c->pub) {
    c->pub_ready = true;
  } else if (ac == c->sub) {
    c->sub_pinged = true;
    c->sub_ready = c->sub_pending == 0;
  }
  check_ready(c);
}

/* AUTH or SELECT refused: say why (PING, which follows, fails too). */
static void on_setup(redisAsyncContext *ac, void *r, void *priv) {
  rclient *c = ac->data;
  redisReply *reply = r;
  if (!c || !reply || reply->type != REDIS_REPLY_ERROR) return;
  char why[200];
  snprintf(why, sizeof why, "%s: %s", (const char *)priv, reply->str);
  went_down(c, why);
}

/* Every message of every subscription comes here. */
static void on_sub(redisAsyncContext *ac, void *r, void *priv) {
  rclient *c = ac->data;
  redisReply *reply = r;
  if (!c || c->closed || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
  redisReply *kind = reply->element[0];
  if (kind->type != REDIS_REPLY_STRING) return;
  if (!strcmp(kind->str, "subscribe") || !strcmp(kind->str, "psubscribe")) {
    /* The connection is ready once Redis confirmed what it was sent at
     * connect: then a publish from anywhere reaches this client. */
    if (ac == c->sub && c->sub_pending > 0 && --c->sub_pending == 0 && c->sub_pinged) {
      c->sub_ready = true;
      check_ready(c);
    }
    return;
  }
  lua_State *L = c->L;
  if (!strcmp(kind->str, "message") && reply->elements == 3) {
    lua_pushlstring(L, reply->element[1]->str, reply->element[1]->len);
    lua_pushlstring(L, reply->element[2]->str, reply->element[2]->len);
    call_handler(c, "message", 2);
  } else if (!strcmp(kind->str, "pmessage") && reply->elements == 4) {
    lua_pushlstring(L, reply->element[2]->str, reply->element[2]->len);
    lua_pushlstring(L, reply->element[3]->str, reply->element[3]->len);
    lua_pushlstring(L, reply->element[1]->str, reply->element[1]->len);
    call_handler(c, "message", 3);
  }
}

static void send_sub(rclient *c, const char *cmd, const char *s, size_t n) {
  const char *argv[2] = {cmd, s};
  size_t lens[2] = {strlen(cmd), n};
  redisAsyncCommandArgv(c->sub, on_sub, NULL, 2, argv, lens);
}

static void on_connect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  rclient *c = ac->data;
  if (!c) return;
  if (status != REDIS_OK) {
    /* hiredis frees it after this returns */
    char why[200];
    snprintf(why, sizeof why, "%s", ac->errstr[0] ? ac->errstr : "connection refused");
    if (ac == c->pub) c->pub = NULL;
    if (ac == c->sub) c->sub = NULL;
    ac->data = NULL;
    went_down(c, why);
    return;
  }
  if (c->pass) {
    if (c->user) redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s %s", c->user, c->pass);
    else redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s", c->pass);
  }
  if (c->db) redisAsyncCommand(ac, on_setup, "SELECT", "SELECT %d", c->db);
  redisAsyncCommand(ac, on_ping, NULL, "PING"); /* before any SUBSCRIBE: a plain reply */
  if (ac == c->sub) {
    for (size_t i = 0; i < c->channels.n; i++) send_sub(c, "SUBSCRIBE", c->channels.v[i], c->channels.len[i]);
    for (size_t i = 0; i < c->patterns.n; i++) send_sub(c, "PSUBSCRIBE", c->patterns.v[i], c->patterns.len[i]);
    c->sub_pending = c->channels.n + c->patterns.n;
    c->sub_sent = true;
  }
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  rclient *c = ac->data;
  if (!c) return;
  /* hiredis frees it after this returns */
  if (ac == c->pub) c->pub = NULL;
  if (ac == c->sub) c->sub = NULL;
  ac->data = NULL;
  char why[200];
  snprintf(why, sizeof why, "%s", status == REDIS_OK ? "closed by the server" : ac->errstr[0] ? ac->errstr : "error");
  went_down(c, why);
}

/* ---- hiredis on the libuv loop ----
 *
 * The hooks of hiredis's adapters/libuv.h, with one difference: that
 * adapter (0.14) drops a poll callback with an error status, and libuv
 * gives one (and stops the handle) when the socket has an error pending —
 * a refused connect, a reset connection. hiredis then never hears of it,
 * so a connect to a closed port waited for the timeout and a reset
 * connection looked alive forever. Here an error is handed to hiredis as
 * readable and writable, and its read or connect check finds the error. */

typedef struct uv_events {
  redisAsyncContext *ac; /* NULL once hiredis cleaned up */
  uv_poll_t handle;
  int events;
} uv_events;

static void ev_poll(uv_poll_t *h, int status, int events) {
  uv_events *p = h->data;
  if (status < 0) events = UV_READABLE | UV_WRITABLE;
  if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void ev_update(uv_events *p) {
  if (p->events) uv_poll_start(&p->handle, p->events, ev_poll);
  else uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d) {
  uv_events *p = d;
  p->events |= UV_READABLE;
  ev_update(p);
}

static void ev_del_read(void *d) {
  uv_events *p = d;
  p->events &= ~UV_READABLE;
  ev_update(p);
}

static void ev_add_write(void *d) {
  uv_events *p = d;
  p->events |= UV_WRITABLE;
  ev_update(p);
}

static void ev_del_write(void *d) {
  uv_events *p = d;
  p->events &= ~UV_WRITABLE;
  ev_update(p);
}

static void ev_closed(uv_handle_t *h) { free(h->data); }

static void ev_cleanup(void *d) {
  uv_events *p = d;
  p->ac = NULL;
  uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  uv_events *p = calloc(1, sizeof *p);
  if (!p) return REDIS_ERR;
  if (uv_poll_init(loop, &p->handle, ac->c.fd)) {
    free(p);
    return REDIS_ERR;
  }
  p->ac = ac;
  p->handle.data = p;
  ac->ev.data = p;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return REDIS_OK;
}

static redisAsyncContext *open_one(rclient *c, const char **err) {
  redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
  if (!ac) {
    *err = "out of memory";
    return NULL;
  }
  if (ac->err) {
    static char why[200];
    snprintf(why, sizeof why, "%s", ac->errstr);
    *err = why;
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = c;
  if (ev_attach(ac, c->loop) != REDIS_OK) {
    *err = "cannot attach to the loop";
    ac->data = NULL;
    redisAsyncFree(ac);
    return NULL;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  return ac;
}

static void connect_both(rclient *c) {
  const char *err = NULL;
  c->pub = open_one(c, &err);
  if (c->pub) c->sub = open_one(c, &err);
  if (!c->pub || !c->sub) {
    went_down(c, err ? err : "cannot connect");
    return;
  }
  uv_timer_start(&c->deadline, on_deadline, CONNECT_TIMEOUT_MS, 0);
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h) {
  rclient *c = h->data;
  if (--c->open_handles == 0) free(c);
}

static void on_defer(uv_timer_t *t);

static void client_close(rclient *c) {
  if (c->closed) return;
  c->closed = true;
  /* The handle goes stale now (its methods raise "the client is closed"),
   * not when c is freed: a close from l_redis_stop_all leaves no handle
   * pointing at freed memory for its __gc. */
  if (c->handle) *c->handle = NULL;
  c->handle = NULL;
  for (rclient **p = &live; *p; p = &(*p)->next_live) {
    if (*p == c) {
      *p = c->next_live;
      break;
    }
  }
  fail_waiting(c, "redis client closed");
  drop(&c->pub);
  drop(&c->sub);
  while (c->deferred) {
    pending *p = c->deferred;
    unlink_pending(&c->deferred, p);
    if (!c->in_gc) answer(c->L, p->fn_ref, 0, p->msg);
    else luaL_unref(c->L, LUA_REGISTRYINDEX, p->fn_ref);
    free(p);
  }
  luaL_unref(c->L, LUA_REGISTRYINDEX, c->handlers_ref);
  c->handlers_ref = LUA_NOREF;
  list_free(&c->channels);
  list_free(&c->patterns);
  free(c->user);
  free(c->pass);
  c->user = c->pass = NULL;
  uv_close((uv_handle_t *)&c->retry, on_handle_closed);
  uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
  uv_close((uv_handle_t *)&c->defer, on_handle_closed);
}

void l_redis_stop_all(lua_State *L) {
  for (rclient *c = live, *next; c; c = next) {
    next = c->next_live;
    if (c->L == L) client_close(c);
  }
}

/* ---- the Lua side ---- */

typedef struct {
  rclient *c; /* NULL once closed */
} ud_t;

static rclient *check_open(lua_State *L) {
  ud_t *u = luaL_checkudata(L, 1, CLIENT_MT);
  if (!u->c) luaL_error(L, "redis: the client is closed");
  return u->c;
}

static int c_sub_op(lua_State *L, bool pattern, bool add) {
  rclient *c = check_open(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  name_list *l = pattern ? &c->patterns : &c->channels;
  bool changed = add ? list_add(l, s, n) : list_del(l, s, n);
  if (changed && c->sub && c->sub_sent)
    send_sub(c, add ? (pattern ? "PSUBSCRIBE" : "SUBSCRIBE") : (pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE"), s, n);
  return 0;
}

static int c_subscribe(lua_State *L) { return c_sub_op(L, false, true); }
static int c_unsubscribe(lua_State *L) { return c_sub_op(L, false, false); }
static int c_psubscribe(lua_State *L) { return c_sub_op(L, true, true); }
static int c_punsubscribe(lua_State *L) { return c_sub_op(L, true, false); }

static int c_publish(lua_State *L) {
  rclient *c = check_open(L);
  size_t cn, pn;
  const char *ch = luaL_checklstring(L, 2, &cn);
  const char *payload = luaL_checklstring(L, 3, &pn);
  if (!c->up || !c->pub) {
    lua_pushboolean(L, 0);
    return 1;
  }
  const char *argv[3] = {"PUBLISH", ch, payload};
  size_t lens[3] = {7, cn, pn};
  lua_pushboolean(L, redisAsyncCommandArgv(c->pub, NULL, NULL, 3, argv, lens) == REDIS_OK);
  return 1;
}

static void on_numsub(redisAsyncContext *ac, void *r, void *priv) {
  pending *p = priv;
  redisReply *reply = r;
  rclient *c = p->c;
  if (!c) { /* the client let go of it */
    free(p);
    return;
  }
  unlink_pending(&c->waiting, p);
  int ref = p->fn_ref;
  free(p);
  if (!reply) {
    answer(c->L, ref, 0, "redis connection lost");
  } else if (reply->type == REDIS_REPLY_ERROR) {
    answer(c->L, ref, 0, reply->str);
  } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[1]->type == REDIS_REPLY_INTEGER) {
    answer(c->L, ref, reply->element[1]->integer, NULL);
  } else {
    answer(c->L, ref, 0, "redis: an unexpected reply to PUBSUB NUMSUB");
  }
}

static void on_defer(uv_timer_t *t) {
  rclient *c = t->data;
  while (c->deferred && !c->closed) {
    pending *p = c->deferred;
    unlink_pending(&c->deferred, p);
    int ref = p->fn_ref;
    const char *msg = p->msg;
    free(p);
    answer(c->L, ref, 0, msg);
  }
}

static int c_numsub(lua_State *L) {
  rclient *c = check_open(L);
  size_t n;
  const char *ch = luaL_checklstring(L, 2, &n);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  pending *p = calloc(1, sizeof *p);
  if (!p) return luaL_error(L, "redis: out of memory");
  lua_pushvalue(L, 3);
  p->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->c = c;
  if (c->up && c->pub) {
    const char *argv[3] = {"PUBSUB", "NUMSUB", ch};
    size_t lens[3] = {6, 6, n};
    if (redisAsyncCommandArgv(c->pub, on_numsub, p, 3, argv, lens) == REDIS_OK) {
      push_pending(&c->waiting, p);
      return 0;
    }
  }
  p->msg = "redis is not connected";
  push_pending(&c->deferred, p);
  uv_timer_start(&c->defer, on_defer, 0, 0);
  return 0;
}

static int c_connected(lua_State *L) {
  ud_t *u = luaL_checkudata(L, 1, CLIENT_MT);
  lua_pushboolean(L, u->c && u->c->up);
  return 1;
}

static int c_close(lua_State *L) {
  ud_t *u = luaL_checkudata(L, 1, CLIENT_MT);
  if (u->c) client_close(u->c);
  u->c = NULL;
  return 0;
}

static int c_gc(lua_State *L) {
  ud_t *u = luaL_checkudata(L, 1, CLIENT_MT);
  if (u->c && !u->c->closed) {
    u->c->in_gc = true;
    client_close(u->c);
  }
  u->c = NULL;
  return 0;
}

/* redis://[user[:password]@]host[:port][/db]; host may be [v6]. NULL or
 * what is wrong. */
static const char *parse_url(rclient *c, const char *url) {
  if (strncmp(url, "redis://", 8)) return "expected redis://host:port";
  const char *p = url + 8;
  const char *at = strrchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (colon > p) c->user = strndup(p, (size_t)(colon - p));
      c->pass = strndup(colon + 1, (size_t)(at - colon - 1));
    } else {
      c->pass = strndup(p, (size_t)(at - p)); /* redis://password@host */
    }
    p = at + 1;
  }
  const char *host_end;
  if (*p == '[') {
    host_end = strchr(p, ']');
    if (!host_end) return "an IPv6 address without its ']'";
    p++;
  } else {
    host_end = p + strcspn(p, ":/");
  }
  size_t hl = (size_t)(host_end - p);
  if (hl == 0) return "no host";
  if (hl >= sizeof c->host) return "the host name is too long";
  memcpy(c->host, p, hl);
  c->host[hl] = 0;
  p = host_end + (*host_end == ']');
  c->port = 6379;
  if (*p == ':') {
    char *end;
    errno = 0;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || errno || port < 1 || port > 65535) return "a bad port";
    c->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    long db = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end || db < 0 || db > 1000000) return "a bad database number";
    c->db = (int)db;
    p = end;
  } else if (*p == '/') {
    p++;
  }
  if (*p) return "unexpected characters after the address";
  snprintf(c->where, sizeof c->where, strchr(c->host, ':') ? "[%s]:%d" : "%s:%d", c->host, c->port);
  return NULL;
}

const char *l_redis_check_url(const char *url) {
  rclient c = {0};
  const char *bad = parse_url(&c, url);
  free(c.user);
  free(c.pass);
  return bad;
}

static int r_new(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
  rclient *c = calloc(1, sizeof *c);
  if (!c) return luaL_error(L, "redis: out of memory");
  const char *bad = parse_url(c, url);
  if (bad) {
    free(c->user);
    free(c->pass);
    free(c);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", url, bad);
    return 2;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  c->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  c->loop = loop;
  c->backoff = BACKOFF_MIN_MS;
  lua_pushvalue(L, 2);
  c->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(loop, &c->retry);
  uv_timer_init(loop, &c->deadline);
  uv_timer_init(loop, &c->defer);
  c->retry.data = c->deadline.data = c->defer.data = c;
  c->open_handles = 3;
  c->next_live = live;
  live = c;
  ud_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->c = c;
  c->handle = &u->c;
  luaL_setmetatable(L, CLIENT_MT);
  connect_both(c);
  return 1;
}

static int open_redis(lua_State *L) {
  static const luaL_Reg methods[] = {{"subscribe", c_subscribe},     {"unsubscribe", c_unsubscribe},
                                     {"psubscribe", c_psubscribe},   {"punsubscribe", c_punsubscribe},
                                     {"publish", c_publish},         {"numsub", c_numsub},
                                     {"connected", c_connected},     {"close", c_close},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, CLIENT_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, c_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, r_new, 1);
  lua_setfield(L, -2, "new");
  return 1;
}

void l_redis_open(lua_State *L, uv_loop_t *loop) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushlightuserdata(L, loop);
  lua_pushcclosure(L, open_redis, 1);
  lua_setfield(L, -2, "moonwire.redis_c");
  lua_pop(L, 1);
}
