-- {{NAME}}: a moonwire app made from the pet store example (moonwire new
-- --template pets). moonwire loads this file at start-up, and again whenever
-- a file under scripts/ changes (connected browsers stay connected).
--
-- scripts/pets.lua holds the store: pages, a JSON API, and a timer that
-- changes what each pet is doing and pushes it to open pages. Its table is
-- made by scripts/migrations/002_pets.sql; `make run` (--seed) runs
-- scripts/seeds.lua, which gives an empty store a few pets.
local app = require "moonwire.app"

-- Forms carry a token (req:csrfToken(), csrf_field in views) that a page of
-- another site cannot have: a POST without it gets 403.
-- req.session lives in a cookie signed with $MOONWIRE_SECRET (the store keeps
-- its flash messages there); in dev mode without one a key is made at start,
-- in production the app refuses to load without it.
app.configure { csrf = true, session = {} }

require "pets"

-- The store is the whole app: its list is the home page.
app.get("/", function(req, res) res:redirect("/pets") end)
