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
// With CLUSTER=N it is N worker processes of Node's cluster module on one
// port: the primary accepts every connection and hands it to a worker in
// turn (Node's round-robin), and broadcasts go between the workers through
// the primary with @socket.io/cluster-adapter (the "workers" group of
// bench/run.mjs, against `moonwire --workers N`). Without @socket.io/sticky,
// which long-polling would need: the load client speaks WebSocket only, and
// with sticky in the primary one handshake of 101 now and then got no answer
// (2 runs of 27 here), which would fail the figure.
//
// Prints "socket.io listening on http://127.0.0.1:PORT" once it accepts
// (with REDIS_URL, once both Redis clients are connected; with CLUSTER,
// once every worker has its adapter in place).

import cluster from 'node:cluster';
import http from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const workers = Number(process.env.CLUSTER ?? 0);
const READY = 'bench-anchor-worker-ready';

if (workers && cluster.isPrimary) {
  const { setupPrimary } = await import('@socket.io/cluster-adapter');
  setupPrimary();
  cluster.setupPrimary({ serialization: 'advanced' });
  let ready = 0;
  cluster.on('message', (_w, msg) => {  // the workers share one port (with port 0, one chosen for all)
    if (msg?.type === READY && ++ready === workers) console.log(`socket.io listening on http://127.0.0.1:${msg.port}`);
  });
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) { console.error(`socket.io: worker ${w.process.pid} exited (${signal ?? code})`); process.exit(1); }
  });
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
      setTimeout(() => process.exit(0), 2000).unref();
      cluster.on('exit', () => { if (!Object.keys(cluster.workers).length) process.exit(0); });
    });
  }
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  await serve();
}

async function serve() {
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
  if (workers) {
    const { createAdapter } = await import('@socket.io/cluster-adapter');
    opts.adapter = createAdapter();
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

  if (workers) {
    server.listen(port, '127.0.0.1', () => process.send({ type: READY, port: server.address().port }));
    return;
  }
  server.listen(port, '127.0.0.1', () => {
    console.log(`socket.io listening on http://127.0.0.1:${server.address().port}`);
  });
}
