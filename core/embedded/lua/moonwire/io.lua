-- moonwire.io: the Socket.IO server API in Lua.
--
--   local io = require "moonwire.io"
--   io.on("connection", function(socket)
--     socket:on("chat message", function(msg) io.emit("chat message", msg) end)
--     socket:on("ferret", function(name, ack) ack("woot") end)
--   end)
--
-- This module is the API and what the C core (core/sio.c, through
-- moonwire.io_c) calls when a client connects, sends a packet or leaves.
-- The rest lives beside it, one concept each, under moonwire.io.*:
--   packet         packets and binary values
--   recovery       connection state recovery (the packet log, sessions)
--   namespace      namespaces, broadcast operators, dynamic namespaces
--   socket         sockets: handlers, emits, acks, rooms, flags
--   local_adapter  rooms and broadcasts in this process (ns.adapter)
--   redis_adapter  the same across servers, through Redis
--   reload         what a hot reload does to namespaces and sockets
local c = require "moonwire.io_c"
local app = require "moonwire.app"
local core = require "moonwire.core"
local json = require "moonwire.json"
local runner = require "moonwire.runner"
local packet = require "moonwire.io.packet"
local recovery = require "moonwire.io.recovery"
local namespace = require "moonwire.io.namespace"
local socket_mod = require "moonwire.io.socket"
local local_adapter_mod = require "moonwire.io.local_adapter"

local io = {}
local null = json.null
io.null = null
io.binary, io.isbinary = packet.binary, packet.isbinary

local ACK = packet.ACK
local Socket = socket_mod.Socket
local fire = namespace.fire
local namespaces = namespace.namespaces
local call = runner.call

-- The adapter of every namespace: the local one, or the Redis adapter
-- (io.configure{ adapter = { redis = url } } or --redis), which wraps it.
local local_adapter = local_adapter_mod.new()
local adapter = local_adapter
local workers_adapter -- --workers N: the adapter between the workers (below)
namespace.set_adapter(adapter)

-- ---------------------------------------------------------------- events from the core

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
  -- false: the client left while the middlewares ran (a stale handle's
  -- actions say so rather than raise, core/l_io.c).
  if not h:accept(rawget(socket, "pid")) then return end
  if session then
    for _, r in ipairs(session.rooms) do
      if r ~= socket.id then h:join(r) end
    end
    for _, e in ipairs(session.missed) do h:send(e.packet, e.atts) end
  end
  ns.sockets[socket.id] = socket
  fire(namespace.handlers_of(ns, "connection"), "io connection handler", socket)
  fire(namespace.handlers_of(ns, "connect"), "io connect handler", socket)
  local w = namespace.watch
  if w and h:connected() then w.connected(socket) end
end

local function connect(ns, h, auth, hs)
  connected_seq = connected_seq + 1
  -- handshake, data and the handler tables come on first use (__index).
  local socket = setmetatable({
    id = h:id(), nsp = ns, _h = h, _chs = hs, _auth = auth,
    _at = math.floor(core.time()), _seq = connected_seq,
  }, Socket)
  local session
  if recovery.on() then
    if type(auth) == "table" and type(auth.pid) == "string" and type(auth.offset) == "string" then
      session = recovery.restore(ns.name, auth.pid, auth.offset)
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
  if session and recovery.skips_middlewares() then return connected(ns, socket, session) end
  -- Middlewares in order; next(err) refuses the connection with err.
  local mws = namespace.middlewares_of(ns)
  local i = 0
  local function next_mw(err)
    if err ~= nil then return reject_with(h, err) end
    i = i + 1
    local mw = mws[i]
    if mw then
      local ok, e = runner.run(mw, socket, next_mw)
      if ok == runner.PENDING then
        runner.after(e, function(done, why)
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
  namespace.match_parent(nspname, auth, function(p)
    if not p then return h:reject('{"message":"Invalid namespace"}') end
    ns = namespace.namespace(nspname)
    ns._parent = p
    p.children[nspname] = ns
    if not h:id() then return end -- the client left while the name was checked
    connect(ns, h, auth, hs)
  end)
end

-- Runs the socket's middlewares on an incoming event (args, n), then its handlers.
-- The label an event's handler errors are logged under, made once per
-- event name rather than once per message (a few hundred names at most are
-- kept: a client may send any).
local labels, nlabels = {}, 0
local function handler_label(event)
  local label = labels[event]
  if label then return label end
  label = "handler for '" .. tostring(event) .. "'"
  if nlabels < 256 and type(event) == "string" then
    labels[event] = label
    nlabels = nlabels + 1
  end
  return label
end

local function dispatch(socket, args, n)
  local fns = rawget(socket, "_fns")
  if not fns or #fns == 0 then
    local list = socket._handlers[args[1]]
    if not list then return end
    return fire(list, handler_label(args[1]), table.unpack(args, 2, n))
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
    fire(socket._handlers[args[1]], handler_label(args[1]), table.unpack(args, 2, n))
  end
  nxt(nil)
end

function callbacks.packet(socket, kind, json, id, atts)
  local args, n = packet.decode(json, atts)
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
      local text, a = packet.encode(socket.nsp.name, ACK, { ... }, select("#", ...), id)
      socket._h:send(text, a)
    end
    n = n + 1
  end
  local w = namespace.watch
  if w then w.received(socket, args, id and n - 1 or n) end
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
  recovery.keep(socket, reason)
  -- Acks that will never come: a waiting handler or a callback with a
  -- timeout hears of it now; a plain callback is dropped (as socket.io does).
  for id, pending in pairs(rawget(socket, "_acks") or {}) do
    if pending.timer then pending.timer:stop() end
    socket._acks[id] = nil
    if pending.timeout then call("ack callback", pending.fn, "socket has been disconnected")
    elseif pending.wake then pending.wake("socket has been disconnected") end
  end
  fire(handlers.disconnect, "disconnect handler", reason)
  local w = namespace.watch
  if w then w.disconnected(socket, reason) end
end

c.set_callbacks(callbacks)

-- ---------------------------------------------------------------- the module

local main = namespace.namespace("/")

-- io.of("/name"), or a dynamic namespace: io.of("^/pattern$") (a Lua
-- pattern: a name never starts with "^") or io.of(function(name, auth, next) end).
function io.of(name)
  if type(name) == "function" or (type(name) == "string" and name:sub(1, 1) == "^") then return namespace.parent(name) end
  return namespace.namespace(name)
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

-- io.configure{ path, pingInterval, pingTimeout, maxHttpBufferSize, connectTimeout, transports, cors = { origin },
--   connectionStateRecovery = { maxDisconnectionDuration, skipMiddlewares, maxPackets, maxBytes, store },
--   adapter = { redis = url, ... }, adminUI = { auth = { username, password }, ... } }
function io.configure(opts)
  assert(type(opts) == "table", "io.configure: expects a table of options")
  if opts.adminUI ~= nil then require("moonwire.io.admin").configure(io, opts.adminUI) end
  if opts.connectionStateRecovery ~= nil then recovery.configure(opts.connectionStateRecovery) end
  if opts.adapter ~= nil then io._set_adapter(opts.adapter) end
  c.configure(opts)
end

-- ---------------------------------------------------------------- the Redis adapter

-- What the Redis adapter needs of this module.
local adapter_host = { namespaces = namespace.namespaces, Binary = packet.Binary, random_id = c.random_id }

-- adapter = { redis = url, key = "socket.io", requestsTimeout = 5000,
-- publishOnSpecificResponseChannel = false }, or false for none. --redis URL
-- on the command line wins over the url here.
function io._set_adapter(cfg)
  if cfg == false then -- the default one: this process's, or the workers'
    if adapter ~= local_adapter and adapter ~= workers_adapter then
      adapter:close()
      adapter = workers_adapter or local_adapter
      namespace.set_adapter(adapter)
    end
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
  if adapter ~= local_adapter and adapter ~= workers_adapter and adapter:same(want) then return end -- a reload with the same settings
  local new, err = require("moonwire.io.redis_adapter").new(local_adapter, adapter_host, want)
  if not new then error("io.configure: adapter.redis: " .. tostring(err), 2) end
  if adapter ~= workers_adapter then adapter:close() end
  adapter = new
  namespace.set_adapter(adapter)
end

-- --workers N: the workers share rooms and broadcasts through one another
-- (moonwire.io.workers_adapter), unless the app or --redis chooses Redis:
-- each worker is then one more server on Redis.
local workers_mod = require "moonwire.io.workers_adapter"
if workers_mod.enabled() then
  workers_adapter = workers_mod.new(local_adapter, adapter_host)
  adapter = workers_adapter
  namespace.set_adapter(adapter)
end

if core.redis then io._set_adapter({ redis = core.redis }) end

function io.options() return c.options() end

return setmetatable(io, {
  __index = function(_, k)
    if k == "volatile" then return main.volatile end
    if k == "local" then return main["local"] end
  end,
})
