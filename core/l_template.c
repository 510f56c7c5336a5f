/* l_template.c — the Lua module "moonwire.template_c": compiles a template
 * (template.c) and loads the result as a Lua function. */
#include "template.h"

#include <lauxlib.h>
#include <lua.h>
#include <string.h>

/* The chunk name as Lua shows it in messages: "@file" and "=name" lose the
 * prefix (as luaO_chunkid does), anything else is shown as given. */
static const char *tmpl_display_name(const char *chunkname) {
  if (chunkname[0] == '@' || chunkname[0] == '=') return chunkname + 1;
  return chunkname;
}

/* compile(src, chunkname) -> function | nil, message */
static int tmpl_l_compile(lua_State *L) {
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  const char *chunkname = luaL_optstring(L, 2, "=template");
  mw_str out = {0};
  char err[256];
  int errline = 0;
  if (tmpl_compile_ex(src, len, &out, err, sizeof err, &errline)) {
    mw_str_free(&out);
    lua_pushnil(L);
    if (errline > 0)
      lua_pushfstring(L, "%s:%d: %s", tmpl_display_name(chunkname), errline, err);
    else
      lua_pushfstring(L, "%s: %s", tmpl_display_name(chunkname), err);
    return 2;
  }
  /* lua_load runs protected (even out of memory comes back as a status),
   * so nothing can jump past the free. */
  int status = luaL_loadbufferx(L, out.p, out.len, chunkname, "t");
  mw_str_free(&out);
  if (status != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2); /* nil, message */
    return 2;
  }
  return 1;
}

int luaopen_moonwire_template_c(lua_State *L) {
  static const luaL_Reg fns[] = {{"compile", tmpl_l_compile}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
