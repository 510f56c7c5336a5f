-- moonwire.io.packet: Socket.IO packets as Lua sees them, and binary values.
--
-- Packets are encoded here (JSON once per emit, binary values moved into
-- attachments) and moved by the C core (core/sio.c), which frames a
-- broadcast once for all its recipients.
local json_c = require "moonwire.json_c"

local M = {}

M.EVENT, M.ACK = 2, 3

-- Event names an app may not emit (socket.io's list).
M.RESERVED = { connect = true, connect_error = true, disconnect = true, disconnecting = true,
  newListener = true, removeListener = true }

-- Lua strings carry no "this is binary" flag, so binary data travels as a
-- small wrapper: io.binary(s) to send, and what a client sends as binary
-- (Buffer, ArrayBuffer, Blob) arrives the same way. v.data is the string.
local Binary = {}
Binary.__index = Binary
Binary.__len = function(b) return #b.data end
Binary.__tostring = function(b) return b.data end
Binary.__eq = function(a, b) return getmetatable(b) == Binary and a.data == b.data end
M.Binary = Binary

function M.binary(s)
  assert(type(s) == "string", "io.binary: expects a string")
  return setmetatable({ data = s }, Binary)
end

function M.isbinary(v) return getmetatable(v) == Binary end

-- Returns the packet text and its attachments (or nil): args[1..n] (nil is
-- null) as JSON in one pass of the C codec, binary values written as
-- {"_placeholder":true,"num":N} (socket.io's key order) with their data as
-- the attachments. args is left as it is. Raises when a value cannot be
-- sent (a function, a table key that is not a string or a number...).
function M.encode(nsp, kind, args, n, id)
  local text, atts = json_c.packet(kind, nsp, id, args, n, Binary)
  if not text then error((kind == M.ACK and "ack: " or "emit: ") .. atts, 0) end
  return text, atts
end

-- Decodes a payload into an argument list; top-level nulls become nil
-- (n counts them) and placeholders the binary values of atts. Never
-- raises: nil and a message.
function M.decode(payload, atts)
  return json_c.decode_args(payload, atts, Binary)
end

return M
