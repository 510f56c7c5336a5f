/* fuzz_json.c — the JSON decoder (core/json.c through moonwire.json_c), on
 * what clients send: Socket.IO payloads, request bodies. A value that
 * decodes must survive the trip back:
 *   - encode(v) works, and decode(encode(v)) equals v (number types, array
 *     marks and json.null included);
 *   - with object keys in byte order (encode_sorted), the second encoding is
 *     the first byte for byte; in table order it has the same length;
 *   - the Socket.IO path: decode_args, then packet() and decode_args again
 *     give the same arguments, with and without binary attachments;
 *   - a value with strings that are not UTF-8 (they decode as they came)
 *     encodes to UTF-8, and from there on the above holds;
 *   - it agrees with the packet check (mw_json_check, sio_packet.c) that
 *     runs first on every packet: what the check takes decodes (unless a
 *     number overflows a double), and what decodes from valid UTF-8 the
 *     check takes.
 * A decode error is fine; an abort or a sanitizer report is not. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "l_json.h"
#include "sio_packet.h"

static lua_State *L;
static int check_ref;

static const char *PRELUDE =
    "local c = require 'moonwire.json_c'\n"
    "local B = { __name = 'binary' }\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return math.type(a) == math.type(b) and a == b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  if getmetatable(a) == B then return a.data == b.data end\n"
    "  for k, v in pairs(a) do if not same(v, rawget(b, k)) then return false end end\n"
    "  for k in pairs(b) do if rawget(a, k) == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "local function dec(s)\n" /* assert() would take a decoded false for a failure */
    "  local v, err = c.decode(s)\n"
    "  assert(err == nil, err)\n"
    "  return v\n"
    "end\n"
    "local function packet_json(text, prefix)\n"
    "  assert(text:sub(1, #prefix) == prefix, 'packet head: ' .. text:sub(1, 40))\n"
    "  return text:sub(#prefix + 1)\n"
    "end\n"
    "return function(s, valid)\n"
    "  local d1, err = c.decode(s)\n"
    "  if d1 == nil then\n"
    "    assert(type(err) == 'string' and err:sub(1, 6) == 'json: ', 'a failure says why')\n"
    "    assert(not valid or err:find('too large for a double', 1, true), 'the packet check took it: ' .. err)\n"
    "    return\n"
    "  end\n"
    "  if utf8.len(s) then\n"
    "    assert(valid, 'decoded, but the packet check refused it')\n"
    "  else\n"
    "    -- Strings that are not UTF-8 decode as they came; encoding replaces\n"
    "    -- their ill-formed bytes, and from there on the value is stable.\n"
    "    s = assert(c.encode(d1))\n"
    "    assert(utf8.len(s), 'an encoding that is not UTF-8')\n"
    "    d1 = dec(s)\n"
    "  end\n"
    "  local e1 = assert(c.encode(d1))\n"
    "  local d2 = dec(e1)\n"
    "  assert(same(d1, d2), 'decode(encode(v)) differs from v: ' .. e1)\n"
    "  local s1, s2 = assert(c.encode_sorted(d1)), assert(c.encode_sorted(d2))\n"
    "  assert(s1 == s2, 'the second encoding differs: ' .. s1 .. ' / ' .. s2)\n"
    "  assert(#e1 == #s1, 'the encodings differ in more than key order')\n"
    "  assert(#assert(c.encode(d2)) == #e1, 'the second encoding differs in length')\n"
    "  assert(same(dec(s1), d1), 'the sorted encoding decodes to another value')\n"
    "  if type(d1) ~= 'table' or getmetatable(d1) ~= c.array_mt then return end\n"
    "  local args, n = assert(c.decode_args(s))\n"
    "  local text = assert(c.packet(3, '/', nil, args, n))\n"
    "  assert(#text == 1 + #e1, 'the packet payload differs from encode')\n"
    "  local args2, n2 = assert(c.decode_args(packet_json(text, '3')))\n"
    "  assert(n2 == n and same(args, args2), 'the packet arguments differ')\n"
    "  local atts = { 'a', 'bb', '\\0\\255' }\n"
    "  local a1, m1 = c.decode_args(s, atts, B)\n"
    "  if not a1 then\n"
    "    assert(m1 == 'json: a binary placeholder without its attachment', m1)\n"
    "    return\n"
    "  end\n"
    "  local t2, atts2 = assert(c.packet(2, '/x', 7, a1, m1, B))\n"
    "  local prefix = atts2 and ('5' .. #atts2 .. '-/x,7') or '2/x,7'\n"
    "  local a2, m2 = assert(c.decode_args(packet_json(t2, prefix), atts2 or {}, B))\n"
    "  assert(m2 == m1 and same(a1, a2), 'the binary packet arguments differ')\n"
    "end\n";

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "moonwire.json_c", luaopen_moonwire_json_c, 0);
  lua_pop(L, 1);
  if (luaL_loadstring(L, PRELUDE) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    abort();
  }
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) setup();
  int valid = mw_json_check((const char *)data, size, NULL) == 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushlstring(L, (const char *)data, size);
  lua_pushboolean(L, valid);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
