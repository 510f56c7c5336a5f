/* server.h — listeners, connections, write queues, timeouts.
 *
 * A connection (mw_conn) is a TCP (or Unix) stream plus a corked write queue.
 * The server knows no protocol: each listener is given an attach function
 * that sets the protocol of the connections it accepts (http_conn_attach,
 * fcgi_conn_attach; a WebSocket replaces HTTP after an upgrade) through a
 * small vtable, mw_proto. Writes queued during one loop turn
 * leave together in one gathered write, after the I/O callbacks of that turn
 * (uv_check) or before the loop blocks again (uv_prepare). Buffers are
 * refcounted mw_bufs, so one encoded broadcast can sit in many queues. */
#ifndef MW_SERVER_H
#define MW_SERVER_H

#include <uv.h>

#include "iplimit.h"
#include "mw.h"
#include "timers.h"
#include "turn.h"

typedef struct mw_server mw_server;
typedef struct mw_conn mw_conn;


typedef struct mw_proto {
  /* Bytes arrived (borrowed: valid during the call only). */
  void (*on_read)(mw_conn *c, const char *data, size_t len);
  /* The peer closed its side, or a read error. */
  void (*on_eof)(mw_conn *c);
  /* The connection's timer fired. */
  void (*on_timeout)(mw_conn *c);
  /* The write queue became empty after a write. */
  void (*on_drain)(mw_conn *c);
  /* The server is stopping: end now if idle, else after the current work. */
  void (*on_stop)(mw_conn *c);
  /* The connection is being freed: release the protocol state. */
  void (*on_close)(mw_conn *c);
} mw_proto;

typedef struct mw_wq_item {
  mw_buf *buf;
  size_t off, len;
} mw_wq_item;

struct mw_conn {
  union {                  /* the stream: TCP, or a Unix socket (FastCGI on unix:/path) */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  mw_timer timer;          /* in srv->timers */
  mw_server *srv;
  const mw_proto *proto;
  void *proto_data;
  mw_wq_item *wq;          /* pending writes; the first `inflight` are in a uv_write */
  uint32_t wq_len, wq_cap, inflight;
  size_t wq_bytes;         /* queued, not yet written (a shared buffer counts for each connection) */
  uint64_t queued_total;   /* bytes ever queued, and ever written: a byte queued when */
  uint64_t written_total;  /* queued_total was n has left once written_total >= n */
  uv_write_t *wreq;        /* the uv_write under way (from srv->spare_wreqs), or NULL */
  uint64_t deadline;       /* loop time (ms) the timeout is due at; 0: none (see mw_conn_set_timeout) */
  uint64_t timer_due;      /* loop time the uv timer was last armed for */
  uint64_t send_mark;      /* mw_conn_sent when the send timeout was last armed */
  turn_item flush;         /* marked in srv->flush while it has unflushed items */
  mw_conn *prev, *next;    /* all connections */
  char addr[48];
  uint8_t pending_closes;
  bool closing, ending, reading, shut;
  bool eof;                /* the peer closed its side */
  struct iplimit_entry *ip; /* its address's count (iplimit.c), or NULL */
};

/* Sets up the protocol of a connection a listener accepted: sets c->proto
 * and c->proto_data, or closes c when it cannot. ud: the listener's. */
typedef void (*mw_attach_fn)(mw_conn *c, void *ud);

typedef struct mw_listen_opts {
  mw_attach_fn attach;
  void *ud;                /* borrowed; handed to attach and refuse */
  /* Set: connections are counted per client address (--max-conns-per-ip,
   * --max-conn-rate-per-ip) and a client over the limit is handed to
   * refuse, which answers it in the listener's protocol and ends it.
   * NULL: no limit on this listener (behind FastCGI every request comes
   * from the web server). */
  void (*refuse)(mw_conn *c, void *ud);
} mw_listen_opts;

typedef struct mw_listener {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  mw_server *srv;
  mw_listen_opts opts;
  char path[108];          /* a Unix socket's path, removed when the listener closes */
  bool is_pipe, inited, listening;
} mw_listener;

#define MW_MAX_LISTENERS 4

/* What the server itself follows: the limits on connections, whatever
 * their protocol (config.c fills it from the command line). The protocols'
 * settings go to their listeners (http_site), the app's to the app host. */
typedef struct mw_server_opts {
  iplimit_options ip;       /* per client address, on listeners with a refuse */
  uint64_t send_timeout_ms; /* a response that stops leaving for this long is dropped (nginx send_timeout) */
} mw_server_opts;
/* --workers (wlink.c): a request whose Engine.IO session lives in another
 * worker process goes there, with its connection. owner() reads a
 * request's query and says which worker owns it (-1: this one). give()
 * takes ownership of c (reading stopped, no protocol left, nothing queued)
 * and of bytes (what was read from it and not yet answered), hands both to
 * that worker and closes c here. */
typedef struct mw_handoff {
  int (*owner)(void *ud, const char *query, size_t len);
  void (*give)(void *ud, mw_conn *c, int worker, mw_str *bytes);
  void *ud;
} mw_handoff;

struct mw_server {
  uv_loop_t *loop;
  mw_server_opts opts;     /* a copy */
  mw_listener listeners[MW_MAX_LISTENERS];
  int nlisteners;
  turn_list flush;         /* connections with writes to flush at the end of the turn */
  uv_timer_t trim;         /* hands freed memory back after large releases; sweeps iplimit */
  mw_timers timers;        /* the connections' timeouts, and the Engine.IO sessions' heartbeats */
  struct iplimit *iplimit; /* connections per client address (listeners with a refuse) */
  mw_conn *conns;
  int nconns;
  bool stopping;
  void (*on_idle_stop)(mw_server *srv); /* called once when stopping and no connection is left */
  union {                  /* accepts a client there is no memory for, to close it (server.c) */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } spare;
  bool spare_busy;
  mw_listener *spare_waiting; /* a listener with a client pending until spare is closed */
  char *readbuf;           /* one read buffer for all connections (the loop is single-threaded) */
  bool readbuf_busy;
  /* Kept between uses rather than in every connection, which an idle one
   * would carry for nothing (see server.c): write requests, and write
   * queues of MW_WQ_FIRST items, each list linked through its first bytes. */
  void *spare_wreqs, *spare_wqs;
  uint32_t nspare_wreqs, nspare_wqs;
  uint64_t nofile;         /* the open-file limit when listening began (0: none) */
  const mw_handoff *handoff; /* --workers: borrowed; NULL in a single process */
  /* --workers: TCP listeners bind with SO_REUSEPORT, so that each worker
   * has its own listening socket on the one port and the kernel spreads
   * the connections over them. */
  bool reuseport;
};

/* Sets up the server on loop (nothing is listened on yet); copies o.
 * Returns 0 or -errno. */
int mw_server_init(mw_server *srv, uv_loop_t *loop, const mw_server_opts *o);
/* Binds and listens on addr: "host:port", "[v6]:port" (port 0 picks a free
 * one) or "unix:/path" (a socket file left at the path by an earlier run is
 * replaced; the listener removes it when it closes). Every connection it
 * accepts is handed to o->attach. Borrows addr; copies o. *out (when out is
 * not NULL) is the listener, which the server owns and closes in
 * mw_server_stop. Returns 0, UV_EINVAL for an address that is none of
 * those, UV_ENAMETOOLONG for a socket path too long, UV_ENOBUFS past
 * MW_MAX_LISTENERS, or a libuv error. */
int mw_server_listen(mw_server *srv, const char *addr, const mw_listen_opts *o, mw_listener **out);
/* Takes the connection pending on ipc (a pipe opened with ipc, which
 * received its socket from another worker) as if l, the HTTP listener,
 * had accepted it, and feeds it bytes (borrowed: read from it by the
 * worker that handed it over) before anything more is read. Returns 0, or
 * a negative error (the connection is then closed). */
int mw_server_adopt(mw_server *srv, mw_listener *l, uv_pipe_t *ipc, const char *bytes, size_t len);
/* l's bound port (useful with port 0); -1 for a Unix socket. */
int mw_listener_port(const mw_listener *l);
/* Where l is, for people: "127.0.0.1:9000", "[::1]:3000", "unix:/path". */
void mw_listener_name(const mw_listener *l, char *out, size_t cap);
/* The port of the server's first listener (tests: mw_listener_port). */
int mw_server_port(mw_server *srv);
/* Graceful stop: stop accepting, close idle connections, let the others end
 * after their in-flight response; on_idle_stop runs when none is left. */
void mw_server_stop(mw_server *srv);
/* Closes the server's own handles; call after stop, then run the loop. */
void mw_server_close(mw_server *srv);

/* A new connection, its socket not yet connected (tests and fuzzers feed
 * it bytes through c->proto->on_read), set up by attach(c, ud) as a
 * listener's would be; pipe: a Unix socket. Returns NULL when out of
 * memory. */
mw_conn *mw_conn_new(mw_server *srv, bool pipe, mw_attach_fn attach, void *ud);

/* Queues bytes for c, taking ownership of one reference to buf. A length
 * over 4 GiB (one gathered write cannot carry it) closes c. */
void mw_conn_write(mw_conn *c, mw_buf *buf, size_t off, size_t len);
/* Copies data and queues it. */
void mw_conn_write_copy(mw_conn *c, const void *data, size_t len);
/* Flushes c's queue now (normally done once per loop turn). */
void mw_conn_flush(mw_conn *c);
/* How many queued bytes have been handed to the kernel so far, counting
 * the part of a large write libuv has written: it grows while the peer
 * reads, so a timeout can tell a slow reader from one that stopped. */
uint64_t mw_conn_sent(const mw_conn *c);
/* The send timeout (opts.send_timeout_ms) counts between writes that make
 * progress, as nginx's send_timeout does: a slow reader that takes some
 * bytes in each period keeps its connection. This arms it, from what has
 * left so far. */
void mw_conn_arm_send_timeout(mw_conn *c);
/* For a protocol's on_timeout: true when bytes still wait and some have
 * left since the send timeout was armed; it is then armed again, and the
 * timeout is not one. */
bool mw_conn_send_progressed(mw_conn *c);
/* Arms (or re-arms) c's timer; 0 stops it. */
void mw_conn_set_timeout(mw_conn *c, uint64_t ms);
/* Stops or restarts reading (back-pressure while a response is pending). */
void mw_conn_pause(mw_conn *c);
void mw_conn_resume(mw_conn *c);
/* Ends the connection once the queue is flushed: half-close, then close
 * after the peer's EOF or a short linger, so a final response is not lost to
 * a reset. */
void mw_conn_end(mw_conn *c);
/* Closes at once; freed in the close callback (safe inside callbacks).
 * What is queued and not being written is released now. */
void mw_conn_close(mw_conn *c);

#endif
