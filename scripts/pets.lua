-- The pet pages: a list of every pet, a form to add one, and a page per pet.
--
--   GET  /pets        the list
--   GET  /pets/new    the form
--   POST /pets        adds the pet from the form, then goes to its page
--   GET  /pets/:id    one pet

local app = require "moonwire.app"
local db  = require "moonwire.db"

-- Created on load, so a brand-new database file works straight away.
-- A pet starts asleep; status_at says when its status last changed.
db.exec [[
  CREATE TABLE IF NOT EXISTS pets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    species    TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'sleeping',
    status_at  TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
  )
]]

-- The species the form offers. Kept short on purpose: a fixed list gives
-- tidy data and a simple rule to check.
local SPECIES = { "cat", "dog", "rabbit", "hamster", "parrot", "turtle", "fish" }

local NAME_MAX = 40 -- characters, not bytes

local function is_species(value)
  for _, s in ipairs(SPECIES) do
    if s == value then return true end
  end
  return false
end

-- Strips spaces around a value. The end is walked by hand: a pattern such as
-- "%s*$" would restart at every position and take quadratic time on a long
-- run of spaces, which anyone can post.
local function trim(s)
  local first = s:find("%S")
  if not first then return "" end
  local last = #s
  while s:find("^%s", last) do last = last - 1 end
  return s:sub(first, last)
end

-- A form field as a trimmed string ("" when missing or not a plain value).
local function field(form, name)
  local value = form and form[name]
  if type(value) ~= "string" then return "" end
  return trim(value)
end

-- Checks a submitted pet. Returns a table of messages keyed by field name,
-- or nil when everything is fine.
local function validate(pet)
  local errors = {}

  local length = utf8.len(pet.name) -- nil when the bytes are not valid UTF-8
  if pet.name == "" then
    errors.name = "Name is required."
  elseif not length then
    errors.name = "Name must be plain text."
  elseif length > NAME_MAX then
    errors.name = "Name must be at most " .. NAME_MAX .. " characters."
  end

  if pet.species == "" then
    errors.species = "Species is required."
  elseif not is_species(pet.species) then
    errors.species = "Choose a species from the list."
  end

  if next(errors) then return errors end
  return nil
end

-- The form page, fresh or with the messages of a failed submission.
local function render_form(res, pet, errors)
  res:render("pets/new", {
    title = "New pet",
    pet = pet,
    errors = errors or {},
    species = SPECIES,
  })
end

-- Ids in URLs are strings; only plain digits that fit an integer can match.
local function parse_id(text)
  if not text:match("^%d+$") then return nil end
  return math.tointeger(tonumber(text))
end

local function not_found(res, message)
  res:status(404):render("404", { title = "Not found", message = message })
end

app.get("/pets", function(req, res)
  local pets = db.query("SELECT id, name, species, status FROM pets ORDER BY id")
  res:render("pets/index", { title = "Pets", pets = pets })
end)

-- Registered before /pets/:id so that "new" is never taken for an id.
app.get("/pets/new", function(req, res)
  render_form(res, { name = "", species = "" })
end)

app.post("/pets", function(req, res)
  local pet = { name = field(req.form, "name"), species = field(req.form, "species") }

  local errors = validate(pet)
  if errors then
    -- 422: the request was understood but its content is not acceptable.
    -- The form comes back with what was typed, so nothing has to be retyped.
    res:status(422)
    return render_form(res, pet, errors)
  end

  local _, id = db.exec("INSERT INTO pets (name, species) VALUES (?, ?)", pet.name, pet.species)
  -- 303 tells the browser to GET the new page, so reloading it does not post twice.
  res:redirect("/pets/" .. id, 303)
end)

app.get("/pets/:id", function(req, res)
  local id = parse_id(req.params.id)
  local pet = id and db.row("SELECT * FROM pets WHERE id = ?", id)
  if not pet then
    return not_found(res, "There is no pet with this number.")
  end
  res:render("pets/show", { title = pet.name, pet = pet })
end)
