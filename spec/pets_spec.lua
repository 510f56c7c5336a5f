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
end)
