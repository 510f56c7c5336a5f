/* timers.h — many one-shot timers on one libuv timer.
 *
 * Every connection has a timeout and every Engine.IO session a heartbeat:
 * as uv_timer_t handles that is 152 bytes each, about 300 bytes of every
 * idle client. An mw_timer is 40 bytes, a node of a pairing heap ordered by
 * due time; the heap's earliest node sets the one uv_timer_t of the set.
 * Starting is O(1), stopping and firing O(log n) amortized, and nothing is
 * allocated: a timer lives in its owner's struct and needs no closing (stop
 * it, or let it fire, before its owner is freed).
 *
 * Timers due at the same millisecond fire in no set order. A callback may
 * start or stop any timer of the set, itself included. */
#ifndef MW_TIMERS_H
#define MW_TIMERS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct mw_timer mw_timer;
typedef void (*mw_timer_cb)(mw_timer *t);

struct mw_timer {
  mw_timer *child, *next, *prev; /* prev: the previous sibling, or the parent of a first child */
  uint64_t due;                  /* loop time (ms) */
  mw_timer_cb cb;                /* NULL while stopped */
};

typedef struct mw_timers {
  uv_timer_t uv;    /* armed for root's due time while the set has a timer */
  mw_timer *root;
  uint64_t armed;   /* the loop time uv is armed for; 0: not armed */
  bool closed;
} mw_timers;

/* A set with a timer started keeps the loop alive, as a started uv timer does. */
void mw_timers_init(mw_timers *ts, uv_loop_t *loop);
/* Closes the uv timer (its close callback, if any, with ts as handle data).
 * The timers still started never fire; stopping them stays allowed. */
void mw_timers_close(mw_timers *ts, uv_close_cb cb);

/* Starts t (stopping it first if it runs): cb(t) in ms milliseconds (0
 * counts as 1: a callback that restarts its timer at once cannot hold the
 * loop). */
void mw_timer_start(mw_timers *ts, mw_timer *t, uint64_t ms, mw_timer_cb cb);
/* Stops t; a stopped timer may be stopped again. */
void mw_timer_stop(mw_timers *ts, mw_timer *t);
static inline bool mw_timer_active(const mw_timer *t) { return t->cb != NULL; }

#endif
