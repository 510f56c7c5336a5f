-- moonwire.workers: which process of `moonwire --workers N` this is.
--
--   local workers = require "moonwire.workers"
--   workers.id      -- this worker's number, 1 to N (1 in a single process)
--   workers.count   -- N (1 in a single process)
--
-- Every worker runs all of scripts/, timers included, as every worker of
-- Node's cluster runs its setInterval. A job that must run once for the
-- whole server (a periodic update of the shared database, say) goes in one
-- worker:
--
--   if workers.id == 1 then timer.every(10000, tick) end
--
-- A worker that died is restarted under its number, so worker 1's jobs
-- pause while it restarts and go on after.
local c = require "moonwire.workers_c"

return {
  id = (c.self() or 0) + 1,
  count = c.count(),
}
