-- Signed cookie sessions, flash messages and app.validate, through the real
-- core (spec/fixtures/web).
local testing = require "moonwire.testing"

local ROOT = "spec/fixtures/web"
local A, B = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

-- The mw_session cookie a response sets ("" when it clears it), and its attributes.
local function session_cookie(headers)
  local line = headers["set-cookie"] or ""
  local value, attrs = line:match("mw_session=([^;,]*)(.*)")
  return value, attrs
end

local function start(keys, env)
  env = env or {}
  env.SESSION_KEYS = keys or false
  local srv = testing.start { root = ROOT, env = env }
  assert.is_true(srv.loaded)
  return srv
end

describe("req.session", function()
  local srv
  after_each(function() if srv then srv:stop() srv = nil end end)

  it("comes back on the next request from the signed cookie (HttpOnly, SameSite=Lax)", function()
    srv = start(A)
    local status, body, headers = srv:post("/count")
    assert.equal(200, status)
    assert.equal(1, testing.json(body).n)
    local cookie, attrs = session_cookie(headers)
    assert.matches("^[%w_-]+%.[%w_-]+$", cookie)
    assert.matches("HttpOnly", attrs)
    assert.matches("SameSite=Lax", attrs)
    assert.matches("Path=/", attrs)
    assert.is_nil(attrs:find("Secure", 1, true))
    local _, body2, headers2 = srv:post("/count", { headers = { cookie = "mw_session=" .. cookie } })
    assert.equal(2, testing.json(body2).n)
    local cookie2 = session_cookie(headers2)
    local _, body3, headers3 = srv:get("/count", { headers = { cookie = "mw_session=" .. cookie2 } })
    assert.equal(2, testing.json(body3).n)
    assert.is_nil(headers3["set-cookie"], "an unchanged session sets no cookie")
  end)

  it("sets Secure when asked", function()
    srv = start(A, { SESSION_SECURE = "1" })
    local _, _, headers = srv:post("/count")
    local _, attrs = session_cookie(headers)
    assert.matches("; Secure", attrs)
  end)

  it("treats a tampered cookie as an empty session", function()
    srv = start(A)
    local _, _, headers = srv:post("/count")
    local cookie = session_cookie(headers)
    local payload, sig = cookie:match("^(.-)%.(.*)$")
    local tampered = {
      payload .. "." .. sig:sub(1, -2) .. (sig:sub(-1) == "A" and "B" or "A"), -- signature changed
      payload:sub(1, -2) .. (payload:sub(-1) == "A" and "B" or "A") .. "." .. sig, -- data changed
      "garbage", payload, "." .. sig,
    }
    for _, bad in ipairs(tampered) do
      local status, body, h = srv:get("/count", { headers = { cookie = "mw_session=" .. bad } })
      assert.equal(200, status)
      assert.equal(0, testing.json(body).n, bad)
      local cleared = session_cookie(h)
      assert.equal("", cleared, "the bad cookie is cleared")
    end
  end)

  it("signs with the first key and accepts the others (key rotation)", function()
    srv = start(A)
    local _, _, headers = srv:post("/count")
    local old = session_cookie(headers)
    srv:stop()

    srv = start(B .. "," .. A) -- B is new, A still accepted
    local _, body, h = srv:get("/count", { headers = { cookie = "mw_session=" .. old } })
    assert.equal(1, testing.json(body).n)
    local resigned = session_cookie(h)
    assert.is_string(resigned, "a cookie signed with an old key is signed again with the new one")
    assert.are_not.equal(old, resigned)
    srv:stop()

    srv = start(B) -- A retired: its cookies are refused, B's accepted
    local _, body2 = srv:get("/count", { headers = { cookie = "mw_session=" .. old } })
    assert.equal(0, testing.json(body2).n)
    local _, body3 = srv:get("/count", { headers = { cookie = "mw_session=" .. resigned } })
    assert.equal(1, testing.json(body3).n)
  end)

  it("clears the cookie when the session is set to nil", function()
    srv = start(A)
    local _, _, headers = srv:post("/count")
    local cookie = session_cookie(headers)
    local status, _, h = srv:post("/logout", { headers = { cookie = "mw_session=" .. cookie } })
    assert.equal(204, status)
    local cleared, attrs = session_cookie(h)
    assert.equal("", cleared)
    assert.matches("Expires=Thu, 01 Jan 1970", attrs)
  end)

  it("refuses a session over maxSize with a clear error, and keeps nothing a failed handler did", function()
    srv = start(A)
    local status, body, headers = srv:post("/big")
    assert.equal(500, status)
    assert.matches("over the 1024 a cookie may hold", body)
    assert.is_nil(headers["set-cookie"])
    local status2, _, headers2 = srv:post("/fail")
    assert.equal(500, status2)
    assert.is_nil(headers2["set-cookie"])
  end)

  it("works in dev mode without a secret (a random key per start)", function()
    srv = start(nil, { MOONWIRE_SECRET = false })
    local _, _, headers = srv:post("/count")
    local cookie = session_cookie(headers)
    local _, body = srv:get("/count", { headers = { cookie = "mw_session=" .. cookie } })
    assert.equal(1, testing.json(body).n)
  end)

  it("refuses to load in production without a secret", function()
    srv = testing.start { root = ROOT, dev = false, env = { SESSION_KEYS = false, MOONWIRE_SECRET = false } }
    assert.is_false(srv.loaded)
    srv:stop()
    srv = testing.start { root = ROOT, dev = false, env = { SESSION_KEYS = false, MOONWIRE_SECRET = A } }
    assert.is_true(srv.loaded)
  end)
end)

describe("req:flash", function()
  local srv
  before_each(function() srv = start(A) end)
  after_each(function() srv:stop() end)

  it("is read once, on the next request", function()
    local status, _, headers = srv:post("/notes", { form = { title = "Groceries" } })
    assert.equal(303, status)
    local cookie = session_cookie(headers)
    local _, body, h = srv:get("/notes", { headers = { cookie = "mw_session=" .. cookie } })
    assert.same({ "Saved Groceries" }, testing.json(body).notices)
    local after = session_cookie(h)
    assert.equal("", after, "the session is empty again: the cookie is cleared")
    local _, body2 = srv:get("/notes", { headers = { cookie = "mw_session=" .. after } })
    assert.same({}, testing.json(body2).notices)
  end)
end)

describe("app.validate", function()
  local srv
  before_each(function() srv = start(A) end)
  after_each(function() srv:stop() end)

  it("answers 422 with each field's message and the submitted values kept", function()
    local status, body = srv:post("/signup", { form = {
      name = "Bartholomew the Third", age = "12", color = "blue", code = "ab12", nick = "root",
    } })
    assert.equal(422, status)
    assert.matches('value="Bartholomew the Third"', body, 1, true)
    assert.matches('data%-field="name">Name must be at most 10 characters%.<', body)
    assert.matches('data%-field="age">Age must be at least 18%.<', body)
    assert.matches('data%-field="color">Color must be one of: red, green%.<', body)
    assert.matches('data%-field="code">Code is not in the expected form%.<', body)
    assert.matches('data%-field="nick">Nick root is taken%.<', body)

    status, body = srv:post("/signup", { form = { name = "  ", age = "x" } })
    assert.equal(422, status)
    assert.matches('data%-field="name">Name is required%.<', body)
    assert.matches('data%-field="age">Age must be a number%.<', body)
    assert.is_nil(body:find('data-field="color"', 1, true), "an empty optional field passes")

    status, body = srv:post("/signup", { form = { name = "Ada", age = "36", color = "red", code = "AB12", nick = "ada" } })
    assert.equal(200, status)
    assert.equal("welcome", body)
  end)
end)
