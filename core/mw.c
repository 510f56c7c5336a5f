/* mw.c — growable strings, shared buffers, logging. */
#include "mw.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

int mw_str_reserve(mw_str *s, size_t extra) {
  if (s->len + extra + 1 <= s->cap) return 0;
  size_t cap = s->cap ? s->cap : 64;
  while (cap < s->len + extra + 1) {
    if (cap > SIZE_MAX / 2) return -ENOMEM;
    cap *= 2;
  }
  char *p = realloc(s->p, cap);
  if (!p) return -ENOMEM;
  s->p = p;
  s->cap = cap;
  return 0;
}

int mw_str_append(mw_str *s, const void *data, size_t len) {
  if (mw_str_reserve(s, len)) return -ENOMEM;
  if (len) memcpy(s->p + s->len, data, len);
  s->len += len;
  s->p[s->len] = '\0';
  return 0;
}

int mw_str_appendz(mw_str *s, const char *z) { return mw_str_append(s, z, strlen(z)); }

int mw_str_appendc(mw_str *s, char c) { return mw_str_append(s, &c, 1); }

int mw_str_vappendf(mw_str *s, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0) return -EINVAL;
  if ((size_t)n < sizeof small) return mw_str_append(s, small, (size_t)n);
  if (mw_str_reserve(s, (size_t)n)) return -ENOMEM;
  vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
  s->len += (size_t)n;
  return 0;
}

int mw_str_appendf(mw_str *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = mw_str_vappendf(s, fmt, ap);
  va_end(ap);
  return r;
}

void mw_str_reset(mw_str *s) {
  s->len = 0;
  if (s->p) s->p[0] = '\0';
}

size_t mw_released_bytes;

void mw_str_free(mw_str *s) {
  mw_released_bytes += s->cap;
  free(s->p);
  s->p = NULL;
  s->len = s->cap = 0;
}

/* Small buffers (response heads and short bodies, WebSocket frames) are
 * made and freed by the hundred per loop turn: a burst of requests is
 * answered, then written, then freed together, more than libc's per-thread
 * cache keeps, so most went through malloc's slower paths. Buffers of up to
 * 64, 128 and 256 bytes are kept (BUF_SPARES of each) for the next ones.
 * Sanitizer builds keep none (pool.h), so a buffer used after its last
 * unref is caught. */
#define BUF_SPARES 256
#define BUF_CLASSES 3 /* room of class k (1..3): 32 << k bytes */

MW_POOL_DEFINE(buf_spares1, BUF_SPARES);
MW_POOL_DEFINE(buf_spares2, BUF_SPARES);
MW_POOL_DEFINE(buf_spares3, BUF_SPARES);
static mw_pool *const buf_spares[BUF_CLASSES + 1] = {NULL, &buf_spares1, &buf_spares2, &buf_spares3};

mw_buf *mw_buf_new(size_t len) {
  uint8_t k = 0;
  if (!MW_SANITIZED) {
    for (uint8_t c = 1; c <= BUF_CLASSES; c++) {
      if (len + 1 <= (size_t)32 << c) {
        k = c;
        break;
      }
    }
  }
  mw_buf *b = k ? mw_pool_take(buf_spares[k]) : NULL;
  if (!b) b = malloc(sizeof *b + (k ? (size_t)32 << k : len + 1));
  if (!b) return NULL;
  b->refs = 1;
  b->size_class = k;
  b->len = len;
  b->data[len] = '\0';
  return b;
}

mw_buf *mw_buf_from(const void *data, size_t len) {
  mw_buf *b = mw_buf_new(len);
  if (b && len) memcpy(b->data, data, len);
  return b;
}

void mw_buf_unref(mw_buf *b) {
  if (!b || --b->refs) return;
  if (b->size_class && mw_pool_keep(buf_spares[b->size_class], b)) return;
  mw_released_bytes += b->len;
  free(b);
}

int mw_log_level = MW_LOG_INFO;

void mw_log(int level, const char *fmt, ...) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  if (level > mw_log_level) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[moonwire] %s: ", names[level]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void mw_release_memory(void) {
  mw_released_bytes = 0;
#ifdef __GLIBC__
  static int off = -1; /* MOONWIRE_MALLOC_TRIM=0 turns it off, to measure what it does */
  if (off < 0) off = getenv("MOONWIRE_MALLOC_TRIM") && !strcmp(getenv("MOONWIRE_MALLOC_TRIM"), "0");
  if (!off) malloc_trim(0);
#endif
}

uint64_t mw_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool mw_ieq(const char *a, size_t alen, const char *b) {
  size_t i = 0;
  for (; i < alen; i++) {
    char x = a[i], y = b[i];
    if (!y) return false;
    if (x == y) continue; /* most bytes match as they are: fold case only when not */
    if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
    if (x != y) return false;
  }
  return b[i] == '\0';
}
