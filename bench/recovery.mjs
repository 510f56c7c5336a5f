// What connection state recovery costs per emit: off, kept in memory, and
// kept in the app's SQLite file (store = "sqlite", written through the
// writer thread with group commit).
//
//   node bench/recovery.mjs [--bin BIN] [--emits N] [--clients K]
//
// For each mode, on spec/e2e/fixtures/recovery with a fresh database on
// this disk (not /tmp): K socket.io clients (websocket) join one room; one
// request publishes N events to it from one handler, in batches of 1,000;
// the figure is the server's CPU time per emit (utime + stime from /proc:
// its loop thread alone, and the whole process, which includes the writer
// thread), and the wall time until every client has had every event. Three
// rounds, medians. Prints a Markdown table and writes bench/results/recovery.md.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { io as ioClient } from 'socket.io-client';

const ROOT = path.resolve(import.meta.dirname, '..');
const arg = (name, d) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : d; };
const BIN = path.resolve(ROOT, arg('--bin', 'build/moonwire'));
const EMITS = Number(arg('--emits', 20000));
const CLIENTS = Number(arg('--clients', 10));
const ROUNDS = 3;
const APP = path.join(ROOT, 'spec/e2e/fixtures/recovery');
const RESULTS = path.join(ROOT, 'bench/results/recovery.md');
const HZ = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const log = (...a) => console.error('[bench recovery]', ...a);

function cpuOf(pid) {
  const read = (f) => { const s = fs.readFileSync(f, 'utf8'); const v = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(v[11]) + Number(v[12])) / HZ; };
  return { proc: read(`/proc/${pid}/stat`), loop: read(`/proc/${pid}/task/${pid}/stat`) };
}

async function start(store, db) {
  const proc = spawn(BIN, ['--root', APP, '--port', '0', '--production', '--quiet', '--db', db], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RECOVERY_STORE: store, RECOVERY_MAX_PACKETS: '10000' },
  });
  let out = '';
  const port = await new Promise((resolve, reject) => {
    proc.stdout.on('data', (c) => { out += c; const m = /listening on http:\/\/\S+:(\d+)/.exec(out); if (m) resolve(Number(m[1])); });
    proc.on('exit', (code) => reject(new Error(`moonwire exited ${code}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

async function round(store) {
  const dir = fs.mkdtempSync(path.join(ROOT, 'build', 'bench-recovery-'));
  const srv = await start(store, path.join(dir, 'bench.db'));
  const clients = [];
  let got = 0;
  for (let i = 0; i < CLIENTS; i++) {
    const c = ioClient(srv.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    c.on('news', () => { got++; });
    await new Promise((r) => c.once('connect', r));
    await c.timeout(5000).emitWithAck('join', 'room', `c${i}`);
    clients.push(c);
  }
  const before = cpuOf(srv.proc.pid);
  const t0 = performance.now();
  for (let from = 1; from <= EMITS; from += 1000) {
    const r = await fetch(`${srv.url}/publish?room=room&from=${from}&to=${Math.min(EMITS, from + 999)}`, { method: 'POST' });
    if (r.status !== 200) throw new Error(`publish: ${r.status}`);
  }
  while (got < EMITS * CLIENTS) await new Promise((r) => setTimeout(r, 5));
  const wall = performance.now() - t0;
  // Let the writer thread finish what it was given, then count it too.
  await new Promise((r) => setTimeout(r, 500));
  const after = cpuOf(srv.proc.pid);
  for (const c of clients) c.disconnect();
  srv.proc.kill('SIGTERM');
  await new Promise((r) => srv.proc.once('exit', r));
  fs.rmSync(dir, { recursive: true, force: true });
  return { loop: ((after.loop - before.loop) / EMITS) * 1e6, proc: ((after.proc - before.proc) / EMITS) * 1e6, wall };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const store of ['off', 'memory', 'sqlite']) {
  const runs = [];
  for (let i = 0; i < ROUNDS; i++) runs.push(await round(store));
  const r = { store, loop: median(runs.map((x) => x.loop)), proc: median(runs.map((x) => x.proc)), wall: median(runs.map((x) => x.wall)) };
  log(store, r);
  rows.push(r);
}
const table = [
  `${EMITS} emits to a room of ${CLIENTS} websocket clients, one handler; medians of ${ROUNDS} rounds.`,
  '',
  '| connectionStateRecovery | loop CPU per emit | process CPU per emit (with the writer thread) | wall time, all delivered |',
  '| --- | --- | --- | --- |',
  ...rows.map((r) => `| ${r.store} | ${r.loop.toFixed(1)} µs | ${r.proc.toFixed(1)} µs | ${Math.round(r.wall)} ms |`),
].join('\n');
console.log(table);
fs.writeFileSync(RESULTS, `# Connection state recovery: the cost of an emit\n\n\`node bench/recovery.mjs\`\n\n${table}\n`);
