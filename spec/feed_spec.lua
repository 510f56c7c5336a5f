-- The example app's live feed, in-process: publishing needs the token, and a
-- published item reaches every connected /feed page.
local testing = require "moonwire.testing"

describe("the live feed", function()
  local srv

  setup(function()
    srv = testing.start { root = ".", env = { FEED_TOKEN = "spec-token" } }
    assert.is_true(srv.loaded)
  end)

  teardown(function() srv:stop() end)

  local function publish(item, token)
    local headers = token and { authorization = "Bearer " .. token } or nil
    return srv:post("/api/feed", { json = item, headers = headers })
  end

  it("refuses a publish without the token, or with another one", function()
    assert.equal(401, (publish({ text = "hi" })))
    assert.equal(401, (publish({ text = "hi" }, "not-the-token")))
    local status, body = srv:get("/api/feed")
    assert.equal(200, status)
    assert.equal("[]", body)
  end)

  it("stores a published item and pushes it to every open page", function()
    local a, b = srv:connect("/feed"), srv:connect("/feed")
    local status, body = publish({ text = "Deploy finished", tag = "#Ops" }, "spec-token")
    assert.equal(201, status)
    assert.matches('"tag":"ops"', body)
    for _, page in ipairs { a, b } do
      local item = page:await("item")
      assert.equal("Deploy finished", item.text)
      assert.equal("ops", item.tag)
    end
    a:close()
    b:close()
  end)

  it("answers 422 for an empty text", function()
    local status, body = publish({ text = "   " }, "spec-token")
    assert.equal(422, status)
    assert.matches("Text is required", body)
  end)
end)
