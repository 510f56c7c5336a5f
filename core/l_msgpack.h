/* l_msgpack.h — moonwire.msgpack: the MessagePack codec of the Redis
 * adapter's messages (socket.io-redis-adapter's format). */
#ifndef MW_L_MSGPACK_H
#define MW_L_MSGPACK_H

#include <lua.h>
#include <stddef.h>

/* moonwire.msgpack: encode(v, binary_mt, null) and decode(s, binary_mt,
 * null) → v or nil, message. */
int luaopen_moonwire_msgpack(lua_State *L);
/* Checks that p holds exactly one msgpack value whose lengths all fit in
 * len and whose nesting msgpack-c can take: NULL, or what is wrong. */
const char *l_msgpack_prescan(const unsigned char *p, size_t len);

#endif
