/* test_redis.c — the Redis client (redis.c) and moonwire.redis_c
 * (l_redis.c). First, with no server, the URL parser and what RESP replies
 * mean to the client (bytes through hiredis's reader, as they come off the
 * socket). Then, against a real redis-server started here on a free port: publish and (p)subscribe with binary
 * payloads, PUBSUB NUMSUB, what happens while Redis is away and when it
 * comes back (state changes reported once, subscriptions sent again),
 * AUTH, bad URLs, close() from inside a callback, and a clean shutdown.
 * That part is skipped (77) when redis-server is not installed. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "redis.h"
#include "l_redis.h"
#include "lmodule.h"
#include "server.h"

static uv_loop_t loop;
static lua_State *L;
static pid_t redis_pid = -1, auth_pid = -1;
static int redis_port, auth_port;

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t n = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &n)) exit(1);
  close(fd);
  return ntohs(a.sin_port);
}

static bool can_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

static pid_t start_redis(int port, const char *password) {
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", 1);
    dup2(devnull, 1);
    if (password)
      execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", password, (char *)NULL);
    else
      execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 500; i++) {
    if (can_connect(port)) return pid;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return -1;
    usleep(10000);
  }
  return -1;
}

static void stop_redis(pid_t *pid) {
  if (*pid <= 0) return;
  kill(*pid, SIGKILL);
  waitpid(*pid, NULL, 0);
  *pid = -1;
}

/* ---- what the Lua side of the test may call ---- */

static void on_tick(uv_timer_t *t) { (void)t; }

/* wait(ms, fn): runs the loop until fn() is true or ms pass; returns fn(). */
static int l_wait(lua_State *S) {
  lua_Integer ms = luaL_checkinteger(S, 1);
  luaL_checktype(S, 2, LUA_TFUNCTION);
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  uint64_t end = uv_now(&loop) + (uint64_t)ms;
  bool done = false;
  for (;;) {
    lua_pushvalue(S, 2);
    lua_call(S, 0, 1);
    done = lua_toboolean(S, -1);
    lua_pop(S, 1);
    if (done || uv_now(&loop) >= end) break;
    uv_run(&loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  lua_pushboolean(S, done);
  return 1;
}

static int l_kill_redis(lua_State *S) {
  stop_redis(&redis_pid);
  return 0;
}

static int l_start_redis(lua_State *S) {
  redis_pid = start_redis(redis_port, NULL);
  lua_pushboolean(S, redis_pid > 0);
  return 1;
}

static int l_check(lua_State *S) {
  bool ok = lua_toboolean(S, 1);
  if (ok) passed++;
  else {
    failed++;
    lua_Debug ar;
    lua_getstack(S, 1, &ar);
    lua_getinfo(S, "l", &ar);
    fprintf(stderr, "test_redis.c (Lua line %d): CHECK failed: %s\n", ar.currentline, luaL_optstring(S, 2, ""));
  }
  return 0;
}

static const char *SCRIPT =
    "local r = require 'moonwire.redis_c'\n"
    "local url, auth_url = ...\n"
    "local got, states = {}, {}\n"
    "local c = assert(r.new(url, { message = function(ch, payload, pattern) got[#got + 1] = { ch, payload, pattern } end,\n"
    "  state = function(up) states[#states + 1] = up end }))\n"
    "c:subscribe('plain')\n"
    "c:psubscribe('pat#*')\n"
    "check(wait(3000, function() return c:connected() end), 'connects')\n"
    "check(#states == 1 and states[1] == true, 'state(true) once')\n"
    "local count\n"
    "c:numsub('plain', function(n, err) count = n or err end)\n"
    "check(count == nil, 'numsub answers later')\n"
    "wait(2000, function() return count ~= nil end)\n"
    "check(count == 1, 'numsub counts the subscriber')\n"
    "local big = string.rep('\\0\\1\\2', 350000)\n"
    "check(c:publish('plain', 'a\\0b'), 'publish')\n"
    "check(c:publish('pat#room#', big), 'publish a MB')\n"
    "check(c:publish('other', 'x'), 'publish elsewhere')\n"
    "wait(3000, function() return #got >= 2 end)\n"
    "check(#got == 2 and got[1][1] == 'plain' and got[1][2] == 'a\\0b' and got[1][3] == nil, 'a message, binary-safe')\n"
    "check(got[2] and got[2][1] == 'pat#room#' and got[2][2] == big and got[2][3] == 'pat#*', 'a pattern message')\n"
    /* Redis away */
    "kill_redis()\n"
    "check(wait(3000, function() return #states == 2 end) and states[2] == false, 'state(false)')\n"
    "check(c:publish('plain', 'lost') == false, 'publish says it dropped')\n"
    "local down\n"
    "c:numsub('plain', function(n, err) down = { n, err } end)\n"
    "check(down == nil, 'numsub answers later, even now')\n"
    "wait(1000, function() return down ~= nil end)\n"
    "check(down and down[1] == nil and down[2] == 'redis is not connected', 'numsub fails while away')\n"
    "wait(600, function() return false end)\n" /* a few retries */
    "check(#states == 2, 'no state change per retry')\n"
    "check(start_redis(), 'redis-server back')\n"
    "check(wait(8000, function() return c:connected() end), 'reconnects')\n"
    "check(#states == 3 and states[3] == true, 'state(true) once more')\n"
    "got = {}\n"
    "wait(1000, function() local n c:numsub('plain', function(x) n = x end) wait(500, function() return n ~= nil end) return n == 1 end)\n"
    "c:publish('plain', 'again')\n"
    "check(wait(3000, function() return #got == 1 end) and got[1][2] == 'again', 'subscribed again after the restart')\n"
    "c:unsubscribe('plain')\n" /* on the other connection than NUMSUB: ask until it shows */
    "local n\n"
    "wait(2000, function() n = nil c:numsub('plain', function(x) n = x end) wait(500, function() return n ~= nil end) return n == 0 end)\n"
    "check(n == 0, 'unsubscribed')\n"
    /* close() from inside a message callback; a pending numsub hears of it */
    "local d\n"
    "local closer\n"
    "closer = assert(r.new(url, { message = function() closer:close() end }))\n"
    "closer:subscribe('close-me')\n"
    "wait(3000, function() return closer:connected() end)\n"
    "c:publish('close-me', 'now')\n"
    "check(wait(3000, function() return not closer:connected() end), 'closed from its own callback')\n"
    "check(not pcall(closer.publish, closer, 'x', 'y'), 'a closed client refuses work')\n"
    "local pend\n"
    "c:numsub('x', function(n, err) pend = err or n end)\n"
    "c:close()\n"
    "check(pend == 'redis client closed', 'close answers what was waiting')\n"
    "c:close()\n" /* idempotent */
    /* bad URLs */
    "for _, bad in ipairs({ 'http://x', 'redis://', 'redis://h:0', 'redis://h:99999', 'redis://h:1/x', 'redis://[::1' }) do\n"
    "  local cl, err = r.new(bad, {})\n"
    "  check(cl == nil and type(err) == 'string' and err:find(bad, 1, true) == 1, 'refused: ' .. bad)\n"
    "end\n"
    /* AUTH */
    "local a = assert(r.new(auth_url, {}))\n"
    "check(wait(3000, function() return a:connected() end), 'AUTH with the password')\n"
    "a:close()\n"
    "wrong = assert(r.new(auth_url:gsub('sesame', 'wrong'), {}))\n"
    "wait(500, function() return false end)\n"
    "check(not wrong:connected(), 'a wrong password does not connect')\n"
    /* left open on purpose: the shutdown closes it */
    "return true\n";

/* ---- the URL ---- */

static void test_url(void) {
  redis_url u;
  CHECK(redis_url_parse(&u, "redis://127.0.0.1") == NULL);
  CHECK(strcmp(u.host, "127.0.0.1") == 0 && u.port == 6379 && u.db == 0 && !u.user && !u.pass);
  CHECK(strcmp(u.where, "127.0.0.1:6379") == 0);
  redis_url_free(&u);

  CHECK(redis_url_parse(&u, "redis://cache.internal:6380/") == NULL);
  CHECK(strcmp(u.host, "cache.internal") == 0 && u.port == 6380 && u.db == 0);
  redis_url_free(&u);

  CHECK(redis_url_parse(&u, "redis://alice:s3cr:et@h:7000/12") == NULL);
  CHECK(u.user && strcmp(u.user, "alice") == 0 && u.pass && strcmp(u.pass, "s3cr:et") == 0);
  CHECK(strcmp(u.host, "h") == 0 && u.port == 7000 && u.db == 12);
  redis_url_free(&u);
  CHECK(!u.user && !u.pass);

  CHECK(redis_url_parse(&u, "redis://:sesame@h") == NULL); /* a password, no user */
  CHECK(!u.user && u.pass && strcmp(u.pass, "sesame") == 0);
  redis_url_free(&u);
  CHECK(redis_url_parse(&u, "redis://sesame@h") == NULL); /* the old form: the password alone */
  CHECK(!u.user && u.pass && strcmp(u.pass, "sesame") == 0);
  redis_url_free(&u);
  CHECK(redis_url_parse(&u, "redis://u:p@ss@h") == NULL); /* the last @ ends the credentials */
  CHECK(strcmp(u.user, "u") == 0 && strcmp(u.pass, "p@ss") == 0 && strcmp(u.host, "h") == 0);
  redis_url_free(&u);

  CHECK(redis_url_parse(&u, "redis://[::1]:6390/3") == NULL);
  CHECK(strcmp(u.host, "::1") == 0 && u.port == 6390 && u.db == 3);
  CHECK(strcmp(u.where, "[::1]:6390") == 0);
  redis_url_free(&u);

  static const struct {
    const char *url, *why;
  } bad[] = {
      {"http://h", "expected redis://host:port"},
      {"rediss://h", "expected redis://host:port"},
      {"redis://", "no host"},
      {"redis://:6379", "no host"},
      {"redis://u:p@", "no host"},
      {"redis://[::1", "an IPv6 address without its ']'"},
      {"redis://h:0", "a bad port"},
      {"redis://h:65536", "a bad port"},
      {"redis://h:", "a bad port"},
      {"redis://h:99999999999999999999", "a bad port"},
      {"redis://h:-1", "a bad port"},
      {"redis://h/x", "a bad database number"},
      {"redis://h/1x", "a bad database number"},
      {"redis://h/-1", "a bad database number"},
      {"redis://h/1000001", "a bad database number"},
      {"redis://h:80x", "unexpected characters after the address"},
      {"redis://[::1]x", "unexpected characters after the address"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *why = redis_url_parse(&u, bad[i].url);
    redis_url_free(&u);
    if (!why || strcmp(why, bad[i].why) != 0)
      fprintf(stderr, "%s: got %s, want %s\n", bad[i].url, why ? why : "(accepted)", bad[i].why);
    CHECK(why && strcmp(why, bad[i].why) == 0);
    CHECK(redis_check_url(bad[i].url) != NULL);
  }
  char longhost[300] = "redis://";
  memset(longhost + 8, 'a', 260);
  CHECK(redis_url_parse(&u, longhost) != NULL); /* too long for the host name */
  redis_url_free(&u);
  CHECK(redis_check_url("redis://localhost:6379/0") == NULL);
}

/* ---- what replies mean ---- */

/* The first reply in the RESP bytes s (NULL when they do not make one). */
static redisReply *read_reply_n(redisReader *rd, const char *s, size_t n) {
  void *r = NULL;
  if (redisReaderFeed(rd, s, n) != REDIS_OK || redisReaderGetReply(rd, &r) != REDIS_OK) return NULL;
  return r;
}
#define read_reply(rd, lit) read_reply_n(rd, lit, sizeof(lit) - 1)

static bool msg_is(const redis_msg *m, const char *ch, const char *payload, size_t plen, const char *pattern) {
  return m->channel_len == strlen(ch) && memcmp(m->channel, ch, m->channel_len) == 0 && m->payload_len == plen &&
         memcmp(m->payload, payload, plen) == 0 &&
         (pattern ? m->pattern && m->pattern_len == strlen(pattern) && memcmp(m->pattern, pattern, m->pattern_len) == 0
                  : m->pattern == NULL);
}

static void test_replies(void) {
  redisReader *rd = redisReaderCreate();
  redis_reader_guard(rd);
  redis_msg m;
  redisReply *r;

  r = read_reply(rd, "*3\r\n$7\r\nmessage\r\n$5\r\nrooms\r\n$3\r\na\0b\r\n");
  CHECK(r && redis_sub_reply(r, &m) == REDIS_SUB_MESSAGE && msg_is(&m, "rooms", "a\0b", 3, NULL));
  freeReplyObject(r);

  r = read_reply(rd, "*4\r\n$8\r\npmessage\r\n$5\r\nsio#*\r\n$9\r\nsio#room#\r\n$0\r\n\r\n");
  CHECK(r && redis_sub_reply(r, &m) == REDIS_SUB_MESSAGE && msg_is(&m, "sio#room#", "", 0, "sio#*"));
  freeReplyObject(r);

  r = read_reply(rd, "*3\r\n$9\r\nsubscribe\r\n$5\r\nrooms\r\n:1\r\n");
  CHECK(r && redis_sub_reply(r, &m) == REDIS_SUB_CONFIRM);
  freeReplyObject(r);
  r = read_reply(rd, "*3\r\n$10\r\npsubscribe\r\n$5\r\nsio#*\r\n:2\r\n");
  CHECK(r && redis_sub_reply(r, &m) == REDIS_SUB_CONFIRM);
  freeReplyObject(r);

  /* Not a message, or not a well-formed one: ignored. */
  static const char *ignored[] = {
      "*3\r\n$11\r\nunsubscribe\r\n$5\r\nrooms\r\n:0\r\n",
      "*2\r\n$7\r\nmessage\r\n$5\r\nrooms\r\n",                        /* too short */
      "*4\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",  /* a message of four */
      "*3\r\n$8\r\npmessage\r\n$1\r\na\r\n$1\r\nb\r\n",              /* a pmessage of three */
      "*3\r\n:1\r\n$1\r\na\r\n$1\r\nb\r\n",                          /* the kind not a string */
      "+PONG\r\n",
      "-ERR unknown command\r\n",
      ":42\r\n",
      "*-1\r\n",
  };
  for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
    r = read_reply_n(rd, ignored[i], strlen(ignored[i]));
    CHECK(r && redis_sub_reply(r, &m) == REDIS_SUB_NONE);
    freeReplyObject(r);
  }
  CHECK(redis_sub_reply(NULL, &m) == REDIS_SUB_NONE);

  /* A message whose parts are not strings gets empty ones (as before). */
  r = read_reply(rd, "*3\r\n$7\r\nmessage\r\n:7\r\n*0\r\n");
  CHECK(r && redis_sub_reply(r, &m) == REDIS_SUB_MESSAGE && m.channel_len == 0 && m.payload_len == 0);
  freeReplyObject(r);

  long long count = -1;
  const char *err = NULL;
  r = read_reply(rd, "*2\r\n$5\r\nrooms\r\n:3\r\n");
  CHECK(r && redis_numsub_reply(r, &count, &err) == 0 && count == 3);
  freeReplyObject(r);
  r = read_reply(rd, "-NOPERM this user has no permissions\r\n");
  CHECK(r && redis_numsub_reply(r, &count, &err) == -1 && strcmp(err, "NOPERM this user has no permissions") == 0);
  freeReplyObject(r);
  r = read_reply(rd, "*2\r\n$5\r\nrooms\r\n$1\r\n3\r\n");
  CHECK(r && redis_numsub_reply(r, &count, &err) == -1 && strstr(err, "unexpected reply"));
  freeReplyObject(r);
  r = read_reply(rd, "*0\r\n");
  CHECK(r && redis_numsub_reply(r, &count, &err) == -1 && strstr(err, "unexpected reply"));
  freeReplyObject(r);
  CHECK(redis_numsub_reply(NULL, &count, &err) == -1 && strcmp(err, "redis connection lost") == 0);

  /* A reply split across reads comes out whole once its last byte is in. */
  const char *whole = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
  void *part = NULL;
  for (size_t i = 0; whole[i]; i++) {
    CHECK(redisReaderFeed(rd, whole + i, 1) == REDIS_OK);
    CHECK(redisReaderGetReply(rd, &part) == REDIS_OK);
    if (part) {
      CHECK(whole[i + 1] == '\0');
      break;
    }
  }
  CHECK(part && redis_sub_reply(part, &m) == REDIS_SUB_MESSAGE && msg_is(&m, "ch", "hello", 5, NULL));
  freeReplyObject(part);

  /* Bytes that are not RESP: the reader says so, and the client drops the connection. */
  redisReader *bad = redisReaderCreate();
  void *none = NULL;
  CHECK(redisReaderFeed(bad, "?what\r\n", 7) == REDIS_OK);
  CHECK(redisReaderGetReply(bad, &none) == REDIS_ERR && none == NULL);
  redisReaderFree(bad);
  redisReaderFree(rd);

  /* An array header asking for more elements than any reply to this
   * client has: refused when read, before anything is allocated for it
   * (hiredis would allocate 16 GB of element pointers for this one). */
  static const char *huge[] = {"*2000000000\r\n", "*1025\r\n", "*3\r\n$7\r\nmessage\r\n*100000\r\n"};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    redisReader *g = redisReaderCreate();
    redis_reader_guard(g);
    void *none = NULL;
    CHECK(redisReaderFeed(g, huge[i], strlen(huge[i])) == REDIS_OK);
    CHECK(redisReaderGetReply(g, &none) == REDIS_ERR && none == NULL);
    redisReaderFree(g);
  }
  redisReader *g = redisReaderCreate();
  redis_reader_guard(g);
  r = read_reply(g, "*1024\r\n");
  CHECK(r == NULL && g->err == 0); /* as many as allowed: waits for them */
  redisReaderFree(g);
}

int main(void) {
  test_url();
  test_replies();
  if (system("command -v redis-server >/dev/null 2>&1") != 0) {
    printf("redis-server is not installed: the client's own checks passed, the rest skipped\n");
    CHECK_REPORT();
    return failed ? 1 : 77;
  }
  signal(SIGPIPE, SIG_IGN);
  redis_port = free_port();
  auth_port = free_port();
  redis_pid = start_redis(redis_port, NULL);
  auth_pid = start_redis(auth_port, "sesame");
  if (redis_pid <= 0 || auth_pid <= 0) {
    fprintf(stderr, "could not start redis-server\n");
    stop_redis(&redis_pid);
    stop_redis(&auth_pid);
    return 1;
  }
  uv_loop_init(&loop);
  L = luaL_newstate();
  luaL_openlibs(L);
  mw_server srv = {.loop = &loop};
  lmodule_env env = {.srv = &srv};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushlightuserdata(L, &env);
  lua_pushcclosure(L, luaopen_moonwire_redis_c, 1);
  lua_setfield(L, -2, "moonwire.redis_c");
  lua_pop(L, 1);
  lua_register(L, "wait", l_wait);
  lua_register(L, "kill_redis", l_kill_redis);
  lua_register(L, "start_redis", l_start_redis);
  lua_register(L, "check", l_check);
  char url[64], auth_url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_port);
  snprintf(auth_url, sizeof auth_url, "redis://:sesame@127.0.0.1:%d/2", auth_port);
  if (luaL_loadstring(L, SCRIPT) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pushstring(L, url);
  lua_pushstring(L, auth_url);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    failed++;
    fprintf(stderr, "script error: %s\n", lua_tostring(L, -1));
  }
  /* The shutdown: every client closes, and the loop ends with no handle
   * left. The loop runs before the VM goes, as in the server (the clients
   * are freed then): the handle left in Lua is stale, and raises. */
  l_redis_stop_all(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(luaL_dostring(L, "return wrong:publish('ch', 'x')") != LUA_OK &&
        strstr(lua_tostring(L, -1), "the client is closed"));
  CHECK(luaL_dostring(L, "return wrong:connected()") == LUA_OK && !lua_toboolean(L, -1));
  lua_close(L); /* its __gc finds nothing to close */
  CHECK(uv_loop_close(&loop) == 0);
  stop_redis(&redis_pid);
  stop_redis(&auth_pid);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
