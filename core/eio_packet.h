/* eio_packet.h — Engine.IO v4 packet framing: one packet per WebSocket
 * message, or several joined by \x1e in a long-polling body (binary as 'b' +
 * base64). Bytes in, packets out, no I/O: the transports, the unit tests and
 * the fuzzers all drive these functions directly. */
#ifndef EIO_PACKET_H
#define EIO_PACKET_H

#include <stdbool.h>
#include <stddef.h>

#include "mw.h"

enum { EIO_OPEN = 0, EIO_CLOSE = 1, EIO_PING = 2, EIO_PONG = 3, EIO_MESSAGE = 4, EIO_UPGRADE = 5, EIO_NOOP = 6 };

/* The polling separator; a text packet never contains it. */
#define EIO_SEPARATOR '\x1e'

typedef struct eio_packet {
  int type;         /* EIO_OPEN .. EIO_NOOP; always EIO_MESSAGE when binary */
  const char *data; /* borrowed: points into the input (or the scratch) */
  size_t len;
  bool binary;
} eio_packet;

/* Decodes one WebSocket message. A text message is a type digit '0'..'6'
 * followed by its data (possibly empty); a binary message is a binary MESSAGE
 * whose data is the whole message. Unlike the Node server we do not accept a
 * 'b' + base64 packet in a text frame: the official client never sends one
 * over WebSocket. Returns 0, or -EINVAL (empty text, unknown type). out->data
 * points into s. */
int eio_packet_decode(const char *s, size_t len, bool binary_frame, eio_packet *out);

/* Called once per packet of a payload; a non-zero return stops the decoding
 * and is returned by eio_payload_decode. p and its data are valid only during
 * the call. */
typedef int (*eio_packet_cb)(void *ud, const eio_packet *p);

/* Decodes a long-polling payload: packets separated by \x1e, each a type digit
 * + data, or 'b' + standard padded base64 for a binary MESSAGE. Calls cb for
 * each packet in order; binary data is decoded into scratch (reset for each
 * such packet, owned by the caller), text data points into s. Returns 0;
 * -EINVAL at the first invalid packet (an empty one, as in an empty payload or
 * a \x1e at either end, an unknown type, bad base64) after delivering the
 * packets before it and nothing after; -ENOMEM if scratch cannot grow; or the
 * first non-zero value cb returned. */
int eio_payload_decode(const char *s, size_t len, mw_str *scratch, eio_packet_cb cb, void *ud);

/* Appends one packet to a polling payload being built in out, preceded by
 * \x1e when out is not empty: text → type digit + data; binary → 'b' +
 * base64(data). Returns 0; -EINVAL for an unknown type, a binary packet that
 * is not a MESSAGE, or text data containing \x1e (it would split the packet);
 * -ENOMEM. On error out is unchanged. data is borrowed. */
int eio_payload_append(mw_str *out, int type, const char *data, size_t len, bool binary);

#endif
