/* l_timer.c — moonwire.timer: timers for the app.
 *
 *   timer.after(ms, fn)  → handle     fn(handle) once, ms from now
 *   timer.every(ms, fn)  → handle     fn(handle) every ms
 *   handle:stop(), handle:active()
 *
 * A callback's error is logged with its traceback and the timer keeps
 * running. Timers belong to the app's VM: l_timer_stop_all stops every one of
 * them (shutdown). Callbacks run on the main thread, never on the (pooled)
 * coroutine that happened to create the timer.
 *
 * Two clocks drive them. The real one is libuv's: each timer is a uv_timer_t.
 * The test clock (lhost_opts.test_clock) never moves by itself: time
 * only passes in l_timer_advance, which fires every timer that falls due, in
 * order of due time (then of creation), each at its own instant — so a spec
 * can run an app's 10-second timer a hundred times in no time at all.
 *
 * Hot reload: every timer belongs to the app generation current when it was
 * made (timer._generation(n) sets it); timer._stop_generation(n) stops a
 * generation's timers. The framework's own timers (socket.io ack timeouts,
 * timer._after_system) belong to no generation and survive reloads. */
#include <lauxlib.h>
#include <stdlib.h>

#include "l_timer.h"
#include "lcall.h"
#include "lhost.h" /* lhost_opts */
#include "lmodule.h"
#include "lrunner.h"
#include "server.h"

#define TIMER_MT "moonwire.timer"
#define STATE_KEY "moonwire.timer.state"

typedef struct ltimer ltimer;

typedef struct tstate {
  uv_loop_t *loop;
  lua_State *L; /* the main thread */
  ltimer *all;  /* every running timer */
  bool test_clock;
  uint64_t now;  /* test clock: ms since the VM started */
  uint64_t seq;  /* creation order, to break ties between equal due times */
  lua_Integer gen; /* the app generation new timers belong to */
} tstate;

struct ltimer {
  uv_timer_t t; /* real clock only */
  tstate *st;
  int fn_ref, self_ref;
  uint64_t interval; /* 0 for timer.after */
  uint64_t due, seq; /* test clock only */
  lua_Integer gen;   /* -1: the framework's */
  bool stopped;
  ltimer *prev, *next;
};

typedef struct handle {
  ltimer *t; /* NULL once stopped */
} handle;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void timer_stop(ltimer *t) {
  if (t->stopped) return;
  t->stopped = true;
  tstate *st = t->st;
  lua_State *L = st->L;
  luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
  /* the handle userdata may still be referenced by Lua: cut its pointer */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  handle *h = luaL_testudata(L, -1, TIMER_MT);
  if (h) h->t = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  if (t->prev) t->prev->next = t->next;
  else st->all = t->next;
  if (t->next) t->next->prev = t->prev;
  if (st->test_clock) free(t);
  else uv_close((uv_handle_t *)&t->t, on_closed);
}

/* Runs t's callback; a one-shot timer is stopped afterwards. */
static void fire(ltimer *t) {
  lua_State *L = t->st->L;
  int top = lua_gettop(L);
  const char *what = t->interval ? "timer.every callback" : "timer.after callback";
  /* An app's callback runs as a handler, so it can wait (emitWithAck, app.sleep). */
  bool as_handler = t->gen != -1 && lrunner_push(L, "call");
  if (as_handler) lua_pushstring(L, what);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  lcall_pcall(L, as_handler ? 3 : 1, 0, what);
  lua_settop(L, top);
  if (!t->interval) timer_stop(t);
}

static void on_fire(uv_timer_t *ut) { fire(ut->data); }

static int start(lua_State *L, bool repeat, bool system) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(ms >= 0)) return luaL_argerror(L, 1, "milliseconds must be >= 0");
  if (repeat && ms < 1) return luaL_argerror(L, 1, "timer.every needs at least 1 ms");
  if (ms > 1e12) return luaL_argerror(L, 1, "milliseconds out of range");
  tstate *st = lua_touserdata(L, lua_upvalueindex(1));
  ltimer *t = calloc(1, sizeof *t);
  if (!t) return luaL_error(L, "out of memory");
  t->st = st;
  t->gen = system ? -1 : st->gen;
  uint64_t m = (uint64_t)ms;
  t->interval = repeat ? m : 0;
  lua_pushvalue(L, 2);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->t = t;
  luaL_setmetatable(L, TIMER_MT);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->next = st->all;
  if (st->all) st->all->prev = t;
  st->all = t;
  if (st->test_clock) {
    t->due = st->now + m;
    t->seq = st->seq++;
  } else {
    uv_timer_init(st->loop, &t->t);
    t->t.data = t;
    uv_timer_start(&t->t, on_fire, m, t->interval);
  }
  return 1;
}

static int l_after(lua_State *L) { return start(L, false, false); }
static int l_every(lua_State *L) { return start(L, true, false); }
static int l_after_system(lua_State *L) { return start(L, false, true); }
static int l_every_system(lua_State *L) { return start(L, true, true); }

/* timer._generation([n]) → the generation new timers belong to (before n). */
static int l_generation(lua_State *L) {
  tstate *st = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushinteger(L, st->gen);
  if (!lua_isnoneornil(L, 1)) st->gen = luaL_checkinteger(L, 1);
  return 1;
}

/* timer._stop_generation(n) → how many timers of generation n it stopped. */
static int l_stop_generation(lua_State *L) {
  tstate *st = lua_touserdata(L, lua_upvalueindex(1));
  lua_Integer gen = luaL_checkinteger(L, 1), n = 0;
  for (ltimer *t = st->all, *next; t; t = next) {
    next = t->next;
    if (t->gen == gen) {
      timer_stop(t);
      n++;
    }
  }
  lua_pushinteger(L, n);
  return 1;
}

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

static tstate *state_of(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  tstate *st = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return st;
}

/* The loader: the module table; the state (a userdata the registry holds,
 * as long as the VM lives) is made by the first require. */
int luaopen_moonwire_timer(lua_State *L) {
  static const luaL_Reg fns[] = {{"after", l_after},
                                 {"every", l_every},
                                 {"_after_system", l_after_system},
                                 {"_every_system", l_every_system},
                                 {"_generation", l_generation},
                                 {"_stop_generation", l_stop_generation},
                                 {NULL, NULL}};
  static const luaL_Reg methods[] = {{"stop", h_stop}, {"active", h_active}, {NULL, NULL}};
  const lmodule_env *env = lmodule_env_of(L);
  tstate *st = state_of(L);
  if (!st) {
    luaL_newmetatable(L, TIMER_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    st = lua_newuserdatauv(L, sizeof *st, 0);
    *st = (tstate){.loop = env->srv->loop, .test_clock = env->opts->test_clock};
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    st->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  }
  luaL_newlibtable(L, fns);
  lua_pushlightuserdata(L, st);
  luaL_setfuncs(L, fns, 1);
  return 1;
}

void l_timer_stop_all(lua_State *L) {
  tstate *st = state_of(L);
  while (st && st->all) timer_stop(st->all);
}

/* The running timer due first (ties: created first), if due by `until`. */
static ltimer *next_due(tstate *st, uint64_t until) {
  ltimer *best = NULL;
  for (ltimer *t = st->all; t; t = t->next)
    if (t->due <= until && (!best || t->due < best->due || (t->due == best->due && t->seq < best->seq))) best = t;
  return best;
}

int l_timer_advance(lua_State *L, uint64_t ms) {
  tstate *st = state_of(L);
  if (!st || !st->test_clock) return -1;
  uint64_t until = st->now + ms;
  ltimer *t;
  while ((t = next_due(st, until))) {
    st->now = t->due;
    if (t->interval) {
      t->due += t->interval; /* set first: the callback may stop it */
      t->seq = st->seq++;
    }
    fire(t);
  }
  st->now = until;
  return 0;
}
