-- moonwire.engine: a raw Engine.IO endpoint, for clients that use
-- engine.io-client directly (no Socket.IO packets on top).
--
--   local engine = require "moonwire.engine"
--   engine.configure { path = "/engine.io/" }
--   engine.on("connection", function(sock)
--     sock:on("message", function(data) sock:send(data) end)
--     sock:on("close", function(reason) end)
--   end)
local c = require "moonwire.io_c"
local core = require "moonwire.core"
local runner = require "moonwire.runner"

local engine = {}
local handlers = {}
local options = {}
local configured = false

local Sock = {}
Sock.__index = function(s, k)
  if k == "transport" then return s._h:transport() end
  return Sock[k]
end

function Sock:on(event, fn)
  assert(type(fn) == "function", "sock:on: the handler must be a function")
  self._on[event] = self._on[event] or {}
  table.insert(self._on[event], fn)
  return self
end

-- sock:send(data [, binary]): a string; binary = true sends it as binary.
function Sock:send(data, binary)
  if type(data) == "table" and data.data then data, binary = data.data, true end
  return self._h:send(tostring(data), binary and true or false)
end

function Sock:close() self._h:close() end

local function fire(list, what, ...)
  if not list then return end
  for _, fn in ipairs({ table.unpack(list) }) do runner.call(what, fn, ...) end
end

local socks = setmetatable({}, { __mode = "k" })
local callbacks = {}

function callbacks.open(h, hs)
  local sock = setmetatable({ _h = h, id = h:id(), _on = {}, handshake = hs }, Sock)
  socks[h] = sock
  fire(handlers.connection, "engine connection handler", sock)
end

function callbacks.message(h, data, binary)
  local sock = socks[h]
  if sock then fire(sock._on.message, "engine message handler", data, binary) end
end

function callbacks.close(h, reason)
  local sock = socks[h]
  if sock then fire(sock._on.close, "engine close handler", reason) end
  socks[h] = nil
end

-- Hot reload (moonwire.reload): the next generation starts with no handlers;
-- _reattach gives every live connection to the new connection handlers, with
-- sock.reloaded = true, so it keeps working with the new code.
function engine._take_handlers()
  local taken = handlers
  handlers = {}
  return taken
end

function engine._restore_handlers(taken) handlers = taken end

function engine._reattach()
  local live = {}
  for h, sock in pairs(socks) do live[#live + 1] = sock end
  table.sort(live, function(a, b) return a.id < b.id end)
  for _, sock in ipairs(live) do
    sock._on = {}
    sock.reloaded = true
    fire(handlers.connection, "engine connection handler", sock)
  end
end

-- engine.configure{ path = "/engine.io/", pingInterval, pingTimeout, maxHttpBufferSize, transports, cors }
function engine.configure(opts)
  for k, v in pairs(opts or {}) do options[k] = v end
  c.engine_configure(options, callbacks)
  configured = true
end

function engine.on(event, fn)
  handlers[event] = handlers[event] or {}
  table.insert(handlers[event], fn)
  if not configured then engine.configure {} end
end

return engine
