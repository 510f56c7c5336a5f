/* fuzz_sio_packet.c — Socket.IO packet decoding and the JSON validator. A
 * packet that decodes is re-encoded from its fields (sio_packet_head + data)
 * and must decode to the same fields; anything else aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sio_packet.h"

static bool same(const sio_packet *a, const sio_packet *b) {
  return a->type == b->type && a->attachments == b->attachments && a->nsp_len == b->nsp_len &&
         memcmp(a->nsp, b->nsp, a->nsp_len) == 0 && a->id == b->id && a->data_len == b->data_len &&
         memcmp(a->data, b->data, a->data_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  char kind = 0;
  if (mw_json_check(s, size, &kind) == 0 && !strchr("oasntfz", kind)) abort();

  sio_packet p;
  if (sio_packet_decode(s, size, &p)) return 0;

  /* The fields are what the decoder promises. */
  if (p.type < SIO_CONNECT || p.type > SIO_BINARY_ACK || p.id < -1 || p.id > SIO_MAX_ACK_ID) abort();
  bool binary = p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK;
  if (binary ? (p.attachments < 1 || p.attachments > SIO_MAX_ATTACHMENTS) : p.attachments != 0) abort();
  if (p.nsp_len == 0 || p.nsp[0] != '/') abort();
  if (p.data_len && mw_json_check(p.data, p.data_len, NULL)) abort();
  const char *name;
  size_t name_len;
  bool event = p.type == SIO_EVENT || p.type == SIO_BINARY_EVENT;
  if ((sio_event_name(&p, &name, &name_len) == 0) != event) abort();
  if (event && (name < p.data || name + name_len > p.data + p.data_len)) abort();

  /* Re-encode from the fields and decode again. */
  mw_str out = {0};
  if (sio_packet_head(&out, p.type, p.attachments, p.nsp, p.nsp_len, p.id)) abort();
  if (mw_str_append(&out, p.data, p.data_len)) abort();
  sio_packet q;
  if (sio_packet_decode(out.p, out.len, &q) || !same(&p, &q)) abort();
  mw_str_free(&out);
  return 0;
}
