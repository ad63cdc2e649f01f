import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';

// ws's own framing classes (CommonJS, not in its type declarations).
const { Receiver, Sender } = createRequire(import.meta.url)('ws') as {
  Receiver: new (o: object) => NodeJS.WritableStream & { on(e: string, cb: (...a: never[]) => void): void };
  Sender: { frame(data: Buffer, o: object): Buffer[] };
};
import { wsCloseFrame, wsFrame, WsFrameParser, type WsFrameHandler } from '../../src/protocol/ws-framing.js';

// The server side of RFC 6455 framing (ws-framing.ts) against `ws` itself:
// what ws's client Sender writes, our parser reads; what our encoder writes,
// ws's client Receiver reads.

/** A client frame as ws's Sender builds it (masked). */
function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const list = Sender.frame(payload, { fin, opcode, mask: true, readOnly: false, rsv1: false, maskBuffer: Buffer.from([1, 2, 3, 4]) });
  return Buffer.concat(list);
}

function collect(): WsFrameHandler & { got: unknown[] } {
  const got: unknown[] = [];
  return {
    got,
    onWsMessage: (p) => (got.push(['msg', Buffer.from(p).toString('hex')]), true),
    onWsPing: (p) => void got.push(['ping', p.toString()]),
    onWsClose: (code, reason) => void got.push(['close', code, reason]),
  };
}

test('ws framing: whole, fragmented (with a ping between fragments), dripped a byte at a time, then close', () => {
  const stream = Buffer.concat([
    clientFrame(2, Buffer.from([0x01])),
    clientFrame(2, Buffer.from('ab'), false),
    clientFrame(9, Buffer.from('hb')),
    clientFrame(0, Buffer.from('cd'), true),
    clientFrame(2, Buffer.alloc(300, 7)),
    clientFrame(2, Buffer.alloc(70_000, 9)),
    clientFrame(8, Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('bye')])),
  ]);
  const want = [
    ['msg', '01'],
    ['ping', 'hb'],
    ['msg', Buffer.from('abcd').toString('hex')],
    ['msg', Buffer.alloc(300, 7).toString('hex')],
    ['msg', Buffer.alloc(70_000, 9).toString('hex')],
    ['close', 4000, 'bye'],
  ];
  for (const step of [stream.length, 1, 7, 1000]) {
    const p = new WsFrameParser(100_000);
    const h = collect();
    // A fresh copy: the parser unmasks in place.
    const copy = Buffer.from(stream);
    for (let i = 0; i < copy.length; i += step) p.push(copy.subarray(i, i + step), h);
    assert.deepEqual(h.got, want, `in chunks of ${step}`);
  }
});

test('ws framing: violations are typed errors, an oversized message is refused from its header', () => {
  const cases: [string, Buffer, string][] = [
    ['unmasked', Buffer.from([0x82, 0x01, 0x01]), 'malformed-frame'],
    ['RSV1 (no extension agreed)', (() => { const f = clientFrame(2, Buffer.from([1])); f[0] |= 0x40; return f; })(), 'malformed-frame'],
    ['text', clientFrame(1, Buffer.from('hi')), 'malformed-frame'],
    ['unknown opcode', clientFrame(3, Buffer.from('x')), 'malformed-frame'],
    ['continuation without a message', clientFrame(0, Buffer.from('x')), 'malformed-frame'],
    ['control frame over 125 bytes', clientFrame(9, Buffer.alloc(126)), 'malformed-frame'],
    ['close of one byte', clientFrame(8, Buffer.from([3])), 'malformed-frame'],
    ['close reason not UTF-8', clientFrame(8, Buffer.from([0x03, 0xe8, 0xff, 0xfe])), 'malformed-frame'],
  ];
  for (const [what, bytes, reason] of cases) {
    assert.throws(() => new WsFrameParser(1024).push(bytes, collect()), (e: { reason?: string }) => e.reason === reason, what);
  }
  // 1 MiB declared, 16 bytes sent: refused at once, nothing of it buffered.
  const p = new WsFrameParser(64 * 1024);
  const head = clientFrame(2, Buffer.alloc(1 << 20)).subarray(0, 16);
  assert.throws(() => p.push(Buffer.from(head), collect()), (e: { reason?: string }) => e.reason === 'frame-too-large');
  // Fragments that together pass the limit.
  const q = new WsFrameParser(100);
  const frag = Buffer.concat([clientFrame(2, Buffer.alloc(60), false), clientFrame(0, Buffer.alloc(60), true)]);
  assert.throws(() => q.push(frag, collect()), (e: { reason?: string }) => e.reason === 'frame-too-large');
});

test('ws framing: a control frame declaring a 64-bit length is malformed-frame (over 125 bytes), not frame-too-large', () => {
  // A ping whose 64-bit length is 2^32 (high word non-zero) and a close whose is 2^40: no data
  // message, so no size limit applies; RFC 6455 and PROTOCOL.md make them malformed.
  for (const [op, high] of [[0x9, 1], [0x8, 0x100]] as const) {
    const head = Buffer.alloc(14);
    head[0] = 0x80 | op;
    head[1] = 0x80 | 127;
    head.writeUInt32BE(high, 2);
    assert.throws(() => new WsFrameParser(1024).push(head, collect()), (e: { reason?: string }) => e.reason === 'malformed-frame', `opcode ${op}`);
  }
  // Refused from its first two bytes: a 16-bit length on a control frame is over 125 whatever it says.
  assert.throws(() => new WsFrameParser(1024).push(Buffer.of(0x89, 0x80 | 126), collect()), (e: { reason?: string }) => e.reason === 'malformed-frame');
});

test('ws framing: what the server writes, ws reads as a client (short, 16-bit and 64-bit lengths, close)', async () => {
  const r = new Receiver({ isServer: false, binaryType: 'nodebuffer' });
  const got: string[] = [];
  r.on('message', (data: Buffer) => got.push(`${data.length}:${data[0]}`));
  r.on('conclude', (code: number, reason: Buffer) => got.push(`close ${code} ${reason.toString()}`));
  r.write(wsFrame(2, Buffer.from([5])));
  r.write(wsFrame(2, Buffer.alloc(1000, 6)));
  r.write(wsFrame(2, Buffer.alloc(70_000, 7)));
  r.write(wsCloseFrame(4003, 'x'.repeat(200)));
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(got, ['1:5', '1000:6', '70000:7', `close 4003 ${'x'.repeat(123)}`]);
});

test('ws framing: a message parsed out of held bytes keeps its bytes after later pushes; fragments are bounded in number', () => {
  // Two messages split so that both come out of the parser's own buffer, then more bytes arrive.
  const a = clientFrame(2, Buffer.alloc(40, 0xaa));
  const b = clientFrame(2, Buffer.alloc(40, 0xbb));
  const c = clientFrame(2, Buffer.alloc(40, 0xcc));
  const kept: Buffer[] = [];
  const p = new WsFrameParser(1024);
  const h: WsFrameHandler = { onWsMessage: (m) => (kept.push(m), true), onWsPing: () => {}, onWsClose: () => {} };
  const all = Buffer.concat([a, b, c]);
  p.push(Buffer.from(all.subarray(0, 10)), h);
  p.push(Buffer.from(all.subarray(10, a.length + b.length + 5)), h);
  p.push(Buffer.from(all.subarray(a.length + b.length + 5)), h);
  assert.deepEqual(kept.map((m) => [m.length, m.every((x) => x === m[0]) ? m[0] : -1]), [[40, 0xaa], [40, 0xbb], [40, 0xcc]], 'each message intact');
  // Empty fragments cost no bytes, so their number has its own bound.
  const many = Buffer.concat([clientFrame(2, Buffer.alloc(0), false), ...Array.from({ length: 300 }, () => clientFrame(0, Buffer.alloc(0), false))]);
  assert.throws(() => new WsFrameParser(1024).push(many, collect()), (e: { reason?: string }) => e.reason === 'malformed-frame');
  // The bound is on all fragments, the last one included: 256 read, 257 refused.
  const inN = (n: number) => Buffer.concat([clientFrame(2, Buffer.from([0]), false), ...Array.from({ length: n - 2 }, () => clientFrame(0, Buffer.from([1]), false)), clientFrame(0, Buffer.from([2]), true)]);
  const h256 = collect();
  new WsFrameParser(1024).push(inN(256), h256);
  assert.equal(h256.got.length, 1, 'a message in 256 fragments is read');
  assert.throws(() => new WsFrameParser(1024).push(inN(257), collect()), (e: { reason?: string }) => e.reason === 'malformed-frame', 'a message in 257 fragments is refused');
});

test('a close reason longer than a control frame allows is cut at a character, so it stays UTF-8', () => {
  for (const reason of ['é'.repeat(62), '€'.repeat(50), 'a' + '𝄞'.repeat(40), 'x'.repeat(200)]) {
    const f = wsCloseFrame(4001, reason);
    const cut = f.subarray(4);
    assert.ok(cut.length <= 123 && cut.length >= 120, `${cut.length} bytes`);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(cut);
    assert.ok(reason.startsWith(text));
  }
});

test('ws framing: a close code RFC 6455 forbids on the wire (0-999, 1004-1006, 1015, 1016-2999, 5000+) is malformed-frame; valid ones are read', () => {
  const closeWith = (code: number) => {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    return clientFrame(8, p);
  };
  for (const code of [0, 5, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
    assert.throws(() => new WsFrameParser(1024).push(closeWith(code), collect()), (e: { reason?: string }) => e.reason === 'malformed-frame', `code ${code}`);
  }
  for (const code of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4000, 4999]) {
    const h = collect();
    new WsFrameParser(1024).push(closeWith(code), h);
    assert.deepEqual(h.got, [['close', code, '']], `code ${code}`);
  }
  // No status code at all is allowed, and read as 1005.
  const h = collect();
  new WsFrameParser(1024).push(clientFrame(8, Buffer.alloc(0)), h);
  assert.deepEqual(h.got, [['close', 1005, '']]);
});
