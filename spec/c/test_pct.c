/* test_pct.c — hex digits and percent-decoding: strict (static paths,
 * filename*) and form decoding (the Engine.IO query), in place, and a
 * result that does not fit. */
#include <errno.h>
#include <string.h>

#include "pct.h"

#include "check.h"

static int decodes(const char *in, unsigned flags, const char *want, ssize_t want_len) {
  char out[64];
  ssize_t n = pct_decode(in, strlen(in), out, sizeof out, flags);
  if (n != want_len) return 0;
  return n < 0 || memcmp(out, want, (size_t)n) == 0;
}

int main(void) {
  CHECK(pct_hex('0') == 0 && pct_hex('9') == 9 && pct_hex('a') == 10 && pct_hex('F') == 15);
  CHECK(pct_hex('g') == -1 && pct_hex('G') == -1 && pct_hex('/') == -1 && pct_hex(':') == -1 && pct_hex('@') == -1);
  CHECK(pct_hex('`') == -1 && pct_hex(0xff) == -1);

  CHECK(decodes("a%20b%2Fc", PCT_STRICT, "a b/c", 5));
  CHECK(decodes("%e2%82%AC", PCT_STRICT, "\xe2\x82\xac", 3));
  CHECK(decodes("%00", PCT_STRICT, "\0", 1)); /* a NUL is a byte of the result */
  CHECK(decodes("a+b", PCT_STRICT, "a+b", 3));
  CHECK(decodes("a+b", PCT_PLUS, "a b", 3));
  CHECK(decodes("%2B", PCT_PLUS, "+", 1));
  /* strict: a '%' that starts no escape is an error */
  CHECK(decodes("%zz", PCT_STRICT, NULL, -EINVAL));
  CHECK(decodes("%4", PCT_STRICT, NULL, -EINVAL));
  CHECK(decodes("ab%", PCT_STRICT, NULL, -EINVAL));
  CHECK(decodes("%%41", PCT_STRICT, NULL, -EINVAL));
  /* form decoding keeps it as it is (URLSearchParams, Node's querystring):
   * "%zz" is never a NUL, "%4z" never "\x04" */
  CHECK(decodes("%zz", PCT_PLUS, "%zz", 3));
  CHECK(decodes("%4z", PCT_PLUS, "%4z", 3));
  CHECK(decodes("ab%", PCT_PLUS, "ab%", 3));
  CHECK(decodes("ab%4", PCT_PLUS, "ab%4", 4));
  CHECK(decodes("%%41", PCT_PLUS, "%A", 2));

  /* in place */
  char buf[] = "x%41%42y";
  CHECK(pct_decode(buf, 8, buf, 8, PCT_STRICT) == 4 && memcmp(buf, "xABy", 4) == 0);
  /* never truncated */
  char small[3];
  CHECK(pct_decode("abcd", 4, small, sizeof small, 0) == -ENOSPC);
  CHECK(pct_decode("%41%42%43", 9, small, sizeof small, 0) == 3 && memcmp(small, "ABC", 3) == 0);
  CHECK(pct_decode("", 0, small, 0, PCT_STRICT) == 0);
  CHECK_REPORT();
  return failed != 0;
}
