/* static.h — the app's static files (public/), the socket.io client bundle
 * and res:sendFile: URL path normalisation, content types (from
 * /etc/mime.types), conditional requests (304, 412), Range, compressed
 * variants (precompressed twins, or compressed once and cached), and a
 * cache of small files.
 *
 * Nothing here waits for a disk on the loop: resolving a path, stat and
 * open run as one job on libuv's threadpool, reads are uv_fs_read requests
 * of at most 64 KiB, issued as the connection's queue drains, so a
 * download holds a few chunks of memory whatever the file's size.
 *
 * Single-threaded: an mw_static and the buffers it hands out are used from
 * the event-loop thread only (mw_buf reference counts are not atomic); the
 * threadpool jobs touch only their own request's state. */
#ifndef MW_STATIC_H
#define MW_STATIC_H

#include <stddef.h>
#include <uv.h>

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
 * insensitive, from /etc/mime.types (Debian's media-types; the
 * MOONWIRE_MIME_TYPES environment variable names another file), with
 * "; charset=utf-8" on text types; a small built-in table when the file
 * is missing. "application/octet-stream" when unknown. Static string;
 * safe on any thread. */
const char *static_mime(const char *name, size_t len);
/* How many extensions the table knows, and whether it came from the file. */
size_t static_mime_count(bool *from_file);

/* A Range header value (len bytes) for a representation of size bytes
 * (RFC 9110 14.1.2). Returns
 *   STATIC_RANGE_WHOLE  send it whole: not a "bytes" range, malformed, or
 *                       several ranges that do not merge into one (as
 *                       Express does, rather than multipart/byteranges);
 *   STATIC_RANGE_PART   one range: [*start, *end), end exclusive;
 *   STATIC_RANGE_NONE   416: no range overlaps the representation. */
enum { STATIC_RANGE_WHOLE, STATIC_RANGE_PART, STATIC_RANGE_NONE };
int static_range(const char *v, size_t len, uint64_t size, uint64_t *start, uint64_t *end);

typedef struct mw_static mw_static;

/* Creates a server for the files under public_dir (borrowed; its realpath is
 * kept), running its jobs on loop. A missing directory is not an error:
 * nothing is served then. Returns 0 with *out owned by the caller
 * (static_free), or -ENOMEM. */
int static_new(mw_static **out, uv_loop_t *loop, const char *public_dir);
/* Frees st and drops its cache (responses still holding a cached buffer keep
 * their reference). Call once the loop has no request of st's left. NULL is
 * accepted. */
void static_free(mw_static *st);
/* Empties the in-memory cache. */
void static_clear_cache(mw_static *st);

/* How a request static.c took on ends, called exactly once (from the loop,
 * or before static_serve* returns when it answers at once):
 *   rc 0   answered (or the client left and the response was ended): req
 *          and res are NULL, the originals must not be used any more;
 *   rc 1   not ours after all (no such file, not a regular file, outside
 *          the directory): req and res are the ones given, res untouched,
 *          for the caller to answer;
 *   rc <0  a negative errno (a read error): likewise, the caller answers
 *          (500). */
typedef void (*static_miss_fn)(void *ud, const http_req *req, http_res *res, int rc);

/* Answers req from the public directory when it names a file there. Borrows
 * st, req and res until res is finished. Returns
 *   0   taken on: miss(ud, ...) says how it ended (answered with 200, 206,
 *       304, 412, 416, 301 to add a trailing slash or 400, or not ours);
 *   1   not ours, known at once (not GET/HEAD, a path never served, no
 *       public directory): res untouched, miss is not called. */
int static_serve(mw_static *st, const http_req *req, http_res *res, static_miss_fn miss, void *ud);

/* Serves the file at abs_path (borrowed; no containment check: the caller
 * chose it) the same way, with cache_control (a static string; NULL for
 * the default "public, max-age=0"). Same returns. */
int static_serve_file(mw_static *st, const char *abs_path, const http_req *req, http_res *res,
                      const char *cache_control, static_miss_fn miss, void *ud);

/* res:sendFile: serves rel (a plain path, not URL-encoded, relative to root)
 * from under root (a directory: the file must resolve inside it, symlinks
 * included). Segments starting with '.' (dotfiles) are refused unless
 * dotfiles is set; "." and ".." never pass. Headers res already has
 * (Content-Type, Cache-Control, ETag...) are kept; the others are added.
 * Any method: GET and HEAD get conditional answers and Range. Returns 1 at
 * once for a refused path, -ENOMEM (done not called, res untouched), or 0
 * as static_serve: done tells how it ended. */
int static_send_file(mw_static *st, const char *root, const char *rel, bool dotfiles, const char *cache_control,
                     const http_req *req, http_res *res, static_miss_fn done, void *ud);

#endif
