/* lhost.h — the Lua VM that runs the app: loading scripts, answering HTTP
 * requests through the app's routes, errors with tracebacks. */
#ifndef MW_LHOST_H
#define MW_LHOST_H

#include <lua.h>

#include "http.h"
#include "server.h"

typedef struct lhost lhost;
struct mw_db;
struct mw_static;

/* Creates the VM and loads scripts/app.lua under cfg->root. Borrows srv, db
 * and st (they must outlive the host). On a load error returns -1 with the
 * message (file:line and traceback) logged; the host is still created so a
 * later reload can succeed. Returns 0 or -errno. */
int lhost_new(lhost **out, mw_server *srv, struct mw_db *db, struct mw_static *st);
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
/* What answers the requests of the HTTP and FastCGI listeners (their user
 * data: mw_listen_opts.ud). Lives as long as h. */
const http_handler *lhost_handler(lhost *h);
lua_State *lhost_state(lhost *h);
/* Test clock (cfg.test_clock): moves the app's timers on by ms. -1 on the
 * real clock. */
int lhost_advance_clock(lhost *h, uint64_t ms);

#endif
