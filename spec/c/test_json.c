/* test_json.c — core/json.c: numbers as JavaScript prints and reads them
 * (both directions, the edges of int64 and of doubles), strings escaped as
 * JSON.stringify does with ill-formed UTF-8 replaced, and the strict reader:
 * its tokens, decoded strings, lone surrogates, depth limit and the byte
 * offsets in its errors. Every input is copied into a buffer of exactly its
 * size, so under ASan a read past the end fails the test. */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "json.h"

static const char *fmt(double x) {
  static char buf[JSON_NUMBER_MAX];
  size_t n = json_format_double(x, buf);
  if (n != strlen(buf) || n >= JSON_NUMBER_MAX) return "(bad length)";
  return buf;
}

static int fmt_is(double x, const char *want) {
  const char *got = fmt(x);
  if (strcmp(got, want)) fprintf(stderr, "  format %.17g: got %s, want %s\n", x, got, want);
  return !strcmp(got, want);
}

static void test_format_double(void) {
  /* What Node prints for String(x) (and JSON.stringify for the last ones). */
  CHECK(fmt_is(0.1 + 0.2, "0.30000000000000004"));
  CHECK(fmt_is(1.0, "1"));
  CHECK(fmt_is(-0.0, "0"));
  CHECK(fmt_is(0.0, "0"));
  CHECK(fmt_is(1.5, "1.5"));
  CHECK(fmt_is(-1.5, "-1.5"));
  CHECK(fmt_is(0.1, "0.1"));
  CHECK(fmt_is(1.0 / 3, "0.3333333333333333"));
  CHECK(fmt_is(2.0 / 3, "0.6666666666666666"));
  CHECK(fmt_is(123456789012345.0, "123456789012345"));
  CHECK(fmt_is(9007199254740991.0, "9007199254740991"));
  CHECK(fmt_is(-9007199254740991.0, "-9007199254740991"));
  CHECK(fmt_is(9007199254740992.0, "9007199254740992"));
  CHECK(fmt_is(1e20, "100000000000000000000"));
  CHECK(fmt_is(1e21, "1e+21"));
  CHECK(fmt_is(1.5e21, "1.5e+21"));
  CHECK(fmt_is(1e300, "1e+300"));
  CHECK(fmt_is(-1e300, "-1e+300"));
  CHECK(fmt_is(5e-324, "5e-324"));
  CHECK(fmt_is(-5e-324, "-5e-324"));
  CHECK(fmt_is(1.5e-7, "1.5e-7"));
  CHECK(fmt_is(1e-7, "1e-7"));
  CHECK(fmt_is(0.000001, "0.000001"));
  CHECK(fmt_is(0.0000015, "0.0000015"));
  CHECK(fmt_is(123e-20, "1.23e-18"));
  CHECK(fmt_is(1.7976931348623157e308, "1.7976931348623157e+308"));
  CHECK(fmt_is(DBL_MIN, "2.2250738585072014e-308"));
  CHECK(fmt_is(2.225073858507201e-308, "2.225073858507201e-308")); /* the largest subnormal */
  CHECK(fmt_is(9223372036854775808.0, "9223372036854776000"));     /* 2^63 */
  CHECK(fmt_is(18446744073709551616.0, "18446744073709552000"));   /* 2^64 */
  CHECK(fmt_is(1152921504606846976.0, "1152921504606847000"));     /* 2^60 */
  CHECK(fmt_is(4.35, "4.35"));
  CHECK(fmt_is(0.5, "0.5"));
  CHECK(fmt_is(100.0, "100"));
  CHECK(fmt_is(123.456, "123.456"));
  CHECK(fmt_is(5e-7, "5e-7"));
  CHECK(fmt_is(9.5, "9.5"));
  CHECK(fmt_is(NAN, "null"));
  CHECK(fmt_is(INFINITY, "null"));
  CHECK(fmt_is(-INFINITY, "null"));
  /* Powers of two at 16 digits, where the nearest 16-digit decimal misses
   * (the gap below is half the gap above) and its neighbour does not. */
  CHECK(fmt_is(ldexp(1, -44), "5.684341886080802e-14"));
  CHECK(fmt_is(ldexp(1, 55), "36028797018963970"));
  CHECK(fmt_is(ldexp(1, -1022), "2.2250738585072014e-308"));
  CHECK(fmt_is(ldexp(1, -1074), "5e-324"));
  CHECK(fmt_is(ldexp(1, 1023), "8.98846567431158e+307"));
}

/* Every double it prints reads back as the same bits. */
static void test_round_trip(void) {
  uint64_t state = 0x9E3779B97F4A7C15u;
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    double x;
    memcpy(&x, &state, sizeof x);
    if (!isfinite(x)) continue;
    const char *s = fmt(x);
    double back;
    if (json_parse_double(s, strlen(s), &back) || memcmp(&back, &x, sizeof x)) {
      if (x == 0 && back == 0) continue; /* -0 is printed as 0 */
      if (bad++ < 5) fprintf(stderr, "  %a printed as %s reads back as %a\n", x, s, back);
    }
  }
  CHECK(bad == 0);
}

static void test_format_int(void) {
  char buf[JSON_NUMBER_MAX];
  CHECK(json_format_int(INT64_MAX, buf) == 19 && !strcmp(buf, "9223372036854775807"));
  CHECK(json_format_int(INT64_MIN, buf) == 20 && !strcmp(buf, "-9223372036854775808"));
  CHECK(json_format_int(0, buf) == 1 && !strcmp(buf, "0"));
  CHECK(json_format_int(-1, buf) == 2 && !strcmp(buf, "-1"));
  CHECK(json_format_int(9007199254740993, buf) && !strcmp(buf, "9007199254740993"));
}

/* ---- strings */

static int str_is(const char *in, size_t n, const char *want) {
  mw_str out = {0};
  char *copy = malloc(n ? n : 1);
  memcpy(copy, in, n);
  int rc = json_append_string(&out, copy, n);
  int ok = rc == 0 && out.len == strlen(want) && !memcmp(out.p, want, out.len);
  if (!ok) fprintf(stderr, "  string: got %s, want %s\n", out.p ? out.p : "(null)", want);
  free(copy);
  mw_str_free(&out);
  return ok;
}
#define STR_IS(lit, want) str_is(lit, sizeof(lit) - 1, want)

static void test_strings(void) {
  CHECK(STR_IS("", "\"\""));
  CHECK(STR_IS("plain", "\"plain\""));
  CHECK(STR_IS("\"\\/", "\"\\\"\\\\/\""));
  CHECK(STR_IS("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\""));
  CHECK(STR_IS("\x00\x01\x1f\x7f", "\"\\u0000\\u0001\\u001f\x7f\""));
  CHECK(STR_IS("é😀\u0301\u2028", "\"é😀\u0301\u2028\""));
  /* Ill-formed UTF-8: one U+FFFD per maximal subpart (as TextDecoder). */
  CHECK(STR_IS("a\xff" "b", "\"a\uFFFDb\""));
  CHECK(STR_IS("\xe2\x82", "\"\uFFFD\""));                      /* a truncated sequence is one */
  CHECK(STR_IS("\xe2\x82x", "\"\uFFFDx\""));
  CHECK(STR_IS("\xf0\x9f\x98", "\"\uFFFD\""));
  CHECK(STR_IS("\xed\xa0\x80", "\"\uFFFD\uFFFD\uFFFD\""));      /* an encoded surrogate is three */
  CHECK(STR_IS("\xc0\xaf", "\"\uFFFD\uFFFD\""));                /* overlong */
  CHECK(STR_IS("\xf4\x90\x80\x80", "\"\uFFFD\uFFFD\uFFFD\uFFFD\"")); /* above U+10FFFF */
  CHECK(STR_IS("\x80\xbf", "\"\uFFFD\uFFFD\""));                /* stray continuation bytes */
}

/* ---- the reader */

typedef struct {
  json_reader r;
  mw_str scratch;
  char *copy;
} rd;

static void rd_open(rd *x, const char *s, size_t n) {
  x->scratch = (mw_str){0};
  x->copy = malloc(n ? n : 1);
  memcpy(x->copy, s, n);
  json_reader_init(&x->r, x->copy, n, &x->scratch);
}

static void rd_close(rd *x) {
  free(x->copy);
  mw_str_free(&x->scratch);
}

/* The tokens of s as a compact trace: [ ] { } k(key) s(string) i(int) f n t F . (end) ! (error) */
static void trace(const char *s, size_t n, char *out, size_t cap) {
  rd x;
  rd_open(&x, s, n);
  size_t k = 0;
  for (;;) {
    json_token t = json_next(&x.r);
    const char *c = "?";
    switch (t) {
    case JSON_END: c = "."; break;
    case JSON_ERROR: c = "!"; break;
    case JSON_NULL: c = "n"; break;
    case JSON_FALSE: c = "F"; break;
    case JSON_TRUE: c = "t"; break;
    case JSON_INT: c = "i"; break;
    case JSON_FLOAT: c = "f"; break;
    case JSON_STRING: c = "s"; break;
    case JSON_KEY: c = "k"; break;
    case JSON_ARRAY: c = "["; break;
    case JSON_ARRAY_END: c = "]"; break;
    case JSON_OBJECT: c = "{"; break;
    case JSON_OBJECT_END: c = "}"; break;
    }
    if (k + 1 < cap) out[k++] = c[0];
    if (t == JSON_END || t == JSON_ERROR) break;
  }
  out[k] = '\0';
  /* and again: a finished reader keeps saying so */
  json_token again = json_next(&x.r);
  if ((out[k - 1] == '.' && again != JSON_END) || (out[k - 1] == '!' && again != JSON_ERROR)) out[0] = '?';
  rd_close(&x);
}

static int trace_is(const char *s, const char *want) {
  char got[256];
  trace(s, strlen(s), got, sizeof got);
  if (strcmp(got, want)) fprintf(stderr, "  tokens of %s: got %s, want %s\n", s, got, want);
  return !strcmp(got, want);
}

static void test_tokens(void) {
  CHECK(trace_is("[]", "[]."));
  CHECK(trace_is("{}", "{}."));
  CHECK(trace_is(" [ [ ] , { } ] ", "[[]{}]."));
  CHECK(trace_is("{\"a\":[1,{\"b\":null}],\"c\":\"x\"}", "{k[i{kn}]ks}."));
  CHECK(trace_is("[true,false,null,1,1.5,-2e3,\"s\"]", "[tFniffs]."));
  CHECK(trace_is("\t\r\n 42 \n", "i."));
  CHECK(trace_is("\"top\"", "s."));
}

/* One number token's kind and value. */
static json_token number(const char *s, int64_t *i, double *d) {
  rd x;
  rd_open(&x, s, strlen(s));
  json_token t = json_next(&x.r);
  if (t == JSON_INT) *i = x.r.i;
  if (t == JSON_FLOAT) *d = x.r.d;
  if (t != JSON_ERROR && json_next(&x.r) != JSON_END) t = JSON_ERROR;
  rd_close(&x);
  return t;
}

static void test_numbers_in(void) {
  int64_t i = 0;
  double d = 0;
  CHECK(number("9007199254740993", &i, &d) == JSON_INT && i == 9007199254740993);
  CHECK(number("9223372036854775807", &i, &d) == JSON_INT && i == INT64_MAX);
  CHECK(number("-9223372036854775808", &i, &d) == JSON_INT && i == INT64_MIN);
  CHECK(number("9223372036854775808", &i, &d) == JSON_FLOAT && d == 9223372036854775808.0);
  CHECK(number("-9223372036854775809", &i, &d) == JSON_FLOAT && d == -9223372036854775808.0);
  CHECK(number("123456789012345678901234567890", &i, &d) == JSON_FLOAT && d == 1.2345678901234568e29);
  CHECK(number("-0", &i, &d) == JSON_INT && i == 0);
  CHECK(number("0.30000000000000004", &i, &d) == JSON_FLOAT && d == 0.1 + 0.2);
  CHECK(number("0.3", &i, &d) == JSON_FLOAT && d == 0.3);
  CHECK(number("5e-324", &i, &d) == JSON_FLOAT && d == ldexp(1, -1074));
  CHECK(number("2.2250738585072011e-308", &i, &d) == JSON_FLOAT && d == 2.2250738585072011e-308);
  CHECK(number("1e-400", &i, &d) == JSON_FLOAT && d == 0);
  CHECK(number("1E+2", &i, &d) == JSON_FLOAT && d == 100);
  CHECK(number("1.7976931348623157e308", &i, &d) == JSON_FLOAT && d == DBL_MAX);
  CHECK(number("1e400", &i, &d) == JSON_ERROR);    /* JSON.parse: Infinity, which JSON cannot write back */
  CHECK(number("-1e400", &i, &d) == JSON_ERROR);
}

static int string_is(const char *json, const char *want, size_t want_len) {
  rd x;
  rd_open(&x, json, strlen(json));
  json_token t = json_next(&x.r);
  int ok = t == JSON_STRING && x.r.str_len == want_len && !memcmp(x.r.str, want, want_len) &&
           json_next(&x.r) == JSON_END;
  if (!ok) fprintf(stderr, "  string %s: token %d, %.*s\n", json, t, t == JSON_STRING ? (int)x.r.str_len : 0, x.r.str);
  rd_close(&x);
  return ok;
}
#define STRING_IS(json, lit) string_is(json, lit, sizeof(lit) - 1)

static void test_strings_in(void) {
  CHECK(STRING_IS("\"\"", ""));
  CHECK(STRING_IS("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"));
  CHECK(STRING_IS("\"\\u0000\"", "\0"));
  CHECK(STRING_IS("\"\\u00e9\\u00E9\"", "éé"));
  CHECK(STRING_IS("\"\\ud83d\\ude00\"", "😀"));
  CHECK(STRING_IS("\"\\ud800\"", "\uFFFD"));                 /* lone high surrogate */
  CHECK(STRING_IS("\"\\udc00\"", "\uFFFD"));                 /* lone low surrogate */
  CHECK(STRING_IS("\"\\udc00\\ud800\"", "\uFFFD\uFFFD"));    /* reversed: two lone ones */
  CHECK(STRING_IS("\"\\ud800\\u0041\"", "\uFFFDA"));
  CHECK(STRING_IS("\"\\ud800x\"", "\uFFFDx"));
  /* Bytes that are not UTF-8 arrive as they were sent (the app decides). */
  CHECK(STRING_IS("\"a\xff" "b\"", "a\xff" "b"));
  CHECK(STRING_IS("\"\xed\xa0\x80\\n\"", "\xed\xa0\x80\n"));
  CHECK(STRING_IS("\"é😀e\u0301\"", "é😀e\u0301"));
  CHECK(STRING_IS("\"\x7f\"", "\x7f"));
}

static int error_is(const char *s, size_t n, const char *msg, size_t pos) {
  rd x;
  rd_open(&x, s, n);
  json_token t;
  while ((t = json_next(&x.r)) != JSON_ERROR && t != JSON_END) {
  }
  int ok = t == JSON_ERROR && !strcmp(x.r.err, msg) && x.r.err_pos == pos;
  if (!ok) fprintf(stderr, "  error of %.*s: %s at %zu (want %s at %zu)\n", (int)n, s, t == JSON_ERROR ? x.r.err : "none", x.r.err_pos, msg, pos);
  rd_close(&x);
  return ok;
}
#define ERROR_IS(lit, msg, pos) error_is(lit, sizeof(lit) - 1, msg, pos)

static void test_errors(void) {
  CHECK(ERROR_IS("", "unexpected end of input", 0));
  CHECK(ERROR_IS("   ", "unexpected end of input", 3));
  CHECK(ERROR_IS("[", "unexpected end of input", 1));
  CHECK(ERROR_IS("[1", "unexpected end of input", 2));
  CHECK(ERROR_IS("[1,", "unexpected end of input", 3));
  CHECK(ERROR_IS("{\"a\"", "unexpected end of input", 4));
  CHECK(ERROR_IS("[1,]", "expected a value", 3));
  CHECK(ERROR_IS("{\"a\":1,}", "expected a string (an object's key)", 7));
  CHECK(ERROR_IS("{a:1}", "expected a string (an object's key)", 1));
  CHECK(ERROR_IS("{\"a\" 1}", "expected ':'", 5));
  CHECK(ERROR_IS("[1 2]", "expected ',' or ']'", 3));
  CHECK(ERROR_IS("{\"a\":1 \"b\"}", "expected ',' or '}'", 7));
  CHECK(ERROR_IS("[1] x", "unexpected text after the value", 4));
  CHECK(ERROR_IS("1 2", "unexpected text after the value", 2));
  CHECK(ERROR_IS("\xef\xbb\xbf[]", "expected a value", 0)); /* a byte order mark */
  CHECK(ERROR_IS("'a'", "expected a value", 0));
  CHECK(ERROR_IS("[1]//", "unexpected text after the value", 3));
  CHECK(ERROR_IS("[01]", "a number with a leading zero", 1));
  CHECK(ERROR_IS("[-]", "an invalid number", 1));
  CHECK(ERROR_IS("[1.]", "an invalid number (a digit must follow '.')", 1));
  CHECK(ERROR_IS("[.5]", "expected a value", 1));
  CHECK(ERROR_IS("[1e]", "an invalid number (a digit must follow the exponent)", 1));
  CHECK(ERROR_IS("[+1]", "expected a value", 1));
  CHECK(ERROR_IS("[NaN]", "expected a value", 1));
  CHECK(ERROR_IS("[Infinity]", "expected a value", 1));
  CHECK(ERROR_IS("[tru]", "an invalid literal (true, false and null are the only words)", 1));
  CHECK(ERROR_IS("nul", "an invalid literal (true, false and null are the only words)", 0));
  CHECK(ERROR_IS("[\"abc", "unterminated string", 1));
  CHECK(ERROR_IS("[\"abc\\", "unterminated string", 1));
  CHECK(ERROR_IS("[\"a\tb\"]", "a control character in a string (it must be escaped)", 3));
  CHECK(ERROR_IS("[\"\\x\"]", "an invalid escape in a string", 2));
  CHECK(ERROR_IS("[\"\\u12\"]", "an invalid \\u escape", 2));
  CHECK(ERROR_IS("[\"\\u12", "an invalid \\u escape", 2));
  CHECK(ERROR_IS("[\"\\ud800\\u12\"]", "an invalid \\u escape", 8));
  CHECK(ERROR_IS("[1e999]", "a number too large for a double", 1));
  CHECK(ERROR_IS("[1]\0", "unexpected text after the value", 3));
}

static void test_depth(void) {
  char deep[2 * JSON_MAX_DEPTH + 2];
  memset(deep, '[', JSON_MAX_DEPTH);
  memset(deep + JSON_MAX_DEPTH, ']', JSON_MAX_DEPTH);
  char want[2 * JSON_MAX_DEPTH + 2];
  memcpy(want, deep, 2 * JSON_MAX_DEPTH);
  want[2 * JSON_MAX_DEPTH] = '.';
  want[2 * JSON_MAX_DEPTH + 1] = '\0';
  char got[256];
  trace(deep, 2 * JSON_MAX_DEPTH, got, sizeof got);
  CHECK(!strcmp(got, want)); /* 64 deep is fine */
  char deeper[2 * JSON_MAX_DEPTH + 2];
  memset(deeper, '[', JSON_MAX_DEPTH + 1);
  memset(deeper + JSON_MAX_DEPTH + 1, ']', JSON_MAX_DEPTH + 1);
  CHECK(error_is(deeper, sizeof deeper, "nested deeper than 64 arrays and objects", JSON_MAX_DEPTH));
  /* objects count the same, and a closed container frees its level */
  mw_str s = {0};
  for (int i = 0; i < JSON_MAX_DEPTH; i++) mw_str_appendz(&s, "{\"a\":");
  mw_str_appendz(&s, "1");
  for (int i = 0; i < JSON_MAX_DEPTH; i++) mw_str_appendz(&s, "}");
  rd x;
  rd_open(&x, s.p, s.len);
  json_token t;
  while ((t = json_next(&x.r)) != JSON_END && t != JSON_ERROR) {
  }
  CHECK(t == JSON_END);
  rd_close(&x);
  mw_str_free(&s);
  mw_str w = {0};
  for (int i = 0; i < 1000; i++) mw_str_appendz(&w, "[[]],");
  mw_str_appendz(&w, "[[]]");
  mw_str_free(&s);
  mw_str_appendz(&s, "[");
  mw_str_append(&s, w.p, w.len);
  mw_str_appendz(&s, "]");
  rd_open(&x, s.p, s.len);
  while ((t = json_next(&x.r)) != JSON_END && t != JSON_ERROR) {
  }
  CHECK(t == JSON_END);
  rd_close(&x);
  mw_str_free(&s);
  mw_str_free(&w);
}

/* An app may set a locale whose decimal point is a comma (os.setlocale);
 * JSON's numbers stay as they are. Needs localedef and glibc's locale
 * sources (Debian: libc-bin, locales); says so and skips without them. */
static void test_locale(void) {
  char dir[] = "/tmp/moonwire-locale-XXXXXX";
  if (!mkdtemp(dir)) return;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
  int made = system(cmd) == 0;
  if (made) {
    setenv("LOCPATH", dir, 1);
    made = setlocale(LC_ALL, "de_DE.UTF-8") != NULL;
  }
  if (made) {
    char probe[16];
    snprintf(probe, sizeof probe, "%.1f", 0.5);
    CHECK(!strcmp(probe, "0,5")); /* the locale is in force */
    CHECK(fmt_is(0.5, "0.5"));
    CHECK(fmt_is(0.1 + 0.2, "0.30000000000000004"));
    CHECK(fmt_is(1.5e-7, "1.5e-7"));
    double d = 0;
    CHECK(json_parse_double("0.5", 3, &d) == 0 && d == 0.5);
    CHECK(json_parse_double("1.25e2", 6, &d) == 0 && d == 125);
    setlocale(LC_ALL, "C");
  } else {
    printf("test_locale: skipped (no localedef or no de_DE locale source)\n");
  }
  unsetenv("LOCPATH");
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
  test_format_double();
  test_round_trip();
  test_format_int();
  test_strings();
  test_tokens();
  test_numbers_in();
  test_strings_in();
  test_errors();
  test_depth();
  test_locale();
  CHECK_REPORT();
  return failed ? 1 : 0;
}
