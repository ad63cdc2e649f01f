import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder } from '../../src/protocol/frame-decoder.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { frameArb, normalize } from '../helpers/arbitraries.js';

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

const sample: Frame[] = [
  { type: FrameType.HELLO, version: 1, userId: 'alice', deviceId: 'phone' },
  { type: FrameType.PING },
  { type: FrameType.DATA, seq: 1, payload: new Uint8Array(300).fill(7) },
  { type: FrameType.PONG },
  { type: FrameType.CLOSE, code: 1000, reason: 'bye' },
];

test('frames split at every single byte boundary decode the same', () => {
  const stream = concat(sample.map(encodeDelimited));
  for (let cut = 0; cut <= stream.length; cut++) {
    const d = new FrameDecoder();
    const out: Frame[] = [];
    d.push(stream.subarray(0, cut), (f) => out.push(f));
    d.push(stream.subarray(cut), (f) => out.push(f));
    d.end();
    assert.deepEqual(out.map(normalize), sample.map(normalize), `cut at ${cut}`);
  }
});

test('a stream fed one byte at a time decodes the same', () => {
  const stream = concat(sample.map(encodeDelimited));
  const d = new FrameDecoder();
  const out: Frame[] = [];
  for (const b of stream) d.push(Uint8Array.of(b), (f) => out.push(f));
  assert.deepEqual(out.map(normalize), sample.map(normalize));
  assert.equal(d.bufferedBytes, 0);
});

test('property: any frames, chunked anyhow, decode in order', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
      const stream = concat(frames.map(encodeDelimited));
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const d = new FrameDecoder(1 << 20);
      const out: Frame[] = [];
      let prev = 0;
      for (const p of [...points, stream.length]) {
        d.push(stream.subarray(prev, p), (f) => out.push(f));
        prev = p;
      }
      d.end();
      assert.deepEqual(out.map(normalize), frames.map(normalize));
    }),
    { numRuns: 1000 },
  );
});

test('an oversized frame is refused from its length prefix alone', () => {
  const d = new FrameDecoder(100);
  // Prefix 0x65 = 101 bytes declared; no body has arrived yet.
  assert.throws(() => d.push(Uint8Array.of(0x65), () => {}), (e: unknown) => e instanceof ProtocolError && e.reason === 'frame-too-large' && e.closeCode === 4500);
});

test('a multi-byte prefix over the limit is refused before it completes', () => {
  const d = new FrameDecoder(1000);
  // 0xff 0xff ... declares at least 16383 bytes after two bytes.
  assert.throws(() => d.push(Uint8Array.of(0xff, 0xff), () => {}), (e: unknown) => e instanceof ProtocolError && e.reason === 'frame-too-large');
});

test('a frame exactly at the limit is accepted', () => {
  const f: Frame = { type: FrameType.DATA, payload: new Uint8Array(96) };
  const bytes = encodeDelimited(f);
  const d = new FrameDecoder(bytes.length - 1);
  const out: Frame[] = [];
  d.push(bytes, (x) => out.push(x));
  assert.equal(out.length, 1);
});

test('a stream that ends inside a frame is truncated', () => {
  const d = new FrameDecoder();
  const bytes = encodeDelimited({ type: FrameType.DATA, payload: new Uint8Array(10) });
  d.push(bytes.subarray(0, 5), () => {});
  assert.throws(() => d.end(), (e: unknown) => e instanceof ProtocolError && e.reason === 'truncated-frame' && e.closeCode === 4504);
});

test('zero-length frames and over-long prefixes are malformed', () => {
  assert.throws(() => new FrameDecoder().push(Uint8Array.of(0), () => {}), (e: unknown) => e instanceof ProtocolError && e.reason === 'malformed-frame');
  assert.throws(
    () => new FrameDecoder(Number.MAX_SAFE_INTEGER).push(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x01), () => {}),
    (e: unknown) => e instanceof ProtocolError && e.reason === 'malformed-frame',
  );
});

test('frames before a bad one are delivered; the decoder is then poisoned', () => {
  const d = new FrameDecoder();
  const out: Frame[] = [];
  const stream = concat([encodeDelimited({ type: FrameType.PING }), Uint8Array.of(1, 0x7f)]);
  assert.throws(() => d.push(stream, (f) => out.push(f)), (e: unknown) => e instanceof ProtocolError && e.reason === 'unknown-frame');
  assert.equal(out.length, 1);
  assert.throws(() => d.push(Uint8Array.of(1, 3), () => {}), ProtocolError);
});

test('property: random byte streams never throw anything but ProtocolError', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), (chunks) => {
      const d = new FrameDecoder(256);
      try {
        for (const c of chunks) d.push(c, () => {});
        d.end();
      } catch (err) {
        assert.ok(err instanceof ProtocolError, String(err));
      }
    }),
    { numRuns: 10000 },
  );
});

test('reassembly is linear: a 64 KB frame in 1-byte chunks is copied about once, not once per chunk', () => {
  const payload = new Uint8Array(60_000).fill(9);
  const bytes = encodeDelimited({ type: FrameType.DATA, seq: 1, id: 'big', payload });
  for (const size of [1, 7, 1000]) {
    const dec = new FrameDecoder();
    const got: Frame[] = [];
    for (let i = 0; i < bytes.length; i += size) dec.push(bytes.subarray(i, Math.min(bytes.length, i + size)), (f) => void got.push(f));
    assert.equal(got.length, 1);
    assert.deepEqual((got[0] as { payload: Uint8Array }).payload, payload);
    // The old decoder joined everything pending on every chunk: 1.9 GB copied for this frame in 1-byte chunks.
    assert.ok(dec.copiedBytes <= 2 * bytes.length, `${dec.copiedBytes} bytes copied for a ${bytes.length}-byte frame in ${size}-byte chunks`);
    assert.equal(dec.bufferedBytes, 0);
  }
});

test('an oversized frame is refused from its prefix alone, even when the prefix arrives a byte at a time', () => {
  const dec = new FrameDecoder(1000);
  dec.push(new Uint8Array([0xe9]), () => {}); // 0x7e9 = 2025 > 1000, prefix continues
  assert.throws(() => dec.push(new Uint8Array([0x0f]), () => {}), (e: Error & { code?: string }) => e.code === 'LL_ERR_FRAME_TOO_LARGE');
});

test('a DATA payload kept by the application does not keep the whole read alive; a large one is not copied; bare heartbeats stay shared', () => {
  // A catch-up burst: 1,000 small messages in one socket read (about 50 KB), as TCP coalesces them.
  const frames: Uint8Array[] = [];
  for (let i = 1; i <= 1000; i++) frames.push(encodeDelimited({ type: FrameType.DATA, seq: i, id: `m-${i}-${'x'.repeat(30)}`, payload: new Uint8Array([1, 2, 3, 4, 5]) }));
  frames.push(encodeDelimited({ type: FrameType.PING }));
  const read = concat(frames);
  const kept: Uint8Array[] = [];
  const pings: Frame[] = [];
  new FrameDecoder().push(read, (f) => (f.type === FrameType.DATA ? kept.push(f.payload) : pings.push(f)));
  assert.equal(kept.length, 1000);
  const buffers = new Set(kept.map((p) => p.buffer));
  const retained = [...buffers].reduce((n, b) => n + b.byteLength, 0);
  assert.ok(!buffers.has(read.buffer), `kept payloads hold the ${read.length}-byte read (${retained} bytes retained by 5,000 payload bytes)`);
  assert.ok(retained <= 1000 * 64, `${retained} bytes retained`);
  assert.deepEqual(kept[999], new Uint8Array([1, 2, 3, 4, 5]));
  assert.equal(pings.length, 1);
  // The same read as a socket hands it over, a Buffer (whose own slice() is a view, not a copy).
  const socketRead = Buffer.from(read);
  const keptFromSocket: Uint8Array[] = [];
  new FrameDecoder().push(socketRead, (f) => void (f.type === FrameType.DATA && keptFromSocket.push(f.payload)));
  assert.ok(!keptFromSocket.some((p) => p.buffer === socketRead.buffer), 'payloads kept from a Buffer read hold the whole read');
  // A payload that is most of its read is handed over as it is (no copy of large messages).
  const big = concat([encodeDelimited({ type: FrameType.DATA, seq: 1, payload: new Uint8Array(40_000).fill(9) })]);
  let payload: Uint8Array | undefined;
  new FrameDecoder().push(big, (f) => {
    if (f.type === FrameType.DATA) payload = f.payload;
  });
  assert.equal(payload!.buffer, big.buffer);
});
