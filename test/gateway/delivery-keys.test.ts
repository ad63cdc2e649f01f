import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { PresenceEntry } from '../../src/gateway/stores/store.js';
import type { UpstreamMessage, UpstreamSink } from '../../src/gateway/upstream.js';
import { FrameType, PROTOCOL_VERSION, type HelloFrame, type WelcomeFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// Keys the delivery makes of user, device and message ids, which may hold any character (NUL
// included): two different devices' (or users') keys must never be one.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
function setup(extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, handshakeTimeoutMs: 3000, ...extra });
  return { clock, gw };
}
async function open(gw: Gateway, hello: Partial<HelloFrame>): Promise<MemoryLink> {
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1', ...hello });
  await flush();
  assert.ok(client.received.find((f): f is WelcomeFrame => f.type === FrameType.WELCOME));
  return client;
}

test('a message of one device does not wait behind another device\'s message whose ids join to the same string', async () => {
  const got: string[] = [];
  // The backend holds the first device's message (a slow webhook).
  const sink: UpstreamSink = {
    name: 't',
    send: (m: UpstreamMessage) => {
      got.push(`${JSON.stringify(m.deviceId)} ${JSON.stringify(m.id)}`);
      return m.deviceId === 'd1' ? new Promise(() => {}) : Promise.resolve();
    },
  };
  const { clock, gw } = setup({ upstream: { sink } });
  const a = await open(gw, { deviceId: 'd1' });
  const b = await open(gw, { deviceId: 'd1\0x' });
  a.send({ type: FrameType.DATA, seq: 1, id: 'x\0y', payload: new Uint8Array([1]) });
  await flush();
  b.send({ type: FrameType.DATA, seq: 1, id: 'y', payload: new Uint8Array([2]) });
  for (let i = 0; i < 5; i++) {
    clock.advance(100);
    await flush();
  }
  assert.deepEqual(got, ['"d1" "x\\u0000y"', '"d1\\u0000x" "y"'], 'the second device\'s message reached the backend at once');
  const acked = b.received.some((f) => 'ack' in f && f.ack === 1);
  assert.ok(acked, 'and was acknowledged');
  await gw.close();
});

test('a device\'s re-sent message still waits behind its first copy while another device\'s message with joining ids went in meanwhile', async () => {
  const got: string[] = [];
  const sink: UpstreamSink = {
    name: 't',
    send: (m: UpstreamMessage) => {
      got.push(`${JSON.stringify(m.deviceId)} ${JSON.stringify(m.id)}`);
      return m.deviceId === 'd1' && got.length === 1 ? new Promise(() => {}) : Promise.resolve();
    },
  };
  const { clock, gw } = setup({ upstream: { sink } });
  const a = await open(gw, { deviceId: 'd1' });
  const b = await open(gw, { deviceId: 'd1\0x' });
  a.send({ type: FrameType.DATA, seq: 1, id: 'x\0y', payload: new Uint8Array([1]) });
  await flush();
  b.send({ type: FrameType.DATA, seq: 1, id: 'y', payload: new Uint8Array([2]) });
  for (let i = 0; i < 60; i++) {
    clock.advance(100);
    await flush();
  }
  // d1 comes back on a new link (the old one is half-open) and re-sends what it was not acknowledged.
  const a2 = await open(gw, { deviceId: 'd1' });
  a2.send({ type: FrameType.DATA, seq: 1, id: 'x\0y', payload: new Uint8Array([1]) });
  for (let i = 0; i < 5; i++) {
    clock.advance(100);
    await flush();
  }
  assert.equal(got.filter((g) => g === '"d1" "x\\u0000y"').length, 1, `the re-send waits for the first copy, still with the backend: ${got.join(', ')}`);
  await gw.close();
});

/** A shared store whose presence puts every device on node B, and whose wake-ups (route) fail until `up`. */
class OtherNodeStore extends MemoryStore {
  up = false;
  /** Presence reads fail until set (known devices answer, as from a record of their own). */
  presenceUp = true;
  routed: string[] = [];
  override async knownDevices(userId: string): Promise<string[]> {
    return this.presenceUp ? [] : [userId === 'a' ? 'b\0c' : 'c'];
  }
  override async devices(userId: string): Promise<PresenceEntry[]> {
    if (!this.presenceUp) throw new Error('ETIMEDOUT');
    return [{ userId, deviceId: userId === 'a' ? 'b\0c' : 'c', connectionId: 'x', nodeId: 'B', transport: 'tcp', since: 0, clientInfo: {} }];
  }
  async route(nodeId: string, userId: string, deviceId: string): Promise<void> {
    if (!this.up) throw new Error('ETIMEDOUT');
    this.routed.push(`${JSON.stringify(userId)} ${JSON.stringify(deviceId)}`);
  }
}

test('a failed wake-up of another node is retried for each device, though their user and device ids join to the same string', async () => {
  const store = new OtherNodeStore();
  const { clock, gw } = setup({ store });
  gw.on('fault', () => {});
  for (const u of ['a', 'a\0b']) {
    const r = await gw.push(u, 'hi', { waitMs: 0 });
    assert.deepEqual(r.devices.map((d) => d.status), ['queued']);
  }
  store.up = true;
  for (let i = 0; i < 30; i++) {
    clock.advance(100);
    await flush();
  }
  assert.deepEqual(store.routed.sort(), ['"a" "b\\u0000c"', '"a\\u0000b" "c"'], 'both nodes\' wake-ups were made once the store took them');
  await gw.close();
});

test('a device looked for again after a failed presence read is looked for each, though their user and device ids join to the same string', async () => {
  const store = new OtherNodeStore();
  store.presenceUp = false;
  store.up = true;
  const { clock, gw } = setup({ store });
  gw.on('fault', () => {});
  for (const u of ['a', 'a\0b']) {
    const r = await gw.push(u, 'hi', { waitMs: 0 });
    assert.deepEqual(r.devices.map((d) => d.status), ['queued']);
  }
  store.presenceUp = true;
  for (let i = 0; i < 30; i++) {
    clock.advance(100);
    await flush();
  }
  assert.deepEqual(store.routed.sort(), ['"a" "b\\u0000c"', '"a\\u0000b" "c"'], 'both devices were found on node B and woken');
  await gw.close();
});
