-- moonwire.app.settings: the app's settings, as Express's app.set: "etag"
-- (true: a GET route's response gets a weak ETag and 304 when the client's
-- copy is fresh), "csrf" (forms must carry req:csrfToken(), see
-- moonwire.app.csrf), "secret" (what signs those tokens; false:
-- $MOONWIRE_SECRET, else one made at start), "session" (req.session's
-- cookie and keys, see moonwire.app.session). Each generation of the app
-- sets its own (a reload starts from the defaults).
local M = {}

local DEFAULTS = { etag = true, csrf = false, secret = false, session = false }
local settings = setmetatable({}, { __index = DEFAULTS })

-- The value of a setting now.
function M.get(name) return settings[name] end

-- Sets one; level is the caller's level for the error about a bad name.
function M.set(name, value, level)
  assert(type(name) == "string", "app.set: the setting's name must be a string")
  if DEFAULTS[name] == nil then error("app.set: no setting called " .. string.format("%q", name), (level or 1) + 1) end
  settings[name] = value
end

-- Hot reload: hands over this generation's settings and starts the next
-- from the defaults; restore puts them back.
function M.take()
  local taken = settings
  settings = setmetatable({}, { __index = DEFAULTS })
  return taken
end

function M.restore(taken) settings = taken or settings end

return M
