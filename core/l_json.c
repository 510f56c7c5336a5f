/* l_json.c — moonwire.json_c: Lua values to JSON text and back, on json.c,
 * written for Lua 5.4 (integers exact, floats as JavaScript prints them,
 * arrays marked). moonwire.json (core/embedded/lua/moonwire/json.lua) is the public
 * face; moonwire.io uses packet() and decode_args() for Socket.IO.
 *
 *   encode(v) → text | nil, message
 *   encode_sorted(v) → the same with every object's keys in byte order
 *                      (for tests and the fuzzer: one text per value)
 *   decode(text) → v | nil, message
 *   packet(kind, nsp, id, args, n, binary_mt) → text, attachments | nil, message
 *   decode_args(text, attachments, binary_mt) → args, n | nil, message
 *   null, array_mt
 *
 * Tables: one with the array metatable (registry["moonwire.array"], what
 * json.array sets and db.query and every decoded array carry) is an array
 * of its keys 1..max (holes are null; empty it is []), unless it has keys
 * of other kinds; one whose keys are exactly 1..n is an array; anything
 * else is an object (an empty unmarked table is {}), integer keys written
 * as strings. Metamethods are not consulted (raw access only).
 *
 * The output and scratch buffers belong to one state per Lua VM and are
 * kept between calls (no allocation per message). Each call runs its Lua
 * work under lua_pcall, so a memory error (a handler's memory ceiling)
 * leaves nothing behind; a call made while another is running (a __gc
 * finalizer that encodes) gets buffers of its own. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "l_json.h"

#define ARRAY_MT "moonwire.array"
#define STATE_MT "moonwire.json_state"
/* A buffer that grew past this for one big message is freed after it. */
#define JSON_KEEP_BYTES (256 * 1024)

typedef struct jstate {
  mw_str out, scratch;
  int busy; /* a call is running */
} jstate;

/* The buffers one call uses: the state's, or its own when nested. */
typedef struct jbufs {
  jstate *st;
  mw_str *out, *scratch;
  mw_str own_out, own_scratch;
} jbufs;

static void bufs_take(lua_State *L, jbufs *b) {
  b->st = lua_touserdata(L, lua_upvalueindex(1));
  b->own_out = b->own_scratch = (mw_str){0};
  if (b->st->busy) {
    b->out = &b->own_out;
    b->scratch = &b->own_scratch;
  } else {
    b->out = &b->st->out;
    b->scratch = &b->st->scratch;
  }
  b->st->busy++;
}

static void keep_or_free(mw_str *s) {
  if (s->cap > JSON_KEEP_BYTES) mw_str_free(s);
  else mw_str_reset(s);
}

static void bufs_give_back(jbufs *b) {
  b->st->busy--;
  keep_or_free(b->out);
  keep_or_free(b->scratch);
  mw_str_free(&b->own_out);
  mw_str_free(&b->own_scratch);
}

/* Runs fn(ctx, args...) (nargs values on top of the stack) under lua_pcall
 * with the call's buffers; returns what fn returned, or raises its error
 * again once the buffers are back. */
static int run_protected(lua_State *L, lua_CFunction fn, void *ctx, jbufs *b, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ctx);
  lua_rotate(L, base + 1, 2);
  int rc = lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
  bufs_give_back(b);
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L) - base;
}

/* ---------------------------------------------------------------- encoding */

typedef struct jpath {
  const char *key; /* NULL: an array index */
  size_t len;
  lua_Integer index;
} jpath;

typedef struct jenc {
  lua_State *L;
  mw_str *out;
  int array_mt, binary_mt; /* stack indexes; binary_mt 0 outside packets */
  int atts;                /* stack index of the attachments table (nil until the first) */
  lua_Integer natts;
  bool sorted;
  int args_from;           /* packets: the index of the first argument in args (2 for an event) */
  const char *err;
  char errbuf[320];
  jpath path[JSON_MAX_DEPTH + 1];
} jenc;

static int encode_value(jenc *e, int idx, int depth);

/* Sets what a call needs (the path and error buffers, 2 KB, are written
 * only when used). */
static void enc_init(jenc *e, mw_str *out, bool sorted, int args_from) {
  e->L = NULL;
  e->out = out;
  e->array_mt = e->binary_mt = e->atts = 0;
  e->natts = 0;
  e->sorted = sorted;
  e->args_from = args_from;
  e->err = NULL;
}

/* Where a value at depth sits, in Lua syntax: .pets[2].owner */
static void format_path(jenc *e, int depth, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (int d = 0; d < depth && n + 1 < cap; d++) {
    const jpath *p = &e->path[d];
    int w;
    if (d == 0 && e->args_from) {
      w = snprintf(out + n, cap - n, "argument %lld", (long long)(p->index - e->args_from + 1));
    } else if (p->key) {
      bool ident = p->len > 0 && p->len <= 40 && !(p->key[0] >= '0' && p->key[0] <= '9');
      for (size_t i = 0; ident && i < p->len; i++) {
        char c = p->key[i];
        ident = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
      }
      if (ident) w = snprintf(out + n, cap - n, ".%.*s", (int)p->len, p->key);
      else w = snprintf(out + n, cap - n, "[\"%.*s%s\"]", (int)(p->len > 24 ? 24 : p->len), p->key, p->len > 24 ? "..." : "");
    } else {
      w = snprintf(out + n, cap - n, "[%lld]", (long long)p->index);
    }
    if (w < 0) break;
    n += (size_t)w;
    if (n >= cap) {
      n = cap - 1;
      if (cap > 4) memcpy(out + cap - 4, "...", 4);
    }
  }
}

/* Records the first error: "what at path". Returns -1. */
static int enc_fail(jenc *e, int depth, const char *what) {
  if (e->err) return -1;
  char path[120];
  format_path(e, depth, path, sizeof path);
  if (path[0] == '.') memmove(path, path + 1, strlen(path));
  snprintf(e->errbuf, sizeof e->errbuf, "json: %s%s%s", what, path[0] ? " at " : "", path);
  e->err = e->errbuf;
  return -1;
}

static int oom(jenc *e, int depth) { return enc_fail(e, depth, "out of memory"); }

static int put(jenc *e, int depth, const char *s, size_t n) {
  return mw_str_append(e->out, s, n) ? oom(e, depth) : 0;
}

static int put_char(jenc *e, int depth, char c) {
  mw_str *o = e->out;
  if (o->len + 2 > o->cap) return put(e, depth, &c, 1);
  o->p[o->len++] = c;
  o->p[o->len] = '\0';
  return 0;
}

static int put_number(jenc *e, int idx, int depth, bool quoted) {
  char num[JSON_NUMBER_MAX + 2];
  size_t n;
  lua_State *L = e->L;
  if (lua_isinteger(L, idx)) {
    n = json_format_int((int64_t)lua_tointeger(L, idx), num + 1);
  } else {
    double x = (double)lua_tonumber(L, idx);
    if (quoted && isinf(x)) n = (size_t)snprintf(num + 1, sizeof num - 1, "%s", x < 0 ? "-Infinity" : "Infinity");
    else n = json_format_double(x, num + 1); /* a key is never NaN */
  }
  if (!quoted) return put(e, depth, num + 1, n);
  num[0] = num[n + 1] = '"';
  return put(e, depth, num, n + 2);
}

/* A binary value inside a packet: the placeholder socket.io writes, keys in
 * its order, and the data string appended to the attachments. */
static int put_binary(jenc *e, int idx, int depth) {
  lua_State *L = e->L;
  lua_pushliteral(L, "data");
  lua_rawget(L, idx);
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return enc_fail(e, depth, "a binary value without its data string");
  }
  if (lua_isnil(L, e->atts)) {
    lua_createtable(L, 1, 0);
    lua_replace(L, e->atts);
  }
  lua_rawseti(L, e->atts, ++e->natts);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "{\"_placeholder\":true,\"num\":%lld}", (long long)(e->natts - 1));
  return put(e, depth, buf, (size_t)n);
}

static int put_key(jenc *e, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, -2)) {
  case LUA_TSTRING: {
    size_t n;
    const char *k = lua_tolstring(L, -2, &n);
    e->path[depth] = (jpath){k, n, 0};
    if (json_append_string(e->out, k, n)) return oom(e, depth);
    break;
  }
  case LUA_TNUMBER:
    e->path[depth] = (jpath){NULL, 0, lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0};
    if (put_number(e, lua_gettop(L) - 1, depth, true)) return -1;
    break;
  default: {
    char what[96];
    snprintf(what, sizeof what, "a table key of type %s (object keys are strings or numbers)", luaL_typename(L, -2));
    return enc_fail(e, depth, what);
  }
  }
  return put_char(e, depth, ':');
}

typedef struct jkey {
  int type; /* LUA_TSTRING or LUA_TNUMBER */
  const char *s;
  size_t len;
  lua_Integer i;
  lua_Number d;
  bool is_int;
  char num[JSON_NUMBER_MAX];
} jkey;

static const char *key_text(const jkey *k, size_t *len) {
  *len = k->len;
  return k->type == LUA_TSTRING ? k->s : k->num;
}

static int key_cmp(const void *a, const void *b) {
  size_t la, lb;
  const char *sa = key_text(a, &la), *sb = key_text(b, &lb);
  int c = memcmp(sa, sb, la < lb ? la : lb);
  return c ? c : (la > lb) - (la < lb);
}

/* Objects for encode_sorted: the keys gathered (in a userdata, so an error
 * frees them), sorted, and written in that order. */
static int put_object_sorted(jenc *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
  }
  jkey *keys = lua_newuserdatauv(L, (count ? count : 1) * sizeof *keys, 0);
  int kidx = lua_gettop(L);
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    jkey *k = &keys[n++];
    k->type = lua_type(L, -1);
    if (k->type == LUA_TSTRING) {
      k->s = lua_tolstring(L, -1, &k->len);
    } else if (k->type == LUA_TNUMBER) {
      k->is_int = lua_isinteger(L, -1);
      if (k->is_int) k->i = lua_tointeger(L, -1), k->len = json_format_int((int64_t)k->i, k->num);
      else k->d = lua_tonumber(L, -1), k->len = json_format_double((double)k->d, k->num);
    } else {
      lua_pushnil(L); /* put_key wants the key below a value */
      int r = put_key(e, depth);
      lua_pop(L, 3);
      return r;
    }
  }
  qsort(keys, count, sizeof *keys, key_cmp);
  if (put_char(e, depth, '{')) return -1;
  for (size_t i = 0; i < count; i++) {
    jkey *k = &keys[i];
    if (i && put_char(e, depth, ',')) return -1;
    if (k->type == LUA_TSTRING) lua_pushlstring(L, k->s, k->len);
    else if (k->is_int) lua_pushinteger(L, k->i);
    else lua_pushnumber(L, k->d);
    lua_pushvalue(L, -1);
    lua_rawget(L, idx);
    int r = put_key(e, depth) || encode_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 2);
    if (r) return -1;
  }
  lua_remove(L, kidx);
  return put_char(e, depth, '}');
}

static int encode_table(jenc *e, int idx, int depth) {
  lua_State *L = e->L;
  if (depth >= json_max_depth()) {
    char why[96];
    snprintf(why, sizeof why, "%s (a table that holds itself?)", json_depth_error());
    return enc_fail(e, depth, why);
  }
  if (!lua_checkstack(L, 6)) return enc_fail(e, depth, "out of Lua stack");
  bool marked = false;
  if (lua_getmetatable(L, idx)) {
    if (e->binary_mt && lua_rawequal(L, -1, e->binary_mt)) {
      lua_pop(L, 1);
      return put_binary(e, idx, depth);
    }
    marked = lua_rawequal(L, -1, e->array_mt);
    lua_pop(L, 1);
  }
  /* Array or object: every key a positive integer (and for an unmarked
   * table, exactly 1..n)? The scan stops at the first other key. */
  lua_Integer count = 0, max = 0;
  bool ints = true;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    lua_Integer k;
    if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) < 1) {
      lua_pop(L, 1);
      ints = false;
      break;
    }
    count++;
    if (k > max) max = k;
  }
  bool array;
  if (count == 0 && ints) array = marked;                         /* empty: [] only when marked */
  else if (!ints) array = false;
  else if (marked) array = true;
  else array = max == count;
  if (array) {
    if (max > 2 * count + 16) return enc_fail(e, depth, "an array with more holes than values");
    if (put_char(e, depth, '[')) return -1;
    for (lua_Integer i = 1; i <= max; i++) {
      if (i > 1 && put_char(e, depth, ',')) return -1;
      e->path[depth] = (jpath){NULL, 0, i};
      lua_rawgeti(L, idx, i);
      int r = encode_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (r) return -1;
    }
    return put_char(e, depth, ']');
  }
  if (e->sorted) return put_object_sorted(e, idx, depth);
  if (put_char(e, depth, '{')) return -1;
  bool first = true;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int r = (!first && put_char(e, depth, ',')) || put_key(e, depth) || encode_value(e, lua_gettop(L), depth + 1);
    first = false;
    lua_pop(L, 1);
    if (r) {
      lua_pop(L, 1);
      return -1;
    }
  }
  return put_char(e, depth, '}');
}

static int encode_value(jenc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return put(e, depth, "null", 4); /* a hole in an array, a nil argument */
  case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? put(e, depth, "true", 4) : put(e, depth, "false", 5);
  case LUA_TNUMBER: return put_number(e, idx, depth, false);
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return json_append_string(e->out, s, n) ? oom(e, depth) : 0;
  }
  case LUA_TTABLE: return encode_table(e, idx, depth);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) return put(e, depth, "null", 4); /* json.null */
    /* fall through */
  default: {
    char what[64];
    snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
    return enc_fail(e, depth, what);
  }
  }
}

/* Under pcall: 1 ctx, 2 value, 3 array_mt. */
static int encode_run(lua_State *L) {
  jenc *e = lua_touserdata(L, 1);
  e->L = L;
  e->array_mt = 3;
  if (encode_value(e, 2, 0)) {
    lua_pushnil(L);
    lua_pushstring(L, e->err);
    return 2;
  }
  lua_pushlstring(L, e->out->p ? e->out->p : "", e->out->len);
  return 1;
}

static int encode_with(lua_State *L, bool sorted) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  jbufs b;
  bufs_take(L, &b);
  jenc e;
  enc_init(&e, b.out, sorted, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  return run_protected(L, encode_run, &e, &b, 2);
}

static int l_encode(lua_State *L) { return encode_with(L, false); }
static int l_encode_sorted(lua_State *L) { return encode_with(L, true); }

/* Under pcall: 1 ctx, 2 args, 3 array_mt, 4 binary_mt, 5 attachments (nil).
 * The JSON goes after room left for the head, which is written in front
 * of it once the attachment count is known. */
typedef struct jpacket {
  jenc e;
  int kind;
  const char *nsp;
  size_t nsp_len;
  lua_Integer id; /* -1: none */
  lua_Integer n;
} jpacket;

static int packet_run(lua_State *L) {
  jpacket *p = lua_touserdata(L, 1);
  jenc *e = &p->e;
  e->L = L;
  e->array_mt = 3;
  e->binary_mt = lua_istable(L, 4) ? 4 : 0;
  e->atts = 5;
  bool root = p->nsp_len == 1 && p->nsp[0] == '/';
  size_t room = 2 + 20 + 1 + (root ? 0 : p->nsp_len + 1) + 20; /* type, count '-', nsp ',', id */
  if (mw_str_reserve(e->out, room + 64)) return luaL_error(L, "json: out of memory");
  e->out->len = room;
  if (put_char(e, 0, '[')) goto failed;
  for (lua_Integer i = 1; i <= p->n; i++) {
    if (i > 1 && put_char(e, 0, ',')) goto failed;
    e->path[0] = (jpath){NULL, 0, i};
    lua_rawgeti(L, 2, i);
    int r = encode_value(e, lua_gettop(L), 1);
    lua_pop(L, 1);
    if (r) goto failed;
  }
  if (put_char(e, 0, ']')) goto failed;
  char head[64];
  size_t h = 0;
  head[h++] = (char)('0' + p->kind + (e->natts ? 3 : 0)); /* BINARY_EVENT / BINARY_ACK */
  if (e->natts) {
    h += json_format_int((int64_t)e->natts, head + h);
    head[h++] = '-';
  }
  if (h + (root ? 0 : p->nsp_len + 1) + 21 > room) return luaL_error(L, "json: packet head too long");
  char *start = e->out->p + room;
  if (p->id >= 0) {
    char id[24];
    size_t il = json_format_int((int64_t)p->id, id);
    start -= il;
    memcpy(start, id, il);
  }
  if (!root) {
    *--start = ',';
    start -= p->nsp_len;
    memcpy(start, p->nsp, p->nsp_len);
  }
  start -= h;
  memcpy(start, head, h);
  lua_pushlstring(L, start, (size_t)(e->out->p + e->out->len - start));
  lua_pushvalue(L, 5);
  return 2;
failed:
  lua_pushnil(L);
  lua_pushstring(L, e->err);
  return 2;
}

/* packet(kind, nsp, id, args, n, binary_mt): the text of a Socket.IO EVENT
 * (kind 2) or ACK (3) packet with args[1..n] as its payload (nil → null),
 * and its attachments: every value whose metatable is binary_mt is written
 * as {"_placeholder":true,"num":N} and its data string becomes attachment
 * N+1; the packet is then a BINARY_EVENT / BINARY_ACK with their count.
 * Returns text and the attachments (nil when none), or nil and a message. */
static int l_packet(lua_State *L) {
  jpacket p;
  p.kind = (int)luaL_checkinteger(L, 1);
  luaL_argcheck(L, p.kind == 2 || p.kind == 3, 1, "2 (EVENT) or 3 (ACK)");
  p.nsp = luaL_checklstring(L, 2, &p.nsp_len);
  luaL_argcheck(L, p.nsp_len > 0 && p.nsp[0] == '/', 2, "a namespace starts with '/'");
  p.id = luaL_optinteger(L, 3, -1);
  luaL_checktype(L, 4, LUA_TTABLE);
  p.n = luaL_checkinteger(L, 5);
  if (!lua_isnoneornil(L, 6)) luaL_checktype(L, 6, LUA_TTABLE);
  lua_settop(L, 6);
  jbufs b;
  bufs_take(L, &b);
  enc_init(&p.e, b.out, false, p.kind == 2 ? 2 : 1);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 6);
  lua_pushnil(L);
  return run_protected(L, packet_run, &p, &b, 4);
}

/* ---------------------------------------------------------------- decoding */

typedef struct jdec {
  json_reader r;
  bool args;      /* decode_args: the top is an array, its nulls are holes */
  bool has_atts;
  lua_Integer n;  /* decode_args: the element count */
  const char *err; /* a static message, for what the reader does not check */
} jdec;

/* A decoded float: whole values that fit are integers (1.0 and 1e3 too; JS
 * has one number type and writes them as 1 and 1000). */
static void push_float(lua_State *L, double x) {
  if (x >= -9223372036854775808.0 && x < 9223372036854775808.0 && x == floor(x)) lua_pushinteger(L, (lua_Integer)x);
  else lua_pushnumber(L, (lua_Number)x);
}

/* The object on top, if it is {"_placeholder":true,"num":N}, becomes the
 * binary value of attachment N+1. Returns -1 when that attachment is missing. */
static int reconstruct(lua_State *L, int atts, int binary_mt) {
  lua_pushliteral(L, "_placeholder");
  lua_rawget(L, -2);
  bool ph = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!ph) return 0;
  lua_pushliteral(L, "num");
  lua_rawget(L, -2);
  if (!lua_isinteger(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_Integer num = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (num < 0 || num >= LUA_MAXINTEGER) return -1;
  if (lua_rawgeti(L, atts, num + 1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return -1;
  }
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "data");
  lua_pushvalue(L, binary_mt);
  lua_setmetatable(L, -2);
  lua_replace(L, -2);
  return 0;
}

/* Values wait on the Lua stack above their container's slot until the
 * container ends (or this many have gathered): its table is then made at
 * its size, not grown one value at a time. */
#define JSON_PENDING_MAX 64

/* The values pending for the container whose slot is base go into its
 * table (made at the first flush, with room for them all when the
 * container ends here). Arrays: done counts the elements already in. */
static void flush(lua_State *L, int base, bool object, lua_Integer *done) {
  int pending = lua_gettop(L) - base;
  if (lua_isnil(L, base)) {
    if (object) lua_createtable(L, 0, pending / 2);
    else lua_createtable(L, pending, 0);
    lua_replace(L, base);
  }
  if (object) { /* in order, so a repeated key keeps its last value (JSON.parse does) */
    for (int i = base + 1; i < base + pending; i += 2) {
      lua_pushvalue(L, i);
      lua_pushvalue(L, i + 1);
      lua_rawset(L, base);
    }
    lua_settop(L, base);
  } else {
    for (int k = pending; k >= 1; k--) lua_rawseti(L, base, *done + k);
    *done += pending;
  }
}

/* Under pcall: 1 ctx, 2 array_mt, 3 attachments (or nil), 4 binary_mt (or nil). */
static int decode_run(lua_State *L) {
  jdec *d = lua_touserdata(L, 1);
  json_reader *r = &d->r;
  int base[JSON_MAX_DEPTH + 1];          /* the stack slot of each open container */
  lua_Integer done[JSON_MAX_DEPTH + 1];  /* arrays: elements already in the table */
  for (;;) {
    json_token t = json_next(r);
    if (!lua_checkstack(L, 4)) luaL_error(L, "json: out of Lua stack");
    switch (t) {
    case JSON_ERROR: return 0;
    case JSON_END:
      return 1;
    case JSON_NULL:
      if (d->args && r->depth == 1) lua_pushnil(L); /* a null argument is a nil for the handler */
      else lua_pushlightuserdata(L, NULL);
      break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_INT: lua_pushinteger(L, (lua_Integer)r->i); break;
    case JSON_FLOAT: push_float(L, r->d); break;
    case JSON_STRING: lua_pushlstring(L, r->str, r->str_len); break;
    case JSON_KEY:
      lua_pushlstring(L, r->str, r->str_len);
      continue;
    case JSON_ARRAY:
    case JSON_OBJECT:
      if (d->args && r->depth == 1 && t != JSON_ARRAY) {
        d->err = "json: the arguments are not an array";
        return 0;
      }
      lua_pushnil(L); /* the container's slot: its table comes at the first flush */
      base[r->depth] = lua_gettop(L);
      done[r->depth] = 0;
      continue;
    case JSON_ARRAY_END:
    case JSON_OBJECT_END: {
      int depth = r->depth + 1; /* the one that just ended */
      flush(L, base[depth], t == JSON_OBJECT_END, &done[depth]);
      if (t == JSON_ARRAY_END) {
        if (d->args && depth == 1) d->n = done[1];
        lua_pushvalue(L, 2);
        lua_setmetatable(L, -2);
      } else if (d->has_atts && reconstruct(L, 3, 4)) {
        d->err = "json: a binary placeholder without its attachment";
        return 0;
      }
      break;
    }
    }
    /* A complete value on top: it waits in its container, or it is the result. */
    int depth = r->depth;
    if (depth == 0) {
      if (d->args && t != JSON_ARRAY_END) {
        d->err = "json: the arguments are not an array";
        return 0;
      }
      continue; /* the next token is JSON_END */
    }
    if (lua_gettop(L) - base[depth] >= 2 * JSON_PENDING_MAX) {
      bool object = r->objects >> (depth - 1) & 1;
      flush(L, base[depth], object, &done[depth]);
    }
  }
}

static int decode_error(lua_State *L, const jdec *d) {
  lua_pushnil(L);
  if (d->err) {
    lua_pushstring(L, d->err);
    return 2;
  }
  const json_reader *r = &d->r;
  char found[32] = "";
  if (r->err_char >= 0x20 && r->err_char < 0x7f) snprintf(found, sizeof found, " (found '%c')", r->err_char);
  else if (r->err_char >= 0) snprintf(found, sizeof found, " (found byte 0x%02x)", (unsigned)r->err_char);
  lua_pushfstring(L, "json: %s at offset %I%s", r->err, (lua_Integer)r->err_pos, found);
  return 2;
}

static int decode_with(lua_State *L, bool args) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  bool has_atts = args && !lua_isnoneornil(L, 2);
  if (has_atts) {
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
  }
  lua_settop(L, 3);
  jbufs b;
  bufs_take(L, &b);
  jdec d = {.args = args, .has_atts = has_atts};
  json_reader_init(&d.r, s, len, b.scratch);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  int base = lua_gettop(L) - 3;
  int n = run_protected(L, decode_run, &d, &b, 3);
  if (n != 1 || d.err) {
    lua_settop(L, base);
    return decode_error(L, &d);
  }
  if (!args) return 1;
  lua_pushinteger(L, d.n);
  return 2;
}

/* decode(text) → the value (json.null for null) or nil and a message. */
static int l_decode(lua_State *L) { return decode_with(L, false); }

/* decode_args(text, attachments, binary_mt) → args, n: a Socket.IO payload
 * (an array) as handler arguments: its nulls are nil (n counts them), and
 * with attachments its placeholders become binary values (binary_mt). */
static int l_decode_args(lua_State *L) { return decode_with(L, true); }

/* ---------------------------------------------------------------- the module */

static int state_gc(lua_State *L) {
  jstate *st = luaL_checkudata(L, 1, STATE_MT);
  mw_str_free(&st->out);
  mw_str_free(&st->scratch);
  return 0;
}

int luaopen_moonwire_json_c(lua_State *L) {
  static const luaL_Reg fns[] = {{"encode", l_encode}, {"encode_sorted", l_encode_sorted}, {"decode", l_decode},
                                 {"packet", l_packet}, {"decode_args", l_decode_args}, {NULL, NULL}};
  luaL_newlibtable(L, fns);
  jstate *st = lua_newuserdatauv(L, sizeof *st, 0);
  memset(st, 0, sizeof *st);
  if (luaL_newmetatable(L, STATE_MT)) {
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  luaL_newmetatable(L, ARRAY_MT); /* db.query and moonwire.msgpack use the same one */
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "array_mt");
  luaL_setfuncs(L, fns, 2);
  lua_pushlightuserdata(L, NULL); /* json.null: a light userdata that holds nothing */
  lua_setfield(L, -2, "null");
  return 1;
}
