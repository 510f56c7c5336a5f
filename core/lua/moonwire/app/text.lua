-- moonwire.app.text: the web's text forms: percent-encoding, form bodies
-- (application/x-www-form-urlencoded), Cookie headers, hex, HTML escaping.
local M = {}

local function url_decode(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
M.url_decode = url_decode

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
M.url_encode = url_encode

-- "a=1&b=2&b=3" → { a = "1", b = { "2", "3" } } (a repeated key becomes an array)
local function parse_urlencoded(s)
  local t = {}
  for pair in s:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = url_decode(k, true), url_decode(v, true)
    local prev = t[k]
    if prev == nil then
      t[k] = v
    elseif type(prev) == "table" then
      prev[#prev + 1] = v
    else
      t[k] = { prev, v }
    end
  end
  return t
end
M.parse_urlencoded = parse_urlencoded

function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- "a=1; b=x%20y" → { a = "1", b = "x y" } (the first of a repeated name wins, as in Express)
function M.parse_cookies(header)
  local t = {}
  for pair in (header or ""):gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k and k ~= "" and t[k] == nil then
      if v:sub(1, 1) == '"' and v:sub(-1) == '"' and #v >= 2 then v = v:sub(2, -2) end
      t[k] = url_decode(v)
    end
  end
  return t
end

local ESCAPES = {
  ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
}

-- v as HTML text or an attribute value ("" for nil); templates use it for
-- <%= %> (view.escape is this function).
function M.escape_html(v)
  if v == nil then return "" end
  if type(v) ~= "string" then v = tostring(v) end
  return (v:gsub("[&<>\"']", ESCAPES))
end

return M
