/* lrunner.h — how C reaches the coroutine runner (moonwire.runner). */
#ifndef MW_LRUNNER_H
#define MW_LRUNNER_H

#include <lua.h>
#include <stdbool.h>

/* Pushes package.loaded[module][name] and returns true when it is a
 * function; pushes nothing and returns false otherwise (the module not
 * loaded yet, as in a VM that runs no app). */
bool lrunner_push_fn(lua_State *L, const char *module, const char *name);

/* The runner's function name (run, call, current, wait, resume): the one
 * way C finds the coroutine runner, once moonwire.runner is loaded (the
 * app framework loads it). */
static inline bool lrunner_push(lua_State *L, const char *name) {
  return lrunner_push_fn(L, "moonwire.runner", name);
}

#endif
