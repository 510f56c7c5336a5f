/* lcall.h — every call from the event loop into Lua, and the budget it gets.
 *
 * The loop thread runs one Lua VM. Each time C calls into it (a request, a
 * socket event, a timer, a reload) the call goes through lcall_pcall: a
 * protected call with a message handler that adds a traceback, which logs
 * what failed. The call may not run for ever: past its time budget the code
 * running at that moment (in whatever coroutine) raises "handler stopped:
 * ran longer than its N ms budget" with its file:line, and the loop goes on.
 * A VM that grows past its memory ceiling gets a full collection and, if
 * that does not bring it back under, the same kind of error.
 *
 * How the budget is enforced without slowing Lua down: no hook is set while
 * calls behave. A timer signal directed at the loop thread ticks a few times
 * per budget; when the same outermost call is still running after the
 * budget, the signal handler installs a count hook on the coroutine running
 * at that moment (lua_sethook may be called from a signal handler: lua.c
 * stops scripts on SIGINT the same way). To know that coroutine, the VM's
 * coroutine.resume and coroutine.wrap are replaced by versions that keep a
 * stack of the running coroutines. */
#ifndef MW_LCALL_H
#define MW_LCALL_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* Sets up L: replaces coroutine.resume and coroutine.wrap. */
void lcall_init(lua_State *L);
/* Starts the watchdog that enforces a budget of ms per call (one per
 * process: a second start, by a second VM of a test process, only counts
 * one more user and sets the budget). Returns 0 or -errno (calls then run
 * without a budget, which is logged). */
int lcall_watchdog_start(uint64_t ms);
/* One user fewer; the last one stops the timer. */
void lcall_watchdog_stop(void);

/* Calls the function on top of the stack with nargs arguments under a
 * message handler that adds a traceback. On error logs "what: message +
 * traceback" and leaves the message on the stack; returns the lua_pcall
 * status. */
int lcall_pcall(lua_State *L, int nargs, int nresults, const char *what);
/* The same with the message handler (lcall_msgh) already pushed at stack
 * index msgh, under the function: for callers that make many calls. */
int lcall_pcall_at(lua_State *L, int msgh, int nargs, int nresults, const char *what);
/* lcall_pcall of registry[ref][fname] (a module the host keeps by
 * reference) with the nargs values on top of the stack, which it pops;
 * fname is also what a failure is logged as. */
int lcall_field(lua_State *L, int ref, const char *fname, int nargs, int nresults);
/* The message handler: the message (or what tostring makes of it) and a
 * traceback. */
int lcall_msgh(lua_State *L);

/* The memory ceiling's side, for the allocator (lalloc.c): the VM's live
 * bytes went over the soft limit while Lua ran; stop the running code at its
 * next instruction, after a full collection, unless that brings it back. */
void lcall_memory_pressure(void);
/* True while a call into Lua is under way (allocations may then fail). */
int lcall_active(void);

#endif
