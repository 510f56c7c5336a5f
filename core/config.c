/* config.c — the command line: one table of flags drives the defaults, the
 * parsing and --help (Redis's config.c keeps its directives the same way). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "eio.h"
#include "http.h"
#include "json.h"
#include "mw.h"
#include "redis.h" /* redis_check_url */
#include "sio.h"

/* Setters of the flags whose values are more than a number or a string. */

static int set_redis(mw_config *cfg, const char *val, FILE *err) {
  const char *bad = redis_check_url(val);
  if (bad) {
    fprintf(err, "moonwire: --redis %s: %s\n", val, bad);
    return -EINVAL;
  }
  cfg->app.redis = val;
  return 0;
}

/* Stored with a trailing slash, as socket.io's path option is matched. */
static int set_io_path(mw_config *cfg, const char *val, FILE *err) {
  static char io_path[128];
  size_t len = strlen(val);
  if (val[0] != '/' || len > 100) {
    fprintf(err, "moonwire: --io-path must start with '/'\n");
    return -EINVAL;
  }
  snprintf(io_path, sizeof io_path, "%s%s", val, val[len - 1] == '/' ? "" : "/");
  cfg->app.io.path = io_path;
  return 0;
}

static int set_transports(mw_config *cfg, const char *val, FILE *err) {
  if (!strstr(val, "polling") && !strstr(val, "websocket")) {
    fprintf(err, "moonwire: --transports takes polling, websocket or both\n");
    return -EINVAL;
  }
  cfg->app.io.transports = val;
  return 0;
}

/* A number of worker processes, or "auto": one per core. */
static int set_workers(mw_config *cfg, const char *val, FILE *err) {
  long n;
  char *end;
  if (!strcmp(val, "auto")) {
    n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > MW_CONFIG_MAX_WORKERS) n = MW_CONFIG_MAX_WORKERS;
  } else {
    errno = 0;
    n = strtol(val, &end, 10);
    if (errno || *end || end == val || n < 1 || n > MW_CONFIG_MAX_WORKERS) {
      fprintf(err, "moonwire: --workers takes a number between 1 and %d, or auto (got '%s')\n", MW_CONFIG_MAX_WORKERS,
              val);
      return -EINVAL;
    }
  }
  cfg->workers = (int)n;
  return 0;
}

static int add_origin(mw_config *cfg, const char *val, FILE *err) {
  if (cfg->app.io.norigins == L_IO_MAX_ORIGINS) {
    fprintf(err, "moonwire: at most %d --cors-origin\n", L_IO_MAX_ORIGINS);
    return -EINVAL;
  }
  cfg->app.io.origins[cfg->app.io.norigins++] = val;
  return 0;
}

#define FIELD(f) offsetof(mw_config, f)
#define FSIZE(f) ((uint8_t)sizeof(((mw_config *)0)->f))
#define SECTION(title) {.kind = MW_CFG_SECTION, .help = title}
#define STR(fl, a, f, d, h) {.flag = fl, .arg = a, .field = FIELD(f), .kind = MW_CFG_STR, .sdef = d, .help = h}
#define NUM(fl, a, f, lo, hi, d, h) \
  {.flag = fl, .arg = a, .field = FIELD(f), .size = FSIZE(f), .kind = MW_CFG_NUM, .min = lo, .max = hi, .def = d, .help = h}
/* A number that is not stored unless given: the app's io.configure, else d, applies. */
#define OPT(fl, a, f, lo, hi, d, n, h)                                                                     \
  {.flag = fl, .arg = a, .field = FIELD(f), .size = FSIZE(f), .kind = MW_CFG_NUM, .min = lo, .max = hi, \
   .def = d, .unset = true, .none = n, .help = h}
#define ON(fl, f, d, h) {.flag = fl, .field = FIELD(f), .kind = MW_CFG_ON, .def = d, .help = h}
#define OFF(fl, f, d, h) {.flag = fl, .field = FIELD(f), .kind = MW_CFG_OFF, .def = d, .help = h}
#define FN(fl, a, fn, h) {.flag = fl, .arg = a, .kind = MW_CFG_FN, .set = fn, .help = h}

const mw_config_opt mw_config_opts[] = {
    SECTION(NULL),
    STR("--root", "DIR", app.root, ".", "app directory (default: the current directory)"),
    NUM("--port", "N", port, 0, 65535, 3000, "TCP port (default: $PORT, else %D; 0 picks a free one)"),
    STR("--host", "ADDR", host, "127.0.0.1", "bind address (default 127.0.0.1; 0.0.0.0 for the LAN)"),
    STR("--db", "PATH", db_path, NULL, "SQLite file (default: ROOT/data/moonwire.db, created on first run)"),
    NUM("--db-busy-timeout", "MS", db_busy_timeout_ms, 0, MW_MAX_MS, MW_DB_BUSY_TIMEOUT_MS,
        "a write waits this long for a lock another process holds (default %D)"),
    NUM("--db-statement-timeout", "MS", db_statement_timeout_ms, 0, MW_MAX_MS, MW_DB_STATEMENT_TIMEOUT_MS,
        "a statement running longer is interrupted (default %D; 0: no limit)"),
    ON("--dev", app.dev, true, "development mode: error details in pages (the default)"),
    OFF("--production", app.dev, true, "production mode: plain error pages, no file watching"),
    ON("--watch", app.watch, false, "reload scripts/, views/ and public/ when they change (on in dev mode)"),
    ON("--quiet", http.quiet, false, "no access log on stdout"),
    ON("--seed", app.seed, false, "run scripts/seeds.lua once the app has loaded at start (make run does)"),
    NUM("--max-body", "BYTES", http.max_body, 0, 1LL << 40, 1024 * 1024,
        "request body limit (default %D); larger bodies get 413"),
    NUM("--max-header-size", "BYTES", http.max_header_size, 1024, 1 << 20, HTTP_MAX_HEADER_BYTES,
        "request line and headers, in all (default %D); 431 past it"),
    NUM("--header-timeout", "MS", http.header_timeout_ms, 1, MW_MAX_MS, 10000,
        "time allowed to send request headers (default %D)"),
    NUM("--body-timeout", "MS", http.body_timeout_ms, 1, MW_MAX_MS, 60000,
        "longest wait between two reads of a request body (default %D); 408 past it"),
    NUM("--body-deadline", "MS", http.body_deadline_ms, 0, MW_MAX_MS, 300000,
        "time allowed for a whole request body (default %D; 0: none); 408 past it"),
    NUM("--body-buffer", "BYTES", http.body_buffer, 0, 1LL << 32, 64 * 1024,
        "bodies up to this are held in memory, larger ones go to a temporary file (default %D)"),
    NUM("--body-memory", "BYTES", http.body_memory, 0, 1LL << 40, 64 * 1024 * 1024,
        "request body bytes held in memory across all connections (default %D): past it\n"
        "bodies go to disk; reading pauses while a quarter of it waits for the disk"),
    STR("--tmp-dir", "DIR", http.tmp_dir, NULL,
        "where request bodies and uploaded files are written (default: $TMPDIR, else /tmp)"),
    NUM("--upload-max-files", "N", http.upload_max_files, 0, 1000000, 100,
        "multipart/form-data: files per request (default %D); 413 past it"),
    NUM("--upload-max-file-size", "BYTES", http.upload_max_file_size, 0, 1LL << 40, 0,
        "bytes of one uploaded file (default: only --max-body); 413 past it"),
    NUM("--upload-max-fields", "N", http.upload_max_fields, 0, 1000000, 1000,
        "multipart/form-data: fields per request (default %D); 413 past it"),
    NUM("--upload-max-field-size", "BYTES", http.upload_max_field_size, 0, 1LL << 32, 1024 * 1024,
        "bytes of one field's value (default %D); 413 past it"),
    NUM("--upload-max-part-header", "BYTES", http.upload_max_part_header, 1, 1 << 20, 16 * 1024,
        "bytes of one part's headers (default %D); 413 past it"),
    NUM("--keepalive-timeout", "MS", http.keepalive_timeout_ms, 1, MW_MAX_MS, 5000,
        "idle keep-alive connections close after this (default %D)"),
    NUM("--handler-budget", "MS", app.handler_budget_ms, 0, MW_MAX_MS, 2000,
        "a route, socket handler or timer that runs longer is stopped (default %D; 0: no limit)"),
    {.flag = "--lua-memory", .arg = "MB", .field = FIELD(app.lua_memory), .size = FSIZE(app.lua_memory), .shift = 20,
     .kind = MW_CFG_NUM, .min = 0, .max = 1 << 20, .def = 1024,
     .help = "the Lua VM's memory ceiling (default %D; 0: none)"},
    NUM("--max-conns-per-ip", "N", server.ip.max_conns, 0, 1000000000, 1000,
        "connections one client address may hold (default %D; 0: no limit)"),
    NUM("--max-conn-rate-per-ip", "N", server.ip.max_rate, 0, 1000000000, 200,
        "new connections per second from one address (default %D; 0: no limit)"),
    ON("--limit-loopback", server.ip.loopback, false,
       "apply those two to loopback clients too (off: a proxy on this machine is one address)"),
    NUM("--send-timeout", "MS", server.send_timeout_ms, 1, MW_MAX_MS, 60000,
        "a client that takes no byte of a response for this long is dropped (default %D)"),
    NUM("--compress-min", "BYTES", http.compress_min, 1, 1LL << 40, 1024,
        "smallest text response gzip/brotli compresses (default %D)"),
    OFF("--no-compress", http.compress, true, "no compression (neither on the fly nor precompressed .gz/.br twins)"),
    STR("--fastcgi", "ADDR", fastcgi, NULL,
        "also answer FastCGI (nginx fastcgi_pass) on ADDR: unix:/path or host:port"),
    FN("--redis", "URL", set_redis,
       "share rooms and broadcasts with other servers through Redis (redis://host:port)"),
    FN("--workers", "N", set_workers,
       "worker processes on the one port, sharing rooms and broadcasts (default 1;\n"
       "auto: one per core); a worker that dies is restarted"),

    SECTION("Socket.IO (these win over io.configure in the app)"),
    FN("--io-path", "PATH", set_io_path, "where Socket.IO answers (default /socket.io/)"),
    OPT("--ping-interval", "MS", app.io.ping_interval, 1, MW_MAX_MS, EIO_DEFAULT_PING_INTERVAL_MS, 0,
        "heartbeat interval (default %D)"),
    OPT("--ping-timeout", "MS", app.io.ping_timeout, 1, MW_MAX_MS, EIO_DEFAULT_PING_TIMEOUT_MS, 0,
        "a client that does not answer a ping within this is closed (default %D)"),
    OPT("--max-http-buffer-size", "N", app.io.max_http_buffer, 1, 1000000000, EIO_DEFAULT_MAX_PAYLOAD, 0,
        "largest message in bytes (default %D)"),
    NUM("--max-json-depth", "N", max_json_depth, 1, JSON_MAX_DEPTH, JSON_MAX_DEPTH,
        "arrays and objects nested in a JSON value, at most (default %D, the most)"),
    OPT("--max-backpressure", "N", app.io.max_backpressure, 1024, 1LL << 40, EIO_DEFAULT_MAX_BUFFERED, 0,
        "bytes queued for a client that stops reading before it is closed (default %D)"),
    OPT("--max-packet-rate", "N", app.io.max_packet_rate, 0, 1000000000, EIO_DEFAULT_MAX_PACKET_RATE, -1,
        "packets per second a client may send; more are dropped, twice as many close it (default %D; 0: no "
        "limit)"),
    OPT("--connect-timeout", "MS", app.io.connect_timeout, 1, MW_MAX_MS, SIO_DEFAULT_CONNECT_TIMEOUT_MS, 0,
        "a session that never joins a namespace closes after this (default %D)"),
    OPT("--attachment-timeout", "MS", app.io.attachment_timeout, 1, MW_MAX_MS, SIO_DEFAULT_ATTACHMENT_TIMEOUT_MS, 0,
        "a binary packet's attachments must all arrive within this (default %D)"),
    FN("--transports", "LIST", set_transports, "polling,websocket (default both)"),
    FN("--cors-origin", "ORIGIN", add_origin, "allow this Origin (repeatable); a WebSocket from any other gets 403"),
    {.flag = "--help", .kind = MW_CFG_HELP, .help = "this text"},
    {.flag = "--version", .kind = MW_CFG_VERSION, .help = "print the version"},
};
const size_t mw_config_nopts = sizeof mw_config_opts / sizeof mw_config_opts[0];

static void store_num(mw_config *cfg, const mw_config_opt *o, long long n) {
  char *p = (char *)cfg + o->field;
  if (o->size == sizeof(int32_t)) {
    int32_t v = (int32_t)n; /* the ranges keep every value within the field's type */
    memcpy(p, &v, sizeof v);
  } else {
    int64_t v = (int64_t)((unsigned long long)n << o->shift);
    memcpy(p, &v, sizeof v);
  }
}

void mw_config_defaults(mw_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->workers = 1;
  for (size_t i = 0; i < mw_config_nopts; i++) {
    const mw_config_opt *o = &mw_config_opts[i];
    char *p = (char *)cfg + o->field;
    switch (o->kind) {
    case MW_CFG_STR: memcpy(p, &o->sdef, sizeof o->sdef); break;
    case MW_CFG_NUM: store_num(cfg, o, o->unset ? o->none : o->def); break;
    case MW_CFG_ON:
    case MW_CFG_OFF: *(bool *)p = o->def != 0; break;
    default: break;
    }
  }
}

/* A number in [o->min, o->max], else the message on err. */
static int parse_num(const char *flag, const char *v, long long min, long long max, long long *out, FILE *err) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || *end || end == v || n < min || n > max) {
    fprintf(err, "moonwire: %s needs a number between %lld and %lld (got '%s')\n", flag, min, max, v);
    return -EINVAL;
  }
  *out = n;
  return 0;
}

static const mw_config_opt *find_opt(const char *arg) {
  for (size_t i = 0; i < mw_config_nopts; i++) {
    const mw_config_opt *o = &mw_config_opts[i];
    if (o->flag && !strcmp(arg, o->flag)) return o;
  }
  if (!strcmp(arg, "-h")) return find_opt("--help");
  return NULL;
}

int mw_config_parse(mw_config *cfg, int argc, char **argv, FILE *out, FILE *err) {
  long long n;
  const char *env_port = getenv("PORT");
  if (env_port && *env_port) {
    if (parse_num("PORT", env_port, 0, 65535, &n, err)) return -EINVAL;
    cfg->port = (int)n;
  }
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const mw_config_opt *o = find_opt(arg);
    if (!o) {
      fprintf(err, "moonwire: unknown option '%s' (see --help)\n", arg);
      return -EINVAL;
    }
    const char *val = NULL;
    if (o->arg) {
      if (i + 1 >= argc) {
        fprintf(err, "moonwire: %s needs a value (see --help)\n", arg);
        return -EINVAL;
      }
      val = argv[++i];
    }
    char *p = (char *)cfg + o->field;
    switch (o->kind) {
    case MW_CFG_STR: memcpy(p, &val, sizeof val); break;
    case MW_CFG_NUM:
      if (parse_num(arg, val, o->min, o->max, &n, err)) return -EINVAL;
      store_num(cfg, o, n);
      break;
    case MW_CFG_ON: *(bool *)p = true; break;
    case MW_CFG_OFF: *(bool *)p = false; break;
    case MW_CFG_FN:
      if (o->set(cfg, val, err)) return -EINVAL;
      break;
    case MW_CFG_HELP: mw_config_usage(out); return 1;
    case MW_CFG_VERSION: fprintf(out, "moonwire %s\n", MW_VERSION); return 1;
    case MW_CFG_SECTION: break;
    }
  }
  return 0;
}

#define USAGE_COLUMN 25 /* where the descriptions start, after the two-space indent */

void mw_config_usage(FILE *out) {
  fputs("usage: moonwire [options]\n"
        "       moonwire new DIR [--template chat|pets]\n"
        "       moonwire migrate [--status] [--root DIR] [--db PATH]\n"
        "\n"
        "Serves the app in --root: scripts/app.lua (routes and handlers), views/\n"
        "(templates) and public/ (static files). `moonwire new DIR` creates a\n"
        "minimal app to start from (or one of the examples). At start, and with\n"
        "`moonwire migrate`, scripts/migrations/NNN_name.sql are applied in order;\n"
        "`moonwire migrate --status` lists them.\n",
        out);
  for (size_t i = 0; i < mw_config_nopts; i++) {
    const mw_config_opt *o = &mw_config_opts[i];
    if (o->kind == MW_CFG_SECTION) {
      fprintf(out, o->help ? "\n%s:\n" : "\n", o->help);
      continue;
    }
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
    fprintf(out, "  %-*s ", USAGE_COLUMN - 1, left);
    for (const char *h = o->help; *h; h++) {
      if (h[0] == '%' && h[1] == 'D') {
        fprintf(out, "%lld", o->def);
        h++;
      } else if (*h == '\n') {
        fprintf(out, "\n  %*s", USAGE_COLUMN, "");
      } else {
        fputc(*h, out);
      }
    }
    fputc('\n', out);
  }
}

int mw_config_resolve(mw_config *cfg, FILE *err) {
  static char root[PATH_MAX], db[PATH_MAX + 32], tmp[PATH_MAX];
  if (!realpath(cfg->app.root, root)) {
    int e = errno;
    fprintf(err, "moonwire: --root %s: %s\n", cfg->app.root, strerror(e));
    return -e;
  }
  cfg->app.root = root;
  if (!cfg->db_path) {
    snprintf(db, sizeof db, "%s/data/moonwire.db", root);
    cfg->db_path = db;
  }
  cfg->app.watch = cfg->app.dev || cfg->app.watch;
  /* Large bodies and uploads are written there: say it now if it cannot be. */
  const char *tdir = cfg->http.tmp_dir ? cfg->http.tmp_dir : getenv("TMPDIR");
  if (!tdir || !*tdir) tdir = "/tmp";
  struct stat st;
  if (stat(tdir, &st) != 0 || !S_ISDIR(st.st_mode) || access(tdir, W_OK | X_OK) != 0) {
    fprintf(err, "moonwire: %s %s: not a directory this process can write to\n",
            cfg->http.tmp_dir ? "--tmp-dir" : "the temporary directory", tdir);
    if (cfg->http.tmp_dir) return -EINVAL;
  } else if (realpath(tdir, tmp)) {
    cfg->http.tmp_dir = tmp;
  }
  return 0;
}
