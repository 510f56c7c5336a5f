-- moonwire.json: lists stay lists (json.array, db.query results, decoded
-- arrays), whole numbers come back as integers, lone surrogates decode.
local json = require "moonwire.json"
local testing = require "moonwire.testing"

describe("moonwire.json", function()
  it("writes a marked empty table as [] and an unmarked one as {}", function()
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
    assert.equal('{"pets":[]}', json.encode({ pets = json.array({}) }))
    assert.equal('[[],{},[1,2]]', json.encode({ json.array(), {}, json.array({ 1, 2 }) }))
  end)

  it("leaves the encoded table as it was", function()
    local inner = json.array()
    local outer = { list = inner }
    json.encode(outer)
    assert.equal(inner, outer.list)
    assert.is_true(json.isarray(outer.list))
  end)

  it("returns nil and a message for what JSON cannot hold", function()
    local s, err = json.encode({ f = print })
    assert.is_nil(s)
    assert.is_string(err)
  end)

  it("decodes whole numbers as integers and marks a top-level array", function()
    local v = json.decode(' [1, 2.5, {"n": 3}]')
    assert.equal("integer", math.type(v[1]))
    assert.equal("float", math.type(v[2]))
    assert.equal("integer", math.type(v[3].n))
    assert.is_true(json.isarray(v))
    assert.is_true(json.isarray(json.decode("[]")))
    assert.is_false(json.isarray(json.decode("{}")))
    assert.equal("[]", json.encode(json.decode("[]")))
  end)

  it("decodes a lone UTF-16 surrogate as U+FFFD and keeps pairs", function()
    assert.equal("a\u{FFFD}b \u{1F600}", json.decode('"a\\ud800b \\ud83d\\ude00"'))
    assert.equal("\\ud800", json.decode('"\\\\ud800"'))
  end)

  it("returns nil and a message for text that is not JSON", function()
    local v, err = json.decode("{nope")
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("sends db.query's empty result from res:json as []", function()
    local srv = testing.start { root = "spec/fixtures/api" }
    local status, body, headers = srv:get("/json/none")
    srv:stop()
    assert.equal(200, status)
    assert.equal("[]", body)
    assert.matches("^application/json", headers["content-type"])
  end)
end)
