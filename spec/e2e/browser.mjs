// Helpers for the browser tests: headless Chromium (Debian's package at
// /usr/bin/chromium) driven by playwright-core.
//
// The tests are skipped, with a message saying so, only when the browser is
// missing (`make deps` installs it).

import assert from 'node:assert/strict';
import fs from 'node:fs';

export const CHROMIUM = process.env.MOONWIRE_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
export const SKIP = fs.existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is missing: install Debian's chromium package (make deps) to run the browser tests`;

/** Options for a browser test: a generous timeout, skipped without Chromium. */
export const T = { timeout: 60_000, skip: SKIP };
/** How long any single expected thing in a page may take. */
export const WAIT = 5_000;

/**
 * Launches Chromium for test t and closes it when the test ends. Call it
 * before serve(t): hooks run in the order they were added, so the browser
 * (and its connections) are gone before the server is stopped.
 */
export async function launch(t) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  t.after(() => browser.close());
  return browser;
}

/**
 * Opens url in a new page of browser (a new context when `context` is true,
 * so it has its own cookies and storage) and checks it answered 200. Every
 * error the page shows (script errors, console errors, failed loads, 4xx/5xx
 * answers) is pushed onto problems; a test ends with
 * assert.deepEqual(problems, []).
 */
export async function openPage(browser, url, problems, { context = false, viewport } = {}) {
  const owner = context ? await browser.newContext(viewport ? { viewport } : {}) : browser;
  const page = await owner.newPage(viewport && !context ? { viewport } : undefined);
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    // Failed loads are reported below with their URL.
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console error: ${msg.text()}`);
  });
  page.on('response', (res) => {
    // A browser may ask for /favicon.ico on its own; the app offers favicon.svg.
    if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) problems.push(`${res.status()} for ${res.url()}`);
  });
  page.on('requestfailed', (req) => {
    // A long-polling request cut short by the upgrade or by closing the page is normal.
    if (!/\/socket\.io\/\?/.test(req.url())) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  const res = await page.goto(url);
  assert.equal(res.status(), 200, `GET ${url}`);
  return page;
}
