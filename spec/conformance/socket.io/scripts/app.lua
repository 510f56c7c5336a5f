-- The server the Socket.IO v5 conformance suite expects
-- (docs/socket.io-protocol/v5-test-suite in github.com/socketio/socket.io),
-- as its README gives it for the reference server:
--
--   pingInterval 300, pingTimeout 200, maxPayload 1e6, connectTimeout 1000,
--   any Origin; on connection to "/" or "/custom" emit "auth" with the
--   handshake's auth payload; "message" is answered with "message-back" and
--   the same arguments; "message-with-ack" is acked with its arguments.
--
-- Run: build/moonwire --root spec/conformance/socket.io --port 3000
-- (spec/conformance/run.sh does it for you).

local io = require "moonwire.io"

io.configure {
  pingInterval = 300,
  pingTimeout = 200,
  maxHttpBufferSize = 1e6,
  connectTimeout = 1000,
}

io.on("connection", function(socket)
  socket:emit("auth", socket.handshake.auth)

  socket:on("message", function(...)
    socket:emit("message-back", ...)
  end)

  socket:on("message-with-ack", function(...)
    local args = table.pack(...)
    local ack = args[args.n]
    ack(table.unpack(args, 1, args.n - 1))
  end)
end)

io.of("/custom"):on("connection", function(socket)
  socket:emit("auth", socket.handshake.auth)
end)
