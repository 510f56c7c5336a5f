/* main.c — command line, configuration, signals, graceful shutdown. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "json.h"
#include "lhost.h"
#include "newapp.h"
#include "redis.h"
#include "server.h"
#include "static.h"

#define SHUTDOWN_GRACE_MS 10000

static const char usage[] =
    "usage: moonwire [options]\n"
    "       moonwire new DIR\n"
    "\n"
    "Serves the app in --root: scripts/app.lua (routes and handlers), views/\n"
    "(templates) and public/ (static files). `moonwire new DIR` creates a\n"
    "minimal app to start from.\n"
    "\n"
    "  --root DIR               app directory (default: the current directory)\n"
    "  --port N                 TCP port (default: $PORT, else 3000; 0 picks a free one)\n"
    "  --host ADDR              bind address (default 127.0.0.1; 0.0.0.0 for the LAN)\n"
    "  --db PATH                SQLite file (default: ROOT/data/moonwire.db, created on first run)\n"
    "  --db-busy-timeout MS     a write waits this long for a lock another process holds (default 5000)\n"
    "  --db-statement-timeout MS  a statement running longer is interrupted (default 10000; 0: no limit)\n"
    "  --dev                    development mode: error details in pages (the default)\n"
    "  --production             production mode: plain error pages, no file watching\n"
    "  --watch                  reload scripts/, views/ and public/ when they change (on in dev mode)\n"
    "  --quiet                  no access log on stdout\n"
    "  --max-body BYTES         request body limit (default 1048576); larger bodies get 413\n"
    "  --max-header-size BYTES  request line and headers, in all (default 16384); 431 past it\n"
    "  --header-timeout MS      time allowed to send request headers (default 10000)\n"
    "  --body-timeout MS        longest wait between two reads of a request body (default 60000); 408 past it\n"
    "  --body-deadline MS       time allowed for a whole request body (default 300000; 0: none); 408 past it\n"
    "  --body-buffer BYTES      bodies up to this are held in memory, larger ones go to a temporary file (default 65536)\n"
    "  --body-memory BYTES      request body bytes held in memory across all connections (default 67108864): past it\n"
    "                           bodies go to disk; reading pauses while a quarter of it waits for the disk\n"
    "  --tmp-dir DIR            where request bodies and uploaded files are written (default: $TMPDIR, else /tmp)\n"
    "  --upload-max-files N     multipart/form-data: files per request (default 100); 413 past it\n"
    "  --upload-max-file-size BYTES   bytes of one uploaded file (default: only --max-body); 413 past it\n"
    "  --upload-max-fields N    multipart/form-data: fields per request (default 1000); 413 past it\n"
    "  --upload-max-field-size BYTES  bytes of one field's value (default 1048576); 413 past it\n"
    "  --upload-max-part-header BYTES bytes of one part's headers (default 16384); 413 past it\n"
    "  --keepalive-timeout MS   idle keep-alive connections close after this (default 5000)\n"
    "  --handler-budget MS      a route, socket handler or timer that runs longer is stopped (default 2000; 0: no limit)\n"
    "  --lua-memory MB          the Lua VM's memory ceiling (default 1024; 0: none)\n"
    "  --max-conns-per-ip N     connections one client address may hold (default 1000; 0: no limit)\n"
    "  --max-conn-rate-per-ip N new connections per second from one address (default 200; 0: no limit)\n"
    "  --limit-loopback         apply those two to loopback clients too (off: a proxy on this machine is one address)\n"
    "  --send-timeout MS        a client that takes no byte of a response for this long is dropped (default 60000)\n"
    "  --compress-min BYTES     smallest text response gzip/brotli compresses (default 1024)\n"
    "  --no-compress            no compression (neither on the fly nor precompressed .gz/.br twins)\n"
    "  --fastcgi ADDR           also answer FastCGI (nginx fastcgi_pass) on ADDR: unix:/path or host:port\n"
    "  --redis URL              share rooms and broadcasts with other servers through Redis (redis://host:port)\n"
    "\n"
    "Socket.IO (these win over io.configure in the app):\n"
    "  --io-path PATH           where Socket.IO answers (default /socket.io/)\n"
    "  --ping-interval MS       heartbeat interval (default 25000)\n"
    "  --ping-timeout MS        a client that does not answer a ping within this is closed (default 20000)\n"
    "  --max-http-buffer-size N largest message in bytes (default 1000000)\n"
    "  --max-json-depth N       arrays and objects nested in a JSON value, at most (default 64, the most)\n"
    "  --max-backpressure N     bytes queued for a client that stops reading before it is closed (default 1048576)\n"
    "  --max-packet-rate N      packets per second a client may send; more are dropped, twice as many close it (default 5000; 0: no limit)\n"
    "  --connect-timeout MS     a session that never joins a namespace closes after this (default 45000)\n"
    "  --attachment-timeout MS  a binary packet's attachments must all arrive within this (default 30000)\n"
    "  --transports LIST        polling,websocket (default both)\n"
    "  --cors-origin ORIGIN     allow this Origin (repeatable); a WebSocket from any other gets 403\n"
    "  --help                   this text\n"
    "  --version                print the version\n";

typedef struct app {
  uv_loop_t *loop;
  mw_server srv;
  mw_db *db;
  mw_static *st;
  lhost *host;
  uv_signal_t sigint, sigterm;
  uv_timer_t grace;
  int exit_code;
} app;

static void on_closed_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Everything is answered: close the app and the database, then the loop. */
static void finish(mw_server *srv) {
  app *a = (app *)((char *)srv - offsetof(app, srv));
  lhost_free(a->host);
  a->host = NULL;
  mw_db_close(a->db);
  a->db = NULL;
  mw_server_close(&a->srv);
  uv_walk(a->loop, on_closed_walk, NULL);
}

static void on_grace(uv_timer_t *t) {
  app *a = t->data;
  mw_log(MW_LOG_WARN, "shutdown: connections still open after %d ms, closing them", SHUTDOWN_GRACE_MS);
  for (mw_conn *c = a->srv.conns; c; c = c->next) mw_conn_close(c);
}

static void on_signal(uv_signal_t *s, int signum) {
  app *a = s->data;
  if (a->srv.stopping) return;
  if (!a->srv.cfg.quiet) printf("moonwire: %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
  lhost_stop(a->host); /* realtime sessions end first: their pending polls are answered */
  mw_db_stop(a->db, MW_DB_STOP_WAIT_MS);
  uv_signal_stop(&a->sigint);
  uv_signal_stop(&a->sigterm);
  uv_timer_start(&a->grace, on_grace, SHUTDOWN_GRACE_MS, 0);
  uv_unref((uv_handle_t *)&a->grace);
  a->srv.on_idle_stop = finish;
  mw_server_stop(&a->srv);
}

static int parse_num(const char *flag, const char *v, long long min, long long max, long long *out) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || *end || end == v || n < min || n > max) {
    fprintf(stderr, "moonwire: %s needs a number between %lld and %lld (got '%s')\n", flag, min, max, v);
    return -1;
  }
  *out = n;
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "new")) {
    if (argc != 3) {
      fprintf(stderr, "usage: moonwire new DIR\n");
      return 2;
    }
    return mw_new_app(argv[2]);
  }
  mw_config cfg;
  mw_config_defaults(&cfg);
  const char *env_port = getenv("PORT");
  long long n;
  if (env_port && *env_port) {
    if (parse_num("PORT", env_port, 0, 65535, &n)) return 2;
    cfg.port = (int)n;
  }
  const char *db_path = NULL;
  mw_db_opts db_opts;
  mw_db_opts_default(&db_opts);
  bool watch = false;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDS_VALUE                                                      \
  if (!val) {                                                            \
    fprintf(stderr, "moonwire: %s needs a value (see --help)\n", arg);   \
    return 2;                                                            \
  }                                                                      \
  i++;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(arg, "--version")) {
      printf("moonwire %s\n", MW_VERSION);
      return 0;
    } else if (!strcmp(arg, "--root")) {
      NEEDS_VALUE cfg.root = val;
    } else if (!strcmp(arg, "--port")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 65535, &n)) return 2;
      cfg.port = (int)n;
    } else if (!strcmp(arg, "--host")) {
      NEEDS_VALUE cfg.host = val;
    } else if (!strcmp(arg, "--db")) {
      NEEDS_VALUE db_path = val;
    } else if (!strcmp(arg, "--db-busy-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 86400000, &n)) return 2;
      db_opts.busy_timeout_ms = (uint32_t)n;
    } else if (!strcmp(arg, "--db-statement-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 86400000, &n)) return 2;
      db_opts.statement_timeout_ms = (uint32_t)n;
    } else if (!strcmp(arg, "--dev")) {
      cfg.dev = true;
    } else if (!strcmp(arg, "--production")) {
      cfg.dev = false;
    } else if (!strcmp(arg, "--watch")) {
      watch = true;
    } else if (!strcmp(arg, "--quiet")) {
      cfg.quiet = true;
    } else if (!strcmp(arg, "--max-body")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1LL << 40, &n)) return 2;
      cfg.max_body = (size_t)n;
    } else if (!strcmp(arg, "--max-header-size")) {
      NEEDS_VALUE if (parse_num(arg, val, 1024, 1 << 20, &n)) return 2;
      cfg.max_header_size = (size_t)n;
    } else if (!strcmp(arg, "--header-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.header_timeout_ms = (uint64_t)n;
    } else if (!strcmp(arg, "--body-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.body_timeout_ms = (uint64_t)n;
    } else if (!strcmp(arg, "--body-deadline")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 86400000, &n)) return 2;
      cfg.body_deadline_ms = (uint64_t)n;
    } else if (!strcmp(arg, "--body-buffer")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1LL << 32, &n)) return 2;
      cfg.body_buffer = (size_t)n;
    } else if (!strcmp(arg, "--body-memory")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1LL << 40, &n)) return 2;
      cfg.body_memory = (size_t)n;
    } else if (!strcmp(arg, "--tmp-dir")) {
      NEEDS_VALUE cfg.tmp_dir = val;
    } else if (!strcmp(arg, "--upload-max-files")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1000000, &n)) return 2;
      cfg.upload_max_files = (size_t)n;
    } else if (!strcmp(arg, "--upload-max-file-size")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1LL << 40, &n)) return 2;
      cfg.upload_max_file_size = (size_t)n;
    } else if (!strcmp(arg, "--upload-max-fields")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1000000, &n)) return 2;
      cfg.upload_max_fields = (size_t)n;
    } else if (!strcmp(arg, "--upload-max-field-size")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1LL << 32, &n)) return 2;
      cfg.upload_max_field_size = (size_t)n;
    } else if (!strcmp(arg, "--upload-max-part-header")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 1 << 20, &n)) return 2;
      cfg.upload_max_part_header = (size_t)n;
    } else if (!strcmp(arg, "--keepalive-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.keepalive_timeout_ms = (uint64_t)n;
    } else if (!strcmp(arg, "--handler-budget")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 86400000, &n)) return 2;
      cfg.handler_budget_ms = (uint64_t)n;
    } else if (!strcmp(arg, "--lua-memory")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1 << 20, &n)) return 2;
      cfg.lua_memory = (size_t)n << 20;
    } else if (!strcmp(arg, "--max-conns-per-ip")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1000000000, &n)) return 2;
      cfg.max_conns_per_ip = (uint32_t)n;
    } else if (!strcmp(arg, "--max-conn-rate-per-ip")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1000000000, &n)) return 2;
      cfg.max_conn_rate_per_ip = (uint32_t)n;
    } else if (!strcmp(arg, "--limit-loopback")) {
      cfg.limit_loopback = true;
    } else if (!strcmp(arg, "--max-packet-rate")) {
      NEEDS_VALUE if (parse_num(arg, val, 0, 1000000000, &n)) return 2;
      cfg.max_packet_rate = n;
    } else if (!strcmp(arg, "--send-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.send_timeout_ms = (uint64_t)n;
    } else if (!strcmp(arg, "--compress-min")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 1LL << 40, &n)) return 2;
      cfg.compress_min = (size_t)n;
    } else if (!strcmp(arg, "--no-compress")) {
      cfg.compress = false;
    } else if (!strcmp(arg, "--fastcgi")) {
      NEEDS_VALUE cfg.fastcgi = val;
    } else if (!strcmp(arg, "--redis")) {
      NEEDS_VALUE cfg.redis = val;
      const char *bad = redis_check_url(val);
      if (bad) {
        fprintf(stderr, "moonwire: --redis %s: %s\n", val, bad);
        return 2;
      }
    } else if (!strcmp(arg, "--io-path")) {
      NEEDS_VALUE if (val[0] != '/' || strlen(val) > 100) {
        fprintf(stderr, "moonwire: --io-path must start with '/'\n");
        return 2;
      }
      static char io_path[128];
      snprintf(io_path, sizeof io_path, "%s%s", val, val[strlen(val) - 1] == '/' ? "" : "/");
      cfg.io_path = io_path;
    } else if (!strcmp(arg, "--ping-interval")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.ping_interval = (uint64_t)n;
    } else if (!strcmp(arg, "--ping-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.ping_timeout = (uint64_t)n;
    } else if (!strcmp(arg, "--connect-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.connect_timeout = (uint64_t)n;
    } else if (!strcmp(arg, "--attachment-timeout")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 86400000, &n)) return 2;
      cfg.attachment_timeout = (uint64_t)n;
    } else if (!strcmp(arg, "--max-http-buffer-size")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, 1000000000, &n)) return 2;
      cfg.max_http_buffer = (size_t)n;
    } else if (!strcmp(arg, "--max-json-depth")) {
      NEEDS_VALUE if (parse_num(arg, val, 1, JSON_MAX_DEPTH, &n)) return 2;
      json_set_max_depth((int)n);
    } else if (!strcmp(arg, "--max-backpressure")) {
      NEEDS_VALUE if (parse_num(arg, val, 1024, 1LL << 40, &n)) return 2;
      cfg.max_backpressure = (size_t)n;
    } else if (!strcmp(arg, "--transports")) {
      NEEDS_VALUE if (!strstr(val, "polling") && !strstr(val, "websocket")) {
        fprintf(stderr, "moonwire: --transports takes polling, websocket or both\n");
        return 2;
      }
      cfg.transports = val;
    } else if (!strcmp(arg, "--cors-origin")) {
      NEEDS_VALUE if (cfg.norigins == 16) {
        fprintf(stderr, "moonwire: at most 16 --cors-origin\n");
        return 2;
      }
      cfg.origins[cfg.norigins++] = val;
    } else {
      fprintf(stderr, "moonwire: unknown option '%s' (see --help)\n", arg);
      return 2;
    }
#undef NEEDS_VALUE
  }

  char root[PATH_MAX];
  if (!realpath(cfg.root, root)) {
    fprintf(stderr, "moonwire: --root %s: %s\n", cfg.root, strerror(errno));
    return 1;
  }
  cfg.root = root;
  char dbbuf[PATH_MAX + 32];
  if (!db_path) {
    snprintf(dbbuf, sizeof dbbuf, "%s/data/moonwire.db", root);
    db_path = dbbuf;
  }
  cfg.db_path = db_path;
  cfg.watch = cfg.dev || watch;
  /* Large bodies and uploads are written there: say it now if it cannot be. */
  char tmp[PATH_MAX];
  const char *tdir = cfg.tmp_dir ? cfg.tmp_dir : getenv("TMPDIR");
  if (!tdir || !*tdir) tdir = "/tmp";
  struct stat tst;
  if (stat(tdir, &tst) != 0 || !S_ISDIR(tst.st_mode) || access(tdir, W_OK | X_OK) != 0) {
    fprintf(stderr, "moonwire: %s %s: not a directory this process can write to\n",
            cfg.tmp_dir ? "--tmp-dir" : "the temporary directory", tdir);
    if (cfg.tmp_dir) return 2;
  } else if (realpath(tdir, tmp)) {
    cfg.tmp_dir = tmp;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);

  /* One file per client: take every file the hard limit allows. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  static app a;
  a.loop = uv_default_loop();
  char err[512];
  int r;
  if (mw_db_open(&a.db, db_path, err, sizeof err)) {
    fprintf(stderr, "moonwire: --db %s: %s\n", db_path, err);
    return 1;
  }
  mw_db_configure(a.db, &db_opts);
  r = mw_db_start(a.db, a.loop);
  if (r) {
    fprintf(stderr, "moonwire: --db %s: cannot start the database threads: %s\n", db_path, strerror(-r));
    return 1;
  }
  char pub[PATH_MAX + 16];
  snprintf(pub, sizeof pub, "%s/public", root);
  if (static_new(&a.st, a.loop, pub)) {
    fprintf(stderr, "moonwire: cannot set up %s\n", pub);
    return 1;
  }
  if (mw_server_init(&a.srv, a.loop, &cfg)) return 1;
  if (lhost_new(&a.host, &a.srv, a.db, a.st) == -ENOMEM) return 1;
  if (!lhost_ok(a.host))
    mw_log(MW_LOG_ERROR, "the app did not load; fix the error above (routes answer 500 meanwhile)");
  r = mw_server_listen(&a.srv);
  if (r) {
    fprintf(stderr, "moonwire: cannot listen on %s:%d: %s\n", cfg.host, cfg.port, uv_strerror(r));
    return 1;
  }
  if (cfg.fastcgi) {
    /* Printed before the HTTP line, which tells that everything is ready. */
    r = mw_server_listen_fastcgi(&a.srv);
    if (r) {
      fprintf(stderr, "moonwire: cannot listen for FastCGI on %s: %s\n", cfg.fastcgi,
              r == UV_EINVAL ? "expected unix:/path or IP:port (127.0.0.1:9000, [::1]:9000)" : uv_strerror(r));
      return 1;
    }
    char where[PATH_MAX + 16];
    mw_server_fastcgi_name(&a.srv, where, sizeof where);
    printf("moonwire FastCGI responder on %s\n", where);
  }
  /* Before the listening line: whoever reads it may stop us at once. */
  uv_signal_init(a.loop, &a.sigint);
  uv_signal_init(a.loop, &a.sigterm);
  uv_timer_init(a.loop, &a.grace);
  a.sigint.data = a.sigterm.data = a.grace.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);

  const char *shown = strchr(cfg.host, ':') ? "[%s]" : "%s";
  printf("moonwire listening on http://");
  printf(shown, cfg.host);
  printf(":%d (%s mode)\n", mw_server_port(&a.srv), cfg.dev ? "dev" : "production");

  uv_run(a.loop, UV_RUN_DEFAULT);
  static_free(a.st);
  int cr = uv_loop_close(a.loop);
  if (cr) mw_log(MW_LOG_WARN, "loop closed with handles open: %s", uv_strerror(cr));
  if (!cfg.quiet) printf("moonwire: stopped\n");
  return a.exit_code;
}
