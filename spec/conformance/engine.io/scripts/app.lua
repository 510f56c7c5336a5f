-- The server the Engine.IO v4 conformance suite expects
-- (docs/engine.io-protocol/v4-test-suite in github.com/socketio/socket.io):
-- the endpoint at /engine.io/, pingInterval 300, pingTimeout 200, maxPayload
-- 1e6, any Origin, and every message echoed back as it came (text or binary).
--
-- Run: build/moonwire --root spec/conformance/engine.io --port 3000
-- (spec/conformance/run.sh does it for you).

local engine = require "moonwire.engine"

engine.configure {
  path = "/engine.io/",
  pingInterval = 300,
  pingTimeout = 200,
  maxHttpBufferSize = 1e6,
}

engine.on("connection", function(sock)
  -- A binary message comes with binary = true (or as a binary value, which
  -- sock:send takes as it is): either way it goes back as binary.
  sock:on("message", function(data, binary)
    sock:send(data, binary)
  end)
end)
