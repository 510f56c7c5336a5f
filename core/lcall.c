/* lcall.c — calls into Lua: the protected call, and each call's budget
 * (see lcall.h for how it is enforced). */
#include "lcall.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lalloc.h"
#include "mw.h"

#define LCALL_MAX_DEPTH 256 /* resumes nest at most LUAI_MAXCCALLS (200) deep */
#define STOP_TIME 1
#define STOP_MEMORY 2

/* The coroutines running, innermost last: running[0] is the thread the
 * outermost call started on. Written by the loop thread, read by the signal
 * handler, which interrupts that same thread: a slot is written before the
 * depth that makes it visible. */
static lua_State *running[LCALL_MAX_DEPTH];
static volatile sig_atomic_t depth;
static volatile sig_atomic_t entry_seq;   /* bumped by every outermost call */
static volatile sig_atomic_t stop_reason; /* STOP_* for the current outermost call */
static volatile sig_atomic_t armed_seq;   /* the call the hook was installed for */

static uint64_t budget_ms;
static int ticks_needed;     /* ticks of the same call that make a runaway */
static int seen_seq, same_ticks; /* the signal handler's own state */
static timer_t tick_timer;
static int users;            /* VMs set up (the watchdog is per process) */

static void stop_hook(lua_State *L, lua_Debug *ar);

/* Installs the stop hook on the innermost running coroutine. */
static void arm(void) {
  if (depth <= 0) return;
  lua_State *L = running[depth - 1];
  armed_seq = entry_seq;
  lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1);
}

static void disarm(lua_State *L) {
  if (lua_gethook(L) == stop_hook) lua_sethook(L, NULL, 0, 0);
}

static void push_running(lua_State *L) {
  int d = depth;
  if (d < LCALL_MAX_DEPTH) running[d] = L;
  else running[LCALL_MAX_DEPTH - 1] = L;
  depth = d + 1;
}

static void pop_running(lua_State *L) {
  depth = depth - 1;
  disarm(L);
}

int lcall_active(void) { return depth > 0; }

/* What the stop hook said, for the resume that gets the stopped coroutine back. */
static lua_State *stopped;
static char stop_msg[512];

/* The hook that stops the running code (installed by arm()). A coroutine
 * is yielded: no pcall inside the handler can catch that, and the resume
 * that started it (resume_tracked) turns it into an error with the
 * coroutine's traceback and closes the coroutine. Code that cannot yield
 * (the main thread: a script loading; a C boundary) gets an error instead.
 * Either way what runs next gets a budget of its own: the handler that
 * caught the error and goes on is stopped again a budget later. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  lua_sethook(L, NULL, 0, 0);
  if (armed_seq != entry_seq) return; /* left over from an earlier call */
  int why = stop_reason;
  if (!(why & STOP_TIME)) {
    /* Over the soft memory limit: garbage may be all it is. */
    lua_gc(L, LUA_GCCOLLECT);
    lalloc *a = lalloc_of(L);
    if (!a || !lalloc_over(a)) {
      stop_reason = 0;
      return;
    }
  }
  char where[256] = "";
  if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
    snprintf(where, sizeof where, "%s:%d: ", ar->short_src, ar->currentline);
  if (why & STOP_TIME) {
    snprintf(stop_msg, sizeof stop_msg, "%shandler stopped: it ran longer than its %llu ms budget (--handler-budget)",
             where, (unsigned long long)budget_ms);
  } else {
    lalloc *a = lalloc_of(L);
    snprintf(stop_msg, sizeof stop_msg,
             "%shandler stopped: the Lua VM is over its memory limit of %zu MiB (--lua-memory)", where,
             a ? a->hard >> 20 : 0);
  }
  stop_reason = 0;
  entry_seq = entry_seq + 1;
  if (depth > 1 && running[depth - 1] == L && lua_isyieldable(L)) {
    stopped = L;
    lua_yield(L, 0);
    return;
  }
  lua_pushstring(L, stop_msg);
  lua_error(L);
}

void lcall_memory_pressure(void) {
  if (depth <= 0) return; /* noticed at the next call */
  stop_reason |= STOP_MEMORY;
  arm();
}

/* ---- the watchdog ---- */

static void on_tick(int sig) {
  (void)sig;
  int saved = errno;
  if (depth <= 0) {
    seen_seq = -1;
  } else if (entry_seq != seen_seq) {
    seen_seq = entry_seq;
    same_ticks = 0;
  } else if (!(stop_reason & STOP_TIME) && ++same_ticks >= ticks_needed) {
    stop_reason |= STOP_TIME;
    arm();
  }
  errno = saved;
}

int lcall_watchdog_start(uint64_t ms) {
  uint64_t tick = ms / 8;
  if (tick < 5) tick = 5;
  if (tick > 250) tick = 250;
  budget_ms = ms;
  ticks_needed = (int)((ms + tick - 1) / tick);
  if (users++ > 0) return 0; /* the timer runs already (a second VM in a test process) */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_tick;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGRTMIN, &sa, NULL)) goto fail;
  /* Aimed at this thread (the loop's): other threads (libuv's pool,
   * SQLite's) never see the signal. */
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGRTMIN;
  sev._sigev_un._tid = gettid();
  if (timer_create(CLOCK_MONOTONIC, &sev, &tick_timer)) goto fail;
  struct itimerspec its;
  its.it_interval.tv_sec = (time_t)(tick / 1000);
  its.it_interval.tv_nsec = (long)(tick % 1000) * 1000000L;
  its.it_value = its.it_interval;
  if (timer_settime(tick_timer, 0, &its, NULL)) {
    timer_delete(tick_timer);
    goto fail;
  }
  return 0;
fail:;
  int err = -errno;
  users--;
  mw_log(MW_LOG_WARN, "handlers run without a time budget: cannot start its timer: %s", strerror(errno));
  return err;
}

/* ---- coroutine.resume and coroutine.wrap, keeping the running stack ---- */

/* Resumes co with the n values on top of L. Returns how many results it
 * left on L, or -1 with the error on top of L. */
static int resume_tracked(lua_State *L, lua_State *co, int n) {
  if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    lua_pushliteral(L, "cannot resume dead coroutine");
    return -1;
  }
  if (!lua_checkstack(co, n)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, n);
  int nres;
  push_running(co);
  int st = lua_resume(co, L, n, &nres);
  pop_running(co);
  if (st == LUA_YIELD && stopped == co) { /* the budget stopped it (stop_hook) */
    stopped = NULL;
    luaL_traceback(L, co, stop_msg, 0);
#if LUA_VERSION_RELEASE_NUM >= 50406
    lua_closethread(co, L);
#else
    lua_resetthread(co);
#endif
    lua_settop(co, 0);
    return -1;
  }
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1); /* the error */
  return -1;
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  int r = resume_tracked(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int co_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume_tracked(L, co, lua_gettop(L));
  if (r >= 0) return r;
  int st = lua_status(co);
  if (st != LUA_OK && st != LUA_YIELD) { /* an error in the coroutine: close its pending variables */
#if LUA_VERSION_RELEASE_NUM >= 50406
    st = lua_closethread(co, L);
#else
    st = lua_resetthread(co);
#endif
    lua_xmove(co, L, 1);
  }
  if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) { /* where the wrapper was called */
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 1);
  return 1;
}

/* ---- protected calls ---- */

int lcall_msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
    else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int lcall_pcall_at(lua_State *L, int msgh, int nargs, int nresults, const char *what) {
  bool outer = depth == 0;
  if (outer) {
    entry_seq = entry_seq + 1;
    stop_reason = 0;
  }
  int seq = entry_seq; /* moves on when stop_hook stops something */
  push_running(L);
  if (outer && lalloc_over(lalloc_of(L))) {
    stop_reason = STOP_MEMORY;
    arm();
  }
  int r = lua_pcall(L, nargs, nresults, msgh);
  pop_running(L);
  if (r != LUA_OK) mw_log(MW_LOG_ERROR, "%s: %s", what, lua_tostring(L, -1));
  if (outer && entry_seq != seq) {
    /* A runaway was stopped: what it built is garbage now; give it back. */
    stop_reason = 0;
    lua_gc(L, LUA_GCCOLLECT);
    mw_release_memory();
  }
  return r;
}

int lcall_pcall(lua_State *L, int nargs, int nresults, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, lcall_msgh);
  lua_insert(L, base);
  int r = lcall_pcall_at(L, base, nargs, nresults, what);
  lua_remove(L, base);
  return r;
}

int lcall_field(lua_State *L, int ref, const char *fname, int nargs, int nresults) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, fname);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  return lcall_pcall(L, nargs, nresults, fname);
}

/* ---- set-up ---- */

void lcall_init(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_COLIBNAME);
  if (lua_istable(L, -1)) {
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
  }
  lua_pop(L, 2);
}

void lcall_watchdog_stop(void) {
  if (users <= 0 || --users > 0) return;
  timer_delete(tick_timer);
  budget_ms = 0;
}
