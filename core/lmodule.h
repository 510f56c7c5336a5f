/* lmodule.h — a built-in Lua module as the host lists it (lhost.c's table,
 * the way Lua's linit.c lists the standard libraries): its name, its
 * loader, and what stops it at shutdown. */
#ifndef MW_LMODULE_H
#define MW_LMODULE_H

#include <lua.h>

struct mw_server;
struct mw_db;
struct lhost_opts;

/* What the host hands its modules: a loader finds it as its first upvalue
 * (lmodule_env_of). Borrowed: it lives as long as the VM. */
typedef struct lmodule_env {
  struct mw_server *srv;        /* the loop */
  const struct lhost_opts *opts; /* the app's settings (lhost.h) */
  struct mw_db *db;             /* the app's database (may be NULL) */
} lmodule_env;

typedef struct lmodule {
  const char *name;           /* as required: "moonwire.timer" */
  lua_CFunction open;         /* its loader (package.preload[name]) */
  void (*stop)(lua_State *L); /* ends what it runs at shutdown (timers, connections), or NULL */
} lmodule;

/* Inside a loader: the host's environment. */
static inline const lmodule_env *lmodule_env_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

#endif
