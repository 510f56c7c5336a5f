/* fuzz_app.h — what the request-path fuzzers (fuzz_http.c, fuzz_fcgi.c)
 * share: the example app served by a server with no listener, and one
 * input fed to a connection without a socket until that connection is
 * gone. Bodies over 256 bytes go to disk (body.c) and multipart ones are
 * parsed, in a directory of the fuzzer's own; the loop runs until their
 * file work is done, so routes read spooled bodies too. Included by one
 * fuzzer per binary: its functions are static. */
#ifndef MW_FUZZ_APP_H
#define MW_FUZZ_APP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "body.h"
#include "config.h"
#include "db.h"
#include "lhost.h"
#include "server.h"
#include "static.h"

static uv_loop_t loop;
static mw_server srv;
static mw_db *db;
static mw_static *st;
static lhost *host;
static http_site site; /* the connections' user data, as a listener's */

static void fuzz_app_setup(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.app.root = MW_SOURCE_DIR;
  cfg.app.dev = true;
  cfg.http.quiet = true;
  cfg.http.max_body = 4096;
  cfg.http.body_buffer = 256;
  static char tmp[] = "/tmp/moonwire-fuzz-body-XXXXXX";
  if (!mkdtemp(tmp)) abort();
  cfg.http.tmp_dir = tmp;
  uv_loop_init(&loop);
  char path[] = "/tmp/moonwire-fuzz-XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  char err[256];
  if (mw_db_open(&db, path, err, sizeof err)) abort();
  if (static_new(&st, &loop, MW_SOURCE_DIR "/public")) abort();
  if (mw_server_init(&srv, &loop, &cfg.server)) abort();
  mw_log_level = -1; /* the app logs every 500 */
  if (lhost_new(&host, &srv, &cfg.app, db, st) || !lhost_ok(host)) abort();
  site = (http_site){*lhost_handler(host), cfg.http};
}

/* The example app keeps what the inputs create (pets, messages): emptied
 * every few thousand inputs, so pages that list them stay as fast as at
 * the start and the run does not slow down as it goes. */
static void fuzz_app_forget_rows(void) {
  static const char *const sql[] = {"DELETE FROM pets", "DELETE FROM messages"};
  for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
    sqlite3_stmt *stmt = NULL;
    int multi = 0;
    if (mw_db_prepare(db, sql[i], strlen(sql[i]), &stmt, &multi) || !stmt) continue;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
    }
    mw_db_release(db, stmt);
  }
}

/* Sets the app up on the first call, and forgets its rows now and then. */
static void fuzz_app_ready(void) {
  static int ready;
  static unsigned inputs;
  if (!ready) {
    fuzz_app_setup();
    ready = 1;
  }
  if (++inputs % 4096 == 0) fuzz_app_forget_rows();
}

/* Feeds data to a new connection speaking attach's protocol in two parts
 * (cut bytes, then the rest), as a network would, to reach the split
 * paths; then runs the loop until the connection is gone. */
static void fuzz_app_feed(mw_attach_fn attach, const uint8_t *data, size_t size, size_t cut) {
  mw_conn *c = mw_conn_new(&srv, false, attach, &site);
  if (!c) return;
  c->proto->on_read(c, (const char *)data, cut);
  if (!c->closing && size > cut) c->proto->on_read(c, (const char *)data + cut, size - cut);
  /* Bodies on their way to disk, and routes reading them back. */
  /* (c is the only connection: once none is left, it is gone) */
  while (body_io_pending() && srv.nconns) uv_run(&loop, UV_RUN_ONCE);
  if (srv.nconns) mw_conn_close(c);
  while (srv.nconns || body_io_pending()) uv_run(&loop, srv.nconns ? UV_RUN_NOWAIT : UV_RUN_ONCE);
}

#endif
