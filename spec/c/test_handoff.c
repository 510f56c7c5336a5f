/* test_handoff.c — the --workers seam of the HTTP glue: a request whose
 * session another worker owns is not answered here; its head is written
 * again, followed by the bytes read after it, and the connection goes to
 * that worker's give(). A request of this worker's own is served as ever,
 * and a connection with an answer still queued waits for it to leave.
 * Also the sid marks (wlink.c): each of the 64 workers has its own. No
 * socket: the connection is fed directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "server.h"
#include "wlink.h"

#include "check.h"

static uv_loop_t loop;
static mw_server srv;
static http_site app_site;
static int served;

static struct {
  int calls, worker;
  mw_str bytes;
} given;

static void handler(void *ud, const http_req *req, http_res *res) {
  (void)ud;
  (void)req;
  served++;
  http_res_simple(res, 200, "text/plain", "here");
}

/* Worker 1 owns the sessions whose sid starts with B (as wlink marks them). */
static int owner(void *ud, const char *q, size_t len) {
  (void)ud;
  const char *s = memmem(q, len, "sid=", 4);
  if (!s) return -1;
  int w = wlink_sid_owner(s + 4, 20);
  return w == 0 ? -1 : w;
}

static void give(void *ud, mw_conn *c, int worker, mw_str *bytes) {
  (void)ud;
  given.calls++;
  given.worker = worker;
  mw_str_free(&given.bytes);
  given.bytes = *bytes;
  *bytes = (mw_str){0};
  CHECK(c->proto == NULL);
  CHECK(!c->reading);
  mw_conn_close(c);
}

static const mw_handoff handoff = {owner, give, NULL};

static mw_conn *conn(void) {
  memset(&given, 0, sizeof given);
  served = 0;
  return mw_conn_new(&srv, false, http_conn_attach, &app_site);
}

static void feed(mw_conn *c, const char *s) { c->proto->on_read(c, s, strlen(s)); }

static void settle(void) {
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

static void test_foreign_poll_is_handed_over(void) {
  mw_conn *c = conn();
  feed(c, "GET /socket.io/?EIO=4&transport=polling&sid=BAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: h\r\n"
          "Cookie:  a=1 \r\n\r\n");
  CHECK(served == 0);
  CHECK(given.calls == 1);
  CHECK(given.worker == 1);
  CHECK(given.bytes.p && strcmp(given.bytes.p, "GET /socket.io/?EIO=4&transport=polling&sid=BAAAAAAAAAAAAAAAAAAA "
                                               "HTTP/1.1\r\nHost: h\r\nCookie: a=1 \r\n\r\n") == 0);
  settle();
  mw_str_free(&given.bytes);
}

static void test_body_read_so_far_goes_along(void) {
  mw_conn *c = conn();
  feed(c, "POST /socket.io/?EIO=4&transport=polling&sid=BAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: h\r\n"
          "Content-Length: 10\r\n\r\n4hel");
  CHECK(served == 0);
  CHECK(given.calls == 1);
  CHECK(given.bytes.p && strcmp(given.bytes.p, "POST /socket.io/?EIO=4&transport=polling&sid=BAAAAAAAAAAAAAAAAAAA "
                                               "HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n4hel") == 0);
  settle();
  mw_str_free(&given.bytes);
}

static void test_own_session_is_served_here(void) {
  mw_conn *c = conn();
  feed(c, "GET /socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: h\r\n\r\n"
          "GET /plain?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(served == 2);
  CHECK(given.calls == 0);
  mw_conn_close(c);
  settle();
}

static void test_waits_for_the_queue(void) {
  mw_conn *c = conn();
  /* The first answer is still queued (nothing flushes here) when the
   * second request turns out to be another worker's. */
  feed(c, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
          "GET /socket.io/?EIO=4&transport=polling&sid=BAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(served == 1);
  CHECK(c->wq_len > 0);
  CHECK(given.calls == 0);
  CHECK(!c->reading);
  mw_conn_close(c);
  settle();
}

static void test_sid_marks(void) {
  bool distinct = true;
  for (int i = 0; i < 64; i++) {
    char sid[21];
    memset(sid, 'x', 20);
    sid[20] = '\0';
    sid[0] = wlink_sid_mark(i);
    if (wlink_sid_owner(sid, 20) != i) distinct = false;
  }
  CHECK(distinct);
  CHECK(wlink_sid_owner("AAAA", 4) == -1);               /* not a sid */
  CHECK(wlink_sid_owner("%AAAAAAAAAAAAAAAAAAA", 20) == -1); /* not base64url */
}

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg.server);
  srv.handoff = &handoff;
  app_site = (http_site){{handler, NULL}, cfg.http};

  test_foreign_poll_is_handed_over();
  test_body_read_so_far_goes_along();
  test_own_session_is_served_here();
  test_waits_for_the_queue();
  test_sid_marks();

  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
