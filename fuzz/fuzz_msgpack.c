/* fuzz_msgpack.c — moonwire.msgpack's decoder (the structural check, then
 * msgpack-c, then the Lua values), on what other servers publish through
 * Redis. A value that decodes is encoded and decoded again until its bytes
 * are stable; a decode error is fine, an abort or a sanitizer report is not. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l_msgpack.h"

static lua_State *L;
static int decode_ref, encode_ref;

static const char *PRELUDE =
    "local mp = require 'moonwire.msgpack'\n"
    "local B, N = {}, ...\n"
    "return function(s) return mp.decode(s, B, N) end, function(v) return mp.encode(v, B, N) end\n";

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "moonwire.msgpack", luaopen_moonwire_msgpack, 0);
  lua_pop(L, 1);
  static char null_marker;
  if (luaL_loadstring(L, PRELUDE) != LUA_OK) abort();
  lua_pushlightuserdata(L, &null_marker);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort();
  encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* decode(s) → the value on the stack (1) or nothing (0). */
static int decode(const char *s, size_t n) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
  lua_pushlstring(L, s, n);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort(); /* decode never raises */
  if (lua_isnil(L, -2)) {
    if (!lua_isstring(L, -1)) abort(); /* a failure says why */
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

/* encode(value on top) → its bytes on top; 0 when it cannot be encoded. */
static int encode(void) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, encode_ref);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) setup();
  int top = lua_gettop(L);
  /* What fails the structural check never reaches msgpack-c. */
  if (l_msgpack_prescan(data, size) != NULL) {
    if (decode((const char *)data, size)) abort();
    return 0;
  }
  if (decode((const char *)data, size)) {
    /* Encoding may refuse what decoding made (a sparse array from a map
     * with integer keys). When it does not, one round normalises the keys
     * (numbers become strings, as in JSON, and keys that meet that way
     * merge), and after it the bytes are stable: encode(decode(e)) is as
     * long as e (maps may list their keys in another order). */
    if (encode()) {
      size_t n1;
      const char *e1 = lua_tolstring(L, -1, &n1);
      if (!decode(e1, n1)) abort();
      if (!encode()) abort();
      size_t n2, n3;
      const char *e2 = lua_tolstring(L, -1, &n2);
      if (!decode(e2, n2)) abort();
      if (!encode()) abort();
      lua_tolstring(L, -1, &n3);
      if (n2 != n3) abort();
    }
  }
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
