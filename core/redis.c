/* redis.c — a Redis pub/sub client on the server's libuv loop (hiredis
 * and its event hooks), with no Lua: moonwire.redis_c (l_redis.c) is its
 * binding, for the Redis adapter (core/embedded/lua/moonwire/adapter.lua).
 *
 * hiredis's async API runs on the loop through the event hooks below.
 * Two connections, as socket.io's adapter uses two clients: one publishes
 * and asks (PUBSUB NUMSUB), the other is in subscribed mode. Subscriptions
 * are remembered here and sent again after every reconnect. When either
 * connection fails both are dropped and made again, 100 ms later, then 200,
 * 400... up to 5 s; each change of state is logged once and told to the
 * owner once (state(false), state(true)), however many attempts it takes.
 *
 * hiredis frees a context itself after a failed connect or a disconnect,
 * and defers redisAsyncFree called from inside that context's callbacks. So
 * a context never outlives its ac->data check: a context this client let go
 * of has ac->data NULL, and its late callbacks are ignored. */
#include "redis.h"

#include <errno.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "mw.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 5000

typedef struct name_list {
  char **v;
  size_t *len;
  size_t n, cap;
} name_list;

typedef redis_client rclient;

/* A numsub waiting for its answer (or, with ac == NULL, for the loop turn
 * that tells it Redis is away). */
typedef struct pending {
  rclient *c; /* NULL once the client is gone: the reply is then dropped */
  void *req;  /* the owner's, for ev->numsub */
  const char *msg; /* for the deferred ones */
  struct pending *prev, *next;
} pending;

struct redis_client {
  uv_loop_t *loop;
  const redis_events *ev;
  void *ud;
  redis_url url;
  redisAsyncContext *pub, *sub;
  bool pub_ready, sub_ready;
  bool sub_sent;      /* the subscriptions went out on this sub connection */
  bool sub_pinged;    /* its PING (after AUTH and SELECT) was answered */
  size_t sub_pending; /* subscriptions sent at connect and not yet confirmed */
  bool up;          /* as last told to the owner */
  bool down_logged; /* the current outage was logged */
  bool retrying;    /* the retry timer is armed */
  bool closed;
  uint64_t backoff;
  uv_timer_t retry, deadline, defer;
  int open_handles;
  name_list channels, patterns;
  pending *waiting;  /* sent to Redis */
  pending *deferred; /* to be told "not connected" on the next loop turn */
};

/* ---- small helpers ---- */

static int list_find(name_list *l, const char *s, size_t n) {
  for (size_t i = 0; i < l->n; i++)
    if (l->len[i] == n && memcmp(l->v[i], s, n) == 0) return (int)i;
  return -1;
}

static bool list_add(name_list *l, const char *s, size_t n) {
  if (list_find(l, s, n) >= 0) return false;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    char **v = realloc(l->v, cap * sizeof *v);
    if (!v) return false;
    l->v = v;
    size_t *len = realloc(l->len, cap * sizeof *len);
    if (!len) return false;
    l->len = len;
    l->cap = cap;
  }
  char *copy = malloc(n + 1);
  if (!copy) return false;
  memcpy(copy, s, n);
  copy[n] = 0;
  l->v[l->n] = copy;
  l->len[l->n++] = n;
  return true;
}

static bool list_del(name_list *l, const char *s, size_t n) {
  int i = list_find(l, s, n);
  if (i < 0) return false;
  free(l->v[i]);
  l->v[i] = l->v[l->n - 1];
  l->len[i] = l->len[l->n - 1];
  l->n--;
  return true;
}

static void list_free(name_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  free(l->len);
  *l = (name_list){0};
}

static void unlink_pending(pending **head, pending *p) {
  if (p->prev) p->prev->next = p->next;
  else *head = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void push_pending(pending **head, pending *p) {
  p->prev = NULL;
  p->next = *head;
  if (*head) (*head)->prev = p;
  *head = p;
}

/* Tells the owner the answer to a numsub. */
static void answer(rclient *c, void *req, long long count, const char *msg) { c->ev->numsub(c->ud, req, count, msg); }

/* ---- what a reply means ---- */

/* hiredis 0.14 allocates an array reply's element pointers as soon as it
 * reads the header, so "*2000000000" from the server asked for 16 GB.
 * Nothing this client sends Redis is answered with more than four
 * elements: the reader refuses anything past this (a protocol error, as
 * for any malformed reply: the connection is dropped and made again). */
#define REPLY_ELEMENTS_MAX 1024

static void *(*default_create_array)(const redisReadTask *task, int elements);
static redisReplyObjectFunctions guarded_fns;

static void *create_array(const redisReadTask *task, int elements) {
  if (elements < 0 || elements > REPLY_ELEMENTS_MAX) return NULL; /* the reader reports "Out of memory" */
  return default_create_array(task, elements);
}

void redis_reader_guard(redisReader *r) {
  if (!default_create_array) {
    guarded_fns = *r->fn;
    default_create_array = guarded_fns.createArray;
    guarded_fns.createArray = create_array;
  }
  r->fn = &guarded_fns;
}

redis_sub_kind redis_sub_reply(const redisReply *r, redis_msg *m) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return REDIS_SUB_NONE;
  const redisReply *kind = r->element[0];
  if (kind->type != REDIS_REPLY_STRING) return REDIS_SUB_NONE;
  if (!strcmp(kind->str, "subscribe") || !strcmp(kind->str, "psubscribe")) return REDIS_SUB_CONFIRM;
  if (!strcmp(kind->str, "message") && r->elements == 3) {
    *m = (redis_msg){.channel = r->element[1]->str, .channel_len = r->element[1]->len,
                     .payload = r->element[2]->str, .payload_len = r->element[2]->len};
    return REDIS_SUB_MESSAGE;
  }
  if (!strcmp(kind->str, "pmessage") && r->elements == 4) {
    *m = (redis_msg){.pattern = r->element[1]->str, .pattern_len = r->element[1]->len,
                     .channel = r->element[2]->str, .channel_len = r->element[2]->len,
                     .payload = r->element[3]->str, .payload_len = r->element[3]->len};
    return REDIS_SUB_MESSAGE;
  }
  return REDIS_SUB_NONE;
}

int redis_numsub_reply(const redisReply *r, long long *count, const char **err) {
  if (!r) {
    *err = "redis connection lost";
  } else if (r->type == REDIS_REPLY_ERROR) {
    *err = r->str;
  } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER) {
    *count = r->element[1]->integer;
    return 0;
  } else {
    *err = "redis: an unexpected reply to PUBSUB NUMSUB";
  }
  return -1;
}

/* ---- connection state ---- */

static void connect_both(rclient *c);
static void on_retry(uv_timer_t *t);

/* Lets go of a context: its late callbacks see ac->data NULL. */
static void drop(redisAsyncContext **slot) {
  redisAsyncContext *ac = *slot;
  *slot = NULL;
  if (!ac) return;
  ac->data = NULL;
  redisAsyncFree(ac); /* deferred by hiredis when inside its callback */
}

/* Pending numsubs hear that the connection went. */
static void fail_waiting(rclient *c, const char *msg) {
  while (c->waiting) {
    pending *p = c->waiting;
    unlink_pending(&c->waiting, p);
    p->c = NULL; /* hiredis still holds it: freed when its callback comes */
    answer(c, p->req, 0, msg);
  }
}

/* Either connection failed (or never came): both go, and a retry is armed. */
static void went_down(rclient *c, const char *why) {
  if (c->closed || c->retrying) return;
  drop(&c->pub);
  drop(&c->sub);
  c->pub_ready = c->sub_ready = c->sub_sent = c->sub_pinged = false;
  uv_timer_stop(&c->deadline);
  fail_waiting(c, "redis connection lost");
  if (!c->down_logged) {
    c->down_logged = true;
    if (c->up) mw_log(MW_LOG_WARN, "redis: lost the connection to %s (%s); reconnecting", c->url.where, why);
    else mw_log(MW_LOG_WARN, "redis: cannot connect to %s (%s); retrying", c->url.where, why);
  }
  c->retrying = true;
  uv_timer_start(&c->retry, on_retry, c->backoff, 0);
  c->backoff = c->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff * 2;
  if (c->up) {
    c->up = false;
    c->ev->state(c->ud, false);
  }
}

static void on_retry(uv_timer_t *t) {
  rclient *c = t->data;
  c->retrying = false;
  if (!c->closed) connect_both(c);
}

static void on_deadline(uv_timer_t *t) {
  rclient *c = t->data;
  if (!(c->pub_ready && c->sub_ready)) went_down(c, "timed out");
}

static void check_ready(rclient *c) {
  if (!c->pub_ready || !c->sub_ready || c->up) return;
  uv_timer_stop(&c->deadline);
  c->up = true;
  c->down_logged = false;
  c->backoff = BACKOFF_MIN_MS;
  mw_log(MW_LOG_INFO, "redis: connected to %s", c->url.where);
  c->ev->state(c->ud, true);
}

/* The reply to the PING sent after AUTH and SELECT: the connection works. */
static void on_ping(redisAsyncContext *ac, void *r, void *priv) {
  rclient *c = ac->data;
  redisReply *reply = r;
  if (!c) return;
  if (!reply) return; /* the disconnect callback tells */
  if (reply->type == REDIS_REPLY_ERROR) {
    char why[200];
    snprintf(why, sizeof why, "%s", reply->str);
    went_down(c, why);
    return;
  }
  if (ac == c->pub) {
    c->pub_ready = true;
  } else if (ac == c->sub) {
    c->sub_pinged = true;
    c->sub_ready = c->sub_pending == 0;
  }
  check_ready(c);
}

/* AUTH or SELECT refused: say why (PING, which follows, fails too). */
static void on_setup(redisAsyncContext *ac, void *r, void *priv) {
  rclient *c = ac->data;
  redisReply *reply = r;
  if (!c || !reply || reply->type != REDIS_REPLY_ERROR) return;
  char why[200];
  snprintf(why, sizeof why, "%s: %s", (const char *)priv, reply->str);
  went_down(c, why);
}

/* Every message of every subscription comes here. */
static void on_sub(redisAsyncContext *ac, void *r, void *priv) {
  rclient *c = ac->data;
  if (!c || c->closed) return;
  redis_msg m;
  switch (redis_sub_reply(r, &m)) {
  case REDIS_SUB_CONFIRM:
    /* The connection is ready once Redis confirmed what it was sent at
     * connect: then a publish from anywhere reaches this client. */
    if (ac == c->sub && c->sub_pending > 0 && --c->sub_pending == 0 && c->sub_pinged) {
      c->sub_ready = true;
      check_ready(c);
    }
    break;
  case REDIS_SUB_MESSAGE: c->ev->message(c->ud, &m); break;
  case REDIS_SUB_NONE: break;
  }
}

static void send_sub(rclient *c, const char *cmd, const char *s, size_t n) {
  const char *argv[2] = {cmd, s};
  size_t lens[2] = {strlen(cmd), n};
  redisAsyncCommandArgv(c->sub, on_sub, NULL, 2, argv, lens);
}

static void on_connect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  rclient *c = ac->data;
  if (!c) return;
  if (status != REDIS_OK) {
    /* hiredis frees it after this returns */
    char why[200];
    snprintf(why, sizeof why, "%s", ac->errstr[0] ? ac->errstr : "connection refused");
    if (ac == c->pub) c->pub = NULL;
    if (ac == c->sub) c->sub = NULL;
    ac->data = NULL;
    went_down(c, why);
    return;
  }
  if (c->url.pass) {
    if (c->url.user) redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s %s", c->url.user, c->url.pass);
    else redisAsyncCommand(ac, on_setup, "AUTH", "AUTH %s", c->url.pass);
  }
  if (c->url.db) redisAsyncCommand(ac, on_setup, "SELECT", "SELECT %d", c->url.db);
  redisAsyncCommand(ac, on_ping, NULL, "PING"); /* before any SUBSCRIBE: a plain reply */
  if (ac == c->sub) {
    for (size_t i = 0; i < c->channels.n; i++) send_sub(c, "SUBSCRIBE", c->channels.v[i], c->channels.len[i]);
    for (size_t i = 0; i < c->patterns.n; i++) send_sub(c, "PSUBSCRIBE", c->patterns.v[i], c->patterns.len[i]);
    c->sub_pending = c->channels.n + c->patterns.n;
    c->sub_sent = true;
  }
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  rclient *c = ac->data;
  if (!c) return;
  /* hiredis frees it after this returns */
  if (ac == c->pub) c->pub = NULL;
  if (ac == c->sub) c->sub = NULL;
  ac->data = NULL;
  char why[200];
  snprintf(why, sizeof why, "%s", status == REDIS_OK ? "closed by the server" : ac->errstr[0] ? ac->errstr : "error");
  went_down(c, why);
}

/* ---- hiredis on the libuv loop ----
 *
 * The hooks of hiredis's adapters/libuv.h, with one difference: that
 * adapter (0.14) drops a poll callback with an error status, and libuv
 * gives one (and stops the handle) when the socket has an error pending —
 * a refused connect, a reset connection. hiredis then never hears of it,
 * so a connect to a closed port waited for the timeout and a reset
 * connection looked alive forever. Here an error is handed to hiredis as
 * readable and writable, and its read or connect check finds the error. */

typedef struct rpoll {
  redisAsyncContext *ac; /* NULL once hiredis cleaned up */
  uv_poll_t handle;
  int events;
} rpoll;

static void ev_poll(uv_poll_t *h, int status, int events) {
  rpoll *p = h->data;
  if (status < 0) events = UV_READABLE | UV_WRITABLE;
  if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void ev_update(rpoll *p) {
  if (p->events) uv_poll_start(&p->handle, p->events, ev_poll);
  else uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d) {
  rpoll *p = d;
  p->events |= UV_READABLE;
  ev_update(p);
}

static void ev_del_read(void *d) {
  rpoll *p = d;
  p->events &= ~UV_READABLE;
  ev_update(p);
}

static void ev_add_write(void *d) {
  rpoll *p = d;
  p->events |= UV_WRITABLE;
  ev_update(p);
}

static void ev_del_write(void *d) {
  rpoll *p = d;
  p->events &= ~UV_WRITABLE;
  ev_update(p);
}

static void ev_closed(uv_handle_t *h) { free(h->data); }

static void ev_cleanup(void *d) {
  rpoll *p = d;
  p->ac = NULL;
  uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  rpoll *p = calloc(1, sizeof *p);
  if (!p) return REDIS_ERR;
  if (uv_poll_init(loop, &p->handle, ac->c.fd)) {
    free(p);
    return REDIS_ERR;
  }
  p->ac = ac;
  p->handle.data = p;
  ac->ev.data = p;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return REDIS_OK;
}

static redisAsyncContext *open_one(rclient *c, const char **err) {
  redisAsyncContext *ac = redisAsyncConnect(c->url.host, c->url.port);
  if (!ac) {
    *err = "out of memory";
    return NULL;
  }
  if (ac->err) {
    static char why[200];
    snprintf(why, sizeof why, "%s", ac->errstr);
    *err = why;
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = c;
  redis_reader_guard(ac->c.reader);
  if (ev_attach(ac, c->loop) != REDIS_OK) {
    *err = "cannot attach to the loop";
    ac->data = NULL;
    redisAsyncFree(ac);
    return NULL;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  return ac;
}

static void connect_both(rclient *c) {
  const char *err = NULL;
  c->pub = open_one(c, &err);
  if (c->pub) c->sub = open_one(c, &err);
  if (!c->pub || !c->sub) {
    went_down(c, err ? err : "cannot connect");
    return;
  }
  uv_timer_start(&c->deadline, on_deadline, CONNECT_TIMEOUT_MS, 0);
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h) {
  rclient *c = h->data;
  if (--c->open_handles == 0) free(c);
}

void redis_client_close(rclient *c) {
  if (c->closed) return;
  c->closed = true;
  fail_waiting(c, "redis client closed");
  drop(&c->pub);
  drop(&c->sub);
  while (c->deferred) {
    pending *p = c->deferred;
    unlink_pending(&c->deferred, p);
    answer(c, p->req, 0, p->msg);
    free(p);
  }
  list_free(&c->channels);
  list_free(&c->patterns);
  redis_url_free(&c->url);
  uv_close((uv_handle_t *)&c->retry, on_handle_closed);
  uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
  uv_close((uv_handle_t *)&c->defer, on_handle_closed);
}

/* ---- what the owner asks ---- */

static void sub_op(rclient *c, const char *s, size_t n, bool pattern, bool add) {
  name_list *l = pattern ? &c->patterns : &c->channels;
  bool changed = add ? list_add(l, s, n) : list_del(l, s, n);
  if (changed && c->sub && c->sub_sent)
    send_sub(c, add ? (pattern ? "PSUBSCRIBE" : "SUBSCRIBE") : (pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE"), s, n);
}

void redis_client_subscribe(rclient *c, const char *s, size_t n, bool pattern) { sub_op(c, s, n, pattern, true); }
void redis_client_unsubscribe(rclient *c, const char *s, size_t n, bool pattern) { sub_op(c, s, n, pattern, false); }

int redis_client_publish(rclient *c, const char *ch, size_t cn, const char *payload, size_t pn) {
  if (!c->up || !c->pub) return -ENOTCONN;
  const char *argv[3] = {"PUBLISH", ch, payload};
  size_t lens[3] = {7, cn, pn};
  return redisAsyncCommandArgv(c->pub, NULL, NULL, 3, argv, lens) == REDIS_OK ? 0 : -ENOTCONN;
}

static void on_numsub(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  pending *p = priv;
  rclient *c = p->c;
  if (!c) { /* the client let go of it */
    free(p);
    return;
  }
  unlink_pending(&c->waiting, p);
  void *req = p->req;
  free(p);
  long long count = 0;
  const char *err = NULL;
  redis_numsub_reply(r, &count, &err);
  answer(c, req, count, err);
}

static void on_defer(uv_timer_t *t) {
  rclient *c = t->data;
  while (c->deferred && !c->closed) {
    pending *p = c->deferred;
    unlink_pending(&c->deferred, p);
    void *req = p->req;
    const char *msg = p->msg;
    free(p);
    answer(c, req, 0, msg);
  }
}

int redis_client_numsub(rclient *c, const char *ch, size_t n, void *req) {
  pending *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->req = req;
  p->c = c;
  if (c->up && c->pub) {
    const char *argv[3] = {"PUBSUB", "NUMSUB", ch};
    size_t lens[3] = {6, 6, n};
    if (redisAsyncCommandArgv(c->pub, on_numsub, p, 3, argv, lens) == REDIS_OK) {
      push_pending(&c->waiting, p);
      return 0;
    }
  }
  p->msg = "redis is not connected";
  push_pending(&c->deferred, p);
  uv_timer_start(&c->defer, on_defer, 0, 0);
  return 0;
}

bool redis_client_up(const rclient *c) { return c->up; }

/* ---- the URL ---- */

const char *redis_url_parse(redis_url *c, const char *url) {
  *c = (redis_url){0};
  if (strncmp(url, "redis://", 8)) return "expected redis://host:port";
  const char *p = url + 8;
  const char *at = strrchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (colon > p) c->user = strndup(p, (size_t)(colon - p));
      c->pass = strndup(colon + 1, (size_t)(at - colon - 1));
    } else {
      c->pass = strndup(p, (size_t)(at - p)); /* redis://password@host */
    }
    p = at + 1;
  }
  const char *host_end;
  if (*p == '[') {
    host_end = strchr(p, ']');
    if (!host_end) return "an IPv6 address without its ']'";
    p++;
  } else {
    host_end = p + strcspn(p, ":/");
  }
  size_t hl = (size_t)(host_end - p);
  if (hl == 0) return "no host";
  if (hl >= sizeof c->host) return "the host name is too long";
  memcpy(c->host, p, hl);
  c->host[hl] = 0;
  p = host_end + (*host_end == ']');
  c->port = 6379;
  if (*p == ':') {
    char *end;
    errno = 0;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || errno || port < 1 || port > 65535) return "a bad port";
    c->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    long db = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end || db < 0 || db > 1000000) return "a bad database number";
    c->db = (int)db;
    p = end;
  } else if (*p == '/') {
    p++;
  }
  if (*p) return "unexpected characters after the address";
  snprintf(c->where, sizeof c->where, strchr(c->host, ':') ? "[%s]:%d" : "%s:%d", c->host, c->port);
  return NULL;
}

void redis_url_free(redis_url *u) {
  free(u->user);
  free(u->pass);
  u->user = u->pass = NULL;
}

const char *redis_check_url(const char *url) {
  redis_url u;
  const char *bad = redis_url_parse(&u, url);
  redis_url_free(&u);
  return bad;
}

/* ---- a new client ---- */

int redis_client_new(rclient **out, uv_loop_t *loop, const char *url, const redis_events *ev, void *ud,
                     const char **bad) {
  rclient *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  if ((*bad = redis_url_parse(&c->url, url))) {
    redis_url_free(&c->url);
    free(c);
    return -EINVAL;
  }
  c->loop = loop;
  c->ev = ev;
  c->ud = ud;
  c->backoff = BACKOFF_MIN_MS;
  uv_timer_init(loop, &c->retry);
  uv_timer_init(loop, &c->deadline);
  uv_timer_init(loop, &c->defer);
  c->retry.data = c->deadline.data = c->defer.data = c;
  c->open_handles = 3;
  *out = c;
  connect_both(c);
  return 0;
}
