/* iplimit.h — per client address: how many connections it holds, and how
 * many it opened in the last second (nginx's limit_conn and limit_req, at
 * accept time).
 *
 * IPv6 addresses count by their /64 prefix (one host usually has a whole
 * /64 to pick from). Loopback addresses are not counted unless asked: a
 * reverse proxy on the same machine makes every client look like 127.0.0.1.
 * At most IPLIMIT_MAX_ENTRIES addresses are tracked; past that, new ones
 * are let in uncounted rather than refused (say, a spoofed flood of
 * addresses must not lock real clients out). */
#ifndef MW_IPLIMIT_H
#define MW_IPLIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define IPLIMIT_MAX_ENTRIES 65536

typedef struct iplimit iplimit;
typedef struct iplimit_entry iplimit_entry;

typedef struct iplimit_options {
  uint32_t max_conns;   /* connections one address may hold at once (0: no limit) */
  uint32_t max_rate;    /* new connections one address may open per second (0: no limit) */
  bool loopback;        /* count loopback addresses too */
} iplimit_options;

/* Returns a limiter, or NULL when out of memory. */
iplimit *iplimit_new(const iplimit_options *o);
void iplimit_free(iplimit *l);

/* A connection from sa is being accepted at now_ms (monotonic). Returns 0
 * and sets *e (the entry to leave with; NULL when not counted), or
 * -EMFILE when the address holds max_conns already, -EAGAIN when it opened
 * max_rate in the current second. */
int iplimit_enter(iplimit *l, const struct sockaddr *sa, uint64_t now_ms, iplimit_entry **e);
/* The connection entered with e is gone (e may be NULL). */
void iplimit_leave(iplimit *l, iplimit_entry *e);
/* Drops entries with no connection and no recent opening. */
void iplimit_sweep(iplimit *l, uint64_t now_ms);
/* Addresses tracked now (for tests). */
uint32_t iplimit_count(const iplimit *l);

#endif
