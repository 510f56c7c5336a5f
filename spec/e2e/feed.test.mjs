// End-to-end tests of the example app's live feed (scripts/feed.lua): the
// publish endpoint and its token, the JSON list, the /feed page, and the
// items pushed live on the "/feed" namespace to the real socket.io-client.
//
// Each test starts the repository's app with its own fresh database and
// FEED_TOKEN=test-token (unless it is about the token being unset).
//
// Run from spec/e2e/ with `node --test feed.test.mjs`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { request } from './helpers.mjs';
import { client, connect, connected, record, setup, until } from './sio.mjs';

const T = { timeout: 20_000 };
const TOKEN = 'test-token';
const ENV = { FEED_TOKEN: TOKEN };

// ==========================================================================
// helpers

/**
 * POSTs body to /api/feed as JSON (a string is sent as it is), with the
 * right token unless `authorization` says otherwise (null: no header).
 */
function publish(base, body, { authorization = `Bearer ${TOKEN}`, type = 'application/json' } = {}) {
  const headers = { 'content-type': type };
  if (authorization !== null) headers.authorization = authorization;
  return request(base, '/api/feed', {
    method: 'POST',
    headers,
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

/** Publishes an item that must be accepted; resolves the stored item. */
async function published(base, body) {
  const res = await publish(base, body);
  assert.equal(res.status, 201, `publish ${JSON.stringify(body)}: ${res.body}`);
  return JSON.parse(res.body);
}

/** GET /api/feed (with a query string); resolves the parsed list after checking the answer. */
async function list(base, query = '') {
  const res = await request(base, `/api/feed${query}`);
  assert.equal(res.status, 200, res.body);
  assert.match(res.headers['content-type'], /^application\/json/);
  const items = JSON.parse(res.body);
  assert.ok(Array.isArray(items), `a JSON array, got ${res.body}`);
  return items;
}

function assertUnauthorized(res, message) {
  assert.equal(res.status, 401, res.body);
  assert.match(res.headers['www-authenticate'] ?? '', /^Bearer\b/);
  assert.match(res.headers['content-type'], /^application\/json/);
  const body = JSON.parse(res.body);
  assert.equal(typeof body.error, 'string');
  if (message) assert.match(body.error, message);
}

/**
 * The items of a rendered /feed page, in page order: { id, tag, hidden,
 * text (as written in the HTML, escapes included) }.
 */
function itemsOf(html) {
  const re = /<li class="feed-item" data-id="(\d+)" data-tag="([^"]*)"( hidden)?>\s*<p class="feed-text">([^]*?)<\/p>/g;
  return [...html.matchAll(re)].map((m) => ({ id: Number(m[1]), tag: m[2], hidden: Boolean(m[3]), text: m[4] }));
}

/** The tag links above the items: { filter, current }. */
function filtersOf(html) {
  const nav = /<nav id="feed-tags"[^>]*>([^]*?)<\/nav>/.exec(html);
  assert.ok(nav, 'the page has the tag links');
  return [...nav[1].matchAll(/<a href="[^"]*" data-filter="([^"]*)"( aria-current="true")?>/g)]
    .map((m) => ({ filter: m[1], current: Boolean(m[2]) }));
}

// ==========================================================================

describe('POST /api/feed: the token', () => {
  test('without an Authorization header: 401 with WWW-Authenticate: Bearer, and nothing is stored', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    assertUnauthorized(await publish(srv.url, { text: 'hello' }, { authorization: null }), /Authorization: Bearer/);
    assert.deepEqual(await list(srv.url), []);
  });

  test('a wrong token: 401 (other bytes, a prefix, a longer one, an empty one)', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    for (const token of ['test-tokem', 'xest-token', 'test-toke', 'test-token2', 'TEST-TOKEN']) {
      assertUnauthorized(await publish(srv.url, { text: 'hello' }, { authorization: `Bearer ${token}` }), /not valid/);
    }
    assertUnauthorized(await publish(srv.url, { text: 'hello' }, { authorization: 'Bearer' }));
    assertUnauthorized(await publish(srv.url, { text: 'hello' }, { authorization: 'Bearer test-token test-token' }));
    assert.deepEqual(await list(srv.url), []);
  });

  test('another scheme than Bearer: 401, even with the right token', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const basic = `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}`;
    for (const authorization of [basic, `Token ${TOKEN}`, TOKEN, `Bearer: ${TOKEN}`]) {
      assertUnauthorized(await publish(srv.url, { text: 'hello' }, { authorization }), /Authorization: Bearer/);
    }
    assert.deepEqual(await list(srv.url), []);
  });

  for (const [name, env] of [['empty', { FEED_TOKEN: '' }], ['not in the environment', { FEED_TOKEN: undefined }]]) {
    test(`FEED_TOKEN ${name}: every publish gets 401 saying it is not set, logged once at start`, T, async (t) => {
      const srv = await setup(t, { env });
      await until(() => srv.stderr().includes('FEED_TOKEN is not set'), 'the warning on stderr');
      for (const authorization of [null, 'Bearer ', 'Bearer x', 'Bearer undefined']) {
        assertUnauthorized(await publish(srv.url, { text: 'hello' }, { authorization }), /FEED_TOKEN is not set/);
      }
      assert.deepEqual(await list(srv.url), []);
      assert.equal(srv.stderr().split('FEED_TOKEN is not set').length - 1, 1, srv.stderr());
      const page = await request(srv.url, '/feed');
      assert.match(page.body, /FEED_TOKEN is not set on this server/);
    });
  }
});

describe('POST /api/feed: the body', () => {
  test('400 when the body is not a JSON object', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    for (const body of ['text=hello', '{"text": "hello"', '[]', '["hello"]', '"hello"', '42', 'null', '']) {
      const res = await publish(srv.url, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.body}`);
      assert.match(JSON.parse(res.body).error, /JSON object/);
    }
    // A JSON object sent as a form is not taken for JSON.
    const form = await publish(srv.url, { text: 'hello' }, { type: 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 400, form.body);
    assert.deepEqual(await list(srv.url), []);
  });

  test('422 with a message for each field that is wrong', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const cases = [
      [{}, ['text']],
      [{ tag: 'news' }, ['text']],
      [{ text: '' }, ['text']],
      [{ text: ' \n\t ' }, ['text']],
      [{ text: null }, ['text']],
      [{ text: 42 }, ['text']],
      [{ text: ['hello'] }, ['text']],
      [{ text: { hello: 1 } }, ['text']],
      [{ text: 'é'.repeat(501) }, ['text']],
      [{ text: 'a\u0000b' }, ['text']],
      [{ text: 'a\u001bb' }, ['text']],
      [{ text: 'hello', tag: 'two words' }, ['tag']],
      [{ text: 'hello', tag: 'x'.repeat(33) }, ['tag']],
      [{ text: 'hello', tag: '#' }, ['tag']],
      [{ text: 'hello', tag: '##news' }, ['tag']],
      [{ text: 'hello', tag: 'café' }, ['tag']],
      [{ text: 'hello', tag: '<b>' }, ['tag']],
      [{ text: 'hello', tag: 12 }, ['tag']],
      [{ text: 'hello', tag: ['news'] }, ['tag']],
      [{ text: '', tag: 'a.b' }, ['tag', 'text']],
    ];
    for (const [body, fields] of cases) {
      const res = await publish(srv.url, body);
      assert.equal(res.status, 422, `${JSON.stringify(body)}: ${res.body}`);
      const { errors } = JSON.parse(res.body);
      assert.deepEqual(Object.keys(errors).sort(), fields, JSON.stringify(body));
      for (const field of fields) assert.equal(typeof errors[field], 'string');
    }
    // Bytes that are not UTF-8 inside a JSON string.
    const bad = await publish(srv.url, Buffer.from('{"text":"a\xffb"}', 'latin1'));
    assert.equal(bad.status, 422, bad.body);
    assert.match(JSON.parse(bad.body).errors.text, /UTF-8/);
    assert.deepEqual(await list(srv.url), []);
  });

  test('201 with the stored item: text trimmed, tag lower-cased without its #, null when absent', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const res = await publish(srv.url, { text: '  Deploy finished \n', tag: ' #Ops ' });
    assert.equal(res.status, 201, res.body);
    assert.match(res.headers['content-type'], /^application\/json/);
    const item = JSON.parse(res.body);
    assert.deepEqual(Object.keys(item).sort(), ['created_at', 'id', 'tag', 'text']);
    assert.ok(Number.isInteger(item.id) && item.id > 0, `id ${item.id}`);
    assert.equal(item.text, 'Deploy finished');
    assert.equal(item.tag, 'ops');
    assert.match(item.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(Math.abs(Date.parse(item.created_at) - Date.now()) < 5 * 60_000, `created_at ${item.created_at} is now`);

    assert.equal((await published(srv.url, { text: 'no tag' })).tag, null);
    assert.equal((await published(srv.url, { text: 'null tag', tag: null })).tag, null);
    assert.equal((await published(srv.url, { text: 'blank tag', tag: '  ' })).tag, null);

    // The limits themselves are allowed; the scheme's name is case-insensitive.
    const longest = 'é'.repeat(500);
    assert.equal((await published(srv.url, { text: longest, tag: `a-${'B_'.repeat(15)}` })).text, longest);
    const res2 = await publish(srv.url, { text: 'shout', tag: 'X' }, { authorization: `BEARER ${TOKEN}` });
    assert.equal(res2.status, 201, res2.body);

    const stored = await list(srv.url);
    assert.equal(stored.length, 6);
    assert.deepEqual(stored.at(-1), item);
    assert.equal(stored[1].tag, `a-${'b_'.repeat(15)}`);
  });
});

describe('live items on the "/feed" namespace', () => {
  test('two connected clients both receive the published item as \'item\'', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const one = client(srv, '/feed');
    const two = client(srv, '/feed', { transports: ['websocket'] });
    const gotOne = record(one, 'item');
    const gotTwo = record(two, 'item');
    await Promise.all([connected(one), connected(two)]);

    const item = await published(srv.url, { text: 'Hello, <b>everyone</b>', tag: 'news' });
    await until(() => gotOne.length === 1 && gotTwo.length === 1, "the 'item' on both clients");
    assert.deepEqual(gotOne, [[item]]);
    assert.deepEqual(gotTwo, [[item]]);

    const untagged = await published(srv.url, { text: 'second' });
    await until(() => gotOne.length === 2 && gotTwo.length === 2, "the second 'item' on both clients");
    assert.deepEqual(gotOne[1], [untagged]);
    assert.equal(gotTwo[1][0].tag, null);
  });

  test('refused publishes push nothing', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const socket = client(srv, '/feed');
    const got = record(socket, 'item');
    await connected(socket);
    assert.equal((await publish(srv.url, { text: 'no token' }, { authorization: null })).status, 401);
    assert.equal((await publish(srv.url, { text: '' })).status, 422);
    assert.equal((await publish(srv.url, '[1]')).status, 400);
    // Items reach a client in order: once this one is in, anything sent
    // before it would be too.
    const item = await published(srv.url, { text: 'accepted' });
    await until(() => got.length > 0, "an 'item'");
    assert.deepEqual(got, [[item]]);
  });

  test('a client connecting with auth.after first gets what it missed, oldest first', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const first = await published(srv.url, { text: 'one' });
    const second = await published(srv.url, { text: 'two', tag: 'b' });
    const third = await published(srv.url, { text: 'three' });

    const late = client(srv, '/feed', { auth: { after: first.id } });
    const fresh = client(srv, '/feed');
    const gotLate = record(late, 'item');
    const gotFresh = record(fresh, 'item');
    await Promise.all([connected(late), connected(fresh)]);

    const fourth = await published(srv.url, { text: 'four' });
    await until(() => gotLate.length === 3 && gotFresh.length === 1, 'the items');
    assert.deepEqual(gotLate, [[second], [third], [fourth]]);
    assert.deepEqual(gotFresh, [[fourth]]); // no auth.after: only what is new
  });

  test('auth.after that is not a whole number is ignored', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    await published(srv.url, { text: 'old' });
    const sockets = [{ after: 'x' }, { after: -1 }, { after: 0.5 }, { after: null }].map((auth) => client(srv, '/feed', { auth }));
    const got = sockets.map((s) => record(s, 'item'));
    await Promise.all(sockets.map((s) => connected(s)));
    const item = await published(srv.url, { text: 'new' });
    await until(() => got.every((g) => g.length > 0), "the 'item' on every client");
    for (const g of got) assert.deepEqual(g, [[item]]);
  });
});

describe('GET /api/feed', () => {
  test('an empty feed is [] (not {})', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const res = await request(srv.url, '/api/feed');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^application\/json/);
    assert.equal(res.body, '[]');
    assert.equal((await request(srv.url, '/api/feed?tag=none')).body, '[]');
  });

  test('newest first, the last 50', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    for (let i = 1; i <= 53; i++) await published(srv.url, { text: `item ${i}` });
    const items = await list(srv.url);
    assert.equal(items.length, 50);
    assert.deepEqual(items.map((item) => item.text), Array.from({ length: 50 }, (_, i) => `item ${53 - i}`));
    assert.ok(items.every((item, i) => i === 0 || item.id < items[i - 1].id), 'ids decrease');
  });

  test('?tag= keeps that tag only, whatever its case or a leading #; a tag that cannot be one gets 422', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const a = await published(srv.url, { text: 'a', tag: 'news' });
    await published(srv.url, { text: 'b', tag: 'ops' });
    const c = await published(srv.url, { text: 'c', tag: 'NEWS' });
    await published(srv.url, { text: 'd' });
    for (const query of ['?tag=news', '?tag=News', '?tag=%23news']) {
      assert.deepEqual(await list(srv.url, query), [c, a], query);
    }
    assert.equal((await list(srv.url, '?tag=')).length, 4);
    const bad = await request(srv.url, '/api/feed?tag=two%20words');
    assert.equal(bad.status, 422);
    assert.equal(typeof JSON.parse(bad.body).errors.tag, 'string');
  });
});

describe('the /feed page', () => {
  test('renders the items newest first, with HTML shown as text', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const empty = await request(srv.url, '/feed');
    assert.equal(empty.status, 200);
    assert.deepEqual(itemsOf(empty.body), []);
    assert.match(empty.body, /<p id="feed-empty" class="empty">Nothing has been published yet\.<\/p>/);

    const older = await published(srv.url, { text: '<script>alert(1)</script>', tag: 'xss' });
    const newer = await published(srv.url, { text: '<b>bold</b> & "quoted"' });
    const res = await request(srv.url, '/feed');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html/);
    assert.deepEqual(itemsOf(res.body), [
      { id: newer.id, tag: '', hidden: false, text: '&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;' },
      { id: older.id, tag: 'xss', hidden: false, text: '&lt;script&gt;alert(1)&lt;/script&gt;' },
    ]);
    assert.doesNotMatch(res.body, /<b>bold/);
    assert.doesNotMatch(res.body, /<script>alert/);
    assert.match(res.body, /<p id="feed-empty" class="empty" hidden>/);
    assert.deepEqual(filtersOf(res.body), [{ filter: '', current: true }, { filter: 'xss', current: false }]);
    assert.match(res.body, new RegExp(`<time datetime="${older.created_at}">`));
    // How to publish, in one line, and the scripts that make the page live.
    assert.match(res.body, /curl -H "Authorization: Bearer \$FEED_TOKEN"/);
    assert.doesNotMatch(res.body, /FEED_TOKEN is not set/);
    assert.match(res.body, /<script src="\/socket.io\/socket.io.js"><\/script>/);
    assert.match(res.body, /<script src="\/feed.js"><\/script>/);
  });

  test('?tag= renders with that filter chosen: other items are there but hidden', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    // One item tagged "rare", then more than a page of others: the filtered
    // page still has it, the unfiltered one does not.
    const rare = await published(srv.url, { text: 'rare one', tag: 'rare' });
    for (let i = 1; i <= 50; i++) await published(srv.url, { text: `other ${i}`, tag: i % 2 ? 'odd' : 'even' });

    const all = await request(srv.url, '/feed');
    const allItems = itemsOf(all.body);
    assert.equal(allItems.length, 50);
    assert.ok(!allItems.some((item) => item.id === rare.id));
    assert.ok(allItems.every((item) => !item.hidden));

    const res = await request(srv.url, '/feed?tag=%23Rare');
    assert.equal(res.status, 200);
    const items = itemsOf(res.body);
    assert.equal(items.length, 51);
    assert.deepEqual(items.filter((item) => !item.hidden), [{ id: rare.id, tag: 'rare', hidden: false, text: 'rare one' }]);
    assert.deepEqual(filtersOf(res.body), [
      { filter: '', current: false },
      { filter: 'even', current: false },
      { filter: 'odd', current: false },
      { filter: 'rare', current: true },
    ]);

    // A tag nobody used yet: chosen, and the page says there is nothing.
    const none = await request(srv.url, '/feed?tag=later');
    assert.equal(none.status, 200);
    assert.ok(itemsOf(none.body).every((item) => item.hidden));
    assert.ok(filtersOf(none.body).some((f) => f.filter === 'later' && f.current));
    assert.match(none.body, /<p id="feed-empty" class="empty">Nothing tagged #later yet\.<\/p>/);
  });

  test('?tag= that cannot be a tag answers 404', T, async (t) => {
    const srv = await setup(t, { env: ENV });
    const res = await request(srv.url, '/feed?tag=%3Cb%3E');
    assert.equal(res.status, 404);
    assert.doesNotMatch(res.body, /<b>/);
  });
});
