// The example app's live chat in a real browser: headless Chromium (Debian's
// package at /usr/bin/chromium) driven by playwright-core, loading the page,
// /socket.io/socket.io.js and /chat.js from build/moonwire.
//
// Skipped, with a message saying so, only when /usr/bin/chromium is missing
// (`make deps` installs it). Run from spec/e2e/ with
// `node --test browser.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';

import { serve } from './helpers.mjs';

const CHROMIUM = process.env.MOONWIRE_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const SKIP = HAVE_CHROMIUM ? false : `${CHROMIUM} is missing: install Debian's chromium package (make deps) to run the browser tests`;

const T = { timeout: 60_000, skip: SKIP };
const WAIT = 5_000;

if (SKIP) console.log(`# browser tests skipped: ${SKIP}`);

/**
 * Launches Chromium for test t and closes it when the test ends. Call it
 * before serve(t): hooks run in the order they were added, so the browser
 * (and its connections) are gone before the server is stopped.
 */
async function launch(t) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  t.after(() => browser.close());
  return browser;
}

/** Opens the chat page and waits until its socket is connected. */
async function openChat(browser, url, problems) {
  const page = await browser.newPage();
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
  const res = await page.goto(`${url}/`);
  assert.equal(res.status(), 200);
  await page.waitForFunction(() => typeof window.io === 'function', null, { timeout: WAIT });
  await page.waitForFunction(() => window.socket && window.socket.connected, null, { timeout: WAIT });
  return page;
}

/** The texts of the page's #messages items. */
function messagesOf(page) {
  return page.$$eval('#messages li', (items) => items.map((li) => li.textContent));
}

/** Types text into #input and submits #form with Enter. */
async function say(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

async function waitForMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent === t),
    text,
    { timeout: WAIT },
  );
}

describe('the live chat in Chromium', () => {
  test('a message typed in one page appears in #messages on both pages', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t);
    const problems = [];
    const [one, two] = [await openChat(browser, srv.url, problems), await openChat(browser, srv.url, problems)];

    await say(one, 'hello from page one');
    await waitForMessage(one, 'hello from page one');
    await waitForMessage(two, 'hello from page one');
    assert.equal(await one.inputValue('#input'), '', 'the input is cleared after sending');

    await say(two, 'and back from page two 👋');
    await waitForMessage(one, 'and back from page two 👋');
    await waitForMessage(two, 'and back from page two 👋');

    assert.deepEqual(await messagesOf(one), ['hello from page one', 'and back from page two 👋']);
    assert.deepEqual(await messagesOf(two), ['hello from page one', 'and back from page two 👋']);
    assert.deepEqual(problems, [], 'no errors in the pages');
  });

  test('the browser upgrades to websocket, and an empty message is not sent', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t);
    const problems = [];
    const page = await openChat(browser, srv.url, problems);
    await page.waitForFunction(() => window.socket.io.engine.transport.name === 'websocket', null, { timeout: WAIT });

    await say(page, '');
    await say(page, 'not empty');
    await waitForMessage(page, 'not empty');
    assert.deepEqual(await messagesOf(page), ['not empty'], 'the empty submission sent nothing');
    assert.deepEqual(problems, []);
  });

  test('messages are shown as text, never as HTML', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t);
    const problems = [];
    const [one, two] = [await openChat(browser, srv.url, problems), await openChat(browser, srv.url, problems)];
    const html = '<img src=x onerror="window.pwned=1"><b>bold</b>';
    await say(one, html);
    await waitForMessage(two, html);
    assert.equal(await two.$$eval('#messages li b, #messages li img', (els) => els.length), 0, 'no elements made from the message');
    assert.equal(await two.evaluate(() => window.pwned), undefined);
    assert.deepEqual(problems, []);
  });
});
