/* newapp.c — see newapp.h. The skeleton's files are embedded from
 * core/embedded/skeleton; {{NAME}}, {{MOONWIRE}}, {{LUA_DIR}} and {{LIB_DIR}} in them
 * become the app's name, this binary and where moonwire.testing lives. */
#include "newapp.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "embedded.h"
#include "mw.h"

/* mkdir -p for the directories of path (not its last component). */
static int make_parents(const char *path) {
  char buf[PATH_MAX * 2];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) && errno != EEXIST) return -errno;
    *p = '/';
  }
  return 0;
}

static bool is_empty_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return false;
  struct dirent *e;
  bool empty = true;
  while (empty && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
  closedir(d);
  return empty;
}

/* text with every {{KEY}} of keys replaced by its value. */
static void fill(mw_str *out, const char *text, size_t len, const char *keys[][2]) {
  const char *end = text + len;
  while (text < end) {
    const char *open = strstr(text, "{{");
    if (!open || open >= end) {
      mw_str_append(out, text, (size_t)(end - text));
      return;
    }
    mw_str_append(out, text, (size_t)(open - text));
    bool done = false;
    for (int i = 0; keys[i][0] && !done; i++) {
      size_t k = strlen(keys[i][0]);
      if (strncmp(open + 2, keys[i][0], k) == 0 && strncmp(open + 2 + k, "}}", 2) == 0) {
        mw_str_appendz(out, keys[i][1]);
        text = open + 4 + k;
        done = true;
      }
    }
    if (!done) {
      mw_str_append(out, "{{", 2);
      text = open + 2;
    }
  }
}

/* Writes root/rel (dir/rel in what is printed) with data, {{KEY}}s filled
 * when keys is given. Returns 0, or 1 after saying why. */
static int write_file(const char *root, const char *dir, const char *rel, const char *data, size_t len,
                      const char *keys[][2]) {
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  mw_str text = {0};
  if (keys) fill(&text, data, len, keys);
  else mw_str_append(&text, data, len);
  FILE *f = make_parents(path) == 0 ? fopen(path, "wx") : NULL;
  if (!f || fwrite(text.p, 1, text.len, f) != text.len) {
    fprintf(stderr, "moonwire new: cannot write %s: %s\n", path, strerror(errno));
    if (f) fclose(f);
    mw_str_free(&text);
    return 1;
  }
  fclose(f);
  mw_str_free(&text);
  printf("  created %s/%s\n", dir, rel);
  return 0;
}

int mw_new_app(const char *dir, const char *template) {
  if (template) {
    bool known = false;
    for (const mw_embedded *e = mw_embedded_templates; e->module && !known; e++) known = !strcmp(e->module, template);
    if (!known) {
      fprintf(stderr, "moonwire new: no template \"%s\" (there are: chat, pets)\n", template);
      return 2;
    }
  }
  struct stat sb;
  if (stat(dir, &sb) == 0 && !(S_ISDIR(sb.st_mode) && is_empty_dir(dir))) {
    fprintf(stderr, "moonwire new: %s already exists and is not an empty directory\n", dir);
    return 1;
  }
  if (mkdir(dir, 0755) && errno != EEXIST) {
    fprintf(stderr, "moonwire new: cannot create %s: %s\n", dir, strerror(errno));
    return 1;
  }
  char root[PATH_MAX], exe[PATH_MAX], libdir[PATH_MAX + 8];
  if (!realpath(dir, root)) {
    fprintf(stderr, "moonwire new: %s: %s\n", dir, strerror(errno));
    return 1;
  }
  size_t len = sizeof exe;
  if (uv_exepath(exe, &len)) snprintf(exe, sizeof exe, "moonwire");
  snprintf(libdir, sizeof libdir, "%s", exe);
  char *slash = strrchr(libdir, '/');
  if (slash) snprintf(slash, sizeof libdir - (size_t)(slash - libdir), "/lua");
  const char *name = strrchr(root, '/') ? strrchr(root, '/') + 1 : root;
  const char *keys[][2] = {{"NAME", name},
                           {"MOONWIRE", exe},
                           {"LUA_DIR", MW_SOURCE_DIR "/core/embedded/lua"},
                           {"LIB_DIR", libdir},
                           {NULL, NULL}};

  /* With a template, the skeleton gives only its top-level files (Makefile,
   * README.md, .busted, .gitignore); the app itself is the template's. */
  for (const mw_embedded *e = mw_embedded_skeleton; e->module; e++) {
    if (template && strchr(e->file, '/')) continue;
    if (write_file(root, dir, e->file, e->data, e->len, keys)) return 1;
  }
  for (const mw_embedded *e = template ? mw_embedded_templates : NULL; e && e->module; e++) {
    if (strcmp(e->module, template)) continue;
    bool own = e->file[0] == '+'; /* the template's own file: {{KEY}}s are filled */
    if (write_file(root, dir, e->file + own, e->data, e->len, own ? keys : NULL)) return 1;
  }
  printf("\nA new moonwire app in %s%s%s. Next:\n\n  cd %s\n  make run     # http://localhost:3000\n  make test    # "
         "the specs, with busted\n",
         dir, template ? ", from the example " : "", template ? template : "", dir);
  return 0;
}
