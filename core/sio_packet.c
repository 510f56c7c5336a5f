/* sio_packet.c — Socket.IO v5 packet decoding and heads, strict JSON check. */
#include "sio_packet.h"

#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pct.h"
#include "utf8.h"

/* ---- JSON */

typedef struct jscan {
  const unsigned char *s;
  size_t len, pos;
} jscan;

static void json_ws(jscan *j) {
  while (j->pos < j->len) {
    unsigned char c = j->s[j->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    j->pos++;
  }
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* At the opening quote. */
static int json_string(jscan *j) {
  j->pos++;
  while (j->pos < j->len) {
    unsigned char c = j->s[j->pos];
    if (c == '"') {
      j->pos++;
      return 0;
    }
    if (c < 0x20) return -EINVAL; /* raw control characters must be escaped */
    if (c == '\\') {
      if (j->pos + 1 >= j->len) return -EINVAL;
      unsigned char e = j->s[j->pos + 1];
      if (e == 'u') {
        /* Any four hex digits: JSON.parse takes lone surrogates, so do we. */
        if (j->len - j->pos < 6) return -EINVAL;
        for (size_t k = 2; k < 6; k++)
          if (pct_hex(j->s[j->pos + k]) < 0) return -EINVAL;
        j->pos += 6;
      } else if (e && strchr("\"\\/bfnrt", e)) {
        j->pos += 2;
      } else {
        return -EINVAL;
      }
      continue;
    }
    size_t n = utf8_seq(j->s + j->pos, j->len - j->pos, NULL);
    if (!n) return -EINVAL;
    j->pos += n;
  }
  return -EINVAL; /* unterminated */
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int json_number(jscan *j) {
  const unsigned char *s = j->s;
  size_t p = j->pos, n = j->len;
  if (p < n && s[p] == '-') p++;
  if (p >= n) return -EINVAL;
  if (s[p] == '0') p++;
  else if (s[p] >= '1' && s[p] <= '9')
    while (p < n && is_digit(s[p])) p++;
  else return -EINVAL;
  if (p < n && s[p] == '.') {
    p++;
    if (p >= n || !is_digit(s[p])) return -EINVAL;
    while (p < n && is_digit(s[p])) p++;
  }
  if (p < n && (s[p] == 'e' || s[p] == 'E')) {
    p++;
    if (p < n && (s[p] == '+' || s[p] == '-')) p++;
    if (p >= n || !is_digit(s[p])) return -EINVAL;
    while (p < n && is_digit(s[p])) p++;
  }
  j->pos = p;
  return 0;
}

static int json_literal(jscan *j, const char *lit) {
  size_t n = strlen(lit);
  if (j->len - j->pos < n || memcmp(j->s + j->pos, lit, n)) return -EINVAL;
  j->pos += n;
  return 0;
}

/* Scans one value at j->pos (no leading whitespace) and stores its kind.
 * Recursion is bounded by json_max_depth() (at most MW_JSON_MAX_DEPTH), so the stack stays small
 * whatever the input. */
static int json_value(jscan *j, int depth, char *kind) {
  if (j->pos >= j->len) return -EINVAL;
  unsigned char c = j->s[j->pos];
  char k;
  switch (c) {
  case '{':
  case '[': {
    unsigned char close = c == '{' ? '}' : ']';
    k = c == '{' ? 'o' : 'a';
    if (depth >= json_max_depth()) return -EINVAL;
    j->pos++;
    json_ws(j);
    if (j->pos < j->len && j->s[j->pos] == close) {
      j->pos++;
      break;
    }
    for (;;) {
      char sub;
      if (c == '{') {
        if (j->pos >= j->len || j->s[j->pos] != '"' || json_string(j)) return -EINVAL;
        json_ws(j);
        if (j->pos >= j->len || j->s[j->pos] != ':') return -EINVAL;
        j->pos++;
        json_ws(j);
      }
      if (json_value(j, depth + 1, &sub)) return -EINVAL;
      json_ws(j);
      if (j->pos >= j->len) return -EINVAL;
      if (j->s[j->pos] == close) {
        j->pos++;
        break;
      }
      if (j->s[j->pos] != ',') return -EINVAL;
      j->pos++;
      json_ws(j);
    }
    break;
  }
  case '"':
    k = 's';
    if (json_string(j)) return -EINVAL;
    break;
  case 't':
    k = 't';
    if (json_literal(j, "true")) return -EINVAL;
    break;
  case 'f':
    k = 'f';
    if (json_literal(j, "false")) return -EINVAL;
    break;
  case 'n':
    k = 'z';
    if (json_literal(j, "null")) return -EINVAL;
    break;
  default:
    k = 'n';
    if (json_number(j)) return -EINVAL;
    break;
  }
  *kind = k;
  return 0;
}

int mw_json_check(const char *s, size_t len, char *first) {
  jscan j = {(const unsigned char *)s, len, 0};
  char kind;
  json_ws(&j);
  if (json_value(&j, 0, &kind)) return -EINVAL;
  json_ws(&j);
  if (j.pos != len) return -EINVAL; /* trailing garbage */
  if (first) *first = kind;
  return 0;
}

/* The first element of a JSON array already validated by mw_json_check:
 * its token and kind. Returns -EINVAL for an empty array or a non-array. */
static int json_first_element(const char *s, size_t len, const char **tok, size_t *toklen, char *kind) {
  jscan j = {(const unsigned char *)s, len, 0};
  json_ws(&j);
  if (j.pos >= len || s[j.pos] != '[') return -EINVAL;
  j.pos++;
  json_ws(&j);
  if (j.pos >= len || s[j.pos] == ']') return -EINVAL;
  size_t start = j.pos;
  if (json_value(&j, 1, kind)) return -EINVAL;
  *tok = s + start;
  *toklen = j.pos - start;
  return 0;
}

/* Whether a valid JSON string token decodes to the ASCII string lit. Escapes
 * are decoded because JSON.parse decodes them: "connec\u0074" is "connect". */
static bool json_string_equals(const char *tok, size_t len, const char *lit) {
  const unsigned char *s = (const unsigned char *)tok;
  size_t i = 1, end = len - 1, k = 0;
  while (i < end) {
    unsigned c = s[i];
    if (c == '\\') {
      unsigned char e = s[i + 1];
      if (e == 'u') {
        c = (unsigned)(pct_hex(s[i + 2]) << 12 | pct_hex(s[i + 3]) << 8 | pct_hex(s[i + 4]) << 4 | pct_hex(s[i + 5]));
        i += 6;
      } else {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        c = (unsigned char)to[strchr(from, e) - from];
        i += 2;
      }
    } else {
      i++;
    }
    if (!lit[k] || c != (unsigned char)lit[k]) return false;
    k++;
  }
  return lit[k] == '\0';
}

/* These names have a meaning of their own to the JS client and server. */
static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

/* ---- packets */

/* A namespace the decoder reads back as itself: '/' first, no ',' (it ends
 * the namespace), valid UTF-8 without control characters. */
static bool nsp_valid(const char *nsp, size_t len) {
  const unsigned char *s = (const unsigned char *)nsp;
  if (len == 0 || s[0] != '/') return false;
  for (size_t i = 0; i < len;) {
    unsigned char c = s[i];
    if (c < 0x20 || c == 0x7F || c == ',') return false;
    if (c == 0xC2 && i + 1 < len && s[i + 1] < 0xA0) return false; /* C1 controls */
    size_t n = utf8_seq(s + i, len - i, NULL);
    if (!n) return false;
    i += n;
  }
  return true;
}

int sio_packet_decode(const char *s, size_t len, sio_packet *out) {
  if (len == 0 || s[0] < '0' || s[0] > '6') return -EINVAL;
  sio_packet p = {.type = s[0] - '0', .nsp = "/", .nsp_len = 1, .id = -1, .data = "", .data_len = 0};
  size_t i = 1;

  if (p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK) {
    size_t start = i;
    int n = 0;
    while (i < len && is_digit((unsigned char)s[i])) {
      n = n * 10 + (s[i] - '0');
      if (n > SIO_MAX_ATTACHMENTS) return -EINVAL; /* also keeps n from overflowing */
      i++;
    }
    if (i == start || i >= len || s[i] != '-' || n < 1) return -EINVAL;
    p.attachments = n;
    i++;
  }

  if (i < len && s[i] == '/') {
    const char *comma = memchr(s + i, ',', len - i);
    size_t end = comma ? (size_t)(comma - s) : len;
    if (!nsp_valid(s + i, end - i)) return -EINVAL;
    p.nsp = s + i;
    p.nsp_len = end - i;
    i = comma ? end + 1 : end;
  }

  if (i < len && is_digit((unsigned char)s[i])) {
    size_t start = i;
    int64_t id = 0;
    while (i < len && is_digit((unsigned char)s[i])) {
      if (i - start >= SIO_MAX_ACK_DIGITS) return -EINVAL;
      id = id * 10 + (s[i] - '0');
      i++;
    }
    p.id = id;
  }

  p.data = s + i;
  p.data_len = len - i;
  char kind = 0;
  if (p.data_len) {
    unsigned char c = (unsigned char)p.data[0];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return -EINVAL;
    if (mw_json_check(p.data, p.data_len, &kind)) return -EINVAL;
  }

  switch (p.type) {
  case SIO_CONNECT:
    if (kind && kind != 'o') return -EINVAL;
    break;
  case SIO_DISCONNECT:
    if (kind) return -EINVAL;
    break;
  case SIO_CONNECT_ERROR:
    if (kind != 'o' && kind != 's') return -EINVAL;
    break;
  case SIO_EVENT:
  case SIO_BINARY_EVENT: {
    const char *tok;
    size_t toklen;
    char first;
    if (kind != 'a' || json_first_element(p.data, p.data_len, &tok, &toklen, &first)) return -EINVAL;
    if (first == 's') {
      for (size_t k = 0; k < MW_ARRAY_LEN(reserved_events); k++)
        if (json_string_equals(tok, toklen, reserved_events[k])) return -EINVAL;
    } else if (first != 'n') {
      return -EINVAL;
    }
    break;
  }
  case SIO_ACK:
  case SIO_BINARY_ACK:
    if (kind != 'a') return -EINVAL;
    break;
  }
  *out = p;
  return 0;
}

int sio_event_name(const sio_packet *p, const char **name, size_t *len) {
  char kind;
  if (p->type != SIO_EVENT && p->type != SIO_BINARY_EVENT) return -EINVAL;
  if (json_first_element(p->data, p->data_len, name, len, &kind)) return -EINVAL;
  return (kind == 's' || kind == 'n') ? 0 : -EINVAL;
}

int sio_packet_head(mw_str *out, int type, int attachments, const char *nsp, size_t nsp_len, int64_t id) {
  if (type < SIO_CONNECT || type > SIO_BINARY_ACK) return -EINVAL;
  bool binary = type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK;
  if (binary && (attachments < 1 || attachments > SIO_MAX_ATTACHMENTS)) return -EINVAL;
  if (!nsp || nsp_len == 0 || (nsp_len == 1 && nsp[0] == '/')) nsp_len = 0;
  else if (!nsp_valid(nsp, nsp_len)) return -EINVAL;
  if (id > SIO_MAX_ACK_ID) return -EINVAL;
  /* Format the small fields on the stack, then append once: either the
   * whole head lands or nothing does. */
  char small[48];
  int n = snprintf(small, sizeof small, "%d", type);
  if (binary) n += snprintf(small + n, sizeof small - (size_t)n, "%d-", attachments);
  size_t used = (size_t)n;
  char idbuf[24];
  int idn = id >= 0 ? snprintf(idbuf, sizeof idbuf, "%" PRId64, id) : 0;
  if (mw_str_reserve(out, used + nsp_len + (nsp_len ? 1 : 0) + (size_t)idn)) return -ENOMEM;
  mw_str_append(out, small, used);
  if (nsp_len) {
    mw_str_append(out, nsp, nsp_len);
    mw_str_appendc(out, ',');
  }
  if (idn) mw_str_append(out, idbuf, (size_t)idn);
  return 0;
}
