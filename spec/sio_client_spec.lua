-- The Socket.IO client of moonwire.testing, against the real core: connect
-- with auth, events both ways, acks both ways, broadcasts, namespaces and a
-- refused connection.
local testing = require "moonwire.testing"

describe("moonwire.testing's Socket.IO client", function()
  local srv

  setup(function()
    srv = testing.start { root = "spec/fixtures/sio" }
    assert.is_true(srv.loaded)
  end)

  teardown(function() srv:stop() end)

  it("connects with auth and receives events", function()
    local client = srv:connect("/", { auth = { name = "ada" } })
    local id, name = client:await("welcome")
    assert.equal(client.id, id)
    assert.equal("ada", name)
    client:close()
  end)

  it("gets acks for its emits, with every value", function()
    local client = srv:connect()
    assert.same({ 1, "two", { three = 3 } }, { client:ask("echo", 1, "two", { three = 3 }) })
    client:close()
  end)

  it("answers the server's acks", function()
    local client = srv:connect()
    client:on("question", function(q, ack)
      assert.equal("six times seven?", q)
      ack(42)
    end)
    assert.equal("you said 42", client:ask("quiz"))
    client:close()
  end)

  it("sees broadcasts from other clients, not its own", function()
    local a, b = srv:connect(), srv:connect()
    a:emit("shout", "hello")
    assert.equal("hello", b:await("shout"))
    a:ask("echo") -- a round trip: a has everything it would get
    assert.same({}, a:received("shout"))
    a:close()
    b:close()
  end)

  it("connects to a namespace through its middleware, or is refused", function()
    local admin = srv:connect("/admin", { auth = { token = "secret" } })
    assert.equal("admin " .. admin.id, admin:ask("whoami"))
    admin:close()
    local refused, message, data = srv:connect("/admin", { auth = { token = "wrong" } })
    assert.is_nil(refused)
    assert.equal("not allowed", message)
    assert.same({ reason = "token" }, data)
  end)

  it("raises when an awaited event does not come", function()
    local client = srv:connect()
    client:await("welcome")
    assert.has_error(function() client:await("never", 50) end, "no 'never' within 50 ms")
    client:close()
  end)
end)
