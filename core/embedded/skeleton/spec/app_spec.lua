-- Specs run with busted against the real moonwire core: `make test`.
local testing = require "moonwire.testing"

describe("{{NAME}}", function()
  local srv

  setup(function() srv = testing.start { root = "." } end)
  teardown(function() srv:stop() end)

  it("serves the home page", function()
    local status, body = srv:get("/")
    assert.equal(200, status)
    assert.matches("Say hello", body)
  end)

  it("greets a hello and passes it on to the others", function()
    local ada, bob = srv:connect(), srv:connect()
    local answer = ada:ask("hello", "Ada")
    assert.equal("Hello, Ada!", answer.greeting)
    assert.equal("Ada", bob:await("hello"))
    ada:close()
    bob:close()
  end)

  it("refuses a hello without a name", function()
    local client = srv:connect()
    assert.is_string(client:ask("hello", "").error)
    client:close()
  end)
end)
