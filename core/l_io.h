/* l_io.h — the Socket.IO and raw Engine.IO endpoints of the app host. */
#ifndef MW_L_IO_H
#define MW_L_IO_H

#include <lua.h>
#include <uv.h>

#include "http.h"

struct mw_server;
typedef struct l_io l_io;

/* Creates the Socket.IO server (path from --io-path, else /socket.io/) and
 * registers moonwire.io_c in L's preload table. Returns 0 or -1. */
int l_io_new(l_io **out, lua_State *L, struct mw_server *srv);
/* Answers req when it belongs to an endpoint; 1 when it does not. */
int l_io_handle_http(l_io *x, const http_req *req, http_res *res);
/* The Socket.IO path ("/socket.io/"). */
const char *l_io_path(l_io *x);
/* Closes every session ("server shutting down"); Lua still runs. */
void l_io_stop(l_io *x);
void l_io_free(l_io *x);

#endif
