-- A first run that shows the point: with --seed (make run passes it), this
-- file runs once the app has loaded, and gives an empty pet store a few
-- pets, so the statuses changing live are there to see at once. A store
-- with pets in it is left as it is.
local db  = require "moonwire.db"
local log = require "moonwire.log"

local PETS = {
  { "Rex", "dog" }, { "Tom", "cat" }, { "Bugs", "rabbit" }, { "Polly", "parrot" }, { "Nemo", "fish" },
}

if db.row("SELECT count(*) AS n FROM pets").n == 0 then
  local at = os.date("!%Y-%m-%dT%H:%M:%SZ")
  db.transaction(function()
    for _, pet in ipairs(PETS) do
      db.exec("INSERT INTO pets (name, species, status_at) VALUES (?, ?, ?)", pet[1], pet[2], at)
    end
  end)
  log.info(string.format("seeds: the pet store was empty; added %d pets (scripts/seeds.lua)", #PETS))
end
