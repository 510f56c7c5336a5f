-- The app `make bench` measures moonwire with (bench/run.mjs). It does what
-- the anchors in bench/anchors/ do, so every server answers the same load:
--   'chat message' (msg)   -> io.emit('chat message', msg)   (to everyone, sender included)
--   'echo' (..., ack)      -> ack(...)                        (the same arguments back)
--   GET /hello             -> "Hello World" (text/plain)

local app = require "moonwire.app"
local io  = require "moonwire.io"

app.get("/hello", function(req, res)
  res:type("text/plain"):send("Hello World")
end)

io.on("connection", function(socket)
  socket:on("chat message", function(msg)
    io.emit("chat message", msg)
  end)
  socket:on("echo", function(...)
    local n = select("#", ...)
    local ack = select(n, ...)
    if type(ack) == "function" then ack(table.unpack({ ... }, 1, n - 1)) end
  end)
end)

-- The database figures (bench/db.mjs):
--   GET  /db/row          one db.row: a pet by its id
--   GET  /db/slow?n=N     a recursive CTE counting to N (N sets how long it runs)
--   POST /db/write        one INSERT
--   GET  /db/loop?n=N&hop=1   N db.row calls in one request (hop=1: db.exec on
--                             the writer's thread instead), answers µs per call
local db   = require "moonwire.db"
local core = require "moonwire.core"

db.exec [[
  CREATE TABLE IF NOT EXISTS pets (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, species TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'sleeping'
  );
  CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)
]]
if not db.row("SELECT 1 AS one FROM pets LIMIT 1") then
  db.transaction(function()
    for i = 1, 100 do db.exec("INSERT INTO pets (name, species) VALUES (?, ?)", "pet " .. i, "cat") end
  end)
end

local PET = "SELECT id, name, species, status FROM pets WHERE id = ?"

app.get("/db/row", function(req, res)
  res:json(db.row(PET, 42))
end)

app.get("/db/slow", function(req, res)
  res:json(db.row("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) AS n FROM c",
    math.tointeger(tonumber(req.query.n)) or 1000))
end)

app.post("/db/write", function(req, res)
  local _, id = db.exec("INSERT INTO notes (body) VALUES (?)", "note")
  res:json({ id = id })
end)

app.get("/db/loop", function(req, res)
  local n = math.tointeger(tonumber(req.query.n)) or 1000
  local hop = req.query.hop == "1"
  local t0 = core.now()
  for i = 1, n do
    if hop then db.exec("SELECT 1") else db.row(PET, i % 100 + 1) end
  end
  res:type("text/plain"):send(string.format("%.2f", (core.now() - t0) * 1000 / n))
end)
