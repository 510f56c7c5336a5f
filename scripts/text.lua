-- Text helpers the chat, the pets and the feed share: `require "text"` loads
-- this file (any module in scripts/ can be required by its name).
local text = {}

-- Strips spaces around s. The end is walked by hand: a pattern such as
-- "%s*$" would restart at every position and take quadratic time on a long
-- run of spaces, which anyone can send.
function text.trim(s)
  local first = s:find("%S")
  if not first then return "" end
  local last = #s
  while s:find("^%s", last) do last = last - 1 end
  return s:sub(first, last)
end

return text
