/* template.h — the view template compiler: etlua/EJS-style template text in,
 * the source of a Lua chunk out.
 *
 * Syntax:
 *   <% code %>     Lua statements
 *   <%= expr %>    output, HTML-escaped by the runtime's escape function
 *   <%- expr %>    output, raw
 *   <%# text %>    comment, produces nothing
 *   <%%            a literal "<%"
 *   ... -%>        any tag closed with "-%>" also swallows one "\n" or "\r\n"
 *                  right after it
 * The first "%>" closes a tag, even inside a Lua string or comment: write
 * "%" .. ">" if a tag needs those two characters. A tag ending in "--%>" is
 * read as ending in "-%>" (trim) after a lone "-".
 *
 * The generated chunk keeps the template's line numbers, so a Lua error in it
 * names the template line. It is called as
 *   chunk(env, escape, tostr, table.concat) -> string
 * where env becomes the chunk's _ENV (every free name the template uses is
 * looked up there), escape(v) and tostr(v) turn a value into the string to
 * output (nil must give ""). Names starting with _mw_ are reserved. */
#ifndef MW_TEMPLATE_H
#define MW_TEMPLATE_H

#include "mw.h"

struct lua_State;

/* Appends the Lua source for the template src (len bytes, may hold NULs) to
 * out. Returns 0, or -EINVAL (or -ENOMEM) with a NUL-terminated message in
 * err (such as "unclosed <% tag opened at line 12"); out may then hold a
 * partial chunk. */
int tmpl_compile(const char *src, size_t len, mw_str *out, char *err, size_t errlen);

/* As tmpl_compile, and on error also stores the template line the error is
 * about in *errline (if errline is not NULL; 0 when no line applies). */
int tmpl_compile_ex(const char *src, size_t len, mw_str *out, char *err, size_t errlen,
                    int *errline);

/* The Lua module "moonwire.template_c": a table with
 *   compile(src, chunkname) -> function | nil, message
 * chunkname is passed to the Lua loader ("@views/pets/show.html"); every
 * error message starts with its display form ("views/pets/show.html:LINE:"). */
int luaopen_moonwire_template_c(struct lua_State *L);

#endif
