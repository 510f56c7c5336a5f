/* l_exchange.c — the HTTP exchange for Lua: the response handle under
 * moonwire.app's res, and the request's values and headers. */
#include "l_exchange.h"

#include <errno.h>
#include <lauxlib.h>
#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devmode.h"
#include "l_body.h"
#include "lcall.h"

#define EXCHANGE_MT "moonwire.exchange"

typedef struct lex_waiter lex_waiter;

struct l_exchanges {
  lua_State *L;
  uv_loop_t *loop;
  mw_static *st;
  int mt_ref;            /* EXCHANGE_MT, by reference: no lookup by name per request */
  lex_waiter *waiters;   /* Lua functions C owes a call */
  lex_waiter *ready;     /* drains heard of, to answer on the next loop turn */
  uv_idle_t *ready_idle; /* active while ready is not empty (its own memory: freed when closed) */
};

/* A response as Lua sees it, carrying its request's headers packed (see
 * pack_headers): no Lua string to make for them, and they live as long as
 * the request's table does. res is NULL once answered, or while static.c
 * sends a file for it (res:sendFile); while a streamed body is open,
 * streaming is set and res stays. */
struct l_exchange {
  http_res *res;
  bool dev;    /* dev mode, and a client on this machine: HTML pages get the dev helper */
  l_exchanges *x;
  bool streaming;
  size_t hlen;
  char headers[];
};

/* A Lua function waiting for something C does later on an exchange's
 * behalf: the queue to drain (ex:wait), or static.c's word on a file
 * (ex:sendfile). The registry holds the function (and through it the
 * route's response and its exchange) until it is called. l_exchanges_free
 * marks those still waiting dead (x NULL): the callback then only frees
 * the waiter. */
struct lex_waiter {
  l_exchanges *x;
  l_exchange *ex;
  http_res *res; /* sendfile: the response handed to static.c */
  int ref;
  lex_waiter *prev, *next;
};

/* ---- the response handle ---- */

/* The exchange's metatable is its methods' second upvalue: checking the
 * argument against it needs no registry lookup by name (luaL_checkudata's),
 * which every request paid twice. */
static l_exchange *check_ex(lua_State *L) {
  l_exchange *ex = lua_touserdata(L, 1);
  if (ex && lua_getmetatable(L, 1)) {
    bool ours = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (ours) return ex;
  }
  return luaL_checkudata(L, 1, EXCHANGE_MT); /* raises the usual error */
}

/* Adds the header name: value at the top of the stack (a string, or what
 * tostring would make of it) to res; raises an error for CR, LF or NUL. */
static void ex_header(lua_State *L, http_res *res, const char *name, size_t nl) {
  size_t vl;
  bool str = lua_type(L, -1) == LUA_TSTRING;
  const char *v = str ? lua_tolstring(L, -1, &vl) : luaL_tolstring(L, -1, &vl);
  if (http_res_header(res, name, nl, v, vl) == -EINVAL) {
    http_res_clear(res);
    luaL_error(L, "invalid header %s (CR, LF or NUL in it)", name);
  }
  if (!str) lua_pop(L, 1);
}

/* Adds the headers of the table at idx (name → value, a value may be an
 * array for repeats) to res. */
static void ex_headers(lua_State *L, http_res *res, int idx) {
  if (!lua_istable(L, idx)) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    /* Names that are not strings are skipped (and never converted in
     * place, which would confuse lua_next). */
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 1);
      continue;
    }
    size_t nl;
    const char *name = lua_tolstring(L, -2, &nl);
    if (lua_istable(L, -1)) {
      for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
        ex_header(L, res, name, nl);
        lua_pop(L, 1);
      }
      lua_pop(L, 1); /* the nil */
    } else {
      ex_header(L, res, name, nl);
    }
    lua_pop(L, 1);
  }
}

static int ex_status(lua_State *L, int idx) {
  lua_Integer status = luaL_checkinteger(L, idx);
  if (status < 100 || status > 999) return luaL_argerror(L, idx, "status must be 100..999");
  return (int)status;
}

/* A weak validator for a body, as Express makes one (W/"length-hash"):
 * a 64-bit hash of the bytes, a word at a time. Not a digest: it tells a
 * changed page from the one a client has. */
static uint64_t body_hash(const char *p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)n;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 32;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
  h ^= h >> 29;
  h *= 0xff51afd7ed558ccdu;
  return h ^ (h >> 32);
}

/* W/"<length in hex>-<hash in 16 hex digits>" into tag (room for 64);
 * returns its length. By hand: snprintf was 5% of a small route's cost. */
static size_t weak_etag(char *tag, size_t len, uint64_t hash) {
  static const char hex[] = "0123456789abcdef";
  char *p = tag;
  *p++ = 'W';
  *p++ = '/';
  *p++ = '"';
  char digits[16];
  int n = 0;
  do {
    digits[n++] = hex[len & 15];
    len >>= 4;
  } while (len);
  while (n) *p++ = digits[--n];
  *p++ = '-';
  for (int shift = 60; shift >= 0; shift -= 4) *p++ = hex[(hash >> shift) & 15];
  *p++ = '"';
  *p = '\0';
  return (size_t)(p - tag);
}

/* Express's req.fresh: the client's copy (If-None-Match against the
 * response's ETag, else If-Modified-Since against its Last-Modified) is
 * still good, unless it asked for no cache. */
static bool ex_fresh(const http_res *res) {
  const http_req *req = res->req;
  size_t n, tn;
  const char *v = http_req_header(req, "cache-control", &n);
  if (v && memmem(v, n, "no-cache", 8)) return false;
  if ((v = http_req_header(req, "if-none-match", &n))) {
    const char *tag = http_res_get(res, "etag", &tn);
    char t[256];
    if (!tag || tn >= sizeof t) return false;
    memcpy(t, tag, tn);
    t[tn] = '\0';
    return http_etag_match(v, n, t);
  }
  if ((v = http_req_header(req, "if-modified-since", &n))) {
    const char *lm = http_res_get(res, "last-modified", &tn);
    int64_t since = http_parse_date(v, n), mod = lm ? http_parse_date(lm, tn) : -1;
    return since >= 0 && mod >= 0 && mod <= since;
  }
  return false;
}

/* A response answered already (or being sent by static.c for
 * res:sendFile): the exchange is stale, and using it is the route's
 * mistake (a second res:send). Raises, naming the line that called the
 * Lua method (level 2: the route, past response.lua's method). */
static int ex_stale(lua_State *L, const char *what) {
  luaL_where(L, 2);
  lua_pushfstring(L, "%s: the response was already sent", what);
  lua_concat(L, 2);
  return lua_error(L);
}

/* ex:finish(status, body, headers, etag); raises when already answered
 * (ex_stale). headers is a table name → value (a value may be an array for
 * repeats). etag: give a GET or HEAD's 2xx body a weak ETag unless it has
 * one; either way, a client whose copy is fresh gets 304 (as Express's
 * res.send). A streamed response ends with its last piece. */
static int ex_finish(lua_State *L) {
  l_exchange *ex = check_ex(L);
  int status = ex_status(L, 2);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 3, "", &blen);
  if (!ex->res) return ex_stale(L, "res:send");
  http_res *res = ex->res;
  if (ex->streaming) { /* res:send on a streamed response: the last piece */
    if (blen) http_res_write_copy(res, body, blen);
    ex->res = NULL;
    ex->streaming = false;
    http_res_finish(res);
    return 0;
  }
  res->status = status;
  ex_headers(L, res, 4);
  ex->res = NULL;
  mw_str page = {0};
  if (ex->dev && devmode_inject(&page, res, body, blen)) {
    body = page.p;
    blen = page.len;
  }
  const http_req *req = res->req;
  if (req && (req->method_id == HTTP_GET || req->method_id == HTTP_HEAD) && status >= 200 && status < 300) {
    if (lua_toboolean(L, 5) && !http_res_get(res, "etag", NULL)) {
      char tag[64];
      size_t tlen = weak_etag(tag, blen, body_hash(body, blen));
      http_res_header(res, "ETag", 4, tag, tlen);
    }
    if (ex_fresh(res)) { /* 304: no body, nor what describes one */
      res->status = 304;
      http_res_remove(res, "content-type");
      blen = 0;
    }
  }
  http_res_end(res, body, blen);
  mw_str_free(&page);
  return 0;
}

static int ex_done(lua_State *L) {
  l_exchange *ex = check_ex(L);
  lua_pushboolean(L, ex->res == NULL || ex->streaming);
  return 1;
}

/* ex:begin(status, headers): the head goes out, the body follows in
 * pieces (chunked on HTTP/1.1). Raises when already answered or begun
 * (ex_stale). */
static int ex_begin(lua_State *L) {
  l_exchange *ex = check_ex(L);
  int status = ex_status(L, 2);
  if (!ex->res || ex->streaming) return ex_stale(L, "res:write");
  ex->res->status = status;
  ex_headers(L, ex->res, 3);
  ex->streaming = true;
  http_res_begin(ex->res, HTTP_LEN_STREAM);
  return 0;
}

/* A route writes on while the queue holds less than this; past it,
 * res:write waits for the drain. */
#define EX_QUEUE_HIGH (64 * 1024)

/* ex:write(s) → true (write on), false (wait: ex:wait), or nil, "closed"
 * when the client is gone. */
static int ex_write(lua_State *L) {
  l_exchange *ex = check_ex(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (!ex->res || !ex->streaming) return luaL_error(L, "the response is not being streamed");
  int r = http_res_write_copy(ex->res, s, len);
  size_t q = http_res_queued(ex->res);
  if (r == -EPIPE || q == SIZE_MAX) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (r) return luaL_error(L, "res:write: %s", strerror(-r));
  lua_pushboolean(L, q < EX_QUEUE_HIGH);
  return 1;
}

static lex_waiter *waiter_new(lua_State *L, l_exchanges *x, l_exchange *ex, int fn) {
  lex_waiter *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  lua_pushvalue(L, fn);
  w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->x = x;
  w->ex = ex;
  w->next = x->waiters;
  if (x->waiters) x->waiters->prev = w;
  x->waiters = w;
  return w;
}

/* Pushes the waiting function and frees w; false when the VM is gone. */
static bool waiter_take(lex_waiter *w) {
  l_exchanges *x = w->x;
  if (!x) {
    free(w);
    return false;
  }
  if (w->prev) w->prev->next = w->next;
  else x->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  lua_rawgeti(x->L, LUA_REGISTRYINDEX, w->ref);
  luaL_unref(x->L, LUA_REGISTRYINDEX, w->ref);
  free(w);
  return true;
}

/* Calls the waiters whose drain came: fn(true) when the queue drained,
 * fn(nil) when the client went away. */
static void on_ready(uv_idle_t *idle) {
  l_exchanges *x = idle->data;
  uv_idle_stop(idle);
  lex_waiter *list = x->ready;
  x->ready = NULL;
  while (list) {
    lex_waiter *w = list;
    list = w->next;
    l_exchange *ex = w->ex;
    lua_State *L = x->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
    free(w);
    if (ex->res && http_res_queued(ex->res) != SIZE_MAX) lua_pushboolean(L, 1);
    else lua_pushnil(L);
    if (lcall_pcall(L, 1, 0, "res:write") != LUA_OK) lua_pop(L, 1);
  }
}

/* The queue drained, or the client went away. The route hears of it on the
 * next loop turn, not now: the drain comes while the server flushes
 * queues, and a route that wrote again at once would have this connection
 * flushed again and again while the others wait. */
static void on_ex_drain(void *ud) {
  lex_waiter *w = ud;
  l_exchanges *x = w->x;
  if (!x) {
    free(w);
    return;
  }
  if (w->prev) w->prev->next = w->next;
  else x->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = NULL;
  w->next = x->ready;
  x->ready = w;
  if (!x->ready_idle) {
    if (!(x->ready_idle = malloc(sizeof *x->ready_idle))) return;
    uv_idle_init(x->loop, x->ready_idle);
    x->ready_idle->data = x;
  }
  uv_idle_start(x->ready_idle, on_ready);
}

/* ex:wait(fn): fn(true) once the queue has drained, fn(nil) if the client
 * goes away first. */
static int ex_wait(lua_State *L) {
  l_exchange *ex = check_ex(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!ex->res || !ex->streaming) return luaL_error(L, "the response is not being streamed");
  lex_waiter *w = waiter_new(L, ex->x, ex, 2);
  if (!w) return luaL_error(L, "out of memory");
  http_res_wait(ex->res, on_ex_drain, w);
  return 0;
}

/* ex:abort(): ends a streamed response cut short (the route failed). Like
 * a close, it may come twice: on anything but an open stream it does
 * nothing. */
static int ex_abort(lua_State *L) {
  l_exchange *ex = check_ex(L);
  if (ex->res && ex->streaming) {
    http_res *res = ex->res;
    ex->res = NULL;
    ex->streaming = false;
    http_res_abort(res);
  }
  return 0;
}

/* static.c's word on a res:sendFile: fn(true) when the file is being sent,
 * fn(nil, message) when it could not be (the response is the route's
 * again). */
static void on_sendfile_done(void *ud, const http_req *req, http_res *res, int rc) {
  (void)req;
  lex_waiter *w = ud;
  l_exchange *ex = w->ex;
  lua_State *L = w->x ? w->x->L : NULL;
  if (rc != 0 && w->x) { /* untouched: the route answers */
    http_res_clear(res);
    res->status = 200;
    ex->res = res;
  }
  if (!waiter_take(w)) return;
  if (rc == 0) {
    lua_pushboolean(L, 1);
    lua_pushnil(L);
  } else {
    lua_pushnil(L);
    if (rc == 1) lua_pushliteral(L, "not found");
    else lua_pushstring(L, strerror(-rc));
  }
  if (lcall_pcall(L, 2, 0, "res:sendFile") != LUA_OK) lua_pop(L, 1);
}

/* ex:sendfile(status, headers, root, path, dotfiles, cache_control, fn) →
 * true (fn hears how it went), or nil and why at once (the response is
 * still the route's). Raises when already answered (ex_stale). */
static int ex_sendfile(lua_State *L) {
  l_exchange *ex = check_ex(L);
  int status = ex_status(L, 2);
  const char *root = luaL_checkstring(L, 4);
  size_t plen;
  const char *path = luaL_checklstring(L, 5, &plen);
  bool dotfiles = lua_toboolean(L, 6);
  const char *cc = luaL_optstring(L, 7, NULL);
  luaL_checktype(L, 8, LUA_TFUNCTION);
  if (!ex->res || ex->streaming) return ex_stale(L, "res:sendFile");
  if (strlen(path) != plen) { /* a NUL in it */
    lua_pushnil(L);
    lua_pushliteral(L, "not found");
    return 2;
  }
  http_res *res = ex->res;
  res->status = status;
  ex_headers(L, res, 3);
  lex_waiter *w = waiter_new(L, ex->x, ex, 8);
  if (!w) {
    http_res_clear(res);
    return luaL_error(L, "out of memory");
  }
  w->res = res;
  ex->res = NULL; /* static.c has it now */
  int r = static_send_file(ex->x->st, root, path, dotfiles, cc, res->req, res, on_sendfile_done, w);
  if (r != 0) {
    ex->res = res;
    http_res_clear(res);
    waiter_take(w);
    lua_pop(L, 1);
    lua_pushnil(L);
    if (r == 1) lua_pushliteral(L, "not found");
    else lua_pushstring(L, strerror(-r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A streamed response whose route was dropped unfinished (its coroutine
 * collected, or the VM closing) is cut short rather than left open. */
static int ex_gc(lua_State *L) {
  l_exchange *ex = lua_touserdata(L, 1);
  if (ex && ex->res && ex->streaming) {
    http_res *res = ex->res;
    ex->res = NULL;
    ex->streaming = false;
    http_res_abort(res);
  }
  return 0;
}

/* The request's body, for moonwire.app's req (see l_body.c): its size when
 * it was spooled to a file (else nil), reads of it, multipart parts. */
static const http_req *ex_req(l_exchange *ex) { return ex->res ? ex->res->req : NULL; }

static int ex_body_size(lua_State *L) {
  const http_req *req = ex_req(check_ex(L));
  if (!req || !req->body_file) return 0;
  lua_pushinteger(L, (lua_Integer)req->body_len);
  return 1;
}

static int ex_read_body(lua_State *L) { return l_body_read(L, ex_req(check_ex(L)), 2); }
static int ex_read_body_now(lua_State *L) { return l_body_read_now(L, ex_req(check_ex(L)), 2); }
static int ex_parts(lua_State *L) { return l_body_parts(L, ex_req(check_ex(L))); }

static const luaL_Reg ex_methods[] = {{"finish", ex_finish},         {"done", ex_done},
                                      {"begin", ex_begin},           {"write", ex_write},
                                      {"wait", ex_wait},             {"abort", ex_abort},
                                      {"sendfile", ex_sendfile},     {"body_size", ex_body_size},
                                      {"read_body", ex_read_body},   {"read_body_now", ex_read_body_now},
                                      {"parts", ex_parts},           {NULL, NULL}};

/* ---- the request ---- */

/* Sets t[name lowercased] = value, joining a repeated header's values with
 * ", " (t at the top of the stack). */
static void set_header(lua_State *L, const char *hname, size_t hlen, const char *value, size_t vlen) {
  char name[256];
  size_t n = hlen < sizeof name ? hlen : sizeof name - 1;
  for (size_t j = 0; j < n; j++) {
    char ch = hname[j];
    name[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
  lua_pushlstring(L, name, n);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TSTRING) { /* repeated header: join with ", " */
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, value, vlen);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, value, vlen);
  }
  lua_rawset(L, -3);
}

void l_exchange_push_headers(lua_State *L, const http_req *req) {
  lua_createtable(L, 0, req->nheaders);
  for (int i = 0; i < req->nheaders; i++) {
    const http_header *hd = &req->headers[i];
    set_header(L, hd->name, hd->name_len, hd->value, hd->value_len);
  }
}

/* A request's headers travel to Lua packed in its exchange, and become a
 * table only if the app reads req.headers (moonwire.app): per header, the
 * name's length and the value's length (uint32_t each, native order), then
 * the name and the value. */
size_t l_exchange_packed_size(const http_req *req) {
  size_t total = 0;
  for (int i = 0; i < req->nheaders; i++) total += 8 + req->headers[i].name_len + req->headers[i].value_len;
  return total;
}

void l_exchange_pack_headers(const http_req *req, char *p) {
  for (int i = 0; i < req->nheaders; i++) {
    const http_header *hd = &req->headers[i];
    uint32_t len[2] = {(uint32_t)hd->name_len, (uint32_t)hd->value_len};
    memcpy(p, len, sizeof len);
    p += sizeof len;
    memcpy(p, hd->name, hd->name_len);
    p += hd->name_len;
    memcpy(p, hd->value, hd->value_len);
    p += hd->value_len;
  }
}

int l_exchange_push_packed_headers(lua_State *L, const char *p, size_t len) {
  const char *end = p + len;
  lua_newtable(L);
  while ((size_t)(end - p) >= 8) {
    uint32_t n[2];
    memcpy(n, p, sizeof n);
    p += sizeof n;
    if (n[0] > (size_t)(end - p) || n[1] > (size_t)(end - p) - n[0]) return -EINVAL;
    set_header(L, p, n[0], p + n[0], n[1]);
    p += n[0] + n[1];
  }
  return p == end ? 0 : -EINVAL;
}

int l_exchange_headers(lua_State *L) {
  const l_exchange *ex = luaL_checkudata(L, 1, EXCHANGE_MT);
  l_exchange_push_packed_headers(L, ex->headers, ex->hlen); /* packed by us: whole */
  return 1;
}

int l_exchange_push_req(lua_State *L, const http_req *req, int exi) {
  lua_pushstring(L, req->method);
  lua_pushlstring(L, req->url, req->url_len);
  if (req->path_len == req->url_len) lua_pushvalue(L, -1); /* no query: the same string, not hashed again */
  else lua_pushlstring(L, req->path, req->path_len);
  lua_pushlstring(L, req->query, req->query_len);
  if (req->body) lua_pushlstring(L, req->body, req->body_len);
  else lua_pushnil(L); /* spooled: read when req.body is (moonwire.app) */
  lua_pushstring(L, req->remote_addr ? req->remote_addr : "");
  lua_pushvalue(L, exi);
  return 7;
}

l_exchange *l_exchange_push(l_exchanges *x, const http_req *req, http_res *res, bool dev) {
  lua_State *L = x->L;
  size_t hlen = l_exchange_packed_size(req);
  l_exchange *ex = lua_newuserdatauv(L, sizeof *ex + hlen, 0);
  ex->res = res;
  ex->x = x;
  ex->dev = dev;
  ex->streaming = false;
  ex->hlen = hlen;
  l_exchange_pack_headers(req, ex->headers);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->mt_ref);
  lua_setmetatable(L, -2);
  return ex;
}


http_res *l_exchange_res(const l_exchange *ex) { return ex->res; }

void l_exchange_detach(l_exchange *ex) { ex->res = NULL; }

/* ---- the VM's exchanges ---- */

int l_exchanges_new(l_exchanges **out, lua_State *L, uv_loop_t *loop, mw_static *st) {
  l_exchanges *x = calloc(1, sizeof *x);
  if (!x) return -ENOMEM;
  x->L = L;
  x->loop = loop;
  x->st = st;
  luaL_newmetatable(L, EXCHANGE_MT);
  luaL_newlibtable(L, ex_methods);
  lua_pushlightuserdata(L, x);
  lua_pushvalue(L, -3); /* the metatable, for check_ex */
  luaL_setfuncs(L, ex_methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ex_gc);
  lua_setfield(L, -2, "__gc");
  x->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* also kept by name */
  *out = x;
  return 0;
}

void l_exchanges_free(l_exchanges *x) {
  if (!x) return;
  /* Callbacks still to come find their VM gone and only free themselves. */
  for (lex_waiter *w = x->waiters; w; w = w->next) w->x = NULL;
  x->waiters = NULL;
  for (lex_waiter *w = x->ready, *next; w; w = next) {
    next = w->next;
    free(w);
  }
  x->ready = NULL;
  if (x->ready_idle) uv_close((uv_handle_t *)x->ready_idle, (uv_close_cb)free);
  free(x);
}
