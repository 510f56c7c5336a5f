-- moonwire.testing: start the real server inside a spec and talk to it over
-- loopback, as a browser or an HTTP client would.
--
--   local testing = require "moonwire.testing"
--   local app = testing.start { root = "." }         -- fresh temporary SQLite file
--   local status, body, headers = app:get("/pets")
--   app:post("/pets", { form = { name = "Rex", species = "dog" } })
--   app:stop()
local c = require "moonwire.testing_c"
local json = require "moonwire.json"

local testing = {}

-- A packed list (t.n values, nil among them) as a JSON array: nil is null.
local function array_of(t)
  local a = json.array({})
  for i = 1, t.n do
    local v = t[i]
    if v == nil then v = json.null end
    a[i] = v
  end
  return a
end

local Server = {}
Server.__index = Server

local urlencode = require("moonwire.escape").url

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
-- app's timers then wait for srv:advance(ms)), env (variables set in this
-- process before the app loads, for os.getenv; false unsets one),
-- handler_budget (ms, as --handler-budget), lua_memory (MiB, as --lua-memory),
-- db_busy_timeout and db_statement_timeout (ms, as the flags
-- --db-busy-timeout and --db-statement-timeout), seed (true: run
-- scripts/seeds.lua after the app loads, as --seed). The app's
-- scripts/migrations run first, as at a real start.
function testing.start(opts)
  opts = opts or {}
  local db = os.tmpname()
  -- The app reads its environment with os.getenv: set what opts.env says for
  -- now, and put the old values back on stop.
  local saved_env = {}
  for name, value in pairs(opts.env or {}) do
    saved_env[name] = os.getenv(name) or false
    c.setenv(name, value or nil)
  end
  local srv, loaded = c.start {
    root = opts.root or ".", db = db, dev = opts.dev, seed = opts.seed, max_body = opts.max_body, quiet = opts.quiet,
    clock = opts.clock, handler_budget = opts.handler_budget, lua_memory = opts.lua_memory,
    db_busy_timeout = opts.db_busy_timeout, db_statement_timeout = opts.db_statement_timeout,
  }
  return setmetatable({ c = srv, db = db, loaded = loaded, port = srv:port(), saved_env = saved_env }, Server)
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
    body = assert(json.encode(opts.json))
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

-- ---------------------------------------------------------------- Socket.IO client
--
-- A Socket.IO v5 client over a real loopback WebSocket, for specs:
--
--   local client = srv:connect("/", { auth = { name = "ada" } })
--   client:emit("chat message", "hi")
--   local msg, id = client:await("chat message")      -- the next one (2 s by default)
--   local answer = client:ask("nickname", "ada")        -- emit with an ack, wait for it
--   client:on("question", function(q, ack) ack(42) end) -- the server asks for an ack
--   client:close()
--
-- Events without a handler are kept in arrival order until awaited.
-- Binary attachments are not supported.

local Client = {}
Client.__index = Client

local function pack(...) return { n = select("#", ...), ... } end

-- Decodes a JSON body the way the app sees JSON (moonwire.json: whole
-- numbers as integers, a top-level array marked as one).
testing.json = json.decode

-- Opens a WebSocket session and connects to namespace nsp (default "/").
-- opts: auth (table), query (table). Returns the client, or nil and the
-- connect_error's message (and data).
function Server:connect(nsp, opts)
  nsp, opts = nsp or "/", opts or {}
  local query = ""
  if opts.query then query = "&" .. encode_form(opts.query) end
  local ws, err = self.c:ws("/socket.io/?EIO=4&transport=websocket" .. query)
  if not ws then error("socket.io handshake failed: " .. tostring(err), 2) end
  local client = setmetatable({
    server = self, ws = ws, nsp = nsp, events = {}, handlers = {}, acks = {}, next_id = 0, connected = false,
  }, Client)
  local open = ws:receive(2000)
  if not open or open:sub(1, 1) ~= "0" then error("no Engine.IO open packet: " .. tostring(open), 2) end
  local prefix = nsp == "/" and "" or (nsp .. ",")
  ws:send("40" .. prefix .. (opts.auth and assert(json.encode(opts.auth)) or ""))
  while not client.connected do
    local ok, why = client:_pump(2000)
    if not ok then error("socket.io connect: " .. why, 2) end
    if client.refused then
      ws:close()
      return nil, client.refused.message, client.refused.data
    end
  end
  return client
end

-- Reads and handles one message; false and why on timeout or close.
function Client:_pump(timeout)
  local data, why = self.ws:receive(timeout)
  if not data then return false, why end
  local kind = data:sub(1, 1)
  if kind == "2" then
    self.ws:send("3" .. data:sub(2))
  elseif kind == "4" then
    self:_packet(data:sub(2))
  elseif kind == "1" then
    self.connected = false
  end
  return true
end

function Client:_packet(p)
  local kind = p:sub(1, 1)
  local rest = p:sub(2)
  if kind == "5" or kind == "6" then error("the test client does not handle binary packets") end
  local nsp = "/"
  if rest:sub(1, 1) == "/" then
    nsp, rest = rest:match("^([^,]*),(.*)$")
  end
  if nsp ~= self.nsp then return end
  local id = rest:match("^(%d+)")
  if id then rest = rest:sub(#id + 1) end
  id = tonumber(id)
  local payload = rest ~= "" and json.decode(rest) or nil
  if kind == "0" then
    self.connected, self.id = true, payload and payload.sid
  elseif kind == "4" then
    self.refused = payload or { message = "refused" }
  elseif kind == "1" then
    self.connected = false
  elseif kind == "3" then
    local fn = self.acks[id]
    self.acks[id] = nil
    if fn then fn(table.unpack(payload, 1, #payload)) end
  elseif kind == "2" then
    local args = pack(table.unpack(payload, 1, #payload))
    local event = table.remove(args, 1)
    args.n = args.n - 1
    if id then
      local sent = false
      args.n = args.n + 1
      args[args.n] = function(...)
        if sent then return end
        sent = true
        local values = pack(...)
        local body = assert(json.encode(array_of(values)))
        self.ws:send("43" .. (self.nsp == "/" and "" or self.nsp .. ",") .. id .. body)
      end
    end
    local fn = self.handlers[event]
    if fn then
      fn(table.unpack(args, 1, args.n))
    else
      self.events[#self.events + 1] = { event = event, args = args }
    end
  end
end

-- Sends an event; a function as the last argument asks the server for an ack.
function Client:emit(event, ...)
  local args = pack(event, ...)
  local id = ""
  if type(args[args.n]) == "function" then
    id = tostring(self.next_id)
    self.acks[self.next_id] = args[args.n]
    self.next_id = self.next_id + 1
    args[args.n], args.n = nil, args.n - 1
  end
  local body = assert(json.encode(array_of(args)))
  self.ws:send("42" .. (self.nsp == "/" and "" or self.nsp .. ",") .. id .. body)
end

-- Emits with an ack and returns the ack's values (raises after timeout ms,
-- 2000 by default).
function Client:ask(event, ...)
  local got
  local args = pack(...)
  args[args.n + 1] = function(...) got = pack(...) end
  self:emit(event, table.unpack(args, 1, args.n + 1))
  local deadline = c.now() + 2000
  while not got do
    local left = deadline - c.now()
    if left <= 0 or not self:_pump(math.max(1, math.floor(left))) then
      error("no ack for '" .. tostring(event) .. "'", 2)
    end
  end
  return table.unpack(got, 1, got.n)
end

-- Handles every `event` with fn from now on (instead of keeping it).
function Client:on(event, fn) self.handlers[event] = fn end

-- Returns the arguments of the next `event` (one kept earlier, or the next to
-- arrive within timeout ms, 2000 by default); raises when none comes.
function Client:await(event, timeout)
  local deadline = c.now() + (timeout or 2000)
  while true do
    for i, e in ipairs(self.events) do
      if e.event == event then
        table.remove(self.events, i)
        return table.unpack(e.args, 1, e.args.n)
      end
    end
    local left = deadline - c.now()
    if left <= 0 then error("no '" .. tostring(event) .. "' within " .. (timeout or 2000) .. " ms", 2) end
    local ok, why = self:_pump(math.max(1, math.floor(left)))
    if not ok and why == "closed" then error("connection closed while waiting for '" .. tostring(event) .. "'", 2) end
  end
end

-- The events kept so far with this name (each a packed list of arguments),
-- after handling whatever has already arrived.
function Client:received(event)
  while self:_pump(1) do end
  local list = {}
  for _, e in ipairs(self.events) do
    if e.event == event then list[#list + 1] = e.args end
  end
  return list
end

function Client:close()
  if self.ws:closed() then return end
  if self.connected then
    self.ws:send("41" .. (self.nsp == "/" and "" or self.nsp .. ","))
  end
  self.connected = false
  self.ws:close()
end

function Server:stop()
  self.c:stop()
  for name, value in pairs(self.saved_env) do c.setenv(name, value or nil) end
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(self.db .. suffix) end
end

return testing
