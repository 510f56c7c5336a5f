/* http.h — HTTP request and response objects.
 *
 * A request and its response are independent of the connection that carries
 * them: http.c fills them from llhttp on a TCP connection, fcgi.c from
 * FastCGI records. A response is finished exactly once
 * (http_res_end*), which hands the serialised bytes to the carrier. */
#ifndef MW_HTTP_H
#define MW_HTTP_H

#include "mw.h"

/* The request line plus headers of one request, at most (431 past it). */
#define HTTP_MAX_HEADER_BYTES (16 * 1024)

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

/* The whole body in memory: req->body, or for a spooled body a copy read
 * from its file on the first call, on the loop (for C handlers that need
 * the bytes at once, such as Engine.IO's polling POSTs; Lua routes read
 * off the loop). Borrowed: valid while the request lives. NULL when the
 * file cannot be read (errno says why). */
const char *http_req_body(const http_req *req, size_t *len);

typedef struct http_res http_res;

/* What carries a response to its client. end() gets the complete head
 * (status line + headers + blank line) and the body, or NULL for none: for
 * HEAD requests and bodiless statuses, and when the body follows the head
 * in head's buffer (http_res_end copies it there). It takes ownership of
 * both buffers. */
typedef struct http_carrier {
  void (*end)(http_res *res, mw_buf *head, mw_buf *body);
} http_carrier;

struct http_res {
  int status;
  mw_str headers;            /* "Name: value\r\n" lines added so far */
  bool has_type, done, head_only, keep_alive, has_date;
  int http_minor;
  size_t bytes_sent;         /* body bytes, for the access log */
  const http_carrier *carrier;
  void *carrier_data;
};

/* Prepares res to answer req (HEAD, keep-alive and version are taken from it). */
void http_res_init(http_res *res, const http_req *req, const http_carrier *c, void *data);
void http_res_dispose(http_res *res);

/* Adds a header line. Returns 0, or -EINVAL when name or value holds CR, LF or
 * NUL (header injection), or -ENOMEM. Content-Length, Connection and Date are
 * written by the core and silently ignored here. */
int http_res_header(http_res *res, const char *name, size_t nlen, const char *value, size_t vlen);
int http_res_headerz(http_res *res, const char *name, const char *value);

/* Finishes the response with a copy of body. Returns 0 or -errno; a second
 * call returns -EALREADY and sends nothing. */
int http_res_end(http_res *res, const char *body, size_t len);
/* Same, taking ownership of one reference to body (which may be shared with
 * other responses, e.g. a cached static file). */
int http_res_end_buf(http_res *res, mw_buf *body);

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

/* HTTP-date for t (seconds since the epoch) into out (at least 30 bytes). */
void http_date(int64_t t, char *out);
/* Parses an HTTP-date; returns seconds since the epoch or -1. */
int64_t http_parse_date(const char *s, size_t len);


/* ---- HTTP/1.x on a connection (http.c) ---- */
struct mw_conn;
struct mw_server;

/* Makes c speak HTTP/1.x: called by server.c for every accepted connection. */
void http_conn_attach(struct mw_conn *c);

/* What answers requests: set by the app host. handle() must eventually
 * finish res (now or later); it may not free req before that. */
typedef struct http_handler {
  void (*handle)(void *ud, const http_req *req, http_res *res);
  void *ud;
} http_handler;
void http_set_handler(struct mw_server *srv, const http_handler *h);

#endif
