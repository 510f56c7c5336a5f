// End-to-end: the JSON round trips of json.test.mjs with python-socketio
// (Debian's python3-socketio 5.7, sync and asyncio clients), a Socket.IO
// implementation nobody here wrote, over long-polling, WebSocket and an
// upgrade. The client and its cases are in python/echo_client.py; each run
// prints a line per case and exits 0 when every value came back as sent.
//
// Debian's own interpreter runs it (/usr/bin/python3, where apt puts the
// python3-* packages; PYTHON3 picks another). tools/deps.sh installs
// python3-socketio and what its clients need: python3-requests (polling),
// python3-websocket (the sync WebSocket), python3-aiohttp (asyncio).
//
// Run from spec/e2e/ with `node --test json.python.test.mjs`.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { E2E_DIR, FIXTURES, serve } from './helpers.mjs';

const PYTHON = process.env.PYTHON3 ?? '/usr/bin/python3';
const CLIENT = path.join(E2E_DIR, 'python/echo_client.py');
const FIXTURE = path.join(FIXTURES, 'json');
const RUN_TIMEOUT_MS = 120_000;

/** Runs the Python client; resolves { code, stdout, stderr }. */
function runClient(url, kind, transport) {
  return new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, [CLIENT, url, kind, transport], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), RUN_TIMEOUT_MS);
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${PYTHON} (tools/deps.sh installs python3-socketio): ${err.message}`));
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ? signal : code, stdout, stderr });
    });
  });
}

for (const kind of ['sync', 'async']) {
  for (const transport of ['polling', 'websocket', 'upgrade']) {
    test(`python-socketio ${kind} client over ${transport}: every JSON type comes back as sent`, { timeout: RUN_TIMEOUT_MS + 10_000 }, async (t) => {
      const srv = await serve(t, { root: FIXTURE });
      const { code, stdout, stderr } = await runClient(srv.url, kind, transport);
      const failures = stdout.split('\n').filter((l) => l.startsWith('FAIL'));
      assert.deepEqual(failures, [], `the cases that did not come back as sent\n--- stderr ---\n${stderr}`);
      assert.equal(code, 0, `echo_client.py exited ${code}\n${stdout}\n--- stderr ---\n${stderr}`);
      const passed = stdout.split('\n').filter((l) => l.startsWith('ok ')).length;
      assert.ok(passed >= 30, `only ${passed} cases ran\n${stdout}\n${stderr}`);
    });
  }
}
