/* template.c — compiles etlua/EJS-style templates to Lua source (see
 * template.h for the syntax). The output keeps every template line on the
 * same line of the chunk: literal text becomes one-line Lua string literals
 * followed by the newlines the text held, and tag contents are copied as is. */
#include "template.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define TMPL_PREAMBLE \
  "local _ENV, _mw_esc, _mw_tostr, _mw_concat = ...; local _mw_b, _mw_n = {}, 0; "
#define TMPL_PUSH "_mw_n = _mw_n + 1; _mw_b[_mw_n] = "
/* No newline after it: Lua then reports "near <eof>" on the last line. */
#define TMPL_EPILOGUE "return _mw_concat(_mw_b)"

typedef struct tmpl_gen {
  mw_str *out;
  bool oom;
  bool in_text;      /* a string literal is open in out */
  size_t pending_nl; /* newlines the open literal held, emitted when it closes */
} tmpl_gen;

static void tmpl_put(tmpl_gen *g, const char *p, size_t n) {
  if (!g->oom && mw_str_append(g->out, p, n)) g->oom = true;
}

static void tmpl_puts(tmpl_gen *g, const char *z) { tmpl_put(g, z, strlen(z)); }

static void tmpl_newlines(tmpl_gen *g, size_t n) {
  while (n--) tmpl_put(g, "\n", 1);
}

/* Length of the line break at p (0 if none), counted the way Lua's lexer
 * does ("\n", "\r", "\r\n", "\n\r"), so the chunk and the template agree. */
static size_t tmpl_newline_len(const char *p, const char *end) {
  if (p >= end || (*p != '\n' && *p != '\r')) return 0;
  if (p + 1 < end && (p[1] == '\n' || p[1] == '\r') && p[1] != p[0]) return 2;
  return 1;
}

static size_t tmpl_count_lines(const char *p, size_t n) {
  const char *end = p + n;
  size_t lines = 0;
  while (p < end) {
    size_t nl = tmpl_newline_len(p, end);
    if (nl) {
      lines++;
      p += nl;
    } else {
      p++;
    }
  }
  return lines;
}

/* Adds n bytes of literal text to the open string literal (opening one if
 * needed). Quotes, backslashes and control bytes are escaped so the literal
 * stays on one line; bytes >= 0x80 (UTF-8) pass through untouched. */
static void tmpl_text(tmpl_gen *g, const char *p, size_t n) {
  if (n == 0) return;
  if (!g->in_text) {
    tmpl_puts(g, TMPL_PUSH "\"");
    g->in_text = true;
  }
  g->pending_nl += tmpl_count_lines(p, n);
  size_t run = 0; /* start of the bytes not yet copied */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    const char *esc = NULL;
    char num[8];
    if (c == '\n') esc = "\\n";
    else if (c == '\r') esc = "\\r";
    else if (c == '\t') esc = "\\t";
    else if (c == '\\') esc = "\\\\";
    else if (c == '"') esc = "\\\"";
    else if (c < 0x20 || c == 0x7f) {
      /* Always three digits, so a digit that follows is not read into it. */
      snprintf(num, sizeof num, "\\%03u", (unsigned)c);
      esc = num;
    }
    if (esc) {
      tmpl_put(g, p + run, i - run);
      tmpl_puts(g, esc);
      run = i + 1;
    }
  }
  tmpl_put(g, p + run, n - run);
}

static void tmpl_text_close(tmpl_gen *g) {
  if (!g->in_text) return;
  tmpl_puts(g, "\"; ");
  tmpl_newlines(g, g->pending_nl);
  g->in_text = false;
  g->pending_nl = 0;
}

/* If a long bracket ("[[", "[==[") opens at p[i], returns its level (the
 * number of '='), else -1. */
static long tmpl_long_open(const char *p, size_t n, size_t i) {
  if (i >= n || p[i] != '[') return -1;
  size_t j = i + 1;
  while (j < n && p[j] == '=') j++;
  if (j < n && p[j] == '[') return (long)(j - i - 1);
  return -1;
}

/* Finds the "]=*]" of the given level from p[i]; returns the index after it,
 * or 0 if there is none (0 can never be a valid answer). */
static size_t tmpl_long_close(const char *p, size_t n, size_t i, long level) {
  for (; i < n; i++) {
    if (p[i] != ']') continue;
    size_t j = i + 1;
    while (j < n && p[j] == '=') j++;
    if (j < n && p[j] == ']' && (long)(j - i - 1) == level) return j + 1;
  }
  return 0;
}

/* Scans Lua code just enough to know where it ends for our purposes: *keep is
 * set to the length without a trailing line comment (text after "--" that
 * reaches the end of the tag would swallow the code we emit after it on the
 * same line; dropping it keeps both the meaning and the line count). Returns
 * -1 if a long string or long comment is never closed inside the tag, since
 * it would swallow the rest of the generated chunk and give a baffling
 * error. Short strings are only skipped: Lua reports those well itself. */
static int tmpl_scan_lua(const char *p, size_t n, size_t *keep) {
  size_t i = 0;
  while (i < n) {
    char c = p[i];
    if (c == '-' && i + 1 < n && p[i + 1] == '-') {
      long level = tmpl_long_open(p, n, i + 2);
      if (level >= 0) {
        size_t end = tmpl_long_close(p, n, i + 2 + (size_t)level + 2, level);
        if (!end) return -1;
        i = end;
        continue;
      }
      size_t j = i + 2;
      while (j < n && p[j] != '\n' && p[j] != '\r') j++;
      if (j == n) {
        *keep = i;
        return 0;
      }
      i = j;
    } else if (c == '[') {
      long level = tmpl_long_open(p, n, i);
      if (level < 0) {
        i++;
        continue;
      }
      size_t end = tmpl_long_close(p, n, i + (size_t)level + 2, level);
      if (!end) return -1;
      i = end;
    } else if (c == '"' || c == '\'') {
      size_t j = i + 1;
      while (j < n && p[j] != c) {
        if (p[j] == '\n' || p[j] == '\r') break; /* unfinished: Lua says so */
        if (p[j] == '\\' && j + 1 < n) {
          size_t nl = tmpl_newline_len(p + j + 1, p + n);
          j += nl ? 1 + nl : 2; /* "\<newline>" continues the string */
          continue;
        }
        j++;
      }
      i = j + 1;
    } else {
      i++;
    }
  }
  *keep = n;
  return 0;
}

static bool tmpl_blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strchr(" \t\r\n\f\v", p[i])) return false;
  return true;
}

/* Position of the first "<%" at or after from, or len. */
static size_t tmpl_find_open(const char *src, size_t len, size_t from) {
  for (size_t i = from; i + 1 < len; i++) {
    const char *lt = memchr(src + i, '<', len - 1 - i);
    if (!lt) break;
    i = (size_t)(lt - src);
    if (src[i + 1] == '%') return i;
  }
  return len;
}

/* Position of the first "%>" at or after from, or len. */
static size_t tmpl_find_close(const char *src, size_t len, size_t from) {
  for (size_t i = from; i + 1 < len; i++) {
    const char *pc = memchr(src + i, '%', len - 1 - i);
    if (!pc) break;
    i = (size_t)(pc - src);
    if (src[i + 1] == '>') return i;
  }
  return len;
}

__attribute__((format(printf, 5, 6)))
static int tmpl_fail(char *err, size_t errlen, int *errline, int line, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  if (errline) *errline = line;
  return -EINVAL;
}

int tmpl_compile_ex(const char *src, size_t len, mw_str *out, char *err, size_t errlen,
                    int *errline) {
  tmpl_gen g = {.out = out};
  size_t line = 1; /* template line at src[i] */
  size_t i = 0;
  if (errline) *errline = 0;
  tmpl_puts(&g, TMPL_PREAMBLE);

  while (i < len) {
    size_t open = tmpl_find_open(src, len, i);
    tmpl_text(&g, src + i, open - i);
    line += tmpl_count_lines(src + i, open - i);
    if (open == len) break;

    if (open + 2 < len && src[open + 2] == '%') { /* "<%%" is a literal "<%" */
      tmpl_text(&g, "<%", 2);
      i = open + 3;
      continue;
    }

    char kind = 0;
    size_t start = open + 2;
    if (start < len && (src[start] == '=' || src[start] == '-' || src[start] == '#'))
      kind = src[start++];
    const char *opener = kind == '=' ? "<%=" : kind == '-' ? "<%-" : kind == '#' ? "<%#" : "<%";
    int tag_line = line > (size_t)INT_MAX ? INT_MAX : (int)line;

    size_t close = tmpl_find_close(src, len, start);
    if (close == len)
      return tmpl_fail(err, errlen, errline, tag_line, "unclosed %s tag opened at line %d",
                       opener, tag_line);
    size_t cend = close;
    bool trim = close > start && src[close - 1] == '-';
    if (trim) cend--;
    const char *code = src + start;
    size_t n = cend - start;

    tmpl_text_close(&g);
    if (kind == '#') {
      tmpl_newlines(&g, tmpl_count_lines(code, n));
    } else {
      size_t keep;
      if (tmpl_scan_lua(code, n, &keep))
        return tmpl_fail(err, errlen, errline, tag_line,
                         "unfinished long string or comment in %s tag at line %d", opener,
                         tag_line);
      if (kind == 0) {
        /* The space stops a "\n" we emitted and a "\r" starting the code
         * from being counted by Lua as one line break instead of two. */
        tmpl_put(&g, " ", 1);
        tmpl_put(&g, code, keep);
        tmpl_puts(&g, " ; ");
      } else {
        if (tmpl_blank(code, keep))
          return tmpl_fail(err, errlen, errline, tag_line, "empty expression in %s tag at line %d",
                           opener, tag_line);
        /* The extra parentheses keep one value of a multi-value call. */
        tmpl_puts(&g, kind == '=' ? TMPL_PUSH "_mw_esc((" : TMPL_PUSH "_mw_tostr((");
        tmpl_put(&g, code, keep);
        tmpl_puts(&g, ")); ");
      }
      /* A dropped trailing comment holds no line break: line counts agree. */
    }
    line += tmpl_count_lines(src + open, close + 2 - open);
    i = close + 2;

    if (trim) {
      size_t nl = 0;
      if (i < len && src[i] == '\n') nl = 1;
      else if (i + 1 < len && src[i] == '\r' && src[i + 1] == '\n') nl = 2;
      if (nl) {
        i += nl;
        line++;
        tmpl_newlines(&g, 1); /* the chunk keeps the line the template lost */
      }
    }
  }
  tmpl_text_close(&g);
  tmpl_puts(&g, TMPL_EPILOGUE);
  if (g.oom) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  return 0;
}

int tmpl_compile(const char *src, size_t len, mw_str *out, char *err, size_t errlen) {
  return tmpl_compile_ex(src, len, out, err, errlen, NULL);
}
