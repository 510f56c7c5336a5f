/* config.h — the server's configuration: every command-line flag, its
 * range, its default and its --help line, in one table (config.c).
 *
 * mw_config_defaults, mw_config_parse and mw_config_usage all walk that
 * table, so a flag is added in one place and its default, its check and its
 * line in --help cannot drift apart. */
#ifndef MW_CONFIG_H
#define MW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "http.h"
#include "lhost.h"
#include "server.h"

#define MW_CONFIG_MAX_WORKERS 64 /* a worker's index is one base64url character of a sid (eio.c) */

/* Each part goes to the unit that follows it: the server, the HTTP and
 * FastCGI listeners (in their http_site), the app host; main.c uses the
 * rest. */
typedef struct mw_config {
  const char *host;       /* bind address */
  int port;               /* 0 = ephemeral */
  const char *db_path;    /* SQLite file */
  uint32_t db_busy_timeout_ms, db_statement_timeout_ms; /* mw_db_opts */
  int max_json_depth;     /* json_set_max_depth */
  const char *fastcgi;    /* FastCGI listen address, "unix:/path" or "host:port"; NULL: none */
  mw_server_opts server;  /* connections, whatever their protocol */
  http_opts http;         /* requests and responses */
  lhost_opts app;         /* the app: its root, dev mode, Lua, Socket.IO, Redis */
  int workers;            /* --workers: processes serving the port (1: this one alone; workers.c) */
} mw_config;

typedef enum mw_config_kind {
  MW_CFG_SECTION, /* not a flag: a heading in --help */
  MW_CFG_STR,     /* a string, borrowed from argv */
  MW_CFG_NUM,     /* an integer in [min, max], stored in a field of `size` bytes, shifted left by `shift` */
  MW_CFG_ON,      /* a bool field set true */
  MW_CFG_OFF,     /* a bool field set false */
  MW_CFG_FN,      /* a value checked and stored by `set` */
  MW_CFG_HELP,    /* prints the usage */
  MW_CFG_VERSION, /* prints the version */
} mw_config_kind;

typedef struct mw_config_opt mw_config_opt;
struct mw_config_opt {
  const char *flag;     /* "--port" */
  const char *arg;      /* what follows it in --help ("N"), NULL for switches */
  size_t field;         /* offsetof(mw_config, ...), a field of one of its parts */
  uint8_t size;         /* MW_CFG_NUM: the field's size in bytes (4 or 8) */
  uint8_t shift;        /* MW_CFG_NUM: the value given is multiplied by 2^shift (MB → bytes) */
  mw_config_kind kind;
  long long min, max;   /* MW_CFG_NUM: the range accepted */
  long long def;        /* the default: a number, or a bool for MW_CFG_ON/OFF; %D in help prints it */
  bool unset;           /* MW_CFG_NUM: the field starts at `none` (not given: the app's own
                           setting, else def, applies) */
  long long none;
  const char *sdef;     /* MW_CFG_STR: the default string (NULL: none) */
  /* MW_CFG_FN: stores val in cfg; on a bad value writes the message to err
   * and returns -EINVAL. */
  int (*set)(mw_config *cfg, const char *val, FILE *err);
  const char *help;     /* one --help line; "\n" continues it on the next */
};

/* The table, in --help order. */
extern const mw_config_opt mw_config_opts[];
extern const size_t mw_config_nopts;

/* Fills cfg with the table's defaults. */
void mw_config_defaults(mw_config *cfg);

/* Reads $PORT, then argv[1..argc) into cfg (which holds the defaults).
 * Strings stay borrowed from argv. --help and --version write to out; a
 * bad command line gets its message on err. Returns 0 to go on serving, 1
 * when --help or --version was answered, -EINVAL for a bad command line. */
int mw_config_parse(mw_config *cfg, int argc, char **argv, FILE *out, FILE *err);

/* Writes --help to out. */
void mw_config_usage(FILE *out);

/* Settles what depends on other settings or on the machine: root becomes
 * an absolute path, the database defaults to ROOT/data/moonwire.db, dev
 * mode watches the files, the temporary directory is checked (a warning
 * when the default one is unusable). The strings it makes live until the
 * next call (one configuration per process). Returns 0, -EINVAL when
 * --tmp-dir is unusable, or -errno when --root is. */
int mw_config_resolve(mw_config *cfg, FILE *err);

#endif
