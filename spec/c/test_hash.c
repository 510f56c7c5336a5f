/* test_hash.c — FNV-1a, 32 and 64 bits, against the published test
 * vectors (the empty string, "a", "foobar"). */
#include <string.h>

#include "hash.h"

#include "check.h"

int main(void) {
  CHECK(mw_hash32("", 0) == 0x811c9dc5u);
  CHECK(mw_hash32("a", 1) == 0xe40c292cu);
  CHECK(mw_hash32("foobar", 6) == 0xbf9cf968u);
  CHECK(mw_hash64("", 0) == 0xcbf29ce484222325u);
  CHECK(mw_hash64("a", 1) == 0xaf63dc4c8601ec8cu);
  CHECK(mw_hash64("foobar", 6) == 0x85944171f73967e8u);
  /* bytes, not chars: a high byte hashes as its unsigned value */
  CHECK(mw_hash32("\xff", 1) == ((2166136261u ^ 0xffu) * 16777619u));
  /* length, not NUL: an embedded NUL counts */
  CHECK(mw_hash32("a\0b", 3) != mw_hash32("a", 1));
  CHECK_REPORT();
  return failed != 0;
}
