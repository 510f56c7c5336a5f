-- The moonwire example app: a chat room, a pet store whose pets change what
-- they are doing live, and a live feed anything can publish to.
--
-- moonwire loads this file at start-up. Each feature lives in its own module
-- next to it in scripts/; requiring a module registers its routes.

local app = require "moonwire.app"

-- Forms carry a token (req:csrfToken(), csrf_field in views) that a page of
-- another site cannot have: a POST without it gets 403.
-- req.session lives in a cookie signed with $MOONWIRE_SECRET (the pet store
-- keeps its flash messages there); in dev mode without one a key is made at
-- start, in production the app refuses to load without it.
app.configure { csrf = true, session = {} }

require "chat"
require "pets"
require "feed"
