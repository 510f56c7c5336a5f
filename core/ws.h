/* ws.h — WebSocket (RFC 6455) on a connection, server side, with wslay's
 * event API driven from libuv (no I/O inside wslay: its callbacks only copy).
 *
 * Receiving goes through wslay (frame parsing, masking, fragmentation, ping
 * and close handling). Data frames are sent by framing them ourselves: a
 * broadcast frames its payload once (ws_frame_header) and every recipient
 * queues a reference to the same buffer (ws_send_frame). Control frames
 * (pong, close) go through wslay. */
#ifndef MW_WS_H
#define MW_WS_H

#include "http.h"
#include "mw.h"

struct mw_conn;
typedef struct ws_conn ws_conn;

typedef struct ws_handler {
  /* A complete message (fragments joined; text already checked as UTF-8).
   * data is borrowed for the call. */
  void (*on_message)(void *ud, ws_conn *ws, const char *data, size_t len, bool binary);
  /* The connection is gone (close handshake done, error, or peer vanished);
   * code is the close code (1000, 1001, 1002, 1006, 1007, 1009, ...). ws is
   * freed right after this returns. */
  void (*on_close)(void *ud, ws_conn *ws, int code);
} ws_handler;

/* Checks a WebSocket upgrade request (GET, Upgrade: websocket, Connection:
 * upgrade, Sec-WebSocket-Version: 13, a Sec-WebSocket-Key of 16 bytes in
 * base64). Returns 0 and writes the Sec-WebSocket-Accept value (28 chars +
 * NUL) into accept, or an HTTP status to answer with (400, or 426 with
 * Sec-WebSocket-Version: 13 for a wrong version). */
int ws_handshake_check(const http_req *req, char accept[29]);

/* Answers the upgrade (101 with the accept key) and takes the connection
 * over from HTTP. max_msg is the largest message accepted (bigger → close
 * 1009). Frames that came with the request are handled before this returns,
 * so h may already be called with ud. Returns the WebSocket, or NULL (then
 * res was answered with an error status, or those first frames closed it and
 * on_close has run; nothing else is to be done). */
ws_conn *ws_accept(http_res *res, const http_req *req, const ws_handler *h, void *ud, size_t max_msg);

/* Sends one message (the payload is copied). Returns 0 or -errno. */
int ws_send(ws_conn *ws, const char *data, size_t len, bool binary);
/* Queues an already framed message (from ws_frame_header + payload in one
 * buffer), taking ownership of one reference to frame. */
void ws_send_frame(ws_conn *ws, mw_buf *frame, size_t off, size_t len);
/* Writes the header of an unmasked server frame (FIN set, text or binary
 * opcode) for a payload of len bytes into out; returns its length (2..10). */
size_t ws_frame_header(uint8_t out[10], size_t len, bool binary);

/* Starts the close handshake with code and reason; on_close follows when the
 * peer answers or after a short timeout. */
void ws_close(ws_conn *ws, uint16_t code, const char *reason);

/* The user data given to ws_accept, and its replacement. */
void *ws_userdata(ws_conn *ws);
void ws_set_userdata(ws_conn *ws, const ws_handler *h, void *ud);
/* Bytes queued and not yet written (for back-pressure decisions). */
size_t ws_buffered(ws_conn *ws);
/* The underlying connection. */
struct mw_conn *ws_conn_of(ws_conn *ws);

#endif
