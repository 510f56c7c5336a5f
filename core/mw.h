/* mw.h — small shared pieces of the moonwire core: growable strings,
 * refcounted shared buffers, logging, time. Every module includes this. */
#ifndef MW_H
#define MW_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MW_VERSION "0.1.0"

/* The longest a timeout or an interval may be set to, in ms (a day): the
 * bound of every such flag (config.c) and io.configure option (l_io.c). */
#define MW_MAX_MS 86400000

#define MW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A growable byte string. Zero-initialise to start empty ({0}); p is always
 * NUL-terminated once anything has been appended. */
typedef struct mw_str {
  char *p;
  size_t len, cap;
} mw_str;

/* Each returns 0, or -ENOMEM (the string is then unchanged). */
int mw_str_reserve(mw_str *s, size_t extra);
int mw_str_append(mw_str *s, const void *data, size_t len);
int mw_str_appendz(mw_str *s, const char *z);
int mw_str_appendc(mw_str *s, char c);
int mw_str_appendf(mw_str *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int mw_str_vappendf(mw_str *s, const char *fmt, va_list ap);
void mw_str_reset(mw_str *s); /* len = 0, keeps memory */
void mw_str_free(mw_str *s);  /* frees memory, back to {0} */

/* An immutable, refcounted byte buffer. A broadcast or a cached file is one
 * mw_buf that every recipient's write queue references; the last unref frees. */
typedef struct mw_buf {
  uint32_t refs;
  uint8_t size_class;  /* 1.. for a small buffer kept for reuse when freed (mw.c); 0: malloc'ed to size */
  size_t len;
  char data[];
} mw_buf;

/* Returns a buffer with refs = 1 and room for len bytes, or NULL. */
mw_buf *mw_buf_new(size_t len);
/* Copies len bytes into a new buffer (refs = 1), or NULL. */
mw_buf *mw_buf_from(const void *data, size_t len);
static inline mw_buf *mw_buf_ref(mw_buf *b) { b->refs++; return b; }
void mw_buf_unref(mw_buf *b);

/* Logging goes to stderr; the access log goes to stdout (see http.c). */
enum { MW_LOG_ERROR, MW_LOG_WARN, MW_LOG_INFO, MW_LOG_DEBUG };
/* Messages above this level are dropped (default MW_LOG_INFO; -1 silences all). */
extern int mw_log_level;
void mw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands memory that was freed back to the system (glibc keeps freed pages
 * of its heap otherwise): called after large releases, never per request. */
void mw_release_memory(void);
/* Bytes freed by buffers and strings since the last mw_release_memory: the
 * server trims once this has grown large (server.c). */
extern size_t mw_released_bytes;

/* Monotonic time in nanoseconds. */
uint64_t mw_now_ns(void);

/* ASCII case-insensitive comparison of a (len alen) with NUL-terminated b. */
bool mw_ieq(const char *a, size_t alen, const char *b);

#endif
