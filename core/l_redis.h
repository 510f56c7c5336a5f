/* l_redis.h — moonwire.redis_c: a Redis pub/sub client for the Redis
 * adapter (core/embedded/lua/moonwire/adapter.lua), over the client of redis.h. */
#ifndef MW_L_REDIS_H
#define MW_L_REDIS_H

#include <lua.h>

/* The loader of moonwire.redis_c (lmodule.h: its upvalue is the host's
 * lmodule_env): clients on the server's loop. */
int luaopen_moonwire_redis_c(lua_State *L);
/* Closes every client of L (shutdown). */
void l_redis_stop_all(lua_State *L);

#endif
