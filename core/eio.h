/* eio.h — Engine.IO v4 server: sessions, the polling and websocket
 * transports, the upgrade from one to the other, heartbeat, errors.
 *
 * An eio_server answers the HTTP requests under its path ("/socket.io/")
 * and hands what sessions say to its handler (Socket.IO in sio.c, or the raw
 * engine endpoint of moonwire.engine). */
#ifndef MW_EIO_H
#define MW_EIO_H

#include "http.h"
#include "mw.h"

struct mw_server;
typedef struct eio_server eio_server;
typedef struct eio_session eio_session;
typedef struct eio_pending eio_pending;

/* Engine.IO's defaults, as engine.io has them (eio_options_defaults). */
#define EIO_DEFAULT_PING_INTERVAL_MS 25000
#define EIO_DEFAULT_PING_TIMEOUT_MS 20000
#define EIO_DEFAULT_MAX_PAYLOAD 1000000          /* maxHttpBufferSize */
#define EIO_DEFAULT_MAX_BUFFERED (1024 * 1024)   /* maxBackpressure (moonwire's) */
#define EIO_DEFAULT_MAX_PACKET_RATE 5000         /* maxPacketRate (moonwire's) */

typedef struct eio_options {
  char path[128];          /* "/socket.io/" */
  uint64_t ping_interval;  /* ms, 25000 */
  uint64_t ping_timeout;   /* ms, 20000 */
  size_t max_payload;      /* bytes, 1e6 (maxHttpBufferSize) */
  size_t max_buffered;     /* bytes queued for a session that stops reading, 1 MiB (maxBackpressure) */
  uint32_t max_packet_rate; /* packets a session may send per second, 5000 (0: no limit; maxPacketRate):
                               past it messages are dropped, past twice it the session is closed */
  bool polling, websocket; /* transports offered */
  char **origins;          /* allowed Origins ("*": any) — owned by the server */
  int norigins;
  bool same_origin;        /* without a list: only pages of this server (Origin matches Host) */
  /* engine.io's allowRequest: asked about every handshake (a request without
   * sid: a polling GET or a direct WebSocket) before any session exists. req
   * is borrowed for the call; the answer is eio_allow(p, ...), now or later.
   * NULL lets every handshake in. allow_cancel (may be NULL) hears of a
   * handshake freed without an answer (the endpoint was freed first), so the
   * holder of p forgets it. */
  void (*allow_request)(void *ud, eio_pending *p, const http_req *req);
  void (*allow_cancel)(void *ud, eio_pending *p);
  void *allow_ud;
} eio_options;

void eio_options_defaults(eio_options *o, const char *path);

typedef struct eio_handler {
  /* A session opened; req is the handshake request (borrowed for the call). */
  void (*on_open)(void *ud, eio_session *s, const http_req *req);
  /* A message packet (data borrowed for the call). */
  void (*on_message)(void *ud, eio_session *s, const char *data, size_t len, bool binary);
  /* The session closed ("transport close", "ping timeout", "transport error",
   * "parse error", "forced close", "server shutting down"); it is freed after. */
  void (*on_close)(void *ud, eio_session *s, const char *reason);
  /* Bytes kept in every session for the handler's own state (zeroed;
   * eio_session_space), freed with the session, after on_close and once
   * the callers up the stack are done: one allocation per client, not two. */
  size_t space;
} eio_handler;

/* The handler's h.space bytes in s (suitably aligned for any type). */
void *eio_session_space(eio_session *s);

/* Creates an endpoint. Returns 0 or -errno. */
int eio_server_new(eio_server **out, struct mw_server *srv, const eio_options *o, const eio_handler *h,
                   void *ud);
/* Replaces the options (copied; origins are copied too). Sessions already
 * open keep their heartbeat until the next ping. */
void eio_server_configure(eio_server *es, const eio_options *o);
const eio_options *eio_server_options(eio_server *es);
/* Closes every session ("server shutting down"), answers the handshakes
 * still waiting for allow_request with 503, and frees the endpoint. */
void eio_server_free(eio_server *es);

/* Answers a handshake held by allow_request; call it once, p is freed. ok
 * goes on with the handshake; otherwise the client gets 403
 * {"code":4,"message":message} (NULL or "": "Forbidden"). */
void eio_allow(eio_pending *p, bool ok, const char *message);
void eio_pending_set_userdata(eio_pending *p, void *ud);
void *eio_pending_userdata(eio_pending *p);

/* Answers req when it is for this endpoint (its path). Returns 0 when it
 * answered (or will), 1 when req is not for this endpoint. */
int eio_handle_http(eio_server *es, const http_req *req, http_res *res);

/* One message encoded once for any number of sessions: the WebSocket frame
 * and the Engine.IO packet share one buffer. */
typedef struct eio_msg {
  mw_buf *buf;
  size_t frame_off;  /* where the WebSocket frame starts */
  size_t pkt_off;    /* where the payload (after "4" for text) starts */
  size_t len;        /* payload length */
  bool binary;
} eio_msg;
int eio_msg_init(eio_msg *m, const char *data, size_t len, bool binary);
void eio_msg_release(eio_msg *m);

/* Queues a message for s. */
void eio_send_msg(eio_session *s, const eio_msg *m);
/* Queues a message for s (copies data). */
void eio_send(eio_session *s, const char *data, size_t len, bool binary);
/* True when a message sent now would leave at once (for volatile packets). */
bool eio_writable(eio_session *s);
/* Bytes queued for s and not yet taken by the client: its WebSocket's write
 * queue, or the polling payload waiting for a GET. Past max_buffered when a
 * message is sent, the session is closed ("transport error") and what it
 * held is released at once. */
size_t eio_buffered(eio_session *s);
/* Closes the session (reason given to on_close); safe in any callback. */
void eio_close(eio_session *s, const char *reason);

/* What an endpoint has carried since it started (the Admin UI's server
 * stats). Messages only: pings, pongs and the handshake are not counted. */
typedef struct eio_stats {
  uint64_t sessions;    /* open now (engine.io's clientsCount) */
  uint64_t polling;     /* of those, still on long-polling */
  uint64_t opened;      /* sessions opened, ever */
  uint64_t closed;      /* sessions closed, ever */
  uint64_t packets_in, bytes_in;   /* messages received and their payload bytes */
  uint64_t packets_out, bytes_out; /* messages queued for clients (a broadcast counts per recipient) */
} eio_stats;
void eio_server_stats(eio_server *es, eio_stats *out);

const char *eio_sid(eio_session *s);
const char *eio_transport(eio_session *s); /* "polling" or "websocket" */
void *eio_userdata(eio_session *s);
void eio_set_userdata(eio_session *s, void *ud);

/* URL-safe random id (base64url of 15 random bytes: 20 chars + NUL). */
void eio_random_id(char out[21]);

#endif
