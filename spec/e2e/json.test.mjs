// End-to-end: every JSON type a socket.io client sends comes back from a
// Lua handler as it was sent — numbers at the edges, unicode, nested and
// empty containers, binary, many arguments, null in the middle — over
// long-polling, WebSocket and an upgrade from one to the other; as an ack,
// as an event, and relayed by a broadcast to another client. The same
// cases with python-socketio, a client nobody here wrote, are in
// json.python.test.mjs.
//
// Run from spec/e2e/ with `node --test json.test.mjs`.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FIXTURES } from './helpers.mjs';
import { WAIT, connect, next, setup as setupWith, until } from './sio.mjs';

const FIXTURE = path.join(FIXTURES, 'json');
const T = { timeout: 30_000 };

// How the client reaches the server: polling only, WebSocket only, and the
// default (polling, then an upgrade to WebSocket, which the test awaits).
const MODES = {
  polling: { transports: ['polling'] },
  websocket: { transports: ['websocket'] },
  upgrade: {},
};

// [what, sent, expected back]: socket.io on Node gives every one of these
// back exactly (-0 too becomes 0: JSON.stringify writes it as 0).
export const NUMBERS = [
  ['the largest safe integer', 9007199254740991],
  ['the smallest safe integer', -9007199254740991],
  ['0.1 + 0.2', 0.30000000000000004],
  ['1e300', 1e300],
  ['-1e300', -1e300],
  ['5e-324, the smallest double', 5e-324],
  ['1/3', 1 / 3],
  ['123456789012345', 123456789012345],
  ['1e21', 1e21],
  ['1e20', 1e20],
  ['1.5e-7', 1.5e-7],
  ['0.000001', 0.000001],
  ['the largest double', 1.7976931348623157e308],
  ['2^53 + 2', 2 ** 53 + 2],
  ['2^63', 2 ** 63],
  ['0', 0],
  ['-1.5', -1.5],
  ['4.35', 4.35],
  ['-0', -0, 0],
];

export const STRINGS = [
  ['empty', ''],
  ['astral plane', '😀 𝄞 👩‍👩‍👧'],
  ['combining characters', 'e\u0301 a\u0308\u0304 \u0915\u094D\u0937'],
  ['escapes', '"\\/\b\f\n\r\t\u0000\u001f\u007f'],
  ['line and paragraph separators', '\u2028\u2029'],
  ['right to left', '\u0627\u0644\u0639\u0631\u0628\u064A\u0629'],
  ['a long one', 'moonwire '.repeat(5000)],
];

export const CONTAINERS = [
  ['an empty array', []],
  ['an empty object', {}],
  ['an object holding an empty array', { a: [] }],
  ['an array holding an empty array', [[]]],
  ['arrays and objects, empty and nested', [[], [[]], {}, [{}], { a: { b: [] } }, [[[[1]]]]]],
  ['nested deep', { a: { b: { c: { d: [1, { e: [2, { f: [] }] }] } } } }],
  ['booleans and null inside', [true, false, null, { t: true, f: false, n: null }]],
  ['numbers inside', { list: [9007199254740991, 0.30000000000000004, 5e-324, 1e21], n: { big: 1e300 } }],
  ['keys that look like numbers', { 1: 'one', 2: 'two', '': 'empty', 'a b': 'space' }],
];

/** Emits event with args and an ack; resolves every value of the ack. */
function askAll(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT).emit(event, ...args, (err, ...values) => (err ? reject(err) : resolve(values)));
  });
}

async function open(srv, mode) {
  const socket = await connect(srv, '/', MODES[mode]);
  if (mode === 'upgrade') {
    await until(() => socket.io.engine?.transport?.name === 'websocket', 'the upgrade to WebSocket');
  }
  return socket;
}

const setup = (t) => setupWith(t, { root: FIXTURE });

/** Asserts that each [what, value, back?] comes back from 'echo' as back (default: value). */
async function echoesEach(socket, cases) {
  for (const [what, value, back = value] of cases) {
    const got = await askAll(socket, 'echo', value);
    assert.deepStrictEqual(got, [back], what);
  }
}

for (const mode of Object.keys(MODES)) {
  describe(`JSON round trips over ${mode}`, () => {
    test('numbers at the edges come back exactly', T, async (t) => {
      const socket = await open(await setup(t), mode);
      await echoesEach(socket, NUMBERS);
      // and all of them as the arguments of one event
      const got = await askAll(socket, 'echo', ...NUMBERS.map(([, v]) => v));
      assert.deepStrictEqual(got, NUMBERS.map(([, v, back = v]) => back));
    });

    test('strings: unicode, escapes, long', T, async (t) => {
      const socket = await open(await setup(t), mode);
      await echoesEach(socket, STRINGS);
    });

    test('containers: empty and nested arrays and objects stay what they were', T, async (t) => {
      const socket = await open(await setup(t), mode);
      await echoesEach(socket, CONTAINERS);
    });

    test('binary (Buffers) nested in objects and arrays', T, async (t) => {
      const socket = await open(await setup(t), mode);
      const a = Buffer.from([0, 1, 2, 127, 128, 254, 255]), b = Buffer.alloc(0), c = Buffer.from('second');
      const value = { file: a, meta: { list: [b, { deep: c }], n: 0.30000000000000004, empty: [] } };
      const got = await askAll(socket, 'echo', value, [a, [b]], c);
      assert.deepStrictEqual(got, [value, [a, [b]], c]);
      assert.ok(Buffer.isBuffer(got[0].meta.list[1].deep), 'binary comes back as a Buffer');
    });

    test('many arguments, null in the middle', T, async (t) => {
      const socket = await open(await setup(t), mode);
      assert.deepStrictEqual(await askAll(socket, 'echo', 'a', null, 'b'), ['a', null, 'b']);
      assert.deepStrictEqual(await askAll(socket, 'echo', null), [null]);
      const many = [1, 'two', null, [], {}, [[]], { a: [] }, true, false, 0.5, -0.5, 1e21, 9007199254740991,
        '😀', { k: null }, [null, null], Buffer.from('x'), 'last'];
      assert.deepStrictEqual(await askAll(socket, 'echo', ...many), many);
    });

    test('as an event the server emits', T, async (t) => {
      const socket = await open(await setup(t), mode);
      const values = [[], { a: [] }, 9007199254740991, 0.30000000000000004, 5e-324, null, '😀', Buffer.from([9])];
      const got = next(socket, 'echoed');
      socket.emit('echo event', ...values);
      assert.deepStrictEqual(await got, values);
    });

    test('a broadcast relays the same values to another client', T, async (t) => {
      const srv = await setup(t);
      const sender = await open(srv, mode);
      const receiver = await open(srv, mode);
      const values = [[], [[]], { a: [] }, 9007199254740991, -9007199254740991, 0.30000000000000004, 1e300, 5e-324,
        1 / 3, 123456789012345, 1e21, null, 'e\u0301😀', { nested: { list: [1, [2, []]], blob: Buffer.from([1, 2, 3]) } }];
      const got = next(receiver, 'relayed');
      await askAll(sender, 'relay', ...values);
      assert.deepStrictEqual(await got, values);
    });
  });
}

describe('JSON as the Lua handler sees it', () => {
  test('whole numbers are integers, others floats, [] an array and {} an object, binary binary', T, async (t) => {
    const socket = await open(await setup(t), 'websocket');
    const [described] = await askAll(socket, 'describe', 9007199254740991, -9007199254740991, 0.30000000000000004,
      1e21, [], {}, [[]], { a: [] }, null, Buffer.from('abc'), '😀');
    assert.deepStrictEqual(described, [
      'integer 9007199254740991', 'integer -9007199254740991', 'float 0.30000000000000004',
      'float 1e+21', 'array[]', 'object{}', 'array[array[]]', 'object{a=array[]}', 'nil', 'binary 3', 'string 4',
    ]);
  });
});

describe('--max-json-depth', () => {
  const nest = (n) => { let v = 1; for (let i = 0; i < n; i++) v = [v]; return v; };

  test('a value nested deeper than the limit closes the client that sent it; up to it, it echoes', T, async (t) => {
    const srv = await setupWith(t, { root: FIXTURE, args: ['--max-json-depth', '4'] });
    const socket = await open(srv, 'websocket');
    // The packet's own array counts: ["echo", [[[1]]]] is 4 deep.
    assert.deepStrictEqual(await askAll(socket, 'echo', nest(3)), [nest(3)]);
    const gone = new Promise((resolve) => socket.once('disconnect', resolve));
    socket.emit('echo', nest(4));
    assert.equal(await gone, 'transport close', 'the server closed the connection (a parse error)');
  });

  test('json.encode and json.decode in a handler keep to it too', T, async (t) => {
    const srv = await setupWith(t, { root: FIXTURE, args: ['--max-json-depth', '4'] });
    const socket = await open(srv, 'websocket');
    const [got] = await askAll(socket, 'json depth', 4, 5);
    assert.equal(got.decode_a, 'ok');
    assert.match(got.decode_b, /nested deeper than 4 arrays and objects/);
    assert.equal(got.encode_a, 'ok');
    assert.match(got.encode_b, /nested deeper than 4 arrays and objects/);
  });

  test('by default 64 levels go through', T, async (t) => {
    const socket = await open(await setupWith(t, { root: FIXTURE }), 'websocket');
    assert.deepStrictEqual(await askAll(socket, 'echo', nest(63)), [nest(63)]);
  });

  test('a value outside 1..64 is refused at start', T, async () => {
    const { runBinary } = await import('./helpers.mjs');
    for (const v of ['0', '65', 'x']) {
      const { code, stderr } = await runBinary(['--max-json-depth', v]);
      assert.notEqual(code, 0);
      assert.match(stderr, /--max-json-depth needs a number between 1 and 64/);
    }
  });
});
