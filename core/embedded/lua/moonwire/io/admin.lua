-- moonwire.io.admin: the server side of the Socket.IO Admin UI
-- (@socket.io/admin-ui, https://admin.socket.io), what socket.io's
-- instrument(io, opts) does:
--
--   io.configure { adminUI = { auth = { username = "admin", password = os.getenv("ADMIN_PASSWORD") } } }
--
-- The UI connects to the "/admin" namespace with { username, password } (or
-- the sessionId it was given before) and then hears, as instrument() says
-- them: "session", "config" (supportedFeatures), "server_stats" every 2 s,
-- "all_sockets", "socket_connected", "socket_updated",
-- "socket_disconnected", "room_joined", "room_left", "event_received" and
-- "event_sent". It may send "emit", "join", "leave" and "_disconnect"
-- (nsp, ..., filter) unless readonly is set.
--
-- The options, as instrument() has them:
--   auth            { username = ..., password = ... } (type = "basic" may be
--                   given); password is the password itself (compared in
--                   constant time) or its bcrypt hash ("$2b$10$...", what
--                   instrument() takes). false: no login, only under --dev.
--   namespaceName   "/admin"
--   readonly        false: true drops the commands
--   serverId        the host's name
--   mode            "development" (every socket, room and event is told)
--                   or "production" (server stats only)
--   sessionDuration seconds a login session (the UI's sessionId) is good
--                   for, 86400; maxSessions: how many are kept, 1000 (past
--                   it the oldest is forgotten)
--   maxLoginChecks  bcrypt checks under way at once, 2 (past it a login
--                   is refused with "too many logins at once")
--   serve           a path ("/admin") where moonwire serves the UI itself
--                   from uiDir (default the package's build in
--                   node_modules/@socket.io/admin-ui/ui/dist)
--
-- What the module sees comes from the io core through namespace.watch
-- (moonwire.io.namespace) and moonwire.io_c's stats(); what it sends goes
-- to this process's admin sockets only. Module state (login sessions, the
-- counters' last values) outlives reloads; the namespace's handlers and the
-- stats timer belong to the generation that configured them, so a reload
-- that drops adminUI turns it off.
local c = require "moonwire.io_c"
local app = require "moonwire.app"
local core = require "moonwire.core"
local json = require "moonwire.json"
local timer = require "moonwire.timer"
local packet = require "moonwire.io.packet"
local namespace = require "moonwire.io.namespace"

local M = {}
local array, null = json.array, json.null
local EVENT = packet.EVENT

local STATS_INTERVAL = 2000
local SESSION_DURATION = 86400 -- s a login session is good for (RedisStore's sessionDuration)
local MAX_SESSIONS = 1000       -- login sessions kept; past it the oldest is forgotten
local MAX_LOGIN_CHECKS = 2      -- bcrypt checks at once (each holds a thread of the pool)

-- ---------------------------------------------------------------- state kept across reloads

-- The configuration of each generation that asked for the UI, by the list
-- of "connection" handlers of its admin namespace: a reload replaces that
-- list, so a generation without adminUI finds no configuration.
local configs = setmetatable({}, { __mode = "k" })
local admin_name = nil -- the admin namespace's name, once configured
local sessions, session_order = {}, {} -- sessionId -> expiry (core.time() ms), ids oldest first
local last -- the counters at the last server_stats
local hmac_key = core.random(32)

-- The configuration in force, and the admin namespace, when the UI is on
-- and someone is logged in to it.
local function active()
  local ns = admin_name and namespace.namespaces[admin_name]
  if not ns or next(ns.sockets) == nil then return nil end
  local cfg = configs[ns._handlers.connection or false]
  if not cfg then return nil end
  return cfg, ns
end

-- ---------------------------------------------------------------- sending to the UI

local function iso_time(ms)
  ms = math.floor(ms or core.time())
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

-- Sends event(...) to every admin socket of this process: encoded once,
-- past the adapter (no recovery log, no Redis: the UI sees the server it is
-- connected to).
local function tell(ns, event, ...)
  local n = select("#", ...) + 1
  local text, atts = packet.encode(ns.name, EVENT, { event, ... }, n)
  c.broadcast(ns.name, {}, {}, nil, text, atts, false)
end

-- socket.data as the UI shows it: what JSON can carry of it, or {} when
-- it cannot be written.
local function data_of(s)
  local d = rawget(s, "data")
  if d == nil or d == null then return {} end
  if type(d) ~= "table" or json.encode(d) == nil then return {} end
  return d
end

local function rooms_of(s)
  local rooms = array({})
  for r in pairs(s.rooms or {}) do rooms[#rooms + 1] = r end
  table.sort(rooms)
  return rooms
end

-- A socket as instrument()'s serialize() writes it.
local function serialize(s, nsp)
  local hs = s.handshake or {}
  local headers = type(hs.headers) == "table" and hs.headers or {}
  local client, transport
  if not s.remote then
    client = s.conn.id
    transport = s.transport
  end
  return {
    id = s.id, clientId = client and client:sub(1, 12), transport = transport, nsp = nsp, data = data_of(s),
    handshake = {
      address = headers["cf-connecting-ip"] or headers["x-forwarded-for"] or hs.address,
      headers = headers, query = hs.query or {}, issued = hs.issued, secure = hs.secure or false,
      time = hs.time, url = hs.url, xdomain = hs.xdomain or false,
    },
    rooms = rooms_of(s),
  }
end

-- Every socket of every namespace, through each namespace's adapter (with
-- Redis, the other servers' too); done(list) once all answered.
local function all_sockets(done)
  local names = {}
  for name in pairs(namespace.namespaces) do names[#names + 1] = name end
  table.sort(names)
  local out, left = array({}), #names
  if left == 0 then return done(out) end
  for _, name in ipairs(names) do
    local ns = namespace.namespaces[name]
    ns.adapter:fetch_sockets(ns, { rooms = {}, except = {} }, function(list)
      for _, s in ipairs(list or {}) do out[#out + 1] = serialize(s, name) end
      left = left - 1
      if left == 0 then done(out) end
    end)
  end
end

-- ---------------------------------------------------------------- server stats

local AGGREGATED = { { "connections", "rawConnection" }, { "disconnections", "rawDisconnection" },
  { "packetsIn", "packetsIn" }, { "packetsOut", "packetsOut" }, { "bytesIn", "bytesIn" },
  { "bytesOut", "bytesOut" } }

-- What happened since the last call, as instrument()'s aggregatedEvents.
local function aggregated(now, st)
  local out = array({})
  local stamp = math.floor(now) // 1000 * 1000
  if last then
    for _, k in ipairs(AGGREGATED) do
      local d = st[k[1]] - last[k[1]]
      if d > 0 then out[#out + 1] = { timestamp = stamp, type = k[2], count = d } end
    end
  end
  last = st
  return out
end

-- With consume, the events since the last stats go in (and are gone for
-- the next); without, none (what a newly connected UI is sent at once).
local function server_stats(cfg, consume)
  local st = c.stats()
  local events = consume and aggregated(core.time(), st) or array({})
  local names = {}
  for name in pairs(namespace.namespaces) do names[#names + 1] = name end
  table.sort(names)
  local nsps = array({})
  for _, name in ipairs(names) do nsps[#nsps + 1] = { name = name, socketsCount = c.count(name) } end
  return {
    serverId = cfg.serverId or st.hostname, hostname = st.hostname, pid = st.pid, uptime = st.uptime,
    clientsCount = st.clientsCount, pollingClientsCount = st.pollingClientsCount, aggregatedEvents = events,
    namespaces = nsps,
  }
end

local function emit_stats()
  local cfg, ns = active()
  if not cfg then
    aggregated(core.time(), c.stats()) -- moves the counters on: the next UI sees what came after it
    return
  end
  tell(ns, "server_stats", server_stats(cfg, true))
end

-- ---------------------------------------------------------------- what the io core tells

-- Sockets still on long-polling when the UI heard of them: each stats tick
-- tells the UI of those that upgraded since (socket_updated).
local polling = setmetatable({}, { __mode = "k" })

local function check_upgrades(ns)
  for s in pairs(polling) do
    if not s.connected then
      polling[s] = nil
    elseif s.transport ~= "polling" then
      polling[s] = nil
      tell(ns, "socket_updated", { id = s.id, nsp = s.nsp.name, transport = s.transport })
    end
  end
end

local watch = {}

function watch.connected(s)
  local cfg, ns = active()
  if not cfg or cfg.mode ~= "development" then return end
  if rawget(s, "reloaded") then return end -- a reload ran "connection" again; the UI knows it
  if s.transport == "polling" then polling[s] = true end
  tell(ns, "socket_connected", serialize(s, s.nsp.name), iso_time())
end

function watch.disconnected(s, reason)
  polling[s] = nil
  local cfg, ns = active()
  if not cfg or cfg.mode ~= "development" then return end
  local at = iso_time()
  tell(ns, "socket_disconnected", s.nsp.name, s.id, reason, at)
  for _, r in ipairs(rooms_of(s)) do tell(ns, "room_left", s.nsp.name, r, s.id, at) end
end

function watch.joined(s, room)
  local cfg, ns = active()
  if cfg and cfg.mode == "development" then tell(ns, "room_joined", s.nsp.name, room, s.id, iso_time()) end
end

function watch.left(s, room)
  local cfg, ns = active()
  if cfg and cfg.mode == "development" then tell(ns, "room_left", s.nsp.name, room, s.id, iso_time()) end
end

-- args[1..n]: the event and its values (functions and binary values are
-- not shown).
local function shown(args, n)
  local out = array({})
  for i = 1, n do
    local v = args[i]
    if v == nil or type(v) == "function" then v = null
    elseif packet.isbinary(v) then v = "<binary>"
    elseif type(v) == "table" and json.encode(v) == nil then v = "<not JSON>" end
    out[i] = v
  end
  return out
end

function watch.received(s, args, n)
  local cfg, ns = active()
  if not cfg or cfg.mode ~= "development" or s.nsp == ns then return end
  tell(ns, "event_received", s.nsp.name, s.id, shown(args, n), iso_time())
end

function watch.sent(s, args, n)
  local cfg, ns = active()
  if not cfg or cfg.mode ~= "development" or s.nsp == ns then return end
  tell(ns, "event_sent", s.nsp.name, s.id, shown(args, n), iso_time())
end

function watch.broadcast(bns, opts, args, n)
  local cfg, ns = active()
  if not cfg or cfg.mode ~= "development" or bns == ns then return end
  local list = c.sockets(bns.name, opts.rooms or {}, opts.except or {},
    opts.except_socket and opts.except_socket._h or nil)
  if #list == 0 then return end
  local values, at = shown(args, n), iso_time()
  for _, s in ipairs(list) do tell(ns, "event_sent", bns.name, s.id, values, at) end
end

-- ---------------------------------------------------------------- login

local function digest(v) return core.hmac(hmac_key, tostring(v)) end

local function same(a, b) return type(a) == "string" and core.equal(digest(a), digest(b)) end

local function new_session(cfg)
  local id = (core.random(16):gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
  sessions[id] = core.time() + cfg.sessionDuration * 1000
  session_order[#session_order + 1] = id
  while #session_order > cfg.maxSessions do sessions[table.remove(session_order, 1)] = nil end
  return id
end

local function session_ok(id)
  local until_ = type(id) == "string" and sessions[id]
  if not until_ then return false end
  if until_ < core.time() then
    sessions[id] = nil
    return false
  end
  return true
end

-- The admin namespace's middleware: a sessionId given earlier, or the
-- username and the password (its text compared in constant time, or
-- checked against its bcrypt hash off the loop: next comes later).
local function middleware(cfg)
  return function(socket, next)
    if cfg.auth == false then return next() end
    local auth = socket.handshake.auth
    if session_ok(auth.sessionId) then return next() end
    local function finish(ok)
      if not ok then return next({ message = "invalid credentials" }) end
      rawset(socket, "_admin_session", new_session(cfg))
      next()
    end
    local good_user = same(auth.username, cfg.auth.username)
    if cfg.auth.bcrypt then
      if type(auth.password) ~= "string" then return finish(false) end
      -- The hash is checked even for a wrong username, so the time taken
      -- does not tell a right username from a wrong one.
      local queued = c.bcrypt_verify(auth.password, cfg.auth.password,
        function(ok) finish(ok and good_user) end, cfg.maxLoginChecks)
      if not queued then return next({ message = "too many logins at once, try again" }) end
      return
    end
    finish(same(auth.password, cfg.auth.password) and good_user)
  end
end

-- ---------------------------------------------------------------- the UI's commands

local function target(nsp, filter)
  if type(nsp) ~= "string" then return nil end
  local ns = namespace.namespaces[nsp]
  if not ns then return nil end
  if type(filter) == "string" and filter ~= "" then return ns:to(filter) end
  if filter ~= nil and filter ~= null and filter ~= "" and type(filter) ~= "string" then return nil end
  return ns
end

local function commands(socket, cfg)
  if cfg.readonly then return end
  socket:on("emit", function(nsp, filter, ev, ...)
    local t = target(nsp, filter)
    if not t or type(ev) ~= "string" or packet.RESERVED[ev] then return end
    local n = select("#", ...)
    local args = { ... }
    for i = 1, n do if args[i] == null then args[i] = nil end end
    t:emit(ev, table.unpack(args, 1, n))
  end)
  socket:on("join", function(nsp, room, filter)
    local t = target(nsp, filter)
    if t and type(room) == "string" and room ~= "" then t:socketsJoin(room) end
  end)
  socket:on("leave", function(nsp, room, filter)
    local t = target(nsp, filter)
    if t and type(room) == "string" and room ~= "" then t:socketsLeave(room) end
  end)
  socket:on("_disconnect", function(nsp, close, filter)
    local t = target(nsp, filter)
    if t then t:disconnectSockets(close == true) end
  end)
end

local FEATURES = { "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT" }

local function features(cfg)
  local list = array({})
  if not cfg.readonly then for _, f in ipairs(FEATURES) do list[#list + 1] = f end end
  list[#list + 1] = "AGGREGATED_EVENTS"
  if cfg.mode == "development" then list[#list + 1] = "ALL_EVENTS" end
  return list
end

local function on_connection(cfg)
  return function(socket)
    local sid = rawget(socket, "_admin_session")
    if sid then
      rawset(socket, "_admin_session", nil)
      socket:emit("session", sid)
    end
    commands(socket, cfg)
    socket:emit("config", { supportedFeatures = features(cfg) })
    socket:emit("server_stats", server_stats(cfg))
    if cfg.mode == "development" then
      all_sockets(function(list)
        if socket.connected then socket:emit("all_sockets", list) end
      end)
    end
  end
end

-- ---------------------------------------------------------------- serving the UI

local UI_DIR = "node_modules/@socket.io/admin-ui/ui/dist"

local function serve(path, dir)
  local base = path:gsub("/+$", "")
  local function file(rel, res)
    if rel == "" then rel = "index.html" end
    local ok = res:sendFile(rel, { root = dir })
    if not ok then res:status(404):type("text/plain; charset=utf-8"):send("Not Found\n") end
  end
  -- index.html names its files relatively: the UI lives under base .. "/".
  app.get(base, function(req, res) res:redirect(base .. "/") end)
  app.get(base .. "/*", function(req, res) file(req.params[1] or "", res) end)
end

-- ---------------------------------------------------------------- configure

-- Outside --dev a server whose Admin UI is not set up right does not start
-- (it could be open to anyone); under --dev the load fails as any error does.
local function fail(msg)
  msg = "io.configure: adminUI: " .. msg
  if not core.dev then debug.getregistry()["moonwire.refuse_start"] = msg end
  error(msg, 5) -- at the caller of io.configure
end

local function check(opts)
  if opts == false then return nil end
  if type(opts) ~= "table" then fail("expects a table: { auth = { username = ..., password = ... } }") end
  local cfg = {}
  local auth = opts.auth
  if auth == nil or auth == false then
    if not core.dev then
      fail("auth = { username = ..., password = ... } is required outside --dev (auth = false only under --dev)")
    end
    cfg.auth = false
  elseif type(auth) ~= "table" then
    fail("auth must be { username = ..., password = ... }")
  else
    if auth.type ~= nil and auth.type ~= "basic" then fail("auth.type must be \"basic\"") end
    if type(auth.username) ~= "string" or auth.username == "" then fail("auth.username must be a non-empty string") end
    if type(auth.password) ~= "string" or auth.password == "" then
      fail("auth.password must be a non-empty string (the password, or its bcrypt hash); is its environment variable set?")
    end
    local hashed = auth.password:match("^%$2[aby]%$%d%d%$") ~= nil
    if hashed and #auth.password ~= 60 then fail("auth.password looks like a bcrypt hash but is not one (60 characters)") end
    if hashed and not c.bcrypt_verify then fail("this build cannot check bcrypt hashes; give the password itself") end
    cfg.auth = { username = auth.username, password = auth.password, bcrypt = hashed }
  end
  local name = opts.namespaceName or "/admin"
  if type(name) ~= "string" or name:sub(1, 1) ~= "/" then fail("namespaceName must start with '/'") end
  if name == "/" then fail("namespaceName cannot be the main namespace '/'") end
  cfg.name = name
  cfg.readonly = opts.readonly == true
  if opts.serverId ~= nil and type(opts.serverId) ~= "string" then fail("serverId must be a string") end
  cfg.serverId = opts.serverId
  local function count(k, default)
    local v = opts[k]
    if v == nil then return default end
    if math.type(v) ~= "integer" or v < 1 then fail(k .. " must be a whole number above 0") end
    return v
  end
  cfg.sessionDuration = count("sessionDuration", SESSION_DURATION)
  cfg.maxSessions = count("maxSessions", MAX_SESSIONS)
  cfg.maxLoginChecks = count("maxLoginChecks", MAX_LOGIN_CHECKS)
  local mode = opts.mode or "development"
  if mode ~= "development" and mode ~= "production" then fail("mode is \"development\" or \"production\"") end
  cfg.mode = mode
  if opts.serve ~= nil then
    if type(opts.serve) ~= "string" or opts.serve:sub(1, 1) ~= "/" or opts.serve:find("[*:]") then
      fail("serve must be a path such as \"/admin\"")
    end
    if opts.uiDir ~= nil and type(opts.uiDir) ~= "string" then fail("uiDir must be a directory") end
  end
  return cfg
end

-- io.configure{ adminUI = opts } lands here (io: the moonwire.io module).
function M.configure(io, opts)
  local cfg = check(opts)
  if not cfg then return end
  if admin_name and admin_name ~= cfg.name then
    local old = namespace.namespaces[admin_name]
    if old then old:disconnectSockets() end
  end
  admin_name = cfg.name
  local ns = io.of(cfg.name)
  ns:use(middleware(cfg))
  ns:on("connection", on_connection(cfg))
  configs[ns._handlers.connection] = cfg
  namespace.watch = watch
  if not last then last = c.stats() end
  timer.every(STATS_INTERVAL, function()
    emit_stats()
    local _, ans = active()
    if ans then check_upgrades(ans) end
  end)
  if opts.serve then serve(opts.serve, opts.uiDir or UI_DIR) end
end

return M
