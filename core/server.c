/* server.c — listeners, connection lifecycle, corked write queues, timeouts. */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "iplimit.h"

#define MW_READBUF_SIZE 65536
#define MW_LINGER_MS 2000
#define MW_WQ_MAX_IOV 64
#define MW_TRIM_EVERY_MS 2000
#define MW_TRIM_AFTER (8u << 20) /* bytes released since the last trim */

static void flush_conn(turn_list *l, turn_item *it);

/* glibc keeps the pages of freed memory in its heap: after a storm's
 * clients leave, hundreds of MB would stay resident. A trim walks the heap,
 * so it is done at most every MW_TRIM_EVERY_MS and only once much was freed. */
static void on_trim(uv_timer_t *t) {
  mw_server *srv = t->data;
  if (mw_released_bytes >= MW_TRIM_AFTER) mw_release_memory();
  iplimit_sweep(srv->iplimit, uv_now(srv->loop));
}

int mw_server_init(mw_server *srv, uv_loop_t *loop, const mw_server_opts *o) {
  memset(srv, 0, sizeof *srv);
  srv->loop = loop;
  srv->opts = *o;
  srv->readbuf = malloc(MW_READBUF_SIZE);
  if (!srv->readbuf) return -ENOMEM;
  if ((o->ip.max_conns || o->ip.max_rate) && !(srv->iplimit = iplimit_new(&o->ip))) {
    free(srv->readbuf);
    return -ENOMEM;
  }
  turn_init(&srv->flush, loop, flush_conn, srv);
  mw_timers_init(&srv->timers, loop);
  uv_timer_init(loop, &srv->trim);
  srv->trim.data = srv;
  uv_timer_start(&srv->trim, on_trim, MW_TRIM_EVERY_MS, MW_TRIM_EVERY_MS);
  /* These handles must not keep the loop alive on their own. */
  uv_unref((uv_handle_t *)&srv->trim);
  return 0;
}

/* ---- what only a busy connection needs ----
 *
 * An idle client costs what its connection holds, and a server may hold a
 * hundred thousand. A uv_write request (192 bytes) is needed only while the
 * kernel is full and a write waits (most writes finish in uv_try_write),
 * and a write queue only while something is queued: both are taken from
 * the server's spares when needed and given back when done, so an idle
 * connection holds neither, and a busy server allocates neither per
 * message. At most MW_SPARES_MAX of each are kept. */
#define MW_SPARES_MAX 1024
#define MW_WQ_FIRST 4 /* items in a write queue as first made */

/* Pops a spare from *list (items linked through their first pointer), or
 * allocates size bytes. */
static void *spare_take(void **list, uint32_t *n, size_t size) {
  void *p = *list;
  if (!p) return malloc(size);
  memcpy(list, p, sizeof p);
  (*n)--;
  return p;
}

static void spare_give(void **list, uint32_t *n, void *p) {
  if (*n >= MW_SPARES_MAX) {
    free(p);
    return;
  }
  memcpy(p, list, sizeof *list);
  *list = p;
  (*n)++;
}

/* Frees the spares for good: the count stays at the cap, so what comes
 * back later (the write callbacks of connections still closing) is freed. */
static void spares_free(void **list, uint32_t *n) {
  while (*list) {
    void *p = *list;
    memcpy(list, p, sizeof p);
    free(p);
  }
  *n = MW_SPARES_MAX;
}

/* Gives a drained write queue of the first size back to the spares (a
 * grown one stays: its connection is a busy one). */
static void wq_release(mw_conn *c) {
  if (c->wq_len || c->wq_cap != MW_WQ_FIRST) return;
  spare_give(&c->srv->spare_wqs, &c->srv->nspare_wqs, c->wq);
  c->wq = NULL;
  c->wq_cap = 0;
}

/* ---- connection lifecycle ---- */

static void conn_free(mw_conn *c) {
  mw_server *srv = c->srv;
  if (c->proto && c->proto->on_close) c->proto->on_close(c);
  turn_unmark(&srv->flush, &c->flush); /* closed after its last flush */
  for (uint32_t i = 0; i < c->wq_len; i++) mw_buf_unref(c->wq[i].buf);
  mw_released_bytes += c->wq_cap * sizeof *c->wq;
  free(c->wq);
  iplimit_leave(srv->iplimit, c->ip);
  if (c->prev) c->prev->next = c->next;
  else srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  srv->nconns--;
  free(c);
  if (srv->stopping && srv->nconns == 0 && srv->on_idle_stop) {
    void (*cb)(mw_server *) = srv->on_idle_stop;
    srv->on_idle_stop = NULL;
    cb(srv);
  }
}

static void on_conn_handle_closed(uv_handle_t *h) {
  mw_conn *c = h->data;
  if (--c->pending_closes == 0) conn_free(c);
}

void mw_conn_close(mw_conn *c) {
  if (c->closing) return;
  c->closing = true;
  /* Nothing more will be written: the queue's references go now (a slow
   * consumer's share of a broadcast storm is freed at once), except the
   * items a uv_write still holds until its callback. */
  for (uint32_t i = c->inflight; i < c->wq_len; i++) {
    c->wq_bytes -= c->wq[i].len;
    mw_buf_unref(c->wq[i].buf);
  }
  c->wq_len = c->inflight;
  mw_timer_stop(&c->srv->timers, &c->timer);
  c->pending_closes = 1;
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void arm_timer(mw_conn *c, uint64_t ms);

static void on_conn_timer(mw_timer *t) {
  mw_conn *c = (mw_conn *)((char *)t - offsetof(mw_conn, timer));
  if (c->closing) return;
  if (c->shut) { /* linger over */
    mw_conn_close(c);
    return;
  }
  if (!c->deadline) return; /* cleared since the timer was armed */
  uint64_t now = uv_now(c->srv->loop);
  if (now < c->deadline) { /* moved later since: wait for the rest */
    arm_timer(c, c->deadline - now);
    return;
  }
  c->deadline = 0;
  if (c->proto && c->proto->on_timeout) c->proto->on_timeout(c);
  else mw_conn_close(c);
}

static void arm_timer(mw_conn *c, uint64_t ms) {
  c->timer_due = uv_now(c->srv->loop) + ms;
  mw_timer_start(&c->srv->timers, &c->timer, ms, on_conn_timer);
}

/* HTTP moves a connection's timeout several times per request (the header
 * timeout, none while answering, keep-alive after): restarting the timer
 * each time costs a heap removal and insertion. So the deadline lives
 * in c->deadline, and the timer is only re-armed when the deadline comes
 * before the time it is armed for; when it fires early it waits for the
 * rest, and when the deadline was cleared it lapses. */
void mw_conn_set_timeout(mw_conn *c, uint64_t ms) {
  if (c->closing) return;
  if (c->shut) { /* lingering: the timer ends the linger, as it was armed */
    if (ms) arm_timer(c, ms);
    else mw_timer_stop(&c->srv->timers, &c->timer);
    return;
  }
  if (!ms) {
    c->deadline = 0;
    return;
  }
  c->deadline = uv_now(c->srv->loop) + ms;
  if (!mw_timer_active(&c->timer) || c->timer_due > c->deadline) arm_timer(c, ms);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  mw_conn *c = h->data;
  mw_server *srv = c->srv;
  /* One shared buffer: protocols consume or copy what they need inside
   * on_read, so an idle connection holds no read buffer. */
  if (srv->readbuf_busy) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  srv->readbuf_busy = true;
  buf->base = srv->readbuf;
  buf->len = MW_READBUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  mw_conn *c = s->data;
  if (buf->base == c->srv->readbuf) c->srv->readbuf_busy = false;
  if (c->closing) return;
  if (nread > 0) {
    if (c->shut) return; /* lingering: discard */
    c->proto->on_read(c, buf->base, (size_t)nread);
  } else if (nread < 0) {
    /* libuv stops reading by itself after EOF or an error. */
    c->reading = false;
    c->eof = true;
    if (c->shut || nread != UV_EOF || !c->proto->on_eof) mw_conn_close(c);
    else c->proto->on_eof(c);
  }
}

void mw_conn_pause(mw_conn *c) {
  if (c->reading && !c->closing) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
}

void mw_conn_resume(mw_conn *c) {
  if (!c->reading && !c->closing) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
  }
}

/* A connection with its handles initialised and listed, no protocol yet. */
static mw_conn *conn_alloc(mw_server *srv, bool pipe) {
  mw_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->srv = srv;
  if (pipe) uv_pipe_init(srv->loop, &c->pipe, 0);
  else uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  return c;
}

mw_conn *mw_conn_new(mw_server *srv, bool pipe, mw_attach_fn attach, void *ud) {
  mw_conn *c = conn_alloc(srv, pipe);
  if (c) attach(c, ud);
  return c;
}

/* At most once a minute: says why connections are (or soon will be) refused. */
static bool log_due(void) {
  static uint64_t last;
  uint64_t now = mw_now_ns();
  if (last && now - last < 60ull * 1000000000ull) return false;
  last = now;
  return true;
}

static void refused(int err) {
  if (log_due()) mw_log(MW_LOG_ERROR, "cannot accept connections: %s", uv_strerror(err));
}

/* One file per connection: when the open-file limit is reached, libuv
 * accepts and drops new connections without telling us, so say it before:
 * once the connections come within a tenth (at least 16) of the limit. */
static void check_file_limit(mw_server *srv) {
  if (!srv->nofile) return;
  uint64_t margin = srv->nofile / 10 < 16 ? 16 : srv->nofile / 10;
  if ((uint64_t)srv->nconns + margin < srv->nofile || !log_due()) return;
  mw_log(MW_LOG_ERROR,
         "%d connections open, near the open-file limit (%llu): new ones will be refused; raise it with ulimit -n",
         srv->nconns, (unsigned long long)srv->nofile);
}

static void on_connection(uv_stream_t *ls, int status);

static void on_spare_closed(uv_handle_t *h) {
  mw_server *srv = h->data;
  srv->spare_busy = false;
  mw_listener *l = srv->spare_waiting;
  if (!l) return;
  srv->spare_waiting = NULL;
  if (srv->stopping) return;
  on_connection((uv_stream_t *)&l->tcp, 0);
}

/* No memory for a connection: the client is accepted into a handle kept
 * for this and closed at once. Left pending, libuv would stop watching the
 * listener until someone accepts, and nobody would be served again. When
 * that handle is still closing from the last time, the listener waits for
 * its close callback. */
static void refuse_pending(mw_server *srv, mw_listener *l) {
  if (log_due()) mw_log(MW_LOG_ERROR, "out of memory: a new connection is closed");
  if (srv->spare_busy) {
    srv->spare_waiting = l;
    return;
  }
  if (l->is_pipe) uv_pipe_init(srv->loop, &srv->spare.pipe, 0);
  else uv_tcp_init(srv->loop, &srv->spare.tcp);
  srv->spare.tcp.data = srv;
  srv->spare_busy = true;
  uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&srv->spare);
  uv_close((uv_handle_t *)&srv->spare, on_spare_closed);
}

/* Too many connections from c's address, or too many new ones this second:
 * c is handed to the listener's refuse (HTTP answers 503, as nginx's
 * limit_conn and limit_req do), which ends it. Returns true when it was. */
static bool refuse_by_address(mw_listener *l, mw_conn *c, const struct sockaddr *sa) {
  mw_server *srv = l->srv;
  int r = iplimit_enter(srv->iplimit, sa, uv_now(srv->loop), &c->ip);
  if (r == 0) return false;
  static uint64_t last_log;
  uint64_t now = uv_now(srv->loop);
  if (!last_log || now - last_log >= 10000) {
    last_log = now;
    mw_log(MW_LOG_WARN, "%s: %s; refusing its connections with 503 (this message at most every 10 s)", c->addr,
           r == -EMFILE ? "too many connections from one address (--max-conns-per-ip)"
                        : "too many new connections per second from one address (--max-conn-rate-per-ip)");
  }
  l->opts.refuse(c, l->opts.ud);
  return true;
}

static void on_connection(uv_stream_t *ls, int status) {
  mw_listener *l = ls->data;
  mw_server *srv = l->srv;
  if (status < 0) {
    refused(status);
    return;
  }
  if (srv->stopping) return;
  mw_conn *c = conn_alloc(srv, l->is_pipe);
  if (!c) {
    refuse_pending(srv, l);
    return;
  }
  int r = uv_accept(ls, (uv_stream_t *)&c->tcp);
  if (r != 0) {
    refused(r);
    mw_conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (!l->is_pipe && uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->addr, sizeof c->addr);
    else uv_ip4_name((struct sockaddr_in *)&ss, c->addr, sizeof c->addr);
    if (l->opts.refuse && refuse_by_address(l, c, (struct sockaddr *)&ss)) return;
  }
  l->opts.attach(c, l->opts.ud);
  if (c->closing) return; /* the protocol could not be set up (out of memory): the socket goes with c */
  check_file_limit(srv);
  if (!l->is_pipe) uv_tcp_nodelay(&c->tcp, 1);
  mw_conn_resume(c);
}

int mw_server_adopt(mw_server *srv, mw_listener *l, uv_pipe_t *ipc, const char *bytes, size_t len) {
  if (srv->stopping || !l || l->is_pipe) return -ECONNABORTED;
  mw_conn *c = conn_alloc(srv, false);
  if (!c) return -ENOMEM;
  int r = uv_accept((uv_stream_t *)ipc, (uv_stream_t *)&c->tcp);
  if (r) {
    mw_conn_close(c);
    return r;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->addr, sizeof c->addr);
    else uv_ip4_name((struct sockaddr_in *)&ss, c->addr, sizeof c->addr);
  }
  /* Counted per address by the worker that accepted it, not again here. */
  l->opts.attach(c, l->opts.ud);
  if (c->closing) return 0; /* no memory for its protocol: closed, as on_connection does */
  uv_tcp_nodelay(&c->tcp, 1);
  /* Reading starts on the next turn: these bytes come first, and a
   * protocol that pauses while handling them stays paused. */
  mw_conn_resume(c);
  if (len) c->proto->on_read(c, bytes, len);
  return 0;
}

/* A TCP socket bound to sa with SO_REUSEPORT, into l's handle (libuv 1.44
 * has no flag for it). Returns 0 or a libuv error. */
static int bind_reuseport(mw_listener *l, const struct sockaddr *sa) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int on = 1;
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) ||
      bind(fd, sa, len)) {
    int e = uv_translate_sys_error(errno);
    close(fd);
    return e;
  }
  int r = uv_tcp_open(&l->tcp, fd);
  if (r) close(fd);
  return r;
}

/* Splits "host:port" or "[v6]:port" into addr. Returns 0 or UV_EINVAL. */
static int parse_host_port(const char *s, struct sockaddr_storage *addr) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5) return UV_EINVAL;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) return UV_EINVAL;
  char host[64];
  size_t hlen = (size_t)(colon - s);
  if (s[0] == '[') { /* [::1]:9000 */
    if (hlen < 3 || s[hlen - 1] != ']') return UV_EINVAL;
    s++;
    hlen -= 2;
  }
  if (hlen >= sizeof host) return UV_EINVAL;
  memcpy(host, s, hlen);
  host[hlen] = '\0';
  if (memchr(host, ':', hlen)) return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr);
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr);
}

int mw_server_listen(mw_server *srv, const char *addr, const mw_listen_opts *o, mw_listener **out) {
  if (srv->nlisteners == MW_MAX_LISTENERS) return UV_ENOBUFS;
  mw_listener *l = &srv->listeners[srv->nlisteners];
  memset(l, 0, sizeof *l);
  l->srv = srv;
  l->opts = *o;
  int r;
  if (strncmp(addr, "unix:", 5) == 0) {
    const char *path = addr + 5;
    if (!*path) return UV_EINVAL;
    /* libuv would cut a longer path short and bind that instead. */
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return UV_ENAMETOOLONG;
    /* A socket left behind by a run that did not stop cleanly would make
     * bind fail: only a socket is removed, never another kind of file. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
    l->is_pipe = true;
    snprintf(l->path, sizeof l->path, "%s", path);
    uv_pipe_init(srv->loop, &l->pipe, 0);
    r = uv_pipe_bind(&l->pipe, path);
  } else {
    struct sockaddr_storage sa;
    if ((r = parse_host_port(addr, &sa))) return r;
    uv_tcp_init(srv->loop, &l->tcp);
    r = srv->reuseport ? bind_reuseport(l, (struct sockaddr *)&sa) : uv_tcp_bind(&l->tcp, (struct sockaddr *)&sa, 0);
  }
  /* From here the handle is the server's to close, even when bind failed. */
  l->inited = true;
  l->tcp.data = l;
  srv->nlisteners++;
  if (r) return r;
  struct rlimit nofile;
  if (!srv->nofile && getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY)
    srv->nofile = nofile.rlim_cur;
  if ((r = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection))) return r;
  l->listening = true;
  if (out) *out = l;
  return 0;
}

int mw_listener_port(const mw_listener *l) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (l->is_pipe || uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len)) return -1;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int mw_server_port(mw_server *srv) { return srv->nlisteners ? mw_listener_port(&srv->listeners[0]) : -1; }

void mw_listener_name(const mw_listener *l, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char host[64];
  if (l->is_pipe) {
    snprintf(out, cap, "unix:%s", l->path);
  } else if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len)) {
    snprintf(out, cap, "?");
  } else if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
    snprintf(out, cap, "[%s]:%d", host, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
    snprintf(out, cap, "%s:%d", host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  }
}

/* Stops accepting on every listener; a Unix socket's file goes with it. */
static void close_listeners(mw_server *srv) {
  for (int i = 0; i < srv->nlisteners; i++) {
    mw_listener *l = &srv->listeners[i];
    if (!l->inited || uv_is_closing((uv_handle_t *)&l->tcp)) continue;
    uv_close((uv_handle_t *)&l->tcp, NULL);
    if (l->is_pipe && l->listening) unlink(l->path);
    l->listening = false;
  }
}

void mw_server_stop(mw_server *srv) {
  if (srv->stopping) return;
  srv->stopping = true;
  close_listeners(srv);
  /* Idle connections go now; busy ones end after their response (http.c
   * checks srv->stopping before keeping a connection alive). */
  for (mw_conn *c = srv->conns, *n; c; c = n) {
    n = c->next;
    if (c->proto && c->proto->on_stop && !c->closing && !c->ending) c->proto->on_stop(c);
  }
  if (srv->nconns == 0 && srv->on_idle_stop) {
    void (*cb)(mw_server *) = srv->on_idle_stop;
    srv->on_idle_stop = NULL;
    cb(srv);
  }
}

void mw_server_close(mw_server *srv) {
  srv->spare_waiting = NULL;
  close_listeners(srv);
  turn_close(&srv->flush, NULL);
  uv_close((uv_handle_t *)&srv->trim, NULL);
  mw_timers_close(&srv->timers, NULL);
  for (mw_conn *c = srv->conns; c; c = c->next) mw_conn_close(c);
  free(srv->readbuf);
  srv->readbuf = NULL;
  spares_free(&srv->spare_wreqs, &srv->nspare_wreqs);
  spares_free(&srv->spare_wqs, &srv->nspare_wqs);
  iplimit_free(srv->iplimit);
  srv->iplimit = NULL;
}

void mw_conn_arm_send_timeout(mw_conn *c) {
  c->send_mark = mw_conn_sent(c);
  mw_conn_set_timeout(c, c->srv->opts.send_timeout_ms);
}

bool mw_conn_send_progressed(mw_conn *c) {
  if (!c->wq_len || mw_conn_sent(c) == c->send_mark) return false;
  mw_conn_arm_send_timeout(c);
  return true;
}

/* ---- write queue ---- */

static void mark_dirty(mw_conn *c) { turn_mark(&c->srv->flush, &c->flush); }

void mw_conn_write(mw_conn *c, mw_buf *buf, size_t off, size_t len) {
  if (c->closing || c->shut || len == 0) {
    mw_buf_unref(buf);
    return;
  }
  if (len > UINT32_MAX) { /* uv_buf_t lengths are unsigned int: refuse rather than cut */
    mw_log(MW_LOG_ERROR, "a write of %zu bytes is too large for one connection; closing it", len);
    mw_buf_unref(buf);
    mw_conn_close(c);
    return;
  }
  if (c->wq_len == c->wq_cap) {
    uint32_t cap = c->wq_cap ? c->wq_cap * 2 : MW_WQ_FIRST;
    mw_wq_item *wq = c->wq ? realloc(c->wq, cap * sizeof *wq)
                           : spare_take(&c->srv->spare_wqs, &c->srv->nspare_wqs, cap * sizeof *wq);
    if (!wq) {
      mw_buf_unref(buf);
      mw_conn_close(c);
      return;
    }
    c->wq = wq;
    c->wq_cap = cap;
  }
  c->wq[c->wq_len++] = (mw_wq_item){buf, off, len};
  c->wq_bytes += len;
  c->queued_total += len;
  mark_dirty(c);
}

void mw_conn_write_copy(mw_conn *c, const void *data, size_t len) {
  mw_buf *b = mw_buf_from(data, len);
  if (!b) {
    mw_conn_close(c);
    return;
  }
  mw_conn_write(c, b, 0, len);
}

/* Drops n bytes from the front of the queue (they were written). */
static void wq_consume(mw_conn *c, size_t n) {
  uint32_t i = 0;
  c->wq_bytes -= n;
  c->written_total += n;
  while (n > 0 && i < c->wq_len) {
    mw_wq_item *it = &c->wq[i];
    if (n >= it->len) {
      n -= it->len;
      mw_buf_unref(it->buf);
      i++;
    } else {
      it->off += n;
      it->len -= n;
      n = 0;
    }
  }
  if (i) {
    memmove(c->wq, c->wq + i, (c->wq_len - i) * sizeof *c->wq);
    c->wq_len -= i;
  }
}

static void after_drain(mw_conn *c);

uint64_t mw_conn_sent(const mw_conn *c) {
  uint64_t n = c->written_total;
  if (c->inflight) { /* a uv_write under way: what libuv has written of it */
    size_t in = 0;
    for (uint32_t i = 0; i < c->inflight; i++) in += c->wq[i].len;
    size_t left = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
    if (left < in) n += in - left;
  }
  return n;
}

static void on_write(uv_write_t *req, int status) {
  mw_conn *c = req->data;
  spare_give(&c->srv->spare_wreqs, &c->srv->nspare_wreqs, req);
  c->wreq = NULL;
  size_t n = 0;
  for (uint32_t i = 0; i < c->inflight; i++) n += c->wq[i].len;
  c->inflight = 0;
  wq_consume(c, n);
  if (status < 0) {
    mw_conn_close(c);
    return;
  }
  if (c->closing) return;
  if (c->wq_len) mw_conn_flush(c);
  else after_drain(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  mw_conn *c = req->data;
  free(req);
  if (c->closing) return;
  if (status < 0) {
    mw_conn_close(c);
    return;
  }
  /* The peer has closed its side already: nothing more can come. */
  if (c->eof) {
    mw_conn_close(c);
    return;
  }
  /* Linger: keep reading (and discarding) until the peer closes or time's up. */
  arm_timer(c, MW_LINGER_MS);
  mw_conn_resume(c);
}

static void do_shutdown(mw_conn *c) {
  c->shut = true;
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) {
    mw_conn_close(c);
    return;
  }
  req->data = c;
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    free(req);
    mw_conn_close(c);
  }
}

static void after_drain(mw_conn *c) {
  wq_release(c);
  if (c->ending) {
    if (!c->shut) do_shutdown(c);
    return;
  }
  if (c->proto && c->proto->on_drain) c->proto->on_drain(c);
}

void mw_conn_flush(mw_conn *c) {
  if (c->closing || c->inflight || c->wq_len == 0) return;
  uv_buf_t iov[MW_WQ_MAX_IOV];
  uint32_t n = c->wq_len < MW_WQ_MAX_IOV ? c->wq_len : MW_WQ_MAX_IOV;
  size_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    iov[i] = uv_buf_init(c->wq[i].buf->data + c->wq[i].off, (unsigned)c->wq[i].len);
    total += c->wq[i].len;
  }
  int w = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
  if (w < 0 && w != UV_EAGAIN) {
    mw_conn_close(c);
    return;
  }
  if (w > 0) wq_consume(c, (size_t)w);
  if (w >= 0 && (size_t)w == total) {
    if (c->wq_len) { /* more than MW_WQ_MAX_IOV items: go again */
      mw_conn_flush(c);
      return;
    }
    after_drain(c);
    return;
  }
  /* The kernel is full: hand the rest to a uv_write and wait. */
  n = c->wq_len < MW_WQ_MAX_IOV ? c->wq_len : MW_WQ_MAX_IOV;
  for (uint32_t i = 0; i < n; i++)
    iov[i] = uv_buf_init(c->wq[i].buf->data + c->wq[i].off, (unsigned)c->wq[i].len);
  uv_write_t *req = spare_take(&c->srv->spare_wreqs, &c->srv->nspare_wreqs, sizeof *req);
  if (!req) {
    mw_conn_close(c);
    return;
  }
  c->inflight = n;
  req->data = c;
  c->wreq = req;
  if (uv_write(req, (uv_stream_t *)&c->tcp, iov, n, on_write) != 0) {
    c->inflight = 0;
    c->wreq = NULL;
    spare_give(&c->srv->spare_wreqs, &c->srv->nspare_wreqs, req);
    mw_conn_close(c);
  }
}

static void flush_conn(turn_list *l, turn_item *it) {
  mw_conn *c = (mw_conn *)((char *)it - offsetof(mw_conn, flush));
  if (!c->closing) mw_conn_flush(c);
}

void mw_conn_end(mw_conn *c) {
  if (c->closing || c->ending) return;
  c->ending = true;
  /* Stopped for real, not left to lapse: once shut, the timer means the
   * linger is over. */
  c->deadline = 0;
  mw_timer_stop(&c->srv->timers, &c->timer);
  if (c->wq_len == 0) do_shutdown(c);
  else mark_dirty(c);
}
