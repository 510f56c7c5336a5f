-- moonwire.app.csrf: CSRF tokens for forms (app.set("csrf", true)).
--
-- The token is the client's random _csrf cookie (HttpOnly, SameSite=Lax)
-- signed with the app's secret: a page of another site can neither read it
-- nor make one.
local core = require "moonwire.core"
local settings = require "moonwire.app.settings"
local text = require "moonwire.app.text"

local M = {}
local hex = text.hex

local made_secret -- made once per server start, kept across reloads

local function secret()
  local s = settings.get("secret")
  if s then return s end
  if not made_secret then
    local env = os.getenv("MOONWIRE_SECRET")
    if env and #env >= 16 then
      made_secret = env
    else
      made_secret = core.hmac(core.start_key(), "csrf") -- the same in every worker of --workers
      if not core.dev then
        core.log("warn", "app: no MOONWIRE_SECRET (16 bytes or more) in the environment: CSRF tokens change when the server restarts")
      end
    end
  end
  return made_secret
end

local COOKIE = "_csrf"

-- req:csrfToken(): the token a form of this client must send back, as the
-- field _csrf or the header X-CSRF-Token. The client gets the cookie the
-- first time (on req's response).
function M.token(req)
  local id = req.cookies[COOKIE]
  if not id or not id:match("^%x+$") or #id ~= 32 then
    id = rawget(req, "_csrf_id")
    if not id then
      id = hex(core.random(16))
      rawset(req, "_csrf_id", id)
      local res = rawget(req, "_res")
      if res then res:cookie(COOKIE, id, { httpOnly = true, sameSite = "Lax", path = "/" }) end
    end
  end
  return hex(core.hmac(secret(), id))
end

-- Whether req may go on: the methods that change things, with a body a
-- plain HTML form (or a script without CORS) can send, need the token. A
-- request with neither Origin nor Sec-Fetch-Site did not come from a
-- browser (curl, a test, another server): forging it needs no victim's
-- browser, so there is nothing to check.
local FORMISH = { ["application/x-www-form-urlencoded"] = true, ["multipart/form-data"] = true, ["text/plain"] = true }
local UNSAFE = { POST = true, PUT = true, PATCH = true, DELETE = true }

function M.ok(req, method)
  if not UNSAFE[method] then return true end
  local h = req.headers
  local ct = (h["content-type"] or ""):match("^%s*([^;%s]*)"):lower()
  if ct ~= "" and not FORMISH[ct] then return true end
  if not h.origin and not h["sec-fetch-site"] then return true end
  local token = h["x-csrf-token"] or h["x-xsrf-token"]
    or ((ct == "application/x-www-form-urlencoded" or ct == "multipart/form-data") and req.form._csrf)
  local id = req.cookies[COOKIE]
  if type(token) ~= "string" or not id then return false end
  return core.equal(token, hex(core.hmac(secret(), id)))
end

return M
