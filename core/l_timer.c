/* l_timer.c — moonwire.timer: libuv timers for the app. A callback's error
 * is logged with its traceback and the timer keeps running. Timers belong to
 * the app: l_timer_stop_all stops every one of them (shutdown). */
#include <lauxlib.h>
#include <stdlib.h>

#include "l_io.h"
#include "lhost.h"

#define TIMER_MT "moonwire.timer"

typedef struct ltimer {
  uv_timer_t t;
  lua_State *L;
  int fn_ref, self_ref;
  bool repeat, stopped;
  struct ltimer *prev, *next;
} ltimer;

typedef struct handle {
  ltimer *t; /* NULL once stopped */
} handle;

static ltimer *all_timers;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void timer_stop(ltimer *t) {
  if (t->stopped) return;
  t->stopped = true;
  lua_State *L = t->L;
  luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
  /* the handle userdata may still be referenced by Lua: cut its pointer */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  handle *h = luaL_testudata(L, -1, TIMER_MT);
  if (h) h->t = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  if (t->prev) t->prev->next = t->next;
  else all_timers = t->next;
  if (t->next) t->next->prev = t->prev;
  uv_close((uv_handle_t *)&t->t, on_closed);
}

static void on_fire(uv_timer_t *ut) {
  ltimer *t = ut->data;
  lua_State *L = t->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  lhost_pcall(L, 1, 0, t->repeat ? "timer.every callback" : "timer.after callback");
  lua_settop(L, top);
  if (!t->repeat) timer_stop(t);
}

static int start(lua_State *L, bool repeat) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (ms < 0) return luaL_argerror(L, 1, "milliseconds must be >= 0");
  if (repeat && ms < 1) return luaL_argerror(L, 1, "timer.every needs at least 1 ms");
  uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
  ltimer *t = calloc(1, sizeof *t);
  if (!t) return luaL_error(L, "out of memory");
  /* Callbacks run on the main thread, never on the (pooled) coroutine that
   * happened to create the timer. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  t->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  t->repeat = repeat;
  uv_timer_init(loop, &t->t);
  t->t.data = t;
  lua_pushvalue(L, 2);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->t = t;
  luaL_setmetatable(L, TIMER_MT);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->next = all_timers;
  if (all_timers) all_timers->prev = t;
  all_timers = t;
  uint64_t m = (uint64_t)ms;
  uv_timer_start(&t->t, on_fire, m, repeat ? m : 0);
  return 1;
}

static int l_after(lua_State *L) { return start(L, false); }
static int l_every(lua_State *L) { return start(L, true); }

static int h_stop(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, TIMER_MT);
  if (h->t) timer_stop(h->t);
  return 0;
}

static int h_active(lua_State *L) {
  handle *h = luaL_checkudata(L, 1, TIMER_MT);
  lua_pushboolean(L, h->t != NULL);
  return 1;
}

static int open_timer(lua_State *L) {
  static const luaL_Reg fns[] = {{"after", l_after}, {"every", l_every}, {NULL, NULL}};
  luaL_newlibtable(L, fns);
  lua_pushvalue(L, lua_upvalueindex(1));
  luaL_setfuncs(L, fns, 1);
  return 1;
}

int l_timer_open(lua_State *L, uv_loop_t *loop) {
  static const luaL_Reg methods[] = {{"stop", h_stop}, {"active", h_active}, {NULL, NULL}};
  luaL_newmetatable(L, TIMER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushlightuserdata(L, loop);
  lua_pushcclosure(L, open_timer, 1);
  lua_setfield(L, -2, "moonwire.timer");
  lua_pop(L, 1);
  return 0;
}

void l_timer_stop_all(lua_State *L) {
  (void)L;
  while (all_timers) timer_stop(all_timers);
}
