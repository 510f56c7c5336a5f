// The example app's chat (scripts/chat.lua) as the real socket.io-client sees
// it: nicknames, messages with their ids, join/leave notices, who is online,
// typing, private messages, history and retries.
//
// Each test starts the repository's app on a free port with a fresh database
// and stops it at the end (setup from sio.mjs). Unless a test says otherwise,
// "user left" is announced at once (CHAT_LEAVE_GRACE_MS=0).
//
// Run from spec/e2e/ with `node --test chat.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { io as ioClient } from 'socket.io-client';

import { REPO_ROOT, assertCleanExit, delay, makeAppRoot, startServer, tempDbPath } from './helpers.mjs';
import { WAIT, ask, client, connect, connected, next, record, setup as setupWith, until } from './sio.mjs';

const T = { timeout: 20_000 };

/** Starts the app; "user left" is told at once unless grace (ms) is given. */
function setup(t, { grace = 0, root } = {}) {
  return setupWith(t, { root, env: { CHAT_LEAVE_GRACE_MS: String(grace) } });
}

/** The list of names in an 'online' event (none seen yet: []). */
function list(value) {
  if (value === undefined) return [];
  assert.ok(Array.isArray(value), `a list of names, even when empty: ${JSON.stringify(value)}`);
  return value;
}

/** A connected socket that picked nickname (its ack must succeed). */
async function join(srv, nickname, opts = {}) {
  const socket = await connect(srv, '/', opts);
  const answer = await ask(socket, 'nickname', nickname);
  assert.equal(answer.nickname, nickname, `nickname ${nickname}: ${JSON.stringify(answer)}`);
  return socket;
}

/**
 * A round trip through socket (an empty nickname, refused and harmless):
 * once it resolves, whatever the server sent to this socket before has
 * arrived. Used to show that something did NOT arrive.
 */
async function sync(socket) {
  const answer = await ask(socket, 'nickname', '');
  assert.ok(answer.error, 'the round trip answers with an error');
}

/** Sends a public message and resolves its ack. */
let offsets = 0;
function say(socket, text, clientOffset = `${socket.id}-${offsets++}`) {
  return ask(socket, 'chat message', text, clientOffset);
}

/** The messages a socket recorded as [msg, serverOffset], reduced to texts. */
function texts(got) {
  return got.map(([msg]) => msg.text);
}

/**
 * A socket that connects with auth (e.g. { serverOffset: 0 }) and records
 * its 'chat message' events from the first one on. Resolves after the
 * 'online' list every connection gets after its history.
 */
async function reader(srv, auth) {
  const socket = client(srv, '/', { auth });
  const got = record(socket, 'chat message');
  const online = next(socket, 'online');
  await connected(socket);
  await online;
  return { socket, got };
}

// ==========================================================================
describe('nicknames', () => {
  test('a nickname is accepted trimmed; empty, 33 characters and non-text are refused', T, async (t) => {
    const srv = await setup(t);
    const socket = await connect(srv);

    assert.deepEqual(await ask(socket, 'nickname', '  ann  '), { nickname: 'ann', online: ['ann'] });
    assert.equal(socket.connected, true);

    for (const bad of ['', '   ', 'x'.repeat(33), 42, null, { name: 'ann' }, ['ann'], 'two\nlines']) {
      const answer = await ask(socket, 'nickname', bad);
      assert.equal(typeof answer.error, 'string', `${JSON.stringify(bad)} is refused: ${JSON.stringify(answer)}`);
      assert.equal(answer.nickname, undefined);
    }
    // The refusals left the nickname as it was.
    assert.equal((await say(socket, 'still ann')).error, undefined);

    // 32 characters is fine, counted as characters: 32 "é" are 64 bytes.
    const other = await connect(srv);
    assert.equal((await ask(other, 'nickname', 'é'.repeat(32))).nickname, 'é'.repeat(32));
    assert.equal((await ask(other, 'nickname', 'x'.repeat(32))).nickname, 'x'.repeat(32));
  });

  test('a message before a nickname is refused and goes nowhere', T, async (t) => {
    const srv = await setup(t);
    const anon = await connect(srv);
    const bob = await join(srv, 'bob');
    const got = record(bob, 'chat message');

    const answer = await say(anon, 'hello?');
    assert.match(answer.error, /nickname/i);
    assert.equal(answer.id, undefined);
    await sync(bob);
    assert.deepEqual(got, []);
  });
});

// ==========================================================================
describe('messages', () => {
  test('a message reaches the others with its nickname and id, not the sender', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const bob = await join(srv, 'bob');
    const anon = await connect(srv); // a reader without a nickname reads too
    const [annGot, bobGot, anonGot] = [ann, bob, anon].map((s) => record(s, 'chat message'));

    const ack = await say(ann, '  hello everyone  ');
    assert.equal(typeof ack.id, 'number');
    assert.match(ack.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    await until(() => bobGot.length === 1 && anonGot.length === 1, 'bob and the reader to get the message');
    const expected = [{ id: ack.id, nickname: 'ann', text: 'hello everyone', at: ack.at }, ack.id];
    assert.deepEqual(bobGot[0], expected, 'the message is trimmed and signed; the second value is its id');
    assert.deepEqual(anonGot[0], expected);

    await sync(ann);
    assert.deepEqual(annGot, [], 'the sender does not get its own message back');

    // The next message has a larger id.
    const second = await say(bob, 'hi ann');
    assert.ok(second.id > ack.id);
    await until(() => annGot.length === 1, 'ann to get bob\'s message');
    assert.deepEqual(annGot[0][0].nickname, 'bob');
  });

  test('over-long, empty and non-text messages are refused and not stored', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const bob = await join(srv, 'bob');
    const bobGot = record(bob, 'chat message');

    for (const bad of ['x'.repeat(2001), '', '   \n\t ', 42, null, { text: 'hi' }]) {
      const answer = await say(ann, bad);
      assert.equal(typeof answer.error, 'string', `${JSON.stringify(bad).slice(0, 40)} is refused: ${JSON.stringify(answer)}`);
      assert.equal(answer.id, undefined);
    }
    const longest = '😀'.repeat(2000); // 2,000 characters (8,000 bytes) is fine
    const ok = await say(ann, longest);
    assert.equal(typeof ok.id, 'number', JSON.stringify(ok));

    await until(() => bobGot.length === 1, 'bob to get the accepted message');
    await sync(bob);
    assert.deepEqual(texts(bobGot), [longest], 'only the accepted message was sent');

    // A page opened now gets the history: only the accepted message is in it.
    const later = await reader(srv, { serverOffset: 0 });
    assert.deepEqual(later.got, [[{ id: ok.id, nickname: 'ann', text: longest, at: ok.at }, ok.id]]);
  });

  test('a retried clientOffset is stored once and both acks carry the same id', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const bob = await join(srv, 'bob');
    const bobGot = record(bob, 'chat message');

    const first = await say(ann, 'only once', 'ann-page-1');
    const again = await say(ann, 'only once', 'ann-page-1');
    assert.deepEqual(again, first);
    const other = await say(ann, 'another', 'ann-page-2');
    assert.notEqual(other.id, first.id);

    await until(() => bobGot.length === 2, 'bob to get two messages');
    await sync(bob);
    assert.deepEqual(texts(bobGot), ['only once', 'another'], 'the retry was not broadcast again');

    const later = await reader(srv, { serverOffset: 0 });
    assert.deepEqual(texts(later.got), ['only once', 'another'], 'the history holds it once');
  });

  test('a message sent without clientOffset is accepted too', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const answer = await ask(ann, 'chat message', 'no offset');
    assert.equal(typeof answer.id, 'number', JSON.stringify(answer));
    const twice = await ask(ann, 'chat message', 'no offset');
    assert.notEqual(twice.id, answer.id, 'without an offset there is nothing to deduplicate on');
  });
});

// ==========================================================================
describe('history', () => {
  test('a client connecting with auth.serverOffset = N gets exactly the messages after N, in order', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const acks = [];
    for (const text of ['one', 'two', 'three', 'four', 'five']) acks.push(await say(ann, text));

    const after2 = await reader(srv, { serverOffset: acks[1].id });
    assert.deepEqual(after2.got, acks.slice(2).map((a, i) =>
      [{ id: a.id, nickname: 'ann', text: ['three', 'four', 'five'][i], at: a.at }, a.id]));

    const all = await reader(srv, { serverOffset: 0 });
    assert.deepEqual(texts(all.got), ['one', 'two', 'three', 'four', 'five']);

    const upToDate = await reader(srv, { serverOffset: acks[4].id });
    assert.deepEqual(upToDate.got, [], 'nothing after the newest message');

    const noOffset = await reader(srv, {});
    assert.deepEqual(noOffset.got, [], 'no serverOffset in the handshake, no history');

    // Live messages come after the history, with their id as serverOffset.
    const live = await say(ann, 'six');
    await until(() => after2.got.length === 4, 'the live message');
    assert.deepEqual(after2.got[3], [{ id: live.id, nickname: 'ann', text: 'six', at: live.at }, live.id]);
  });

  test('history is capped: the last 100 on a first visit, the last 1,000 on a catch-up', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    // 1,002 messages, sent without waiting for each ack (the acks come in order).
    const acks = await Promise.all(Array.from({ length: 1002 }, (_, i) => say(ann, `message ${i + 1}`)));
    const ids = acks.map((a) => a.id);
    assert.equal(new Set(ids).size, 1002);

    const first = await reader(srv, { serverOffset: 0 });
    assert.deepEqual(first.got.map(([, id]) => id), ids.slice(-100), 'a first visit: the newest 100, oldest first');

    const back = await reader(srv, { serverOffset: ids[0] });
    assert.deepEqual(back.got.map(([, id]) => id), ids.slice(-1000), 'a catch-up of 1,001 missed: the newest 1,000');
    assert.equal(back.got[0][0].text, 'message 3');
  });

  test('messages survive a server restart with the same database', T, async (t) => {
    const db = tempDbPath();
    const env = { CHAT_LEAVE_GRACE_MS: '0' };
    const open = (srv, opts) => connected(ioClient(srv.url, { forceNew: true, reconnection: false, timeout: WAIT, ...opts }));

    const first = await startServer({ db, env });
    let sent;
    try {
      const ann = await open(first);
      assert.equal((await ask(ann, 'nickname', 'ann')).nickname, 'ann');
      sent = await say(ann, 'written before the restart');
      ann.disconnect();
      await delay(20);
    } finally {
      assertCleanExit(await first.stop(), first.stderr());
    }

    const second = await startServer({ db, env });
    try {
      const socket = ioClient(second.url, { forceNew: true, reconnection: false, timeout: WAIT, auth: { serverOffset: 0 } });
      const got = record(socket, 'chat message');
      const online = next(socket, 'online');
      await connected(socket);
      assert.deepEqual((await online)[0], [], 'nobody is online after the restart');
      assert.deepEqual(got, [[{ id: sent.id, nickname: 'ann', text: 'written before the restart', at: sent.at }, sent.id]]);
      socket.disconnect();
      await delay(20);
    } finally {
      assertCleanExit(await second.stop(), second.stderr());
    }
  });
});

// ==========================================================================
describe('who is online', () => {
  test('join and leave notices go to the others only', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const annJoined = record(ann, 'user joined');
    const annLeft = record(ann, 'user left');

    const bob = await connect(srv);
    const bobJoined = record(bob, 'user joined');
    assert.equal((await ask(bob, 'nickname', 'bob')).nickname, 'bob');
    await until(() => annJoined.length === 1, 'ann to hear that bob joined');
    assert.deepEqual(annJoined, [[{ nickname: 'bob' }]]);
    await sync(bob);
    assert.deepEqual(bobJoined, [], 'bob is not told he joined');

    // The same nickname again on the same socket changes nothing.
    assert.equal((await ask(bob, 'nickname', 'bob')).nickname, 'bob');
    await sync(ann);
    assert.equal(annJoined.length, 1);

    bob.disconnect();
    await until(() => annLeft.length === 1, 'ann to hear that bob left');
    assert.deepEqual(annLeft, [[{ nickname: 'bob' }]]);
  });

  test('the online list follows joins, nickname changes and disconnections', T, async (t) => {
    const srv = await setup(t);
    const watcher = await connect(srv);
    const lists = record(watcher, 'online');
    const left = record(watcher, 'user left');
    const latest = () => list(lists.at(-1)?.[0]);

    const ann = await join(srv, 'ann');
    await until(() => latest().length === 1, 'the list to show ann');
    assert.deepEqual(latest(), ['ann']);

    const bob = await join(srv, 'Bob');
    await until(() => latest().length === 2, 'the list to show Bob');
    assert.deepEqual(latest(), ['ann', 'Bob'], 'sorted without regard to case');

    // Bob becomes cy: one list with cy and without Bob, and "Bob left" (to
    // the others: cy is not told it left).
    const bobLeft = record(bob, 'user left');
    const changed = await ask(bob, 'nickname', 'cy');
    assert.deepEqual(changed, { nickname: 'cy', online: ['ann', 'cy'] });
    await until(() => latest().includes('cy'), 'the list to show cy');
    assert.deepEqual(latest(), ['ann', 'cy']);
    await until(() => left.length === 1, '"Bob left"');
    assert.deepEqual(left[0], [{ nickname: 'Bob' }]);
    await sync(bob);
    assert.deepEqual(bobLeft, []);

    ann.disconnect();
    await until(() => latest().length === 1, 'the list to drop ann');
    assert.deepEqual(latest(), ['cy']);

    bob.disconnect();
    await until(() => latest().length === 0, 'the list to be empty');
    assert.ok(lists.every(([names]) => Array.isArray(names) || Object.keys(names).length === 0));
  });

  test('one person with two sockets is listed once and leaves with the last socket', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const lists = record(ann, 'online');
    const joined = record(ann, 'user joined');
    const left = record(ann, 'user left');

    const bob1 = await join(srv, 'bob');
    await until(() => lists.length === 1, 'the list with bob');
    const bob2 = await connect(srv);
    assert.deepEqual(await ask(bob2, 'nickname', 'bob'), { nickname: 'bob', online: ['ann', 'bob'] });
    await sync(ann);
    assert.deepEqual(lists, [[['ann', 'bob']]], 'a second socket of bob changes nothing in the list');
    assert.deepEqual(joined, [[{ nickname: 'bob' }]], 'bob joined once');

    bob1.disconnect();
    // bob2 is still there: a round trip through it, then ann, shows nothing came.
    await sync(bob2);
    await sync(ann);
    assert.deepEqual(left, [], 'bob has not left while one of his sockets is connected');
    assert.equal(lists.length, 1);

    bob2.disconnect();
    await until(() => left.length === 1, '"bob left"');
    assert.deepEqual(left, [[{ nickname: 'bob' }]]);
    await until(() => lists.length === 2, 'the list without bob');
    assert.deepEqual(lists[1], [['ann']]);
  });

  test('a reconnection within the grace delay makes no notices; after the delay "user left" comes', T, async (t) => {
    const srv = await setup(t, { grace: 1000 });
    const ann = await join(srv, 'ann');
    const joined = record(ann, 'user joined');
    const left = record(ann, 'user left');
    const lists = record(ann, 'online');

    const bob = await join(srv, 'bob');
    const cy = await join(srv, 'cy');
    await until(() => joined.length === 2, '"bob joined" and "cy joined"');

    // bob's page reconnects: a new socket that says its nickname in the handshake.
    bob.disconnect();
    const again = await connect(srv, '/', { auth: { nickname: 'bob' } });
    assert.deepEqual(await ask(again, 'nickname', 'bob'), { nickname: 'bob', online: ['ann', 'bob', 'cy'] });

    // cy goes for good. Its delay started after bob's would have: by the
    // time "cy left" arrives, a "bob left" would have come first.
    cy.disconnect();
    await until(() => left.length === 1, '"cy left" after the grace delay', 5_000);
    assert.deepEqual(left, [[{ nickname: 'cy' }]], 'no "bob left" for a reconnection');
    assert.equal(joined.length, 2, 'no second "bob joined"');
    await until(() => list(lists.at(-1)?.[0]).length === 2, 'the list without cy');
    assert.deepEqual(lists.at(-1), [['ann', 'bob']]);
    assert.equal((await ask(ann, 'private message', { to: 'bob', text: 'still there?' })).to, 'bob');

    // Now bob really goes.
    again.disconnect();
    await until(() => left.length === 2, '"bob left" after the grace delay', 5_000);
    assert.deepEqual(left[1], [{ nickname: 'bob' }]);
    await until(() => list(lists.at(-1)?.[0]).length === 1, 'the list without bob');
    assert.deepEqual(lists.at(-1), [['ann']]);
  });

  test('a nickname in the handshake (auth.nickname) counts before anything is sent', T, async (t) => {
    const srv = await setup(t);
    const bob = await join(srv, 'bob');
    const got = record(bob, 'chat message');
    // What a page's socket does after a reconnection: the unanswered message
    // is re-sent first thing, before the page can send 'nickname'.
    const ann = await connect(srv, '/', { auth: { nickname: 'ann' } });
    const ack = await say(ann, 'sent right after reconnecting');
    assert.equal(typeof ack.id, 'number', JSON.stringify(ack));
    await until(() => got.length === 1, 'bob to get it');
    assert.equal(got[0][0].nickname, 'ann');

    // An invalid one is ignored: that socket has no nickname.
    const bad = await connect(srv, '/', { auth: { nickname: 'x'.repeat(40) } });
    assert.match((await say(bad, 'hello')).error, /nickname/i);
  });
});

// ==========================================================================
describe('typing', () => {
  test('typing is relayed to the others with the nickname, not to the sender', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const bob = await join(srv, 'bob');
    const [annGot, bobGot] = [ann, bob].map((s) => record(s, 'typing'));

    ann.emit('typing', true);
    await until(() => bobGot.length === 1, 'bob to see ann typing');
    assert.deepEqual(bobGot[0], [{ nickname: 'ann', typing: true }]);

    ann.emit('typing', false);
    await until(() => bobGot.length === 2, 'bob to see ann stop');
    assert.deepEqual(bobGot[1], [{ nickname: 'ann', typing: false }]);

    await sync(ann);
    assert.deepEqual(annGot, [], 'the sender is not told about itself');

    // Without a nickname there is nobody to show as typing.
    const anon = await connect(srv);
    anon.emit('typing', true);
    await sync(anon);
    await sync(bob);
    assert.equal(bobGot.length, 2);
  });
});

// ==========================================================================
describe('private messages', () => {
  test('a private message reaches every socket of the target and nobody else', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const bob1 = await join(srv, 'bob');
    const bob2 = await join(srv, 'bob');
    const cy = await join(srv, 'cy');
    const [annGot, bob1Got, bob2Got, cyGot] = [ann, bob1, bob2, cy].map((s) => record(s, 'private message'));
    const cyPublic = record(cy, 'chat message');

    const ack = await ask(ann, 'private message', { to: 'bob', text: ' <b>psst</b> ' });
    assert.equal(ack.to, 'bob');
    assert.match(ack.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    await until(() => bob1Got.length === 1 && bob2Got.length === 1, 'both of bob\'s sockets to get it');
    const expected = [{ from: 'ann', to: 'bob', text: '<b>psst</b>', at: ack.at }];
    assert.deepEqual(bob1Got[0], expected);
    assert.deepEqual(bob2Got[0], expected);

    await sync(cy);
    await sync(ann);
    assert.deepEqual(cyGot, [], 'cy does not get it');
    assert.deepEqual(cyPublic, [], 'it is not a public message either');
    assert.deepEqual(annGot, [], 'the sender does not get it back');

    // Not stored: a page opened now has no history.
    const later = await reader(srv, { serverOffset: 0 });
    assert.deepEqual(later.got, []);
  });

  test('a private message is refused for an unknown nickname, yourself, a bad text or no nickname', T, async (t) => {
    const srv = await setup(t);
    const ann = await join(srv, 'ann');
    const bob = await join(srv, 'bob');
    const bobGot = record(bob, 'private message');
    const anon = await connect(srv);

    const refused = [
      [ann, { to: 'nobody', text: 'hello?' }, /nobody/i],
      [ann, { to: 'ann', text: 'me, myself' }, /you/i],
      [ann, { to: 'bob', text: '' }, /empty/i],
      [ann, { to: 'bob', text: 'x'.repeat(2001) }, /2000/],
      [ann, { to: 'bob' }, /text/i],
      [ann, { text: 'to whom?' }, /who/i],
      [ann, 'bob: hello', /recipient/i],
      [anon, { to: 'bob', text: 'hi' }, /nickname/i],
    ];
    for (const [socket, pm, error] of refused) {
      const answer = await ask(socket, 'private message', pm);
      assert.match(answer.error ?? '', error, `${JSON.stringify(pm).slice(0, 40)}: ${JSON.stringify(answer)}`);
    }

    // Once bob has gone, he cannot be written to.
    const bobLeft = next(ann, 'user left');
    bob.disconnect();
    await bobLeft;
    assert.match((await ask(ann, 'private message', { to: 'bob', text: 'still there?' })).error, /nobody/i);
    assert.deepEqual(bobGot, []);
  });
});

// ==========================================================================
describe('hot reload (dev mode)', () => {
  test('after scripts/chat.lua is reloaded, everyone is still online, with no notices', T, async (t) => {
    const root = makeAppRoot(REPO_ROOT, { only: ['scripts', 'views', 'public'] });
    const srv = await setup(t, { root });
    const ann = await join(srv, 'ann');
    const bob = await join(srv, 'bob');
    const bob2 = await join(srv, 'bob');
    const seen = { joined: record(ann, 'user joined'), left: record(ann, 'user left'),
      online: record(ann, 'online'), messages: record(ann, 'chat message') };

    const file = path.join(root, 'scripts/chat.lua');
    fs.appendFileSync(file, '\n-- edited\n');
    await until(() => /reload: scripts\/chat\.lua changed: generation \d+ loaded/.test(srv.stderr()), 'the reload');

    // The new code knows who is online, and nobody was told anything.
    assert.deepEqual(await ask(ann, 'nickname', 'ann'), { nickname: 'ann', online: ['ann', 'bob'] });
    assert.deepEqual(seen, { joined: [], left: [], online: [], messages: [] });
    assert.equal((await ask(ann, 'private message', { to: 'bob', text: 'still there?' })).to, 'bob');
    const ack = await say(bob, 'yes');
    await until(() => seen.messages.length === 1, 'bob\'s message');
    assert.deepEqual(seen.messages[0], [{ id: ack.id, nickname: 'bob', text: 'yes', at: ack.at }, ack.id]);

    // bob's two sockets still count as one person.
    bob.disconnect();
    await sync(bob2);
    await sync(ann);
    assert.deepEqual(seen.left, []);
    bob2.disconnect();
    await until(() => seen.left.length === 1, '"bob left"');
    assert.deepEqual(seen.left, [[{ nickname: 'bob' }]]);
  });
});
