/* utf8.h — the core's one UTF-8 validator (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF, no truncated sequence). WebSocket
 * text frames and close reasons (1007 otherwise), Socket.IO namespaces and
 * the JSON writer (which replaces what fails with U+FFFD) all use it. */
#ifndef MW_UTF8_H
#define MW_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1 to 4) of the well-formed sequence at the start of s (n >= 1
 * bytes, borrowed), or 0 when it is not one. Then, if bad is not NULL,
 * *bad is the length of its maximal subpart: the bytes one U+FFFD replaces
 * (Unicode §3.9, as WHATWG decoders and JSON.stringify's peers do). */
size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad);

/* Whether len bytes at s (borrowed) are well-formed UTF-8. */
bool utf8_valid(const char *s, size_t len);

#endif
