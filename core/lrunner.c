/* lrunner.c — how C reaches the coroutine runner (moonwire.runner) and
 * other functions of the framework's Lua: looked up in package.loaded each
 * time, so a VM without the framework (a test's) runs callbacks directly,
 * and nothing has to be registered from Lua. */
#include "lrunner.h"

#include <lauxlib.h>

bool lrunner_push_fn(lua_State *L, const char *module, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, module) != LUA_TTABLE) {
    lua_pop(L, 2);
    return false;
  }
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_remove(L, -2);
  if (lua_isfunction(L, -1)) return true;
  lua_pop(L, 1);
  return false;
}
