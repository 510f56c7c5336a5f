-- moonwire.io.local_adapter: rooms and broadcasts in this process.
--
-- Every namespace's operators call its adapter (ns.adapter); this one is
-- the adapter of a server on its own, and the part of the Redis adapter
-- (moonwire.io.redis_adapter) that reaches this process's sockets. The
-- rooms themselves live in the C core (core/sio.c), which frames a
-- broadcast once for all its recipients.
--
-- The methods, the same for every adapter (opts: rooms, except: room
-- names; except_socket: a socket not to reach; volatile; timeout; local):
--   add_namespace(name)
--   broadcast(ns, opts, args, n)              args[1] the event, n values
--   broadcast_with_ack(ns, opts, args, n, on_count, on_reply)
--                                             on_count(k) once per server, on_reply(v) per answer
--   server_count(ns, cb, opts)                cb(count) or cb(nil, err)
--   sockets(ns, rooms, except, es)            this process's sockets
--   fetch_sockets(ns, opts, cb)               cb(sockets) or cb(nil, err)
--   add_sockets(ns, opts, rooms) / del_sockets(ns, opts, rooms) / disconnect_sockets(ns, opts, close)
--   server_side_emit(ns, args, n, ack)        ack(err, responses) when given
--   close()
local c = require "moonwire.io_c"
local json = require "moonwire.json"
local runner = require "moonwire.runner"
local timer = require "moonwire.timer"
local packet = require "moonwire.io.packet"
local recovery = require "moonwire.io.recovery"
local namespace = require "moonwire.io.namespace"

local null = json.null
local call = runner.call
local EVENT = packet.EVENT

local Local = {}
Local.__index = Local

local M = {}

function M.new() return setmetatable({}, Local) end

function Local:add_namespace() end
function Local:close() end

-- This process's sockets of ns in any of rooms (every one when there are
-- none), minus those in except and the socket es.
function Local:sockets(ns, rooms, except, es)
  return c.sockets(ns.name, rooms, except, es and es._h or nil)
end

-- Calls onAnyOutgoing listeners of the sockets a broadcast reached.
local function notify_outgoing(self, ns, rooms, except, es, args, n)
  if not next(ns._out_sockets or {}) then return end
  for _, s in ipairs(self:sockets(ns, rooms, except, es)) do
    local out = rawget(s, "_any_out")
    if out and #out > 0 then
      for _, fn in ipairs({ table.unpack(out) }) do call("onAnyOutgoing handler", fn, table.unpack(args, 1, n)) end
    end
  end
end

-- Sends an event to the target sockets: logged for recovery, encoded once.
function Local:broadcast(ns, opts, args, n)
  local rooms, except, es, volatile = opts.rooms, opts.except, opts.except_socket, opts.volatile
  local entry
  if recovery.on() and not volatile then
    n, entry = recovery.add(ns.name, rooms, except, es and es.id, args, n)
  end
  local out = ns._out_sockets and next(ns._out_sockets) and { table.unpack(args, 1, n) }
  local text, atts = packet.encode(ns.name, EVENT, args, n)
  if entry then recovery.store(entry, text, atts) end
  c.broadcast(ns.name, rooms, except, es and es._h or nil, text, atts, volatile)
  if out then notify_outgoing(self, ns, rooms, except, es, out, n) end
  local w = namespace.watch
  if w then w.broadcast(ns, opts, args, n) end
end

-- The same with an ack id: on_reply(value) for each socket that answers
-- within opts.timeout ms; on_count with how many it was sent to.
function Local:broadcast_with_ack(ns, opts, args, n, on_count, on_reply)
  local id = ns._ids
  ns._ids = id + 1
  local text, atts = packet.encode(ns.name, EVENT, args, n, id)
  local waiting, count = {}, 0
  for _, s in ipairs(self:sockets(ns, opts.rooms, opts.except, opts.except_socket)) do
    if s._h:connected() then
      count = count + 1
      waiting[s] = true
      s._acks[id] = { fn = function(reply)
        waiting[s] = nil
        on_reply(reply)
      end }
      s._h:send(text, atts, opts.volatile)
    end
  end
  if count > 0 then
    timer._after_system(opts.timeout, function() -- answers that did not come are forgotten
      for s in pairs(waiting) do
        local acks = rawget(s, "_acks")
        if acks then acks[id] = nil end
      end
    end)
  end
  on_count(count)
end

function Local:server_count(_, cb) cb(1) end

function Local:fetch_sockets(ns, opts, cb) cb(self:sockets(ns, opts.rooms, opts.except)) end

function Local:add_sockets(ns, opts, room)
  for _, s in ipairs(self:sockets(ns, opts.rooms, opts.except)) do s:join(room) end
end

function Local:del_sockets(ns, opts, room)
  local list = type(room) == "table" and room or { room }
  for _, s in ipairs(self:sockets(ns, opts.rooms, opts.except)) do
    for _, r in ipairs(list) do s:leave(r) end
  end
end

function Local:disconnect_sockets(ns, opts, close)
  for _, s in ipairs(self:sockets(ns, opts.rooms, opts.except)) do s:disconnect(close) end
end

-- In one process, the listeners are this process's own: each gets an
-- answer function last when ack is given, and ack(err, responses) comes
-- once all answered or after 5 s.
function Local:server_side_emit(ns, args, n, ack)
  local event = args[1]
  local listeners = ns:_listeners(event) or {}
  if not ack then
    for _, fn in ipairs({ table.unpack(listeners) }) do
      call("serverSideEmit handler for '" .. event .. "'", fn, table.unpack(args, 2, n))
    end
    return
  end
  local responses, expected, done, t = {}, #listeners, false, nil
  local function finish(err)
    if done then return end
    done = true
    if t then t:stop() end
    ack(err, responses)
  end
  if expected == 0 then return finish(nil) end
  t = timer._after_system(5000, function() t = nil finish("operation has timed out") end)
  for _, fn in ipairs({ table.unpack(listeners) }) do
    local answered = false
    local argv = { table.unpack(args, 2, n) }
    argv[n] = function(reply)
      if answered or done then return end
      answered = true
      responses[#responses + 1] = reply == nil and null or reply
      if #responses == expected then finish(nil) end
    end
    call("serverSideEmit handler for '" .. event .. "'", fn, table.unpack(argv, 1, n))
  end
end

return M
