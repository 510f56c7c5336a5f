-- The chat: the page at / and its realtime half. A message a browser sends
-- as a 'chat message' event goes to every connected browser, the sender
-- included (public/chat.js shows it). This is the socket.io tutorial's chat.

local app = require "moonwire.app"
local io  = require "moonwire.io"

app.get("/", function(req, res)
  res:render("chat", { title = "Chat" })
end)

io.on("connection", function(socket)
  socket:on("chat message", function(msg)
    io.emit("chat message", msg)
  end)
end)
