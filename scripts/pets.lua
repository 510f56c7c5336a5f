-- The pet store: pages to list, add, change and remove pets, the same pets as
-- a JSON API, and a timer that changes what each pet is doing and pushes the
-- news over socket.io, so open pages update without a reload.
--
-- Pages (HTML forms can only GET and POST: a hidden field _method=PUT or
-- _method=DELETE in a POST form turns it into that method):
--
--   GET    /pets            the list
--   GET    /pets/new        the form to add a pet
--   POST   /pets            adds the pet from the form, then goes to its page
--   GET    /pets/:id        one pet; its status changes live
--   GET    /pets/:id/edit   the form to change a pet
--   PUT    /pets/:id        saves the edit form, then goes to the pet's page (PATCH too)
--   DELETE /pets/:id        removes the pet, then goes to the list
--
-- JSON API (a pet is { id, name, species, status, status_at, created_at }):
--
--   GET    /api/pets        200, every pet (an array)
--   POST   /api/pets        201 and the new pet, from { "name": ..., "species": ... }
--   GET    /api/pets/:id    200 and the pet, or 404
--   PUT    /api/pets/:id    200 and the pet, from { name, species } (both needed)
--   PATCH  /api/pets/:id    200 and the pet; fields left out keep their value
--   DELETE /api/pets/:id    204
--
--   A body that is not a JSON object gets 400 { error }; fields that break
--   the rules get 422 { errors = { name = "...", species = "..." } }.
--
-- Live, on the socket.io namespace "/pets":
--
--   io("/pets")                          the list page: joins the room "index"
--   io("/pets", { auth: { pet: 7 } })    pet 7's page: joins the room "pet:7"
--
--   What the server sends:
--   'pets'        [pet, ...]                     on joining "index": every pet, as it is now
--   'pet'         pet                            on joining "pet:7": the pet, as it is now
--   'status'      { id, status, status_at }      to "index" and "pet:<id>", when the timer changes it
--   'pet added'   pet                            to "index"
--   'pet updated' pet                            to "index" and "pet:<id>"
--   'pet removed' { id }                         to "index" and "pet:<id>"
--
-- Times are UTC, written the ISO 8601 way: "2024-05-01T09:30:00Z".

local app   = require "moonwire.app"
local db    = require "moonwire.db"
local io    = require "moonwire.io"
local json  = require "moonwire.json"
local log   = require "moonwire.log" -- the server's log, on stderr
local timer = require "moonwire.timer"
local workers = require "moonwire.workers"
local trim  = require("text").trim -- scripts/text.lua

-- The table pets is made by scripts/migrations/002_pets.sql, applied at
-- start before this file runs; scripts/seeds.lua adds a few pets to an
-- empty store when the server starts with --seed (make run does).

-- The species the form offers. Kept short on purpose: a fixed list gives
-- tidy data and a simple rule to check.
local SPECIES = { "cat", "dog", "rabbit", "hamster", "parrot", "turtle", "fish" }

-- What a pet can be doing. The timer at the end of this file picks them.
local STATUSES = { "eating", "bathing", "sleeping", "playing" }

local NAME_MAX = 40 -- characters, not bytes

-- ---------------------------------------------------------------- the data

-- The columns of a pet as the pages and the API show it. strftime writes
-- every time the ISO 8601 way, whoever wrote it: SQLite's CURRENT_TIMESTAMP
-- (created_at) writes "2024-05-01 09:30:00", now() below the ISO way already.
-- A pet whose status never changed has been in it since it was added.
local COLUMNS = [[
  id, name, species, status,
  strftime('%Y-%m-%dT%H:%M:%SZ', coalesce(status_at, created_at)) AS status_at,
  strftime('%Y-%m-%dT%H:%M:%SZ', created_at) AS created_at
]]

local function all_pets()
  return db.query("SELECT " .. COLUMNS .. " FROM pets ORDER BY id")
end

local function find_pet(id)
  return db.row("SELECT " .. COLUMNS .. " FROM pets WHERE id = ?", id)
end

-- The time now, in UTC, as written to status_at.
local function now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- "2024-05-01T09:30:00Z" → "2024-05-01 09:30:00 UTC", for people to read.
local function utc(iso)
  return (iso:gsub("T", " "):gsub("Z$", " UTC"))
end

-- ---------------------------------------------------------------- live updates

-- Every page of the store talks to the "/pets" namespace. A namespace is to
-- socket.io what a router is to Express: its own connections and events.
local live = io.of("/pets")

-- Runs before a client is let in (like Express middleware): the pet page
-- sends the pet's id in auth.pet; anything that is not an id is refused, and
-- the browser gets a 'connect_error'.
live:use(function(socket, next)
  local pet = socket.handshake.auth.pet
  if pet == nil then return next() end -- the list page
  if math.type(pet) ~= "integer" or pet < 1 then
    return next("auth.pet must be the id of a pet")
  end
  socket.data.pet = pet
  next()
end)

-- Each page joins one room, then gets the state as it is now: whatever
-- changed between rendering the page and connecting (or while the
-- connection was lost) is caught up this way.
live:on("connection", function(socket)
  local id = socket.data.pet
  if id == nil then
    socket:join("index")
    socket:emit("pets", all_pets())
    return
  end
  socket:join("pet:" .. id)
  local pet = find_pet(id)
  if pet then
    socket:emit("pet", pet)
  else
    socket:emit("pet removed", { id = id })
  end
end)

-- ---------------------------------------------------------------- changes

-- Every change goes through these three functions, whether it comes from a
-- form or from the API, so the open pages hear about all of them. Each
-- writes and announces in one db.transaction: the announcement leaves once
-- the change is committed, and never for a change rolled back.

-- Adds a pet (name and species already checked) and returns it.
local function add_pet(fields)
  return db.transaction(function()
    local _, id = db.exec("INSERT INTO pets (name, species, status_at) VALUES (?, ?, ?)",
      fields.name, fields.species, now())
    local pet = find_pet(id)
    live:to("index"):emit("pet added", pet)
    return pet
  end)
end

-- Changes a pet's name and species; returns the pet, or nil when there is
-- no pet with this id.
local function update_pet(id, fields)
  return db.transaction(function()
    local changed = db.exec("UPDATE pets SET name = ?, species = ? WHERE id = ?",
      fields.name, fields.species, id)
    if changed == 0 then return nil end
    local pet = find_pet(id)
    -- to(a):to(b) reaches the sockets in either room, each of them once.
    live:to("index"):to("pet:" .. id):emit("pet updated", pet)
    return pet
  end)
end

-- Removes a pet; returns false when there was none with this id.
local function remove_pet(id)
  return db.transaction(function()
    local changed = db.exec("DELETE FROM pets WHERE id = ?", id)
    if changed == 0 then return false end
    live:to("index"):to("pet:" .. id):emit("pet removed", { id = id })
    return true
  end)
end

-- ---------------------------------------------------------------- checking input

-- A form field as a trimmed string ("" when missing or not a plain value).
local function field(form, name)
  local value = form and form[name]
  if type(value) ~= "string" then return "" end
  return trim(value)
end

-- The rules a pet's fields must follow (app.validate: the messages by
-- field, for the form to show next to each input).
local RULES = {
  name = { required = true, max = NAME_MAX },
  species = { required = true, one_of = SPECIES, messages = { one_of = "Choose a species from the list." } },
}

-- Checks a submitted pet. Returns a table of messages keyed by field name,
-- or nil when everything is fine. The API can send any JSON value: only
-- text is a name, and only one of the listed strings a species.
local function validate(pet)
  local errors = app.validate(pet, RULES) or {}
  if pet.name ~= nil and type(pet.name) ~= "string" then errors.name = "Name must be text." end
  if pet.species ~= nil and type(pet.species) ~= "string" then errors.species = RULES.species.messages.one_of end
  if next(errors) then return errors end
  return nil
end

-- Ids in URLs are strings; only plain digits that fit an integer can match.
local function parse_id(text)
  if not text:match("^%d+$") then return nil end
  return math.tointeger(tonumber(text))
end

-- ---------------------------------------------------------------- pages

-- The add and edit forms share views/partials/pet_form.html.
-- pet holds what the form shows, errors the messages by field.
local function render_new(res, pet, errors)
  res:render("pets/new", {
    title = "New pet",
    pet = pet,
    errors = errors or {},
    species = SPECIES,
  })
end

-- saved is the pet as stored (for the heading), pet what the form shows.
local function render_edit(res, saved, pet, errors)
  res:render("pets/edit", {
    title = "Edit " .. saved.name,
    saved = saved,
    pet = pet,
    errors = errors or {},
    species = SPECIES,
  })
end

local function not_found(res)
  res:status(404):render("404", { title = "Not found", message = "There is no pet with this number." })
end

-- The pet named by :id in the URL, or nil (and a 404 page has been sent).
local function pet_from_url(req, res)
  local id = parse_id(req.params.id)
  local pet = id and find_pet(id)
  if not pet then not_found(res) end
  return pet
end

-- The name and species fields of a submitted form.
local function form_fields(req)
  return { name = field(req.form, "name"), species = field(req.form, "species") }
end

-- flash: the messages the last change left for this page (req:flash),
-- shown once by views/layout.html.
app.get("/pets", function(req, res)
  res:render("pets/index", { title = "Pets", pets = all_pets(), flash = req:flash() })
end)

-- Registered before /pets/:id so that "new" is never taken for an id.
app.get("/pets/new", function(req, res)
  render_new(res, { name = "", species = "" })
end)

app.post("/pets", function(req, res)
  local fields = form_fields(req)
  local errors = validate(fields)
  if errors then
    -- 422: the request was understood but its content is not acceptable.
    -- The form comes back with what was typed, so nothing has to be retyped.
    res:status(422)
    return render_new(res, fields, errors)
  end
  local pet = add_pet(fields)
  req:flash("notice", pet.name .. " the " .. pet.species .. " was added.")
  -- 303 tells the browser to GET the new page, so reloading it does not post twice.
  res:redirect("/pets/" .. pet.id, 303)
end)

app.get("/pets/:id", function(req, res)
  local pet = pet_from_url(req, res)
  if not pet then return end
  res:render("pets/show", { title = pet.name, pet = pet, utc = utc, flash = req:flash() })
end)

-- The edit form, filled in with the pet as it is.
app.get("/pets/:id/edit", function(req, res)
  local pet = pet_from_url(req, res)
  if not pet then return end
  render_edit(res, pet, pet)
end)

-- The edit form posts here with _method=PUT. The same rules as adding apply.
local function save_edit(req, res)
  local saved = pet_from_url(req, res)
  if not saved then return end
  local fields = form_fields(req)
  local errors = validate(fields)
  if errors then
    res:status(422)
    return render_edit(res, saved, fields, errors)
  end
  update_pet(saved.id, fields)
  req:flash("notice", "Your changes were saved.")
  res:redirect("/pets/" .. saved.id, 303)
end
app.put("/pets/:id", save_edit)
app.patch("/pets/:id", save_edit)

-- The Delete button on a pet's page posts here with _method=DELETE.
app.delete("/pets/:id", function(req, res)
  local id = parse_id(req.params.id)
  local pet = id and find_pet(id)
  if not (pet and remove_pet(id)) then return not_found(res) end
  req:flash("notice", pet.name .. " was removed.")
  res:redirect("/pets", 303)
end)

-- ---------------------------------------------------------------- the JSON API

local function json_error(res, status, message)
  res:status(status):json({ error = message })
end

-- The pet named by :id, or nil (and a 404 has been sent).
local function api_pet(req, res)
  local id = parse_id(req.params.id)
  local pet = id and find_pet(id)
  if not pet then json_error(res, 404, "There is no pet with this id.") end
  return pet
end

-- The body as a table when it is a JSON object; otherwise nil, and a 400
-- has been sent. req.json is nil unless the Content-Type says JSON and the
-- body parses; json.isarray tells a JSON array from an object.
local function json_object(req, res)
  local body = req.json
  if type(body) ~= "table" or json.isarray(body) then
    json_error(res, 400, "Send a JSON object, with Content-Type: application/json.")
    return nil
  end
  return body
end

-- name and species from a JSON body, trimmed. A field left out is "" (it
-- is required), or, when keep is a pet (PATCH), that pet's value.
local function json_fields(body, keep)
  local fields = {}
  for _, key in ipairs({ "name", "species" }) do
    local value = body[key]
    if value == nil then value = keep and keep[key] or "" end
    if type(value) == "string" then value = trim(value) end
    fields[key] = value
  end
  return fields
end

-- db.query's list stays a list: with no pets it is sent as [].
app.get("/api/pets", function(req, res)
  res:json(all_pets())
end)

app.post("/api/pets", function(req, res)
  local body = json_object(req, res)
  if not body then return end
  local fields = json_fields(body)
  local errors = validate(fields)
  if errors then return res:status(422):json({ errors = errors }) end
  local pet = add_pet(fields)
  -- 201 Created, and where the new pet lives.
  res:status(201):set("Location", "/api/pets/" .. pet.id):json(pet)
end)

app.get("/api/pets/:id", function(req, res)
  local pet = api_pet(req, res)
  if pet then res:json(pet) end
end)

-- PUT replaces both fields; PATCH changes only those it is given.
local function api_update(req, res)
  local saved = api_pet(req, res)
  if not saved then return end
  local body = json_object(req, res)
  if not body then return end
  local fields = json_fields(body, req.method == "PATCH" and saved or nil)
  local errors = validate(fields)
  if errors then return res:status(422):json({ errors = errors }) end
  res:json(update_pet(saved.id, fields))
end
app.put("/api/pets/:id", api_update)
app.patch("/api/pets/:id", api_update)

app.delete("/api/pets/:id", function(req, res)
  local id = parse_id(req.params.id)
  if not (id and remove_pet(id)) then return json_error(res, 404, "There is no pet with this id.") end
  res:sendStatus(204) -- No Content: done, and nothing to say
end)

-- ---------------------------------------------------------------- the status timer

-- How often the pets change what they are doing, in milliseconds: 10 seconds
-- unless PET_STATUS_INTERVAL_MS says otherwise (the tests make it short).
local DEFAULT_INTERVAL_MS = 10000

local function status_interval()
  local text = os.getenv("PET_STATUS_INTERVAL_MS")
  if text == nil or text == "" then return DEFAULT_INTERVAL_MS end
  local ms = text:match("^%d+$") and math.tointeger(tonumber(text))
  if not ms or ms < 1 then
    log.warn(string.format("pets: PET_STATUS_INTERVAL_MS=%q is not a positive whole number"
      .. " of milliseconds; using %d", text, DEFAULT_INTERVAL_MS))
    return DEFAULT_INTERVAL_MS
  end
  return ms
end

-- A status other than the current one, each of the three equally likely, so
-- that every tick is a change someone can see.
local function another_status(current)
  local pick = STATUSES[math.random(#STATUSES - 1)]
  if pick == current then pick = STATUSES[#STATUSES] end
  return pick
end

-- On every tick, each pet gets a new status. They are all written in one
-- transaction (one disk write instead of one per pet), and the emits inside
-- it leave once it has committed, so a page never shows a status the
-- database does not have. Each change goes to the list page and to that
-- pet's page. Under `moonwire --workers N` every worker runs this file, and
-- the ticks are the store's, not each worker's: worker 1 alone keeps the
-- timer, and its emits reach the pages on every worker.
local function tick()
  local at = now()
  db.transaction(function()
    for _, pet in ipairs(db.query("SELECT id, status FROM pets")) do
      local status = another_status(pet.status)
      db.exec("UPDATE pets SET status = ?, status_at = ? WHERE id = ?", status, at, pet.id)
      live:to("index"):to("pet:" .. pet.id):emit("status", { id = pet.id, status = status, status_at = at })
    end
  end)
end
if workers.id == 1 then timer.every(status_interval(), tick) end
