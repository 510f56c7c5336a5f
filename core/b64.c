/* b64.c — base64 (see b64.h). */
#include "b64.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static const char alphabet[2][65] = {
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

/* A switch on ranges rather than a table built at start-up: no
 * initialisation order to get wrong. */
int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

size_t b64_encoded_len(size_t len, bool *ok) {
  size_t groups = len / 3 + (len % 3 != 0);
  *ok = groups <= (SIZE_MAX - 1) / 4;
  return *ok ? groups * 4 : 0;
}

void b64_write(char *dst, const void *data, size_t len, bool url) {
  const unsigned char *src = data;
  const char *b64_alphabet = alphabet[url];
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
    *dst++ = b64_alphabet[v >> 18];
    *dst++ = b64_alphabet[(v >> 12) & 63];
    *dst++ = b64_alphabet[(v >> 6) & 63];
    *dst++ = b64_alphabet[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)src[i] << 16;
    *dst++ = b64_alphabet[v >> 18];
    *dst++ = b64_alphabet[(v >> 12) & 63];
    if (!url) {
      *dst++ = '=';
      *dst++ = '=';
    }
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
    *dst++ = b64_alphabet[v >> 18];
    *dst++ = b64_alphabet[(v >> 12) & 63];
    *dst++ = b64_alphabet[(v >> 6) & 63];
    if (!url) *dst++ = '=';
  }
}

int b64_encode(mw_str *out, const void *data, size_t len) {
  bool ok;
  size_t n = b64_encoded_len(len, &ok);
  if (!ok || mw_str_reserve(out, n)) return -ENOMEM;
  b64_write(out->p + out->len, data, len, false);
  out->len += n;
  out->p[out->len] = '\0';
  return 0;
}

int b64_decode(mw_str *out, const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  if (len % 4) return -EINVAL;
  /* Validate everything before writing, so a failure leaves out unchanged
   * without having to undo a partial append. */
  size_t pad = 0;
  if (len && u[len - 1] == '=') pad = (u[len - 2] == '=') ? 2 : 1;
  for (size_t i = 0; i < len - pad; i++)
    if (b64_value(u[i]) < 0) return -EINVAL;
  /* The bits a padded group leaves unused must be zero: canonical only. */
  if (pad == 1 && (b64_value(u[len - 2]) & 3)) return -EINVAL;
  if (pad == 2 && (b64_value(u[len - 3]) & 15)) return -EINVAL;
  size_t n = len / 4 * 3 - pad;
  if (mw_str_reserve(out, n)) return -ENOMEM;
  unsigned char *dst = (unsigned char *)out->p + out->len;
  size_t i = 0;
  for (; i + 4 <= len - (pad ? 4 : 0); i += 4) {
    uint32_t v = (uint32_t)b64_value(u[i]) << 18 | (uint32_t)b64_value(u[i + 1]) << 12 |
                 (uint32_t)b64_value(u[i + 2]) << 6 | (uint32_t)b64_value(u[i + 3]);
    *dst++ = (unsigned char)(v >> 16);
    *dst++ = (unsigned char)(v >> 8);
    *dst++ = (unsigned char)v;
  }
  if (pad) {
    uint32_t v = (uint32_t)b64_value(u[i]) << 18 | (uint32_t)b64_value(u[i + 1]) << 12;
    if (pad == 1) v |= (uint32_t)b64_value(u[i + 2]) << 6;
    *dst++ = (unsigned char)(v >> 16);
    if (pad == 1) *dst++ = (unsigned char)(v >> 8);
  }
  out->len += n;
  out->p[out->len] = '\0';
  return 0;
}

int b64_decode_url(mw_str *out, const char *s, size_t len) {
  if (len % 4 == 1) return -EINVAL;
  /* Into the standard alphabet with its padding, then the strict decoder. */
  size_t padded = len + (len % 4 ? 4 - len % 4 : 0);
  char small[256], *std = padded <= sizeof small ? small : malloc(padded);
  if (!std) return -ENOMEM;
  int r = 0;
  for (size_t i = 0; i < len && !r; i++) {
    char c = s[i];
    if (c == '+' || c == '/' || c == '=') r = -EINVAL;
    else std[i] = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  for (size_t i = len; i < padded; i++) std[i] = '=';
  if (!r) r = b64_decode(out, std, padded);
  if (std != small) free(std);
  return r;
}
