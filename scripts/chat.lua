-- The chat: the socket.io tutorial's chat (https://socket.io/docs/v4/tutorial/introduction)
-- with every homework item done. The page is at GET / (views/chat.html,
-- public/chat.js); everything else happens over socket.io, on the main "/"
-- namespace.
--
--   GET /   the chat page
--
-- What a browser sends (each answered through its ack callback):
--   'nickname'        (name, ack)                     picks or changes the nickname
--                     ack: { nickname, online = {...} } or { error = "..." }
--   'chat message'    (text, clientOffset, ack)       a message to everyone
--                     ack: { id, at } or { error = "..." }
--   'private message' ({ to = nickname, text }, ack)  a message to one person
--                     ack: { to, at } or { error = "..." }
--   'typing'          (true or false)                 the user is typing, or stopped
--
-- What the server sends:
--   'chat message'    (msg, serverOffset)   msg = { id, nickname, text, at }
--   'private message' ({ from, to, text, at })
--   'user joined'     ({ nickname })        and 'user left' ({ nickname })
--   'online'          ({ "ann", "bob", ... })  the nicknames online, sorted
--   'typing'          ({ nickname, typing = true or false })
--
-- What the browser puts in the handshake (io({ auth = {...} })):
--   auth.serverOffset  the id of the last message it has: it receives the
--                      stored messages after that one (history, or what it
--                      missed while disconnected)
--   auth.nickname      its nickname, once it has one: a reconnected socket is
--                      known by its name before it sends anything else
--
-- "at" is a UTC time in ISO 8601 ("2024-05-01T09:30:00Z").

local app   = require "moonwire.app"
local db    = require "moonwire.db"
local io    = require "moonwire.io"
local json  = require "moonwire.json"
local timer = require "moonwire.timer"
local trim  = require("text").trim -- scripts/text.lua

-- Every public message is stored (the table messages, made by
-- scripts/migrations/001_messages.sql), so that a page opened later (or a
-- page that lost its connection for a while) can catch up.

local NICKNAME_MAX = 32   -- characters, not bytes
local TEXT_MAX     = 2000 -- characters, not bytes
local OFFSET_MAX   = 100  -- bytes of a clientOffset

-- History caps: a first visit (serverOffset 0) gets the last 100 messages; a
-- page that was disconnected gets what it missed, but at most the last 1,000
-- of them, so that a page left offline for a week does not get a flood.
local HISTORY_FIRST_VISIT = 100
local HISTORY_CATCH_UP    = 1000

-- When the last socket of a nickname disconnects, the others are told
-- "user left" only after this delay, and nothing at all if it comes back in
-- the meantime: a page that reloads, or reconnects after a network hiccup,
-- does not make "ann left" / "ann joined" notices. Tests set it lower with
-- the CHAT_LEAVE_GRACE_MS environment variable (0: tell at once).
local LEAVE_GRACE_MS = math.tointeger(tonumber(os.getenv("CHAT_LEAVE_GRACE_MS") or "")) or 3000

-- ---------------------------------------------------------------- validation helpers

-- A nickname as the client sent it → the trimmed nickname, or nil and why not.
local function check_nickname(name)
  if type(name) ~= "string" then return nil, "A nickname must be text." end
  name = trim(name)
  local length = utf8.len(name) -- nil when the bytes are not valid UTF-8
  if name == "" then return nil, "Pick a nickname." end
  if not length or name:find("%c") then return nil, "A nickname must be plain text, on one line." end
  if length > NICKNAME_MAX then
    return nil, "A nickname must be at most " .. NICKNAME_MAX .. " characters."
  end
  return name
end

-- A message text as the client sent it → the trimmed text, or nil and why not.
local function check_text(text)
  if type(text) ~= "string" then return nil, "A message must be text." end
  text = trim(text)
  local length = utf8.len(text)
  if text == "" then return nil, "A message cannot be empty." end
  if not length then return nil, "A message must be plain text." end
  if length > TEXT_MAX then
    return nil, "A message must be at most " .. TEXT_MAX .. " characters."
  end
  return text
end

-- The clientOffset the page gave a message: a short string, or nil when the
-- client sent none (then the message cannot be deduplicated, but is accepted).
local function check_offset(offset)
  if offset == nil then return nil end
  if type(offset) ~= "string" or offset == "" or #offset > OFFSET_MAX then
    return nil, "A message id (clientOffset) must be a short string."
  end
  return offset
end

-- An ack is a function the client asked for. A client that sent no ack (or
-- something else in its place) gets nothing back.
local function ignore() end
local function ack_or_ignore(ack)
  if type(ack) == "function" then return ack end
  return ignore
end

-- The current time, as "at" is written everywhere.
local function now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- ---------------------------------------------------------------- who is online

-- How many sockets each nickname has here: one person may have several tabs
-- open, and is online while any of them is. A name stays here with 0
-- sockets while its "user left" waits for LEAVE_GRACE_MS.
local sockets_of = {}
local leaving = {} -- nickname → the timer that will announce "user left"

-- Every socket of a nickname is in this room, so one emit reaches all of
-- that person's tabs. The prefix keeps names apart from socket ids, which
-- are rooms too.
local function room(nickname)
  return "nick:" .. nickname
end

-- Other servers: under `moonwire --workers N`, or with the Redis adapter,
-- other processes hold sockets too, and the same person may have tabs on
-- several. Their nicknames come from io.fetchSockets() (socket.data goes
-- with a remote socket), and each server tells the others, through
-- io.serverSideEmit, when a name's last socket there left and when its
-- grace delay is over, so a page that reloads onto another server makes no
-- notice either. In one process all of this finds nothing more than the
-- counts above.
local SELF = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
local away = {} -- nickname → { [server] = true }: its grace delay runs on those servers

local function tell(kind, name)
  io.serverSideEmit("chat:presence", SELF, kind, name)
end

-- Does name have a socket on any server, besides `except` (a socket)?
local function anywhere(name, except)
  for _, s in ipairs(io.to(room(name)):fetchSockets() or {}) do
    if not except or s.id ~= except.id then return true end
  end
  return false
end

-- The nicknames online, here and on the other servers, sorted without
-- regard to case ("ann", "Bob", "cy").
local function online_list()
  local seen = {}
  for name in pairs(sockets_of) do seen[name] = true end
  for name in pairs(away) do seen[name] = true end
  for _, s in ipairs(io.fetchSockets() or {}) do
    local data = s.data
    local name = type(data) == "table" and data.nickname
    if type(name) == "string" then seen[name] = true end
  end
  local names = json.array() -- a list, sent as [] when nobody is online
  for name in pairs(seen) do names[#names + 1] = name end
  table.sort(names, function(a, b)
    if a:lower() ~= b:lower() then return a:lower() < b:lower() end
    return a < b
  end)
  return names
end

-- Is somebody of that name connected right now, here or on another
-- server? (Not a name whose "user left" is waiting: it has 0 sockets.)
local function is_online(name)
  return (sockets_of[name] or 0) > 0 or anywhere(name)
end

-- One socket fewer for name. Returns true when that was its last one.
local function count_down(name)
  sockets_of[name] = sockets_of[name] - 1
  return sockets_of[name] == 0
end

-- The last socket of name disconnected. Once LEAVE_GRACE_MS have passed
-- without it coming back (claim stops this timer), everyone hears
-- "user left" and gets the list of names without it.
local function leave_later(name)
  local function gone()
    leaving[name] = nil
    sockets_of[name] = nil
    tell("gone", name)
    if anywhere(name) then return end -- still (or back) on another server
    io.emit("user left", { nickname = name })
    io.emit("online", online_list())
  end
  tell("leaving", name)
  if LEAVE_GRACE_MS <= 0 then return gone() end
  leaving[name] = timer.after(LEAVE_GRACE_MS, gone)
end

local function forget_away(name, from)
  if not away[name] then return end
  away[name][from] = nil
  if next(away[name]) == nil then away[name] = nil end
end

-- What the other servers tell (their own word, from == SELF, is not news).
io.on("chat:presence", function(from, kind, name)
  if from == SELF or type(from) ~= "string" or type(name) ~= "string" then return end
  if kind == "leaving" then
    away[name] = away[name] or {}
    local mark = {}
    away[name][from] = mark
    -- A server that dies within its delay never says "gone": its word
    -- lapses after twice the delay, and the name with it.
    timer.after(2 * LEAVE_GRACE_MS + 1000, function()
      if away[name] and away[name][from] == mark then forget_away(name, from) end
    end)
  elseif kind == "gone" then
    forget_away(name, from)
  elseif kind == "back" and leaving[name] then
    -- Its page came back on another server within the delay: no notice.
    leaving[name]:stop()
    leaving[name] = nil
    sockets_of[name] = nil
    tell("gone", name)
  end
end)

-- socket becomes `name`: it leaves its old nickname (if any), joins the
-- room of the new one and is counted. The others hear "user joined" when it
-- is that nickname's first socket, "user left" when it was the old one's
-- last, and everyone gets the new list of names when it changed.
local function claim(socket, name)
  local old = socket.data.nickname
  if old == name then return end

  local changed = false
  if old then
    socket:leave(room(old))
    if count_down(old) then
      sockets_of[old] = nil
      if not anywhere(old) then socket.broadcast:emit("user left", { nickname = old }) end
      changed = true
    end
  end

  socket.data.nickname = name
  socket:join(room(name))
  if leaving[name] then -- back within the grace delay: nobody was told it left
    leaving[name]:stop()
    leaving[name] = nil
    tell("gone", name)
  end
  local first = sockets_of[name] == nil
  sockets_of[name] = (sockets_of[name] or 0) + 1
  if first then
    -- (Counted first: asking the other servers may wait, and another
    -- socket of the name may come meanwhile.) Back from another server
    -- within its delay, or new: that server's "leaving" may be on its way
    -- while we ask, but it left before that server's answer did (both go
    -- out in order), so it is here once the answer is.
    local back = away[name] ~= nil
    if not back then
      local elsewhere = anywhere(name, socket)
      back = away[name] ~= nil
      if not back and not elsewhere then socket.broadcast:emit("user joined", { nickname = name }) end
    end
    if back then tell("back", name) end
    changed = true
  end

  if changed then io.emit("online", online_list()) end
end

-- ---------------------------------------------------------------- messages

-- Stores a public message once per clientOffset. Returns the stored row
-- ({ id, nickname, text, at }) and whether it is new (false: this
-- clientOffset was stored before, and the row is that first one).
local function store(nickname, text, offset)
  local changes, id = db.exec([[
    INSERT INTO messages (client_offset, nickname, text, created_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (client_offset) DO NOTHING
  ]], offset, nickname, text, now())
  local row
  if changes == 1 then
    row = db.row("SELECT id, nickname, text, created_at AS at FROM messages WHERE id = ?", id)
  else
    row = db.row("SELECT id, nickname, text, created_at AS at FROM messages WHERE client_offset = ?", offset)
  end
  return row, changes == 1
end

-- Sends socket the stored messages after the id `after`, oldest first, each
-- as the same 'chat message' (msg, id) a live message is.
local function send_history(socket, after)
  local limit = HISTORY_CATCH_UP
  if after <= 0 then limit = HISTORY_FIRST_VISIT end
  -- The newest `limit` messages after `after`, put back in order.
  local rows = db.query([[
    SELECT * FROM (
      SELECT id, nickname, text, created_at AS at FROM messages
      WHERE id > ? ORDER BY id DESC LIMIT ?
    ) ORDER BY id
  ]], after, limit)
  for _, msg in ipairs(rows) do
    socket:emit("chat message", msg, msg.id)
  end
end

-- ---------------------------------------------------------------- the page

app.get("/", function(req, res)
  res:render("chat", { title = "Chat" })
end)

-- ---------------------------------------------------------------- the realtime half

-- A new socket: known by its nickname at once if its handshake carries one,
-- then sent the history it asks for and who is online.
local function welcome(socket)
  local auth = socket.handshake.auth

  -- A page that already had a nickname (it reconnected) says so in the
  -- handshake, so it is known by that name before anything it sends: the
  -- socket.io client re-sends an unanswered message first thing after a
  -- reconnection, before the page can say who it is. A name that does not
  -- pass the checks is ignored; the page then asks with 'nickname'.
  if auth.nickname ~= nil then
    local name = check_nickname(auth.nickname)
    if name then claim(socket, name) end
  end

  -- History: the messages after the last one the page has. A page sends
  -- serverOffset = 0 the first time; a page without it gets no history.
  if type(auth.serverOffset) == "number" then
    send_history(socket, auth.serverOffset)
  end

  -- Who is online, so that a page shows it before it picks a name.
  socket:emit("online", online_list())
end

io.on("connection", function(socket)
  -- The handlers come first: welcome may wait for the other servers (who
  -- is online there), and what the page sends meanwhile finds them.

  -- 'nickname' (name, ack): picks a nickname, or changes it. Several
  -- sockets may share one: they are the same person in several tabs.
  socket:on("nickname", function(name, ack)
    ack = ack_or_ignore(ack)
    local nickname, err = check_nickname(name)
    if not nickname then return ack({ error = err }) end
    claim(socket, nickname)
    ack({ nickname = nickname, online = online_list() })
  end)

  -- 'chat message' (text, clientOffset, ack): a message to everyone. It is
  -- stored, sent to every other socket, and the sender's ack carries its id.
  -- The browser retries a message whose ack is late, with the same
  -- clientOffset: the retry is stored once and acked like the first time.
  socket:on("chat message", function(text, clientOffset, ack)
    -- A client that sends no clientOffset puts its ack in second place.
    if type(clientOffset) == "function" then clientOffset, ack = nil, clientOffset end
    ack = ack_or_ignore(ack)

    local nickname = socket.data.nickname
    if not nickname then return ack({ error = "Pick a nickname before chatting." }) end
    local body, err = check_text(text)
    if not body then return ack({ error = err }) end
    local offset, offset_err = check_offset(clientOffset)
    if offset_err then return ack({ error = offset_err }) end

    -- Stored and announced in one transaction: the broadcast leaves when
    -- the row is committed, and never for a message that was not stored.
    -- (A transaction per message costs a sync to disk each: a burst of
    -- plain db.exec calls would share one. A chat's pace is far below it.)
    local msg, new
    db.transaction(function()
      msg, new = store(nickname, body, offset)
      if new then
        -- serverOffset (the second value) is the message id: each page keeps
        -- the last one it saw, for its next handshake.
        socket.broadcast:emit("chat message", msg, msg.id)
      end
    end)
    ack({ id = msg.id, at = msg.at })
  end)

  -- 'private message' ({ to, text }, ack): a message to one nickname, sent
  -- to every socket of that person (its room) and nobody else. Not stored.
  socket:on("private message", function(pm, ack)
    ack = ack_or_ignore(ack)
    local from = socket.data.nickname
    if not from then return ack({ error = "Pick a nickname before chatting." }) end
    if type(pm) ~= "table" then return ack({ error = "A private message needs a recipient (to) and a text." }) end
    local to = check_nickname(pm.to)
    if not to then return ack({ error = "Pick who the message is for." }) end
    local text, err = check_text(pm.text)
    if not text then return ack({ error = err }) end
    if to == from then return ack({ error = "That is you: pick someone else." }) end
    if not is_online(to) then return ack({ error = "Nobody called " .. to .. " is online." }) end

    local at = now()
    io.to(room(to)):emit("private message", { from = from, to = to, text = text, at = at })
    ack({ to = to, at = at })
  end)

  -- 'typing' (true or false): relayed to the others as { nickname, typing }.
  -- Volatile: if a page cannot take it right now it is dropped, which is
  -- fine, the next one will tell. The page stops showing it after a few
  -- seconds without news anyway.
  socket:on("typing", function(typing, ack)
    local nickname = socket.data.nickname
    if nickname then
      socket.broadcast.volatile:emit("typing", { nickname = nickname, typing = typing == true })
    end
    -- A client created with `retries` waits for the ack of each event
    -- before it sends the next one, so answer when one is asked for.
    if type(ack) == "function" then ack(true) end
  end)

  -- The socket is gone (tab closed, network lost): it no longer counts for
  -- its nickname. The others hear "user left" when it was the last one.
  socket:on("disconnect", function()
    local nickname = socket.data.nickname
    if nickname and count_down(nickname) then leave_later(nickname) end
  end)

  if socket.reloaded then
    -- In dev mode a change under scripts/ reloads this file while sockets
    -- stay connected: each one comes through here again, with its
    -- socket.data and rooms kept. Count it again, quietly: nobody joined,
    -- and its page already has the history and the list of names.
    local nickname = socket.data.nickname
    if nickname then sockets_of[nickname] = (sockets_of[nickname] or 0) + 1 end
  else
    welcome(socket)
  end
end)
