/* l_core.h — moonwire.core: the C side of the framework's Lua. */
#ifndef MW_L_CORE_H
#define MW_L_CORE_H

#include <lua.h>

/* The loader of moonwire.core (lmodule.h: its upvalue is the host's
 * lmodule_env): log(level, msg), now(), time(), headers(ex), random(n),
 * hmac(key, data), equal(a, b), and root, dev, version, redis. */
int luaopen_moonwire_core(lua_State *L);

#endif
