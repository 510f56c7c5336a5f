-- The example app's pet store, in-process: the routes, and the status timer
-- driven by the test clock, so ten seconds pass in no time.
local testing = require "moonwire.testing"

local STATUSES = { eating = true, bathing = true, sleeping = true, playing = true }

describe("the pet store", function()
  local srv

  before_each(function()
    srv = testing.start { root = ".", clock = "test" }
    assert.is_true(srv.loaded)
  end)

  after_each(function() srv:stop() end)

  local function add(name, species)
    local status, body = srv:post("/api/pets", { json = { name = name, species = species } })
    assert.equal(201, status)
    return testing.json(body)
  end

  it("answers the pages and the API", function()
    assert.equal(200, (srv:get("/pets")))
    assert.equal(200, (srv:get("/pets/new")))
    local rex = add("Rex", "dog")
    assert.equal(200, (srv:get("/pets/" .. rex.id)))
    assert.equal(200, (srv:get("/pets/" .. rex.id .. "/edit")))
    assert.equal(404, (srv:get("/pets/999")))
    assert.equal(422, (srv:post("/pets", { form = { name = "", species = "dog" } })))
    local status, _, headers = srv:post("/pets", { form = { name = "Tom", species = "cat" } })
    assert.equal(303, status)
    assert.matches("^/pets/%d+$", headers.location)
    assert.equal(204, (srv:delete("/api/pets/" .. rex.id)))
    assert.equal(404, (srv:get("/api/pets/" .. rex.id)))
  end)

  it("changes every pet's status every 10 seconds and pushes it to the pet's page and the list", function()
    local rex, tom = add("Rex", "dog"), add("Tom", "cat")
    local page = srv:connect("/pets", { auth = { pet = rex.id } })
    local list = srv:connect("/pets")
    page:await("pet")
    list:await("pets")

    srv:advance(9999)
    assert.same({}, page:received("status"), "nothing before 10 seconds")

    srv:advance(1)
    local change = page:await("status")
    assert.equal(rex.id, change.id)
    assert.is_true(STATUSES[change.status])
    assert.are_not.equal(rex.status, change.status)
    local _, body = srv:get("/api/pets/" .. rex.id)
    assert.equal(change.status, testing.json(body).status, "the pushed status is the stored one")

    local seen = {}
    for _ = 1, 2 do seen[list:await("status").id] = true end
    assert.is_true(seen[rex.id] and seen[tom.id])
    assert.same({}, page:received("status"), "the page of Rex hears nothing about Tom")

    srv:advance(30000) -- three more ticks
    assert.equal(3, #page:received("status"))
    page:close()
    list:close()
  end)

  -- The session cookie a response sets, as a Cookie header for the next request.
  local function cookie_of(headers)
    local value = (headers["set-cookie"] or ""):match("mw_session=([^;,]*)")
    return value and { cookie = "mw_session=" .. value } or nil
  end

  it("says once, on the pet's page, that the pet was added (a flash message)", function()
    local status, _, headers = srv:post("/pets", { form = { name = "Tom", species = "cat" } })
    assert.equal(303, status)
    local cookie = assert(cookie_of(headers), "the flash message rides in the session cookie")
    local page_status, page, page_headers = srv:get(headers.location, { headers = cookie })
    assert.equal(200, page_status)
    assert.matches('<p class="flash flash%-notice" role="status">Tom the cat was added%.</p>', page)
    local again = select(2, srv:get(headers.location, { headers = cookie_of(page_headers) or {} }))
    assert.is_nil(again:find("was added", 1, true), "shown once")
  end)

  it("shows each field's message with what was typed, and answers 422", function()
    local status, page = srv:post("/pets", { form = { name = string.rep("n", 41), species = "dragon" } })
    assert.equal(422, status)
    assert.matches('value="' .. string.rep("n", 41) .. '"', page, 1, true)
    assert.matches('<p class="error" id="name%-error">Name must be at most 40 characters%.</p>', page)
    assert.matches('<p class="error" id="species%-error">Choose a species from the list%.</p>', page)
  end)

  it("starts empty, and --seed gives an empty store a few pets, once", function()
    local _, body = srv:get("/api/pets")
    assert.same({}, testing.json(body))
    srv:stop()
    srv = testing.start { root = ".", clock = "test", seed = true }
    local _, seeded = srv:get("/api/pets")
    assert.equal(5, #testing.json(seeded))
  end)
end)
