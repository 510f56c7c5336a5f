-- moonwire.db inside handlers, through the real server in-process: the
-- statements run on database threads while the handler waits (the end-to-end
-- side, with a second process holding the lock, is spec/e2e/db.test.mjs).
local testing = require "moonwire.testing"

local ROOT = "spec/e2e/fixtures/db"

describe("moonwire.db in a handler", function()
  local srv
  after_each(function()
    if srv then srv:stop() end
    srv = nil
  end)

  it("runs a transaction that waits between its statements, all of it or none", function()
    srv = testing.start { root = ROOT }
    local status, body = srv:post("/tx?tag=a&n=3&sleep=5")
    assert.equal(201, status, body)
    assert.same({ 1, 2, 3 }, testing.json(body))
    status = srv:post("/tx?tag=b&n=3&sleep=5&fail=1")
    assert.equal(500, status)
    local _, rows = srv:get("/items")
    assert.same({ "a", "a", "a" }, (function()
      local tags = {}
      for _, r in ipairs(testing.json(rows)) do tags[#tags + 1] = r.tag end
      return tags
    end)())
  end)

  it("stops a runaway query at db_statement_timeout; the server and the database go on", function()
    srv = testing.start { root = ROOT, db_statement_timeout = 200 }
    local status, body = srv:get("/forever", { timeout = 10000 })
    assert.equal(500, status)
    assert.truthy(body:find("statement stopped: it ran past its budget of 200 ms", 1, true), body)
    assert.truthy(body:find("scripts/app.lua:%d+"), body)
    assert.equal(201, (srv:post("/items?tag=after")))
    local _, rows = srv:get("/items")
    assert.equal("after", testing.json(rows)[1].tag)
  end)

  it("refuses BEGIN run by hand, and points to db.transaction", function()
    srv = testing.start { root = ROOT }
    for _, sql in ipairs { "BEGIN", "begin immediate", "  -- a comment\nSAVEPOINT x", "COMMIT" } do
      local status, body = srv:post("/exec", { body = sql })
      assert.equal(500, status)
      assert.truthy(body:find("cannot be run from a handler", 1, true), body)
      assert.truthy(body:find("db.transaction(fn)", 1, true), body)
    end
    assert.equal(201, (srv:post("/items?tag=fine")))
  end)
end)
