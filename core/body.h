/* body.h — a request body while it arrives, for every carrier (HTTP/1 and
 * FastCGI).
 *
 * A body up to o->body_buffer bytes is held in memory. A larger one (or
 * any, once o->body_memory bytes of bodies are held across all
 * connections) is spooled to an unlinked temporary file in o->tmp_dir. A
 * multipart/form-data body is parsed as it comes (multipart.c): its fields
 * are kept in memory, each file is written to a temporary file of its own,
 * removed after the response. The disk is used off the loop (libuv's
 * filesystem requests), one request at a time per body; while more than a
 * little waits for the disk, the carrier stops reading the connection, so
 * memory per body stays bounded however fast the client sends. */
#ifndef MW_BODY_H
#define MW_BODY_H

#include <uv.h>

#include "http.h"
#include "multipart.h"
#include "server.h"

/* A spooled body: an unlinked temporary file. Refcounted: the request
 * holds one reference, each read in flight another; the last one closes
 * the file (and with it the disk space). */
typedef struct body_file {
  int fd;
  unsigned refs;
  uint64_t size;
  char *loaded;              /* the whole body, once http_req_body read it */
  uv_loop_t *loop;
} body_file;

body_file *body_file_ref(body_file *f);
void body_file_unref(body_file *f);

/* Reads up to n bytes at off, synchronously. Returns the count or -errno. */
ssize_t body_file_pread(body_file *f, uint64_t off, char *buf, size_t n);

typedef struct body_read body_read;
/* err is 0 or a libuv error; data (len bytes, fewer at the end, none past
 * it) is borrowed for the call. */
typedef void (*body_read_cb)(void *ud, int err, const char *data, size_t len);
/* Reads up to n bytes at off off the loop, then calls cb. Holds a
 * reference to f until then. Returns the read, or NULL (out of memory:
 * cb is not called). */
body_read *body_file_read(body_file *f, uint64_t off, size_t n, body_read_cb cb, void *ud);
/* cb will not be called (the read itself finishes and frees itself). */
void body_read_cancel(body_read *r);

/* What a body tells its carrier after it asked it to wait. */
typedef struct body_events {
  void (*pause)(void *ud);   /* stop reading (too many body bytes wait for the disk, all bodies together) */
  void (*resume)(void *ud);  /* reading may go on (after BODY_WAIT from body_feed, or pause) */
  void (*ready)(void *ud);   /* the body is complete (after BODY_WAIT from body_end): body_fill, dispatch */
  void (*failed)(void *ud);  /* the disk failed it: refuse with b->status and b->why */
} body_events;

typedef struct body_sink body_sink;

/* Embedded in a carrier's transaction; zero-initialise. mem's buffer may
 * be kept for the next request (body_release keeps it). */
typedef struct http_body {
  mw_str mem;                /* the body while it is held in memory */
  uint64_t len;              /* bytes received so far */
  size_t counted;            /* of mem, counted against opts->body_memory */
  body_sink *sink;           /* spooling or multipart; NULL: in memory */
  const http_opts *opts;     /* borrowed: the listener's */
  uv_loop_t *loop;
  const body_events *ev;
  void *ud;
  int status;                /* after BODY_FAIL: the status that refuses the request */
  char why[200];             /* and why, for the client */
} http_body;

enum { BODY_OK = 0, BODY_WAIT = 1, BODY_FAIL = -1 };

/* Starts the body of req (its headers are parsed; they are borrowed until
 * body_end). length is the Content-Length, or -1 when it is not known
 * (chunked). Returns BODY_OK, or BODY_FAIL (413 for a length over
 * o->max_body, 400 for multipart/form-data without a boundary). Borrows o
 * until body_release. */
int body_begin(http_body *b, uv_loop_t *loop, const http_opts *o, const http_req *req, int64_t length,
               const body_events *ev, void *ud);
/* The next bytes of the body (borrowed). Returns BODY_OK, BODY_WAIT (stop
 * reading until ev->resume), or BODY_FAIL. */
int body_feed(http_body *b, const char *data, size_t len);
/* The body is complete. Returns BODY_OK (body_fill now), BODY_WAIT
 * (ev->ready comes once the disk has everything), or BODY_FAIL. */
int body_end(http_body *b);
/* Points req's body fields at the complete body. */
void body_fill(http_body *b, http_req *req);
/* The request is over (answered, refused, or its connection gone): its
 * files are closed and removed, now or once the disk work in flight is
 * done. b can then start another body. */
void body_release(http_body *b);
/* Frees mem too (the transaction itself goes). */
void body_dispose(http_body *b);

/* Bytes of request bodies held in memory right now, across all connections. */
size_t body_memory_held(void);
/* Filesystem requests of bodies in flight (tests and fuzzers run the loop
 * until there are none). */
size_t body_io_pending(void);

#endif
