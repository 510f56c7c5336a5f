/* workers.c — the supervisor of --workers N (workers.h): forks and
 * restarts the workers, relays their frames (wlink.h). It runs no libuv
 * loop, so that a fork leaves the child no loop state to undo: one poll()
 * over the workers' links and a pipe its signal handler writes to. */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "mw.h"
#include "wlink.h"

#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 5000
#define HEALTHY_AFTER_MS 10000 /* a worker that lived this long is restarted at once */
#define MAX_FDS_IN 64          /* sockets received and not yet matched with their frames */

typedef struct out_fd {
  size_t at; /* the byte of out it leaves with */
  int fd;
} out_fd;

typedef struct worker {
  pid_t pid;       /* 0: not running */
  int fd;          /* the supervisor's end of the link; -1 */
  bool ready;
  mw_str in;       /* a frame not yet whole */
  int fds_in[MAX_FDS_IN];
  int nfds_in;
  mw_str out;      /* frames for it, from out_off */
  size_t out_off;
  out_fd *fds_out; /* sockets for it, in order */
  int nfds_out, capfds_out;
  uint64_t started_ms, restart_at;
  uint32_t backoff_ms;
} worker;

static worker *workers;
static int nworkers;
static int sigpipe_fds[2] = {-1, -1};
static int reserve_fd = -1;
static volatile sig_atomic_t got_term, got_chld;

static uint64_t now_ms(void) { return mw_now_ns() / 1000000u; }

static void on_signal(int sig) {
  int e = errno;
  if (sig == SIGCHLD) got_chld = 1;
  else got_term = sig;
  ssize_t r = write(sigpipe_fds[1], "x", 1);
  (void)r;
  errno = e;
}

/* ---- the links ---- */

/* Drops what the supervisor holds for w: its link, buffers, sockets. */
static void link_close(worker *w) {
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
  w->ready = false;
  for (int i = 0; i < w->nfds_in; i++) close(w->fds_in[i]);
  w->nfds_in = 0;
  for (int i = 0; i < w->nfds_out; i++) close(w->fds_out[i].fd);
  w->nfds_out = 0;
  mw_str_free(&w->in);
  mw_str_free(&w->out);
  w->out_off = 0;
}

/* Queues a frame for w; sock (taken over, -1: none) leaves with its first byte. */
static void queue(worker *w, uint8_t type, uint8_t peer, const char *p, uint32_t len, int sock) {
  if (w->fd < 0) goto drop;
  /* A worker that does not read them is killed and restarted rather than
   * holding the supervisor's memory without bound. */
  if (w->out.len - w->out_off + WLINK_HEAD + len > WLINK_MAX_QUEUED) {
    mw_log(MW_LOG_ERROR, "workers: worker %d (pid %d) has not read %zu bytes of messages; killing it", (int)(w - workers) + 1,
           (int)w->pid, w->out.len - w->out_off);
    kill(w->pid, SIGKILL);
    link_close(w); /* what it was sent goes; SIGCHLD restarts it */
    goto drop;
  }
  if (sock >= 0 && w->nfds_out == w->capfds_out) {
    int cap = w->capfds_out ? w->capfds_out * 2 : 8;
    out_fd *f = realloc(w->fds_out, (size_t)cap * sizeof *f);
    if (!f) goto drop;
    w->fds_out = f;
    w->capfds_out = cap;
  }
  uint8_t head[WLINK_HEAD];
  wlink_head(head, len, type, peer);
  size_t at = w->out.len;
  if (mw_str_reserve(&w->out, WLINK_HEAD + len)) goto drop;
  mw_str_append(&w->out, head, WLINK_HEAD);
  mw_str_append(&w->out, p, len);
  if (sock >= 0) w->fds_out[w->nfds_out++] = (out_fd){at, sock};
  return;
drop:
  if (sock >= 0) close(sock);
}

static int serving(void) {
  int n = 0;
  for (int i = 0; i < nworkers; i++) n += workers[i].ready;
  return n;
}

static void tell_count(void) {
  uint8_t c[4];
  wlink_put_u32(c, (uint32_t)serving());
  for (int i = 0; i < nworkers; i++)
    if (workers[i].ready) queue(&workers[i], WLINK_COUNT, 0, (const char *)c, 4, -1);
}

/* Writes what is queued for w, each socket with its byte. */
static void flush(worker *w) {
  while (w->fd >= 0 && w->out_off < w->out.len) {
    size_t end = w->out.len;
    int sock = -1;
    if (w->nfds_out) {
      if (w->fds_out[0].at == w->out_off) sock = w->fds_out[0].fd;
      if (w->nfds_out > (sock >= 0)) end = w->fds_out[sock >= 0].at;
    }
    struct iovec iov = {w->out.p + w->out_off, end - w->out_off};
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (sock >= 0) {
      memset(&cm, 0, sizeof cm);
      msg.msg_control = cm.buf;
      msg.msg_controllen = sizeof cm.buf;
      struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &sock, sizeof sock);
    }
    ssize_t n = sendmsg(w->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) link_close(w); /* it is gone: SIGCHLD follows */
      return;
    }
    if (sock >= 0) { /* it has left with that byte: our copy goes */
      close(sock);
      memmove(w->fds_out, w->fds_out + 1, (size_t)--w->nfds_out * sizeof *w->fds_out);
    }
    w->out_off += (size_t)n;
  }
  if (w->out_off == w->out.len) {
    mw_str_reset(&w->out);
    w->out_off = 0;
  }
}

static bool all_ready_once; /* the listening line has been printed */
static mw_config *conf;

static void on_frame(int from, uint8_t type, uint8_t peer, const char *p, uint32_t len) {
  worker *w = &workers[from];
  switch (type) {
  case WLINK_READY:
    w->ready = true;
    tell_count();
    /* The first worker has set up the database: the others start now
     * (opened together, a new database file is locked to all but one). */
    for (int i = 0; i < nworkers && !all_ready_once; i++)
      if (!workers[i].pid && !workers[i].restart_at) workers[i].restart_at = now_ms();
    if (!all_ready_once && serving() == nworkers) {
      all_ready_once = true;
      const char *bracket = strchr(conf->host, ':') ? "[%s]:%d" : "%s:%d";
      printf("moonwire listening on http://");
      printf(bracket, conf->host, conf->port);
      printf(" (%s mode, %d workers)\n", conf->app.dev ? "dev" : "production", nworkers);
    }
    return;
  case WLINK_PUB:
    for (int i = 0; i < nworkers; i++)
      if (i != from && workers[i].ready) queue(&workers[i], WLINK_PUB, (uint8_t)from, p, len, -1);
    return;
  case WLINK_CONN: {
    if (!w->nfds_in) {
      mw_log(MW_LOG_WARN, "workers: worker %d handed over a connection without its socket", from + 1);
      return;
    }
    int sock = w->fds_in[0];
    memmove(w->fds_in, w->fds_in + 1, (size_t)--w->nfds_in * sizeof *w->fds_in);
    /* A session of a worker that is not serving is gone with it: closed,
     * its client connects again. */
    if (peer < nworkers && peer != from && workers[peer].ready) queue(&workers[peer], WLINK_CONN, (uint8_t)from, p, len, sock);
    else close(sock);
    return;
  }
  default: return;
  }
}

static void read_link(int i) {
  worker *w = &workers[i];
  char buf[65536];
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(8 * sizeof(int))];
  } cm;
  for (;;) {
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n = recvmsg(w->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      link_close(w);
      return;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t j = 0; j < k; j++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof fd);
        if (w->nfds_in < MAX_FDS_IN) w->fds_in[w->nfds_in++] = fd;
        else close(fd);
      }
    }
    if (mw_str_append(&w->in, buf, (size_t)n)) {
      link_close(w);
      return;
    }
    size_t off = 0;
    while (w->fd >= 0 && w->in.len - off >= WLINK_HEAD) {
      const uint8_t *h = (const uint8_t *)w->in.p + off;
      uint32_t len = wlink_head_len(h);
      if (len > WLINK_MAX_FRAME) {
        mw_log(MW_LOG_ERROR, "workers: worker %d sent a frame of %u bytes; stopping it", i + 1, len);
        kill(w->pid, SIGKILL);
        link_close(w);
        return;
      }
      if (w->in.len - off - WLINK_HEAD < len) break;
      on_frame(i, h[4], h[5], w->in.p + off + WLINK_HEAD, len);
      off += WLINK_HEAD + len;
    }
    if (w->fd >= 0 && off) {
      memmove(w->in.p, w->in.p + off, w->in.len - off);
      w->in.len -= off;
    }
  }
}

/* ---- the processes ---- */

/* Forks worker i. Returns 1 in the parent, 0 in the child (with *link_fd
 * its end), -errno when it could not. */
static int spawn(int i, int *link_fd) {
  worker *w = &workers[i];
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -errno;
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    return -e;
  }
  if (pid == 0) {
    /* The worker: nothing of the supervisor's stays open in it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    close(sigpipe_fds[0]);
    close(sigpipe_fds[1]);
    if (reserve_fd >= 0) close(reserve_fd);
    for (int j = 0; j < nworkers; j++) link_close(&workers[j]);
    close(sv[0]);
    *link_fd = sv[1];
    return 0;
  }
  close(sv[1]);
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  w->fd = sv[0];
  w->pid = pid;
  w->ready = false;
  w->started_ms = now_ms();
  w->restart_at = 0;
  return 1;
}

static void describe_status(int st, char *out, size_t cap) {
  if (WIFSIGNALED(st)) snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
  else snprintf(out, cap, "exited with status %d", WEXITSTATUS(st));
}

static bool stopping;
static int exit_code;

static void stop_all(void) {
  stopping = true;
  for (int i = 0; i < nworkers; i++)
    if (workers[i].pid) kill(workers[i].pid, SIGTERM);
}

static void reap(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    int i = 0;
    while (i < nworkers && workers[i].pid != pid) i++;
    if (i == nworkers) continue;
    worker *w = &workers[i];
    w->pid = 0;
    link_close(w);
    tell_count();
    if (stopping) continue;
    char why[64];
    describe_status(st, why, sizeof why);
    if (!all_ready_once) { /* it could not start (the port, the database): neither can the others */
      mw_log(MW_LOG_ERROR, "workers: worker %d %s before it served; stopping", i + 1, why);
      exit_code = 1;
      stop_all();
      continue;
    }
    uint64_t now = now_ms();
    if (now - w->started_ms >= HEALTHY_AFTER_MS) w->backoff_ms = RESTART_MIN_MS;
    else w->backoff_ms = w->backoff_ms ? (w->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : w->backoff_ms * 2)
                                       : RESTART_MIN_MS;
    w->restart_at = now + w->backoff_ms;
    mw_log(MW_LOG_WARN, "workers: worker %d (pid %d) %s; restarting it in %u ms", i + 1, (int)pid, why, w->backoff_ms);
  }
}

/* Reserves the port (and learns it, for --port 0): a socket bound with
 * SO_REUSEPORT, never listening, so the workers' own sockets join it and
 * a worker restarting finds the port still ours. */
static int reserve_port(mw_config *cfg) {
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  bool v6 = strchr(cfg->host, ':') != NULL;
  int r = v6 ? uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&sa)
             : uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&sa);
  if (r) return r;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int on = 1;
  socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) ||
      bind(fd, (struct sockaddr *)&sa, len) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
    r = uv_translate_sys_error(errno);
    close(fd);
    return r;
  }
  cfg->port = ntohs(v6 ? ((struct sockaddr_in6 *)&sa)->sin6_port : ((struct sockaddr_in *)&sa)->sin_port);
  reserve_fd = fd;
  return 0;
}

int workers_supervise(mw_config *cfg, int *link_fd) {
  conf = cfg;
  nworkers = cfg->workers;
  int r = reserve_port(cfg);
  if (r) {
    fprintf(stderr, "moonwire: cannot listen on %s:%d: %s\n", cfg->host, cfg->port, uv_strerror(r));
    exit(1);
  }
  workers = calloc((size_t)nworkers, sizeof *workers);
  if (!workers || pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK)) {
    fprintf(stderr, "moonwire: --workers: %s\n", strerror(errno ? errno : ENOMEM));
    exit(1);
  }
  for (int i = 0; i < nworkers; i++) workers[i].fd = -1;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  for (int i = 0; i < 1; i++) { /* the others once it serves (on_frame) */
    r = spawn(i, link_fd);
    if (r == 0) return i;
    if (r < 0) {
      fprintf(stderr, "moonwire: --workers: cannot start worker %d: %s\n", i + 1, strerror(-r));
      exit_code = 1;
      stop_all();
      break;
    }
  }
  struct pollfd *pfd = calloc((size_t)nworkers + 1, sizeof *pfd);
  while (pfd) {
    if (got_chld) {
      got_chld = 0;
      reap();
    }
    if (got_term && !stopping) {
      if (!cfg->http.quiet) printf("moonwire: %s, stopping the workers\n", got_term == SIGINT ? "SIGINT" : "SIGTERM");
      stop_all();
    }
    int live = 0;
    for (int i = 0; i < nworkers; i++) live += workers[i].pid != 0;
    if (stopping && !live) break;
    uint64_t now = now_ms();
    int timeout = -1;
    for (int i = 0; i < nworkers && !stopping; i++) {
      worker *w = &workers[i];
      if (w->pid || !w->restart_at) continue;
      if (w->restart_at <= now) {
        r = spawn(i, link_fd);
        if (r == 0) {
          free(pfd);
          return i;
        }
        if (r < 0) w->restart_at = now + RESTART_MAX_MS;
        continue;
      }
      int left = (int)(w->restart_at - now);
      if (timeout < 0 || left < timeout) timeout = left;
    }
    int n = 0;
    pfd[n++] = (struct pollfd){sigpipe_fds[0], POLLIN, 0};
    for (int i = 0; i < nworkers; i++) {
      worker *w = &workers[i];
      if (w->fd < 0) continue;
      pfd[n++] = (struct pollfd){w->fd, (short)(POLLIN | (w->out_off < w->out.len ? POLLOUT : 0)), 0};
    }
    if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) break;
    if (pfd[0].revents) {
      char drain[64];
      while (read(sigpipe_fds[0], drain, sizeof drain) > 0) {}
    }
    for (int k = 1; k < n; k++) {
      int i = 0;
      while (i < nworkers && workers[i].fd != pfd[k].fd) i++;
      if (i == nworkers || !pfd[k].revents) continue;
      if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) read_link(i);
    }
    for (int i = 0; i < nworkers; i++)
      if (workers[i].fd >= 0 && workers[i].out_off < workers[i].out.len) flush(&workers[i]);
  }
  free(pfd);
  for (int i = 0; i < nworkers; i++) {
    link_close(&workers[i]);
    free(workers[i].fds_out);
  }
  free(workers);
  if (reserve_fd >= 0) close(reserve_fd);
  if (!cfg->http.quiet) printf("moonwire: stopped\n");
  exit(exit_code);
}
