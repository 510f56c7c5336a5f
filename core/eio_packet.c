/* eio_packet.c — Engine.IO v4 packet and payload framing. */
#include "eio_packet.h"

#include <errno.h>
#include <string.h>

#include "b64.h"

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
      int r = b64_decode(scratch, start + 1, n - 1);
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
    b64_write(dst, data, len, false);
  } else {
    *dst++ = (char)('0' + type);
    if (len) memcpy(dst, data, len);
  }
  out->len += need;
  out->p[out->len] = '\0';
  return 0;
}
