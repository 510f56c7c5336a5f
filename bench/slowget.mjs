// `make bench`'s slow downloaders: N clients each GET one URL at the same
// time and read the body at a set rate, as a client on a slow link does.
//
//   node bench/slowget.mjs --port P --path /big.bin --clients 20 --rate-kb 1024
//
// Prints one JSON line: how many downloads completed (status 200 and every
// byte of the Content-Length), the bytes read, the seconds it took, and why
// the others did not complete.

import net from 'node:net';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const host = arg('host', '127.0.0.1');
const port = Number(arg('port'));
const target = arg('path', '/big.bin');
const clients = Number(arg('clients', 20));
const rate = Number(arg('rate-kb', 1024)) * 1024; // bytes per second, per client
const timeoutS = Number(arg('timeout', 600));

function one() {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const socket = net.connect(port, host);
    let head = Buffer.alloc(0), length = -1, body = 0, status = 0, done = false;
    const finish = (why) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ ok: why === null, why, status, body, length });
    };
    socket.setTimeout(timeoutS * 1000, () => finish('timeout'));
    // Keep-alive, as browsers and curl ask: the connection stays open after the body.
    socket.on('connect', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: bench\r\n\r\n`));
    socket.on('data', (c) => {
      if (length < 0) {
        head = Buffer.concat([head, c]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = head.subarray(0, end).toString('latin1');
        status = Number(/^HTTP\/1\.\d (\d+)/.exec(text)?.[1]);
        length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? -1);
        body = head.length - end - 4;
      } else {
        body += c.length;
      }
      if (length >= 0 && body >= length) return finish(status === 200 ? null : `status ${status}`);
      // Ahead of the rate: stop reading until the schedule catches up.
      const ahead = (head.length + body) / rate - (Date.now() - t0) / 1000;
      if (ahead > 0.005) {
        socket.pause();
        setTimeout(() => socket.resume(), ahead * 1000);
      }
    });
    socket.on('error', (e) => finish(e.code ?? e.message));
    socket.on('close', () => finish(length < 0 ? 'closed before the head' : `cut at ${body} of ${length} bytes`));
  });
}

const t0 = Date.now();
const results = await Promise.all(Array.from({ length: clients }, one));
const why = {};
for (const r of results) if (!r.ok) why[r.why.replace(/\d+ of/, 'N of')] = (why[r.why.replace(/\d+ of/, 'N of')] ?? 0) + 1;
console.log(JSON.stringify({
  clients,
  completed: results.filter((r) => r.ok).length,
  bytes: results.reduce((n, r) => n + r.body, 0),
  seconds: (Date.now() - t0) / 1000,
  cut: results.filter((r) => !r.ok).map((r) => r.body).sort((a, b) => a - b),
  why,
}));
