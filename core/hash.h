/* hash.h — FNV-1a, the core's one string hash: the Engine.IO session table,
 * the Socket.IO namespace and room tables, the per-address limits, the
 * statement cache and the MIME and file caches. Not keyed: a table that
 * holds keys a client chooses bounds its chains in other ways (session ids
 * are ours; rooms and namespaces are the app's). */
#ifndef MW_HASH_H
#define MW_HASH_H

#include <stddef.h>
#include <stdint.h>

/* 32-bit FNV-1a of len bytes at s (borrowed). */
static inline uint32_t mw_hash32(const void *s, size_t len) {
  const unsigned char *p = s;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

/* 64-bit FNV-1a of len bytes at s (borrowed), from the published offset
 * basis (the two former copies had lost its last digit: still a hash, but
 * not FNV-1a). */
static inline uint64_t mw_hash64(const void *s, size_t len) {
  const unsigned char *p = s;
  uint64_t h = 14695981039346656037u; /* the published basis */
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211u;
  return h;
}

#endif
