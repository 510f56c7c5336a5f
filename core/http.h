/* http.h — HTTP request and response objects.
 *
 * A request and its response are independent of the connection that carries
 * them: http.c fills them from llhttp on a TCP connection, fcgi.c from
 * FastCGI records. Response headers stay a list until the carrier writes
 * them in its own form (an HTTP/1 head here, a CGI head in fcgi.c). A
 * response is finished exactly once: whole (http_res_end*), or streamed
 * (http_res_begin, http_res_write as the producer makes the body, with
 * back-pressure from http_res_wait, then http_res_finish). */
#ifndef MW_HTTP_H
#define MW_HTTP_H

#include "mw.h"

/* The request line plus headers of one request, at most (431 past it):
 * the default of --max-header-size (http_opts.max_header_size). */
#define HTTP_MAX_HEADER_BYTES (16 * 1024)

/* The settings HTTP follows on every carrier (http.c, fcgi.c) and for
 * request bodies (body.c); config.c fills them from the command line, and
 * a listener gets them in its http_site. Strings are borrowed. */
typedef struct http_opts {
  size_t max_header_size;      /* request line plus headers, bytes (431 past it) */
  size_t max_body;             /* request body limit, bytes (413 past it) */
  uint64_t header_timeout_ms;  /* for the request line and headers */
  uint64_t keepalive_timeout_ms;
  /* Request bodies (body.c): held in memory up to body_buffer bytes, else
   * spooled to a temporary file in tmp_dir; at most body_memory bytes of
   * bodies held in memory across all connections. */
  size_t body_buffer, body_memory;
  const char *tmp_dir;         /* NULL: $TMPDIR, else /tmp */
  uint64_t body_timeout_ms;    /* between two reads of a body (408 past it) */
  uint64_t body_deadline_ms;   /* for a whole body, from its headers; 0: none */
  /* multipart/form-data: files, fields, bytes of one file (0: only
   * max_body), of one field, of one part's headers. */
  size_t upload_max_files, upload_max_fields, upload_max_file_size, upload_max_field_size, upload_max_part_header;
  bool compress;               /* gzip/brotli for text responses */
  size_t compress_min;         /* smallest body compressed, bytes */
  bool quiet;                  /* no access log */
} http_opts;

typedef struct http_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} http_header;

/* One part of a multipart/form-data body: a field (filename NULL, its
 * value in memory) or a file (written to the temporary file at path). */
typedef struct http_part {
  const char *name;
  size_t name_len;
  const char *filename;     /* as the client sent it; NULL for a field */
  size_t filename_len;
  const char *type;         /* a file's Content-Type */
  size_t type_len;
  const char *value;        /* a field's value */
  size_t value_len;
  const char *path;         /* a file's temporary path: removed after the response */
  uint64_t size;            /* a file's size */
} http_part;

struct body_file;

typedef struct http_req {
  const char *method;       /* "GET", "POST", ... (static string) */
  int method_id;            /* llhttp_method_t */
  const char *url;          /* the request target as sent */
  size_t url_len;
  const char *path;         /* the part of url before '?', not decoded */
  size_t path_len;
  const char *query;        /* the part after '?', without it ("" if none) */
  size_t query_len;
  http_header *headers;
  int nheaders;
  const char *body;         /* the decoded body (chunked bodies joined); NULL when spooled */
  size_t body_len;          /* its length, spooled or not */
  struct body_file *body_file; /* a body over the memory buffer, in an unlinked temporary file */
  const http_part *parts;   /* multipart/form-data: its fields and files, in order (body is "") */
  int nparts;
  bool multipart;
  int http_major, http_minor;
  bool keep_alive;
  bool upgrade;             /* Connection: upgrade + Upgrade: ... */
  const char *remote_addr;  /* "127.0.0.1" */
  uint64_t start_ns;        /* when the first byte of the request arrived */
} http_req;

/* Returns the value of the first header called name (case-insensitive) and
 * its length in *len, or NULL. Borrowed: valid while the request lives. */
const char *http_req_header(const http_req *req, const char *name, size_t *len);

/* True when the request's Origin names the host (and port) of its Host
 * header: the page that sent it was served by this server. False without
 * either header. */
bool http_req_same_origin(const http_req *req);

/* The whole body in memory: req->body, or for a spooled body a copy read
 * from its file on the first call, on the loop (for C handlers that need
 * the bytes at once, such as Engine.IO's polling POSTs; Lua routes read
 * off the loop). Borrowed: valid while the request lives. NULL when the
 * file cannot be read (errno says why). */
const char *http_req_body(const http_req *req, size_t *len);

typedef struct http_res http_res;

/* A body length not known ahead (a streamed response): chunked on
 * HTTP/1.1, until the connection closes on HTTP/1.0, STDOUT records until
 * the empty one on FastCGI. */
#define HTTP_LEN_STREAM (-1)

/* What carries a response to its client: each carrier writes the status
 * and the header list in its own form (an HTTP/1 head in http.c, a CGI
 * head in fcgi.c). A response is head, body pieces, end, in that order;
 * http.c's http_res_* functions are the only callers. */
typedef struct http_carrier {
  /* The head, framed for res->body_len bytes of body (HTTP_LEN_STREAM: not
   * known), followed in the same write by ilen bytes of body at ibody
   * (borrowed; ilen may be 0). Nothing of the body is sent for HEAD
   * requests and bodiless statuses: http.c passes ilen 0 then. */
  void (*head)(http_res *res, const char *ibody, size_t ilen);
  /* More body: takes ownership of one reference to buf. */
  void (*body)(http_res *res, mw_buf *buf, size_t off, size_t len);
  /* The response is complete. The carrier frees the exchange (res and its
   * request) now or once it is written: res must not be used after. */
  void (*end)(http_res *res);
  /* Bytes queued towards the client and not yet written, or SIZE_MAX when
   * the client is gone (the response can only be ended). */
  size_t (*queued)(const http_res *res);
} http_carrier;

/* A response header: the line "name: value\r\n" at res->hbuf.p + off. */
typedef struct http_field {
  uint32_t off, nlen, vlen;
} http_field;

struct http_res {
  int status;
  mw_str hbuf;               /* the header lines so far, "Name: value\r\n" each */
  http_field *fields;        /* where each is in hbuf, in the order added */
  uint32_t nfields, fcap;
  const http_req *req;       /* the request answered (borrowed: it lives as long as res) */
  int64_t body_len;          /* set when the head is written; HTTP_LEN_STREAM: streamed */
  bool has_type, done, head_only, keep_alive, started;
  bool aborted;              /* ended by http_res_abort: the body is incomplete */
  bool compress;             /* the body may be gzipped on the fly (http_res_end*) */
  int http_minor;
  size_t compress_min;       /* smallest body compressed (0: never), set by the carrier */
  size_t bytes_sent;         /* body bytes, for the access log */
  const http_carrier *carrier;
  void *carrier_data;
  void (*on_drain)(void *ud); /* see http_res_wait */
  void *drain_ud;
};

/* Prepares res to answer req (HEAD, keep-alive and version are taken from
 * it; req is borrowed and must outlive res). */
void http_res_init(http_res *res, const http_req *req, const http_carrier *c, void *data);
/* The same for a res that was initialised before (a finished exchange kept
 * for the next request): its header buffers are kept, emptied. */
void http_res_reuse(http_res *res, const http_req *req, const http_carrier *c, void *data);
void http_res_dispose(http_res *res);

/* The access log's line for a finished exchange (unless o->quiet): method,
 * target, status, time since the request began, body bytes sent; coloured
 * by status on a terminal. The same line for every carrier. Borrows all. */
void http_access_log(const http_opts *o, const http_req *req, const http_res *res);

/* Adds a header. Returns 0, or -EINVAL when name or value holds CR, LF or
 * NUL (header injection) or name a colon, or -ENOMEM. Content-Length,
 * Transfer-Encoding, Connection and Date are written by the carrier and
 * silently ignored here. */
int http_res_header(http_res *res, const char *name, size_t nlen, const char *value, size_t vlen);
int http_res_headerz(http_res *res, const char *name, const char *value);
/* The value of the first header called name (case-insensitive) and its
 * length in *len, or NULL. Borrowed: valid until res's headers change. */
const char *http_res_get(const http_res *res, const char *name, size_t *len);
/* Removes every header called name. */
void http_res_remove(http_res *res, const char *name);
/* Removes every header. */
void http_res_clear(http_res *res);

/* Finishes the response with a copy of body. Returns 0 or -errno; a second
 * call returns -EALREADY and sends nothing. */
int http_res_end(http_res *res, const char *body, size_t len);
/* Same, taking ownership of one reference to body (which may be shared with
 * other responses, e.g. a cached static file). */
int http_res_end_buf(http_res *res, mw_buf *body);
/* Same with len bytes of body at off (a slice of a shared buffer). */
int http_res_end_slice(http_res *res, mw_buf *body, size_t off, size_t len);

/* A streamed response: begin writes the head for a body of len bytes
 * (HTTP_LEN_STREAM when not known), write queues more of it (taking
 * ownership of one reference to buf; dropped for HEAD and bodiless
 * statuses), finish ends it and releases res. A producer keeps the queue
 * short: it writes while http_res_queued is under its threshold, else waits
 * with http_res_wait. Each returns 0 or -errno (-EALREADY: begun, or
 * finished, already; -EPIPE from write: the client is gone, finish). */
int http_res_begin(http_res *res, int64_t len);
int http_res_write(http_res *res, mw_buf *buf, size_t off, size_t len);
int http_res_write_copy(http_res *res, const char *data, size_t len);
int http_res_finish(http_res *res);
/* Ends a streamed response that cannot be completed (its producer failed):
 * the client must see it cut short, so no last chunk or END_REQUEST is
 * written and the connection ends. */
int http_res_abort(http_res *res);
/* Bytes queued towards the client, or SIZE_MAX when it is gone. */
size_t http_res_queued(const http_res *res);
/* Calls cb(ud) once, when the carrier's queue has drained or the client is
 * gone (then http_res_queued says SIZE_MAX). One waiter at a time; cb may
 * write, finish or wait again. */
void http_res_wait(http_res *res, void (*cb)(void *ud), void *ud);
/* For carriers: the queue drained, or the client went away. */
void http_res_drained(http_res *res);

/* Lets http_res_end* gzip the body when the request accepts it and the body
 * is at least res->compress_min bytes (Engine.IO polling responses). */
static inline void http_res_compressible(http_res *res) { res->compress = true; }

/* Takes the connection over from HTTP for another protocol (WebSocket).
 * Queues head (the 101 response, copied), finishes res, and returns the
 * connection; the caller sets c->proto/c->proto_data at once. Bytes that
 * arrived after the request are moved into *rest (caller frees). Returns NULL,
 * leaving res unfinished, when the request was not an upgrade or res is not
 * carried by a TCP connection. */
struct mw_conn *http_res_upgrade(http_res *res, const char *head, size_t len, mw_str *rest);

/* The reason phrase for a status code ("Not Found"), or "Unknown". */
const char *http_status_text(int status);

/* A complete small response: status, text/plain or text/html body. */
int http_res_simple(http_res *res, int status, const char *content_type, const char *body);

/* Does an If-None-Match / If-Match list (len bytes) hold etag? Weak
 * comparison (W/ ignored on both sides); "*" matches any. */
bool http_etag_match(const char *list, size_t len, const char *etag);

/* HTTP-date for t (seconds since the epoch) into out (at least 30 bytes). */
void http_date(int64_t t, char *out);
/* Parses an HTTP-date; returns seconds since the epoch or -1. */
int64_t http_parse_date(const char *s, size_t len);


/* ---- HTTP/1.x on a connection (http.c) ---- */
struct mw_conn;
struct mw_server;

/* What answers requests (the app host's, lhost_handler). handle() must
 * eventually finish res (now or later); it may not free req before that. */
typedef struct http_handler {
  void (*handle)(void *ud, const http_req *req, http_res *res);
  void *ud;
} http_handler;

/* What an HTTP or FastCGI listener is given as its user data: who answers
 * (handler.handle NULL: every request gets 404) and under which settings.
 * Borrowed by every connection it accepts: it must outlive them. */
typedef struct http_site {
  http_handler handler;
  http_opts opts;
} http_site;

/* Makes c speak HTTP/1.x: the HTTP listener's attach function (mw_attach_fn).
 * ud is the http_site (borrowed). */
void http_conn_attach(struct mw_conn *c, void *ud);
/* The HTTP listener's refuse (mw_listen_opts): a client over the limits per
 * address gets a 503 with Retry-After, and the connection ends. */
void http_conn_refuse(struct mw_conn *c, void *ud);

#endif
