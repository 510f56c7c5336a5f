// The Express anchor for `make bench` (bench/run.mjs): GET /hello answers
// "Hello World" as text/plain, like moonwire's bench app.
//
//   node bench/anchors/express.mjs [port]      (or PORT=...; 0 picks a free one)
//
// Prints "express listening on http://127.0.0.1:PORT" once it accepts.

import express from 'express';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const app = express();

app.get('/hello', (req, res) => {
  res.type('text/plain').send('Hello World');
});

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`express listening on http://127.0.0.1:${server.address().port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
}
