// Helpers for the tests of a cluster on one Redis: a throwaway
// redis-server on a free port, and the Node member of a mixed cluster
// (socket.io 4 with @socket.io/redis-adapter, fixtures/redis/node-server.mjs,
// whose header is the command protocol every member speaks).
//
//   const redis = await startRedis(t);               // { port, url, kill(), restart(), stop() }
//   const node = await startNodeServer(t, { redisUrl: redis.url, name: 'node' });
//   const a = await serve(t, { args: ['--redis', redis.url], root: ... });  // moonwire
//
// Each is stopped when the test ends (t.after, in the order they were
// started), and killed if the test process exits first: no redis-server
// or Node server outlives the tests. redis-server comes from Debian's
// redis-server package (tools/deps.sh installs it); REDIS_SERVER overrides
// the command.

import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

import { FIXTURES, delay } from './helpers.mjs';

export const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
export const NODE_SERVER = path.join(FIXTURES, 'redis', 'node-server.mjs');

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const REDIS_READY = /Ready to accept connections/;
const PORT_BUSY = /Address already in use/;

// ---------------------------------------------------------------- clean-up

const live = new Set();

function killAll() {
  for (const proc of live) {
    try { proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killAll);
// Killed by a signal (the test runner's timeout, ^C): the children go too,
// then the signal does what it would have done.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAll();
    process.kill(process.pid, sig);
  });
}

// ---------------------------------------------------------------- processes

/** A port nothing listens on right now (it may be taken before it is used). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Spawns argv and resolves { proc, out(), exited } once ready(output) holds;
// rejects when it exits first or takes too long (err.output says what it printed).
function launch(argv, { env, ready, what }) {
  const proc = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      resolve(signal ?? code);
    });
  });
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c) => { out += c; });
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      const e = new Error(`${what} ${why}\n--- output ---\n${out}`);
      e.output = out;
      reject(e);
    };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      fail(`was not ready within ${READY_TIMEOUT_MS} ms`);
    }, READY_TIMEOUT_MS);
    proc.stdout.on('data', (c) => {
      out += c;
      const m = ready(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, match: m, out: () => out, exited });
      }
    });
    proc.on('error', (e) => fail(`could not start: ${e.message}${e.code === 'ENOENT' ? ` (${argv[0]} is not installed: tools/deps.sh installs it)` : ''}`));
    exited.then((how) => fail(`exited (${how}) before it was ready`));
  });
}

// SIGTERM, then SIGKILL if it lingers; resolves once it has exited.
async function terminate(p, sig = 'SIGTERM') {
  if (p.proc.exitCode !== null || p.proc.signalCode !== null) return p.exited;
  p.proc.kill(sig);
  const timer = setTimeout(() => p.proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
  const how = await p.exited;
  clearTimeout(timer);
  return how;
}

// ---------------------------------------------------------------- Redis

function redisArgv(port) {
  return [REDIS_SERVER, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
}

const startRedisOn = (port) => launch(redisArgv(port), { ready: (out) => REDIS_READY.test(out), what: `redis-server on port ${port}` });

/**
 * Starts a redis-server of its own on a free port (no persistence) for test t
 * (or for the caller to stop when t is null). Resolves
 * { port, url, proc, output(), kill(), restart(), stop() }:
 * kill() SIGKILLs it and resolves once it is gone; restart() starts it again
 * on the same port, empty (it retries for a moment while the port is still
 * taken); stop() ends it (SIGTERM) and is what t.after calls.
 */
export async function startRedis(t) {
  let port, current;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      current = await startRedisOn(port);
      break;
    } catch (e) {
      if (!PORT_BUSY.test(e.output ?? '') || attempt >= 5) throw e;
    }
  }
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get proc() { return current?.proc; },
    output: () => current?.out() ?? '',
    async kill() {
      if (current) await terminate(current, 'SIGKILL');
      current = null;
    },
    async restart() {
      if (current) await redis.kill();
      const until = Date.now() + 3_000;
      for (;;) {
        try {
          current = await startRedisOn(port);
          return redis;
        } catch (e) {
          if (!PORT_BUSY.test(e.output ?? '') || Date.now() > until) throw e;
          await delay(100);
        }
      }
    },
    async stop() {
      if (current) await terminate(current);
      current = null;
    },
  };
  t?.after(() => redis.stop());
  return redis;
}

// ---------------------------------------------------------------- Node server

/**
 * Starts fixtures/redis/node-server.mjs (socket.io 4 + @socket.io/redis-adapter)
 * on a free port for test t. Options: redisUrl (required), name (its
 * SERVER_NAME, default "node"), key (the adapter's key, default
 * "socket.io"), requestsTimeout (ms, default 5000), env (more environment).
 * Resolves { port, url, proc, output(), stop() }; stop() (SIGTERM, then
 * SIGKILL after 5 s) is what t.after calls.
 */
export async function startNodeServer(t, { redisUrl, name = 'node', key, requestsTimeout, env = {} } = {}) {
  if (!redisUrl) throw new Error('startNodeServer: redisUrl is required');
  const p = await launch([process.execPath, NODE_SERVER], {
    env: {
      PORT: '0',
      REDIS_URL: redisUrl,
      SERVER_NAME: name,
      ...(key !== undefined && { KEY: key }),
      ...(requestsTimeout !== undefined && { REQUESTS_TIMEOUT: String(requestsTimeout) }),
      ...env,
    },
    ready: (out) => /listening on (\d+)/.exec(out),
    what: `the Node server "${name}"`,
  });
  const port = Number(p.match[1]);
  const server = {
    port,
    url: `http://127.0.0.1:${port}`,
    proc: p.proc,
    output: p.out,
    stop: () => terminate(p),
  };
  t?.after(() => server.stop());
  return server;
}
