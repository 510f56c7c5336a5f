// The Socket.IO Admin UI itself (the built page of @socket.io/admin-ui, its
// own client code) in headless Chromium against moonwire: logging in with
// the configured credentials, the sockets and rooms it lists, disconnecting
// a socket from its Sockets page. The page is served by moonwire
// (adminUI.serve) or, as the hosted UI at admin.socket.io is, from another
// origin (a static server in this test), allowed by cors.origin.
//
// Run from spec/e2e/ with `node --test admin.browser.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, test } from 'node:test';

import { T, WAIT, launch } from './browser.mjs';
import { FIXTURES, REPO_ROOT } from './helpers.mjs';
import { connect, next, setup } from './sio.mjs';

const FIXTURE = path.join(FIXTURES, 'admin');
const UI_DIR = path.join(REPO_ROOT, 'node_modules/@socket.io/admin-ui/ui/dist');
const LOGIN = { username: 'admin', password: 'correct horse' };

function start(t, env = {}) {
  return setup(t, {
    root: FIXTURE,
    args: ['--production'],
    env: { ADMIN_USER: LOGIN.username, ADMIN_PASSWORD: LOGIN.password, ADMIN_UI_DIR: UI_DIR, ...env },
  });
}

/**
 * Opens the UI at url in a new context. The page asks Google Fonts and a CDN
 * for its font and icons; those are answered empty here (the machine may be
 * offline). Every error the page shows is pushed onto problems.
 */
async function openUI(browser, url, problems) {
  const context = await browser.newContext();
  await context.route(/^https:\/\/(fonts\.googleapis\.com|cdn\.jsdelivr\.net)\//,
    (route) => route.fulfill({ status: 200, contentType: 'text/css', body: '' }));
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console error: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) problems.push(`${res.status()} for ${res.url()}`);
  });
  const res = await page.goto(url);
  assert.equal(res.status(), 200, `GET ${url}`);
  return page;
}

/** Fills the UI's connection form and submits it. */
async function login(page, serverUrl, { username, password }) {
  const dialog = page.locator('.v-dialog--active');
  await dialog.waitFor({ state: 'visible', timeout: WAIT });
  await dialog.getByLabel('Server URL').fill(serverUrl);
  await dialog.getByLabel('Username').fill(username);
  await dialog.getByLabel('Password').fill(password);
  await dialog.getByRole('button', { name: 'Connect' }).click();
}

/** Waits until the sockets table lists exactly ids. */
async function waitForSockets(page, ids) {
  const rows = () => page.$$eval('.v-data-table tbody tr td:first-child', (tds) => tds.map((td) => td.textContent.trim()));
  await page.waitForFunction((want) => {
    const got = [...document.querySelectorAll('.v-data-table tbody tr td:first-child')]
      .map((td) => td.textContent.trim()).filter((x) => /^[\w-]{20}$/.test(x)).sort();
    return JSON.stringify(got) === JSON.stringify(want);
  }, [...ids].sort(), { timeout: WAIT }).catch(async (err) => {
    throw new Error(`${err.message}: the table shows ${JSON.stringify(await rows())}, not ${JSON.stringify(ids)}`);
  });
}

/** Waits until a row of the page's table has text in its first cell (or none has, present false). */
async function waitForRow(page, text, present = true) {
  await page.waitForFunction(([t, p]) => [...document.querySelectorAll('.v-data-table tbody tr td:first-child')]
    .some((td) => td.textContent.trim() === t) === p, [text, present], { timeout: WAIT });
}

/** Logs in, then checks the sockets and rooms pages and a disconnect from the UI. */
async function exercise(t, page, srv, problems) {
  const t0 = Date.now();
  const step = (what) => t.diagnostic(`${what}: ${Date.now() - t0} ms`);
  const alice = await connect(srv, '/', { query: { room: 'pets', name: 'alice' } });
  const bob = await connect(srv, '/', { query: { name: 'bob' } });

  await login(page, srv.url, { ...LOGIN, password: 'wrong' });
  await page.getByText('Invalid credentials').waitFor({ timeout: WAIT });
  await login(page, srv.url, LOGIN);
  await page.locator('.v-dialog--active').waitFor({ state: 'hidden', timeout: WAIT });
  step('logged in');

  // The Sockets page lists the clients of the main namespace.
  await page.evaluate(() => { window.location.hash = '#/sockets/'; });
  await waitForRow(page, alice.id);
  await waitForRow(page, bob.id);
  // A client that connects now shows up without a reload.
  const carol = await connect(srv, '/', { query: { name: 'carol' } });
  await waitForSockets(page, [alice.id, bob.id, carol.id]);

  step('sockets listed');
  // The Rooms page shows alice's room.
  await page.evaluate(() => { window.location.hash = '#/rooms/'; });
  await waitForRow(page, 'pets');

  // Disconnecting bob from the Sockets page disconnects the real client.
  await page.evaluate(() => { window.location.hash = '#/sockets/'; });
  await waitForRow(page, bob.id);
  const gone = next(bob, 'disconnect', WAIT);
  await page.locator('.v-data-table tbody tr', { hasText: bob.id }).locator('button').click();
  assert.equal((await gone)[0], 'io server disconnect');
  // The click reaches the row too, which opens the socket's page: back to the list.
  await page.evaluate(() => { window.location.hash = '#/sockets/'; });
  await waitForSockets(page, [alice.id, carol.id]);
  assert.ok(alice.connected && carol.connected);

  assert.deepEqual(problems, []);
  step('done');
}

describe('the Admin UI in a browser', () => {
  test('served by moonwire at /admin: log in, see the sockets and rooms, disconnect a socket', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t);
    const problems = [];
    const page = await openUI(browser, `${srv.url}/admin/`, problems);
    await exercise(t, page, srv, problems);
  });

  test('from another origin (as the hosted UI is), allowed by cors.origin', T, async (t) => {
    // A static server for the UI's files, on a port of its own: another origin.
    const ui = http.createServer((req, res) => {
      const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
      const file = path.join(UI_DIR, rel);
      if (!file.startsWith(UI_DIR) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
        res.writeHead(404).end();
        return;
      }
      const type = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png' }[path.extname(file)];
      res.writeHead(200, { 'content-type': type ?? 'application/octet-stream' }).end(fs.readFileSync(file));
    });
    await new Promise((resolve) => ui.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => { ui.closeAllConnections(); ui.close(resolve); }));
    const origin = `http://localhost:${ui.address().port}`;

    const browser = await launch(t);
    const srv = await start(t, { ADMIN_CORS: origin });
    const problems = [];
    const page = await openUI(browser, `${origin}/`, problems);
    await exercise(t, page, srv, problems);
  });
});
