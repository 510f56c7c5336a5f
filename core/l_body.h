/* l_body.h — request bodies as Lua sees them: what the exchange's body
 * methods (l_exchange.c) call. req is NULL once the response was sent. */
#ifndef MW_L_BODY_H
#define MW_L_BODY_H

#include <lua.h>

#include "http.h"

/* (offset, length, callback) at stack index arg: reads that much of req's
 * spooled body off the loop, then calls callback(data) or callback(nil,
 * message). Raises when the body is not spooled or the request is over. */
int l_body_read(lua_State *L, const http_req *req, int arg);
/* (offset, length) at arg: the same, at once → data, or nil, message. */
int l_body_read_now(lua_State *L, const http_req *req, int arg);
/* Pushes the fields and files tables of a multipart/form-data body:
 * fields[name] = value, files[name] = { field, filename, type, path, size },
 * an array of them for a repeated name. Returns 2, or 0 (nothing pushed)
 * for another kind of body. */
int l_body_parts(lua_State *L, const http_req *req);
/* The VM closes: reads still in flight will call nothing. */
void l_body_stop(lua_State *L);

#endif
