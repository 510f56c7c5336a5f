/* l_timer.h — moonwire.timer: the app's timers, on the real clock or on a
 * test clock that only l_timer_advance moves. */
#ifndef MW_L_TIMER_H
#define MW_L_TIMER_H

#include <lua.h>
#include <stdint.h>

/* The loader of moonwire.timer (lmodule.h: its upvalue is the host's
 * lmodule_env): timer.after(ms, fn), timer.every(ms, fn) → handle:stop().
 * With lhost_opts.test_clock the timers follow a clock that only
 * l_timer_advance moves. */
int luaopen_moonwire_timer(lua_State *L);
/* Stops every timer of L (shutdown). */
void l_timer_stop_all(lua_State *L);
/* Test clock: moves time on by ms, firing every timer that falls due on the
 * way, in order. Returns -1 when the VM runs on the real clock. */
int l_timer_advance(lua_State *L, uint64_t ms);

#endif
