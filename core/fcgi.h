/* fcgi.h — FastCGI 1.0 responder (the --fastcgi listener).
 *
 * A web server (nginx's fastcgi_pass) sends each request as records: a
 * BEGIN_REQUEST, the CGI variables in the PARAMS stream, the body in the
 * STDIN stream. fcgi.c turns them into the http_req the HTTP carrier would
 * make and calls the same handler; the response goes back CGI-style
 * ("Status: 404 Not Found", the headers, a blank line, the body) in STDOUT
 * records, then END_REQUEST. One request at a time per connection
 * (FCGI_MPXS_CONNS=0).
 *
 * The record parser and the name-value pair codec have no I/O: the unit
 * tests and the fuzzer use them directly. */
#ifndef MW_FCGI_H
#define MW_FCGI_H

#include "mw.h"

#define FCGI_VERSION_1 1
#define FCGI_HEADER_LEN 8
#define FCGI_MAX_CONTENT 65535

/* Record types. */
enum {
  FCGI_BEGIN_REQUEST = 1,
  FCGI_ABORT_REQUEST = 2,
  FCGI_END_REQUEST = 3,
  FCGI_PARAMS = 4,
  FCGI_STDIN = 5,
  FCGI_STDOUT = 6,
  FCGI_STDERR = 7,
  FCGI_DATA = 8,
  FCGI_GET_VALUES = 9,
  FCGI_GET_VALUES_RESULT = 10,
  FCGI_UNKNOWN_TYPE = 11,
};

/* BEGIN_REQUEST: roles, and the flag that keeps the connection open. */
enum { FCGI_RESPONDER = 1, FCGI_AUTHORIZER = 2, FCGI_FILTER = 3 };
#define FCGI_KEEP_CONN 1

/* END_REQUEST protocolStatus. */
enum { FCGI_REQUEST_COMPLETE = 0, FCGI_CANT_MPX_CONN = 1, FCGI_OVERLOADED = 2, FCGI_UNKNOWN_ROLE = 3 };

/* One record, padding left out. content is borrowed: valid during the
 * callback only. */
typedef struct fcgi_record {
  uint8_t type;
  uint16_t id;
  const char *content;
  size_t len;
} fcgi_record;

/* Returns 0 to go on, nonzero to stop the parse (fcgi_parse returns it). */
typedef int (*fcgi_record_cb)(void *ud, const fcgi_record *r);

/* Cuts a byte stream into records. Zero-initialise; fcgi_parser_free when done. */
typedef struct fcgi_parser {
  uint8_t head[FCGI_HEADER_LEN]; /* a record split across reads: its header, */
  char *rest;                    /* its content and padding */
  size_t have;                   /* and how much of it has come */
} fcgi_parser;

#define FCGI_EMALFORMED (-1)

/* Calls cb for every complete record in data; a record cut short waits in
 * p for the next call. Returns 0, FCGI_EMALFORMED when a record is not
 * FastCGI 1.0 (nothing after it can be trusted), -ENOMEM, or what cb
 * returned to stop. */
int fcgi_parse(fcgi_parser *p, const char *data, size_t len, fcgi_record_cb cb, void *ud);
void fcgi_parser_free(fcgi_parser *p);

/* Writes a record header (padding bytes are the caller's). */
void fcgi_put_header(char out[FCGI_HEADER_LEN], int type, unsigned id, size_t len, unsigned padding);

/* One name-value pair (PARAMS, GET_VALUES): borrowed from the buffer. */
typedef struct fcgi_nv {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} fcgi_nv;

/* Reads the pair at *pos in buf (len bytes) and moves *pos past it. Returns 1,
 * 0 at the end of buf, or -EINVAL when a length runs past the end (*pos
 * stays). */
int fcgi_nv_next(const char *buf, size_t len, size_t *pos, fcgi_nv *nv);
/* Appends a pair, lengths in their 1- or 4-byte forms. Returns 0 or -ENOMEM
 * (-EINVAL for a length over 2^31 - 1). */
int fcgi_nv_append(mw_str *s, const char *name, size_t nlen, const char *value, size_t vlen);

/* Most PARAMS bytes one request may send (or --max-header-size and 48 KiB
 * for the CGI variables, when that is more); past it the request gets 431.
 * The HTTP part of them (REQUEST_URI and the HTTP_* headers) is held to
 * --max-header-size, as over HTTP. */
#define FCGI_MAX_PARAMS_BYTES (64 * 1024)

struct mw_conn;
/* Makes c speak FastCGI: the --fastcgi listener's attach function
 * (mw_attach_fn; ud is the http_site, borrowed, as for HTTP). Tests and fuzzers attach it to a connection without a socket. */
void fcgi_conn_attach(struct mw_conn *c, void *ud);

#endif
