/* l_json.h — moonwire.json_c: the JSON codec (json.c) for Lua. */
#ifndef MW_L_JSON_H
#define MW_L_JSON_H

#include <lua.h>

/* moonwire.json_c: the JSON codec under moonwire.json and moonwire.io's
 * packets. */
int luaopen_moonwire_json_c(lua_State *L);

#endif
