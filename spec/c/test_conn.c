/* test_conn.c — the connection lifecycle of server.c on its own, with a
 * protocol of the test's own over real socket pairs and the loop running:
 *   - corking: what one loop turn queues leaves in one gathered write at
 *     the end of the turn (a SOCK_SEQPACKET pair keeps each write a record
 *     of its own, so one record holding every piece shows one write), also
 *     what a timer queues, before the loop blocks;
 *   - lazy deadlines: moving a timeout later does not re-arm the timer, an
 *     early firing waits for the rest, a cleared one lapses, an earlier one
 *     re-arms;
 *   - ending: the queue leaves, then a half-close; the connection lingers,
 *     discarding what the peer still sends, until the peer closes or the
 *     linger time is over;
 *   - the send timeout counts between writes that make progress: a slow
 *     reader keeps its connection, one that stops reading times out;
 *   - closing releases what is queued at once; drain is reported. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "server.h"

#include "check.h"

static uv_loop_t loop;
static mw_server srv;

/* ---- a protocol that records what happens ---- */

static struct {
  int reads, eofs, timeouts, drains, closes;
  int progressed; /* timeouts that found the send under way */
  size_t read_bytes;
  uint64_t timeout_at; /* loop time of the last on_timeout */
  uint64_t drain_at;   /* loop time of the last on_drain */
} P;

static void p_read(mw_conn *c, const char *data, size_t len) {
  P.reads++;
  P.read_bytes += len;
}
static void p_eof(mw_conn *c) {
  P.eofs++;
  mw_conn_close(c);
}
static void p_timeout(mw_conn *c) {
  if (mw_conn_send_progressed(c)) {
    P.progressed++;
    return;
  }
  P.timeouts++;
  P.timeout_at = uv_now(c->srv->loop);
}
static void p_drain(mw_conn *c) {
  P.drains++;
  P.drain_at = uv_now(c->srv->loop);
}
static void p_close(mw_conn *c) { P.closes++; }
static const mw_proto test_proto = {p_read, p_eof, p_timeout, p_drain, NULL, p_close};

static void attach(mw_conn *c, void *ud) {
  (void)ud;
  c->proto = &test_proto;
}

/* A connection on one end of a new socket pair of type; *peer is the other
 * end (non-blocking), the test's side. */
static mw_conn *pair(int type, int *peer) {
  int sv[2];
  if (socketpair(AF_UNIX, type, 0, sv) != 0) return NULL;
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  mw_conn *c = mw_conn_new(&srv, true, attach, NULL);
  if (!c || uv_pipe_open(&c->pipe, sv[0]) != 0) return NULL;
  mw_conn_resume(c);
  *peer = sv[1];
  memset(&P, 0, sizeof P);
  return c;
}

static void turn(void) { uv_run(&loop, UV_RUN_NOWAIT); }

/* Runs the loop until cond holds or about ms have passed (generous: a
 * bound on waiting, never a claim about speed). */
#define RUN_UNTIL(cond, ms)                                                    \
  do {                                                                         \
    for (int i_ = 0; i_ < (ms) && !(cond); i_++) {                             \
      uv_run(&loop, UV_RUN_NOWAIT);                                            \
      usleep(1000);                                                            \
    }                                                                          \
  } while (0)

static void write_str(mw_conn *c, const char *s) { mw_conn_write_copy(c, s, strlen(s)); }

/* ---- corking ---- */

static void test_one_write_per_turn(void) {
  int peer;
  mw_conn *c = pair(SOCK_SEQPACKET, &peer);
  CHECK(c != NULL);
  if (!c) return;
  char buf[256];
  write_str(c, "one ");
  write_str(c, "two ");
  mw_buf *shared = mw_buf_from("three", 5);
  mw_conn_write(c, mw_buf_ref(shared), 0, 5);
  /* Queued, not sent: the turn has not ended. */
  CHECK(recv(peer, buf, sizeof buf, 0) == -1 && errno == EAGAIN);
  CHECK(c->wq_len == 3 && c->wq_bytes == 13);
  turn();
  ssize_t n = recv(peer, buf, sizeof buf, 0);
  CHECK(n == 13 && memcmp(buf, "one two three", 13) == 0); /* one record: one write */
  CHECK(recv(peer, buf, sizeof buf, 0) == -1 && errno == EAGAIN);
  CHECK(c->wq_len == 0 && c->wq_bytes == 0 && mw_conn_sent(c) == 13);
  CHECK(shared->refs == 1); /* the queue's reference went once written */
  CHECK(P.drains == 1);
  mw_buf_unref(shared);

  /* The next turn's writes are the next write. */
  write_str(c, "four ");
  write_str(c, "five");
  turn();
  n = recv(peer, buf, sizeof buf, 0);
  CHECK(n == 9 && memcmp(buf, "four five", 9) == 0);
  mw_conn_close(c);
  RUN_UNTIL(srv.nconns == 0, 1000);
  CHECK(srv.nconns == 0 && P.closes == 1);
  close(peer);
}

static mw_conn *timer_conn;
static uint64_t written_at;
static bool gave_up;
static void on_write_timer(uv_timer_t *t) {
  written_at = uv_now(t->loop);
  write_str(timer_conn, "from ");
  write_str(timer_conn, "a timer");
}
static void on_give_up(uv_timer_t *t) { gave_up = true; }

static void test_timer_writes_leave_before_the_loop_blocks(void) {
  int peer;
  mw_conn *c = timer_conn = pair(SOCK_SEQPACKET, &peer);
  CHECK(c != NULL);
  if (!c) return;
  /* The write leaves in the turn the timer queued it in (the loop's clock
   * has not moved: no poll in between), not after the loop next woke up
   * (here it would sleep until the give-up timer). */
  uv_timer_t t, give_up;
  uv_timer_init(&loop, &t);
  uv_timer_init(&loop, &give_up);
  uv_timer_start(&t, on_write_timer, 1, 0);
  uv_timer_start(&give_up, on_give_up, 3000, 0);
  while (!P.drains && !gave_up) uv_run(&loop, UV_RUN_ONCE);
  CHECK(P.drains == 1 && P.drain_at == written_at && !gave_up);
  char buf[64];
  ssize_t n = recv(peer, buf, sizeof buf, 0);
  CHECK(n == 12 && memcmp(buf, "from a timer", 12) == 0);
  uv_close((uv_handle_t *)&t, NULL);
  uv_close((uv_handle_t *)&give_up, NULL);
  mw_conn_close(c);
  RUN_UNTIL(srv.nconns == 0, 1000);
  close(peer);
}

/* ---- lazy deadlines ---- */

static void test_lazy_deadlines(void) {
  int peer;
  mw_conn *c = pair(SOCK_STREAM, &peer);
  CHECK(c != NULL);
  if (!c) return;
  uv_update_time(&loop);
  mw_conn_set_timeout(c, 30);
  uint64_t due = c->timer_due;
  CHECK(mw_timer_active(&c->timer) && c->deadline == due);
  /* Later: the deadline moves, the timer stays armed for the earlier time. */
  mw_conn_set_timeout(c, 400);
  CHECK(c->timer_due == due && c->deadline > due);
  /* It fires early, sees the deadline is later, waits for the rest: no
   * timeout reaches the protocol before the deadline. */
  RUN_UNTIL(c->timer_due != due, 2000);
  CHECK(P.timeouts == 0 && c->timer_due == c->deadline);
  uint64_t deadline = c->deadline;
  RUN_UNTIL(P.timeouts == 1, 5000);
  CHECK(P.timeouts == 1 && P.timeout_at >= deadline && c->deadline == 0);
  CHECK(srv.nconns == 1); /* the protocol decides what a timeout means */

  /* Cleared: the armed timer lapses without telling anyone. */
  mw_conn_set_timeout(c, 20);
  mw_conn_set_timeout(c, 0);
  CHECK(c->deadline == 0 && mw_timer_active(&c->timer));
  RUN_UNTIL(!mw_timer_active(&c->timer), 2000);
  CHECK(P.timeouts == 1);

  /* Earlier than the armed time: re-armed for the earlier one. */
  mw_conn_set_timeout(c, 5000);
  due = c->timer_due;
  mw_conn_set_timeout(c, 10);
  CHECK(c->timer_due < due && c->timer_due == c->deadline);
  RUN_UNTIL(P.timeouts == 2, 2000);
  CHECK(P.timeouts == 2);
  mw_conn_close(c);
  RUN_UNTIL(srv.nconns == 0, 1000);
  close(peer);
}

/* ---- ending and lingering ---- */

/* Reads from fd until EOF or about ms; returns the bytes read (into buf,
 * NUL-terminated) and sets *eof. */
static size_t read_until_eof(int fd, char *buf, size_t cap, int ms, bool *eof) {
  size_t n = 0;
  *eof = false;
  for (int i = 0; i < ms && !*eof; i++) {
    turn();
    ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
    if (r > 0) n += (size_t)r;
    else if (r == 0) *eof = true;
    else usleep(1000);
  }
  buf[n] = '\0';
  return n;
}

static void test_end_half_closes_then_lingers_until_the_peer_closes(void) {
  int peer;
  mw_conn *c = pair(SOCK_STREAM, &peer);
  CHECK(c != NULL);
  if (!c) return;
  write_str(c, "last words");
  mw_conn_end(c);
  write_str(c, " and more"); /* still queued in the same turn: it goes too */
  char buf[256];
  bool eof;
  read_until_eof(peer, buf, sizeof buf, 2000, &eof);
  CHECK(eof && strcmp(buf, "last words and more") == 0);
  CHECK(c->shut && !c->closing && srv.nconns == 1); /* lingering */
  /* What the peer still sends is read and discarded, not handed on, and
   * does not reset the connection. */
  CHECK(send(peer, "late", 4, 0) == 4);
  RUN_UNTIL(false, 50);
  CHECK(P.reads == 0 && srv.nconns == 1);
  write_str(c, "nothing after the end");
  CHECK(c->wq_len == 0);
  /* The peer closes: the linger ends at once (well before its 2 s). */
  close(peer);
  RUN_UNTIL(srv.nconns == 0, 1000);
  CHECK(srv.nconns == 0 && P.closes == 1 && P.eofs == 0);
}

static void test_linger_ends_without_the_peer(void) {
  int peer;
  mw_conn *c = pair(SOCK_STREAM, &peer);
  CHECK(c != NULL);
  if (!c) return;
  mw_conn_set_timeout(c, 100000); /* a deadline set before the end does not hold the connection */
  mw_conn_end(c);                 /* nothing queued: shut at once */
  char buf[16];
  bool eof;
  read_until_eof(peer, buf, sizeof buf, 2000, &eof);
  CHECK(eof && c->shut && srv.nconns == 1);
  /* The peer neither sends nor closes: the linger time closes it. */
  RUN_UNTIL(srv.nconns == 0, 10000);
  CHECK(srv.nconns == 0 && P.closes == 1 && P.timeouts == 0);
  /* Closed, not just shut: the peer's writes now fail. */
  RUN_UNTIL(false, 20);
  CHECK(send(peer, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE);
  close(peer);
}

static void test_peer_eof_reaches_the_protocol(void) {
  int peer;
  mw_conn *c = pair(SOCK_STREAM, &peer);
  CHECK(c != NULL);
  if (!c) return;
  send(peer, "hello", 5, 0);
  RUN_UNTIL(P.read_bytes == 5, 1000);
  CHECK(P.read_bytes == 5 && P.reads >= 1);
  shutdown(peer, SHUT_WR);
  RUN_UNTIL(P.eofs == 1 && srv.nconns == 0, 1000);
  CHECK(P.eofs == 1 && srv.nconns == 0 && c != NULL);
  close(peer);
}

/* ---- the send timeout ---- */

static void test_send_timeout_counts_between_progress(void) {
  int peer;
  mw_conn *c = pair(SOCK_STREAM, &peer);
  CHECK(c != NULL);
  if (!c) return;
  srv.opts.send_timeout_ms = 200;
  mw_buf *big = mw_buf_new(8 << 20);
  memset(big->data, 'x', big->len);
  mw_conn_write(c, big, 0, big->len);
  turn(); /* the kernel takes what it can; the rest waits in a uv_write */
  CHECK(c->wq_len == 1 && c->inflight == 1);
  mw_conn_arm_send_timeout(c);
  /* A slow reader: a little every few milliseconds, for several periods. */
  static char buf[16384];
  size_t got = 0;
  for (int i = 0; i < 150 && srv.nconns; i++) {
    turn();
    ssize_t r = recv(peer, buf, sizeof buf, 0);
    if (r > 0) got += (size_t)r;
    usleep(5000);
  }
  CHECK(got > 0 && got < big->len);
  CHECK(P.progressed > 0 && P.timeouts == 0);
  /* It stops reading: the next period finds nothing left, a timeout. */
  RUN_UNTIL(P.timeouts == 1, 5000);
  CHECK(P.timeouts == 1);
  srv.opts.send_timeout_ms = 60000;
  mw_conn_close(c);
  RUN_UNTIL(srv.nconns == 0, 1000);
  close(peer);
}

/* ---- closing ---- */

static void test_close_releases_the_queue_now(void) {
  int peer;
  mw_conn *c = pair(SOCK_STREAM, &peer);
  CHECK(c != NULL);
  if (!c) return;
  mw_buf *b = mw_buf_from("shared broadcast", 16);
  mw_conn_write(c, mw_buf_ref(b), 0, 16);
  mw_conn_write(c, mw_buf_ref(b), 7, 9);
  CHECK(b->refs == 3);
  mw_conn_close(c);
  CHECK(b->refs == 1 && c->wq_bytes == 0); /* released now, not at the free */
  mw_conn_write(c, mw_buf_ref(b), 0, 16);  /* a write after the close is dropped */
  CHECK(b->refs == 1);
  RUN_UNTIL(srv.nconns == 0, 1000);
  CHECK(srv.nconns == 0 && P.closes == 1);
  char buf[32];
  CHECK(recv(peer, buf, sizeof buf, 0) == 0); /* nothing was sent */
  mw_buf_unref(b);
  close(peer);
}

int main(void) {
  uv_loop_init(&loop);
  mw_config cfg;
  mw_config_defaults(&cfg);
  mw_log_level = -1;
  if (mw_server_init(&srv, &loop, &cfg.server)) return 1;

  test_one_write_per_turn();
  test_timer_writes_leave_before_the_loop_blocks();
  test_lazy_deadlines();
  test_end_half_closes_then_lingers_until_the_peer_closes();
  test_linger_ends_without_the_peer();
  test_peer_eof_reaches_the_protocol();
  test_send_timeout_counts_between_progress();
  test_close_releases_the_queue_now();

  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK_REPORT();
  return failed != 0;
}
