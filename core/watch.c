/* watch.c — see watch.h.
 *
 * One uv_fs_event_t per directory (inotify watches a directory, not a tree).
 * Every event marks its tree dirty, remembers the file name and restarts the
 * debounce timer. When the timer fires, the directory list is brought up to
 * date (new directories get a watcher, vanished ones lose theirs) and the
 * callback hears what changed. Editor droppings (swap and backup files,
 * dot-files) are ignored. */
#include "watch.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mw.h"

#define MAX_DIRS 2048

typedef struct wdir {
  uv_fs_event_t ev;
  struct mw_watch *w;
  unsigned tree;  /* MW_WATCH_* */
  char *rel;      /* "scripts/lib", relative to the root */
  bool seen;      /* still there at the last scan */
  struct wdir *next;
} wdir;

struct mw_watch {
  uv_loop_t *loop;
  uv_timer_t debounce;
  char *root;
  unsigned debounce_ms;
  mw_watch_cb cb;
  void *ud;
  wdir *dirs;
  int ndirs;
  bool stopping;
  int closing; /* handles still closing */
  /* the burst so far */
  unsigned what;
  bool non_css;
  int nnames, more;
  char *names[MW_WATCH_MAX_NAMES];
};

static const struct {
  const char *name;
  unsigned bit;
} TREES[] = {{"scripts", MW_WATCH_SCRIPTS}, {"views", MW_WATCH_VIEWS}, {"public", MW_WATCH_PUBLIC}};

static void maybe_free(mw_watch *w) {
  if (!w->stopping || w->closing) return;
  for (int i = 0; i < w->nnames; i++) free(w->names[i]);
  free(w->root);
  free(w);
}

static void on_dir_closed(uv_handle_t *h) {
  wdir *d = h->data;
  mw_watch *w = d->w;
  free(d->rel);
  free(d);
  w->closing--;
  maybe_free(w);
}

static void on_timer_closed(uv_handle_t *h) {
  mw_watch *w = h->data;
  w->closing--;
  maybe_free(w);
}

/* Names an editor writes on the side, not the file being edited. */
static bool ignored(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || name[0] == '.' || name[n - 1] == '~' || strcmp(name, "4913") == 0) return true;
  static const char *tails[] = {".swp", ".swx", ".swo", ".tmp", ".kate-swp", NULL};
  for (int i = 0; tails[i]; i++) {
    size_t t = strlen(tails[i]);
    if (n > t && strcmp(name + n - t, tails[i]) == 0) return true;
  }
  return false;
}

static bool ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), t = strlen(tail);
  return n >= t && strcmp(s + n - t, tail) == 0;
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status);

static wdir *find_dir(mw_watch *w, const char *rel) {
  for (wdir *d = w->dirs; d; d = d->next)
    if (strcmp(d->rel, rel) == 0) return d;
  return NULL;
}

static void add_dir(mw_watch *w, unsigned tree, const char *rel) {
  wdir *d = find_dir(w, rel);
  if (d) {
    d->seen = true;
    return;
  }
  if (w->ndirs >= MAX_DIRS) return;
  d = calloc(1, sizeof *d);
  if (!d) return;
  d->w = w;
  d->tree = tree;
  d->rel = strdup(rel);
  d->seen = true;
  char abs[4096];
  snprintf(abs, sizeof abs, "%s/%s", w->root, rel);
  if (!d->rel || uv_fs_event_init(w->loop, &d->ev)) {
    free(d->rel);
    free(d);
    return;
  }
  d->ev.data = d;
  int r = uv_fs_event_start(&d->ev, on_change, abs, 0);
  if (r) {
    mw_log(MW_LOG_WARN, "watch: cannot watch %s: %s", rel, uv_strerror(r));
    w->closing++;
    uv_close((uv_handle_t *)&d->ev, on_dir_closed);
    return;
  }
  d->next = w->dirs;
  w->dirs = d;
  w->ndirs++;
}

/* Walks rel (a directory under the root) and everything below it. */
static void scan(mw_watch *w, unsigned tree, const char *rel, int depth) {
  char abs[4096];
  snprintf(abs, sizeof abs, "%s/%s", w->root, rel);
  struct stat sb;
  if (stat(abs, &sb) || !S_ISDIR(sb.st_mode)) return;
  add_dir(w, tree, rel);
  if (depth > 16) return;
  DIR *dir = opendir(abs);
  if (!dir) return;
  struct dirent *e;
  while ((e = readdir(dir))) {
    if (e->d_name[0] == '.') continue;
    char sub[4096];
    int n = snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
    if (n < 0 || (size_t)n >= sizeof sub) continue;
    char subabs[8192];
    snprintf(subabs, sizeof subabs, "%s/%s", w->root, sub);
    if (stat(subabs, &sb) == 0 && S_ISDIR(sb.st_mode)) scan(w, tree, sub, depth + 1);
  }
  closedir(dir);
}

/* Brings the watchers in line with the directories that exist now. */
static void rescan(mw_watch *w) {
  for (wdir *d = w->dirs; d; d = d->next) d->seen = false;
  for (size_t i = 0; i < sizeof TREES / sizeof TREES[0]; i++) scan(w, TREES[i].bit, TREES[i].name, 0);
  for (wdir **p = &w->dirs; *p;) {
    wdir *d = *p;
    if (d->seen) {
      p = &d->next;
      continue;
    }
    *p = d->next;
    w->ndirs--;
    w->closing++;
    uv_close((uv_handle_t *)&d->ev, on_dir_closed);
  }
}

static void on_settled(uv_timer_t *t) {
  mw_watch *w = t->data;
  rescan(w);
  mw_watch_event ev = {.what = w->what, .css_only = !w->non_css, .nnames = w->nnames, .more = w->more};
  for (int i = 0; i < w->nnames; i++) ev.names[i] = w->names[i];
  w->what = 0;
  w->non_css = false;
  w->more = 0;
  int n = w->nnames;
  w->nnames = 0;
  if (ev.what) w->cb(w->ud, &ev);
  for (int i = 0; i < n; i++) free(w->names[i]);
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status) {
  (void)events;
  wdir *d = h->data;
  mw_watch *w = d->w;
  if (w->stopping) return;
  if (status == 0 && filename && ignored(filename)) return;
  w->what |= d->tree;
  if (d->tree == MW_WATCH_PUBLIC && !(filename && ends_with(filename, ".css"))) w->non_css = true;
  if (filename) {
    char rel[4096];
    snprintf(rel, sizeof rel, "%s/%s", d->rel, filename);
    bool dup = false;
    for (int i = 0; i < w->nnames && !dup; i++) dup = strcmp(w->names[i], rel) == 0;
    if (!dup) {
      if (w->nnames < MW_WATCH_MAX_NAMES) {
        char *copy = strdup(rel);
        if (copy) w->names[w->nnames++] = copy;
      } else {
        w->more++;
      }
    }
  }
  uv_timer_start(&w->debounce, on_settled, w->debounce_ms, 0);
}

int mw_watch_start(mw_watch **out, uv_loop_t *loop, const char *root, unsigned debounce_ms, mw_watch_cb cb,
                   void *ud) {
  mw_watch *w = calloc(1, sizeof *w);
  if (!w) return UV_ENOMEM;
  w->root = strdup(root);
  if (!w->root) {
    free(w);
    return UV_ENOMEM;
  }
  w->loop = loop;
  w->debounce_ms = debounce_ms;
  w->cb = cb;
  w->ud = ud;
  uv_timer_init(loop, &w->debounce);
  w->debounce.data = w;
  rescan(w);
  *out = w;
  return 0;
}

void mw_watch_stop(mw_watch *w) {
  if (!w || w->stopping) return;
  w->stopping = true;
  for (wdir *d = w->dirs, *next; d; d = next) {
    next = d->next;
    w->closing++;
    uv_close((uv_handle_t *)&d->ev, on_dir_closed);
  }
  w->dirs = NULL;
  w->closing++;
  uv_close((uv_handle_t *)&w->debounce, on_timer_closed);
}
