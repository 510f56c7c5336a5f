/* json.h — JSON text as JavaScript writes and reads it: numbers formatted
 * as Number#toString does (the shortest decimal that reads back to the same
 * double), strings escaped as JSON.stringify does, and a strict pull reader
 * (RFC 8259) that hands out one token at a time. Bytes in, bytes or tokens
 * out: no Lua and no I/O here (the Lua side is l_json.c), so a unit test
 * and a fuzzer drive it directly.
 *
 * Text that is not UTF-8 never leaves as it came: the writer replaces each
 * ill-formed sequence with U+FFFD, one per maximal subpart, as TextDecoder
 * and Node's Buffer#toString do, so a WebSocket text frame is always valid.
 * The reader hands such bytes over unchanged (Socket.IO packets are checked
 * for UTF-8 before, and an app can refuse a request body that is not). */
#ifndef JSON_H
#define JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mw.h"

/* Nesting of arrays and objects, both ways (the top-level container counts
 * as one). The same bound as MW_JSON_MAX_DEPTH, which every Socket.IO packet
 * that arrives is checked against: what arrives can always be sent on. */
#define JSON_MAX_DEPTH 64

/* The nesting allowed now, 1 to JSON_MAX_DEPTH (--max-json-depth; the
 * default is JSON_MAX_DEPTH): for the reader, for json.encode and for
 * the Socket.IO packets that arrive. One value for the process. */
void json_set_max_depth(int depth);
int json_max_depth(void);
/* "nested deeper than N arrays and objects", N the limit now. */
const char *json_depth_error(void);

/* Room for the longest number json_format_* writes, and the NUL. */
#define JSON_NUMBER_MAX 32

/* Writes x as JavaScript's Number#toString writes it ("1", "0.1",
 * "0.30000000000000004", "1e+21", "5e-324", "100000000000000000000"; -0 is
 * "0") and NaN and the infinities as "null", as JSON.stringify does. out has
 * room for JSON_NUMBER_MAX bytes; returns the length (out is NUL-terminated). */
size_t json_format_double(double x, char *out);
/* Writes v in decimal, exactly. Same contract. */
size_t json_format_int(int64_t v, char *out);

/* Appends s (n bytes) as a quoted JSON string: '"' and '\' escaped, control
 * characters as \b \t \n \f \r or \u00XX (lower-case hex, as JSON.stringify
 * writes them), everything else as UTF-8, ill-formed sequences as U+FFFD.
 * Returns 0 or -ENOMEM (out may then hold part of the string). */
int json_append_string(mw_str *out, const char *s, size_t n);

/* Parses a number token (the JSON grammar, already checked) into a double,
 * correctly rounded, whatever the process's locale. Returns 0, or -ERANGE
 * when it is too large for a double (JSON.parse would make it Infinity). */
int json_parse_double(const char *s, size_t n, double *out);

/* ---- the reader */

typedef enum json_token {
  JSON_END,          /* the value is complete and nothing but whitespace follows */
  JSON_ERROR,        /* r->err says what and r->err_pos where (a byte offset) */
  JSON_NULL,
  JSON_FALSE,
  JSON_TRUE,
  JSON_INT,          /* r->i: a number without fraction or exponent that fits int64 */
  JSON_FLOAT,        /* r->d: any other number */
  JSON_STRING,       /* r->str, r->str_len: the decoded bytes (UTF-8) */
  JSON_KEY,          /* the same, for an object's key; its value comes next */
  JSON_ARRAY,        /* '[' */
  JSON_ARRAY_END,
  JSON_OBJECT,       /* '{' */
  JSON_OBJECT_END,
} json_token;

typedef struct json_reader {
  const unsigned char *s;
  size_t len, pos;
  int depth;          /* containers open */
  int state;
  uint64_t objects;   /* bit d: the container at depth d+1 is an object */
  mw_str *scratch;    /* borrowed: where a string with escapes is decoded */
  /* the token json_next returned */
  const char *str;    /* points into the input, or into *scratch until the next call */
  size_t str_len;
  int64_t i;
  double d;
  const char *err;    /* a static message */
  size_t err_pos;
  int err_char;       /* the byte found at err_pos when that is the trouble, else -1 */
} json_reader;

/* Starts reading one JSON value from s (len bytes, borrowed; need not be
 * NUL-terminated: nothing past len is read). scratch (borrowed, may be
 * shared between readers that do not run at the same time) holds decoded
 * strings; the caller frees it. */
void json_reader_init(json_reader *r, const char *s, size_t len, mw_str *scratch);

/* The next token. After JSON_END or JSON_ERROR it returns the same again.
 * Strings come decoded: escapes resolved, a proper surrogate pair as its
 * character, a lone surrogate escape as U+FFFD (JSON.parse takes one),
 * other bytes as they are (UTF-8 or not). Nesting deeper than JSON_MAX_DEPTH, a number
 * too large for a double, and anything RFC 8259 does not allow (a byte
 * order mark, trailing commas, comments, single quotes, leading zeros, raw
 * control characters in strings, text after the value) are errors. */
json_token json_next(json_reader *r);

#endif
