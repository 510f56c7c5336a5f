/* test_multipart.c — the multipart/form-data parser: bodies in one piece and
 * cut at every byte, content that looks like a boundary, the headers of a
 * part, and what is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

#include "check.h"

/* The events, written down as one string: [name|filename|type] for a part
 * (filename "-" when it is not a file), the content as it came (pieces
 * joined), then "." at the part's end. */
typedef struct rec {
  mw_str ev;
  int stop_at_part; /* on_part returns 99 for this part (1-based), 0: never */
  int parts;
} rec;

static int on_part(void *ud, const mp_part *p) {
  rec *r = ud;
  r->parts++;
  mw_str_appendf(&r->ev, "[%.*s|%.*s|%.*s]", (int)p->name_len, p->name, p->filename ? (int)p->filename_len : 1,
                 p->filename ? p->filename : "-", (int)p->type_len, p->type);
  return r->parts == r->stop_at_part ? 99 : 0;
}

static int on_data(void *ud, const char *d, size_t n) {
  rec *r = ud;
  CHECK(n > 0);
  mw_str_append(&((rec *)ud)->ev, d, n);
  (void)r;
  return 0;
}

static int on_end(void *ud) {
  mw_str_appendc(&((rec *)ud)->ev, '.');
  return 0;
}

static const mp_callbacks CB = {on_part, on_data, on_end};

/* Parses body in pieces of at most step bytes (0: in one piece), then
 * finishes. Returns the first nonzero result; the events go to out. */
static int parse(const char *boundary, const char *body, size_t len, size_t step, mw_str *out, size_t max_header) {
  rec r = {0};
  mp_parser p;
  int res = mp_init(&p, boundary, strlen(boundary), max_header ? max_header : 1024, &CB, &r);
  if (res) return res;
  for (size_t off = 0; off < len && !res;) {
    size_t n = step && len - off > step ? step : len - off;
    res = mp_feed(&p, body + off, n);
    off += n;
  }
  if (!res) res = mp_finish(&p);
  mp_free(&p);
  mw_str_append(&r.ev, "", 0);
  *out = r.ev;
  return res;
}

#define B "----moonwireBoundary7MA4YWxk"

/* A whole delimiter inside a part's content, followed by something other
 * than "--" or CRLF: RFC 2046 forbids it, and it is refused rather than
 * guessed at. */
static void test_delimiter_in_content(void) {
  const char *bodies[] = {
      "--" B "\r\nContent-Disposition: form-data; name=f\r\n\r\nab\r\n--" B "X\r\n--" B "--",
      "--" B "\r\nContent-Disposition: form-data; name=f\r\n\r\nab\r\n--" B "-\r\n--" B "--",
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bodies); i++) {
    mw_str ev;
    CHECK(parse(B, bodies[i], strlen(bodies[i]), 0, &ev, 0) == MP_EMALFORMED);
    CHECK(strcmp(ev.p, "[f|-|]ab.") == 0); /* the part ended where the delimiter was */
    mw_str_free(&ev);
  }
}

/* A form whose binary content has CRLFs, dashes and most of a delimiter
 * in it, but never a whole one. */
static const char GOOD[] =
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"title\"\r\n"
    "\r\n"
    "Hello\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"photo\"; filename=\"cat.png\"\r\n"
    "Content-Type: image/png\r\n"
    "\r\n"
    "\x89PNG\r\n\x1a\n\r\n--" "----moonwireBoundary7MA4YWx" "\r\n--\r\n\r\r\r\n-\r\n--" B "\r\n"
    "content-disposition: FORM-DATA; name=empty\r\n"
    "\r\n"
    "\r\n"
    "--" B "--\r\n"
    "epilogue, ignored\r\n--" B "\r\n";

static const char GOOD_EVENTS[] =
    "[title|-|]Hello."
    "[photo|cat.png|image/png]\x89PNG\r\n\x1a\n\r\n------moonwireBoundary7MA4YWx\r\n--\r\n\r\r\r\n-."
    "[empty|-|].";

static void test_every_cut(void) {
  mw_str ev;
  CHECK(parse(B, GOOD, sizeof GOOD - 1, 0, &ev, 0) == 0);
  CHECK(ev.len == sizeof GOOD_EVENTS - 1 && memcmp(ev.p, GOOD_EVENTS, ev.len) == 0);
  if (ev.len != sizeof GOOD_EVENTS - 1 || memcmp(ev.p, GOOD_EVENTS, ev.len) != 0) fprintf(stderr, "got %s\n", ev.p);
  mw_str_free(&ev);
  /* Fed a byte at a time, and in pieces of every size. */
  int bad = 0;
  for (size_t step = 1; step < sizeof GOOD; step++) {
    if (parse(B, GOOD, sizeof GOOD - 1, step, &ev, 0) != 0 || ev.len != sizeof GOOD_EVENTS - 1 ||
        memcmp(ev.p, GOOD_EVENTS, ev.len) != 0)
      bad++;
    mw_str_free(&ev);
  }
  CHECK(bad == 0);
  /* Cut in two at every byte. */
  bad = 0;
  for (size_t cut = 0; cut <= sizeof GOOD - 1; cut++) {
    rec r = {0};
    mp_parser p;
    mp_init(&p, B, strlen(B), 1024, &CB, &r);
    int res = mp_feed(&p, GOOD, cut);
    if (!res) res = mp_feed(&p, GOOD + cut, sizeof GOOD - 1 - cut);
    if (!res) res = mp_finish(&p);
    if (res || r.ev.len != sizeof GOOD_EVENTS - 1 || memcmp(r.ev.p, GOOD_EVENTS, r.ev.len) != 0) bad++;
    mp_free(&p);
    mw_str_free(&r.ev);
  }
  CHECK(bad == 0);
}

static void test_framing(void) {
  mw_str ev;
  /* A preamble, a CRLF before the first delimiter, transport padding after
   * a delimiter, a part without a Content-Type. */
  const char *body = "This is the preamble.\r\n--xyz  \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
                     "--xyz\r\nContent-Disposition: form-data; name=b\r\n\r\n\r\n--xyz--";
  CHECK(parse("xyz", body, strlen(body), 0, &ev, 0) == 0);
  CHECK(strcmp(ev.p, "[a|-|]1.[b|-|].") == 0);
  mw_str_free(&ev);
  /* The closing delimiter alone: no part at all. */
  CHECK(parse("xyz", "--xyz--", 7, 0, &ev, 0) == 0 && ev.len == 0);
  mw_str_free(&ev);
  /* Unterminated: the body stops in a part, in the headers, before any delimiter. */
  const char *cut[] = {"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\nabc",
                       "--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\nabc\r\n--xyz",
                       "--xyz\r\nContent-Disposition: form", "", "no delimiter at all", "--xyz\r\n"};
  for (size_t i = 0; i < MW_ARRAY_LEN(cut); i++) {
    CHECK(parse("xyz", cut[i], strlen(cut[i]), 0, &ev, 0) == MP_EUNTERMINATED);
    mw_str_free(&ev);
  }
  /* What may follow a delimiter: "--", or whitespace and CRLF. */
  const char *after[] = {"--xyzX\r\n", "--xyz-X", "--xyz \rX", "--xyz\r\r\n", "--xyz\n"};
  for (size_t i = 0; i < MW_ARRAY_LEN(after); i++) {
    CHECK(parse("xyz", after[i], strlen(after[i]), 0, &ev, 0) == MP_EMALFORMED);
    mw_str_free(&ev);
  }
}

static void test_part_headers(void) {
  mw_str ev;
  struct {
    const char *head, *events;
  } ok[] = {
      {"Content-Disposition: form-data; name=\"a b\"; filename=\"x.txt\"", "[a b|x.txt|text/plain]v."},
      {"Content-Disposition:form-data;name=a;filename=\"\"", "[a||text/plain]v."},
      {"Content-Disposition: form-data; name=\"q\\\"uote\"; filename=\"C:\\docs\\new.txt\"", "[q\"uote|C:\\docs\\new.txt|text/plain]v."},
      {"Content-Disposition: form-data; name=f; filename=\"plain.txt\"; filename*=UTF-8''%e2%82%ac%20rates.txt",
       "[f|\xe2\x82\xac rates.txt|text/plain]v."},
      {"Content-Disposition: form-data; name=f; filename*=iso-8859-1''x.txt; filename=y.txt", "[f|y.txt|text/plain]v."},
      /* a malformed escape or bytes that are not UTF-8: filename= stands */
      {"Content-Disposition: form-data; name=f; filename=\"y.txt\"; filename*=UTF-8''%zz%41.txt", "[f|y.txt|text/plain]v."},
      {"Content-Disposition: form-data; name=f; filename=\"y.txt\"; filename*=UTF-8''%ff.txt", "[f|y.txt|text/plain]v."},
      {"X-Other: 1\r\nCONTENT-DISPOSITION: form-data; NAME=up;", "[up|-|text/plain]v."},
      {"Content-Disposition: form-data; name=\"\xc3\xa9t\xc3\xa9\"; filename=\"\xe6\x97\xa5.txt\"",
       "[\xc3\xa9t\xc3\xa9|\xe6\x97\xa5.txt|text/plain]v."},
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(ok); i++) {
    mw_str body = {0};
    mw_str_appendf(&body, "--b\r\n%s\r\nContent-Type:  text/plain \r\n\r\nv\r\n--b--", ok[i].head);
    int r = parse("b", body.p, body.len, 0, &ev, 0);
    CHECK(r == 0 && strcmp(ev.p, ok[i].events) == 0);
    if (r || strcmp(ev.p, ok[i].events)) fprintf(stderr, "case %zu: %d %s\n", i, r, ev.p);
    mw_str_free(&ev);
    mw_str_free(&body);
  }
  const char *bad[] = {
      "",                                                   /* no headers */
      "Content-Type: text/plain",                           /* no Content-Disposition */
      "Content-Disposition: attachment; name=a",            /* not form-data */
      "Content-Disposition: form-data",                     /* no name */
      "Content-Disposition: form-data; filename=a",         /* no name */
      "Content-Disposition: form-data; name=\"a",           /* no closing quote */
      "Content-Disposition: form-data; name",               /* no value */
      "Content-Disposition: form-data name=a",              /* no ';' */
      "Bad Header: 1\r\nContent-Disposition: form-data; name=a",
      "No-Colon\r\nContent-Disposition: form-data; name=a",
      " Content-Disposition: form-data; name=a",            /* folded */
      "Content-Disposition: form-data; name=a\rX: 1",       /* a bare CR */
      "Content-Disposition: form-data; name=a\nX: 1",       /* a bare LF */
      "Content-Disposition: form-data; name=a\x01",         /* a control character */
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) {
    mw_str body = {0};
    mw_str_appendf(&body, "--b\r\n%s%s\r\nv\r\n--b--", bad[i], *bad[i] ? "\r\n" : "");
    int r = parse("b", body.p, body.len, 0, &ev, 0);
    CHECK(r == MP_EMALFORMED);
    if (r != MP_EMALFORMED) fprintf(stderr, "bad case %zu: %d %s\n", i, r, ev.p);
    mw_str_free(&ev);
    mw_str_free(&body);
  }
}

static void test_header_limit(void) {
  mw_str body = {0}, ev;
  mw_str_appendz(&body, "--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
  for (int i = 0; i < 300; i++) mw_str_appendc(&body, 'p');
  mw_str_appendz(&body, "\r\n\r\nv\r\n--b--");
  CHECK(parse("b", body.p, body.len, 0, &ev, 256) == MP_EHEADER);
  mw_str_free(&ev);
  CHECK(parse("b", body.p, body.len, 7, &ev, 256) == MP_EHEADER);
  mw_str_free(&ev);
  CHECK(parse("b", body.p, body.len, 0, &ev, 512) == 0);
  mw_str_free(&ev);
  mw_str_free(&body);
}

static void test_callback_stops(void) {
  rec r = {.stop_at_part = 2};
  mp_parser p;
  CHECK(mp_init(&p, B, strlen(B), 1024, &CB, &r) == 0);
  CHECK(mp_feed(&p, GOOD, sizeof GOOD - 1) == 99);
  CHECK(mp_feed(&p, "more", 4) == 99); /* sticky */
  CHECK(mp_finish(&p) == 99);
  CHECK(r.parts == 2);
  mp_free(&p);
  mw_str_free(&r.ev);
}

static void test_boundary_param(void) {
  const char *b;
  size_t n;
  CHECK(mp_is_form_data("multipart/form-data; boundary=x", 31));
  CHECK(mp_is_form_data("Multipart/Form-Data", 19));
  CHECK(!mp_is_form_data("multipart/form-database", 23));
  CHECK(!mp_is_form_data("multipart/mixed; boundary=x", 27));
  CHECK(!mp_is_form_data("text/plain", 10));
  const char *ct = "multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundaryA1b2";
  CHECK(mp_boundary(ct, strlen(ct), &b, &n) == 0 && n == 26 && memcmp(b, "----WebKitFormBoundaryA1b2", n) == 0);
  ct = "multipart/form-data; BOUNDARY=\"with space:and=more?\"";
  CHECK(mp_boundary(ct, strlen(ct), &b, &n) == 0 && n == 20 && memcmp(b, "with space:and=more?", n) == 0);
  const char *bad[] = {
      "multipart/form-data",
      "multipart/form-data;",
      "multipart/form-data; boundary=",
      "multipart/form-data; boundary=\"\"",
      "multipart/form-data; boundary=\"unclosed",
      "multipart/form-data; boundary=a{b",
      "multipart/form-data; boundary=\"ends with space \"",
      "multipart/form-data; boundary=12345678901234567890123456789012345678901234567890123456789012345678901",
      "multipart/form-data; charset",
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) CHECK(mp_boundary(bad[i], strlen(bad[i]), &b, &n) == MP_EMALFORMED);
  /* Seventy characters is the most RFC 2046 allows. */
  ct = "multipart/form-data; boundary=1234567890123456789012345678901234567890123456789012345678901234567890";
  CHECK(mp_boundary(ct, strlen(ct), &b, &n) == 0 && n == 70);
  mp_parser p;
  CHECK(mp_init(&p, "a{b", 3, 100, &CB, NULL) == MP_EMALFORMED);
  CHECK(mp_init(&p, "", 0, 100, &CB, NULL) == MP_EMALFORMED);
}

/* A large random file part: whatever its bytes, they come out as they went in. */
static void test_random_content(void) {
  size_t n = 200000;
  unsigned char *data = malloc(n);
  uint32_t x = 12345;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245 + 12345;
    data[i] = (unsigned char)(x >> 16);
    /* Plenty of CRs, LFs and dashes. */
    if (data[i] < 40) data[i] = "\r\n-"[data[i] % 3];
  }
  mw_str body = {0};
  mw_str_appendz(&body, "--" B "\r\nContent-Disposition: form-data; name=f; filename=r.bin\r\n\r\n");
  mw_str_append(&body, data, n);
  mw_str_appendz(&body, "\r\n--" B "--\r\n");
  for (size_t step = 0; step < 5000; step += 1237) {
    mw_str ev;
    CHECK(parse(B, body.p, body.len, step, &ev, 0) == 0);
    const char *head = "[f|r.bin|]";
    CHECK(ev.len == strlen(head) + n + 1 && memcmp(ev.p + strlen(head), data, n) == 0);
    mw_str_free(&ev);
  }
  mw_str_free(&body);
  free(data);
}

int main(void) {
  test_delimiter_in_content();
  test_every_cut();
  test_framing();
  test_part_headers();
  test_header_limit();
  test_callback_stops();
  test_boundary_param();
  test_random_content();
  CHECK_REPORT();
  return failed ? 1 : 0;
}
