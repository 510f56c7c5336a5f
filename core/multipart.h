/* multipart.h — a streaming multipart/form-data parser (RFC 7578 on the
 * framing of RFC 2046 §5.1).
 *
 * Bytes go in as they arrive, in pieces of any size; events come out: a
 * part begins (its name, filename and type), some of its bytes, it ends. No
 * I/O and no copy of a part's content: what to do with the bytes (a field
 * kept in memory, a file written to disk) and every limit but the size of a
 * part's headers is the caller's. The unit tests and the fuzzer drive it
 * directly. */
#ifndef MW_MULTIPART_H
#define MW_MULTIPART_H

#include "mw.h"

/* RFC 2046: a boundary is 1 to 70 characters. */
#define MP_MAX_BOUNDARY 70

/* A part's headers, decoded. Borrowed: valid during on_part only. */
typedef struct mp_part {
  const char *name;      /* the form field's name (Content-Disposition name=) */
  size_t name_len;
  const char *filename;  /* filename= (or filename*=UTF-8''...), NULL when the part is not a file */
  size_t filename_len;
  const char *type;      /* Content-Type, "" when the part has none */
  size_t type_len;
} mp_part;

/* Each returns 0 to go on; anything else stops the parse, and mp_feed
 * returns it. data is borrowed: valid during the call only. */
typedef struct mp_callbacks {
  int (*on_part)(void *ud, const mp_part *part);
  int (*on_data)(void *ud, const char *data, size_t len);
  int (*on_part_end)(void *ud);
} mp_callbacks;

enum {
  MP_EMALFORMED = -1,    /* not multipart/form-data as RFC 7578 frames it */
  MP_EHEADER = -2,       /* a part's headers over max_header bytes */
  MP_ENOMEM = -3,
  MP_EUNTERMINATED = -4, /* the body ended before its closing delimiter */
};

typedef struct mp_parser {
  const mp_callbacks *cb;
  void *ud;
  char delim[4 + MP_MAX_BOUNDARY]; /* "\r\n--" boundary */
  size_t dlen;
  size_t match;     /* bytes of delim matched at the end of what came so far */
  int state;
  int sub;          /* position inside the line that follows a delimiter */
  size_t max_header;
  mw_str head;      /* the current part's header block, while it arrives */
  mw_str scratch;   /* decoded header values handed to on_part */
  int err;          /* sticky: once failed, every later call returns it */
} mp_parser;

/* Gets p ready for a body with this boundary (the Content-Type's boundary
 * parameter, unquoted: see mp_boundary). Returns 0 or MP_EMALFORMED for a
 * boundary RFC 2046 does not allow. */
int mp_init(mp_parser *p, const char *boundary, size_t blen, size_t max_header, const mp_callbacks *cb, void *ud);
/* Parses the next len bytes of the body. Returns 0, an MP_E* error (the
 * parse is over), or what a callback returned to stop it. */
int mp_feed(mp_parser *p, const char *data, size_t len);
/* The body is over. Returns 0 when its closing delimiter came,
 * MP_EUNTERMINATED otherwise (or the error that stopped it before). */
int mp_finish(mp_parser *p);
/* Frees what p holds. */
void mp_free(mp_parser *p);

/* Whether a Content-Type value is multipart/form-data (any parameters). */
bool mp_is_form_data(const char *ctype, size_t len);
/* Finds the boundary parameter of a Content-Type value; *b points into
 * ctype (quotes left out). Returns 0, or MP_EMALFORMED when there is none
 * or it is not a valid boundary. */
int mp_boundary(const char *ctype, size_t len, const char **b, size_t *blen);

#endif
