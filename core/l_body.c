/* l_body.c — request bodies as Lua sees them (the exchange's body methods
 * in l_exchange.c): a spooled body read off the loop, or at once; the fields and
 * files of a multipart/form-data body as tables. */
#include "l_body.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "lcall.h"

/* The most one read of a spooled body returns (req:read(off, n)). */
#define L_BODY_READ_MAX (64 * 1024 * 1024)

/* A read in flight: its Lua callback, and the VM to call it in. */
typedef struct l_read {
  struct l_read *prev, *next;
  body_read *r;
  lua_State *L;
  int cb_ref;
} l_read;

static l_read *reads; /* in flight (one loop thread) */

static void unlink_read(l_read *lr) {
  if (lr->prev) lr->prev->next = lr->next;
  else reads = lr->next;
  if (lr->next) lr->next->prev = lr->prev;
}

static void on_read(void *ud, int err, const char *data, size_t len) {
  l_read *lr = ud;
  lua_State *L = lr->L;
  unlink_read(lr);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lr->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lr->cb_ref);
  free(lr);
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L, "reading the request body: %s", uv_strerror(err));
  } else {
    lua_pushlstring(L, data, len);
    lua_pushnil(L);
  }
  if (lcall_pcall(L, 2, 0, "reading a request body") != LUA_OK) lua_pop(L, 1);
}

/* The spooled body of req, or a Lua error: the request is over. */
static body_file *spool_of(lua_State *L, const http_req *req) {
  if (!req) luaL_error(L, "the request body is gone: the response was sent");
  if (!req->body_file) luaL_error(L, "the request body is not in a file");
  return req->body_file;
}

int l_body_read(lua_State *L, const http_req *req, int arg) {
  body_file *f = spool_of(L, req);
  lua_Integer off = luaL_checkinteger(L, arg), n = luaL_checkinteger(L, arg + 1);
  luaL_checktype(L, arg + 2, LUA_TFUNCTION);
  luaL_argcheck(L, off >= 0, arg, "offset must be >= 0");
  luaL_argcheck(L, n >= 0 && n <= L_BODY_READ_MAX, arg + 1, "length must be 0..64 MiB");
  l_read *lr = calloc(1, sizeof *lr);
  if (!lr) return luaL_error(L, "out of memory");
  /* The callback runs in the main thread: L is the handler's coroutine,
   * suspended by then. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lr->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, arg + 2);
  lr->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lr->r = body_file_read(f, (uint64_t)off, (size_t)n, on_read, lr);
  if (!lr->r) {
    luaL_unref(L, LUA_REGISTRYINDEX, lr->cb_ref);
    free(lr);
    return luaL_error(L, "out of memory");
  }
  lr->next = reads;
  if (reads) reads->prev = lr;
  reads = lr;
  return 0;
}

int l_body_read_now(lua_State *L, const http_req *req, int arg) {
  body_file *f = spool_of(L, req);
  lua_Integer off = luaL_checkinteger(L, arg), n = luaL_checkinteger(L, arg + 1);
  luaL_argcheck(L, off >= 0, arg, "offset must be >= 0");
  luaL_argcheck(L, n >= 0 && n <= L_BODY_READ_MAX, arg + 1, "length must be 0..64 MiB");
  if ((uint64_t)off >= f->size) n = 0;
  else if ((uint64_t)n > f->size - (uint64_t)off) n = (lua_Integer)(f->size - (uint64_t)off);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)n);
  ssize_t got = body_file_pread(f, (uint64_t)off, p, (size_t)n);
  if (got < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "reading the request body: %s", strerror((int)-got));
    return 2;
  }
  luaL_pushresultsize(&b, (size_t)got);
  return 1;
}

void l_body_stop(lua_State *L) {
  for (l_read *lr = reads, *n; lr; lr = n) {
    n = lr->next;
    if (lr->L != L) continue;
    body_read_cancel(lr->r);
    unlink_read(lr);
    luaL_unref(L, LUA_REGISTRYINDEX, lr->cb_ref);
    free(lr);
  }
}

/* t[name] = the value on top of the stack (popped); a repeated name makes
 * an array of its values, in order. t is at index ti. A field's value is a
 * string and a file's a table without [1], so an array is told apart. */
static void add_named(lua_State *L, int ti, const char *name, size_t nlen) {
  lua_pushlstring(L, name, nlen);
  int type = lua_rawget(L, ti); /* v old */
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushlstring(L, name, nlen);
    lua_insert(L, -2);
    lua_rawset(L, ti);
    return;
  }
  bool array = false;
  if (type == LUA_TTABLE) {
    array = lua_rawgeti(L, -1, 1) != LUA_TNIL;
    lua_pop(L, 1);
  }
  if (!array) { /* the second value: both go into an array */
    lua_createtable(L, 2, 0);       /* v old arr */
    lua_insert(L, -2);              /* v arr old */
    lua_rawseti(L, -2, 1);          /* v arr */
    lua_pushlstring(L, name, nlen); /* v arr k */
    lua_pushvalue(L, -2);
    lua_rawset(L, ti); /* v arr */
  }
  lua_insert(L, -2); /* arr v */
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

int l_body_parts(lua_State *L, const http_req *req) {
  if (!req || !req->multipart) return 0;
  lua_newtable(L); /* fields */
  int fi = lua_gettop(L);
  lua_newtable(L); /* files */
  int fl = lua_gettop(L);
  for (int i = 0; i < req->nparts; i++) {
    const http_part *p = &req->parts[i];
    if (!p->filename) {
      lua_pushlstring(L, p->value ? p->value : "", p->value_len);
      add_named(L, fi, p->name, p->name_len);
      continue;
    }
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, p->name, p->name_len);
    lua_setfield(L, -2, "field");
    lua_pushlstring(L, p->filename, p->filename_len);
    lua_setfield(L, -2, "filename");
    lua_pushlstring(L, p->type, p->type_len);
    lua_setfield(L, -2, "type");
    lua_pushstring(L, p->path);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, (lua_Integer)p->size);
    lua_setfield(L, -2, "size");
    add_named(L, fl, p->name, p->name_len);
  }
  return 2;
}
