/* test_turn.c — the per-turn flush list on a real loop: marked items run
 * once at the end of the turn, however often they were marked; an item
 * marked while the list runs runs in the same pass; an unmarked one not
 * at all; what a timer marks runs before the loop blocks again; the list
 * keeps no loop alive; closing calls back once per handle. */
#include <stddef.h>
#include <string.h>

#include "turn.h"

#include "check.h"

typedef struct thing {
  int runs;
  turn_item item;
  struct thing *also; /* marked from this one's run */
} thing;

static turn_list list;
static thing from_timer;
static uv_timer_t alive;
static uint64_t marked_at, ran_at; /* loop times: a poll in between would move it */
static int order[8], norder;

static void run(turn_list *l, turn_item *it) {
  thing *t = (thing *)((char *)it - offsetof(thing, item));
  t->runs++;
  if (t == &from_timer) {
    ran_at = uv_now(l->check.loop);
    uv_timer_stop(&alive); /* nothing left to wait for */
  }
  if (norder < 8) order[norder++] = t->runs;
  CHECK(!it->marked); /* unmarked before it runs: it may mark itself again */
  if (t->also) turn_mark(l, &t->also->item);
}

static void on_timer(uv_timer_t *tm) {
  marked_at = uv_now(tm->loop);
  turn_mark(&list, &from_timer.item);
}
static void on_alive(uv_timer_t *tm) {}

static int closed;
static void on_closed(uv_handle_t *h) {
  CHECK(h->data == &closed);
  closed++;
}

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  turn_init(&list, &loop, run, &closed);

  /* Nothing marked, nothing else: the list keeps no loop alive. */
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);

  /* Something else keeps the loop alive (a server's listener does). */
  uv_timer_init(&loop, &alive);
  uv_timer_start(&alive, on_alive, 10000, 0);

  thing a = {0}, b = {0}, c = {0}, d = {0};
  a.also = &d; /* d is marked while the list runs */
  turn_mark(&list, &a.item);
  turn_mark(&list, &a.item);
  turn_mark(&list, &b.item);
  turn_mark(&list, &c.item);
  turn_unmark(&list, &c.item);
  turn_unmark(&list, &c.item); /* twice: harmless */
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(a.runs == 1 && b.runs == 1 && c.runs == 0 && d.runs == 1);
  CHECK(!a.item.marked && !d.item.marked && list.head == NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(a.runs == 1 && d.runs == 1); /* once per mark */

  /* A timer's callback marks: the item runs before the loop polls again
   * (the prepare handle), not after the poll waited (here, for the long
   * timer: the loop's clock would have moved on). */
  uv_timer_t tm;
  uv_timer_init(&loop, &tm);
  uv_timer_start(&tm, on_timer, 1, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(from_timer.runs == 1);
  CHECK(ran_at == marked_at);

  /* turn_run drains now. */
  turn_mark(&list, &b.item);
  turn_run(&list);
  CHECK(b.runs == 2);

  /* Closing drops what is marked (its owner may still unmark it) and
   * calls back once per handle. */
  turn_mark(&list, &c.item);
  turn_close(&list, on_closed);
  CHECK(!c.item.marked);
  turn_unmark(&list, &c.item);
  uv_close((uv_handle_t *)&tm, NULL);
  uv_close((uv_handle_t *)&alive, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed == 2 && c.runs == 0);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK_REPORT();
  return failed != 0;
}
