// The socket.io on Bun anchor for `make bench` (bench/run.mjs): socket.io 4
// bound to @socket.io/bun-engine (the Engine.IO server written for Bun's
// own WebSocket and HTTP server, as that package's README sets it up),
// with the handlers of moonwire's bench app (bench/app/scripts/app.lua).
// Runs on Bun, not Node (the npm package `bun` ships the binary):
//
//   node_modules/.bin/bun bench/anchors/socketio-bun.mjs [port]   (or PORT=...; 0 picks a free one)
//
// Prints "socket.io on Bun listening on http://127.0.0.1:PORT" once it accepts.

import { Server as Engine } from '@socket.io/bun-engine';
import { Server } from 'socket.io';

if (typeof Bun === 'undefined') {
  console.error('socket.io on Bun: run this with bun (node_modules/.bin/bun), not node');
  process.exit(1);
}

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);

const io = new Server();
const engine = new Engine({ path: '/socket.io/' });
io.bind(engine);

io.on('connection', (socket) => {
  socket.on('chat message', (msg) => { io.emit('chat message', msg); });
  socket.on('echo', (...args) => {
    const ack = args.pop();
    if (typeof ack === 'function') ack(...args);
  });
});

const { fetch: engineFetch, ...handler } = engine.handler();
const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  ...handler,
  // GET /hello here; everything else to the engine (which answers 404 off its path).
  fetch(req, srv) {
    if (req.method === 'GET' && new URL(req.url).pathname === '/hello') {
      return new Response('Hello World', { headers: { 'Content-Type': 'text/plain' } });
    }
    return engineFetch(req, srv);
  },
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { io.close(); server.stop(true); process.exit(0); });
}

console.log(`socket.io on Bun listening on http://127.0.0.1:${server.port}`);
