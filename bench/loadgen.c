/*
 * loadgen — the load client of `make bench` (bench/run.mjs).
 *
 * Speaks Socket.IO v5 over Engine.IO v4 WebSocket only: the upgrade
 * GET <path>?EIO=4&transport=websocket, the open packet 0{...}, the CONNECT
 * "40" and its answer 40{"sid":...}; it answers Engine.IO pings "2" with "3"
 * and WebSocket pings with pongs. One process, one libuv loop, nothing
 * allocated per message: frames are parsed in place in one read buffer (a
 * frame split across reads is carried over in a buffer kept by its
 * connection) and the frames it sends are built once or on the stack.
 *
 *   loadgen fanout  --receivers N --messages M --window W [--seconds S]
 *   loadgen echo    --clients C --seconds S
 *   loadgen connect --clients N [--concurrency K]
 *   loadgen idle    --clients N [--concurrency K] [--hold S]
 *   common: --host 127.0.0.1 --port P [--port2 P2] [--path /socket.io/] [--sources K]
 *   fanout and echo: [--sync]
 *
 * With --port2, every other connection (the 2nd, 4th, ...) goes to port P2
 * instead of P, and the fanout sender always to P: the receivers split
 * evenly over two servers of one cluster, the sender on the first.
 *
 * With --sync (fanout, echo), loadgen prints "sync start" on stdout once
 * every client is connected, and "sync end" after its result, and each
 * time waits for a line on its stdin before it goes on: the runner reads
 * the server's CPU time at those two points, so the server's CPU per
 * delivery or round trip counts neither the handshakes nor the closing.
 *
 * fanout's --seconds caps the measured part: a slow server gets S seconds,
 * and the figures are over the deliveries that came by then ("completed"
 * says how many broadcasts reached every receiver).
 *
 * Each mode prints one line of JSON on stdout (progress and errors go to
 * stderr) and exits 0, or non-zero with a message.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

#define READ_BUF (256 * 1024)
#define MAX_HEAD 16384                 /* the HTTP answer to the upgrade */
#define MAX_FRAME (64u * 1024 * 1024)  /* a server frame larger than this is an error */
#define STALL_S 20                     /* no progress for this long: fail */
#define PER_SOURCE 20000               /* connections per source address by default */
#define PORT_WINDOW 64                 /* the source ports a connect() may pick from */
#define ECHO_PAYLOAD "\"0123456789abcdef\""

enum mode { M_FANOUT, M_ECHO, M_CONNECT, M_IDLE };
enum state { S_NONE, S_TCP, S_HTTP, S_OPEN, S_SIO, S_READY, S_CLOSED };
enum role { R_PLAIN, R_RECEIVER, R_SENDER };

/* Bytes waiting for the socket: only when a write would block (rare). */
typedef struct wqueue {
  uv_write_t req;
  char *fly, *pend;     /* being written / waiting */
  size_t flen, fcap, plen, pcap;
  int writing;
} wqueue;

typedef struct conn {
  uv_tcp_t tcp;         /* first: a handle pointer is the conn pointer */
  uv_connect_t creq;
  wqueue *wq;
  char *in;             /* carried bytes: the HTTP head or a frame split across reads */
  uint32_t inlen, incap;
  char *msg;            /* a fragmented message being put together */
  uint32_t msglen, msgcap;
  uint8_t msgop, state, role;
  uint32_t idx;
  uint32_t next_seq;    /* fanout receiver: the broadcast expected next */
  uint32_t ack_id;      /* echo: the ack awaited */
  uint64_t t_sent;      /* echo: when the awaited echo left */
} conn;

/* Latency histogram: 1 us buckets below 100 ms, 100 us buckets to 10 s. */
#define H_FINE 100000u
#define H_SLOTS (H_FINE + 99000u + 1u)
static uint32_t hist[H_SLOTS];
static uint64_t hist_n;

static struct {
  enum mode mode;
  const char *host, *path;
  int port, port2;      /* port2: 0, or the second server's (--port2) */
  struct sockaddr_in dst, dst2;
  uint32_t sources;
  int bind_sources;

  uint32_t receivers, messages, window, clients, concurrency;
  double seconds, hold;

  uv_loop_t *loop;
  conn *conns;
  uint32_t total;       /* connections to open */
  uint32_t started, inflight, connected;
  uint64_t t_connect0, t_connected;
  int all_connected, finishing, holding;
  int sync;             /* --sync: wait for the runner around the measured part */

  /* fanout */
  uint32_t *counts;     /* receivers that got each broadcast */
  uint32_t sent, completed;
  uint64_t deliveries, lost, dupes, strays;
  /* echo */
  int stop;
  uint64_t round_trips, bad_acks;

  uint64_t t0, t1;      /* the measured part */
  double cpu0;          /* this process's CPU seconds when it began */
  uint64_t now;         /* the time of the current read */
  uint64_t progress, progress_seen, t_progress, t_report;

  char *http_req, *http_req2;  /* the upgrade request to port, to port2 */
  size_t http_len, http_len2;
  char f_connect[16], f_pong[16];
  size_t f_connect_len, f_pong_len;

  uv_timer_t watchdog, end_timer;
  uv_signal_t sigterm, sigint;
  int exit_code;
} g;

static char rbuf[READ_BUF];
static const uint8_t MASK[4] = { 0x3a, 0x5c, 0x96, 0xe1 };

/* ------------------------------------------------------------------ utils */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (!p) fatal("out of memory");
  return p;
}

static void grow(char **buf, uint32_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  if (c > UINT32_MAX) fatal("buffer too large");
  *buf = xrealloc(*buf, c);
  *cap = (uint32_t)c;
}

static void hist_add(uint64_t ns) {
  uint64_t us = ns / 1000;
  uint32_t i = us < H_FINE ? (uint32_t)us : us < 10000000u ? H_FINE + (uint32_t)((us - H_FINE) / 100) : H_SLOTS - 1;
  hist[i]++;
  hist_n++;
}

/* Nearest rank, in ms: the lower edge of the bucket. */
static double hist_pct(double p) {
  if (!hist_n) return 0;
  uint64_t rank = (uint64_t)(p * (double)hist_n + 0.999999);
  if (rank < 1) rank = 1;
  uint64_t acc = 0;
  for (uint32_t i = 0; i < H_SLOTS; i++) {
    acc += hist[i];
    if (acc >= rank) return i < H_FINE ? i / 1000.0 : (H_FINE + (uint64_t)(i - H_FINE) * 100) / 1000.0;
  }
  return 10000.0;
}

/* Writes the decimal digits of v at p; returns the count. */
static size_t put_u64(char *p, uint64_t v) {
  char t[24];
  size_t n = 0;
  do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  for (size_t i = 0; i < n; i++) p[i] = t[n - 1 - i];
  return n;
}

/* Reads digits at *p (before end); returns 0 when there are none. */
static int get_u64(const char **p, const char *end, uint64_t *v) {
  const char *s = *p;
  uint64_t x = 0;
  while (s < end && *s >= '0' && *s <= '9') x = x * 10 + (uint64_t)(*s++ - '0');
  if (s == *p) return 0;
  *p = s;
  *v = x;
  return 1;
}

/* A masked client frame (RFC 6455 5.3) of `len` payload bytes into dst,
 * which has room for len + 14. Returns its length. */
static size_t ws_frame(char *dst, int op, const char *p, size_t len) {
  uint8_t *d = (uint8_t *)dst;
  size_t h;
  d[0] = (uint8_t)(0x80 | op);
  if (len < 126) {
    d[1] = (uint8_t)(0x80 | len);
    h = 2;
  } else if (len < 65536) {
    d[1] = 0x80 | 126;
    d[2] = (uint8_t)(len >> 8);
    d[3] = (uint8_t)len;
    h = 4;
  } else {
    d[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) d[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    h = 10;
  }
  memcpy(d + h, MASK, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) d[h + i] = (uint8_t)p[i] ^ MASK[i & 3];
  return h + len;
}

/* ------------------------------------------------------------------ writes */

static void conn_lost(conn *c, const char *why);

static void wq_append(conn *c, const char *p, size_t n) {
  wqueue *q = c->wq;
  if (q->plen + n > q->pcap) {
    size_t cap = q->pcap ? q->pcap : 1024;
    while (cap < q->plen + n) cap *= 2;
    q->pend = xrealloc(q->pend, cap);
    q->pcap = cap;
  }
  memcpy(q->pend + q->plen, p, n);
  q->plen += n;
}

static void on_write(uv_write_t *req, int status);

static void wq_kick(conn *c) {
  wqueue *q = c->wq;
  if (q->writing || !q->plen || c->state == S_CLOSED) return;
  char *b = q->fly;
  size_t cap = q->fcap;
  q->fly = q->pend, q->fcap = q->pcap, q->flen = q->plen;
  q->pend = b, q->pcap = cap, q->plen = 0;
  uv_buf_t buf = uv_buf_init(q->fly, (unsigned)q->flen);
  int r = uv_write(&q->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (r) { conn_lost(c, uv_strerror(r)); return; }
  q->writing = 1;
}

static void on_write(uv_write_t *req, int status) {
  conn *c = (conn *)req->handle;
  c->wq->writing = 0;
  if (status < 0) { conn_lost(c, uv_strerror(status)); return; }
  wq_kick(c);
}

static void send_raw(conn *c, const char *p, size_t n) {
  if (c->state == S_CLOSED) return;
  if (c->wq && (c->wq->writing || c->wq->plen)) { wq_append(c, p, n); return; }
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)n) return;
  if (r < 0 && r != UV_EAGAIN) { conn_lost(c, uv_strerror(r)); return; }
  if (r < 0) r = 0;
  if (!c->wq) {
    c->wq = calloc(1, sizeof *c->wq);
    if (!c->wq) fatal("out of memory");
  }
  wq_append(c, p + r, n - (size_t)r);
  wq_kick(c);
}

/* ------------------------------------------------------------------ the run */

static void close_all(void);

static void print_result(void) {
  double cpu = cpu_seconds() - g.cpu0; /* over the measured part only */
  if (g.lost || g.dupes || g.strays || g.bad_acks) {
    note("anomalies: %" PRIu64 " broadcasts missing, %" PRIu64 " duplicated or out of order, %" PRIu64
         " unreadable, %" PRIu64 " unexpected acks", g.lost, g.dupes, g.strays, g.bad_acks);
  }
  double secs = (double)(g.t1 - g.t0) / 1e9;
  switch (g.mode) {
    case M_FANOUT:
      printf("{\"mode\":\"fanout\",\"receivers\":%u,\"messages\":%u,\"completed\":%u,\"window\":%u,\"deliveries\":%" PRIu64
             ",\"seconds\":%.3f,\"deliveries_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"client_cpu\":%.3f}\n",
             g.receivers, g.messages, g.completed, g.window, g.deliveries, secs, secs > 0 ? g.deliveries / secs : 0.0,
             hist_pct(0.50), hist_pct(0.99), cpu);
      break;
    case M_ECHO:
      printf("{\"mode\":\"echo\",\"clients\":%u,\"round_trips\":%" PRIu64
             ",\"seconds\":%.3f,\"per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"client_cpu\":%.3f}\n",
             g.clients, g.round_trips, secs, secs > 0 ? g.round_trips / secs : 0.0, hist_pct(0.50), hist_pct(0.99), cpu);
      break;
    case M_CONNECT:
      printf("{\"mode\":\"connect\",\"connections\":%u,\"seconds\":%.3f,\"per_s\":%.1f,\"client_cpu\":%.3f}\n",
             g.connected, secs, secs > 0 ? g.connected / secs : 0.0, cpu);
      break;
    case M_IDLE:
      printf("{\"mode\":\"idle\",\"connected\":%u,\"seconds\":%.3f,\"client_cpu\":%.3f}\n", g.connected, secs, cpu);
      break;
  }
  fflush(stdout);
}

/* --sync: says where it is on stdout and waits for a line on stdin (or
 * its end). The loop stands still meanwhile: the runner answers at once. */
static void sync_point(const char *where) {
  if (!g.sync) return;
  printf("sync %s\n", where);
  fflush(stdout);
  char ch;
  for (;;) {
    ssize_t n = read(0, &ch, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || ch == '\n') break;
  }
}

static void finish(void) {
  if (g.finishing) return;
  g.finishing = 1;
  close_all();
}

static void send_broadcast(void) {
  char text[64], frame[96];
  uint32_t seq = g.sent++;
  uint64_t t = now_ns();
  static const char pre[] = "42[\"chat message\",\"";
  size_t n = sizeof pre - 1;
  memcpy(text, pre, n);
  n += put_u64(text + n, seq);
  text[n++] = ' ';
  n += put_u64(text + n, t);
  text[n++] = '"';
  text[n++] = ']';
  size_t fl = ws_frame(frame, 1, text, n);
  send_raw(&g.conns[g.receivers], frame, fl);
}

/* The next broadcasts, while fewer than `window` are incomplete. */
static void pump(void) {
  while (g.sent < g.messages && g.sent - g.completed < g.window) send_broadcast();
}

static void send_echo(conn *c, uint64_t t) {
  char text[64], frame[96];
  size_t n = 0;
  text[n++] = '4';
  text[n++] = '2';
  n += put_u64(text + n, ++c->ack_id);
  static const char rest[] = "[\"echo\"," ECHO_PAYLOAD "]";
  memcpy(text + n, rest, sizeof rest - 1);
  n += sizeof rest - 1;
  size_t fl = ws_frame(frame, 1, text, n);
  c->t_sent = t;
  send_raw(c, frame, fl);
}

static void on_end_timer(uv_timer_t *t) {
  if (g.mode == M_ECHO || (g.mode == M_FANOUT && !g.finishing)) { /* fanout: --seconds ran out first */
    g.stop = 1;
    g.t1 = now_ns();
    print_result();
    sync_point("end");
    finish();
  } else if (g.mode == M_IDLE) {
    g.holding = 0;
    finish();
  }
}

static void start_measuring(void) {
  g.t0 = now_ns();
  g.cpu0 = cpu_seconds();
  g.t_progress = g.t0;
  switch (g.mode) {
    case M_FANOUT:
      if (g.seconds > 0) {
        uv_update_time(g.loop);
        uv_timer_start(&g.end_timer, on_end_timer, (uint64_t)(g.seconds * 1000 + 0.5), 0);
      }
      pump();
      break;
    case M_ECHO:
      for (uint32_t i = 0; i < g.total; i++) send_echo(&g.conns[i], now_ns());
      uv_update_time(g.loop);
      uv_timer_start(&g.end_timer, on_end_timer, (uint64_t)(g.seconds * 1000 + 0.5), 0);
      break;
    case M_CONNECT:
    case M_IDLE:
      break;
  }
}

static void on_all_connected(void) {
  g.all_connected = 1;
  g.t_connected = now_ns();
  double s = (double)(g.t_connected - g.t_connect0) / 1e9;
  note("%u connected in %.2f s (%.0f/s)", g.connected, s, s > 0 ? g.connected / s : 0.0);
  if (g.mode == M_CONNECT || g.mode == M_IDLE) {
    g.t0 = g.t_connect0;
    g.t1 = g.t_connected;
    print_result();
    if (g.mode == M_CONNECT) { finish(); return; }
    g.holding = 1;
    uv_timer_start(&g.end_timer, on_end_timer, (uint64_t)(g.hold * 1000 + 0.5), 0);
    return;
  }
  sync_point("start");
  start_measuring();
}

/* ------------------------------------------------------------------ connections */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void launch(void);

/* With --port2: every other connection, never the fanout sender. */
static int to_port2(const conn *c) {
  return g.port2 && c->role != R_SENDER && c->idx % 2 == 1;
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = (conn *)req->handle;
  if (status < 0) {
    if (g.finishing) return;
    fatal("connection %u of %u to %s:%d failed: %s%s", c->idx + 1, g.total, g.host, to_port2(c) ? g.port2 : g.port,
          uv_strerror(status), status == UV_EADDRNOTAVAIL ? " (out of source ports: use more --sources)" : "");
  }
  c->state = S_HTTP;
  int r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
  if (r) fatal("read: %s", uv_strerror(r));
  if (to_port2(c)) send_raw(c, g.http_req2, g.http_len2);
  else send_raw(c, g.http_req, g.http_len);
}

/* The kernel picks a connection's source port by probing the whole
 * ephemeral range from a hashed offset, even ports first: past ~14,000
 * connections from one address to one server every connect() walks
 * thousands of ports in use. Each socket gets a small window of ports
 * instead (IP_LOCAL_PORT_RANGE, Linux 6.3+; ignored before), moving along
 * the range connection by connection, per source address. */
static uint32_t port_lo = 32768, port_hi = 60999;
static uint32_t port_cursor[256];

static void read_port_range(void) {
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  unsigned lo, hi;
  if (f && fscanf(f, "%u %u", &lo, &hi) == 2 && lo > 0 && hi <= 65535 && lo < hi) port_lo = lo, port_hi = hi;
  if (f) fclose(f);
  /* from a different place each run: the last run's ports may be in TIME_WAIT */
  uint32_t start = (uint32_t)(now_ns() / 1000);
  for (int i = 0; i < 256; i++) port_cursor[i] = start + (uint32_t)i * 7919u;
}

static void set_port_window(uv_os_fd_t fd, uint32_t src) {
  uint32_t n = port_hi - port_lo + 1;
  if (n < 4 * PORT_WINDOW) return;
  uint32_t lo = port_lo + port_cursor[src]++ % (n - PORT_WINDOW + 1);
  uint32_t v = lo | (lo + PORT_WINDOW - 1) << 16;
  setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &v, sizeof v);
}

static void start_conn(conn *c) {
  int r = uv_tcp_init_ex(g.loop, &c->tcp, AF_INET);
  if (r) {
    fatal("socket for connection %u of %u: %s%s", c->idx + 1, g.total, uv_strerror(r),
          r == UV_EMFILE ? " (RLIMIT_NOFILE too low)" : "");
  }
  c->state = S_TCP;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_os_fd_t fd = -1;
  uv_fileno((uv_handle_t *)&c->tcp, &fd);
  uint32_t src = g.bind_sources ? c->idx % g.sources : 0;
  if (g.bind_sources) {
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x7f000001u + src);
    r = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&sa, 0);
    if (r) fatal("bind to 127.0.0.%u: %s", 1 + src, uv_strerror(r));
  }
  set_port_window(fd, src);
  const struct sockaddr *dst = (const struct sockaddr *)(to_port2(c) ? &g.dst2 : &g.dst);
  r = uv_tcp_connect(&c->creq, &c->tcp, dst, on_connect);
  if (r == UV_EADDRNOTAVAIL) {  /* the window is full: the whole range then */
    uint32_t all = 0;
    setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &all, sizeof all);
    r = uv_tcp_connect(&c->creq, &c->tcp, dst, on_connect);
  }
  if (r) {
    fatal("connect %u of %u: %s%s", c->idx + 1, g.total, uv_strerror(r),
          r == UV_EADDRNOTAVAIL ? " (out of source ports: use more --sources)" : "");
  }
}

static void launch(void) {
  while (g.started < g.total && g.inflight < g.concurrency) {
    g.inflight++;
    start_conn(&g.conns[g.started++]);
  }
}

static void on_ready(conn *c) {
  c->state = S_READY;
  g.inflight--;
  g.connected++;
  g.progress++;
  if (g.connected == g.total) on_all_connected();
  else launch();
}

static void on_broadcast(conn *c, const char *p, size_t n) {
  static const char pre[] = "[\"chat message\",\"";
  const char *end = p + n, *s;
  if (n > sizeof pre - 1 && memcmp(p, pre, sizeof pre - 1) == 0) {
    s = p + sizeof pre - 1;
  } else {  /* other spacing: the first string after the event name */
    const char *ev = memmem(p, n, "\"chat message\"", 14);
    if (!ev) { g.strays++; return; }
    s = memchr(ev + 14, '"', (size_t)(end - ev - 14));
    if (!s) { g.strays++; return; }
    s++;
  }
  if (c->role != R_RECEIVER || g.stop) return;  /* the sender gets them too */
  uint64_t seq, t;
  if (!get_u64(&s, end, &seq) || s >= end || *s++ != ' ' || !get_u64(&s, end, &t) || seq >= g.messages) {
    g.strays++;
    return;
  }
  if (seq < c->next_seq) { g.dupes++; return; }
  if (seq > c->next_seq) g.lost += seq - c->next_seq;
  c->next_seq = (uint32_t)seq + 1;
  g.deliveries++;
  g.progress++;
  hist_add(g.now > t ? g.now - t : 0);
  if (++g.counts[seq] == g.receivers) {
    g.completed++;
    if (g.completed == g.messages) {
      g.t1 = now_ns();
      print_result();
      sync_point("end");
      finish();
    } else {
      pump();
    }
  }
}

static void on_ack(conn *c, const char *p, size_t n) {
  const char *s = p;
  uint64_t id, t = c->t_sent;
  if (!get_u64(&s, p + n, &id) || id != c->ack_id || !t) { g.bad_acks++; return; }
  c->t_sent = 0;
  if (g.stop) return;
  g.round_trips++;
  g.progress++;
  hist_add(g.now > t ? g.now - t : 0);
  send_echo(c, g.now);
}

/* A whole Engine.IO packet (one WebSocket text message). */
static void on_message(conn *c, int op, const char *p, size_t n) {
  if (op != 1 || n == 0) return;  /* binary attachments: none expected */
  switch (p[0]) {
    case '0':  /* open */
      if (c->state == S_OPEN) {
        c->state = S_SIO;
        send_raw(c, g.f_connect, g.f_connect_len);
      }
      break;
    case '2':  /* ping */
      if (n == 1) send_raw(c, g.f_pong, g.f_pong_len);
      break;
    case '1':
      conn_lost(c, "Engine.IO close packet from the server");
      break;
    case '4':  /* a Socket.IO packet */
      if (n < 2) break;
      switch (p[1]) {
        case '0':
          if (c->state == S_SIO) {
            if (!memmem(p, n, "\"sid\"", 5)) fatal("unexpected CONNECT answer: %.*s", (int)(n > 200 ? 200 : n), p);
            on_ready(c);
          }
          break;
        case '4':
          fatal("the server refused the Socket.IO CONNECT: %.*s", (int)(n > 200 ? 200 : n), p);
          break;
        case '1':
          conn_lost(c, "Socket.IO DISCONNECT from the server");
          break;
        case '2':
          if (g.mode == M_FANOUT) on_broadcast(c, p + 2, n - 2);
          break;
        case '3':
          if (g.mode == M_ECHO) on_ack(c, p + 2, n - 2);
          break;
      }
      break;
    default:   /* 3 pong, 6 noop, ... */
      break;
  }
}

/* One frame from the server (unmasked as it should be; unmasked here if not). */
static void on_frame(conn *c, int fin, int op, char *p, size_t n) {
  switch (op) {
    case 0x9: {  /* ping: pong with its payload */
      char f[160];
      if (n > 125) n = 125;
      send_raw(c, f, ws_frame(f, 0xA, p, n));
      break;
    }
    case 0xA:
      break;
    case 0x8: {
      unsigned code = n >= 2 ? ((unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1]) : 0;
      char why[160];
      snprintf(why, sizeof why, "WebSocket close from the server (code %u%s%.*s)", code, n > 2 ? ": " : "",
               (int)(n > 2 ? (n - 2 > 100 ? 100 : n - 2) : 0), p + 2);
      conn_lost(c, why);
      break;
    }
    case 0x1:
    case 0x2:
      if (fin) {
        on_message(c, op, p, n);
      } else {
        c->msgop = (uint8_t)op;
        c->msglen = 0;
        grow(&c->msg, &c->msgcap, n);
        memcpy(c->msg, p, n);
        c->msglen = (uint32_t)n;
      }
      break;
    case 0x0:
      if (!c->msgop) fatal("continuation frame without a message");
      if ((size_t)c->msglen + n > MAX_FRAME) fatal("fragmented message over %u bytes", MAX_FRAME);
      grow(&c->msg, &c->msgcap, (size_t)c->msglen + n);
      memcpy(c->msg + c->msglen, p, n);
      c->msglen += (uint32_t)n;
      if (fin) {
        int mop = c->msgop;
        c->msgop = 0;
        on_message(c, mop, c->msg, c->msglen);
        c->msglen = 0;
      }
      break;
    default:
      fatal("unknown WebSocket opcode %d from the server", op);
  }
}

/* Consumes what it can of p[0..n): the HTTP head, then whole frames.
 * Returns the bytes used; the rest is a partial frame. */
static size_t consume(conn *c, char *p, size_t n) {
  size_t off = 0;
  if (c->state == S_HTTP) {
    char *e = memmem(p, n, "\r\n\r\n", 4);
    if (!e) {
      if (n > MAX_HEAD) fatal("the answer to the upgrade has no end of head in %zu bytes", n);
      return 0;
    }
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
      char *eol = memchr(p, '\r', n);
      fatal("the server answered the WebSocket upgrade with \"%.*s\"", (int)((eol ? eol : p + n) - p), p);
    }
    off = (size_t)(e - p) + 4;
    c->state = S_OPEN;
  }
  while (n - off >= 2) {
    uint8_t *h = (uint8_t *)p + off;
    size_t hl = 2, avail = n - off;
    uint64_t len = h[1] & 0x7f;
    int masked = h[1] & 0x80;
    if (len == 126) {
      if (avail < 4) break;
      len = (uint64_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
      hl = 10;
    }
    if (len > MAX_FRAME) fatal("a frame of %" PRIu64 " bytes from the server", len);
    if (masked) hl += 4;
    if (avail < hl + len) break;
    char *pl = (char *)h + hl;
    if (masked) {
      const uint8_t *k = h + hl - 4;
      for (uint64_t i = 0; i < len; i++) pl[i] ^= (char)k[i & 3];
    }
    off += hl + (size_t)len;
    on_frame(c, h[0] & 0x80, h[0] & 0x0f, pl, (size_t)len);
    if (c->state == S_CLOSED) return n;
  }
  return off;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = (conn *)s;
  if (nread == 0) return;
  if (nread < 0) {
    conn_lost(c, nread == UV_EOF ? "the server closed the connection" : uv_strerror((int)nread));
    return;
  }
  g.now = now_ns();
  char *p = buf->base;
  size_t n = (size_t)nread;
  int carried = 0;
  if (c->inlen) {
    grow(&c->in, &c->incap, (size_t)c->inlen + n);
    memcpy(c->in + c->inlen, p, n);
    p = c->in;
    n = c->inlen + n;
    carried = 1;
  }
  size_t used = consume(c, p, n);
  if (c->state == S_CLOSED) return;
  size_t rest = n - used;
  if (carried) {
    if (rest && used) memmove(c->in, c->in + used, rest);
  } else if (rest) {
    grow(&c->in, &c->incap, rest);
    memcpy(c->in, p + used, rest);
  }
  c->inlen = (uint32_t)rest;
}

static void conn_lost(conn *c, const char *why) {
  if (g.finishing || c->state == S_CLOSED) return;
  const char *phase = !g.all_connected ? "while connecting" : g.holding ? "while held" : "during the run";
  fatal("connection %u of %u lost %s: %s (%u connected)", c->idx + 1, g.total, phase, why, g.connected);
}

static void close_all(void) {
  for (uint32_t i = 0; i < g.total; i++) {
    conn *c = &g.conns[i];
    if (c->state == S_NONE || c->state == S_CLOSED) continue;
    c->state = S_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, NULL);
  }
  uv_close((uv_handle_t *)&g.watchdog, NULL);
  uv_close((uv_handle_t *)&g.end_timer, NULL);
  uv_close((uv_handle_t *)&g.sigterm, NULL);
  uv_close((uv_handle_t *)&g.sigint, NULL);
}

static void on_watchdog(uv_timer_t *t) {
  uint64_t now = now_ns();
  if (g.progress != g.progress_seen) {
    g.progress_seen = g.progress;
    g.t_progress = now;
  }
  if (!g.all_connected && now - g.t_report >= 5000000000ull) {
    g.t_report = now;
    note("%u of %u connected", g.connected, g.total);
  }
  if (g.holding || g.finishing) return;
  if (now - g.t_progress < (uint64_t)STALL_S * 1000000000u) return;
  if (!g.all_connected) {
    fatal("stalled: %u of %u connected, %u handshakes in flight with no answer for %d s", g.connected, g.total,
          g.inflight, STALL_S);
  }
  if (g.mode == M_FANOUT) {
    fatal("stalled: %u of %u broadcasts complete, %u sent, %" PRIu64 " deliveries; receivers saw %" PRIu64
          " missing, %" PRIu64 " duplicated, %" PRIu64 " unreadable; nothing for %d s",
          g.completed, g.messages, g.sent, g.deliveries, g.lost, g.dupes, g.strays, STALL_S);
  }
  fatal("stalled: %" PRIu64 " round trips, then no ack for %d s (%" PRIu64 " unexpected acks)", g.round_trips,
        STALL_S, g.bad_acks);
}

static void on_signal(uv_signal_t *s, int signum) {
  if (g.mode == M_IDLE && g.all_connected) {
    g.holding = 0;
    finish();
    return;
  }
  note("interrupted: %u of %u connected", g.connected, g.total);
  exit(1);
}

/* ------------------------------------------------------------------ main */

static void usage(const char *why) {
  if (why) fprintf(stderr, "loadgen: %s\n", why);
  fputs("usage:\n"
        "  loadgen fanout  --receivers N --messages M --window W [--seconds S]\n"
        "  loadgen echo    --clients C --seconds S\n"
        "  loadgen connect --clients N [--concurrency K]\n"
        "  loadgen idle    --clients N [--concurrency K] [--hold S]\n"
        "common options: --host 127.0.0.1 --port P [--port2 P2] [--path /socket.io/] [--sources K]\n"
        "fanout and echo: --sync (wait for a line on stdin before and after the measured part)\n",
        stderr);
  exit(2);
}

static double num_arg(const char *name, const char *v, double min, double max) {
  char *e;
  errno = 0;
  double d = strtod(v, &e);
  if (errno || e == v || *e || d < min || d > max) {
    char m[200];
    snprintf(m, sizeof m, "bad value for --%s: \"%s\" (from %g to %g)", name, v, min, max);
    usage(m);
  }
  return d;
}

static void raise_nofile(uint64_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    struct rlimit want = { need, need };
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
      note("raised RLIMIT_NOFILE from %llu to %llu", (unsigned long long)rl.rlim_cur, (unsigned long long)need);
    } else {
      note("RLIMIT_NOFILE is %llu (hard limit), below the %llu this run needs: connections will fail past it",
           (unsigned long long)rl.rlim_cur, (unsigned long long)need);
    }
  }
}

/* The WebSocket upgrade GET for the server on port. */
static char *upgrade_request(int port, size_t *len) {
  char *req = malloc(strlen(g.path) + strlen(g.host) + 300);
  if (!req) fatal("out of memory");
  *len = (size_t)sprintf(req,
                         "GET %s?EIO=4&transport=websocket HTTP/1.1\r\n"
                         "Host: %s:%d\r\n"
                         "Upgrade: websocket\r\n"
                         "Connection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         g.path, g.host, port);
  return req;
}

int main(int argc, char **argv) {
  if (argc < 2) usage(NULL);
  const char *m = argv[1];
  if (!strcmp(m, "fanout")) g.mode = M_FANOUT;
  else if (!strcmp(m, "echo")) g.mode = M_ECHO;
  else if (!strcmp(m, "connect")) g.mode = M_CONNECT;
  else if (!strcmp(m, "idle")) g.mode = M_IDLE;
  else if (!strcmp(m, "-h") || !strcmp(m, "--help")) usage(NULL);
  else usage("unknown mode");

  g.host = "127.0.0.1";
  g.path = "/socket.io/";
  g.port = 0;
  g.concurrency = 100;
  g.hold = 60;
  long long receivers = -1, messages = -1, window = -1, clients = -1, sources = 0;
  double seconds = -1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v;
    char name[64];
    if (strncmp(a, "--", 2)) usage("options start with --");
    if (!strcmp(a, "--sync") && (g.mode == M_FANOUT || g.mode == M_ECHO)) { g.sync = 1; continue; }  /* no value */
    const char *eq = strchr(a, '=');
    if (eq) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
      v = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a + 2);
      if (i + 1 >= argc) usage("an option lacks its value");
      v = argv[++i];
    }
    if (!strcmp(name, "host")) g.host = v;
    else if (!strcmp(name, "port")) g.port = (int)num_arg(name, v, 1, 65535);
    else if (!strcmp(name, "port2")) g.port2 = (int)num_arg(name, v, 1, 65535);
    else if (!strcmp(name, "path")) g.path = v;
    else if (!strcmp(name, "sources")) sources = (long long)num_arg(name, v, 1, 250);
    else if (!strcmp(name, "concurrency")) g.concurrency = (uint32_t)num_arg(name, v, 1, 1e6);
    else if (!strcmp(name, "receivers") && g.mode == M_FANOUT) receivers = (long long)num_arg(name, v, 1, 1e7);
    else if (!strcmp(name, "messages") && g.mode == M_FANOUT) messages = (long long)num_arg(name, v, 1, 1e8);
    else if (!strcmp(name, "window") && g.mode == M_FANOUT) window = (long long)num_arg(name, v, 1, 1e8);
    else if (!strcmp(name, "clients") && g.mode != M_FANOUT) clients = (long long)num_arg(name, v, 1, 1e7);
    else if (!strcmp(name, "seconds") && (g.mode == M_ECHO || g.mode == M_FANOUT)) seconds = num_arg(name, v, 0.001, 86400);
    else if (!strcmp(name, "hold") && g.mode == M_IDLE) g.hold = num_arg(name, v, 0, 86400 * 365);
    else {
      char msg[120];
      snprintf(msg, sizeof msg, "unknown option for %s: --%s", m, name);
      usage(msg);
    }
  }
  if (!g.port) usage("--port is required");
  if (g.mode == M_FANOUT) {
    if (receivers < 0 || messages < 0 || window < 0) usage("fanout needs --receivers, --messages and --window");
    g.receivers = (uint32_t)receivers, g.messages = (uint32_t)messages, g.window = (uint32_t)window;
    g.total = g.receivers + 1;
    g.seconds = seconds; /* a cap: stop there if the broadcasts are not all done */
    g.counts = calloc(g.messages, sizeof *g.counts);
    if (!g.counts) fatal("out of memory");
  } else {
    if (clients < 0) usage("--clients is required");
    if (g.mode == M_ECHO && seconds < 0) usage("echo needs --seconds");
    g.clients = (uint32_t)clients;
    g.seconds = seconds;
    g.total = g.clients;
  }

  /* the server's address */
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int r = getaddrinfo(g.host, NULL, &hints, &ai);
  if (r || !ai) fatal("cannot resolve %s: %s", g.host, gai_strerror(r));
  memcpy(&g.dst, ai->ai_addr, sizeof g.dst);
  g.dst.sin_port = htons((uint16_t)g.port);
  g.dst2 = g.dst;
  g.dst2.sin_port = htons((uint16_t)g.port2);
  freeaddrinfo(ai);

  /* source addresses: 127.0.0.1, .2, ... in turn when one is not enough */
  int loopback = (ntohl(g.dst.sin_addr.s_addr) >> 24) == 127;
  if (sources) {
    g.sources = (uint32_t)sources;
    g.bind_sources = 1;
  } else {
    g.sources = (g.total + PER_SOURCE - 1) / PER_SOURCE;
    g.bind_sources = g.sources > 1 && loopback;
    if (g.sources > 1 && !loopback) {
      note("%u connections from one source address to a non-loopback host may run out of ports", g.total);
      g.sources = 1;
    }
  }
  if (g.sources > 250) fatal("too many source addresses (%u)", g.sources);

  raise_nofile((uint64_t)g.total + 16);  /* the loop, its signal pipes, stdio */
  read_port_range();
  signal(SIGPIPE, SIG_IGN);

  /* the pre-built bytes */
  g.http_req = upgrade_request(g.port, &g.http_len);
  if (g.port2) g.http_req2 = upgrade_request(g.port2, &g.http_len2);
  g.f_connect_len = ws_frame(g.f_connect, 1, "40", 2);
  g.f_pong_len = ws_frame(g.f_pong, 1, "3", 1);

  g.conns = calloc(g.total, sizeof *g.conns);
  if (!g.conns) fatal("out of memory for %u connections", g.total);
  for (uint32_t i = 0; i < g.total; i++) {
    g.conns[i].idx = i;
    g.conns[i].role = g.mode != M_FANOUT ? R_PLAIN : i < g.receivers ? R_RECEIVER : R_SENDER;
  }

  g.loop = uv_default_loop();
  uv_timer_init(g.loop, &g.watchdog);
  uv_timer_init(g.loop, &g.end_timer);
  uv_signal_init(g.loop, &g.sigterm);
  uv_signal_init(g.loop, &g.sigint);
  uv_signal_start(&g.sigterm, on_signal, SIGTERM);
  uv_signal_start(&g.sigint, on_signal, SIGINT);

  char also[32] = "";
  if (g.port2) snprintf(also, sizeof also, " and :%d", g.port2);
  note("%s: %u connections to %s:%d%s%s (%u handshakes at a time%s)", m, g.total, g.host, g.port, also, g.path,
       g.concurrency, g.bind_sources ? ", several source addresses" : "");
  g.t_connect0 = g.t_progress = g.t_report = now_ns();
  g.cpu0 = cpu_seconds(); /* connect and idle measure the connecting */
  uv_timer_start(&g.watchdog, on_watchdog, 1000, 1000);
  launch();
  uv_run(g.loop, UV_RUN_DEFAULT);
  return g.exit_code;
}
