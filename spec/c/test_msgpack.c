/* test_msgpack.c — moonwire.msgpack (l_msgpack.c): Lua values to msgpack
 * and back as the Redis adapter needs them, the exact bytes notepack.io
 * (socket.io's adapters) writes for a broadcast, and the structural check
 * that keeps hostile input from making msgpack-c allocate without bound. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "l_msgpack.h"

static lua_State *L;

/* Runs a chunk that returns true; false (and the message) otherwise. */
static int ok(const char *code) {
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "lua error: %s\n   in: %s\n", lua_tostring(L, -1), code);
    lua_pop(L, 1);
    return 0;
  }
  int r = lua_toboolean(L, -1);
  if (!r) fprintf(stderr, "returned false: %s\n", code);
  lua_pop(L, 1);
  return r;
}

static const char *PRELUDE =
    "mp = require 'moonwire.msgpack'\n"
    "B = { __name = 'binary' }\n"
    "N = ...\n"
    "function bin(s) return setmetatable({ data = s }, B) end\n"
    "function enc(v) return mp.encode(v, B, N) end\n"
    "function dec(s) return mp.decode(s, B, N) end\n"
    "function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end\n"
    "function unhex(h) return (h:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end\n"
    "function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then return a == b and math.type(a) == math.type(b) end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function array(t) return setmetatable(t, debug.getregistry()['moonwire.array']) end\n"
    "function fails(f, pat) local okk, err = pcall(f) return not okk and tostring(err):find(pat, 1, true) ~= nil end\n";

static void test_scalars(void) {
  CHECK(ok("return hex(enc(N)) == 'c0' and hex(enc(true)) == 'c3' and hex(enc(false)) == 'c2'"));
  CHECK(ok("return hex(enc(0)) == '00' and hex(enc(127)) == '7f' and hex(enc(-1)) == 'ff' and hex(enc(-32)) == 'e0'"));
  CHECK(ok("return hex(enc(128)) == 'cc80' and hex(enc(256)) == 'cd0100' and hex(enc(-33)) == 'd0df'"));
  CHECK(ok("return hex(enc(65536)) == 'ce00010000' and hex(enc(2^32 // 1)) == 'cf0000000100000000'"));
  CHECK(ok("return hex(enc(math.mininteger)) == 'd38000000000000000'"));
  /* whole floats are ints, as JavaScript numbers are */
  CHECK(ok("return hex(enc(3.0)) == '03' and hex(enc(-2.0)) == 'fe'"));
  CHECK(ok("return hex(enc(1.5)) == 'cb3ff8000000000000'"));
  CHECK(ok("return hex(enc(2^60)) == 'cb43b0000000000000'")); /* past 2^53: stays a float */
  CHECK(ok("return hex(enc('abc')) == 'a3616263' and hex(enc('')) == 'a0'"));
  CHECK(ok("local s = string.rep('x', 40) return hex(enc(s)):sub(1, 4) == 'd928'"));
  CHECK(ok("local s = string.rep('x', 300) return hex(enc(s)):sub(1, 6) == 'da012c'"));
  CHECK(ok("return hex(enc(bin('\\0\\1\\255'))) == 'c40300' .. '01ff'"));
  CHECK(ok("local s = string.rep('\\0', 70000) local e = enc(bin(s)) return hex(e:sub(1, 5)) == 'c600011170' and #e == 70005"));
  CHECK(ok("return fails(function() enc(print) end, 'cannot encode a function')"));
  CHECK(ok("return fails(function() enc(coroutine.create(print)) end, 'cannot encode a thread')"));
  CHECK(ok("return fails(function() enc(setmetatable({}, B)) end, 'without its data')"));
}

static void test_tables(void) {
  CHECK(ok("return hex(enc({})) == '80'"));                  /* an unmarked empty table is {} */
  CHECK(ok("return hex(enc(array({}))) == '90'"));           /* a marked one is [] */
  CHECK(ok("return hex(enc({1, 2, 3})) == '93010203'"));
  CHECK(ok("return hex(enc({1, N, 3})) == '9301c003'"));
  CHECK(ok("return hex(enc({[1] = 'a', [3] = 'c'})) == '93a161c0a163'")); /* a hole is nil */
  CHECK(ok("return fails(function() enc({[1] = 1, [100] = 2}) end, 'sparse')"));
  CHECK(ok("return hex(enc({a = 1})) == '81a16101'"));
  CHECK(ok("return hex(enc({[0] = 'z'})) == '81a130a17a'")); /* a non-positive key makes a map, keys as strings */
  CHECK(ok("local e = enc({[1] = 'a', x = 'b'}) return e:byte(1) == 0x82"));
  CHECK(ok("return fails(function() enc({[true] = 1}) end, 'key')"));
  /* the notepack.io bytes of a socket.io broadcast:
   * ["abc", {type: 2, data: ["ev", 1], nsp: "/"}, {rooms: [], except: [], flags: {}}];
   * map keys are written in Lua's order, so compare decoded, and the array part exactly */
  CHECK(ok("local want = unhex('93a3616263' .. '83a47479706502a46461746192a2657601a36e7370a12f' .."
           " '83a5726f6f6d7390a6657863657074' .. '90a5666c61677380')\n"
           "local v = assert(dec(want))\n"
           "if not (v[1] == 'abc' and v[2].type == 2 and v[2].data[1] == 'ev' and v[2].data[2] == 1 and v[2].nsp == '/') then return false end\n"
           "if not (#v[3].rooms == 0 and getmetatable(v[3].rooms) == debug.getregistry()['moonwire.array'] and next(v[3].flags) == nil) then return false end\n"
           "return same(assert(dec(enc(v))), v)"));
  /* deep nesting: a cycle cannot loop */
  CHECK(ok("local t = {} t[1] = t return fails(function() enc(t) end, 'too deep')"));
}

static void test_decode(void) {
  CHECK(ok("return dec(unhex('c0')) == N and dec(unhex('c3')) == true and dec(unhex('c2')) == false"));
  CHECK(ok("return math.type(dec(unhex('cd0100'))) == 'integer' and dec(unhex('cd0100')) == 256"));
  CHECK(ok("return dec(unhex('d0df')) == -33 and dec(unhex('cb3ff8000000000000')) == 1.5"));
  CHECK(ok("return dec(unhex('ca3fc00000')) == 1.5")); /* float32 */
  CHECK(ok("return dec(unhex('cfffffffffffffffff')) == 2^64")); /* above maxinteger: a float */
  CHECK(ok("local v = dec(unhex('c40300' .. '01ff')) return getmetatable(v) == B and v.data == '\\0\\1\\255'"));
  CHECK(ok("return dec(unhex('d40000')) == N")); /* notepack's undefined */
  CHECK(ok("return dec(unhex('d6ff00000001')) == N")); /* another ext */
  CHECK(ok("local v = dec(unhex('92c0c0')) return #v == 2 and v[1] == N and v[2] == N"));
  CHECK(ok("local v = dec(unhex('82a161c001a162')) return v.a == N and v[1] == 'b'")); /* int keys */
  CHECK(ok("local v, e = dec(unhex('81c301')) return v == nil and e:find('map key') ~= nil"));
  /* round trips */
  CHECK(ok("local v = { 'x', 1, 2.5, true, N, bin('\\0'), { a = { b = array({}) } }, array({ 'z' }) }\n"
           "return same(dec(enc(array(v))), array(v))"));
  CHECK(ok("local s = string.rep('\\1\\0', 600000) local v = dec(enc(bin(s))) return v.data == s")); /* 1.2 MB */
}

static void test_bad_input(void) {
  CHECK(ok("local v, e = dec('') return v == nil and e == 'msgpack: truncated'"));
  CHECK(ok("local v, e = dec(unhex('930102')) return v == nil and e == 'msgpack: more elements than bytes'"));
  CHECK(ok("local v, e = dec(unhex('a36162')) return v == nil and e == 'msgpack: truncated'"));
  CHECK(ok("local v, e = dec(unhex('0102')) return v == nil and e:find('trailing') ~= nil"));
  CHECK(ok("local v, e = dec(unhex('c1')) return v == nil and e:find('invalid') ~= nil"));
  /* a tiny input claiming 2^32 - 1 elements is refused before any allocation */
  CHECK(ok("local v, e = dec(unhex('ddffffffff00')) return v == nil and e == 'msgpack: more elements than bytes'"));
  CHECK(ok("local v, e = dec(unhex('dfffffffff0000')) return v == nil and e == 'msgpack: more elements than bytes'"));
  CHECK(ok("local v, e = dec(unhex('c6ffffffff00')) return v == nil and e == 'msgpack: truncated'"));
  CHECK(ok("local v, e = dec(unhex('c9ffffffff0100')) return v == nil and e == 'msgpack: truncated'"));
  /* nesting: what decodes also encodes, one level more does neither */
  CHECK(ok("local deep = 'c0' for i = 1, 31 do deep = '91' .. deep end local v = dec(unhex(deep))\n"
           "return type(v) == 'table' and hex(enc(v)) == deep"));
  CHECK(ok("local deep = 'c0' for i = 1, 32 do deep = '91' .. deep end local v, e = dec(unhex(deep))\n"
           "return v == nil and e:find('deep') ~= nil"));
  CHECK(ok("local t = N for i = 1, 32 do t = { t } end return fails(function() enc(t) end, 'too deep')"));
}

int main(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "moonwire.msgpack", luaopen_moonwire_msgpack, 0);
  lua_pop(L, 1);
  if (luaL_loadstring(L, PRELUDE) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  static char null_marker;
  lua_pushlightuserdata(L, &null_marker);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  test_scalars();
  test_tables();
  test_decode();
  test_bad_input();
  lua_close(L);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
