/* redis.h — a Redis pub/sub client on a libuv loop, with no Lua: the URL
 * it connects to, its two connections (one publishes and asks, the other
 * is in subscribed mode, as socket.io's Redis adapter uses two clients),
 * the subscriptions it sends again after every reconnect, and the
 * reconnect state machine. hiredis reads the RESP replies; what a reply
 * means to the client is redis_sub_reply's and redis_numsub_reply's, pure
 * functions a test and a fuzzer drive directly. The Lua module over it is
 * moonwire.redis_c (l_redis.c). */
#ifndef MW_REDIS_H
#define MW_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* ---- the URL ---- */

/* redis://[user[:password]@]host[:port][/db]; host may be [v6]. */
typedef struct redis_url {
  char host[256];
  int port, db;
  char *user, *pass; /* owned (NULL when absent): redis_url_free */
  char where[300];   /* host:port, for the log */
} redis_url;

/* Parses url into u (zeroed first): NULL, or what is wrong (a static
 * string). Call redis_url_free either way. */
const char *redis_url_parse(redis_url *u, const char *url);
void redis_url_free(redis_url *u);
/* NULL when url is a redis:// URL the client takes; else what is wrong. */
const char *redis_check_url(const char *url);

/* ---- what a reply means ---- */

typedef enum redis_sub_kind {
  REDIS_SUB_NONE,    /* not a pub/sub reply (or a malformed one): ignored */
  REDIS_SUB_CONFIRM, /* a SUBSCRIBE or PSUBSCRIBE confirmed */
  REDIS_SUB_MESSAGE, /* a message (pattern NULL) or a pmessage */
} redis_sub_kind;

/* A message, borrowed from the reply. */
typedef struct redis_msg {
  const char *channel, *payload, *pattern;
  size_t channel_len, payload_len, pattern_len;
} redis_msg;

/* Makes r (a hiredis reader) refuse an array reply of more elements than
 * any reply to this client has (the client's connections use it). */
void redis_reader_guard(redisReader *r);
/* What a reply on the subscribed connection is; fills m for a message. */
redis_sub_kind redis_sub_reply(const redisReply *r, redis_msg *m);
/* The reply to PUBSUB NUMSUB ch: 0 and *count, or -1 and *err (borrowed
 * from the reply, or a static string). */
int redis_numsub_reply(const redisReply *r, long long *count, const char **err);

/* ---- the client ---- */

typedef struct redis_client redis_client;

/* What the client tells its owner, on the loop thread. */
typedef struct redis_events {
  /* a message of a subscription (m borrowed for the call) */
  void (*message)(void *ud, const redis_msg *m);
  /* Redis came up (both connections ready) or went away: once per change */
  void (*state)(void *ud, bool up);
  /* the answer to redis_client_numsub(..., req): count, or err (NULL on
   * success); exactly once per request, never from inside the call */
  void (*numsub)(void *ud, void *req, long long count, const char *err);
} redis_events;

/* Starts connecting to url. Borrows loop and ev (which outlive the client)
 * and ud. Returns 0; -EINVAL with *bad saying what is wrong with url; or
 * -ENOMEM. */
int redis_client_new(redis_client **out, uv_loop_t *loop, const char *url, const redis_events *ev, void *ud,
                     const char **bad);
/* Adds (or removes) a channel, or a pattern, to what the subscribed
 * connection listens to, now and after every reconnect. */
void redis_client_subscribe(redis_client *c, const char *s, size_t n, bool pattern);
void redis_client_unsubscribe(redis_client *c, const char *s, size_t n, bool pattern);
/* PUBLISH ch payload: 0, or -ENOTCONN when Redis is not up (dropped). */
int redis_client_publish(redis_client *c, const char *ch, size_t cn, const char *payload, size_t pn);
/* PUBSUB NUMSUB ch: ev->numsub(ud, req, ...) later, exactly once. 0 or
 * -ENOMEM (then never). */
int redis_client_numsub(redis_client *c, const char *ch, size_t n, void *req);
/* Both connections ready, as last told through ev->state. */
bool redis_client_up(const redis_client *c);
/* Closes the client: requests still waiting hear "redis client closed"
 * (or why they were refused) now, then nothing more is told; the memory
 * goes once its handles are closed. Idempotent while c is still being
 * closed: call it once. */
void redis_client_close(redis_client *c);

#endif
