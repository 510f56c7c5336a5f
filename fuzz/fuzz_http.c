/* fuzz_http.c — the request path: bytes → llhttp → route (the example app's
 * Lua) → public/ lookup, on a connection without a socket. Bodies over 256
 * bytes go to disk (body.c) and multipart ones are parsed, in a directory
 * of the fuzzer's own; the loop runs until their file work is done, so the
 * route reads spooled bodies too. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "body.h"
#include "db.h"
#include "lhost.h"
#include "server.h"
#include "static.h"

static uv_loop_t loop;
static mw_server srv;
static mw_db *db;
static mw_static *st;
static lhost *host;

static void setup(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.root = MW_SOURCE_DIR;
  cfg.quiet = true;
  cfg.dev = true;
  cfg.max_body = 4096;
  cfg.body_buffer = 256;
  static char tmp[] = "/tmp/moonwire-fuzz-body-XXXXXX";
  if (!mkdtemp(tmp)) abort();
  cfg.tmp_dir = tmp;
  uv_loop_init(&loop);
  char path[] = "/tmp/moonwire-fuzz-XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  char err[256];
  if (mw_db_open(&db, path, err, sizeof err)) abort();
  if (static_new(&st, &loop, MW_SOURCE_DIR "/public")) abort();
  if (mw_server_init(&srv, &loop, &cfg)) abort();
  mw_log_level = -1; /* the app logs every 500 */
  if (lhost_new(&host, &srv, db, st) || !lhost_ok(host)) abort();
}

/* The example app keeps what the inputs create (pets, messages): emptied
 * every few thousand inputs, so pages that list them stay as fast as at
 * the start and the run does not slow down as it goes. */
static void forget_rows(void) {
  static const char *const sql[] = {"DELETE FROM pets", "DELETE FROM messages"};
  for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
    sqlite3_stmt *st = NULL;
    int multi = 0;
    if (mw_db_prepare(db, sql[i], strlen(sql[i]), &st, &multi) || !st) continue;
    while (sqlite3_step(st) == SQLITE_ROW) {
    }
    mw_db_release(db, st);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    setup();
    ready = 1;
  }
  static unsigned inputs;
  if (++inputs % 4096 == 0) forget_rows();
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, (void *)lhost_handler(host));
  if (!c) return 0;
  /* Feed in two parts, as a network would, to reach the split-buffer paths. */
  size_t cut = size ? data[0] % (size + 1) : 0;
  c->proto->on_read(c, (const char *)data, cut);
  if (!c->closing && size > cut) c->proto->on_read(c, (const char *)data + cut, size - cut);
  /* Bodies on their way to disk, and routes reading them back. */
  /* (c is the only connection: once none is left, it is gone) */
  while (body_io_pending() && srv.nconns) uv_run(&loop, UV_RUN_ONCE);
  if (srv.nconns) mw_conn_close(c);
  while (srv.nconns || body_io_pending()) uv_run(&loop, srv.nconns ? UV_RUN_NOWAIT : UV_RUN_ONCE);
  return 0;
}
