/* fuzz_headers.c — the request headers a response is shaped by: Range
 * (static_range), Accept-Encoding (mw_accept_encoding), entity-tag lists
 * (http_etag_match: If-None-Match, If-Match) and HTTP-dates. The first 8
 * bytes give the representation's size, the rest is the header value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "http.h"
#include "static.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  uint64_t fsize;
  memcpy(&fsize, data, 8);
  fsize %= (uint64_t)1 << 42;
  const char *v = (const char *)data + 8;
  size_t len = size - 8;

  uint64_t start = 0, end = 0;
  int kind = static_range(v, len, fsize, &start, &end);
  if (kind == STATIC_RANGE_PART && !(start < end && end <= fsize)) abort();
  if (kind != STATIC_RANGE_WHOLE && kind != STATIC_RANGE_PART && kind != STATIC_RANGE_NONE) abort();

  int enc = mw_accept_encoding(v, len);
  if (enc & ~(MW_ENC_GZIP | MW_ENC_BR)) abort();

  (void)http_etag_match(v, len, "W/\"2a-18eedd568761a50f\"");
  (void)http_etag_match(v, len, "\"strong\"");
  (void)http_parse_date(v, len);
  (void)mw_compressible_type(v, len);
  return 0;
}
