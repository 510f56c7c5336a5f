/* test_timers.c — many timers on one uv timer, on a real loop: they fire
 * in the order of their due times, each once; a stopped one never; a
 * restarted one at its new time; a callback may stop another timer or
 * restart itself (at 0 ms too, without holding the loop); a set with no
 * timer started keeps no loop alive; thousands started, stopped and
 * restarted at random fire exactly as a sorted list says. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "timers.h"

#include "check.h"

typedef struct thing {
  mw_timer t;
  int id, fired;
  uint64_t due, fired_at;
  struct thing *stop_other; /* stopped from this one's callback */
  int restart_left;         /* restarts itself at 0 ms this many times */
} thing;

static mw_timers ts;
static int order[64], norder;
static int out_of_order; /* a timer fired before one due earlier had */
static uint64_t last_due;

static void on_fire(mw_timer *t) {
  thing *x = (thing *)((char *)t - offsetof(thing, t));
  x->fired++;
  x->fired_at = uv_now(ts.uv.loop);
  if (x->due < last_due) out_of_order++;
  last_due = x->due;
  if (norder < 64) order[norder++] = x->id;
  CHECK(!mw_timer_active(t)); /* stopped before its callback: it may start itself again */
  if (x->stop_other) mw_timer_stop(&ts, &x->stop_other->t);
  if (x->restart_left > 0) {
    x->restart_left--;
    mw_timer_start(&ts, t, 0, on_fire);
  }
}

/* The heap's shape: every child due no earlier than its parent, each
 * node's prev its previous sibling (or its parent, for a first child).
 * Returns the number of nodes, or -1 when the shape is broken. */
static int heap_nodes(const mw_timer *n) {
  int count = 1;
  const mw_timer *prev = n;
  for (const mw_timer *c = n->child; c; prev = c, c = c->next) {
    if (c->due < n->due || c->prev != prev || !c->cb) return -1;
    int k = heap_nodes(c);
    if (k < 0) return -1;
    count += k;
  }
  return count;
}

static void start(thing *x, uint64_t ms) {
  x->due = uv_now(ts.uv.loop) + ms;
  mw_timer_start(&ts, &x->t, ms, on_fire);
}

#define N 5000

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mw_timers_init(&ts, &loop);

  /* Nothing started: the set keeps no loop alive. */
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);

  /* In due order, whatever the order they were started in. */
  thing a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4}, e = {.id = 5};
  start(&c, 30);
  start(&a, 10);
  start(&e, 50);
  start(&b, 20);
  start(&d, 40);
  mw_timer_stop(&ts, &d.t);  /* stopped: never fires */
  mw_timer_stop(&ts, &d.t);  /* twice: harmless */
  start(&e, 5);              /* restarted: at its new time, once */
  CHECK(mw_timer_active(&a.t) && !mw_timer_active(&d.t));
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(norder == 4 && order[0] == 5 && order[1] == 1 && order[2] == 2 && order[3] == 3);
  CHECK(a.fired == 1 && b.fired == 1 && c.fired == 1 && d.fired == 0 && e.fired == 1);
  CHECK(a.fired_at >= a.due && c.fired_at >= c.due);
  CHECK(out_of_order == 0);

  /* A callback stops a timer due at the same time or later: it never fires.
   * The root stopped: the next one still fires at its time. */
  thing f = {.id = 6}, g = {.id = 7}, h = {.id = 8}, k = {.id = 9};
  f.stop_other = &g;
  norder = 0;
  last_due = 0;
  start(&f, 5);
  start(&g, 5);
  start(&h, 1);
  start(&k, 15);
  mw_timer_stop(&ts, &h.t);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(f.fired == 1 && g.fired == 0 && h.fired == 0 && k.fired == 1);
  CHECK(k.fired_at >= k.due);

  /* A callback restarting its own timer at 0 ms runs again on a later loop
   * time, not in the same pass (which would never end). */
  thing r = {.id = 10, .restart_left = 3};
  start(&r, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.fired == 4 && !mw_timer_active(&r.t));

  /* Many, at random: started, some stopped, some restarted; every one
   * left started fires once, none out of due order. */
  thing *many = calloc(N, sizeof *many);
  srand(7);
  norder = 0;
  last_due = 0;
  out_of_order = 0;
  for (int i = 0; i < N; i++) {
    many[i].id = 100 + i;
    start(&many[i], (uint64_t)(rand() % 60 + 1));
  }
  int stopped = 0;
  for (int i = 0; i < N; i += 3) {
    if (i % 2) {
      mw_timer_stop(&ts, &many[i].t);
      stopped++;
    } else {
      start(&many[i], (uint64_t)(rand() % 60 + 1));
    }
  }
  CHECK(ts.root && !ts.root->prev && !ts.root->next && heap_nodes(ts.root) == N - stopped);
  /* Stopped again from the middle of the heap, and restarted: the shape holds. */
  for (int i = 1; i < N; i += 7) {
    if (mw_timer_active(&many[i].t)) {
      mw_timer_stop(&ts, &many[i].t);
      CHECK(heap_nodes(ts.root) > 0);
      start(&many[i], (uint64_t)(rand() % 60 + 1));
    }
  }
  CHECK(heap_nodes(ts.root) == N - stopped);
  uv_run(&loop, UV_RUN_DEFAULT);
  int once = 0, never = 0;
  for (int i = 0; i < N; i++) {
    if (many[i].fired == 1 && many[i].fired_at >= many[i].due) once++;
    if (many[i].fired == 0) never++;
  }
  CHECK(once == N - stopped && never == stopped);
  CHECK(out_of_order == 0);
  CHECK(ts.root == NULL);

  /* Closed with timers started: they never fire, and may still be stopped. */
  start(&a, 1);
  start(&b, 2);
  mw_timers_close(&ts, NULL);
  mw_timer_stop(&ts, &b.t);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(a.fired == 1 && b.fired == 1);
  CHECK(uv_loop_close(&loop) == 0);
  free(many);
  CHECK_REPORT();
  return failed != 0;
}
