/* test_sio_packet.c — Socket.IO v5 packets: the examples of the protocol
 * document, what the official decoder rejects, heads and round trips, and the
 * strict JSON validator underneath. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio_packet.h"
#include "sio_packet.h"

#include "check.h"

/* A byte string that may hold NULs: the literal's length, not strlen. */
#define B(lit) lit, sizeof(lit) - 1

static bool eq(const char *p, size_t n, const char *z) { return n == strlen(z) && memcmp(p, z, n) == 0; }

/* ---- JSON */

static void test_json_valid(void) {
  static const struct { const char *s; size_t len; char kind; } t[] = {
      {B("{}"), 'o'},
      {B("[]"), 'a'},
      {B("\"\""), 's'},
      {B("0"), 'n'},
      {B("-0"), 'n'},
      {B("-12.5e+3"), 'n'},
      {B("1E-7"), 'n'},
      {B("0.0"), 'n'},
      {B("123456789012345678901234567890"), 'n'},
      {B("true"), 't'},
      {B("false"), 'f'},
      {B("null"), 'z'},
      {B(" \t\r\n{ \"a\" : [ 1 , 2 , { } ] , \"b\" : null } \n"), 'o'},
      {B("{\"a\":1,\"a\":2}"), 'o'}, /* duplicate keys: JSON.parse keeps the last */
      {B("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD834\\uDD1E\"]"), 'a'},
      {B("\"\\ud800\""), 's'},                 /* lone surrogate escape: JSON.parse takes it */
      {B("\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\""), 's'}, /* é € 𝄞 */
      {B("\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\""), 's'}, /* U+FFFF, U+10FFFF */
      {B("\"\x7f\""), 's'},                    /* DEL is not a JSON control character */
      {B("[[[[[[[[[[]]]]]]]]]]"), 'a'},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(t); i++) {
    char kind = 0;
    int r = mw_json_check(t[i].s, t[i].len, &kind);
    CHECK(r == 0 && kind == t[i].kind);
    if (r || kind != t[i].kind) fprintf(stderr, "  json #%zu: rc %d kind %c\n", i, r, kind ? kind : '0');
  }
  CHECK(mw_json_check(B("[1]"), NULL) == 0);
}

static void test_json_invalid(void) {
  static const struct { const char *s; size_t len; } t[] = {
      {B("")}, {B(" ")}, {B("[")}, {B("]")}, {B("{")}, {B("[1,")}, {B("[1,]")}, {B("[,1]")},
      {B("{\"a\"}")}, {B("{\"a\":}")}, {B("{\"a\":1,}")}, {B("{a:1}")}, {B("{1:1}")}, {B("{'a':1}")},
      {B("01")}, {B("[01]")}, {B("-")}, {B("+1")}, {B("1.")}, {B(".5")}, {B("1e")}, {B("1e+")},
      {B("0x10")}, {B("NaN")}, {B("Infinity")}, {B("-Infinity")},
      {B("tru")}, {B("True")}, {B("nul")}, {B("nulll")}, {B("undefined")},
      {B("\"abc")}, {B("\"\\\"")}, {B("\"\\x41\"")}, {B("\"\\a\"")}, {B("\"\\u12\"")}, {B("\"\\u12G4\"")},
      {B("\"\\\"")}, {B("\"\\")}, {B("\"\\u")},
      {B("\"a\tb\"")}, {B("\"a\nb\"")}, {B("\"\x1f\"")}, {B("\"\x00\"")}, /* raw control characters */
      {B("\"\xc0\xaf\"")},         /* overlong '/' */
      {B("\"\xe0\x80\xaf\"")},     /* overlong */
      {B("\"\xed\xa0\x80\"")},     /* UTF-8 encoded surrogate */
      {B("\"\xf4\x90\x80\x80\"")}, /* above U+10FFFF */
      {B("\"\xf5\x80\x80\x80\"")}, {B("\"\xff\"")}, {B("\"\x80\"")}, {B("\"\xe2\x82\"")}, {B("\"\xe2\x82")},
      {B("\xef\xbb\xbf{}")}, /* a BOM is not whitespace to JSON.parse */
      {B("[1] [2]")}, {B("{}x")}, {B("[\"a\"]garbage")}, {B("1 2")}, {B("\"a\"\"b\"")},
      {B("[1]\x00")}, {B("\x0c[1]")}, /* form feed is not JSON whitespace */
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(t); i++) {
    char kind = 'X';
    int r = mw_json_check(t[i].s, t[i].len, &kind);
    CHECK(r == -EINVAL && kind == 'X');
    if (r != -EINVAL) fprintf(stderr, "  accepted bad json #%zu\n", i);
  }
}

static void test_json_depth(void) {
  /* Arrays and objects alternate: both count towards the limit. */
  for (int depth = MW_JSON_MAX_DEPTH; depth <= MW_JSON_MAX_DEPTH + 1; depth++) {
    mw_str s = {0};
    for (int k = 0; k < depth; k++) mw_str_appendz(&s, k % 2 ? "{\"k\":" : "[");
    mw_str_appendz(&s, "1");
    for (int k = depth - 1; k >= 0; k--) mw_str_appendz(&s, k % 2 ? "}" : "]");
    int r = mw_json_check(s.p, s.len, NULL);
    CHECK(depth <= MW_JSON_MAX_DEPTH ? r == 0 : r == -EINVAL);
    /* As an event, the event array itself is the first level. */
    mw_str ev = {0};
    mw_str_appendz(&ev, "2[\"deep\",");
    for (int k = 1; k < depth; k++) mw_str_appendc(&ev, '[');
    for (int k = 1; k < depth; k++) mw_str_appendc(&ev, ']');
    mw_str_appendc(&ev, ']');
    sio_packet p;
    r = sio_packet_decode(ev.p, ev.len, &p);
    CHECK(depth <= MW_JSON_MAX_DEPTH ? r == 0 : r == -EINVAL);
    mw_str_free(&s);
    mw_str_free(&ev);
  }
  /* Far deeper than the limit fails at the limit, not at the stack's end. */
  mw_str s = {0};
  for (int k = 0; k < 100000; k++) mw_str_appendc(&s, '[');
  CHECK(mw_json_check(s.p, s.len, NULL) == -EINVAL);
  mw_str_free(&s);
}

/* ---- packets */

typedef struct sio_case {
  const char *s;
  size_t len;
  int rc, type, attachments;
  const char *nsp;
  int64_t id;
  const char *data;
} sio_case;

/* The valid packets: the protocol document's examples first. */
static const sio_case valid[] = {
    {B("0"), 0, SIO_CONNECT, 0, "/", -1, ""},
    {B("0/admin,"), 0, SIO_CONNECT, 0, "/admin", -1, ""},
    {B("0/admin,{\"token\":\"123\"}"), 0, SIO_CONNECT, 0, "/admin", -1, "{\"token\":\"123\"}"},
    {B("0{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"), 0, SIO_CONNECT, 0, "/", -1, "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"},
    {B("2[\"hello\",1]"), 0, SIO_EVENT, 0, "/", -1, "[\"hello\",1]"},
    {B("2[\"foo\"]"), 0, SIO_EVENT, 0, "/", -1, "[\"foo\"]"},
    {B("2/admin,[\"bar\"]"), 0, SIO_EVENT, 0, "/admin", -1, "[\"bar\"]"},
    {B("212[\"foo\"]"), 0, SIO_EVENT, 0, "/", 12, "[\"foo\"]"},
    {B("2/admin,456[\"project:delete\",123]"), 0, SIO_EVENT, 0, "/admin", 456, "[\"project:delete\",123]"},
    {B("3/admin,456[]"), 0, SIO_ACK, 0, "/admin", 456, "[]"},
    {B("3/admin,13[\"bar\"]"), 0, SIO_ACK, 0, "/admin", 13, "[\"bar\"]"},
    {B("51-[\"hello\",{\"_placeholder\":true,\"num\":0}]"), 0, SIO_BINARY_EVENT, 1, "/", -1,
     "[\"hello\",{\"_placeholder\":true,\"num\":0}]"},
    {B("52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"), 0, SIO_BINARY_EVENT,
     2, "/admin", -1, "[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"},
    {B("61-/admin,456[{\"_placeholder\":true,\"num\":0}]"), 0, SIO_BINARY_ACK, 1, "/admin", 456,
     "[{\"_placeholder\":true,\"num\":0}]"},
    {B("61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]"), 0, SIO_BINARY_ACK, 1, "/", 15,
     "[\"bar\",{\"_placeholder\":true,\"num\":0}]"},
    {B("4{\"message\":\"Not authorized\"}"), 0, SIO_CONNECT_ERROR, 0, "/", -1, "{\"message\":\"Not authorized\"}"},
    {B("4\"Invalid namespace\""), 0, SIO_CONNECT_ERROR, 0, "/", -1, "\"Invalid namespace\""},
    {B("1"), 0, SIO_DISCONNECT, 0, "/", -1, ""},
    {B("1/admin,"), 0, SIO_DISCONNECT, 0, "/admin", -1, ""},
    /* What the official decoder also accepts. */
    {B("0/admin"), 0, SIO_CONNECT, 0, "/admin", -1, ""}, /* namespace up to the end, no ',' */
    {B("1/admin"), 0, SIO_DISCONNECT, 0, "/admin", -1, ""},
    {B("0/,{}"), 0, SIO_CONNECT, 0, "/", -1, "{}"},
    {B("0/admin,5{}"), 0, SIO_CONNECT, 0, "/admin", 5, "{}"}, /* an id on CONNECT is parsed, then ignored */
    {B("15"), 0, SIO_DISCONNECT, 0, "/", 5, ""},
    {B("2[1]"), 0, SIO_EVENT, 0, "/", -1, "[1]"},         /* numeric event names */
    {B("2[-1.5e3,\"x\"]"), 0, SIO_EVENT, 0, "/", -1, "[-1.5e3,\"x\"]"},
    {B("2[\"connected\"]"), 0, SIO_EVENT, 0, "/", -1, "[\"connected\"]"},
    {B("2[\"Connect\"]"), 0, SIO_EVENT, 0, "/", -1, "[\"Connect\"]"},
    {B("2[\"\"]"), 0, SIO_EVENT, 0, "/", -1, "[\"\"]"},
    {B("2[\"hello\"] \n"), 0, SIO_EVENT, 0, "/", -1, "[\"hello\"] \n"}, /* trailing JSON whitespace */
    {B("2[ \"hello\" ]"), 0, SIO_EVENT, 0, "/", -1, "[ \"hello\" ]"},
    {B("2007[\"a\"]"), 0, SIO_EVENT, 0, "/", 7, "[\"a\"]"},
    {B("2999999999999999[\"a\"]"), 0, SIO_EVENT, 0, "/", 999999999999999, "[\"a\"]"},
    {B("3[]"), 0, SIO_ACK, 0, "/", -1, "[]"},
    {B("61-[]"), 0, SIO_BINARY_ACK, 1, "/", -1, "[]"},
    {B("510-[\"a\"]"), 0, SIO_BINARY_EVENT, 10, "/", -1, "[\"a\"]"},
    {B("501-[\"a\"]"), 0, SIO_BINARY_EVENT, 1, "/", -1, "[\"a\"]"},
    {B("2/caf\xc3\xa9,[\"a\"]"), 0, SIO_EVENT, 0, "/caf\xc3\xa9", -1, "[\"a\"]"},
    {B("2/a b{}[\"x\"],[\"a\"]"), 0, SIO_EVENT, 0, "/a b{}[\"x\"]", -1, "[\"a\"]"},
    {B("2[\"h\xc3\xa9llo\",\"\\ud83d\"]"), 0, SIO_EVENT, 0, "/", -1, "[\"h\xc3\xa9llo\",\"\\ud83d\"]"},
    {B("0{\"a\":{\"b\":[1,2,{}]}}"), 0, SIO_CONNECT, 0, "/", -1, "{\"a\":{\"b\":[1,2,{}]}}"},
};

static const struct { const char *s; size_t len; const char *why; } invalid[] = {
    {B(""), "empty (JS reads it as CONNECT: Number(\"\") is 0)"},
    {B(" "), "space as the type"},
    {B("7"), "unknown type"},
    {B("9[\"a\"]"), "unknown type"},
    {B("a"), "unknown type"},
    {B("2[\"connect\"]"), "reserved event"},
    {B("2[\"connect_error\"]"), "reserved event"},
    {B("2[\"disconnect\",1]"), "reserved event"},
    {B("2[\"disconnecting\"]"), "reserved event"},
    {B("2[\"newListener\"]"), "reserved event"},
    {B("2[\"removeListener\"]"), "reserved event"},
    {B("2[\"connec\\u0074\"]"), "reserved event behind an escape"},
    {B("2[\"\\u0063onnect\"]"), "reserved event behind an escape"},
    {B("2/admin,1[\"disconnect\"]"), "reserved event"},
    {B("51-[\"connect\"]"), "reserved event"},
    {B("2[]"), "empty event"},
    {B("2[ ]"), "empty event"},
    {B("2{}"), "event is not an array"},
    {B("2\"x\""), "event is not an array"},
    {B("2[null]"), "event name null"},
    {B("2[true]"), "event name true"},
    {B("2[{}]"), "event name object"},
    {B("2[[\"a\"]]"), "event name array"},
    {B("2"), "event without payload"},
    {B("2/admin,"), "event without payload"},
    {B("2/admin,12"), "event without payload"},
    {B("2/admin[\"x\"]"), "no ',': all of it is the namespace, so no payload"},
    {B("3"), "ack without payload"},
    {B("3{}"), "ack is not an array"},
    {B("3\"x\""), "ack is not an array"},
    {B("4"), "connect_error without payload"},
    {B("4[]"), "connect_error array"},
    {B("41"), "connect_error number: 1 is read as the ack id, leaving no payload"},
    {B("4null"), "connect_error null"},
    {B("0/admin,[]"), "connect with an array"},
    {B("0\"x\""), "connect with a string"},
    {B("0null"), "connect with null"},
    {B("0 {}"), "leading whitespace (JS would take it as ack id 0)"},
    {B("2 [\"a\"]"), "leading whitespace"},
    {B("2/admin, [\"a\"]"), "leading whitespace"},
    {B("21 [\"a\"]"), "leading whitespace after the id"},
    {B("1{}"), "disconnect with payload"},
    {B("1/admin,{}"), "disconnect with payload"},
    {B("1[]"), "disconnect with payload"},
    {B("2[1,"), "truncated JSON"},
    {B("2[\"a\"]garbage"), "trailing garbage"},
    {B("2[\"a\"],"), "trailing garbage"},
    {B("2[\"a\"][\"b\"]"), "two values"},
    {B("2[01]"), "leading zero"},
    {B("2[\"a\",01]"), "leading zero"},
    {B("2[\"a\\x\"]"), "bad escape"},
    {B("2[\"a\tb\"]"), "raw control character"},
    {B("2[\"a\x00\"]"), "raw NUL"},
    {B("2[\"\xc3\x28\"]"), "invalid UTF-8"},
    {B("2[\"\xed\xa0\x80\"]"), "UTF-8 surrogate"},
    {B("5-[]"), "no attachment count"},
    {B("5[\"a\"]"), "no attachment count nor '-'"},
    {B("51[\"a\"]"), "no '-'"},
    {B("51"), "no '-'"},
    {B("5"), "nothing"},
    {B("50-[\"a\"]"), "zero attachments"},
    {B("511-[\"a\"]"), "over SIO_MAX_ATTACHMENTS"},
    {B("599999999999999999999-[\"a\"]"), "absurd count"},
    {B("5 1-[\"a\"]"), "space in the count"},
    {B("5+1-[\"a\"]"), "sign in the count"},
    {B("51e0-[\"a\"]"), "exponent in the count"},
    {B("61-"), "binary ack without payload"},
    {B("61-{}"), "binary ack is not an array"},
    {B("21234567890123456[\"a\"]"), "16-digit ack id"},
    {B("0/ad\x01min,"), "control character in the namespace"},
    {B("0/admin\n,"), "control character in the namespace"},
    {B("0/ad\x7fmin,"), "DEL in the namespace"},
    {B("0/ad\xc2\x85min,"), "C1 control in the namespace"},
    {B("0/ad\xffmin,"), "invalid UTF-8 in the namespace"},
    {B("0/ad\xc3,"), "truncated UTF-8 in the namespace"},
    {B("0/\x00,"), "NUL in the namespace"},
    {B("0admin,{}"), "namespace without '/' is payload, and bad JSON"},
};

static void test_decode_valid(void) {
  for (size_t i = 0; i < MW_ARRAY_LEN(valid); i++) {
    const sio_case *c = &valid[i];
    sio_packet p;
    memset(&p, 0xAB, sizeof p);
    int r = sio_packet_decode(c->s, c->len, &p);
    bool ok = r == 0 && p.type == c->type && p.attachments == c->attachments && eq(p.nsp, p.nsp_len, c->nsp) &&
              p.id == c->id && eq(p.data, p.data_len, c->data);
    CHECK(ok);
    if (!ok) fprintf(stderr, "  valid #%zu (%s): rc %d\n", i, c->s, r);
  }
}

static void test_decode_invalid(void) {
  for (size_t i = 0; i < MW_ARRAY_LEN(invalid); i++) {
    sio_packet p = {.type = 99};
    int r = sio_packet_decode(invalid[i].s, invalid[i].len, &p);
    CHECK(r == -EINVAL && p.type == 99); /* out untouched on error */
    if (r != -EINVAL) fprintf(stderr, "  accepted #%zu %s: %s\n", i, invalid[i].s, invalid[i].why);
  }
}

/* The data pointers point into the input: no copies. */
static void test_decode_borrows(void) {
  const char *s = "2/admin,456[\"project:delete\",123]";
  sio_packet p;
  CHECK(sio_packet_decode(s, strlen(s), &p) == 0);
  CHECK(p.nsp == s + 1);
  CHECK(p.data == s + 11);
}

/* Through Engine.IO first, as the packets arrive: "4" + the Socket.IO packet. */
static void test_over_engine_io(void) {
  static const char *wire[] = {
      "451-[\"hello\",{\"_placeholder\":true,\"num\":0}]",
      "461-/admin,456[{\"_placeholder\":true,\"num\":0}]",
      "42[\"hello\"]",
      "40/admin,",
  };
  static const int types[] = {SIO_BINARY_EVENT, SIO_BINARY_ACK, SIO_EVENT, SIO_CONNECT};
  for (size_t i = 0; i < MW_ARRAY_LEN(wire); i++) {
    eio_packet e;
    sio_packet p;
    CHECK(eio_packet_decode(wire[i], strlen(wire[i]), false, &e) == 0 && e.type == EIO_MESSAGE);
    CHECK(sio_packet_decode(e.data, e.len, &p) == 0 && p.type == types[i]);
  }
  /* And from a polling body with two packets. */
  const char body[] = "42[\"hello\"]\x1e" "42/admin,1[\"tellme\"]";
  eio_packet e;
  sio_packet p;
  CHECK(eio_packet_decode(body, 11, false, &e) == 0);
  CHECK(sio_packet_decode(e.data, e.len, &p) == 0 && p.id == -1);
  CHECK(eio_packet_decode(body + 12, strlen(body + 12), false, &e) == 0);
  CHECK(sio_packet_decode(e.data, e.len, &p) == 0 && p.id == 1 && eq(p.nsp, p.nsp_len, "/admin"));
}

static void test_event_name(void) {
  static const struct { const char *s; const char *name; } t[] = {
      {"2[\"hello\",1]", "\"hello\""},
      {"2/admin,456[\"project:delete\",123]", "\"project:delete\""},
      {"2[ \"spaced\" , 2]", "\"spaced\""},
      {"2[\"a\\\"b\"]", "\"a\\\"b\""},
      {"51-[\"up\",{\"_placeholder\":true,\"num\":0}]", "\"up\""},
      {"2[42,\"x\"]", "42"},
      {"2[-1.5e3]", "-1.5e3"},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(t); i++) {
    sio_packet p;
    const char *name = NULL;
    size_t len = 0;
    CHECK(sio_packet_decode(t[i].s, strlen(t[i].s), &p) == 0);
    CHECK(sio_event_name(&p, &name, &len) == 0 && eq(name, len, t[i].name));
  }
  static const char *not_events[] = {"3[\"a\"]", "0", "0{}", "1", "4\"x\"", "61-[\"a\"]"};
  for (size_t i = 0; i < MW_ARRAY_LEN(not_events); i++) {
    sio_packet p;
    const char *name = NULL;
    size_t len = 0;
    CHECK(sio_packet_decode(not_events[i], strlen(not_events[i]), &p) == 0);
    CHECK(sio_event_name(&p, &name, &len) == -EINVAL);
  }
}

static void test_head(void) {
  static const struct {
    int type, attachments;
    const char *nsp;
    int64_t id;
    int rc;
    const char *want;
  } t[] = {
      {SIO_CONNECT, 0, "/", -1, 0, "0"},
      {SIO_CONNECT, 0, NULL, -1, 0, "0"},
      {SIO_CONNECT, 0, "", -1, 0, "0"},
      {SIO_CONNECT, 0, "/admin", -1, 0, "0/admin,"},
      {SIO_DISCONNECT, 0, "/admin", -1, 0, "1/admin,"},
      {SIO_EVENT, 0, "/", 12, 0, "212"},
      {SIO_EVENT, 0, "/admin", 456, 0, "2/admin,456"},
      {SIO_ACK, 0, "/admin", 13, 0, "3/admin,13"},
      {SIO_ACK, 5, "/", 0, 0, "30"}, /* attachments ignored unless binary */
      {SIO_CONNECT_ERROR, 0, "/", -1, 0, "4"},
      {SIO_BINARY_EVENT, 1, "/", -1, 0, "51-"},
      {SIO_BINARY_EVENT, 2, "/admin", -1, 0, "52-/admin,"},
      {SIO_BINARY_ACK, 1, "/admin", 456, 0, "61-/admin,456"},
      {SIO_BINARY_ACK, 10, "/", 999999999999999, 0, "610-999999999999999"},
      {7, 0, "/", -1, -EINVAL, ""},
      {-1, 0, "/", -1, -EINVAL, ""},
      {SIO_BINARY_EVENT, 0, "/", -1, -EINVAL, ""},
      {SIO_BINARY_EVENT, 11, "/", -1, -EINVAL, ""},
      {SIO_EVENT, 0, "admin", -1, -EINVAL, ""},
      {SIO_EVENT, 0, "/a,b", -1, -EINVAL, ""},
      {SIO_EVENT, 0, "/a\nb", -1, -EINVAL, ""},
      {SIO_EVENT, 0, "/\xff", -1, -EINVAL, ""},
      {SIO_EVENT, 0, "/", 1000000000000000, -EINVAL, ""},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(t); i++) {
    mw_str out = {0};
    mw_str_appendz(&out, "x");
    int r = sio_packet_head(&out, t[i].type, t[i].attachments, t[i].nsp, t[i].nsp ? strlen(t[i].nsp) : 0, t[i].id);
    bool ok = r == t[i].rc && strcmp(out.p + 1, t[i].want) == 0;
    CHECK(ok);
    if (!ok) fprintf(stderr, "  head #%zu: rc %d \"%s\"\n", i, r, out.p);
    mw_str_free(&out);
  }
}

/* Every valid packet, re-encoded from its fields, decodes to the same fields. */
static void test_round_trip(void) {
  for (size_t i = 0; i < MW_ARRAY_LEN(valid); i++) {
    sio_packet a, b;
    mw_str out = {0};
    CHECK(sio_packet_decode(valid[i].s, valid[i].len, &a) == 0);
    CHECK(sio_packet_head(&out, a.type, a.attachments, a.nsp, a.nsp_len, a.id) == 0);
    mw_str_append(&out, a.data, a.data_len);
    bool ok = sio_packet_decode(out.p, out.len, &b) == 0 && a.type == b.type && a.attachments == b.attachments &&
              a.nsp_len == b.nsp_len && memcmp(a.nsp, b.nsp, a.nsp_len) == 0 && a.id == b.id &&
              a.data_len == b.data_len && memcmp(a.data, b.data, a.data_len) == 0;
    CHECK(ok);
    if (!ok) fprintf(stderr, "  round trip #%zu: %s -> %s\n", i, valid[i].s, out.p);
    mw_str_free(&out);
  }
}

int main(void) {
  test_json_valid();
  test_json_invalid();
  test_json_depth();
  test_decode_valid();
  test_decode_invalid();
  test_decode_borrows();
  test_over_engine_io();
  test_event_name();
  test_head();
  test_round_trip();
  CHECK_REPORT();
  return failed ? 1 : 0;
}
