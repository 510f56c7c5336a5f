/* test_template.c — the template compiler (template.c), its Lua binding
 * (l_template.c) and the view runtime (core/embedded/lua/moonwire/view.lua). Templates
 * are compiled and then run in a real Lua state, so the tests check what a
 * page renders, not what the generated code looks like. */
#include "template.h"

#include <errno.h>
#include <ftw.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* Like CHECK, also printing the two strings involved. */
#define CHECK_STR(got, glen, want, wlen)                                          \
  do {                                                                            \
    if ((glen) == (wlen) && memcmp((got), (want), (wlen)) == 0) {                 \
      passed++;                                                                   \
    } else {                                                                      \
      failed++;                                                                   \
      fprintf(stderr, "%s:%d: expected \"%.*s\" (%zu bytes)\n   got \"%.*s\" (%zu bytes)\n", \
              __FILE__, __LINE__, (int)(wlen), (want), (size_t)(wlen), (int)(glen), (got), \
              (size_t)(glen));                                                    \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

static lua_State *TL; /* the state every test renders in */

/* The HTML escaping the runtime does, so the tests see what a page would. */
static int test_escape(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_pushliteral(L, "");
    return 1;
  }
  size_t n;
  const char *s = luaL_tolstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    switch (s[i]) {
      case '&': luaL_addstring(&b, "&amp;"); break;
      case '<': luaL_addstring(&b, "&lt;"); break;
      case '>': luaL_addstring(&b, "&gt;"); break;
      case '"': luaL_addstring(&b, "&quot;"); break;
      case '\'': luaL_addstring(&b, "&#39;"); break;
      default: luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* tostr as the runtime defines it: nil -> "", else tostring. */
static int test_tostr(lua_State *L) {
  if (lua_isnoneornil(L, 1)) lua_pushliteral(L, "");
  else luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Compiles and runs a template. env_lua is Lua code returning the fields of
 * the env table (NULL for none); the env falls back to _G. On success returns
 * 0 with the page in *out; otherwise -1 with the message in *out. The
 * compile-error line (0 if none) goes to *errline when not NULL. */
static int render(const char *tpl, size_t len, const char *env_lua, mw_str *out, int *errline) {
  mw_str src = {0};
  char err[256];
  int line = 0;
  mw_str_reset(out);
  int rc = tmpl_compile_ex(tpl, len, &src, err, sizeof err, &line);
  if (errline) *errline = line;
  if (rc) {
    mw_str_free(&src);
    mw_str_appendz(out, err);
    return -1;
  }
  int top = lua_gettop(TL);
  int status = luaL_loadbufferx(TL, src.p, src.len, "@views/t.html", "t");
  mw_str_free(&src);
  if (status == LUA_OK) {
    if (env_lua) {
      if (luaL_dostring(TL, env_lua) != LUA_OK) {
        fprintf(stderr, "env code failed: %s\n", lua_tostring(TL, -1));
        exit(1);
      }
    } else {
      lua_newtable(TL);
    }
    lua_newtable(TL); /* metatable: fall back to the globals */
    lua_pushglobaltable(TL);
    lua_setfield(TL, -2, "__index");
    lua_setmetatable(TL, -2);
    lua_pushcfunction(TL, test_escape);
    lua_pushcfunction(TL, test_tostr);
    lua_getglobal(TL, "table");
    lua_getfield(TL, -1, "concat");
    lua_remove(TL, -2);
    status = lua_pcall(TL, 4, 1, 0);
  }
  size_t n;
  const char *s = lua_tolstring(TL, -1, &n);
  if (s) mw_str_append(out, s, n);
  else mw_str_appendz(out, "(non-string result)");
  lua_settop(TL, top);
  return status == LUA_OK && s ? 0 : -1;
}

/* Renders tpl (a C string literal, NULs allowed) and expects want. */
#define CHECK_RENDER_ENV(tpl, env, want)                                  \
  do {                                                                    \
    mw_str out_ = {0};                                                    \
    int rc_ = render((tpl), sizeof(tpl) - 1, (env), &out_, NULL);         \
    if (rc_) fprintf(stderr, "render error: %s\n", out_.p);              \
    CHECK(rc_ == 0);                                                      \
    CHECK_STR(out_.p, out_.len, (want), sizeof(want) - 1);                \
    mw_str_free(&out_);                                                   \
  } while (0)
#define CHECK_RENDER(tpl, want) CHECK_RENDER_ENV(tpl, NULL, want)

/* Expects rendering to fail with a message containing `want`. */
static void check_fails(const char *file, int line, const char *tpl, size_t len,
                        const char *want) {
  mw_str out = {0};
  int rc = render(tpl, len, NULL, &out, NULL);
  if (rc == 0 || !out.p || !strstr(out.p, want)) {
    fprintf(stderr, "%s:%d: expected an error containing \"%s\", got %s \"%s\"\n", file, line,
            want, rc ? "error" : "success", out.p ? out.p : "");
    failed++;
    exit(1);
  }
  passed++;
  mw_str_free(&out);
}
#define CHECK_FAILS(tpl, want) check_fails(__FILE__, __LINE__, (tpl), sizeof(tpl) - 1, (want))

static void test_text(void) {
  CHECK_RENDER("", "");
  CHECK_RENDER("hello", "hello");
  CHECK_RENDER("hello\nworld\n", "hello\nworld\n");
  CHECK_RENDER("\n\n\n", "\n\n\n");
  CHECK_RENDER("say \"hi\" \\ 'x' \\n \\\" \\\\", "say \"hi\" \\ 'x' \\n \\\" \\\\");
  /* control bytes, including one followed by digits that must not merge
   * into its \ddd escape */
  CHECK_RENDER("\x01" "23\x02\x7f\t\x1b[0m\f\v\a\b", "\x01" "23\x02\x7f\t\x1b[0m\f\v\a\b");
  CHECK_RENDER("a\0b\0" "1\0" "999\0", "a\0b\0" "1\0" "999\0");
  CHECK_RENDER("a]]b[[c]=]d[==[e]==]", "a]]b[[c]=]d[==[e]==]");
  CHECK_RENDER("\r", "\r");
  CHECK_RENDER("a\r\nb\rc\n\rd", "a\r\nb\rc\n\rd");
  CHECK_RENDER("a %> b > c % d", "a %> b > c % d");
  CHECK_RENDER("a < b <", "a < b <");
  CHECK_RENDER("<", "<");
  CHECK_RENDER("100%", "100%");
  CHECK_RENDER("h\xc3\xa9llo \xe2\x80\x94 \xe2\x9c\x93 \xf0\x9f\x98\x80",
               "h\xc3\xa9llo \xe2\x80\x94 \xe2\x9c\x93 \xf0\x9f\x98\x80");
  /* invalid UTF-8 is passed through as well */
  CHECK_RENDER("\xff\xfe\x80", "\xff\xfe\x80");
}

static void test_tags(void) {
  CHECK_RENDER_ENV("<p><%= x %></p>", "return {x = [[<b>&\"']]}", "<p>&lt;b&gt;&amp;&quot;&#39;</p>");
  CHECK_RENDER_ENV("<p><%- x %></p>", "return {x = [[<b>&\"']]}", "<p><b>&\"'</p>");
  CHECK_RENDER("<%=1+2%>|<%-1+2%>|<%= 'a' .. 'b' %>", "3|3|ab");
  CHECK_RENDER("<% local y = 2 %><%= y * 3 %>", "6");
  CHECK_RENDER("a<%# a comment %>b", "ab");
  CHECK_RENDER("a<%#%>b<%# <% nested-looking %>c", "abc");
  CHECK_RENDER("a<%# multi\nline\r\ncomment\n %>b", "ab");
  CHECK_RENDER("<%% x %>", "<% x %>");
  CHECK_RENDER("a <%%= b <%%%>", "a <%= b <%%>");
  CHECK_RENDER("<%%", "<%");
  CHECK_RENDER("<%%<%= 1 %><%%", "<%1<%");
  /* nil renders as nothing; only the first of several values is output */
  CHECK_RENDER("[<%= nothing %>|<%- nothing %>]", "[|]");
  CHECK_RENDER("<%= false %>|<%- true %>|<%= 1.5 %>", "false|true|1.5");
  CHECK_RENDER("<%= string.gsub('aa', 'a', 'b') %>|<%- string.gsub('aa', 'a', 'b') %>", "bb|bb");
  CHECK_RENDER("<%= (function() return nil, 2 end)() %>.", ".");
  /* code spanning lines, and a loop producing output */
  CHECK_RENDER("<%\nlocal t = {\n  1, 2,\n}\n%><%= #t %>", "2");
  CHECK_RENDER("<% for i = 1, 3 do %><%= i %>,<% end %>", "1,2,3,");
  CHECK_RENDER("<ul>\n<% for _, v in ipairs({'a', '<'}) do %>  <li><%= v %></li>\n<% end %></ul>",
               "<ul>\n  <li>a</li>\n  <li>&lt;</li>\n</ul>");
  CHECK_RENDER("<% if 1 > 2 then %>yes<% elseif false then %>no<% else %>else<% end %>", "else");
  /* code that starts with a paren after a statement, where a missing ";"
   * would turn it into a call of the previous value */
  CHECK_RENDER("<% local f = print %><% (function() end)() %>ok", "ok");
  CHECK_RENDER("<% local s = 'x' %>\n<% (s):upper() %>", "\n");
}

static void test_trim(void) {
  CHECK_RENDER("<% if true then -%>\nyes\n<% end -%>\nafter", "yes\nafter");
  CHECK_RENDER("<% if true then -%>\r\nyes\r\n<% end -%>\r\nafter", "yes\r\nafter");
  CHECK_RENDER("<%= 1 -%>\n\nX", "1\nX");       /* only one newline */
  CHECK_RENDER("<%= 1 -%>", "1");               /* at the end */
  CHECK_RENDER("<%= 1 -%> x\n", "1 x\n");       /* nothing to trim */
  CHECK_RENDER("<%- 'a' -%>\nb", "ab");
  CHECK_RENDER("<%# c -%>\nb", "b");
  CHECK_RENDER("<%= 1 -%>\rb", "1\rb");         /* a lone \r is not trimmed */
  CHECK_RENDER("a\n<%%-%>\nb", "a\n<%-%>\nb"); /* <%% is text: no trim */
}

/* Expressions and code whose last line is a Lua comment must still work:
 * the comment would otherwise swallow the generated code after it. */
static void test_comments_in_code(void) {
  CHECK_RENDER("<%= 1 + 1 -- two %>", "2");
  CHECK_RENDER("<%- 'a' -- raw -%>\nb", "ab");
  CHECK_RENDER("<% x = 5 -- set %><%= x %>", "5");
  CHECK_RENDER("<% -- only a comment %>ok", "ok");
  CHECK_RENDER("<%= 1 -- it's \"quoted\" %>", "1");
  CHECK_RENDER("<%= 'a--b' %>|<%= \"--\" .. 'x' -- c %>", "a--b|--x");
  CHECK_RENDER("<%= [[a--b]] %>|<%= [==[c]]--d]==] %>", "a--b|c]]--d");
  CHECK_RENDER("<%= 1 --[[ long ]] + 1 %>|<%= 2 --[==[ a\nb ]==] + 2 %>", "2|4");
  CHECK_RENDER("<%= 1 -- c\n + 1 %>", "2");
  CHECK_RENDER("<%= 'a\\'--' -- c %>", "a&#39;--");
  CHECK_RENDER("<%= 'a\\\nb' -- c %>", "a\nb");
  CHECK_RENDER("<%= ('x'):rep(2) --[[ c ]] -- d %>", "xx");
  CHECK_RENDER("<% for i = 1, 2 do -- loop\n%><%= i %><% end -- done %>", "12");
}

static void test_errors(void) {
  mw_str out = {0};
  int line = 0;
  const char t1[] = "line1\nline2\n<% foo\nbar";
  CHECK(render(t1, sizeof t1 - 1, NULL, &out, &line) == -1);
  CHECK(strcmp(out.p, "unclosed <% tag opened at line 3") == 0);
  CHECK(line == 3);
  const char t2[] = "<%= x";
  CHECK(render(t2, sizeof t2 - 1, NULL, &out, &line) == -1);
  CHECK(strcmp(out.p, "unclosed <%= tag opened at line 1") == 0);
  CHECK(line == 1);
  const char t3[] = "a\r\nb\r\n<%# comment <%= x %> %>\n<%-";
  CHECK(render(t3, sizeof t3 - 1, NULL, &out, &line) == -1);
  CHECK(strcmp(out.p, "unclosed <%- tag opened at line 4") == 0);
  const char t4[] = "x <%";
  CHECK(render(t4, sizeof t4 - 1, NULL, &out, &line) == -1);
  CHECK(line == 1);
  const char t5[] = "a\n<%= %>";
  CHECK(render(t5, sizeof t5 - 1, NULL, &out, &line) == -1);
  CHECK(strcmp(out.p, "empty expression in <%= tag at line 2") == 0);
  CHECK(line == 2);
  CHECK_FAILS("<%- -- nothing %>", "empty expression in <%- tag at line 1");
  CHECK_FAILS("\n<%= [[abc %> ]] x", "unfinished long string or comment in <%= tag at line 2");
  CHECK_FAILS("<% --[[ abc %> ]] x", "unfinished long string or comment in <% tag at line 1");
  mw_str_free(&out);

  /* err may be NULL or tiny */
  mw_str src = {0};
  CHECK(tmpl_compile("<%", 2, &src, NULL, 0) == -EINVAL);
  char small[8];
  CHECK(tmpl_compile("<%", 2, &src, small, sizeof small) == -EINVAL);
  CHECK(strlen(small) == sizeof small - 1);
  mw_str_free(&src);
}

/* Lua errors, at load or at run time, must name the template line. */
static void test_line_numbers(void) {
  CHECK_FAILS("a\nb\nc\nd\n<% error('boom') %>", "views/t.html:5: boom");
  CHECK_FAILS("a\r\nb\r\nc\r\nd\r\n<% error('boom') %>", "views/t.html:5: boom");
  CHECK_FAILS("a\rb\rc\rd\r<% error('boom') %>", "views/t.html:5: boom");
  CHECK_FAILS("<%# one\ntwo\nthree %>\n\n<% error('boom') %>", "views/t.html:5: boom");
  CHECK_FAILS("<% local a = 1\n\n%><%= a %>\n<%- a -%>\n<% error('boom') %>",
              "views/t.html:5: boom");
  CHECK_FAILS("<% x = 1 -%>\r\n<% y = 2 -%>\n\n<%% \n<% error('boom') %>", "views/t.html:5: boom");
  CHECK_FAILS("<%= 'a' -- c %>\n<%= 'b' --[[\n\n]] %>\n<%= nil + 1 %>",
              "views/t.html:5: attempt to perform arithmetic on a nil value");
  CHECK_FAILS("\"\\\n\0\n\x01\n<%= [[\n]] %>\n<%= {} .. '' %>", "views/t.html:6:");
  /* the code after a \r\n-terminated text keeps its line even when the code
   * itself starts with a line break */
  CHECK_FAILS("a\r\n<%\r\nerror('boom') %>", "views/t.html:3: boom");
  CHECK_FAILS("a\n<%\rerror('boom') %>", "views/t.html:3: boom");
  CHECK_FAILS("a\n<%-\r\nnil + 1 %>", "views/t.html:3:");
  /* syntax errors at load time */
  CHECK_FAILS("a\n\n<% if %>", "views/t.html:3:");
  CHECK_FAILS("a\n<% for i = 1, 2 do %>\nx\n", "views/t.html:4:"); /* 'end' expected at EOF */
  CHECK_FAILS("\n<%= 'abc %>", "views/t.html:2: unfinished string");
}

static void test_long(void) {
  mw_str tpl = {0}, want = {0}, out = {0};
  int lines = 20000;
  for (int i = 1; i <= lines; i++) {
    mw_str_appendf(&tpl, "line %d \"q\" <%%= %d * 2 %%> <%%- 'r' -%%>\n<%% if %d %% 2 == 0 then %%>even\n<%% end %%>", i, i, i);
    mw_str_appendf(&want, "line %d \"q\" %d r%s", i, i * 2, i % 2 == 0 ? "even\n" : "");
  }
  CHECK(render(tpl.p, tpl.len, NULL, &out, NULL) == 0);
  CHECK_STR(out.p, out.len, want.p, want.len);

  /* one huge literal, and an error after it on the right line */
  mw_str_reset(&tpl);
  for (int i = 0; i < 100000; i++) mw_str_appendz(&tpl, "0123456789\n");
  mw_str_appendz(&tpl, "<% error('end') %>");
  CHECK(render(tpl.p, tpl.len, NULL, &out, NULL) == -1);
  CHECK(strstr(out.p, "views/t.html:100001: end") != NULL);

  /* many tags on one line */
  mw_str_reset(&tpl);
  for (int i = 0; i < 50000; i++) mw_str_appendz(&tpl, "<%= 1 %>");
  CHECK(render(tpl.p, tpl.len, NULL, &out, NULL) == 0);
  CHECK(out.len == 50000);
  mw_str_free(&tpl);
  mw_str_free(&want);
  mw_str_free(&out);
}

/* The Lua binding: compile(src, chunkname) -> function | nil, message. */
static void test_binding(void) {
  luaL_requiref(TL, "moonwire.template_c", luaopen_moonwire_template_c, 0);
  lua_pop(TL, 1);
  const char *script =
      "local t = require 'moonwire.template_c'\n"
      "local fn = assert(t.compile('<%= x %>!', '@views/a.html'))\n"
      "assert(type(fn) == 'function')\n"
      "local env = setmetatable({x = 'y'}, {__index = _G})\n"
      "assert(fn(env, tostring, tostring, table.concat) == 'y!')\n"
      "local f2, err = t.compile('a\\n<% if %>', '@views/b.html')\n"
      "assert(f2 == nil and err:find('^views/b.html:2:'), err)\n"
      "f2, err = t.compile('a\\n\\n<%= x', '@views/c.html')\n"
      "assert(f2 == nil and err == 'views/c.html:3: unclosed <%= tag opened at line 3', err)\n"
      "f2, err = t.compile('<%= nil + 1 %>')\n"
      "local ok, rerr = pcall(f2, {}, tostring, tostring, table.concat)\n"
      "assert(not ok and rerr:find('^template:1:'), rerr)\n"
      "assert(not pcall(t.compile))\n";
  if (luaL_dostring(TL, script) != LUA_OK) {
    fprintf(stderr, "%s:%d: binding script failed: %s\n", __FILE__, __LINE__, lua_tostring(TL, -1));
    exit(1);
  }
  passed++;
}

#ifdef MW_SOURCE_DIR
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* view.lua end to end, against real files in a temporary views directory. */
static const char view_script[] =
    "local view, root = ...\n"
    "view.root = root\n"
    "local function write(name, s)\n"
    "  local f = assert(io.open(root .. '/' .. name .. '.html', 'wb')); f:write(s); f:close()\n"
    "end\n"
    "local function eq(got, want)\n"
    "  if got ~= want then error(string.format('expected %q, got %q', want, got), 2) end\n"
    "end\n"
    "local function fails(want, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then error('expected an error containing ' .. want, 2) end\n"
    "  if type(err) ~= 'string' or not err:find(want, 1, true) then\n"
    "    error(string.format('expected an error containing %q, got %q', want, tostring(err)), 2)\n"
    "  end\n"
    "end\n"
    /* escape */
    "eq(view.escape([[&<>\"']]), '&amp;&lt;&gt;&quot;&#39;')\n"
    "eq(view.escape(nil), ''); eq(view.escape(12), '12'); eq(view.escape(false), 'false')\n"
    "assert(view.escape({}):find('^table: '))\n"
    "eq(view.escape('plain'), 'plain')\n"
    /* no layout file yet: a missing default layout is fine */
    "write('hello', 'Hello <%= name %>!')\n"
    "eq(view.render('hello', {name = '<Bob>'}), 'Hello &lt;Bob&gt;!')\n"
    "eq(view.render('hello'), 'Hello !')\n"
    /* lookup order: locals, helpers, globals; false locals are kept */
    "write('globals', \"<%= string.upper(x) %> <% for _, v in ipairs(list) do %><%= v %>;<% end %>"
    " <%- escape('<') %> <%= print %> <%= tostring(flag) %> <%- type(include) %>\")\n"
    "eq(view.render('globals', {x = 'a', list = {1, 2}, print = 'shadowed', flag = false}),"
    "   'A 1;2; &lt; shadowed false function')\n"
    /* assignments stay in the render */
    "write('assign', '<% leaked_name = 1 %><%= leaked_name %>')\n"
    "eq(view.render('assign'), '1'); assert(leaked_name == nil)\n"
    /* include: given locals over the caller's; output raw with <%- */
    "assert(os.execute('mkdir -p ' .. root .. '/partials ' .. root .. '/layouts'))\n"
    "write('partials/item', '<i><%= label %>|<%= page %></i>')\n"
    "write('list', \"<% for _, l in ipairs(items) do %><%- include('partials/item', {label = l}) %><% end %>"
    "<%- include('partials/item') %><%= include('partials/item') %>\")\n"
    "eq(view.render('list', {items = {'a', '<b>'}, page = 'P', label = 'L'}),"
    "   '<i>a|P</i><i>&lt;b&gt;|P</i><i>L|P</i>&lt;i&gt;L|P&lt;/i&gt;')\n"
    "write('badinc', \"x\\n<%- include('partials/nope') %>\")\n"
    "fails('views/badinc.html:2: view not found: views/partials/nope.html', view.render, 'badinc')\n"
    "write('loop', \"<%- include('loop') %>\")\n"
    "fails('views/loop.html:1: views included more than 64 deep', view.render, 'loop')\n"
    "write('badarg', \"<%- include('hello', 5) %>\")\n"
    "fails('views/badarg.html:1: include: locals must be a table', view.render, 'badarg')\n"
    /* layouts */
    "write('layout', '<html><%- body %>|<%= title %></html>')\n"
    "view.clear_cache() -- its absence was cached\n"
    "eq(view.render('hello', {name = 'x', title = '<T>'}), '<html>Hello x!|&lt;T&gt;</html>')\n"
    "eq(view.render('hello', {name = 'x', body = 'no'}), '<html>Hello x!|</html>')\n"
    "eq(view.render('hello', {name = 'x', layout = false}), 'Hello x!')\n"
    "eq(view.render('hello', {name = 'x'}, {layout = false}), 'Hello x!')\n"
    "write('layouts/admin', '<admin><%- body %></admin>')\n"
    "eq(view.render('hello', {name = 'x', layout = 'layouts/admin'}), '<admin>Hello x!</admin>')\n"
    "eq(view.render('hello', {name = 'x'}, {layout = 'layouts/admin'}), '<admin>Hello x!</admin>')\n"
    "eq(view.render('hello', {name = 'x', layout = 'layouts/admin'}, {layout = false}), 'Hello x!')\n"
    "eq(view.render('hello', {name = 'x', layout = false}, {}), 'Hello x!')\n"
    "fails('view not found: views/layouts/nope.html', view.render, 'hello', {layout = 'layouts/nope'})\n"
    "fails('layout must be a string or false', view.render, 'hello', {layout = 5})\n"
    "eq(view.render('list', {items = {}, label = 1, page = 2, layout = false}),"
    "   '<i>1|2</i>&lt;i&gt;1|2&lt;/i&gt;')\n"
    /* names and existence */
    "fails('view not found: views/nope.html', view.render, 'nope')\n"
    "fails('invalid view name', view.render, '../etc/passwd')\n"
    "fails('invalid view name', view.render, '/etc/passwd')\n"
    "fails('invalid view name', view.render, 'a/../b')\n"
    "fails('view name must be a non-empty string', view.render, '')\n"
    "fails('view name must be a non-empty string', view.render, nil)\n"
    "fails('locals must be a table', view.render, 'hello', 'x')\n"
    "assert(view.exists('hello') and view.exists('partials/item') and view.exists('layouts/admin'))\n"
    "assert(not view.exists('nope') and not view.exists('partials') and not view.exists('../x'))\n"
    "assert(not view.exists(nil) and not view.exists('/etc/passwd'))\n"
    /* template errors and runtime errors carry the file and line */
    "write('bad', 'a\\nb\\n<% if %>')\n"
    "fails('views/bad.html:3:', view.render, 'bad')\n"
    "write('unclosed', 'a\\n<%= x')\n"
    "fails('views/unclosed.html:2: unclosed <%= tag opened at line 2', view.render, 'unclosed')\n"
    "write('boom', '1\\n2\\n3\\n4\\n<% error(\"kaboom\") %>')\n"
    "fails('views/boom.html:5: kaboom', view.render, 'boom')\n"
    "write('boomwrap', \"x\\n<%- include('boom') %>\")\n"
    "fails('views/boom.html:5: kaboom', view.render, 'boomwrap', {layout = false})\n"
    "write('boomlayout', '<%- body %>\\n<%= nil .. 1 %>')\n"
    "fails('views/boomlayout.html:2:', view.render, 'hello', {layout = 'boomlayout'})\n"
    /* caching */
    "view.cache = true; view.clear_cache()\n"
    "eq(view.render('hello', {name = 1, layout = false}), 'Hello 1!')\n"
    "write('hello', 'Changed <%= name %>')\n"
    "eq(view.render('hello', {name = 1, layout = false}), 'Hello 1!')\n"
    "view.clear_cache()\n"
    "eq(view.render('hello', {name = 1, layout = false}), 'Changed 1')\n"
    "view.cache = false\n"
    "write('hello', 'Again <%= name %>')\n"
    "eq(view.render('hello', {name = 1, layout = false}), 'Again 1')\n"
    "assert(os.remove(root .. '/layout.html'))\n"
    "eq(view.render('hello', {name = 1}), 'Again 1')\n"
    "view.cache = true; view.clear_cache()\n"
    "eq(view.render('hello', {name = 1}), 'Again 1')\n"
    "write('layout', '[<%- body %>]')\n"
    "eq(view.render('hello', {name = 1}), 'Again 1')\n"  /* absence is cached */
    "view.clear_cache()\n"
    "eq(view.render('hello', {name = 1}), '[Again 1]')\n";

static void test_view_lua(void) {
  char root[] = "/tmp/mw_test_template_XXXXXX";
  CHECK(mkdtemp(root) != NULL);
  luaL_requiref(TL, "moonwire.template_c", luaopen_moonwire_template_c, 0);
  lua_pop(TL, 1);
  /* view.lua's own requires (moonwire.escape) come from the source tree. */
  int ok = luaL_dostring(TL, "package.path = '" MW_SOURCE_DIR "/core/embedded/lua/?.lua;' .. package.path") == LUA_OK;
  ok = ok && luaL_loadfile(TL, MW_SOURCE_DIR "/core/embedded/lua/moonwire/view.lua") == LUA_OK;
  if (ok) {
    lua_pushliteral(TL, "moonwire.view");
    ok = lua_pcall(TL, 1, 1, 0) == LUA_OK;
  }
  if (ok) ok = luaL_loadbufferx(TL, view_script, sizeof view_script - 1, "=view_script", "t") == LUA_OK;
  if (ok) {
    lua_insert(TL, -2); /* script, view */
    lua_pushstring(TL, root);
    ok = lua_pcall(TL, 2, 0, 0) == LUA_OK;
  }
  if (!ok) fprintf(stderr, "%s:%d: view.lua test failed: %s\n", __FILE__, __LINE__, lua_tostring(TL, -1));
  nftw(root, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  CHECK(ok);
  lua_settop(TL, 0);
}
#endif

int main(void) {
  TL = luaL_newstate();
  luaL_openlibs(TL);
  test_text();
  test_tags();
  test_trim();
  test_comments_in_code();
  test_errors();
  test_line_numbers();
  test_long();
  test_binding();
#ifdef MW_SOURCE_DIR
  test_view_lua();
#endif
  lua_close(TL);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
