import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import type { UpstreamMessage, UpstreamSink } from '../../src/gateway/upstream.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { sleep } from '../helpers/procs.js';

// Client messages waiting for a backend are counted by what they really hold: a payload that is a
// view into a larger read chunk does not keep the chunk, and fire-and-forget messages count bytes.

/** A DATA frame (length-delimited) with a `payloadBytes` payload and an unknown field (15) of `padBytes` the decoder skips. */
function paddedData(seq: number, id: string, payloadBytes: number, padBytes: number): Uint8Array {
  const inner = encodeDelimited({ type: FrameType.DATA, seq, id, payload: new Uint8Array(payloadBytes).fill(0x61) });
  // Unwrap the length prefix, append field 15 (wire type 2), wrap again.
  let k = 0;
  while (inner[k] & 0x80) k++;
  const varint = (n: number) => {
    const out: number[] = [];
    for (;;) {
      const b = n & 0x7f;
      n = Math.floor(n / 128);
      if (n === 0) return out.concat(b);
      out.push(b | 0x80);
    }
  };
  const frame = Buffer.concat([inner.subarray(k + 1), Buffer.from([0x7a, ...varint(padBytes)]), Buffer.alloc(padBytes)]);
  return Buffer.concat([Buffer.from(varint(frame.length)), frame]);
}

test('a message waiting for the backend keeps only its payload, not the read chunk it came in (a 1-byte payload padded to 60 KB)', async () => {
  const seen: UpstreamMessage[] = [];
  // A backend that never answers: messages wait in the gateway.
  const sink: UpstreamSink = { name: 'hang', send: (m) => (seen.push(m), new Promise(() => {})) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink } });
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u1', 'd1');
    await p.welcome();
    // One device's messages go upstream one at a time; the first is with the backend, the others wait behind it.
    for (let i = 1; i <= 20; i++) {
      p.write(paddedData(i, `m${i}`, 1, 60_000));
      await sleep(2); // one frame per read, as a sender over a network would
    }
    p.send({ type: FrameType.DATA, payload: Buffer.from('x') }); // and one fire-and-forget
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(10);
    assert.equal(seen.length, 2);
    // At most Buffer's shared pool slab (8 KiB), which small buffers share.
    for (const m of seen) assert.ok(m.payload.buffer.byteLength <= Buffer.poolSize, `a ${m.payload.length}-byte payload keeps ${m.payload.buffer.byteLength} bytes alive`);
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('fire-and-forget messages to a slow backend are bounded in bytes too (maxInboundWaitingBytes), not only in count', async () => {
  const sink: UpstreamSink = { name: 'hang', send: () => new Promise(() => {}) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPending: 20_000 }, limits: { maxInboundWaitingBytes: 1 << 20 } });
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u2', 'd2');
    await p.welcome();
    for (let i = 0; i < 100; i++) p.send({ type: FrameType.DATA, payload: new Uint8Array(60_000) });
    for (let i = 0; i < 100 && gw.upstreamStats()!.refusedBacklog === 0; i++) await sleep(10);
    await sleep(100);
    const st = gw.upstreamStats()!;
    assert.ok(st.pending * 60_000 <= 1 << 20, `${st.pending} fire-and-forget messages of 60 KB wait for the backend: more than the 1 MiB budget`);
    assert.ok(st.pending >= 10, `the budget's worth was let through (${st.pending})`);
    assert.ok(st.refusedBacklog > 0);
  } finally {
    p.destroy();
    await gw.close();
  }
});
