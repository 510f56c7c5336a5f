// End-to-end tests of the pet store (scripts/pets.lua): its pages, its JSON
// API and its live updates on the "/pets" socket.io namespace, through the
// real server, plain HTTP and the real socket.io-client. Each test starts its
// own moonwire with a fresh database. Run from spec/e2e/ with `node --test`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import { delay, postForm, request, serve, startServer, tempDbPath } from './helpers.mjs';
import { client, connect, connected, next, record, setup, until } from './sio.mjs';

const T = { timeout: 20_000 };
const STATUSES = ['eating', 'bathing', 'sleeping', 'playing'];
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
// The status timer, fast enough for the live tests to see several ticks.
const FAST = { env: { PET_STATUS_INTERVAL_MS: '100' } };

/** Creates a pet through the form and returns its page's path. */
async function createPet(url, name, species = 'cat') {
  const res = await postForm(url, '/pets', { name, species });
  assert.equal(res.status, 303, `creating ${JSON.stringify(name)} should redirect; got ${res.status}: ${res.body.slice(0, 300)}`);
  assert.match(res.headers.location, /^\/pets\/\d+$/);
  return res.headers.location;
}

/**
 * A request to the JSON API. body: an object (sent as JSON) or a string
 * (sent as it is, as JSON unless a content-type is given). Resolves
 * { status, headers, body, json } (json: the parsed body, when it is JSON).
 */
async function api(base, method, target, body, { type = 'application/json' } = {}) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers['content-type'] = type;
    options.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await request(base, target, options);
  const isJson = /^application\/json/.test(res.headers['content-type'] ?? '');
  return { ...res, json: isJson ? JSON.parse(res.body) : undefined };
}

/** Adds a pet through the API and returns it. */
async function addPet(base, name, species = 'cat') {
  const res = await api(base, 'POST', '/api/pets', { name, species });
  assert.equal(res.status, 201, res.body);
  return res.json;
}

/** Checks that a value is a whole pet as the API and the pushes show it. */
function assertPet(pet, { name, species } = {}) {
  assert.deepEqual(Object.keys(pet).sort(), ['created_at', 'id', 'name', 'species', 'status', 'status_at']);
  assert.ok(Number.isInteger(pet.id) && pet.id > 0, `id ${pet.id}`);
  if (name !== undefined) assert.equal(pet.name, name);
  if (species !== undefined) assert.equal(pet.species, species);
  assert.ok(STATUSES.includes(pet.status), `status ${pet.status}`);
  assert.match(pet.status_at, ISO_UTC);
  assert.match(pet.created_at, ISO_UTC);
}

/** Checks one 'status' push: { id, status, status_at }, status one of the four. */
function assertStatus([change]) {
  assert.deepEqual(Object.keys(change).sort(), ['id', 'status', 'status_at']);
  assert.ok(STATUSES.includes(change.status), `status ${change.status}`);
  assert.match(change.status_at, ISO_UTC);
}

/** The id at the end of a /pets/:id path. */
function idOf(location) {
  return Number(location.split('/').pop());
}

// ==========================================================================
describe('pet pages', () => {
  test('GET /pets lists the pets with links, status and a link to add one', T, async (t) => {
    const srv = await serve(t);
    const empty = await request(srv.url, '/pets');
    assert.equal(empty.status, 200);
    assert.match(empty.headers['content-type'], /^text\/html/);
    assert.match(empty.body, /href="\/pets\/new"/);
    assert.match(empty.body, /No pets yet/);

    const location = await createPet(srv.url, 'Biscuit', 'rabbit');
    const list = await request(srv.url, '/pets');
    assert.equal(list.status, 200);
    assert.ok(list.body.includes(`href="${location}"`), 'the list links to the pet');
    assert.match(list.body, /Biscuit/);
    assert.match(list.body, /rabbit/);
    assert.match(list.body, /sleeping/, 'a new pet is sleeping');
    assert.match(list.body, /<script src="\/socket.io\/socket.io.js"><\/script>/, 'the list updates live');
  });

  test('GET /pets lists the pets in the order they were added', T, async (t) => {
    const srv = await serve(t);
    const paths = [];
    for (const name of ['Zed', 'Amy', 'Moe']) paths.push(await createPet(srv.url, name));
    const list = await request(srv.url, '/pets');
    const order = [...list.body.matchAll(/href="(\/pets\/\d+)"/g)].map((m) => m[1]);
    assert.deepEqual(order, paths);
  });

  test('GET /pets/new shows a form with labelled name and species fields', T, async (t) => {
    const srv = await serve(t);
    const res = await request(srv.url, '/pets/new');
    assert.equal(res.status, 200);
    assert.match(res.body, /<form[^>]*method="post"[^>]*action="\/pets"/);
    assert.match(res.body, /<label for="name">/);
    assert.match(res.body, /<label for="species">/);
    assert.match(res.body, /name="name"/);
    assert.match(res.body, /name="species"/);
    assert.ok(!res.body.includes('name="_method"'), 'adding is a plain POST');
  });

  test('POST /pets with a valid form redirects 303 to the new pet', T, async (t) => {
    const srv = await serve(t);
    const location = await createPet(srv.url, 'Mr Whiskers!', 'cat');
    const page = await request(srv.url, location);
    assert.equal(page.status, 200);
    assert.match(page.body, /Mr Whiskers!/, 'form encoding (+ and %21) is decoded');
    assert.match(page.body, /cat/);
    assert.match(page.body, /sleeping/);
  });

  test('GET /pets/:id shows the status with its time, an edit link and a delete form', T, async (t) => {
    const srv = await serve(t);
    const location = await createPet(srv.url, 'Biscuit', 'rabbit');
    const pet = (await api(srv.url, 'GET', `/api${location}`)).json;
    const page = await request(srv.url, location);
    assert.equal(page.status, 200);
    assert.match(page.body, /<title>Biscuit · moonwire<\/title>/);
    assert.match(page.body, /<span class="badge badge-sleeping" id="pet-status">sleeping<\/span>/);
    const when = pet.status_at.replace('T', ' ').replace('Z', ' UTC');
    assert.ok(page.body.includes(`<time id="pet-status-at" datetime="${pet.status_at}">${when}</time>`), 'the status time');
    assert.ok(page.body.includes(`href="${location}/edit"`), 'a link to the edit form');
    const form = /<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/.exec(page.body);
    assert.ok(form, 'a delete form');
    assert.equal(form[1], location);
    assert.match(form[2], /<input type="hidden" name="_method" value="DELETE">/);
    assert.match(form[2], /<button[^>]*>Delete<\/button>/);
  });

  test('names are HTML-escaped on the pet page, in the list and in the edit form', T, async (t) => {
    const srv = await serve(t);
    const location = await createPet(srv.url, '<b>x</b> & "y"');
    for (const target of [location, '/pets', `${location}/edit`]) {
      const page = await request(srv.url, target);
      assert.equal(page.status, 200);
      assert.ok(page.body.includes('&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;'), `${target} shows the escaped name`);
      assert.ok(!page.body.includes('<b>x</b>'), `${target} must not contain the raw markup`);
    }
  });

  test('POST /pets with an empty name answers 422 with the form and the message', T, async (t) => {
    const srv = await serve(t);
    const res = await postForm(srv.url, '/pets', { name: '   ', species: 'dog' });
    assert.equal(res.status, 422);
    assert.match(res.headers['content-type'], /^text\/html/);
    assert.match(res.body, /Name is required/);
    assert.match(res.body, /<form[^>]*action="\/pets"/, 'the form is shown again');
    assert.match(res.body, /<option value="dog" selected>/, 'the chosen species is kept');

    const list = await request(srv.url, '/pets');
    assert.ok(!/href="\/pets\/\d+"/.test(list.body), 'nothing was saved');
  });

  test('POST /pets keeps what was typed when a field is wrong', T, async (t) => {
    const srv = await serve(t);
    const res = await postForm(srv.url, '/pets', { name: 'Nessie', species: 'dragon' });
    assert.equal(res.status, 422);
    assert.match(res.body, /value="Nessie"/);
    assert.match(res.body, /Choose a species from the list/);

    const missing = await postForm(srv.url, '/pets', { name: 'Nessie' });
    assert.equal(missing.status, 422);
    assert.match(missing.body, /Species is required/);
  });

  test('names are limited to 40 characters (not bytes)', T, async (t) => {
    const srv = await serve(t);
    await createPet(srv.url, 'x'.repeat(40));
    await createPet(srv.url, 'é'.repeat(40)); // 80 bytes, 40 characters

    const long = await postForm(srv.url, '/pets', { name: 'y'.repeat(41), species: 'cat' });
    assert.equal(long.status, 422);
    assert.match(long.body, /at most 40 characters/);
    assert.ok(long.body.includes(`value="${'y'.repeat(41)}"`), 'the long name is kept in the form');
  });

  test('GET /pets/:id answers 404 with the 404 page for ids that do not exist or are not numbers', T, async (t) => {
    const srv = await serve(t);
    for (const target of ['/pets/999999', '/pets/abc', '/pets/12abc', '/pets/-1', '/pets/99999999999999999999999']) {
      const res = await request(srv.url, target);
      assert.equal(res.status, 404, `${target}: status ${res.status}`);
      assert.match(res.body, /<h1>Page not found<\/h1>/, target);
    }
  });

  test('GET /pets/:id/edit shows the form filled in with the pet, sending PUT to the pet', T, async (t) => {
    const srv = await serve(t);
    const location = await createPet(srv.url, 'Biscuit', 'rabbit');
    const res = await request(srv.url, `${location}/edit`);
    assert.equal(res.status, 200);
    assert.match(res.body, /<title>Edit Biscuit · moonwire<\/title>/);
    assert.ok(new RegExp(`<form[^>]*method="post"[^>]*action="${location}"`).test(res.body), 'the form posts to the pet');
    assert.match(res.body, /<input type="hidden" name="_method" value="PUT">/);
    assert.match(res.body, /<input id="name" name="name" value="Biscuit"/);
    assert.match(res.body, /<option value="rabbit" selected>/);
    assert.equal([...res.body.matchAll(/ selected>/g)].length, 1, 'one species is chosen');

    for (const target of ['/pets/999999/edit', '/pets/abc/edit', '/pets/new/edit']) {
      const missing = await request(srv.url, target);
      assert.equal(missing.status, 404, target);
      assert.match(missing.body, /<h1>Page not found<\/h1>/, target);
    }
  });

  test('the edit form (POST with _method=PUT or PATCH) saves the pet and redirects 303 to it', T, async (t) => {
    const srv = await serve(t);
    const location = await createPet(srv.url, 'Biscuit', 'rabbit');
    const put = await postForm(srv.url, location, { _method: 'PUT', name: '  Biscuit the Brave ', species: 'hamster' });
    assert.equal(put.status, 303, put.body.slice(0, 300));
    assert.equal(put.headers.location, location);
    let page = await request(srv.url, location);
    assert.match(page.body, /<h1 id="pet-name">Biscuit the Brave<\/h1>/, 'the name is saved, trimmed');
    assert.match(page.body, /<dd id="pet-species">hamster<\/dd>/);

    const patch = await postForm(srv.url, location, { _method: 'PATCH', name: 'Bix', species: 'cat' });
    assert.equal(patch.status, 303);
    page = await request(srv.url, location);
    assert.match(page.body, /<h1 id="pet-name">Bix<\/h1>/);

    const list = await request(srv.url, '/pets');
    assert.match(list.body, />Bix<\/a>/);
    assert.ok(!list.body.includes('Biscuit'), 'the list shows the new name only');
  });

  test('the edit form with bad fields answers 422 with the messages and what was typed; nothing is saved', T, async (t) => {
    const srv = await serve(t);
    const location = await createPet(srv.url, 'Biscuit', 'rabbit');
    const res = await postForm(srv.url, location, { _method: 'PUT', name: 'z'.repeat(41), species: 'dragon' });
    assert.equal(res.status, 422);
    assert.match(res.headers['content-type'], /^text\/html/);
    assert.match(res.body, /at most 40 characters/);
    assert.match(res.body, /Choose a species from the list/);
    assert.ok(res.body.includes(`value="${'z'.repeat(41)}"`), 'what was typed is kept');
    assert.match(res.body, /<input type="hidden" name="_method" value="PUT">/, 'it is still the edit form');
    assert.match(res.body, /<h1[^>]*>Edit Biscuit<\/h1>/, 'the heading names the pet as saved');

    const empty = await postForm(srv.url, location, { _method: 'PUT', name: '', species: 'cat' });
    assert.equal(empty.status, 422);
    assert.match(empty.body, /Name is required/);

    const page = await request(srv.url, location);
    assert.match(page.body, /<h1 id="pet-name">Biscuit<\/h1>/);
    assert.match(page.body, /<dd id="pet-species">rabbit<\/dd>/);
  });

  test('the delete form (POST with _method=DELETE) removes the pet and redirects 303 to the list', T, async (t) => {
    const srv = await serve(t);
    const keep = await createPet(srv.url, 'Keeper');
    const location = await createPet(srv.url, 'Goner');
    const res = await postForm(srv.url, location, { _method: 'DELETE' });
    assert.equal(res.status, 303);
    assert.equal(res.headers.location, '/pets');

    assert.equal((await request(srv.url, location)).status, 404);
    const list = await request(srv.url, '/pets');
    assert.ok(!list.body.includes(`href="${location}"`), 'the list no longer links to it');
    assert.ok(list.body.includes(`href="${keep}"`), 'the other pet stays');

    const again = await postForm(srv.url, location, { _method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.match(again.body, /<h1>Page not found<\/h1>/);
  });

  test('saving or deleting a pet that does not exist answers 404', T, async (t) => {
    const srv = await serve(t);
    for (const target of ['/pets/999999', '/pets/abc']) {
      for (const method of ['PUT', 'PATCH', 'DELETE']) {
        const res = await postForm(srv.url, target, { _method: method, name: 'Rex', species: 'dog' });
        assert.equal(res.status, 404, `${method} ${target}`);
        assert.match(res.body, /<h1>Page not found<\/h1>/);
      }
    }
  });

  test('the id of a removed pet is not given to the next one', T, async (t) => {
    const srv = await serve(t);
    const first = await createPet(srv.url, 'First');
    await postForm(srv.url, first, { _method: 'DELETE' });
    const second = await createPet(srv.url, 'Second');
    assert.notEqual(second, first);
    assert.equal((await request(srv.url, first)).status, 404);
  });

  test('pets are kept in the database across restarts', T, async (t) => {
    const db = tempDbPath();
    const first = await startServer({ db });
    let location;
    try {
      location = await createPet(first.url, 'Persistent Pip', 'parrot');
    } finally {
      assert.equal(await first.stop(), 0);
    }
    const second = await serve(t, { db });
    const page = await request(second.url, location);
    assert.equal(page.status, 200);
    assert.match(page.body, /Persistent Pip/);
  });
});

// ==========================================================================
describe('pets JSON API', () => {
  test('GET /api/pets answers [] when there are no pets, then every pet in order', T, async (t) => {
    const srv = await serve(t);
    const empty = await request(srv.url, '/api/pets');
    assert.equal(empty.status, 200);
    assert.match(empty.headers['content-type'], /^application\/json/);
    assert.equal(empty.body, '[]');

    const a = await addPet(srv.url, 'Amy', 'dog');
    const location = await createPet(srv.url, 'Bob', 'fish');
    const list = await api(srv.url, 'GET', '/api/pets');
    assert.equal(list.status, 200);
    assert.ok(Array.isArray(list.json));
    assert.deepEqual(list.json.map((p) => [p.id, p.name, p.species]), [[a.id, 'Amy', 'dog'], [idOf(location), 'Bob', 'fish']]);
    for (const pet of list.json) assertPet(pet);
  });

  test('POST /api/pets answers 201 with the pet and its Location', T, async (t) => {
    const srv = await serve(t);
    const res = await api(srv.url, 'POST', '/api/pets', { name: '  Rex ', species: 'dog', status: 'eating', id: 99 });
    assert.equal(res.status, 201, res.body);
    assert.match(res.headers['content-type'], /^application\/json/);
    const pet = res.json;
    assertPet(pet, { name: 'Rex', species: 'dog' });
    assert.equal(pet.status, 'sleeping', 'a new pet is sleeping; status is not taken from the body');
    assert.notEqual(pet.id, 99, 'the id is not taken from the body');
    assert.equal(pet.status_at, pet.created_at, 'asleep since it was added');
    assert.equal(res.headers.location, `/api/pets/${pet.id}`);

    const got = await api(srv.url, 'GET', res.headers.location);
    assert.equal(got.status, 200);
    assert.deepEqual(got.json, pet);
    const page = await request(srv.url, `/pets/${pet.id}`);
    assert.match(page.body, /<h1 id="pet-name">Rex<\/h1>/, 'the page shows the pet added through the API');
  });

  test('POST /api/pets with bad fields answers 422 with a message per field, and saves nothing', T, async (t) => {
    const srv = await serve(t);
    const cases = [
      [{}, { name: 'Name is required.', species: 'Species is required.' }],
      [{ name: '   ', species: 'cat' }, { name: 'Name is required.' }],
      [{ name: 'y'.repeat(41), species: 'cat' }, { name: 'Name must be at most 40 characters.' }],
      [{ name: 5, species: 'dragon' }, { name: 'Name must be text.', species: 'Choose a species from the list.' }],
      [{ name: null, species: ['cat'] }, { name: 'Name must be text.', species: 'Choose a species from the list.' }],
    ];
    for (const [body, errors] of cases) {
      const res = await api(srv.url, 'POST', '/api/pets', body);
      assert.equal(res.status, 422, JSON.stringify(body));
      assert.deepEqual(res.json, { errors }, JSON.stringify(body));
    }
    assert.equal((await request(srv.url, '/api/pets')).body, '[]');
  });

  test('POST /api/pets with a body that is not a JSON object answers 400', T, async (t) => {
    const srv = await serve(t);
    const bodies = ['nope', '{"name": "Rex",', '[]', '[{"name":"Rex","species":"dog"}]', '"Rex"', '42', 'null', ''];
    for (const body of bodies) {
      const res = await api(srv.url, 'POST', '/api/pets', body);
      assert.equal(res.status, 400, `body ${JSON.stringify(body)}`);
      assert.equal(typeof res.json.error, 'string');
    }
    const form = await api(srv.url, 'POST', '/api/pets', 'name=Rex&species=dog', { type: 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 400, 'a form is not JSON');
    const none = await api(srv.url, 'POST', '/api/pets');
    assert.equal(none.status, 400, 'no body');
    assert.equal((await request(srv.url, '/api/pets')).body, '[]');
  });

  test('GET /api/pets/:id answers 404 with an error for ids that do not exist or are not numbers', T, async (t) => {
    const srv = await serve(t);
    for (const target of ['/api/pets/1', '/api/pets/abc', '/api/pets/-1', '/api/pets/99999999999999999999999']) {
      const res = await api(srv.url, 'GET', target);
      assert.equal(res.status, 404, target);
      assert.equal(typeof res.json.error, 'string', target);
    }
  });

  test('PUT /api/pets/:id replaces name and species; PATCH changes only what it is given', T, async (t) => {
    const srv = await serve(t);
    const pet = await addPet(srv.url, 'Rex', 'dog');
    const target = `/api/pets/${pet.id}`;

    const put = await api(srv.url, 'PUT', target, { name: 'Rexford', species: 'cat' });
    assert.equal(put.status, 200, put.body);
    assertPet(put.json, { name: 'Rexford', species: 'cat' });
    assert.equal(put.json.id, pet.id);
    assert.equal(put.json.created_at, pet.created_at);

    const partial = await api(srv.url, 'PUT', target, { name: 'Rexy' });
    assert.equal(partial.status, 422, 'PUT needs both fields');
    assert.deepEqual(partial.json, { errors: { species: 'Species is required.' } });

    const patch = await api(srv.url, 'PATCH', target, { name: 'Rexy' });
    assert.equal(patch.status, 200);
    assertPet(patch.json, { name: 'Rexy', species: 'cat' });
    const nothing = await api(srv.url, 'PATCH', target, {});
    assert.equal(nothing.status, 200);
    assertPet(nothing.json, { name: 'Rexy', species: 'cat' });

    const bad = await api(srv.url, 'PATCH', target, { species: 'unicorn' });
    assert.equal(bad.status, 422);
    assert.deepEqual(bad.json, { errors: { species: 'Choose a species from the list.' } });
    assert.equal((await api(srv.url, 'PATCH', target, '[]')).status, 400);
    assert.equal((await api(srv.url, 'PUT', target, 'nope')).status, 400);

    const got = await api(srv.url, 'GET', target);
    assertPet(got.json, { name: 'Rexy', species: 'cat' });

    for (const method of ['PUT', 'PATCH']) {
      const missing = await api(srv.url, method, '/api/pets/999999', { name: 'Rex', species: 'dog' });
      assert.equal(missing.status, 404, method);
      assert.equal(typeof missing.json.error, 'string');
    }
  });

  test('DELETE /api/pets/:id answers 204, then the pet is gone (404)', T, async (t) => {
    const srv = await serve(t);
    const pet = await addPet(srv.url, 'Rex', 'dog');
    const target = `/api/pets/${pet.id}`;
    const res = await request(srv.url, target, { method: 'DELETE' });
    assert.equal(res.status, 204);
    assert.equal(res.body, '');
    assert.equal((await api(srv.url, 'GET', target)).status, 404);
    assert.equal((await request(srv.url, `/pets/${pet.id}`)).status, 404);
    assert.equal((await request(srv.url, '/api/pets')).body, '[]');

    const again = await api(srv.url, 'DELETE', target);
    assert.equal(again.status, 404);
    assert.equal(typeof again.json.error, 'string');
    assert.equal((await api(srv.url, 'DELETE', '/api/pets/abc')).status, 404);
  });
});

// ==========================================================================
describe('pets live', () => {
  test("a pet page's client gets its pet on connecting, then its statuses and never another pet's", T, async (t) => {
    const srv = await setup(t, FAST);
    const a = await addPet(srv.url, 'Amy', 'dog');
    const b = await addPet(srv.url, 'Bob', 'cat');

    const page = client(srv, '/pets', { auth: { pet: a.id } });
    const first = next(page, 'pet');
    const statuses = record(page, 'status');
    const updates = record(page, 'pet updated');
    await connected(page);
    const [snapshot] = await first;
    assertPet(snapshot, { name: 'Amy', species: 'dog' });
    assert.equal(snapshot.id, a.id);

    // The list page hears about every pet: once it has seen B change twice,
    // those changes were sent while the pet page was listening.
    const list = client(srv, '/pets');
    const all = record(list, 'status');
    await connected(list);
    await until(() => all.filter(([s]) => s.id === b.id).length >= 2, "two statuses of B on the list's client");
    await until(() => statuses.length >= 2, "two statuses on A's page");
    // A round trip on the pet page's socket: an edit of A is sent after those
    // statuses of B, and messages on one socket arrive in order.
    await api(srv.url, 'PATCH', `/api/pets/${a.id}`, { name: 'Amy Lou' });
    await until(() => updates.length === 1, "'pet updated' on A's page");

    for (const change of statuses) assertStatus(change);
    assert.deepEqual([...new Set(statuses.map(([s]) => s.id))], [a.id], 'only statuses of A');
  });

  test('the stored status is the one pushed (GET /api/pets/:id after an update)', T, async (t) => {
    // A slower timer here, so that a GET is answered well before the next tick.
    const srv = await setup(t, { env: { PET_STATUS_INTERVAL_MS: '300' } });
    const pet = await addPet(srv.url, 'Amy', 'dog');
    const page = client(srv, '/pets', { auth: { pet: pet.id } });
    const statuses = record(page, 'status');
    await connected(page);
    for (let round = 0; round < 3; round++) {
      const seen = statuses.length;
      await until(() => statuses.length > seen, 'a status');
      const pushed = statuses[seen][0];
      const got = (await api(srv.url, 'GET', `/api/pets/${pet.id}`)).json;
      const stored = { id: got.id, status: got.status, status_at: got.status_at };
      // Should the next tick come first after all, the GET shows that one.
      if (stored.status !== pushed.status) await until(() => statuses.length > seen + 1, 'the next status');
      const candidates = statuses.slice(seen, seen + 2).map(([s]) => s);
      assert.ok(candidates.some((s) => isDeepStrictEqual(s, stored)),
        `stored ${JSON.stringify(stored)}, pushed ${JSON.stringify(candidates)}`);
    }
  });

  test("the list page's client gets every pet on connecting, then the statuses of every pet", T, async (t) => {
    const srv = await setup(t, FAST);
    const pets = [];
    for (const [name, species] of [['Amy', 'dog'], ['Bob', 'cat'], ['Cy', 'fish']]) pets.push(await addPet(srv.url, name, species));

    const list = client(srv, '/pets');
    const first = next(list, 'pets');
    const statuses = record(list, 'status');
    await connected(list);
    const [snapshot] = await first;
    assert.deepEqual(snapshot.map((p) => p.id), pets.map((p) => p.id), 'every pet, in order');
    for (const pet of snapshot) assertPet(pet);

    // A pet added while the list is open: its first tick is seen for sure
    // (the pets above may have had theirs before the client connected).
    const late = await addPet(srv.url, 'Dee', 'dog');
    const of = (pet) => statuses.map(([s]) => s).filter((s) => s.id === pet.id);
    await until(() => [...pets, late].every((p) => of(p).length >= 4), 'four statuses for every pet');
    for (const change of statuses) assertStatus(change);
    assert.notEqual(of(late)[0].status, 'sleeping', 'the first change wakes a new pet up');
    for (const pet of [...pets, late]) {
      const seen = of(pet).map((s) => s.status);
      for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1], `every tick is a change: ${seen}`);
    }
  });

  test("the list page's client gets no pets on connecting to an empty store", T, async (t) => {
    const srv = await setup(t);
    const list = client(srv, '/pets');
    const first = next(list, 'pets');
    await connected(list);
    const [snapshot] = await first;
    assert.deepEqual(snapshot, [], 'an empty list, as a list');
  });

  test("'pet added' reaches the list page when a pet is added through the form or the API", T, async (t) => {
    const srv = await setup(t);
    const list = await connect(srv, '/pets');
    const added = record(list, 'pet added');

    const location = await createPet(srv.url, 'Formy', 'parrot');
    await until(() => added.length === 1, "'pet added' after the form");
    assertPet(added[0][0], { name: 'Formy', species: 'parrot' });
    assert.equal(added[0][0].id, idOf(location));

    const pet = await addPet(srv.url, 'Apish', 'turtle');
    await until(() => added.length === 2, "'pet added' after the API");
    assert.deepEqual(added[1][0], pet);
  });

  test("'pet updated' reaches the list page and the pet's page after an edit (form or API)", T, async (t) => {
    const srv = await setup(t);
    const pet = await addPet(srv.url, 'Rex', 'dog');
    const other = await addPet(srv.url, 'Other', 'cat');
    const list = await connect(srv, '/pets');
    const page = await connect(srv, '/pets', { auth: { pet: pet.id } });
    const otherPage = await connect(srv, '/pets', { auth: { pet: other.id } });
    const onList = record(list, 'pet updated');
    const onPage = record(page, 'pet updated');
    const onOther = record(otherPage, 'pet updated');

    await postForm(srv.url, `/pets/${pet.id}`, { _method: 'PUT', name: 'Rexford', species: 'hamster' });
    await until(() => onList.length === 1 && onPage.length === 1, "'pet updated' after the form");
    for (const got of [onList[0][0], onPage[0][0]]) {
      assertPet(got, { name: 'Rexford', species: 'hamster' });
      assert.equal(got.id, pet.id);
    }

    const patched = (await api(srv.url, 'PATCH', `/api/pets/${pet.id}`, { name: 'Rexy' })).json;
    await until(() => onList.length === 2 && onPage.length === 2, "'pet updated' after the API");
    assert.deepEqual(onPage[1][0], patched);

    // A failed edit changes nothing and says nothing.
    await postForm(srv.url, `/pets/${pet.id}`, { _method: 'PUT', name: '', species: 'dog' });
    // Round trip on the other page's socket: its own pet's update comes after.
    await api(srv.url, 'PATCH', `/api/pets/${other.id}`, { name: 'Otto' });
    await until(() => onOther.length === 1, "'pet updated' on the other pet's page");
    await until(() => onList.length === 3, "the list's 'pet updated' for the other pet");
    assert.equal(onOther[0][0].name, 'Otto', "the other page hears only of its own pet");
    assert.equal(onPage.length, 2, 'no update for the failed edit');
  });

  test("'pet removed' reaches the list page and the pet's page (form or API); a page opened later hears it at once", T, async (t) => {
    const srv = await setup(t);
    const viaForm = await addPet(srv.url, 'Formy', 'dog');
    const viaApi = await addPet(srv.url, 'Apish', 'cat');
    const list = await connect(srv, '/pets');
    const page = await connect(srv, '/pets', { auth: { pet: viaForm.id } });
    const onList = record(list, 'pet removed');
    const onPage = record(page, 'pet removed');

    await postForm(srv.url, `/pets/${viaForm.id}`, { _method: 'DELETE' });
    await until(() => onList.length === 1 && onPage.length === 1, "'pet removed' after the form");
    assert.deepEqual(onList[0], [{ id: viaForm.id }]);
    assert.deepEqual(onPage[0], [{ id: viaForm.id }]);

    await request(srv.url, `/api/pets/${viaApi.id}`, { method: 'DELETE' });
    await until(() => onList.length === 2, "'pet removed' after the API");
    assert.deepEqual(onList[1], [{ id: viaApi.id }]);

    const late = client(srv, '/pets', { auth: { pet: viaApi.id } });
    const gone = next(late, 'pet removed');
    await connected(late);
    assert.deepEqual(await gone, [{ id: viaApi.id }]);
  });

  test('a client with an auth.pet that is not an id is refused', T, async (t) => {
    const srv = await setup(t);
    for (const pet of ['1', 'abc', -1, 0, 1.5, true, { id: 1 }, null]) {
      const socket = client(srv, '/pets', { auth: { pet } });
      await assert.rejects(connected(socket), /connect_error: auth.pet must be the id of a pet/, JSON.stringify(pet));
    }
  });

  test('PET_STATUS_INTERVAL_MS that is not a positive whole number is logged and ignored', T, async (t) => {
    for (const value of ['soon', '0', '-5', '1.5']) {
      const srv = await serve(t, { env: { PET_STATUS_INTERVAL_MS: value } });
      await until(() => srv.stderr().includes(`PET_STATUS_INTERVAL_MS="${value}"`), `the warning for ${value}`);
      assert.match(srv.stderr(), /using 10000/);
      assert.equal((await request(srv.url, '/pets')).status, 200, 'the store works all the same');
    }
  });

  test('with --workers 2 a pet changes once a tick, not once per worker: worker 1 alone keeps the timer', T, async (t) => {
    const INTERVAL = 200, WINDOW = 3000;
    const srv = await setup(t, { args: ['--workers', '2'], env: { PET_STATUS_INTERVAL_MS: String(INTERVAL) } });
    const pet = await addPet(srv.url, 'Amy', 'dog');
    const page = client(srv, '/pets', { auth: { pet: pet.id } });
    const statuses = record(page, 'status');
    await connected(page);
    await until(() => statuses.length > 0, 'a first status');
    const seen = statuses.length, from = Date.now();
    await delay(WINDOW);
    const ticks = statuses.length - seen, ms = Date.now() - from;
    for (const change of statuses) assertStatus(change);
    // One timer falls due at most once per interval (timers never fire
    // early; two ticks may arrive close together, hence the slack); a
    // timer in each worker would give about twice as many.
    assert.ok(ticks >= 1, 'the statuses go on');
    assert.ok(ticks <= Math.floor(ms / INTERVAL) + 2, `${ticks} statuses in ${ms} ms: more than one timer ticks`);
  });
});
