/* sio.h — Socket.IO v5 on Engine.IO: namespaces, sockets, acks (by id),
 * binary attachments, rooms and broadcast to this process's sockets.
 *
 * What a socket's events mean is up to the handler (the Lua host); this
 * module routes packets and moves bytes. A broadcast is encoded once and
 * every recipient queues a reference to the same buffers. */
#ifndef MW_SIO_H
#define MW_SIO_H

#include "eio.h"
#include "http.h"
#include "mw.h"

struct mw_server;
typedef struct sio_server sio_server;
typedef struct sio_nsp sio_nsp;
typedef struct sio_socket sio_socket;
typedef struct sio_client sio_client;

typedef struct sio_handler {
  /* A new Engine.IO session (req is its handshake request, borrowed). */
  void (*on_client)(void *ud, sio_client *c, const http_req *req);
  /* The session is gone (after every socket's on_disconnect). */
  void (*on_client_close)(void *ud, sio_client *c);
  /* A client asks to join a namespace, with its auth payload (JSON text,
   * len 0 when none). Answer with sio_accept or sio_reject, now or later. */
  void (*on_connect)(void *ud, sio_socket *s, const char *auth, size_t len);
  /* An EVENT or ACK for s: its JSON payload, ack id (-1 when none) and
   * binary attachments (borrowed for the call). */
  void (*on_packet)(void *ud, sio_socket *s, int type, const char *json, size_t len, int64_t id,
                    const mw_str *atts, int natts);
  /* s left (reason as socket.io names it); it is freed after this. Called
   * for sockets never accepted too. */
  void (*on_disconnect)(void *ud, sio_socket *s, const char *reason);
} sio_handler;

/* Socket.IO's own deadlines (Engine.IO's are in eio_options). */
#define SIO_DEFAULT_CONNECT_TIMEOUT_MS 45000    /* socket.io's connectTimeout */
#define SIO_DEFAULT_ATTACHMENT_TIMEOUT_MS 30000 /* moonwire's; socket.io has none */
typedef struct sio_options {
  uint64_t connect_timeout;    /* ms a session may wait before joining a namespace (45000) */
  uint64_t attachment_timeout; /* ms a binary packet may wait for its attachments (30000) */
} sio_options;
void sio_options_defaults(sio_options *o);

int sio_server_new(sio_server **out, struct mw_server *srv, const eio_options *o, const sio_handler *h,
                   void *ud);
/* Disconnects everyone ("server shutting down") and frees the server. */
void sio_server_free(sio_server *io);
eio_server *sio_engine(sio_server *io);
void sio_configure(sio_server *io, const sio_options *o);
const sio_options *sio_get_options(sio_server *io);

/* The namespace called name ("/", "/admin"), created when create is set;
 * NULL otherwise. Clients can only join namespaces that exist. */
sio_nsp *sio_nsp_get(sio_server *io, const char *name, size_t len, bool create);
const char *sio_nsp_name(sio_nsp *n);
/* How many sockets are connected to n. */
uint32_t sio_nsp_size(sio_nsp *n);

const char *sio_socket_id(sio_socket *s);
sio_nsp *sio_socket_nsp(sio_socket *s);
sio_client *sio_socket_client(sio_socket *s);
bool sio_socket_connected(sio_socket *s);
void *sio_socket_userdata(sio_socket *s);
void sio_socket_set_userdata(sio_socket *s, void *ud);
void *sio_client_userdata(sio_client *c);
void sio_client_set_userdata(sio_client *c, void *ud);
const char *sio_client_transport(sio_client *c);
/* The Engine.IO session id of c (socket.io's socket.conn.id); "" once closed. */
const char *sio_client_id(sio_client *c);
/* Bytes queued for the client and not yet taken (eio_buffered). */
size_t sio_client_buffered(sio_client *c);

/* Completes the CONNECT: the client gets {"sid": id}; s joins its own room. */
void sio_accept(sio_socket *s);
/* The same, with a private session id for connection state recovery:
 * {"sid": id, "pid": pid}. */
void sio_accept_pid(sio_socket *s, const char *pid);
/* Before accepting: s takes the id id (a recovered session's). Returns 0,
 * -EINVAL for a bad id or a socket already accepted, -EEXIST when a socket
 * or room of the namespace already has that name. */
int sio_socket_set_id(sio_socket *s, const char *id);
/* Closes s's Engine.IO session without a DISCONNECT packet, as a network
 * failure would: every socket of it leaves with "forced close" and the
 * client reconnects (socket.io's socket.conn.close()). */
void sio_close_transport(sio_socket *s);
/* Dynamic namespaces: with on, a CONNECT to an unknown namespace reaches
 * on_connect (on a namespace on trial, gone with its last socket unless the
 * app creates it with sio_nsp_get) instead of an "Invalid namespace" error. */
void sio_set_dynamic(sio_server *io, bool on);
/* Refuses the CONNECT with a CONNECT_ERROR carrying json; s goes away. */
void sio_reject(sio_socket *s, const char *json, size_t len);
/* Server-side disconnect: the client gets a DISCONNECT for the namespace;
 * with close_client the whole Engine.IO session closes too. */
void sio_disconnect(sio_socket *s, bool close_client);

/* Sends a complete packet (its text) and its binary attachments to s. A
 * volatile packet is dropped when the transport is not ready for it. */
void sio_send(sio_socket *s, const char *packet, size_t len, const mw_str *atts, int natts, bool volatile_);

/* Return 1 when s joined (left) room just now, 0 when it was in it (was
 * not) already, or -errno. */
int sio_join(sio_socket *s, const char *room, size_t len);
int sio_leave(sio_socket *s, const char *room, size_t len);
/* Calls cb for each room of s. */
void sio_rooms(sio_socket *s, void (*cb)(void *ud, const char *room, size_t len), void *ud);

/* Which sockets of a namespace: those in any of rooms (every socket when
 * nrooms is 0), minus those in any of except, minus except_socket. */
typedef struct sio_target {
  const char *const *rooms;
  const size_t *room_lens;
  int nrooms;
  const char *const *except;
  const size_t *except_lens;
  int nexcept;
  sio_socket *except_socket;
} sio_target;

/* Sends a packet to every target socket: encoded once, queued by reference. */
void sio_broadcast(sio_nsp *n, const sio_target *t, const char *packet, size_t len, const mw_str *atts,
                   int natts, bool volatile_);
void sio_each(sio_nsp *n, const sio_target *t, void (*cb)(void *ud, sio_socket *s), void *ud);

#endif
