-- moonwire.io.workers_adapter: the adapter of `moonwire --workers N`, which
-- makes the workers of one server one Socket.IO server, as
-- @socket.io/cluster-adapter does for Node's cluster. moonwire.io turns it
-- on by itself when there are several workers and no Redis adapter.
--
-- It is the Redis adapter (moonwire.io.redis_adapter: the same messages,
-- the same requests and answers for fetchSockets, serverSideEmit,
-- broadcasts with acks, socketsJoin/Leave, disconnectSockets) carried by
-- the link between the workers (moonwire.workers_c) instead of Redis: a
-- message goes through the supervisor to every other worker. The client
-- below has the methods of a Redis client that the Redis adapter calls.
local workers = require "moonwire.workers_c"
local redis_adapter = require "moonwire.io.redis_adapter"

local M = {}

-- A Redis pub/sub client's methods over the workers' link. Every worker
-- receives every message; the subscriptions choose what reaches the
-- adapter, as Redis's would.
local function client(handlers)
  local channels, patterns = {}, {}
  local c = {}
  function c:subscribe(ch) channels[ch] = true end
  function c:unsubscribe(ch) channels[ch] = nil end
  -- The adapter's patterns are "<prefix>*".
  function c:psubscribe(p) patterns[p] = p:sub(1, -2) end
  function c:punsubscribe(p) patterns[p] = nil end
  function c:publish(ch, payload) return (workers.publish(ch, payload)) end
  -- Every serving worker has every namespace: they run the same app.
  function c:numsub(_, cb) cb(workers.live()) end
  function c:connected() return true end
  function c:close() workers.listen(nil) end
  workers.listen(function(ch, payload)
    if channels[ch] then handlers.message(ch, payload) end
    for p, prefix in pairs(patterns) do
      if ch:sub(1, #prefix) == prefix then handlers.message(ch, payload, p) end
    end
  end)
  return c
end

-- True when this process is one of several workers.
function M.enabled() return workers.self() ~= nil and workers.count() > 1 end

-- local_, host: as the Redis adapter takes them.
function M.new(local_, host)
  return redis_adapter.new(local_, host, { key = "moonwire-workers", client = client })
end

return M
