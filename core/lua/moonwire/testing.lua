-- moonwire.testing: start the real server inside a spec and talk to it over
-- loopback, as a browser or an HTTP client would.
--
--   local testing = require "moonwire.testing"
--   local app = testing.start { root = "." }         -- fresh temporary SQLite file
--   local status, body, headers = app:get("/pets")
--   app:post("/pets", { form = { name = "Rex", species = "dog" } })
--   app:stop()
local c = require "moonwire.testing_c"
local cjson = require "cjson"

local testing = {}

local Server = {}
Server.__index = Server

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

local function encode_form(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(t[k]) end
  return table.concat(parts, "&")
end
testing.encode_form = encode_form

-- Starts the app in opts.root (default: the current directory) on an
-- ephemeral port with a fresh SQLite file. Other opts: dev (default true),
-- max_body, quiet (default true), clock ("real", the default, or "test": the
-- app's timers then wait for srv:advance(ms)).
function testing.start(opts)
  opts = opts or {}
  local db = os.tmpname()
  local srv, loaded = c.start {
    root = opts.root or ".", db = db, dev = opts.dev, max_body = opts.max_body, quiet = opts.quiet,
    clock = opts.clock,
  }
  return setmetatable({ c = srv, db = db, loaded = loaded, port = srv:port() }, Server)
end

-- Sends one request and returns status, body, headers (lower-case names).
-- opts: headers (table), body (string), form (table, urlencoded), json (value), timeout (ms).
function Server:request(method, path, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  local body = opts.body
  if opts.form then
    body = encode_form(opts.form)
    headers["content-type"] = headers["content-type"] or "application/x-www-form-urlencoded"
  elseif opts.json ~= nil then
    body = cjson.encode(opts.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  headers.host = headers.host or ("127.0.0.1:" .. self.port)
  headers.connection = "close"
  if body then headers["content-length"] = tostring(#body) end
  local lines = { method .. " " .. path .. " HTTP/1.1" }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  local raw, timed_out = self.c:raw(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""), opts.timeout)
  if timed_out then error("request timed out: " .. method .. " " .. path, 2) end
  return testing.parse_response(raw)
end

-- Parses one HTTP response: status, body, headers.
function testing.parse_response(raw)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  if not head then error("no complete HTTP response in: " .. raw:sub(1, 200), 2) end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local hdrs = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do
    name = name:lower()
    hdrs[name] = hdrs[name] and (hdrs[name] .. ", " .. value) or value
  end
  local len = tonumber(hdrs["content-length"])
  if len then body = body:sub(1, len) end
  return status, body, hdrs
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "head" } do
  Server[m] = function(self, path, opts) return self:request(m:upper(), path, opts) end
end

-- Sends raw bytes; returns what came back until the server closed, and
-- whether the timeout cut it short.
function Server:raw(bytes, timeout) return self.c:raw(bytes, timeout) end

-- Lets the server's loop run for ms milliseconds.
function Server:run(ms) self.c:run(ms) end

-- With clock = "test": moves the app's clock on by ms. Every timer that
-- falls due on the way fires, in order, at its own instant; then whatever
-- they sent goes out.
function Server:advance(ms) self.c:advance(ms) end

function Server:stop()
  self.c:stop()
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(self.db .. suffix) end
end

return testing
