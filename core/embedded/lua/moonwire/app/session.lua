-- moonwire.app.session: signed cookie sessions (req.session) and flash
-- messages (req:flash), as Express's cookie-session and connect-flash, or
-- Lapis's session.
--
-- The whole session lives in one cookie: base64url(JSON) "." base64url(
-- HMAC-SHA256 of the cookie's name and that text under the first key). The
-- client can read it but not change it: a cookie whose signature no key
-- accepts is an empty session (and a line in the log). Keep ids in it, not
-- records: it is sent with every request, and a browser keeps at most about
-- 4 KB per cookie (maxSize).
--
--   app.configure { session = {
--     secret = "...",          -- or keys = { new, old }: signs with the first, accepts any
--     name = "mw_session",     -- the cookie's name
--     maxAge = nil,            -- ms; nil: a browser-session cookie
--     secure = false,          -- true: Secure (HTTPS only)
--     sameSite = "Lax",        -- "Lax", "Strict" or "None"
--     maxSize = 4096,          -- bytes of the Set-Cookie value, at most
--   } }
--
-- Without secret or keys the key is app.configure's secret, else
-- $MOONWIRE_SECRET (as for CSRF tokens); in dev mode with none of them a random one is made at start (a
-- restart forgets every session), in production it is an error.
local core = require "moonwire.core"
local json = require "moonwire.json"
local settings = require "moonwire.app.settings"

local M = {}

M.DEFAULT_NAME = "mw_session"
M.DEFAULT_MAX_SIZE = 4096

local made_key -- dev mode without a secret: one per server start, kept across reloads

local NO_SECRET = "sessions need a secret in production: set MOONWIRE_SECRET (16 bytes or more) in the"
  .. " environment, or app.configure{ session = { secret = ... } }"

-- The session options now (app.configure's, or the defaults).
local function options()
  local o = settings.get("session")
  return type(o) == "table" and o or {}
end

-- The keys, the first signs. Raises in production when there is none.
local function keys(o)
  if o.keys then return o.keys end
  if o.secret then return { o.secret } end
  local s = settings.get("secret")
  if s then return { s } end
  local env = os.getenv("MOONWIRE_SECRET")
  if env and #env >= 16 then return { env } end
  if not core.dev then error(NO_SECRET, 0) end
  if not made_key then
    made_key = core.hmac(core.start_key(), "session") -- the same in every worker of --workers
    core.log("warn", "session: no MOONWIRE_SECRET; dev mode signs sessions with a random key made at start,"
      .. " so a restart forgets them (production refuses to start without one)")
  end
  return { made_key }
end

-- Checks app.configure{ session = ... } when it is given: raises with what
-- is wrong, so the app does not load (and says why) rather than fail later.
function M.check(o)
  if o == true then return end
  assert(type(o) == "table", "app.configure: session must be a table of options (or true)")
  for k in pairs(o) do
    if not ({ secret = 1, keys = 1, name = 1, maxAge = 1, secure = 1, sameSite = 1, maxSize = 1 })[k] then
      error("app.configure: session has no option " .. string.format("%q", tostring(k)), 0)
    end
  end
  if o.secret ~= nil then
    assert(type(o.secret) == "string" and #o.secret >= 16, "app.configure: session.secret must be a string of 16 bytes or more")
  end
  if o.keys ~= nil then
    assert(type(o.keys) == "table" and #o.keys >= 1, "app.configure: session.keys must be a list of secrets, the newest first")
    for i, k in ipairs(o.keys) do
      assert(type(k) == "string" and #k >= 16, "app.configure: session.keys[" .. i .. "] must be a string of 16 bytes or more")
    end
  end
  if o.name ~= nil then
    assert(type(o.name) == "string" and o.name:match("^[%w!#$%%&'*+%-.^_`|~]+$"), "app.configure: session.name is not a cookie name")
  end
  if o.maxAge ~= nil then assert(math.type(o.maxAge) == "integer" and o.maxAge > 0, "app.configure: session.maxAge is in ms, above 0") end
  if o.maxSize ~= nil then assert(math.type(o.maxSize) == "integer" and o.maxSize > 0, "app.configure: session.maxSize is in bytes, above 0") end
  if o.sameSite ~= nil then
    assert(o.sameSite == "Lax" or o.sameSite == "Strict" or o.sameSite == "None", "app.configure: session.sameSite is \"Lax\", \"Strict\" or \"None\"")
  end
  -- In production a session without a secret would be an error on every
  -- request: say it at start instead.
  if not o.keys and not o.secret and not core.dev then
    local env = os.getenv("MOONWIRE_SECRET")
    if not (env and #env >= 16) and not settings.get("secret") then error("app.configure: " .. NO_SECRET, 0) end
  end
end

local function sign(key, name, payload)
  return core.b64encode(core.hmac(key, name .. "=" .. payload))
end

-- The session table of req, read from its cookie on first use.
function M.load(req)
  local o = options()
  local name = o.name or M.DEFAULT_NAME
  local state = { name = name }
  rawset(req, "_sess", state)
  local cookie = req.cookies[name]
  local data = {}
  if cookie and cookie ~= "" then
    state.had = true
    local payload, sig = cookie:match("^([%w_%-]+)%.([%w_%-]+)$")
    local ks = keys(o)
    local which
    if payload then
      for i, k in ipairs(ks) do
        if core.equal(sig, sign(k, name, payload)) then which = i break end
      end
    end
    local decoded = which and core.b64decode(payload)
    local value = decoded and json.decode(decoded)
    if type(value) == "table" and not json.isarray(value) then
      data = value
      state.saved = decoded
      state.stale_key = which > 1 -- signed with an old key: signed again with the new one
    else
      core.log("warn", "session: " .. req.method .. " " .. req.url .. " from " .. tostring(req.ip)
        .. ": the " .. name .. " cookie has a bad signature (changed by the client, or signed with a key"
        .. " no longer in session.keys); the request gets an empty session")
    end
  end
  return data
end

-- Adds the session's Set-Cookie to res when it changed (or clears the
-- cookie when the session became empty). Raises when the cookie would be
-- over maxSize. Called before the response's head is written.
function M.save(req, res)
  local state = rawget(req, "_sess")
  if not state or state.done then return end
  state.done = true
  local data = rawget(req, "session")
  local o = options()
  local name = state.name
  if type(data) ~= "table" or next(data) == nil then
    if state.had then res:clearCookie(name) end
    return
  end
  local text, err = json.encode(data)
  if not text then error("req.session: cannot be stored: " .. tostring(err), 0) end
  if text == state.saved and not state.stale_key and not o.maxAge then return end
  local payload = core.b64encode(text)
  local value = payload .. "." .. sign(keys(o)[1], name, payload)
  local limit = o.maxSize or M.DEFAULT_MAX_SIZE
  if #name + 1 + #value > limit then
    error(string.format("req.session: %d bytes once signed, over the %d a cookie may hold (session.maxSize);"
      .. " keep ids in the session and the data in the database", #name + 1 + #value, limit), 0)
  end
  res:cookie(name, value, {
    httpOnly = true, sameSite = o.sameSite or "Lax", secure = o.secure and true or nil, maxAge = o.maxAge, path = "/",
  })
end

-- req:flash(kind, message): keeps message for the next request (stored in
-- the session under "flash"); returns how many of kind wait.
-- req:flash(kind): the messages of kind (a list, maybe empty), now gone.
-- req:flash(): every kind's messages ({ notice = {...}, ... }), now gone.
function M.flash(req, kind, message)
  local s = req.session
  local all = s.flash
  if kind == nil then
    s.flash = nil
    return type(all) == "table" and all or {}
  end
  assert(type(kind) == "string", "req:flash: the kind must be a string (\"notice\", \"error\", ...)")
  if message == nil then
    local list = type(all) == "table" and all[kind] or nil
    if list == nil then return {} end
    all[kind] = nil
    if next(all) == nil then s.flash = nil end
    return list
  end
  if type(all) ~= "table" then
    all = {}
    s.flash = all
  end
  local list = all[kind]
  if type(list) ~= "table" then
    list = {}
    all[kind] = list
  end
  list[#list + 1] = tostring(message)
  return #list
end

return M
