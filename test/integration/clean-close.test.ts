import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import type { UpstreamMessage, UpstreamSink } from '../../src/gateway/upstream.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { sleep } from '../helpers/procs.js';
import { LonglinkClient } from '../../src/client/client.js';

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

// The client's close() sends what its outbox holds first (bounded), and says what is left.

test("client close() flushes the outbox over the open link: 300 messages sent just before it all reach the gateway, and it resolves with none left", async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  const got: string[] = [];
  gw.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  const port = (await gw.listen()).tcp!.port;
  const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'u4', deviceId: 'd4' });
  try {
    await c.connect();
    // More than the window (maxInFlight 128): most are not even written when close() is called.
    for (let i = 0; i < 300; i++) c.send(`m${i}`);
    const left = await c.close();
    assert.equal(c.state, 'closed');
    await sleep(200); // anything still on its way
    assert.equal(got.length, 300, `the gateway got ${got.length} of 300`);
    assert.deepEqual(left, [], 'nothing left unacknowledged');
  } finally {
    c.close({ flushMs: 0 });
    await gw.close();
  }
});

test('client close() is bounded: a backend that never answers holds it flushMs, then it closes and resolves with the messages left', async () => {
  const sink: UpstreamSink = { name: 'hang', send: () => new Promise(() => {}) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink } });
  const port = (await gw.listen()).tcp!.port;
  const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'u5', deviceId: 'd5' });
  try {
    await c.connect();
    const id = c.send('stuck');
    const t0 = performance.now();
    const left = await c.close({ flushMs: 300 });
    const took = performance.now() - t0;
    assert.ok(took >= 250 && took < 2000, `close took ${took} ms`);
    assert.equal(c.state, 'closed');
    assert.deepEqual(left.map((m) => [m.id, Buffer.from(m.payload).toString()]), [[id, 'stuck']]);
  } finally {
    await gw.close();
  }
});

test('client close() with no link: closes at once and resolves with what the outbox holds', async () => {
  const c = new LonglinkClient({ url: 'tcp://127.0.0.1:1', userId: 'u6', deviceId: 'd6' });
  const id = c.send('offline');
  const left = await c.close();
  assert.equal(c.state, 'closed');
  assert.deepEqual(left.map((m) => m.id), [id]);
});

test('client close() waiting for its outbox ends when the link is lost meanwhile, with what is left; connect() during the wait ends it too', async () => {
  const sink: UpstreamSink = { name: 'hang', send: () => new Promise(() => {}) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink } });
  const port = (await gw.listen()).tcp!.port;
  const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'u7', deviceId: 'd7' });
  try {
    await c.connect();
    c.send('a');
    const closing = c.close({ flushMs: 60_000 });
    assert.equal(c.state, 'open', 'still sending');
    // A second close() gets the same wait.
    assert.equal(c.close(), closing);
    gw.kick('u7', 'd7');
    const left = await Promise.race([closing, sleep(3000).then(() => 'still waiting' as const)]);
    assert.notEqual(left, 'still waiting');
    assert.equal(c.state, 'closed');
    assert.equal((left as { id: string }[]).length, 1);
    // connect() while a close() waits: that close ends (at once), and the client runs again.
    await c.connect();
    const again = c.close({ flushMs: 60_000 });
    const reopened = c.connect();
    assert.equal((await again).length, 1);
    await reopened;
    assert.equal(c.state, 'open');
  } finally {
    c.close({ flushMs: 0 });
    await gw.close();
  }
});
