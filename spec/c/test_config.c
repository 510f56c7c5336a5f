/* test_config.c — the command line: argv vectors parsed into mw_config
 * (values, ranges and their messages, unknown flags, a flag without its
 * value, repeatable --cors-origin, $PORT) and --help made from the same
 * table (every flag, with its default). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "eio.h"
#include "sio.h"

#include "check.h"

static char out_text[16384], err_text[4096];

/* Parses argv (NULL-terminated) into *cfg from the defaults; out_text and
 * err_text receive what --help / the error messages print. */
static int parse(mw_config *cfg, const char **argv) {
  int argc = 0;
  while (argv[argc]) argc++;
  mw_config_defaults(cfg);
  FILE *out = fmemopen(out_text, sizeof out_text, "w");
  FILE *err = fmemopen(err_text, sizeof err_text, "w");
  int r = mw_config_parse(cfg, argc, (char **)argv, out, err);
  fclose(out);
  fclose(err);
  return r;
}

static void test_defaults(void) {
  mw_config cfg;
  const char *argv[] = {"moonwire", NULL};
  CHECK(parse(&cfg, argv) == 0);
  CHECK(!strcmp(cfg.app.root, ".") && !strcmp(cfg.host, "127.0.0.1") && cfg.port == 3000);
  CHECK(cfg.app.dev && !cfg.http.quiet && !cfg.app.watch && cfg.http.compress);
  CHECK(cfg.http.max_body == 1024 * 1024 && cfg.http.max_header_size == 16384);
  CHECK(cfg.app.lua_memory == (size_t)1024 << 20);
  CHECK(cfg.db_path == NULL && cfg.http.tmp_dir == NULL && cfg.app.redis == NULL && cfg.fastcgi == NULL);
  /* Socket.IO's: not given, so the app's io.configure can set them */
  CHECK(cfg.app.io.ping_interval == 0 && cfg.app.io.connect_timeout == 0 && cfg.app.io.max_packet_rate == -1);
  CHECK(cfg.max_json_depth == 64 && cfg.app.io.norigins == 0 && err_text[0] == '\0');
}

static void test_good(void) {
  mw_config cfg;
  const char *argv[] = {"moonwire", "--root", "/srv/app", "--port", "0", "--host", "::1", "--production",
                        "--quiet", "--max-body", "2048", "--lua-memory", "16", "--no-compress",
                        "--max-packet-rate", "0", "--connect-timeout", "1000", "--io-path", "/rt",
                        "--max-conns-per-ip", "7", "--db-busy-timeout", "250", "--watch", NULL};
  CHECK(parse(&cfg, argv) == 0);
  CHECK(!strcmp(cfg.app.root, "/srv/app") && cfg.port == 0 && !strcmp(cfg.host, "::1"));
  CHECK(!cfg.app.dev && cfg.http.quiet && cfg.app.watch && !cfg.http.compress);
  CHECK(cfg.http.max_body == 2048 && cfg.app.lua_memory == (size_t)16 << 20);
  CHECK(cfg.app.io.max_packet_rate == 0 && cfg.app.io.connect_timeout == 1000);
  CHECK(!strcmp(cfg.app.io.path, "/rt/")); /* the trailing slash socket.io's path has */
  CHECK(cfg.server.ip.max_conns == 7 && cfg.db_busy_timeout_ms == 250);
  CHECK(err_text[0] == '\0');
}

static void test_out_of_range(void) {
  mw_config cfg;
  const char *big[] = {"moonwire", "--max-header-size", "100", NULL};
  CHECK(parse(&cfg, big) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: --max-header-size needs a number between 1024 and 1048576 (got '100')\n"));
  const char *port[] = {"moonwire", "--port", "65536", NULL};
  CHECK(parse(&cfg, port) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: --port needs a number between 0 and 65535 (got '65536')\n"));
  const char *word[] = {"moonwire", "--send-timeout", "5s", NULL};
  CHECK(parse(&cfg, word) == -EINVAL);
  CHECK(strstr(err_text, "--send-timeout needs a number between 1 and 86400000 (got '5s')") != NULL);
  const char *path[] = {"moonwire", "--io-path", "socket", NULL};
  CHECK(parse(&cfg, path) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: --io-path must start with '/'\n"));
  const char *tr[] = {"moonwire", "--transports", "carrier-pigeon", NULL};
  CHECK(parse(&cfg, tr) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: --transports takes polling, websocket or both\n"));
}

static void test_unknown_and_missing(void) {
  mw_config cfg;
  const char *unknown[] = {"moonwire", "--port", "8080", "--no-such-flag", NULL};
  CHECK(parse(&cfg, unknown) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: unknown option '--no-such-flag' (see --help)\n"));
  const char *missing[] = {"moonwire", "--quiet", "--max-body", NULL};
  CHECK(parse(&cfg, missing) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: --max-body needs a value (see --help)\n"));
  const char *str[] = {"moonwire", "--root", NULL};
  CHECK(parse(&cfg, str) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: --root needs a value (see --help)\n"));
}

static void test_origins(void) {
  mw_config cfg;
  const char *two[] = {"moonwire", "--cors-origin", "http://a.test", "--cors-origin", "http://b.test", NULL};
  CHECK(parse(&cfg, two) == 0);
  CHECK(cfg.app.io.norigins == 2 && !strcmp(cfg.app.io.origins[0], "http://a.test") && !strcmp(cfg.app.io.origins[1], "http://b.test"));
  const char *many[2 + 2 * (L_IO_MAX_ORIGINS + 1)];
  int n = 0;
  many[n++] = "moonwire";
  for (int i = 0; i <= L_IO_MAX_ORIGINS; i++) {
    many[n++] = "--cors-origin";
    many[n++] = "http://c.test";
  }
  many[n] = NULL;
  CHECK(parse(&cfg, many) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: at most 16 --cors-origin\n"));
}

static void test_env_port(void) {
  mw_config cfg;
  const char *none[] = {"moonwire", NULL}, *flag[] = {"moonwire", "--port", "4000", NULL};
  setenv("PORT", "5000", 1);
  CHECK(parse(&cfg, none) == 0 && cfg.port == 5000);
  CHECK(parse(&cfg, flag) == 0 && cfg.port == 4000); /* the flag wins */
  setenv("PORT", "http", 1);
  CHECK(parse(&cfg, none) == -EINVAL);
  CHECK(!strcmp(err_text, "moonwire: PORT needs a number between 0 and 65535 (got 'http')\n"));
  unsetenv("PORT");
}

/* --help lists every flag of the table, with the default each one has;
 * -h is the same; --version answers too. */
static void test_help(void) {
  mw_config cfg;
  const char *help[] = {"moonwire", "--port", "1", "--help", "--no-such-flag", NULL};
  CHECK(parse(&cfg, help) == 1); /* answered before the bad flag is seen */
  CHECK(strstr(out_text, "usage: moonwire [options]") == out_text);
  for (size_t i = 0; i < mw_config_nopts; i++) {
    const mw_config_opt *o = &mw_config_opts[i];
    if (o->kind == MW_CFG_SECTION) {
      if (o->help) CHECK(strstr(out_text, o->help) != NULL);
      continue;
    }
    char line[128];
    snprintf(line, sizeof line, "\n  %s%s%s ", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
    const char *at = strstr(out_text, line);
    CHECK(at != NULL);
    if (!at) fprintf(stderr, "  --help lacks %s\n", o->flag);
    if (at && strstr(o->help, "%D")) { /* its default, on its line */
      char def[64];
      snprintf(def, sizeof def, " %lld", o->def);
      const char *eol = strchr(at + 1, '\n');
      const char *d = strstr(at, def);
      CHECK(d != NULL && d < eol);
    }
  }
  /* the general flags first, then Socket.IO's under their heading */
  const char *sio = strstr(out_text, "\nSocket.IO (these win over io.configure in the app):\n");
  CHECK(sio && strstr(out_text, "--root") < sio && strstr(out_text, "--redis") < sio && strstr(out_text, "--io-path") > sio);
  CHECK(strstr(out_text, "(default 45000)") && strstr(out_text, "(default 30000)") && strstr(out_text, "(default 25000)"));
  char first[sizeof out_text];
  memcpy(first, out_text, sizeof first);
  const char *h[] = {"moonwire", "-h", NULL};
  CHECK(parse(&cfg, h) == 1 && !strcmp(out_text, first));
  const char *v[] = {"moonwire", "--version", NULL};
  CHECK(parse(&cfg, v) == 1 && !strncmp(out_text, "moonwire ", 9));
}

int main(void) {
  test_defaults();
  test_good();
  test_out_of_range();
  test_unknown_and_missing();
  test_origins();
  test_env_port();
  test_help();
  CHECK_REPORT();
  return failed ? 1 : 0;
}
