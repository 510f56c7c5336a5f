/* multipart.c — a streaming multipart/form-data parser. Written from RFC
 * 2046 §5.1 (the framing), RFC 7578 (form-data) and RFC 6266 / RFC 8187
 * (Content-Disposition's filename and filename*). */
#include "multipart.h"

#include <errno.h>
#include <string.h>

#include "pct.h"
#include "utf8.h"

enum {
  ST_PREAMBLE, /* before the first delimiter: ignored */
  ST_AFTER,    /* just after a delimiter: "--" (the last one) or CRLF */
  ST_HEADERS,  /* a part's header block */
  ST_BODY,     /* a part's content, up to the next delimiter */
  ST_EPILOGUE, /* after the closing delimiter: ignored */
};

static bool bchar(unsigned char c) {
  /* RFC 2046: DIGIT / ALPHA / "'()+_,-./:=?" and space (not last). */
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("'()+_,-./:=? ", c));
}

int mp_init(mp_parser *p, const char *boundary, size_t blen, size_t max_header, const mp_callbacks *cb, void *ud) {
  memset(p, 0, sizeof *p);
  if (blen == 0 || blen > MP_MAX_BOUNDARY || boundary[blen - 1] == ' ') return MP_EMALFORMED;
  for (size_t i = 0; i < blen; i++)
    if (!bchar((unsigned char)boundary[i])) return MP_EMALFORMED;
  memcpy(p->delim, "\r\n--", 4);
  memcpy(p->delim + 4, boundary, blen);
  p->dlen = 4 + blen;
  p->cb = cb;
  p->ud = ud;
  p->max_header = max_header;
  p->state = ST_PREAMBLE;
  /* The first delimiter may open the body without a CRLF before it: start
   * as if one had just been read. */
  p->match = 2;
  return 0;
}

void mp_free(mp_parser *p) {
  mw_str_free(&p->head);
  mw_str_free(&p->scratch);
}

static int fail(mp_parser *p, int err) {
  p->err = err;
  return err;
}

/* Hands len content bytes to on_data (in a part; the preamble is dropped). */
static int emit(mp_parser *p, const char *data, size_t len) {
  if (p->state != ST_BODY || len == 0 || !p->cb->on_data) return 0;
  int r = p->cb->on_data(p->ud, data, len);
  return r ? fail(p, r) : 0;
}

/* Looks for the delimiter from data[*pos]; what comes before it is content.
 * A delimiter cut by the end of data is held back (only its length: the
 * bytes are the delimiter's own) until the next call tells whether it was
 * one. Returns 1 with *pos just past a whole delimiter, 0 when data ran out
 * (*pos = len), or an error. */
static int scan(mp_parser *p, const char *data, size_t len, size_t *pos) {
  size_t i = *pos, start = i;
  size_t held = p->match; /* matched in earlier calls: not in data */
  int r;
  while (i < len) {
    if (p->match == 0) {
      /* The delimiter starts with the only CR it holds (no bchar is CR). */
      const char *cr = memchr(data + i, '\r', len - i);
      if (!cr) {
        i = len;
        break;
      }
      i = (size_t)(cr - data) + 1;
      p->match = 1;
      continue;
    }
    if (data[i] == p->delim[p->match]) {
      i++;
      if (++p->match == p->dlen) {
        size_t here = p->dlen - held; /* the delimiter's bytes in data */
        if ((r = emit(p, data + start, i - here - start))) return r;
        p->match = 0;
        *pos = i;
        return 1;
      }
      continue;
    }
    /* Not the delimiter after all: what was held back is content, and
     * data[i] is looked at again (it may be the CR of a delimiter). */
    if (held) {
      if ((r = emit(p, p->delim, held))) return r;
      held = 0;
    }
    p->match = 0;
  }
  if ((r = emit(p, data + start, len - (p->match - held) - start))) return r;
  *pos = len;
  return 0;
}

/* ---- a part's headers ---- */

static bool tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ws(const char *s, const char *end) {
  while (s < end && (*s == ' ' || *s == '\t')) s++;
  return s;
}

typedef struct span {
  const char *p;
  size_t len;
  bool set;
} span;

/* Reads one parameter value (a token or a quoted-string) at *s into
 * scratch (unquoted). A backslash escapes only '"' and '\\': browsers send
 * Windows paths with bare backslashes in them. Returns 0 or MP_EMALFORMED. */
static int param_value(mp_parser *p, const char **s, const char *end, span *out) {
  const char *v = *s;
  char *o = p->scratch.p + p->scratch.len;
  out->p = o;
  if (v < end && *v == '"') {
    v++;
    for (;;) {
      if (v >= end) return MP_EMALFORMED; /* no closing quote */
      char c = *v++;
      if (c == '"') break;
      if (c == '\\' && v < end && (*v == '"' || *v == '\\')) c = *v++;
      *o++ = c;
    }
  } else {
    while (v < end && *v != ';' && *v != ' ' && *v != '\t') *o++ = *v++;
  }
  out->len = (size_t)(o - out->p);
  out->set = true;
  *o++ = '\0';
  p->scratch.len = (size_t)(o - p->scratch.p);
  *s = v;
  return 0;
}

/* filename*=UTF-8''%e2%82%ac.txt (RFC 8187): decoded in place. Other
 * charsets, a malformed escape, or bytes that are not UTF-8 make it
 * unusable (false): filename= then stands (RFC 6266 §4.3: a recipient
 * ignores a parameter it cannot read). */
static bool ext_value(span *v) {
  static const char utf8[] = "utf-8''";
  if (v->len < sizeof utf8 - 1 || !mw_ieq(v->p, sizeof utf8 - 1, utf8)) return false;
  char *o = (char *)v->p;
  const char *s = v->p + sizeof utf8 - 1;
  size_t slen = v->len - (sizeof utf8 - 1);
  ssize_t n = pct_decode(s, slen, o, slen, PCT_STRICT);
  if (n < 0 || !utf8_valid(o, (size_t)n)) return false;
  v->len = (size_t)n;
  return true;
}

/* Content-Disposition: form-data; name="x"; filename="y". */
static int disposition(mp_parser *p, const char *s, const char *end, span *name, span *filename) {
  static const char fd[] = "form-data";
  span ext = {0};
  if ((size_t)(end - s) < sizeof fd - 1 || !mw_ieq(s, sizeof fd - 1, fd)) return MP_EMALFORMED;
  s = skip_ws(s + sizeof fd - 1, end);
  while (s < end) {
    if (*s != ';') return MP_EMALFORMED;
    s = skip_ws(s + 1, end);
    if (s == end) break; /* a trailing ';' */
    const char *k = s;
    while (s < end && tchar((unsigned char)*s)) s++;
    size_t klen = (size_t)(s - k);
    s = skip_ws(s, end);
    if (klen == 0 || s == end || *s != '=') return MP_EMALFORMED;
    s = skip_ws(s + 1, end);
    span v;
    if (param_value(p, &s, end, &v)) return MP_EMALFORMED;
    s = skip_ws(s, end);
    if (mw_ieq(k, klen, "name") && !name->set) *name = v;
    else if (mw_ieq(k, klen, "filename") && !filename->set) *filename = v;
    else if (mw_ieq(k, klen, "filename*") && !ext.set && ext_value(&v)) ext = v;
  }
  if (ext.set) *filename = ext;
  return 0;
}

/* The header block is in p->head, its final blank line included. */
static int part_begin(mp_parser *p) {
  const char *s = p->head.p, *end = p->head.p + p->head.len - 2; /* up to the last line's CRLF */
  span name = {0}, filename = {0}, type = {0};
  bool has_disp = false;
  mw_str_reset(&p->scratch);
  /* Decoded values are never longer than the block: room for all of them
   * at once, so the spans into scratch stay put. */
  if (mw_str_reserve(&p->scratch, p->head.len + 8)) return fail(p, MP_ENOMEM);
  while (s < end) {
    const char *eol = memchr(s, '\r', (size_t)(end - s));
    /* The block ends with CRLF CRLF, so eol[1] is there to read. */
    if (!eol || eol[1] != '\n') return fail(p, MP_EMALFORMED);
    const char *k = s;
    while (s < eol && tchar((unsigned char)*s)) s++;
    size_t klen = (size_t)(s - k);
    if (klen == 0 || s == eol || *s != ':') return fail(p, MP_EMALFORMED);
    const char *v = skip_ws(s + 1, eol), *vend = eol;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
    for (const char *c = v; c < vend; c++)
      if ((unsigned char)*c < 0x20 && *c != '\t') return fail(p, MP_EMALFORMED);
    if (mw_ieq(k, klen, "content-disposition") && !has_disp) {
      has_disp = true;
      if (disposition(p, v, vend, &name, &filename)) return fail(p, MP_EMALFORMED);
    } else if (mw_ieq(k, klen, "content-type") && !type.set) {
      type = (span){v, (size_t)(vend - v), true};
    }
    s = eol + 2;
  }
  if (!has_disp || !name.set) return fail(p, MP_EMALFORMED);
  mp_part part = {name.p, name.len, filename.set ? filename.p : NULL, filename.len, type.set ? type.p : "", type.len};
  int r = p->cb->on_part ? p->cb->on_part(p->ud, &part) : 0;
  return r ? fail(p, r) : 0;
}

/* Gathers the header block from data[*pos]; starts the part once it is
 * whole. p->sub counts the bytes of CRLF CRLF seen, from 2 at its start (a
 * block with no header is the blank line alone). */
static int headers(mp_parser *p, const char *data, size_t len, size_t *pos) {
  static const char crlfcrlf[] = "\r\n\r\n";
  size_t i = *pos;
  while (i < len && p->sub < 4) {
    char c = data[i++];
    if (c == crlfcrlf[p->sub]) p->sub++;
    else p->sub = c == '\r' ? 1 : 0;
  }
  size_t n = i - *pos;
  if (p->head.len + n > p->max_header) return fail(p, MP_EHEADER);
  if (mw_str_append(&p->head, data + *pos, n)) return fail(p, MP_ENOMEM);
  *pos = i;
  if (p->sub < 4) return 0;
  int r = part_begin(p);
  if (r) return r;
  mw_str_reset(&p->head);
  p->state = ST_BODY;
  return 0;
}

int mp_feed(mp_parser *p, const char *data, size_t len) {
  if (p->err) return p->err;
  size_t pos = 0;
  int r;
  while (pos < len) {
    switch (p->state) {
    case ST_PREAMBLE:
    case ST_BODY:
      r = scan(p, data, len, &pos);
      if (p->err) return p->err; /* a callback stopped it */
      if (r == 1) {
        if (p->state == ST_BODY && p->cb->on_part_end && (r = p->cb->on_part_end(p->ud))) return fail(p, r);
        p->state = ST_AFTER;
        p->sub = 0;
      }
      break;
    case ST_AFTER: {
      /* "--" ends the body; else optional whitespace (RFC 2046's transport
       * padding) and CRLF start the next part. */
      char c = data[pos++];
      if (p->sub == 0 && c == '-') p->sub = 1;
      else if (p->sub == 1 && c == '-') p->state = ST_EPILOGUE;
      else if ((p->sub == 0 || p->sub == 3) && (c == ' ' || c == '\t')) p->sub = 3;
      else if ((p->sub == 0 || p->sub == 3) && c == '\r') p->sub = 2;
      else if (p->sub == 2 && c == '\n') {
        p->state = ST_HEADERS;
        p->sub = 2;
        mw_str_reset(&p->head);
      } else {
        return fail(p, MP_EMALFORMED);
      }
      break;
    }
    case ST_HEADERS:
      if ((r = headers(p, data, len, &pos))) return r;
      break;
    case ST_EPILOGUE:
      return 0;
    }
  }
  return 0;
}

int mp_finish(mp_parser *p) {
  if (p->err) return p->err;
  return p->state == ST_EPILOGUE ? 0 : fail(p, MP_EUNTERMINATED);
}

/* ---- the Content-Type ---- */

bool mp_is_form_data(const char *ctype, size_t len) {
  static const char mf[] = "multipart/form-data";
  if (len < sizeof mf - 1 || !mw_ieq(ctype, sizeof mf - 1, mf)) return false;
  const char *s = skip_ws(ctype + sizeof mf - 1, ctype + len);
  return s == ctype + len || *s == ';';
}

int mp_boundary(const char *ctype, size_t len, const char **b, size_t *blen) {
  const char *s = memchr(ctype, ';', len), *end = ctype + len;
  while (s && s < end) {
    s = skip_ws(s + 1, end);
    const char *k = s;
    while (s < end && tchar((unsigned char)*s)) s++;
    size_t klen = (size_t)(s - k);
    s = skip_ws(s, end);
    if (s == end || *s != '=') return MP_EMALFORMED;
    s = skip_ws(s + 1, end);
    const char *v = s, *vend;
    if (s < end && *s == '"') {
      v = ++s;
      while (s < end && *s != '"') s++;
      if (s == end) return MP_EMALFORMED;
      vend = s++;
    } else {
      while (s < end && *s != ';' && *s != ' ' && *s != '\t') s++;
      vend = s;
    }
    if (mw_ieq(k, klen, "boundary")) {
      size_t n = (size_t)(vend - v);
      if (n == 0 || n > MP_MAX_BOUNDARY || v[n - 1] == ' ') return MP_EMALFORMED;
      for (size_t i = 0; i < n; i++)
        if (!bchar((unsigned char)v[i])) return MP_EMALFORMED;
      *b = v;
      *blen = n;
      return 0;
    }
    s = memchr(s, ';', (size_t)(end - s));
  }
  return MP_EMALFORMED;
}
