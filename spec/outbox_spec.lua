-- Emits inside db.transaction(fn), through the real server in-process: they
-- leave once the transaction commits, never when it rolls back (fn raised,
-- db.rollback(), a COMMIT that failed, a savepoint undone); outside a
-- transaction they leave at once, as before. The app is
-- spec/fixtures/outbox.
local testing = require "moonwire.testing"

describe("emits inside db.transaction", function()
  local srv, watcher
  before_each(function()
    srv = testing.start { root = "spec/fixtures/outbox" }
    assert.is_true(srv.loaded)
    watcher = srv:connect()
  end)
  after_each(function()
    watcher:close()
    srv:stop()
  end)

  -- The tags of every "added" the watcher has had so far, once a round trip
  -- shows that whatever was sent before has arrived.
  local function added()
    assert.equal("pong", watcher:ask("ping"))
    local tags = {}
    for _, args in ipairs(watcher:received("added")) do tags[#tags + 1] = args[1] end
    return tags
  end

  local function post(path)
    local status, body = srv:post(path)
    assert.equal(200, status, body)
    return testing.json(body)
  end

  it("go out when the transaction commits, with the row there", function()
    local r = post("/add?tag=rex&mode=commit")
    assert.is_true(r.ok)
    assert.is_false(r.inTransaction)
    assert.same({ "rex" }, added())
    assert.same({ "rex" }, testing.json(select(2, srv:get("/items"))))
  end)

  it("wait while the transaction is open, and leave at its commit", function()
    local sender = srv:connect()
    -- The ack comes from inside the transaction, after the emits: had they
    -- left, they would have arrived before it.
    assert.equal("in transaction", sender:ask("save", "tom"))
    assert.same({}, sender:received("saved"))
    assert.same({}, added())
    assert.same({}, testing.json(select(2, srv:get("/items"))), "not committed yet")
    post("/release")
    local tag = sender:await("saved")
    assert.equal("tom", tag)
    assert.equal("tom", (watcher:await("added")))
    assert.same({ "tom" }, testing.json(select(2, srv:get("/items"))))
    sender:close()
  end)

  it("never go out when fn raises", function()
    local r = post("/add?tag=rex&mode=error")
    assert.is_false(r.ok)
    assert.truthy(r.err:find("refused rex", 1, true), r.err)
    assert.same({}, added())
    assert.same({}, testing.json(select(2, srv:get("/items"))))
  end)

  it("never go out after db.rollback(), which ends the transaction without an error", function()
    local r = post("/add?tag=rex&mode=rollback")
    assert.is_true(r.ok)
    assert.same({}, added())
    assert.same({}, testing.json(select(2, srv:get("/items"))))
  end)

  it("never go out when the COMMIT itself fails (a deferred foreign key)", function()
    local r = post("/add?tag=rex&mode=fk")
    assert.is_false(r.ok)
    assert.truthy(r.err:find("FOREIGN KEY", 1, true), r.err)
    assert.same({}, added())
    assert.same({}, testing.json(select(2, srv:get("/items"))))
  end)

  it("follow savepoints: an undone savepoint drops its own, the outer commit sends the rest", function()
    assert.is_true(post("/nested?inner=error").ok)
    assert.same({ "outer" }, added())
    assert.same({ "outer" }, testing.json(select(2, srv:get("/items"))))
  end)

  it("follow savepoints: a released savepoint's emits wait for the outer transaction, and go with it", function()
    assert.is_true(post("/nested").ok)
    assert.same({ "outer", "inner" }, added())
    assert.is_false(post("/nested?outer=error").ok)
    assert.same({ "outer", "inner" }, added(), "nothing more")
    assert.same({ "outer", "inner" }, testing.json(select(2, srv:get("/items"))))
  end)

  it("outside a transaction leave at once, as before", function()
    assert.is_true(post("/plain?tag=now").ok)
    assert.same({ "now" }, added())
  end)

  it("cannot wait for an answer inside a transaction: emitWithAck raises and says why", function()
    local r = post("/ack")
    assert.is_false(r.ok)
    assert.truthy(r.err:find("emitWithAck: inside db.transaction", 1, true), r.err)
  end)
end)
