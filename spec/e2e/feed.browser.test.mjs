// The live feed page (/feed) in headless Chromium: items published over HTTP
// with the token appear at the top of open pages without a reload, and the
// tag filter shows only the chosen tag, new items included.
//
// Skipped, with a message saying so, only when /usr/bin/chromium is missing
// (`make deps` installs it). Run from spec/e2e/ with
// `node --test feed.browser.test.mjs`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SKIP, T, WAIT, launch, openPage } from './browser.mjs';
import { request, serve } from './helpers.mjs';

const TOKEN = 'test-token';
const ENV = { FEED_TOKEN: TOKEN };

if (SKIP) console.log(`# browser tests skipped: ${SKIP}`);

/** Publishes an item with the token; resolves the stored item. */
async function publish(base, item) {
  const res = await request(base, '/api/feed', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(item),
  });
  assert.equal(res.status, 201, res.body);
  return JSON.parse(res.body);
}

/** Opens /feed (or another address) and waits until the page says it is live. */
async function openFeed(browser, url, problems, options) {
  const page = await openPage(browser, url, problems, options);
  await page.locator('#feed-status[data-state="live"]').waitFor({ timeout: WAIT });
  return page;
}

/** The texts of the items a reader can see, top to bottom. */
function visibleTexts(page) {
  return page.$$eval('#feed-items .feed-item', (items) =>
    items.filter((li) => li.checkVisibility()).map((li) => li.querySelector('.feed-text').textContent));
}

/** The texts of every item in the page, shown or hidden, top to bottom. */
function allTexts(page) {
  return page.$$eval('#feed-items .feed-text', (texts) => texts.map((p) => p.textContent));
}

/** Waits until the first item a reader sees has this text. */
function waitForTop(page, text) {
  return page.waitForFunction((t) => {
    const first = [...document.querySelectorAll('#feed-items .feed-item')].find((li) => li.checkVisibility());
    return first && first.querySelector('.feed-text').textContent === t;
  }, text, { timeout: WAIT });
}

/** Waits until an item with this text is in the page (shown or not). */
function waitForItem(page, text) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll('#feed-items .feed-text')].some((p) => p.textContent === t),
    text,
    { timeout: WAIT },
  );
}

describe('the live feed in Chromium', () => {
  test('an item published with the token appears at the top of every open /feed page without a reload', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t, { env: ENV });
    await publish(srv.url, { text: 'first', tag: 'news' });
    await publish(srv.url, { text: 'second' });

    const problems = [];
    const one = await openFeed(browser, `${srv.url}/feed`, problems);
    const two = await openFeed(browser, `${srv.url}/feed`, problems, { context: true });
    assert.deepEqual(await visibleTexts(one), ['second', 'first']);

    const html = '<img src=x onerror="window.pwned=1">Hello & welcome';
    const item = await publish(srv.url, { text: html, tag: 'Ops' });
    for (const page of [one, two]) {
      await waitForTop(page, html);
      assert.deepEqual(await visibleTexts(page), [html, 'second', 'first']);
      // Shown as text: no element was made from it.
      assert.equal(await page.locator('#feed-items img').count(), 0);
      assert.equal(await page.evaluate(() => window.pwned), undefined);
      // Its tag, a link to filter by it, and a time in words.
      const top = page.locator('#feed-items .feed-item').first();
      assert.equal(await top.locator('.feed-tag').textContent(), '#ops');
      assert.equal(await top.locator('time').getAttribute('datetime'), item.created_at);
      assert.match(await top.locator('time').textContent(), /\d/);
      assert.doesNotMatch(await top.locator('time').textContent(), /T\d\d:/);
      // The new tag joins the filter links.
      assert.equal(await page.locator('#feed-tags a[data-filter="ops"]').count(), 1);
    }
    assert.equal(await one.locator('#feed-empty').isVisible(), false);
    assert.deepEqual(problems, []);
  });

  test('with a tag chosen, an item of another tag is not shown and one of that tag is', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t, { env: ENV });
    await publish(srv.url, { text: 'news 1', tag: 'news' });
    await publish(srv.url, { text: 'ops 1', tag: 'ops' });
    await publish(srv.url, { text: 'plain 1' });

    const problems = [];
    const page = await openFeed(browser, `${srv.url}/feed`, problems);
    assert.deepEqual(await visibleTexts(page), ['plain 1', 'ops 1', 'news 1']);

    // Choosing a tag filters in place and puts it in the address.
    await page.locator('#feed-tags a[data-filter="news"]').click();
    assert.deepEqual(await visibleTexts(page), ['news 1']);
    assert.equal(new URL(page.url()).search, '?tag=news');
    assert.equal(await page.locator('#feed-tags a[data-filter="news"]').getAttribute('aria-current'), 'true');

    // Items of another tag (or none) arrive but stay hidden...
    await publish(srv.url, { text: 'ops 2', tag: 'ops' });
    await publish(srv.url, { text: 'plain 2' });
    // ...and one of the chosen tag shows at the top. Items arrive in order, so
    // by the time it is there the two before it are in the page too.
    await publish(srv.url, { text: 'news 2', tag: 'news' });
    await waitForTop(page, 'news 2');
    assert.deepEqual(await visibleTexts(page), ['news 2', 'news 1']);
    assert.deepEqual(await allTexts(page), ['news 2', 'plain 2', 'ops 2', 'plain 1', 'ops 1', 'news 1']);

    // "all" shows them again, newest first.
    await page.locator('#feed-tags a[data-filter=""]').click();
    assert.deepEqual(await visibleTexts(page), ['news 2', 'plain 2', 'ops 2', 'plain 1', 'ops 1', 'news 1']);
    assert.equal(new URL(page.url()).search, '');

    // The tag on an item filters too, and Back returns to the previous filter.
    await page.locator('#feed-items .feed-tag', { hasText: '#ops' }).first().click();
    assert.deepEqual(await visibleTexts(page), ['ops 2', 'ops 1']);
    await page.goBack();
    await page.waitForFunction(() => location.search === '', null, { timeout: WAIT });
    assert.deepEqual((await visibleTexts(page)).length, 6);
    assert.deepEqual(problems, []);
  });

  test('a page that lost its connection gets the items it missed when it is back', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t, { env: ENV });
    await publish(srv.url, { text: 'before' });

    const problems = [];
    const page = await openFeed(browser, `${srv.url}/feed`, problems);
    await page.evaluate(() => socket.disconnect());
    assert.equal(await page.locator('#feed-status').textContent(), 'Reconnecting…');

    await publish(srv.url, { text: 'missed 1', tag: 'news' });
    await publish(srv.url, { text: 'missed 2' });
    await page.evaluate(() => socket.connect());
    await waitForTop(page, 'missed 2');
    assert.deepEqual(await visibleTexts(page), ['missed 2', 'missed 1', 'before']);
    assert.equal(await page.locator('#feed-status').textContent(), 'Live');
    assert.deepEqual(problems, []);
  });

  test('a linked filtered view (/feed?tag=x) shows that tag only, and new items of it live', T, async (t) => {
    const browser = await launch(t);
    const srv = await serve(t, { env: ENV });
    await publish(srv.url, { text: 'ops 1', tag: 'ops' });
    await publish(srv.url, { text: 'news 1', tag: 'news' });

    const problems = [];
    const page = await openFeed(browser, `${srv.url}/feed?tag=%23News`, problems);
    assert.deepEqual(await visibleTexts(page), ['news 1']);

    // A tag nobody has used: the page says so until an item of it arrives.
    const later = await openFeed(browser, `${srv.url}/feed?tag=later`, problems);
    assert.deepEqual(await visibleTexts(later), []);
    assert.equal(await later.locator('#feed-empty').textContent(), 'Nothing tagged #later yet.');
    assert.equal(await later.locator('#feed-empty').isVisible(), true);

    await publish(srv.url, { text: 'ops 2', tag: 'ops' });
    await publish(srv.url, { text: 'later 1', tag: 'later' });
    await publish(srv.url, { text: 'news 2', tag: 'news' });
    await waitForTop(page, 'news 2');
    await waitForTop(later, 'later 1');
    assert.deepEqual(await visibleTexts(page), ['news 2', 'news 1']);
    await waitForItem(later, 'news 2');
    assert.deepEqual(await visibleTexts(later), ['later 1']);
    assert.equal(await later.locator('#feed-empty').isVisible(), false);
    assert.deepEqual(problems, []);
  });
});
