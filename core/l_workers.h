/* l_workers.h — moonwire.workers_c: the link between --workers processes
 * (wlink.h) as the workers adapter (moonwire.io.workers_adapter) uses it. */
#ifndef MW_L_WORKERS_H
#define MW_L_WORKERS_H

#include <lua.h>

/* The loader of moonwire.workers_c (lmodule.h: its upvalue is the host's
 * lmodule_env). */
int luaopen_moonwire_workers_c(lua_State *L);
/* Drops the receiver of L (shutdown). */
void l_workers_stop_all(lua_State *L);

#endif
