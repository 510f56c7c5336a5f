-- moonwire.app: routes, settings, and the path every HTTP request takes
-- through Lua. The C core calls app._dispatch(ex, ...) for each request,
-- with the request's parts as arguments; ex is the C handle that finishes
-- the response. The rest lives beside it under moonwire.app.*:
--   router    the route table          request   req        response  res
--   settings  app.set's values          csrf      CSRF tokens
--   session   req.session, req:flash    validate  app.validate
--   text      URL encoding, form bodies, cookies, HTML escaping
-- and the coroutines handlers run in are moonwire.runner.
local core = require "moonwire.core"
local view = require "moonwire.view"
local json = require "moonwire.json"
local runner = require "moonwire.runner"
local router = require "moonwire.app.router"
local settings = require "moonwire.app.settings"
local csrf = require "moonwire.app.csrf"
local session = require "moonwire.app.session"
local validate = require "moonwire.app.validate"
local text = require "moonwire.app.text"
local request = require "moonwire.app.request"
local response = require "moonwire.app.response"

local app = {}

view.root = core.root .. "/views"

app.url_decode, app.url_encode, app.parse_urlencoded = text.url_decode, text.url_encode, text.parse_urlencoded

-- Decodes JSON (nil and a message when it does not parse): moonwire.json's
-- decode, whole numbers as integers.
app.json_decode = json.decode

-- ---------------------------------------------------------------- routes

local match = router.match

for _, m in ipairs(router.METHODS) do
  app[m:lower()] = function(path, fn)
    router.add(m, path, fn)
    return app
  end
end
app.del = app.delete

-- app.all(path, fn): every method
function app.all(path, fn)
  for _, m in ipairs(router.METHODS) do router.add(m, path, fn) end
  return app
end

-- ---------------------------------------------------------------- settings

-- app.set(name, value): see moonwire.app.settings.
function app.set(name, value)
  settings.set(name, value, 2)
  return app
end

-- app.configure{ csrf = true, secret = "...", etag = false, session = {...} }:
-- several settings at once.
function app.configure(opts)
  assert(type(opts) == "table", "app.configure: expects a table of options")
  if opts.secret ~= nil and opts.secret ~= false then
    assert(type(opts.secret) == "string" and #opts.secret >= 16, "app.configure: secret must be a string of 16 bytes or more")
  end
  for k, v in pairs(opts) do
    if k == "csrf" then v = v and true or false end
    if k == "session" then session.check(v) end
    settings.set(k, v, 2)
  end
  return app
end

-- app.validate(values, rules): field errors, see moonwire.app.validate.
app.validate = validate.check

-- Hot reload (moonwire.reload): hands over the route tables and settings
-- and installs empty ones for the next generation; _restore_routes puts
-- them back.
function app._take_routes()
  local taken = router.take()
  taken.settings = settings.take()
  return taken
end

function app._restore_routes(taken)
  router.restore(taken)
  settings.restore(taken.settings)
end

-- ---------------------------------------------------------------- handlers

-- Every handler runs in a pooled coroutine (moonwire.runner); these names
-- stay for the framework's other modules and older apps.
app.PENDING = runner.PENDING
app._run = runner.run
app._after = runner.after
app._call = runner.call
app._current = runner.current
app._wait = runner.wait
app._resume = runner.resume
app._waiter = runner.waiter
local run, PENDING = runner.run, runner.PENDING

-- app.sleep(ms): waits ms milliseconds inside a handler.
function app.sleep(ms)
  assert(type(ms) == "number" and ms >= 0, "sleep: expects milliseconds")
  local wake, wait = runner.waiter("app.sleep")
  require("moonwire.timer")._after_system(ms, wake)
  return wait()
end

local function error_page(req, res, err)
  core.log("error", req.method .. " " .. req.url .. ": " .. tostring(err))
  if res._streaming and not res.finished then -- cut short: the client must not take it for complete
    res.finished = true
    res._ex:abort()
    return
  end
  if res.finished or res._ex:done() then return end
  rawset(req, "_sess", nil) -- what the failed handler did to the session is not kept
  res.headers = {}
  res.statusCode = 500
  -- Dev mode's details are for this machine's own browser only.
  local ip = req.ip or ""
  if core.dev and (ip:find("^127%.") or ip == "::1" or ip:find("^::ffff:127%.")) then
    local msg, trace = tostring(err):match("^(.-)\n(stack traceback:.*)$")
    msg = msg or tostring(err)
    local where = msg:match("^([^:]+:%d+):") or ""
    res.headers["Content-Type"] = "text/html; charset=utf-8"
    res:send(table.concat {
      "<!doctype html><html><head><meta charset=\"utf-8\"><title>500 Internal Server Error</title>",
      "<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#222}",
      "pre{background:#f6f6f6;padding:1rem;overflow:auto}h1{color:#b00020}</style></head><body>",
      "<h1>500 Internal Server Error</h1>",
      "<p><strong>", text.escape_html(msg), "</strong></p>",
      where ~= "" and ("<p>at <code>" .. text.escape_html(where) .. "</code></p>") or "",
      "<pre>", text.escape_html(trace or ""), "</pre>",
      "<p><small>moonwire dev mode: run with --production to hide this page.</small></p></body></html>",
    })
  else
    res.headers["Content-Type"] = "text/html; charset=utf-8"
    res:send("<!doctype html><title>500 Internal Server Error</title><h1>500 Internal Server Error</h1>")
  end
end

-- Called by the core for each HTTP request. Returns true when a route took
-- it; otherwise false and the Allow list when the path exists with other
-- methods (the core then tries public/ and answers 405 or 404).
function app._dispatch(ex, method, url, rawpath, querystring, body, ip, rawheaders)
  local req = request.new(method, url, rawpath, querystring, body, ip, rawheaders)
  local route, params = match(method, req.rawpath)
  if not route and method == "HEAD" then route, params = match("GET", req.rawpath) end
  if not route and method == "POST" then
    -- HTML forms can only GET and POST: a _method field overrides (PUT, PATCH, DELETE).
    local override = req.form._method or (req.query._method)
    if type(override) == "string" then
      override = override:upper()
      if override == "PUT" or override == "PATCH" or override == "DELETE" then
        route, params = match(override, req.rawpath)
        if route then
          rawset(req, "originalMethod", method)
          req.method = override
        end
      end
    end
  end
  if not route then
    if params then
      local list = {}
      for _, m in ipairs(router.METHODS) do if params[m] then list[#list + 1] = m end end
      if params.GET then table.insert(list, 2, "HEAD") end
      -- OPTIONS is answered on every path that has routes (below).
      if not params.OPTIONS then list[#list + 1] = "OPTIONS" end
      local allow = table.concat(list, ", ")
      if method == "OPTIONS" then
        -- What Express does when no OPTIONS route is there: 200, the
        -- path's methods in Allow and in the body.
        ex:finish(200, allow, { ["Allow"] = allow, ["Content-Type"] = "text/plain; charset=utf-8" })
        return true
      end
      return false, allow
    end
    return false
  end
  rawset(req, "params", params) -- not through Request's __newindex (req.session's)
  local res = response.new(ex)
  rawset(req, "_res", res)
  rawset(res, "_req", req)
  if settings.get("csrf") and not csrf.ok(req, rawget(req, "originalMethod") or method) then
    res.statusCode = 403
    local msg = "This form has expired or did not come from this site (invalid CSRF token). Reload the page and try again."
    if view.exists("403") then
      local fine = run(function() res:render("403", { title = "Forbidden", message = msg }) end)
      if fine == true then return true end
    end
    res.headers = { ["Content-Type"] = "text/plain; charset=utf-8" }
    res:send("403 Forbidden: " .. msg .. "\n")
    return true
  end
  local ok, err = run(route.fn, req, res)
  if ok == PENDING then -- the route waits (an ack, a timer): it answers later
    runner.after(err, function(done, e)
      if not done then
        error_page(req, res, e)
      elseif not ex:done() then
        error_page(req, res, "route " .. route.method .. " " .. route.path .. " returned without responding")
      end
    end)
  elseif not ok then
    error_page(req, res, err)
  elseif not ex:done() then
    error_page(req, res, "route " .. route.method .. " " .. route.path .. " returned without responding")
  end
  return true
end

-- Called by the core when nothing answered: views/404.html when it exists.
function app._not_found(ex, ...)
  local req = request.new(...)
  local res = response.new(ex)
  res.statusCode = 404
  if view.exists("404") then
    local ok, err = run(function() res:render("404", { title = "Not found", path = req.path }) end)
    if ok then return end
    core.log("error", "views/404.html: " .. tostring(err))
    if res._ex:done() then return end
  end
  res.headers["Content-Type"] = "text/plain; charset=utf-8"
  res:send("404 Not Found\n")
end

return app
