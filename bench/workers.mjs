// Fan-out with `moonwire --workers 2` against one moonwire process: the
// same app (bench/app), the same load client (build/loadgen fanout over
// WebSocket), one after the other. With --workers the kernel spreads the
// receivers over the two workers and each broadcast crosses to the other
// worker through the supervisor. Prints one JSON line per server:
// deliveries/s, p99, and server CPU per delivery (user and system, summed
// over the supervisor and its workers, from /proc before and after).
//
//   cmake --build build --target loadgen && node bench/workers.mjs [--quick]
//
// Nothing is pinned: on a 2-core machine the two workers and the load
// client share the cores, so throughput is the client's limit; the CPU per
// delivery is the figure to compare.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.resolve(ROOT, process.env.MOONWIRE_BIN ?? 'build/moonwire');
const LOADGEN = path.resolve(ROOT, process.env.LOADGEN_BIN ?? 'build/loadgen');
const QUICK = process.argv.includes('--quick');
const FANOUT = QUICK ? { receivers: 100, messages: 200, window: 10 } : { receivers: 1000, messages: 2000, window: 10 };
const TICKS = 100; // clock ticks per second (/proc/PID/stat utime, stime)

function start(args) {
  const db = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-')), 'bench.db');
  const proc = spawn(BIN, ['--root', path.join(ROOT, 'bench/app'), '--production', '--quiet', '--port', '0', '--db', db, ...args],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (c) => {
      out += c;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve({ proc, port: Number(m[1]) });
    });
    proc.on('exit', (code) => reject(new Error(`moonwire exited (${code}) before it listened`)));
  });
}

// User and system seconds of pid and its children (the workers).
function cpu(pid) {
  let kids = [];
  try { kids = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean); } catch { /* none */ }
  let user = 0, system = 0;
  for (const p of [String(pid), ...kids]) {
    try {
      const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      user += Number(f[11]) / TICKS;
      system += Number(f[12]) / TICKS;
    } catch { /* gone */ }
  }
  return { user, system };
}

function loadgen(port, opts) {
  const args = ['fanout', '--host', '127.0.0.1', '--port', String(port)];
  for (const [k, v] of Object.entries(opts)) args.push(`--${k}`, String(v));
  const out = execFileSync(LOADGEN, args, { encoding: 'utf8', timeout: 300_000 });
  return JSON.parse(out.trim().split('\n').filter((l) => l.startsWith('{')).pop());
}

async function figure(name, args) {
  const srv = await start(args);
  try {
    loadgen(srv.port, { receivers: 10, messages: 50, window: 10 }); // warm-up
    const before = cpu(srv.proc.pid);
    const r = loadgen(srv.port, FANOUT);
    const after = cpu(srv.proc.pid);
    const us = (s) => Number(((s * 1e6) / r.deliveries).toFixed(3));
    const user = after.user - before.user, system = after.system - before.system;
    console.log(JSON.stringify({ server: name, ...FANOUT, deliveries: r.deliveries, per_s: r.deliveries_per_s, p99_ms: r.p99_ms,
      cpu_us_per_delivery: us(user + system), user_us: us(user), system_us: us(system) }));
  } finally {
    srv.proc.kill('SIGTERM');
    await new Promise((resolve) => srv.proc.once('exit', resolve));
  }
}

await figure('moonwire', []);
await figure('moonwire --workers 2', ['--workers', '2']);
