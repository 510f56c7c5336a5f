/* l_exchange.h — an HTTP exchange as the app's Lua sees it: the response
 * handle moonwire.app's res is built on (finish, begin/write/wait for a
 * streamed body, sendfile, the request body's reads), and the request's
 * values app._dispatch takes. The host makes one per request; it holds its
 * request's headers packed, a table only once the app reads req.headers. */
#ifndef MW_L_EXCHANGE_H
#define MW_L_EXCHANGE_H

#include <lua.h>
#include <stdbool.h>
#include <uv.h>

#include "http.h"
#include "static.h"

/* The VM's exchanges: their metatable, and the Lua functions C owes a call
 * (a drain waited for, a file being sent). */
typedef struct l_exchanges l_exchanges;
/* One exchange: a full userdata of the VM. */
typedef struct l_exchange l_exchange;

/* Registers the exchange's metatable in L. Borrows L, loop and st (they
 * outlive x, but L is closed after l_exchanges_free). Returns 0 or -ENOMEM. */
int l_exchanges_new(l_exchanges **out, lua_State *L, uv_loop_t *loop, mw_static *st);
/* Before the VM closes: callbacks still to come find the VM gone and only
 * free themselves. */
void l_exchanges_free(l_exchanges *x);

/* Pushes a new exchange for res (req's headers packed in it). dev: the
 * client gets dev mode's page helper in its HTML pages. */
l_exchange *l_exchange_push(l_exchanges *x, const http_req *req, http_res *res, bool dev);
/* Pushes the arguments app._dispatch and app._not_found take after the
 * exchange: method, url, rawpath, querystring, body, ip, and the exchange
 * again (at stack index exi, for its packed headers). Returns how many. */
int l_exchange_push_req(lua_State *L, const http_req *req, int exi);
/* The response while the route has not answered it, or streams it; NULL
 * once it is answered (or static.c sends a file for it). */
http_res *l_exchange_res(const l_exchange *ex);
/* The host answers the response itself now: the route's handle lets go. */
void l_exchange_detach(l_exchange *ex);

/* core.headers(ex) → the headers table of ex's request (lower-case names,
 * a repeated header's values joined with ", "). */
int l_exchange_headers(lua_State *L);
/* Pushes req's headers as such a table (allowRequest, Engine.IO handshakes). */
void l_exchange_push_headers(lua_State *L, const http_req *req);

/* Headers packed (per header: the name's and the value's lengths as
 * uint32_t, native order, then the name and the value), for a request's
 * headers kept for later at a fraction of a table's size:
 * l_exchange_packed_size bytes, written by l_exchange_pack_headers. */
size_t l_exchange_packed_size(const http_req *req);
void l_exchange_pack_headers(const http_req *req, char *p);
/* Pushes the table of len packed bytes at p (borrowed); -EINVAL (with a
 * table of the whole headers before the fault pushed) when they are not
 * what l_exchange_pack_headers writes. */
int l_exchange_push_packed_headers(lua_State *L, const char *p, size_t len);

#endif
