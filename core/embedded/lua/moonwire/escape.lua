-- moonwire.escape: the framework's one copy of HTML escaping and URL
-- (percent) encoding, for templates, routes, cookies, error pages and the
-- test client.
--
--   escape.html(v)              -> string  & < > " ' as entities; nil is ""
--   escape.url(s)               -> string  every byte but A-Z a-z 0-9 - . _ ~ as %XX
--                                          (encodeURIComponent, and ! * ' ( ) too)
--   escape.url_decode(s, plus)  -> string  %XX decoded; a '%' that starts no escape
--                                          stays as it is (as URLSearchParams and
--                                          Express's qs keep it); plus: '+' is a space

local escape = {}

local HTML = {
  ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
}

function escape.html(v)
  if v == nil then return "" end
  if type(v) ~= "string" then v = tostring(v) end
  return (v:gsub("[&<>\"']", HTML))
end

local function pct(c) return string.format("%%%02X", c:byte()) end

function escape.url(s)
  return (tostring(s):gsub("[^%w%-%._~]", pct))
end

local function unhex(h) return string.char(tonumber(h, 16)) end

function escape.url_decode(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", unhex))
end

return escape
