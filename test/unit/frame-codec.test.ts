import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { decodeFrame, encodeDelimited, encodeDelimitedTransient, encodeFrame, encodeFrameTransient } from '../../src/protocol/frame-codec.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { frameArb, normalize } from '../helpers/arbitraries.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// Each vector: the frame, and its bytes without the TCP length prefix.
const vectors: [string, Frame, string][] = [
  ['bare PING is one byte', { type: FrameType.PING }, '03'],
  ['bare PONG is one byte', { type: FrameType.PONG }, '04'],
  ['PING with seq 5', { type: FrameType.PING, seq: 5 }, '03 0805'],
  ['PING with ack 300 (two-byte varint)', { type: FrameType.PING, ack: 300 }, '03 10ac02'],
  ['PING with state fg=1', { type: FrameType.PING, state: { fg: '1' } }, '03 1a07 0a026667 120131'],
  ['PING announcing 30000 ms', { type: FrameType.PING, intervalMs: 30000 }, '03 20b0ea01'],
  ['PING reporting a 42 ms RTT', { type: FrameType.PING, rttMs: 42 }, '03 282a'],
  ['PONG with seq 5', { type: FrameType.PONG, seq: 5 }, '04 0805'],
  ['HELLO with required fields', { type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' }, '01 0801 120175 1a0164'],
  [
    'HELLO with every field',
    { type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd', token: 't', clientInfo: { os: 'x' }, resumeToken: 'r', lastSeq: 7, direction: 'server', intervalMs: 1000 },
    '01 0801 120175 1a0164 220174 2a07 0a026f73 120178 320172 3807 4001 48e807',
  ],
  [
    'WELCOME with the default policy',
    { type: FrameType.WELCOME, sessionId: 's', resumeToken: 'r', resumed: false, heartbeat: { intervalMs: 25000, minIntervalMs: 5000, maxIntervalMs: 600000, missBudget: 2, graceMs: 5000, direction: 'client' } },
    '02 0a0173 120172 1800 20a8c301 288827 30c0cf24 3802 408827 4800',
  ],
  ['DATA with seq, id and payload', { type: FrameType.DATA, seq: 1, id: 'm1', payload: hex('6869') }, '05 0801 12026d31 1a026869'],
  ['DATA with an empty payload', { type: FrameType.DATA, payload: new Uint8Array(0) }, '05'],
  ['ACK 9', { type: FrameType.ACK, ack: 9 }, '06 0809'],
  ['GOAWAY 4002 after 1000 ms', { type: FrameType.GOAWAY, code: 4002, reconnectAfterMs: 1000, reason: 'x' }, '07 08a21f 10e807 1a0178'],
  ['CLOSE 4000', { type: FrameType.CLOSE, code: 4000, reason: 'y' }, '08 08a01f 120179'],
];

// The vectors printed in docs/PROTOCOL.md, so the document cannot drift from the codec.
vectors.push(
  ['doc: HELLO minimal', { type: FrameType.HELLO, version: 1, userId: 'u1', deviceId: 'd1' }, '01 08 01 12 02 75 31 1a 02 64 31'],
  [
    'doc: HELLO full',
    { type: FrameType.HELLO, version: 1, userId: 'u1', deviceId: 'd1', token: 't', clientInfo: { app: '1' }, resumeToken: 'r', lastSeq: 7, direction: 'server', intervalMs: 25000 },
    '01 08 01 12 02 75 31 1a 02 64 31 22 01 74 2a 08 0a 03 61 70 70 12 01 31 32 01 72 38 07 40 01 48 a8 c3 01',
  ],
  [
    'doc: WELCOME resumed with ack',
    { type: FrameType.WELCOME, sessionId: 's', resumeToken: 'r', resumed: true, heartbeat: { intervalMs: 25000, minIntervalMs: 5000, maxIntervalMs: 600000, missBudget: 2, graceMs: 5000, direction: 'client' }, ack: 3 },
    '02 0a 01 73 12 01 72 18 01 20 a8 c3 01 28 88 27 30 c0 cf 24 38 02 40 88 27 48 00 50 03',
  ],
  ['doc: PING with ack, state and interval', { type: FrameType.PING, ack: 5, state: { fg: '0' }, intervalMs: 60000 }, '03 10 05 1a 07 0a 02 66 67 12 01 30 20 e0 d4 03'],
  ['doc: PONG with ack', { type: FrameType.PONG, ack: 5 }, '04 10 05'],
  ['doc: DATA with ack', { type: FrameType.DATA, seq: 1, id: 'm1', payload: hex('6869'), ack: 2 }, '05 08 01 12 02 6d 31 1a 02 68 69 20 02'],
  ['doc: GOAWAY', { type: FrameType.GOAWAY, code: 4002, reconnectAfterMs: 1500, reason: 'drain' }, '07 08 a2 1f 10 dc 0b 1a 05 64 72 61 69 6e'],
  ['doc: CLOSE', { type: FrameType.CLOSE, code: 4000, reason: 'heartbeat-timeout' }, '08 08 a0 1f 12 11 68 65 61 72 74 62 65 61 74 2d 74 69 6d 65 6f 75 74'],
);

for (const [name, frame, bytes] of vectors) {
  test(`codec vector: ${name}`, () => {
    const expected = hex(bytes);
    assert.equal(toHex(encodeFrame(frame)), toHex(expected));
    assert.deepEqual(normalize(decodeFrame(expected)), normalize(frame));
    const delimited = encodeDelimited(frame);
    assert.equal(delimited[0], expected.length, 'one-byte length prefix for small frames');
    assert.equal(toHex(delimited.subarray(1)), toHex(expected));
  });
}

// Every row of the byte-vector table in docs/PROTOCOL.md, read from the file:
// the bytes must decode, re-encode to themselves, and carry the printed prefix.
test('every byte vector printed in docs/PROTOCOL.md round-trips with its TCP prefix', () => {
  const doc = readFileSync(new URL('../../../docs/PROTOCOL.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Byte vectors'));
  const rows = [...section.matchAll(/^\|[^|\n]+\| `([0-9a-f ]+)` \| `([0-9a-f ]+)` \|$/gm)];
  assert.ok(rows.length >= 10, `found ${rows.length} vector rows`);
  for (const [, bytes, prefix] of rows) {
    const frame = decodeFrame(hex(bytes));
    assert.equal(toHex(encodeFrame(frame)), toHex(hex(bytes)), bytes);
    const delimited = encodeDelimited(frame);
    assert.equal(toHex(delimited.subarray(0, delimited.length - hex(bytes).length)), toHex(hex(prefix)), bytes);
  }
});

test('a bare heartbeat costs 2 bytes on TCP, as MQTT PINGREQ does', () => {
  assert.equal(toHex(encodeDelimited({ type: FrameType.PING })), '0103');
  assert.equal(toHex(encodeDelimited({ type: FrameType.PONG })), '0104');
});

test('length prefix grows to two bytes at 128-byte frames', () => {
  const f: Frame = { type: FrameType.DATA, payload: new Uint8Array(200) };
  const d = encodeDelimited(f);
  const inner = encodeFrame(f);
  assert.equal(inner.length, 1 + 1 + 2 + 200);
  assert.deepEqual([d[0], d[1]], [(inner.length & 0x7f) | 0x80, inner.length >> 7]);
  assert.equal(d.length, inner.length + 2);
});

function rejects(bytes: string, reason: string) {
  assert.throws(
    () => decodeFrame(hex(bytes)),
    (err: unknown) => err instanceof ProtocolError && err.reason === reason && err.code === 'LL_ERR_' + reason.toUpperCase().replace(/-/g, '_'),
  );
}

test('unknown frame type is rejected with LL_ERR_UNKNOWN_FRAME', () => rejects('7f', 'unknown-frame'));
test('empty frame is truncated', () => rejects('', 'truncated-frame'));
test('HELLO without deviceId is malformed', () => rejects('01 0801 120175', 'malformed-frame'));
test('field with the wrong wire type is malformed', () => rejects('03 0a0105', 'malformed-frame'));
test('string field running past the frame end is truncated', () => rejects('01 0801 1205 75', 'truncated-frame'));
test('varint cut off at the frame end is truncated', () => rejects('03 08ff', 'truncated-frame'));
test('varint beyond 2^53 is malformed', () => rejects('03 08ffffffffffffffff01', 'malformed-frame'));
test('invalid UTF-8 in a string is malformed', () => rejects('01 0801 1202c328 1a0164', 'malformed-frame'));
test('unknown wire type is malformed', () => rejects('03 0b', 'malformed-frame'));
test('ACK without its field is malformed', () => rejects('06', 'malformed-frame'));
test('heartbeat direction outside 0..1 is malformed', () => rejects('01 0801 120175 1a0164 4002', 'malformed-frame'));

test('a map entry whose key or value has the wrong wire type is malformed, not read as an empty value (which deletes the key)', () => {
  // PING state entry {1: "a", 2: varint 1}: the value, a known tag, as a varint.
  rejects('03 1a05 0a0161 1001', 'malformed-frame');
  // HELLO clientInfo entry {1: varint 1, 1: "k"}: a varint key before a proper one.
  rejects('01 0801 120175 1a0164 2a05 0801 0a016b', 'malformed-frame');
  // Unknown tags inside an entry are still skipped.
  assert.deepEqual((decodeFrame(hex('03 1a08 0a0161 1201 62 1801')) as Frame & { state: object }).state, { a: 'b' });
});

test('unknown fields are skipped, so fields can be added later', () => {
  // PING with seq 5, then unknown tag 15 varint and tag 14 bytes.
  const f = decodeFrame(hex('03 0805 7801 7202abcd'));
  assert.deepEqual(normalize(f), { type: FrameType.PING, seq: 5 });
});

test('property: every frame survives encode then decode', () => {
  fc.assert(
    fc.property(frameArb, (frame) => {
      assert.deepEqual(normalize(decodeFrame(encodeFrame(frame))), normalize(frame));
      const d = encodeDelimited(frame);
      let len = 0, shift = 1, i = 0;
      for (;;) { const b = d[i++]; len += (b & 0x7f) * shift; if (!(b & 0x80)) break; shift *= 128; }
      assert.equal(len, d.length - i);
      assert.deepEqual(normalize(decodeFrame(d, i)), normalize(frame));
    }),
    { numRuns: 2000 },
  );
});

test('property: frames encoded one after another into the shared buffer stay whole (copies own their bytes; a transient view equals the copy until the next encode)', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { minLength: 2, maxLength: 6 }), (frames) => {
      const copies = frames.map((f) => {
        const t = toHex(encodeDelimitedTransient(f));
        const c = encodeDelimited(f);
        assert.equal(toHex(c), t);
        assert.equal(toHex(encodeFrameTransient(f)), toHex(encodeFrame(f)));
        return c;
      });
      // Every copy still decodes to its frame after the later encodes reused the buffer.
      copies.forEach((c, k) => {
        const prefix = c[0] < 0x80 ? 1 : c[1] < 0x80 ? 2 : c[2] < 0x80 ? 3 : 4;
        assert.deepEqual(normalize(decodeFrame(c, prefix)), normalize(frames[k]));
      });
    }),
    { numRuns: 500 },
  );
});

test('strings around the in-place limit (42 UTF-16 units) and of 3- and 4-byte characters encode as the plain path did', () => {
  for (const id of ['', 'a', 'x'.repeat(42), 'x'.repeat(43), '€'.repeat(42), '€'.repeat(43), '😀'.repeat(21), '😀'.repeat(22), '\ud800lone', 'é'.repeat(100)]) {
    const f: Frame = { type: FrameType.DATA, id, payload: new Uint8Array([1]) };
    const bytes = Buffer.from(id, 'utf8');
    const d = decodeFrame(encodeFrame(f));
    assert.equal(d.type, FrameType.DATA);
    assert.equal(Buffer.from((d as { id: string }).id, 'utf8').toString('hex'), bytes.toString('hex'), JSON.stringify(id));
  }
  // A frame larger than the shared buffer's bound (it grows, then is let go), then small ones.
  const big: Frame = { type: FrameType.DATA, seq: 1, payload: new Uint8Array(200_000).fill(7) };
  assert.equal((decodeFrame(encodeFrame(big)) as { payload: Uint8Array }).payload.length, 200_000);
  assert.equal(toHex(encodeFrame({ type: FrameType.ACK, ack: 3 })), '060803');
});

test('strings decode alike from a Node Buffer (read in place when short ASCII) and from a plain Uint8Array', () => {
  const ids = ['', 'a', 'abc€', '€abc', 'x'.repeat(63) + 'é', 'x'.repeat(64), 'x'.repeat(65), 'ctl\u0000\u007f', '😀', 'é'.repeat(40)];
  for (const id of ids) {
    const bytes = encodeFrame({ type: FrameType.DATA, id, payload: new Uint8Array([1]) });
    for (const input of [Buffer.from(bytes), Uint8Array.from(bytes)]) {
      const d = decodeFrame(input) as { id: string };
      assert.equal(d.id, id, `${JSON.stringify(id)} from ${input.constructor.name}`);
    }
  }
  // From a Buffer too, bytes that are not UTF-8 are refused, in short and long strings.
  for (const bad of ['01 0801 1202c328 1a0164', `01 0801 1246${'61'.repeat(69)}ff 1a0164`]) {
    assert.throws(() => decodeFrame(Buffer.from(hex(bad))), (err: unknown) => err instanceof ProtocolError && err.reason === 'malformed-frame');
  }
  // A string that runs past the frame end is truncated from a Buffer as well.
  assert.throws(() => decodeFrame(Buffer.from(hex('01 0801 1205 75'))), (err: unknown) => err instanceof ProtocolError && err.reason === 'truncated-frame');
});

test('property: random bytes decode to a frame or a ProtocolError, never anything else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeFrame(bytes);
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`);
      }
    }),
    { numRuns: 20000 },
  );
});

test('property: mutated valid frames decode or fail with a ProtocolError', () => {
  fc.assert(
    fc.property(frameArb, fc.nat(), fc.nat({ max: 255 }), (frame, at, value) => {
      const bytes = Uint8Array.from(encodeFrame(frame));
      bytes[at % bytes.length] = value;
      try {
        decodeFrame(bytes, 0, bytes.length - (at % 2));
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`);
      }
    }),
    { numRuns: 10000 },
  );
});

test('a string that starts with U+FEFF keeps it (the decoder would strip it as a byte-order mark)', () => {
  const h: Frame = { type: FrameType.HELLO, version: 1, userId: '\uFEFFalice', deviceId: 'd', clientInfo: { '\uFEFFk': '\uFEFFv' } };
  for (const bytes of [encodeFrame(h), Buffer.from(encodeFrame(h))]) assert.deepEqual(decodeFrame(bytes), h);
});

test('a state key "__proto__" is kept as an entry like any other, not taken for the prototype', () => {
  const state = JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>;
  const back = decodeFrame(encodeFrame({ type: FrameType.PING, state })) as Frame & { state: Record<string, string> };
  assert.deepEqual(Object.keys(back.state), ['__proto__', 'a']);
  assert.equal(back.state['__proto__'], 'x');
  assert.equal(Object.getPrototypeOf(back.state), Object.prototype);
});
