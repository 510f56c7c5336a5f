/* iplimit.c — connections per client address (see iplimit.h). */
#include "iplimit.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mw.h"

#define IPLIMIT_BUCKETS 4096 /* a power of two */

struct iplimit_entry {
  uint8_t key[9];          /* family, then 4 (IPv4) or 8 (IPv6 /64) bytes */
  uint8_t keylen;
  uint32_t conns;          /* held now */
  uint32_t opened;         /* opened in the second that began at window */
  uint64_t window;
  iplimit_entry *next;
};

struct iplimit {
  iplimit_options o;
  iplimit_entry *buckets[IPLIMIT_BUCKETS];
  uint32_t count;
};

iplimit *iplimit_new(const iplimit_options *o) {
  iplimit *l = calloc(1, sizeof *l);
  if (l) l->o = *o;
  return l;
}

void iplimit_free(iplimit *l) {
  if (!l) return;
  for (int i = 0; i < IPLIMIT_BUCKETS; i++) {
    for (iplimit_entry *e = l->buckets[i], *n; e; e = n) {
      n = e->next;
      free(e);
    }
  }
  free(l);
}

/* The key for sa: false for an address that is not counted. */
static bool make_key(const iplimit *l, const struct sockaddr *sa, uint8_t key[9], uint8_t *len) {
  if (sa->sa_family == AF_INET) {
    const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (a[0] == 127 && !l->o.loopback) return false;
    key[0] = 4;
    memcpy(key + 1, a, 4);
    *len = 5;
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) { /* ::ffff:1.2.3.4 counts as 1.2.3.4 */
      if (a->s6_addr[12] == 127 && !l->o.loopback) return false;
      key[0] = 4;
      memcpy(key + 1, a->s6_addr + 12, 4);
      *len = 5;
      return true;
    }
    if (IN6_IS_ADDR_LOOPBACK(a) && !l->o.loopback) return false;
    key[0] = 6;
    memcpy(key + 1, a->s6_addr, 8);
    *len = 9;
    return true;
  }
  return false; /* a Unix socket */
}

static uint32_t hash_key(const uint8_t *k, uint8_t len) { return mw_hash32(k, len) & (IPLIMIT_BUCKETS - 1); }

int iplimit_enter(iplimit *l, const struct sockaddr *sa, uint64_t now_ms, iplimit_entry **out) {
  *out = NULL;
  uint8_t key[9], len;
  if (!l || (!l->o.max_conns && !l->o.max_rate) || !make_key(l, sa, key, &len)) return 0;
  uint32_t b = hash_key(key, len);
  iplimit_entry *e = l->buckets[b];
  while (e && !(e->keylen == len && memcmp(e->key, key, len) == 0)) e = e->next;
  if (!e) {
    if (l->count >= IPLIMIT_MAX_ENTRIES) return 0;
    e = calloc(1, sizeof *e);
    if (!e) return 0; /* out of memory: let it in uncounted */
    memcpy(e->key, key, len);
    e->keylen = len;
    e->window = now_ms;
    e->next = l->buckets[b];
    l->buckets[b] = e;
    l->count++;
  }
  if (now_ms - e->window >= 1000) {
    e->window = now_ms;
    e->opened = 0;
  }
  if (l->o.max_conns && e->conns >= l->o.max_conns) return -EMFILE;
  if (l->o.max_rate && e->opened >= l->o.max_rate) return -EAGAIN;
  e->conns++;
  e->opened++;
  *out = e;
  return 0;
}

void iplimit_leave(iplimit *l, iplimit_entry *e) {
  if (l && e && e->conns) e->conns--; /* no l: freed with its entries at shutdown */
}

void iplimit_sweep(iplimit *l, uint64_t now_ms) {
  if (!l) return;
  for (int i = 0; i < IPLIMIT_BUCKETS; i++) {
    iplimit_entry **pp = &l->buckets[i];
    while (*pp) {
      iplimit_entry *e = *pp;
      if (e->conns == 0 && now_ms - e->window >= 1000) {
        *pp = e->next;
        free(e);
        l->count--;
      } else {
        pp = &e->next;
      }
    }
  }
}

uint32_t iplimit_count(const iplimit *l) { return l ? l->count : 0; }
