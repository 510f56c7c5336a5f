-- moonwire.io.socket: a Socket.IO socket as a handler sees it: its
-- handlers and middlewares, emits with and without acks, rooms, flags
-- (volatile, timeout, broadcast), socket.conn, the handshake.
local app = require "moonwire.app"
local io_c = require "moonwire.io_c"
local runner = require "moonwire.runner"
local timer = require "moonwire.timer"
local packet = require "moonwire.io.packet"
local recovery = require "moonwire.io.recovery"
local namespace = require "moonwire.io.namespace"

local M = {}
local call = runner.call
local operator = namespace.operator
local EVENT = packet.EVENT

local Socket = {}
M.Socket = Socket


-- What a socket holds is kept small (a server may hold a hundred thousand):
-- data, the handler tables and the handshake are made the first time they
-- are used.
local function handshake_of(s)
  -- _chs: the client's handshake packed in a string by the core (a table
  -- per idle client costs about 600 bytes); unpacked here, once.
  local hs, at = rawget(s, "_chs"), s._at
  if type(hs) == "string" then hs = io_c.handshake(hs) end
  hs = hs or {}
  return {
    headers = hs.headers or {}, query = app.parse_urlencoded(hs.querystring or ""), auth = rawget(s, "_auth") or {},
    address = hs.address, url = hs.url, time = os.date("!%a, %d %b %Y %H:%M:%S GMT", at // 1000),
    issued = at, secure = false, xdomain = hs.headers ~= nil and hs.headers.origin ~= nil,
  }
end

local LAZY = { data = true, _handlers = true, _any = true, _acks = true }

-- socket.conn: the Engine.IO connection under the socket.
local Conn = {}
Conn.__index = function(conn, k)
  if k == "transport" then return { name = conn._s._h:transport() } end
  if k == "readyState" then return conn._s._h:connected() and "open" or "closed" end
  -- Bytes queued for the client and not yet taken by it (what a slow
  -- consumer holds; past maxBackpressure it is disconnected).
  if k == "bufferedAmount" then return conn._s._h:buffered() end
  if k == "id" then return conn._s._h:client_id() end
  return Conn[k]
end
-- Closes the connection as a network failure would: no DISCONNECT packet,
-- the reason is "forced close" and the client reconnects.
function Conn:close() self._s._h:close_transport() end

Socket.__index = function(s, k)
  if LAZY[k] then
    local t = {}
    rawset(s, k, t)
    return t
  end
  if k == "handshake" then
    local t = handshake_of(s)
    rawset(s, k, t)
    rawset(s, "_chs", nil)
    return t
  end
  if k == "rooms" then return s._h:rooms() end
  if k == "broadcast" then return operator(s.nsp, nil, nil, s) end
  if k == "local" then return operator(s.nsp, nil, nil, s, { ["local"] = true }) end
  if k == "volatile" then return setmetatable({ _socket = s, volatile = true }, Socket.Flags) end
  if k == "connected" then return s._h:connected() end
  if k == "disconnected" then return not s._h:connected() end
  if k == "transport" then return s._h:transport() end
  if k == "conn" then return setmetatable({ _s = s }, Conn) end
  if k == "recovered" then return false end
  return Socket[k]
end

-- A socket's handlers for an event: the function itself while there is
-- one (the usual case: a list per event per socket would cost 72 bytes
-- each, times every idle client), a list once there are several.
function Socket:on(event, fn)
  assert(type(fn) == "function", "on: the handler must be a function")
  local hs = self._handlers
  local cur = hs[event]
  if cur == nil then
    hs[event] = fn
  elseif type(cur) == "function" then
    hs[event] = { cur, fn }
  else
    cur[#cur + 1] = fn
  end
  return self
end

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
  if fn == nil or list == fn then
    self._handlers[event] = nil
    return self
  end
  if type(list) == "function" then return self end
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
  return self
end

function Socket:onAny(fn)
  self._any[#self._any + 1] = fn
  return self
end

local function remove_fn(list, fn)
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
end

function Socket:offAny(fn)
  if fn == nil then self._any = {} return self end
  remove_fn(self._any, fn)
  return self
end

function Socket:listenersAny() return { table.unpack(rawget(self, "_any") or {}) } end

-- socket:onAnyOutgoing(fn): fn(event, ...) for every event sent to this
-- socket, by its own emits and by broadcasts that reach it.
function Socket:onAnyOutgoing(fn)
  assert(type(fn) == "function", "onAnyOutgoing: expects a function")
  local out = rawget(self, "_any_out")
  if not out then
    out = {}
    rawset(self, "_any_out", out)
  end
  out[#out + 1] = fn
  local set = self.nsp._out_sockets or setmetatable({}, { __mode = "k" })
  self.nsp._out_sockets = set
  set[self] = true
  return self
end

function Socket:offAnyOutgoing(fn)
  local out = rawget(self, "_any_out")
  if not out then return self end
  if fn == nil then out = {} rawset(self, "_any_out", out) else remove_fn(out, fn) end
  if #out == 0 and self.nsp._out_sockets then self.nsp._out_sockets[self] = nil end
  return self
end

function Socket:listenersAnyOutgoing() return { table.unpack(rawget(self, "_any_out") or {}) } end

-- socket:use(function(packet, next) end): runs for every incoming event
-- before its handlers; packet is { event, args... } (and the ack function
-- last when the client expects one). next(err) drops the packet and emits
-- "error" (err) on the socket.
function Socket:use(fn)
  assert(type(fn) == "function", "use: the middleware must be a function")
  local fns = rawget(self, "_fns")
  if not fns then
    fns = {}
    rawset(self, "_fns", fns)
  end
  fns[#fns + 1] = fn
  return self
end

local function notify_socket_outgoing(s, args, n)
  local out = rawget(s, "_any_out")
  if out and #out > 0 then
    for _, fn in ipairs({ table.unpack(out) }) do call("onAnyOutgoing handler", fn, table.unpack(args, 1, n)) end
  end
end

local function pending_ack(s, cb, flags)
  local id = s.nsp._ids
  s.nsp._ids = id + 1
  local pending = { fn = cb, timeout = flags.timeout, wake = flags.wake }
  s._acks[id] = pending
  if flags.timeout then
    pending.timer = timer._after_system(flags.timeout, function()
      if s._acks[id] == pending then
        s._acks[id] = nil
        call("ack timeout", cb, "operation has timed out")
      end
    end)
  end
  return id
end

local function emit_to(s, flags, event, ...)
  assert(type(event) == "string", "emit: the event name must be a string")
  if packet.RESERVED[event] then error("emit: '" .. event .. "' is a reserved event name", 3) end
  if namespace.in_transaction() then return namespace.after_commit(emit_to, s, flags, event, ...) end
  local n = select("#", ...)
  local args = { event, ... }
  n = n + 1
  local id
  local cb = args[n]
  if n > 1 and type(cb) == "function" then
    args[n] = nil
    n = n - 1
    id = pending_ack(s, cb, flags)
  end
  local entry
  if recovery.on() and not id and not flags.volatile then
    n, entry = recovery.add(s.nsp.name, { s.id }, {}, nil, args, n)
  end
  if rawget(s, "_any_out") then notify_socket_outgoing(s, args, n) end
  local text, atts = packet.encode(s.nsp.name, EVENT, args, n, id)
  if entry then recovery.store(entry, text, atts) end
  s._h:send(text, atts, flags.volatile)
  local w = namespace.watch
  if w then w.sent(s, args, n) end
  return true
end

-- local err, reply = socket:timeout(ms):emitWithAck(event, ...): waits in
-- the running handler. err is nil, "operation has timed out" or "socket has
-- been disconnected"; then come the values the client acked with.
local function emit_with_ack(s, flags, event, ...)
  if namespace.in_transaction() then error(namespace.NO_WAIT_IN_TX, 3) end
  local wake, wait = runner.waiter("emitWithAck")
  local n = select("#", ...)
  local args = { ... }
  if flags.timeout then
    args[n + 1] = wake
  else
    args[n + 1] = function(...) wake(nil, ...) end
  end
  emit_to(s, { timeout = flags.timeout, volatile = flags.volatile, wake = wake }, event, table.unpack(args, 1, n + 1))
  return wait()
end

function Socket:emit(event, ...) return emit_to(self, {}, event, ...) end
function Socket:emitWithAck(event, ...) return emit_with_ack(self, {}, event, ...) end
function Socket:send(...) return emit_to(self, {}, "message", ...) end

-- socket:timeout(ms):emit(..., function(err, ...) end)
-- socket.volatile:emit(...), socket.volatile.broadcast:emit(...),
-- socket.volatile:to(room):emit(...)
Socket.Flags = {}
Socket.Flags.__index = function(f, k)
  if k == "broadcast" then return operator(f._socket.nsp, nil, nil, f._socket, { volatile = f.volatile, timeout = f.timeout }) end
  return Socket.Flags[k]
end
function Socket.Flags:emit(event, ...) return emit_to(self._socket, self, event, ...) end
function Socket.Flags:emitWithAck(event, ...) return emit_with_ack(self._socket, self, event, ...) end
function Socket.Flags:to(room)
  return operator(self._socket.nsp, nil, nil, self._socket, { volatile = self.volatile, timeout = self.timeout }):to(room)
end
function Socket.Flags:except(room)
  return operator(self._socket.nsp, nil, nil, self._socket, { volatile = self.volatile, timeout = self.timeout }):except(room)
end
function Socket.Flags:timeout(ms)
  self.timeout = ms
  return self
end
function Socket:timeout(ms)
  assert(type(ms) == "number" and ms >= 0, "timeout: expects milliseconds")
  return setmetatable({ _socket = self, timeout = ms }, Socket.Flags)
end

local function join(s, room)
  local _, joined = s._h:join(room)
  if joined then
    local w = namespace.watch
    if w then w.joined(s, room) end
  end
end

function Socket:join(rooms)
  if type(rooms) == "table" then
    for _, r in ipairs(rooms) do join(self, tostring(r)) end
  else
    join(self, tostring(rooms))
  end
  return self
end

function Socket:leave(room)
  room = tostring(room)
  local _, left = self._h:leave(room)
  if left then
    local w = namespace.watch
    if w then w.left(self, room) end
  end
  return self
end

function Socket:to(room) return operator(self.nsp, nil, nil, self):to(room) end
Socket["in"] = Socket.to
function Socket:except(room) return operator(self.nsp, nil, nil, self):except(room) end

function Socket:disconnect(close)
  self._h:disconnect(close and true or false)
  return self
end

return M
