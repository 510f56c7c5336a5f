/* test_pool.c — spare objects: last kept, first taken; a full pool refuses
 * (the caller frees); a sanitizer build keeps none, so ASan sees every
 * use after the end. And the shared buffers, the busiest pool, through it. */
#include <stdlib.h>

#include "mw.h"
#include "pool.h"

#include "check.h"

MW_POOL_DEFINE(three, 3);

int main(void) {
  int a, b, c, d;
  CHECK(mw_pool_take(&three) == NULL);
  if (MW_SANITIZED) {
    CHECK(!mw_pool_keep(&three, &a));
    CHECK(mw_pool_take(&three) == NULL);
  } else {
    CHECK(mw_pool_keep(&three, &a) && mw_pool_keep(&three, &b) && mw_pool_keep(&three, &c));
    CHECK(!mw_pool_keep(&three, &d)); /* full: d stays the caller's */
    CHECK(mw_pool_take(&three) == &c);
    CHECK(mw_pool_take(&three) == &b);
    CHECK(mw_pool_keep(&three, &d));
    CHECK(mw_pool_take(&three) == &d);
    CHECK(mw_pool_take(&three) == &a);
    CHECK(mw_pool_take(&three) == NULL);
  }

  /* A small shared buffer comes back for the next one of its class, and
   * only in a build without the sanitizer. */
  mw_buf *x = mw_buf_from("hello", 5);
  void *first = x;
  mw_buf_unref(x);
  mw_buf *y = mw_buf_from("world!", 6);
  CHECK(y && y->len == 6 && y->refs == 1 && y->data[6] == '\0');
  CHECK(((void *)y == first) == !MW_SANITIZED);
  mw_buf_unref(y);
  /* A large one is never kept. */
  mw_buf *big = mw_buf_new(4096);
  CHECK(big && big->size_class == 0);
  mw_buf_unref(big);
  CHECK_REPORT();
  return failed != 0;
}
