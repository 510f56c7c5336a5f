/* pct.c — hex digits and percent-decoding (see pct.h). */
#include "pct.h"

#include <errno.h>

int pct_hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

ssize_t pct_decode(const char *s, size_t len, char *out, size_t cap, unsigned flags) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '%') {
      int hi = len - i >= 3 ? pct_hex((unsigned char)s[i + 1]) : -1;
      int lo = hi >= 0 ? pct_hex((unsigned char)s[i + 2]) : -1;
      if (lo >= 0) {
        c = (char)(hi << 4 | lo);
        i += 2;
      } else if (flags & PCT_STRICT) {
        return -EINVAL;
      }
    } else if (c == '+' && (flags & PCT_PLUS)) {
      c = ' ';
    }
    if (n >= cap) return -ENOSPC;
    out[n++] = c;
  }
  return (ssize_t)n;
}
