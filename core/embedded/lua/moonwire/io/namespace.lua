-- moonwire.io.namespace: namespaces, their broadcast operators, and dynamic
-- namespaces (parents whose children are made as clients connect).
--
-- Every operator goes through its namespace's adapter (ns.adapter): the
-- local one (moonwire.io.local_adapter) in one process, or the Redis
-- adapter (moonwire.io.redis_adapter), which wraps the local one and tells
-- the other servers too.
local c = require "moonwire.io_c"
local core = require "moonwire.core"
local db = require "moonwire.db"
local json = require "moonwire.json"
local runner = require "moonwire.runner"
local packet = require "moonwire.io.packet"

local M = {}
local null = json.null
local call = runner.call

-- Emits inside db.transaction(fn) wait for its commit (db.on_commit) and
-- are dropped when it rolls back: a client never hears of a row that is
-- not there. Outside a transaction they go out at once.
local in_transaction, on_commit = db.in_transaction, db.on_commit
M.in_transaction = in_transaction

-- Runs fn(...) once the running transaction commits; the values are taken
-- as they are then.
local function after_commit(fn, ...)
  local args = table.pack(...)
  on_commit(function() fn(table.unpack(args, 1, args.n)) end)
  return true
end
M.after_commit = after_commit
M.NO_WAIT_IN_TX = "emitWithAck: inside db.transaction a packet leaves only once the transaction commits, "
  .. "so its answer cannot be waited for there; emit with a callback, or wait after db.transaction returns"

-- Who watches the sockets (moonwire.io.admin, the Admin UI), or nil; each
-- is called where it happens: connected(socket) after the "connection"
-- handlers, disconnected(socket, reason) with its rooms still on,
-- joined(socket, room) / left(socket, room), received(socket, args, n)
-- for an incoming event, sent(socket, args, n) for a socket's own emit and
-- broadcast(ns, opts, args, n) for one through the local adapter.
M.watch = nil

local namespaces = {}
local parents = {} -- dynamic namespaces: { matcher, ... } in the order io.of made them
M.namespaces, M.parents = namespaces, parents

local Namespace = {}
local Operator = {}
M.Namespace, M.Operator = Namespace, Operator

-- The adapter every namespace uses (set_adapter).
local adapter

local function operator(nsp, rooms, except, except_socket, flags)
  return setmetatable({ _nsp = nsp, _rooms = rooms or {}, _except = except or {},
    _except_socket = except_socket, _volatile = flags and flags.volatile,
    _timeout = flags and flags.timeout, _local = flags and flags["local"] }, Operator)
end
M.operator = operator

-- The namespace called name, made on first use.
function M.namespace(name)
  assert(type(name) == "string" and name:sub(1, 1) == "/", "a namespace name starts with '/'")
  local ns = namespaces[name]
  if ns then return ns end
  c.namespace(name)
  ns = setmetatable({ name = name, _handlers = {}, _middlewares = {}, sockets = {}, _ids = 0, adapter = adapter },
    Namespace)
  namespaces[name] = ns
  adapter:add_namespace(name)
  return ns
end

-- Makes a the adapter of every namespace, now and to come.
function M.set_adapter(a)
  adapter = a
  for name, ns in pairs(namespaces) do
    ns.adapter = a
    a:add_namespace(name)
  end
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
M.handlers_of = handlers_of

-- Calls every handler in list (or the one function a socket keeps for an
-- event with a single handler). A handler may add or remove handlers, so a
-- list of several is copied first; the usual single handler is just called.
function M.fire(list, what, ...)
  if not list then return end
  if type(list) == "function" then return call(what, list, ...) end
  local n = #list
  if n == 1 then return call(what, list[1], ...) end
  for _, fn in ipairs({ table.unpack(list, 1, n) }) do call(what, fn, ...) end
end
Namespace._listeners = handlers_of

function M.middlewares_of(ns)
  local p = ns._parent
  if not p or #p._middlewares == 0 then return ns._middlewares end
  local all = { table.unpack(p._middlewares) }
  for _, fn in ipairs(ns._middlewares) do all[#all + 1] = fn end
  return all
end

-- A namespace keeps a list per event (a socket keeps the function alone
-- while there is one: Socket:on).
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
M.add_handler = add_handler

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
-- this namespace (ns:on(event, fn)), through the adapter: in one process
-- those are this process's own, with Redis the other servers' (as in
-- socket.io); ack(err, responses) gets one response per listener (per
-- server) that answered (the last argument each listener gets is its
-- answer function).
local NSP_RESERVED = { connect = true, connection = true, new_namespace = true, disconnect = true,
  disconnecting = true }

local function server_side_emit(ns, event, ...)
  assert(type(event) == "string", "serverSideEmit: the event name must be a string")
  if NSP_RESERVED[event] then error("serverSideEmit: '" .. event .. "' is a reserved event name", 3) end
  local n = select("#", ...)
  local args = { event, ... }
  n = n + 1
  local ack = n > 1 and type(args[n]) == "function" and args[n] or nil
  if ack then
    args[n] = nil
    n = n - 1
  end
  local wrapped = ack and function(err, responses) call("serverSideEmit ack", ack, err, responses) end
  ns.adapter:server_side_emit(ns, args, n, wrapped)
  return true
end

function Namespace:serverSideEmit(event, ...) return server_side_emit(self, event, ...) end

function Namespace:serverSideEmitWithAck(event, ...)
  local wake, wait = runner.waiter("serverSideEmitWithAck")
  local n = select("#", ...)
  local args = { ... }
  args[n + 1] = wake
  server_side_emit(self, event, table.unpack(args, 1, n + 1))
  return wait()
end

-- An event for this namespace's listeners (data is { event, args... }, n
-- values), from this server or another: they get the args, and reply last
-- when an answer is wanted.
function Namespace:_server_side_receive(data, n, reply)
  local event = data[1]
  if type(event) ~= "string" or NSP_RESERVED[event] then return end
  local list = handlers_of(self, event)
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

-- What an adapter is told of the targets: rooms, except (room names),
-- except_socket (socket.broadcast's socket), volatile, timeout, local.
local function opts_of(op)
  return { rooms = op._rooms, except = op._except, except_socket = op._except_socket, volatile = op._volatile,
    timeout = op._timeout, ["local"] = op._local }
end

-- A broadcast that expects an answer from every socket it reaches:
-- ack(err, responses) once all answered, or when the timeout fires
-- ("operation has timed out", the responses so far). Each server (this
-- one through the local adapter) says how many of its sockets it reached,
-- and the adapter how many servers there are.
local function broadcast_with_ack(op, args, n, ack)
  if not op._timeout then
    error("emit: a broadcast with an acknowledgement needs a timeout: io.timeout(ms):emit(..., function(err, responses) end)", 3)
  end
  local ns = op._nsp
  local a = ns.adapter
  local opts = opts_of(op)
  local responses, done, t = {}, false, nil
  local expected, servers, expected_servers = 0, 0, -1 -- until the adapter says
  local function finish(err)
    if done then return end
    done = true
    if t then t:stop() end
    call("broadcast ack", ack, err, responses)
  end
  local function check()
    if not done and servers == expected_servers and #responses == expected then finish(nil) end
  end
  a:broadcast_with_ack(ns, opts, args, n, function(count) -- a server reached count sockets
    if done then return end
    expected, servers = expected + count, servers + 1
    check()
  end, function(reply)
    if done then return end
    responses[#responses + 1] = reply == nil and null or reply
    check()
  end)
  a:server_count(ns, function(count) -- unknown: the timeout ends it
    if count then
      expected_servers = count
      check()
    end
  end, opts)
  if not done then
    t = require("moonwire.timer")._after_system(op._timeout, function() t = nil finish("operation has timed out") end)
  end
  return true
end

function Operator:emit(event, ...)
  assert(type(event) == "string", "emit: the event name must be a string")
  if packet.RESERVED[event] then error("emit: '" .. event .. "' is a reserved event name", 2) end
  if in_transaction() then return after_commit(Operator.emit, self, event, ...) end
  local n = select("#", ...)
  local args = { event, ... }
  n = n + 1
  if n > 1 and type(args[n]) == "function" then
    local ack = args[n]
    args[n] = nil
    return broadcast_with_ack(self, args, n - 1, ack)
  end
  self._nsp.adapter:broadcast(self._nsp, opts_of(self), args, n)
  return true
end

-- local err, responses = io.timeout(ms):emitWithAck(event, ...)
function Operator:emitWithAck(event, ...)
  if in_transaction() then
    error(M.NO_WAIT_IN_TX, 2)
  end
  local wake, wait = runner.waiter("emitWithAck")
  local n = select("#", ...)
  local args = { ... }
  args[n + 1] = wake
  self:emit(event, table.unpack(args, 1, n + 1))
  return wait()
end

function Operator:send(...) return self:emit("message", ...) end

-- local sockets, err = io.fetchSockets(): this process's sockets, and with
-- the Redis adapter the other servers' too (remote ones: id, handshake,
-- rooms, data, emit, join, leave, disconnect). When the adapter must ask
-- other servers it waits inside the handler, and err tells when not every
-- server answered in time. With a function, it calls fn(sockets, err)
-- instead of returning them.
function Operator:fetchSockets(fn)
  local ns = self._nsp
  local opts = opts_of(self)
  if fn then
    ns.adapter:fetch_sockets(ns, opts, function(...) call("fetchSockets callback", fn, ...) end)
    return
  end
  local answered, list, err, wake
  ns.adapter:fetch_sockets(ns, opts, function(l, e)
    if wake then return wake(l, e) end
    answered, list, err = true, l, e
  end)
  if answered then return list, err end -- at once: this process alone
  local wait
  wake, wait = runner.waiter("fetchSockets")
  return wait()
end

-- These act on this process's sockets at once, and tell the other servers.
function Operator:socketsJoin(room) self._nsp.adapter:add_sockets(self._nsp, opts_of(self), room) end
function Operator:socketsLeave(room) self._nsp.adapter:del_sockets(self._nsp, opts_of(self), room) end
function Operator:disconnectSockets(close) self._nsp.adapter:disconnect_sockets(self._nsp, opts_of(self), close) end

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

-- A reload starts counting again (moonwire.io.reload).
function M.reset_parent_seq() parent_seq = 0 end

function M.parent(matcher)
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
function M.match_parent(name, auth, done)
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
    local ok, err = runner.run(p._matcher, name, auth or {}, function(e, allow)
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

return M
