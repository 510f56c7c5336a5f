/* wlink.h — a worker's link to its supervisor under --workers N
 * (workers.c): one Unix stream socket per worker, through which the
 * supervisor relays messages between the workers and hands connections
 * over from one to another.
 *
 * On that socket, everything is a frame: an 8-byte head (payload length,
 * u32 little-endian; type; peer worker; two zero bytes) and the payload.
 *
 *   READY  worker → supervisor: listening, serving
 *   PUB    worker → supervisor → every other worker: an adapter message
 *          (peer: who sent it); payload: u16 channel length, channel, body
 *   CONN   worker → supervisor → worker `peer`: a connection (its socket
 *          rides the frame's first byte, SCM_RIGHTS) and the bytes already
 *          read from it
 *   COUNT  supervisor → worker: u32, how many workers are serving now
 *
 * A worker puts its index into every Engine.IO sid it makes (the first
 * character), so any worker can tell whose session a request is for. */
#ifndef MW_WLINK_H
#define MW_WLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "server.h"

enum { WLINK_READY = 1, WLINK_PUB = 2, WLINK_CONN = 3, WLINK_COUNT = 4 };

#define WLINK_HEAD 8
/* A frame longer is a broken peer: the link is dropped. */
#define WLINK_MAX_FRAME (256u << 20)
/* Bytes waiting on either side of a link whose reader takes none of them
 * (stopped, or stuck where the handler budget does not reach): the
 * supervisor kills such a worker past this, and a worker drops its
 * messages to the others while the supervisor holds this much of them. */
#define WLINK_MAX_QUEUED (64u << 20)

/* This worker's index, -1 in a single process; workers serving now (the
 * supervisor's last COUNT; 1 in a single process). */
extern int wlink_self;
extern int wlink_live;
/* Workers the supervisor runs (--workers; 1 in a single process). */
extern int wlink_count;

static inline void wlink_head(uint8_t out[WLINK_HEAD], uint32_t len, uint8_t type, uint8_t peer) {
  out[0] = (uint8_t)len;
  out[1] = (uint8_t)(len >> 8);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 24);
  out[4] = type;
  out[5] = peer;
  out[6] = out[7] = 0;
}

static inline void wlink_put_u32(uint8_t out[4], uint32_t v) {
  out[0] = (uint8_t)v;
  out[1] = (uint8_t)(v >> 8);
  out[2] = (uint8_t)(v >> 16);
  out[3] = (uint8_t)(v >> 24);
}

static inline uint32_t wlink_head_len(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The sid character that marks worker i's sessions. */
char wlink_sid_mark(int worker);
/* The worker whose session sid (len bytes) is, or -1. */
int wlink_sid_owner(const char *sid, size_t len);

/* Starts the link of worker self on fd (the worker's end of its socket
 * pair; taken over), one of count workers, on srv's loop: requests of
 * other workers' sessions are handed over from now on. Returns 0 or a
 * libuv error. */
int wlink_start(mw_server *srv, int fd, int self, int count);
/* Serving: connections handed over are adopted as http (borrowed, the
 * server's) accepted them; the supervisor hears that this worker is ready. */
void wlink_ready(mw_listener *http);

/* Sends an adapter message to every other worker. Returns 0, or -ENOTCONN
 * when there is no link (dropped), -ENOMEM, -EMSGSIZE. */
int wlink_publish(const char *channel, size_t clen, const char *body, size_t blen);

/* What receives the other workers' messages (one receiver; NULL: none).
 * channel and body are borrowed for the call. */
typedef void (*wlink_message_fn)(void *ud, const char *channel, size_t clen, const char *body, size_t blen);
void wlink_on_message(wlink_message_fn fn, void *ud);

#endif
