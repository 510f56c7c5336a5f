-- moonwire.log: the server's log, from the app.
--
--   local log = require "moonwire.log"
--   log.info("feed: published item", id)       -- [moonwire] info: feed: published item 12
--   log.warn("FEED_TOKEN is not set")
--   log.error("payment failed:", err)
--   log.debug("...")                            -- shown when the log level allows it
--
-- Arguments are joined with spaces, like print. Lines go to stderr.
local core = require "moonwire.core"

local log = {}

local function line(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  return table.concat(parts, " ", 1, parts.n)
end

for _, level in ipairs { "error", "warn", "info", "debug" } do
  log[level] = function(...) core.log(level, line(...)) end
end

return log
