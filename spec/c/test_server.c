/* test_server.c — the connection lifecycle on real sockets: accepting,
 * answering, keep-alive, ending after a response (half-close, linger),
 * corked writes, timeouts; and what a failed allocation does on the accept,
 * read and write paths: it closes that one connection, and the server goes
 * on accepting and answering.
 *
 * Allocations are made to fail through the linker: this test is linked with
 * --wrap=malloc,calloc,realloc, so every call the core makes goes through
 * the __wrap_ functions below, which fail the N-th call from now when told
 * to. The clients are plain blocking sockets on loopback; the loop is run
 * in small steps between their reads and writes. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "server.h"

#include "check.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

/* ---- allocation failure on demand ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static int fail_in = 0; /* the fail_in-th allocation from now fails (0: none) */
static int failures;    /* allocations failed so far */

static bool should_fail(void) {
  if (fail_in <= 0) return false;
  if (--fail_in > 0) return false;
  failures++;
  return true;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }

/* ---- a server with one route ---- */

static uv_loop_t loop;
static mw_server srv;
static int port;
static int answered;

static void handler(void *ud, const http_req *req, http_res *res) {
  (void)ud;
  answered++;
  http_res_simple(res, 200, "text/plain", "hi");
}

static void run_a_bit(int turns) {
  for (int i = 0; i < turns; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

static int client(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

/* Reads what the server sends until it closes or the turns run out; returns
 * the bytes (NUL-terminated, static) and sets *closed when it closed. */
static const char *collect(int fd, int turns, bool *closed) {
  static char buf[65536];
  size_t n = 0;
  *closed = false;
  for (int i = 0; i < turns && !*closed; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    for (;;) {
      ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
      if (r > 0) {
        n += (size_t)r;
        if (n == sizeof buf - 1) n = 0;
        continue;
      }
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) *closed = true;
      break;
    }
    if (!*closed) usleep(1000);
  }
  buf[n] = '\0';
  return buf;
}

static bool get_hi(const char *what) {
  int fd = client();
  if (fd < 0) return false;
  const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  if (send(fd, req, sizeof req - 1, 0) != (ssize_t)(sizeof req - 1)) return false;
  bool closed;
  const char *got = collect(fd, 500, &closed);
  close(fd);
  bool ok = strstr(got, "200 OK") && strstr(got, "\r\n\r\nhi") && closed;
  if (!ok) fprintf(stderr, "%s: got %s (closed: %d)\n", what, got, closed);
  return ok;
}

/* ---- tests ---- */

static void test_serves_and_ends(void) {
  CHECK(get_hi("a plain request"));
  /* keep-alive: two requests on one connection, then the client's EOF ends it */
  int fd = client();
  const char two[] = "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n";
  send(fd, two, sizeof two - 1, 0);
  bool closed;
  const char *got = collect(fd, 100, &closed);
  const char *second = strstr(got, "200 OK") ? strstr(strstr(got, "200 OK") + 1, "200 OK") : NULL;
  CHECK(second != NULL); /* both answered, in one gathered write or two */
  CHECK(!closed);        /* kept alive */
  shutdown(fd, SHUT_WR);
  collect(fd, 500, &closed);
  CHECK(closed);
  close(fd);
  CHECK(srv.nconns == 0 || (run_a_bit(50), srv.nconns == 0));
}

static void test_accept_survives_failed_allocation(void) {
  /* The connection's own allocation fails: that client is closed... */
  int before = failures;
  fail_in = 1;
  int fd = client();
  bool closed;
  collect(fd, 500, &closed);
  CHECK(failures == before + 1);
  CHECK(closed);
  close(fd);
  /* ...and the listener still accepts: the next client is answered. */
  CHECK(get_hi("after a failed accept"));
  /* The HTTP state's allocation (the second one) fails: same. */
  before = failures;
  fail_in = 2;
  fd = client();
  collect(fd, 500, &closed);
  CHECK(failures == before + 1);
  CHECK(closed);
  close(fd);
  CHECK(get_hi("after a failed attach"));
}

/* Counts complete answers ("HTTP/1.1 200") in got. */
static int count_answers(const char *got) {
  int n = 0;
  for (const char *p = got; (p = strstr(p, "HTTP/1.1 200")); p++) n++;
  return n;
}

static void test_read_and_write_paths(void) {
  /* Every allocation made while a connection reads and answers 20
   * pipelined requests is made to fail, one at a time: each time that
   * connection either gets all its answers or is closed (it never hangs),
   * and the server answers the next client. */
  char many[2048] = "";
  for (int i = 0; i < 20; i++) strcat(many, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  int hung = 0, survived = 0, closed_ones = 0;
  for (int k = 1; k <= 120; k++) {
    int fd = client();
    run_a_bit(5);
    fail_in = k;
    send(fd, many, strlen(many), 0);
    bool closed;
    const char *got = collect(fd, 300, &closed);
    int n = count_answers(got);
    fail_in = 0;
    if (closed) closed_ones++;
    else if (n == 20) survived++;
    else {
      hung++;
      fprintf(stderr, "allocation %d: %d answers, connection still open\n", k, n);
    }
    close(fd);
    if (!get_hi("after a failed allocation")) {
      CHECK(!"the server answers after a failed allocation");
      break;
    }
  }
  CHECK(hung == 0);
  CHECK(closed_ones > 0); /* some allocations were on the path */
  CHECK(survived > 0);    /* and past the last one, all were answered */
}

static void test_header_timeout(void) {
  /* Headers never finished: closed after the header timeout. */
  int fd = client();
  send(fd, "GET / HTTP/1.1\r\n", 16, 0);
  bool closed;
  collect(fd, 2000, &closed);
  CHECK(closed);
  close(fd);
}

static void on_idle_stop(mw_server *s) { (void)s; }

int main(void) {
  uv_loop_init(&loop);
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.port = 0;
  cfg.http.quiet = true;
  cfg.http.header_timeout_ms = 300;
  mw_log_level = -1;
  mw_listener *l;
  app_site = (http_site){{handler, NULL}, cfg.http};
  if (mw_server_init(&srv, &loop, &cfg.server) ||
      mw_server_listen(&srv, "127.0.0.1:0", &(mw_listen_opts){http_conn_attach, &app_site, http_conn_refuse}, &l)) {
    fprintf(stderr, "cannot listen\n");
    return 1;
  }
  port = mw_listener_port(l);

  test_serves_and_ends();
  test_accept_survives_failed_allocation();
  test_read_and_write_paths();
  test_header_timeout();
  CHECK(answered > 0);

  srv.on_idle_stop = on_idle_stop;
  mw_server_stop(&srv);
  run_a_bit(50);
  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
