/* lalloc.c — the Lua VM's allocator (see lalloc.h). */
#include "lalloc.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lcall.h"
#include "pool.h"

/* Sanitizer builds recycle nothing (a block used after Lua freed it must
 * reach ASan), but keep the ceiling. */
static bool small(size_t n) { return !MW_SANITIZED && n >= sizeof(void *) && n <= LALLOC_SMALL; }

static void put(lalloc *a, void *b, size_t n) {
  if (a->pooled + n > LALLOC_POOL_BYTES) {
    free(b);
    return;
  }
  *(void **)b = a->free[n];
  a->free[n] = b;
  a->pooled += n;
}

static void *get(lalloc *a, size_t n) {
  void *b = a->free[n];
  if (!b) return malloc(n);
  a->free[n] = *(void **)b;
  a->pooled -= n;
  return b;
}

static void release(lalloc *a, void *ptr, size_t osize) {
  if (small(osize)) put(a, ptr, osize);
  else free(ptr);
}

/* lua_Alloc. Any block, even one libc allocated before this allocator took
 * over, can go on a list: the lists are by exact size, and Lua tells the
 * size of what it frees. */
static void *lalloc_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  lalloc *a = ud;
  if (!ptr) osize = 0; /* it then tells what kind of object is being made */
  if (nsize == 0) {
    if (ptr) release(a, ptr, osize);
    a->used -= osize;
    if (a->over && a->used < a->soft) a->over = false;
    return NULL;
  }
  if (nsize > osize && a->hard) {
    size_t after = a->used + (nsize - osize);
    if (after > a->soft) {
      if (after > a->hard && lcall_active()) return NULL;
      if (!a->over) {
        a->over = true;
        lcall_memory_pressure();
      }
    }
  }
  void *nb;
  if (ptr && osize == nsize) {
    nb = ptr;
  } else if (!small(osize) && !small(nsize)) {
    nb = realloc(ptr, nsize);
    /* Lua counts on a shrink never failing: the old block is big enough. */
    if (!nb && nsize < osize) nb = ptr;
  } else {
    nb = small(nsize) ? get(a, nsize) : malloc(nsize);
    if (!nb) {
      if (nsize < osize) nb = ptr; /* freed later as nsize bytes: only bigger than its list says */
    } else if (ptr) {
      memcpy(nb, ptr, osize < nsize ? osize : nsize);
      release(a, ptr, osize);
    }
  }
  if (!nb) return NULL;
  a->used = a->used - osize + nsize;
  if (a->over && a->used < a->soft) a->over = false;
  return nb;
}

void lalloc_use(lua_State *L, lalloc *a, size_t max_bytes) {
  memset(a, 0, sizeof *a);
  a->used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  if (max_bytes) {
    a->hard = max_bytes;
    a->soft = max_bytes - max_bytes / 8;
  }
  lua_setallocf(L, lalloc_fn, a);
}

bool lalloc_over(const lalloc *a) { return a && a->hard && a->used > a->soft; }

lalloc *lalloc_of(lua_State *L) {
  void *ud;
  return lua_getallocf(L, &ud) == lalloc_fn ? ud : NULL;
}

void lalloc_drain(lalloc *a) {
  for (size_t n = 0; n <= LALLOC_SMALL; n++) {
    while (a->free[n]) {
      void *b = a->free[n];
      a->free[n] = *(void **)b;
      free(b);
    }
  }
  a->pooled = 0;
}
