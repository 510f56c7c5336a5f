-- {{NAME}}: a moonwire app. moonwire loads this file at start-up, and again
-- whenever a file under scripts/ changes (connected browsers stay connected).
local app = require "moonwire.app"
local io = require "moonwire.io"

-- A page: views/index.html inside views/layout.html.
app.get("/", function(req, res)
  res:render("index", { title = "{{NAME}}" })
end)

-- Realtime: a browser sends "hello" with a name; everyone else hears it, and
-- the sender gets an answer (an ack).
io.on("connection", function(socket)
  socket:on("hello", function(name, ack)
    if type(name) ~= "string" or name == "" or #name > 40 then
      if type(ack) == "function" then ack({ error = "say hello with a name (1 to 40 characters)" }) end
      return
    end
    socket.broadcast:emit("hello", name)
    if type(ack) == "function" then ack({ greeting = "Hello, " .. name .. "!" }) end
  end)
end)
