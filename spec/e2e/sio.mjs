// Helpers for tests that talk Socket.IO with the real socket.io-client:
// start a server whose clients are closed before it stops, connect, wait for
// events and acks.

import { io as ioClient } from 'socket.io-client';

import { delay, serve } from './helpers.mjs';

export const WAIT = 3_000; // how long any single expected thing may take

/**
 * Starts moonwire with the fixture app for test t. Clients registered with
 * srv.track(close) are closed when the test ends, before the server stops
 * (test hooks run in the order they were added).
 */
export async function setup(t, { args = [], root, env } = {}) {
  const closers = [];
  t.after(async () => {
    for (const close of closers.splice(0)) {
      try { close(); } catch { /* already closed */ }
    }
    await delay(20); // let close frames and close packets go out
  });
  const srv = await serve(t, { root, args, env });
  srv.track = (close) => closers.push(close);
  // A crash shows up as clients waiting in vain: say so next to the failure.
  srv.proc.on('exit', (code, sig) => {
    if (sig !== null || code !== 0) {
      t.diagnostic(`moonwire died during the test (${sig ?? `exit ${code}`})\n--- stderr ---\n${srv.stderr()}`);
    }
  });
  return srv;
}

/** A socket.io-client socket (not yet connected), closed at the end of the test. */
export function client(srv, nsp = '/', opts = {}) {
  const url = nsp === '/' ? srv.url : `${srv.url}${nsp}`;
  const socket = ioClient(url, { forceNew: true, reconnection: false, timeout: WAIT, ...opts });
  srv.track(() => {
    socket.disconnect();
    socket.io.disconnect();
  });
  return socket;
}

/** Resolves when socket is connected; rejects with the connect_error. */
export function connected(socket, timeout = WAIT) {
  if (socket.connected) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('connect_error', onError);
    };
    const onConnect = () => { cleanup(); resolve(socket); };
    const onError = (err) => {
      cleanup();
      reject(new Error(`connect_error: ${err.message} (data: ${JSON.stringify(err.data)}, description: ${err.description ?? ''})`));
    };
    const timer = setTimeout(() => { cleanup(); reject(new Error(`not connected within ${timeout} ms`)); }, timeout);
    socket.on('connect', onConnect);
    socket.on('connect_error', onError);
  });
}

/** A connected socket.io-client socket. */
export async function connect(srv, nsp = '/', opts = {}) {
  return connected(client(srv, nsp, opts));
}

/** Resolves the arguments of the next `event` on emitter (a socket or an engine). */
export function next(emitter, event, timeout = WAIT) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => { clearTimeout(timer); resolve(args); };
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`no '${event}' within ${timeout} ms`));
    }, timeout);
    emitter.once(event, handler);
  });
}

/** Every `event` socket receives from now on, as arrays of arguments. */
export function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

/** Resolves once predicate() holds; throws after timeout ms naming what. */
export async function until(predicate, what, timeout = WAIT) {
  const end = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await delay(10);
  }
}

/** Emits with an ack and resolves the ack's first value (rejects after WAIT). */
export function ask(socket, ...args) {
  return socket.timeout(WAIT).emitWithAck(...args);
}
