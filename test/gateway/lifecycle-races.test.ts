import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type OfflineEvent } from '../../src/gateway/gateway.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// A connection's life against frames that end it half-way and a drain that says "nothing new":
// cases a review found, each failing before its fix.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
function setup() {
  const clock = new ManualClock(1_000_000);
  return { clock, gw: new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000 }) };
}

test('a frame whose ack closes the link (beyond what was sent) is not acted on further: no message or state after offline', async () => {
  for (const frame of [
    { type: FrameType.DATA, payload: new Uint8Array([1]), ack: 99 },
    { type: FrameType.PING, ack: 99, state: { k: 'v' } },
  ] as const) {
    const { gw } = setup();
    const log: string[] = [];
    gw.on('offline', (e: OfflineEvent) => log.push(`offline ${e.reason}`));
    gw.on('message', () => log.push('message'));
    gw.on('state', () => log.push('state'));
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
    await flush();
    client.send(frame);
    await flush();
    assert.deepEqual(log, ['offline malformed-frame'], `frame type ${frame.type}`);
    await gw.close();
  }
});

test('drain: nothing new is written between GOAWAY and CLOSE, fire-and-forget send and broadcast included', async () => {
  const { gw, clock } = setup();
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  await flush();
  void gw.push('u1', 'x'); // one unacknowledged: the drain waits for it
  await flush();
  const drained = gw.drain({ windowMs: 1000, ackTimeoutMs: 5000 });
  await flush();
  assert.equal(gw.send('u1', 'after-goaway'), 0);
  assert.equal(gw.broadcast('to-all'), 0);
  await flush();
  const types = client.received.map((f) => f.type);
  const after = types.slice(types.indexOf(FrameType.GOAWAY) + 1);
  clock.advance(6000);
  await drained;
  assert.ok(!after.includes(FrameType.DATA), `frames after GOAWAY: ${after}`);
});

test('close({ reconnectAfterMs }) spreads the hints over the time the gateway needs to take every client back at its handshake rate: they do not all return in the same millisecond', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 }, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const clients: MemoryLink[] = [];
  for (let i = 0; i < 400; i++) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    clients.push(client);
  }
  await flush();
  await gw.close({ reconnectAfterMs: 1000 });
  const hints = clients.map((c) => (c.received.find((f) => f.type === FrameType.GOAWAY) as { reconnectAfterMs: number } | undefined)?.reconnectAfterMs);
  // 400 clients at the default 2,000 handshakes a second: 200 ms.
  assert.ok(hints.every((h) => h !== undefined && h >= 1000 && h < 1200), `hints out of [1,000, 1,200) ms: ${hints.slice(0, 5).join(', ')}`);
  assert.ok(new Set(hints).size > 100, `${new Set(hints).size} distinct hints for 400 clients`);
});

/** The server end reports `bytes()` waiting to be written (a peer that does not read). */
function backlog(link: MemoryLink, bytes: () => number): void {
  Object.defineProperty(link, 'bufferedBytes', { get: bytes });
}

test('a PING whose answer overflows the write buffer (slow-consumer) is not acted on further: no state after offline, no timer left on the wheel', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, limits: { maxWriteBufferBytes: 1 << 20 } });
  const log: string[] = [];
  gw.on('offline', (e: OfflineEvent) => log.push(`offline ${e.reason}`));
  gw.on('state', () => log.push('state'));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  await flush();
  backlog(server, () => 2 << 20);
  client.send({ type: FrameType.PING, state: { k: 'v' }, intervalMs: 500 });
  await flush();
  assert.deepEqual(log, ['offline slow-consumer']);
  assert.equal(gw.timerStats().wheelSize, 0, 'the closed link holds no wheel timer');
  await gw.close();
});

test('a probe that overflows the write buffer closes the link with its timer off the wheel', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, limits: { maxWriteBufferBytes: 1 << 20 } });
  const offline: string[] = [];
  gw.on('offline', (e: OfflineEvent) => offline.push(e.reason));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  await flush();
  backlog(server, () => 2 << 20);
  clock.advance(1600); // a heartbeat overdue: the suspicion's probe is the write that overflows
  await flush();
  assert.deepEqual(offline, ['slow-consumer']);
  assert.equal(gw.timerStats().wheelSize, 0, 'the closed link holds no wheel timer');
  await gw.close();
});

test('a replaced listener that kicks the device at once: the link that took over is reported offline (the device does not stay online in events for good)', async () => {
  const { gw } = setup();
  const log: string[] = [];
  gw.on('online', () => log.push('online'));
  gw.on('offline', (e: OfflineEvent) => log.push(`offline ${e.reason}`));
  gw.on('replaced', () => {
    log.push('replaced');
    gw.kick('u1', 'd1');
  });
  for (let i = 0; i < 2; i++) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
    await flush();
  }
  assert.deepEqual(log, ['online', 'replaced', 'offline kicked']);
  assert.equal(gw.onlineDevices, 0);
  assert.deepEqual(await gw.presence('u1'), []);
  await gw.close();
});
