// How long from saving a file under scripts/ to the new code answering, for
// the example app with a browser-like client connected (the target is under
// 200 ms). Each round appends a new handler to scripts/chat.lua, saves it,
// and asks over the same socket until the new handler answers.
//
//   node bench/reload.mjs [rounds]      (after make build)
//
// Prints the save-to-new-code times (median, p95, max) and the swap times
// the server logs (loading the new generation and re-attaching sockets).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';

const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = process.env.MOONWIRE_BIN ?? path.join(ROOT, 'build/moonwire');
const ROUNDS = Number(process.argv[2] ?? 20);

const app = fs.mkdtempSync(path.join(os.tmpdir(), 'moonwire-reload-bench-'));
for (const dir of ['scripts', 'views', 'public']) fs.cpSync(path.join(ROOT, dir), path.join(app, dir), { recursive: true });
const chat = path.join(app, 'scripts/chat.lua');
const original = fs.readFileSync(chat, 'utf8');

const server = spawn(BIN, ['--root', app, '--port', '0', '--quiet', '--db', path.join(app, 'bench.db')],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PET_STATUS_INTERVAL_MS: '10000' } });
let log = '';
server.stderr.on('data', (d) => { log += d; });
const port = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    const m = /listening on http:\/\/\S+:(\d+)/.exec(out);
    if (m) resolve(Number(m[1]));
  });
  server.on('exit', (code) => reject(new Error(`moonwire exited with ${code}\n${log}`)));
});

const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
await new Promise((resolve) => socket.on('connect', resolve));
await socket.emitWithAck('nickname', 'bench');

const ask = () => socket.timeout(1000).emitWithAck('bench round').catch(() => null);
const times = [];
// Round 0 is not timed: before it there is no handler to answer at all.
for (let round = 0; round <= ROUNDS; round++) {
  const code = `${original}\nio.on("connection", function(s) s:on("bench round", function(ack) ack(${round}) end) end)\n`;
  const t0 = performance.now();
  fs.writeFileSync(chat, code);
  while ((await ask()) !== round) { /* asks again at once: each answer is a round trip */ }
  if (round > 0) times.push(performance.now() - t0);
  await new Promise((r) => setTimeout(r, 50));
}

const swaps = [...log.matchAll(/reload: scripts\/chat\.lua changed: generation \d+ loaded in ([\d.]+) ms/g)].map((m) => Number(m[1])).slice(1);
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return `median ${at(0.5).toFixed(1)} ms, p95 ${at(0.95).toFixed(1)} ms, max ${s[s.length - 1].toFixed(1)} ms`;
};
console.log(`save to new code (${times.length} rounds, one socket connected, 30 ms debounce included): ${stats(times)}`);
console.log(`swap logged by the server (${swaps.length}): ${stats(swaps)}`);
console.log(`the same socket throughout: ${socket.connected ? 'yes' : 'no'}`);

socket.disconnect();
server.kill('SIGTERM');
await new Promise((r) => server.on('exit', r));
fs.rmSync(app, { recursive: true, force: true });
