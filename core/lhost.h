/* lhost.h — the Lua VM that runs the app: loading scripts, answering HTTP
 * requests through the app's routes, errors with tracebacks. */
#ifndef MW_LHOST_H
#define MW_LHOST_H


#include "http.h"
#include "l_io.h"
#include "server.h"

typedef struct lhost lhost;
struct mw_db;
struct mw_static;

/* The app host's part of the configuration (config.c fills it from the
 * command line). Strings are borrowed: they must outlive the host. */
typedef struct lhost_opts {
  const char *root;           /* the app directory (scripts/, views/, public/) */
  bool dev;                   /* dev mode: error details, the page helper (for loopback clients) */
  bool watch;                 /* reload scripts/, views/, public/ when they change */
  bool seed;                  /* run scripts/seeds.lua once the app has loaded at start */
  bool test_clock;            /* app timers follow a clock only tests move (moonwire.testing) */
  uint64_t handler_budget_ms; /* a call into Lua runs at most this long (0: no limit) */
  size_t lua_memory;          /* the VM's memory ceiling in bytes (0: none) */
  const char *redis;          /* the Redis adapter's URL; NULL: none */
  l_io_opts io;               /* Socket.IO settings that win over io.configure */
} lhost_opts;

/* Creates the VM and loads scripts/app.lua under o->root. Borrows srv, db
 * and st (they must outlive the host); copies o (its strings stay
 * borrowed). On a load error returns -1 with the message (file:line and
 * traceback) logged; the host is still created so a later reload can
 * succeed. Returns 0 or -errno. */
int lhost_new(lhost **out, mw_server *srv, const lhost_opts *o, struct mw_db *db, struct mw_static *st);
/* Shutdown begins: realtime sessions close and timers stop; HTTP goes on
 * until in-flight responses are done. */
void lhost_stop(lhost *h);
/* Closes the VM (finalising everything the app held). */
void lhost_free(lhost *h);
/* True when the app loaded without error. */
bool lhost_ok(lhost *h);
/* Why the app says the server must not start (registry
 * "moonwire.refuse_start", set by the framework's Lua for a setting that is
 * unsafe outside --dev, such as an Admin UI without a password), or NULL. */
const char *lhost_refusal(lhost *h);
/* What answers the requests of the HTTP and FastCGI listeners (in their
 * http_site). Lives as long as h. */
const http_handler *lhost_handler(lhost *h);
/* Test clock (lhost_opts.test_clock): moves the app's timers on by ms. -1 on the
 * real clock. */
int lhost_advance_clock(lhost *h, uint64_t ms);

#endif
