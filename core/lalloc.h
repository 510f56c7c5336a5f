/* lalloc.h — the Lua VM's allocator: small blocks recycled, and a memory
 * ceiling.
 *
 * Small Lua objects (tables, their parts, strings, userdata) come and go by
 * the dozen with every request, and libc's malloc/free was a tenth of the
 * work of a request: freed blocks of up to LALLOC_SMALL bytes are kept on
 * one list per exact size and handed out again (sanitizer builds keep none,
 * so that a use after free is caught).
 *
 * The ceiling: the allocator counts the bytes Lua holds. Past the soft limit
 * (7/8 of the ceiling) it tells lcall.c, which stops the running handler at
 * its next instruction unless a full collection brings the count back
 * under. Past the ceiling itself, allocations made while a call into Lua is
 * under way fail (Lua then collects and, failing again, raises "not enough
 * memory"); outside of calls they never fail, because the C core pushing
 * values before a call has no protected call to catch the error. */
#ifndef MW_LALLOC_H
#define MW_LALLOC_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#define LALLOC_SMALL 256            /* blocks up to this size are recycled */
#define LALLOC_POOL_BYTES (512 * 1024) /* kept on the lists at most */

typedef struct lalloc {
  void *free[LALLOC_SMALL + 1]; /* free[n]: blocks of n bytes, linked through their first word */
  size_t pooled;                /* bytes on the lists */
  size_t used;                  /* bytes Lua holds (what it counts itself) */
  size_t soft, hard;            /* 0: no ceiling */
  bool over;                    /* above soft, and lcall.c was told */
} lalloc;

/* Makes a the allocator of L, which was created with luaL_newstate and has
 * allocated nothing else since; max_bytes is the ceiling (0: none). */
void lalloc_use(lua_State *L, lalloc *a, size_t max_bytes);
/* True while Lua holds more than the soft limit (a may be NULL). */
bool lalloc_over(const lalloc *a);
/* The lalloc of L, or NULL when L has another allocator. */
lalloc *lalloc_of(lua_State *L);
/* Gives the kept blocks back to libc (after lua_close). */
void lalloc_drain(lalloc *a);

#endif
