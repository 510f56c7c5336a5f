/* static.h — the app's static files (public/): URL path normalisation,
 * content types, conditional GET, and a small in-memory cache.
 *
 * Single-threaded: an mw_static and the buffers it hands out are used from
 * the event-loop thread only (mw_buf reference counts are not atomic). */
#ifndef MW_STATIC_H
#define MW_STATIC_H

#include <stddef.h>

#include "http.h"

/* Percent-decodes the raw URL path (len bytes, starting with '/', without
 * the query string) and normalises it into out as a path relative to the
 * public directory, without a leading slash ("" for the root), dropping
 * empty and "." segments and resolving "..". Borrows path; out receives a
 * NUL-terminated string. Returns its length, or
 *   -400  malformed: not starting with '/', a bad %-escape, a NUL byte;
 *   -404  never servable: ".." above the root, an encoded slash (%2F), a
 *         backslash, or a segment starting with '.' (hidden files);
 *   -414  the result (or a prefix of it while resolving "..") needs more
 *         than cap - 1 bytes.
 * Malformed input wins over the other errors wherever it appears. */
int static_normalize(const char *path, size_t len, char *out, size_t cap);

/* The Content-Type for a file name (len bytes), by its extension, case
 * insensitive; "application/octet-stream" when unknown. Static string. */
const char *static_mime(const char *name, size_t len);

typedef struct mw_static mw_static;

/* Creates a server for the files under public_dir (borrowed; its realpath is
 * kept). A missing directory is not an error: nothing is served then.
 * Returns 0 with *out owned by the caller (static_free), or -ENOMEM. */
int static_new(mw_static **out, const char *public_dir);
/* Frees st and drops its cache (responses still holding a cached buffer keep
 * their reference). NULL is accepted. */
void static_free(mw_static *st);
/* Empties the in-memory cache. */
void static_clear_cache(mw_static *st);

/* Answers req from the public directory when it names a file there. Borrows
 * st and req; finishes res when it answers. Returns
 *   0   answered (200, 304, 301 to add a trailing slash, or 400);
 *   1   not ours: not GET/HEAD, no such file, hidden, outside the directory
 *       (symlinks included), not a regular file; res untouched;
 *   <0  a negative errno (read error, out of memory); res untouched, the
 *       caller answers (500). */
int static_serve(mw_static *st, const http_req *req, http_res *res);

/* Serves the file at abs_path (borrowed; no containment check: the caller
 * chose it) the same way, with cache_control (NULL for the default
 * "public, max-age=0"). Returns 0 answered, 1 missing or not a regular file
 * or not GET/HEAD, or a negative errno as static_serve. */
int static_serve_file(mw_static *st, const char *abs_path, const http_req *req, http_res *res,
                      const char *cache_control);

#endif
