/* compress.c — Accept-Encoding, compressible types, gzip and brotli. */
#include "compress.h"

#include <brotli/encode.h>
#include <errno.h>
#include <string.h>
#include <zlib.h>

/* ---- Accept-Encoding (RFC 9110 12.5.3) ---- */

static bool ae_token_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A qvalue: "0", "0.5", "1", "1.000". Returns its thousandths, or -1. */
static int ae_qvalue(const char *s, size_t n) {
  if (n == 0 || n > 5 || (s[0] != '0' && s[0] != '1')) return -1;
  int q = (s[0] - '0') * 1000;
  if (n == 1) return q;
  if (s[1] != '.') return -1;
  int scale = 100;
  for (size_t i = 2; i < n; i++, scale /= 10) {
    if (s[i] < '0' || s[i] > '9') return -1;
    q += (s[i] - '0') * scale;
  }
  return q > 1000 ? -1 : q;
}

int mw_accept_encoding(const char *v, size_t len) {
  int named = 0, allowed = 0;
  int star = -1; /* the q of "*", -1 when absent */
  size_t i = 0;
  while (i < len) {
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    if (i >= len) break;
    size_t t0 = i;
    while (i < len && ae_token_char((unsigned char)v[i])) i++;
    size_t tlen = i - t0;
    if (tlen == 0) return 0;
    int q = 1000;
    /* parameters: only q matters */
    for (;;) {
      while (i < len && (v[i] == ' ' || v[i] == '\t')) i++;
      if (i >= len || v[i] != ';') break;
      i++;
      while (i < len && (v[i] == ' ' || v[i] == '\t')) i++;
      size_t p0 = i;
      while (i < len && ae_token_char((unsigned char)v[i])) i++;
      size_t plen = i - p0;
      if (plen == 0 || i >= len || v[i] != '=') return 0;
      i++;
      size_t v0 = i;
      while (i < len && ae_token_char((unsigned char)v[i])) i++;
      if (plen == 1 && (v[p0] == 'q' || v[p0] == 'Q')) {
        q = ae_qvalue(v + v0, i - v0);
        if (q < 0) return 0;
      }
    }
    if (i < len && v[i] != ',') return 0;
    int enc = 0;
    if (mw_ieq(v + t0, tlen, "gzip") || mw_ieq(v + t0, tlen, "x-gzip")) enc = MW_ENC_GZIP;
    else if (mw_ieq(v + t0, tlen, "br")) enc = MW_ENC_BR;
    else if (tlen == 1 && v[t0] == '*') star = q;
    if (enc) {
      named |= enc;
      if (q > 0) allowed |= enc;
      else allowed &= ~enc;
    }
  }
  if (star > 0) allowed |= (MW_ENC_GZIP | MW_ENC_BR) & ~named;
  return allowed;
}

/* ---- types ---- */

bool mw_compressible_type(const char *type, size_t len) {
  const char *semi = memchr(type, ';', len);
  if (semi) len = (size_t)(semi - type);
  while (len && (type[len - 1] == ' ' || type[len - 1] == '\t')) len--;
  if (len > 5 && mw_ieq(type, 5, "text/")) return true;
  static const char *const suffixes[] = {"+json", "+xml", NULL};
  for (int i = 0; suffixes[i]; i++) {
    size_t sl = strlen(suffixes[i]);
    if (len > sl && mw_ieq(type + len - sl, sl, suffixes[i])) return true;
  }
  static const char *const types[] = {"application/json",       "application/javascript", "application/xml",
                                      "application/wasm",       "application/x-javascript", "image/x-icon",
                                      "image/vnd.microsoft.icon", "image/bmp",             "font/ttf",
                                      "font/otf",               "application/x-font-ttf", "application/vnd.ms-fontobject",
                                      NULL};
  for (int i = 0; types[i]; i++)
    if (mw_ieq(type, len, types[i])) return true;
  return false;
}

const char *mw_encoding_name(int enc) { return enc == MW_ENC_BR ? "br" : "gzip"; }

/* ---- compressing ---- */

/* The smallest window that holds the whole input (a smaller window takes
 * less memory to set up; nothing is lost when the input fits in it). */
static int window_bits(size_t len, int min, int max) {
  int w = min;
  while (w < max && ((size_t)1 << w) < len) w++;
  return w;
}

static int gzip(const char *in, size_t len, int level, mw_buf **out) {
  z_stream z;
  memset(&z, 0, sizeof z);
  /* 16 + bits: a gzip header and trailer around the deflate stream. */
  if (deflateInit2(&z, level, Z_DEFLATED, 16 + window_bits(len, 9, 15), 8, Z_DEFAULT_STRATEGY) != Z_OK) return -ENOMEM;
  uLong bound = deflateBound(&z, (uLong)len);
  mw_buf *b = mw_buf_new(bound);
  if (!b) {
    deflateEnd(&z);
    return -ENOMEM;
  }
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = (Bytef *)b->data;
  z.avail_out = (uInt)bound;
  int r = deflate(&z, Z_FINISH);
  size_t n = z.total_out;
  deflateEnd(&z);
  if (r != Z_STREAM_END) {
    mw_buf_unref(b);
    return -ENOMEM;
  }
  b->len = n;
  *out = b;
  return 0;
}

static int brotli(const char *in, size_t len, int quality, mw_buf **out) {
  size_t bound = BrotliEncoderMaxCompressedSize(len);
  if (bound == 0) return -ENOMEM;
  mw_buf *b = mw_buf_new(bound);
  if (!b) return -ENOMEM;
  size_t n = bound;
  if (!BrotliEncoderCompress(quality, window_bits(len, BROTLI_MIN_WINDOW_BITS, BROTLI_DEFAULT_WINDOW), BROTLI_MODE_TEXT,
                             len, (const uint8_t *)in, &n, (uint8_t *)b->data)) {
    mw_buf_unref(b);
    return -ENOMEM;
  }
  b->len = n;
  *out = b;
  return 0;
}

int mw_compress(int enc, const char *in, size_t len, int level, mw_buf **out) {
  /* zlib counts in uInt: a larger body is not compressed (it is sent as it is). */
  if (len > 0x7fffffff) return -EFBIG;
  if (enc == MW_ENC_GZIP) return gzip(in, len, level, out);
  if (enc == MW_ENC_BR) return brotli(in, len, level, out);
  return -EINVAL;
}
