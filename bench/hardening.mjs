// Memory under misbehaving clients, for `make bench` (see bench/README.md,
// "Memory under slow consumers and churn"):
//
//   node bench/hardening.mjs [--quick]
//
// 1. A broadcast storm with 100 clients that stopped reading: 10 s of
//    1 KiB (and 20 KiB) broadcasts from a sender that keeps up, server RSS
//    sampled every 250 ms; with the default --max-backpressure and with no
//    cap at all. Then the stalled clients go, and RSS is read again.
// 2. Where memory goes once the storm is over: glibc as it is
//    (MOONWIRE_MALLOC_TRIM=0), glibc with the server's malloc_trim after
//    large releases (the default), and jemalloc preloaded when installed.
// 3. 10,000 connect/disconnect cycles of the real socket.io-client: RSS
//    after the first 1,000 and at the end.
//
// Every figure is read, never asserted. Writes bench/results/hardening.md.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { io as ioClient } from 'socket.io-client';

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = process.env.MOONWIRE_BIN ?? path.join(ROOT, 'build/moonwire');
const QUICK = process.argv.includes('--quick');
const STORM_S = QUICK ? 2 : 10;
const STALLED = QUICK ? 20 : 100;
const CYCLES = QUICK ? 1000 : 10000;
const RESULTS = path.join(ROOT, 'bench/results/hardening.md');
const JEMALLOC = ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2']
  .find((p) => fs.existsSync(p));

function rssKB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

const MB = (kb) => (kb / 1024).toFixed(1);

async function startServer(args = [], env = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-hard-'));
  // The storm's sender emits faster than --max-packet-rate allows one
  // client (5,000 a second): without 0 here its own messages were dropped
  // and it waited for copies that never came.
  const proc = spawn(BIN, ['--root', path.join(ROOT, 'bench/app'), '--production', '--quiet', '--port', '0',
    '--max-packet-rate', '0', '--db', path.join(dir, 'db'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', () => {});
  const port = await new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on http:\/\/\S+:(\d+)/.exec(out);
      if (m) { clearInterval(t); resolve(Number(m[1])); }
    }, 20);
    proc.once('exit', (c) => { clearInterval(t); reject(new Error(`moonwire exited ${c}`)); });
  });
  return {
    port, pid: proc.pid,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A Socket.IO client on a raw WebSocket that joins and then never reads again.
async function stalled(port) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  sock.write('GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
    + 'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  await new Promise((resolve) => {
    let got = '';
    const on = (d) => { got += d.toString('latin1'); if (got.includes('"sid"')) { sock.off('data', on); resolve(); } };
    sock.on('data', on);
  });
  sock.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x34, 0x30])); // "40", masked with zeros
  await sleep(20);
  sock.pause();
  sock.on('error', () => {});
  return sock;
}

// A sender that emits 'chat message' with size bytes and waits for its own
// copies (io.emit reaches the sender too), so it never runs ahead of the
// server. Returns how many it sent.
async function storm(port, size, seconds) {
  const s = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], forceNew: true, reconnection: false });
  await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('connect_error', reject); });
  const payload = 'x'.repeat(size);
  let received = 0, sent = 0;
  s.on('chat message', () => { received++; });
  // At most 256 KiB of its own copies in flight: the sender is a client
  // that keeps up, and must stay under --max-backpressure (1 MiB) itself.
  const window = Math.max(4, Math.floor((256 * 1024) / size));
  const batch = Math.min(50, window);
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    for (let i = 0; i < batch; i++) { s.emit('chat message', payload); sent++; }
    while (received < sent - window && Date.now() < end + 5000) await sleep(1);
  }
  s.disconnect();
  return sent;
}

async function stormRun(label, args, env, size) {
  const srv = await startServer(args, env);
  const base = rssKB(srv.pid);
  const socks = [];
  for (let i = 0; i < STALLED; i++) socks.push(await stalled(srv.port));
  let peak = 0;
  const samples = [];
  const sampler = setInterval(() => { const r = rssKB(srv.pid); peak = Math.max(peak, r); samples.push(r); }, 250);
  const sent = await storm(srv.port, size, STORM_S);
  clearInterval(sampler);
  const endStorm = rssKB(srv.pid);
  for (const s of socks) s.destroy();
  await sleep(4500); // the server's trim runs every 2 s
  const after = rssKB(srv.pid);
  await srv.stop();
  const half = samples.length >> 1;
  return { label, size, sent, base, peak, endStorm, after,
    firstHalfMax: Math.max(...samples.slice(0, half)), secondHalfMax: Math.max(...samples.slice(half)) };
}

async function churn() {
  const srv = await startServer();
  const base = rssKB(srv.pid);
  let done = 0, at1000 = 0;
  const one = () => new Promise((resolve) => {
    const s = ioClient(`http://127.0.0.1:${srv.port}`, { forceNew: true, reconnection: false });
    s.once('connect', () => { s.disconnect(); resolve(); });
    s.once('connect_error', () => { s.close(); resolve(); });
  });
  const workers = Array.from({ length: 20 }, async () => {
    while (done < CYCLES) {
      done++;
      await one();
      if (done === 1000) { await sleep(2500); at1000 = rssKB(srv.pid); }
    }
  });
  await Promise.all(workers);
  await sleep(2500);
  const end = rssKB(srv.pid);
  await srv.stop();
  return { base, at1000, end };
}

const lines = [];
const say = (s = '') => { lines.push(s); console.log(s); };

say('# Memory under slow consumers and churn');
say();
say(`\`node bench/hardening.mjs${QUICK ? ' --quick' : ''}\`, ${new Date().toISOString()}, ${os.cpus().length} cores. RSS of the server process from /proc/PID/status.`);
say();
say(`## A ${STORM_S} s broadcast storm with ${STALLED} clients that stopped reading`);
say();
say('| server | payload | broadcasts | RSS before | peak | max in the 1st half | max in the 2nd half | at the end | 4.5 s after the stalled clients left |');
say('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const runs = [
  ['moonwire, --max-backpressure 1 MiB (default)', [], {}],
  ['moonwire, no cap (--max-backpressure 2^40)', ['--max-backpressure', String(2 ** 40)], {}],
];
for (const size of [1024, 20480]) {
  for (const [label, args, env] of runs) {
    const r = await stormRun(label, args, env, size);
    say(`| ${label} | ${size} B | ${r.sent} | ${MB(r.base)} MB | ${MB(r.peak)} MB | ${MB(r.firstHalfMax)} MB | ${MB(r.secondHalfMax)} MB | ${MB(r.endStorm)} MB | ${MB(r.after)} MB |`);
  }
}
say();
say('## Memory once the storm is over (no cap, 20 KiB broadcasts: the most held)');
say();
say('| allocator | peak | 4.5 s after the stalled clients left |');
say('| --- | ---: | ---: |');
const allocs = [
  ['glibc, no trim (MOONWIRE_MALLOC_TRIM=0)', { MOONWIRE_MALLOC_TRIM: '0' }],
  ['glibc + malloc_trim after large releases (default)', {}],
];
if (JEMALLOC) allocs.push(['jemalloc 5 (LD_PRELOAD), no trim', { LD_PRELOAD: JEMALLOC, MOONWIRE_MALLOC_TRIM: '0' }]);
for (const [label, env] of allocs) {
  const r = await stormRun(label, ['--max-backpressure', String(2 ** 40)], env, 20480);
  say(`| ${label} | ${MB(r.peak)} MB | ${MB(r.after)} MB |`);
}
if (!JEMALLOC) say('\n(jemalloc not installed: `apt-get install libjemalloc2` adds its row.)');
say();
say(`## ${CYCLES} connect/disconnect cycles of socket.io-client (20 at a time)`);
say();
const c = await churn();
say('| RSS at start | after 1,000 cycles | at the end | end / after 1,000 |');
say('| ---: | ---: | ---: | ---: |');
say(`| ${MB(c.base)} MB | ${MB(c.at1000)} MB | ${MB(c.end)} MB | ${(c.end / c.at1000).toFixed(3)} |`);

fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
fs.writeFileSync(RESULTS, `${lines.join('\n')}\n`);
console.log(`\nWritten to ${path.relative(process.cwd(), RESULTS)}.`);
process.exit(0);
