-- The chat page. For now the server only sends the page itself: the message
-- list and the form that later pages will bring to life.

local app = require "moonwire.app"

app.get("/", function(req, res)
  res:render("chat", { title = "Chat" })
end)
