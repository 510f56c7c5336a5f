-- The live feed: anything that can send an HTTP request (a webhook, a script,
-- a curl loop) publishes short text items, and every open /feed page shows
-- them the moment they arrive. This is how a team plugs an outside stream
-- into its app: one endpoint in, guarded by a token, and one socket.io event
-- out.
--
--   POST /api/feed   publishes {"text": ..., "tag": ...}; needs the header
--                    Authorization: Bearer <the FEED_TOKEN environment variable>
--   GET  /api/feed   the last 50 items as JSON, newest first (?tag=news filters)
--   GET  /feed       the page: the last 50 items, then new ones live
--                    (?tag=news opens it filtered, so a filtered view can be linked)
--
-- An item is {"id": 7, "text": "...", "tag": "news", "created_at": "2024-05-01T09:30:00Z"}:
-- tag is null when there is none, created_at is UTC in ISO 8601.
--
-- Realtime, on the "/feed" namespace:
--   'item' (item)    sent to every open page when an item is published
--   auth.after       a page connects with auth = { after = <id of its newest item> }
--                    and first receives, oldest first, the items it missed

local app  = require "moonwire.app"
local db   = require "moonwire.db"
local io   = require "moonwire.io"
local json = require "moonwire.json"
local log  = require "moonwire.log" -- the server's log, on stderr
local trim = require("text").trim -- scripts/text.lua

-- The socket.io namespace the pages connect to: io("/feed") in public/feed.js.
local feed = io.of("/feed")

-- The table feed_items: scripts/migrations/003_feed_items.sql.

local LIMIT    = 50  -- items in a list or on the page
local TEXT_MAX = 500 -- characters, not bytes
local TAG_MAX  = 32
local TAG_RULE = "Tag must be 1 to " .. TAG_MAX .. " letters, digits, '-' or '_'."
local CONTROL  = "[\0-\8\11\12\14-\31\127]" -- control characters but tab, line feed, carriage return

-- ---------------------------------------------------------------- the token

-- Publishing needs a shared secret, read once from the environment:
--   FEED_TOKEN=some-long-random-string build/moonwire
-- Without it nobody can publish (rather than everybody), and the server says
-- so when it starts.
local TOKEN = os.getenv("FEED_TOKEN")
if TOKEN == "" then TOKEN = nil end
if not TOKEN then
  log.warn("feed: FEED_TOKEN is not set, so POST /api/feed refuses every item; "
    .. "start the server with FEED_TOKEN=<a long random string> to publish")
end

-- Compares the token a client sent with ours. A plain == stops at the first
-- byte that differs, so how long the answer takes would tell an attacker how
-- many leading bytes they have guessed. This loop always walks every byte of
-- our token and gathers the differences with xor (~) and or (|): it takes
-- the same time whatever was sent.
local function token_matches(given)
  local diff = #given ~ #TOKEN -- not 0 when the lengths differ
  for i = 1, #TOKEN do
    diff = diff | (TOKEN:byte(i) ~ (given:byte(i) or 0))
  end
  return diff == 0
end

-- Checks the Authorization header. Returns nil when the request may publish,
-- else the reason to refuse it.
local function refusal(req)
  if not TOKEN then
    return "Publishing is off: FEED_TOKEN is not set on the server."
  end
  -- "Bearer <token>"; the scheme's name is case-insensitive (RFC 7235).
  local scheme, given = (req.headers.authorization or ""):match("^(%S+) +(%S+) *$")
  if not scheme or scheme:lower() ~= "bearer" then
    return "Send the token in the header Authorization: Bearer <token>."
  end
  if not token_matches(given) then
    return "The token is not valid."
  end
  return nil
end

-- 401 with WWW-Authenticate, which tells the client what kind of
-- credentials to send (a Bearer token, RFC 6750).
local function unauthorized(res, message)
  res:status(401):set("WWW-Authenticate", 'Bearer realm="feed"'):json({ error = message })
end

-- ---------------------------------------------------------------- checking items

-- A tag as it is stored: " #News " -> "news". Returns nil when there is no
-- tag (missing, null or blank), or nil and a message when the value cannot
-- be a tag. Used for what is published and for ?tag= filters alike.
local function parse_tag(value)
  if value == nil or value == io.null then return nil end
  if type(value) ~= "string" then return nil, TAG_RULE end
  value = trim(value)
  if value == "" then return nil end
  local tag = value:gsub("^#", ""):lower()
  if #tag > TAG_MAX or not tag:find("^[a-z0-9_%-]+$") then return nil, TAG_RULE end
  return tag
end

-- Checks a published body (a table decoded from JSON). Returns the fields to
-- store ({ text = ..., tag = ... }), or nil and a table of messages keyed by
-- field name.
local function validate(body)
  local errors = {}

  local text = body.text
  if type(text) == "string" then text = trim(text) end
  if text == nil or text == io.null or text == "" then
    errors.text = "Text is required."
  elseif type(text) ~= "string" then
    errors.text = "Text must be a string."
  elseif not utf8.len(text) then -- nil when the bytes are not valid UTF-8
    errors.text = "Text must be valid UTF-8."
  elseif text:find(CONTROL) then
    errors.text = "Text must be plain text, without control characters."
  elseif utf8.len(text) > TEXT_MAX then
    errors.text = "Text must be at most " .. TEXT_MAX .. " characters."
  end

  local tag, tag_error = parse_tag(body.tag)
  errors.tag = tag_error

  if next(errors) then return nil, errors end
  return { text = text, tag = tag }
end

-- ---------------------------------------------------------------- reading items

local COLUMNS = "id, text, tag, created_at"

-- A row as it is sent to clients: a missing tag is JSON null, not left out.
local function public(row)
  return { id = row.id, text = row.text, tag = row.tag or io.null, created_at = row.created_at }
end

-- The newest items, newest first; only those tagged `tag` when it is given.
local function latest(tag)
  local rows
  if tag then
    rows = db.query("SELECT " .. COLUMNS .. " FROM feed_items WHERE tag = ? ORDER BY id DESC LIMIT ?", tag, LIMIT)
  else
    rows = db.query("SELECT " .. COLUMNS .. " FROM feed_items ORDER BY id DESC LIMIT ?", LIMIT)
  end
  for i, row in ipairs(rows) do rows[i] = public(row) end
  return rows
end

-- ---------------------------------------------------------------- the API

-- Publishes an item. curl example (the page shows it too):
--   curl -H "Authorization: Bearer $FEED_TOKEN" -H "Content-Type: application/json" \
--        -d '{"text":"Deploy finished","tag":"ops"}' http://localhost:3000/api/feed
app.post("/api/feed", function(req, res)
  -- Who is asking comes first: a stranger learns nothing about the body rules.
  local why = refusal(req)
  if why then return unauthorized(res, why) end

  -- req.json is the decoded body when it is JSON (nil when it does not
  -- parse); json.isarray tells a JSON array from an object.
  local body = req.json
  if type(body) ~= "table" or json.isarray(body) then
    return res:status(400):json({
      error = 'The body must be a JSON object such as {"text": "Hello", "tag": "news"}, '
        .. "sent with Content-Type: application/json.",
    })
  end

  local fields, errors = validate(body)
  if errors then
    -- 422: the JSON is fine but what it says is not acceptable.
    return res:status(422):json({ errors = errors })
  end

  local _, id = db.exec("INSERT INTO feed_items (text, tag) VALUES (?, ?)", fields.text, fields.tag)
  local item = public(db.row("SELECT " .. COLUMNS .. " FROM feed_items WHERE id = ?", id))

  -- The push: every page connected to the "/feed" namespace gets the item
  -- now. The JSON is encoded once, however many pages are open.
  feed:emit("item", item)

  res:status(201):json(item)
end)

app.get("/api/feed", function(req, res)
  local tag, problem = parse_tag(req.query.tag)
  if problem then return res:status(422):json({ errors = { tag = problem } }) end

  -- db.query's list stays a list: with no items it is sent as [].
  res:json(latest(tag))
end)

-- ---------------------------------------------------------------- the page

-- "2024-05-01T09:30:00Z" -> "2024-05-01 09:30 UTC", until the page's script
-- shows it in the reader's own time zone.
local function readable(created_at)
  local day, minute = created_at:match("^(%d+%-%d+%-%d+)T(%d+:%d+)")
  if not day then return created_at end
  return day .. " " .. minute .. " UTC"
end

-- The tags of the items, sorted, plus the chosen one (so that its button is
-- there even before an item carries it).
local function tags_of(items, chosen)
  local seen, tags = {}, {}
  if chosen then seen[chosen] = true; tags[1] = chosen end
  for _, item in ipairs(items) do
    local tag = item.tag
    if tag and not seen[tag] then
      seen[tag] = true
      tags[#tags + 1] = tag
    end
  end
  table.sort(tags)
  return tags
end

app.get("/feed", function(req, res)
  local tag, problem = parse_tag(req.query.tag)
  if problem then
    return res:status(404):render("404", { title = "Not found", message = "There is no such tag. " .. problem })
  end

  -- The page filters in the browser, so it holds the latest items of every
  -- tag; with ?tag= it also holds the latest of that tag, older ones
  -- included, and hides the rest until "all" is chosen.
  local items = latest(nil)
  if tag then
    local have = {}
    for _, item in ipairs(items) do have[item.id] = true end
    for _, item in ipairs(latest(tag)) do
      if not have[item.id] then items[#items + 1] = item end
    end
    table.sort(items, function(a, b) return a.id > b.id end)
  end
  -- What the template needs besides the item: no tag is nil there (io.null
  -- is for JSON), the time in words, and whether the filter hides it.
  local shown = 0
  for _, item in ipairs(items) do
    if item.tag == io.null then item.tag = nil end
    item.when = readable(item.created_at)
    item.hidden = tag ~= nil and item.tag ~= tag
    if not item.hidden then shown = shown + 1 end
  end

  res:render("feed", {
    title = "Live feed",
    items = items,
    shown = shown,
    tags = tags_of(items, tag),
    tag = tag,
    publishing = TOKEN ~= nil,
    -- Only shown in the curl example (and escaped there like everything else).
    host = req.headers.host or "localhost:3000",
  })
end)

-- ---------------------------------------------------------------- realtime

-- A page connects with auth = { after = <id of its newest item> }; socket.io
-- sends auth again on every reconnection. Whatever was published after that
-- id comes first, oldest first, so a page that connected a moment after it
-- was rendered, or lost its connection for a while, misses nothing.
feed:on("connection", function(socket)
  -- After a hot reload every open page comes through here again
  -- (socket.reloaded): it has missed nothing, so it gets nothing.
  if socket.reloaded then return end
  local after = socket.handshake.auth.after
  if math.type(after) ~= "integer" or after < 0 then return end
  local missed = db.query("SELECT " .. COLUMNS .. " FROM feed_items WHERE id > ? ORDER BY id DESC LIMIT ?",
    after, LIMIT)
  for i = #missed, 1, -1 do
    socket:emit("item", public(missed[i]))
  end
end)
