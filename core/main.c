/* main.c — composes the server: configuration (config.c), database,
 * listeners, the app; signals and graceful shutdown. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "db.h"
#include "fcgi.h"
#include "http.h"
#include "json.h"
#include "l_core.h"
#include "lhost.h"
#include "migrate.h"
#include "newapp.h"
#include "server.h"
#include "static.h"
#include "wlink.h"
#include "workers.h"

#define SHUTDOWN_GRACE_MS 10000

typedef struct app {
  uv_loop_t *loop;
  mw_server srv;
  http_site site;    /* the listeners' user data */
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
  if (!a->site.opts.quiet && wlink_self < 0) printf("moonwire: %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
  lhost_stop(a->host); /* realtime sessions end first: their pending polls are answered */
  mw_db_stop(a->db, MW_DB_STOP_WAIT_MS);
  uv_signal_stop(&a->sigint);
  uv_signal_stop(&a->sigterm);
  uv_timer_start(&a->grace, on_grace, SHUTDOWN_GRACE_MS, 0);
  uv_unref((uv_handle_t *)&a->grace);
  a->srv.on_idle_stop = finish;
  mw_server_stop(&a->srv);
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "new")) {
    const char *dir = NULL, *template = NULL;
    bool bad = false;
    for (int i = 2; i < argc && !bad; i++) {
      if (!strcmp(argv[i], "--template") && i + 1 < argc) template = argv[++i];
      else if (argv[i][0] != '-' && !dir) dir = argv[i];
      else bad = true;
    }
    if (bad || !dir) {
      fprintf(stderr, "usage: moonwire new DIR [--template chat|pets]\n");
      return 2;
    }
    return mw_new_app(dir, template);
  }
  if (argc >= 2 && !strcmp(argv[1], "migrate")) return migrate_command(argc - 1, argv + 1);
  mw_config cfg;
  mw_config_defaults(&cfg);
  int r = mw_config_parse(&cfg, argc, argv, stdout, stderr);
  if (r) return r > 0 ? 0 : 2;
  json_set_max_depth(cfg.max_json_depth);
  r = mw_config_resolve(&cfg, stderr);
  if (r) return r == -EINVAL ? 2 : 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  if (cfg.fastcgi && cfg.workers > 1 && !strncmp(cfg.fastcgi, "unix:", 5)) {
    fprintf(stderr, "moonwire: --fastcgi unix:PATH takes one process: use --fastcgi HOST:PORT with --workers\n");
    return 2;
  }
  /* Before the workers fork, so that they share it. */
  if (l_core_make_start_key()) {
    fprintf(stderr, "moonwire: no randomness available for the server's keys\n");
    return 1;
  }
  /* --workers N: this process becomes the supervisor and never returns
   * here; each worker goes on below as a server of its own. */
  int link_fd = -1, self = cfg.workers > 1 ? workers_supervise(&cfg, &link_fd) : -1;

  /* One file per client: take every file the hard limit allows. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  static app a;
  a.loop = uv_default_loop();
  char err[512];
  if (mw_db_open(&a.db, cfg.db_path, err, sizeof err)) {
    fprintf(stderr, "moonwire: --db %s: %s\n", cfg.db_path, err);
    return 1;
  }
  mw_db_configure(a.db, &(mw_db_opts){cfg.db_busy_timeout_ms, cfg.db_statement_timeout_ms});
  /* The schema first: the app's scripts expect it at their first line. */
  char mdir[PATH_MAX + 32];
  snprintf(mdir, sizeof mdir, "%s/scripts/migrations", cfg.app.root);
  if (migrate_run(mw_db_handle(a.db), mdir, err, sizeof err)) {
    fprintf(stderr, "moonwire: migration failed, not starting: %s\n", err);
    mw_db_close(a.db);
    return 1;
  }
  r = mw_db_start(a.db, a.loop);
  if (r) {
    fprintf(stderr, "moonwire: --db %s: cannot start the database threads: %s\n", cfg.db_path, strerror(-r));
    return 1;
  }
  char pub[PATH_MAX + 16];
  snprintf(pub, sizeof pub, "%s/public", cfg.app.root);
  if (static_new(&a.st, a.loop, pub)) {
    fprintf(stderr, "moonwire: cannot set up %s\n", pub);
    return 1;
  }
  if (mw_server_init(&a.srv, a.loop, &cfg.server)) return 1;
  if (self >= 0 && (r = wlink_start(&a.srv, link_fd, self, cfg.workers))) {
    fprintf(stderr, "moonwire: worker %d: cannot open its link: %s\n", self + 1, uv_strerror(r));
    return 1;
  }
  if (lhost_new(&a.host, &a.srv, &cfg.app, a.db, a.st) == -ENOMEM) return 1;
  a.site = (http_site){*lhost_handler(a.host), cfg.http};
  if (lhost_refusal(a.host)) {
    fprintf(stderr, "moonwire: not starting: %s\n", lhost_refusal(a.host));
    return 1;
  }
  if (!lhost_ok(a.host))
    mw_log(MW_LOG_ERROR, "the app did not load; fix the error above (routes answer 500 meanwhile)");
  /* Two listeners, one protocol each: HTTP, limited per client address,
   * and FastCGI behind a web server, which is one address. */
  const char *bracket = strchr(cfg.host, ':') ? "[%s]:%d" : "%s:%d";
  char http_addr[128];
  snprintf(http_addr, sizeof http_addr, bracket, cfg.host, cfg.port);
  mw_listener *http;
  r = mw_server_listen(&a.srv, http_addr, &(mw_listen_opts){http_conn_attach, &a.site, http_conn_refuse}, &http);
  if (r) {
    fprintf(stderr, "moonwire: cannot listen on %s:%d: %s\n", cfg.host, cfg.port, uv_strerror(r));
    return 1;
  }
  if (cfg.fastcgi) {
    /* Printed before the HTTP line, which tells that everything is ready. */
    mw_listener *fcgi;
    r = mw_server_listen(&a.srv, cfg.fastcgi, &(mw_listen_opts){fcgi_conn_attach, &a.site, NULL}, &fcgi);
    if (r) {
      fprintf(stderr, "moonwire: cannot listen for FastCGI on %s: %s\n", cfg.fastcgi,
              r == UV_EINVAL ? "expected unix:/path or IP:port (127.0.0.1:9000, [::1]:9000)" : uv_strerror(r));
      return 1;
    }
    char where[PATH_MAX + 16];
    mw_listener_name(fcgi, where, sizeof where);
    if (self <= 0) printf("moonwire FastCGI responder on %s\n", where);
  }
  /* Before the listening line: whoever reads it may stop us at once. */
  uv_signal_init(a.loop, &a.sigint);
  uv_signal_init(a.loop, &a.sigterm);
  uv_timer_init(a.loop, &a.grace);
  a.sigint.data = a.sigterm.data = a.grace.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);

  if (self >= 0) { /* the supervisor prints it once every worker serves */
    wlink_ready(http);
  } else {
    printf("moonwire listening on http://");
    printf(bracket, cfg.host, mw_listener_port(http));
    printf(" (%s mode)\n", cfg.app.dev ? "dev" : "production");
  }

  uv_run(a.loop, UV_RUN_DEFAULT);
  static_free(a.st);
  int cr = uv_loop_close(a.loop);
  if (cr) mw_log(MW_LOG_WARN, "loop closed with handles open: %s", uv_strerror(cr));
  if (!cfg.http.quiet && self < 0) printf("moonwire: stopped\n");
  return a.exit_code;
}
