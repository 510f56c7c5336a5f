/* l_io.h — the Socket.IO and raw Engine.IO endpoints of the app host. */
#ifndef MW_L_IO_H
#define MW_L_IO_H

#include <lua.h>
#include <uv.h>

#include "http.h"

struct mw_server;
typedef struct l_io l_io;

#define L_IO_MAX_ORIGINS 16

/* Socket.IO settings from the command line (config.c): they win over the
 * app's io.configure. 0 / NULL = not given (the app's setting, else
 * socket.io's default, applies); max_packet_rate -1 = not given. Strings
 * are borrowed. */
typedef struct l_io_opts {
  const char *path;         /* with its trailing slash */
  uint64_t ping_interval, ping_timeout, connect_timeout, attachment_timeout;
  size_t max_http_buffer;
  size_t max_backpressure;  /* bytes queued for a client that stops reading */
  int64_t max_packet_rate;  /* packets per second per session (0: no limit) */
  const char *transports;   /* "polling", "websocket", or both */
  const char *origins[L_IO_MAX_ORIGINS];
  int norigins;
} l_io_opts;

/* Creates the Socket.IO server (path from o->path, else /socket.io/) and
 * registers moonwire.io_c in L's preload table. dev: cross-origin
 * requests are allowed (no --cors-origin needed on this machine). Copies
 * o (its strings stay borrowed). Returns 0 or -1. */
int l_io_new(l_io **out, lua_State *L, struct mw_server *srv, const l_io_opts *o, bool dev);
/* Answers req when it belongs to an endpoint; 1 when it does not. */
int l_io_handle_http(l_io *x, const http_req *req, http_res *res);
/* The Socket.IO path ("/socket.io/"). */
const char *l_io_path(l_io *x);
/* Closes every session ("server shutting down"); Lua still runs. */
void l_io_stop(l_io *x);
void l_io_free(l_io *x);

#endif
