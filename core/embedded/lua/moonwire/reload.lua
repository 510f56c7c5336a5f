-- moonwire.reload: loads a new generation of the app while it runs.
--
-- A generation is what scripts/ builds when it loads: routes, socket.io and
-- engine handlers, timers. reload.run() loads scripts/app.lua afresh (every
-- module that came from scripts/ is loaded again) into empty route and
-- handler tables. Only if that succeeds does the new generation replace the
-- old one: the old timers stop and every live socket is handed to the new
-- "connection" handlers with socket.reloaded = true (its id, rooms and
-- socket.data stay). If it fails, the old generation is put back untouched
-- and keeps serving; the error (file:line and traceback) is returned.
local app = require "moonwire.app"
local core = require "moonwire.core"
local engine = require "moonwire.engine"
local io = require "moonwire.io"
local io_reload = require "moonwire.io.reload"
local timer = require "moonwire.timer"
local view = require "moonwire.view"
local json = require "moonwire.json"

local reload = {}

-- The names of the modules loaded from scripts/ (the C searcher records them).
local function app_modules()
  return debug.getregistry()["moonwire.app_modules"] or {}
end

-- The error with a traceback of the app's own frames: the last lines (the
-- reload machinery that called require) tell the reader nothing.
local function traceback(err)
  local lines = {}
  for line in debug.traceback(tostring(err), 2):gmatch("[^\n]+") do
    if not (line:find("[moonwire] moonwire/reload.lua", 1, true) or line:find("in function 'xpcall'", 1, true)) then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n")
end

local generation = 0
local last_error = nil -- the error of the last failed load, until one succeeds

function reload.generation() return generation end
function reload.error() return last_error end

-- Returns true, or false and the error message with its traceback.
function reload.run()
  local taken = {
    routes = app._take_routes(),
    io = io_reload.take_handlers(),
    engine = engine._take_handlers(),
    loaded = {},
  }
  for name in pairs(app_modules()) do
    taken.loaded[name] = package.loaded[name]
    package.loaded[name] = nil
  end

  local old, new = generation, generation + 1
  timer._generation(new)
  local ok, err = xpcall(require, traceback, "app")
  if not ok then
    -- Undo everything the failed generation did; the old one serves on.
    timer._stop_generation(new)
    timer._generation(old)
    app._restore_routes(taken.routes)
    io_reload.restore_handlers(taken.io)
    engine._restore_handlers(taken.engine)
    for name in pairs(app_modules()) do package.loaded[name] = taken.loaded[name] end
    last_error = tostring(err)
    return false, last_error
  end

  generation = new
  last_error = nil
  timer._stop_generation(old)
  io_reload.reattach()
  engine._reattach()
  if new == 1 and core.seed then reload.seed() end
  return true
end

-- --seed: scripts/seeds.lua runs once, after the first generation has
-- loaded (the migrations have run before it); it decides itself whether
-- there is anything to add. An error in it is logged; the app serves on.
function reload.seed()
  local chunk, err = loadfile(core.root .. "/scripts/seeds.lua")
  if not chunk and err:find("No such file", 1, true) then return end
  if chunk then
    local ok, e = xpcall(chunk, traceback)
    err = not ok and e or nil
  end
  if err then core.log("error", "scripts/seeds.lua: " .. tostring(err)) end
end

-- The core's file watcher calls this once a burst of changes settles.
-- change = { scripts = bool, views = bool, public = bool, css_only = bool,
-- names = { "scripts/chat.lua", ... }, more = n }. Returns the log line, its
-- level, and the message for the dev pages (JSON, or nil for none).
function reload.files_changed(change)
  local started = core.now()
  local what = table.concat(change.names, ", ")
  if change.more > 0 then what = what .. " and " .. change.more .. " more" end
  if what == "" then what = "files" end
  local done = {}
  if change.views then
    view.clear_cache()
    done[#done + 1] = "templates dropped"
  end
  if change.public then done[#done + 1] = "static files dropped" end
  local ok, err = true, nil
  if change.scripts then
    ok, err = reload.run()
    done[#done + 1] = ok and ("generation " .. generation .. " loaded") or "load failed, the previous generation keeps serving"
  end
  local line = string.format("reload: %s changed: %s in %.1f ms", what, table.concat(done, ", "), core.now() - started)
  if not ok then
    return line .. "\n" .. err, "error", json.encode { type = "error", message = err }
  end
  local message
  if change.views or (change.public and not change.css_only) then
    message = { type = "reload" }
  elseif change.public then
    message = { type = "css" }
  elseif change.scripts then
    message = { type = "ok" }
  end
  return line, "info", message and json.encode(message)
end

-- The first message a dev page gets: which server it talks to (boot changes
-- when the server restarts) and the current load error, if any.
function reload.hello(boot)
  return json.encode { type = "hello", boot = boot, generation = generation, error = last_error or json.null }
end

return reload
