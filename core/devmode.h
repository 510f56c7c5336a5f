/* devmode.h — dev mode (--dev), for this machine's own browser: the page
 * helper's script tag in every HTML page, the live-reload socket the helper
 * listens on (/__moonwire/live, its heartbeat), and the error page shown
 * while the app has never loaded. What moonwire.reload says (the hello a
 * page gets, the load error) comes from Lua through the host's reloader.
 *
 * A server reachable from elsewhere (--host 0.0.0.0) shows others the
 * production pages: dev mode's details are for loopback clients only. */
#ifndef MW_DEVMODE_H
#define MW_DEVMODE_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "mw.h"
#include "server.h"
#include "ws.h"

/* A page of this machine's browser listening for reloads. */
typedef struct devmode_page {
  ws_conn *ws;
  uint64_t seen; /* loop time of its last message (its pong) */
} devmode_page;

/* Embedded in the host; devmode_init sets it up, devmode_stop closes what
 * it holds. */
typedef struct devmode {
  mw_server *srv;
  bool on;                /* dev mode (--dev) */
  uint64_t ping_ms;       /* the pages' heartbeat */
  lua_State *L;
  int reload_ref;         /* moonwire.reload, set by the host once it loaded (LUA_NOREF before) */
  devmode_page pages[64]; /* pages listening on /__moonwire/live */
  int npages;
  uv_timer_t *ping;       /* the pages' heartbeat (freed in its close callback) */
  uint64_t boot;          /* tells pages the server restarted */
} devmode;

/* Borrows srv and L (the VM's main thread): both outlive d. on: dev mode
 * is on; ping_ms: the heartbeat (0: every 15 s). */
void devmode_init(devmode *d, mw_server *srv, lua_State *L, bool on, uint64_t ping_ms);
/* True when dev mode is on and req comes from this machine. */
bool devmode_client(const devmode *d, const http_req *req);
/* GET /__moonwire/dev.js and the /__moonwire/live WebSocket: 0 when it
 * answered req, 1 when req is not dev mode's. */
int devmode_handle(devmode *d, const http_req *req, http_res *res);
/* Answers res with a 500 page showing the app's load error; the page helper
 * reloads it once a fixed version loads. */
void devmode_error_page(devmode *d, http_res *res);
/* A whole HTML response body (res says text/html, body has a </body>) with
 * the page helper's script tag before its last </body>, appended to out:
 * true. False for anything else (a fragment, another type), out untouched. */
bool devmode_inject(mw_str *out, const http_res *res, const char *body, size_t len);
/* Sends json to every page listening (a reload, a CSS swap, an error). */
void devmode_broadcast(devmode *d, const char *json);
/* Shutdown: the heartbeat stops and every page is closed. */
void devmode_stop(devmode *d);

#endif
