// Limits on what a client can make the server hold or do.
//
// Slow consumers: a client that stops reading while broadcasts keep coming
// must not make the server hold them all. Past --max-backpressure bytes
// queued for it, it is closed ("transport error" in its disconnect) and its
// share is released; a pong only counts for a ping that has left the
// server, so a client that answers pings blind is still timed out; and the
// app can read socket.conn.bufferedAmount.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';

import WebSocket from 'ws';

import { RawConnection, delay, makeAppRoot, request } from './helpers.mjs';
import { client, connected, setup } from './sio.mjs';

const T = { timeout: 60_000 };

async function waitFor(fn, what, ms = 20_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

async function reasons(srv) {
  return JSON.parse((await request(srv.url, '/reasons')).body);
}

/** rounds broadcasts of n messages of size bytes, one request (one loop turn) each. */
async function storm(srv, n, size, rounds = 1) {
  for (let i = 0; i < rounds; i++) {
    const res = await request(srv.url, `/storm?n=${n}&size=${size}`, { method: 'POST', timeout: 60_000 });
    assert.equal(res.status, 200, res.body);
    if (rounds > 1) await delay(5);
  }
}

/**
 * A Socket.IO client over a raw WebSocket that joins the main namespace and
 * then stops reading (its socket is paused), so what the server sends piles
 * up. blindPongs: send a pong every so often anyway, without reading.
 */
async function stalledWebSocket(srv, name, { blindPongs = 0 } = {}) {
  const sock = net.connect(srv.port, '127.0.0.1');
  srv.track(() => sock.destroy());
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  sock.write(`GET /socket.io/?EIO=4&transport=websocket&name=${name} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`
    + 'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  let got = Buffer.alloc(0);
  await new Promise((resolve) => {
    const onData = (d) => {
      got = Buffer.concat([got, d]);
      if (got.includes('"sid"')) { sock.off('data', onData); resolve(); }
    };
    sock.on('data', onData);
  });
  const frame = (text) => { // a masked client text frame (mask 0: XOR leaves it as is)
    const body = Buffer.from(text);
    return Buffer.concat([Buffer.from([0x81, 0x80 | body.length, 0, 0, 0, 0]), body]);
  };
  sock.write(frame('40'));
  await delay(100);
  sock.pause();
  let timer;
  if (blindPongs) timer = setInterval(() => sock.write(frame('3')), blindPongs);
  srv.track(() => clearInterval(timer));
  return sock;
}

describe('slow consumers', () => {
  test('a WebSocket client that stops reading is closed past maxBackpressure; a reading one gets everything', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--max-backpressure', '262144'] });
    await stalledWebSocket(srv, 'stalled');
    const reader = client(srv, '/', { transports: ['websocket'], query: { name: 'reader' } });
    let received = 0;
    reader.on('storm', () => { received++; });
    await connected(reader);
    // 25 MiB, more than the kernel's buffers of a stalled socket hold, in
    // bursts of 640 KiB that a reading client takes as they come.
    await storm(srv, 10, 65536, 40);
    await waitFor(async () => (await reasons(srv)).includes('stalled: transport error'), 'the stalled client to be closed');
    await waitFor(() => received === 400, `the reader to get all 400 (got ${received})`);
    await waitFor(() => /is not reading: \d+ bytes queued for it, over maxBackpressure \(262144\)/.test(srv.stderr()), 'the log line');
    assert.ok(reader.connected);
  });

  test('a polling client that stops polling is closed past maxBackpressure, and its session is gone', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--max-backpressure', '262144'] });
    const open = await request(srv.url, '/socket.io/?EIO=4&transport=polling&name=idle');
    const { sid } = JSON.parse(open.body.slice(1));
    const q = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    await request(srv.url, q, { method: 'POST', body: '40' });
    assert.match((await request(srv.url, q)).body, /^40/);
    await storm(srv, 50, 65536); // 3 MiB waiting for a GET that never comes
    await waitFor(async () => (await reasons(srv)).includes('idle: transport error'), 'the idle session to be closed');
    const after = await request(srv.url, q);
    assert.equal(after.status, 400);
  });

  test('a client that answers pings without reading them is timed out', T, async (t) => {
    const srv = await setup(t, {
      root: makeAppRoot('limits'),
      args: ['--ping-interval', '300', '--ping-timeout', '300', '--max-backpressure', String(1 << 30)],
    });
    await stalledWebSocket(srv, 'blind', { blindPongs: 50 });
    await storm(srv, 10, 65536, 40); // fills the kernel's buffers: the pings stay queued behind it
    await waitFor(async () => (await reasons(srv)).includes('blind: ping timeout'), 'the blind client to time out');
  });

  test('socket.conn.bufferedAmount tells what waits for a client', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--max-backpressure', String(1 << 30)] });
    await stalledWebSocket(srv, 'stalled');
    const reader = client(srv, '/', { transports: ['websocket'], query: { name: 'reader' } });
    await connected(reader);
    await storm(srv, 10, 65536, 30);
    const buffered = await waitFor(async () => {
      const b = JSON.parse((await request(srv.url, '/buffered')).body);
      return b.stalled > 1024 * 1024 && b.reader === 0 ? b : null;
    }, 'the stalled client to hold more than 1 MiB and the reader nothing');
    assert.ok(buffered.stalled > 0);
  });
});

describe('held attachments', () => {
  test('a binary packet whose attachments do not all come closes the client after --attachment-timeout', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--attachment-timeout', '300'] });
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&name=partial`);
    srv.track(() => ws.terminate());
    const messages = [];
    ws.on('message', (d) => messages.push(d.toString()));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send('40');
    await waitFor(() => messages.some((m) => m.startsWith('40{')), 'the CONNECT answer');
    // Announces three attachments, sends one.
    ws.send('453-["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]');
    ws.send(Buffer.alloc(500_000, 1));
    const closed = new Promise((resolve) => ws.once('close', resolve));
    await waitFor(async () => (await reasons(srv)).includes('partial: transport error'), 'the client to be closed');
    await closed;
    await waitFor(() => /sent 1 of the 3 attachments of a binary packet in 300 ms; closing it/.test(srv.stderr()), 'the log line');
  });
});

describe('attachments sent', () => {
  test('an emit with more binary values than the client takes (10, socket.io-parser\'s maxAttachments) raises; the client stays', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits') });
    const s = client(srv, '/', { transports: ['websocket'], query: { name: 'bins' } });
    await connected(s);
    const got = [];
    s.on('bins', (...args) => got.push(args));
    assert.equal((await request(srv.url, '/binaries?n=10')).body, 'sent');
    await waitFor(() => got.length === 1, 'the ten binary values');
    assert.equal(got[0].length, 10);
    assert.ok(got[0].every((b, i) => Buffer.isBuffer(b) && b.equals(Buffer.alloc(3, i + 1))));
    assert.match((await request(srv.url, '/binaries?n=11')).body, /too many binary attachments \(11, at most 10\)/);
    await delay(200);
    assert.ok(s.connected, 'the client is still connected');
    assert.equal(got.length, 1);
  });
});

describe('floods', () => {
  test('past --max-packet-rate a second, a client\'s events are dropped; it stays connected', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--max-packet-rate', '1000'] });
    const s = client(srv, '/', { transports: ['websocket'], query: { name: 'eager' } });
    await connected(s);
    for (let i = 0; i < 1500; i++) s.emit('count');
    await waitFor(async () => /dropping the rest this second/.test(srv.stderr()), 'the warning');
    await delay(300);
    const counted = Number((await request(srv.url, '/counted')).body);
    assert.ok(counted >= 990 && counted <= 1000, `${counted} events got through (1000 packets a second, the CONNECT among them)`);
    assert.ok(s.connected);
  });

  test('a client that floods (200,000 events) is disconnected', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--max-packet-rate', '1000'] });
    const s = client(srv, '/', { transports: ['websocket'], query: { name: 'flood' } });
    await connected(s);
    const gone = new Promise((resolve) => s.once('disconnect', resolve));
    for (let i = 0; i < 200_000; i++) s.emit('count');
    await gone;
    await waitFor(async () => (await reasons(srv)).includes('flood: transport error'), 'the flooder to be closed');
    await waitFor(() => /sent more than 2000 packets in a second; closing it/.test(srv.stderr()), 'the log line');
    assert.ok(Number((await request(srv.url, '/counted')).body) <= 2000);
  });

  test('--max-conn-rate-per-ip: new connections past the rate get 503 until the next second', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--limit-loopback', '--max-conn-rate-per-ip', '20'] });
    const answers = await Promise.all(Array.from({ length: 60 }, () => request(srv.url, '/hello').then((r) => r.status, () => 'error')));
    const refused = answers.filter((a) => a === 503).length;
    assert.ok(refused >= 30, `${refused} of 60 refused at 20 a second`);
    assert.ok(answers.filter((a) => a === 200).length <= 40);
    await waitFor(() => /too many new connections per second from one address/.test(srv.stderr()), 'the log line');
    await delay(1100);
    assert.equal((await request(srv.url, '/hello')).status, 200);
  });

  test('--max-conns-per-ip: the connection past the count gets 503; one closes, the next gets in', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--limit-loopback', '--max-conns-per-ip', '5'] });
    const held = [];
    for (let i = 0; i < 5; i++) held.push(await RawConnection.open(srv.port));
    srv.track(() => held.forEach((c) => c.socket.destroy()));
    await delay(100);
    const sixth = await request(srv.url, '/hello');
    assert.equal(sixth.status, 503);
    assert.equal(sixth.headers['retry-after'], '1');
    const one = held.pop();
    one.socket.destroy();
    await delay(200);
    assert.equal((await request(srv.url, '/hello')).status, 200);
  });

  test('loopback clients are not counted unless --limit-loopback', T, async (t) => {
    const srv = await setup(t, { root: makeAppRoot('limits'), args: ['--max-conns-per-ip', '2', '--max-conn-rate-per-ip', '2'] });
    const answers = await Promise.all(Array.from({ length: 20 }, () => request(srv.url, '/hello').then((r) => r.status)));
    assert.deepEqual([...new Set(answers)], [200]);
  });
});
