/* turn.c — the per-turn flush list (see turn.h). */
#include "turn.h"

static void on_check(uv_check_t *h) { turn_run(h->data); }
static void on_prepare(uv_prepare_t *h) { turn_run(h->data); }

void turn_init(turn_list *l, uv_loop_t *loop, turn_run_cb run, void *data) {
  l->head = NULL;
  l->run = run;
  l->data = data;
  uv_check_init(loop, &l->check);
  l->check.data = l;
  uv_check_start(&l->check, on_check);
  uv_unref((uv_handle_t *)&l->check);
  uv_prepare_init(loop, &l->prepare);
  l->prepare.data = l;
  uv_prepare_start(&l->prepare, on_prepare);
  uv_unref((uv_handle_t *)&l->prepare);
}

void turn_mark(turn_list *l, turn_item *it) {
  if (it->marked) return;
  it->marked = true;
  it->next = l->head;
  l->head = it;
}

void turn_unmark(turn_list *l, turn_item *it) {
  if (!it->marked) return;
  turn_item **pp = &l->head;
  while (*pp != it) pp = &(*pp)->next;
  *pp = it->next;
  it->next = NULL;
  it->marked = false;
}

void turn_run(turn_list *l) {
  while (l->head) {
    turn_item *it = l->head;
    l->head = it->next;
    it->next = NULL;
    it->marked = false;
    l->run(l, it);
  }
}

void turn_close(turn_list *l, uv_close_cb closed_cb) {
  while (l->head) {
    turn_item *it = l->head;
    l->head = it->next;
    it->next = NULL;
    it->marked = false;
  }
  l->check.data = l->prepare.data = l->data;
  uv_close((uv_handle_t *)&l->check, closed_cb);
  uv_close((uv_handle_t *)&l->prepare, closed_cb);
}
