#!/usr/bin/python3
"""Round trips of every JSON type with python-socketio (Debian's
python3-socketio 5.7), a Socket.IO client nobody here wrote, against the
json fixture app (spec/e2e/fixtures/json): what it sends comes back as it
was sent, as an ack, as an event, and relayed by a broadcast to a second
client.

    /usr/bin/python3 echo_client.py URL CLIENT TRANSPORT

CLIENT is sync (socketio.Client) or async (socketio.AsyncClient);
TRANSPORT is polling, websocket or upgrade (polling first, then the
upgrade to WebSocket, which is awaited). Prints one line per case, "ok ..."
or "FAIL ..."; exits 1 when any case failed. json.python.test.mjs runs it.
"""

import asyncio
import sys
import threading
import time

import socketio

WAIT = 10  # seconds any one answer may take

TRANSPORTS = {
    'polling': ['polling'],
    'websocket': ['websocket'],
    'upgrade': ['polling', 'websocket'],
}

# (what, the arguments sent, the arguments expected back). Python ints are
# exact at any size and JSON "1.0" is a float here: a whole float comes back
# as an int of the same value (the server, like JavaScript, writes 1.0 as 1).
LONG = 'moonwire ' * 5000
CASES = [
    ('the largest safe integer', [9007199254740991]),
    ('the smallest safe integer', [-9007199254740991]),
    ('int64 max', [9223372036854775807]),
    ('int64 min', [-9223372036854775808]),
    ('0.1 + 0.2', [0.1 + 0.2]),
    ('1e300', [1e300]),
    ('5e-324', [5e-324]),
    ('1/3', [1 / 3]),
    ('123456789012345', [123456789012345]),
    ('1e21', [1e21]),
    ('1e20', [1e20]),
    ('the largest double', [1.7976931348623157e308]),
    ('-0.0', [-0.0], [0]),
    ('1.0', [1.0], [1]),
    ('2.5', [2.5]),
    ('an empty string', ['']),
    ('astral plane', ['\U0001F600 \U0001D11E \U0001F469\u200d\U0001F469\u200d\U0001F467']),
    ('combining characters', ['e\u0301 a\u0308\u0304 \u0915\u094d\u0937']),
    ('escapes', ['"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029']),
    ('a long string', [LONG]),
    ('an empty array', [[]]),
    ('an empty object', [{}]),
    ('an object holding an empty array', [{'a': []}]),
    ('an array holding an empty array', [[[]]]),
    ('arrays and objects, empty and nested', [[[], [[]], {}, [{}], {'a': {'b': []}}, [[[[1]]]]]]),
    ('booleans and null inside', [[True, False, None, {'t': True, 'f': False, 'n': None}]]),
    ('numbers inside', [{'list': [9007199254740991, 0.1 + 0.2, 5e-324, 1e21], 'n': {'big': 1e300}}]),
    ('binary nested in objects and arrays',
     [{'file': b'\x00\x01\x02\x7f\x80\xfe\xff', 'meta': {'list': [b'', {'deep': b'second'}], 'empty': []}},
      [b'a', [b'']], b'c']),
    ('null in the middle', ['a', None, 'b']),
    ('null alone', [None]),
    ('many arguments', [1, 'two', None, [], {}, [[]], {'a': []}, True, False, 0.5, -0.5, 1e21,
                        9007199254740991, '\U0001F600', {'k': None}, [None, None], b'x', 'last']),
]

EVENT_VALUES = [[], {'a': []}, 9007199254740991, 0.1 + 0.2, 5e-324, None, '\U0001F600', b'\x09']


def same(a, b):
    """Equal as JSON values: True is not 1, 1 equals 1.0, bytes are bytes."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class Report:
    def __init__(self, label):
        self.label = label
        self.failed = 0

    def check(self, what, want, got):
        if same(want, got):
            print(f'ok {self.label} {what}', flush=True)
        else:
            self.failed += 1
            shown = repr(got)
            print(f'FAIL {self.label} {what}: sent {repr(want)[:300]}, got {shown[:300]}', flush=True)

    def fail(self, what, err):
        self.failed += 1
        print(f'FAIL {self.label} {what}: {err!r}', flush=True)


# ---------------------------------------------------------------- the sync client

def run_sync(url, transport, report):
    def client():
        sio = socketio.Client(reconnection=False)
        sio.connect(url, transports=TRANSPORTS[transport], wait_timeout=WAIT)
        return sio

    def ask(sio, event, args):
        done = threading.Event()
        box = {}

        def on_ack(*got):
            box['got'] = list(got)
            done.set()
        sio.emit(event, tuple(args), callback=on_ack)
        if not done.wait(WAIT):
            raise TimeoutError(f'no ack for {event}')
        return box['got']

    def next_event(sio, event):
        done = threading.Event()
        box = {}

        def handler(*got):
            box['got'] = list(got)
            done.set()
        sio.on(event, handler)

        def wait():
            if not done.wait(WAIT):
                raise TimeoutError(f'no {event} within {WAIT} s')
            return box['got']
        return wait

    sio = client()
    try:
        if transport == 'upgrade':
            deadline = time.monotonic() + WAIT
            while sio.transport() != 'websocket' and time.monotonic() < deadline:
                time.sleep(0.01)
        want = 'polling' if transport == 'polling' else 'websocket'
        report.check('transport', want, sio.transport())
        for what, args, *back in CASES:
            try:
                report.check(what, back[0] if back else args, ask(sio, 'echo', args))
            except Exception as err:  # a timeout is a failure of this case
                report.fail(what, err)
        wait = next_event(sio, 'echoed')
        sio.emit('echo event', tuple(EVENT_VALUES))
        report.check('as an event', EVENT_VALUES, wait())
        other = client()
        try:
            relayed = next_event(other, 'relayed')
            values = EVENT_VALUES + [{'nested': {'list': [1, [2, []]], 'blob': b'\x01\x02'}}]
            ask(sio, 'relay', values)
            report.check('relayed by a broadcast', values, relayed())
        finally:
            other.disconnect()
    finally:
        sio.disconnect()


# ---------------------------------------------------------------- the asyncio client

async def run_async(url, transport, report):
    loop = asyncio.get_running_loop()

    async def client():
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(url, transports=TRANSPORTS[transport], wait_timeout=WAIT)
        return sio

    async def ask(sio, event, args):
        fut = loop.create_future()

        def on_ack(*got):
            if not fut.done():
                fut.set_result(list(got))
        await sio.emit(event, tuple(args), callback=on_ack)
        return await asyncio.wait_for(fut, WAIT)

    def next_event(sio, event):
        fut = loop.create_future()

        async def handler(*got):
            if not fut.done():
                fut.set_result(list(got))
        sio.on(event, handler)
        return fut

    sio = await client()
    try:
        if transport == 'upgrade':
            deadline = time.monotonic() + WAIT
            while sio.transport() != 'websocket' and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        want = 'polling' if transport == 'polling' else 'websocket'
        report.check('transport', want, sio.transport())
        for what, args, *back in CASES:
            try:
                report.check(what, back[0] if back else args, await ask(sio, 'echo', args))
            except Exception as err:
                report.fail(what, err)
        wait = next_event(sio, 'echoed')
        await sio.emit('echo event', tuple(EVENT_VALUES))
        report.check('as an event', EVENT_VALUES, await asyncio.wait_for(wait, WAIT))
        other = await client()
        try:
            relayed = next_event(other, 'relayed')
            values = EVENT_VALUES + [{'nested': {'list': [1, [2, []]], 'blob': b'\x01\x02'}}]
            await ask(sio, 'relay', values)
            report.check('relayed by a broadcast', values, await asyncio.wait_for(relayed, WAIT))
        finally:
            await other.disconnect()
    finally:
        await sio.disconnect()


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ('sync', 'async') or sys.argv[3] not in TRANSPORTS:
        print(__doc__, file=sys.stderr)
        return 2
    url, kind, transport = sys.argv[1:]
    report = Report(f'{kind} {transport}')
    try:
        if kind == 'sync':
            run_sync(url, transport, report)
        else:
            asyncio.run(run_async(url, transport, report))
    except Exception as err:
        report.fail('the session', err)
    return 1 if report.failed else 0


if __name__ == '__main__':
    sys.exit(main())
