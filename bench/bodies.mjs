// Large request bodies arriving slowly, many at once: moonwire against nginx
// (with its Lua module reading the body, so that it spools bodies the way it
// does for proxy_pass) on loopback, same clients, same bytes. Each of N
// clients sends the headers of a 1 MiB body and 900 KiB of it as fast as it
// can, then trickles a byte every 400 ms for two seconds, then sends the rest
// and reads the answer (the body's length). Prints the server's RSS at its
// peak and while the clients trickle, and how long the server took to read
// the 900 KiB of every client (until no byte of it waits in a socket).
// (moonwire gives the memory of a burst back once no body byte waits for
// the disk and a second has passed since it last did: see core/body.c.)
//
//   node bench/bodies.mjs [--clients 1000] [--only moonwire|nginx]
//
// Needs build/moonwire (make build) and, for the nginx row, nginx with
// libnginx-mod-http-lua (tools/deps.sh bench). Not part of make bench's
// table: the figure it gives is memory, which that table does not compare.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const CLIENTS = Number(opt('clients', 1000));
const ONLY = opt('only', '');
const DECLARED = 1024 * 1024;
const SENT = 900 * 1024;
const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = process.env.MOONWIRE_BIN ?? path.join(ROOT, 'build/moonwire');

const delay = (ms) => new Promise((r) => setTimeout(r, ms));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-bench-bodies-'));
fs.chmodSync(tmp, 0o755); // nginx's worker runs as nobody when the bench runs as root
const cleanup = () => fs.rmSync(tmp, { recursive: true, force: true });
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const status = (pid) => fs.readFileSync(`/proc/${pid}/status`, 'utf8');
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(status(pid))[1]) / 1024;
/* Bytes still on their way to the server's port on loopback: queued to
 * send on the clients' sockets, or received and not yet read on the
 * server's (/proc/net/tcp: nginx reads with recv, which the process's own
 * read counters leave out). */
function inFlight(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let total = 0;
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const [tx, rx] = f[4].split(':').map((x) => parseInt(x, 16));
    if (f[2].endsWith(`:${hex}`)) total += tx; /* a client's socket */
    else if (f[1].endsWith(`:${hex}`)) total += rx; /* the server's */
  }
  return total;
}

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await delay(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

async function startMoonwire() {
  const root = path.join(tmp, 'app');
  fs.mkdirSync(path.join(root, 'scripts'), { recursive: true });
  fs.writeFileSync(path.join(root, 'scripts/app.lua'), [
    'local app = require "moonwire.app"',
    '-- The body\'s length, without reading it.',
    'app.post("/size", function(req, res) res:send(tostring(req:bodyReader().size)) end)',
    '',
  ].join('\n'));
  const spool = path.join(tmp, 'moonwire-tmp');
  fs.mkdirSync(spool);
  const port = await freePort();
  const proc = spawn(BIN, ['--root', root, '--port', String(port), '--db', path.join(tmp, 'db'), '--production',
    '--quiet', '--tmp-dir', spool], { stdio: 'ignore' });
  await waitPort(port);
  return { name: 'moonwire', port, pid: proc.pid, stop: () => proc.kill('SIGTERM') };
}

async function startNginx() {
  const dir = path.join(tmp, 'nginx');
  fs.mkdirSync(dir);
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path ${dir}/client_body;
    client_max_body_size 2m;
    server {
        listen 127.0.0.1:${port};
        location = /size {
            content_by_lua_block {
                ngx.req.read_body()
                local f = ngx.req.get_body_file()
                local size = 0
                if f then
                    local h = io.open(f, "rb"); size = h:seek("end"); h:close()
                else
                    size = #(ngx.req.get_body_data() or "")
                end
                ngx.header.content_length = #tostring(size)
                ngx.print(size)
            }
        }
    }
}
`);
  const proc = spawn('nginx', ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')],
    { stdio: 'ignore' });
  await waitPort(port);
  // The worker holds the connections: the master's only child.
  const children = fs.readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/);
  return { name: 'nginx', port, pid: Number(children[0]), stop: () => proc.kill('SIGTERM') };
}

async function scenario(server) {
  let peak = 0;
  const sampler = setInterval(() => { peak = Math.max(peak, rssMiB(server.pid)); }, 50);
  const before = rssMiB(server.pid);
  const t0 = performance.now();
  const socks = await Promise.all(Array.from({ length: CLIENTS }, async () => {
    const s = net.connect(server.port, '127.0.0.1');
    s.on('error', () => {});
    s.setEncoding('latin1');
    s.data = '';
    s.on('data', (d) => { s.data += d; });
    await new Promise((r) => s.once('connect', r));
    s.write(`POST /size HTTP/1.1\r\nHost: bench\r\nContent-Length: ${DECLARED}\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 'a');
    for (let left = SENT; left > 0; left -= chunk.length) {
      if (!s.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await new Promise((r) => s.once('drain', r));
    }
    return s;
  }));
  while (socks.some((s) => s.writableLength) || inFlight(server.port)) await delay(20);
  const ingest = performance.now() - t0;
  for (let i = 0; i < 5; i++) {
    for (const s of socks) s.write('b');
    await delay(400);
  }
  const trickling = rssMiB(server.pid);
  const rest = Buffer.alloc(DECLARED - SENT - 5, 'c');
  for (const s of socks) s.write(rest);
  const t1 = Date.now();
  while (socks.some((s) => !/\r\n\r\n\d+$/.test(s.data)) && Date.now() - t1 < 120_000) await delay(50);
  clearInterval(sampler);
  const ok = socks.filter((s) => s.data.endsWith(`\r\n\r\n${DECLARED}`)).length;
  for (const s of socks) s.destroy();
  return { before, peak, trickling, ingest, ok };
}

const rows = [];
for (const [name, start] of [['moonwire', startMoonwire], ['nginx', startNginx]]) {
  if (ONLY && ONLY !== name) continue;
  const server = await start();
  try {
    const r = await scenario(server);
    rows.push(`| ${name} | ${r.before.toFixed(1)} | ${r.peak.toFixed(1)} | ${r.trickling.toFixed(1)} | ${(r.ingest / 1000).toFixed(1)} s | ${r.ok}/${CLIENTS} |`);
  } finally {
    server.stop();
    await delay(300);
  }
}
console.log(`${CLIENTS} clients, each 900 KiB of a 1 MiB body at once, then trickling; server RSS in MiB\n`);
console.log('| server | idle | peak | after 2 s of trickling | reading 900 KiB from each | answered right |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const row of rows) console.log(row);
