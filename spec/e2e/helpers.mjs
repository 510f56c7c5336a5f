// Helpers for the end-to-end tests: start a moonwire server on a free port,
// talk to it with ordinary HTTP requests or with raw bytes on a socket, and
// make throwaway app roots.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const E2E_DIR = import.meta.dirname;
export const REPO_ROOT = path.resolve(E2E_DIR, '../..');
export const FIXTURES = path.join(E2E_DIR, 'fixtures');
export const BIN = process.env.MOONWIRE_BIN
  ? path.resolve(process.env.MOONWIRE_BIN)
  : path.resolve(E2E_DIR, '../../build/moonwire');

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const READY_LINE = /moonwire listening on http:\/\/(\S+):(\d+)/;

// ---------------------------------------------------------------- clean-up
// Whatever a failing test leaves behind (servers, temp dirs) goes when the
// test process exits.

const liveProcs = new Set();
const tempDirs = new Set();

process.on('exit', () => {
  for (const proc of liveProcs) {
    try { proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of tempDirs) {
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

/** A new empty directory under the system temp dir, removed at exit. */
export function makeTempDir(prefix = 'moonwire-e2e-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** A fresh path for a database file (the file itself does not exist yet). */
export function tempDbPath() {
  return path.join(makeTempDir('moonwire-db-'), 'test.db');
}

/**
 * A temporary app root holding a copy of a fixture. `source` is a fixture
 * name under spec/e2e/fixtures/ or an absolute directory; `only` limits the
 * copy to some top-level entries (e.g. ['scripts', 'views', 'public']).
 */
export function makeAppRoot(source, { only } = {}) {
  const from = path.isAbsolute(source) ? source : path.join(FIXTURES, source);
  const root = makeTempDir('moonwire-root-');
  const entries = only ?? fs.readdirSync(from);
  for (const entry of entries) {
    fs.cpSync(path.join(from, entry), path.join(root, entry), { recursive: true, verbatimSymlinks: true });
  }
  return root;
}

// ---------------------------------------------------------------- the server

/**
 * Starts moonwire and resolves once it prints its listening line.
 *
 * Options: args (extra flags), root (app root, default the repository's
 * example app), env (extra environment), db (database path, default a fresh
 * temp file), quiet (pass --quiet, default true), prefix (a command that
 * execs the server, e.g. ['prlimit', '--nofile=64', '--']).
 *
 * Resolves { port, url, proc, stdout(), stderr(), exited, signal(sig), stop() }:
 * exited is a promise of the exit code; stop() sends SIGTERM (unless a signal
 * was already sent), waits for the exit and resolves with the exit code.
 */
export async function startServer({ args = [], root = REPO_ROOT, env = {}, db, quiet = true, prefix = [] } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`moonwire binary not found at ${BIN}: build it first (make build) or set MOONWIRE_BIN`);
  }
  const dbPath = db ?? tempDbPath();
  const argv = ['--root', root, '--port', '0', '--db', dbPath];
  if (quiet) argv.push('--quiet');
  argv.push(...args);

  const proc = spawn(prefix[0] ?? BIN, prefix.length ? [...prefix.slice(1), BIN, ...argv] : argv, {
    cwd: E2E_DIR,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveProcs.add(proc);

  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => { err += chunk; });

  let exitCode;
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, sig) => {
      liveProcs.delete(proc);
      exitCode = code ?? `signal ${sig}`;
      resolve(code);
    });
  });

  const describe = () =>
    `command: ${BIN} ${argv.join(' ')}\n--- stdout ---\n${out}\n--- stderr ---\n${err}`;

  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`moonwire did not print its listening line within ${READY_TIMEOUT_MS} ms\n${describe()}`));
    }, READY_TIMEOUT_MS);
    proc.stdout.on('data', (chunk) => {
      out += chunk;
      const m = READY_LINE.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ host: m[1], port: Number(m[2]) });
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`could not start moonwire: ${e.message}\n${describe()}`));
    });
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`moonwire exited (${exitCode}) before it was ready\n${describe()}`));
    });
  });

  let signalled = false;
  const signal = (sig = 'SIGTERM') => {
    signalled = true;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
  };

  const stop = async () => {
    if (!signalled) signal('SIGTERM');
    let timer;
    const code = await Promise.race([
      exited,
      new Promise((resolve) => {
        timer = setTimeout(() => {
          proc.kill('SIGKILL');
          resolve(`not exited ${STOP_TIMEOUT_MS} ms after SIGTERM (killed)`);
        }, STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    return code;
  };

  return {
    port: address.port,
    url: `http://127.0.0.1:${address.port}`,
    proc,
    db: dbPath,
    stdout: () => out,
    stderr: () => err,
    exited,
    signal,
    stop,
  };
}

const SANITIZER_REPORT = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;

/**
 * Checks that a stopped server exited cleanly: status 0 and no sanitizer
 * report (under `make test-sanitize` a leak or an error fails the test).
 */
export function assertCleanExit(code, stderr) {
  if (SANITIZER_REPORT.test(stderr)) throw new Error(`sanitizer report:\n${stderr}`);
  if (code !== 0) throw new Error(`moonwire exited with ${code}\n--- stderr ---\n${stderr}`);
}

/** Starts a server for one test; when the test ends, stops it and checks it exited cleanly. */
export async function serve(t, options) {
  const server = await startServer(options);
  t.after(async () => assertCleanExit(await server.stop(), server.stderr()));
  return server;
}

/** Runs the binary with some arguments and collects its output (for --help and such). */
export function runBinary(args, { timeout = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, args, { cwd: E2E_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    liveProcs.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`moonwire ${args.join(' ')} did not exit within ${timeout} ms\n${stdout}\n${stderr}`));
    }, timeout);
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      liveProcs.delete(proc);
      resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------- HTTP clients

/**
 * One HTTP request on its own connection (no pooling, redirects not
 * followed). Resolves { status, headers, body (utf8 text), raw (Buffer) }.
 */
export function request(base, target, { method = 'GET', headers = {}, body, timeout = 5_000 } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(target, base);
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: raw.toString('utf8'), raw });
      });
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`${method} ${target} got no complete answer within ${timeout} ms`));
    }, timeout);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** POSTs fields as application/x-www-form-urlencoded. */
export function postForm(base, target, fields, options = {}) {
  const body = new URLSearchParams(fields).toString();
  return request(base, target, {
    ...options,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
    body,
  });
}

/**
 * A raw TCP connection to the server: write bytes as they are, read
 * responses or wait for the server to close. Data is kept as a latin1
 * string, so one character is one byte.
 */
export class RawConnection {
  static async open(port, host = '127.0.0.1') {
    const socket = net.connect(port, host);
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawConnection(socket);
  }

  constructor(socket) {
    this.socket = socket;
    this.data = '';
    this.closed = false;
    this.error = null;
    this.waiters = new Set();
    socket.on('data', (chunk) => { this.data += chunk.toString('latin1'); this.#wake(); });
    // A reset after the server answered is a close as far as a client can tell.
    socket.on('error', (e) => { this.error = e; });
    socket.on('close', () => { this.closed = true; this.#wake(); });
  }

  #wake() {
    for (const check of this.waiters) check();
  }

  /** Resolves true as soon as predicate() holds, false after timeout ms. */
  waitFor(predicate, timeout = 5000) {
    return new Promise((resolve) => {
      const check = () => {
        if (!predicate()) return;
        done(true);
      };
      const done = (value) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => done(false), timeout);
      this.waiters.add(check);
      check();
    });
  }

  /** Writes bytes (a string is sent as latin1, so '\xff' is one byte). */
  write(bytes) {
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    return new Promise((resolve, reject) => {
      this.socket.write(buf, (e) => (e ? reject(e) : resolve()));
    });
  }

  /**
   * Waits for one complete response at the start of what was received and
   * removes it from the buffer. head: true for an answer to HEAD (no body).
   */
  async readResponse({ head = false, timeout = 5_000 } = {}) {
    let parsed = null;
    const ok = await this.waitFor(() => {
      parsed = parseResponse(this.data, { head, closed: this.closed });
      return parsed !== null || this.closed;
    }, timeout);
    if (!parsed) {
      const why = ok ? 'the connection closed' : `${timeout} ms passed`;
      throw new Error(`no complete response before ${why}; received so far: ${JSON.stringify(this.data.slice(0, 500))}`);
    }
    this.data = this.data.slice(parsed.length);
    return parsed;
  }

  /** Resolves true if the server closes the connection within timeout ms. */
  waitClose(timeout) {
    return this.waitFor(() => this.closed, timeout);
  }

  destroy() {
    this.socket.destroy();
  }
}

/**
 * Writes raw bytes on a new connection and collects everything received until
 * the server closes the connection or timeout ms pass. Resolves
 * { data (latin1 string), closed (whether the server closed it) }.
 */
export async function rawRequest(port, bytes, { timeout = 3_000 } = {}) {
  const conn = await RawConnection.open(port);
  try {
    await conn.write(bytes).catch(() => {}); // the server may close before reading it all
    const closed = await conn.waitClose(timeout);
    return { data: conn.data, closed };
  } finally {
    conn.destroy();
  }
}

// ---------------------------------------------------------------- parsing

/**
 * Parses the HTTP response at the start of data (a latin1 string). Returns
 * null while it is incomplete, else { version, status, reason, headers
 * (lower-case names; repeated ones joined with ", "), body, length (bytes
 * used) }. head: the request was HEAD; closed: the connection has ended
 * (completes a body that runs until close).
 */
export function parseResponse(data, { head = false, closed = false } = {}) {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = data.slice(0, end).split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const status = Number(m[2]);
  const start = end + 4;
  const result = (body, length) => ({ version: m[1], status, reason: m[3] ?? '', headers, body, length });

  if (head || (status >= 100 && status < 200) || status === 204 || status === 304) {
    return result('', start);
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    let pos = start;
    let body = '';
    for (;;) {
      const eol = data.indexOf('\r\n', pos);
      if (eol < 0) return null;
      const size = parseInt(data.slice(pos, eol), 16);
      if (Number.isNaN(size)) throw new Error(`bad chunk size: ${JSON.stringify(data.slice(pos, eol))}`);
      pos = eol + 2;
      if (size === 0) {
        const trailerEnd = data.indexOf('\r\n', pos);
        if (trailerEnd < 0) return null;
        return result(body, trailerEnd + 2);
      }
      if (data.length < pos + size + 2) return null;
      body += data.slice(pos, pos + size);
      pos += size + 2;
    }
  }
  if (headers['content-length'] !== undefined) {
    const len = Number(headers['content-length']);
    if (data.length < start + len) return null;
    return result(data.slice(start, start + len), start + len);
  }
  if (!closed) return null;
  return result(data.slice(start), data.length);
}

/** Parses every complete response in data, in order. */
export function parseResponses(data, { closed = true } = {}) {
  const out = [];
  let rest = data;
  while (rest.length > 0) {
    const r = parseResponse(rest, { closed });
    if (!r) break;
    out.push(r);
    rest = rest.slice(r.length);
  }
  return out;
}

/** Resolves after ms milliseconds. */
export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
