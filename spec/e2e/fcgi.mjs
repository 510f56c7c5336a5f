// Helpers for the FastCGI tests: FastCGI records written and read by hand, a
// raw FastCGI connection, Debian's cgi-fcgi, and nginx started with the
// README's configuration in front of moonwire.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { REPO_ROOT, delay, makeTempDir, serve } from './helpers.mjs';

// ---------------------------------------------------------------- records

export const TYPE = {
  BEGIN_REQUEST: 1, ABORT_REQUEST: 2, END_REQUEST: 3, PARAMS: 4, STDIN: 5, STDOUT: 6, STDERR: 7,
  DATA: 8, GET_VALUES: 9, GET_VALUES_RESULT: 10, UNKNOWN_TYPE: 11,
};
export const STATUS = { REQUEST_COMPLETE: 0, CANT_MPX_CONN: 1, OVERLOADED: 2, UNKNOWN_ROLE: 3 };
export const RESPONDER = 1;

/** One record: an 8-byte header, the content, padding bytes. */
export function record(type, id, content = Buffer.alloc(0), { version = 1, padding = 0 } = {}) {
  const body = Buffer.from(content);
  if (body.length > 65535) throw new Error(`record content of ${body.length} bytes`);
  const head = Buffer.alloc(8);
  head[0] = version;
  head[1] = type;
  head.writeUInt16BE(id, 2);
  head.writeUInt16BE(body.length, 4);
  head[6] = padding;
  return Buffer.concat([head, body, Buffer.alloc(padding)]);
}

/** BEGIN_REQUEST for id; keep sets FCGI_KEEP_CONN. */
export function begin(id, { role = RESPONDER, keep = false } = {}) {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(role, 0);
  body[2] = keep ? 1 : 0;
  return record(TYPE.BEGIN_REQUEST, id, body);
}

/** A name or value length: one byte under 128, else four with the top bit set. */
function nvLength(n) {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0);
  return b;
}

/** Name-value pairs from an object or a list of [name, value]. */
export function pairs(vars) {
  const list = Array.isArray(vars) ? vars : Object.entries(vars);
  return Buffer.concat(list.flatMap(([name, value]) => {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(String(value), 'latin1');
    return [nvLength(n.length), nvLength(v.length), n, v];
  }));
}

/** Reads name-value pairs back into [name, value] lists. */
export function readPairs(buf) {
  const out = [];
  let pos = 0;
  const len = () => {
    if (buf[pos] < 128) return buf[pos++];
    const n = buf.readUInt32BE(pos) & 0x7fffffff;
    pos += 4;
    return n;
  };
  while (pos < buf.length) {
    const nl = len();
    const vl = len();
    out.push([buf.subarray(pos, pos + nl).toString('latin1'), buf.subarray(pos + nl, pos + nl + vl).toString('latin1')]);
    pos += nl + vl;
  }
  return out;
}

/** A stream (PARAMS, STDIN): content in records of at most `chunk` bytes, then the empty record that ends it. */
export function stream(type, id, content, { chunk = 65535, padding = 0 } = {}) {
  const data = Buffer.from(content);
  const out = [];
  for (let i = 0; i < data.length; i += chunk) out.push(record(type, id, data.subarray(i, i + chunk), { padding }));
  out.push(record(type, id));
  return Buffer.concat(out);
}

/** A whole request: BEGIN_REQUEST, PARAMS, STDIN. */
export function fcgiRequest(id, params, body = '', { keep = false } = {}) {
  return Buffer.concat([begin(id, { keep }), stream(TYPE.PARAMS, id, pairs(params)), stream(TYPE.STDIN, id, body)]);
}

/** Cuts complete records off the front of buf: { records, rest }. */
export function parseRecords(buf) {
  const records = [];
  let pos = 0;
  while (buf.length - pos >= 8) {
    const clen = buf.readUInt16BE(pos + 4);
    const size = 8 + clen + buf[pos + 6];
    if (buf.length - pos < size) break;
    records.push({
      version: buf[pos], type: buf[pos + 1], id: buf.readUInt16BE(pos + 2),
      content: buf.subarray(pos + 8, pos + 8 + clen),
    });
    pos += size;
  }
  return { records, rest: buf.subarray(pos) };
}

/** Splits a CGI response ("Status: 200 OK", headers, blank line, body). */
export function parseCgi(buf) {
  const text = Buffer.from(buf).toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no end of headers in ${JSON.stringify(text.slice(0, 300))}`);
  const headers = {};
  const lines = text.slice(0, end).split('\r\n');
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const m = /^(\d{3})(?: (.*))?$/.exec(headers.status ?? '');
  return {
    status: m ? Number(m[1]) : NaN, reason: m?.[2] ?? '', headers, lines,
    body: Buffer.from(text.slice(end + 4), 'latin1').toString('utf8'),
  };
}

// ---------------------------------------------------------------- a raw connection

/** A FastCGI connection written by hand: records in, records out. */
export class FcgiConnection {
  static async open(port, host = '127.0.0.1') {
    const socket = net.connect(port, host);
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new FcgiConnection(socket);
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.records = [];
    this.closed = false;
    this.waiters = new Set();
    socket.on('data', (chunk) => {
      const { records, rest } = parseRecords(Buffer.concat([this.buf, chunk]));
      this.buf = rest;
      this.records.push(...records);
      this.#wake();
    });
    socket.on('error', () => {}); // a reset after the server is done is a close here
    socket.on('close', () => { this.closed = true; this.#wake(); });
  }

  #wake() {
    for (const check of this.waiters) check();
  }

  /** Resolves true as soon as predicate() holds, false after timeout ms. */
  waitFor(predicate, timeout = 5_000) {
    return new Promise((resolve) => {
      const done = (value) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      const check = () => { if (predicate()) done(true); };
      const timer = setTimeout(() => done(false), timeout);
      this.waiters.add(check);
      check();
    });
  }

  write(bytes) {
    return new Promise((resolve) => { this.socket.write(bytes, () => resolve()); });
  }

  /** Resolves the first record received that matches, removing it; throws after timeout. */
  async take(match, what, timeout = 5_000) {
    let found = -1;
    await this.waitFor(() => (found = this.records.findIndex(match)) >= 0 || this.closed, timeout);
    if (found < 0) {
      throw new Error(`no ${what} (${this.closed ? 'the connection closed' : `${timeout} ms passed`}); ` +
        `got ${JSON.stringify(this.records.map((r) => [r.type, r.id, r.content.length]))}`);
    }
    return this.records.splice(found, 1)[0];
  }

  /**
   * Waits for request id's END_REQUEST and resolves { protocolStatus,
   * appStatus, stdout (Buffer), cgi (parsed, when there was output),
   * stdoutRecords }; the records of id are removed.
   */
  async response(id, timeout = 5_000) {
    const end = await this.take((r) => r.type === TYPE.END_REQUEST && r.id === id, `END_REQUEST for request ${id}`, timeout);
    const mine = this.records.filter((r) => r.id === id && r.type === TYPE.STDOUT);
    this.records = this.records.filter((r) => !(r.id === id && r.type === TYPE.STDOUT));
    const stdout = Buffer.concat(mine.map((r) => r.content));
    return {
      appStatus: end.content.readUInt32BE(0), protocolStatus: end.content[4], stdout, stdoutRecords: mine,
      cgi: stdout.length ? parseCgi(stdout) : null,
    };
  }

  /** Resolves true if the server closes the connection within timeout ms. */
  waitClose(timeout = 5_000) {
    return this.waitFor(() => this.closed, timeout);
  }

  destroy() {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------- tools

/** Fails (it does not skip) when a command the tests need is missing. */
export function requireTool(cmd, pkg) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    throw new Error(`${cmd} is not installed: the FastCGI tests need it (Debian package '${pkg}'; tools/deps.sh installs it)`);
  }
}

const liveProcs = new Set();
process.on('exit', () => {
  for (const proc of liveProcs) {
    try { proc.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/**
 * Runs `cgi-fcgi -bind -connect ADDR` with env as the only environment (so
 * as the FastCGI params) and body on its stdin. Resolves { code, stdout
 * (Buffer), stderr, cgi }.
 */
export function cgiFcgi(connect, env, body = '', { timeout = 10_000 } = {}) {
  requireTool('cgi-fcgi', 'libfcgi-bin');
  return new Promise((resolve, reject) => {
    const proc = spawn('cgi-fcgi', ['-bind', '-connect', connect], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    liveProcs.add(proc);
    const out = [];
    let err = '';
    proc.stdout.on('data', (c) => out.push(c));
    proc.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
    proc.stdin.on('error', () => {}); // the server may close before reading it all
    proc.stdin.end(body);
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`cgi-fcgi ${connect} did not finish within ${timeout} ms; stderr: ${err}`));
    }, timeout);
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('close', (code) => {
      clearTimeout(timer);
      liveProcs.delete(proc);
      const stdout = Buffer.concat(out);
      let cgi = null;
      try { cgi = parseCgi(stdout); } catch { /* no response: the caller looks at stdout */ }
      resolve({ code, stdout, stderr: err, cgi });
    });
  });
}

/** A free loopback port (it is released before use: taken again at once). */
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

function accepts(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------- moonwire and nginx

/**
 * Starts moonwire for test t (the example app unless root is given) with
 * --fastcgi (default 127.0.0.1:0) and resolves the server of serve() with
 * fastcgi: the address it answers FastCGI on, as printed.
 */
export async function serveFastcgi(t, { fastcgi = '127.0.0.1:0', args = [], ...options } = {}) {
  const srv = await serve(t, { ...options, args: ['--fastcgi', fastcgi, ...args] });
  const m = /moonwire FastCGI responder on (\S+)/.exec(srv.stdout());
  if (!m) throw new Error(`no FastCGI line on stdout:\n${srv.stdout()}`);
  srv.fastcgi = m[1];
  srv.fastcgiPort = Number(/:(\d+)$/.exec(m[1])?.[1]);
  return srv;
}

/** The nginx configuration in README.md's "Behind nginx over FastCGI". */
export function readmeNginxConf() {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.indexOf('### Behind nginx over FastCGI');
  if (section < 0) throw new Error('README.md has no "### Behind nginx over FastCGI" section');
  const m = /```nginx\n([\s\S]*?)```/.exec(readme.slice(section));
  if (!m) throw new Error('no ```nginx block in README.md\'s "Behind nginx over FastCGI"');
  return m[1];
}

function substitute(text, from, to) {
  if (!text.includes(from)) throw new Error(`the README's nginx configuration no longer has "${from}"`);
  return text.replaceAll(from, to);
}

/**
 * Starts nginx (one worker) with the README's configuration, pointed at
 * moonwire's FastCGI address and HTTP port, in a temp directory (pid, logs,
 * temp files there). Stopped when test t ends. Resolves { port, url, dir,
 * errorLog(), accessLog() }: the access log has one line per request,
 * "METHOD URI STATUS UPSTREAM_ADDR".
 */
export async function startNginx(t, { fastcgi, httpPort }) {
  requireTool('nginx', 'nginx');
  const dir = makeTempDir('moonwire-nginx-');
  fs.chmodSync(dir, 0o755); // the worker runs as nobody when the tests run as root
  const port = await freePort();
  let site = readmeNginxConf();
  site = substitute(site, '127.0.0.1:9000', fastcgi);
  site = substitute(site, '127.0.0.1:3000', `127.0.0.1:${httpPort}`);
  site = substitute(site, 'listen 80;', `listen 127.0.0.1:${port};`);
  fs.copyFileSync('/etc/nginx/fastcgi_params', path.join(dir, 'fastcgi_params'));
  const conf = [
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 256; }',
    'http {',
    "    log_format upstreams '$request_method $request_uri $status $upstream_addr';",
    `    access_log ${dir}/access.log upstreams;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => `    ${p}_temp_path ${dir}/${p};`),
    site,
    '}',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const errorLog = () => { try { return fs.readFileSync(path.join(dir, 'error.log'), 'utf8'); } catch { return ''; } };
  const accessLog = () => { try { return fs.readFileSync(path.join(dir, 'access.log'), 'utf8'); } catch { return ''; } };

  const proc = spawn('nginx', ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log'), '-g', 'daemon off;'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  liveProcs.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { out += c; });
  let exited = false;
  const exit = new Promise((resolve) => proc.on('exit', (code, sig) => { exited = true; liveProcs.delete(proc); resolve(code ?? sig); }));
  t.after(async () => {
    if (!exited) proc.kill('SIGTERM');
    await exit;
  });
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (exited || Date.now() > deadline) {
      throw new Error(`nginx did not start${exited ? ` (exit ${await exit})` : ' within 10 s'}:\n${out}\n--- error.log ---\n${errorLog()}`);
    }
    await delay(50);
  }
  return { port, url: `http://127.0.0.1:${port}`, dir, errorLog, accessLog };
}
