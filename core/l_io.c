/* l_io.c — moonwire.io_c: what core/embedded/lua/moonwire/io.lua and engine.lua need
 * from sio.c and eio.c. Sockets are handles (userdata) that go stale when
 * their C socket is gone; each is bound to the Lua socket object.
 *
 * A stale handle is not misuse: a client may leave at any moment, and a
 * handler, a timer or an awaited middleware still holding its socket
 * cannot know (socket.io drops what is sent to a disconnected socket, and
 * its join, leave and disconnect do nothing then). So on a stale handle
 * every action (bind, accept, set_id, reject, send, join, leave,
 * disconnect, close_transport; an engine socket's send and close) does
 * nothing and returns false, where it returns true once done; every query
 * answers as for a closed socket (id nil, connected false, rooms {},
 * buffered 0, transport "closed"). Misuse (a wrong argument type, too many
 * attachments or rooms) raises, as everywhere. */
#include "l_io.h"

#include <crypt.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eio.h"
#include "lcall.h"
#include "l_exchange.h"
#include "lrunner.h"
#include "server.h"
#include "sio.h"
#include "sio_packet.h"

#define SOCK_MT "moonwire.socket_c"
#define ENGINE_MT "moonwire.engine_c"

typedef struct sock_handle {
  sio_socket *s;
  int ref; /* the Lua socket object, once bound */
} sock_handle;

typedef struct engine_handle {
  eio_session *s;
  int ref;
} engine_handle;

/* An endpoint's allowRequest function. */
typedef struct allow_hook {
  l_io *x;
  int ref;
  const char *what; /* for the log */
} allow_hook;

struct l_io {
  lua_State *L;
  struct mw_server *srv;
  l_io_opts cli;  /* the command line's settings, over the app's */
  bool dev;       /* cross-origin requests allowed */
  sio_server *io;
  eio_server *engine;
  int cb_ref;     /* io.lua's callbacks */
  int engine_cb;  /* engine.lua's callbacks */
  allow_hook allow, engine_allow; /* allowRequest of each endpoint */
  uint64_t started; /* mw_now_ns() when this host was made (stats' uptime) */
  struct bcrypt_job *jobs; /* bcrypt checks on the thread pool */
  int njobs;               /* how many (bcrypt_verify's limit) */
};

static l_io *G_io; /* one app host per process */

/* Pushes callback `name` from the table at ref; false if missing. */
static bool push_cb(lua_State *L, int ref, const char *name) {
  if (ref == LUA_NOREF) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (lua_isfunction(L, -1)) return true;
  lua_pop(L, 1);
  return false;
}

/* ---- handshake info ---- */

static void push_handshake(lua_State *L, const http_req *req) {
  lua_createtable(L, 0, 6);
  l_exchange_push_headers(L, req);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, req->query, req->query_len);
  lua_setfield(L, -2, "querystring");
  lua_pushlstring(L, req->url, req->url_len);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, req->remote_addr ? req->remote_addr : "");
  lua_setfield(L, -2, "address");
}

/* A Socket.IO client's handshake, kept until the app reads
 * socket.handshake, packed in one Lua string: as tables it was about 600
 * bytes of every idle client (a server may hold a hundred thousand), as a
 * string it is its bytes and a 24-byte header. The url, the query string
 * and the address, each as a uint32_t length (native order) and its bytes,
 * then the headers packed (l_exchange_pack_headers). io_c.handshake makes
 * the table push_handshake makes out of it. */
static char *put_packed(char *p, const char *s, size_t len) {
  uint32_t n = (uint32_t)len;
  memcpy(p, &n, sizeof n);
  if (len) memcpy(p + sizeof n, s, len);
  return p + sizeof n + len;
}

static void push_handshake_packed(lua_State *L, const http_req *req) {
  const char *addr = req->remote_addr ? req->remote_addr : "";
  size_t alen = strlen(addr), hlen = l_exchange_packed_size(req);
  size_t n = 3 * sizeof(uint32_t) + req->url_len + req->query_len + alen + hlen;
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n);
  p = put_packed(p, req->url, req->url_len);
  p = put_packed(p, req->query, req->query_len);
  p = put_packed(p, addr, alen);
  l_exchange_pack_headers(req, p);
  luaL_pushresultsize(&b, n);
}

/* Takes the next length-prefixed piece of a packed handshake; false when
 * the bytes left do not hold it. */
static bool take_packed(const char **p, const char *end, const char **s, size_t *len) {
  uint32_t n;
  if ((size_t)(end - *p) < sizeof n) return false;
  memcpy(&n, *p, sizeof n);
  if (n > (size_t)(end - *p) - sizeof n) return false;
  *s = *p + sizeof n;
  *len = n;
  *p += sizeof n + n;
  return true;
}

/* io_c.handshake(packed) → { headers, querystring, url, address }, the
 * table push_handshake makes, from what push_handshake_packed packed.
 * Raises on a string it did not pack. */
static int l_handshake(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len), *end = p + len;
  const char *url, *query, *addr;
  size_t url_len, query_len, addr_len;
  if (!take_packed(&p, end, &url, &url_len) || !take_packed(&p, end, &query, &query_len) ||
      !take_packed(&p, end, &addr, &addr_len))
    return luaL_argerror(L, 1, "not a packed handshake");
  lua_createtable(L, 0, 4);
  if (l_exchange_push_packed_headers(L, p, (size_t)(end - p)) != 0) return luaL_argerror(L, 1, "not a packed handshake");
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, query, query_len);
  lua_setfield(L, -2, "querystring");
  lua_pushlstring(L, url, url_len);
  lua_setfield(L, -2, "url");
  lua_pushlstring(L, addr, addr_len);
  lua_setfield(L, -2, "address");
  return 1;
}

/* ---- Socket.IO events into Lua ---- */

static void on_client(void *ud, sio_client *c, const http_req *req) {
  l_io *x = ud;
  lua_State *L = x->L;
  push_handshake_packed(L, req);
  /* The reference itself is the client's user data (luaL_ref gives a
   * positive number for a string): no allocation of its own. */
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sio_client_set_userdata(c, (void *)(intptr_t)ref);
}

/* The registry reference of c's packed handshake, or LUA_NOREF. */
static int client_ref(sio_client *c) {
  intptr_t ref = (intptr_t)sio_client_userdata(c);
  return ref > 0 ? (int)ref : LUA_NOREF;
}

static void on_client_close(void *ud, sio_client *c) {
  l_io *x = ud;
  int ref = client_ref(c);
  if (ref != LUA_NOREF) {
    luaL_unref(x->L, LUA_REGISTRYINDEX, ref);
    sio_client_set_userdata(c, NULL);
  }
}

static void on_connect(void *ud, sio_socket *s, const char *auth, size_t len) {
  l_io *x = ud;
  lua_State *L = x->L;
  int top = lua_gettop(L);
  if (!push_cb(L, x->cb_ref, "connect")) {
    sio_reject(s, "{\"message\":\"no handler\"}", 24);
    return;
  }
  sock_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->s = s;
  h->ref = LUA_NOREF;
  luaL_setmetatable(L, SOCK_MT);
  sio_socket_set_userdata(s, h);
  /* Keep the handle alive while the socket lives, until io.lua binds it. */
  lua_pushvalue(L, -1);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushstring(L, sio_nsp_name(sio_socket_nsp(s)));
  lua_pushlstring(L, auth, len);
  int href = client_ref(sio_socket_client(s));
  if (href != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, href);
  else lua_pushnil(L); /* no handshake kept (the app sees an empty one) */
  lcall_pcall(L, 4, 0, "io connection");
  lua_settop(L, top);
}

/* Pushes the Lua object bound to s (or the handle); false if none. */
static bool push_socket(lua_State *L, sio_socket *s) {
  sock_handle *h = sio_socket_userdata(s);
  if (!h || h->ref == LUA_NOREF) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
  return true;
}

static void on_packet(void *ud, sio_socket *s, int type, const char *json, size_t len, int64_t id,
                      const mw_str *atts, int natts) {
  l_io *x = ud;
  lua_State *L = x->L;
  int top = lua_gettop(L);
  if (!push_cb(L, x->cb_ref, "packet")) return;
  if (!push_socket(L, s)) {
    lua_settop(L, top);
    return;
  }
  lua_pushinteger(L, type);
  lua_pushlstring(L, json, len);
  if (id >= 0) lua_pushinteger(L, id);
  else lua_pushnil(L);
  if (natts) {
    lua_createtable(L, natts, 0);
    for (int i = 0; i < natts; i++) {
      lua_pushlstring(L, atts[i].p ? atts[i].p : "", atts[i].len);
      lua_rawseti(L, -2, i + 1);
    }
  } else {
    lua_pushnil(L);
  }
  lcall_pcall(L, 5, 0, "io packet");
  lua_settop(L, top);
}

static void on_disconnect(void *ud, sio_socket *s, const char *reason) {
  l_io *x = ud;
  lua_State *L = x->L;
  int top = lua_gettop(L);
  sock_handle *h = sio_socket_userdata(s);
  if (push_cb(L, x->cb_ref, "disconnect")) {
    if (push_socket(L, s)) {
      lua_pushstring(L, reason);
      lcall_pcall(L, 2, 0, "io disconnect");
    }
  }
  lua_settop(L, top);
  if (h) {
    h->s = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
    h->ref = LUA_NOREF;
  }
}

static const sio_handler lio_handler = {on_client, on_client_close, on_connect, on_packet, on_disconnect};

/* ---- socket handles ---- */

static sio_socket *check_sock(lua_State *L) {
  sock_handle *h = luaL_checkudata(L, 1, SOCK_MT);
  return h->s;
}

/* An action's answer: true when it was done, false when the socket is gone. */
static int done(lua_State *L, bool yes) {
  lua_pushboolean(L, yes);
  return 1;
}

/* h:bind(socket) → true: socket is what the events of h come to. */
static int s_bind(lua_State *L) {
  sock_handle *h = luaL_checkudata(L, 1, SOCK_MT);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!h->s) return done(L, false);
  luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
  lua_pushvalue(L, 2);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return done(L, true);
}

static int s_id(lua_State *L) {
  sio_socket *s = check_sock(L);
  if (!s) return 0;
  lua_pushstring(L, sio_socket_id(s));
  return 1;
}

/* h:accept([pid]) → true: the client hears it is connected. */
static int s_accept(lua_State *L) {
  sio_socket *s = check_sock(L);
  const char *pid = luaL_optstring(L, 2, NULL);
  if (s) sio_accept_pid(s, pid);
  return done(L, s != NULL);
}

/* h:set_id(id) → true, or false and why: "in use", "invalid", "gone"
 * (before accept: a recovered session). */
static int s_set_id(lua_State *L) {
  sio_socket *s = check_sock(L);
  const char *id = luaL_checkstring(L, 2);
  if (!s) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "gone");
    return 2;
  }
  int r = sio_socket_set_id(s, id);
  lua_pushboolean(L, r == 0);
  if (r == 0) return 1;
  lua_pushstring(L, r == -EEXIST ? "in use" : "invalid");
  return 2;
}

/* h:close_transport() → true: the connection under the socket closes. */
static int s_close_transport(lua_State *L) {
  sio_socket *s = check_sock(L);
  if (s) sio_close_transport(s);
  return done(L, s != NULL);
}

/* h:reject(json) → true: the connect is refused with json; h is stale
 * from now on. */
static int s_reject(lua_State *L) {
  sock_handle *h = luaL_checkudata(L, 1, SOCK_MT);
  size_t len;
  const char *json = luaL_checklstring(L, 2, &len);
  if (!h->s) return done(L, false);
  sio_socket *s = h->s;
  h->s = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
  h->ref = LUA_NOREF;
  sio_reject(s, json, len);
  return done(L, true);
}

/* Reads an optional array of binary attachments at idx. */
static int get_atts(lua_State *L, int idx, mw_str *atts, int max) {
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  if (n > max) luaL_error(L, "too many binary attachments (%d, at most %d)", n, max);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    size_t len;
    const char *p = luaL_checklstring(L, -1, &len);
    atts[i] = (mw_str){(char *)p, len, len};
    lua_pop(L, 1);
  }
  return n;
}

/* As many as a client takes in one packet (socket.io-parser's
 * maxAttachments), the limit moonwire holds its clients to as well. */
#define MAX_ATTS SIO_MAX_ATTACHMENTS

static int s_send(lua_State *L) {
  sio_socket *s = check_sock(L);
  size_t len;
  const char *packet = luaL_checklstring(L, 2, &len);
  mw_str atts[MAX_ATTS];
  int n = get_atts(L, 3, atts, MAX_ATTS);
  if (s) sio_send(s, packet, len, atts, n, lua_toboolean(L, 4));
  return done(L, s != NULL);
}

static int s_join(lua_State *L) {
  sio_socket *s = check_sock(L);
  size_t len;
  const char *room = luaL_checklstring(L, 2, &len);
  /* true (done) or false (gone), then whether it joined just now */
  lua_pushboolean(L, s != NULL);
  lua_pushboolean(L, s && sio_join(s, room, len) == 1);
  return 2;
}

static int s_leave(lua_State *L) {
  sio_socket *s = check_sock(L);
  size_t len;
  const char *room = luaL_checklstring(L, 2, &len);
  /* true (done) or false (gone), then whether it left just now */
  lua_pushboolean(L, s != NULL);
  lua_pushboolean(L, s && sio_leave(s, room, len) == 1);
  return 2;
}

static void add_room(void *ud, const char *room, size_t len) {
  lua_State *L = ud;
  lua_pushlstring(L, room, len);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
}

static int s_rooms(lua_State *L) {
  sio_socket *s = check_sock(L);
  lua_newtable(L);
  if (s) sio_rooms(s, add_room, L);
  return 1;
}

static int s_disconnect(lua_State *L) {
  sio_socket *s = check_sock(L);
  if (s) sio_disconnect(s, lua_toboolean(L, 2));
  return done(L, s != NULL);
}

static int s_connected(lua_State *L) {
  sio_socket *s = check_sock(L);
  lua_pushboolean(L, s && sio_socket_connected(s));
  return 1;
}

/* h:buffered() → bytes queued for the client and not yet taken by it. */
static int s_buffered(lua_State *L) {
  sio_socket *s = check_sock(L);
  lua_pushinteger(L, s ? (lua_Integer)sio_client_buffered(sio_socket_client(s)) : 0);
  return 1;
}

/* h:client_id() → the Engine.IO session id under the socket (socket.conn.id). */
static int s_client_id(lua_State *L) {
  sio_socket *s = check_sock(L);
  if (!s) return 0;
  lua_pushstring(L, sio_client_id(sio_socket_client(s)));
  return 1;
}

static int s_transport(lua_State *L) {
  sio_socket *s = check_sock(L);
  lua_pushstring(L, s ? sio_client_transport(sio_socket_client(s)) : "closed");
  return 1;
}

/* ---- broadcast and queries ---- */

typedef struct target_buf {
  const char *rooms[64], *except[64];
  size_t room_lens[64], except_lens[64];
} target_buf;

static int list_arg(lua_State *L, int idx, const char **names, size_t *lens, int max) {
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  if (n > max) luaL_error(L, "too many rooms (%d, at most %d)", n, max);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    names[i] = luaL_checklstring(L, -1, &lens[i]);
    lua_pop(L, 1); /* the table keeps the string alive */
  }
  return n;
}

/* Reads (nsp, rooms, except, except_socket) at 1..4. */
static sio_nsp *get_target(lua_State *L, sio_target *t, target_buf *b) {
  size_t nlen;
  const char *nsp = luaL_checklstring(L, 1, &nlen);
  memset(t, 0, sizeof *t);
  t->rooms = b->rooms;
  t->room_lens = b->room_lens;
  t->except = b->except;
  t->except_lens = b->except_lens;
  t->nrooms = list_arg(L, 2, b->rooms, b->room_lens, 64);
  t->nexcept = list_arg(L, 3, b->except, b->except_lens, 64);
  if (!lua_isnoneornil(L, 4)) {
    sock_handle *h = luaL_checkudata(L, 4, SOCK_MT);
    t->except_socket = h->s;
  }
  /* After l_io_stop (shutting down) a handler that was waiting may still
   * emit: to nobody. */
  return G_io && G_io->io ? sio_nsp_get(G_io->io, nsp, nlen, false) : NULL;
}

/* broadcast(nsp, rooms, except, except_socket, packet, atts, volatile) */
static int l_broadcast(lua_State *L) {
  sio_target t;
  target_buf b;
  sio_nsp *n = get_target(L, &t, &b);
  size_t len;
  const char *packet = luaL_checklstring(L, 5, &len);
  mw_str atts[MAX_ATTS];
  int na = get_atts(L, 6, atts, MAX_ATTS);
  if (n) sio_broadcast(n, &t, packet, len, atts, na, lua_toboolean(L, 7));
  return 0;
}

static void collect(void *ud, sio_socket *s) {
  lua_State *L = ud;
  if (!push_socket(L, s)) return;
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* sockets(nsp, rooms, except) → array of socket objects */
static int l_sockets(lua_State *L) {
  sio_target t;
  target_buf b;
  sio_nsp *n = get_target(L, &t, &b);
  lua_newtable(L);
  if (n) sio_each(n, &t, collect, L);
  return 1;
}

static int l_namespace(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  if (len == 0 || name[0] != '/') return luaL_argerror(L, 1, "a namespace starts with '/'");
  lua_pushboolean(L, G_io && G_io->io && sio_nsp_get(G_io->io, name, len, true) != NULL);
  return 1;
}

/* count(name) → how many sockets are connected to namespace name (0 when
 * there is no such namespace). */
static int l_count(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  sio_nsp *n = G_io && G_io->io ? sio_nsp_get(G_io->io, name, len, false) : NULL;
  lua_pushinteger(L, n ? (lua_Integer)sio_nsp_size(n) : 0);
  return 1;
}

/* random_id() → 20 unguessable characters (a private session id). */
static int l_random_id(lua_State *L) {
  char id[21];
  eio_random_id(id);
  lua_pushstring(L, id);
  return 1;
}

/* stats() → what the Socket.IO endpoint carried, for the Admin UI:
 * { clientsCount, pollingClientsCount, connections, disconnections,
 * packetsIn, bytesIn, packetsOut, bytesOut (totals since start), pid,
 * hostname, uptime (seconds since this host started) }. */
static int l_stats(lua_State *L) {
  eio_stats st = {0};
  if (G_io && G_io->io) eio_server_stats(sio_engine(G_io->io), &st);
  lua_createtable(L, 0, 11);
  const struct { const char *k; uint64_t v; } f[] = {
      {"clientsCount", st.sessions}, {"pollingClientsCount", st.polling}, {"connections", st.opened},
      {"disconnections", st.closed}, {"packetsIn", st.packets_in},        {"bytesIn", st.bytes_in},
      {"packetsOut", st.packets_out}, {"bytesOut", st.bytes_out}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  lua_pushinteger(L, (lua_Integer)getpid());
  lua_setfield(L, -2, "pid");
  char host[256];
  if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  lua_pushstring(L, host);
  lua_setfield(L, -2, "hostname");
  lua_pushnumber(L, (lua_Number)(mw_now_ns() - (G_io ? G_io->started : 0)) / 1e9);
  lua_setfield(L, -2, "uptime");
  return 1;
}

/* ---- bcrypt: the Admin UI's hashed password, checked off the loop ---- */

typedef struct bcrypt_job {
  uv_work_t req;
  l_io *x; /* NULL once the host stopped: the answer goes nowhere */
  int ref; /* the callback */
  struct bcrypt_job *prev, *next;
  char *password, *hash; /* owned */
  bool ok;
} bcrypt_job;

static void bcrypt_unlink(bcrypt_job *j) {
  if (j->prev) j->prev->next = j->next;
  else if (j->x) j->x->jobs = j->next;
  if (j->next) j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

/* On the thread pool: libxcrypt's bcrypt ($2a$, $2b$, $2y$) takes tens of
 * milliseconds at cost 10, which the loop must not wait for. */
static void bcrypt_work(uv_work_t *req) {
  bcrypt_job *j = req->data;
  struct crypt_data *cd = calloc(1, sizeof *cd);
  if (!cd) return;
  const char *out = crypt_rn(j->password, j->hash, cd, (int)sizeof *cd);
  size_t n = strlen(j->hash);
  j->ok = out && strlen(out) == n && CRYPTO_memcmp(out, j->hash, n) == 0;
  OPENSSL_cleanse(cd, sizeof *cd);
  free(cd);
}

static void bcrypt_after(uv_work_t *req, int status) {
  bcrypt_job *j = req->data;
  l_io *x = j->x;
  if (x) {
    bcrypt_unlink(j);
    x->njobs--;
    lua_State *L = x->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, j->ref);
    lua_pushboolean(L, status == 0 && j->ok);
    lcall_pcall(L, 1, 0, "bcrypt check");
    lua_settop(L, top);
  }
  OPENSSL_cleanse(j->password, strlen(j->password));
  free(j->password);
  free(j->hash);
  free(j);
}

/* bcrypt_verify(password, hash, fn, limit) → true: calls fn(ok) once the
 * thread pool has checked password against the bcrypt hash; false, and no
 * call, when limit checks are already under way (each holds a thread of
 * the pool static file reads also use for tens of milliseconds, so logins
 * must not queue there without end). */
static int l_bcrypt_verify(lua_State *L) {
  const char *password = luaL_checkstring(L, 1);
  const char *hash = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_Integer limit = luaL_checkinteger(L, 4);
  if (G_io->njobs >= limit) {
    lua_pushboolean(L, 0);
    return 1;
  }
  bcrypt_job *j = calloc(1, sizeof *j);
  if (!j || !(j->password = strdup(password)) || !(j->hash = strdup(hash))) {
    if (j) free(j->password);
    free(j);
    return luaL_error(L, "out of memory");
  }
  lua_pushvalue(L, 3);
  j->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  j->x = G_io;
  j->req.data = j;
  j->next = G_io->jobs;
  if (G_io->jobs) G_io->jobs->prev = j;
  G_io->jobs = j;
  int r = uv_queue_work(G_io->srv->loop, &j->req, bcrypt_work, bcrypt_after);
  if (r != 0) {
    bcrypt_unlink(j);
    luaL_unref(L, LUA_REGISTRYINDEX, j->ref);
    free(j->password);
    free(j->hash);
    free(j);
    return luaL_error(L, "bcrypt: %s", uv_strerror(r));
  }
  G_io->njobs++;
  lua_pushboolean(L, 1);
  return 1;
}

/* dynamic(on): CONNECTs to unknown namespaces reach the connect callback. */
static int l_dynamic(lua_State *L) {
  if (G_io && G_io->io) sio_set_dynamic(G_io->io, lua_toboolean(L, 1));
  return 0;
}

static int l_set_callbacks(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_unref(L, LUA_REGISTRYINDEX, G_io->cb_ref);
  lua_pushvalue(L, 1);
  G_io->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* ---- allowRequest ---- */

/* What the Lua callback holds: the handshake it answers, until it does. */
typedef struct allow_handle {
  eio_pending *p; /* NULL once answered, or when the endpoint went first */
  int ref;        /* keeps the handle alive while p points at it */
} allow_handle;

static void allow_forget(lua_State *L, allow_handle *h) {
  h->p = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
  h->ref = LUA_NOREF;
}

/* callback(err, success), as engine.io's: success lets the handshake in,
 * anything else refuses it with err as the message. Calls after the first
 * are ignored. */
static int allow_answer(lua_State *L) {
  allow_handle *h = lua_touserdata(L, lua_upvalueindex(1));
  if (!h->p) return 0;
  eio_pending *p = h->p;
  allow_forget(L, h);
  int t = lua_type(L, 1);
  eio_allow(p, lua_toboolean(L, 2), t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tostring(L, 1) : NULL);
  return 0;
}

/* The request as allowRequest sees it: method, url, headers (lower-case
 * names), query (parsed; also as _query, engine.io's name), querystring,
 * address. */
static void push_allow_req(lua_State *L, const http_req *req) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->url, req->url_len);
  lua_setfield(L, -2, "url");
  l_exchange_push_headers(L, req);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, req->query, req->query_len);
  lua_setfield(L, -2, "querystring");
  if (lrunner_push_fn(L, "moonwire.app", "parse_urlencoded")) {
    lua_pushlstring(L, req->query, req->query_len);
    if (lcall_pcall(L, 1, 1, "allowRequest query") != LUA_OK || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
  } else {
    lua_newtable(L);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "_query");
  lua_setfield(L, -2, "query");
  lua_pushstring(L, req->remote_addr ? req->remote_addr : "");
  lua_setfield(L, -2, "address");
}

/* eio's allow_request: runs allowRequest(req, callback) like any handler (in
 * moonwire.runner's coroutines). An error in it is logged with its traceback and
 * refuses the handshake as a refusal would (403 "Forbidden"), unless the
 * callback answered first. */
static void allow_request(void *ud, eio_pending *p, const http_req *req) {
  allow_hook *hk = ud;
  lua_State *L = hk->x->L;
  int top = lua_gettop(L);
  allow_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->p = p;
  lua_pushvalue(L, -1);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  eio_pending_set_userdata(p, h);
  bool run = lrunner_push(L, "run");
  lua_rawgeti(L, LUA_REGISTRYINDEX, hk->ref);
  push_allow_req(L, req);
  lua_pushvalue(L, top + 1);
  lua_pushcclosure(L, allow_answer, 1);
  bool failed;
  if (run) {
    failed = lcall_pcall(L, 3, 2, hk->what) != LUA_OK;
    if (!failed && !lua_toboolean(L, -2)) { /* ok, err from runner.run */
      const char *err = lua_tostring(L, -1);
      mw_log(MW_LOG_ERROR, "%s: %s", hk->what, err ? err : "error");
      failed = true;
    }
  } else {
    failed = lcall_pcall(L, 2, 0, hk->what) != LUA_OK;
  }
  /* An error before the callback answered: refuse. (Returning without an
   * answer is fine: the callback may come later.) */
  if (failed && h->p) {
    eio_pending *held = h->p;
    allow_forget(L, h);
    eio_allow(held, false, NULL);
  }
  lua_settop(L, top);
}

static void allow_cancel(void *ud, eio_pending *p) {
  allow_hook *hk = ud;
  allow_handle *h = eio_pending_userdata(p);
  if (h) allow_forget(hk->x->L, h);
}

/* opts.allowRequest into hk and o: a function, false to remove it, nil to
 * keep what was set before. */
static void read_allow(lua_State *L, int idx, allow_hook *hk, eio_options *o) {
  lua_getfield(L, idx, "allowRequest");
  if (lua_isfunction(L, -1)) {
    luaL_unref(L, LUA_REGISTRYINDEX, hk->ref);
    hk->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
      luaL_unref(L, LUA_REGISTRYINDEX, hk->ref);
      hk->ref = LUA_NOREF;
    } else if (!lua_isnil(L, -1)) {
      luaL_error(L, "allowRequest must be a function(req, callback)");
    }
    lua_pop(L, 1);
  }
  o->allow_request = hk->ref == LUA_NOREF ? NULL : allow_request;
  o->allow_cancel = allow_cancel;
  o->allow_ud = hk;
}

/* ---- options ---- */

static uint64_t opt_ms(lua_State *L, int idx, const char *name, uint64_t cur) {
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    lua_Number v = luaL_checknumber(L, -1);
    if (v < 1 || v > MW_MAX_MS) luaL_error(L, "%s must be between 1 and %d ms", name, MW_MAX_MS);
    cur = (uint64_t)v;
  }
  lua_pop(L, 1);
  return cur;
}

/* Applies a Lua options table at idx onto o (and so, the Socket.IO ones,
 * when given). */
static void read_options(lua_State *L, int idx, eio_options *o, sio_options *so) {
  lua_getfield(L, idx, "path");
  if (!lua_isnil(L, -1)) {
    size_t len;
    const char *p = luaL_checklstring(L, -1, &len);
    if (len == 0 || p[0] != '/' || len + 2 > sizeof o->path) luaL_error(L, "path must start with '/'");
    snprintf(o->path, sizeof o->path, "%s%s", p, p[len - 1] == '/' ? "" : "/");
  }
  lua_pop(L, 1);
  o->ping_interval = opt_ms(L, idx, "pingInterval", o->ping_interval);
  o->ping_timeout = opt_ms(L, idx, "pingTimeout", o->ping_timeout);
  if (so) {
    so->connect_timeout = opt_ms(L, idx, "connectTimeout", so->connect_timeout);
    so->attachment_timeout = opt_ms(L, idx, "attachmentTimeout", so->attachment_timeout);
  }
  lua_getfield(L, idx, "maxHttpBufferSize");
  if (!lua_isnil(L, -1)) {
    lua_Number v = luaL_checknumber(L, -1);
    if (v < 1 || v > 1e9) luaL_error(L, "maxHttpBufferSize must be between 1 and 1e9");
    o->max_payload = (size_t)v;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "maxBackpressure");
  if (!lua_isnil(L, -1)) {
    lua_Number v = luaL_checknumber(L, -1);
    if (v < 0 || v > 1e12) luaL_error(L, "maxBackpressure must be between 0 (no limit) and 1e12 bytes");
    o->max_buffered = (size_t)v;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "maxPacketRate");
  if (!lua_isnil(L, -1)) {
    lua_Number v = luaL_checknumber(L, -1);
    if (v < 0 || v > 1e9) luaL_error(L, "maxPacketRate must be between 0 (no limit) and 1e9 packets a second");
    o->max_packet_rate = (uint32_t)v;
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "transports");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    o->polling = o->websocket = false;
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      const char *t = luaL_checkstring(L, -1);
      if (!strcmp(t, "polling")) o->polling = true;
      else if (!strcmp(t, "websocket")) o->websocket = true;
      else luaL_error(L, "unknown transport '%s' (polling, websocket)", t);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!o->polling && !o->websocket) luaL_error(L, "transports must name at least one transport");
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "cors");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "origin");
    static char *origins[64];
    int n = 0;
    if (lua_isstring(L, -1)) {
      origins[n++] = (char *)lua_tostring(L, -1);
    } else if (lua_istable(L, -1)) {
      for (lua_Integer i = 1; n < 64 && lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
        origins[n++] = (char *)luaL_checkstring(L, -1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    o->origins = origins;
    o->norigins = n;
    /* strings stay on the stack until eio_server_configure copies them */
  }
}

/* Command-line options override what the app sets. */
static void apply_cli(l_io *x, eio_options *o, sio_options *so) {
  const l_io_opts *cli = &x->cli;
  if (cli->path) snprintf(o->path, sizeof o->path, "%s", cli->path);
  if (cli->ping_interval) o->ping_interval = cli->ping_interval;
  if (cli->ping_timeout) o->ping_timeout = cli->ping_timeout;
  if (cli->max_http_buffer) o->max_payload = cli->max_http_buffer;
  if (cli->max_backpressure) o->max_buffered = cli->max_backpressure;
  if (cli->max_packet_rate >= 0) o->max_packet_rate = (uint32_t)cli->max_packet_rate;
  if (cli->transports) {
    o->polling = strstr(cli->transports, "polling") != NULL;
    o->websocket = strstr(cli->transports, "websocket") != NULL;
  }
  if (cli->norigins) {
    o->origins = (char **)cli->origins;
    o->norigins = cli->norigins;
  }
  if (so && cli->connect_timeout) so->connect_timeout = cli->connect_timeout;
  if (so && cli->attachment_timeout) so->attachment_timeout = cli->attachment_timeout;
}

static int l_configure(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int top = lua_gettop(L);
  eio_options o = *eio_server_options(sio_engine(G_io->io));
  sio_options so = *sio_get_options(G_io->io);
  lua_settop(L, 1);
  read_options(L, 1, &o, &so);
  read_allow(L, 1, &G_io->allow, &o);
  apply_cli(G_io, &o, &so);
  eio_server_configure(sio_engine(G_io->io), &o);
  sio_configure(G_io->io, &so);
  lua_settop(L, top);
  return 0;
}

static int l_options(lua_State *L) {
  const eio_options *o = eio_server_options(sio_engine(G_io->io));
  lua_createtable(L, 0, 4);
  lua_pushstring(L, o->path);
  lua_setfield(L, -2, "path");
  lua_pushinteger(L, (lua_Integer)o->ping_interval);
  lua_setfield(L, -2, "pingInterval");
  lua_pushinteger(L, (lua_Integer)o->ping_timeout);
  lua_setfield(L, -2, "pingTimeout");
  lua_pushinteger(L, (lua_Integer)o->max_payload);
  lua_setfield(L, -2, "maxHttpBufferSize");
  lua_pushinteger(L, (lua_Integer)o->max_buffered);
  lua_setfield(L, -2, "maxBackpressure");
  return 1;
}

/* ---- the raw Engine.IO endpoint (moonwire.engine) ---- */

static void e_on_open(void *ud, eio_session *s, const http_req *req) {
  l_io *x = ud;
  lua_State *L = x->L;
  int top = lua_gettop(L);
  engine_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->s = s;
  luaL_setmetatable(L, ENGINE_MT);
  lua_pushvalue(L, -1);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  eio_set_userdata(s, h);
  if (push_cb(L, x->engine_cb, "open")) {
    lua_pushvalue(L, -2);
    push_handshake(L, req);
    lcall_pcall(L, 2, 0, "engine connection");
  }
  lua_settop(L, top);
}

static void e_on_message(void *ud, eio_session *s, const char *data, size_t len, bool binary) {
  l_io *x = ud;
  lua_State *L = x->L;
  engine_handle *h = eio_userdata(s);
  int top = lua_gettop(L);
  if (h && push_cb(L, x->engine_cb, "message")) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    lua_pushlstring(L, data, len);
    lua_pushboolean(L, binary);
    lcall_pcall(L, 3, 0, "engine message");
  }
  lua_settop(L, top);
}

static void e_on_close(void *ud, eio_session *s, const char *reason) {
  l_io *x = ud;
  lua_State *L = x->L;
  engine_handle *h = eio_userdata(s);
  int top = lua_gettop(L);
  if (!h) return;
  if (push_cb(L, x->engine_cb, "close")) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    lua_pushstring(L, reason);
    lcall_pcall(L, 2, 0, "engine close");
  }
  lua_settop(L, top);
  h->s = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
  h->ref = LUA_NOREF;
}

static const eio_handler engine_handler = {e_on_open, e_on_message, e_on_close, 0};

static int e_send(lua_State *L) {
  engine_handle *h = luaL_checkudata(L, 1, ENGINE_MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  eio_session *s = h->s; /* h goes stale in a callback the call may run */
  if (s) eio_send(s, data, len, lua_toboolean(L, 3));
  return done(L, s != NULL);
}

static int e_close(lua_State *L) {
  engine_handle *h = luaL_checkudata(L, 1, ENGINE_MT);
  eio_session *s = h->s;
  if (s) eio_close(s, "forced close");
  return done(L, s != NULL);
}

static int e_id(lua_State *L) {
  engine_handle *h = luaL_checkudata(L, 1, ENGINE_MT);
  if (!h->s) return 0;
  lua_pushstring(L, eio_sid(h->s));
  return 1;
}

static int e_transport(lua_State *L) {
  engine_handle *h = luaL_checkudata(L, 1, ENGINE_MT);
  lua_pushstring(L, h->s ? eio_transport(h->s) : "closed");
  return 1;
}

/* engine_configure(opts, callbacks): creates or reconfigures the endpoint. */
static int l_engine_configure(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  l_io *x = G_io;
  eio_options o;
  if (x->engine) o = *eio_server_options(x->engine);
  else {
    eio_options_defaults(&o, "/engine.io/");
    o.same_origin = !x->dev;
  }
  int top = lua_gettop(L);
  read_options(L, 1, &o, NULL);
  read_allow(L, 1, &x->engine_allow, &o);
  if (x->engine) eio_server_configure(x->engine, &o);
  else if (eio_server_new(&x->engine, x->srv, &o, &engine_handler, x)) return luaL_error(L, "out of memory");
  lua_settop(L, top);
  luaL_unref(L, LUA_REGISTRYINDEX, x->engine_cb);
  lua_pushvalue(L, 2);
  x->engine_cb = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int open_io_c(lua_State *L) {
  static const luaL_Reg fns[] = {{"set_callbacks", l_set_callbacks}, {"configure", l_configure},
                                 {"options", l_options},             {"namespace", l_namespace},
                                 {"broadcast", l_broadcast},         {"sockets", l_sockets},
                                 {"engine_configure", l_engine_configure}, {"dynamic", l_dynamic}, {"random_id", l_random_id},
                                 {"stats", l_stats}, {"count", l_count},
                                 {"bcrypt_verify", l_bcrypt_verify}, {"handshake", l_handshake},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}

int l_io_new(l_io **out, lua_State *L, struct mw_server *srv, const l_io_opts *cli, bool dev) {
  l_io *x = calloc(1, sizeof *x);
  if (!x) return -1;
  x->L = L;
  x->srv = srv;
  x->cli = *cli;
  x->dev = dev;
  x->cb_ref = x->engine_cb = LUA_NOREF;
  x->started = mw_now_ns();
  x->allow = (allow_hook){x, LUA_NOREF, "io allowRequest"};
  x->engine_allow = (allow_hook){x, LUA_NOREF, "engine allowRequest"};
  eio_options o;
  eio_options_defaults(&o, "/socket.io/");
  o.same_origin = !dev;
  sio_options so;
  sio_options_defaults(&so);
  apply_cli(x, &o, &so);
  if (sio_server_new(&x->io, srv, &o, &lio_handler, x)) {
    free(x);
    return -1;
  }
  sio_configure(x->io, &so);
  G_io = x;

  static const luaL_Reg sock_methods[] = {
      {"bind", s_bind},     {"id", s_id},       {"accept", s_accept},         {"reject", s_reject},
      {"send", s_send},     {"join", s_join},   {"leave", s_leave},           {"rooms", s_rooms},
      {"disconnect", s_disconnect}, {"connected", s_connected}, {"transport", s_transport},
      {"set_id", s_set_id}, {"close_transport", s_close_transport}, {"buffered", s_buffered},
      {"client_id", s_client_id}, {NULL, NULL}};
  luaL_newmetatable(L, SOCK_MT);
  luaL_newlib(L, sock_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg engine_methods[] = {
      {"send", e_send}, {"close", e_close}, {"id", e_id}, {"transport", e_transport}, {NULL, NULL}};
  luaL_newmetatable(L, ENGINE_MT);
  luaL_newlib(L, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_io_c);
  lua_setfield(L, -2, "moonwire.io_c");
  lua_pop(L, 1);
  *out = x;
  return 0;
}

int l_io_handle_http(l_io *x, const http_req *req, http_res *res) {
  if (!x->io) return 1; /* stopped */
  if (eio_handle_http(sio_engine(x->io), req, res) == 0) return 0;
  if (x->engine && eio_handle_http(x->engine, req, res) == 0) return 0;
  return 1;
}

const char *l_io_path(l_io *x) { return x->io ? eio_server_options(sio_engine(x->io))->path : "/socket.io/"; }

void l_io_stop(l_io *x) {
  if (!x) return;
  while (x->jobs) { /* checks still running answer no one */
    bcrypt_job *j = x->jobs;
    luaL_unref(x->L, LUA_REGISTRYINDEX, j->ref);
    bcrypt_unlink(j);
    j->x = NULL;
  }
  if (x->engine) {
    eio_server_free(x->engine);
    x->engine = NULL;
  }
  if (x->io) {
    sio_server_free(x->io);
    x->io = NULL;
  }
}

void l_io_free(l_io *x) {
  if (!x) return;
  l_io_stop(x);
  if (G_io == x) G_io = NULL;
  free(x);
}
