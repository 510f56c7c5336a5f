/* test_eio_packet.c — Engine.IO framing: WebSocket messages, polling
 * payloads (text and 'b' base64 packets, \x1e separators), and encode →
 * decode round trips. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio_packet.h"

#include "check.h"

/* A byte string that may hold NULs: the literal's length, not strlen. */
#define B(lit) lit, sizeof(lit) - 1

static bool str_is(const mw_str *s, const char *p, size_t n) {
  return s->len == n && (n == 0 || memcmp(s->p, p, n) == 0);
}

/* ---- single packets (WebSocket) */

static void test_packet_decode(void) {
  static const struct {
    const char *s;
    size_t len;
    bool binary_frame;
    int rc, type;
    const char *data;
    size_t data_len;
  } t[] = {
      {B("4hello"), false, 0, EIO_MESSAGE, B("hello")},
      {B("2probe"), false, 0, EIO_PING, B("probe")},
      {B("3probe"), false, 0, EIO_PONG, B("probe")},
      {B("0{\"sid\":\"x\"}"), false, 0, EIO_OPEN, B("{\"sid\":\"x\"}")},
      {B("1"), false, 0, EIO_CLOSE, B("")},
      {B("5"), false, 0, EIO_UPGRADE, B("")},
      {B("6"), false, 0, EIO_NOOP, B("")},
      {B("4"), false, 0, EIO_MESSAGE, B("")},
      {B("42[\"a\"]\x1e" "4b"), false, 0, EIO_MESSAGE, B("2[\"a\"]\x1e" "4b")}, /* no splitting */
      {B(""), false, -EINVAL, 0, B("")},
      {B("7"), false, -EINVAL, 0, B("")},
      {B("x4"), false, -EINVAL, 0, B("")},
      {B("/4"), false, -EINVAL, 0, B("")},
      {B("bAQIDBA=="), false, -EINVAL, 0, B("")}, /* base64 only in polling */
      {B("\x1e" "4"), false, -EINVAL, 0, B("")},
      {B("\x01\x02\x00\x03"), true, 0, EIO_MESSAGE, B("\x01\x02\x00\x03")},
      {B("4text"), true, 0, EIO_MESSAGE, B("4text")}, /* a binary frame is data as is */
      {B(""), true, 0, EIO_MESSAGE, B("")},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(t); i++) {
    eio_packet p = {.type = -1};
    int r = eio_packet_decode(t[i].s, t[i].len, t[i].binary_frame, &p);
    CHECK(r == t[i].rc);
    if (r != t[i].rc) fprintf(stderr, "  packet #%zu: got %d\n", i, r);
    if (r || t[i].rc) continue;
    CHECK(p.type == t[i].type);
    CHECK(p.binary == t[i].binary_frame);
    CHECK(p.len == t[i].data_len && memcmp(p.data, t[i].data, p.len) == 0);
    CHECK(p.data >= t[i].s && p.data + p.len <= t[i].s + t[i].len); /* points into the input */
  }
}

/* ---- payloads (polling) */

/* Renders the packets a payload decodes to: "4hello|2|b:01020304". */
typedef struct seen {
  mw_str out;
  int count, stop_at, stop_rc;
} seen;

static int on_packet(void *ud, const eio_packet *p) {
  seen *s = ud;
  if (s->count++) mw_str_appendc(&s->out, '|');
  if (p->binary) {
    mw_str_appendz(&s->out, "b:");
    for (size_t i = 0; i < p->len; i++) mw_str_appendf(&s->out, "%02x", (unsigned char)p->data[i]);
  } else {
    mw_str_appendc(&s->out, (char)('0' + p->type));
    mw_str_append(&s->out, p->data, p->len);
  }
  if (s->stop_at && s->count == s->stop_at) return s->stop_rc;
  return 0;
}

static void test_payload_decode(void) {
  static const struct {
    const char *s;
    size_t len;
    int rc;
    const char *seen; /* what was delivered, even on error */
    size_t seen_len;
  } t[] = {
      {B("4hello\x1e" "2\x1e" "4world"), 0, B("4hello|2|4world")},
      {B("4hello\x1e" "bAQIDBA=="), 0, B("4hello|b:01020304")},
      {B("42[\"hello\"]\x1e" "42[\"world\"]"), 0, B("42[\"hello\"]|42[\"world\"]")},
      {B("40"), 0, B("40")},
      {B("4"), 0, B("4")},
      {B("b"), 0, B("b:")},
      {B("bAA==\x1e" "b/w=="), 0, B("b:00|b:ff")},
      {B("bAA==\x1e" "bAA=="), 0, B("b:00|b:00")},
      {B("bAA=="), 0, B("b:00")},
      {B("bAA==="), -EINVAL, B("")},
      {B("bAAA=\x1e" "4x"), 0, B("b:0000|4x")},
      {B("bAB==\x1e" "4x"), -EINVAL, B("")},
      {B("bAP8=\x1e" "b/w==\x1e" "6"), 0, B("b:00ff|b:ff|6")},
      {B("4\xe2\x82\xac"), 0, B("4\xe2\x82\xac")}, /* UTF-8 passes through untouched */
      {B("2probe\x1e" "3probe\x1e" "5\x1e" "6\x1e" "1"), 0, B("2probe|3probe|5|6|1")},
      {B(""), -EINVAL, B("")},
      {B("\x1e"), -EINVAL, B("")},
      {B("\x1e" "4a"), -EINVAL, B("")},
      {B("4a\x1e"), -EINVAL, B("4a")},
      {B("4a\x1e\x1e" "4b"), -EINVAL, B("4a")},
      {B("4a\x1e" "9x\x1e" "4b"), -EINVAL, B("4a")},
      {B("4a\x1e" "x\x1e" "4b"), -EINVAL, B("4a")},
      {B("4a\x1e" "bAQ\x1e" "4b"), -EINVAL, B("4a")},
      {B("4a\x1e" "b!!!!"), -EINVAL, B("4a")},
      {B("7"), -EINVAL, B("")},
      {B("\x00"), -EINVAL, B("")},
      {B("4a\x00" "b"), 0, B("4a\x00" "b")},
  };
  mw_str scratch = {0};
  for (size_t i = 0; i < MW_ARRAY_LEN(t); i++) {
    seen s = {0};
    mw_str_append(&s.out, "", 0);
    int r = eio_payload_decode(t[i].s, t[i].len, &scratch, on_packet, &s);
    bool ok = r == t[i].rc && str_is(&s.out, t[i].seen, t[i].seen_len);
    CHECK(ok);
    if (!ok) fprintf(stderr, "  payload #%zu: rc %d, saw \"%s\"\n", i, r, s.out.p);
    mw_str_free(&s.out);
  }
  mw_str_free(&scratch);
}

static void test_payload_callback_stops(void) {
  mw_str scratch = {0};
  seen s = {.stop_at = 2, .stop_rc = -ECANCELED};
  int r = eio_payload_decode(B("4a\x1e" "4b\x1e" "4c"), &scratch, on_packet, &s);
  CHECK(r == -ECANCELED);
  CHECK(s.count == 2);
  CHECK(strcmp(s.out.p, "4a|4b") == 0);
  mw_str_free(&s.out);

  seen s2 = {.stop_at = 1, .stop_rc = 7};
  CHECK(eio_payload_decode(B("4a\x1e" "x"), &scratch, on_packet, &s2) == 7); /* before the bad one */
  mw_str_free(&s2.out);
  mw_str_free(&scratch);
}

static void test_payload_append(void) {
  mw_str out = {0};
  CHECK(eio_payload_append(&out, EIO_MESSAGE, "hello", 5, false) == 0);
  CHECK(strcmp(out.p, "4hello") == 0);
  CHECK(eio_payload_append(&out, EIO_PING, NULL, 0, false) == 0);
  CHECK(eio_payload_append(&out, EIO_MESSAGE, "world", 5, false) == 0);
  CHECK(str_is(&out, B("4hello\x1e" "2\x1e" "4world")));
  mw_str_free(&out);

  CHECK(eio_payload_append(&out, EIO_MESSAGE, "hello", 5, false) == 0);
  CHECK(eio_payload_append(&out, EIO_MESSAGE, "\x01\x02\x03\x04", 4, true) == 0);
  CHECK(str_is(&out, B("4hello\x1e" "bAQIDBA==")));
  CHECK(eio_payload_append(&out, EIO_MESSAGE, "", 0, true) == 0);
  CHECK(str_is(&out, B("4hello\x1e" "bAQIDBA==\x1e" "b")));
  mw_str_free(&out);

  CHECK(eio_payload_append(&out, EIO_NOOP, NULL, 0, false) == 0);
  CHECK(strcmp(out.p, "6") == 0);

  /* Errors leave out as it was. */
  CHECK(eio_payload_append(&out, 7, "x", 1, false) == -EINVAL);
  CHECK(eio_payload_append(&out, -1, "x", 1, false) == -EINVAL);
  CHECK(eio_payload_append(&out, EIO_PING, "x", 1, true) == -EINVAL);
  CHECK(eio_payload_append(&out, EIO_MESSAGE, "a\x1e" "b", 3, false) == -EINVAL);
  CHECK(str_is(&out, "6", 1));
  mw_str_free(&out);
}

/* Random packets → payload → packets: the same list comes back, and the
 * payload is the one canonical encoding of it. */
typedef struct pkt {
  int type;
  bool binary;
  char data[40];
  size_t len;
} pkt;

typedef struct collect {
  pkt got[16];
  int n;
} collect;

static int on_collect(void *ud, const eio_packet *p) {
  collect *c = ud;
  if (c->n >= 16 || p->len > sizeof c->got[0].data) return -E2BIG;
  pkt *g = &c->got[c->n++];
  g->type = p->type;
  g->binary = p->binary;
  g->len = p->len;
  memcpy(g->data, p->data, p->len);
  return 0;
}

static void test_payload_round_trip(void) {
  srand(4242);
  int bad = 0;
  mw_str scratch = {0};
  for (int iter = 0; iter < 2000; iter++) {
    pkt want[16];
    int n = 1 + rand() % 16;
    mw_str payload = {0};
    for (int k = 0; k < n; k++) {
      pkt *w = &want[k];
      w->binary = rand() % 3 == 0;
      w->type = w->binary ? EIO_MESSAGE : rand() % 7;
      w->len = (size_t)(rand() % 40);
      for (size_t b = 0; b < w->len; b++) {
        /* Any byte in binary data; anything but \x1e in text. */
        char c = (char)(rand() % 256);
        if (!w->binary && c == EIO_SEPARATOR) c = 'x';
        w->data[b] = c;
      }
      if (eio_payload_append(&payload, w->type, w->data, w->len, w->binary)) bad++;
    }
    collect c = {.n = 0};
    if (eio_payload_decode(payload.p, payload.len, &scratch, on_collect, &c) || c.n != n) {
      bad++;
    } else {
      for (int k = 0; k < n; k++)
        if (c.got[k].type != want[k].type || c.got[k].binary != want[k].binary || c.got[k].len != want[k].len ||
            memcmp(c.got[k].data, want[k].data, want[k].len))
          bad++;
    }
    mw_str_free(&payload);
  }
  mw_str_free(&scratch);
  CHECK(bad == 0);
}

int main(void) {
  test_packet_decode();
  test_payload_decode();
  test_payload_callback_stops();
  test_payload_append();
  test_payload_round_trip();
  CHECK_REPORT();
  return failed ? 1 : 0;
}
