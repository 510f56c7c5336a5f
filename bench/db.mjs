// The database figures: does a slow query or a locked database cost the
// other requests anything, and what does one db.row cost?
//
//   node bench/db.mjs [--before BIN] [--after BIN] [--quick]
//
// For each binary (--before: e.g. main's build; --after: default
// build/moonwire), on bench/app with a fresh database:
//   - GET /hello with wrk, alone; while another client runs a query of
//     about 8 s (a recursive CTE, /db/slow) in a loop; and while another
//     process (the sqlite3 shell) holds the write lock and another client
//     writes in a loop (each write waits for the lock until the busy timeout);
//   - GET /db/row (one db.row, a row by its key) with wrk;
//   - the example app's pet store: GET /api/pets/1 and GET /pets/1;
//   - the wall time of one db.row and of one db.exec round trip, from a
//     route that makes 2,000 of them in a row (/db/loop).
// Every wrk figure gives req/s, p50/p99 and the server's CPU time per
// request (utime + stime from /proc: the whole process, and its loop thread
// alone), the server pinned to CPU 1, the clients to CPU 0. The undisturbed
// figures alternate between the builds, five rounds, and report medians,
// so that what else the machine does weighs on both alike. Prints a
// Markdown table and writes it to bench/results/db.md.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const QUICK = process.argv.includes('--quick');
const BINS = [];
if (arg('--before')) BINS.push(['before', path.resolve(arg('--before'))]);
BINS.push(['after', path.resolve(ROOT, arg('--after') ?? 'build/moonwire')]);
const SECS = QUICK ? 2 : 4;       // each wrk run
const SLOW_MS = QUICK ? 2000 : 8000; // how long the slow query runs
const CONNS = 50;
const RESULTS = path.join(ROOT, 'bench/results/db.md');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[bench db]', ...a);
const tool = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const PIN = os.cpus().length >= 2 && tool('taskset');
const SERVER_CPU = PIN ? ['taskset', '-c', '1'] : [];
const CLIENT_CPU = PIN ? ['taskset', '-c', '0'] : [];
const HZ = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime in seconds: of the whole process, and of its main (loop) thread. */
function cpuOf(pid) {
  const read = (f) => { const s = fs.readFileSync(f, 'utf8'); const v = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(v[11]) + Number(v[12])) / HZ; };
  return { proc: read(`/proc/${pid}/stat`), loop: read(`/proc/${pid}/task/${pid}/stat`) };
}

async function get(url, opts = {}) {
  const r = await fetch(url, { ...opts, signal: AbortSignal.timeout(opts.timeout ?? 60000) });
  return { status: r.status, body: await r.text() };
}

async function startServer(bin, root, db) {
  const argv = [...SERVER_CPU, bin, '--root', root, '--port', '0', '--production', '--quiet', '--db', db];
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => proc.on('exit', r));
  const end = Date.now() + 15000;
  let port;
  while (!(port = /listening on http:\/\/[^:]+:(\d+)/.exec(out)?.[1])) {
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`${bin} did not start: ${err}`);
    await sleep(50);
  }
  return {
    pid: proc.pid, url: `http://127.0.0.1:${port}`, err: () => err,
    async stop() { proc.kill('SIGTERM'); const t = setTimeout(() => proc.kill('SIGKILL'), 15000); await exited; clearTimeout(t); },
  };
}

async function wrk(srv, target, secs = SECS) {
  const before = cpuOf(srv.pid);
  const argv = [...CLIENT_CPU, 'wrk', '-t1', `-c${CONNS}`, `-d${secs}s`, '--timeout', '30s', '--latency', `${srv.url}${target}`];
  const out = await new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.on('data', (d) => { o += d; });
    p.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`wrk exited ${code}`))));
  });
  const after = cpuOf(srv.pid);
  const lat = (p) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out); return m ? Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]] : NaN; };
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const r = {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN), p50: lat(50), p99: lat(99), requests, non2xx,
    cpu_us: ((after.proc - before.proc) * 1e6) / requests, loop_us: ((after.loop - before.loop) * 1e6) / requests,
  };
  log(`${target}: ${JSON.stringify(r)}`);
  return r;
}

/** Runs fn again and again until stop() (fn's errors are counted, not thrown). */
function loop(fn) {
  let running = true, runs = 0, errors = 0;
  const done = (async () => { while (running) { try { await fn(); runs++; } catch { errors++; await sleep(50); } } })();
  return { async stop() { running = false; await done; return { runs, errors }; } };
}

async function holdWriteLock(db) {
  const argv = [...CLIENT_CPU, 'sqlite3', db];
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stdin.write(".timeout 10000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  const end = Date.now() + 15000;
  while (!out.includes('locked')) { if (Date.now() > end) throw new Error('sqlite3 did not take the lock'); await sleep(20); }
  const exited = new Promise((r) => proc.on('exit', r));
  return { async release() { proc.stdin.end('COMMIT;\n'); await exited; } };
}

const results = {}; // results[which][figure]
const ROUNDS = QUICK ? 1 : 5; // the steady figures: both builds in turn, this many times; medians
const STEADY = [['hello', 'app', '/hello'], ['row', 'app', '/db/row'], ['apiPet', 'pets', '/api/pets/1'], ['pagePet', 'pets', '/pets/1']];

function median(list, key) {
  const v = list.map((r) => r[key]).filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : NaN;
}

/** The figures without a disturbance: every build's servers up at once, measured in turn. */
async function steady(dir) {
  const servers = {};
  try {
    for (const [which, bin] of BINS) {
      const app = await startServer(bin, path.join(ROOT, 'bench/app'), path.join(dir, `${which}-bench.db`));
      servers[which] = { app };
      const pets = await startServer(bin, ROOT, path.join(dir, `${which}-pets.db`));
      servers[which].pets = pets;
      await get(`${pets.url}/api/pets`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Rex', species: 'dog' }) });
      for (const [, srv, target] of STEADY) await wrk(servers[which][srv], target, 1); // warm-up
    }
    const runs = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [figure, srv, target] of STEADY) {
        for (const [which] of BINS) ((runs[which] ??= {})[figure] ??= []).push(await wrk(servers[which][srv], target));
      }
      for (const [which] of BINS) {
        const r = (runs[which].loop ??= []);
        const app = servers[which].app;
        r.push({ row: Number((await get(`${app.url}/db/loop?n=2000`)).body), hop: Number((await get(`${app.url}/db/loop?n=2000&hop=1`)).body) });
      }
    }
    // CPU per request after / before, round by round (both measured within
    // moments of each other), then the median: the machine's other load
    // changes between rounds more than between the two runs of one round.
    if (BINS.length === 2) {
      results.ratio = {};
      for (const [figure] of STEADY) {
        const a = runs.after[figure], b = runs.before[figure];
        results.ratio[figure] = median(a.map((x, i) => ({ v: x.cpu_us / b[i].cpu_us })), 'v');
      }
    }
    for (const [which] of BINS) {
      const r = (results[which] ??= {});
      for (const [figure] of STEADY) {
        const list = runs[which][figure];
        r[figure] = { rps: median(list, 'rps'), p50: median(list, 'p50'), p99: median(list, 'p99'), cpu_us: median(list, 'cpu_us'), loop_us: median(list, 'loop_us'), non2xx: list.reduce((a, x) => a + x.non2xx, 0) };
      }
      r.loopRow = median(runs[which].loop, 'row');
      r.loopHop = median(runs[which].loop, 'hop');
    }
  } finally {
    for (const s of Object.values(servers)) for (const srv of Object.values(s)) await srv.stop();
  }
}

/** GET /hello while a slow query runs in a loop, and while another process holds the write lock. */
async function disturbed(which, bin, slowN, dir) {
  const r = (results[which] ??= {});
  const srv = await startServer(bin, path.join(ROOT, 'bench/app'), path.join(dir, `${which}-disturbed.db`));
  try {
    await wrk(srv, '/hello', 1); // warm-up
    const slow = loop(() => get(`${srv.url}/db/slow?n=${slowN}`));
    await sleep(200);
    r.helloSlow = await wrk(srv, '/hello', Math.max(SECS, Math.ceil((SLOW_MS * 1.5) / 1000)));
    r.slowRuns = await slow.stop();

    const lock = await holdWriteLock(path.join(dir, `${which}-disturbed.db`));
    const writes = loop(() => get(`${srv.url}/db/write`, { method: 'POST' }));
    await sleep(200);
    r.helloLocked = await wrk(srv, '/hello', Math.max(SECS, 8));
    await lock.release();
    r.writeRuns = await writes.stop();
  } finally {
    await srv.stop();
  }
}

/** N for /db/slow so that the query runs about SLOW_MS on this machine. */
async function calibrate(bin) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-db-'));
  const srv = await startServer(bin, path.join(ROOT, 'bench/app'), path.join(dir, 'bench.db'));
  try {
    const n = 1_000_000;
    await get(`${srv.url}/db/slow?n=${n}`);
    const t0 = performance.now();
    await get(`${srv.url}/db/slow?n=${n}`);
    const ms = performance.now() - t0;
    return Math.round((n * SLOW_MS) / ms);
  } finally {
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const num = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '—');

function table(slowN) {
  const cols = BINS.map(([w]) => w);
  const lines = [
    `# moonwire database figures${QUICK ? ' (--quick)' : ''}`, '',
    `- date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end (a shared machine: read req/s with that in mind, CPU per request holds better)`,
    `- ${BINS.map(([w, b]) => `${w}: ${b}`).join('; ')}`,
    `- wrk -t1 -c${CONNS}, ${SECS} s (longer while a slow query or a lock is in play); ${PIN ? 'server on CPU 1, clients on CPU 0' : 'no pinning'}`,
    `- the undisturbed figures (GET /hello, /db/row, the pet store, the round trips): every build's servers up at once and measured in turn, ${ROUNDS} rounds, medians; the disturbed ones: one run each`,
    `- the slow query: /db/slow?n=${num(slowN)}, a recursive CTE of about ${SLOW_MS / 1000} s; the lock: the sqlite3 shell in BEGIN IMMEDIATE while a client POSTs /db/write in a loop (each waits the 5 s busy timeout)`,
    `- CPU µs/req: the server's utime + stime over the requests wrk completed, whole process (database threads included) / loop thread alone`,
    '',
    `| figure | ${cols.join(' | ')} |`,
    `| --- | ${cols.map(() => '---:').join(' | ')} |`,
  ];
  const row = (label, f) => lines.push(`| ${label} | ${cols.map((c) => f(results[c] ?? {})).join(' | ')} |`);
  const w = (k) => (r) => { const x = r[k]; return x ? `${num(x.rps)} req/s, p50 ${num(x.p50, 2)} ms, p99 ${num(x.p99, 2)} ms${x.non2xx ? `, ${num(x.non2xx)} non-2xx` : ''}` : '—'; };
  const c = (k) => (r) => { const x = r[k]; return x ? `${num(x.cpu_us, 1)} / ${num(x.loop_us, 1)}` : '—'; };
  for (const [k, label] of [['hello', 'GET /hello'], ['helloSlow', 'GET /hello while another client runs the slow query in a loop'],
    ['helloLocked', 'GET /hello while another process holds the write lock and a client writes in a loop'],
    ['row', 'GET /db/row (one db.row)'], ['apiPet', 'pet store GET /api/pets/1'], ['pagePet', 'pet store GET /pets/1 (HTML page)']]) {
    row(label, w(k));
    row(`↳ CPU µs/req (process / loop thread)`, c(k));
    if (results.ratio?.[k]) row('↳ CPU per request, after / before (median of the rounds\' ratios)', (r) => (r === results.after ? `${num(results.ratio[k], 2)}×` : ''));
  }
  row('slow queries finished during that run', (r) => (r.slowRuns ? num(r.slowRuns.runs) : '—'));
  row('writes answered during the lock run (each a 500 after the busy timeout)', (r) => (r.writeRuns ? num(r.writeRuns.runs) : '—'));
  row('one db.row round trip, wall µs (2,000 in one request)', (r) => num(r.loopRow, 2));
  row('one db.exec("SELECT 1") round trip, wall µs (before: on the loop; after: on the writer thread)', (r) => num(r.loopHop, 2));
  return lines.join('\n');
}

async function main() {
  for (const [, b] of BINS) if (!fs.existsSync(b)) { console.error(`bench db: ${b} is missing`); process.exit(2); }
  for (const cmd of ['wrk', 'sqlite3']) if (!tool(cmd)) { console.error(`bench db: ${cmd} is missing (tools/deps.sh bench)`); process.exit(2); }
  const slowN = await calibrate(BINS[BINS.length - 1][1]);
  log(`slow query: n = ${slowN}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-db-'));
  try {
    await steady(dir);
    for (const [which, bin] of BINS) await disturbed(which, bin, slowN, dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const t = table(slowN);
  console.log(t);
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(RESULTS, t + '\n');
}

main().catch((e) => { console.error(`bench db: ${e.stack ?? e}`); process.exit(1); });
