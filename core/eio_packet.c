/* eio_packet.c — Engine.IO v4 packet and payload framing, base64. */
#include "eio_packet.h"

#include <errno.h>
#include <string.h>

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of a base64 character, or -1. A switch on ranges rather than a table
 * built at start-up: no initialisation order to get wrong. */
static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Length of the base64 text for len bytes, or 0 with *ok false on overflow. */
static size_t b64_encoded_len(size_t len, bool *ok) {
  size_t groups = len / 3 + (len % 3 != 0);
  *ok = groups <= (SIZE_MAX - 1) / 4;
  return *ok ? groups * 4 : 0;
}

/* Writes the encoding into dst, which has room for it. */
static void b64_write(char *dst, const unsigned char *src, size_t len) {
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
    *dst++ = '=';
    *dst++ = '=';
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
    *dst++ = b64_alphabet[v >> 18];
    *dst++ = b64_alphabet[(v >> 12) & 63];
    *dst++ = b64_alphabet[(v >> 6) & 63];
    *dst++ = '=';
  }
}

int eio_base64_encode(mw_str *out, const void *data, size_t len) {
  bool ok;
  size_t n = b64_encoded_len(len, &ok);
  if (!ok || mw_str_reserve(out, n)) return -ENOMEM;
  b64_write(out->p + out->len, data, len);
  out->len += n;
  out->p[out->len] = '\0';
  return 0;
}

int eio_base64_decode(mw_str *out, const char *s, size_t len) {
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

int eio_packet_decode(const char *s, size_t len, bool binary_frame, eio_packet *out) {
  if (binary_frame) {
    *out = (eio_packet){EIO_MESSAGE, s, len, true};
    return 0;
  }
  if (len == 0 || s[0] < '0' || s[0] > '6') return -EINVAL;
  *out = (eio_packet){s[0] - '0', s + 1, len - 1, false};
  return 0;
}

int eio_payload_decode(const char *s, size_t len, mw_str *scratch, eio_packet_cb cb, void *ud) {
  /* Splitting first and checking each piece is what makes an empty payload,
   * a \x1e at either end and "\x1e\x1e" all invalid: each yields an empty
   * packet, which has no type. */
  if (len == 0) return -EINVAL;
  size_t pos = 0;
  for (;;) {
    const char *start = s + pos;
    const char *sep = memchr(start, EIO_SEPARATOR, len - pos);
    size_t n = sep ? (size_t)(sep - start) : len - pos;
    eio_packet p;
    if (n > 0 && start[0] == 'b') {
      mw_str_reset(scratch);
      int r = eio_base64_decode(scratch, start + 1, n - 1);
      if (r) return r;
      p = (eio_packet){EIO_MESSAGE, scratch->p ? scratch->p : "", scratch->len, true};
    } else if (eio_packet_decode(start, n, false, &p)) {
      return -EINVAL;
    }
    int r = cb(ud, &p);
    if (r) return r;
    if (!sep) return 0;
    pos += n + 1;
  }
}

int eio_payload_append(mw_str *out, int type, const char *data, size_t len, bool binary) {
  if (type < EIO_OPEN || type > EIO_NOOP) return -EINVAL;
  size_t need;
  if (binary) {
    if (type != EIO_MESSAGE) return -EINVAL;
    bool ok;
    need = b64_encoded_len(len, &ok);
    if (!ok || need > SIZE_MAX - 2) return -ENOMEM;
  } else {
    if (len && memchr(data, EIO_SEPARATOR, len)) return -EINVAL;
    if (len > SIZE_MAX - 2) return -ENOMEM;
    need = len;
  }
  need += out->len ? 2 : 1; /* type or 'b', and the separator */
  /* Reserving the whole packet up front means nothing below can fail. */
  if (mw_str_reserve(out, need)) return -ENOMEM;
  char *dst = out->p + out->len;
  if (out->len) *dst++ = EIO_SEPARATOR;
  if (binary) {
    *dst++ = 'b';
    b64_write(dst, (const unsigned char *)data, len);
  } else {
    *dst++ = (char)('0' + type);
    if (len) memcpy(dst, data, len);
  }
  out->len += need;
  out->p[out->len] = '\0';
  return 0;
}
