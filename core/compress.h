/* compress.h — content codings: which ones a client accepts
 * (Accept-Encoding), which content types are worth compressing, and gzip
 * (zlib) or brotli (libbrotlienc) of a whole buffer.
 *
 * mw_accept_encoding reads bytes from the network: it has no I/O and a
 * fuzzer (fuzz/fuzz_headers.c). mw_compress may run on any thread. */
#ifndef MW_COMPRESS_H
#define MW_COMPRESS_H

#include "mw.h"

enum { MW_ENC_GZIP = 1, MW_ENC_BR = 2 };

/* The codings an Accept-Encoding value (len bytes, borrowed) allows, as a
 * mask of MW_ENC_GZIP | MW_ENC_BR: those named (x-gzip is gzip) with a
 * q-value above 0, and through "*" those not named. A malformed element
 * allows nothing. */
int mw_accept_encoding(const char *v, size_t len);

/* Whether a body of this Content-Type (len bytes; parameters ignored) is
 * worth compressing: text, JSON, XML, JavaScript, SVG, fonts without
 * their own compression, WebAssembly. */
bool mw_compressible_type(const char *type, size_t len);

/* "gzip" or "br". */
const char *mw_encoding_name(int enc);

/* Compresses len bytes at in (borrowed) with enc: gzip at level (1..9),
 * brotli at quality (0..11). *out receives a new buffer (refs 1). Returns
 * 0, -ENOMEM, or -EINVAL for an unknown coding. */
int mw_compress(int enc, const char *in, size_t len, int level, mw_buf **out);

/* The level each coding gets for a body compressed once and kept (static
 * files), and for one compressed for a single response (polling). */
#define MW_GZIP_LEVEL 6
#define MW_BROTLI_QUALITY 5
#define MW_GZIP_LEVEL_ONCE 6

#endif
