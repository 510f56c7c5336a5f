/* test_utf8.c — the one UTF-8 validator: the RFC 3629 boundaries, the
 * eight-byte ASCII stride meeting a multi-byte sequence anywhere in it, and
 * the maximal subparts the JSON writer replaces with one U+FFFD each. */
#include <string.h>

#include "utf8.h"

#include "check.h"

static void test_utf8_validator(void) {
  CHECK(utf8_valid("", 0));
  CHECK(utf8_valid("plain ascii", 11));
  CHECK(utf8_valid("\x00", 1));
  CHECK(utf8_valid("\xc2\x80\xdf\xbf", 4));             /* U+0080, U+07FF */
  CHECK(utf8_valid("\xe0\xa0\x80\xef\xbf\xbf", 6));     /* U+0800, U+FFFF */
  CHECK(utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6));     /* around the surrogates */
  CHECK(utf8_valid("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8)); /* U+10000, U+10FFFF */
  CHECK(!utf8_valid("\xc1\xbf", 2));
  CHECK(!utf8_valid("\xc2", 1));
  CHECK(!utf8_valid("\xc2\xc0", 2));
  CHECK(!utf8_valid("\xe0\x9f\xbf", 3));
  CHECK(!utf8_valid("\xed\xbf\xbf", 3));
  CHECK(!utf8_valid("\xef\xbf", 2));
  CHECK(!utf8_valid("\xe1\x80\x7f", 3));
  CHECK(!utf8_valid("\xf0\x8f\xbf\xbf", 4));
  CHECK(!utf8_valid("\xf4\x90\x80\x80", 4));
  CHECK(!utf8_valid("\xf5\x80\x80\x80", 4));
  CHECK(!utf8_valid("\xf1\x80\x80", 3));
  CHECK(!utf8_valid("\xf1\x80\x80\xc0", 4));
}

/* The ASCII stride reads eight bytes at a time: a bad byte or a sequence
 * cut at the end must be found at every offset in and after a word. */
static void test_stride(void) {
  char buf[40];
  for (size_t at = 0; at < 24; at++) {
    memset(buf, 'a', sizeof buf);
    memcpy(buf + at, "\xe2\x82\xac", 3); /* U+20AC */
    CHECK(utf8_valid(buf, sizeof buf));
    buf[at + 2] = 'x';
    CHECK(!utf8_valid(buf, sizeof buf));
    memset(buf, 'a', sizeof buf);
    buf[at] = (char)0xe2;
    CHECK(!utf8_valid(buf, at + 1)); /* truncated at the very end */
    CHECK(utf8_valid(buf, at));
  }
}

/* What one U+FFFD replaces (Unicode §3.9, "maximal subpart"). */
static void test_maximal_subpart(void) {
  size_t bad = 0;
  CHECK(utf8_seq((const unsigned char *)"\xe2\x82\xac", 3, &bad) == 3);
  CHECK(utf8_seq((const unsigned char *)"A", 1, &bad) == 1);
  bad = 0;
  CHECK(utf8_seq((const unsigned char *)"\x80", 1, &bad) == 0 && bad == 1);
  bad = 0;
  CHECK(utf8_seq((const unsigned char *)"\xe2\x82" "A", 3, &bad) == 0 && bad == 2);
  bad = 0;
  CHECK(utf8_seq((const unsigned char *)"\xf0\x9f\x98", 3, &bad) == 0 && bad == 3);
  bad = 0;
  CHECK(utf8_seq((const unsigned char *)"\xed\xa0\x80", 3, &bad) == 0 && bad == 1); /* surrogate: each byte alone */
  bad = 0;
  CHECK(utf8_seq((const unsigned char *)"\xe0\x80\x80", 3, &bad) == 0 && bad == 1); /* overlong */
  CHECK(utf8_seq((const unsigned char *)"\xc2", 1, NULL) == 0);                      /* bad may be NULL */
}

int main(void) {
  test_utf8_validator();
  test_stride();
  test_maximal_subpart();
  CHECK_REPORT();
  return failed != 0;
}
