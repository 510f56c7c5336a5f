/* timers.c — see timers.h. A pairing heap: a root with a list of children,
 * each a heap of its own; merging two heaps makes the later one the first
 * child of the earlier, and taking the root out merges its children in two
 * passes (pairs left to right, then the pairs right to left). */
#include "timers.h"

#include <stddef.h>

/* Merges two heaps (roots with no siblings); returns the new root. */
static mw_timer *meld(mw_timer *a, mw_timer *b) {
  if (!a) return b;
  if (!b) return a;
  if (b->due < a->due) {
    mw_timer *t = a;
    a = b;
    b = t;
  }
  b->prev = a;
  b->next = a->child;
  if (a->child) a->child->prev = b;
  a->child = b;
  return a;
}

/* Merges a list of sibling heaps into one. */
static mw_timer *merge_pairs(mw_timer *first) {
  mw_timer *pairs = NULL; /* merged pairs, the last first, linked through next */
  while (first) {
    mw_timer *a = first, *b = a->next;
    first = b ? b->next : NULL;
    a->next = a->prev = NULL;
    if (b) b->next = b->prev = NULL;
    mw_timer *m = meld(a, b);
    m->next = pairs;
    pairs = m;
  }
  mw_timer *root = NULL;
  while (pairs) {
    mw_timer *n = pairs->next;
    pairs->next = NULL;
    root = meld(root, pairs);
    pairs = n;
  }
  return root;
}

static void on_uv(uv_timer_t *h);

/* Arms the uv timer for the root, if that is not what it is armed for. */
static void rearm(mw_timers *ts) {
  if (ts->closed) return;
  if (!ts->root) {
    if (ts->armed) uv_timer_stop(&ts->uv);
    ts->armed = 0;
    return;
  }
  if (ts->armed == ts->root->due) return;
  uint64_t now = uv_now(ts->uv.loop);
  ts->armed = ts->root->due;
  uv_timer_start(&ts->uv, on_uv, ts->root->due > now ? ts->root->due - now : 0, 0);
}

/* Takes t out of the heap, leaving its children in. */
static void unlink_timer(mw_timers *ts, mw_timer *t) {
  if (t == ts->root) {
    ts->root = merge_pairs(t->child);
  } else {
    if (t->prev->child == t) t->prev->child = t->next;
    else t->prev->next = t->next;
    if (t->next) t->next->prev = t->prev;
    ts->root = meld(ts->root, merge_pairs(t->child));
  }
  t->child = t->next = t->prev = NULL;
  t->cb = NULL;
}

static void on_uv(uv_timer_t *h) {
  mw_timers *ts = h->data;
  ts->armed = 0;
  uint64_t now = uv_now(h->loop);
  /* What is due at this loop time, which stands still during the
   * callbacks; a timer they start is due 1 ms later at least (see
   * mw_timer_start), so this loop ends. */
  while (ts->root && ts->root->due <= now && !ts->closed) {
    mw_timer *t = ts->root;
    mw_timer_cb cb = t->cb;
    unlink_timer(ts, t);
    cb(t);
  }
  rearm(ts);
}

void mw_timers_init(mw_timers *ts, uv_loop_t *loop) {
  ts->root = NULL;
  ts->armed = 0;
  ts->closed = false;
  uv_timer_init(loop, &ts->uv);
  ts->uv.data = ts;
}

void mw_timers_close(mw_timers *ts, uv_close_cb cb) {
  if (ts->closed) return;
  ts->closed = true;
  uv_close((uv_handle_t *)&ts->uv, cb);
}

void mw_timer_start(mw_timers *ts, mw_timer *t, uint64_t ms, mw_timer_cb cb) {
  if (t->cb) unlink_timer(ts, t);
  t->due = uv_now(ts->uv.loop) + (ms ? ms : 1);
  t->cb = cb;
  t->child = t->next = t->prev = NULL;
  ts->root = meld(ts->root, t);
  if (ts->root == t) rearm(ts);
}

void mw_timer_stop(mw_timers *ts, mw_timer *t) {
  if (!t->cb) return;
  bool was_root = t == ts->root;
  unlink_timer(ts, t);
  if (was_root) rearm(ts);
}
