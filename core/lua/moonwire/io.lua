-- moonwire.io: the Socket.IO server API in Lua.
--
--   local io = require "moonwire.io"
--   io.on("connection", function(socket)
--     socket:on("chat message", function(msg) io.emit("chat message", msg) end)
--     socket:on("ferret", function(name, ack) ack("woot") end)
--   end)
--
-- Packets are encoded here (JSON once per emit, binary values moved into
-- attachments) and moved by the C core (core/sio.c), which frames a
-- broadcast once for all its recipients.
local c = require "moonwire.io_c"
local app = require "moonwire.app"
local core = require "moonwire.core"
local timer = require "moonwire.timer"
local cjson = require "cjson"
local json = require "moonwire.json"

local io = {}
local null = cjson.null
io.null = null

local EVENT, ACK = 2, 3
local RESERVED = { connect = true, connect_error = true, disconnect = true, disconnecting = true,
  newListener = true, removeListener = true }

-- ---------------------------------------------------------------- binary values

-- Lua strings carry no "this is binary" flag, so binary data travels as a
-- small wrapper: io.binary(s) to send, and what a client sends as binary
-- (Buffer, ArrayBuffer, Blob) arrives the same way. v.data is the string.
local Binary = {}
Binary.__index = Binary
Binary.__len = function(b) return #b.data end
Binary.__tostring = function(b) return b.data end
Binary.__eq = function(a, b) return getmetatable(b) == Binary and a.data == b.data end

function io.binary(s)
  assert(type(s) == "string", "io.binary: expects a string")
  return setmetatable({ data = s }, Binary)
end

function io.isbinary(v) return getmetatable(v) == Binary end

local function has_binary(v, depth)
  if getmetatable(v) == Binary then return true end
  if type(v) ~= "table" or depth > 32 then return false end
  for _, x in pairs(v) do
    if has_binary(x, depth + 1) then return true end
  end
  return false
end

-- A placeholder is written as a marker string and turned into
-- {"_placeholder":true,"num":N} after encoding, so its keys come out in the
-- order the official implementation writes them (a Lua table has none).
local MARK = "\0mw-placeholder:"
local MARK_JSON = '"\\u0000mw%-placeholder:(%d+)"'

local function deconstruct(v, atts)
  if getmetatable(v) == Binary then
    atts[#atts + 1] = v.data
    return MARK .. (#atts - 1)
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deconstruct(x, atts) end
  return out
end

local function reconstruct(v, atts)
  if type(v) ~= "table" then return v end
  if v._placeholder == true and math.type(v.num) == "integer" then
    local data = atts and atts[v.num + 1]
    if data == nil then error("binary placeholder without its attachment", 0) end
    return setmetatable({ data = data }, Binary)
  end
  for k, x in pairs(v) do v[k] = reconstruct(x, atts) end
  return v
end

-- ---------------------------------------------------------------- packets

-- Returns the packet text and its attachments (or nil).
-- args is a fresh table the caller gives away (it is filled in place).
local function encode(nsp, kind, args, n, id)
  local binary, tables = false, false
  for i = 1, n do
    local v = args[i]
    if v == nil then
      args[i] = null
    elseif type(v) == "table" then
      tables = true
      if not binary then binary = has_binary(v, 1) end
    end
  end
  local atts
  if binary then
    atts = {}
    args = deconstruct(args, atts)
    kind = kind + 3 -- BINARY_EVENT / BINARY_ACK
  end
  -- Only tables can hold a marked empty list: plain values go straight to cjson.
  local text = n == 0 and "[]" or tables and assert(json.encode(args)) or cjson.encode(args)
  if atts then
    text = text:gsub(MARK_JSON, '{"_placeholder":true,"num":%1}')
    return kind .. #atts .. "-" .. (nsp ~= "/" and nsp .. "," or "") .. (id or "") .. text, atts
  end
  return kind .. (nsp ~= "/" and nsp .. "," or "") .. (id or "") .. text
end

-- Decodes a payload into an argument list; top-level nulls become nil.
local function decode(json, atts)
  local arr, err = app.json_decode(json) -- never raises: nil and a message
  if type(arr) ~= "table" then return nil, err or "not an array" end
  if atts then arr = reconstruct(arr, atts) end
  local n = #arr
  for i = 1, n do
    if arr[i] == null then arr[i] = nil end
  end
  return arr, n
end

-- Every handler runs in a pooled coroutine; errors are logged with their
-- traceback and never reach the client or the core.
local function call(what, fn, ...)
  local ok, err = app._run(fn, ...)
  if not ok then core.log("error", what .. ": " .. tostring(err)) end
end

-- ---------------------------------------------------------------- namespaces

local namespaces = {}
local Namespace = {}
local Operator = {}
local Socket = {}

local function operator(nsp, rooms, except, except_socket, flags)
  return setmetatable({ _nsp = nsp, _rooms = rooms or {}, _except = except or {},
    _except_socket = except_socket, _volatile = flags and flags.volatile }, Operator)
end

local function namespace(name)
  assert(type(name) == "string" and name:sub(1, 1) == "/", "a namespace name starts with '/'")
  local ns = namespaces[name]
  if ns then return ns end
  c.namespace(name)
  ns = setmetatable({ name = name, _handlers = {}, _middlewares = {}, sockets = {} }, Namespace)
  namespaces[name] = ns
  return ns
end

Namespace.__index = function(ns, k)
  if k == "volatile" then return operator(ns, nil, nil, nil, { volatile = true }) end
  return Namespace[k]
end

-- Namespaces and sockets keep handlers the same way: a list per event.
local function add_handler(obj, event, fn)
  assert(type(fn) == "function", "on: the handler must be a function")
  local list = obj._handlers[event]
  if not list then
    list = {}
    obj._handlers[event] = list
  end
  list[#list + 1] = fn
  return obj
end

Namespace.on = add_handler

function Namespace:use(fn)
  assert(type(fn) == "function", "use: the middleware must be a function")
  self._middlewares[#self._middlewares + 1] = fn
  return self
end

function Namespace:to(room) return operator(self):to(room) end
Namespace["in"] = Namespace.to
function Namespace:except(room) return operator(self):except(room) end
function Namespace:emit(event, ...) return operator(self):emit(event, ...) end
function Namespace:send(...) return operator(self):emit("message", ...) end
function Namespace:fetchSockets() return operator(self):fetchSockets() end
function Namespace:socketsJoin(room) return operator(self):socketsJoin(room) end
function Namespace:socketsLeave(room) return operator(self):socketsLeave(room) end
function Namespace:disconnectSockets(close) return operator(self):disconnectSockets(close) end

-- ---------------------------------------------------------------- broadcast operators

Operator.__index = function(op, k)
  if k == "volatile" then
    local copy = operator(op._nsp, op._rooms, op._except, op._except_socket, { volatile = true })
    return copy
  end
  return Operator[k]
end

local function add_rooms(list, rooms)
  local out = { table.unpack(list) }
  if type(rooms) == "table" then
    for _, r in ipairs(rooms) do out[#out + 1] = tostring(r) end
  else
    out[#out + 1] = tostring(rooms)
  end
  return out
end

function Operator:to(rooms)
  return operator(self._nsp, add_rooms(self._rooms, rooms), self._except, self._except_socket,
    { volatile = self._volatile })
end
Operator["in"] = Operator.to

function Operator:except(rooms)
  return operator(self._nsp, self._rooms, add_rooms(self._except, rooms), self._except_socket,
    { volatile = self._volatile })
end

function Operator:emit(event, ...)
  assert(type(event) == "string", "emit: the event name must be a string")
  if RESERVED[event] then error("emit: '" .. event .. "' is a reserved event name", 2) end
  local n = select("#", ...)
  if n > 0 and type(select(n, ...)) == "function" then
    error("emit: acknowledgements are not supported when broadcasting", 2)
  end
  local packet, atts = encode(self._nsp.name, EVENT, { event, ... }, n + 1)
  c.broadcast(self._nsp.name, self._rooms, self._except,
    self._except_socket and self._except_socket._h or nil, packet, atts, self._volatile)
  return true
end

function Operator:send(...) return self:emit("message", ...) end

function Operator:fetchSockets()
  return c.sockets(self._nsp.name, self._rooms, self._except)
end

function Operator:socketsJoin(room)
  for _, s in ipairs(self:fetchSockets()) do s:join(room) end
end

function Operator:socketsLeave(room)
  for _, s in ipairs(self:fetchSockets()) do s:leave(room) end
end

function Operator:disconnectSockets(close)
  for _, s in ipairs(self:fetchSockets()) do s:disconnect(close) end
end

-- ---------------------------------------------------------------- sockets

-- What a socket holds is kept small (a server may hold a hundred thousand):
-- data, the handler tables and the handshake are made the first time they
-- are used.
local function handshake_of(s)
  local hs, at = s._chs, s._at
  return {
    headers = hs.headers or {}, query = app.parse_urlencoded(hs.querystring or ""), auth = rawget(s, "_auth") or {},
    address = hs.address, url = hs.url, time = os.date("!%a, %d %b %Y %H:%M:%S GMT", at // 1000),
    issued = at, secure = false, xdomain = hs.headers ~= nil and hs.headers.origin ~= nil,
  }
end

local LAZY = { data = true, _handlers = true, _any = true, _acks = true }

Socket.__index = function(s, k)
  if LAZY[k] then
    local t = {}
    rawset(s, k, t)
    return t
  end
  if k == "handshake" then
    local t = handshake_of(s)
    rawset(s, k, t)
    return t
  end
  if k == "rooms" then return s._h:rooms() end
  if k == "broadcast" then return operator(s.nsp, nil, nil, s) end
  if k == "volatile" then return setmetatable({ _socket = s, volatile = true }, Socket.Flags) end
  if k == "connected" then return s._h:connected() end
  if k == "disconnected" then return not s._h:connected() end
  if k == "transport" then return s._h:transport() end
  return Socket[k]
end

Socket.on = add_handler

function Socket:once(event, fn)
  local function wrapper(...)
    self:off(event, wrapper)
    return fn(...)
  end
  return self:on(event, wrapper)
end

function Socket:off(event, fn)
  local list = self._handlers[event]
  if not list then return self end
  if fn == nil then
    self._handlers[event] = nil
    return self
  end
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
  return self
end

function Socket:onAny(fn)
  self._any[#self._any + 1] = fn
  return self
end

function Socket:offAny(fn)
  if fn == nil then self._any = {} return self end
  for i = #self._any, 1, -1 do
    if self._any[i] == fn then table.remove(self._any, i) end
  end
  return self
end

local function emit_to(s, flags, event, ...)
  assert(type(event) == "string", "emit: the event name must be a string")
  if RESERVED[event] then error("emit: '" .. event .. "' is a reserved event name", 3) end
  local n = select("#", ...)
  local args = { event, ... }
  local id
  local cb = n > 0 and args[n + 1]
  if type(cb) == "function" then
    args[n + 1] = nil
    n = n - 1
    s._ackid = s._ackid + 1
    id = s._ackid
    local pending = { fn = cb, timeout = flags.timeout }
    s._acks[id] = pending
    if flags.timeout then
      pending.timer = timer._after_system(flags.timeout, function()
        if s._acks[id] == pending then
          s._acks[id] = nil
          call("ack timeout", cb, "operation has timed out")
        end
      end)
    end
  end
  local packet, atts = encode(s.nsp.name, EVENT, args, n + 1, id)
  s._h:send(packet, atts, flags.volatile)
  return true
end

function Socket:emit(event, ...) return emit_to(self, {}, event, ...) end
function Socket:send(...) return emit_to(self, {}, "message", ...) end

-- socket:timeout(ms):emit(..., function(err, ...) end)
-- socket.volatile:emit(...), socket.volatile.broadcast:emit(...),
-- socket.volatile:to(room):emit(...)
Socket.Flags = {}
Socket.Flags.__index = function(f, k)
  if k == "broadcast" then return operator(f._socket.nsp, nil, nil, f._socket, { volatile = f.volatile }) end
  return Socket.Flags[k]
end
function Socket.Flags:emit(event, ...) return emit_to(self._socket, self, event, ...) end
function Socket.Flags:to(room)
  return operator(self._socket.nsp, nil, nil, self._socket, { volatile = self.volatile }):to(room)
end
function Socket.Flags:except(room)
  return operator(self._socket.nsp, nil, nil, self._socket, { volatile = self.volatile }):except(room)
end
function Socket.Flags:timeout(ms)
  self.timeout = ms
  return self
end
function Socket:timeout(ms)
  assert(type(ms) == "number" and ms >= 0, "timeout: expects milliseconds")
  return setmetatable({ _socket = self, timeout = ms }, Socket.Flags)
end

function Socket:join(rooms)
  if type(rooms) == "table" then
    for _, r in ipairs(rooms) do self._h:join(tostring(r)) end
  else
    self._h:join(tostring(rooms))
  end
  return self
end

function Socket:leave(room)
  self._h:leave(tostring(room))
  return self
end

function Socket:to(room) return operator(self.nsp, nil, nil, self):to(room) end
Socket["in"] = Socket.to
function Socket:except(room) return operator(self.nsp, nil, nil, self):except(room) end

function Socket:disconnect(close)
  self._h:disconnect(close and true or false)
  return self
end

-- ---------------------------------------------------------------- events from the core

-- Calls every handler in list. A handler may add or remove handlers, so a
-- list of several is copied first; the usual single handler is just called.
local function fire(list, what, ...)
  if not list then return end
  local n = #list
  if n == 1 then return call(what, list[1], ...) end
  for _, fn in ipairs({ table.unpack(list, 1, n) }) do call(what, fn, ...) end
end

-- Connection order, for re-attaching sockets after a reload.
local connected_seq = 0

local callbacks = {}

function callbacks.connect(h, nspname, auth_json, hs)
  local ns = namespaces[nspname]
  if not ns then return h:reject('{"message":"Invalid namespace"}') end
  local auth = nil -- socket.handshake.auth; {} unless the client sent one
  if auth_json ~= "" then
    local ok, v = pcall(app.json_decode, auth_json)
    if ok and type(v) == "table" then auth = v end
  end
  connected_seq = connected_seq + 1
  -- handshake, data and the handler tables come on first use (__index).
  local socket = setmetatable({
    id = h:id(), nsp = ns, _h = h, _ackid = -1, _chs = hs, _auth = auth,
    _at = math.floor(core.time()), _seq = connected_seq,
  }, Socket)
  h:bind(socket)
  -- Middlewares in order; next(err) refuses the connection with err.
  local i = 0
  local function next_mw(err)
    if err ~= nil then
      local body
      if type(err) == "table" then
        body = { message = tostring(err.message or "error"), data = err.data }
      else
        body = { message = tostring(err) }
      end
      return h:reject(cjson.encode(body))
    end
    i = i + 1
    local mw = ns._middlewares[i]
    if mw then
      local ok, e = app._run(mw, socket, next_mw)
      if not ok then
        core.log("error", "io middleware: " .. tostring(e))
        return h:reject(cjson.encode { message = "server error" })
      end
      return
    end
    if not h:accept() then return end
    ns.sockets[socket.id] = socket
    fire(ns._handlers.connection, "io connection handler", socket)
    fire(ns._handlers.connect, "io connect handler", socket)
  end
  next_mw(nil)
end

function callbacks.packet(socket, kind, json, id, atts)
  local args, n = decode(json, atts)
  if not args then
    core.log("warn", "socket " .. socket.id .. ": a packet was dropped, its JSON did not decode: " .. tostring(n))
    return
  end
  if kind == ACK then
    local acks = rawget(socket, "_acks")
    local pending = id and acks and acks[id]
    if not pending then return end
    acks[id] = nil
    if pending.timer then pending.timer:stop() end
    if pending.timeout then
      call("ack callback", pending.fn, nil, table.unpack(args, 1, n))
    else
      call("ack callback", pending.fn, table.unpack(args, 1, n))
    end
    return
  end
  local event = args[1]
  if id then
    local sent = false
    args[n + 1] = function(...)
      if sent then return end
      sent = true
      local packet, a = encode(socket.nsp.name, ACK, { ... }, select("#", ...), id)
      socket._h:send(packet, a)
    end
    n = n + 1
  end
  local any = rawget(socket, "_any")
  if any and #any > 0 then
    for _, fn in ipairs({ table.unpack(any) }) do
      call("onAny handler", fn, table.unpack(args, 1, n))
    end
  end
  fire(socket._handlers[event], "handler for '" .. tostring(event) .. "'", table.unpack(args, 2, n))
end

function callbacks.disconnect(socket, reason)
  socket.nsp.sockets[socket.id] = nil
  for id, pending in pairs(rawget(socket, "_acks") or {}) do
    if pending.timer then pending.timer:stop() end
    socket._acks[id] = nil
  end
  local handlers = rawget(socket, "_handlers") or {}
  fire(handlers.disconnecting, "disconnecting handler", reason)
  fire(handlers.disconnect, "disconnect handler", reason)
end

c.set_callbacks(callbacks)

-- ---------------------------------------------------------------- hot reload

-- moonwire.reload calls these. _take_handlers hands over every namespace's
-- handlers and middlewares and leaves them empty for the next generation;
-- _restore_handlers puts them back when that generation failed to load.
function io._take_handlers()
  local taken = {}
  for name, ns in pairs(namespaces) do
    taken[name] = { handlers = ns._handlers, middlewares = ns._middlewares }
    ns._handlers, ns._middlewares = {}, {}
  end
  return taken
end

function io._restore_handlers(taken)
  for name, ns in pairs(namespaces) do
    local t = taken[name]
    ns._handlers = t and t.handlers or {}
    ns._middlewares = t and t.middlewares or {}
  end
end

-- Once the new generation loaded: every live socket drops the old code's
-- handlers and goes through the new "connection" handlers again, with
-- socket.reloaded = true. Its id, rooms, data and pending acks stay. Sockets
-- are taken in the order they connected.
function io._reattach()
  for _, ns in pairs(namespaces) do
    local live = {}
    for _, socket in pairs(ns.sockets) do live[#live + 1] = socket end
    table.sort(live, function(a, b) return a._seq < b._seq end)
    for _, socket in ipairs(live) do
      socket._handlers, socket._any = {}, {}
      socket.reloaded = true
    end
    for _, socket in ipairs(live) do
      if ns.sockets[socket.id] then -- a handler before it may have disconnected it
        fire(ns._handlers.connection, "io connection handler", socket)
        fire(ns._handlers.connect, "io connect handler", socket)
      end
    end
  end
end

-- ---------------------------------------------------------------- the module

local main = namespace("/")

function io.of(name) return namespace(name) end
function io.on(event, fn) return main:on(event, fn) end
function io.use(fn) return main:use(fn) end
function io.emit(event, ...) return main:emit(event, ...) end
function io.send(...) return main:send(...) end
function io.to(room) return main:to(room) end
io["in"] = io.to
function io.except(room) return main:except(room) end
function io.fetchSockets() return main:fetchSockets() end
function io.socketsJoin(room) return main:socketsJoin(room) end
function io.socketsLeave(room) return main:socketsLeave(room) end
function io.disconnectSockets(close) return main:disconnectSockets(close) end
io.sockets = main

-- io.configure{ path, pingInterval, pingTimeout, maxHttpBufferSize, connectTimeout, transports, cors = { origin } }
function io.configure(opts)
  assert(type(opts) == "table", "io.configure: expects a table of options")
  c.configure(opts)
end

function io.options() return c.options() end

return setmetatable(io, {
  __index = function(_, k)
    if k == "volatile" then return main.volatile end
  end,
})
