/* sio_packet.h — Socket.IO v5 packets (the text part, carried in an Engine.IO
 * MESSAGE), validated the way the official socket.io-parser Decoder does, and
 * a strict JSON validator. Bytes in, fields out, no I/O and no allocation. */
#ifndef SIO_PACKET_H
#define SIO_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "mw.h"

enum { SIO_CONNECT = 0, SIO_DISCONNECT = 1, SIO_EVENT = 2, SIO_ACK = 3, SIO_CONNECT_ERROR = 4, SIO_BINARY_EVENT = 5, SIO_BINARY_ACK = 6 };

/* socket.io-parser >= 4.2.6 rejects more attachments than this by default
 * (its maxAttachments option, GHSA-677m-j7p3-52f9); we follow it. */
#define SIO_MAX_ATTACHMENTS 10
/* Ack ids are JS numbers: 15 digits always fit in 2^53 exactly. */
#define SIO_MAX_ACK_DIGITS 15
#define SIO_MAX_ACK_ID INT64_C(999999999999999)
/* Nesting of arrays and objects mw_json_check accepts, at most (json_max_depth()
 * says how deep now: --max-json-depth). */
#define MW_JSON_MAX_DEPTH 64

typedef struct sio_packet {
  int type;
  int attachments;                   /* BINARY_EVENT / BINARY_ACK: the count before '-'; 0 otherwise */
  const char *nsp; size_t nsp_len;   /* "/" when absent */
  int64_t id;                        /* ack id, -1 when absent */
  const char *data; size_t data_len; /* the JSON payload ("" when absent), points into the input */
} sio_packet;

/* Parses and validates one Socket.IO packet:
 *   <type 0-6>[<attachments>-][/<namespace>,][<ack id>][<JSON>]
 * Checks what the official decoder checks: the type; for BINARY_* a count of
 * 1..SIO_MAX_ATTACHMENTS digits-only followed by '-'; the payload is one JSON
 * value of the right shape: CONNECT → absent or an object; DISCONNECT →
 * absent; CONNECT_ERROR → an object or a string; EVENT / BINARY_EVENT → an
 * array whose first element is a number or a string that is not a reserved
 * event name; ACK / BINARY_ACK → an array. Stricter than the official decoder
 * (which also accepts what its encoder never writes):
 *   - EVENT, ACK and CONNECT_ERROR need a payload (the v5 spec says "the
 *     payload is mandatory"; the JS decoder only validates one if present);
 *   - the JSON must be valid UTF-8, nest at most MW_JSON_MAX_DEPTH deep, and
 *     must not start with whitespace (the JS decoder would read that space as
 *     ack id 0);
 *   - the namespace must be valid UTF-8 without control characters (C0, DEL,
 *     C1); an ack id has at most SIO_MAX_ACK_DIGITS digits; the type, count
 *     and id are plain ASCII digits (JS's Number() also takes " ", "1e1"...).
 * Like the official decoder it accepts an ack id on any type, a namespace
 * that runs to the end without ',', and leading zeros in the count and id.
 * Returns 0 or -EINVAL; on success out's pointers point into s (borrowed). */
int sio_packet_decode(const char *s, size_t len, sio_packet *out);

/* Appends the head of a packet to out: the type digit, "N-" for the binary
 * types, the namespace and ',' unless it is "/" (NULL or "" also mean "/"),
 * and the ack id when id >= 0. The caller appends the JSON payload. Returns
 * 0; -EINVAL for an unknown type, attachments outside 1..SIO_MAX_ATTACHMENTS
 * on a binary type, a namespace that sio_packet_decode would not read back
 * (no leading '/', a ',', control characters, invalid UTF-8) or an id above
 * SIO_MAX_ACK_ID; -ENOMEM. On error out is unchanged. */
int sio_packet_head(mw_str *out, int type, int attachments, const char *nsp, size_t nsp_len, int64_t id);

/* Finds the event name of an EVENT / BINARY_EVENT packet that
 * sio_packet_decode accepted: the raw JSON token of the payload's first
 * element, quotes and escapes included for a string ("\"hello\""), or the
 * number as written (first char '-' or a digit), for dispatch without a JSON
 * decoder. Returns 0, or -EINVAL for any other packet type. *name points
 * into p->data. */
int sio_event_name(const sio_packet *p, const char **name, size_t *len);

/* Validates that s is exactly one JSON value (RFC 8259, surrounding
 * whitespace allowed) with strings of valid UTF-8 (escaped lone surrogates are
 * allowed, as JSON.parse does) and at most MW_JSON_MAX_DEPTH nested arrays and
 * objects. If first is non-NULL, on success *first receives the value's kind:
 * 'o' object, 'a' array, 's' string, 'n' number, 't' true, 'f' false, 'z'
 * null. Returns 0 or -EINVAL. */
int mw_json_check(const char *s, size_t len, char *first);

#endif
