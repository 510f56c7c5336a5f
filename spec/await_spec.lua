-- Handlers that wait: every handler runs in a coroutine, so emitWithAck,
-- io.timeout(ms):emitWithAck and app.sleep suspend it without blocking the
-- loop, and it goes on when the answer (or the timeout) comes.
local testing = require "moonwire.testing"
local null = require("moonwire.json").null

describe("a handler waiting in its coroutine", function()
  local srv

  setup(function()
    srv = testing.start { root = "spec/fixtures/await" }
    assert.is_true(srv.loaded)
  end)

  teardown(function() srv:stop() end)

  it("gets the client's ack from socket:timeout(ms):emitWithAck", function()
    local client = srv:connect()
    client:on("question", function(q, ack) ack(42, q) end)
    client:emit("quiz", 5000)
    local err, answer, extra = client:await("result")
    assert.equal(null, err)
    assert.equal(42, answer)
    assert.equal("six times seven?", extra)
    client:close()
  end)

  it("gets 'operation has timed out' when the client does not answer", function()
    local client = srv:connect()
    client:on("question", function() end) -- never acks
    client:emit("quiz", 30)
    local err, answer = client:await("result")
    assert.equal("operation has timed out", err)
    assert.equal(null, answer)
    client:close()
  end)

  it("keeps serving others while one handler waits, and waits twice in a row", function()
    local a, b = srv:connect(), srv:connect()
    local asked = {}
    a:on("question", function(q, ack) asked[#asked + 1] = { q = q, ack = ack } end)
    a:emit("two waits")
    assert.equal("pong", b:ask("ping")) -- the loop is free while a's handler waits
    while #asked < 1 do a:received("nothing") end
    asked[1].ack("1")
    while #asked < 2 do a:received("nothing") end
    assert.equal("second", asked[2].q)
    asked[2].ack("2")
    assert.equal("1+2", a:await("result"))
    a:close()
    b:close()
  end)

  it("wakes a handler waiting without a timeout when the socket disconnects", function()
    local a, watcher = srv:connect(), srv:connect()
    a:on("question", function() a:close() end)
    a:emit("quiz forever")
    -- a is gone: its handler woke with an error and the server still answers
    assert.equal("pong", watcher:ask("ping"))
    watcher:close()
  end)

  it("collects one answer per client with io.timeout(ms):emitWithAck", function()
    local a, b = srv:connect(), srv:connect()
    a:on("poll", function(ack) ack("a") end)
    b:on("poll", function(ack) ack("b") end)
    a:ask("join", "pollers")
    b:ask("join", "pollers")
    a:emit("poll all", 5000)
    -- b must answer too: pump it until a has the result
    local deadline = os.clock() + 5
    while #a:received("polled") == 0 and os.clock() < deadline do b:received("nothing") end
    local got = a:received("polled")[1]
    assert.equal(null, got[1])
    assert.same({ "a", "b" }, got[2])
    a:close()
    b:close()
  end)

  it("reports the answers so far when some client does not answer in time", function()
    local a, b = srv:connect(), srv:connect()
    a:on("poll", function(ack) ack("a") end)
    b:on("poll", function() end)
    a:ask("join", "pollers")
    b:ask("join", "pollers")
    a:emit("poll all", 50)
    local err, responses = a:await("polled")
    assert.equal("operation has timed out", err)
    assert.same({ "a" }, responses)
    a:close()
    b:close()
  end)

  it("runs a timer's callback as a handler that can wait", function()
    local a = srv:connect()
    a:on("poll", function(ack) ack("here") end)
    a:ask("join", "timer")
    local _, body = srv:post("/poll-later")
    assert.equal("scheduled", body)
    local err, count = a:await("polled by timer")
    assert.equal(null, err)
    assert.equal(1, count)
    a:close()
  end)

  it("lets a route wait and answer later", function()
    local status, body = srv:get("/sleep/20")
    assert.equal(200, status)
    -- libuv's timers count from the loop's cached time: a ms early at most
    assert.is_true(tonumber(body:match("^slept (%d+) ms$")) >= 19, body)
  end)

  it("answers 500 when a route fails, or returns without answering, after waiting", function()
    assert.equal(500, (srv:get("/sleep-and-fail")))
    assert.equal(500, (srv:get("/sleep-and-forget")))
    assert.equal(500, (srv:get("/yield")))
    assert.equal(200, (srv:get("/sleep/1"))) -- and the server goes on
  end)

  it("logs a handler that fails after waiting, and goes on", function()
    local client = srv:connect()
    client:on("question", function(_, ack) ack() end)
    client:emit("fail after wait")
    assert.equal("pong", client:ask("ping"))
    client:close()
  end)

  it("reaches this process's listeners with io.serverSideEmitWithAck", function()
    local client = srv:connect()
    client:emit("server side")
    local err, responses = client:await("server side result")
    assert.equal(null, err)
    assert.same({ "answer to life" }, responses)
    client:close()
  end)
end)
