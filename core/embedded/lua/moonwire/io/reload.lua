-- moonwire.io.reload: what a hot reload does to namespaces and sockets.
local namespace = require "moonwire.io.namespace"

local M = {}
local namespaces, parents, fire = namespace.namespaces, namespace.parents, namespace.fire

-- moonwire.reload calls these. _take_handlers hands over every namespace's
-- (and dynamic parent's) handlers and middlewares and leaves them empty for
-- the next generation; _restore_handlers puts them back when that
-- generation failed to load.
function M.take_handlers()
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
  namespace.reset_parent_seq()
  return taken
end

function M.restore_handlers(taken)
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
function M.reattach()
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
        fire(namespace.handlers_of(ns, "connection"), "io connection handler", socket)
        fire(namespace.handlers_of(ns, "connect"), "io connect handler", socket)
      end
    end
  end
end

return M
