import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import type { UpstreamMessage, UpstreamSink } from '../../src/gateway/upstream.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { sleep } from '../helpers/procs.js';

// What a peer sent before its clean CLOSE is taken in, even when the CLOSE comes in the same read.

/** Several frames as one write: they reach the gateway in one read. */
function oneChunk(...frames: Parameters<typeof encodeDelimited>[0][]): Buffer {
  return Buffer.concat(frames.map((f) => Buffer.from(encodeDelimited(f))));
}

test('sequenced DATA followed by CLOSE in the same read is handed to the application', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  const got: string[] = [];
  gw.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u1', 'd1');
    await p.welcome();
    p.write(
      oneChunk(
        { type: FrameType.DATA, seq: 1, id: 'm1', payload: Buffer.from('one') },
        { type: FrameType.DATA, seq: 2, id: 'm2', payload: Buffer.from('two') },
        { type: FrameType.CLOSE, code: 1000, reason: 'bye' },
      ),
    );
    await p.closed;
    for (let i = 0; i < 50 && got.length < 2; i++) await sleep(10);
    assert.deepEqual(got, ['one', 'two'], 'what came before the CLOSE was taken in');
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('with a backend, sequenced DATA followed by CLOSE in the same read goes to the backend', async () => {
  const seen: UpstreamMessage[] = [];
  const sink: UpstreamSink = { name: 'mem', send: async (m) => void seen.push(m) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink } });
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u2', 'd2');
    await p.welcome();
    p.write(oneChunk({ type: FrameType.DATA, seq: 1, id: 'm1', payload: Buffer.from('one') }, { type: FrameType.CLOSE, code: 1000 }));
    await p.closed;
    for (let i = 0; i < 50 && seen.length < 1; i++) await sleep(10);
    assert.deepEqual(seen.map((m) => m.id), ['m1'], 'the backend got what came before the CLOSE');
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('DATA after a bad frame in the same read is not acted on', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  const got: string[] = [];
  gw.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u3', 'd3');
    await p.welcome();
    // A HELLO on an open link is an unexpected frame: the link closes, the DATA after it is not taken in.
    p.write(
      oneChunk(
        { type: FrameType.HELLO, version: 1, userId: 'u3', deviceId: 'd3' } as never,
        { type: FrameType.DATA, seq: 1, id: 'm1', payload: Buffer.from('after') },
      ),
    );
    await p.closed;
    await sleep(50);
    assert.deepEqual(got, []);
  } finally {
    p.destroy();
    await gw.close();
  }
});
