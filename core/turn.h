/* turn.h — work left for the end of the loop turn: the per-turn flush list.
 *
 * Writes are corked: what a loop turn queues on a connection leaves in one
 * write when the turn ends, and a polling session's output answers its
 * pending GET then. An owner marks an item (embedded in its own struct)
 * when it has something to finish; the list runs every marked item once,
 * from a check handle (after the turn's I/O callbacks) and from a prepare
 * handle (before the loop blocks, for what timers and idle callbacks
 * queued). Marking is O(1) and idempotent; an item is run at most once
 * per mark; an item marked while the list runs is run in the same pass. */
#ifndef MW_TURN_H
#define MW_TURN_H

#include <stdbool.h>
#include <uv.h>

typedef struct turn_item {
  struct turn_item *next;
  bool marked;
} turn_item;

typedef struct turn_list turn_list;
typedef void (*turn_run_cb)(turn_list *l, turn_item *it);

struct turn_list {
  uv_check_t check;
  uv_prepare_t prepare;
  turn_item *head;
  turn_run_cb run; /* finishes one item; it is unmarked first, and may be marked again */
  void *data;      /* the owner's */
};

/* Starts the list's two handles on loop (they do not keep it alive). */
void turn_init(turn_list *l, uv_loop_t *loop, turn_run_cb run, void *data);

/* Marks it: it is run at the end of this turn. */
void turn_mark(turn_list *l, turn_item *it);

/* Unmarks it without running it (its owner is going away). */
void turn_unmark(turn_list *l, turn_item *it);

/* Runs every marked item now. */
void turn_run(turn_list *l);

/* Closes the two handles; closed_cb (may be NULL) is called once for each,
 * with the handle's data set to l->data. Marked items are dropped. */
void turn_close(turn_list *l, uv_close_cb closed_cb);

#endif
