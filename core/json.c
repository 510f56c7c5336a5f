/* json.c — numbers as JavaScript prints them, strings as JSON.stringify
 * writes them, and a strict pull reader. See json.h. */
#include "json.h"

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pct.h"
#include "utf8.h"

/* ---- numbers */

/* strtod reads the decimal point of the current locale (an app may call
 * os.setlocale); JSON's is always '.'. */
static locale_t c_locale(void) {
  static locale_t loc;
  if (!loc) loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  return loc;
}

static double c_strtod(const char *z) {
  locale_t loc = c_locale();
  return loc ? strtod_l(z, NULL, loc) : strtod(z, NULL);
}

/* Powers of ten a double holds exactly. */
static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path: a decimal of at most 15 significant digits (an
 * integer a double holds exactly) times or over a power of ten up to 10^22
 * (exact too) is one IEEE operation, which rounds correctly. Returns 0, or
 * -1 when the token is not of that kind (strtod then reads it). */
static int fast_decimal(const char *s, size_t n, double *out) {
  size_t p = 0;
  bool neg = false;
  uint64_t mant = 0;
  int digits = 0, exp10 = 0;
  if (s[p] == '-') neg = true, p++;
  for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
    if (mant == 0 && s[p] == '0') continue; /* leading zeros are not significant */
    if (++digits > 15) return -1;
    mant = mant * 10 + (uint64_t)(s[p] - '0');
  }
  if (p < n && s[p] == '.') {
    for (p++; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
      exp10--;
      if (mant == 0 && s[p] == '0') continue;
      if (++digits > 15) return -1;
      mant = mant * 10 + (uint64_t)(s[p] - '0');
    }
  }
  if (p < n && (s[p] == 'e' || s[p] == 'E')) {
    p++;
    bool eneg = false;
    if (s[p] == '+' || s[p] == '-') eneg = s[p] == '-', p++;
    int e = 0;
    for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
      if (e > 1000) return -1;
      e = e * 10 + (s[p] - '0');
    }
    exp10 += eneg ? -e : e;
  }
  double d = (double)mant;
  if (mant == 0) d = 0;
  else if (exp10 < -22 || exp10 > 22) return -1;
  else if (exp10 < 0) d /= POW10[-exp10];
  else d *= POW10[exp10];
  *out = neg ? -d : d;
  return 0;
}

int json_parse_double(const char *s, size_t n, double *out) {
  if (!fast_decimal(s, n, out)) return 0;
  char small[64];
  char *z = n < sizeof small ? small : malloc(n + 1);
  if (!z) return -ENOMEM;
  memcpy(z, s, n);
  z[n] = '\0';
  double d = c_strtod(z);
  if (z != small) free(z);
  if (isinf(d)) return -ERANGE;
  *out = d;
  return 0;
}

size_t json_format_int(int64_t v, char *out) {
  char tmp[24];
  size_t n = 0, len = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) out[len++] = '-';
  while (n) out[len++] = tmp[--n];
  out[len] = '\0';
  return len;
}

/* x (positive, finite) rounded to prec significant digits, as printf does it
 * (exactly, half to even): the digits into d (no point) and the decimal
 * exponent of the first one into *exp. */
static void round_digits(double x, int prec, char *d, int *exp) {
  char buf[48];
  snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
  /* d[.ddd]e±x; the point is the locale's, so it is skipped, not matched */
  const char *p = buf;
  int k = 0;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') d[k++] = *p;
  int sign = 1, e = 0;
  if (*p == 'e') p++;
  if (*p == '-') sign = -1, p++;
  else if (*p == '+') p++;
  for (; *p >= '0' && *p <= '9'; p++) e = e * 10 + (*p - '0');
  *exp = sign * e;
}

/* The decimal d (k digits) × 10^(exp - k + 1), read as a double. */
static double digits_value(const char *d, int k, int exp) {
  char buf[48];
  memcpy(buf, d, (size_t)k);
  snprintf(buf + k, sizeof buf - (size_t)k, "e%d", exp - k + 1);
  return c_strtod(buf);
}

/* The k-digit decimal next to d, one unit in its last place up (dir 1) or
 * down (dir -1). */
static void step_digits(char *d, int k, int *exp, int dir) {
  int i = k - 1;
  if (dir > 0) {
    while (i >= 0 && d[i] == '9') d[i--] = '0';
    if (i >= 0) d[i]++;
    else d[0] = '1', ++*exp; /* 99..9 + 1 = 100..0 (the rest are zeros already) */
  } else {
    while (i >= 0 && d[i] == '0') d[i--] = '9';
    d[i]--; /* d is not all zeros */
    if (d[0] == '0') { /* 100..0 - 1 = 99..9 one place lower */
      memset(d, '9', (size_t)k);
      --*exp;
    }
  }
}

/* ---- the exact fast path: doubles in [1e-5, 1e15) that are not whole
 * (most numbers an app sends). x = m × 2^-s with m < 2^53 and s ≤ 69, so
 * x × 10^q (q ≤ 21) is the integer N = m × 10^q over 2^s, exact in 128
 * bits: rounding it to an integer is printf's %.{k}e to the digit, and
 * whether a candidate D reads back as x is whether D × 2^s lies within half
 * a gap of N, the gap being 10^q in these units (half of it below a power of
 * two), boundaries included when m is even (strtod rounds half to even). */

typedef unsigned __int128 u128;

static u128 pow10_u128(int q) {
  static const uint64_t P[20] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u,
                                 1000000000u, 10000000000u, 100000000000u, 1000000000000u, 10000000000000u,
                                 100000000000000u, 1000000000000000u, 10000000000000000u,
                                 100000000000000000u, 1000000000000000000u, 10000000000000000000u};
  return q <= 19 ? (u128)P[q] : (u128)P[19] * P[q - 19];
}

typedef struct exact {
  uint64_t m;
  int s;
  bool even, pow2; /* m even; x a power of two (the gap below is half the gap above) */
} exact;

/* Does the decimal D × 10^-q read back as x? */
static bool exact_reads_back(const exact *x, u128 D, int q) {
  u128 scaled = D << x->s, N = (u128)x->m * pow10_u128(q), gap = pow10_u128(q);
  if (scaled >= N) {
    u128 twice = 2 * (scaled - N);
    return twice < gap || (twice == gap && x->even);
  }
  u128 diff = N - scaled, times = x->pow2 ? 4 * diff : 2 * diff;
  return times < gap || (times == gap && x->even);
}

/* x × 10^q rounded to the nearest integer, ties to even; *below: whether
 * that integer is below x × 10^q. */
static u128 exact_round(const exact *x, int q, bool *below) {
  u128 N = (u128)x->m * pow10_u128(q);
  u128 I = N >> x->s, R = N - (I << x->s), half = (u128)1 << (x->s - 1);
  if (R > half || (R == half && (I & 1))) I++;
  *below = (I << x->s) < N;
  return I;
}

static int u128_digits(u128 v, char *d) {
  char tmp[40];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v);
  for (int i = 0; i < n; i++) d[i] = tmp[n - 1 - i];
  return n;
}

/* The shortest digits of x as shortest_digits below finds them, or -1 when
 * x is outside the range this path covers. */
static int shortest_exact(double x, char *d, int *exp) {
  if (!(x >= 1e-5 && x < 1e15)) return -1;
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int be = (int)(bits >> 52 & 0x7ff);
  uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
  exact e = {frac | UINT64_C(1) << 52, 1075 - be, (frac & 1) == 0, frac == 0};
  if (e.s <= 0 || e.s > 100) return -1; /* whole, or out of range */
  /* q such that x × 10^q has 15 digits before the point */
  int q = 14 - (int)floor(log10(x));
  for (int tries = 0;; tries++) {
    if (q < 0 || q > 19 || tries > 3) return -1;
    u128 I = ((u128)e.m * pow10_u128(q)) >> e.s;
    if (I < (u128)100000000000000u) q++;
    else if (I >= (u128)1000000000000000u) q--;
    else break;
  }
  for (int prec = 15; prec <= 17; prec++) {
    int qq = q + prec - 15;
    bool below;
    u128 D = exact_round(&e, qq, &below);
    bool ok = prec == 17 || exact_reads_back(&e, D, qq);
    if (!ok && prec == 16) { /* its neighbour across x (see shortest_digits) */
      D = below ? D + 1 : D - 1;
      ok = exact_reads_back(&e, D, qq);
    }
    if (ok) {
      int k = u128_digits(D, d);
      *exp = k - 1 - qq;
      while (k > 1 && d[k - 1] == '0') k--;
      return k;
    }
  }
  return -1;
}

/* The shortest digits that read back as x (positive, finite), and among
 * those the closest to x, as ECMA-262 Number::toString asks. Returns the
 * digit count (no trailing zeros); *exp is the decimal exponent of the
 * first digit.
 *
 * printf rounds exactly, so the work is choosing the length:
 *  - A normal double: any decimal of 15 digits or fewer that reads back as x
 *    is x rounded to 15 digits (DBL_DIG: 15-digit decimals survive a trip
 *    through a double), so if that one does not read back, none that short
 *    does. At 16 digits the nearest may miss where the doubles' spacing
 *    changes (x a power of two: the gap below is half the gap above) while
 *    its neighbour across x reads back; at 17 the nearest always does.
 *  - A subnormal has fewer bits and even spacing: each length from 1 up,
 *    the nearest at that length reads back if any does. */
static int shortest_digits(double x, char *d, int *exp) {
  int fast = shortest_exact(x, d, exp);
  if (fast > 0) return fast;
  int from = x < DBL_MIN ? 1 : 15;
  int k = 17;
  for (int prec = from; prec <= 17; prec++) {
    round_digits(x, prec, d, exp);
    double back = prec == 17 ? x : digits_value(d, prec, *exp);
    if (back == x) {
      k = prec;
      break;
    }
    if (prec == 16 && x >= DBL_MIN) {
      char n[16];
      int nexp = *exp;
      memcpy(n, d, 16);
      step_digits(n, 16, &nexp, back < x ? 1 : -1);
      if (digits_value(n, 16, nexp) == x) {
        memcpy(d, n, 16);
        *exp = nexp;
        k = 16;
        break;
      }
    }
  }
  while (k > 1 && d[k - 1] == '0') k--;
  return k;
}

size_t json_format_double(double x, char *out) {
  if (!isfinite(x)) {
    memcpy(out, "null", 5);
    return 4;
  }
  if (x == 0) { /* and -0, which JavaScript prints as 0 too */
    memcpy(out, "0", 2);
    return 1;
  }
  char *p = out;
  if (x < 0) {
    *p++ = '-';
    x = -x;
  }
  /* A whole number below 2^53 is its own shortest form. */
  if (x < 9007199254740992.0 && x == floor(x)) return (size_t)(p - out) + json_format_int((int64_t)x, p);
  char d[20];
  int exp;
  int k = shortest_digits(x, d, &exp);
  int n = exp + 1; /* x = 0.d × 10^n */
  if (k <= n && n <= 21) { /* 1e20 → 100000000000000000000 */
    memcpy(p, d, (size_t)k);
    p += k;
    memset(p, '0', (size_t)(n - k));
    p += n - k;
  } else if (0 < n && n <= 21) { /* 123.45 */
    memcpy(p, d, (size_t)n);
    p += n;
    *p++ = '.';
    memcpy(p, d + n, (size_t)(k - n));
    p += k - n;
  } else if (-6 < n && n <= 0) { /* 0.000001 */
    *p++ = '0';
    *p++ = '.';
    memset(p, '0', (size_t)-n);
    p += -n;
    memcpy(p, d, (size_t)k);
    p += k;
  } else { /* 1e+21, 1.5e-7, 5e-324 */
    *p++ = d[0];
    if (k > 1) {
      *p++ = '.';
      memcpy(p, d + 1, (size_t)(k - 1));
      p += k - 1;
    }
    *p++ = 'e';
    *p++ = n - 1 < 0 ? '-' : '+';
    p += json_format_int(n - 1 < 0 ? 1 - n : n - 1, p);
  }
  *p = '\0';
  return (size_t)(p - out);
}

/* ---- UTF-8 */

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

static size_t utf8_put(char *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* ---- writing strings */

/* What a byte needs in a JSON string: 0 nothing, 1 an escape, 2 a UTF-8 check. */
static const unsigned char STR_CLASS[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

int json_append_string(mw_str *out, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  if (mw_str_reserve(out, n + 2)) return -ENOMEM;
  out->p[out->len++] = '"';
  size_t i = 0, run = 0; /* s[run..i) is still to be copied as it is */
  while (i < n) {
    unsigned char cls = STR_CLASS[s[i]];
    if (!cls) {
      i++;
      continue;
    }
    size_t bad = 0;
    if (cls == 2) {
      size_t l = utf8_seq(s + i, n - i, &bad);
      if (l) {
        i += l;
        continue;
      }
    }
    if (mw_str_append(out, s + run, i - run)) return -ENOMEM;
    if (bad) {
      if (mw_str_append(out, REPLACEMENT, 3)) return -ENOMEM;
      i += bad;
    } else {
      char e[6] = {'\\', 0, '0', '0', 0, 0};
      size_t el = 2;
      switch (s[i]) {
      case '"': e[1] = '"'; break;
      case '\\': e[1] = '\\'; break;
      case '\b': e[1] = 'b'; break;
      case '\t': e[1] = 't'; break;
      case '\n': e[1] = 'n'; break;
      case '\f': e[1] = 'f'; break;
      case '\r': e[1] = 'r'; break;
      default:
        e[1] = 'u', e[4] = hex[s[i] >> 4], e[5] = hex[s[i] & 15];
        el = 6;
      }
      if (mw_str_append(out, e, el)) return -ENOMEM;
      i++;
    }
    run = i;
  }
  if (mw_str_append(out, s + run, n - run) || mw_str_appendc(out, '"')) return -ENOMEM;
  return 0;
}

/* ---- the reader */

enum {
  ST_VALUE,       /* a value must come (the start, after ':', after ',' in an array) */
  ST_FIRST_ELEM,  /* after '[': a value or ']' */
  ST_FIRST_KEY,   /* after '{': a key or '}' */
  ST_AFTER,       /* after a value in a container: ',' or its end */
  ST_DONE,        /* after the top-level value: only whitespace */
  ST_FINISHED,    /* JSON_END or JSON_ERROR was returned */
};

void json_reader_init(json_reader *r, const char *s, size_t len, mw_str *scratch) {
  memset(r, 0, sizeof *r);
  r->s = (const unsigned char *)s;
  r->len = len;
  r->scratch = scratch;
  r->state = ST_VALUE;
}

static json_token fail(json_reader *r, const char *msg, size_t at) {
  r->err = msg;
  r->err_pos = at;
  r->err_char = -1;
  r->state = ST_FINISHED;
  return JSON_ERROR;
}

/* The same, for the byte at r->pos: it is named in the message. */
static json_token fail_here(json_reader *r, const char *msg) {
  fail(r, msg, r->pos);
  if (r->pos < r->len) r->err_char = r->s[r->pos];
  return JSON_ERROR;
}

static void skip_ws(json_reader *r) {
  while (r->pos < r->len) {
    unsigned char c = r->s[r->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    r->pos++;
  }
}

static bool in_object(const json_reader *r) { return r->objects >> (r->depth - 1) & 1; }

static json_token close_container(json_reader *r) {
  bool obj = in_object(r);
  r->pos++;
  r->objects &= ~((uint64_t)1 << (r->depth - 1));
  r->depth--;
  r->state = r->depth ? ST_AFTER : ST_DONE;
  return obj ? JSON_OBJECT_END : JSON_ARRAY_END;
}

static int hex4(const unsigned char *p, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int d = pct_hex(p[i]);
    if (d < 0) return -1;
    v = v << 4 | (uint32_t)d;
  }
  *out = v;
  return 0;
}

/* At the opening quote: the string's bytes into r->str. A string without
 * escapes points into the input; one with escapes is decoded into the
 * scratch buffer. Bytes that are not UTF-8 are kept as they are: the app
 * may want to refuse them (the writer replaces them). Returns 0, or
 * JSON_ERROR. */
static int read_string(json_reader *r) {
  const unsigned char *s = r->s;
  size_t n = r->len, open = r->pos, start = r->pos + 1, pos = start;
  for (;;) {
    if (pos >= n) return fail(r, "unterminated string", open);
    unsigned char c = s[pos];
    if (c == '"') {
      r->str = (const char *)s + start;
      r->str_len = pos - start;
      r->pos = pos + 1;
      return 0;
    }
    if (c == '\\' || c < 0x20) break;
    pos++;
  }
  mw_str *out = r->scratch;
  mw_str_reset(out);
  if (mw_str_append(out, s + start, pos - start)) return fail(r, "out of memory", pos);
  for (;;) {
    if (pos >= n) return fail(r, "unterminated string", open);
    unsigned char c = s[pos];
    char u[8];
    if (c == '"') break;
    if (c < 0x20) return fail(r, "a control character in a string (it must be escaped)", pos);
    if (c != '\\') {
      size_t from = pos++;
      while (pos < n && s[pos] >= 0x20 && s[pos] != '"' && s[pos] != '\\') pos++;
      if (mw_str_append(out, s + from, pos - from)) return fail(r, "out of memory", pos);
      continue;
    }
    if (pos + 1 >= n) return fail(r, "unterminated string", open);
    unsigned char e = s[pos + 1];
    switch (e) {
    case '"': case '\\': case '/': u[0] = (char)e; break;
    case 'b': u[0] = '\b'; break;
    case 'f': u[0] = '\f'; break;
    case 'n': u[0] = '\n'; break;
    case 'r': u[0] = '\r'; break;
    case 't': u[0] = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      if (n - pos < 6 || hex4(s + pos + 2, &cp)) return fail(r, "an invalid \\u escape", pos);
      pos += 6;
      if (cp >= 0xD800 && cp <= 0xDBFF && n - pos >= 6 && s[pos] == '\\' && s[pos + 1] == 'u' &&
          !hex4(s + pos + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        pos += 6;
      } else if (cp >= 0xD800 && cp <= 0xDFFF) {
        cp = 0xFFFD; /* a lone surrogate: JSON.parse takes it, UTF-8 cannot hold it */
      }
      if (mw_str_append(out, u, utf8_put(u, cp))) return fail(r, "out of memory", pos);
      continue;
    }
    default: return fail(r, "an invalid escape in a string", pos);
    }
    if (mw_str_appendc(out, u[0])) return fail(r, "out of memory", pos);
    pos += 2;
  }
  r->str = out->p;
  r->str_len = out->len;
  r->pos = pos + 1;
  return 0;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static json_token read_number(json_reader *r) {
  const unsigned char *s = r->s;
  size_t n = r->len, start = r->pos, p = start;
  bool neg = false, whole = true, overflow = false;
  uint64_t u = 0;
  if (s[p] == '-') neg = true, p++;
  if (p >= n || !is_digit(s[p])) return fail(r, "an invalid number", start);
  if (s[p] == '0') {
    p++;
    if (p < n && is_digit(s[p])) return fail(r, "a number with a leading zero", start);
  } else {
    for (; p < n && is_digit(s[p]); p++) {
      unsigned d = (unsigned)(s[p] - '0');
      if (u > (UINT64_MAX - d) / 10) overflow = true;
      else u = u * 10 + d;
    }
  }
  if (p < n && s[p] == '.') {
    whole = false;
    p++;
    if (p >= n || !is_digit(s[p])) return fail(r, "an invalid number (a digit must follow '.')", start);
    while (p < n && is_digit(s[p])) p++;
  }
  if (p < n && (s[p] == 'e' || s[p] == 'E')) {
    whole = false;
    p++;
    if (p < n && (s[p] == '+' || s[p] == '-')) p++;
    if (p >= n || !is_digit(s[p])) return fail(r, "an invalid number (a digit must follow the exponent)", start);
    while (p < n && is_digit(s[p])) p++;
  }
  r->pos = p;
  if (whole && !overflow && (neg ? u <= (uint64_t)INT64_MAX + 1 : u <= (uint64_t)INT64_MAX)) {
    r->i = neg ? (int64_t)(0 - u) : (int64_t)u;
    return JSON_INT;
  }
  int rc = json_parse_double((const char *)s + start, p - start, &r->d);
  if (rc == -ERANGE) return fail(r, "a number too large for a double", start);
  if (rc) return fail(r, "out of memory", start);
  return JSON_FLOAT;
}

static json_token read_literal(json_reader *r, const char *lit, size_t len, json_token t) {
  if (r->len - r->pos < len || memcmp(r->s + r->pos, lit, len)) return fail(r, "an invalid literal (true, false and null are the only words)", r->pos);
  r->pos += len;
  return t;
}

static int max_depth = JSON_MAX_DEPTH;
static char depth_error[64] = "nested deeper than 64 arrays and objects";

void json_set_max_depth(int depth) {
  if (depth < 1) depth = 1;
  if (depth > JSON_MAX_DEPTH) depth = JSON_MAX_DEPTH;
  max_depth = depth;
  snprintf(depth_error, sizeof depth_error, "nested deeper than %d arrays and objects", depth);
}

int json_max_depth(void) { return max_depth; }

const char *json_depth_error(void) { return depth_error; }

static json_token read_value(json_reader *r) {
  json_token t;
  switch (r->s[r->pos]) {
  case '[':
  case '{': {
    bool obj = r->s[r->pos] == '{';
    if (r->depth >= max_depth) return fail(r, depth_error, r->pos);
    if (obj) r->objects |= (uint64_t)1 << r->depth;
    r->depth++;
    r->pos++;
    r->state = obj ? ST_FIRST_KEY : ST_FIRST_ELEM;
    return obj ? JSON_OBJECT : JSON_ARRAY;
  }
  case '"':
    if (read_string(r)) return JSON_ERROR;
    t = JSON_STRING;
    break;
  case 't': t = read_literal(r, "true", 4, JSON_TRUE); break;
  case 'f': t = read_literal(r, "false", 5, JSON_FALSE); break;
  case 'n': t = read_literal(r, "null", 4, JSON_NULL); break;
  case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
    t = read_number(r);
    break;
  default: return fail_here(r, "expected a value");
  }
  if (t != JSON_ERROR) r->state = r->depth ? ST_AFTER : ST_DONE;
  return t;
}

json_token json_next(json_reader *r) {
  if (r->state == ST_FINISHED) return r->err ? JSON_ERROR : JSON_END;
  skip_ws(r);
  bool eof = r->pos >= r->len;
  unsigned char c = eof ? 0 : r->s[r->pos];
  bool key = false;
  switch (r->state) {
  case ST_DONE:
    if (!eof) return fail_here(r, "unexpected text after the value");
    r->state = ST_FINISHED;
    return JSON_END;
  case ST_AFTER:
    if (eof) return fail(r, "unexpected end of input", r->pos);
    key = in_object(r);
    if (c == (key ? '}' : ']')) return close_container(r);
    if (c != ',') return fail_here(r, key ? "expected ',' or '}'" : "expected ',' or ']'");
    r->pos++;
    skip_ws(r);
    break;
  case ST_FIRST_ELEM:
    if (c == ']') return close_container(r);
    break;
  case ST_FIRST_KEY:
    if (c == '}') return close_container(r);
    key = true;
    break;
  default: break;
  }
  if (r->pos >= r->len) return fail(r, "unexpected end of input", r->pos);
  if (!key) return read_value(r);
  if (r->s[r->pos] != '"') return fail_here(r, "expected a string (an object's key)");
  if (read_string(r)) return JSON_ERROR;
  skip_ws(r);
  if (r->pos >= r->len) return fail(r, "unexpected end of input", r->pos);
  if (r->s[r->pos] != ':') return fail_here(r, "expected ':'");
  r->pos++;
  r->state = ST_VALUE;
  return JSON_KEY;
}
