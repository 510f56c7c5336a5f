/* test_b64.c — base64: the RFC 4648 vectors, appending, what the strict
 * decoder refuses, round trips at every length, base64url (test_ws checks
 * the WebSocket accept value of RFC 6455's example). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"

#include "check.h"

/* A byte string that may hold NULs: the literal's length, not strlen. */
#define B(lit) lit, sizeof(lit) - 1

static bool str_is(const mw_str *s, const char *p, size_t n) {
  return s->len == n && (n == 0 || memcmp(s->p, p, n) == 0);
}

static void test_base64_rfc4648_vectors(void) {
  static const struct { const char *plain, *b64; } v[] = {
      {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(v); i++) {
    mw_str s = {0};
    CHECK(b64_encode(&s, v[i].plain, strlen(v[i].plain)) == 0);
    CHECK(str_is(&s, v[i].b64, strlen(v[i].b64)));
    mw_str_reset(&s);
    CHECK(b64_decode(&s, v[i].b64, strlen(v[i].b64)) == 0);
    CHECK(str_is(&s, v[i].plain, strlen(v[i].plain)));
    mw_str_free(&s);
  }
}

static void test_base64_appends(void) {
  mw_str s = {0};
  mw_str_appendz(&s, "x:");
  CHECK(b64_encode(&s, "\x01\x02\x03\x04", 4) == 0);
  CHECK(strcmp(s.p, "x:AQIDBA==") == 0);
  CHECK(b64_decode(&s, "QQ==", 4) == 0);
  CHECK(strcmp(s.p, "x:AQIDBA==A") == 0);
  mw_str_free(&s);
}

static void test_base64_rejects(void) {
  static const struct { const char *s; size_t len; } bad[] = {
      {B("Zg")},       /* no padding */
      {B("Zg=")},      /* length not a multiple of 4 */
      {B("Z===")},     /* three pads */
      {B("====")},
      {B("Zm9v====")},
      {B("Zg==Zg==")}, /* padding in the middle */
      {B("Zm=v")},
      {B("Zh==")},     /* non-zero bits under the padding */
      {B("Zm9=")},
      {B("Zm-v")},     /* URL-safe alphabet */
      {B("Zm_v")},
      {B("Zm v")},     /* whitespace */
      {B("Zm9v\n")},
      {B("Zm\0v")},    /* NUL */
      {B("Zm9\xc3")},  /* high byte */
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) {
    mw_str s = {0};
    mw_str_appendz(&s, "keep");
    int r = b64_decode(&s, bad[i].s, bad[i].len);
    CHECK(r == -EINVAL);
    if (r != -EINVAL) fprintf(stderr, "  accepted base64 #%zu\n", i);
    CHECK(str_is(&s, "keep", 4)); /* unchanged on error */
    mw_str_free(&s);
  }
}

static void test_base64_round_trip_all_lengths(void) {
  unsigned char bytes[300];
  for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(i * 37 + 11);
  int bad = 0;
  for (size_t n = 0; n <= sizeof bytes; n++) {
    mw_str enc = {0}, dec = {0};
    if (b64_encode(&enc, bytes, n) || enc.len != (n + 2) / 3 * 4) bad++;
    if (b64_decode(&dec, enc.p ? enc.p : "", enc.len) || !str_is(&dec, (const char *)bytes, n)) bad++;
    mw_str_free(&enc);
    mw_str_free(&dec);
  }
  CHECK(bad == 0);
}

static void test_url_alphabet(void) {
  char out[8] = "";
  b64_write(out, "\xfb\xff\xbf", 3, true);
  CHECK(memcmp(out, "-_-_", 4) == 0);
  b64_write(out, "\xfb\xff\xbf", 3, false);
  CHECK(memcmp(out, "+/+/", 4) == 0);
  memset(out, 0, sizeof out);
  b64_write(out, "f", 1, true); /* no padding */
  CHECK(strcmp(out, "Zg") == 0);
  CHECK(b64_value('+') == 62 && b64_value('/') == 63 && b64_value('-') == -1 && b64_value('=') == -1);
}

int main(void) {
  test_base64_rfc4648_vectors();
  test_base64_appends();
  test_base64_rejects();
  test_base64_round_trip_all_lengths();
  test_url_alphabet();
  CHECK_REPORT();
  return failed != 0;
}
