-- moonwire.io.redis_adapter: the Redis adapter, which makes several servers
-- one Socket.IO server. moonwire.io turns it on for
--
--   io.configure{ adapter = { redis = "redis://127.0.0.1:6379", key = "socket.io" } }
--
-- (or `moonwire --redis URL`). It speaks the protocol of
-- @socket.io/redis-adapter (the classic, non-sharded one), so moonwire and
-- Node socket.io servers can share one Redis:
--
--   <key>#<nsp>#          a broadcast: msgpack [uid, packet, opts]
--   <key>#<nsp>#<room>#   the same, when it targets exactly one room
--   <key>-request#<nsp>#  requests to every server (JSON; broadcasts with
--                         acks in msgpack)
--   <key>-response#<nsp># answers (and <key>-response#<nsp>#<uid>#)
--
-- Every server subscribes to these for each of its namespaces, and PUBSUB
-- NUMSUB on the request channel says how many servers there are. A server
-- ignores what it sent itself (by uid). Redis being away never stops local
-- delivery: what would go through it is dropped, and requests waiting for
-- answers end with an error.
--
-- It has the methods of the local adapter (moonwire.io.local_adapter, where
-- they are listed) and wraps one: this server's sockets are reached through
-- it, and what the other servers send is delivered through it too. An
-- operation with the local flag stays in this process.
local json = require "moonwire.json"
local app = require "moonwire.app"
local timer = require "moonwire.timer"
local core = require "moonwire.core"
local mp = require "moonwire.msgpack"
local redis = require "moonwire.redis_c"

local null = json.null
local array = json.array

-- Request types, numbered as @socket.io/redis-adapter numbers them.
local SOCKETS, ALL_ROOMS, REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT, REMOTE_FETCH, SERVER_SIDE_EMIT,
  BROADCAST, BROADCAST_CLIENT_COUNT, BROADCAST_ACK = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9

local EVENT, BINARY_EVENT = 2, 5

local Adapter = {}
Adapter.__index = Adapter

local M = {}

-- A list of room names from what a peer sent (numbers become strings, as
-- socket.io rooms may be numbers).
local function names(v)
  local out = array({})
  if type(v) ~= "table" then return out end
  for _, x in ipairs(v) do
    local t = type(x)
    if t == "string" then out[#out + 1] = x
    elseif t == "number" then out[#out + 1] = tostring(math.tointeger(x) or x) end
  end
  return out
end

local function copy_list(list, extra)
  local out = array({ table.unpack(list) })
  if extra then out[#out + 1] = extra end
  return out
end

-- Logs a bad message from a peer once per kind, so a flood of them costs one line.
local warned = {}
local function warn_once(kind, msg)
  if warned[kind] then return end
  warned[kind] = true
  core.log("warn", "redis adapter: " .. msg .. " (further ones are ignored silently)")
end

-- ---------------------------------------------------------------- lifecycle

-- local_: the local adapter it wraps. host: what moonwire.io lends it
-- (namespaces, Binary, random_id). cfg: { url, key, requestsTimeout,
-- publishOnSpecificResponseChannel, client }.
-- socket.io's redis adapter's defaults.
local DEFAULT_KEY = "socket.io"
local DEFAULT_REQUESTS_TIMEOUT_MS = 5000

function M.new(local_, host, cfg)
  local a = setmetatable({
    local_ = local_, host = host, url = cfg.url, key = cfg.key or DEFAULT_KEY,
    timeout = cfg.requestsTimeout or DEFAULT_REQUESTS_TIMEOUT_MS, specific = cfg.publishOnSpecificResponseChannel == true,
    uid = host.random_id():sub(1, 6),
    chans = {}, by_channel = {}, by_pattern = {},
    requests = {}, ack_requests = {},
  }, Adapter)
  local handlers = {
    message = function(channel, payload, pattern) a:on_message(channel, payload, pattern) end,
    state = function(up) a.up = up end,
  }
  -- cfg.client: another carrier with a Redis client's methods (the workers
  -- adapter's, moonwire.io.workers_adapter).
  local client, err
  if cfg.client then client = cfg.client(handlers) else client, err = redis.new(cfg.url, handlers) end
  if not client then return nil, err end
  a.client = client
  for name in pairs(host.namespaces) do a:add_namespace(name) end
  return a
end

function Adapter:same(cfg)
  return self.url == cfg.url and self.key == (cfg.key or DEFAULT_KEY)
    and self.timeout == (cfg.requestsTimeout or DEFAULT_REQUESTS_TIMEOUT_MS) and self.specific == (cfg.publishOnSpecificResponseChannel == true)
end

-- Stops for good: requests still waiting end with an error.
function Adapter:close()
  if self.closed then return end
  self.closed = true
  self.client:close()
  for id, r in pairs(self.requests) do
    self.requests[id] = nil
    if r.timer then r.timer:stop() end
    r.finish("the redis adapter was closed")
  end
end

-- Subscribes to a namespace's channels (once per namespace).
function Adapter:add_namespace(name)
  if self.chans[name] then return end
  local key = self.key
  local ch = {
    broadcast = key .. "#" .. name .. "#",
    request = key .. "-request#" .. name .. "#",
    response = key .. "-response#" .. name .. "#",
  }
  ch.specific = ch.response .. self.uid .. "#"
  ch.pattern = ch.broadcast .. "*"
  self.chans[name] = ch
  self.by_pattern[ch.pattern] = name
  self.by_channel[ch.request] = name
  self.by_channel[ch.response] = name
  self.by_channel[ch.specific] = name
  self.client:psubscribe(ch.pattern)
  self.client:subscribe(ch.request)
  self.client:subscribe(ch.response)
  self.client:subscribe(ch.specific)
end

-- ---------------------------------------------------------------- sending

local function request_id(self) return self.host.random_id():sub(1, 6) end

local function encode_json(v)
  local s, err = json.encode(v)
  if not s then error("redis adapter: cannot encode the request as JSON: " .. tostring(err), 0) end
  return s
end

-- The args of an event (args[1] is its name) as a msgpack array.
local function data_of(args, n)
  local data = array({})
  for i = 1, n do
    local v = args[i]
    if v == nil then v = null end
    data[i] = v
  end
  return data
end

local function flags_of(volatile, timeout)
  local flags = {}
  if volatile then flags.volatile = true end
  if timeout then flags.timeout = timeout end
  return flags
end

-- The except list with the socket of socket.broadcast in it, for other
-- servers (there it is a room like any other).
local function except_all(opts)
  local es = opts.except_socket
  if not es then return opts.except end
  local out = { table.unpack(opts.except) }
  out[#out + 1] = es.id
  return out
end

-- This server's sockets.
function Adapter:sockets(ns, rooms, except, es) return self.local_:sockets(ns, rooms, except, es) end

-- An emit without ack: to the other servers, then to this one's sockets.
function Adapter:broadcast(ns, opts, args, n)
  local ch = not opts["local"] and self.chans[ns.name]
  if ch then
    local rooms = opts.rooms
    local channel = ch.broadcast
    if #rooms == 1 then channel = channel .. rooms[1] .. "#" end
    local msg = mp.encode(array({ self.uid, { type = EVENT, data = data_of(args, n), nsp = ns.name },
      { rooms = copy_list(rooms), except = copy_list(except_all(opts)), flags = flags_of(opts.volatile) } }),
      self.host.Binary, null)
    self.client:publish(channel, msg)
  end
  self.local_:broadcast(ns, opts, args, n)
end

-- How many servers share the namespace (this one included); cb(count) or
-- cb(nil, err). One when the operation stays here (opts.local).
function Adapter:server_count(ns, cb, opts)
  local ch = self.chans[ns.name]
  if not ch or (opts and opts["local"]) then return cb(1) end
  self.client:numsub(ch.request, cb)
end

-- Sends a request and waits for answers: r.finish(err) ends it, at the
-- latest after requestsTimeout with timeout_msg (which may be a function).
function Adapter:request(ns, id, r, body, timeout_msg)
  r.id = id
  self.requests[id] = r
  r.timer = timer._after_system(self.timeout, function()
    if self.requests[id] ~= r then return end
    self.requests[id] = nil
    r.finish(type(timeout_msg) == "function" and timeout_msg() or timeout_msg)
  end)
  self.client:publish(self.chans[ns.name].request, body)
end

function Adapter:done(r)
  if self.requests[r.id] ~= r then return false end
  self.requests[r.id] = nil
  if r.timer then r.timer:stop() end
  return true
end

-- A broadcast with acks across servers: on_count(n) once per server
-- (this one too) with how many of its clients it reached, on_reply(v) per
-- client answer; the caller asks server_count, puts it together and owns
-- the timeout.
function Adapter:broadcast_with_ack(ns, opts, args, n, on_count, on_reply)
  local ch = not opts["local"] and self.chans[ns.name]
  if ch then
    local id = request_id(self)
    local msg = mp.encode({ uid = self.uid, requestId = id, type = BROADCAST,
      packet = { type = EVENT, data = data_of(args, n), nsp = ns.name },
      opts = { rooms = copy_list(opts.rooms), except = copy_list(except_all(opts)),
        flags = flags_of(opts.volatile, opts.timeout) } },
      self.host.Binary, null)
    self.ack_requests[id] = { count = on_count, ack = on_reply }
    -- There is no telling when every client has answered: forget the request
    -- after the timeout, as socket.io does.
    timer._after_system(opts.timeout, function() self.ack_requests[id] = nil end)
    self.client:publish(ch.request, msg)
  end
  self.local_:broadcast_with_ack(ns, opts, args, n, on_count, on_reply)
end

-- fetchSockets across servers: cb(sockets) or cb(nil, err).
function Adapter:fetch_sockets(ns, opts, cb)
  local rooms, except = opts.rooms, opts.except
  local list = self.local_:sockets(ns, rooms, except)
  if opts["local"] then return cb(list) end
  self:server_count(ns, function(count, err)
    if not count then return cb(nil, "fetchSockets: " .. tostring(err)) end
    if count <= 1 then return cb(list) end
    local r = { type = REMOTE_FETCH, expected = count, got = 1, sockets = list, ns = ns }
    r.finish = function(e)
      if e then return cb(nil, e) end
      cb(r.sockets)
    end
    local id = request_id(self)
    self:request(ns, id, r, encode_json({ uid = self.uid, requestId = id, type = REMOTE_FETCH,
      opts = { rooms = copy_list(rooms), except = copy_list(except) } }),
      "timeout reached while waiting for fetchSockets response")
  end)
end

-- socketsJoin / socketsLeave / disconnectSockets on the other servers.
local function remote(self, ns, what, rooms, except, arg)
  local ch = self.chans[ns.name]
  if not ch then return end
  local body = { uid = self.uid, opts = { rooms = copy_list(rooms), except = copy_list(except) } }
  if what == "disconnect" then
    body.type, body.close = REMOTE_DISCONNECT, arg and true or false
  else
    body.type = what == "join" and REMOTE_JOIN or REMOTE_LEAVE
    local list = array({})
    if type(arg) == "table" then
      for _, r in ipairs(arg) do list[#list + 1] = tostring(r) end
    else
      list[1] = tostring(arg)
    end
    body.rooms = list
  end
  self.client:publish(ch.request, encode_json(body))
end

-- These act on this server's sockets at once, then tell the others.
function Adapter:add_sockets(ns, opts, room)
  self.local_:add_sockets(ns, opts, room)
  if not opts["local"] then remote(self, ns, "join", opts.rooms, opts.except, room) end
end

function Adapter:del_sockets(ns, opts, room)
  self.local_:del_sockets(ns, opts, room)
  if not opts["local"] then remote(self, ns, "leave", opts.rooms, opts.except, room) end
end

function Adapter:disconnect_sockets(ns, opts, close)
  self.local_:disconnect_sockets(ns, opts, close)
  if not opts["local"] then remote(self, ns, "disconnect", opts.rooms, opts.except, close) end
end

-- serverSideEmit to the other servers (not this one, as in socket.io).
-- data is { event, args... }; ack(err, responses) when given.
function Adapter:server_side_emit(ns, data, n, ack)
  local ch = self.chans[ns.name]
  if not ack then
    if ch then self.client:publish(ch.request, encode_json({ uid = self.uid, type = SERVER_SIDE_EMIT, data = data_of(data, n) })) end
    return
  end
  self:server_count(ns, function(count, err)
    if not count then return ack("serverSideEmit: " .. tostring(err), array({})) end
    local expected = count - 1 -- not this server
    if expected <= 0 then return ack(nil, array({})) end
    local r = { type = SERVER_SIDE_EMIT, expected = expected, responses = array({}) }
    r.finish = function(e) ack(e, r.responses) end
    local id = request_id(self)
    self:request(ns, id, r, encode_json({ uid = self.uid, requestId = id, type = SERVER_SIDE_EMIT, data = data_of(data, n) }),
      function() return string.format("timeout reached: only %d responses received out of %d", #r.responses, expected) end)
  end)
end

-- ---------------------------------------------------------------- receiving

function Adapter:decode(payload)
  if payload:byte(1) == 0x7b then return app.json_decode(payload) end -- "{": JSON
  return mp.decode(payload, self.host.Binary, null)
end

function Adapter:on_message(channel, payload, pattern)
  if self.closed then return end
  if pattern then
    local name = self.by_pattern[pattern]
    if name then return self:on_broadcast(name, channel, payload) end
    return
  end
  local name = self.by_channel[channel]
  if not name then return end
  if channel == self.chans[name].request then return self:on_request(name, payload) end
  return self:on_response(payload)
end

-- A broadcast from another server: delivered to this server's sockets.
function Adapter:on_broadcast(name, channel, payload)
  local ns = self.host.namespaces[name]
  if not ns then return end
  local msg, err = mp.decode(payload, self.host.Binary, null)
  if type(msg) ~= "table" then return warn_once("broadcast", "a broadcast on " .. channel .. " did not decode: " .. tostring(err)) end
  local uid, packet, opts = msg[1], msg[2], msg[3]
  if uid == self.uid then return end
  if type(packet) ~= "table" or type(packet.data) ~= "table" then return warn_once("packet", "a broadcast without a packet") end
  local nsp = packet.nsp
  if nsp == nil or nsp == null then nsp = "/" end
  if nsp ~= name then return end
  if packet.type ~= EVENT and packet.type ~= BINARY_EVENT then return end
  local data = packet.data
  if type(data[1]) ~= "string" then return end
  opts = type(opts) == "table" and opts or {}
  local flags = type(opts.flags) == "table" and opts.flags or {}
  self.local_:broadcast(ns, { rooms = names(opts.rooms), except = names(opts.except), volatile = flags.volatile == true },
    data, #data)
end

function Adapter:respond(name, req, body)
  local ch = self.chans[name]
  local channel = ch.response
  if self.specific and type(req.uid) == "string" then channel = channel .. req.uid .. "#" end
  self.client:publish(channel, body)
end

-- What fetchSockets on another server gets for one of this server's sockets.
local function describe(s)
  local rooms = array({})
  for r in pairs(s.rooms) do rooms[#rooms + 1] = r end
  table.sort(rooms)
  local data = rawget(s, "data")
  if data ~= nil and not json.encode(data) then
    warn_once("data", "socket.data of " .. s.id .. " cannot be sent as JSON; it is sent as null")
    data = null
  end
  return { id = s.id, handshake = s.handshake, rooms = rooms, data = data == nil and {} or data }
end

function Adapter:on_request(name, payload)
  local req = self:decode(payload)
  if type(req) ~= "table" then return warn_once("request", "a request did not decode") end
  local host = self.host
  local ns = host.namespaces[name]
  if not ns then return end
  local t, id = req.type, req.requestId
  if t == REMOTE_JOIN or t == REMOTE_LEAVE or t == REMOTE_DISCONNECT then
    if req.uid == self.uid then return end -- done here when it was asked
    local list
    if type(req.opts) == "table" then
      list = self.local_:sockets(ns, names(req.opts.rooms), names(req.opts.except))
    else -- the older form: one socket by id
      local s = ns.sockets[req.sid]
      if not s then return end
      list = { s }
    end
    for _, s in ipairs(list) do
      if t == REMOTE_JOIN then
        if type(req.opts) == "table" then s:join(names(req.rooms)) else s:join(tostring(req.room)) end
      elseif t == REMOTE_LEAVE then
        if type(req.opts) == "table" then for _, r in ipairs(names(req.rooms)) do s:leave(r) end else s:leave(tostring(req.room)) end
      else
        s:disconnect(req.close == true)
      end
    end
    if type(req.opts) ~= "table" then self:respond(name, req, encode_json({ requestId = id })) end
  elseif t == REMOTE_FETCH then
    if self.requests[id] then return end -- its own
    local opts = type(req.opts) == "table" and req.opts or {}
    local out = array({})
    for _, s in ipairs(self.local_:sockets(ns, names(opts.rooms), names(opts.except))) do out[#out + 1] = describe(s) end
    self:respond(name, req, encode_json({ requestId = id, sockets = out }))
  elseif t == SOCKETS then
    if self.requests[id] then return end
    local out = array({})
    for _, s in ipairs(self.local_:sockets(ns, names(req.rooms), {})) do out[#out + 1] = s.id end
    self:respond(name, req, encode_json({ requestId = id, sockets = out }))
  elseif t == ALL_ROOMS then
    if self.requests[id] then return end
    local set, out = {}, array({})
    for _, s in ipairs(self.local_:sockets(ns, {}, {})) do
      for r in pairs(s.rooms) do
        if not set[r] then set[r] = true out[#out + 1] = r end
      end
    end
    self:respond(name, req, encode_json({ requestId = id, rooms = out }))
  elseif t == SERVER_SIDE_EMIT then
    if req.uid == self.uid or type(req.data) ~= "table" then return end
    local reply
    if id ~= nil and id ~= null then
      local called = false
      reply = function(arg) -- one answer per server: the first listener's
        if called then return end
        called = true
        self.client:publish(self.chans[name].response, encode_json({ type = SERVER_SIDE_EMIT, requestId = id, data = arg == nil and null or arg }))
      end
    end
    ns:_server_side_receive(req.data, #req.data, reply)
  elseif t == BROADCAST then
    if self.ack_requests[id] then return end -- its own
    local packet, opts = req.packet, type(req.opts) == "table" and req.opts or {}
    if type(packet) ~= "table" or type(packet.data) ~= "table" or type(packet.data[1]) ~= "string" then return end
    local flags = type(opts.flags) == "table" and opts.flags or {}
    local t = flags.timeout
    local timeout = type(t) == "number" and t > 0 and t < 2 ^ 31 and t or self.timeout
    self.local_:broadcast_with_ack(ns, { rooms = names(opts.rooms), except = names(opts.except),
      volatile = flags.volatile == true, timeout = timeout }, packet.data, #packet.data, function(count)
        self:respond(name, req, encode_json({ type = BROADCAST_CLIENT_COUNT, requestId = id, clientCount = count }))
      end, function(reply)
        self:respond(name, req, mp.encode({ type = BROADCAST_ACK, requestId = id, packet = reply }, host.Binary, null))
      end)
  end
end

-- A RemoteSocket: a socket of another server, as fetchSockets gives it.
local RemoteSocket = {}
RemoteSocket.__index = RemoteSocket
function RemoteSocket:emit(event, ...) return self.nsp:to(self.id):emit(event, ...) end
function RemoteSocket:join(room) return self.nsp:to(self.id):socketsJoin(room) end
function RemoteSocket:leave(room) return self.nsp:to(self.id):socketsLeave(room) end
function RemoteSocket:disconnect(close) return self.nsp:to(self.id):disconnectSockets(close) end

local function remote_socket(ns, v)
  if type(v) ~= "table" or type(v.id) ~= "string" then return nil end
  local rooms = {}
  if type(v.rooms) == "table" then for _, r in ipairs(v.rooms) do rooms[tostring(r)] = true end end
  local data = v.data
  if data == null then data = nil end
  return setmetatable({ id = v.id, nsp = ns, handshake = type(v.handshake) == "table" and v.handshake or {},
    rooms = rooms, data = data, remote = true }, RemoteSocket)
end

function Adapter:on_response(payload)
  local res = self:decode(payload)
  if type(res) ~= "table" then return warn_once("response", "a response did not decode") end
  local id = res.requestId
  local ar = self.ack_requests[id]
  if ar then
    if res.type == BROADCAST_CLIENT_COUNT and math.type(res.clientCount) then ar.count(res.clientCount)
    elseif res.type == BROADCAST_ACK then ar.ack(res.packet) end
    return
  end
  local r = id and self.requests[id]
  if not r then return end
  if r.type == REMOTE_FETCH then
    r.got = r.got + 1
    if type(res.sockets) == "table" then
      for _, v in ipairs(res.sockets) do
        local s = remote_socket(r.ns, v)
        if s then r.sockets[#r.sockets + 1] = s end
      end
    end
    if r.got >= r.expected and self:done(r) then r.finish(nil) end
  elseif r.type == SERVER_SIDE_EMIT then
    local v = res.data
    r.responses[#r.responses + 1] = v == nil and null or v
    if #r.responses >= r.expected and self:done(r) then r.finish(nil) end
  end
end

return M
