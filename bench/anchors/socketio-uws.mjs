// The socket.io + uWebSockets.js anchor for `make bench` (bench/run.mjs):
// socket.io 4 attached to a uWebSockets.js app (`io.attachApp(uWS.App())`,
// as socket.io documents it since 4.4), with the handlers of moonwire's
// bench app (bench/app/scripts/app.lua). socket.io then broadcasts to
// WebSocket clients with uWS's own publish (one topic per namespace and
// room), and long-polling goes through uWS's HTTP too.
//
//   node bench/anchors/socketio-uws.mjs [port]     (or PORT=...; 0 picks a free one)
//
// uWebSockets.js is the npm package @trufflesuite/uws-js-unofficial (v20.30,
// whose binary loads on Debian 12's glibc with Node 20). That package falls
// back to a JavaScript imitation on ws when its binary does not load; this
// anchor refuses to run on the fallback, which would measure ws instead.
//
// Prints "socket.io+uWS listening on http://127.0.0.1:PORT" once it accepts.

import { createRequire } from 'node:module';
import { Server } from 'socket.io';

const require = createRequire(import.meta.url);
const UWS = '@trufflesuite/uws-js-unofficial';
const uWS = require(UWS);
if (!Object.keys(require.cache).some((k) => k.includes('uws-js-unofficial') && k.endsWith('.node'))) {
  console.error(`socket.io+uWS: ${UWS} did not load its native binary (it fell back to ws): no anchor to measure`);
  process.exit(1);
}

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);

const app = uWS.App();
app.get('/hello', (res) => {
  res.writeHeader('Content-Type', 'text/plain').end('Hello World');
});

const io = new Server();
io.attachApp(app);
io.on('connection', (socket) => {
  socket.on('chat message', (msg) => { io.emit('chat message', msg); });
  socket.on('echo', (...args) => {
    const ack = args.pop();
    if (typeof ack === 'function') ack(...args);
  });
});

// Routes are matched by specificity: this one catches what the two above do not.
app.any('/*', (res) => {
  res.writeStatus('404 Not Found').writeHeader('Content-Type', 'text/plain').end('Not Found');
});

let token = null;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (token) uWS.us_listen_socket_close(token);
    io.close();
    setTimeout(() => process.exit(0), 100).unref();
    setTimeout(() => process.exit(0), 2000);
  });
}

app.listen('127.0.0.1', port, (t) => {
  if (!t) {
    console.error(`socket.io+uWS: could not listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  token = t;
  console.log(`socket.io+uWS listening on http://127.0.0.1:${uWS.us_socket_local_port(t)}`);
});
