/* fuzz_pct.c — percent-decoding and UTF-8 validation, the primitives that
 * read request targets, queries and filename* values. Checks what each
 * promises: the output is never longer than the input; decoding in place
 * gives what decoding elsewhere gives; strict decoding succeeds exactly
 * when no '%' starts a malformed escape, and then agrees with form
 * decoding without PCT_PLUS; a result that does not fit is refused whole;
 * re-encoding the decoded bytes and decoding again gives them back. And
 * utf8_valid agrees with a walk of utf8_seq. Anything else aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pct.h"
#include "utf8.h"

static bool strict_ok(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') continue;
    if (len - i < 3 || pct_hex((unsigned char)s[i + 1]) < 0 || pct_hex((unsigned char)s[i + 2]) < 0) return false;
    i += 2;
  }
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  char *out = malloc(size + 1), *inplace = malloc(size + 1), *enc = malloc(size * 3 + 1), *back = malloc(size + 1);
  if (!out || !inplace || !enc || !back) abort();
  for (unsigned flags = 0; flags <= (PCT_PLUS | PCT_STRICT); flags++) {
    ssize_t n = pct_decode(s, size, out, size, flags);
    if (flags & PCT_STRICT) {
      if ((n >= 0) != strict_ok(s, size)) abort();
      if (n < 0 && n != -EINVAL) abort();
    } else if (n < 0) {
      abort(); /* form decoding always succeeds when the room is the input's length */
    }
    if (n < 0) continue;
    if ((size_t)n > size) abort();
    memcpy(inplace, s, size);
    if (pct_decode(inplace, size, inplace, size, flags) != n || memcmp(inplace, out, (size_t)n)) abort();
    if (n > 0 && pct_decode(s, size, inplace, (size_t)n - 1, flags) != -ENOSPC) abort();
    if ((flags & PCT_STRICT) && !(flags & PCT_PLUS)) {
      ssize_t lax = pct_decode(s, size, inplace, size, 0);
      if (lax != n || memcmp(inplace, out, (size_t)n)) abort();
    }
    /* Every byte escaped decodes back, strictly. */
    static const char hex[] = "0123456789ABCDEF";
    for (ssize_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)out[i];
      enc[3 * i] = '%', enc[3 * i + 1] = hex[c >> 4], enc[3 * i + 2] = hex[c & 15];
    }
    if (pct_decode(enc, (size_t)n * 3, back, size, PCT_STRICT) != n || memcmp(back, out, (size_t)n)) abort();
  }
  bool walk = true;
  for (size_t i = 0; i < size && walk;) {
    size_t bad = 0, l = utf8_seq(data + i, size - i, &bad);
    if (l) i += l;
    else if (bad < 1 || bad > 3 || bad > size - i) abort();
    else walk = false;
  }
  if (utf8_valid(s, size) != walk) abort();
  free(out);
  free(inplace);
  free(enc);
  free(back);
  return 0;
}
