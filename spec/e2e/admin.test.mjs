// The Socket.IO Admin UI's protocol (io.configure{ adminUI = ... }) as the
// UI speaks it: socket.io-client on the "/admin" namespace, logging in with
// { username, password } or a sessionId, and hearing what @socket.io/admin-ui's
// instrument() says (config, server_stats, all_sockets, socket_connected,
// room_joined, room_left, socket_disconnected, event_received, event_sent),
// and the UI's commands (emit, join, leave, _disconnect) acting on real
// clients. The fixture app is fixtures/admin/; the page itself is checked in
// admin.browser.test.mjs.
//
// Run from spec/e2e/ with `node --test admin.test.mjs`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import bcrypt from 'bcryptjs';

import { FIXTURES, REPO_ROOT, delay, makeAppRoot, request, startServer } from './helpers.mjs';
import { WAIT, ask, client, connect, connected, next, record, setup, until } from './sio.mjs';

const FIXTURE = path.join(FIXTURES, 'admin');
const UI_DIR = path.join(REPO_ROOT, 'node_modules/@socket.io/admin-ui/ui/dist');
const LOGIN = { username: 'admin', password: 'correct horse' };
const T = { timeout: 20_000 };

/** Starts the fixture app with the login above (env adds or overrides). */
function start(t, { env = {}, args = [] } = {}) {
  return setup(t, {
    root: FIXTURE,
    args,
    env: { ADMIN_USER: LOGIN.username, ADMIN_PASSWORD: LOGIN.password, ADMIN_UI_DIR: UI_DIR, ...env },
  });
}

/** What connecting to /admin with auth ends in: 'connected' or the connect_error's message. */
async function tryLogin(srv, auth) {
  const s = client(srv, '/admin', { auth });
  try {
    await connected(s);
    return 'connected';
  } catch (err) {
    return err.message.replace(/^connect_error: /, '').replace(/ \(data:.*$/, '');
  }
}

/** A logged-in admin socket, with everything it hears recorded from the start. */
async function admin(srv, auth = LOGIN, opts = {}) {
  const s = client(srv, '/admin', { auth, ...opts });
  const heard = [];
  s.onAny((...args) => heard.push(args));
  await connected(s);
  s.heard = heard;
  /** The events called name heard so far, as their argument lists. */
  s.got = (name) => heard.filter((a) => a[0] === name).map((a) => a.slice(1));
  s.waitFor = (name, pred = () => true, what = name) =>
    until(() => s.got(name).some((a) => pred(...a)), what).then(() => s.got(name).find((a) => pred(...a)));
  return s;
}

describe('login', () => {
  test('a wrong password or username is refused with "invalid credentials"; the right one gets a session', T, async (t) => {
    const srv = await start(t);
    assert.equal(await tryLogin(srv, { username: 'admin', password: 'wrong' }), 'invalid credentials');
    assert.equal(await tryLogin(srv, { username: 'root', password: LOGIN.password }), 'invalid credentials');
    assert.equal(await tryLogin(srv, {}), 'invalid credentials');
    assert.equal(await tryLogin(srv, { username: 'admin', password: 42 }), 'invalid credentials');
    const a = await admin(srv);
    const [[sessionId]] = await a.waitFor('session').then(() => a.got('session'));
    assert.match(sessionId, /^[0-9a-f]{32}$/);
    // The UI reconnects later (a page reload) with the sessionId alone.
    assert.equal(await tryLogin(srv, { sessionId }), 'connected');
    assert.equal(await tryLogin(srv, { sessionId: 'f'.repeat(32) }), 'invalid credentials');
  });

  test('a bcrypt hash (what instrument() takes) works as the password', T, async (t) => {
    const hash = bcrypt.hashSync(LOGIN.password, 8);
    const srv = await start(t, { env: { ADMIN_PASSWORD: hash } });
    assert.equal(await tryLogin(srv, { username: 'admin', password: 'wrong' }), 'invalid credentials');
    assert.equal(await tryLogin(srv, { username: 'admin', password: hash }), 'invalid credentials');
    assert.equal(await tryLogin(srv, LOGIN), 'connected');
  });

  test('maxLoginChecks bounds the bcrypt checks under way: past it a login is refused at once, and the right one still works after', T, async (t) => {
    const hash = bcrypt.hashSync(LOGIN.password, 12); // a slow hash: the checks overlap
    const srv = await start(t, { env: { ADMIN_PASSWORD: hash, ADMIN_MAX_LOGIN_CHECKS: '1' } });
    const answers = await Promise.all(Array.from({ length: 6 }, () => tryLogin(srv, { username: 'admin', password: 'wrong' })));
    assert.ok(answers.includes('too many logins at once, try again'), `answers: ${answers}`);
    assert.ok(answers.includes('invalid credentials'), `answers: ${answers}`);
    assert.equal(await tryLogin(srv, LOGIN), 'connected');
  });

  test('maxSessions bounds the login sessions kept: past it the oldest is forgotten', T, async (t) => {
    const srv = await start(t, { env: { ADMIN_MAX_SESSIONS: '2' } });
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const a = await admin(srv);
      ids.push((await a.waitFor('session'))[0]);
      a.disconnect();
    }
    assert.equal(new Set(ids).size, 3);
    assert.equal(await tryLogin(srv, { sessionId: ids[0] }), 'invalid credentials');
    assert.equal(await tryLogin(srv, { sessionId: ids[1] }), 'connected');
    assert.equal(await tryLogin(srv, { sessionId: ids[2] }), 'connected');
  });

  test('a session expires after sessionDuration seconds', T, async (t) => {
    const srv = await start(t, { env: { ADMIN_SESSION_DURATION: '1' } });
    const a = await admin(srv);
    const [id] = await a.waitFor('session');
    assert.equal(await tryLogin(srv, { sessionId: id }), 'connected');
    await delay(1200);
    assert.equal(await tryLogin(srv, { sessionId: id }), 'invalid credentials');
  });

  test('outside --dev the server refuses to start when adminUI has no password', T, async () => {
    await assert.rejects(
      startServer({ root: FIXTURE, args: ['--production'], quiet: false }),
      /not starting: io\.configure: adminUI: auth = \{ username = \.\.\., password = \.\.\. \} is required outside --dev/,
    );
    await assert.rejects(
      startServer({ root: FIXTURE, args: ['--production'], env: { ADMIN_USER: 'admin', ADMIN_PASSWORD: '' } }),
      /auth\.password must be a non-empty string/,
    );
  });

  test('under --dev, no auth lets the UI in without a login', T, async (t) => {
    const srv = await setup(t, { root: FIXTURE, args: ['--dev'] });
    assert.equal(await tryLogin(srv, {}), 'connected');
  });
});

describe('what the UI hears', () => {
  test('config, then server_stats with the server\'s figures at once and every 2 s', T, async (t) => {
    const srv = await start(t, { env: { ADMIN_SERVER_ID: 'eu-1' } });
    const c = await connect(srv, '/', { query: { name: 'alice' } });
    const a = await admin(srv);
    const [config] = await a.waitFor('config');
    assert.deepEqual(config.supportedFeatures,
      ['EMIT', 'JOIN', 'LEAVE', 'DISCONNECT', 'MJOIN', 'MLEAVE', 'MDISCONNECT', 'AGGREGATED_EVENTS', 'ALL_EVENTS']);
    const [stats] = await a.waitFor('server_stats');
    assert.equal(stats.serverId, 'eu-1');
    assert.equal(stats.pid, srv.proc.pid);
    assert.equal(typeof stats.hostname, 'string');
    assert.ok(stats.uptime > 0 && stats.uptime < 60, `uptime ${stats.uptime}`);
    assert.equal(stats.clientsCount, 2); // the client and the admin
    assert.equal(typeof stats.pollingClientsCount, 'number');
    assert.deepEqual(stats.namespaces, [
      { name: '/', socketsCount: 1 }, { name: '/admin', socketsCount: 1 }, { name: '/chat', socketsCount: 0 },
    ]);
    // The first stats carry no events; traffic shows in the next ones as
    // aggregated events of the second they were counted in.
    assert.deepEqual(stats.aggregatedEvents, []);
    for (let i = 0; i < 5; i++) await ask(c, 'ping', i);
    await a.waitFor('server_stats', (s) => s.aggregatedEvents.length > 0, 'server_stats with events', 4000);
    const agg = a.got('server_stats').flatMap(([s]) => s.aggregatedEvents);
    const count = (type) => agg.filter((e) => e.type === type).reduce((n, e) => n + e.count, 0);
    assert.ok(count('packetsIn') >= 5, JSON.stringify(agg));
    assert.ok(count('packetsOut') >= 5, JSON.stringify(agg));
    assert.ok(count('bytesIn') > 0 && count('bytesOut') > 0, JSON.stringify(agg));
    for (const e of agg) assert.equal(e.timestamp % 1000, 0);
    // With the UI open, new connections are rawConnections.
    await connect(srv, '/', { transports: ['websocket'] });
    const seen = a.got('server_stats').length;
    await connect(srv, '/', { transports: ['websocket'] });
    await a.waitFor('server_stats', (s) => s.clientsCount === 4, 'clientsCount 4', 4000);
    const since = a.got('server_stats').slice(seen).flatMap(([s]) => s.aggregatedEvents);
    assert.ok(since.some((e) => e.type === 'rawConnection' && e.count >= 1), JSON.stringify(since));
  });

  test('all_sockets lists every socket with its rooms, data and handshake', T, async (t) => {
    const srv = await start(t);
    const c = await connect(srv, '/', { query: { room: 'pets', name: 'alice' }, transports: ['websocket'] });
    const chat = await connect(srv, '/chat', { transports: ['websocket'] });
    const a = await admin(srv);
    const [list] = await a.waitFor('all_sockets');
    const alice = list.find((s) => s.id === c.id);
    assert.deepEqual(alice.rooms, [c.id, 'pets'].sort());
    assert.equal(alice.nsp, '/');
    assert.deepEqual(alice.data, { name: 'alice' });
    assert.equal(alice.transport, 'websocket');
    assert.equal(alice.clientId, c.io.engine.id.slice(0, 12));
    assert.equal(alice.handshake.address, '127.0.0.1');
    assert.equal(alice.handshake.query.room, 'pets');
    assert.equal(typeof alice.handshake.headers, 'object');
    const lobby = list.find((s) => s.id === chat.id);
    assert.equal(lobby.nsp, '/chat');
    assert.deepEqual(lobby.rooms, [chat.id, 'lobby'].sort());
    assert.ok(list.some((s) => s.nsp === '/admin' && s.id === a.id));
  });

  test('connections, rooms, events and disconnections as they happen', T, async (t) => {
    const srv = await start(t);
    const a = await admin(srv);
    await a.waitFor('all_sockets');
    const c = await connect(srv, '/', { query: { name: 'bob' } });
    const [connectedSocket, at] = await a.waitFor('socket_connected', (s) => s.id === c.id);
    assert.equal(connectedSocket.nsp, '/');
    assert.deepEqual(connectedSocket.data, { name: 'bob' });
    assert.match(at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // It started on long-polling; the upgrade is told within a stats tick.
    if (connectedSocket.transport === 'polling') {
      await a.waitFor('socket_updated', (u) => u.id === c.id && u.transport === 'websocket', 'socket_updated', 5000);
    }
    c.emit('join', 'kitchen');
    await a.waitFor('room_joined', (nsp, room, id) => nsp === '/' && room === 'kitchen' && id === c.id);
    c.emit('join', 'kitchen'); // already in: told once
    c.emit('leave', 'kitchen');
    await a.waitFor('room_left', (nsp, room, id) => room === 'kitchen' && id === c.id);
    assert.equal(a.got('room_joined').filter(([, room]) => room === 'kitchen').length, 1);
    // Events in and out, a broadcast told for each socket it reached.
    assert.deepEqual(await ask(c, 'ping', { n: 1 }), { n: 1 });
    await a.waitFor('event_received', (nsp, id, args) => id === c.id && args[0] === 'ping' && args[1].n === 1);
    c.emit('shout', 'hello');
    await a.waitFor('event_sent', (nsp, id, args) => nsp === '/' && id === c.id && args[0] === 'shouted' && args[1] === 'hello');
    assert.ok(!a.got('event_sent').some(([nsp]) => nsp === '/admin'), 'the admin namespace\'s own events are not told');
    c.emit('join', 'garden');
    await a.waitFor('room_joined', (nsp, room) => room === 'garden');
    const cid = c.id;
    c.disconnect();
    const [nsp, , reason] = await a.waitFor('socket_disconnected', (n, i) => i === cid);
    assert.equal(nsp, '/');
    assert.equal(reason, 'client namespace disconnect');
    await a.waitFor('room_left', (n, room, i) => room === 'garden' && i === cid);
    await a.waitFor('room_left', (n, room, i) => room === cid && i === cid);
  });

  test('mode "production": server stats only, no per-socket events', T, async (t) => {
    const srv = await start(t, { env: { ADMIN_MODE: 'production' } });
    const a = await admin(srv);
    const [config] = await a.waitFor('config');
    assert.ok(!config.supportedFeatures.includes('ALL_EVENTS'));
    assert.ok(config.supportedFeatures.includes('AGGREGATED_EVENTS'));
    const c = await connect(srv);
    await ask(c, 'ping', 1);
    await a.waitFor('server_stats', (s) => s.namespaces.find((n) => n.name === '/').socketsCount === 1, 'stats', 4000);
    for (const ev of ['all_sockets', 'socket_connected', 'event_received', 'room_joined']) {
      assert.deepEqual(a.got(ev), [], ev);
    }
  });
});

describe('hot reload', () => {
  test('a reload keeps the UI logged in under the new settings; one without adminUI stops telling it', T, async (t) => {
    const root = makeAppRoot(FIXTURE);
    const srv = await setup(t, {
      root, env: { ADMIN_USER: LOGIN.username, ADMIN_PASSWORD: LOGIN.password, ADMIN_SERVER_ID: 'before' },
    });
    const a = await admin(srv);
    await a.waitFor('server_stats', (s) => s.serverId === 'before');
    const app = path.join(root, 'scripts/app.lua');
    const text = fs.readFileSync(app, 'utf8');
    fs.writeFileSync(app, text.replace('serverId = os.getenv("ADMIN_SERVER_ID")', 'serverId = "after"'));
    await a.waitFor('config', () => a.got('config').length === 2, 'config again', 5000);
    const first = a.heard.findIndex(([ev, s]) => ev === 'server_stats' && s.serverId === 'after');
    await until(() => a.got('server_stats').filter((s) => s[0].serverId === 'after').length >= 3, '3 stats', 8000);
    const later = a.heard.slice(first).filter(([ev]) => ev === 'server_stats').map(([, s]) => s.serverId);
    assert.deepEqual([...new Set(later)], ['after'], 'the old generation\'s timer stopped');
    assert.ok(a.connected);
    // The UI's events still come.
    const c = await connect(srv);
    await a.waitFor('socket_connected', (s) => s.id === c.id);
    // A generation without adminUI: nothing more is told.
    fs.writeFileSync(app, text.replace('adminUI = {', 'adminUI_removed = {'));
    await until(() => srv.stderr().match(/generation \d+ loaded/g)?.length === 2, 'the second reload', 5000);
    const heard = a.heard.length;
    const d = await connect(srv);
    await ask(d, 'ping', 1);
    await delay(2500); // longer than a stats tick
    assert.deepEqual(a.heard.slice(heard), []);
  });
});

describe('the UI\'s commands', () => {
  test('_disconnect with a socket id disconnects that socket only; with a room, the room', T, async (t) => {
    const srv = await start(t);
    const one = await connect(srv, '/', { query: { room: 'a' } });
    const two = await connect(srv, '/', { query: { room: 'b' } });
    const three = await connect(srv, '/', { query: { room: 'b' } });
    const a = await admin(srv);
    await a.waitFor('all_sockets');
    const gone = next(one, 'disconnect');
    const oneId = one.id;
    a.emit('_disconnect', '/', false, oneId); // what the Sockets page's button sends
    assert.equal((await gone)[0], 'io server disconnect');
    const [, , reason] = await a.waitFor('socket_disconnected', (n, i) => i === oneId);
    assert.equal(reason, 'server namespace disconnect');
    assert.ok(two.connected && three.connected);
    a.emit('_disconnect', '/', false, 'b');
    await until(() => !two.connected && !three.connected, 'the room b disconnected');
  });

  test('join and leave with a filter, emit to a room', T, async (t) => {
    const srv = await start(t);
    const one = await connect(srv, '/', { query: { room: 'a' } });
    const two = await connect(srv, '/', { query: { room: 'b' } });
    const a = await admin(srv);
    await a.waitFor('all_sockets');
    a.emit('join', '/', 'vip', two.id);
    await a.waitFor('room_joined', (n, room, id) => room === 'vip' && id === two.id);
    assert.deepEqual(await ask(two, 'rooms'), [two.id, 'b', 'vip'].sort());
    assert.deepEqual(await ask(one, 'rooms'), [one.id, 'a'].sort());
    const heardOne = record(one, 'notice');
    const heardTwo = record(two, 'notice');
    a.emit('emit', '/', 'vip', 'notice', 'hello vip', { n: 1 });
    await until(() => heardTwo.length === 1, 'the notice');
    assert.deepEqual(heardTwo, [['hello vip', { n: 1 }]]);
    a.emit('leave', '/', 'vip', null); // every socket of "/" leaves vip
    await a.waitFor('room_left', (n, room, id) => room === 'vip' && id === two.id);
    assert.deepEqual(await ask(two, 'rooms'), [two.id, 'b'].sort());
    assert.deepEqual(heardOne, []);
    // Bad commands are ignored: unknown namespace, reserved event, wrong types.
    a.emit('emit', '/nowhere', null, 'notice', 1);
    a.emit('emit', '/', null, 'connect', 1);
    a.emit('join', '/', 42, null);
    a.emit('_disconnect', 7, true, null);
    await ask(one, 'ping', 1);
    assert.ok(one.connected && two.connected);
    assert.deepEqual(heardOne, []);
  });

  test('readonly: the UI is told no commands, and they do nothing', T, async (t) => {
    const srv = await start(t, { env: { ADMIN_READONLY: '1' } });
    const one = await connect(srv);
    const a = await admin(srv);
    const [config] = await a.waitFor('config');
    assert.deepEqual(config.supportedFeatures, ['AGGREGATED_EVENTS', 'ALL_EVENTS']);
    a.emit('_disconnect', '/', false, one.id);
    a.emit('join', '/', 'vip', null);
    await delay(200);
    assert.ok(one.connected);
    assert.deepEqual(await ask(one, 'rooms'), [one.id]);
  });
});

describe('the hosted UI and the served one', () => {
  test('the hosted UI\'s origin needs cors.origin outside --dev, as socket.io\'s cors option', T, async (t) => {
    const origin = 'https://admin.socket.io';
    const refused = await start(t, { args: ['--production'] });
    const res = await request(refused.url, '/socket.io/?EIO=4&transport=polling', { headers: { origin } });
    assert.equal(res.status, 403);
    const allowed = await start(t, { args: ['--production'], env: { ADMIN_CORS: origin } });
    const ok = await request(allowed.url, '/socket.io/?EIO=4&transport=polling', { headers: { origin } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], origin);
    assert.equal(ok.headers['access-control-allow-credentials'], 'true'); // the UI connects withCredentials
  });

  test('serve = "/admin" serves the UI\'s page from the package', T, async (t) => {
    const srv = await start(t);
    const bare = await request(srv.url, '/admin');
    assert.equal(bare.status, 302);
    assert.equal(bare.headers.location, '/admin/');
    const page = await request(srv.url, '/admin/');
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type'], /^text\/html/);
    assert.match(page.body.toString(), /<title>Socket\.IO Admin UI<\/title>/);
    const script = page.body.toString().match(/src="(js\/app\.[0-9a-f]+\.js)"/)[1];
    const js = await request(srv.url, `/admin/${script}`);
    assert.equal(js.status, 200);
    assert.match(js.headers['content-type'], /javascript/);
    assert.equal((await request(srv.url, '/admin/nothing-here.js')).status, 404);
    assert.equal((await request(srv.url, '/admin/..%2fscripts%2fapp.lua')).status, 404);
  });
});
