-- moonwire.timer on the test clock: time moves only when the spec says so,
-- and every timer that falls due fires in order, at its own instant.
local testing = require "moonwire.testing"

describe("moonwire.timer with the test clock", function()
  local app

  before_each(function()
    app = testing.start { root = "spec/fixtures/timers", clock = "test" }
    assert.is_true(app.loaded)
  end)

  after_each(function() app:stop() end)

  local function log()
    local status, body = app:get("/log")
    assert.equal(200, status)
    return body
  end

  it("fires nothing until the clock moves", function()
    app:run(50) -- real time passes; the app's clock does not
    assert.equal("", log())
  end)

  it("fires every timer that falls due, in order of due time", function()
    app:advance(99)
    assert.equal("", log())
    app:advance(1)
    assert.equal("tick1", log())
    app:advance(200) -- now 300
    -- 150: once; 200: tick2; 250: flaky1 (created first) then chained; 300: tick3
    assert.equal("tick1 once:true tick2 flaky1 chained tick3", log())
  end)

  it("keeps an every-timer running after its callback raised", function()
    app:advance(1000)
    assert.equal("4", select(2, app:get("/calls")))
    assert.matches("flaky1 .*flaky2 .*flaky3 .*flaky4", log())
  end)

  it("fires a one-shot timer once", function()
    app:advance(10000)
    local _, count = log():gsub("once:", "")
    assert.equal(1, count)
    local _, chained = log():gsub("chained", "")
    assert.equal(1, chained)
  end)

  it("stops a timer with :stop()", function()
    app:advance(200)
    local status, active = app:post("/stop")
    assert.equal(200, status)
    assert.equal("false", active)
    app:post("/clear")
    app:advance(1000)
    assert.is_nil(log():find("tick", 1, true))
  end)

  it("refuses advance on the real clock", function()
    local real = testing.start { root = "spec/fixtures/timers" }
    local ok, err = pcall(real.advance, real, 100)
    real:stop()
    assert.is_false(ok)
    assert.matches("real clock", err)
  end)
end)
