-- moonwire.app.text: the web's text forms: form bodies
-- (application/x-www-form-urlencoded), Cookie headers, hex; with
-- moonwire.escape's percent-encoding and HTML escaping.
local escape = require "moonwire.escape"

local M = {}

-- Percent-encoding and HTML escaping are moonwire.escape's (one copy for
-- the framework); the names here are the ones app.lua has always used.
local url_decode = escape.url_decode
M.url_decode = url_decode
M.url_encode = escape.url
M.escape_html = escape.html

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

return M
