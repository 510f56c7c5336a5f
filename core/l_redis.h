/* l_redis.h — moonwire.redis_c: a Redis pub/sub client for the Redis
 * adapter (core/lua/moonwire/adapter.lua). */
#ifndef MW_L_REDIS_H
#define MW_L_REDIS_H

#include <lua.h>
#include <uv.h>

/* Preloads moonwire.redis_c in L: clients on loop. */
void l_redis_open(lua_State *L, uv_loop_t *loop);
/* Closes every client of L (shutdown). */
void l_redis_stop_all(lua_State *L);
/* NULL when url is a redis:// URL the client takes; else what is wrong. */
const char *l_redis_check_url(const char *url);

#endif
