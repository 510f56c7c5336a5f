/* l_core.h — moonwire.core: the C side of the framework's Lua. */
#ifndef MW_L_CORE_H
#define MW_L_CORE_H

#include <lua.h>

/* The loader of moonwire.core (lmodule.h: its upvalue is the host's
 * lmodule_env): log(level, msg), now(), time(), headers(ex), random(n),
 * start_key(), hmac(key, data), equal(a, b), and root, dev, version, redis. */
int luaopen_moonwire_core(lua_State *L);

/* Makes the server's start key (core.start_key(): 32 random bytes, made
 * once when the server starts). Called before --workers forks, so every
 * worker has the same: a secret made at start (the CSRF and session keys
 * without MOONWIRE_SECRET) then signs alike in all of them. Returns 0, or
 * -1 when no randomness is available. */
int l_core_make_start_key(void);

#endif
