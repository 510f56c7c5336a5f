/* l_workers.c — moonwire.workers_c: messages between the --workers
 * processes of one server (wlink.c), for moonwire.io.workers_adapter.
 *
 *   local w = require "moonwire.workers_c"
 *   w.self()                 → this worker's index (0..), or nil in a single process
 *   w.count()                → workers configured (1 in a single process)
 *   w.live()                 → workers serving now, as the supervisor last said
 *   w.publish(channel, body) → true, or false, message when there is no link
 *                            or the supervisor holds WLINK_MAX_QUEUED bytes of them
 *   w.listen(fn)             → fn(channel, body) for every other worker's message; nil stops
 *
 * The receiver runs on the VM's main thread through lcall_pcall: an error
 * in it is logged and the next message is delivered. */
#include "l_workers.h"

#include <errno.h>
#include <lauxlib.h>
#include <string.h>

#include "lcall.h"
#include "lmodule.h"
#include "server.h"
#include "wlink.h"

static lua_State *receiver_L; /* the main thread of the VM listening */
static int receiver_ref = LUA_NOREF;

static void on_message(void *ud, const char *channel, size_t clen, const char *body, size_t blen) {
  (void)ud;
  lua_State *L = receiver_L;
  if (!L || receiver_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, receiver_ref);
  lua_pushlstring(L, channel, clen);
  lua_pushlstring(L, body, blen);
  if (lcall_pcall(L, 2, 0, "workers message handler") != LUA_OK) lua_pop(L, 1);
}

void l_workers_stop_all(lua_State *L) {
  if (receiver_L != L) return;
  wlink_on_message(NULL, NULL);
  luaL_unref(L, LUA_REGISTRYINDEX, receiver_ref);
  receiver_ref = LUA_NOREF;
  receiver_L = NULL;
}

static int w_self(lua_State *L) {
  if (wlink_self < 0) lua_pushnil(L);
  else lua_pushinteger(L, wlink_self);
  return 1;
}

static int w_count(lua_State *L) {
  lua_pushinteger(L, wlink_count);
  return 1;
}

static int w_live(lua_State *L) {
  lua_pushinteger(L, wlink_live);
  return 1;
}

static int w_publish(lua_State *L) {
  size_t cn, bn;
  const char *ch = luaL_checklstring(L, 1, &cn);
  const char *body = luaL_checklstring(L, 2, &bn);
  int r = wlink_publish(ch, cn, body, bn);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, r == -ENOTCONN ? "no link to the other workers" : strerror(-r));
  return 2;
}

static int w_listen(lua_State *L) {
  lua_State *main;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (receiver_L == main) {
    luaL_unref(main, LUA_REGISTRYINDEX, receiver_ref);
    receiver_ref = LUA_NOREF;
  }
  if (lua_isnoneornil(L, 1)) {
    if (receiver_L == main) {
      receiver_L = NULL;
      wlink_on_message(NULL, NULL);
    }
    return 0;
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  receiver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  receiver_L = main;
  wlink_on_message(on_message, NULL);
  return 0;
}

int luaopen_moonwire_workers_c(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"self", w_self}, {"count", w_count}, {"live", w_live}, {"publish", w_publish}, {"listen", w_listen}, {NULL, NULL}};
  luaL_newlibtable(L, fns);
  lua_pushlightuserdata(L, lmodule_env_of(L)->srv);
  luaL_setfuncs(L, fns, 1);
  return 1;
}
