import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type DeliveryEvent, type DropEvent, type MessageEvent, type OnlineEvent } from '../../src/gateway/gateway.js';
import type { DeliveryOptions } from '../../src/gateway/options.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { FrameType } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// Reliable delivery on a fake clock: acks, resume, offline queues, TTL and
// bounds, duplicate suppression both ways, and probe-before-push.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };

function setup(delivery: DeliveryOptions = {}) {
  const clock = new ManualClock(1_000);
  const gw = new Gateway({
    tcp: false, ws: false, heartbeat: POLICY, probes: { pongTimeoutMs: 300 }, wheelTickMs: 1, clock, timers: clock, wallClock: clock,
    delivery: { probeBeforePushMs: 0, ...delivery },
  });
  const ev = { delivered: [] as DeliveryEvent[], expired: [] as DropEvent[], dropped: [] as DropEvent[], messages: [] as MessageEvent[], online: [] as OnlineEvent[] };
  gw.on('delivered', (e) => ev.delivered.push(e));
  gw.on('expired', (e) => ev.expired.push(e));
  gw.on('dropped', (e) => ev.dropped.push(e));
  gw.on('message', (e) => ev.messages.push(e));
  gw.on('online', (e) => ev.online.push(e));
  return { clock, gw, ev };
}

function client(gw: Gateway, clock: ManualClock, deviceId = 'd', opts: { up?: () => boolean } = {}) {
  const links: MemoryLink[] = [];
  const c = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId, clock, timers: clock, random: () => 0,
    reconnect: { minDelayMs: 10, initialDelayMs: 10 },
    dial: async () => {
      if (opts.up && !opts.up()) throw new Error('down');
      const [s, l] = memoryLinkPair();
      gw.accept(s);
      links.push(l);
      return l;
    },
  });
  const got: string[] = [];
  const acked: string[] = [];
  c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  c.on('acked', (a) => acked.push(a.id));
  return { c, links, got, acked, link: () => links.at(-1)! };
}

async function settle(clock: ManualClock, ms = 100) {
  for (let i = 0; i < 5; i++) {
    await flush();
    clock.advance(ms / 5);
  }
  await flush();
}

test('push to a connected device: numbered DATA, acknowledged within ackDelay, push resolves delivered', async () => {
  const { clock, gw, ev } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  const p = gw.push('u', 'one', { id: 'm1' });
  await settle(clock);
  const r = await p;
  assert.deepEqual(r, { id: 'm1', devices: [{ deviceId: 'd', status: 'delivered' }], delivered: 1 });
  assert.deepEqual(a.got, ['one']);
  const data = a.link().received.find((f) => f.type === FrameType.DATA);
  assert.deepEqual({ ...data, payload: undefined }, { type: FrameType.DATA, seq: 1, id: 'm1', payload: undefined });
  assert.equal(ev.delivered.length, 1);
  assert.equal(ev.delivered[0].seq, 1);
  assert.ok(ev.delivered[0].ageMs <= 60, `acknowledged after the ack delay (${ev.delivered[0].ageMs} ms)`);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  a.c.close();
  await gw.close();
});

test('acks ride on heartbeats when one is due, so they cost no extra frame', async () => {
  const { clock, gw } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  clock.advance(999);
  void gw.push('u', 'x');
  await flush();
  clock.advance(1); // the heartbeat is due now, before the ack delay ends
  const sent = a.link().peer.received;
  // The first heartbeat also carries the client's RTT (0 over in-memory links).
  assert.deepEqual(sent.filter((f) => f.type === FrameType.PING), [{ type: FrameType.PING, ack: 1, rttMs: 0 }]);
  clock.advance(100);
  assert.equal(sent.filter((f) => f.type === FrameType.ACK).length, 0, 'no standalone ACK');
  a.c.close();
  await gw.close();
});

test('messages for an offline device wait in its queue and arrive, in order, when it connects', async () => {
  const { clock, gw, ev } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.c.close();
  await flush();
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await gw.push('u', `m${i}`));
  assert.ok(results.every((r) => r.devices[0].status === 'queued'));
  assert.equal(await gw.queueDepth('u', 'd'), 5);
  const b = client(gw, clock);
  await Promise.all([b.c.connect(), flush()]);
  await settle(clock);
  assert.deepEqual(b.got, ['m0', 'm1', 'm2', 'm3', 'm4']);
  assert.equal(ev.delivered.length, 5);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  b.c.close();
  await gw.close();
});

test('the queue bound evicts the oldest and reports each drop', async () => {
  const { clock, gw, ev } = setup({ maxQueuedPerDevice: 3 });
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.c.close();
  await flush();
  const r = [];
  for (let i = 0; i < 5; i++) r.push(gw.push('u', `m${i}`, { id: `m${i}` }));
  await Promise.all(r);
  assert.deepEqual(ev.dropped.map((d) => [d.id, d.reason]), [['m0', 'overflow'], ['m1', 'overflow']]);
  assert.equal(gw.deliveryStats.dropped, 2);
  const b = client(gw, clock);
  await Promise.all([b.c.connect(), flush()]);
  await settle(clock);
  assert.deepEqual(b.got, ['m2', 'm3', 'm4']);
  b.c.close();
  await gw.close();
});

test('the queue bound never reports dropped a message written to the online device, which acknowledges it: the newest not yet written goes', async () => {
  const { clock, gw, ev } = setup({ maxQueuedPerDevice: 3 });
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  // A burst before the device's acknowledgement: m0..m2 are written at once; m3 finds the bound full of messages on their way.
  const r = [];
  for (let i = 0; i < 4; i++) {
    r.push(gw.push('u', `m${i}`, { id: `m${i}` }));
    await flush();
  }
  await settle(clock);
  const results = await Promise.all(r);
  const had = ev.dropped.filter((d) => a.got.includes(d.id)).map((d) => d.id);
  assert.deepEqual(had, [], 'reported dropped, though written to the device and acknowledged by it');
  assert.deepEqual(a.got, ['m0', 'm1', 'm2']);
  assert.deepEqual(ev.delivered.map((d) => d.id), ['m0', 'm1', 'm2']);
  assert.deepEqual(ev.dropped.map((d) => [d.id, d.reason]), [['m3', 'overflow']], 'm3, never written, is the one dropped');
  assert.deepEqual(results.map((x) => x.devices[0].status), ['delivered', 'delivered', 'delivered', 'dropped']);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  a.c.close();
  await gw.close();
});

test('a message not acknowledged within its TTL expires and is reported', async () => {
  const { clock, gw, ev } = setup({ messageTtlMs: 5000 });
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.c.close();
  await flush();
  await gw.push('u', 'short', { id: 's', ttlMs: 1000 });
  await gw.push('u', 'long', { id: 'l' });
  clock.advance(1000);
  await flush();
  assert.deepEqual(ev.expired.map((e) => [e.id, e.reason]), [['s', 'ttl']]);
  clock.advance(4000);
  await flush();
  clock.advance(1000); // the sweep runs once a second
  await flush();
  assert.deepEqual(ev.expired.map((e) => e.id), ['s', 'l']);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  await gw.close();
});

test('push waiting on an online device that expires resolves expired', async () => {
  const { clock, gw } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.link().deaf = true; // the device receives nothing and acknowledges nothing
  const p = gw.push('u', 'x', { ttlMs: 500, waitMs: 5000 });
  for (let i = 0; i < 12; i++) {
    clock.advance(100);
    await flush();
  }
  assert.deepEqual((await p).devices, [{ deviceId: 'd', status: 'expired' }]);
  await gw.close();
});

test('resume: messages written into a dead link are re-sent after reconnect, each handed over once and in order', async () => {
  const { clock, gw, ev } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  for (let i = 0; i < 3; i++) void gw.push('u', `m${i}`);
  await settle(clock);
  assert.equal(ev.delivered.length, 3);
  a.link().deaf = true; // now the link silently loses everything
  for (let i = 3; i < 6; i++) void gw.push('u', `m${i}`);
  await settle(clock);
  assert.deepEqual(a.got, ['m0', 'm1', 'm2']);
  a.link().destroy();
  await settle(clock, 200);
  assert.equal(a.c.state, 'open');
  assert.deepEqual(ev.online.map((e) => e.resumed), [false, true]);
  assert.deepEqual(a.got, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  // The new link holds the mailbox: what the dead one carried is renumbered above every number used (4-6).
  assert.deepEqual(ev.delivered.map((d) => d.seq), [1, 2, 3, 7, 8, 9]);
  assert.equal(gw.deliveryStats.unackedAtClose, 3);
  a.c.close();
  await gw.close();
});

test("resume: a lost ack is made good by the HELLO's lastSeq: the message is not sent again", async () => {
  const { clock, gw } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.link().peer.deaf = true; // the client's frames (its ACKs) are lost
  void gw.push('u', 'once');
  await settle(clock);
  assert.deepEqual(a.got, ['once']);
  a.link().destroy();
  await settle(clock, 200);
  // Removed as its ACK would have (the client says it had seq 1), not re-sent under a new number.
  assert.deepEqual(a.got, ['once']);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  assert.equal(a.links.length, 2);
  assert.deepEqual(a.link().received.filter((f) => f.type === FrameType.DATA), []);
  a.c.close();
  await gw.close();
});

test("resume: the HELLO's lastSeq acknowledges what the old link delivered, so a client closed from its open handler and a fresh one later are not given it again", async () => {
  const { clock, gw, ev } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.link().peer.deaf = true; // the link is lost before the client's delayed ACK gets through
  const p = gw.push('u', 'once', { id: 'm1' });
  await settle(clock);
  assert.deepEqual(a.got, ['once']);
  // The app quits as soon as the link is back: its ACK before the CLOSE is one at or below the
  // resumed numbering, which acknowledges nothing on the new link.
  a.c.on('open', () => a.c.close());
  a.link().destroy();
  await settle(clock, 200);
  assert.deepEqual(ev.online.map((e) => e.resumed), [false, true]);
  assert.equal(a.c.state, 'closed');
  assert.deepEqual(ev.delivered.map((d) => [d.id, d.seq]), [['m1', 1]], 'm1 reported delivered, once, under the number the client had');
  // (The push settled queued when the old link closed: the delivered event is its report.)
  assert.equal((await p).devices[0].status, 'queued');
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  // The app's next run: a fresh process, no memory of ids.
  const b = client(gw, clock);
  await Promise.all([b.c.connect(), flush()]);
  await settle(clock, 200);
  assert.deepEqual(b.got, [], 'the fresh client is not handed m1 again');
  assert.equal(ev.delivered.length, 1);
  b.c.close();
  await gw.close();
});

test('client messages sent while disconnected are kept and sent after reconnect; the gateway drops re-sends', async () => {
  const { clock, gw, ev } = setup();
  let up = true;
  const a = client(gw, clock, 'd', { up: () => up });
  await Promise.all([a.c.connect(), flush()]);
  a.c.send('c0', { id: 'c0' });
  await settle(clock);
  assert.deepEqual(a.acked, ['c0']);
  // The gateway gets c1 but its ACK is lost with the link.
  a.link().deaf = true;
  a.c.send('c1', { id: 'c1' });
  await settle(clock);
  up = false;
  a.link().destroy();
  a.c.send('c2', { id: 'c2' }); // while down: queued
  assert.equal(a.c.pendingCount, 2);
  await settle(clock, 100);
  up = true;
  await settle(clock, 200);
  assert.equal(a.c.state, 'open');
  await settle(clock);
  assert.deepEqual(ev.messages.map((m) => Buffer.from(m.payload).toString()), ['c0', 'c1', 'c2']);
  assert.deepEqual(a.acked, ['c0', 'c1', 'c2']);
  assert.equal(a.c.pendingCount, 0);
  a.c.close();
  await gw.close();
});

test('an unknown or expired resume token starts a clean session; both sides are told, queued messages still arrive', async () => {
  const store = new MemoryStore();
  const { clock } = setup();
  const mk = () => new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, store, sessionTtlMs: 1000 });
  const gw = mk();
  const online: OnlineEvent[] = [];
  const messages: string[] = [];
  gw.on('online', (e) => online.push(e));
  gw.on('message', (m) => messages.push(Buffer.from(m.payload).toString()));
  let up = true;
  const a = client(gw, clock, 'd', { up: () => up });
  const lost: unknown[] = [];
  a.c.on('session-lost', (e) => lost.push(e));
  const w1 = await Promise.all([a.c.connect(), flush()]).then(([w]) => w);
  // c1 reaches the gateway, but its ACK does not reach the client.
  a.link().deaf = true;
  a.c.send('c1', { id: 'c1' });
  await settle(clock);
  up = false;
  a.link().destroy();
  void gw.push('u', 'while away');
  clock.advance(5000); // longer than sessionTtlMs: the session is gone
  up = true;
  await settle(clock, 200);
  assert.equal(a.c.state, 'open');
  assert.notEqual(a.c.sessionId, w1.sessionId);
  assert.equal(lost.length, 1);
  assert.equal(online.at(-1)?.resumeFailed, true);
  await settle(clock);
  assert.deepEqual(a.got, ['while away'], 'the device queue outlives the session');
  assert.deepEqual(messages, ['c1'], 'the re-sent c1 was recognised by id');
  assert.equal(gw.deliveryStats.duplicatesIn, 1);
  assert.equal(a.c.pendingCount, 0);
  a.c.close();
  await gw.close();
  await store.close();
});

async function rawOpen(gw: Gateway) {
  const [server, c] = memoryLinkPair();
  gw.accept(server);
  c.send({ type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' });
  await flush();
  return c;
}

const count = (l: MemoryLink, type: number) => l.received.filter((f) => f.type === type).length;

test('probe before push: a link silent past the threshold gets a PING first; no answer closes it and the message stays queued', async () => {
  const { clock, gw } = setup({ probeBeforePushMs: 800 });
  const offline: string[] = [];
  gw.on('offline', (e) => offline.push(e.reason));
  const c = await rawOpen(gw);
  clock.advance(900);
  const p = gw.push('u', 'precious', { waitMs: 2000 });
  await flush();
  assert.equal(count(c, FrameType.PING), 1, 'probe sent');
  assert.equal(count(c, FrameType.DATA), 0, 'nothing written before the answer');
  clock.advance(299);
  assert.deepEqual(offline, []);
  clock.advance(1);
  assert.deepEqual(offline, ['heartbeat-timeout']);
  assert.equal(c.received.at(-1)?.type, FrameType.CLOSE);
  assert.deepEqual((await p).devices, [{ deviceId: 'd', status: 'queued' }]);
  assert.equal(await gw.queueDepth('u', 'd'), 1, 'the message stays queued');
  assert.equal(gw.deliveryStats.probesBeforePush, 1);
  assert.equal(gw.deliveryStats.deadLinksFound, 1);
  assert.equal(gw.deliveryStats.unackedAtClose, 0, 'nothing was pushed into the dead link');
  await gw.close();
});

test('probe before push: an answer releases the message; a recently heard link is not probed', async () => {
  const { clock, gw, ev } = setup({ probeBeforePushMs: 800 });
  const c = await rawOpen(gw);
  clock.advance(900);
  void gw.push('u', 'a');
  void gw.push('u', 'b'); // held behind the same probe
  await flush();
  assert.equal(count(c, FrameType.PING), 1);
  clock.advance(20);
  c.send({ type: FrameType.PONG });
  await flush();
  assert.equal(count(c, FrameType.DATA), 2, 'released by the answer');
  c.send({ type: FrameType.ACK, ack: 2 });
  await flush();
  assert.equal(ev.delivered.length, 2);
  clock.advance(100);
  void gw.push('u', 'c');
  await flush();
  assert.equal(count(c, FrameType.PING), 1, 'heard 100 ms ago: no probe');
  assert.equal(count(c, FrameType.DATA), 3);
  assert.equal(gw.deliveryStats.probesBeforePush, 1);
  await gw.close();
});

test('an ACK beyond what was sent is a protocol violation', async () => {
  const { gw } = setup();
  const c = await rawOpen(gw);
  c.send({ type: FrameType.ACK, ack: 5 });
  await flush();
  const last = c.received.at(-1);
  assert.equal(last?.type, FrameType.CLOSE);
  assert.equal((last as { code: number }).code, CloseCodes['malformed-frame']);
  await gw.close();
});

test('an ACK beyond what was written, on a link that was written to, is a protocol violation: the messages numbered but not written stay queued', async () => {
  const { gw, ev } = setup();
  const [server, c] = memoryLinkPair();
  gw.accept(server);
  c.send({ type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' });
  await flush();
  void gw.push('u', 'm1', { id: 'm1', waitMs: 0 });
  await flush();
  // The socket backs up: m2 and m3 are numbered (2, 3) by the flush's take but wait in the store.
  Object.defineProperty(server, 'bufferedBytes', { get: () => 1 << 30 });
  server.awaitDrain = () => {};
  void gw.push('u', 'm2', { id: 'm2', waitMs: 0 });
  void gw.push('u', 'm3', { id: 'm3', waitMs: 0 });
  await flush();
  assert.deepEqual(c.received.filter((f) => f.type === FrameType.DATA).map((f) => (f as { seq: number }).seq), [1]);
  // The device got seq 1 and acknowledges 3, which it never had.
  c.send({ type: FrameType.ACK, ack: 3 });
  await flush();
  assert.equal(c.received.at(-1)?.type, FrameType.CLOSE);
  assert.equal((c.received.at(-1) as { code: number }).code, CloseCodes['malformed-frame']);
  assert.deepEqual(ev.delivered.map((e) => e.id), [], 'nothing reported delivered that the device never got');
  assert.equal(await gw.queueDepth('u', 'd'), 3, 'm1 (unacknowledged), m2, m3 still queued');
  await gw.close();
});

test('client DATA with a seq at or below the last accepted is dropped and re-acknowledged', async () => {
  const { gw, ev, clock } = setup();
  const c = await rawOpen(gw);
  const data = (seq: number, id: string) => c.send({ type: FrameType.DATA, seq, id, payload: Buffer.from(id) });
  data(1, 'a');
  data(2, 'b');
  data(2, 'b');
  data(1, 'a');
  data(3, 'c');
  await flush();
  clock.advance(60);
  assert.deepEqual(ev.messages.map((m) => m.id), ['a', 'b', 'c']);
  assert.deepEqual(ev.messages.map((m) => m.seq), [1, 2, 3]);
  assert.equal(gw.deliveryStats.duplicatesIn, 2);
  assert.deepEqual(c.received.filter((f) => f.type === FrameType.ACK).at(-1), { type: FrameType.ACK, ack: 3 });
  await gw.close();
});

test('resume after a long disconnect (100 s, within the session TTL): same session, everything queued arrives once', async () => {
  const { clock, gw, ev } = setup();
  let up = true;
  const a = client(gw, clock, 'd', { up: () => up });
  const w = await Promise.all([a.c.connect(), flush()]).then(([x]) => x);
  void gw.push('u', 'before');
  await settle(clock);
  up = false;
  a.link().destroy();
  for (let i = 0; i < 20; i++) void gw.push('u', `away${i}`);
  for (let t = 0; t < 100; t++) {
    clock.advance(1000);
    await flush();
  }
  up = true;
  for (let t = 0; t < 40 && a.c.state !== 'open'; t++) {
    clock.advance(1000);
    await flush();
  }
  await settle(clock);
  assert.equal(a.c.sessionId, w.sessionId, 'resumed');
  assert.deepEqual(a.got, ['before', ...Array.from({ length: 20 }, (_, i) => `away${i}`)]);
  assert.equal(ev.delivered.length, 21);
  assert.deepEqual(ev.online.map((e) => [e.resumed, e.resumeFailed]), [[false, false], [true, false]]);
  a.c.close();
  await gw.close();
});

test('a push to a user with no known device says so (unknownUser), and queues nothing', async () => {
  const gw = new Gateway({ tcp: false, ws: false });
  const r = await gw.push('ghost', 'anyone there?');
  assert.deepEqual({ devices: r.devices, delivered: r.delivered, unknownUser: r.unknownUser }, { devices: [], delivered: 0, unknownUser: true });
  await gw.close();
});

test('an idle link keeps no delivery state; the first push makes it, and numbering goes on from there', async () => {
  const { clock, gw } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  await settle(clock);
  const conn = () => (gw as unknown as { registry: { get(u: string, d: string): { delivery: unknown } | undefined } }).registry.get('u', 'd')!;
  assert.equal(conn().delivery, null, 'the flush at open found nothing and dropped its state');
  await Promise.all([gw.push('u', 'one', { id: 'm1' }), settle(clock)]);
  assert.notEqual(conn().delivery, null, 'a link that carried data keeps its numbering');
  await Promise.all([gw.push('u', 'two', { id: 'm2' }), settle(clock)]);
  assert.deepEqual(a.got, ['one', 'two']);
  assert.deepEqual(a.link().received.filter((f) => f.type === FrameType.DATA).map((f) => (f as { seq: number }).seq), [1, 2]);
  a.c.close();
  await gw.close();
});

// The memory store kept the caller's buffer: one reused for the next message (or a view into a
// larger one, which stayed alive while its few bytes were counted) changed what waited in the
// mailbox, and the device got what the buffer held when it came back, not what was pushed.
test('a queued message is what was pushed, whatever the caller does with its buffer afterwards', async () => {
  const { clock, gw } = setup();
  const a = client(gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.c.close();
  await flush();
  const buf = Buffer.from('first');
  const r = await gw.push('u', buf, { waitMs: 0 });
  assert.equal(r.devices[0].status, 'queued');
  buf.write('reuse'); // the caller's buffer, reused for something else
  const b = client(gw, clock);
  await Promise.all([b.c.connect(), flush()]);
  await settle(clock);
  assert.deepEqual(b.got, ['first']);
  b.c.close();
  await gw.close();
});
