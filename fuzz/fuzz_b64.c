/* fuzz_b64.c — base64 decoding, standard (Engine.IO's 'b' packets) and
 * base64url without padding (the signed session cookie a client sends
 * back). Checks what each promises: a failure leaves the output as it was;
 * a success is canonical, so encoding the bytes again gives the input back
 * exactly; the two alphabets agree on text that is valid in both. Anything
 * else aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

static void check_roundtrip(const char *in, size_t len, const mw_str *out, bool url) {
  bool ok;
  size_t n = b64_encoded_len(out->len, &ok);
  if (!ok) abort();
  char *enc = malloc(n + 1);
  if (!enc) abort();
  b64_write(enc, out->p ? out->p : "", out->len, url);
  size_t written = url ? n - (out->len % 3 ? 3 - out->len % 3 : 0) : n;
  if (written != len || memcmp(enc, in, len)) abort();
  free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  mw_str std = {0}, url = {0};
  mw_str_append(&std, "x", 1); /* something before: a failure must leave it */
  mw_str_append(&url, "x", 1);
  int rs = b64_decode(&std, s, size);
  int ru = b64_decode_url(&url, s, size);
  if (rs && rs != -EINVAL) abort();
  if (ru && ru != -EINVAL) abort();
  if (rs && (std.len != 1 || std.p[0] != 'x')) abort();
  if (ru && (url.len != 1 || url.p[0] != 'x')) abort();
  mw_str a = {0}, b = {0};
  if (!rs) {
    mw_str_append(&a, std.p + 1, std.len - 1);
    check_roundtrip(s, size, &a, false);
  }
  if (!ru) {
    mw_str_append(&b, url.p + 1, url.len - 1);
    check_roundtrip(s, size, &b, true);
  }
  /* Text of letters and digits only, its length a multiple of 4: both read it alike. */
  if (!rs && !ru && (a.len != b.len || memcmp(a.p ? a.p : "", b.p ? b.p : "", a.len))) abort();
  mw_str_free(&a);
  mw_str_free(&b);
  mw_str_free(&std);
  mw_str_free(&url);
  return 0;
}
