-- The example app's chat, in-process with moonwire.testing's Socket.IO
-- client: nicknames, a message to everyone but the sender, private
-- messages, and history replayed from auth.serverOffset.
local testing = require "moonwire.testing"

describe("the chat", function()
  local srv

  before_each(function()
    srv = testing.start { root = ".", env = { CHAT_LEAVE_GRACE_MS = "0" } }
    assert.is_true(srv.loaded)
  end)

  after_each(function() srv:stop() end)

  -- A connected page that picked a nickname.
  local function person(nickname, auth)
    local client = srv:connect("/", { auth = auth })
    local answer = client:ask("nickname", nickname)
    assert.equal(nickname, answer.nickname)
    return client
  end

  it("refuses a nickname that is empty or too long", function()
    local client = srv:connect()
    assert.is_string(client:ask("nickname", "").error)
    assert.is_string(client:ask("nickname", ("x"):rep(33)).error)
    assert.equal(("x"):rep(32), client:ask("nickname", ("x"):rep(32)).nickname)
    client:close()
  end)

  it("sends a message to everyone but its sender, signed and acked with its id", function()
    local ann, bob = person("ann"), person("bob")
    local ack = ann:ask("chat message", "hello bob", "ann-1")
    assert.equal("integer", math.type(ack.id))
    local msg, offset = bob:await("chat message")
    assert.same({ id = ack.id, nickname = "ann", text = "hello bob", at = ack.at }, msg)
    assert.equal(ack.id, offset)
    ann:ask("nickname", "ann") -- a round trip: anything for ann has arrived
    assert.same({}, ann:received("chat message"))
    ann:close()
    bob:close()
  end)

  it("delivers a private message to that person only", function()
    local ann, bob, cy = person("ann"), person("bob"), person("cy")
    local ack = ann:ask("private message", { to = "bob", text = "psst" })
    assert.equal("bob", ack.to)
    local pm = bob:await("private message")
    assert.equal("ann", pm.from)
    assert.equal("psst", pm.text)
    cy:ask("nickname", "cy")
    assert.same({}, cy:received("private message"))
    assert.matches("Nobody called dan", ann:ask("private message", { to = "dan", text = "hi" }).error)
    for _, c in ipairs { ann, bob, cy } do c:close() end
  end)

  it("replays the messages after auth.serverOffset, in order, and stores a retried clientOffset once", function()
    local ann = person("ann")
    local first = ann:ask("chat message", "one", "ann-1")
    local again = ann:ask("chat message", "one", "ann-1")
    assert.equal(first.id, again.id)
    ann:ask("chat message", "two", "ann-2")
    ann:ask("chat message", "three", "ann-3")

    local late = srv:connect("/", { auth = { serverOffset = first.id } })
    assert.equal("two", (late:await("chat message")).text)
    assert.equal("three", (late:await("chat message")).text)

    local fresh = srv:connect("/", { auth = { serverOffset = 0 } })
    local texts = {}
    for _ = 1, 3 do texts[#texts + 1] = fresh:await("chat message").text end
    assert.same({ "one", "two", "three" }, texts)
    fresh:ask("nickname", "eve")
    assert.same({}, fresh:received("chat message"), "the retry was stored once")
    for _, c in ipairs { ann, late, fresh } do c:close() end
  end)

  it("tells the others who joined and who left, and keeps the online list", function()
    local ann = person("ann")
    local bob = srv:connect()
    bob:ask("nickname", "bob")
    assert.same({ nickname = "bob" }, ann:await("user joined"))
    bob:close()
    assert.same({ nickname = "bob" }, ann:await("user left"))
    local online
    repeat online = ann:await("online") until #online == 1
    assert.same({ "ann" }, online)
    ann:close()
  end)
end)
