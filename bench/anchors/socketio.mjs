// The socket.io anchor for `make bench` (bench/run.mjs): socket.io 4 on Node
// with the handlers of moonwire's bench app (bench/app/scripts/app.lua).
//
//   node bench/anchors/socketio.mjs [port]     (or PORT=...; 0 picks a free one)
//
// With REDIS_URL=redis://HOST:PORT it is one process of a cluster: the
// broadcasts go through @socket.io/redis-adapter (node-redis 4 clients,
// the default key "socket.io") to every process on that Redis, as
// moonwire's `--redis URL` does (the "redis" group of bench/run.mjs).
//
// Prints "socket.io listening on http://127.0.0.1:PORT" once it accepts
// (and, with REDIS_URL, once both Redis clients are connected).

import http from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/hello') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('Hello World');
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('Not Found');
});

const opts = {};
if (process.env.REDIS_URL) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (e) => console.error(`socket.io: redis: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  opts.adapter = createAdapter(pub, sub);
}

const io = new Server(server, opts);
io.on('connection', (socket) => {
  socket.on('chat message', (msg) => { io.emit('chat message', msg); });
  socket.on('echo', (...args) => {
    const ack = args.pop();
    if (typeof ack === 'function') ack(...args);
  });
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { io.close(); server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
}

server.listen(port, '127.0.0.1', () => {
  console.log(`socket.io listening on http://127.0.0.1:${server.address().port}`);
});
