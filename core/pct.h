/* pct.h — hex digits and percent-decoding (RFC 3986 §2.1), the core's one
 * copy: static paths, the Engine.IO query, multipart's filename*, JSON's
 * \u escapes. */
#ifndef MW_PCT_H
#define MW_PCT_H

#include <stddef.h>
#include <sys/types.h>

/* The value (0 to 15) of the hex digit c, or -1. */
int pct_hex(unsigned char c);

#define PCT_PLUS 1u   /* '+' is a space (application/x-www-form-urlencoded) */
#define PCT_STRICT 2u /* a '%' without two hex digits after it is an error */

/* Decodes len bytes at s (borrowed) into out (cap bytes; out may be s: the
 * output is never longer than the input). Without PCT_STRICT a '%' that
 * does not start an escape stays as it is, the way the WHATWG form decoder
 * (URLSearchParams) and Node's querystring keep it. Writes no NUL. Returns
 * the decoded length; -EINVAL for a malformed escape under PCT_STRICT;
 * -ENOSPC when the result does not fit (never truncated). */
ssize_t pct_decode(const char *s, size_t len, char *out, size_t cap, unsigned flags);

#endif
