// `make bench`: moonwire against its anchors on loopback, one table.
//
//   node bench/run.mjs [--quick] [--only GROUP,...]
//                                      (after make build and cmake --build build --target loadgen)
//
// Starts each server in turn (moonwire with bench/app, socket.io 4 on Node's
// ws, socket.io 4 attached to uWebSockets.js, socket.io 4 on Bun with
// @socket.io/bun-engine, Express, nginx with its Lua module, nginx in front
// of moonwire over FastCGI
// and over proxy_pass, two moonwire and two socket.io processes sharing a
// redis-server, `moonwire --workers 2` and socket.io in a cluster of two
// Node workers), runs the same load against each with
// build/loadgen (Socket.IO figures) or wrk (HTTP), stops it, and prints one
// Markdown table, also written to bench/results/latest.md. bench/README.md
// says what each figure means and how it is measured.
//
// With two or more cores the server runs on CPU 1 and the load client on
// CPU 0 (taskset). --quick runs every figure with small counts, to check the
// runner itself in a few seconds; its numbers mean little. --only runs some
// groups of figures (files, moonwire, socketio, uws, bun, express, nginx,
// front, redis, workers, memory, max, codec) and prints their rows without replacing
// bench/results/latest.md. `--only db` runs the database figures instead
// (bench/db.mjs, which has a table of its own; MOONWIRE_BEFORE=BIN adds a
// column for another build, e.g. main's).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const MOONWIRE = path.resolve(ROOT, process.env.MOONWIRE_BIN ?? 'build/moonwire');
const LOADGEN = path.resolve(ROOT, process.env.LOADGEN_BIN ?? 'build/loadgen');
// Bun from the npm package `bun` (npm ci), resolved so taskset execs the binary itself.
const BUN = process.env.BUN_BIN ?? (() => {
  try { return fs.realpathSync(path.join(ROOT, 'node_modules/.bin/bun')); } catch { return 'bun'; }
})();
const REDIS = process.env.REDIS_SERVER ?? 'redis-server';
const RESULTS = path.join(ROOT, 'bench/results/latest.md');
const QUICK = process.argv.includes('--quick');
const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i > 0 && process.argv[i + 1] ? new Set(process.argv[i + 1].split(',')) : null;
})();
const T0 = Date.now();
const LOAD0 = os.loadavg()[0];
const STARTED = process.env.BENCH_STARTED ? Number(process.env.BENCH_STARTED) * 1000 : T0;
const BUDGET_S = 480; // the whole `make bench`, deps and build included

// The load, the same for moonwire and its anchor.
const P = QUICK ? {
  fanout: [{ receivers: 20, messages: 100, window: 10 }, { receivers: 100, messages: 20, window: 10 }],
  redis: { receivers: 100, messages: 20, window: 10 },
  workers: { processes: 2, receivers: 100, messages: 20, window: 10 },
  echo: { clients: 10, seconds: 1 },
  connect: { clients: 500, concurrency: 100 },
  idle: { clients: 1000, concurrency: 100 },
  max: { clients: 2000, concurrency: 200 },
  wrk: { threads: 1, connections: 50, seconds: 1 },
  download: { mb: 5, clients: 5, rateKB: 4096 },
  warmup: { fanout: { receivers: 10, messages: 50, window: 10 }, echo: { clients: 10, seconds: 1 }, wrk: { threads: 1, connections: 50, seconds: 1 } },
} : {
  // seconds: a cap (loadgen stops there, and the figures are over what came
  // by then), so a slow anchor does not stretch the run: at 40k deliveries/s
  // 2,000,000 would take 50 s.
  fanout: [{ receivers: 100, messages: 20000, window: 10, seconds: 10 }, { receivers: 1000, messages: 2000, window: 10, seconds: 12 }],
  redis: { receivers: 1000, messages: 1000, window: 10 },  // half on each process
  workers: { processes: 2, receivers: 1000, messages: 2000, window: 10, seconds: 12 },
  echo: { clients: 100, seconds: 5 },
  connect: { clients: 5000, concurrency: 100 },
  idle: { clients: 5000, concurrency: 100 },
  max: { clients: 100000, concurrency: 200 },
  wrk: { threads: 1, connections: 50, seconds: 5 },
  // A large file to slow clients: each reads at rateKB KiB/s.
  download: { mb: 50, clients: 20, rateKB: 2048 },
  warmup: { fanout: { receivers: 10, messages: 500, window: 10 }, echo: { clients: 10, seconds: 1 }, wrk: { threads: 1, connections: 50, seconds: 1 } },
};
const SETTLE_MS = QUICK ? 300 : 1500;  // after the idle clients are in, before reading RSS
const WARMUP_SETTLE_MS = 2500; // connections the warm-up closed can take a moment to be released
const NOFILE = P.max.clients + 20000;  // file descriptors for the servers and the load client

// Targets, as the table states them: moonwire / anchor for "higher is
// better", anchor / moonwire for "lower is better"; a ratio over 1 is
// moonwire ahead.
// The targets (ratios in the same run), as moonwire promises them.
// "Best" is the best of the three socket.io setups (ws, uWS, Bun) in that figure.
const TARGET = {
  fanoutRate: 1_000_000,  // deliveries/s on one core
  fanoutRatio: 10,        // deliveries/s × socket.io + ws at 1,000 receivers
  fanoutP99: 10,          // p99 at 1,000 receivers ≤ 1/10 of socket.io + ws's
  fanoutP99Best: 2,       // and ≤ 1/2 of the best's
  fanoutCpuUws: 2,        // CPU per delivery at 1,000 receivers ≤ 1/2 of socket.io + uWS's
  echo: 5,                // round trips/s × socket.io + ws
  echoCpuBest: 1.5,       // CPU per round trip ≤ 2/3 of the best's
  memoryRatio: 3,         // ≤ 1/3 of socket.io + ws's per client
  memoryKB: 2,            // KB per client
  express: 10,            // req/s × Express
  nginx: 1,               // req/s × nginx+Lua, one worker each
  httpCpuBest: 1.25,      // CPU per request ≤ 0.8× the best of nginx+Lua and socket.io + uWS
  max: 100000,
};

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[bench]', ...a);
const elapsed = () => (Date.now() - STARTED) / 1000;

function tool(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

// Pin the server and the client on different cores when there are two.
const PIN = os.cpus().length >= 2 && tool('taskset');
const SERVER_CPU = PIN ? ['taskset', '-c', '1'] : [];
const CLIENT_CPU = PIN ? ['taskset', '-c', '0'] : [];

// Raise RLIMIT_NOFILE (soft and hard) with prlimit. Past the hard limit
// that takes CAP_SYS_RESOURCE (root usually has it; some containers drop
// it): then soft goes up to hard, and the hard limit caps the clients.
const HARD_NOFILE = Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || Infinity;
const CAP_SYS_RESOURCE = (() => {
  const m = /CapEff:\s+([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? ((BigInt(`0x${m[1]}`) >> 24n) & 1n) === 1n : false;
})();
const canLimit = (n) => tool('prlimit') && spawnSync('prlimit', [`--nofile=${n}:${n}`, 'true']).status === 0;
const RAISE = canLimit(NOFILE);
const FD_LIMIT = RAISE ? NOFILE : HARD_NOFILE;
const LIMIT = RAISE || (Number.isFinite(HARD_NOFILE) && canLimit(HARD_NOFILE)) ? ['prlimit', `--nofile=${FD_LIMIT}:${FD_LIMIT}`, '--'] : [];

// argv for a server or a client: taskset and prlimit exec the command, so
// the pid of the spawned process is the server's own.
const serverArgv = (argv) => [...SERVER_CPU, ...LIMIT, ...argv];
const clientArgv = (argv) => [...CLIENT_CPU, ...LIMIT, ...argv];

function run(argv, opts) { return spawn(argv[0], argv.slice(1), opts); }

function rssKB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}
// A process and its descendants (nginx: the master and its worker).
function procTree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks = [];
    try { tasks = fs.readdirSync(`/proc/${out[i]}/task`); } catch { continue; }
    for (const t of tasks) {
      try {
        for (const c of fs.readFileSync(`/proc/${out[i]}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
      } catch { /* gone */ }
    }
  }
  return out;
}
// User and system CPU seconds of a process tree so far (all threads), from /proc/PID/stat.
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
function cpuSeconds(pid) {
  let user = 0, sys = 0;
  for (const p of procTree(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd on
      user += Number(f[11]) / CLK_TCK;  // utime, field 14
      sys += Number(f[12]) / CLK_TCK;   // stime, field 15
    } catch { /* gone */ }
  }
  return { user, sys };
}
// The same for a server: its own process tree, or with `pids` (a cluster:
// its processes and their redis-server) all of theirs added up.
function serverCpu(srv) {
  let user = 0, sys = 0;
  for (const pid of srv.pids ?? [srv.pid]) { const c = cpuSeconds(pid); user += c.user; sys += c.sys; }
  return { user, sys };
}
// CPU between two readings per unit of work, in µs: user, system, both.
function perUnit(a, b, units) {
  const user = ((b.user - a.user) / units) * 1e6, sys = ((b.sys - a.sys) / units) * 1e6;
  return { server_user_us: user, server_sys_us: sys, server_cpu_us: user + sys };
}
function rssTreeKB(pid) {
  let kb = 0;
  for (const p of procTree(pid)) { try { kb += rssKB(p); } catch { /* gone */ } }
  return kb;
}

function fdCount(pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return NaN; }
}
function memAvailableKB() {
  return Number(/MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))[1]);
}

function tail(s, n = 8) { return s.trim().split('\n').slice(-n).join('\n'); }

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function accepts(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------- servers

const SERVERS = {
  moonwire: () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-'));
    return {
      argv: [MOONWIRE, '--root', path.join(ROOT, 'bench/app'), '--port', '0', '--production', '--quiet',
        '--db', path.join(dir, 'bench.db')],
      ready: /listening on http:\/\/\S+:(\d+)/, dir,
    };
  },
  // ws as socket.io installs it: without the optional native bufferutil and
  // utf-8-validate, which npm ci puts in node_modules for uWebSockets.js's package.
  socketio: () => ({ argv: [process.execPath, path.join(ROOT, 'bench/anchors/socketio.mjs'), '0'], ready: /listening on http:\/\/\S+:(\d+)/,
    env: { WS_NO_BUFFER_UTIL: '1', WS_NO_UTF_8_VALIDATE: '1' } }),
  socketioUws: () => ({ argv: [process.execPath, path.join(ROOT, 'bench/anchors/socketio-uws.mjs'), '0'], ready: /listening on http:\/\/\S+:(\d+)/ }),
  socketioBun: () => ({ argv: [BUN, path.join(ROOT, 'bench/anchors/socketio-bun.mjs'), '0'], ready: /listening on http:\/\/\S+:(\d+)/ }),
  express: () => ({ argv: [process.execPath, path.join(ROOT, 'bench/anchors/express.mjs'), '0'], ready: /listening on http:\/\/\S+:(\d+)/ }),
  // moonwire answering FastCGI too, for nginx to sit in front of.
  moonwireFcgi: () => {
    const spec = SERVERS.moonwire();
    return { ...spec, argv: [...spec.argv, '--fastcgi', '127.0.0.1:0'] };
  },
  // nginx (one worker) in front of a running moonwireFcgi: /hello over
  // FastCGI on port, over proxy_pass on proxyPort.
  nginxFront: async (mw) => {
    const fastcgi = /moonwire FastCGI responder on (\S+)/.exec(mw.out)?.[1];
    if (!fastcgi) throw new Error(`moonwire printed no FastCGI address:\n${tail(mw.out)}`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-front-'));
    const port = await freePort();
    const proxyPort = await freePort();
    const conf = fs.readFileSync(path.join(ROOT, 'bench/anchors/nginx-front.conf.in'), 'utf8')
      .replaceAll('@PREFIX@', dir).replaceAll('@FASTCGI@', fastcgi).replaceAll('@HTTP@', String(mw.port))
      .replaceAll('@FASTCGI_PORT@', String(port)).replaceAll('@PROXY_PORT@', String(proxyPort));
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    return { argv: ['nginx', '-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf')], port, proxyPort, dir };
  },
  // One process of a cluster on the redis-server at url (a Redis adapter).
  moonwireRedis: (url) => {
    const spec = SERVERS.moonwire();
    return { ...spec, argv: [...spec.argv, '--redis', url] };
  },
  socketioRedis: (url) => { const spec = SERVERS.socketio(); return { ...spec, env: { ...spec.env, REDIS_URL: url } }; },
  // Several processes on one host, on one port: moonwire's own workers, and
  // socket.io in Node's cluster module (the primary hands out connections,
  // @socket.io/cluster-adapter carries broadcasts between the workers).
  moonwireWorkers: (n = P.workers.processes) => {
    const spec = SERVERS.moonwire();
    return { ...spec, argv: [...spec.argv, '--workers', String(n)] };
  },
  socketioCluster: () => { const spec = SERVERS.socketio(); return { ...spec, env: { ...spec.env, CLUSTER: String(P.workers.processes) } }; },
  // A redis-server of the bench's own: a free port, no persistence.
  redis: async () => {
    const port = await freePort();
    return { argv: [REDIS, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      port, ready: /Ready to accept connections/ };
  },
  // The same files from moonwire's public/ and from nginx's root.
  moonwireFiles: () => {
    const spec = SERVERS.moonwire();
    return { ...spec, argv: [MOONWIRE, '--root', filesRoot(), '--port', '0', '--production', '--quiet', '--db', path.join(spec.dir, 'bench.db')] };
  },
  nginxFiles: async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-nginx-'));
    const port = await freePort();
    const conf = fs.readFileSync(path.join(ROOT, 'bench/anchors/nginx-static.conf.in'), 'utf8')
      .replaceAll('@PREFIX@', dir).replaceAll('@PORT@', String(port)).replaceAll('@ROOT@', path.join(filesRoot(), 'public'));
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    return { argv: ['nginx', '-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf')], port, dir };
  },
  nginx: async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-nginx-'));
    const port = await freePort();
    const conf = fs.readFileSync(path.join(ROOT, 'bench/anchors/nginx.conf.in'), 'utf8')
      .replaceAll('@PREFIX@', dir).replaceAll('@PORT@', String(port));
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    return { argv: ['nginx', '-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf')], port, dir };
  },
};
const LABEL = { moonwire: 'moonwire', socketio: 'socket.io + ws', socketioUws: 'socket.io + uWS', socketioBun: 'socket.io on Bun',
  express: 'Express', nginx: 'nginx+Lua',
  moonwireFcgi: 'moonwire (--fastcgi)', nginxFront: 'nginx in front of moonwire', front: 'moonwire behind nginx',
  moonwireRedis: 'moonwire (--redis)', socketioRedis: 'socket.io (Redis adapter)', redis: 'redis-server',
  moonwireWorkers: 'moonwire --workers', socketioCluster: 'socket.io cluster',
  codec: 'the JSON codec',
  moonwireFiles: 'moonwire', nginxFiles: 'nginx' };
// The servers of the realtime rows (moonwire first), the socket.io setups
// among them, and the servers of the HTTP rows; the main table's columns.
const REALTIME = ['moonwire', 'socketio', 'socketioUws', 'socketioBun'];
const SOCKETIO = ['socketio', 'socketioUws', 'socketioBun'];
const HTTP = ['moonwire', 'socketioUws', 'socketioBun', 'express', 'nginx'];
const COLUMNS = ['moonwire', 'socketio', 'socketioUws', 'socketioBun', 'express', 'nginx'];

// An app whose public/ holds the download (P.download.mb of random bytes)
// and a small stylesheet (the example app's), made once per run.
let filesDir = null;
function filesRoot() {
  if (filesDir) return filesDir;
  filesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-files-'));
  fs.mkdirSync(path.join(filesDir, 'public'));
  fs.mkdirSync(path.join(filesDir, 'scripts'));
  fs.writeFileSync(path.join(filesDir, 'scripts/app.lua'), 'local app = require "moonwire.app"\n');
  fs.copyFileSync(path.join(ROOT, 'public/style.css'), path.join(filesDir, 'public/small.css'));
  const fd = fs.openSync(path.join(filesDir, 'public/big.bin'), 'w');
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < P.download.mb; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, j);
    fs.writeSync(fd, chunk);
  }
  fs.closeSync(fd);
  const old = new Date(Date.now() - 3600_000); // not "just edited": cacheable
  fs.utimesSync(path.join(filesDir, 'public/small.css'), old, old);
  fs.utimesSync(path.join(filesDir, 'public/big.bin'), old, old);
  // nginx's worker runs as nobody when the bench runs as root.
  for (const p of ['', 'public', 'public/small.css', 'public/big.bin']) fs.chmodSync(path.join(filesDir, p), p.includes('.') ? 0o644 : 0o755);
  return filesDir;
}
process.on('exit', () => { if (filesDir) fs.rmSync(filesDir, { recursive: true, force: true }); });

// The servers running now, killed if the runner itself stops early.
const live = new Set();
process.on('exit', () => { for (const srv of live) srv.proc.kill('SIGKILL'); });

// Starts a server and waits until it accepts connections. The returned
// object's `dead` is set (with the reason) the moment it exits.
async function start(kind, arg) {
  const spec = await SERVERS[kind](arg);
  const proc = run(serverArgv(spec.argv), { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT,
    env: spec.env ? { ...process.env, ...spec.env } : process.env });
  const srv = { kind, name: LABEL[kind], proc, pid: proc.pid, out: '', err: '', dead: null, dir: spec.dir, proxyPort: spec.proxyPort };
  live.add(srv);
  proc.stdout.on('data', (d) => { srv.out += d; });
  proc.stderr.on('data', (d) => { srv.err += d; });
  srv.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
    srv.dead = `${srv.name} exited (${signal ?? `code ${code}`})${srv.err ? `:\n${tail(srv.err)}` : ''}`;
    live.delete(srv);
    resolve();
  }));
  proc.on('error', (e) => { srv.dead = `${srv.name} could not start: ${e.message}`; });
  const deadline = Date.now() + 15000;
  while (!srv.port) {
    if (srv.dead) throw new Error(srv.dead);
    if (Date.now() > deadline) { await stop(srv); throw new Error(`${srv.name} did not get ready within 15 s\n${tail(srv.out + srv.err)}`); }
    if (spec.ready) {
      const m = spec.ready.exec(srv.out);
      if (m) srv.port = m[1] ? Number(m[1]) : spec.port;
    } else if (await accepts(spec.port)) {
      srv.port = spec.port;
    }
    if (!srv.port) await sleep(50);
  }
  log(`${srv.name} ready on port ${srv.port} (pid ${srv.pid})`);
  return srv;
}

async function stop(srv) {
  if (!srv.dead) {
    srv.proc.kill('SIGTERM');
    const t = setTimeout(() => { if (!srv.dead) srv.proc.kill('SIGKILL'); }, 5000);
    await srv.exited;
    clearTimeout(t);
  }
  if (srv.dir) fs.rmSync(srv.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- clients

// Runs a client to completion; fails when it exits non-zero, or at once
// when the server dies under it. onSync(where) answers loadgen --sync: it
// runs when loadgen prints "sync start" or "sync end" (loadgen waits), and
// loadgen goes on when it returns.
async function client(srv, argv, { timeoutMs = 120000, onLine, onSync, label = path.basename(argv[0]) } = {}) {
  if (srv.dead) throw new Error(srv.dead);
  const proc = run(clientArgv(argv), { stdio: [onSync ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let out = '', err = '', done = false, scanned = 0;
  if (onSync) proc.stdin.on('error', () => { /* it exited: the exit says why */ });
  proc.stdout.on('data', (d) => {
    out += d;
    if (onLine && out.includes('\n')) { const f = onLine; onLine = null; f(out.split('\n')[0], proc); }
    for (let i; onSync && (i = out.indexOf('\n', scanned)) >= 0; scanned = i + 1) {
      const m = /^sync (\w+)$/.exec(out.slice(scanned, i));
      if (m) { onSync(m[1]); proc.stdin.write('\n'); }
    }
  });
  proc.stderr.on('data', (d) => { err += d; });
  const exit = new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const watch = (async () => {
    const deadline = Date.now() + timeoutMs;
    while (!done) {
      if (srv.dead) { proc.kill('SIGKILL'); return `the server died during ${label}: ${srv.dead}`; }
      if (Date.now() > deadline) { proc.kill('SIGKILL'); return `${label} took over ${timeoutMs / 1000} s`; }
      await sleep(100);
    }
    return null;
  })();
  const { code, signal } = await exit;
  done = true;
  const problem = await watch;
  if (problem) throw new Error(problem);
  if (code !== 0) throw new Error(`${label} failed (${signal ?? `exit ${code}`}):\n${tail(err)}`);
  return { out, err };
}

function lastJSON(out, what) {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`${what} printed no JSON result:\n${tail(out)}`);
  return JSON.parse(line);
}

const base = (srv) => ['--host', '127.0.0.1', '--port', String(srv.port)];

// With cpu (fanout and echo), loadgen runs with --sync and the server's
// CPU time is read when every client is in and again when the result is
// out, so it covers the measured part alone (no handshakes, no closing),
// and is given per unit of work: per delivery to a receiver (fanout; the
// sender's own copy of each broadcast is in the CPU, not in the count)
// and per acked round trip (echo).
async function loadgen(srv, mode, opts, timeoutMs, { cpu = false } = {}) {
  const args = [LOADGEN, mode, ...base(srv)];
  for (const [k, v] of Object.entries(opts)) args.push(`--${k}`, String(v));
  if (cpu) args.push('--sync');
  log(`${srv.name}: loadgen ${args.slice(1).join(' ')}`);
  const marks = {};
  const onSync = cpu ? (where) => { marks[where] = serverCpu(srv); } : undefined;
  const { out } = await client(srv, args, { timeoutMs, label: `loadgen ${mode}`, onSync });
  const r = lastJSON(out, `loadgen ${mode}`);
  if (cpu) {
    if (!marks.start || !marks.end) throw new Error(`loadgen ${mode} --sync did not stop before and after its run`);
    Object.assign(r, perUnit(marks.start, marks.end, mode === 'fanout' ? r.deliveries : r.round_trips));
  }
  log(`  ${JSON.stringify(r)}`);
  return r;
}

// wrk does not report its own CPU time: bash's `times` after it does (the
// second line is the children's user and system time).
async function wrk(srv, params = P.wrk, port = srv.port, target = '/hello') {
  const { threads, connections, seconds } = params;
  const url = `http://127.0.0.1:${port}${target}`;
  const cmd = `wrk -t${threads} -c${connections} -d${seconds}s --latency ${url} && times`;
  log(`${srv.name}: ${cmd.replace(' && times', '')}`);
  const { out } = await client(srv, ['bash', '-c', cmd], { timeoutMs: (seconds + 30) * 1000, label: 'wrk' });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const count = /(\d+) requests in /.exec(out);
  if (!rps || !count) throw new Error(`wrk printed no Requests/sec:\n${tail(out)}`);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
  const t = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(out.trim()); // the last line: the children's
  const cpu = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : NaN;
  const lat = (p) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out); return m ? Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]] : NaN; };
  const r = { per_s: Number(rps[1]), requests: Number(count[1]), seconds, client_cpu: cpu, p50_ms: lat(50), p99_ms: lat(99), errors: errors ? errors[0] : null };
  log(`  ${JSON.stringify(r)}`);
  return r;
}

// Connects `clients` idle clients, reads the server's RSS once they are all
// in (and have settled), then lets them go. Returns the loadgen result and
// the RSS and fd count with the clients held.
async function idle(srv, { clients, concurrency }, timeoutMs) {
  const args = [LOADGEN, 'idle', ...base(srv), '--clients', String(clients), '--concurrency', String(concurrency),
    '--hold', String(Math.ceil(timeoutMs / 1000))];
  log(`${srv.name}: loadgen ${args.slice(1).join(' ')}`);
  let held = null;
  const { out } = await client(srv, args, {
    timeoutMs: timeoutMs + 30000,
    label: `loadgen idle --clients ${clients}`,
    onLine: async (line, proc) => {
      await sleep(SETTLE_MS);
      try {
        held = { rss_kb: rssKB(srv.pid), fds: fdCount(srv.pid) };
      } catch (e) {
        held = { error: e.message };
      }
      proc.kill('SIGTERM');
    },
  });
  const r = lastJSON(out, 'loadgen idle');
  if (!held || held.error) throw new Error(`could not read ${srv.name}'s RSS with the clients held${held ? `: ${held.error}` : ''}`);
  log(`  ${JSON.stringify(r)} held: ${JSON.stringify(held)}`);
  return { ...r, ...held };
}

// ---------------------------------------------------------------- the runs

const results = {};   // results[kind][figure] = result, or { error }
const errors = [];

async function measure(kind, figure, fn) {
  results[kind] ??= {};
  try {
    results[kind][figure] = await fn();
  } catch (e) {
    results[kind][figure] = { error: e.message.split('\n')[0] };
    errors.push(`${LABEL[kind]}, ${figure}: ${e.message}`);
    log(`FAILED ${LABEL[kind]}, ${figure}: ${e.message}`);
  }
}

// One server, several figures: started once, stopped at the end. When it
// dies, the figures after that fail with the reason.
async function withServer(kind, figures, warmup, arg) {
  let srv;
  try {
    srv = await start(kind, arg);
    if (warmup) {
      try { await warmup(srv); } catch (e) { throw new Error(`warm-up: ${e.message}`); }
    }
  } catch (e) {
    if (srv) await stop(srv);
    for (const [figure] of figures) await measure(kind, figure, () => { throw e; });
    return;
  }
  try {
    for (const [figure, fn] of figures) await measure(kind, figure, () => fn(srv));
  } finally {
    await stop(srv);
  }
}

// Before the figures, every server gets the same short warm-up, not
// counted (Node's JIT, the first allocations).
const socketWarmup = async (srv) => {
  await loadgen(srv, 'fanout', P.warmup.fanout, 60000);
  await loadgen(srv, 'echo', P.warmup.echo, 60000);
};
const httpWarmup = (srv) => wrk(srv, P.warmup.wrk);
const bothWarmup = async (srv) => { await socketWarmup(srv); await httpWarmup(srv); };

// moonwire behind one nginx worker, both on the server's core: /hello over
// FastCGI, then over proxy_pass. A failure fails both figures.
async function withFront() {
  let mw, ng;
  try {
    mw = await start('moonwireFcgi');
    ng = await start('nginxFront', mw);
    try {
      await wrk(ng, P.warmup.wrk);
      await wrk(ng, P.warmup.wrk, ng.proxyPort);
    } catch (e) { throw new Error(`warm-up: ${e.message}`); }
    for (const [figure, port] of [['fastcgi', ng.port], ['proxy', ng.proxyPort]]) {
      await measure('front', figure, async () => {
        const r = await wrk(ng, P.wrk, port);
        if (mw.dead) throw new Error(mw.dead);
        return r;
      });
    }
  } catch (e) {
    for (const figure of ['fastcgi', 'proxy']) if (!results.front?.[figure]) await measure('front', figure, () => { throw e; });
  } finally {
    if (ng) await stop(ng);
    if (mw) await stop(mw);
  }
}

// Fan-out across a cluster: a redis-server of its own and two processes of
// kind on it, all three on the server's core (the load client keeps the
// other). loadgen puts every other receiver on the second process and the
// sender on the first, whose io.emit reaches the second through Redis. A
// failure (of any of the three) fails the figure.
async function withCluster(kind) {
  const figure = 'fanout';
  let redis, a, b;
  try {
    redis = await start('redis');
    const url = `redis://127.0.0.1:${redis.port}`;
    a = await start(kind, url);
    b = await start(kind, url);
    await subscribed(redis.port, 2);
    const cluster = {
      name: `${LABEL[kind]} ×2`, port: a.port, pids: [a.pid, b.pid, redis.pid],
      get dead() { return [a, b, redis].find((m) => m.dead)?.dead ?? null; },
    };
    try {
      await loadgen(cluster, 'fanout', { ...P.warmup.fanout, port2: b.port }, 60000);
    } catch (e) { throw new Error(`warm-up: ${e.message}`); }
    await measure(kind, figure, () => loadgen(cluster, 'fanout', { ...P.redis, port2: b.port }, 120000, { cpu: true }));
  } catch (e) {
    if (!results[kind]?.[figure]) await measure(kind, figure, () => { throw e; });
  } finally {
    for (const m of [b, a, redis]) if (m) await stop(m);
  }
}

// Waits (5 s at most) until n servers listen on the Redis adapter's request
// channel of the main namespace: a process may say it is listening before
// its subscriptions are in place, and a broadcast published before then
// would not reach it. Spoken in RESP on a socket, to need no client library.
async function subscribed(port, n) {
  const channel = 'socket.io-request#/#';
  const ask = () => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    let got = '';
    const done = (v) => { c.destroy(); resolve(v); };
    c.setTimeout(1000, () => done(-1));
    c.on('error', () => done(-1));
    c.on('data', (d) => {
      got += d;
      const m = /:(\d+)\r\n$/.exec(got);  // *2 $len channel :count
      if (m) done(Number(m[1]));
    });
    c.write(`*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$${channel.length}\r\n${channel}\r\n`);
  });
  const deadline = Date.now() + 5000;
  let count = -1;
  while ((count = await ask()) < n && Date.now() < deadline) await sleep(50);
  if (count < n) log(`only ${count} of ${n} servers subscribed to ${channel} after 5 s: going on`);
}

// Whether this moonwire binary has the Redis adapter (`--redis URL`).
const NO_REDIS = 'moonwire: no --redis support in this binary';
function moonwireHasRedis() {
  const r = spawnSync(MOONWIRE, ['--help'], { encoding: 'utf8' });
  return /--redis\b/.test(`${r.stdout}${r.stderr}`);
}

// wrk on one URL, and the server's CPU per request (user and system, from
// /proc/PID/stat, every thread and child process) over wrk's run.
async function wrkCpu(srv, target = '/hello') {
  const before = serverCpu(srv);
  const r = await wrk(srv, P.wrk, srv.port, target);
  const after = serverCpu(srv);
  return { ...r, ...perUnit(before, after, r.requests) };
}
const httpFigure = ['http', (srv) => wrkCpu(srv)];

// A small static file under wrk: requests per second and the server's CPU per request.
const staticWarmup = (srv) => wrk(srv, P.warmup.wrk, srv.port, '/small.css');
const staticFile = (srv) => wrkCpu(srv, '/small.css');

// P.download.clients slow clients download the large file at once; the
// server's RSS is sampled every 100 ms (its peak kept), its CPU read
// before and after.
async function download(srv) {
  const { clients, rateKB, mb } = P.download;
  const rssBefore = rssTreeKB(srv.pid);
  let peak = rssBefore;
  const sampler = setInterval(() => { try { peak = Math.max(peak, rssTreeKB(srv.pid)); } catch { /* gone */ } }, 100);
  const before = cpuSeconds(srv.pid);
  const args = [process.execPath, path.join(ROOT, 'bench/slowget.mjs'), '--port', String(srv.port), '--path', '/big.bin',
    '--clients', String(clients), '--rate-kb', String(rateKB)];
  log(`${srv.name}: slowget --clients ${clients} --rate-kb ${rateKB} (${mb} MB each)`);
  let out;
  try {
    ({ out } = await client(srv, args, { timeoutMs: (mb * 1024 / rateKB) * 3000 + 60000, label: 'slowget' }));
  } finally {
    clearInterval(sampler);
  }
  const after = cpuSeconds(srv.pid);
  const r = lastJSON(out, 'slowget');
  const user = after.user - before.user, sys = after.sys - before.sys;
  const res = { ...r, rss_before_kb: rssBefore, rss_peak_kb: peak, user_s: user, sys_s: sys,
    cpu_us_per_mb: r.bytes ? ((user + sys) * 1e6) / (r.bytes / 2 ** 20) : NaN };
  log(`  ${JSON.stringify(res)}`);
  return res;
}
const fileFigures = [['static', staticFile], ['download', download]];

// The realtime figures, the same for moonwire and each socket.io setup.
const socketFigures = [
  ...P.fanout.map((f) => [`fanout${f.receivers}`, (srv) => loadgen(srv, 'fanout', f, 180000, { cpu: true })]),
  ['echo', (srv) => loadgen(srv, 'echo', P.echo, (P.echo.seconds + 60) * 1000, { cpu: true })],
  ['connect', (srv) => loadgen(srv, 'connect', P.connect, 120000)],
];

// Idle memory on a fresh server: RSS after a small warm-up (the first
// connections allocate what every later one shares), then with the clients held.
const memoryFigure = ['memory', async (srv) => {
  await loadgen(srv, 'connect', { clients: 100, concurrency: 100 }, 30000);
  await sleep(WARMUP_SETTLE_MS);
  const before = rssKB(srv.pid);
  const r = await idle(srv, P.idle, 60000);
  return { ...r, rss_before_kb: before, per_client_kb: (r.rss_kb - before) / r.connected };
}];

// The JSON codec figure (bench/codec/codec.lua, on the system's Lua 5.4
// with lua-cjson for "before" and build/lua/moonwire/json_c.so for
// "after"): µs per operation (the best of several rounds, CPU time, on the
// server's core), and instructions per operation from valgrind's callgrind
// (the difference of two runs, so start-up does not count), which the
// load of a shared machine does not move.
const CODEC = path.join(ROOT, 'bench/codec/codec.lua');
const CODEC_OPS = ['echo', 'chat'].flatMap((p) => ['before', 'after'].flatMap((w) => [`${w}.${p}.decode`, `${w}.${p}.encode`]));
async function codec() {
  const build = path.dirname(MOONWIRE);
  const lua = ['lua5.4', CODEC, build];
  const host = { name: 'codec', dead: null };
  const it = QUICK ? 2000 : 20000;
  log(`codec: ${lua.join(' ')} --iterations ${it}`);
  const { out } = await client(host, [...SERVER_CPU, ...lua, '--iterations', String(it), '--rounds', QUICK ? '2' : '5'], { label: 'codec.lua' });
  const r = { us: {}, ir: {} };
  for (const line of out.trim().split('\n')) {
    const o = JSON.parse(line);
    r.us[o.op] = o.us;
  }
  if (!tool('valgrind')) {
    r.ir_skipped = 'valgrind is missing (tools/deps.sh bench installs it)';
    return r;
  }
  const [n1, n2] = QUICK ? [50, 250] : [200, 1200];
  const collected = async (op, n) => {
    const { err } = await client(host, ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', ...lua, '--only', op, '--iterations', String(n)], { label: `callgrind ${op}` });
    const m = /Collected : (\d+)/.exec(err);
    if (!m) throw new Error(`callgrind printed no count for ${op}:\n${tail(err)}`);
    return Number(m[1]);
  };
  for (const op of CODEC_OPS) r.ir[op] = ((await collected(op, n2)) - (await collected(op, n1))) / (n2 - n1);
  log(`  ${JSON.stringify(r)}`);
  return r;
}

async function main() {
  for (const [what, ok] of [[MOONWIRE, fs.existsSync(MOONWIRE)], [LOADGEN, fs.existsSync(LOADGEN)]]) {
    if (!ok) { console.error(`bench: ${what} is missing: run \`make bench\` (it builds moonwire and loadgen)`); process.exit(2); }
  }
  for (const cmd of ['nginx', 'wrk', REDIS, 'lua5.4']) {
    if (!tool(cmd)) { console.error(`bench: ${cmd} is missing: \`tools/deps.sh bench\` installs it`); process.exit(2); }
  }
  log(`pinning: ${PIN ? 'server on CPU 1, client on CPU 0' : 'none'}; RLIMIT_NOFILE ${FD_LIMIT}${RAISE ? ' (raised)' : ' (the hard limit: could not be raised)'}`);

  const groups = [
    ['files', async () => {
      await withServer('moonwireFiles', fileFigures, staticWarmup);
      await withServer('nginxFiles', fileFigures, staticWarmup);
    }],
    ['moonwire', () => withServer('moonwire', [...socketFigures, httpFigure], bothWarmup)],
    ['socketio', () => withServer('socketio', socketFigures, socketWarmup)],
    ['uws', () => withServer('socketioUws', [...socketFigures, httpFigure], bothWarmup)],
    ['bun', () => withServer('socketioBun', [...socketFigures, httpFigure], bothWarmup)],
    ['express', () => withServer('express', [httpFigure], httpWarmup)],
    ['nginx', () => withServer('nginx', [httpFigure], httpWarmup)],
    ['front', () => withFront()],
    ['redis', async () => {
      if (moonwireHasRedis()) {
        await withCluster('moonwireRedis');
      } else {
        log(NO_REDIS);
        results.moonwireRedis = { fanout: { skipped: NO_REDIS } };
      }
      await withCluster('socketioRedis');
    }],
    ['memory', async () => { for (const kind of REALTIME) await withServer(kind, [memoryFigure]); }],
    ['max', async () => {
      await withServer('moonwire', [['max', maxClients]]);
      await withServer('moonwireWorkers', [['max', maxAcrossWorkers]], null, MAX_WORKERS);
    }],
    ['workers', async () => {
      const { processes, ...load } = P.workers;
      const fanout = ['fanout', (srv) => loadgen(srv, 'fanout', load, 180000, { cpu: true })];
      await withServer('moonwireWorkers', [fanout], socketWarmup);
      await withServer('socketioCluster', [fanout], socketWarmup);
    }],
    ['codec', () => measure('codec', 'json', codec)],
    // Only when asked for (--only db): two builds, about four minutes.
    ['db', () => new Promise((resolve) => {
      const args = [path.join(ROOT, 'bench/db.mjs'), '--after', MOONWIRE, ...(QUICK ? ['--quick'] : [])];
      if (process.env.MOONWIRE_BEFORE) args.push('--before', process.env.MOONWIRE_BEFORE);
      const p = spawn(process.execPath, args, { stdio: 'inherit' });
      p.on('exit', (code) => { if (code !== 0) errors.push(`database figures: bench/db.mjs exited ${code}`); resolve(); });
    })],
  ];
  for (const name of ONLY ?? []) {
    if (!groups.some(([g]) => g === name)) { console.error(`bench: --only: no group '${name}' (${groups.map(([g]) => g).join(', ')})`); process.exit(2); }
  }
  for (const [name, fn] of groups) if (ONLY ? ONLY.has(name) : name !== 'db') await fn();

  const onlyDb = ONLY && ONLY.size === 1 && ONLY.has('db'); // bench/db.mjs printed its own table
  const table = report();
  if (!onlyDb) console.log(table);
  if (!ONLY) {
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(RESULTS, table + '\n');
  }
  console.log(`\n${ONLY ? 'Not written (--only).' : `Written to ${path.relative(process.cwd(), RESULTS)}.`} ` +
    `Elapsed: ${elapsed().toFixed(0)} s${STARTED !== T0 ? ` for make bench (${((Date.now() - T0) / 1000).toFixed(0)} s of it in the runner)` : ''}.`);
  if (errors.length) {
    console.error(`\nbench: ${errors.length} figure(s) failed:\n${errors.map((e) => `- ${e}`).join('\n')}`);
    process.exit(1);
  }
}

// The most clients one moonwire process holds: P.max.clients, or fewer when
// the file descriptor limit (one fd per client, in moonwire and in the load
// client) or the time left (judged from the connection rate measured
// before) does not allow that many.
async function maxClients(srv) {
  let clients = P.max.clients, limitedBy = null;
  const byFds = Math.floor((FD_LIMIT - 100) / 100) * 100;
  if (byFds < clients) { clients = byFds; limitedBy = 'fds'; }
  const rate = results.moonwire?.connect?.per_s;
  const left = BUDGET_S - 15 - elapsed();  // 15 s for writing up and stopping
  if (rate && !QUICK) {
    const fits = Math.floor(((left - 10) / 2.5) * rate / 1000) * 1000; // connect, hold, close; room for slowdown
    if (fits < clients) {
      clients = Math.max(P.idle.clients, fits);
      limitedBy = 'time';
      log(`time left ${left.toFixed(0)} s at ${rate.toFixed(0)} connections/s: trying ${clients} clients, not ${P.max.clients}`);
    }
  }
  const before = rssKB(srv.pid);
  const timeoutMs = Math.max(30, left) * 1000;
  const r = await idle(srv, { clients, concurrency: P.max.concurrency }, timeoutMs);
  return { ...r, asked: clients, limitedBy, rss_before_kb: before, per_client_kb: (r.rss_kb - before) / r.connected,
    mem_available_kb: memAvailableKB() };
}

// The most clients across `moonwire --workers N` on this host: the fd
// limit is per process, so P.max.clients are spread over enough workers to
// hold at most PER_PROCESS each (the kernel's SO_REUSEPORT hash spreads
// them, not quite evenly), held by as many loadgen processes. RSS is the
// supervisor's and every worker's added up, read once every loadgen has
// all its clients in.
const PER_PROCESS = Math.min(15000, Math.max(1000, FD_LIMIT - 5000));
const MAX_WORKERS = Math.max(2, Math.ceil(P.max.clients / PER_PROCESS));
async function maxAcrossWorkers(srv) {
  const left = BUDGET_S - 15 - elapsed();
  if (!QUICK && left < 60) return { skipped: `not tried: ${left.toFixed(0)} s left of the ${BUDGET_S / 60}-minute budget` };
  await loadgen(srv, 'connect', { clients: 100 * MAX_WORKERS, concurrency: 100 }, 30000);
  await sleep(WARMUP_SETTLE_MS);
  const before = rssTreeKB(srv.pid);
  const clients = P.max.clients, each = Math.ceil(clients / MAX_WORKERS);
  const sources = Math.ceil(clients / 10000);  // loopback addresses, each under its ~28,000 source ports
  const hold = 60;  // plenty to connect; a loadgen that fails early leaves the others at most this long
  let pending = MAX_WORKERS, held = null, allIn;
  const ready = new Promise((resolve) => { allIn = resolve; });
  const procs = [];
  log(`${srv.name}: ${MAX_WORKERS} × loadgen idle --clients ${each} --sources ${sources}`);
  const runs = Array.from({ length: MAX_WORKERS }, () => client(srv, [LOADGEN, 'idle', ...base(srv), '--clients', String(each),
    '--concurrency', String(P.max.concurrency), '--sources', String(sources), '--hold', String(hold)], {
    timeoutMs: (hold + 30) * 1000, label: `loadgen idle --clients ${each}`,
    onLine: (line, proc) => { procs.push(proc); if (--pending === 0) allIn(); },
  }));
  for (const p of runs) p.catch(() => allIn());  // one that fails ends the wait (Promise.all below says why)
  await ready;
  await sleep(SETTLE_MS);
  try {
    const tree = procTree(srv.pid);
    held = { rss_kb: rssTreeKB(srv.pid), processes: tree.length, fds_max: Math.max(...tree.map(fdCount)) };
  } catch (e) { held = { error: e.message }; }
  for (const p of procs) p.kill('SIGTERM');
  const outs = await Promise.all(runs);
  const rs = outs.map(({ out }) => lastJSON(out, 'loadgen idle'));
  if (held.error) throw new Error(`could not read ${srv.name}'s RSS with the clients held: ${held.error}`);
  const connected = rs.reduce((a, r) => a + r.connected, 0);
  const seconds = Math.max(...rs.map((r) => r.seconds)), clientCpu = rs.reduce((a, r) => a + r.client_cpu, 0);
  const r = { connected, asked: each * MAX_WORKERS, workers: MAX_WORKERS, seconds, client_cpu: clientCpu, rss_before_kb: before, ...held,
    per_client_kb: (held.rss_kb - before) / connected };
  log(`  ${JSON.stringify(r)}`);
  return r;
}

// ---------------------------------------------------------------- the table

const num = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '—');
const cpu = (r) => (r && Number.isFinite(r.client_cpu) && r.seconds ? `${Math.round((100 * r.client_cpu) / r.seconds)}%` : '—');

function cell(r, key, d) {
  if (!r) return '—';
  if (r.error) return 'failed';
  if (r.skipped) return r.skipped;
  return num(r[key], d);
}

function ratio(m, a, key, lower) {
  if (!m || !a || m.error || a.error) return '—';
  const x = lower ? a[key] / m[key] : m[key] / a[key];
  return Number.isFinite(x) ? `${x.toFixed(2)}` : '—';
}

function header() {
  const cpuModel = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const ver = (argv, re) => { const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' }); const m = re.exec(`${r.stdout}${r.stderr}`); return m ? m[1] : 'unknown'; };
  const pkg = (name) => { try { return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version; } catch { return 'unknown'; } };
  const mw = ver([MOONWIRE, '--version'], /(\S+)\s*$/);
  return [
    `# moonwire benchmark${QUICK ? ' (--quick: small counts, not comparable)' : ''}`,
    '',
    `- date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    `- machine: ${os.cpus().length} cores (nproc ${ver(['nproc'], /(\d+)/)}), ${cpuModel}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}`,
    `- moonwire ${mw}; Node ${process.version}: socket.io ${pkg('socket.io')} (engine.io ${pkg('engine.io')}, ws ${pkg('engine.io/node_modules/ws') === 'unknown' ? pkg('ws') : pkg('engine.io/node_modules/ws')} without bufferutil), Express ${pkg('express')}`,
    `- socket.io + uWS: uWebSockets.js ${pkg('@trufflesuite/uws-js-unofficial')} (@trufflesuite/uws-js-unofficial) on Node ${process.version}; socket.io on Bun: Bun ${ver([BUN, '--version'], /(\S+)\s*$/)} with @socket.io/bun-engine ${pkg('@socket.io/bun-engine')}`,
    `- nginx ${ver(['nginx', '-v'], /nginx\/(\S+)/)} with its Lua module, 1 worker; wrk ${ver(['wrk', '-v'], /wrk (\S+)/)}`,
    `- workers rows: socket.io in Node's cluster with @socket.io/cluster-adapter ${pkg('@socket.io/cluster-adapter')}; every process of either on the server's core`,
    `- Redis cluster rows: redis-server ${ver([REDIS, '--version'], /v=(\S+)/)}; socket.io with @socket.io/redis-adapter ${pkg('@socket.io/redis-adapter')} and node-redis ${pkg('redis')}`,
    `- all on loopback; ${PIN ? 'server pinned to CPU 1 (with its threads; both processes of a Redis cluster and its redis-server too), load client (loadgen, wrk) to CPU 0' : 'no pinning (one core, or no taskset)'}; RLIMIT_NOFILE ${num(FD_LIMIT)} for servers and client${RAISE ? '' : ' (the hard limit: could not be raised)'}`,
    `- load average (1 min) when the run began and ended: ${LOAD0.toFixed(2)}, ${os.loadavg()[0].toFixed(2)} (the machine's other work competes with the run: ${os.cpus().length} cores)`,
    `- other figures: ratio = moonwire / anchor for "higher is better", anchor / moonwire for "lower is better" (over 1 is moonwire ahead); client CPU = the load client's CPU time / wall time (moonwire run / anchor run)`,
  ].join('\n');
}

// The main table: one column per server, a row per figure. An anchor's
// cell ends with "· N×", moonwire against it (over 1: moonwire ahead).
function mainTable() {
  const res = (kind, fig) => results[kind]?.[fig];
  const val = (r, key) => (r && !r.error && Number.isFinite(r[key]) ? r[key] : NaN);
  const ratioOf = (m, a, key, lower) => (lower ? val(a, key) / val(m, key) : val(m, key) / val(a, key));
  // The best socket.io setup's value (the lowest: CPU, latency).
  const best = (fig, key, kinds = SOCKETIO) => Math.min(...kinds.map((k) => val(res(k, fig), key)).filter(Number.isFinite));
  const check = (x, ok) => (Number.isFinite(x) ? ok(x) : null);
  const lines = [
    `| figure | ${COLUMNS.map((k) => LABEL[k]).join(' | ')} | target | met |`,
    `| --- | ${COLUMNS.map(() => '---:').join(' | ')} | --- | --- |`,
  ];
  // kinds: the servers measured in this row; fmt(result): a cell's text;
  // key and lower: how the ratio is taken (no key: no ratio); met: true,
  // false, null, or a list of them (one per target).
  const line = (figure, kinds, fig, fmt, { key, lower = false, target = '', met = null } = {}) => {
    const m = res('moonwire', fig);
    const cells = COLUMNS.map((k) => {
      if (!kinds.includes(k)) return '';
      const a = res(k, fig);
      if (!a) return '—';
      if (a.error) return 'failed';
      let text = fmt(a);
      const x = key && k !== 'moonwire' ? ratioOf(m, a, key, lower) : NaN;
      if (Number.isFinite(x)) text += ` · ${x.toFixed(2)}×`;
      return text;
    });
    const mets = (Array.isArray(met) ? met : [met]).filter((x) => x !== null);
    lines.push(`| ${figure} | ${cells.join(' | ')} | ${target} | ${mets.map((x) => (x ? 'yes' : '**no**')).join(' / ')} |`);
  };
  const us = (d) => (r) => `${num(r.server_cpu_us, d)} (${num(r.server_user_us, d)} + ${num(r.server_sys_us, d)})`;
  const ms = (key) => (r) => num(r[key], 2);
  const clientCpu = (r) => cpu(r);
  const CPU = 'server CPU per';

  for (const f of P.fanout) {
    const fig = `fanout${f.receivers}`, m = res('moonwire', fig), big = f.receivers >= 1000;
    const rate = val(m, 'deliveries_per_s');
    line(`fan-out, ${num(f.receivers)} receivers × ${num(f.messages)} broadcasts${f.seconds ? ` (at most ${f.seconds} s)` : ''}, window ${f.window}: deliveries/s`, REALTIME, fig,
      (r) => num(r.deliveries_per_s) + (r.completed < r.messages ? ` (${num(r.completed)} in ${f.seconds} s)` : ''), {
        key: 'deliveries_per_s',
        target: big ? `≥ ${num(TARGET.fanoutRate)}/s and ≥ ${TARGET.fanoutRatio}× socket.io + ws` : `≥ ${num(TARGET.fanoutRate)}/s`,
        met: big ? check(ratioOf(m, res('socketio', fig), 'deliveries_per_s'), (x) => x >= TARGET.fanoutRatio && rate >= TARGET.fanoutRate)
          : check(rate, (x) => x >= TARGET.fanoutRate),
      });
    line(`↳ ${CPU} delivery, µs (user + system)`, REALTIME, fig, us(2), {
      key: 'server_cpu_us', lower: true,
      target: big ? `≤ 1/${TARGET.fanoutCpuUws} of socket.io + uWS` : '',
      met: big ? check(ratioOf(m, res('socketioUws', fig), 'server_cpu_us', true), (x) => x >= TARGET.fanoutCpuUws) : null,
    });
    line('↳ p50 latency, ms', REALTIME, fig, ms('p50_ms'), { key: 'p50_ms', lower: true });
    line('↳ p99 latency, ms', REALTIME, fig, ms('p99_ms'), {
      key: 'p99_ms', lower: true,
      target: big ? `≤ 1/${TARGET.fanoutP99} of socket.io + ws; ≤ 1/${TARGET.fanoutP99Best} of the best socket.io` : '',
      met: big ? [check(ratioOf(m, res('socketio', fig), 'p99_ms', true), (x) => x >= TARGET.fanoutP99),
        check(best(fig, 'p99_ms') / val(m, 'p99_ms'), (x) => x >= TARGET.fanoutP99Best)] : null,
    });
    line('↳ load client CPU (loadgen)', REALTIME, fig, clientCpu);
  }
  {
    const m = res('moonwire', 'echo');
    line(`acked echo, ${num(P.echo.clients)} clients in lockstep, ${P.echo.seconds} s: round trips/s`, REALTIME, 'echo', (r) => num(r.per_s), {
      key: 'per_s', target: `≥ ${TARGET.echo}× socket.io + ws`,
      met: check(ratioOf(m, res('socketio', 'echo'), 'per_s'), (x) => x >= TARGET.echo),
    });
    line(`↳ ${CPU} round trip, µs (user + system)`, REALTIME, 'echo', us(1), {
      key: 'server_cpu_us', lower: true, target: `≤ 2/3 of the best socket.io`,
      met: check(best('echo', 'server_cpu_us') / val(m, 'server_cpu_us'), (x) => x >= TARGET.echoCpuBest),
    });
    line('↳ p50 / p99 latency, ms', REALTIME, 'echo', (r) => `${num(r.p50_ms, 2)} / ${num(r.p99_ms, 2)}`, { key: 'p99_ms', lower: true });
    line('↳ load client CPU (loadgen)', REALTIME, 'echo', clientCpu);
  }
  line(`connection rate, ${num(P.connect.clients)} WebSocket + CONNECT, ${P.connect.concurrency} in flight: per s`, REALTIME, 'connect',
    (r) => num(r.per_s), { key: 'per_s' });
  {
    const m = res('moonwire', 'memory');
    line(`idle memory, ${num(P.idle.clients)} clients held: RSS growth per client, KB`, REALTIME, 'memory', (r) => num(r.per_client_kb, 1), {
      key: 'per_client_kb', lower: true, target: `≤ 1/${TARGET.memoryRatio} of socket.io + ws; ≤ ${TARGET.memoryKB} KB`,
      met: [check(ratioOf(m, res('socketio', 'memory'), 'per_client_kb', true), (x) => x >= TARGET.memoryRatio),
        check(val(m, 'per_client_kb'), (x) => x <= TARGET.memoryKB)],
    });
  }
  {
    const m = res('moonwire', 'http');
    line(`HTTP GET /hello ("Hello World" from a Lua or JS route), wrk -t${P.wrk.threads} -c${P.wrk.connections} -d${P.wrk.seconds}s: req/s`, HTTP, 'http',
      (r) => num(r.per_s), {
        key: 'per_s', target: `≥ ${TARGET.express}× Express; ≥ ${TARGET.nginx}× nginx+Lua`,
        met: [check(ratioOf(m, res('express', 'http'), 'per_s'), (x) => x >= TARGET.express),
          check(ratioOf(m, res('nginx', 'http'), 'per_s'), (x) => x >= TARGET.nginx)],
      });
    line(`↳ ${CPU} request, µs (user + system)`, HTTP, 'http', us(1), {
      key: 'server_cpu_us', lower: true, target: `≤ ${1 / TARGET.httpCpuBest}× the best of nginx+Lua and socket.io + uWS`,
      met: check(best('http', 'server_cpu_us', ['nginx', 'socketioUws']) / val(m, 'server_cpu_us'), (x) => x >= TARGET.httpCpuBest),
    });
    line('↳ p50 / p99 latency, ms', HTTP, 'http', (r) => `${num(r.p50_ms, 2)} / ${num(r.p99_ms, 2)}`, { key: 'p99_ms', lower: true });
    line('↳ load client CPU (wrk)', HTTP, 'http', clientCpu);
  }
  return lines;
}

function report() {
  const mw = results.moonwire ?? {};
  const rows = [];
  // met: true, false, or null (no target, or not measured)
  const row = (figure, m, a, anchor, ratioText, target, clientCpu, met = null) =>
    rows.push(`| ${figure} | ${m} | ${a} | ${anchor} | ${ratioText} | ${target} | ${met === null ? '' : met ? 'yes' : '**no**'} | ${clientCpu} |`);
  const value = (r, key) => (r && !r.error && Number.isFinite(r[key]) ? r[key] : NaN);
  const check = (x, ok) => (Number.isFinite(x) ? ok(x) : null);
  const us = (r, d = 1) => (!r ? '—' : r.error ? 'failed' : r.skipped ? r.skipped : `${num(r.server_cpu_us, d)} (${num(r.server_user_us, d)} + ${num(r.server_sys_us, d)})`);

  {
    const f = P.redis, m = results.moonwireRedis?.fanout, a = results.socketioRedis?.fanout;
    const what = `fan-out across two processes through Redis, ${num(f.receivers)} receivers (half on each), ${num(f.messages)} broadcasts, window ${f.window}`;
    const anchor = 'socket.io + ws + @socket.io/redis-adapter';
    row(`${what}: deliveries/s`, cell(m, 'deliveries_per_s'), cell(a, 'deliveries_per_s'), anchor, `${ratio(m, a, 'deliveries_per_s')} (higher is better)`, '', `${cpu(m)} / ${cpu(a)}`);
    const ml = m?.skipped ? null : m;  // the reason once, in the first row
    row(`${what}: CPU per delivery of the two processes and redis-server, µs (user + system)`, ml ? us(ml, 2) : '—', us(a, 2), anchor,
      `${ratio(m, a, 'server_cpu_us', true)} (lower is better)`, '', '');
    row(`${what}: p50 latency ms`, cell(ml, 'p50_ms', 2), cell(a, 'p50_ms', 2), anchor, `${ratio(m, a, 'p50_ms', true)} (lower is better)`, '', '');
    row(`${what}: p99 latency ms`, cell(ml, 'p99_ms', 2), cell(a, 'p99_ms', 2), anchor, `${ratio(m, a, 'p99_ms', true)} (lower is better)`, '', '');
  }
  {
    const f = P.workers, m = results.moonwireWorkers?.fanout, a = results.socketioCluster?.fanout;
    const what = `fan-out across ${f.processes} processes on one port (\`--workers ${f.processes}\`), ${num(f.receivers)} receivers, ${num(f.messages)} broadcasts${f.seconds ? ` (at most ${f.seconds} s)` : ''}, window ${f.window}`;
    const anchor = `socket.io + ws, ${f.processes} workers of Node's cluster with @socket.io/cluster-adapter`;
    row(`${what}: deliveries/s`, cell(m, 'deliveries_per_s'), cell(a, 'deliveries_per_s'), anchor, `${ratio(m, a, 'deliveries_per_s')} (higher is better)`, '', `${cpu(m)} / ${cpu(a)}`);
    row(`${what}: CPU per delivery of every process, µs (user + system)`, us(m, 2), us(a, 2), anchor,
      `${ratio(m, a, 'server_cpu_us', true)} (lower is better)`, '', '');
    row(`${what}: p50 latency ms`, cell(m, 'p50_ms', 2), cell(a, 'p50_ms', 2), anchor, `${ratio(m, a, 'p50_ms', true)} (lower is better)`, '', '');
    row(`${what}: p99 latency ms`, cell(m, 'p99_ms', 2), cell(a, 'p99_ms', 2), anchor, `${ratio(m, a, 'p99_ms', true)} (lower is better)`, '', '');
  }
  {
    // before / after in one run: the anchor column is moonwire's codec before (lua-cjson 2.1.0 under the old moonwire.json)
    const c = results.codec?.json;
    const sum = (m, w, p) => (c && !c.error ? c[m][`${w}.${p}.decode`] + c[m][`${w}.${p}.encode`] : NaN);
    const fig = (m, w, p) => (c?.error ? { error: c.error } : { v: sum(m, w, p) });
    const anchor = 'the same before: lua-cjson + json.lua';
    for (const [p, what] of [['echo', 'per acked echo (the echo row: ["echo","0123456789abcdef"] in, its ack out)'],
      ['chat', 'per acked chat message (an object with floats, an integer, an empty array)']]) {
      row(`JSON codec ${what}: decode + encode µs`, cell(fig('us', 'after', p), 'v', 2), cell(fig('us', 'before', p), 'v', 2), anchor,
        `${ratio(fig('us', 'after', p), fig('us', 'before', p), 'v', true)} (lower is better)`, '', '');
      if (!c?.ir_skipped) {
        row(`JSON codec ${what}: decode + encode instructions (callgrind)`, cell(fig('ir', 'after', p), 'v'), cell(fig('ir', 'before', p), 'v'), anchor,
          `${ratio(fig('ir', 'after', p), fig('ir', 'before', p), 'v', true)} (lower is better)`, '', '');
      }
    }
  }
  const mx = mw.max;
  row('max clients held in one moonwire process', mx ? (mx.error ? 'failed' : num(mx.connected)) : '—', '—', '—', '—', `${num(TARGET.max)}`, cpu(mx),
    check(value(mx, 'connected'), (x) => x >= TARGET.max));
  const mxw = results.moonwireWorkers?.max;
  row(`max clients held across \`--workers ${MAX_WORKERS}\` on one host`, mxw ? (mxw.error ? 'failed' : mxw.skipped ?? num(mxw.connected)) : '—', '—', '—', '—',
    `${num(TARGET.max)}`, cpu(mxw), check(value(mxw, 'connected'), (x) => x >= TARGET.max));
  const front = results.front ?? {};
  row(`HTTP "Hello World" through nginx (1 worker) over FastCGI, wrk -t${P.wrk.threads} -c${P.wrk.connections} -d${P.wrk.seconds}s: req/s`,
    cell(front.fastcgi, 'per_s'), cell(front.proxy, 'per_s'), 'the same through nginx proxy_pass',
    `${ratio(front.fastcgi, front.proxy, 'per_s')} (higher is better)`, '', `${cpu(front.fastcgi)} / ${cpu(front.proxy)}`);

  const mf = results.moonwireFiles ?? {}, nf = results.nginxFiles ?? {};
  const sw = `a small static file (public/style.css, cached), wrk -t${P.wrk.threads} -c${P.wrk.connections} -d${P.wrk.seconds}s`;
  row(`${sw}: req/s`, cell(mf.static, 'per_s'), cell(nf.static, 'per_s'), 'nginx (sendfile, 1 worker)',
    `${ratio(mf.static, nf.static, 'per_s')} (higher is better)`, '', `${cpu(mf.static)} / ${cpu(nf.static)}`);
  row(`${sw}: server CPU per request, µs (user + system)`, us(mf.static), us(nf.static), 'nginx',
    `${ratio(mf.static, nf.static, 'server_cpu_us', true)} (lower is better)`, '', '');
  const d = P.download;
  const dw = `a ${d.mb} MB file to ${d.clients} clients reading ${num(d.rateKB / 1024, 1)} MB/s each`;
  const got = (r) => (!r ? '—' : r.error ? 'failed' : `${r.completed}/${r.clients}`);
  row(`${dw}: downloads complete`, got(mf.download), got(nf.download), 'nginx', '—', 'all', '',
    mf.download && !mf.download.error ? mf.download.completed === mf.download.clients : null);
  const mib = (r, k) => (r && !r.error ? { ...r, [`${k}_mib`]: r[k] / 1024 } : r);
  row(`${dw}: server RSS peak, MiB`, cell(mib(mf.download, 'rss_peak_kb'), 'rss_peak_kb_mib', 1), cell(mib(nf.download, 'rss_peak_kb'), 'rss_peak_kb_mib', 1), 'nginx',
    `${ratio(mf.download, nf.download, 'rss_peak_kb', true)} (lower is better)`, '', '');
  row(`${dw}: server CPU per MB sent, µs (user + system)`, cell(mf.download, 'cpu_us_per_mb', 0), cell(nf.download, 'cpu_us_per_mb', 0), 'nginx',
    `${ratio(mf.download, nf.download, 'cpu_us_per_mb', true)} (lower is better)`, '', '');
  const secs = (r) => (!r ? '—' : r.error ? 'failed' : `${num(r.user_s, 2)} / ${num(r.sys_s, 2)}`);
  row(`${dw}: server CPU seconds, user / system`, secs(mf.download), secs(nf.download), 'nginx', '—', '', '');

  const notes = [];
  for (const [k, r] of [['moonwire', mf.download], ['nginx', nf.download]]) {
    if (r && !r.error && r.completed < r.clients) notes.push(`- download, ${k}: ${r.clients - r.completed} of ${r.clients} cut short (${JSON.stringify(r.why)}; bytes received: ${r.cut.join(', ')}).`);
  }
  {
    const held = REALTIME.map((k) => [k, results[k]?.memory]).filter(([, r]) => r && !r.error)
      .map(([k, r]) => `${LABEL[k]} ${num(r.rss_before_kb / 1024, 1)} → ${num(r.rss_kb / 1024, 1)} MiB`);
    if (held.length) {
      notes.push(`- idle memory, RSS before and with ${num(P.idle.clients)} clients held (after a warm-up of 100 connections, read ${SETTLE_MS / 1000} s after the last client was in): ${held.join('; ')}.`);
    }
  }
  if (mx && !mx.error) notes.push(`- max clients: ${maxNote(mx)}`);
  else if (mx?.error) notes.push(`- max clients: the attempt failed: ${mx.error}`);
  if (mxw && !mxw.error && !mxw.skipped) {
    notes.push(`- max clients across workers: ${num(mxw.connected)} of ${num(mxw.asked)} held by ${mxw.workers} workers ` +
      `(${MAX_WORKERS} loadgen processes, the fd limit being per process; at most ${num(mxw.fds_max)} fds in one process): ` +
      `RSS of the supervisor and its workers ${num(mxw.rss_before_kb / 1024, 1)} → ${num(mxw.rss_kb / 1024, 1)} MiB, ${num(mxw.per_client_kb, 1)} KB per client.`);
  } else if (mxw?.error) notes.push(`- max clients across workers: the attempt failed: ${mxw.error}`);
  for (const k of HTTP) {
    const r = results[k]?.http;
    if (r && !r.error && r.errors) notes.push(`- HTTP ${LABEL[k]}: wrk reported "${r.errors}".`);
  }
  for (const [k, r] of [['through nginx over FastCGI', front.fastcgi], ['through nginx proxy_pass', front.proxy]]) {
    if (r && !r.error) notes.push(`- HTTP ${k}: p50 ${num(r.p50_ms, 2)} ms, p99 ${num(r.p99_ms, 2)} ms${r.errors ? `; wrk reported "${r.errors}"` : ''}.`);
  }
  {
    const c = results.codec?.json;
    if (c && !c.error) {
      const part = (p, op) => `${op} ${num(c.us[`after.${p}.${op}`], 2)} µs${c.ir_skipped ? '' : ` / ${num(c.ir[`after.${p}.${op}`])} instructions`}` +
        ` (before ${num(c.us[`before.${p}.${op}`], 2)}${c.ir_skipped ? '' : ` / ${num(c.ir[`before.${p}.${op}`])}`})`;
      notes.push(`- JSON codec, the echo: ${part('echo', 'decode')}, ${part('echo', 'encode')}; the chat message: ${part('chat', 'decode')}, ${part('chat', 'encode')}.` +
        (c.ir_skipped ? ` Instructions not counted: ${c.ir_skipped}.` : ''));
    }
  }
  if (results.moonwireRedis?.fanout?.skipped) notes.push(`- fan-out through Redis: ${results.moonwireRedis.fanout.skipped} (socket.io measured alone).`);
  if (errors.length) notes.push(...errors.map((e) => `- failed: ${e.split('\n')[0]}`));

  return [
    header(), '',
    '## moonwire against each socket.io setup, Express and nginx+Lua', '',
    '- each anchor\'s cell ends with "· N×": moonwire against that anchor, over 1 when moonwire is ahead (moonwire\'s throughput / the anchor\'s; the anchor\'s CPU, latency or memory / moonwire\'s)',
    '- server CPU per unit: user + system CPU time of the server\'s process (every thread, and child processes) from /proc/PID/stat, read when the load client has connected and again when it has its result, over the units of work in between: deliveries to receivers, acked round trips, requests; in µs, "total (user + system)"',
    '- load client CPU: its CPU time / the wall time of the measured part; near 100% the client, not the server, set the pace, and the server\'s CPU per unit is the figure to compare',
    '',
    ...mainTable(), '',
    '## Other figures', '',
    '| figure | moonwire | anchor value | anchor | ratio | target | met | client CPU |',
    '| --- | ---: | ---: | --- | --- | --- | --- | --- |',
    ...rows, '',
    ...notes,
  ].join('\n');
}

// Where the limit on clients comes from: the fds moonwire may open, the
// memory left, the client's source ports, the time.
function maxNote(mx) {
  const perKB = mx.per_client_kb;
  const byMemory = perKB > 0 ? Math.floor((mx.mem_available_kb + mx.rss_kb - mx.rss_before_kb) / perKB) : Infinity;
  const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const nrOpen = Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8'));
  const target = num(P.max.clients);
  const held = `held ${num(mx.connected)} clients (RSS ${num(mx.rss_before_kb / 1024, 1)} → ${num(mx.rss_kb / 1024, 1)} MiB, ` +
    `${num(perKB, 1)} KB per client; ${num(mx.fds)} fds open)`;
  const why = {
    fds: `the limit here is file descriptors: moonwire (and the load client) need one per client, and RLIMIT_NOFILE's hard limit is ${num(FD_LIMIT)} on this machine` +
      (CAP_SYS_RESOURCE ? '' : ' and cannot be raised (the process lacks CAP_SYS_RESOURCE, as in many containers)') +
      `; raise it (\`ulimit -n\`, prlimit, systemd's LimitNOFILE; at most fs.nr_open = ${num(nrOpen)}) and ${target} is in reach`,
    time: `tried ${num(mx.asked)}, not ${target}, to stay within the ${BUDGET_S / 60}-minute budget of \`make bench\``,
  }[mx.limitedBy] ?? `${target} held: the target`;
  return `${held}; ${why}. ` +
    `The next limits: memory, about ${num(byMemory)} clients at this rate in the ${num(mx.mem_available_kb / 1024 ** 2, 1)} GiB available; ` +
    `the load client's source ports, ${num(hi - lo + 1)} per source address (loadgen spreads its clients over 127.0.0.x). ` +
    `moonwire itself sets no cap on clients; at the fd limit it refuses new connections (libuv accepts and closes them).`;
}

main().catch((e) => { console.error(`bench: ${e.stack ?? e}`); process.exit(1); });
