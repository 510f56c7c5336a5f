/* pool.h — spare objects kept for the next use, and the one switch that
 * turns every such reuse off in sanitizer builds.
 *
 * The loop makes and frees small objects by the hundred per turn (HTTP and
 * FastCGI transactions, shared buffers, Lua's small blocks, body chunks):
 * keeping a few spares saves malloc's slow paths. A spare is memory ASan
 * cannot watch, so a sanitizer build keeps none, and a use after the end is
 * caught. */
#ifndef MW_POOL_H
#define MW_POOL_H

#include <stdbool.h>

/* 1 in an AddressSanitizer build (gcc or clang), else 0. */
#if defined(__SANITIZE_ADDRESS__)
#define MW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MW_SANITIZED 1
#endif
#endif
#ifndef MW_SANITIZED
#define MW_SANITIZED 0
#endif

/* A bounded stack of spare objects of one kind; loop thread only. The
 * pool holds pointers, never owns what they point to beyond keeping it:
 * the owner frees what mw_pool_keep refuses. */
typedef struct mw_pool {
  void **slot;
  int n, cap;
} mw_pool;

/* Defines a file-scope pool `name` of up to count spares (none in a
 * sanitizer build). */
#define MW_POOL_DEFINE(name, count)                   \
  static void *name##_slot[(count) > 0 ? (count) : 1]; \
  static mw_pool name = {name##_slot, 0, MW_SANITIZED ? 0 : (count)}

/* A kept object (the last kept first), or NULL when there is none. */
static inline void *mw_pool_take(mw_pool *p) { return p->n ? p->slot[--p->n] : NULL; }

/* Keeps o; false when the pool is full (or off): o is then the caller's
 * to free. */
static inline bool mw_pool_keep(mw_pool *p, void *o) {
  if (p->n >= p->cap) return false;
  p->slot[p->n++] = o;
  return true;
}

#endif
