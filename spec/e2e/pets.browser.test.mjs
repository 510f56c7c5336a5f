// The pet store in headless Chromium: pages that follow the store live
// (public/pets.js) while other browsers and the JSON API change it.
// Run from spec/e2e/ with `node --test`.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launch, openPage, T, WAIT } from './browser.mjs';
import { request, serve } from './helpers.mjs';

const STATUSES = ['eating', 'bathing', 'sleeping', 'playing'];

/** A JSON API call; resolves { status, json }. */
async function api(base, method, target, body) {
  const res = await request(base, target, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: res.body ? JSON.parse(res.body) : undefined };
}

async function addPet(base, name, species = 'cat') {
  const res = await api(base, 'POST', '/api/pets', { name, species });
  assert.equal(res.status, 201);
  return res.json;
}

/** What the list page shows: [id, name, species, status] per row, in order. */
function rows(page) {
  return page.$$eval('#pets li', (items) => items.map((li) => [
    Number(li.dataset.id),
    li.querySelector('.pet-name').textContent,
    li.querySelector('.species').textContent,
    li.querySelector('.badge').textContent,
  ]));
}

/** Waits until the list page shows these ids, in this order. */
function waitForIds(page, ids) {
  return page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#pets li')].map((li) => Number(li.dataset.id))) === JSON.stringify(want),
    ids, { timeout: WAIT });
}

test("a pet's page shows its status changing live, as stored", T, async (t) => {
  const browser = await launch(t);
  const srv = await serve(t, { env: { PET_STATUS_INTERVAL_MS: '200' } });
  const pet = await addPet(srv.url, 'Biscuit', 'rabbit');
  const problems = [];
  const page = await openPage(browser, `${srv.url}/pets/${pet.id}`, problems);

  const shown = () => page.evaluate(() => ({
    status: document.getElementById('pet-status').textContent,
    badge: document.getElementById('pet-status').className,
    at: document.getElementById('pet-status-at').dateTime,
    text: document.getElementById('pet-status-at').textContent,
  }));
  const first = await shown();

  // Both the status and its time move on (the time counts in seconds).
  await page.waitForFunction((before) => {
    const status = document.getElementById('pet-status').textContent;
    const at = document.getElementById('pet-status-at').dateTime;
    return status !== before.status && at !== before.at;
  }, first, { timeout: WAIT });
  // And keeps moving: every tick is a new status.
  let now = await shown();
  for (let i = 0; i < 3; i++) {
    await page.waitForFunction((before) => document.getElementById('pet-status').textContent !== before,
      now.status, { timeout: WAIT });
    now = await shown();
  }
  assert.ok(STATUSES.includes(now.status), now.status);
  assert.equal(now.badge, `badge badge-${now.status}`, 'the badge takes the colour of the status');
  assert.equal(now.text, now.at.replace('T', ' ').replace('Z', ' UTC'));

  // What the page shows is what the database has: compare with the API until
  // a GET falls between two ticks and both agree.
  for (let tries = 0; ; tries++) {
    const stored = (await api(srv.url, 'GET', `/api/pets/${pet.id}`)).json;
    const onPage = await shown();
    if (onPage.status === stored.status && onPage.at === stored.status_at) break;
    assert.ok(tries < 20, `the page shows ${JSON.stringify(onPage)}, the database ${JSON.stringify(stored)}`);
  }
  assert.deepEqual(problems, []);
});

test('the list page adds, updates and removes pets live, in order, names as text', T, async (t) => {
  const browser = await launch(t);
  const srv = await serve(t);
  const a = await addPet(srv.url, 'Amy', 'dog');
  const b = await addPet(srv.url, 'Bob', 'fish');
  const problems = [];
  const page = await openPage(browser, `${srv.url}/pets`, problems);
  assert.deepEqual(await rows(page), [[a.id, 'Amy', 'dog', 'sleeping'], [b.id, 'Bob', 'fish', 'sleeping']]);

  const c = await addPet(srv.url, '<img src=x onerror=alert(1)>', 'parrot');
  await waitForIds(page, [a.id, b.id, c.id]);
  assert.deepEqual((await rows(page))[2], [c.id, '<img src=x onerror=alert(1)>', 'parrot', 'sleeping']);
  assert.equal(await page.locator('#pets img').count(), 0, 'the name is text, not markup');
  assert.equal(await page.getAttribute(`#pets li[data-id="${c.id}"] a`, 'href'), `/pets/${c.id}`);

  await api(srv.url, 'PATCH', `/api/pets/${a.id}`, { name: 'Amy Lou', species: 'cat' });
  await page.waitForFunction((id) => document.querySelector(`#pets li[data-id="${id}"] .pet-name`).textContent === 'Amy Lou', a.id, { timeout: WAIT });
  assert.deepEqual((await rows(page))[0], [a.id, 'Amy Lou', 'cat', 'sleeping']);

  await api(srv.url, 'DELETE', `/api/pets/${b.id}`);
  await waitForIds(page, [a.id, c.id]);

  for (const pet of [a, c]) await api(srv.url, 'DELETE', `/api/pets/${pet.id}`);
  await waitForIds(page, []);
  assert.ok(await page.isVisible('#pets-empty'), 'the page says there are no pets');
  assert.ok(!(await page.isVisible('#pets')));

  const d = await addPet(srv.url, 'Dot', 'turtle');
  await waitForIds(page, [d.id]);
  assert.ok(!(await page.isVisible('#pets-empty')));
  assert.deepEqual(problems, []);
});

test("the list page's badges follow the statuses", T, async (t) => {
  const browser = await launch(t);
  const srv = await serve(t, { env: { PET_STATUS_INTERVAL_MS: '100' } });
  const pets = [await addPet(srv.url, 'Amy'), await addPet(srv.url, 'Bob')];
  const problems = [];
  const page = await openPage(browser, `${srv.url}/pets`, problems);
  // A new pet is asleep; the first tick wakes every pet up.
  await page.waitForFunction(() => [...document.querySelectorAll('#pets .badge')]
    .every((b) => b.textContent !== 'sleeping'), null, { timeout: WAIT });
  // Text and colour read at once (a tick may come between two reads).
  const badges = await page.$$eval('#pets .badge', (all) => all.map((b) => [b.textContent, b.className]));
  assert.equal(badges.length, pets.length);
  for (const [status, className] of badges) {
    assert.ok(STATUSES.includes(status), status);
    assert.equal(className, `badge badge-${status}`);
  }
  assert.deepEqual(problems, []);
});

test("a pet's page says so when the pet is removed elsewhere", T, async (t) => {
  const browser = await launch(t);
  const srv = await serve(t);
  const pet = await addPet(srv.url, 'Goner', 'hamster');
  const problems = [];
  const page = await openPage(browser, `${srv.url}/pets/${pet.id}`, problems);
  assert.ok(!(await page.isVisible('#pet-gone')));
  assert.ok(await page.isVisible('#pet-actions'));
  // Whether the page is connected yet or not: a page that connects after
  // the removal hears of it on connecting.
  await api(srv.url, 'DELETE', `/api/pets/${pet.id}`);
  await page.waitForSelector('#pet-gone', { state: 'visible', timeout: WAIT });
  assert.match(await page.textContent('#pet-gone'), /This pet has been removed/);
  assert.ok(!(await page.isVisible('#pet-actions')), 'no edit or delete for a pet that is gone');
  assert.deepEqual(problems, []);
});

test('two browsers: an edit and a delete made in one show up in the other', T, async (t) => {
  const browser = await launch(t);
  const srv = await serve(t);
  const pet = await addPet(srv.url, 'Rex', 'dog');
  const problems = [];
  const list = await openPage(browser, `${srv.url}/pets`, problems, { context: true });
  const show = await openPage(browser, `${srv.url}/pets/${pet.id}`, problems, { context: true });
  const editor = await openPage(browser, `${srv.url}/pets/${pet.id}/edit`, problems, { context: true });

  assert.equal(await editor.inputValue('#name'), 'Rex', 'the edit form is filled in');
  await editor.fill('#name', 'Rexford');
  await editor.selectOption('#species', 'hamster');
  await Promise.all([editor.waitForURL(`${srv.url}/pets/${pet.id}`), editor.click('button[type="submit"]')]);
  assert.equal(await editor.textContent('#pet-name'), 'Rexford');

  await show.waitForFunction(() => document.getElementById('pet-name').textContent === 'Rexford', null, { timeout: WAIT });
  assert.equal(await show.textContent('#pet-species'), 'hamster');
  assert.equal(await show.title(), 'Rexford · moonwire');
  await list.waitForFunction(() => document.querySelector('#pets .pet-name')?.textContent === 'Rexford', null, { timeout: WAIT });

  // The Delete button on the pet's page: back to the list, without the pet.
  await Promise.all([editor.waitForURL(`${srv.url}/pets`), editor.click('.pet-delete button')]);
  assert.ok(await editor.isVisible('#pets-empty'));
  await list.waitForSelector('#pets-empty', { state: 'visible', timeout: WAIT });
  await show.waitForSelector('#pet-gone', { state: 'visible', timeout: WAIT });
  assert.deepEqual(problems, []);
});
