import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import type { UpstreamSink } from '../../src/gateway/upstream.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { RawPeer } from '../helpers/raw-peer.js';

// A link refused for its pace (4009) or its backlog (4004) takes in, and acknowledges, what it
// admitted before the refusal: closed at once, it took in none of a burst read in one go, and a
// client re-sending the same burst after the hint was refused the same way for ever.

/** `n` sequenced DATA frames in one write (one read on loopback). */
function burst(p: RawPeer, n: number): void {
  const frames = Array.from({ length: n }, (_, i) => encodeDelimited({ type: FrameType.DATA, seq: i + 1, id: `m${i + 1}`, payload: Buffer.from(`m${i + 1}`) }));
  p.write(Buffer.concat(frames));
}

const acked = (frames: Frame[]): number => Math.max(0, ...frames.map((f) => ('ack' in f && typeof f.ack === 'number' ? f.ack : 0)));

test('a burst past the DATA pace: what came within it (and the warned one) is taken in and acknowledged before the CLOSE 4009, the rest is not', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, limits: { maxDataPerSecond: 10, dataBurst: 20 } });
  const got: string[] = [];
  gw.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u', 'd');
    await p.welcome();
    burst(p, 30);
    await p.closed;
    assert.equal(p.goaway?.code, CloseCodes['too-many-messages']);
    assert.equal(p.closeCode, CloseCodes['too-many-messages']);
    // 20 within the burst (21 if the clock moved during the read), the next warned and taken, the one after refused.
    const k = got.length;
    assert.ok(k >= 21 && k <= 22, `${k} of the burst taken in`);
    assert.deepEqual(got, Array.from({ length: k }, (_, i) => `m${i + 1}`), 'what came before the refusal was taken in, in order');
    assert.equal(acked(p.frames), k, 'and acknowledged before the CLOSE');
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('a burst past the upstream backlog of a slow backend: the messages it admitted reach the backend and are acknowledged before the CLOSE 4004', async () => {
  const seen: string[] = [];
  // A healthy backend that takes 10 ms per message.
  const sink: UpstreamSink = { name: 'slow', send: (m) => new Promise((r) => setTimeout(() => (seen.push(m.id!), r()), 10)) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPendingPerConnection: 10 } });
  const got: string[] = [];
  gw.on('message', (m) => got.push(m.id!));
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u', 'd');
    await p.welcome();
    burst(p, 15);
    await p.closed;
    assert.equal(p.goaway?.code, CloseCodes['server-error']);
    assert.equal(p.closeCode, CloseCodes['server-error']);
    const ten = Array.from({ length: 10 }, (_, i) => `m${i + 1}`);
    assert.deepEqual(seen, ten, 'the admitted messages reached the backend');
    assert.deepEqual(got, ten);
    assert.equal(acked(p.frames), 10, 'and were acknowledged before the CLOSE');
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('a refused link whose backend never answers is still closed, REFUSAL_LINGER_MS (5 s) after its GOAWAY: nothing is acknowledged, and DATA after the GOAWAY is not acted on', async () => {
  const seen: string[] = [];
  const sink: UpstreamSink = { name: 'hang', send: (m) => (seen.push(m.id!), new Promise(() => {})) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPendingPerConnection: 3 } });
  const got: string[] = [];
  gw.on('message', (m) => got.push(m.id!));
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u', 'd');
    await p.welcome();
    burst(p, 5);
    await p.next((f) => f.type === FrameType.GOAWAY);
    const refusedAt = Date.now();
    p.send({ type: FrameType.DATA, payload: Buffer.from('after') });
    await p.closed;
    const took = Date.now() - refusedAt;
    assert.ok(took >= 4500 && took < 7000, `closed ${took} ms after the GOAWAY`);
    assert.equal(p.closeCode, CloseCodes['server-error']);
    assert.deepEqual(seen, ['m1'], 'one at a time: the first with the backend');
    assert.deepEqual(got, [], 'nothing handed over, the fire-and-forget one after the GOAWAY neither');
    assert.equal(acked(p.frames), 0);
  } finally {
    p.destroy();
    await gw.close();
  }
});
