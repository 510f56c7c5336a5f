-- moonwire.view — renders views/NAME.html templates (syntax: core/template.h)
-- with locals, partials (include) and an optional layout.
--
--   view.root = "/abs/path/to/views"   -- set by the host
--   view.cache = true                  -- keep compiled templates (by name)
--   view.render(name, locals, opts)    -> html
--   view.exists(name)                  -> boolean
--   view.escape(v)                     -> string
--   view.clear_cache()
--
-- Inside a template, free names resolve to the locals, then the helpers
-- include(name, locals) and escape(v), then the globals. Assignments to free
-- names stay in that one render. Every error is raised as a string that names
-- the template file and line where there is one.
local template = require "moonwire.template_c"

local concat, tostring, type = table.concat, tostring, type
local G = _G

local view = {
  root = "views",
  cache = true,
}

local MAX_DEPTH = 64 -- includes nested deeper than this are surely a loop

local compiled = {} -- name -> function, while view.cache is on
local missing = {}  -- name -> true, so the default layout check stays cheap

-- Forgets every compiled template (the views changed on disk).
function view.clear_cache()
  compiled, missing = {}, {}
end

view.escape = require("moonwire.escape").html
local escape = view.escape

local function tostr(v)
  if v == nil then return "" end
  return tostring(v)
end

-- Names come from application code, possibly from a request: never let one
-- climb out of the views directory.
local function check_name(name)
  if type(name) ~= "string" or name == "" then
    return nil, "view name must be a non-empty string, got " .. type(name)
  end
  if name:find("..", 1, true) or name:sub(1, 1) == "/" or name:find("\0", 1, true) then
    return nil, "invalid view name " .. string.format("%q", name)
  end
  return true
end

-- Always "views/...", whatever view.root is, so messages match the project.
local function display(name) return "views/" .. name .. ".html" end

local function path_of(name) return view.root .. "/" .. name .. ".html" end

local function load_view(name)
  local fn = view.cache and compiled[name]
  if fn then return fn end
  local ok, err = check_name(name)
  if not ok then error(err, 0) end
  local f, oerr, errno = io.open(path_of(name), "rb")
  if not f then
    if errno == 2 then error("view not found: " .. display(name), 0) end
    error("cannot open " .. display(name) .. ": " .. tostring(oerr), 0)
  end
  local src, rerr = f:read("a")
  f:close()
  if not src then error("cannot read " .. display(name) .. ": " .. tostring(rerr), 0) end
  local cerr
  fn, cerr = template.compile(src, "@" .. display(name))
  if not fn then error(cerr, 0) end
  if view.cache then
    compiled[name] = fn
    missing[name] = nil
  end
  return fn
end

function view.exists(name)
  if not check_name(name) then return false end
  if view.cache then
    if compiled[name] then return true end
    if missing[name] then return false end
  end
  local f = io.open(path_of(name), "rb")
  local found = false
  if f then
    -- read(0) fails (with a message) on a directory, and only at EOF without one
    local _, err = f:read(0)
    found = err == nil
    f:close()
  end
  if view.cache and not found then missing[name] = true end
  return found
end

function view.clear_cache()
  compiled = {}
  missing = {}
end

local run

-- lookup(k) gives the locals of this render (a function, so that include can
-- layer its locals over the caller's without copying or touching either table).
local function make_env(lookup, depth)
  local function include(name, locals)
    if depth >= MAX_DEPTH then
      error("views included more than " .. MAX_DEPTH .. " deep (an include loop?)", 2)
    end
    if locals ~= nil and type(locals) ~= "table" then
      error("include: locals must be a table, got " .. type(locals), 2)
    end
    -- Level 2 puts the including template's file:line in front of the message.
    local ok, fn = pcall(load_view, name)
    if not ok then error(fn, 2) end
    local inner = lookup
    if locals then
      inner = function(k)
        local v = locals[k]
        if v ~= nil then return v end
        return lookup(k)
      end
    end
    return run(fn, inner, depth + 1)
  end
  return setmetatable({}, {
    __index = function(_, k)
      local v = lookup(k)
      if v ~= nil then return v end
      if k == "include" then return include end
      if k == "escape" then return escape end
      return G[k]
    end,
  })
end

function run(fn, lookup, depth)
  return fn(make_env(lookup, depth), escape, tostr, concat)
end

function view.render(name, locals, opts)
  if locals == nil then locals = {} end
  if type(locals) ~= "table" then
    error("view.render: locals must be a table, got " .. type(locals), 0)
  end
  local function lookup(k) return locals[k] end
  local html = run(load_view(name), lookup, 0)

  local layout = locals.layout
  if opts ~= nil and opts.layout ~= nil then layout = opts.layout end
  if layout == false then return html end
  if layout == nil or layout == true then
    if not view.exists("layout") then return html end -- no default layout: fine
    layout = "layout"
  elseif type(layout) ~= "string" then
    error("view.render: layout must be a string or false, got " .. type(layout), 0)
  end
  local fn = load_view(layout) -- an explicitly named layout must exist
  return run(fn, function(k)
    if k == "body" then return html end
    return locals[k]
  end, 0)
end

return view
