-- moonwire.app.router: the route table. A path is "/pets/:id" (a named
-- parameter), "*" (anything, in params[1]) or plain; plain paths are found
-- by one table lookup, the others in the order they were added.
local text = require "moonwire.app.text"

local M = {}

-- routes[i] = { method = "GET", path = "/pets/:id", pattern = "^/pets/([^/]+)$", keys = { "id" }, fn = fn }
local routes = {}
local exact = {}   -- exact["GET"]["/"] = route, for paths without parameters

local METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }

local function compile(path)
  if path == "*" then return "^(.*)$", { 1 } end
  local keys, n = {}, 0
  local pattern = path:gsub("[%^%$%(%)%.%[%]%+%-%?]", "%%%0")
  pattern = pattern:gsub("/:([%w_]+)", function(k)
    keys[#keys + 1] = k
    return "/([^/]+)"
  end)
  pattern = pattern:gsub("%*", function()
    n = n + 1
    keys[#keys + 1] = n
    return "(.*)"
  end)
  return "^" .. pattern .. "$", keys
end

function M.add(method, path, fn)
  assert(type(path) == "string" and path:sub(1, 1) == "/" or path == "*",
    "route path must start with '/' (or be '*')")
  assert(type(fn) == "function", "route handler must be a function")
  local pattern, keys = compile(path)
  local r = { method = method, path = path, pattern = pattern, keys = keys, fn = fn }
  routes[#routes + 1] = r
  if #keys == 0 then
    exact[method] = exact[method] or {}
    exact[method][path] = exact[method][path] or r
  end
end

M.METHODS = METHODS

-- Finds the route for method + path. Returns route, params (nil for a path
-- without parameters: req.params is then made empty when first read); or
-- nil and the methods the path does answer to (for 405).
function M.match(method, path)
  local by = exact[method]
  local r = by and by[path]
  if r then return r end
  local allowed
  for i = 1, #routes do
    r = routes[i]
    local caps = { path:match(r.pattern) }
    if caps[1] ~= nil then
      if r.method == method then
        local params = {}
        for j, k in ipairs(r.keys) do params[k] = text.url_decode(caps[j]) end
        return r, params
      end
      allowed = allowed or {}
      allowed[r.method] = true
    end
  end
  return nil, allowed
end

-- Hot reload (moonwire.reload): hands over the route tables and installs
-- empty ones for the next generation; restore puts them back.
function M.take()
  local taken = { routes = routes, exact = exact }
  routes, exact = {}, {}
  return taken
end

function M.restore(taken) routes, exact = taken.routes, taken.exact end

return M
