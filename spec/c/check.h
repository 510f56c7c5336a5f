/* check.h — the C unit tests' one assertion: CHECK(cond) counts, and on
 * failure prints file:line and the condition. A test's main ends with
 * CHECK_REPORT(), whose last line ctest and CI read. */
#ifndef MW_CHECK_H
#define MW_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
    } else {                                                                   \
      failed++;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_REPORT()                                  \
  do {                                                  \
    printf("%d passed, %d failed\n", passed, failed); \
  } while (0)

#endif
