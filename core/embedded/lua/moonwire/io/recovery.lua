-- moonwire.io.recovery: connection state recovery.
--
-- io.configure{ connectionStateRecovery = { maxDisconnectionDuration, skipMiddlewares, maxPackets, maxBytes,
--   store = "memory" | "sqlite" } }
-- When on, every event sent without an ack and not volatile carries an offset
-- as its last argument and is kept in one log for the whole server, bounded
-- by maxPackets and maxBytes (the oldest go first) and by age. A socket that
-- drops for a recoverable reason leaves a session (id, rooms, data) for
-- maxDisconnectionDuration; a client that comes back with its pid and last
-- offset gets the same socket back and every packet it missed, in order.
--
-- With store = "sqlite" the log and the sessions are also written to the
-- app's database (moonwire_recovery_packets, moonwire_recovery_sessions),
-- through the writer thread (db._post: queued writes commit together, the
-- loop never waits for a sync), and read back when the next process starts:
-- a client comes back across a restart or a deploy. Memory stays the
-- working copy; the tables are its copy on disk, pruned along with it.
local core = require "moonwire.core"
local db = require "moonwire.db"
local json = require "moonwire.json"
local timer = require "moonwire.timer"

local M = {}

local recovery -- nil when off
local RECOVERABLE = { ["transport error"] = true, ["transport close"] = true, ["forced close"] = true,
  ["ping timeout"] = true, ["server shutting down"] = true, ["forced server close"] = true }
-- seq → entry; offset → seq. With the sqlite store seq is the row's key and
-- goes on from where the last process stopped.
local plog = { first = 1, last = 0, bytes = 0, byid = {} }
local sessions = {} -- pid → { sid, pid, nsp, rooms, data, at }
local offset_seq = 0
local offset_prefix = string.format("%x", math.floor(core.time()) % 0x100000)
local sweeper

-- The sqlite store: on, whether this process has read the tables, and the
-- seq below which the packets table has been pruned.
local persist = false
local behind = false -- the database's backlog is past its cap: packets are not written meanwhile
local loaded = false
local pruned_below = 0
local PRUNE_EVERY = 256 -- dropped packets between two DELETEs of the table

local PACKETS, SESSIONS = "moonwire_recovery_packets", "moonwire_recovery_sessions"
local SCHEMA = [[
  CREATE TABLE IF NOT EXISTS moonwire_recovery_packets (seq INTEGER PRIMARY KEY, id TEXT, nsp TEXT,
    rooms BLOB, exc BLOB, except_id TEXT, at INTEGER, packet BLOB, atts BLOB);
  CREATE TABLE IF NOT EXISTS moonwire_recovery_sessions (pid TEXT PRIMARY KEY, sid TEXT, nsp TEXT,
    rooms BLOB, data TEXT, at INTEGER);
]]
local INSERT_PACKET = "INSERT OR REPLACE INTO " .. PACKETS
  .. " (seq, id, nsp, rooms, exc, except_id, at, packet, atts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
local INSERT_SESSION = "INSERT OR REPLACE INTO " .. SESSIONS .. " (pid, sid, nsp, rooms, data, at) VALUES (?, ?, ?, ?, ?, ?)"

-- A list of strings as bytes (each a 4-byte length, then the string), and
-- back; unpack returns nil when the bytes are not such a list.
local EMPTY = ""
local function pack_list(list)
  local n = #list
  if n == 0 then return EMPTY end
  if n == 1 then return string.pack("<s4", list[1]) end
  local parts = {}
  for i = 1, n do parts[i] = string.pack("<s4", list[i]) end
  return table.concat(parts)
end

local function unpack_list(bytes)
  if type(bytes) ~= "string" then return nil end
  local list, pos = {}, 1
  while pos <= #bytes do
    local ok, s, nxt = pcall(string.unpack, "<s4", bytes, pos)
    if not ok then return nil end
    list[#list + 1] = s
    pos = nxt
  end
  return list
end

local function plog_drop_first()
  local e = plog[plog.first]
  plog[plog.first] = nil
  if e then
    plog.byid[e.id] = nil
    plog.bytes = plog.bytes - e.size
  end
  plog.first = plog.first + 1
end

-- The packets table follows the log's first entry, a few hundred drops late
-- (or at once, when now).
local function prune_table(now)
  if persist and (now or plog.first - pruned_below >= PRUNE_EVERY) and plog.first > pruned_below then
    db._post("DELETE FROM " .. PACKETS .. " WHERE seq < ?", plog.first)
    pruned_below = plog.first
  end
end

local function expire(now)
  local threshold = now - recovery.max
  while plog.first <= plog.last and plog[plog.first].at < threshold do plog_drop_first() end
  for pid, session in pairs(sessions) do
    if session.at < threshold then sessions[pid] = nil end
  end
end

-- The sweeper's round: memory, then the tables (their expired sessions,
-- the packets memory let go).
local function sweep()
  local now = core.time()
  expire(now)
  if persist then
    prune_table(true)
    db._post("DELETE FROM " .. SESSIONS .. " WHERE at < ?", math.floor(now - recovery.max))
  end
end

local function garbled(what, key, why)
  core.log("warn", "recovery: ignoring a garbled row of " .. what .. " (" .. tostring(key) .. "): " .. why)
end

-- A session row as a session, or nil and why not.
local function session_of(row)
  if type(row.pid) ~= "string" or row.pid == "" then return nil, "no pid" end
  if type(row.sid) ~= "string" or row.sid == "" then return nil, "no sid" end
  if type(row.nsp) ~= "string" or row.nsp:sub(1, 1) ~= "/" then return nil, "no namespace" end
  if math.type(row.at) ~= "integer" then return nil, "no time" end
  local rooms = unpack_list(row.rooms)
  if not rooms then return nil, "its rooms do not decode" end
  local data
  if row.data ~= nil then
    local err
    data, err = json.decode(row.data)
    if data == nil then return nil, "its data is not JSON: " .. tostring(err) end
    if data == json.null then data = nil end
  end
  return { sid = row.sid, pid = row.pid, nsp = row.nsp, rooms = rooms, data = data, at = row.at }
end

-- A packet row as a log entry, or nil and why not.
local function entry_of(row)
  if math.type(row.seq) ~= "integer" then return nil, "no seq" end
  if type(row.id) ~= "string" or row.id == "" then return nil, "no offset" end
  if type(row.nsp) ~= "string" or row.nsp:sub(1, 1) ~= "/" then return nil, "no namespace" end
  if math.type(row.at) ~= "integer" then return nil, "no time" end
  if type(row.packet) ~= "string" or row.packet == "" then return nil, "no packet" end
  if row.except_id ~= nil and type(row.except_id) ~= "string" then return nil, "a bad except_id" end
  local rooms, except = unpack_list(row.rooms), unpack_list(row.exc)
  if not rooms or not except then return nil, "its rooms do not decode" end
  local atts
  if row.atts ~= nil then
    atts = unpack_list(row.atts)
    if not atts or #atts == 0 then return nil, "its attachments do not decode" end
  end
  local e = { id = row.id, nsp = row.nsp, rooms = rooms, except = except, except_id = row.except_id, at = row.at,
    packet = row.packet, atts = atts }
  local size = #row.packet + 64
  for _, a in ipairs(atts or {}) do size = size + #a end
  e.size = size
  return e
end

local function post_packet(seq, e)
  db._post(INSERT_PACKET, seq, e.id, e.nsp, pack_list(e.rooms), pack_list(e.except), e.except_id,
    math.floor(e.at), e.packet, e.atts and pack_list(e.atts) or nil)
end

local function post_session(s)
  local data
  if s.data ~= nil then
    local err
    data, err = json.encode(s.data)
    if not data then
      core.log("warn", "recovery: socket " .. s.sid .. "'s data is not JSON (" .. tostring(err)
        .. "): after a restart it comes back without socket.data")
    end
  end
  db._post(INSERT_SESSION, s.pid, s.sid, s.nsp, pack_list(s.rooms), data, math.floor(s.at))
end

-- Reads the tables into memory, once per process, bounded as the log is:
-- the newest maxPackets packets within maxBytes and the window. The log
-- must have no hole (a garbled or missing row): it starts after the last
-- one, so a client whose offset is before it is not recovered rather than
-- recovered without a packet. What this process already holds (recovery
-- was on in memory before) goes on after the rows read, renumbered.
local function load()
  -- Offsets of earlier processes are read back: this one's must not meet them.
  offset_prefix = string.format("%08x", (string.unpack("<I4", core.random(4))))
  db.exec(SCHEMA)
  local now = core.time()
  local threshold = math.floor(now - recovery.max)
  db.exec("DELETE FROM " .. SESSIONS .. " WHERE at < ?", threshold)
  db.exec("DELETE FROM " .. PACKETS .. " WHERE at < ?", threshold)
  for _, row in ipairs(db.query("SELECT pid, sid, nsp, rooms, data, at FROM " .. SESSIONS)) do
    local s, why = session_of(row)
    if s then
      if not sessions[s.pid] then sessions[s.pid] = s end
    else
      garbled(SESSIONS, row.pid, why)
      db.exec("DELETE FROM " .. SESSIONS .. " WHERE pid IS ?", row.pid)
    end
  end
  local newest = db.row("SELECT max(seq) AS seq FROM " .. PACKETS)
  local top = newest and math.tointeger(newest.seq) or 0
  local rows = db.query("SELECT seq, id, nsp, rooms, exc, except_id, at, packet, atts FROM " .. PACKETS
    .. " ORDER BY seq DESC LIMIT ?", recovery.max_packets)
  local kept, bytes, expect = {}, 0, top
  for _, row in ipairs(rows) do
    if row.seq ~= expect then
      core.log("warn", "recovery: the packet log read back stops at a hole (seq " .. tostring(expect)
        .. " is missing): clients with an older offset get a new session")
      break
    end
    local e, why = entry_of(row)
    if not e then
      garbled(PACKETS, row.seq, why .. "; clients with an older offset get a new session")
      break
    end
    if bytes + e.size > recovery.max_bytes then break end
    bytes = bytes + e.size
    kept[#kept + 1] = e
    expect = expect - 1
  end
  local own = {}
  for i = plog.first, plog.last do own[#own + 1] = plog[i] end
  plog = { first = top - #kept + 1, last = top, bytes = 0, byid = {} }
  for i = #kept, 1, -1 do
    local seq = top - i + 1
    local e = kept[i]
    plog[seq], plog.byid[e.id] = e, seq
    plog.bytes = plog.bytes + e.size
  end
  for _, e in ipairs(own) do
    plog.last = plog.last + 1
    plog[plog.last], plog.byid[e.id] = e, plog.last
    plog.bytes = plog.bytes + e.size
    post_packet(plog.last, e)
  end
  for _, s in pairs(sessions) do post_session(s) end
  db.exec("DELETE FROM " .. PACKETS .. " WHERE seq < ?", plog.first)
  pruned_below = plog.first
  loaded = true
  if #kept > 0 or next(sessions) then
    local n = 0
    for _ in pairs(sessions) do n = n + 1 end
    core.log("info", string.format("recovery: %d session(s) and %d packet(s) read back from the database", n, #kept))
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
    local store = csr.store
    assert(store == nil or store == "memory" or store == "sqlite",
      "io.configure: connectionStateRecovery.store must be \"memory\" or \"sqlite\"")
    recovery = {
      max = num("maxDisconnectionDuration", 120000, 0),
      skip = csr.skipMiddlewares ~= false,
      max_packets = math.floor(num("maxPackets", 10000, 1)),
      max_bytes = math.floor(num("maxBytes", 8 * 1024 * 1024, 1024)),
      store = store or "memory",
    }
  end
  local want = recovery ~= nil and recovery.store == "sqlite"
  if want and not persist then
    if loaded then
      -- On again in this process: the tables were left behind while it
      -- was off; memory is the truth, so start them again from it.
      db.exec(SCHEMA)
      db.exec("DELETE FROM " .. PACKETS)
      db.exec("DELETE FROM " .. SESSIONS)
      for i = plog.first, plog.last do post_packet(i, plog[i]) end
      for _, s in pairs(sessions) do post_session(s) end
    else
      persist = true
      local ok, err = pcall(load)
      if not ok then
        persist = false
        recovery.store = "memory"
        error("io.configure: connectionStateRecovery.store = \"sqlite\": " .. tostring(err), 0)
      end
    end
  end
  persist = want
  if sweeper then sweeper:stop() sweeper = nil end
  if recovery then
    local every = math.max(1000, math.min(60000, recovery.max))
    sweeper = timer._every_system(every, sweep)
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
  if persist then
    -- The writes queued for the database are capped like the log: when the
    -- disk falls behind, packets are kept in memory only until it catches
    -- up. The hole this leaves in the table ends the log read back at the
    -- next start there, so nobody is recovered without a packet.
    local backlog = db._backlog()
    if backlog < recovery.max_packets and not (behind and backlog > recovery.max_packets // 2) then
      if behind then
        behind = false
        core.log("warn", "recovery: the database caught up; packets are written to it again")
      end
      post_packet(plog.last, e)
    elseif not behind then
      behind = true
      core.log("warn", "recovery: " .. backlog .. " writes are waiting for the database (maxPackets); "
        .. "packets are kept in memory only until it catches up, and a restart meanwhile recovers fewer clients")
    end
  end
  while plog.last - plog.first + 1 > recovery.max_packets or plog.bytes > recovery.max_bytes do
    plog_drop_first()
  end
  if plog[plog.first].at < e.at - recovery.max then expire(e.at) end
  if persist then prune_table(false) end
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
  if persist then db._post("DELETE FROM " .. SESSIONS .. " WHERE pid = ?", pid) end
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
  local session = { sid = socket.id, pid = socket.pid, nsp = socket.nsp.name, rooms = rooms,
    data = rawget(socket, "data"), at = core.time() }
  sessions[socket.pid] = session
  if persist then post_session(session) end
end

return M
