-- moonwire.io.recovery: connection state recovery.
--
-- io.configure{ connectionStateRecovery = { maxDisconnectionDuration, skipMiddlewares, maxPackets, maxBytes } }
-- When on, every event sent without an ack and not volatile carries an offset
-- as its last argument and is kept in one log for the whole server, bounded
-- by maxPackets and maxBytes (the oldest go first) and by age. A socket that
-- drops for a recoverable reason leaves a session (id, rooms, data) for
-- maxDisconnectionDuration; a client that comes back with its pid and last
-- offset gets the same socket back and every packet it missed, in order.
local core = require "moonwire.core"
local timer = require "moonwire.timer"

local M = {}

local recovery -- nil when off
local RECOVERABLE = { ["transport error"] = true, ["transport close"] = true, ["forced close"] = true,
  ["ping timeout"] = true, ["server shutting down"] = true, ["forced server close"] = true }
local plog = { first = 1, last = 0, bytes = 0, byid = {} } -- seq → entry; offset → seq
local sessions = {} -- pid → { sid, pid, nsp, rooms, data, at }
local offset_seq = 0
local offset_prefix = string.format("%x", math.floor(core.time()) % 0x100000)
local sweeper

local function plog_drop_first()
  local e = plog[plog.first]
  plog[plog.first] = nil
  plog.byid[e.id] = nil
  plog.bytes = plog.bytes - e.size
  plog.first = plog.first + 1
end

local function expire(now)
  local threshold = now - recovery.max
  while plog.first <= plog.last and plog[plog.first].at < threshold do plog_drop_first() end
  for pid, session in pairs(sessions) do
    if session.at < threshold then sessions[pid] = nil end
  end
end

-- Whether recovery is on.
function M.on() return recovery ~= nil end

-- Whether a recovered socket skips the middlewares.
function M.skips_middlewares() return recovery ~= nil and recovery.skip end

-- csr: the connectionStateRecovery option (false turns it off, true the defaults).
function M.configure(csr)
  if csr == false then
    recovery = nil
  else
    if csr == true then csr = {} end
    assert(type(csr) == "table", "io.configure: connectionStateRecovery is a table of options")
    local function num(k, default, min)
      local v = csr[k]
      if v == nil then return default end
      assert(type(v) == "number" and v >= min, "io.configure: connectionStateRecovery." .. k .. " must be a number >= " .. min)
      return v
    end
    recovery = {
      max = num("maxDisconnectionDuration", 120000, 0),
      skip = csr.skipMiddlewares ~= false,
      max_packets = math.floor(num("maxPackets", 10000, 1)),
      max_bytes = math.floor(num("maxBytes", 8 * 1024 * 1024, 1024)),
    }
  end
  if sweeper then sweeper:stop() sweeper = nil end
  if recovery then
    local every = math.max(1000, math.min(60000, recovery.max))
    sweeper = timer._every_system(every, function() expire(core.time()) end)
  end
end

-- Appends the offset to args (n of them) and returns the new count; the
-- entry is completed with the packet once it is encoded (store).
function M.add(nsp, rooms, except, except_id, args, n)
  offset_seq = offset_seq + 1
  local id = offset_prefix .. "-" .. string.format("%x", offset_seq)
  args[n + 1] = id
  local e = { id = id, nsp = nsp, rooms = rooms, except = except, except_id = except_id, at = core.time() }
  return n + 1, e
end

function M.store(e, packet, atts)
  e.packet, e.atts = packet, atts
  local size = #packet + 64
  if atts then for _, a in ipairs(atts) do size = size + #a end end
  e.size = size
  plog.last = plog.last + 1
  plog[plog.last] = e
  plog.byid[e.id] = plog.last
  plog.bytes = plog.bytes + size
  while plog.last - plog.first + 1 > recovery.max_packets or plog.bytes > recovery.max_bytes do
    plog_drop_first()
  end
  if plog[plog.first].at < e.at - recovery.max then expire(e.at) end
end

-- Would a socket in rooms (a set) have received entry e?
local function included(e, rooms, sid)
  if e.except_id == sid then return false end
  for _, r in ipairs(e.except) do if rooms[r] then return false end end
  if #e.rooms == 0 then return true end
  for _, r in ipairs(e.rooms) do if rooms[r] then return true end end
  return false
end

-- The session for pid with the packets missed since offset, or nil (and
-- the session is used up either way).
function M.restore(nspname, pid, offset)
  local session = sessions[pid]
  if not session or session.nsp ~= nspname then return nil end
  sessions[pid] = nil
  if session.at + recovery.max < core.time() then return nil end
  local seq = plog.byid[offset]
  if not seq then return nil end -- too old: the log was cut past it
  local rooms = {}
  for _, r in ipairs(session.rooms) do rooms[r] = true end
  local missed = {}
  for i = seq + 1, plog.last do
    local e = plog[i]
    if e.nsp == nspname and included(e, rooms, session.sid) then missed[#missed + 1] = e end
  end
  session.missed = missed
  return session
end

-- A socket went away for reason: keeps its session when it may come back.
function M.keep(socket, reason)
  if not recovery or not RECOVERABLE[reason] or not rawget(socket, "pid") then return end
  local rooms = {}
  for r in pairs(socket._h:rooms()) do rooms[#rooms + 1] = r end
  sessions[socket.pid] = { sid = socket.id, pid = socket.pid, nsp = socket.nsp.name, rooms = rooms,
    data = rawget(socket, "data"), at = core.time() }
end

return M
