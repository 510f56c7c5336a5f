-- bench/codec/before.lua: the JSON path of a Socket.IO packet as moonwire
-- had it before its own codec, for the codec figure of `make bench`
-- (bench/codec/codec.lua) to compare against: lua-cjson 2.1.0 under the
-- old moonwire.json (core/embedded/lua/moonwire/json.lua) and the old packet
-- encode/decode of moonwire.io (core/embedded/lua/moonwire/io.lua), as they were.
-- Returns { encode = encode(nsp, kind, args, n, id), decode = decode(json, atts), Binary }.
local cjson = require "cjson.safe"
local null = cjson.null

-- ---------------------------------------------------------------- the old moonwire.json
local json = { null = null }
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


-- ---------------------------------------------------------------- the old moonwire.io packets
local cjson_raising = require "cjson"
local app = { json_decode = json.decode }
local Binary = {}
Binary.__index = Binary
local function has_binary(v, depth)
  if getmetatable(v) == Binary then return true end
  if type(v) ~= "table" or depth > 32 then return false end
  for _, x in pairs(v) do
    if has_binary(x, depth + 1) then return true end
  end
  return false
end

-- A placeholder is written as a marker string and turned into
-- {"_placeholder":true,"num":N} after encoding, so its keys come out in the
-- order the official implementation writes them (a Lua table has none).
local MARK = "\0mw-placeholder:"
local MARK_JSON = '"\\u0000mw%-placeholder:(%d+)"'

local function deconstruct(v, atts)
  if getmetatable(v) == Binary then
    atts[#atts + 1] = v.data
    return MARK .. (#atts - 1)
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deconstruct(x, atts) end
  return out
end

local function reconstruct(v, atts)
  if type(v) ~= "table" then return v end
  if v._placeholder == true and math.type(v.num) == "integer" then
    local data = atts and atts[v.num + 1]
    if data == nil then error("binary placeholder without its attachment", 0) end
    return setmetatable({ data = data }, Binary)
  end
  for k, x in pairs(v) do v[k] = reconstruct(x, atts) end
  return v
end

-- ---------------------------------------------------------------- packets

-- Returns the packet text and its attachments (or nil).
-- args is a fresh table the caller gives away (it is filled in place).
local function encode(nsp, kind, args, n, id)
  local binary, tables = false, false
  for i = 1, n do
    local v = args[i]
    if v == nil then
      args[i] = null
    elseif type(v) == "table" then
      tables = true
      if not binary then binary = has_binary(v, 1) end
    end
  end
  local atts
  if binary then
    atts = {}
    args = deconstruct(args, atts)
    kind = kind + 3 -- BINARY_EVENT / BINARY_ACK
  end
  -- Only tables can hold a marked empty list: plain values go straight to cjson.
  local text = n == 0 and "[]" or tables and assert(json.encode(args)) or cjson_raising.encode(args)
  if atts then
    text = text:gsub(MARK_JSON, '{"_placeholder":true,"num":%1}')
    return kind .. #atts .. "-" .. (nsp ~= "/" and nsp .. "," or "") .. (id or "") .. text, atts
  end
  return kind .. (nsp ~= "/" and nsp .. "," or "") .. (id or "") .. text
end

-- Decodes a payload into an argument list; top-level nulls become nil.
local function decode(json, atts)
  local arr, err = app.json_decode(json) -- never raises: nil and a message
  if type(arr) ~= "table" then return nil, err or "not an array" end
  if atts then arr = reconstruct(arr, atts) end
  local n = #arr
  for i = 1, n do
    if arr[i] == null then arr[i] = nil end
  end
  return arr, n
end

return { encode = encode, decode = decode, Binary = Binary, null = null }
