// The socket.io anchor for `make bench` (bench/run.mjs): socket.io 4 on Node
// with the handlers of moonwire's bench app (bench/app/scripts/app.lua).
//
//   node bench/anchors/socketio.mjs [port]     (or PORT=...; 0 picks a free one)
//
// Prints "socket.io listening on http://127.0.0.1:PORT" once it accepts.

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

const io = new Server(server);
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
