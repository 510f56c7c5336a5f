/* l_core.c — moonwire.core: what the framework's Lua needs from C (the
 * log, clocks, randomness, HMAC, a constant-time compare, a request's
 * headers) and the server's settings it reads (root, dev, version, redis). */
#include "l_core.h"

#include <lauxlib.h>
#include <stdbool.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <errno.h>
#include <time.h>

#include "b64.h"

#include "l_exchange.h"
#include "lhost.h" /* lhost_opts */
#include "lmodule.h"
#include "mw.h"

static int core_log(lua_State *L) {
  static const char *levels[] = {"error", "warn", "info", "debug", NULL};
  int lvl = luaL_checkoption(L, 1, "info", levels);
  mw_log(lvl, "%s", luaL_checkstring(L, 2));
  return 0;
}

static int core_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)mw_now_ns() / 1e6);
  return 1;
}

/* time() → milliseconds since the epoch (wall clock). */
static int core_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

/* random(n) → n unpredictable bytes (1..1024). */
static int core_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 1024, 1, "between 1 and 1024 bytes");
  unsigned char buf[1024];
  if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "no randomness available");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

static unsigned char start_key[32];
static bool start_key_made;

int l_core_make_start_key(void) {
  if (start_key_made) return 0;
  if (RAND_bytes(start_key, sizeof start_key) != 1) return -1;
  start_key_made = true;
  return 0;
}

/* start_key() → 32 random bytes made when the server started, the same in
 * every worker of --workers (and across hot reloads). */
static int core_start_key(lua_State *L) {
  if (l_core_make_start_key()) return luaL_error(L, "no randomness available");
  lua_pushlstring(L, (const char *)start_key, sizeof start_key);
  return 1;
}

/* hmac(key, data) → the HMAC-SHA256 of data under key, 32 raw bytes. */
static int core_hmac(lua_State *L) {
  size_t kl, dl;
  const char *key = luaL_checklstring(L, 1, &kl);
  const char *data = luaL_checklstring(L, 2, &dl);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)data, dl, md, &mdlen))
    return luaL_error(L, "hmac failed");
  lua_pushlstring(L, (const char *)md, mdlen);
  return 1;
}

/* b64encode(s) → s in base64url without padding (RFC 4648 §5): signed
 * cookies carry it as it is, with no percent-encoding. */
static int core_b64encode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  bool ok;
  size_t n = b64_encoded_len(len, &ok);
  if (!ok) return luaL_error(L, "b64encode: too long");
  luaL_Buffer b;
  char *dst = luaL_buffinitsize(L, &b, n);
  b64_write(dst, s, len, true);
  luaL_pushresultsize(&b, (n - (len % 3 ? 3 - len % 3 : 0)));
  return 1;
}

/* b64decode(s) → the bytes of base64url text s (no padding), or nil when s
 * is not the canonical encoding of any. */
static int core_b64decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  mw_str out = {0};
  int r = b64_decode_url(&out, s, len);
  if (r == -ENOMEM) return luaL_error(L, "out of memory");
  if (r) {
    luaL_pushfail(L);
    return 1;
  }
  lua_pushlstring(L, out.p ? out.p : "", out.len);
  mw_str_free(&out);
  return 1;
}

/* equal(a, b) → whether two strings are equal, in a time that does not
 * tell where they differ (for tokens). */
static int core_equal(lua_State *L) {
  size_t al, bl;
  const char *a = luaL_checklstring(L, 1, &al);
  const char *b = luaL_checklstring(L, 2, &bl);
  lua_pushboolean(L, al == bl && CRYPTO_memcmp(a, b, al) == 0);
  return 1;
}

int luaopen_moonwire_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"log", core_log},       {"now", core_now},   {"time", core_time},
                                 {"headers", l_exchange_headers}, {"random", core_random}, {"start_key", core_start_key}, {"hmac", core_hmac},
                                 {"equal", core_equal},   {"b64encode", core_b64encode},
                                 {"b64decode", core_b64decode}, {NULL, NULL}};
  luaL_newlib(L, fns);
  const lhost_opts *o = lmodule_env_of(L)->opts;
  lua_pushstring(L, o->root);
  lua_setfield(L, -2, "root");
  lua_pushboolean(L, o->dev);
  lua_setfield(L, -2, "dev");
  lua_pushboolean(L, o->seed);
  lua_setfield(L, -2, "seed");
  lua_pushstring(L, MW_VERSION);
  lua_setfield(L, -2, "version");
  if (o->redis) {
    lua_pushstring(L, o->redis);
    lua_setfield(L, -2, "redis");
  }
  return 1;
}

