import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type FaultEvent } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { Store } from '../../src/gateway/stores/store.js';
import type { Link } from '../../src/link/link.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';
import { gated } from '../helpers/gated-store.js';

// Issue 19's findings, one test each, on the fake clock (the ones that need a
// real Redis are in test/integration/delivery-redis.test.ts). Each failed on
// the code before delivery became its own object.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };

function gateway(clock: ManualClock, store: Store, extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  return new Gateway({
    tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, store,
    delivery: { probeBeforePushMs: 0, pushWaitMs: 2000 }, ...extra,
  });
}

function client(clock: ManualClock, dial: () => Promise<Link>, deviceId = 'd', userId = 'u') {
  const c = new LonglinkClient({
    url: 'tcp://test', userId, deviceId, clock, timers: clock, random: () => 0,
    reconnect: { minDelayMs: 10, initialDelayMs: 10 }, dial,
    probes: { pongTimeoutMs: 300, probeCount: 1, probeIntervalMs: 100 },
  });
  const got: string[] = [];
  c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  return { c, got };
}

/** Dials into whichever gateway `to()` names; remembers the links. */
function dialer(to: () => Gateway) {
  const links: MemoryLink[] = [];
  return {
    links,
    dial: async () => {
      const [s, l] = memoryLinkPair();
      to().accept(s);
      links.push(l);
      return l as Link;
    },
  };
}

async function settle(clock: ManualClock, ms = 200) {
  for (let i = 0; i < 10; i++) {
    await flush();
    clock.advance(ms / 10);
  }
  await flush();
}

test('1. two nodes, one mailbox: pushes through a node holding a stale link are all delivered to the live one (none acknowledged away)', async () => {
  const clock = new ManualClock(1000);
  const store = new MemoryStore();
  const A = gateway(clock, store, { nodeId: 'A' });
  const B = gateway(clock, store, { nodeId: 'B' });
  let target = A;
  const d = dialer(() => target);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  // The link to A goes half-open: everything written to it is lost, and A does not know yet.
  d.links[0].deaf = true;
  d.links[0].peer.deaf = true;
  // The device moves to B (a network switch): its client gives up on A and dials B.
  target = B;
  // A never hears the close.
  d.links[0].destroy = () => {};
  d.links[0].close = () => {};
  c.close();
  const { c: c2, got: got2 } = client(clock, d.dial);
  await Promise.all([c2.connect(), settle(clock)]);
  const results = [await pushAndSettle(B, 'p1', clock), await pushAndSettle(A, 'p2', clock), await pushAndSettle(B, 'p3', clock)];
  await settle(clock, 500);
  assert.deepEqual([...got, ...got2], ['p1', 'p2', 'p3'], 'every push reached the live link, once, in order');
  assert.equal(await store.depth('u', 'd'), 0, 'nothing left behind: all acknowledged by the live link');
  assert.equal(results[0].devices[0].status, 'delivered');
  assert.notEqual(results[1].devices[0].status, 'delivered', 'A never claims delivery it did not see');
  c2.close();
  await A.close();
  await B.close();
});

async function pushAndSettle(gw: Gateway, payload: string, clock: ManualClock) {
  const p = gw.push('u', payload, { waitMs: 300 });
  await settle(clock, 400);
  return p;
}

test('2. the store loses its data under an open link: later pushes are numbered above what the link carried and delivered', async () => {
  const clock = new ManualClock(1000);
  const store = new MemoryStore();
  const gw = gateway(clock, store);
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  for (let i = 0; i < 3; i++) await pushAndSettle(gw, `m${i}`, clock);
  // Everything the store held is gone (Redis restarted without persistence); the link stays up.
  await store.close();
  const results = [];
  for (let i = 3; i < 6; i++) results.push(await pushAndSettle(gw, `m${i}`, clock));
  clock.advance(1500); // heartbeats carry the client's cumulative ACK
  await settle(clock);
  assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  assert.deepEqual(results.map((r) => r.devices[0].status), ['delivered', 'delivered', 'delivered']);
  c.close();
  await gw.close();
});

test('3. client DATA whose link closes while the gateway records its id is handed to the application once, and its re-send is a duplicate', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const messages: string[] = [];
  gw.on('message', (m) => messages.push(Buffer.from(m.payload).toString()));
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  g.hold('markInbound');
  c.send('hello', { id: 'm1' });
  await settle(clock, 20);
  assert.equal(g.waiting('markInbound'), 1, 'handed over, and the gateway is recording the id');
  d.links[0].destroy(); // the link breaks during that store round trip
  await flush();
  g.release('markInbound');
  await settle(clock, 500); // the client reconnects, resumes and re-sends the unacknowledged message
  assert.deepEqual(messages, ['hello'], 'handed over exactly once');
  assert.equal(c.pendingCount, 0, 'and acknowledged to the client');
  c.close();
  await gw.close();
});

test('4. a store call that fails, or a listener that throws, never crashes: faults are reported and delivery goes on', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const faults: FaultEvent[] = [];
  gw.on('fault', (f) => faults.push(f));
  gw.on('delivered', () => {
    throw new Error('a listener bug');
  });
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  g.fail('ack');
  await pushAndSettle(gw, 'x', clock);
  assert.deepEqual(got, ['x']);
  assert.ok(faults.some((f) => f.kind === 'store' && f.op === 'ack'), 'the failed ack is reported');
  g.fail('ack', false);
  // The message stayed; it is re-sent on the next link and dropped by id at the client, then acknowledged.
  d.links.at(-1)!.destroy();
  await settle(clock, 500);
  assert.deepEqual(got, ['x']);
  assert.equal(await g.store.depth('u', 'd'), 0);
  assert.ok(faults.some((f) => f.kind === 'listener' && f.op === 'delivered'), 'the throwing listener is reported, not fatal');
  // A failing take closes the link with a retryable code; the client comes back.
  g.fail('take');
  const closes: number[] = [];
  c.on('close', (e) => closes.push(e.code));
  void gw.push('u', 'y');
  await settle(clock, 50);
  g.fail('take', false);
  await settle(clock, 500);
  assert.ok(closes.length >= 1 && closes.every((x) => x === 4004), `closed with the retryable server-error while the store failed: ${closes}`);
  assert.deepEqual(got, ['x', 'y']);
  // A push the store cannot take says so: rejected when no device can be read, `failed` per device it could not queue.
  g.fail('knownDevices');
  await assert.rejects(gw.push('u', 'z'), (e: Error & { code?: string }) => e.code === 'LL_ERR_STORE_UNAVAILABLE');
  g.fail('knownDevices', false);
  g.fail('enqueue');
  const r = await gw.push('u', 'z', { waitMs: 100 });
  assert.deepEqual(r.devices, [{ deviceId: 'd', status: 'failed' }]);
  g.fail('enqueue', false);
  c.close();
  await gw.close();
});

test('5. a session older than sessionTtlMs whose link broke unseen is still resumable', async () => {
  const clock = new ManualClock(1000);
  // The gateway's own detection is slow (8 missed heartbeats): the client notices first and comes back
  // while the old link is still open here, so nothing saved the session at its close.
  const gw = gateway(clock, new MemoryStore(), { sessionTtlMs: 1000, heartbeat: { ...POLICY, missBudget: 8 } });
  const online: boolean[] = [];
  gw.on('online', (e) => online.push(e.resumed));
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  clock.advance(10_000); // heartbeats keep it up, ten times sessionTtlMs
  await settle(clock);
  // The network switches: the client's frames stop arriving; the client times out and reconnects.
  const old = d.links[0];
  old.peer.deaf = true;
  old.deaf = true;
  // ...and its close never reaches the gateway either (the path is gone).
  const endHere = () => (old as unknown as { finish(): void }).finish();
  old.close = endHere;
  old.destroy = endHere;
  for (let i = 0; i < 40 && d.links.length < 2; i++) await settle(clock, 200);
  await settle(clock, 200);
  assert.equal(d.links.length, 2, 'the client reconnected');
  assert.equal(c.state, 'open');
  const welcomes = d.links.map((l) => l.received.find((f) => f.type === FrameType.WELCOME)) as { resumed: boolean }[];
  assert.equal(welcomes[1].resumed, true, 'resumed, not session-lost');
  c.close();
  await gw.close();
});

test('8. a link that closes during the presence write: no offline before online, and no stale presence left', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const events: string[] = [];
  gw.on('online', () => events.push('online'));
  gw.on('offline', () => events.push('offline'));
  g.hold('setOnline');
  const [s, l] = memoryLinkPair();
  gw.accept(s);
  l.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
  await settle(clock, 20);
  assert.equal(g.waiting('setOnline'), 1);
  l.destroy();
  await flush();
  g.release('setOnline');
  await settle(clock, 50);
  assert.ok(events.indexOf('offline') === -1 || events.indexOf('online') < events.indexOf('offline'), `events in order: ${events}`);
  assert.deepEqual(await g.store.devices('u'), [], 'presence does not outlive the link');
  await gw.close();
});

test('9. one message id pushed to several users: each result is that user\'s own', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore());
  const d = dialer(() => gw);
  const alice = client(clock, d.dial, 'phone', 'alice');
  await Promise.all([alice.c.connect(), settle(clock)]);
  const bob = client(clock, d.dial, 'phone', 'bob');
  await Promise.all([bob.c.connect(), settle(clock)]);
  bob.c.close(); // bob is offline; his device is known
  await settle(clock);
  const pa = gw.push('alice', 'group hello', { id: 'g1', waitMs: 500 });
  const pb = gw.push('bob', 'group hello', { id: 'g1', waitMs: 500 });
  await settle(clock, 600);
  const [ra, rb] = await Promise.all([pa, pb]);
  assert.deepEqual(alice.got, ['group hello']);
  assert.deepEqual(bob.got, []);
  assert.deepEqual(ra.devices, [{ deviceId: 'phone', status: 'delivered' }]);
  assert.deepEqual(rb.devices, [{ deviceId: 'phone', status: 'queued' }]);
  alice.c.close();
  await gw.close();
});

test('10. close() then connect() while a dial is in flight: one link, and the client stays open', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore());
  const pending: (() => void)[] = [];
  const links: MemoryLink[] = [];
  const c = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', clock, timers: clock, random: () => 0,
    dial: () =>
      new Promise<Link>((resolve) => {
        pending.push(() => {
          const [s, l] = memoryLinkPair();
          gw.accept(s);
          links.push(l);
          resolve(l);
        });
      }),
  });
  const closes: number[] = [];
  c.on('close', (e) => closes.push(e.code));
  void c.connect().catch(() => {});
  await flush();
  c.close();
  const opened = c.connect();
  await flush();
  assert.equal(pending.length, 2, 'two dials in flight');
  pending[1](); // the current attempt opens
  await settle(clock, 200);
  await opened;
  pending[0](); // then the late dial from before close() completes
  await settle(clock, 200);
  assert.equal(c.state, 'open');
  assert.equal(links.filter((l) => !l.closed).length, 1, 'the stale dial was dropped');
  assert.ok(!closes.includes(4503), `no permanent failure: ${closes}`);
  assert.equal(gw.onlineDevices, 1);
  c.close();
  await gw.close();
});

test('11. a drain that begins while a flush waits on the store writes no DATA after GOAWAY', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  // One message written and not acknowledged (the client's ACKs are lost), so a drain keeps the link open.
  d.links[0].peer.deaf = true;
  void gw.push('u', 'first');
  await settle(clock, 50);
  g.hold('take');
  void gw.push('u', 'late');
  await settle(clock, 20);
  assert.ok(g.waiting('take') >= 1);
  const drained = gw.drain({ windowMs: 100, ackTimeoutMs: 200 });
  await flush();
  g.release('take');
  await settle(clock, 400);
  await drained;
  const frames = d.links[0].received.map((f) => f.type);
  const goaway = frames.indexOf(FrameType.GOAWAY);
  assert.ok(goaway >= 0, 'GOAWAY sent');
  assert.ok(!frames.slice(goaway).includes(FrameType.DATA), `no DATA after GOAWAY: ${frames}`);
  c.close();
});
