-- bench/codec/codec.lua: the JSON work of one acked echo on the server,
-- before (lua-cjson under the old moonwire.json and moonwire.io,
-- bench/codec/before.lua) and after (moonwire.json_c, core/l_json.c):
-- decoding the event's payload into handler arguments, and encoding the
-- ack packet from the handler's answer. bench/run.mjs runs it with the
-- system's Lua 5.4 (the codec is the same C in the server and in
-- build/lua/moonwire/json_c.so):
--
--   lua5.4 bench/codec/codec.lua BUILD_DIR [--only NAME] [--iterations N] [--rounds R]
--
-- prints one JSON line per operation: { "op", "iterations", "us" } with us
-- the best of R rounds (CPU time, os.clock). NAME is one operation
-- ("after.echo.decode"...), for counting its instructions under callgrind.
local build = assert(arg[1], "usage: codec.lua BUILD_DIR [--only NAME] [--iterations N] [--rounds R]")
package.cpath = build .. "/lua/?.so;" .. package.cpath
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local opts = { iterations = 20000, rounds = 5 }
for i = 2, #arg, 2 do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or arg[i + 1] == nil then error("codec.lua: bad argument " .. arg[i]) end
  opts[k] = tonumber(arg[i + 1]) or arg[i + 1]
end

local before = require "before"
local json_c = require "moonwire.json_c"
local Binary = before.Binary

-- The payloads: what bench/loadgen.c sends on the echo row, and a chat
-- message with more kinds of values (an object, floats, an empty array).
local PAYLOADS = {
  echo = '["echo","0123456789abcdef"]',
  chat = '["chat message",{"user":"rex","text":"hello there, how is the walk going?","at":1712345678901,'
    .. '"tags":["dogs","park"],"pos":{"lat":51.50735,"lng":-0.12776},"seen":[],"edited":false}]',
}

-- The handler's answer: its arguments back (the echo handler of bench/app),
-- in a fresh table as the ack function builds it ({ ... }).
local function answer(args, n) return { table.unpack(args, 2, n) }, n - 1 end

local OPS = {}
for name, payload in pairs(PAYLOADS) do
  local old_args, old_n = before.decode(payload)
  local new_args, new_n = json_c.decode_args(payload, nil, Binary)
  OPS["before." .. name .. ".decode"] = function() return before.decode(payload) end
  OPS["after." .. name .. ".decode"] = function() return json_c.decode_args(payload, nil, Binary) end
  OPS["before." .. name .. ".encode"] = function()
    local a, n = answer(old_args, old_n)
    return before.encode("/", 3, a, n, 12)
  end
  OPS["after." .. name .. ".encode"] = function()
    local a, n = answer(new_args, new_n)
    return json_c.packet(3, "/", 12, a, n, Binary)
  end
end

-- Both paths answer the same packets, but for what the old one lost (its
-- empty array came back as {}: "seen"), checked before anything is timed.
for name in pairs(PAYLOADS) do
  local old = OPS["before." .. name .. ".encode"]():gsub('"seen":{}', '"seen":[]')
  local new = OPS["after." .. name .. ".encode"]()
  local a = assert(json_c.decode(assert(old:match("^312(.*)$"))))
  local b = assert(json_c.decode(assert(new:match("^312(.*)$"))))
  assert(json_c.encode_sorted(a) == json_c.encode_sorted(b), name .. ": the two paths answer differently:\n" .. old .. "\n" .. new)
end

local function run(name, fn)
  local best = math.huge
  for _ = 1, opts.rounds do
    collectgarbage()
    local t0 = os.clock()
    for _ = 1, opts.iterations do fn() end
    local us = (os.clock() - t0) / opts.iterations * 1e6
    if us < best then best = us end
  end
  io.write(string.format('{"op":"%s","iterations":%d,"us":%.4f}\n', name, opts.iterations, best))
end

if opts.only then
  local fn = OPS[opts.only] or error("codec.lua: no operation " .. opts.only)
  for _ = 1, opts.iterations do fn() end
  io.write(string.format('{"op":"%s","iterations":%d}\n', opts.only, opts.iterations))
else
  local names = {}
  for name in pairs(OPS) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do run(name, OPS[name]) end
end
