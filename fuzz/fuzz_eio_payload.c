/* fuzz_eio_payload.c — Engine.IO framing: the input as a polling payload, as
 * one WebSocket message (text and binary), and as base64. A payload that
 * decodes re-encodes to exactly the input (the encoding is canonical), and
 * the packets delivered before an error re-encode to the input up to that
 * packet; anything else aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "eio_packet.h"

/* Re-encodes every delivered packet into out. */
static int on_packet(void *ud, const eio_packet *p) {
  mw_str *out = ud;
  if (p->type < EIO_OPEN || p->type > EIO_NOOP || (p->binary && p->type != EIO_MESSAGE)) abort();
  if (eio_payload_append(out, p->type, p->data, p->len, p->binary)) abort();
  return 0;
}

static void check_payload(const char *s, size_t len) {
  mw_str scratch = {0}, again = {0}, third = {0};
  int r = eio_payload_decode(s, len, &scratch, on_packet, &again);
  if (r == 0) {
    if (again.len != len || memcmp(again.p, s, len)) abort();
    /* And the re-encoding decodes the same way (a second generation). */
    if (eio_payload_decode(again.p, again.len, &scratch, on_packet, &third)) abort();
    if (third.len != again.len || memcmp(third.p, again.p, again.len)) abort();
  } else {
    if (r != -EINVAL) abort();
    /* What was delivered is a whole-packet prefix of the input. */
    if (again.len > len || (again.len && memcmp(again.p, s, again.len))) abort();
    if (again.len && (again.len == len || s[again.len] != EIO_SEPARATOR)) abort();
  }
  mw_str_free(&scratch);
  mw_str_free(&again);
  mw_str_free(&third);
}

static void check_message(const char *s, size_t len) {
  eio_packet p;
  int r = eio_packet_decode(s, len, false, &p);
  bool valid = len > 0 && s[0] >= '0' && s[0] <= '6';
  if ((r == 0) != valid) abort();
  if (r == 0 && (p.binary || p.type != s[0] - '0' || p.data != s + 1 || p.len != len - 1)) abort();
  if (eio_packet_decode(s, len, true, &p) || !p.binary || p.type != EIO_MESSAGE || p.data != s || p.len != len)
    abort();
}

static void check_base64(const char *s, size_t len) {
  mw_str enc = {0}, dec = {0};
  /* Any bytes: encode, decode, same bytes. */
  if (b64_encode(&enc, s, len)) abort();
  if (b64_decode(&dec, enc.p, enc.len)) abort();
  if (dec.len != len || (len && memcmp(dec.p, s, len))) abort();
  /* The input as base64: if it decodes, it is the one encoding of its bytes. */
  mw_str_reset(&enc);
  mw_str_reset(&dec);
  if (b64_decode(&dec, s, len) == 0) {
    if (b64_encode(&enc, dec.p, dec.len)) abort();
    if (enc.len != len || (len && memcmp(enc.p, s, len))) abort();
  }
  mw_str_free(&enc);
  mw_str_free(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  check_payload(s, size);
  check_message(s, size);
  check_base64(s, size);
  return 0;
}
