/* fuzz_fcgi.c — the FastCGI path: bytes → the record parser → PARAMS and
 * STDIN → a request → route (the example app's Lua) → public/ lookup → STDOUT
 * records, on a connection without a socket (fuzz_app.h). The parser and
 * the name-value decoder also get the raw bytes on their own, so that their
 * bounds are checked on input no web server would send. */
#include "fcgi.h"
#include "fuzz_app.h"

/* Every byte of every record's content is read: out-of-bounds content is
 * caught by ASan here rather than somewhere downstream. */
static int touch(void *ud, const fcgi_record *r) {
  unsigned *sum = ud;
  if (r->len > FCGI_MAX_CONTENT) abort();
  for (size_t i = 0; i < r->len; i++) *sum += (unsigned char)r->content[i];
  size_t pos = 0;
  fcgi_nv nv;
  while (fcgi_nv_next(r->content, r->len, &pos, &nv) == 1) {
    if (nv.name + nv.name_len > r->content + r->len || nv.value + nv.value_len > r->content + r->len) abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_app_ready();
  /* Feed in two parts, as a network would, to reach the split-record paths. */
  size_t cut = size ? data[0] % (size + 1) : 0;
  fcgi_parser p = {0};
  unsigned sum = 0;
  if (fcgi_parse(&p, (const char *)data, cut, touch, &sum) == 0)
    fcgi_parse(&p, (const char *)data + cut, size - cut, touch, &sum);
  fcgi_parser_free(&p);

  fuzz_app_feed(fcgi_conn_attach, data, size, cut);
  return 0;
}
