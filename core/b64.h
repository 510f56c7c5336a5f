/* b64.h — base64 (RFC 4648), the core's one copy: Engine.IO's 'b' packets
 * (§4, padded, strict), session ids (§5, base64url) and the WebSocket
 * handshake's key and accept value. */
#ifndef MW_B64_H
#define MW_B64_H

#include <stdbool.h>
#include <stddef.h>

#include "mw.h"

/* Value (0 to 63) of a character of the standard alphabet, or -1. */
int b64_value(unsigned char c);

/* Length of the padded base64 text for len bytes, or 0 with *ok false when
 * it would not fit in a size_t. */
size_t b64_encoded_len(size_t len, bool *ok);

/* Writes the base64 of len bytes at data (borrowed) into dst, which has
 * room for b64_encoded_len(len) characters; writes no NUL. url: the
 * base64url alphabet (§5) and no padding. */
void b64_write(char *dst, const void *data, size_t len, bool url);

/* Standard base64 (§4) with padding, appended to out. Returns 0 or -ENOMEM
 * (out unchanged). */
int b64_encode(mw_str *out, const void *data, size_t len);

/* Decodes canonical base64 and appends the bytes to out. Strict: the length
 * must be a multiple of 4, only the alphabet and one or two final '=' are
 * allowed, and the unused bits before the padding must be zero (every real
 * encoder writes them so), so one byte string has exactly one encoding.
 * Returns 0, -EINVAL or -ENOMEM; on error out is unchanged. */
int b64_decode(mw_str *out, const char *s, size_t len);

/* Decodes base64url without padding (§5, what b64_write writes with url
 * set: signed cookies carry it) and appends the bytes to out. As strict as
 * b64_decode: only the url alphabet, no '=', a length that is not 1 more
 * than a multiple of 4, and zero unused bits. Returns 0, -EINVAL or
 * -ENOMEM; on error out is unchanged. */
int b64_decode_url(mw_str *out, const char *s, size_t len);

#endif
