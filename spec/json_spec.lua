-- moonwire.json: numbers as JavaScript writes and reads them (integers
-- exact, floats shortest), lists stay lists (json.array, db.query results,
-- decoded arrays), strings escaped as JSON.stringify does, clear errors.
local json = require "moonwire.json"
local testing = require "moonwire.testing"

local null = json.null

-- Decodes s and checks the value and its Lua number type.
local function decodes_to(s, want, kind)
  local v, err = json.decode(s)
  assert.is_nil(err)
  assert.equal(want, v)
  assert.equal(kind, math.type(v))
end

describe("moonwire.json numbers", function()
  it("writes floats in the shortest form that reads back, as JavaScript prints them", function()
    local cases = {
      { 0.1 + 0.2, "0.30000000000000004" }, { 1.0, "1" }, { -0.0, "0" }, { 1 / 3, "0.3333333333333333" },
      { 123456789012345.0, "123456789012345" }, { 1e20, "100000000000000000000" }, { 1e21, "1e+21" },
      { 1e300, "1e+300" }, { 5e-324, "5e-324" }, { 1.5e-7, "1.5e-7" }, { 0.000001, "0.000001" },
      { 2.5, "2.5" }, { -1e-7, "-1e-7" }, { 2 ^ 63, "9223372036854776000" },
      { 1.7976931348623157e308, "1.7976931348623157e+308" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], json.encode(c[1]), "encoding " .. string.format("%.17g", c[1]))
    end
  end)

  it("writes NaN and the infinities as null, as JSON.stringify does", function()
    assert.equal("[null,null,null]", json.encode({ 0 / 0, math.huge, -math.huge }))
  end)

  it("writes integers exactly over the whole int64 range", function()
    assert.equal("9007199254740993", json.encode(9007199254740993))
    assert.equal("9223372036854775807", json.encode(math.maxinteger))
    assert.equal("-9223372036854775808", json.encode(math.mininteger))
    assert.equal("[0,-1,123456789012345]", json.encode({ 0, -1, 123456789012345 }))
  end)

  it("reads whole numbers that fit int64 as integers, exactly", function()
    decodes_to("9007199254740993", 9007199254740993, "integer")
    decodes_to("9223372036854775807", math.maxinteger, "integer")
    decodes_to("-9223372036854775808", math.mininteger, "integer")
    decodes_to("1.0", 1, "integer")
    decodes_to("1e3", 1000, "integer")
    decodes_to("-0", 0, "integer")
  end)

  it("reads other numbers as correctly rounded floats", function()
    decodes_to("9223372036854775808", 2 ^ 63, "float")
    decodes_to("0.30000000000000004", 0.1 + 0.2, "float")
    decodes_to("0.3", 0.3, "float")
    decodes_to("5e-324", 5e-324, "float")
    decodes_to("1e300", 1e300, "float")
    decodes_to("2.5", 2.5, "float")
    decodes_to("0.3333333333333333", 1 / 3, "float")
  end)

  it("round-trips the numbers a JavaScript client sends", function()
    local text = "[9007199254740991,-9007199254740991,0.30000000000000004,1e+300,5e-324,"
      .. "0.3333333333333333,123456789012345,1e+21,0,9223372036854775807,-9223372036854775808]"
    assert.equal(text, json.encode(json.decode(text)))
  end)
end)

describe("moonwire.json arrays and objects", function()
  it("writes a marked empty table as [] and an unmarked one as {}", function()
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
    assert.equal('{"pets":[]}', json.encode({ pets = json.array({}) }))
    assert.equal('[[],{},[1,2]]', json.encode({ json.array(), {}, json.array({ 1, 2 }) }))
  end)

  it("writes a table whose keys are exactly 1..n as an array, other tables as objects", function()
    assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    local sparse = json.encode({ [1] = 1, [3] = 3 }) -- keys come in table order
    assert.is_true(sparse == '{"1":1,"3":3}' or sparse == '{"3":3,"1":1}', sparse)
    assert.equal('{"a":1}', json.encode({ a = 1 }))
    assert.equal('{"0":"zero"}', json.encode({ [0] = "zero" }))
  end)

  it("writes holes in a marked array as null, and a marked table with other keys as an object", function()
    assert.equal("[1,null,3]", json.encode(json.array({ 1, nil, 3 })))
    assert.equal('{"total":2}', json.encode(json.array({ total = 2 })))
    local s, err = json.encode(json.array({ [1] = 1, [1000] = 2 }))
    assert.is_nil(s)
    assert.equal("json: an array with more holes than values", err)
  end)

  it("marks every decoded array, so [] and nested empty arrays round-trip", function()
    for _, text in ipairs({ "[]", '{"a":[]}', "[[]]", "[[],[[]],{}]", '{"a":{"b":[]}}', '[{"c":{}},[{}]]' }) do
      local v = json.decode(text)
      assert.equal(text, json.encode(v), text)
    end
    assert.is_true(json.isarray(json.decode("[]")))
    assert.is_true(json.isarray(json.decode("[[1]]")[1]))
    assert.is_false(json.isarray(json.decode("{}")))
    assert.is_false(json.isarray(json.decode('{"a":1}')))
  end)

  it("leaves the encoded table as it was", function()
    local inner = json.array()
    local outer = { list = inner }
    json.encode(outer)
    assert.equal(inner, outer.list)
    assert.is_true(json.isarray(outer.list))
  end)

  it("reads null as json.null inside containers and at the top", function()
    local v = json.decode('[1,null,{"a":null}]')
    assert.equal(null, v[2])
    assert.equal(null, v[3].a)
    assert.equal(3, #v)
    assert.equal(null, json.decode("null"))
    assert.equal("[1,null,null]", json.encode({ 1, null, null }))
  end)

  it("reads a repeated key as its last value", function()
    assert.equal(2, json.decode('{"a":1,"a":2}').a)
  end)
end)

describe("moonwire.json strings", function()
  it("escapes as JSON.stringify does", function()
    assert.equal([["\"\\/\b\f\n\r\t\u0000\u0001\u001f]] .. "\127" .. [["]],
      json.encode("\"\\/\b\f\n\r\t\0\1\31\127"))
    assert.equal('"é😀e\u{301}\u{2028}"', json.encode("é😀e\u{301}\u{2028}")) -- UTF-8 as it is
  end)

  it("writes ill-formed UTF-8 as U+FFFD, so a text frame is always valid", function()
    assert.equal('"a\u{FFFD}b"', json.encode("a\255b"))
    assert.equal('"\u{FFFD}\u{FFFD}\u{FFFD}"', json.encode("\237\160\128")) -- an encoded surrogate
    assert.equal('"\u{FFFD}x"', json.encode("\226\130x"))                   -- a truncated sequence
    assert.equal('{"\u{FFFD}":1}', json.encode({ ["\255"] = 1 }))
  end)

  it("reads bytes that are not UTF-8 as they came, so the app can refuse them", function()
    local v = json.decode('{"text":"a\255b"}')
    assert.equal("a\255b", v.text)
    assert.is_nil(utf8.len(v.text))
  end)

  it("reads every escape", function()
    assert.equal("\"\\/\b\f\n\r\t\0é😀", json.decode([["\"\\\/\b\f\n\r\t\u0000\u00e9\ud83d\ude00"]]))
  end)

  it("decodes a lone UTF-16 surrogate as U+FFFD and keeps pairs", function()
    assert.equal("a\u{FFFD}b \u{1F600}", json.decode('"a\\ud800b \\ud83d\\ude00"'))
    assert.equal("\u{FFFD}\u{FFFD}", json.decode('"\\udc00\\ud800"'))
    assert.equal("\\ud800", json.decode('"\\\\ud800"'))
  end)

  it("round-trips astral and combining characters", function()
    local s = "𝄞 👩‍👩‍👧 e\u{301} ﷽"
    assert.equal(s, json.decode(json.encode(s)))
  end)
end)

describe("moonwire.json errors", function()
  it("names the type and where it is for what JSON cannot hold", function()
    local s, err = json.encode({ f = print })
    assert.is_nil(s)
    assert.equal("json: cannot encode a function at f", err)
    s, err = json.encode({ pets = { { name = "Rex", owner = io.stdout } } })
    assert.is_nil(s)
    assert.equal("json: cannot encode a userdata at pets[1].owner", err)
    assert.equal("json: cannot encode a thread", select(2, json.encode(coroutine.create(print))))
    assert.equal("json: a table key of type boolean (object keys are strings or numbers)",
      select(2, json.encode({ [true] = 1 })))
  end)

  it("stops at 64 levels of nesting, and so at a table that holds itself", function()
    local t = {}
    t.self = t
    local s, err = json.encode(t)
    assert.is_nil(s)
    assert.matches("^json: nested deeper than 64 arrays and objects %(a table that holds itself%?%) at self.self", err)
    local deep = json.array()
    for _ = 2, 64 do deep = json.array({ deep }) end
    assert.equal(string.rep("[", 64) .. string.rep("]", 64), json.encode(deep))
    assert.is_nil(json.encode({ deep }))
    assert.is_table(json.decode(string.rep("[", 64) .. string.rep("]", 64)))
    local v, derr = json.decode(string.rep("[", 65) .. string.rep("]", 65))
    assert.is_nil(v)
    assert.equal("json: nested deeper than 64 arrays and objects at offset 64", derr)
  end)

  it("returns nil and a message with the byte offset for text that is not JSON", function()
    local cases = {
      { "{nope", "json: expected a string (an object's key) at offset 1 (found 'n')" },
      { "", "json: unexpected end of input at offset 0" },
      { "[1,]", "json: expected a value at offset 3 (found ']')" },
      { "[1] 2", "json: unexpected text after the value at offset 4 (found '2')" },
      { "[01]", "json: a number with a leading zero at offset 1" },
      { "[NaN]", "json: expected a value at offset 1 (found 'N')" },
      { '["a\tb"]', "json: a control character in a string (it must be escaped) at offset 3" },
      { '"abc', "json: unterminated string at offset 0" },
      { "[1e400]", "json: a number too large for a double at offset 1" },
      { "\239\187\191[]", "json: expected a value at offset 0 (found byte 0xef)" },
    }
    for _, c in ipairs(cases) do
      local v, err = json.decode(c[1])
      assert.is_nil(v)
      assert.equal(c[2], err)
    end
  end)

  it("raises on what is not a string to decode", function()
    assert.has_error(function() json.decode(nil) end)
    assert.has_error(function() json.decode({}) end)
  end)
end)

describe("moonwire.json in the app", function()
  it("sends db.query's empty result from res:json as []", function()
    local srv = testing.start { root = "spec/fixtures/api" }
    local status, body, headers = srv:get("/json/none")
    srv:stop()
    assert.equal(200, status)
    assert.equal("[]", body)
    assert.matches("^application/json", headers["content-type"])
  end)
end)

describe("moonwire.json_c.encode_sorted (what fuzz_json compares encodings with)", function()
  it("writes every object's keys in byte order, nested ones too", function()
    local c = require "moonwire.json_c"
    assert.equal('{"a":2,"b":{"x":1,"y":[{"m":1,"n":2}]}}',
      c.encode_sorted({ b = { y = json.array({ { n = 2, m = 1 } }), x = 1 }, a = 2 }))
  end)
end)
