/* embedded.h — the framework's own Lua modules (core/embedded/lua) and browser
 * scripts (core/embedded/client), compiled into the binary by cmake/embed.cmake. */
#ifndef MW_EMBEDDED_H
#define MW_EMBEDDED_H
#include <stddef.h>

typedef struct mw_embedded {
  const char *module; /* "moonwire.app" */
  const char *file;   /* "moonwire/app.lua", for chunk names */
  const char *data;
  size_t len;
} mw_embedded;

/* Terminated by an entry whose module is NULL. */
extern const mw_embedded mw_embedded_lua[];
/* The browser scripts: module and file are the file name ("dev.js"). */
extern const mw_embedded mw_embedded_client[];
/* What `moonwire new DIR` writes: file is the path inside the new app. */
extern const mw_embedded mw_embedded_skeleton[];
/* `moonwire new DIR --template NAME`: module is the template's name, file the
 * path inside the new app; a file starting with '+' is the template's own
 * (core/embedded/templates/NAME/), where {{NAME}} and such are filled. */
extern const mw_embedded mw_embedded_templates[];

#endif
