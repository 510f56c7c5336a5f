-- {{NAME}}: a moonwire app made from the chat example (moonwire new
-- --template chat). moonwire loads this file at start-up, and again whenever
-- a file under scripts/ changes (connected browsers stay connected).
--
-- scripts/chat.lua holds the chat: nicknames, messages to everyone or to one
-- person, and the history a page catches up with; its table is made by
-- scripts/migrations/001_messages.sql.
local app = require "moonwire.app"

-- Forms carry a token (req:csrfToken(), csrf_field in views) that a page of
-- another site cannot have: a POST without it gets 403.
app.configure { csrf = true }

require "chat"
