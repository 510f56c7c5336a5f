// The example app's chat page in a real browser: headless Chromium driven by
// playwright-core (see browser.mjs), several pages at once, each in a
// context of its own (as separate people would be), loading the page,
// /socket.io/socket.io.js and /chat.js from build/moonwire.
//
// Run from spec/e2e/ with `node --test chat.browser.test.mjs`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { io as ioClient } from 'socket.io-client';

import { T, WAIT, launch, openPage } from './browser.mjs';
import { serve } from './helpers.mjs';

/** Starts the app; "user left" is told at once unless grace (ms) is given. */
function start(t, { grace = 0 } = {}) {
  return serve(t, { env: { CHAT_LEAVE_GRACE_MS: String(grace) } });
}

/** Opens the chat page in a new context and waits until its socket is connected. */
async function openChat(browser, srv, problems) {
  const page = await openPage(browser, `${srv.url}/`, problems, { context: true });
  await page.waitForFunction(() => window.socket && window.socket.connected, null, { timeout: WAIT });
  return page;
}

/** Picks a nickname with the nickname form and waits until the chat form shows. */
async function join(page, nickname) {
  await page.fill('#nickname', nickname);
  await page.press('#nickname', 'Enter');
  await page.waitForSelector('#form', { state: 'visible', timeout: WAIT });
  assert.equal(await page.textContent('#me-name'), nickname);
}

/** Types text into #input and sends it with Enter. */
async function say(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

/** What #messages shows: each message as { author, text, state, tag, error, mine }, a notice as its text. */
function itemsOf(page) {
  return page.$$eval('#messages li', (items) => items.map((li) => {
    if (li.classList.contains('notice')) return li.textContent;
    const text = (sel) => li.querySelector(sel)?.textContent ?? null;
    return {
      author: text('.message-author'),
      text: text('.message-text'),
      state: li.dataset.state,
      tag: text('.message-tag'),
      error: text('.message-error'),
      mine: li.classList.contains('mine'),
    };
  }));
}

/** The messages only (no notices). */
async function messagesOf(page) {
  return (await itemsOf(page)).filter((item) => typeof item === 'object');
}

/** Waits until #messages has a message from author with text (and state, when given). */
function waitForMessage(page, author, text, state) {
  return page.waitForFunction(([a, t, s]) => [...document.querySelectorAll('#messages li.message')].some((li) =>
    li.querySelector('.message-author').textContent === a
    && li.querySelector('.message-text').textContent === t
    && (s === null || li.dataset.state === s)), [author, text, state ?? null], { timeout: WAIT });
}

/** Waits until #messages has a notice with exactly this text. */
function waitForNotice(page, text) {
  return page.waitForFunction((t) => [...document.querySelectorAll('#messages li.notice')]
    .some((li) => li.textContent === t), text, { timeout: WAIT });
}

/** The names the online list shows. */
function onlineOf(page) {
  return page.$$eval('#online li', (items) => items.map((li) => li.textContent));
}

function waitForOnline(page, names) {
  return page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('#online li')]
    .map((li) => li.textContent)) === JSON.stringify(want), names, { timeout: WAIT });
}

// ==========================================================================
describe('the chat page in Chromium', () => {
  test('two people pick nicknames and chat: signed messages, each shown once, delivered after the ack', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t);
    const problems = [];
    const ann = await openChat(browser, srv, problems);
    const bob = await openChat(browser, srv, problems);

    // The nickname form comes first; the message form shows once a nickname is taken.
    assert.equal(await ann.isVisible('#nickname-form'), true);
    assert.equal(await ann.isVisible('#form'), false);
    await join(ann, 'ann');
    assert.equal(await ann.isVisible('#nickname-form'), false);
    await join(bob, 'bob');
    await waitForNotice(ann, 'bob joined');

    // Both names in both online lists.
    await waitForOnline(ann, ['ann (you)', 'bob']);
    await waitForOnline(bob, ['ann', 'bob (you)']);

    await say(ann, 'hello from ann');
    assert.equal(await ann.inputValue('#input'), '', 'the input is cleared after sending');
    await waitForMessage(ann, 'ann', 'hello from ann', 'delivered');
    await waitForMessage(bob, 'ann', 'hello from ann');

    await say(bob, 'and back from bob 👋');
    await waitForMessage(bob, 'bob', 'and back from bob 👋', 'delivered');
    await waitForMessage(ann, 'bob', 'and back from bob 👋');

    const annSees = [
      { author: 'ann', text: 'hello from ann', state: 'delivered', tag: null, error: null, mine: true },
      { author: 'bob', text: 'and back from bob 👋', state: 'delivered', tag: null, error: null, mine: false },
    ];
    assert.deepEqual(await messagesOf(ann), annSees);
    assert.deepEqual(await messagesOf(bob), annSees.map((m) => ({ ...m, mine: !m.mine })));
    assert.equal(await ann.textContent('#messages li.mine .message-state'), 'delivered');

    // Sent while disconnected: shown at once as "sending…", delivered (once)
    // when the connection is back and the ack comes.
    await ann.evaluate(() => window.socket.disconnect());
    await say(ann, 'written offline');
    await waitForMessage(ann, 'ann', 'written offline', 'pending');
    assert.equal(await ann.textContent('#messages li[data-state="pending"] .message-state'), 'sending…');
    await ann.evaluate(() => window.socket.connect());
    await waitForMessage(ann, 'ann', 'written offline', 'delivered');
    await waitForMessage(bob, 'ann', 'written offline');
    await say(ann, 'and online again');
    await waitForMessage(bob, 'ann', 'and online again');
    assert.deepEqual((await messagesOf(bob)).map((m) => m.text),
      ['hello from ann', 'and back from bob 👋', 'written offline', 'and online again']);
    assert.deepEqual((await messagesOf(ann)).map((m) => m.text),
      ['hello from ann', 'and back from bob 👋', 'written offline', 'and online again']);

    // The page keeps auth.serverOffset at the newest id it has, from what it
    // received (bob) and from the acks of its own messages (ann)...
    const newest = (page) => page.$$eval('#messages li[data-id]', (items) => Math.max(...items.map((li) => Number(li.dataset.id))));
    await waitForMessage(ann, 'ann', 'and online again', 'delivered');
    assert.equal(await bob.evaluate(() => window.socket.auth.serverOffset), await newest(bob));
    assert.equal(await ann.evaluate(() => window.socket.auth.serverOffset), await newest(ann));
    // ... and even when a reconnection replays everything, nothing shows twice.
    await bob.evaluate(() => { window.socket.auth.serverOffset = 0; window.socket.disconnect().connect(); });
    await bob.waitForFunction(() => window.socket.connected, null, { timeout: WAIT });
    await say(ann, 'after the replay');
    await waitForMessage(bob, 'ann', 'after the replay');
    assert.deepEqual((await messagesOf(bob)).map((m) => m.text),
      ['hello from ann', 'and back from bob 👋', 'written offline', 'and online again', 'after the replay']);

    // bob goes: ann is told, and her list shows her alone.
    await bob.close();
    await waitForNotice(ann, 'bob left');
    await waitForOnline(ann, ['ann (you)']);
    assert.deepEqual(problems, [], 'no errors in the pages');
  });

  test('one page sees the other typing, and it clears when the message is sent', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t);
    const problems = [];
    const ann = await openChat(browser, srv, problems);
    const bob = await openChat(browser, srv, problems);
    await join(ann, 'ann');
    await join(bob, 'bob');

    await ann.type('#input', 'hel');
    await bob.waitForFunction(() => document.getElementById('typing').textContent === 'ann is typing…', null, { timeout: WAIT });
    assert.equal(await ann.textContent('#typing'), '', 'ann is not shown her own typing');

    // A second person typing (a socket.io client from Node, as a page would).
    const cy = ioClient(srv.url, { forceNew: true, reconnection: false });
    t.after(() => cy.disconnect());
    assert.equal((await cy.timeout(WAIT).emitWithAck('nickname', 'cy')).nickname, 'cy');
    cy.emit('typing', true);
    await bob.waitForFunction(() => document.getElementById('typing').textContent === 'ann and cy are typing…', null, { timeout: WAIT });

    // Sending clears ann's.
    await ann.type('#input', 'lo');
    await ann.press('#input', 'Enter');
    await waitForMessage(bob, 'ann', 'hello');
    await bob.waitForFunction(() => document.getElementById('typing').textContent === 'cy is typing…', null, { timeout: WAIT });

    // A message from cy clears cy's, even without a 'typing' false.
    await cy.timeout(WAIT).emitWithAck('chat message', 'hi from cy', 'cy-1');
    await waitForMessage(bob, 'cy', 'hi from cy');
    assert.equal(await bob.textContent('#typing'), '');
    cy.disconnect();
    assert.deepEqual(problems, []);
  });

  test('a private message from A appears in B, marked private, and not in C', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t);
    const problems = [];
    const [ann, bob, cy] = [await openChat(browser, srv, problems), await openChat(browser, srv, problems), await openChat(browser, srv, problems)];
    await join(ann, 'ann');
    await join(bob, 'bob');
    await join(cy, 'cy');
    await waitForOnline(ann, ['ann (you)', 'bob', 'cy']);

    // Clicking a name in the online list picks the recipient.
    await ann.click('#online button:text-is("bob")');
    assert.equal(await ann.inputValue('#recipient'), 'bob');
    await say(ann, 'psst, bob');
    await waitForMessage(ann, 'ann', 'psst, bob', 'delivered');
    await waitForMessage(bob, 'ann', 'psst, bob');
    assert.deepEqual((await messagesOf(ann)).at(-1),
      { author: 'ann', text: 'psst, bob', state: 'delivered', tag: 'private to bob', error: null, mine: true });
    assert.deepEqual((await messagesOf(bob)).at(-1),
      { author: 'ann', text: 'psst, bob', state: 'delivered', tag: 'private from', error: null, mine: false });

    // Back to everyone: cy gets this one, and by then would have had the private one.
    await ann.selectOption('#recipient', '');
    await say(ann, 'hello all');
    await waitForMessage(cy, 'ann', 'hello all');
    assert.deepEqual((await messagesOf(cy)).map((m) => m.text), ['hello all']);

    // Writing to someone who has gone: the error shows on the message.
    await cy.close();
    await waitForOnline(ann, ['ann (you)', 'bob']);
    await ann.selectOption('#recipient', 'bob');
    await bob.close();
    await waitForOnline(ann, ['ann (you)']);
    assert.equal(await ann.inputValue('#recipient'), 'bob', 'the chosen person stays chosen');
    await say(ann, 'are you there?');
    await waitForMessage(ann, 'ann', 'are you there?', 'failed');
    assert.match((await messagesOf(ann)).at(-1).error, /Nobody called bob is online/);
    assert.deepEqual(problems, []);
  });

  test('HTML in a message and in a nickname is shown as text', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t);
    const problems = [];
    const one = await openChat(browser, srv, problems);
    const two = await openChat(browser, srv, problems);
    const name = '<i>ann</i>';
    const html = '<img src=x onerror="window.pwned=1"><b>bold</b>';
    await join(one, name);
    await join(two, 'bob');
    await say(one, html);
    await waitForMessage(two, name, html);
    await waitForOnline(two, [name, 'bob (you)']);
    assert.equal(await two.$$eval('#messages i, #messages b, #messages img, #online i', (els) => els.length), 0,
      'no elements made from the text');
    assert.equal(await two.evaluate(() => window.pwned), undefined);
    assert.deepEqual(problems, []);
  });

  test('the page upgrades to websocket; refusals show: a bad nickname, an over-long message; an empty one is not sent', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t);
    const problems = [];
    const page = await openChat(browser, srv, problems);
    await page.waitForFunction(() => window.socket.io.engine.transport.name === 'websocket', null, { timeout: WAIT });

    await page.fill('#nickname', 'x'.repeat(33));
    await page.press('#nickname', 'Enter');
    await page.waitForSelector('#nickname-error', { state: 'visible', timeout: WAIT });
    assert.match(await page.textContent('#nickname-error'), /at most 32 characters/);
    assert.equal(await page.isVisible('#form'), false);
    await join(page, 'ann');

    await say(page, '   ');
    await say(page, 'x'.repeat(2001));
    await waitForMessage(page, 'ann', 'x'.repeat(2001), 'failed');
    const [failed] = await messagesOf(page);
    assert.match(failed.error, /at most 2000 characters/);
    assert.equal(await page.textContent('#messages li.mine .message-state'), 'not sent');
    await say(page, 'short enough');
    await waitForMessage(page, 'ann', 'short enough', 'delivered');
    assert.equal((await messagesOf(page)).length, 2, 'the blank message was not sent');
    assert.deepEqual(problems, []);
  });

  test('a reload keeps the nickname, shows the history once, and makes no leave/join notices', T, async (t) => {
    const browser = await launch(t);
    const srv = await start(t, { grace: 10_000 });
    const problems = [];
    const ann = await openChat(browser, srv, problems);
    const bob = await openChat(browser, srv, problems);
    await join(ann, 'ann');
    await join(bob, 'bob');
    await say(ann, 'one');
    await say(bob, 'two');
    await waitForMessage(ann, 'bob', 'two');
    await waitForMessage(bob, 'ann', 'one', 'delivered');

    await bob.reload();
    await bob.waitForSelector('#form', { state: 'visible', timeout: WAIT });
    assert.equal(await bob.textContent('#me-name'), 'bob');
    await waitForMessage(bob, 'bob', 'two');
    await say(bob, 'three');
    await waitForMessage(ann, 'bob', 'three');
    assert.deepEqual((await messagesOf(bob)).map((m) => `${m.author}: ${m.text}`), ['ann: one', 'bob: two', 'bob: three']);
    assert.deepEqual((await itemsOf(ann)).filter((item) => typeof item === 'string'), ['You joined as ann.', 'bob joined'],
      'no "bob left" or second "bob joined" for a reload');
    assert.deepEqual(await onlineOf(ann), ['ann (you)', 'bob']);
    assert.deepEqual(problems, []);
  });
});
