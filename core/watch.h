/* watch.h — watches the app's scripts/, views/ and public/ for changes
 * (libuv fs events on every directory of each tree, since inotify is not
 * recursive) and reports them once things settle (debounced). */
#ifndef MW_WATCH_H
#define MW_WATCH_H

#include <stdbool.h>
#include <uv.h>

enum { MW_WATCH_SCRIPTS = 1, MW_WATCH_VIEWS = 2, MW_WATCH_PUBLIC = 4 };

#define MW_WATCH_MAX_NAMES 8

typedef struct mw_watch_event {
  unsigned what;          /* MW_WATCH_* bits of the trees that changed */
  bool css_only;          /* public/ changes were all stylesheets */
  int nnames;             /* changed files (relative to the root), at most MW_WATCH_MAX_NAMES */
  int more;               /* how many more changed beyond those */
  const char *names[MW_WATCH_MAX_NAMES];
} mw_watch_event;

typedef void (*mw_watch_cb)(void *ud, const mw_watch_event *ev);

typedef struct mw_watch mw_watch;

/* Starts watching under root; cb runs on the loop debounce_ms after the last
 * change of a burst (an editor's save is often several events). A tree
 * that does not exist is skipped; directories created inside a watched tree
 * are picked up. Returns 0 or a negative libuv error. */
int mw_watch_start(mw_watch **out, uv_loop_t *loop, const char *root, unsigned debounce_ms, mw_watch_cb cb,
                   void *ud);
/* Stops watching; the memory goes once libuv has closed the handles. */
void mw_watch_stop(mw_watch *w);

#endif
