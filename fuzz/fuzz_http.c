/* fuzz_http.c — the request path: bytes → llhttp → route (the example app's
 * Lua) → public/ lookup, on a connection without a socket (fuzz_app.h). */
#include "fuzz_app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_app_ready();
  size_t cut = size ? data[0] % (size + 1) : 0;
  fuzz_app_feed(http_conn_attach, data, size, cut);
  return 0;
}
