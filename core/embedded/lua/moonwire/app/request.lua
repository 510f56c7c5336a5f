-- moonwire.app.request: the req a route gets. Most of it is made on first
-- use (query, headers, cookies, form, files, json, the body of a spooled
-- request), since most handlers read little of it.
local core = require "moonwire.core"
local json = require "moonwire.json"
local runner = require "moonwire.runner"
local csrf = require "moonwire.app.csrf"
local session = require "moonwire.app.session"
local text = require "moonwire.app.text"

local M = {}
local parse_urlencoded = text.parse_urlencoded

local Request = {}

-- A body over --body-buffer waits in a temporary file (the core spooled
-- it). Reads of it run off the loop while the handler waits; outside of a
-- handler (app._dispatch looking for a _method field) they are done at once.
local function read_spooled(ex, off, n)
  if not runner.current() then
    local data, err = ex:read_body_now(off, n)
    if not data then error(err, 3) end
    return data
  end
  local wake, wait = runner.waiter("reading the request body")
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
    if ct:find("json", 1, true) then v = json.decode(req.body) end
  elseif k == "path" then
    v = text.url_decode(req.rawpath)
  elseif k == "cookies" then
    v = text.parse_cookies(req.headers.cookie)
  elseif k == "session" then
    -- Set to nil after it was read: an empty one (the cookie is cleared).
    v = rawget(req, "_sess") and {} or session.load(req)
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

-- req.session = nil (or a new table) before reading it: the cookie it
-- replaces must be known, to be cleared.
Request.__newindex = function(req, k, v)
  if k == "session" and not rawget(req, "_sess") then session.load(req) end
  rawset(req, k, v)
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

-- req:flash(kind[, message]): see moonwire.app.session.
function Request:flash(kind, message) return session.flash(self, kind, message) end

-- req:csrfToken(): see moonwire.app.csrf.
function Request:csrfToken() return csrf.token(self) end

-- The request table for the core's arguments (see lhost.c's push_req).
function M.new(method, url, rawpath, querystring, body, ip, rawheaders)
  return setmetatable({
    method = method, url = url, rawpath = rawpath, querystring = querystring, body = body, ip = ip,
    _rawheaders = rawheaders,
  }, Request)
end

return M
