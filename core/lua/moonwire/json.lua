-- moonwire.json: JSON for the framework and the app, on lua-cjson.
--
--   local json = require "moonwire.json"
--   json.encode({ pets = json.array({}) })   --> {"pets":[]}
--   json.decode('[1, 2.5]')                   --> { 1, 2.5 } (1 is an integer)
--   json.null                                  -- JSON null inside tables
--
-- Lua has one table type, so an empty table cannot say whether it is [] or
-- {}; lua-cjson writes {}. A table marked with json.array(t) is an array:
-- empty, it is written []. db.query results are marked already, so
-- res:json(db.query(...)) is [] when nothing matched; so is a top-level JSON
-- array from json.decode (json.isarray tells [] from {}).
local cjson = require "cjson.safe"

local json = { null = cjson.null }

-- The marker is a metatable shared through the registry, so the C side
-- (db.query) sets the same one.
local registry = debug.getregistry()
local ARRAY = registry["moonwire.array"]
if not ARRAY then
  ARRAY = { __name = "moonwire.array" }
  registry["moonwire.array"] = ARRAY
end

-- Marks t as an array (written [] when empty); returns t.
function json.array(t)
  return setmetatable(t or {}, ARRAY)
end

function json.isarray(t) return getmetatable(t) == ARRAY end

-- ---------------------------------------------------------------- encoding

-- A string no JSON text from a Lua value contains by chance: the encoder
-- writes a marked empty table as this string, then the quoted string becomes [].
local HOLE = "\0moonwire empty array " .. tostring({}):match("0x%x+") .. "\0"
local HOLE_PATTERN = cjson.encode(HOLE):gsub("%p", "%%%0") -- as a literal pattern

-- v with every marked empty table replaced by HOLE (a copy where needed;
-- v itself is left alone). found: whether there was any.
local function fill(v, depth)
  if type(v) ~= "table" then return v, false end
  if getmetatable(v) == ARRAY and next(v) == nil then return HOLE, true end
  if depth > 64 then return v, false end
  local copy, found
  for k, x in pairs(v) do
    if type(x) == "table" then
      local y, f = fill(x, depth + 1)
      if f then
        copy = copy or {}
        copy[k] = y
        found = true
      end
    end
  end
  if not found then return v, false end
  for k, x in pairs(v) do
    if copy[k] == nil then copy[k] = x end
  end
  return copy, true
end

-- Encodes v; nil and a message when it cannot be (a function, a cycle...).
function json.encode(v)
  local filled, found = fill(v, 0)
  local s, err = cjson.encode(filled)
  if not s then return nil, err end
  if found then s = s:gsub(HOLE_PATTERN, "[]") end
  return s
end

-- ---------------------------------------------------------------- decoding

-- lua-cjson gives every JSON number as a float (2 → 2.0); numbers without a
-- fraction become integers, as a Lua reader expects.
local function integers(v)
  if type(v) == "table" then
    for k, x in pairs(v) do
      local t = type(x)
      if t == "number" then
        local i = math.tointeger(x)
        if i then v[k] = i end
      elseif t == "table" then
        integers(x)
      end
    end
    return v
  elseif type(v) == "number" then
    return math.tointeger(v) or v
  end
  return v
end

-- JSON.parse takes a lone UTF-16 surrogate escape ("\ud800"), which a
-- JavaScript string can hold; lua-cjson refuses it. Each one becomes
-- "\ufffd" (the replacement character), as a browser does when it encodes
-- such a string as UTF-8. Every backslash in valid JSON starts an escape, so
-- walking them in order never mistakes text for one.
local function replace_lone_surrogates(s)
  local out, i, from = {}, 1, 1
  while true do
    local at = s:find("\\", i, true)
    if not at then break end
    local hex = s:match("^u(%x%x%x%x)", at + 1)
    if hex then
      local code = tonumber(hex, 16)
      local low = code >= 0xD800 and code <= 0xDBFF and s:match("^\\u([dD][c-fC-F]%x%x)", at + 6)
      if low then
        i = at + 12 -- a proper pair: keep it
      elseif code >= 0xD800 and code <= 0xDFFF then
        out[#out + 1] = s:sub(from, at - 1) .. "\\ufffd"
        i, from = at + 6, at + 6
      else
        i = at + 6
      end
    else
      i = at + 2
    end
  end
  out[#out + 1] = s:sub(from)
  return table.concat(out)
end

-- Decodes JSON: whole numbers as integers, a top-level array marked as one.
-- nil and a message when it does not parse.
function json.decode(s)
  local v, err = cjson.decode(s)
  if v == nil and err and err:find("unicode escape", 1, true) then
    v, err = cjson.decode(replace_lone_surrogates(s))
  end
  if v == nil and err then return nil, err end
  v = integers(v)
  if type(v) == "table" and s:find("^%s*%[") then setmetatable(v, ARRAY) end
  return v
end

return json
