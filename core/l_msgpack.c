/* l_msgpack.c — moonwire.msgpack: Lua values to MessagePack and back, on
 * msgpack-c, for the Redis adapter (socket.io's adapters speak msgpack as
 * notepack.io writes it).
 *
 *   local s = mp.encode(value, binary_mt, null)   -- raises on what cannot be encoded
 *   local v, err = mp.decode(s, binary_mt, null)  -- never raises
 *
 * binary_mt is the metatable of moonwire.io's binary wrapper { data = s }
 * (msgpack bin both ways); null is json.null (msgpack nil both ways; so is
 * notepack's `undefined`, fixext 1 of type 0, and any other ext). Tables
 * follow the JSON encoder's rules: a table marked with the array metatable
 * (registry["moonwire.array"], json.array) or with only positive integer
 * keys is an array, anything else a map; decoded arrays are marked.
 *
 * The bytes come from the network (Redis, from other servers), and
 * msgpack-c allocates room for an array's elements before it reads them: a
 * few bytes claiming 2^32 elements would ask for 96 GiB. So decode first
 * walks the bytes (prescan) checking every length against what is left and
 * the nesting against msgpack-c's own limit, and unpacks only then. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <string.h>

#include "l_msgpack.h"

#define MP_MAX_DEPTH 32 /* msgpack-c's unpacker stack (MSGPACK_EMBED_STACK_SIZE) */
#define ARRAY_MT "moonwire.array"

/* ---- decoding: the structural check ---- */

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

const char *l_msgpack_prescan(const unsigned char *p, size_t len) {
  uint64_t pending[MP_MAX_DEPTH + 1]; /* objects still to read at each level */
  int depth = 0;
  size_t pos = 0;
  pending[0] = 1;
  while (depth >= 0) {
    if (pending[depth] == 0) {
      depth--;
      continue;
    }
    pending[depth]--;
    if (pos >= len) return "msgpack: truncated";
    unsigned b = p[pos++];
    int lenbytes = 0;       /* a length of this many bytes follows */
    uint64_t skip = 0;      /* payload bytes after it */
    uint64_t items = 0;     /* elements (map: keys and values) */
    int container = 0, ext = 0, mul = 1;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      /* fixint, nil, booleans */
    } else if (b <= 0x8f) {
      container = 1, items = b & 0x0f, mul = 2;
    } else if (b <= 0x9f) {
      container = 1, items = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      switch (b) {
      case 0xc4: case 0xd9: lenbytes = 1; break; /* bin8, str8 */
      case 0xc5: case 0xda: lenbytes = 2; break;
      case 0xc6: case 0xdb: lenbytes = 4; break;
      case 0xc7: lenbytes = 1, ext = 1; break;  /* ext8/16/32: length, then a type byte */
      case 0xc8: lenbytes = 2, ext = 1; break;
      case 0xc9: lenbytes = 4, ext = 1; break;
      case 0xca: skip = 4; break;               /* float32 */
      case 0xcb: skip = 8; break;
      case 0xcc: case 0xd0: skip = 1; break;    /* uint8, int8 ... */
      case 0xcd: case 0xd1: skip = 2; break;
      case 0xce: case 0xd2: skip = 4; break;
      case 0xcf: case 0xd3: skip = 8; break;
      case 0xd4: skip = 2; break;               /* fixext 1, 2, 4, 8, 16 (and the type byte) */
      case 0xd5: skip = 3; break;
      case 0xd6: skip = 5; break;
      case 0xd7: skip = 9; break;
      case 0xd8: skip = 17; break;
      case 0xdc: lenbytes = 2, container = 1; break;
      case 0xdd: lenbytes = 4, container = 1; break;
      case 0xde: lenbytes = 2, container = 1, mul = 2; break;
      case 0xdf: lenbytes = 4, container = 1, mul = 2; break;
      default: return "msgpack: an invalid byte"; /* 0xc1 */
      }
      if (lenbytes) {
        if (len - pos < (size_t)lenbytes) return "msgpack: truncated";
        uint64_t n = be(p + pos, lenbytes);
        pos += (size_t)lenbytes;
        if (container) items = n;
        else skip = n + (uint64_t)ext;
      }
    }
    if (skip > len - pos) return "msgpack: truncated";
    pos += (size_t)skip;
    if (container) {
      items *= (uint64_t)mul;
      if (items > len - pos) return "msgpack: more elements than bytes"; /* each takes one at least */
      if (items > 0) {
        if (depth + 1 >= MP_MAX_DEPTH) return "msgpack: nested too deep";
        pending[++depth] = items;
      }
    }
  }
  if (pos != len) return "msgpack: trailing bytes after the value";
  return NULL;
}

/* ---- decoding: msgpack-c's objects to Lua ---- */

typedef struct {
  const msgpack_object *root;
  int binary_mt, null; /* stack indexes */
} decode_ctx;

static void push_obj(lua_State *L, const decode_ctx *d, const msgpack_object *o, int depth);

static void push_key(lua_State *L, const decode_ctx *d, const msgpack_object *k) {
  switch (k->type) {
  case MSGPACK_OBJECT_STR: lua_pushlstring(L, k->via.str.ptr, k->via.str.size); break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (k->via.u64 > (uint64_t)INT64_MAX) lua_pushnumber(L, (lua_Number)k->via.u64);
    else lua_pushinteger(L, (lua_Integer)k->via.u64);
    break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushinteger(L, (lua_Integer)k->via.i64); break;
  default: luaL_error(L, "msgpack: a map key that is not a string or an integer");
  }
}

static void push_obj(lua_State *L, const decode_ctx *d, const msgpack_object *o, int depth) {
  luaL_checkstack(L, 4, "msgpack: nested too deep");
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: lua_pushvalue(L, d->null); break;
  case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (o->via.u64 > (uint64_t)INT64_MAX) lua_pushnumber(L, (lua_Number)o->via.u64);
    else lua_pushinteger(L, (lua_Integer)o->via.u64);
    break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushinteger(L, (lua_Integer)o->via.i64); break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, (lua_Number)o->via.f64); break;
  case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); break;
  case MSGPACK_OBJECT_BIN:
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size);
    lua_setfield(L, -2, "data");
    lua_pushvalue(L, d->binary_mt);
    lua_setmetatable(L, -2);
    break;
  case MSGPACK_OBJECT_ARRAY:
    lua_createtable(L, (int)o->via.array.size, 0);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      push_obj(L, d, &o->via.array.ptr[i], depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_getmetatable(L, ARRAY_MT);
    lua_setmetatable(L, -2);
    break;
  case MSGPACK_OBJECT_MAP:
    lua_createtable(L, 0, (int)o->via.map.size);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      push_key(L, d, &o->via.map.ptr[i].key);
      push_obj(L, d, &o->via.map.ptr[i].val, depth + 1);
      lua_rawset(L, -3);
    }
    break;
  default: /* ext: notepack's undefined (fixext 1, type 0) and anything else */
    lua_pushvalue(L, d->null);
  }
}

static int push_root(lua_State *L) {
  const decode_ctx *d = lua_touserdata(L, 1);
  lua_settop(L, 3); /* 2: binary_mt, 3: null */
  push_obj(L, d, d->root, 0);
  return 1;
}

/* The array marker, made here if moonwire.json has not made it yet. */
static void ensure_array_mt(lua_State *L) {
  if (luaL_newmetatable(L, ARRAY_MT)) {
    lua_pushliteral(L, ARRAY_MT);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

static int mp_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkany(L, 3);
  ensure_array_mt(L);
  const char *bad = l_msgpack_prescan((const unsigned char *)s, len);
  if (bad) {
    lua_pushnil(L);
    lua_pushstring(L, bad);
    return 2;
  }
  msgpack_unpacked r;
  msgpack_unpacked_init(&r);
  size_t off = 0;
  msgpack_unpack_return ret = msgpack_unpack_next(&r, s, len, &off);
  if (ret != MSGPACK_UNPACK_SUCCESS || off != len) {
    msgpack_unpacked_destroy(&r);
    lua_pushnil(L);
    lua_pushstring(L, ret == MSGPACK_UNPACK_NOMEM_ERROR ? "msgpack: out of memory" : "msgpack: malformed");
    return 2;
  }
  /* Building the tables may raise (a map key of another type, memory):
   * in a protected call, so the unpacked objects are freed either way. */
  decode_ctx d = {&r.data, 2, 3};
  lua_pushcfunction(L, push_root);
  lua_pushlightuserdata(L, &d);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  int st = lua_pcall(L, 3, 1, 0);
  msgpack_unpacked_destroy(&r);
  if (st != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "msgpack: cannot decode");
    }
    return 2;
  }
  return 1;
}

/* ---- encoding ---- */

typedef struct {
  msgpack_packer pk;
  int binary_mt, null, array_mt; /* stack indexes */
  const char *err;
  char errbuf[96];
} encode_ctx;

static int encode_value(lua_State *L, encode_ctx *e, int idx, int depth);

static int fail(encode_ctx *e, const char *msg) {
  if (!e->err) e->err = msg;
  return -1;
}

static void pack_string(encode_ctx *e, const char *s, size_t n) {
  msgpack_pack_str(&e->pk, n);
  msgpack_pack_str_body(&e->pk, s, n);
}

static void pack_number(encode_ctx *e, lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) {
    msgpack_pack_int64(&e->pk, (int64_t)lua_tointeger(L, idx));
    return;
  }
  double x = lua_tonumber(L, idx);
  /* JavaScript has one number type, and notepack writes whole ones as ints. */
  if (isfinite(x) && floor(x) == x && fabs(x) <= 9007199254740992.0) msgpack_pack_int64(&e->pk, (int64_t)x);
  else msgpack_pack_double(&e->pk, x);
}

/* Is the table at idx an array (and how long)? */
static int array_length(lua_State *L, encode_ctx *e, int idx, lua_Integer *n) {
  if (lua_getmetatable(L, idx)) {
    int marked = lua_rawequal(L, -1, e->array_mt);
    lua_pop(L, 1);
    if (marked) {
      *n = (lua_Integer)lua_rawlen(L, idx);
      return 1;
    }
  }
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER || !lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      lua_pop(L, 1);
      return 0;
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k > max) max = k;
    count++;
  }
  if (count == 0) return 0; /* {} */
  if (max > 2 * count && max > 10) return -1;
  *n = max;
  return 1;
}

static int encode_table(lua_State *L, encode_ctx *e, int idx, int depth) {
  if (lua_getmetatable(L, idx)) {
    int binary = lua_rawequal(L, -1, e->binary_mt);
    lua_pop(L, 1);
    if (binary) {
      lua_getfield(L, idx, "data");
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      if (!s || lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return fail(e, "msgpack: a binary value without its data string");
      }
      msgpack_pack_bin(&e->pk, n);
      msgpack_pack_bin_body(&e->pk, s, n);
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_Integer n = 0;
  int kind = array_length(L, e, idx, &n);
  if (kind < 0) return fail(e, "msgpack: an excessively sparse array");
  if (kind == 1) {
    if (n > UINT32_MAX) return fail(e, "msgpack: an array too long");
    msgpack_pack_array(&e->pk, (size_t)n);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      int r = encode_value(L, e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (r) return r;
    }
    return 0;
  }
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
  }
  msgpack_pack_map(&e->pk, count);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      pack_string(e, k, kl);
    } else if (kt == LUA_TNUMBER) { /* written as its decimal string, as JSON would */
      char buf[64];
      int kl = lua_isinteger(L, -2) ? snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, -2))
                                    : snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, -2));
      pack_string(e, buf, (size_t)kl);
    } else {
      lua_pop(L, 2);
      return fail(e, "msgpack: a table key that is not a string or a number");
    }
    int r = encode_value(L, e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
    if (r) {
      lua_pop(L, 1);
      return r;
    }
  }
  return 0;
}

static int encode_value(lua_State *L, encode_ctx *e, int idx, int depth) {
  if (depth >= MP_MAX_DEPTH) return fail(e, "msgpack: nested too deep (or a cycle)");
  if (!lua_checkstack(L, 6)) return fail(e, "msgpack: nested too deep");
  switch (lua_type(L, idx)) {
  case LUA_TNIL: msgpack_pack_nil(&e->pk); return 0;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) msgpack_pack_true(&e->pk);
    else msgpack_pack_false(&e->pk);
    return 0;
  case LUA_TNUMBER: pack_number(e, L, idx); return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    pack_string(e, s, n);
    return 0;
  }
  case LUA_TTABLE: return encode_table(L, e, idx, depth);
  case LUA_TLIGHTUSERDATA:
    if (lua_rawequal(L, idx, e->null)) {
      msgpack_pack_nil(&e->pk);
      return 0;
    }
    /* fall through */
  default:
    snprintf(e->errbuf, sizeof e->errbuf, "msgpack: cannot encode a %s", luaL_typename(L, idx));
    return fail(e, e->errbuf);
  }
}

static int mp_encode(lua_State *L) {
  luaL_checkany(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkany(L, 3);
  lua_settop(L, 3);
  ensure_array_mt(L);
  luaL_getmetatable(L, ARRAY_MT); /* 4 */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  encode_ctx e = {.binary_mt = 2, .null = 3, .array_mt = 4};
  msgpack_packer_init(&e.pk, &sb, msgpack_sbuffer_write);
  int r = encode_value(L, &e, 1, 0);
  if (r == 0) lua_pushlstring(L, sb.data ? sb.data : "", sb.size);
  msgpack_sbuffer_destroy(&sb);
  if (r) return luaL_error(L, "%s", e.err ? e.err : "msgpack: cannot encode");
  return 1;
}

int luaopen_moonwire_msgpack(lua_State *L) {
  static const luaL_Reg fns[] = {{"encode", mp_encode}, {"decode", mp_decode}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
