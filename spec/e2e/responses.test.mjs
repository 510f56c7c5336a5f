// End-to-end tests: responses as a client sees them — large downloads to
// slow readers, files streamed from disk, Range, preconditions, content
// types, compression, and routes that stream. Run from spec/e2e/ with
// `node --test responses.test.mjs`.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';

import { delay, makeAppRoot, request, serve } from './helpers.mjs';

const T = { timeout: 60_000 };

/** A file of n pseudo-random bytes (the same for the same seed). */
function bytes(n, seed = 1) {
  const out = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out;
}

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

/** An app root (the responses fixture) with more files in public/: { name: Buffer|string }. */
function appWith(files = {}) {
  const root = makeAppRoot('responses');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, 'public', name)), { recursive: true });
    fs.writeFileSync(path.join(root, 'public', name), content);
  }
  return root;
}

/**
 * GETs target on a raw socket and reads the response the way a slow client
 * does: one read (at most 64 KiB) every pauseMs, or nothing at all for
 * stallMs first. Resolves { head (string), body (Buffer), closed } once the
 * server closes the connection or the body is complete.
 */
function slowGet(port, target, { pauseMs = 0, stallMs = 0, extra = '', timeout = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks = [];
    let received = 0, head = null, length = -1, done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      resolve({ head: end < 0 ? all.toString('latin1') : all.subarray(0, end).toString('latin1'),
        body: end < 0 ? Buffer.alloc(0) : all.subarray(end + 4), closed });
    };
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`${target}: no end within ${timeout} ms (${received} bytes)`)); }, timeout);
    socket.on('connect', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`);
      if (stallMs) {
        socket.pause();
        setTimeout(() => socket.resume(), stallMs);
      }
    });
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      if (head === null) {
        const all = Buffer.concat(chunks);
        const end = all.indexOf('\r\n\r\n');
        if (end >= 0) {
          head = all.subarray(0, end).toString('latin1');
          const m = /content-length: (\d+)/i.exec(head);
          length = m ? end + 4 + Number(m[1]) : -1;
        }
      }
      if (length >= 0 && received >= length) return finish(false);
      if (pauseMs) {
        socket.pause();
        setTimeout(() => socket.resume(), pauseMs);
      }
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

describe('large responses to slow clients', () => {
  const BIG = bytes(32 * 1024 * 1024, 7);

  test('a client that reads slowly gets every byte, past the keep-alive timeout', T, async (t) => {
    const server = await serve(t, { root: appWith({ 'big.bin': BIG }), args: ['--keepalive-timeout', '1000'] });
    // About 7 MB/s: the download takes 4–5 s, the kernel's buffers hold ~10 MB.
    const r = await slowGet(server.port, '/big.bin', { pauseMs: 8 });
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.equal(r.body.length, BIG.length, 'every byte arrived');
    assert.equal(sha(r.body), sha(BIG));
  });

  test('a client that stops reading is dropped after --send-timeout', T, async (t) => {
    const server = await serve(t, {
      root: appWith({ 'big.bin': BIG }),
      args: ['--send-timeout', '1000', '--keepalive-timeout', '60000'],
    });
    // Reads nothing for 4 s, then takes what the kernel still holds: the
    // server has given up on it by then and the connection ends short.
    const r = await slowGet(server.port, '/big.bin', { stallMs: 4000, timeout: 20_000 });
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.ok(r.closed, 'the server closed the connection');
    assert.ok(r.body.length < BIG.length, `cut short (${r.body.length} of ${BIG.length} bytes)`);
    // The server still answers others.
    const ok = await request(server.url, '/hello');
    assert.equal(ok.body, 'hello');
  });
});
