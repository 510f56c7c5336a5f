/* wlink.c — a worker's link to its supervisor (--workers): adapter
 * messages out and in, connections handed to the worker that owns their
 * session and adopted from the others. */
#include "wlink.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "turn.h"

int wlink_self = -1;
int wlink_live = 1;
int wlink_count = 1;

static const char sid_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char wlink_sid_mark(int worker) { return sid_alphabet[worker & 63]; }

int wlink_sid_owner(const char *sid, size_t len) {
  if (len != 20) return -1;
  const char *p = memchr(sid_alphabet, sid[0], 64);
  return p ? (int)(p - sid_alphabet) : -1;
}

typedef struct wlink {
  mw_server *srv;
  uv_pipe_t pipe;           /* ipc: sockets ride on it */
  mw_listener *http;        /* adopted connections are this listener's; NULL until ready */
  mw_str in;                /* a frame not yet whole */
  mw_str out;               /* PUB frames of this turn, written together when it ends */
  size_t writing;           /* bytes in writes under way to the supervisor */
  bool dropping;            /* over WLINK_MAX_QUEUED: said once until it drains */
  turn_list flush;
  mw_handoff handoff;
  wlink_message_fn on_message;
  void *on_message_ud;
  bool up;                  /* the pipe is open */
} wlink;

static wlink link_;

/* A write under way: it holds its bytes, and for a CONN the connection
 * whose socket it carries (closed here once the socket has left). */
typedef struct wlink_write {
  uv_write_t req;
  mw_str bytes;
  mw_conn *conn;
} wlink_write;

static void on_written(uv_write_t *req, int status) {
  wlink_write *w = req->data;
  if (status < 0 && status != UV_ECANCELED) mw_log(MW_LOG_WARN, "workers: a message to the supervisor was lost: %s", uv_strerror(status));
  link_.writing -= w->bytes.len;
  if (link_.dropping && link_.writing < WLINK_MAX_QUEUED / 2) {
    link_.dropping = false;
    mw_log(MW_LOG_INFO, "workers: the supervisor takes messages again");
  }
  if (w->conn) mw_conn_close(w->conn);
  mw_str_free(&w->bytes);
  free(w);
}

/* Writes bytes (taking ownership), with conn's socket when conn is set
 * (taking ownership of conn: it is closed once the write is done). */
static int link_write(mw_str *bytes, mw_conn *conn) {
  wlink_write *w = link_.up ? calloc(1, sizeof *w) : NULL;
  if (!w) {
    mw_str_free(bytes);
    if (conn) mw_conn_close(conn);
    return link_.up ? -ENOMEM : -ENOTCONN;
  }
  w->bytes = *bytes;
  *bytes = (mw_str){0};
  w->conn = conn;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->bytes.p, (unsigned)w->bytes.len);
  int r = conn ? uv_write2(&w->req, (uv_stream_t *)&link_.pipe, &b, 1, (uv_stream_t *)&conn->tcp, on_written)
               : uv_write(&w->req, (uv_stream_t *)&link_.pipe, &b, 1, on_written);
  if (r) {
    if (conn) mw_conn_close(conn);
    mw_str_free(&w->bytes);
    free(w);
    return r;
  }
  link_.writing += w->bytes.len;
  return 0;
}

static int append_frame(mw_str *s, uint8_t type, uint8_t peer, const void *a, size_t alen, const void *b, size_t blen,
                        const void *c, size_t clen) {
  uint8_t head[WLINK_HEAD];
  size_t len = alen + blen + clen;
  if (len > WLINK_MAX_FRAME) return -EMSGSIZE;
  wlink_head(head, (uint32_t)len, type, peer);
  if (mw_str_reserve(s, WLINK_HEAD + len)) return -ENOMEM;
  mw_str_append(s, head, WLINK_HEAD);
  mw_str_append(s, a, alen);
  mw_str_append(s, b, blen);
  mw_str_append(s, c, clen);
  return 0;
}

static void flush_out(turn_list *l, turn_item *it) {
  (void)l;
  (void)it;
  if (!link_.out.len) return;
  mw_str out = link_.out;
  link_.out = (mw_str){0};
  link_write(&out, NULL);
}

static turn_item flush_item;

int wlink_publish(const char *channel, size_t clen, const char *body, size_t blen) {
  if (!link_.up) return -ENOTCONN;
  if (clen > UINT16_MAX) return -EMSGSIZE;
  uint8_t cl[2] = {(uint8_t)clen, (uint8_t)(clen >> 8)};
  /* A supervisor that takes nothing (stopped) must not make this worker
   * hold every broadcast for the others: past the cap they are dropped,
   * said once until the supervisor has caught up. */
  if (link_.writing + link_.out.len + WLINK_HEAD + 2 + clen + blen > WLINK_MAX_QUEUED) {
    if (!link_.dropping) {
      link_.dropping = true;
      mw_log(MW_LOG_ERROR, "workers: the supervisor has not taken %zu bytes of messages; messages to the other workers are dropped",
             link_.writing + link_.out.len);
    }
    return -ENOBUFS;
  }
  /* Messages of one turn leave in one write, as a turn's writes to a client do. */
  int r = append_frame(&link_.out, WLINK_PUB, (uint8_t)wlink_self, cl, 2, channel, clen, body, blen);
  if (r == 0) turn_mark(&link_.flush, &flush_item);
  return r;
}

void wlink_on_message(wlink_message_fn fn, void *ud) {
  link_.on_message = fn;
  link_.on_message_ud = ud;
}

/* ---- connections of other workers' sessions ---- */

/* The sid in a query ("EIO=4&transport=polling&sid=..."), when there is
 * one that belongs to another worker: that worker. */
static int owner(void *ud, const char *q, size_t len) {
  (void)ud;
  for (size_t i = 0; i + 4 <= len; i++) {
    if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "sid=", 4) == 0) {
      const char *v = q + i + 4;
      const char *end = memchr(v, '&', len - i - 4);
      size_t vlen = end ? (size_t)(end - v) : len - i - 4;
      int w = wlink_sid_owner(v, vlen);
      /* No such worker: answered here, "Session ID unknown". */
      return w == wlink_self || w >= wlink_count ? -1 : w;
    }
  }
  return -1;
}

static void give(void *ud, mw_conn *c, int worker, mw_str *bytes) {
  (void)ud;
  mw_str frame = {0};
  if (append_frame(&frame, WLINK_CONN, (uint8_t)worker, bytes->p ? bytes->p : "", bytes->len, NULL, 0, NULL, 0)) {
    mw_str_free(bytes);
    mw_str_free(&frame);
    mw_conn_close(c);
    return;
  }
  mw_str_free(bytes);
  link_write(&frame, c);
}

/* ---- from the supervisor ---- */

static void on_frame(uint8_t type, const char *p, uint32_t len) {
  switch (type) {
  case WLINK_PUB: {
    if (len < 2) return;
    size_t clen = (size_t)(uint8_t)p[0] | (size_t)(uint8_t)p[1] << 8;
    if (clen > len - 2 || !link_.on_message) return;
    link_.on_message(link_.on_message_ud, p + 2, clen, p + 2 + clen, len - 2 - clen);
    return;
  }
  case WLINK_CONN: {
    /* The socket came with the frame's first byte, so it is pending now. */
    if (uv_pipe_pending_count(&link_.pipe) < 1) {
      mw_log(MW_LOG_WARN, "workers: a connection handed over without its socket");
      return;
    }
    int r = mw_server_adopt(link_.srv, link_.http, &link_.pipe, p, len);
    if (r == -ECONNABORTED || r == -ENOMEM) {
      /* Not serving (yet, or any more): the socket is taken and closed. */
      uv_tcp_t *t = malloc(sizeof *t);
      if (t && uv_tcp_init(link_.srv->loop, t) == 0) {
        uv_accept((uv_stream_t *)&link_.pipe, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
      } else {
        free(t);
      }
    }
    return;
  }
  case WLINK_COUNT:
    if (len >= 4) wlink_live = (int)wlink_head_len((const uint8_t *)p);
    return;
  default: return;
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static char rbuf[65536];
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void link_down(const char *why) {
  if (!link_.up) return;
  link_.up = false;
  uv_read_stop((uv_stream_t *)&link_.pipe);
  if (!link_.srv->stopping) {
    /* The supervisor is gone: this worker stops as on SIGTERM. */
    mw_log(MW_LOG_WARN, "workers: the link to the supervisor is down (%s); stopping", why);
    raise(SIGTERM);
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)s;
  if (n < 0) {
    link_down(n == UV_EOF ? "closed" : uv_strerror((int)n));
    return;
  }
  if (mw_str_append(&link_.in, buf->base, (size_t)n)) {
    link_down("out of memory");
    return;
  }
  size_t off = 0;
  while (link_.up && link_.in.len - off >= WLINK_HEAD) {
    const uint8_t *h = (const uint8_t *)link_.in.p + off;
    uint32_t len = wlink_head_len(h);
    if (len > WLINK_MAX_FRAME) {
      link_down("a frame too long");
      return;
    }
    if (link_.in.len - off - WLINK_HEAD < len) break;
    on_frame(h[4], link_.in.p + off + WLINK_HEAD, len);
    off += WLINK_HEAD + len;
  }
  if (off) {
    memmove(link_.in.p, link_.in.p + off, link_.in.len - off);
    link_.in.len -= off;
  }
}

int wlink_start(mw_server *srv, int fd, int self, int count) {
  link_.srv = srv;
  wlink_self = self;
  wlink_count = count;
  int r = uv_pipe_init(srv->loop, &link_.pipe, 1);
  if (!r) r = uv_pipe_open(&link_.pipe, fd);
  if (!r) r = uv_read_start((uv_stream_t *)&link_.pipe, on_alloc, on_read);
  if (r) return r;
  /* The link must not keep the loop alive once the server has stopped. */
  uv_unref((uv_handle_t *)&link_.pipe);
  link_.up = true;
  turn_init(&link_.flush, srv->loop, flush_out, &link_);
  link_.handoff = (mw_handoff){owner, give, &link_};
  srv->handoff = &link_.handoff;
  srv->reuseport = true;
  return 0;
}

void wlink_ready(mw_listener *http) {
  link_.http = http;
  mw_str frame = {0};
  if (append_frame(&frame, WLINK_READY, (uint8_t)wlink_self, NULL, 0, NULL, 0, NULL, 0) == 0) link_write(&frame, NULL);
  else mw_str_free(&frame);
}
