-- moonwire.app.response: the res a route gets, as Express's: status, set,
-- cookie, send, json, render, redirect, write/finish (streaming), sendFile.
-- ex is the C exchange (lhost.c) that carries the response out.
local core = require "moonwire.core"
local json = require "moonwire.json"
local view = require "moonwire.view"
local runner = require "moonwire.runner"
local settings = require "moonwire.app.settings"
local text = require "moonwire.app.text"
local session = require "moonwire.app.session"

local M = {}

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
  local parts = { name .. "=" .. text.url_encode(tostring(value)), "Path=" .. (opts.path or "/") }
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

-- req.session's cookie joins the head when the session was used.
local function save_session(res)
  local req = rawget(res, "_req")
  if req and rawget(req, "_sess") then session.save(req, res) end
end

-- res:send(body): a string is sent as HTML unless a Content-Type is set; a
-- table is sent as JSON. On a response being streamed (res:write), the
-- last piece.

function Response:send(body)
  if not self._streaming then save_session(self) end
  local t = type(body)
  if t == "table" and not self._streaming then return self:json(body) end
  if body == nil then body = "" elseif t ~= "string" then body = tostring(body) end
  local status, headers = self.statusCode, self.headers
  local bodiless = status == 204 or status == 304
  if not bodiless and headers["Content-Type"] == nil and not has_type(self) then
    headers["Content-Type"] = "text/html; charset=utf-8"
  end
  self._ex:finish(status, body, headers, settings.get("etag")) -- raises when already sent
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
    save_session(self)
    local headers = self.headers
    if headers["Content-Type"] == nil and not has_type(self) then
      headers["Content-Type"] = "text/html; charset=utf-8"
    end
    ex:begin(self.statusCode, headers) -- raises when already sent
    self._streaming = true
  end
  local ok, err = ex:write(chunk)
  if ok == false then
    if runner.current() then
      local wake, wait = runner.waiter("res:write")
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
  save_session(self)
  local root = opts.root or core.root
  if root:sub(1, 1) ~= "/" then root = core.root .. "/" .. root end
  local cc = opts.cacheControl
  if not cc and opts.maxAge then cc = "public, max-age=" .. math.floor(opts.maxAge / 1000) end
  for k, v in pairs(opts.headers or {}) do self:set(k, v) end
  local wake, wait
  if runner.current() then wake, wait = runner.waiter("res:sendFile") end
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
  return self:send('<p>Redirecting to <a href="' .. text.escape_html(url) .. '">' .. text.escape_html(url) .. "</a></p>")
end

function Response:render(name, locals, opts)
  locals = locals or {}
  local req = rawget(self, "_req")
  if settings.get("csrf") and req and locals.csrf_token == nil then
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

function M.new(ex)
  -- headers is made with room for one entry (the nil field only sizes it):
  -- send always sets a Content-Type, and growing an empty table costs a
  -- rehash on every response.
  return setmetatable({ _ex = ex, statusCode = 200, headers = { ["Content-Type"] = nil } }, Response)
end

return M
