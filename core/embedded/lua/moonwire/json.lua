-- moonwire.json: JSON for the framework and the app, on moonwire.json_c
-- (core/l_json.c, a codec written for Lua 5.4).
--
--   local json = require "moonwire.json"
--   json.encode({ pets = json.array({}) })   --> {"pets":[]}
--   json.decode('[1, 2.5]')                   --> { 1, 2.5 } (1 is an integer)
--   json.null                                  -- JSON null inside tables
--
-- Numbers: integers are written exactly (the whole int64 range), floats in
-- the shortest form that reads back as the same double, as JavaScript
-- prints them (0.30000000000000004, 1e+21, 5e-324; 1.0 is 1); NaN and the
-- infinities as null, as JSON.stringify does. Decoded whole numbers that
-- fit are integers.
--
-- Lua has one table type, so an empty table cannot say whether it is [] or
-- {}. A table marked with json.array(t) is an array: empty, it is written
-- []. Every decoded array is marked, and so are db.query results, so
-- what arrived as [] leaves as [] (json.isarray tells [] from {}).
local c = require "moonwire.json_c"

local json = { null = c.null }

-- The marker is a metatable shared through the registry
-- (registry["moonwire.array"]), so the C side (db.query, moonwire.msgpack)
-- sets the same one.
local ARRAY = c.array_mt

-- Marks t as an array (written [] when empty); returns t.
function json.array(t)
  return setmetatable(t or {}, ARRAY)
end

function json.isarray(t) return getmetatable(t) == ARRAY end

-- Encodes v; nil and a message (with where: "at pets[2].owner") when it
-- cannot be: a function, a table key that is not a string or a number,
-- nesting deeper than 64 (a table that holds itself).
json.encode = c.encode

-- Decodes JSON text (RFC 8259, nothing more): nil and a message with the
-- byte offset when it does not parse. null is json.null. A string's bytes
-- come as they were sent, UTF-8 or not (utf8.len(s) is nil when not);
-- encode writes ill-formed UTF-8 as U+FFFD.
json.decode = c.decode

return json
