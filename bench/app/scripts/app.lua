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
