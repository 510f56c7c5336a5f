-- moonwire.app: routes, the request and response objects, and the path every
-- HTTP request takes through Lua. The C core calls app._dispatch(ex, ...) for
-- each request, with the request's parts as arguments (new_request makes
-- the req table of them); ex is the C handle that finishes the response.
local core = require "moonwire.core"
local view = require "moonwire.view"
local json = require "moonwire.json"
local escape = require "moonwire.escape"

local app = {}

view.root = core.root .. "/views"

-- ---------------------------------------------------------------- helpers

local url_decode, url_encode, escape_html = escape.url_decode, escape.url, escape.html
app.url_decode = url_decode
app.url_encode = url_encode

-- "a=1&b=2&b=3" → { a = "1", b = { "2", "3" } } (a repeated key becomes an array)
local function parse_urlencoded(s)
  local t = {}
  for pair in s:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = url_decode(k, true), url_decode(v, true)
    local prev = t[k]
    if prev == nil then
      t[k] = v
    elseif type(prev) == "table" then
      prev[#prev + 1] = v
    else
      t[k] = { prev, v }
    end
  end
  return t
end
app.parse_urlencoded = parse_urlencoded

-- Decodes JSON (nil and a message when it does not parse): moonwire.json's
-- decode, whole numbers as integers.
app.json_decode = json.decode

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- "a=1; b=x%20y" → { a = "1", b = "x y" } (the first of a repeated name wins, as in Express)
local function parse_cookies(header)
  local t = {}
  for pair in (header or ""):gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k and k ~= "" and t[k] == nil then
      if v:sub(1, 1) == '"' and v:sub(-1) == '"' and #v >= 2 then v = v:sub(2, -2) end
      t[k] = url_decode(v)
    end
  end
  return t
end

-- ---------------------------------------------------------------- routes

-- routes[i] = { method = "GET", path = "/pets/:id", pattern = "^/pets/([^/]+)$", keys = { "id" }, fn = fn }
local routes = {}
local exact = {}   -- exact["GET"]["/"] = route, for paths without parameters

local METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }

local function compile(path)
  if path == "*" then return "^(.*)$", { 1 } end
  local keys, n = {}, 0
  local pattern = path:gsub("[%^%$%(%)%.%[%]%+%-%?]", "%%%0")
  pattern = pattern:gsub("/:([%w_]+)", function(k)
    keys[#keys + 1] = k
    return "/([^/]+)"
  end)
  pattern = pattern:gsub("%*", function()
    n = n + 1
    keys[#keys + 1] = n
    return "(.*)"
  end)
  return "^" .. pattern .. "$", keys
end

local function add(method, path, fn)
  assert(type(path) == "string" and path:sub(1, 1) == "/" or path == "*",
    "route path must start with '/' (or be '*')")
  assert(type(fn) == "function", "route handler must be a function")
  local pattern, keys = compile(path)
  local r = { method = method, path = path, pattern = pattern, keys = keys, fn = fn }
  routes[#routes + 1] = r
  if #keys == 0 then
    exact[method] = exact[method] or {}
    exact[method][path] = exact[method][path] or r
  end
  return app
end

for _, m in ipairs(METHODS) do
  app[m:lower()] = function(path, fn) return add(m, path, fn) end
end
app.del = app.delete

-- app.all(path, fn): every method
function app.all(path, fn)
  for _, m in ipairs(METHODS) do add(m, path, fn) end
  return app
end

-- Settings, as Express's app.set: "etag" (true: a GET route's response
-- gets a weak ETag and 304 when the client's copy is fresh), "csrf" (forms
-- must carry req:csrfToken(), below), "secret" (what signs those tokens;
-- false: $MOONWIRE_SECRET, else one made at start). Each generation of the
-- app sets its own (a reload starts from the defaults).
local DEFAULTS = { etag = true, csrf = false, secret = false }
local settings = setmetatable({}, { __index = DEFAULTS })

function app.set(name, value)
  assert(type(name) == "string", "app.set: the setting's name must be a string")
  if DEFAULTS[name] == nil then error("app.set: no setting called " .. string.format("%q", name), 2) end
  settings[name] = value
  return app
end

-- Hot reload (moonwire.reload): hands over the route tables (and settings)
-- and installs empty ones for the next generation; _restore_routes puts
-- them back.
function app._take_routes()
  local taken = { routes = routes, exact = exact, settings = settings }
  routes, exact = {}, {}
  settings = setmetatable({}, { __index = DEFAULTS })
  return taken
end

function app._restore_routes(taken)
  routes, exact = taken.routes, taken.exact
  settings = taken.settings or settings
end

-- Finds the route for method + path. Returns route, params (nil for a path
-- without parameters: req.params is then made empty when first read); or
-- nil and the methods the path does answer to (for 405).
local function match(method, path)
  local by = exact[method]
  local r = by and by[path]
  if r then return r end
  local allowed
  for i = 1, #routes do
    r = routes[i]
    local caps = { path:match(r.pattern) }
    if caps[1] ~= nil then
      if r.method == method then
        local params = {}
        for j, k in ipairs(r.keys) do params[k] = url_decode(caps[j]) end
        return r, params
      end
      allowed = allowed or {}
      allowed[r.method] = true
    end
  end
  return nil, allowed
end

-- ---------------------------------------------------------------- requests

local Request = {}

-- A body over --body-buffer waits in a temporary file (the core spooled
-- it). Reads of it run off the loop while the handler waits; outside of a
-- handler (app._dispatch looking for a _method field) they are done at once.
local function read_spooled(ex, off, n)
  if not app._current() then
    local data, err = ex:read_body_now(off, n)
    if not data then error(err, 3) end
    return data
  end
  local wake, wait = app._waiter("reading the request body")
  ex:read_body(off, n, wake)
  local data, err = wait()
  if not data then error(err, 3) end
  return data
end

local CHUNK = 64 * 1024

local function read_all(ex, size)
  if size <= 16 * CHUNK then return read_spooled(ex, 0, size) end
  local parts, off = {}, 0
  while off < size do
    local data = read_spooled(ex, off, 16 * CHUNK)
    if data == "" then break end
    parts[#parts + 1] = data
    off = off + #data
  end
  return table.concat(parts)
end

-- The multipart/form-data fields and files (the core parsed them), or nil.
local function parts(req)
  local ex = rawget(req, "_rawheaders")
  if not ex then return nil end
  local fields, files = ex:parts()
  if fields then
    rawset(req, "form", fields)
    rawset(req, "files", files)
  end
  return fields, files
end

-- A reader of the request body, in pieces (req:bodyReader()): reader:read(n)
-- returns the next at most n bytes (64 KiB by default), nil at the end. A
-- body in a file is read off the loop, without holding all of it.
local Reader = {}
Reader.__index = Reader

function Reader:read(n)
  n = n or CHUNK
  assert(math.type(n) == "integer" and n > 0, "reader:read: n must be a positive integer")
  if self.pos >= self.size then return nil end
  local data
  if self.body then
    data = self.body:sub(self.pos + 1, self.pos + n)
  else
    data = read_spooled(self.ex, self.pos, n)
  end
  if data == "" then return nil end
  self.pos = self.pos + #data
  return data
end

Request.__index = function(req, k)
  local v
  if k == "query" then
    v = parse_urlencoded(req.querystring)
  elseif k == "body" then -- only when the core spooled it (it is set otherwise)
    local ex = rawget(req, "_rawheaders")
    local size = ex and ex:body_size()
    v = size and read_all(ex, size) or ""
  elseif k == "files" then
    local _, files = parts(req)
    v = files or {}
  elseif k == "form" then
    local ct = req.headers["content-type"] or ""
    if ct:find("application/x-www-form-urlencoded", 1, true) then
      v = parse_urlencoded(req.body)
    else
      v = parts(req) or {}
    end
  elseif k == "json" then
    local ct = req.headers["content-type"] or ""
    if ct:find("json", 1, true) then v = app.json_decode(req.body) end
  elseif k == "path" then
    v = url_decode(req.rawpath)
  elseif k == "cookies" then
    v = parse_cookies(req.headers.cookie)
  elseif k == "params" then
    v = {}
  elseif k == "headers" then
    -- Built on first use: most handlers never read a header, and a browser
    -- sends a dozen. The core hands them over packed, in the exchange.
    local raw = rawget(req, "_rawheaders")
    v = raw and core.headers(raw) or {}
  else
    return Request[k]
  end
  rawset(req, k, v)
  return v
end

function Request.get(req, name) return req.headers[name:lower()] end

function Request.bodyReader(req)
  local body = rawget(req, "body")
  if body then return setmetatable({ body = body, size = #body, pos = 0 }, Reader) end
  local ex = rawget(req, "_rawheaders")
  local size = ex and ex:body_size()
  if not size then return setmetatable({ body = "", size = 0, pos = 0 }, Reader) end
  return setmetatable({ ex = ex, size = size, pos = 0 }, Reader)
end

-- ---------------------------------------------------------------- settings and CSRF

-- app.configure{ csrf = true, secret = "...", etag = false }: several
-- settings at once.
function app.configure(opts)
  assert(type(opts) == "table", "app.configure: expects a table of options")
  if opts.secret ~= nil and opts.secret ~= false then
    assert(type(opts.secret) == "string" and #opts.secret >= 16, "app.configure: secret must be a string of 16 bytes or more")
  end
  for k, v in pairs(opts) do
    if k == "csrf" then v = v and true or false end
    app.set(k, v)
  end
  return app
end

local made_secret -- made once per process, kept across reloads

local function secret()
  if settings.secret then return settings.secret end
  if not made_secret then
    local env = os.getenv("MOONWIRE_SECRET")
    if env and #env >= 16 then
      made_secret = env
    else
      made_secret = core.random(32)
      if not core.dev then
        core.log("warn", "app: no MOONWIRE_SECRET (16 bytes or more) in the environment: CSRF tokens change when the server restarts")
      end
    end
  end
  return made_secret
end

local CSRF_COOKIE = "_csrf"

-- req:csrfToken(): the token a form of this client must send back, as the
-- field _csrf or the header X-CSRF-Token. The client gets a random cookie
-- the first time; the token is that cookie signed with the app's secret, so
-- a page of another site can neither read it nor make one.
function Request:csrfToken()
  local id = self.cookies[CSRF_COOKIE]
  if not id or not id:match("^%x+$") or #id ~= 32 then
    id = rawget(self, "_csrf_id")
    if not id then
      id = hex(core.random(16))
      rawset(self, "_csrf_id", id)
      local res = rawget(self, "_res")
      if res then res:cookie(CSRF_COOKIE, id, { httpOnly = true, sameSite = "Lax", path = "/" }) end
    end
  end
  return hex(core.hmac(secret(), id))
end

-- Whether req may go on: the methods that change things, with a body a
-- plain HTML form (or a script without CORS) can send, need the token. A
-- request with neither Origin nor Sec-Fetch-Site did not come from a
-- browser (curl, a test, another server): forging it needs no victim's
-- browser, so there is nothing to check.
local FORMISH = { ["application/x-www-form-urlencoded"] = true, ["multipart/form-data"] = true, ["text/plain"] = true }
local UNSAFE = { POST = true, PUT = true, PATCH = true, DELETE = true }

local function csrf_ok(req, method)
  if not UNSAFE[method] then return true end
  local h = req.headers
  local ct = (h["content-type"] or ""):match("^%s*([^;%s]*)"):lower()
  if ct ~= "" and not FORMISH[ct] then return true end
  if not h.origin and not h["sec-fetch-site"] then return true end
  local token = h["x-csrf-token"] or h["x-xsrf-token"]
    or ((ct == "application/x-www-form-urlencoded" or ct == "multipart/form-data") and req.form._csrf)
  local id = req.cookies[CSRF_COOKIE]
  if type(token) ~= "string" or not id then return false end
  return core.equal(token, hex(core.hmac(secret(), id)))
end

-- The request table for the core's arguments (see lhost.c's push_req).
local function new_request(method, url, rawpath, querystring, body, ip, rawheaders)
  return setmetatable({
    method = method, url = url, rawpath = rawpath, querystring = querystring, body = body, ip = ip,
    _rawheaders = rawheaders,
  }, Request)
end

-- ---------------------------------------------------------------- responses

local Response = {}
Response.__index = Response

function Response:status(code)
  assert(math.type(code) == "integer" and code >= 100 and code <= 999, "res:status: status must be an integer 100..999")
  self.statusCode = code
  return self
end

local function check_header(name, value)
  if type(name) ~= "string" or name == "" or name:find("[%c:]") then
    error("res:set: invalid header name " .. string.format("%q", tostring(name)), 3)
  end
  local values = type(value) == "table" and value or { value }
  for _, v in ipairs(values) do
    if tostring(v):find("[\r\n\0]") then
      error("res:set: the value of " .. name .. " holds CR, LF or NUL (header injection)", 3)
    end
  end
end

function Response:set(name, value)
  check_header(name, value)
  self.headers[name] = value
  return self
end
Response.header = Response.set

function Response:get(name)
  local lname = name:lower()
  for k, v in pairs(self.headers) do if k:lower() == lname then return v end end
end

-- res:cookie(name, value, opts): Set-Cookie, as Express's res.cookie.
-- opts: path ("/"), domain, maxAge (ms), expires (os.time() seconds),
-- httpOnly, secure, sameSite ("Lax", "Strict", "None").
function Response:cookie(name, value, opts)
  opts = opts or {}
  assert(type(name) == "string" and name:match("^[%w!#$%%&'*+%-.^_`|~]+$"), "res:cookie: invalid cookie name")
  local parts = { name .. "=" .. url_encode(tostring(value)), "Path=" .. (opts.path or "/") }
  if opts.domain then parts[#parts + 1] = "Domain=" .. opts.domain end
  if opts.maxAge then
    parts[#parts + 1] = "Max-Age=" .. math.floor(opts.maxAge / 1000)
    parts[#parts + 1] = "Expires=" .. os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + math.floor(opts.maxAge / 1000))
  elseif opts.expires then
    parts[#parts + 1] = "Expires=" .. os.date("!%a, %d %b %Y %H:%M:%S GMT", opts.expires)
  end
  if opts.httpOnly then parts[#parts + 1] = "HttpOnly" end
  if opts.secure then parts[#parts + 1] = "Secure" end
  if opts.sameSite then parts[#parts + 1] = "SameSite=" .. opts.sameSite end
  local line = table.concat(parts, "; ")
  check_header("Set-Cookie", line)
  local cur = self.headers["Set-Cookie"]
  if cur == nil then
    self.headers["Set-Cookie"] = { line }
  elseif type(cur) == "table" then
    cur[#cur + 1] = line
  else
    self.headers["Set-Cookie"] = { cur, line }
  end
  return self
end

function Response:clearCookie(name, opts)
  local o = { path = opts and opts.path, domain = opts and opts.domain, expires = 0 }
  return self:cookie(name, "", o)
end

function Response:type(ct)
  self.headers["Content-Type"] = ct
  return self
end

local function has_type(res)
  local headers = res.headers
  if headers["Content-Type"] ~= nil then return true end -- the usual spelling: no walk
  for k in pairs(headers) do if k:lower() == "content-type" then return true end end
  return false
end

-- res:send(body): a string is sent as HTML unless a Content-Type is set; a
-- table is sent as JSON. On a response being streamed (res:write), the
-- last piece.
function Response:send(body)
  local t = type(body)
  if t == "table" and not self._streaming then return self:json(body) end
  if body == nil then body = "" elseif t ~= "string" then body = tostring(body) end
  local status, headers = self.statusCode, self.headers
  local bodiless = status == 204 or status == 304
  if not bodiless and headers["Content-Type"] == nil and not has_type(self) then
    headers["Content-Type"] = "text/html; charset=utf-8"
  end
  if not self._ex:finish(status, body, headers, settings.etag) then
    error("res:send: the response was already sent", 2)
  end
  self.finished = true
  return self
end

-- res:write(chunk): sends the head (Content-Type as res:send would) and
-- this piece of the body; more pieces follow, res:finish() or res:send()
-- ends it. Chunked on HTTP/1.1. When the client is slower than the route,
-- write waits (inside a handler) until what was written has left. Returns
-- true, or nil and "closed" when the client has gone away.
function Response:write(chunk)
  if self.finished then error("res:write: the response was already sent", 2) end
  if type(chunk) ~= "string" then chunk = tostring(chunk) end
  local ex = self._ex
  if not self._streaming then
    local headers = self.headers
    if headers["Content-Type"] == nil and not has_type(self) then
      headers["Content-Type"] = "text/html; charset=utf-8"
    end
    if not ex:begin(self.statusCode, headers) then error("res:write: the response was already sent", 2) end
    self._streaming = true
  end
  local ok, err = ex:write(chunk)
  if ok == false then
    if app._current() then
      local wake, wait = app._waiter("res:write")
      ex:wait(wake)
      ok = wait()
      if not ok then err = "closed" end
    else
      ok = true -- outside a handler: nothing to wait in; the queue takes it
    end
  end
  if not ok then return nil, err end
  return true
end

-- res:finish([chunk]): ends the response (Express's res.end): a streamed
-- body after its last piece, else the response with chunk as its body.
function Response:finish(chunk)
  if self._streaming and not self.finished then
    if chunk ~= nil then self:write(chunk) end
    self._ex:finish(self.statusCode, "")
    self.finished = true
    return self
  end
  return self:send(chunk)
end

-- res:sendFile(path[, opts]): sends a file (Express's res.sendFile) with
-- the same machinery as public/: Content-Type from its name, ETag,
-- Last-Modified, 304, Range, compression. path is relative to the app's
-- root (opts.root: another directory, itself relative to the app's root
-- unless absolute) and must stay under it; a segment starting with '.'
-- (a dotfile) is refused unless opts.dotfiles == "allow". opts.maxAge
-- (ms) or opts.cacheControl sets Cache-Control; opts.headers adds
-- headers. Inside a handler it waits until the file is found: true, or
-- nil and why ("not found": the response is still yours to send);
-- outside one a missing file gets 404.
function Response:sendFile(path, opts)
  if self.finished then error("res:sendFile: the response was already sent", 2) end
  assert(type(path) == "string", "res:sendFile: path must be a string")
  opts = opts or {}
  local root = opts.root or core.root
  if root:sub(1, 1) ~= "/" then root = core.root .. "/" .. root end
  local cc = opts.cacheControl
  if not cc and opts.maxAge then cc = "public, max-age=" .. math.floor(opts.maxAge / 1000) end
  for k, v in pairs(opts.headers or {}) do self:set(k, v) end
  local wake, wait
  if app._current() then wake, wait = app._waiter("res:sendFile") end
  local res = self
  local ok, err = self._ex:sendfile(self.statusCode, self.headers, root, path, opts.dotfiles == "allow", cc,
    function(found, why)
      if wake then return wake(found, why) end
      if not found and not res._ex:done() then res:status(404):type("text/plain; charset=utf-8"):send("Not Found\n") end
    end)
  if not ok then return nil, err end
  self.finished = true
  if wait then
    ok, err = wait()
    if not ok then
      self.finished = false
      return nil, err
    end
  end
  return true
end

function Response:json(value)
  local body, err = json.encode(value)
  if not body then error("res:json: " .. tostring(err), 2) end
  if not has_type(self) then self.headers["Content-Type"] = "application/json; charset=utf-8" end
  return self:send(body)
end

function Response:redirect(url, code)
  if type(url) == "number" then url, code = code, url end
  self.statusCode = code or 302
  self.headers["Location"] = url
  self.headers["Content-Type"] = "text/html; charset=utf-8"
  return self:send('<p>Redirecting to <a href="' .. escape_html(url) .. '">' .. escape_html(url) .. "</a></p>")
end

function Response:render(name, locals, opts)
  locals = locals or {}
  local req = rawget(self, "_req")
  if settings.csrf and req and locals.csrf_token == nil then
    local token = req:csrfToken()
    locals.csrf_token = token
    locals.csrf_field = '<input type="hidden" name="_csrf" value="' .. token .. '">'
  end
  return self:send(view.render(name, locals, opts))
end

function Response:sendStatus(code)
  self.statusCode = code
  -- 204 and 304 have no body, so nothing to describe either.
  if code == 204 or code == 304 then return self:send("") end
  self.headers["Content-Type"] = "text/plain; charset=utf-8"
  return self:send(tostring(code))
end

local function new_response(ex)
  -- headers is made with room for one entry (the nil field only sizes it):
  -- send always sets a Content-Type, and growing an empty table costs a
  -- rehash on every response.
  return setmetatable({ _ex = ex, statusCode = 200, headers = { ["Content-Type"] = nil } }, Response)
end

-- ---------------------------------------------------------------- handlers

-- Every handler (route, socket event, timer) runs in a coroutine taken from
-- a pool, so that it can wait for an ack, a timer or a handshake without
-- blocking the loop: app._wait() suspends it and app._resume(co, ...) wakes it.
local pool = {}
local DONE, WAIT = {}, {}
local PENDING = setmetatable({}, { __name = "moonwire.pending", __tostring = function() return "pending" end })
app.PENDING = PENDING
-- The pool's coroutines, and what to do when a suspended one finishes: a
-- label for the error log, or a function(ok, err). Weak keys: a handler whose
-- waker is gone (a socket that never acks) is collected with its coroutine.
local ours = setmetatable({}, { __mode = "k" })
local after = setmetatable({}, { __mode = "k" })

local function traceback(err)
  if type(err) ~= "string" then err = tostring(err) end
  return debug.traceback(err, 2)
end

-- A pooled coroutine's body: runs fn(...), yields the outcome, and takes the
-- next fn and arguments from the resume (a proper tail call, so the stack
-- never grows; no table or closure per call).
local function work(fn, ...)
  local ok, err = xpcall(fn, traceback, ...)
  return work(coroutine.yield(DONE, ok, err))
end

local function worker()
  return work(coroutine.yield())
end

local YIELDED = "handler yielded outside of an awaitable call (coroutine.yield in a handler?)"

-- Runs fn(...) in a pooled coroutine. Returns true, or false and the error
-- with its traceback; or PENDING and the coroutine when fn is waiting (see
-- app._after for what happens when it finishes).
local function run(fn, ...)
  local co = pool[#pool]
  if co then
    pool[#pool] = nil
  else
    co = coroutine.create(worker)
    coroutine.resume(co)
    ours[co] = true
  end
  local fine, tag, ok, err = coroutine.resume(co, fn, ...)
  if not fine then -- stopped by the handler budget (lcall.c): the coroutine is closed
    ours[co] = nil
    return false, tag
  end
  if tag == DONE then
    pool[#pool + 1] = co
    return ok, err
  end
  if tag == WAIT then return PENDING, co end
  -- A bare coroutine.yield: nothing would ever resume it.
  ours[co] = nil
  return false, YIELDED
end
app._run = run

-- What to do when the waiting handler co finishes: a label (errors are
-- logged under it) or a function(ok, err).
function app._after(co, what) after[co] = what end

local function finished(co, ok, err)
  pool[#pool + 1] = co
  local what = after[co]
  after[co] = nil
  if type(what) == "function" then
    local fine, e = pcall(what, ok, err)
    if not fine then core.log("error", "after a handler: " .. tostring(e)) end
  elseif not ok then
    core.log("error", (what or "handler") .. ": " .. tostring(err))
  end
end

-- Runs fn(...) like run, logging an error under what, now or when a waiting
-- handler finishes. Returns false when it failed at once.
function app._call(what, fn, ...)
  local ok, err = run(fn, ...)
  if ok == true then return true end
  if ok == PENDING then
    after[err] = what
    return true
  end
  core.log("error", what .. ": " .. tostring(err))
  return false
end

-- The running handler's coroutine, or nil outside of one (the main chunk of
-- a script, a coroutine of the app's own).
function app._current()
  local co, main = coroutine.running()
  if main or not ours[co] then return nil end
  return co
end

-- Suspends the running handler until app._resume(co, ...); returns those
-- values. what names the caller in the error raised outside of a handler.
function app._wait(what)
  if not app._current() then
    error((what or "waiting") .. " needs a moonwire handler (a route, a socket event handler or a timer); "
      .. "outside of one, use the callback form", 3)
  end
  return coroutine.yield(WAIT)
end

-- Wakes a handler suspended in app._wait with the values it returns.
function app._resume(co, ...)
  if coroutine.status(co) ~= "suspended" then return false end
  local fine, tag, ok, err = coroutine.resume(co, ...)
  if not fine then -- stopped by the handler budget (lcall.c): the coroutine is closed
    ours[co] = nil
    local what = after[co]
    after[co] = nil
    if type(what) == "function" then
      local done, e = pcall(what, false, tag)
      if not done then core.log("error", "after a handler: " .. tostring(e)) end
    else
      core.log("error", (what or "handler") .. ": " .. tostring(tag))
    end
  elseif tag == DONE then
    finished(co, ok, err)
  elseif tag ~= WAIT then -- a bare coroutine.yield: this one is abandoned
    ours[co] = nil
    local what = after[co]
    after[co] = nil
    if type(what) == "function" then pcall(what, false, YIELDED)
    else core.log("error", (what or "handler") .. ": " .. YIELDED) end
  end
  return true
end

-- A one-shot wake-up for the running handler: wake(...) may come before
-- wait() (an answer that arrives at once) or after it; wait() returns what
-- wake was given. The first wake counts. Raises outside of a handler.
function app._waiter(what)
  local co = app._current()
  if not co then
    error(what .. " needs a moonwire handler (a route, a socket event handler or a timer); "
      .. "outside of one, use the callback form", 3)
  end
  local woken, waiting, vals = false, false, nil
  local function wake(...)
    if woken then return end
    woken = true
    if waiting then return app._resume(co, ...) end
    vals = table.pack(...)
  end
  local function wait()
    if vals then return table.unpack(vals, 1, vals.n) end
    waiting = true
    return app._wait(what)
  end
  return wake, wait
end

-- App timers' callbacks run as handlers too.
require("moonwire.timer")._set_runner(app._call)

-- A handler's SQL statements run on database threads while it waits.
require("moonwire.db")._set_runner(app._current, app._wait, app._resume)

-- app.sleep(ms): waits ms milliseconds inside a handler.
function app.sleep(ms)
  assert(type(ms) == "number" and ms >= 0, "sleep: expects milliseconds")
  local wake, wait = app._waiter("app.sleep")
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
      "<p><strong>", escape_html(msg), "</strong></p>",
      where ~= "" and ("<p>at <code>" .. escape_html(where) .. "</code></p>") or "",
      "<pre>", escape_html(trace or ""), "</pre>",
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
  local req = new_request(method, url, rawpath, querystring, body, ip, rawheaders)
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
      for _, m in ipairs(METHODS) do if params[m] then list[#list + 1] = m end end
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
  req.params = params
  local res = new_response(ex)
  rawset(req, "_res", res)
  rawset(res, "_req", req)
  if settings.csrf and not csrf_ok(req, rawget(req, "originalMethod") or method) then
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
    after[err] = function(done, e)
      if not done then
        error_page(req, res, e)
      elseif not ex:done() then
        error_page(req, res, "route " .. route.method .. " " .. route.path .. " returned without responding")
      end
    end
  elseif not ok then
    error_page(req, res, err)
  elseif not ex:done() then
    error_page(req, res, "route " .. route.method .. " " .. route.path .. " returned without responding")
  end
  return true
end

-- Called by the core when nothing answered: views/404.html when it exists.
function app._not_found(ex, ...)
  local req = new_request(...)
  local res = new_response(ex)
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
