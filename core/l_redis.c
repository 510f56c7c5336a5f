/* l_redis.c — moonwire.redis_c: the Redis pub/sub client (redis.c) for the
 * Redis adapter (core/embedded/lua/moonwire/adapter.lua).
 *
 *   local r = require "moonwire.redis_c"
 *   local client, err = r.new(url, { message = fn(channel, payload, pattern), state = fn(up) })
 *   client:subscribe(ch)   client:unsubscribe(ch)   client:psubscribe(p)   client:punsubscribe(p)
 *   client:publish(ch, payload) → true, or false when Redis is not connected (dropped)
 *   client:numsub(ch, fn)       → later fn(count) or fn(nil, message), exactly once
 *   client:connected()          client:close()
 *
 * The handlers run on the VM's main thread, through lcall_pcall: an error
 * in one is logged, and the client goes on. */
#include "l_redis.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>

#include "lcall.h"
#include "lmodule.h"
#include "redis.h"
#include "server.h"

#define CLIENT_MT "moonwire.redis_client"

/* A client as Lua holds it (the userdata): the C client's owner. */
typedef struct l_redis {
  redis_client *c; /* NULL once closed */
  lua_State *L;    /* the main thread: handlers run there */
  int handlers_ref;
  bool in_gc; /* closed by __gc: waiting callbacks are dropped, not called */
  struct l_redis *next_live;
} l_redis;

static l_redis *live; /* every open client, for l_redis_stop_all */

/* Calls handlers[name](...) with the nargs values on top of the stack. */
static void call_handler(l_redis *u, const char *name, int nargs) {
  lua_State *L = u->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->handlers_ref);
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

static void on_message(void *ud, const redis_msg *m) {
  l_redis *u = ud;
  lua_State *L = u->L;
  lua_pushlstring(L, m->channel, m->channel_len);
  lua_pushlstring(L, m->payload, m->payload_len);
  if (m->pattern) lua_pushlstring(L, m->pattern, m->pattern_len);
  call_handler(u, "message", m->pattern ? 3 : 2);
}

static void on_state(void *ud, bool up) {
  l_redis *u = ud;
  lua_pushboolean(u->L, up);
  call_handler(u, "state", 1);
}

/* fn(nil, msg) or fn(count) for a numsub (req is fn's reference), and the
 * reference dropped. */
static void on_numsub(void *ud, void *req, long long count, const char *err) {
  l_redis *u = ud;
  lua_State *L = u->L;
  int ref = (int)(intptr_t)req;
  if (u->in_gc) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
  } else {
    lua_pushinteger(L, (lua_Integer)count);
    lua_pushnil(L);
  }
  if (lcall_pcall(L, 2, 0, "redis numsub callback") != LUA_OK) lua_pop(L, 1);
}

static const redis_events events = {on_message, on_state, on_numsub};

/* Closes u's client (what waits for it hears of it, unless in_gc). */
static void client_close(l_redis *u) {
  if (!u->c) return;
  for (l_redis **p = &live; *p; p = &(*p)->next_live) {
    if (*p == u) {
      *p = u->next_live;
      break;
    }
  }
  redis_client_close(u->c); /* callbacks may run Lua, which may call close again */
  u->c = NULL;
  luaL_unref(u->L, LUA_REGISTRYINDEX, u->handlers_ref);
  u->handlers_ref = LUA_NOREF;
}

void l_redis_stop_all(lua_State *L) {
  /* From the head each time: a client's callbacks may close others. */
  for (;;) {
    l_redis *u = live;
    while (u && u->L != L) u = u->next_live;
    if (!u) return;
    client_close(u);
  }
}

static redis_client *check_open(lua_State *L) {
  l_redis *u = luaL_checkudata(L, 1, CLIENT_MT);
  if (!u->c) luaL_error(L, "redis: the client is closed");
  return u->c;
}

static int c_sub_op(lua_State *L, bool pattern, bool add) {
  redis_client *c = check_open(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (add) redis_client_subscribe(c, s, n, pattern);
  else redis_client_unsubscribe(c, s, n, pattern);
  return 0;
}

static int c_subscribe(lua_State *L) { return c_sub_op(L, false, true); }
static int c_unsubscribe(lua_State *L) { return c_sub_op(L, false, false); }
static int c_psubscribe(lua_State *L) { return c_sub_op(L, true, true); }
static int c_punsubscribe(lua_State *L) { return c_sub_op(L, true, false); }

static int c_publish(lua_State *L) {
  redis_client *c = check_open(L);
  size_t cn, pn;
  const char *ch = luaL_checklstring(L, 2, &cn);
  const char *payload = luaL_checklstring(L, 3, &pn);
  lua_pushboolean(L, redis_client_publish(c, ch, cn, payload, pn) == 0);
  return 1;
}

static int c_numsub(lua_State *L) {
  redis_client *c = check_open(L);
  size_t n;
  const char *ch = luaL_checklstring(L, 2, &n);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_pushvalue(L, 3);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (redis_client_numsub(c, ch, n, (void *)(intptr_t)ref) != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "redis: out of memory");
  }
  return 0;
}

static int c_connected(lua_State *L) {
  l_redis *u = luaL_checkudata(L, 1, CLIENT_MT);
  lua_pushboolean(L, u->c && redis_client_up(u->c));
  return 1;
}

static int c_close(lua_State *L) {
  client_close(luaL_checkudata(L, 1, CLIENT_MT));
  return 0;
}

static int c_gc(lua_State *L) {
  l_redis *u = luaL_checkudata(L, 1, CLIENT_MT);
  u->in_gc = true;
  client_close(u);
  return 0;
}

static int r_new(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
  l_redis *u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = (l_redis){.handlers_ref = LUA_NOREF};
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  u->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  const char *bad = NULL;
  int r = redis_client_new(&u->c, loop, url, &events, u, &bad);
  if (r == -EINVAL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", url, bad);
    return 2;
  }
  if (r) return luaL_error(L, "redis: out of memory");
  luaL_setmetatable(L, CLIENT_MT); /* from here __gc closes it */
  lua_pushvalue(L, 2);
  u->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  u->next_live = live;
  live = u;
  return 1;
}

int luaopen_moonwire_redis_c(lua_State *L) {
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
  lua_pushlightuserdata(L, lmodule_env_of(L)->srv->loop);
  lua_pushcclosure(L, r_new, 1);
  lua_setfield(L, -2, "new");
  return 1;
}
