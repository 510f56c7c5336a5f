/* utf8.c — UTF-8 validation (see utf8.h). */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  size_t len;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;      /* overlong */
    else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    if (bad) *bad = 1; /* a continuation byte, C0/C1 (overlong), F5..FF */
    return 0;
  }
  if (n < 2 || s[1] < lo || s[1] > hi) {
    if (bad) *bad = 1;
    return 0;
  }
  for (size_t i = 2; i < len; i++) {
    if (i >= n || s[i] < 0x80 || s[i] > 0xBF) {
      if (bad) *bad = i;
      return 0;
    }
  }
  return len;
}

bool utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < len) {
    /* Most text is ASCII: eight bytes at a time while no high bit is set. */
    while (len - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= len) break;
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t n = utf8_seq(s + i, len - i, NULL);
    if (!n) return false;
    i += n;
  }
  return true;
}
