/* fuzz_multipart.c — the multipart/form-data parser on its own. The first
 * byte picks a boundary and where to cut the rest in two; the body is then
 * parsed whole, in two pieces, and (when short) a byte at a time: the
 * events and the outcome must be the same every way, and everything a part
 * says must fit in what came in. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

typedef struct rec {
  mw_str ev;
  size_t in; /* bytes of body: no part's content can be longer */
} rec;

static int on_part(void *ud, const mp_part *p) {
  rec *r = ud;
  if (p->name_len > r->in || p->filename_len > r->in || p->type_len > r->in) abort();
  mw_str_appendf(&r->ev, "P%zu:", p->name_len);
  mw_str_append(&r->ev, p->name, p->name_len);
  if (p->filename) {
    mw_str_appendf(&r->ev, "F%zu:", p->filename_len);
    mw_str_append(&r->ev, p->filename, p->filename_len);
  }
  mw_str_appendf(&r->ev, "T%zu:", p->type_len);
  mw_str_append(&r->ev, p->type, p->type_len);
  return 0;
}

static int on_data(void *ud, const char *d, size_t n) {
  rec *r = ud;
  if (n == 0 || n > r->in) abort();
  /* Pieces are joined: only the bytes count, not how they were cut. */
  if (r->ev.len && r->ev.p[r->ev.len - 1] == 'D') r->ev.len--;
  mw_str_append(&r->ev, d, n);
  mw_str_appendc(&r->ev, 'D');
  return 0;
}

static int on_end(void *ud) {
  mw_str_appendc(&((rec *)ud)->ev, 'E');
  return 0;
}

static const mp_callbacks CB = {on_part, on_data, on_end};

static const char *boundaries[] = {"XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a", "--", "1 2"};

/* Parses body in pieces of step bytes (0: whole); the events go to ev. */
static int parse(const char *b, const uint8_t *body, size_t len, size_t cut, size_t step, mw_str *ev) {
  rec r = {{0}, len};
  mp_parser p;
  if (mp_init(&p, b, strlen(b), 256, &CB, &r)) abort();
  int res = 0;
  if (step) {
    for (size_t off = 0; off < len && !res; off += step) res = mp_feed(&p, (const char *)body + off, len - off < step ? len - off : step);
  } else {
    res = mp_feed(&p, (const char *)body, cut);
    if (!res) res = mp_feed(&p, (const char *)body + cut, len - cut);
  }
  if (!res) res = mp_finish(&p);
  mp_free(&p);
  *ev = r.ev;
  return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *b = boundaries[data[0] % MW_ARRAY_LEN(boundaries)];
  const uint8_t *body = data + 1;
  size_t len = size - 1;
  size_t cut = len ? (data[0] * 131u) % (len + 1) : 0;
  mw_str whole, split;
  int r1 = parse(b, body, len, len, 0, &whole);
  int r2 = parse(b, body, len, cut, 0, &split);
  if (r1 != r2 || whole.len != split.len || (whole.len && memcmp(whole.p, split.p, whole.len))) abort();
  if (len <= 2048) {
    mw_str bytes;
    int r3 = parse(b, body, len, 0, 1, &bytes);
    if (r1 != r3 || whole.len != bytes.len || (whole.len && memcmp(whole.p, bytes.p, whole.len))) abort();
    mw_str_free(&bytes);
  }
  mw_str_free(&whole);
  mw_str_free(&split);
  return 0;
}
