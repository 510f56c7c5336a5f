// Dev mode in Chromium: pages reload themselves when views/ or public/
// change, swap stylesheets in place when only CSS changed, and show an
// overlay while a file under scripts/ fails to load (gone once it is fixed).
// Each test works on its own copy of fixtures/reload.
//
// Run from spec/e2e/ with `node --test dev.browser.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { T, WAIT, launch, openPage } from './browser.mjs';
import { makeAppRoot, request, serve } from './helpers.mjs';

function edit(root, file, from, to) {
  const p = path.join(root, file);
  fs.writeFileSync(p, fs.readFileSync(p, 'utf8').replaceAll(from, to));
}

/** Opens /page and waits for the dev helper's live channel. */
async function openDevPage(browser, srv, problems) {
  const page = await openPage(browser, `${srv.url}/page`, problems);
  await page.waitForFunction(() => window.__moonwire && window.__moonwire.connected, null, { timeout: WAIT });
  await page.evaluate(() => { window.marker = 'still the same page'; });
  return page;
}

const samePage = (page) => page.evaluate(() => window.marker === 'still the same page');

describe('dev mode in the browser', () => {
  test('a change under views/ reloads the open page', T, async (t) => {
    const browser = await launch(t);
    const root = makeAppRoot('reload');
    const srv = await serve(t, { root });
    const problems = [];
    const page = await openDevPage(browser, srv, problems);
    edit(root, 'views/page.html', 'page one', 'page two');
    await page.waitForFunction(() => document.getElementById('title')?.textContent === 'page two', null, { timeout: WAIT });
    assert.equal(await samePage(page), false, 'the page was reloaded');
    assert.deepEqual(problems, []);
  });

  test('a stylesheet change is applied without a reload', T, async (t) => {
    const browser = await launch(t);
    const root = makeAppRoot('reload');
    const srv = await serve(t, { root });
    const problems = [];
    const page = await openDevPage(browser, srv, problems);
    const color = () => page.evaluate(() => getComputedStyle(document.getElementById('title')).color);
    assert.equal(await color(), 'rgb(0, 0, 255)');
    edit(root, 'public/page.css', '0, 0, 255', '255, 0, 0');
    await page.waitForFunction(() => getComputedStyle(document.getElementById('title')).color === 'rgb(255, 0, 0)', null, { timeout: WAIT });
    assert.equal(await samePage(page), true, 'no reload');
    assert.deepEqual(problems, []);
  });

  test('a broken script shows an overlay with file:line; fixing it removes the overlay', T, async (t) => {
    const browser = await launch(t);
    const root = makeAppRoot('reload');
    const srv = await serve(t, { root });
    const problems = [];
    const page = await openDevPage(browser, srv, problems);
    edit(root, 'scripts/app.lua', 'local calls = 0', 'local calls = = 0');
    const overlay = await page.waitForSelector('#__moonwire_overlay', { timeout: WAIT });
    assert.match(await overlay.textContent(), /scripts\/app\.lua:\d+: unexpected symbol near '='/);

    // A page opened while the error stands shows it too.
    const late = await openPage(browser, `${srv.url}/page`, problems);
    await late.waitForSelector('#__moonwire_overlay', { timeout: WAIT });

    edit(root, 'scripts/app.lua', 'local calls = = 0', 'local calls = 0');
    await page.waitForSelector('#__moonwire_overlay', { state: 'detached', timeout: WAIT });
    await late.waitForSelector('#__moonwire_overlay', { state: 'detached', timeout: WAIT });
    assert.equal(await samePage(page), true, 'fixing a script does not reload the page');
    assert.deepEqual(problems, []);
  });

  test('an app that fails to load at start shows the error page, which reloads into the app once fixed', T, async (t) => {
    const browser = await launch(t);
    const root = makeAppRoot('reload');
    edit(root, 'scripts/app.lua', 'local calls = 0', 'local calls = = 0');
    const srv = await serve(t, { root });
    const problems = [];
    const page = await browser.newPage();
    const res = await page.goto(`${srv.url}/page`);
    assert.equal(res.status(), 500);
    assert.match(await page.textContent('pre'), /scripts\/app\.lua:\d+: unexpected symbol/);
    await page.waitForFunction(() => window.__moonwire && window.__moonwire.connected, null, { timeout: WAIT });
    edit(root, 'scripts/app.lua', 'local calls = = 0', 'local calls = 0');
    await page.waitForFunction(() => document.getElementById('title')?.textContent === 'page one', null, { timeout: WAIT });
    assert.deepEqual(problems, []);
  });

  test('production mode adds no dev helper to pages', T, async (t) => {
    const root = makeAppRoot('reload');
    const dev = await serve(t, { root });
    assert.match((await request(dev.url, '/page')).body, /<script src="\/__moonwire\/dev\.js"><\/script>\s*<\/body>/);
    const prod = await serve(t, { root, args: ['--production'] });
    const body = (await request(prod.url, '/page')).body;
    assert.doesNotMatch(body, /__moonwire/);
    assert.equal((await request(prod.url, '/__moonwire/dev.js')).status, 404);
  });
});
