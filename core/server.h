/* server.h — listeners, connections, write queues, timeouts.
 *
 * A connection (mw_conn) is a TCP (or Unix) stream plus a corked write queue.
 * What the bytes mean is up to the protocol attached to it (HTTP, FastCGI on
 * the --fastcgi listener; WebSocket after an upgrade), through a small vtable. Writes queued during one loop turn
 * leave together in one gathered write, after the I/O callbacks of that turn
 * (uv_check) or before the loop blocks again (uv_prepare). Buffers are
 * refcounted mw_bufs, so one encoded broadcast can sit in many queues. */
#ifndef MW_SERVER_H
#define MW_SERVER_H

#include <uv.h>

#include "mw.h"
#include "turn.h"

struct http_req;
struct http_res;
typedef struct mw_server mw_server;
typedef struct mw_conn mw_conn;
typedef struct mw_config mw_config;

struct mw_config {
  const char *root;       /* the app directory (scripts/, views/, public/) */
  const char *host;       /* bind address */
  int port;               /* 0 = ephemeral */
  const char *db_path;    /* SQLite file */
  bool dev;               /* dev mode: error details in pages */
  bool quiet;             /* no access log */
  bool watch;             /* reload scripts/, views/, public/ when they change */
  bool test_clock;        /* app timers follow a clock only tests move (moonwire.testing) */
  size_t max_body;        /* request body limit, bytes */
  uint64_t header_timeout_ms;
  size_t max_header_size;  /* request line plus headers, bytes (431 past it) */
  /* Request bodies (body.c): held in memory up to body_buffer bytes, else
   * spooled to a temporary file in tmp_dir; at most body_memory bytes of
   * bodies held in memory across all connections. */
  size_t body_buffer, body_memory;
  const char *tmp_dir;
  uint64_t body_timeout_ms;  /* between two reads of a body (408 past it) */
  uint64_t body_deadline_ms; /* for a whole body, from its headers; 0: none */
  /* multipart/form-data: files, fields, bytes of one file (0: only
   * max_body), of one field, of one part's headers. */
  size_t upload_max_files, upload_max_fields, upload_max_file_size, upload_max_field_size, upload_max_part_header;
  uint64_t keepalive_timeout_ms;
  uint64_t handler_budget_ms; /* a call into Lua runs at most this long (0: no limit) */
  size_t lua_memory;          /* the Lua VM's memory ceiling in bytes (0: none) */
  uint32_t max_conns_per_ip;  /* connections one client address may hold (0: no limit) */
  uint32_t max_conn_rate_per_ip; /* new connections per second from one address (0: no limit) */
  bool limit_loopback;        /* apply those to loopback addresses too */
  uint64_t send_timeout_ms;   /* a response that stops leaving for this long is dropped (nginx send_timeout) */
  bool compress;              /* gzip/brotli for text responses (--no-compress turns it off) */
  size_t compress_min;        /* smallest body compressed, bytes */
  /* Socket.IO options from the command line; 0/NULL = not given (the app's
   * io.configure or socket.io's defaults apply). */
  const char *io_path;
  uint64_t ping_interval, ping_timeout, connect_timeout, attachment_timeout;
  size_t max_http_buffer;
  size_t max_backpressure;  /* bytes queued for a client that stops reading (0: not given) */
  int64_t max_packet_rate;  /* packets per second per session (-1: not given, 0: no limit) */
  const char *transports;
  const char *origins[16];
  int norigins;
  const char *fastcgi;    /* FastCGI listen address, "unix:/path" or "host:port"; NULL: none */
  const char *redis;      /* --redis URL for the Redis adapter; NULL: none */
};

void mw_config_defaults(mw_config *cfg);

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
  uv_timer_t timer;
  mw_server *srv;
  const mw_proto *proto;
  void *proto_data;
  mw_wq_item *wq;          /* pending writes; the first `inflight` are in a uv_write */
  uint32_t wq_len, wq_cap, inflight;
  size_t wq_bytes;         /* queued, not yet written (a shared buffer counts for each connection) */
  uint64_t queued_total;   /* bytes ever queued, and ever written: a byte queued when */
  uint64_t written_total;  /* queued_total was n has left once written_total >= n */
  uv_write_t wreq;
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

struct mw_server {
  uv_loop_t *loop;
  mw_config cfg;
  uv_tcp_t listener;
  union {                  /* the FastCGI listener (cfg.fastcgi) */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } fcgi_listener;
  bool fcgi_inited, fcgi_unix, fcgi_listening;
  turn_list flush;         /* connections with writes to flush at the end of the turn */
  uv_timer_t trim;         /* hands freed memory back after large releases; sweeps iplimit */
  struct iplimit *iplimit; /* connections per client address (HTTP listener) */
  mw_conn *conns;
  int nconns;
  bool listening, stopping;
  void (*handle)(void *ud, const struct http_req *req, struct http_res *res);
  void *handle_ud;          /* the HTTP handler (set with http_set_handler) */
  void (*on_idle_stop)(mw_server *srv); /* called once when stopping and no connection is left */
  union {                  /* accepts a client there is no memory for, to close it (server.c) */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } spare;
  bool spare_busy;
  uv_stream_t *spare_waiting; /* a listener with a client pending until spare is closed */
  char *readbuf;           /* one read buffer for all connections (the loop is single-threaded) */
  bool readbuf_busy;
  uint64_t nofile;         /* the open-file limit when listening began (0: none) */
};

/* Sets up the server on loop (nothing is listened on yet). Returns 0 or -errno. */
int mw_server_init(mw_server *srv, uv_loop_t *loop, const mw_config *cfg);
/* Binds and listens on cfg.host:cfg.port. Returns 0 or a libuv error. */
int mw_server_listen(mw_server *srv);
/* The bound port (useful with port 0). */
int mw_server_port(mw_server *srv);
/* Listens for FastCGI connections on cfg.fastcgi ("unix:/path" or
 * "host:port", "[v6]:port"; port 0 picks a free one). A socket file left at
 * the path by an earlier run is replaced. Returns 0, UV_EINVAL for an
 * address that is neither, or a libuv error. */
int mw_server_listen_fastcgi(mw_server *srv);
/* Where the FastCGI listener is, for people: "127.0.0.1:9000", "unix:/path". */
void mw_server_fastcgi_name(mw_server *srv, char *out, size_t cap);
/* Graceful stop: stop accepting, close idle connections, let the others end
 * after their in-flight response; on_idle_stop runs when none is left. */
void mw_server_stop(mw_server *srv);
/* Closes the server's own handles; call after stop, then run the loop. */
void mw_server_close(mw_server *srv);

/* A new connection speaking HTTP, its socket not yet connected (the
 * listener accepts into it; tests and fuzzers feed it bytes through
 * c->proto->on_read). Returns NULL when out of memory. */
mw_conn *mw_conn_new(mw_server *srv);
/* The same for another protocol: attach sets c->proto (http_conn_attach,
 * fcgi_conn_attach; it closes c when it cannot); pipe: a Unix socket. */
mw_conn *mw_conn_new_with(mw_server *srv, bool pipe, void (*attach)(mw_conn *c));

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
/* The send timeout (cfg.send_timeout_ms) counts between writes that make
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
