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
local json = require "moonwire.json"
local json_c = require "moonwire.json_c"

local io = {}
local null = json.null
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

-- ---------------------------------------------------------------- packets

-- Returns the packet text and its attachments (or nil): args[1..n] (nil is
-- null) as JSON in one pass of the C codec, binary values written as
-- {"_placeholder":true,"num":N} (socket.io's key order) with their data as
-- the attachments. args is left as it is. Raises when a value cannot be
-- sent (a function, a table key that is not a string or a number...).
local function encode(nsp, kind, args, n, id)
  local text, atts = json_c.packet(kind, nsp, id, args, n, Binary)
  if not text then error((kind == ACK and "ack: " or "emit: ") .. atts, 0) end
  return text, atts
end

-- Decodes a payload into an argument list; top-level nulls become nil
-- (n counts them) and placeholders the binary values of atts.
local function decode(payload, atts)
  return json_c.decode_args(payload, atts, Binary) -- never raises: nil and a message
end

-- Every handler runs in a pooled coroutine; errors are logged with their
-- traceback and never reach the client or the core.
local call = app._call

-- ---------------------------------------------------------------- connection state recovery

-- io.configure{ connectionStateRecovery = { maxDisconnectionDuration, skipMiddlewares, maxPackets, maxBytes } }
-- When on, every event sent without an ack and not volatile carries an offset
-- as its last argument and is kept in one log for the whole server, bounded
-- by maxPackets and maxBytes (the oldest go first) and by age. A socket that
-- drops for a recoverable reason leaves a session (id, rooms, data) for
-- maxDisconnectionDuration; a client that comes back with its pid and last
-- offset gets the same socket back and every packet it missed, in order.
local recovery -- nil when off
local RECOVERABLE = { ["transport error"] = true, ["transport close"] = true, ["forced close"] = true,
  ["ping timeout"] = true, ["server shutting down"] = true, ["forced server close"] = true }
local plog = { first = 1, last = 0, bytes = 0, byid = {} } -- seq → entry; offset → seq
local sessions = {} -- pid → { sid, pid, nsp, rooms, data, at }
local offset_seq = 0
local offset_prefix = string.format("%x", math.floor(core.time()) % 0x100000)

local function plog_drop_first()
  local e = plog[plog.first]
  plog[plog.first] = nil
  plog.byid[e.id] = nil
  plog.bytes = plog.bytes - e.size
  plog.first = plog.first + 1
end

local function expire(now)
  local threshold = now - recovery.max
  while plog.first <= plog.last and plog[plog.first].at < threshold do plog_drop_first() end
  for pid, session in pairs(sessions) do
    if session.at < threshold then sessions[pid] = nil end
  end
end

-- Appends the offset to args (n of them) and returns the new count; the
-- entry is completed with the packet once it is encoded.
local function plog_add(nsp, rooms, except, except_id, args, n)
  offset_seq = offset_seq + 1
  local id = offset_prefix .. "-" .. string.format("%x", offset_seq)
  args[n + 1] = id
  local e = { id = id, nsp = nsp, rooms = rooms, except = except, except_id = except_id, at = core.time() }
  return n + 1, e
end

local function plog_store(e, packet, atts)
  e.packet, e.atts = packet, atts
  local size = #packet + 64
  if atts then for _, a in ipairs(atts) do size = size + #a end end
  e.size = size
  plog.last = plog.last + 1
  plog[plog.last] = e
  plog.byid[e.id] = plog.last
  plog.bytes = plog.bytes + size
  while plog.last - plog.first + 1 > recovery.max_packets or plog.bytes > recovery.max_bytes do
    plog_drop_first()
  end
  if plog[plog.first].at < e.at - recovery.max then expire(e.at) end
end

-- Would a socket in rooms (a set) have received entry e?
local function included(e, rooms, sid)
  if e.except_id == sid then return false end
  for _, r in ipairs(e.except) do if rooms[r] then return false end end
  if #e.rooms == 0 then return true end
  for _, r in ipairs(e.rooms) do if rooms[r] then return true end end
  return false
end

-- The session for pid with the packets missed since offset, or nil (and
-- the session is used up either way).
local function restore_session(nspname, pid, offset)
  local session = sessions[pid]
  if not session or session.nsp ~= nspname then return nil end
  sessions[pid] = nil
  if session.at + recovery.max < core.time() then return nil end
  local seq = plog.byid[offset]
  if not seq then return nil end -- too old: the log was cut past it
  local rooms = {}
  for _, r in ipairs(session.rooms) do rooms[r] = true end
  local missed = {}
  for i = seq + 1, plog.last do
    local e = plog[i]
    if e.nsp == nspname and included(e, rooms, session.sid) then missed[#missed + 1] = e end
  end
  session.missed = missed
  return session
end

-- ---------------------------------------------------------------- namespaces

local namespaces = {}
local parents = {} -- dynamic namespaces: { matcher, ... } in the order io.of made them
local Namespace = {}
local Operator = {}
local Socket = {}

local function operator(nsp, rooms, except, except_socket, flags)
  return setmetatable({ _nsp = nsp, _rooms = rooms or {}, _except = except or {},
    _except_socket = except_socket, _volatile = flags and flags.volatile,
    _timeout = flags and flags.timeout, _local = flags and flags["local"] }, Operator)
end

-- The Redis adapter (moonwire.adapter) when io.configure{ adapter = { redis = url } }
-- or --redis turned it on; nil in one process.
local adapter

local function namespace(name)
  assert(type(name) == "string" and name:sub(1, 1) == "/", "a namespace name starts with '/'")
  local ns = namespaces[name]
  if ns then return ns end
  c.namespace(name)
  ns = setmetatable({ name = name, _handlers = {}, _middlewares = {}, sockets = {}, _ids = 0 }, Namespace)
  namespaces[name] = ns
  if adapter then adapter:add_namespace(name) end
  return ns
end

Namespace.__index = function(ns, k)
  if k == "volatile" then return operator(ns, nil, nil, nil, { volatile = true }) end
  if k == "local" then return operator(ns, nil, nil, nil, { ["local"] = true }) end
  return Namespace[k]
end

-- A child of a dynamic namespace runs its parent's handlers and middlewares
-- (then its own): hot reload replaces the parent's, and children follow.
local function handlers_of(ns, event)
  local p = ns._parent
  local own = ns._handlers[event]
  if not p then return own end
  local inherited = p._handlers[event]
  if not own then return inherited end
  if not inherited then return own end
  local both = { table.unpack(inherited) }
  for _, fn in ipairs(own) do both[#both + 1] = fn end
  return both
end

local function middlewares_of(ns)
  local p = ns._parent
  if not p or #p._middlewares == 0 then return ns._middlewares end
  local all = { table.unpack(p._middlewares) }
  for _, fn in ipairs(ns._middlewares) do all[#all + 1] = fn end
  return all
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
function Namespace:emitWithAck(event, ...) return operator(self):emitWithAck(event, ...) end
function Namespace:send(...) return operator(self):emit("message", ...) end
function Namespace:timeout(ms) return operator(self):timeout(ms) end
function Namespace:fetchSockets(fn) return operator(self):fetchSockets(fn) end
function Namespace:socketsJoin(room) return operator(self):socketsJoin(room) end
function Namespace:socketsLeave(room) return operator(self):socketsLeave(room) end
function Namespace:disconnectSockets(close) return operator(self):disconnectSockets(close) end

-- ns:serverSideEmit(event, ...[, ack]): to the app's listeners of event on
-- this namespace (ns:on(event, fn)). In one process those are this
-- process's own; ack(err, responses) gets one response per listener that
-- answered (the last argument each listener gets is its answer function).
local NSP_RESERVED = { connect = true, connection = true, new_namespace = true, disconnect = true,
  disconnecting = true }

local function server_side_emit(ns, timeout, event, ...)
  assert(type(event) == "string", "serverSideEmit: the event name must be a string")
  if NSP_RESERVED[event] then error("serverSideEmit: '" .. event .. "' is a reserved event name", 3) end
  local n = select("#", ...)
  local args = { ... }
  local ack = n > 0 and type(args[n]) == "function" and args[n] or nil
  if adapter then -- the other servers, as socket.io does
    if ack then n = n - 1 end
    local wrapped = ack and function(err, responses) call("serverSideEmit ack", ack, err, responses) end
    adapter:server_side_emit(ns, { event, table.unpack(args, 1, n) }, n + 1, wrapped)
    return true
  end
  local list = handlers_of(ns, event) or {}
  if not ack then
    for _, fn in ipairs({ table.unpack(list) }) do call("serverSideEmit handler for '" .. event .. "'", fn, table.unpack(args, 1, n)) end
    return true
  end
  n = n - 1
  local responses, expected, done, t = {}, #list, false, nil
  local function finish(err)
    if done then return end
    done = true
    if t then t:stop() end
    call("serverSideEmit ack", ack, err, responses)
  end
  if expected == 0 then finish(nil) return true end
  t = timer._after_system(timeout or 5000, function() t = nil finish("operation has timed out") end)
  for _, fn in ipairs({ table.unpack(list) }) do
    local answered = false
    args[n + 1] = function(reply)
      if answered or done then return end
      answered = true
      responses[#responses + 1] = reply == nil and null or reply
      if #responses == expected then finish(nil) end
    end
    call("serverSideEmit handler for '" .. event .. "'", fn, table.unpack(args, 1, n + 1))
  end
  return true
end

function Namespace:serverSideEmit(event, ...) return server_side_emit(self, nil, event, ...) end

-- An event from another server (data is { event, args... }): this
-- namespace's listeners get the args, and reply last when it wants an answer.
local function server_side_receive(ns, data, n, reply)
  local event = data[1]
  if type(event) ~= "string" or NSP_RESERVED[event] then return end
  local list = handlers_of(ns, event)
  if not list then return end
  local args = { table.unpack(data, 2, n) }
  n = n - 1
  for i = 1, n do
    if args[i] == null then args[i] = nil end
  end
  if reply then
    n = n + 1
    args[n] = reply
  end
  for _, fn in ipairs({ table.unpack(list) }) do
    call("serverSideEmit handler for '" .. event .. "'", fn, table.unpack(args, 1, n))
  end
end
function Namespace:serverSideEmitWithAck(event, ...)
  local wake, wait = app._waiter("serverSideEmitWithAck")
  local n = select("#", ...)
  local args = { ... }
  args[n + 1] = wake
  server_side_emit(self, nil, event, table.unpack(args, 1, n + 1))
  return wait()
end

-- ---------------------------------------------------------------- broadcast operators

Operator.__index = function(op, k)
  if k == "volatile" then
    return operator(op._nsp, op._rooms, op._except, op._except_socket,
      { volatile = true, timeout = op._timeout, ["local"] = op._local })
  end
  if k == "local" then
    return operator(op._nsp, op._rooms, op._except, op._except_socket,
      { volatile = op._volatile, timeout = op._timeout, ["local"] = true })
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

local function flags_of(op) return { volatile = op._volatile, timeout = op._timeout, ["local"] = op._local } end

function Operator:to(rooms)
  return operator(self._nsp, add_rooms(self._rooms, rooms), self._except, self._except_socket, flags_of(self))
end
Operator["in"] = Operator.to

function Operator:except(rooms)
  return operator(self._nsp, self._rooms, add_rooms(self._except, rooms), self._except_socket, flags_of(self))
end

function Operator:timeout(ms)
  assert(type(ms) == "number" and ms >= 0, "timeout: expects milliseconds")
  return operator(self._nsp, self._rooms, self._except, self._except_socket,
    { volatile = self._volatile, timeout = ms, ["local"] = self._local })
end

-- This process's sockets of ns in any of rooms (every one when there are
-- none), minus those in except and the socket es.
local function local_sockets(ns, rooms, except, es)
  return c.sockets(ns.name, rooms, except, es and es._h or nil)
end

-- Calls onAnyOutgoing listeners of the sockets a broadcast reached.
local function notify_outgoing(ns, rooms, except, es, args, n)
  if not next(ns._out_sockets or {}) then return end
  for _, s in ipairs(local_sockets(ns, rooms, except, es)) do
    local out = rawget(s, "_any_out")
    if out and #out > 0 then
      for _, fn in ipairs({ table.unpack(out) }) do call("onAnyOutgoing handler", fn, table.unpack(args, 1, n)) end
    end
  end
end

-- Sends an event (args[1] is its name, n values in all) to this process's
-- target sockets: logged for recovery, encoded once. Broadcasts from other
-- servers (the Redis adapter) come here too.
local function deliver(ns, rooms, except, es, volatile, args, n)
  local entry
  if recovery and not volatile then
    n, entry = plog_add(ns.name, rooms, except, es and es.id, args, n)
  end
  local out = ns._out_sockets and next(ns._out_sockets) and { table.unpack(args, 1, n) }
  local packet, atts = encode(ns.name, EVENT, args, n)
  if entry then plog_store(entry, packet, atts) end
  c.broadcast(ns.name, rooms, except, es and es._h or nil, packet, atts, volatile)
  if out then notify_outgoing(ns, rooms, except, es, out, n) end
end

-- The same with an ack id: on_reply(value) for each socket that answers
-- within timeout ms. Returns how many sockets it was sent to.
local function deliver_with_ack(ns, rooms, except, es, volatile, timeout, args, n, on_reply)
  local id = ns._ids
  ns._ids = id + 1
  local packet, atts = encode(ns.name, EVENT, args, n, id)
  local waiting, count = {}, 0
  for _, s in ipairs(local_sockets(ns, rooms, except, es)) do
    if s._h:connected() then
      count = count + 1
      waiting[s] = true
      s._acks[id] = { fn = function(reply)
        waiting[s] = nil
        on_reply(reply)
      end }
      s._h:send(packet, atts, volatile)
    end
  end
  if count > 0 then
    timer._after_system(timeout, function() -- answers that did not come are forgotten
      for s in pairs(waiting) do
        local acks = rawget(s, "_acks")
        if acks then acks[id] = nil end
      end
    end)
  end
  return count
end

-- The except list with the socket of socket.broadcast in it, for other
-- servers (there it is a room like any other).
local function except_all(op)
  local es = op._except_socket
  if not es then return op._except end
  local out = { table.unpack(op._except) }
  out[#out + 1] = es.id
  return out
end

local function remote(op) return adapter and not op._local end

-- A broadcast that expects an answer from every socket it reaches:
-- ack(err, responses) once all answered, or when the timeout fires
-- ("operation has timed out", the responses so far). With the Redis
-- adapter, every server says how many of its sockets it reached.
local function broadcast_with_ack(op, args, n, ack)
  if not op._timeout then
    error("emit: a broadcast with an acknowledgement needs a timeout: io.timeout(ms):emit(..., function(err, responses) end)", 3)
  end
  local ns = op._nsp
  local responses, done, t = {}, false, nil
  local expected, servers, expected_servers = 0, 1, 1
  local function finish(err)
    if done then return end
    done = true
    if t then t:stop() end
    call("broadcast ack", ack, err, responses)
  end
  local function check()
    if not done and servers == expected_servers and #responses == expected then finish(nil) end
  end
  local function on_reply(reply)
    if done then return end
    responses[#responses + 1] = reply == nil and null or reply
    check()
  end
  if remote(op) then
    expected_servers = -1 -- until Redis says
    adapter:broadcast_with_ack(ns, op._rooms, except_all(op), op._volatile, op._timeout, args, n,
      function(count) -- another server reached count sockets
        if done then return end
        expected, servers = expected + count, servers + 1
        check()
      end, on_reply,
      function(count) -- the number of servers
        expected_servers = count
        check()
      end)
  end
  expected = expected + deliver_with_ack(ns, op._rooms, op._except, op._except_socket, op._volatile, op._timeout, args, n, on_reply)
  check()
  if not done then
    t = timer._after_system(op._timeout, function() t = nil finish("operation has timed out") end)
  end
  return true
end

function Operator:emit(event, ...)
  assert(type(event) == "string", "emit: the event name must be a string")
  if RESERVED[event] then error("emit: '" .. event .. "' is a reserved event name", 2) end
  local n = select("#", ...)
  local args = { event, ... }
  n = n + 1
  if n > 1 and type(args[n]) == "function" then
    local ack = args[n]
    args[n] = nil
    return broadcast_with_ack(self, args, n - 1, ack)
  end
  if remote(self) then adapter:broadcast(self._nsp, self._rooms, except_all(self), self._volatile, args, n) end
  deliver(self._nsp, self._rooms, self._except, self._except_socket, self._volatile, args, n)
  return true
end

-- local err, responses = io.timeout(ms):emitWithAck(event, ...)
function Operator:emitWithAck(event, ...)
  local wake, wait = app._waiter("emitWithAck")
  local n = select("#", ...)
  local args = { ... }
  args[n + 1] = wake
  self:emit(event, table.unpack(args, 1, n + 1))
  return wait()
end

function Operator:send(...) return self:emit("message", ...) end

-- local sockets, err = io.fetchSockets(): this process's sockets, and with
-- the Redis adapter the other servers' too (remote ones: id, handshake,
-- rooms, data, emit, join, leave, disconnect). Then it waits inside the
-- handler, and err tells when not every server answered in time. With a
-- function, it calls fn(sockets, err) instead of waiting.
function Operator:fetchSockets(fn)
  local list = local_sockets(self._nsp, self._rooms, self._except)
  if not remote(self) then
    if fn then call("fetchSockets callback", fn, list) return end
    return list
  end
  if fn then
    adapter:fetch(self._nsp, self._rooms, self._except, list, function(...) call("fetchSockets callback", fn, ...) end)
    return
  end
  local wake, wait = app._waiter("fetchSockets")
  adapter:fetch(self._nsp, self._rooms, self._except, list, wake)
  return wait()
end

-- These act on this process's sockets at once, and tell the other servers.
function Operator:socketsJoin(room)
  for _, s in ipairs(local_sockets(self._nsp, self._rooms, self._except)) do s:join(room) end
  if remote(self) then adapter:remote(self._nsp, "join", self._rooms, self._except, room) end
end

function Operator:socketsLeave(room)
  local list = type(room) == "table" and room or { room }
  for _, s in ipairs(local_sockets(self._nsp, self._rooms, self._except)) do
    for _, r in ipairs(list) do s:leave(r) end
  end
  if remote(self) then adapter:remote(self._nsp, "leave", self._rooms, self._except, room) end
end

function Operator:disconnectSockets(close)
  for _, s in ipairs(local_sockets(self._nsp, self._rooms, self._except)) do s:disconnect(close) end
  if remote(self) then adapter:remote(self._nsp, "disconnect", self._rooms, self._except, close) end
end

-- ---------------------------------------------------------------- dynamic namespaces

-- io.of("^/dynamic%-%d+$") or io.of(function(name, auth, next) next(nil, true) end):
-- a parent whose children are made when a client connects to a matching name.
local Parent = {}
Parent.__index = Parent
Parent.on = add_handler
Parent.use = Namespace.use

function Parent:emit(event, ...)
  for _, child in pairs(self.children) do child:emit(event, ...) end
  return true
end
function Parent:send(...) return self:emit("message", ...) end

local parent_seq = 0 -- function parents are matched by creation order across reloads

local function parent(matcher)
  if type(matcher) == "string" then
    for _, p in ipairs(parents) do if p._matcher == matcher then return p end end
  else
    parent_seq = parent_seq + 1
    local p = parents[parent_seq]
    if p and type(p._matcher) == "function" and p._fn_seq == parent_seq then
      p._matcher = matcher
      return p
    end
  end
  local p = setmetatable({ name = type(matcher) == "string" and matcher or "<function>", _matcher = matcher,
    _handlers = {}, _middlewares = {}, children = {}, _fn_seq = type(matcher) == "function" and parent_seq or nil }, Parent)
  parents[#parents + 1] = p
  c.dynamic(true)
  return p
end

-- Finds the parent that accepts name, in order; calls done(parent or nil).
local function match_parent(name, auth, done)
  local i = 0
  local function try()
    i = i + 1
    local p = parents[i]
    if not p then return done(nil) end
    if type(p._matcher) == "string" then
      if name:match(p._matcher) then return done(p) end
      return try()
    end
    local answered = false
    local ok, err = app._run(p._matcher, name, auth or {}, function(e, allow)
      if answered then return end
      answered = true
      if e == nil and allow then return done(p) end
      return try()
    end)
    if not ok then
      core.log("error", "io.of(function) for " .. name .. ": " .. tostring(err))
      if not answered then answered = true return try() end
    end
  end
  try()
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

-- socket.conn: the Engine.IO connection under the socket.
local Conn = {}
Conn.__index = function(conn, k)
  if k == "transport" then return { name = conn._s._h:transport() } end
  if k == "readyState" then return conn._s._h:connected() and "open" or "closed" end
  -- Bytes queued for the client and not yet taken by it (what a slow
  -- consumer holds; past maxBackpressure it is disconnected).
  if k == "bufferedAmount" then return conn._s._h:buffered() end
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
  if RESERVED[event] then error("emit: '" .. event .. "' is a reserved event name", 3) end
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
  if recovery and not id and not flags.volatile then
    n, entry = plog_add(s.nsp.name, { s.id }, {}, nil, args, n)
  end
  if rawget(s, "_any_out") then notify_socket_outgoing(s, args, n) end
  local packet, atts = encode(s.nsp.name, EVENT, args, n, id)
  if entry then plog_store(entry, packet, atts) end
  s._h:send(packet, atts, flags.volatile)
  return true
end

-- local err, reply = socket:timeout(ms):emitWithAck(event, ...): waits in
-- the running handler. err is nil, "operation has timed out" or "socket has
-- been disconnected"; then come the values the client acked with.
local function emit_with_ack(s, flags, event, ...)
  local wake, wait = app._waiter("emitWithAck")
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

local function reject_with(h, err)
  local body
  if type(err) == "table" then
    body = { message = tostring(err.message or "error"), data = err.data }
  else
    body = { message = tostring(err) }
  end
  return h:reject(assert(json.encode(body)))
end

-- Past the middlewares: the socket joins, gets what it missed, and the
-- "connection" handlers run.
local function connected(ns, socket, session)
  local h = socket._h
  if not h:accept(rawget(socket, "pid")) then return end
  if session then
    for _, r in ipairs(session.rooms) do
      if r ~= socket.id then h:join(r) end
    end
    for _, e in ipairs(session.missed) do h:send(e.packet, e.atts) end
  end
  ns.sockets[socket.id] = socket
  fire(handlers_of(ns, "connection"), "io connection handler", socket)
  fire(handlers_of(ns, "connect"), "io connect handler", socket)
end

local function connect(ns, h, auth, hs)
  connected_seq = connected_seq + 1
  -- handshake, data and the handler tables come on first use (__index).
  local socket = setmetatable({
    id = h:id(), nsp = ns, _h = h, _chs = hs, _auth = auth,
    _at = math.floor(core.time()), _seq = connected_seq,
  }, Socket)
  local session
  if recovery then
    if type(auth) == "table" and type(auth.pid) == "string" and type(auth.offset) == "string" then
      session = restore_session(ns.name, auth.pid, auth.offset)
      if session and not h:set_id(session.sid) then session = nil end
    end
    if session then
      socket.id, socket.pid, socket.recovered = session.sid, session.pid, true
      if session.data ~= nil then socket.data = session.data end
    else
      socket.pid = c.random_id()
    end
  end
  h:bind(socket)
  if session and recovery.skip then return connected(ns, socket, session) end
  -- Middlewares in order; next(err) refuses the connection with err.
  local mws = middlewares_of(ns)
  local i = 0
  local function next_mw(err)
    if err ~= nil then return reject_with(h, err) end
    i = i + 1
    local mw = mws[i]
    if mw then
      local ok, e = app._run(mw, socket, next_mw)
      if ok == app.PENDING then
        app._after(e, function(done, why)
          if done then return end
          core.log("error", "io middleware: " .. tostring(why))
          h:reject('{"message":"server error"}')
        end)
      elseif not ok then
        core.log("error", "io middleware: " .. tostring(e))
        return h:reject('{"message":"server error"}')
      end
      return
    end
    connected(ns, socket, session)
  end
  next_mw(nil)
end

function callbacks.connect(h, nspname, auth_json, hs)
  local auth = nil -- socket.handshake.auth; {} unless the client sent one
  if auth_json ~= "" then
    local ok, v = pcall(app.json_decode, auth_json)
    if ok and type(v) == "table" then auth = v end
  end
  local ns = namespaces[nspname]
  if ns then return connect(ns, h, auth, hs) end
  match_parent(nspname, auth, function(p)
    if not p then return h:reject('{"message":"Invalid namespace"}') end
    ns = namespace(nspname)
    ns._parent = p
    p.children[nspname] = ns
    if not h:id() then return end -- the client left while the name was checked
    connect(ns, h, auth, hs)
  end)
end

-- Runs the socket's middlewares on an incoming event (args, n), then its handlers.
local function dispatch(socket, args, n)
  local fns = rawget(socket, "_fns")
  if not fns or #fns == 0 then
    return fire(socket._handlers[args[1]], "handler for '" .. tostring(args[1]) .. "'", table.unpack(args, 2, n))
  end
  local i = 0
  local function nxt(err)
    if err ~= nil then
      return fire(rawget(socket, "_handlers") and socket._handlers.error, "error handler", err)
    end
    i = i + 1
    local mw = fns[i]
    if mw then return call("socket middleware", mw, args, nxt) end
    if not socket._h:connected() then return end
    if #args > n then n = #args end
    fire(socket._handlers[args[1]], "handler for '" .. tostring(args[1]) .. "'", table.unpack(args, 2, n))
  end
  nxt(nil)
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
  dispatch(socket, args, n)
end

function callbacks.disconnect(socket, reason)
  if getmetatable(socket) ~= Socket then return end -- left before it was a socket (a dynamic name on trial)
  local ns = socket.nsp
  if ns.sockets[socket.id] == socket then ns.sockets[socket.id] = nil end
  if ns._out_sockets then ns._out_sockets[socket] = nil end
  local handlers = rawget(socket, "_handlers") or {}
  fire(handlers.disconnecting, "disconnecting handler", reason)
  if recovery and RECOVERABLE[reason] and rawget(socket, "pid") then
    local rooms = {}
    for r in pairs(socket._h:rooms()) do rooms[#rooms + 1] = r end
    sessions[socket.pid] = { sid = socket.id, pid = socket.pid, nsp = ns.name, rooms = rooms,
      data = rawget(socket, "data"), at = core.time() }
  end
  -- Acks that will never come: a waiting handler or a callback with a
  -- timeout hears of it now; a plain callback is dropped (as socket.io does).
  for id, pending in pairs(rawget(socket, "_acks") or {}) do
    if pending.timer then pending.timer:stop() end
    socket._acks[id] = nil
    if pending.timeout then call("ack callback", pending.fn, "socket has been disconnected")
    elseif pending.wake then pending.wake("socket has been disconnected") end
  end
  fire(handlers.disconnect, "disconnect handler", reason)
end

c.set_callbacks(callbacks)

-- ---------------------------------------------------------------- hot reload

-- moonwire.reload calls these. _take_handlers hands over every namespace's
-- (and dynamic parent's) handlers and middlewares and leaves them empty for
-- the next generation; _restore_handlers puts them back when that
-- generation failed to load.
function io._take_handlers()
  local taken = {}
  for name, ns in pairs(namespaces) do
    taken[name] = { handlers = ns._handlers, middlewares = ns._middlewares }
    ns._handlers, ns._middlewares = {}, {}
  end
  taken[parents] = {}
  for i, p in ipairs(parents) do
    taken[parents][i] = { handlers = p._handlers, middlewares = p._middlewares, matcher = p._matcher }
    p._handlers, p._middlewares = {}, {}
  end
  parent_seq = 0
  return taken
end

function io._restore_handlers(taken)
  for name, ns in pairs(namespaces) do
    local t = taken[name]
    ns._handlers = t and t.handlers or {}
    ns._middlewares = t and t.middlewares or {}
  end
  for i, p in ipairs(parents) do
    local t = taken[parents] and taken[parents][i]
    p._handlers = t and t.handlers or {}
    p._middlewares = t and t.middlewares or {}
    if t then p._matcher = t.matcher end
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
      rawset(socket, "_fns", nil)
      rawset(socket, "_any_out", nil)
      socket.reloaded = true
    end
    ns._out_sockets = nil
    for _, socket in ipairs(live) do
      if ns.sockets[socket.id] then -- a handler before it may have disconnected it
        fire(handlers_of(ns, "connection"), "io connection handler", socket)
        fire(handlers_of(ns, "connect"), "io connect handler", socket)
      end
    end
  end
end

-- ---------------------------------------------------------------- the module

local main = namespace("/")

-- io.of("/name"), or a dynamic namespace: io.of("^/pattern$") (a Lua
-- pattern: a name never starts with "^") or io.of(function(name, auth, next) end).
function io.of(name)
  if type(name) == "function" or (type(name) == "string" and name:sub(1, 1) == "^") then return parent(name) end
  return namespace(name)
end
function io.on(event, fn) return main:on(event, fn) end
function io.use(fn) return main:use(fn) end
function io.emit(event, ...) return main:emit(event, ...) end
function io.emitWithAck(event, ...) return main:emitWithAck(event, ...) end
function io.send(...) return main:send(...) end
function io.to(room) return main:to(room) end
io["in"] = io.to
function io.except(room) return main:except(room) end
function io.timeout(ms) return main:timeout(ms) end
function io.fetchSockets(fn) return main:fetchSockets(fn) end
function io.socketsJoin(room) return main:socketsJoin(room) end
function io.socketsLeave(room) return main:socketsLeave(room) end
function io.disconnectSockets(close) return main:disconnectSockets(close) end
function io.serverSideEmit(event, ...) return main:serverSideEmit(event, ...) end
function io.serverSideEmitWithAck(event, ...) return main:serverSideEmitWithAck(event, ...) end
io.sockets = main

local sweeper

-- io.configure{ path, pingInterval, pingTimeout, maxHttpBufferSize, connectTimeout, transports, cors = { origin },
--   connectionStateRecovery = { maxDisconnectionDuration, skipMiddlewares, maxPackets, maxBytes } }
function io.configure(opts)
  assert(type(opts) == "table", "io.configure: expects a table of options")
  local csr = opts.connectionStateRecovery
  if csr ~= nil then
    if csr == false then
      recovery = nil
    else
      if csr == true then csr = {} end
      assert(type(csr) == "table", "io.configure: connectionStateRecovery is a table of options")
      local function num(k, default, min)
        local v = csr[k]
        if v == nil then return default end
        assert(type(v) == "number" and v >= min, "io.configure: connectionStateRecovery." .. k .. " must be a number >= " .. min)
        return v
      end
      recovery = {
        max = num("maxDisconnectionDuration", 120000, 0),
        skip = csr.skipMiddlewares ~= false,
        max_packets = math.floor(num("maxPackets", 10000, 1)),
        max_bytes = math.floor(num("maxBytes", 8 * 1024 * 1024, 1024)),
      }
    end
    if sweeper then sweeper:stop() sweeper = nil end
    if recovery then
      local every = math.max(1000, math.min(60000, recovery.max))
      sweeper = timer._every_system(every, function() expire(core.time()) end)
    end
  end
  if opts.adapter ~= nil then io._set_adapter(opts.adapter) end
  c.configure(opts)
end

-- ---------------------------------------------------------------- the Redis adapter

-- What moonwire.adapter needs of this module.
local adapter_host = {
  namespaces = namespaces, Binary = Binary, random_id = c.random_id,
  deliver = deliver, deliver_with_ack = deliver_with_ack, server_side = server_side_receive,
  sockets = function(ns, rooms, except) return local_sockets(ns, rooms, except) end,
}

-- adapter = { redis = url, key = "socket.io", requestsTimeout = 5000,
-- publishOnSpecificResponseChannel = false }, or false for none. --redis URL
-- on the command line wins over the url here.
function io._set_adapter(cfg)
  if cfg == false then
    if adapter then adapter:close() adapter = nil end
    return
  end
  assert(type(cfg) == "table", "io.configure: adapter is a table: { redis = \"redis://127.0.0.1:6379\", key = \"socket.io\" }")
  local url = core.redis or cfg.redis
  assert(type(url) == "string", "io.configure: adapter.redis must be a URL (redis://host:port)")
  assert(cfg.key == nil or (type(cfg.key) == "string" and cfg.key ~= ""), "io.configure: adapter.key must be a string")
  local t = cfg.requestsTimeout
  assert(t == nil or (type(t) == "number" and t > 0), "io.configure: adapter.requestsTimeout must be a number of milliseconds")
  local want = { url = url, key = cfg.key, requestsTimeout = t,
    publishOnSpecificResponseChannel = cfg.publishOnSpecificResponseChannel }
  if adapter and adapter:same(want) then return end -- a reload with the same settings
  local new, err = require("moonwire.adapter").new(adapter_host, want)
  if not new then error("io.configure: adapter.redis: " .. tostring(err), 2) end
  if adapter then adapter:close() end
  adapter = new
end

if core.redis then io._set_adapter({ redis = core.redis }) end

function io.options() return c.options() end

return setmetatable(io, {
  __index = function(_, k)
    if k == "volatile" then return main.volatile end
    if k == "local" then return main["local"] end
  end,
})
