import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { ClusterControl, PresenceEntry, Store } from '../../src/gateway/stores/store.js';
import { FrameType } from '../../src/protocol/frames.js';
import type { Link } from '../../src/link/link.js';
import type { UpstreamMessage } from '../../src/gateway/upstream.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';
import { gated } from '../helpers/gated-store.js';

// Delivery and presence against the timing of store calls, authenticators and backends: each
// case an interleaving a review found, in which an acknowledged message was lost, handed over
// twice or reported expired, a live link closed for good, or a device left online for good.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
function gateway(clock: ManualClock, store: Store, extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  return new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, store, ...extra,
    delivery: { probeBeforePushMs: 0, pushWaitMs: 2000, ...(extra.delivery ?? {}) } });
}
function client(clock: ManualClock, dial: () => Promise<Link>, deviceId = 'd', userId = 'u') {
  const c = new LonglinkClient({ url: 'tcp://test', userId, deviceId, clock, timers: clock, random: () => 0,
    reconnect: { minDelayMs: 10, initialDelayMs: 10 }, dial, probes: { pongTimeoutMs: 300, probeCount: 1, probeIntervalMs: 100 } });
  const got: string[] = [];
  c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  return { c, got };
}
function dialer(to: () => Gateway) {
  const links: MemoryLink[] = [];
  return { links, dial: async () => { const [s, l] = memoryLinkPair(); to().accept(s); links.push(l); return l as Link; } };
}
async function settle(clock: ManualClock, ms = 200, rounds = 10) {
  for (let i = 0; i < rounds; i++) { await flush(); clock.advance(ms / rounds); }
  await flush();
}

test('a device connected for longer than knownDeviceTtlMs is still known after it disconnects: a push is queued for it', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore(), { delivery: { knownDeviceTtlMs: 10_000 } });
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  for (let i = 0; i < 60; i++) await settle(clock, 500); // 30 s online, heartbeating
  assert.equal(c.state, 'open');
  c.close();
  await settle(clock, 50);
  await gw.sweepExpired();
  const r = await gw.push('u', 'after', { waitMs: 0 });
  assert.deepEqual(r.devices, [{ deviceId: 'd', status: 'queued' }], `push for a device that left 50 ms ago: ${JSON.stringify(r)}`);
  await gw.close();
});

test('upstream: a re-send that arrives (on a new link) while the first hand-over is still with the backend is handed over once', async () => {
  const clock = new ManualClock(1000);
  const sends: UpstreamMessage[] = [];
  let releaseFirst!: () => void;
  const sink = { name: 'slow', send: (m: UpstreamMessage) => { sends.push(m); return sends.length === 1 ? new Promise<void>((r) => (releaseFirst = r)) : Promise.resolve(); } };
  const gw = gateway(clock, new MemoryStore(), { upstream: { sink } });
  const messages: string[] = [];
  gw.on('message', (m) => messages.push(`${m.id}`));
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  c.send('hello', { id: 'm1' });
  await settle(clock, 20);
  assert.equal(sends.length, 1);
  d.links[0].destroy(); // link breaks while the backend holds the message
  await settle(clock, 500); // client resumes and re-sends m1
  releaseFirst();
  await settle(clock, 200);
  assert.deepEqual(messages, ['m1'], `handed to the app: ${messages}; backend got ${sends.length}`);
  assert.equal(sends.length, 1, 'the backend got it once');
  c.close();
  await gw.close();
});

test('a presence removal that fails once (a store blip) is retried until it lands: no online ghost', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  g.fail('setOffline');
  c.close();
  await settle(clock, 50);
  g.fail('setOffline', false);
  for (let i = 0; i < 10; i++) await settle(clock, 1000);
  await gw.sweepExpired();
  assert.deepEqual((await gw.presence('u')).map((e) => e.deviceId), [], 'no link anywhere, presence should be empty');
  assert.deepEqual(gw.storeRetryStats(), { pending: 0, recovered: 1, dropped: 0 });
  await gw.close();
});

test('a reconnect whose presence write fails takes out the entry of the link it replaced, too (no ghost of it)', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const ev: string[] = [];
  gw.on('online', () => ev.push('online'));
  gw.on('offline', () => ev.push('offline'));
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  const first = (await gw.presence('u'))[0].connectionId;
  // The link to the gateway goes half-open (the gateway does not hear it end); the device comes back.
  d.links[0].deaf = true; d.links[0].peer.deaf = true;
  d.links[0].destroy = () => {}; d.links[0].close = () => {};
  c.close();
  g.fail('setOnline');
  const { c: c2 } = client(clock, d.dial);
  void c2.connect().catch(() => {});
  await settle(clock, 30); // its HELLO's presence write fails (a Redis blip)
  c2.close(); // and it goes away
  await settle(clock, 200);
  g.fail('setOnline', false);
  const p = await gw.presence('u');
  assert.equal(gw.onlineDevices, 0);
  assert.deepEqual({ ev, presence: p.map((e) => e.connectionId === first ? 'first link' : e.connectionId) }, { ev: ['online', 'offline'], presence: [] });
  await gw.close();
});

test('a stale link\'s take (a wake-up routed by an old presence read) between the live link\'s write and its ACK: the message is re-sent, acknowledged and reported delivered, not expired', async () => {
  const clock = new ManualClock(1000);
  const store = new MemoryStore();
  const A = gateway(clock, store, { nodeId: 'A' });
  const B = gateway(clock, store, { nodeId: 'B' });
  const ev: string[] = [];
  B.on('delivered', (e) => ev.push(`delivered ${e.id}`));
  B.on('expired', (e) => ev.push(`expired ${e.id}`));
  A.on('expired', (e) => ev.push(`expired ${e.id}`));
  let target = A;
  const d = dialer(() => target);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  d.links[0].deaf = true; d.links[0].peer.deaf = true; d.links[0].destroy = () => {}; d.links[0].close = () => {};
  target = B;
  c.close();
  const { c: c2, got } = client(clock, d.dial);
  await Promise.all([c2.connect(), settle(clock)]);
  void B.push('u', 'm', { id: 'm', waitMs: 0, ttlMs: 60_000 });
  await flush(); await flush();
  // A wake-up for the device reaches A (a push elsewhere read presence before B's entry landed): A's stale link takes.
  (A as unknown as { delivery: { wake(u: string, d: string): void } }).delivery.wake('u', 'd');
  await settle(clock, 500); // the client acks m to B
  assert.deepEqual(got, ['m']);
  clock.advance(61_000);
  await B.sweepExpired();
  assert.deepEqual(ev, ['delivered m'], `events: ${ev}; depth now ${await store.depth('u', 'd')}`);
  c2.close(); await A.close(); await B.close();
});

test('same node: an older HELLO whose authentication answers after a newer one\'s gives way to it; the newer, live link stays open', async () => {
  const clock = new ManualClock(1000);
  let calls = 0;
  const authenticate = (h: { userId: string; deviceId: string }) => {
    const id = { userId: h.userId, deviceId: h.deviceId };
    return ++calls === 1 ? new Promise<typeof id>((r) => setTimeout(() => r(id), 50)) : Promise.resolve(id);
  };
  const gw = gateway(clock, new MemoryStore(), { authenticate } as never);
  const protocolErrors: unknown[] = [];
  gw.on('protocol-error', (e) => protocolErrors.push(e));
  const [sa, la] = memoryLinkPair();
  gw.accept(sa);
  la.send({ type: 1, version: 1, userId: 'u', deviceId: 'd' } as never); // HELLO (older; its network then breaks, unseen)
  const [sb, lb] = memoryLinkPair();
  gw.accept(sb);
  lb.send({ type: 1, version: 1, userId: 'u', deviceId: 'd' } as never); // the device's HELLO on its new path
  await flush();
  await new Promise((r) => setTimeout(r, 80));
  await flush();
  const types = (l: MemoryLink) => l.received.map((f) => (f as { type: number; code?: number }).type + (('code' in f) ? `:${(f as { code: number }).code}` : ''));
  assert.deepEqual(types(lb), ['2'], 'the newer link got WELCOME and nothing else');
  assert.equal(lb.closedWith, null);
  assert.deepEqual(types(la), ['8:4506'], 'the older one is closed as replaced');
  assert.deepEqual(protocolErrors, [], 'a race, not bad input');
  assert.equal(gw.onlineDevices, 1);
  await gw.close();
});

test('the old node closing its dead link after the device resumed elsewhere leaves the live session record alone: a later resume succeeds', async () => {
  const clock = new ManualClock(1000);
  const store = new MemoryStore();
  const A = gateway(clock, store, { nodeId: 'A', heartbeat: { ...POLICY, missBudget: 6 } });
  const B = gateway(clock, store, { nodeId: 'B' });
  let target = A;
  const d = dialer(() => target);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  // The path to A dies silently; the client notices first and resumes on B.
  d.links[0].deaf = true; d.links[0].peer.deaf = true; d.links[0].destroy = () => {}; d.links[0].close = () => {};
  target = B;
  for (let i = 0; i < 40 && d.links.length < 2; i++) await settle(clock, 200);
  await settle(clock, 200);
  const w = (l: MemoryLink) => l.received.find((f) => f.type === 2) as { resumed: boolean } | undefined;
  assert.equal(w(d.links[1])?.resumed, true, 'resumed on B');
  for (let i = 0; i < 30; i++) await settle(clock, 500); // A's detector closes the dead link meanwhile
  assert.equal(A.onlineDevices, 0, "A's detector closed the dead link");
  const tok = (d.links[1].received.find((f) => f.type === 2) as { resumeToken: string }).resumeToken;
  assert.equal(store.loadSession(tok, clock.now())?.openOn, 'B', 'the record still says B holds it open');
  for (let i = 0; i < 130; i++) await settle(clock, 1000); // 130 s more on B, heartbeating
  // Now the path to B dies silently too (or B crashes); the client resumes on C before B notices.
  const C = gateway(clock, store, { nodeId: 'C' });
  d.links[1].deaf = true; d.links[1].peer.deaf = true; d.links[1].destroy = () => {}; d.links[1].close = () => {};
  target = C;
  for (let i = 0; i < 40 && d.links.length < 3; i++) await settle(clock, 200);
  await settle(clock, 200);
  assert.equal(w(d.links[2])?.resumed, true, 'the live session should still be resumable');
  c.close(); await A.close(); await B.close();
});

test('an acknowledgement whose removal fails once (a store blip) is retried: the message is removed and reported delivered, not expired', async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const ev: string[] = [];
  gw.on('delivered', (e) => ev.push(`delivered ${e.id}`));
  gw.on('expired', (e) => ev.push(`expired ${e.id}`));
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  g.fail('ack');
  void gw.push('u', 'm', { id: 'm', waitMs: 0, ttlMs: 60_000 });
  await settle(clock, 300);
  g.fail('ack', false);
  for (let i = 0; i < 20; i++) await settle(clock, 1000);
  assert.deepEqual(got, ['m']);
  clock.advance(61_000);
  await gw.sweepExpired();
  assert.deepEqual(ev, ['delivered m'], `events: ${ev}`);
  c.close(); await gw.close();
});

test('a take-back after a failed presence write is retried until the store is back, not replaced by a plain removal when the link closes: the live link elsewhere is put back', async () => {
  const clock = new ManualClock(1000);
  const inner = new MemoryStore();
  let down = false;
  let failedOnce = false;
  const calls: string[] = [];
  let displaced: PresenceEntry | undefined;
  // A store with takeBackOnline (as Redis has): setOnline lands, its answer is lost.
  const store = new Proxy(inner, { get(t, p, r) {
    if (p === 'takeBackOnline') return async (u: string, d: string, id: string) => {
      calls.push(`takeBack ${id}`);
      if (down) throw new Error('down');
      const cur = (await inner.devices(u)).find((e) => e.deviceId === d);
      if (!cur || cur.connectionId !== id) return undefined;
      if (displaced) { inner.setOnline(displaced); return displaced; }
      await inner.setOffline(u, d, id);
      return undefined;
    };
    if (p === 'setOnline') return (e: PresenceEntry) => {
      const before = (inner as any).devicesByUser.get(e.userId, e.deviceId);
      if (before?.online) displaced = before.presence();
      inner.setOnline(e);
      if (e.nodeId === 'n1' && !failedOnce) { failedOnce = true; down = true; return Promise.reject(new Error('answer lost')); }
      return undefined;
    };
    if (p === 'setOffline') return (...a: [string, string, string, PresenceEntry?]) => { calls.push(`setOffline ${a[2]}`); return down ? Promise.reject(new Error('down')) : inner.setOffline(...a); };
    const v = Reflect.get(t, p, r); return typeof v === 'function' ? v.bind(t) : v;
  } }) as Store;
  const gw2 = gateway(clock, store, { nodeId: 'n2' });
  const gw1 = gateway(clock, store, { nodeId: 'n1' });
  // The device's live link on n2.
  const da = dialer(() => gw2);
  const a = client(clock, da.dial);
  await Promise.all([a.c.connect(), settle(clock)]);
  // A stale HELLO of the same device lands on n1; its setOnline overwrote n2's entry and failed.
  const db = dialer(() => gw1);
  const b = client(clock, db.dial);
  b.c.on('close', () => b.c.close());
  void b.c.connect().catch(() => {});
  await settle(clock, 50);
  down = false;
  await settle(clock, 3000);
  b.c.close();
  await settle(clock, 3000);
  const now = await inner.devices('u');
  assert.equal(a.c.state, 'open');
  assert.deepEqual(now.map((e) => e.nodeId), ['n2'], `presence after recovery: ${JSON.stringify(now.map((e) => e.nodeId))}; calls: ${calls.join(', ')}`);
  a.c.close();
  await gw1.close(); await gw2.close();
});

test('upstream: a backend call that never answers for a dead link delays the device\'s re-send on its next link by at most the bounded wait, not for good', async () => {
  const clock = new ManualClock(1000);
  let n = 0;
  const sink = { name: 'hung-once', send: () => (++n === 1 ? new Promise<void>(() => {}) : Promise.resolve()) };
  const gw = gateway(clock, new MemoryStore(), { upstream: { sink } });
  const got: string[] = [];
  gw.on('message', (m) => got.push(String(m.id)));
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  const links = d.links;
  await Promise.all([c.connect(), settle(clock)]);
  c.send('one', { id: 'm1' });
  await settle(clock, 20);
  links[0].destroy();
  await settle(clock, 500); // resumed; m1 re-sent on the new link
  c.send('two', { id: 'm2' });
  await settle(clock, 6_000, 60);
  assert.equal(c.state, 'open');
  assert.deepEqual(got, ['m1', 'm2'], `handed over after 6 s: ${JSON.stringify(got)}; backend calls ${n}`);
  c.close();
  await gw.close();
});

/**
 * A MemoryStore shared by gateways in one process, with what a shared store adds: setOnline
 * answers with the entry it displaced (later, for a node whose answers are held), and nodes
 * hear each other's control notices.
 */
class SharedMemoryStore extends MemoryStore {
  private readonly handlers = new Map<string, (c: ClusterControl) => void>();
  /** setOnline answers of these nodes wait until released (the write itself is done at once). */
  readonly held = new Map<string, (() => void)[]>();
  override setOnline(entry: PresenceEntry): PresenceEntry | undefined | Promise<PresenceEntry | undefined> {
    const before = (this as unknown as { devicesByUser: { get(u: string, d: string): { online: boolean; presence(): PresenceEntry } | undefined } }).devicesByUser.get(entry.userId, entry.deviceId);
    const displaced = before?.online ? before.presence() : undefined;
    super.setOnline(entry);
    const waiting = this.held.get(entry.nodeId);
    return waiting ? new Promise((r) => waiting.push(() => r(displaced))) : displaced;
  }
  release(nodeId: string): void {
    for (const answer of this.held.get(nodeId) ?? []) answer();
    this.held.delete(nodeId);
  }
  async joinCluster(nodeId: string, _onRoute: unknown, _onResync: unknown, onControl?: (c: ClusterControl) => void): Promise<void> {
    if (onControl) this.handlers.set(nodeId, onControl);
  }
  async control(nodeId: string, c: ClusterControl): Promise<void> {
    this.handlers.get(nodeId)?.(c);
  }
  async route(): Promise<void> {}
}

test('a handshake replaced on another node while its presence write was out, and closed meanwhile, still tells the third node whose link that write displaced', async () => {
  const clock = new ManualClock(1000);
  const store = new SharedMemoryStore();
  const [n1, n2, n3] = ['N1', 'N2', 'N3'].map((nodeId) => gateway(clock, store, { nodeId }));
  for (const gw of [n1, n2, n3]) await gw.listen();
  const offline: string[] = [];
  const replaced: string[] = [];
  for (const gw of [n1, n2, n3]) {
    gw.on('offline', (e) => offline.push(e.connectionId));
    gw.on('replaced', (e) => replaced.push(e.connectionId));
  }
  const hello = { type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' } as const;
  const open = (gw: Gateway) => {
    const [s, l] = memoryLinkPair();
    gw.accept(s);
    l.send(hello);
    return l;
  };
  // The device's old link, on N3 (it died unnoticed there).
  open(n3);
  await flush();
  const l3 = (await n3.presence('u'))[0].connectionId;
  // A newer link on N1: its write lands (displacing N3's), its answer is held.
  store.held.set('N1', []);
  const l1 = open(n1);
  await flush();
  // The newest, on N2: it displaces N1's entry and tells N1, whose handshake is still out.
  open(n2);
  await flush();
  // N1's link closes meanwhile (the client gave up on it), then its write's answer comes.
  l1.destroy();
  await flush();
  store.release('N1');
  await settle(clock, 100);
  assert.deepEqual((await n2.presence('u')).map((e) => e.nodeId), ['N2']);
  assert.ok(replaced.includes(l3), `N3's link was told it was replaced (replaced: ${replaced})`);
  assert.equal(n3.onlineDevices, 0);
  assert.ok(!offline.includes(l3), 'and it went without an offline event: the device is online on N2');
  for (const gw of [n1, n2, n3]) await gw.close();
});

test('a client closed right after a message arrives (its ack still owed) acknowledges it first: the next run of the app does not get it again', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore());
  const d = dialer(() => gw);
  const first = client(clock, d.dial);
  // The app handles the message and shuts down (a CLI run, a logout): within ackDelayMs of it.
  first.c.on('message', () => first.c.close());
  await Promise.all([first.c.connect(), settle(clock)]);
  await gw.push('u', 'once', { waitMs: 0 });
  await settle(clock, 200);
  assert.deepEqual(first.got, ['once']);
  assert.equal(await gw.queueDepth('u', 'd'), 0, 'acknowledged before the CLOSE: nothing left queued');
  // The app starts again (a new client, no session): nothing is delivered a second time.
  const second = client(clock, d.dial);
  await Promise.all([second.c.connect(), settle(clock)]);
  await settle(clock, 200);
  assert.deepEqual(second.got, [], `handed to the app again: ${second.got}`);
  second.c.close();
  await gw.close();
});

test('a gateway closing a link (a restart) acknowledges the client messages it took in first: the restarted gateway is not handed them again', async () => {
  const clock = new ManualClock(1000);
  let gw = gateway(clock, new MemoryStore());
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  const before: string[] = [];
  gw.on('message', (m) => before.push(`${m.id}`));
  c.send('hello', { id: 'm1' });
  await flush(); // taken in and handed over; its acknowledgement waits ackDelayMs
  assert.deepEqual(before, ['m1']);
  await gw.close(); // a restart: the memory store, and its record of m1, go with the process
  gw = gateway(clock, new MemoryStore());
  const after: string[] = [];
  gw.on('message', (m) => after.push(`${m.id}`));
  await settle(clock, 500);
  assert.equal(c.state, 'open');
  assert.deepEqual(after, [], `the restarted gateway's app got it again: ${after}`);
  assert.equal(c.pendingCount, 0);
  c.close();
  await gw.close();
});

test('drain: a client message still with the backend when the drain begins is taken in and acknowledged before the link closes (the restarted gateway does not get it again)', async () => {
  const clock = new ManualClock(1000);
  const sent: string[] = [];
  let release!: () => void;
  const slow = { name: 'slow', send: (m: UpstreamMessage) => { sent.push(`A:${m.id}`); return new Promise<void>((r) => (release = r)); } };
  const old = gateway(clock, new MemoryStore(), { upstream: { sink: slow } });
  // The replacement process (a memory store of its own) takes the port as soon as the drain begins.
  const next = gateway(clock, new MemoryStore(), { upstream: { sink: { name: 'fast', send: async (m: UpstreamMessage) => void sent.push(`B:${m.id}`) } } });
  let gw = old;
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  c.send('hello', { id: 'm1' });
  await flush();
  assert.deepEqual(sent, ['A:m1']);
  const drained = old.drain({ windowMs: 100, ackTimeoutMs: 5000 });
  gw = next;
  await flush();
  release(); // the backend has it
  await settle(clock, 100);
  const report = await drained;
  for (let i = 0; i < 5 && c.state !== 'open'; i++) await settle(clock, 500);
  assert.equal(c.state, 'open');
  assert.deepEqual(sent, ['A:m1'], `the backend got it from both: ${sent}`);
  assert.deepEqual(report, { ...report, settled: 1, timedOut: 0 });
  c.close();
  await next.close();
});

test('resume over a link that answers in the same turn (in-process): the client\'s owed ack riding on its first re-sent DATA is not taken for an ack beyond what was sent', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore());
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  const closes: number[] = [];
  c.on('close', (e) => closes.push(e.code));
  await Promise.all([c.connect(), settle(clock)]);
  void gw.push('u', 'one', { waitMs: 0 });
  await flush(); // handed over; the client's ack waits ackDelayMs
  d.links[0].destroy(); // the link breaks with the ack for 'one' owed
  c.send('mine', { id: 'c1' }); // kept in the outbox: it goes first on the next link, with the owed ack
  await settle(clock, 500);
  assert.equal(c.state, 'open', `closes: ${closes}`);
  assert.deepEqual(closes, [4005], 'the break only: no malformed-frame (4501) after it');
  assert.deepEqual(got, ['one']);
  assert.equal(c.pendingCount, 0);
  c.close();
  await gw.close();
});

test("a stale link's periodic session refresh does not take the session back from the node where the device resumed it", async () => {
  const clock = new ManualClock(1000);
  const store = new SharedMemoryStore();
  const [n1, n2] = ['N1', 'N2'].map((nodeId) => gateway(clock, store, { nodeId }));
  for (const gw of [n1, n2]) await gw.listen();
  const [s1, l1] = memoryLinkPair();
  n1.accept(s1);
  l1.send({ type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' });
  await flush();
  const token = (l1.received.find((f) => f.type === FrameType.WELCOME) as { resumeToken: string }).resumeToken;
  // N1 never hears that its link was replaced (the control lost): the link stays registered there.
  store.control = async () => {};
  const [s2, l2] = memoryLinkPair();
  n2.accept(s2);
  l2.send({ type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd', resumeToken: token, lastSeq: 0 });
  await flush();
  assert.equal((l2.received.find((f) => f.type === FrameType.WELCOME) as { resumed: boolean }).resumed, true);
  assert.equal(store.loadSession(token, clock.now())?.openOn, 'N2');
  // The stale link's refresh comes due (every 6 h of a link's life).
  const stale = (n1 as unknown as { registry: { get(u: string, d: string): unknown } }).registry.get('u', 'd');
  assert.ok(stale, 'the stale link is still registered on N1');
  (n1 as unknown as { refreshSession(c: unknown): void }).refreshSession(stale);
  await flush();
  assert.equal(store.loadSession(token, clock.now())?.openOn, 'N2', 'the session is still held where the device is');
  l1.destroy();
  l2.destroy();
  await flush();
  for (const gw of [n1, n2]) await gw.close();
});

// A push acknowledged by the drain's last ACK: with a store that answers the removal later (Redis),
// the drain closed first and the push resolved `queued` while `delivered` was emitted after.
for (const holdAck of [false, true]) {
  test(`drain: a push the device acknowledges during the drain resolves delivered (store ack ${holdAck ? 'slow' : 'immediate'})`, async () => {
    const clock = new ManualClock(1000);
    const g = gated(new MemoryStore());
    const gw = gateway(clock, g.store, { delivery: { pushWaitMs: 10_000 } });
    const delivered: string[] = [];
    gw.on('delivered', (e) => delivered.push(e.id));
    const d = dialer(() => gw);
    const { c, got } = client(clock, d.dial);
    await Promise.all([c.connect(), settle(clock)]);
    const p = gw.push('u', 'x', { id: 'x' });
    await flush();
    assert.deepEqual(got, ['x']);
    if (holdAck) g.hold('ack');
    const drained = gw.drain({ windowMs: 100, ackTimeoutMs: 5000 });
    await settle(clock, 200);
    if (holdAck) g.release('ack');
    await settle(clock, 200);
    await drained;
    const r = await p;
    assert.deepEqual(delivered, ['x']);
    assert.deepEqual(r.devices, [{ deviceId: 'd', status: 'delivered' }], `acknowledged before the drain ended, reported ${JSON.stringify(r.devices)}`);
    c.close();
  });
}

// A push is tracked before its mailbox writes: the device's link closing while the write was out
// settled it `queued`, and the write's failure that came after (a store error, a full store) was
// ignored as a second outcome. The push said queued for a message no mailbox held.
test('a push whose mailbox write fails after the device\'s link closed meanwhile reports failed, not queued', async () => {
  const clock = new ManualClock(1000);
  let gate: { promise: Promise<void>; fail: () => void } | null = null;
  class SlowStore extends MemoryStore {
    override async enqueue(...args: Parameters<MemoryStore['enqueue']>) {
      if (gate) await gate.promise;
      return super.enqueue(...args);
    }
  }
  const gw = gateway(clock, new SlowStore(), { delivery: { pushWaitMs: 10_000 } });
  const faults: string[] = [];
  gw.on('fault', (f) => faults.push(String(f.op)));
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  let fail!: (e: Error) => void;
  const promise = new Promise<void>((_, reject) => (fail = reject));
  promise.catch(() => {});
  gate = { promise, fail: () => fail(new Error('enqueue: Reached the max retries per request limit')) };
  const p = gw.push('u', 'm', { id: 'm' });
  await flush();
  c.close(); // the device goes while the write is out
  await settle(clock, 50);
  gate.fail();
  await settle(clock, 50);
  const r = await p;
  assert.deepEqual(faults, ['enqueue']);
  assert.deepEqual(r.devices, [{ deviceId: 'd', status: 'failed' }], `the store refused the message, the push said ${JSON.stringify(r.devices)}`);
  await gw.close();
});

// The same with the push's waitMs (0 from the server API) running out while the write was out: the
// push resolved with the device `queued` before the store had answered, and a refusal came too late.
test('a push whose waitMs runs out while its mailbox write is out waits for the write: a failure reports failed, not queued', async () => {
  const clock = new ManualClock(1000);
  let fail: ((e: Error) => void) | null = null;
  class SlowStore extends MemoryStore {
    override async enqueue(...args: Parameters<MemoryStore['enqueue']>) {
      if (args[2].id === 'm') await new Promise<void>((_, reject) => (fail = reject));
      return super.enqueue(...args);
    }
  }
  const gw = gateway(clock, new SlowStore());
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  let result: unknown = null;
  const p = gw.push('u', 'm', { id: 'm', waitMs: 0 }).then((r) => (result = r.devices));
  await settle(clock, 50);
  assert.equal(result, null, `resolved before the store answered the write: ${JSON.stringify(result)}`);
  fail!(new Error('enqueue: Reached the max retries per request limit'));
  await p;
  assert.deepEqual(result, [{ deviceId: 'd', status: 'failed' }]);
  c.close();
  await gw.close();
});

test('a gateway closing (a restart, a drain) while a handshake\'s presence write is out still takes that entry back: the newer live link it displaced on another node is put back, no ghost stays', async () => {
  const clock = new ManualClock(1000);
  const store = new SharedMemoryStore();
  const g = gated(store);
  const n1 = gateway(clock, g.store, { nodeId: 'N1' });
  const n2 = gateway(clock, store, { nodeId: 'N2' });
  await n1.listen();
  await n2.listen();
  const hello = { type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' } as const;
  const open = (gw: Gateway) => {
    const [s, l] = memoryLinkPair();
    gw.accept(s);
    l.send(hello);
    return l;
  };
  // A HELLO on N1 whose presence write is slow (the store is loaded)...
  g.hold('setOnline');
  open(n1);
  await flush();
  assert.equal(g.waiting('setOnline'), 1);
  // ...so its client gave up on it and went to N2, two seconds later: the device's live link.
  clock.advance(2000);
  const l2 = open(n2);
  await flush();
  const live = (await store.devices('u')).map((e) => `${e.nodeId} ${e.connectionId}`);
  assert.equal(live.length, 1);
  // N1 shuts down while its write is out; the write then lands over N2's entry and answers.
  const closing = n1.close();
  g.release('setOnline');
  await settle(clock, 100);
  await closing;
  const now = (await store.devices('u')).map((e) => `${e.nodeId} ${e.connectionId}`);
  assert.deepEqual(now, live, `presence after N1 closed: ${JSON.stringify(now)} (the live link on N2 is ${JSON.stringify(live)})`);
  assert.equal(n2.onlineDevices, 1);
  assert.ok(!l2.closed, 'the live link on N2 stays open');
  await n2.close();
});

// The gateway closing (close, or the end of a drain) resolved every pending push at once, each
// device not settled counted `queued`, those whose mailbox write was still out included: a write
// that then failed (the store unreachable, the reason a restart was made) left a push that said
// queued for a message no mailbox held.
test('a push whose mailbox write is out when the gateway closes waits for the write: a failure reports failed, not queued', async () => {
  const clock = new ManualClock(1000);
  let fail: ((e: Error) => void) | null = null;
  class SlowStore extends MemoryStore {
    override async enqueue(...args: Parameters<MemoryStore['enqueue']>) {
      if (args[2].id === 'm') await new Promise<void>((_, reject) => (fail = reject));
      return super.enqueue(...args);
    }
  }
  const gw = gateway(clock, new SlowStore(), { delivery: { pushWaitMs: 10_000 } });
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  let result: unknown = null;
  const p = gw.push('u', 'm', { id: 'm' }).then((r) => (result = r.devices));
  await settle(clock, 50);
  await gw.close();
  await flush();
  assert.equal(result, null, `resolved before the store answered the write: ${JSON.stringify(result)}`);
  fail!(new Error('enqueue: Reached the max retries per request limit'));
  await p;
  assert.deepEqual(result, [{ deviceId: 'd', status: 'failed' }]);
  c.close();
});

// A closed link whose last acknowledgement's removal was still out reported its device's pending
// pushes `queued` once that removal answered: every push then waiting on the device, also those
// made after the close to the device's new link on this node, which resolved `queued` at once
// instead of waiting (waitMs) for that link's acknowledgement.
test('a push to the device\'s new link is not resolved queued by the close of its old link whose ACK removal answered late', async () => {
  const clock = new ManualClock(1000);
  let answer: (() => void) | null = null;
  let acks = 0;
  class SlowAckStore extends MemoryStore {
    override async ack(...args: Parameters<MemoryStore['ack']>) {
      const r = await super.ack(...args);
      if (acks++ === 0) await new Promise<void>((resolve) => (answer = resolve));
      return r;
    }
  }
  const gw = gateway(clock, new SlowAckStore(), { delivery: { pushWaitMs: 10_000 } });
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  const first = gw.push('u', 'm1', { id: 'm1' });
  await settle(clock, 200); // delivered, acknowledged; the removal's answer is out
  assert.deepEqual(got, ['m1']);
  assert.notEqual(answer, null);
  d.links[0].destroy();
  await settle(clock, 200); // the client is back on a new link of this gateway
  assert.equal(d.links.length, 2);
  assert.equal(gw.onlineDevices, 1);
  d.links[1].deaf = true; // what the gateway writes now is not acknowledged for a while
  let result: unknown = null;
  void gw.push('u', 'm2', { id: 'm2' }).then((r) => (result = r.devices));
  await settle(clock, 20);
  answer!();
  await settle(clock, 20);
  assert.equal(result, null, `m2 waits on the new link, resolved: ${JSON.stringify(result)}`);
  assert.deepEqual((await first).devices, [{ deviceId: 'd', status: 'delivered' }]);
  c.close();
  await gw.close();
});

// A push is tracked by user and id: the sweep's report of an older copy of the id (its time up,
// removed by a sweep that ran just before the retry's write) settled the retry `expired`, though
// the retry's write, finding the id gone, had queued a new copy that waits in the mailbox.
test('a retried push whose first copy the sweep removes just before the retry is written reports queued, not expired (its copy waits)', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore(), { delivery: { sweepIntervalMs: 1_000_000 } });
  const d = dialer(() => gw);
  const { c } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  c.close();
  await settle(clock, 50);
  const expired: string[] = [];
  gw.on('expired', (e) => expired.push(e.id));
  const first = await gw.push('u', 'x', { id: 'x', ttlMs: 1000, waitMs: 0 });
  assert.deepEqual(first.devices, [{ deviceId: 'd', status: 'queued' }]);
  clock.advance(2000); // its time is up; the sweep has not run
  const retry = gw.push('u', 'x', { id: 'x', ttlMs: 60_000, waitMs: 0 });
  await gw.sweepExpired();
  const r = await retry;
  assert.deepEqual(expired, ['x'], 'the first copy expired');
  assert.deepEqual(await gw.options.store.depth('u', 'd'), 1, 'the retry\'s copy waits in the mailbox');
  assert.deepEqual(r.devices, [{ deviceId: 'd', status: 'queued' }], `its copy waits, the retry said ${JSON.stringify(r.devices)}`);
  await gw.close();
});

// Expiry was the sweep's alone (every sweepIntervalMs; on Redis a shard's turn comes every
// mailboxShards / sweepShardsPerCall sweeps, 8 s): a device that came back in between was sent
// messages whose time-to-live had ended, and they were reported delivered, while the docs say a
// message stays in the mailbox until acknowledged or its ttlMs passes.
test('a message whose ttl has passed is not sent to a device that connects before the sweep: reported expired, the later one delivered', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore(), { delivery: { sweepIntervalMs: 1_000_000 } });
  const delivered: string[] = [];
  const expired: string[] = [];
  gw.on('delivered', (e) => delivered.push(e.id));
  gw.on('expired', (e) => expired.push(e.id));
  const d = dialer(() => gw);
  const first = client(clock, d.dial);
  await Promise.all([first.c.connect(), settle(clock)]);
  first.c.close();
  await settle(clock, 50);
  await gw.push('u', 'a', { id: 'a', ttlMs: 1000, waitMs: 0 });
  await gw.push('u', 'b', { id: 'b', ttlMs: 60_000, waitMs: 0 });
  clock.advance(1500); // a's time is up; the sweep has not run
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  await settle(clock, 200);
  assert.deepEqual(got, ['b'], 'a, past its ttl, is not sent');
  assert.deepEqual(delivered, ['b']);
  assert.deepEqual(expired, ['a']);
  assert.equal(await gw.options.store.depth('u', 'd'), 0);
  c.close();
  await gw.close();
});

// A link that was handed a message past its ttl (not written: noted by its seq as expired unsent),
// whose mailbox the sweep then emptied: the next push made a new mailbox, numbered from the link's
// last written seq again, so the new message got the expired one's seq, and its acknowledgement
// reported it expired (its push resolved expired) although the device had it and acknowledged it.
test('a message past its ttl taken but not written, then swept: the next one, which the device acknowledges, is reported delivered, not expired', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore(), { delivery: { sweepIntervalMs: 1_000_000 } });
  const delivered: string[] = [];
  const expired: string[] = [];
  gw.on('delivered', (e) => delivered.push(e.id));
  gw.on('expired', (e) => expired.push(e.id));
  const [server, c] = memoryLinkPair();
  gw.accept(server);
  c.send({ type: FrameType.HELLO, version: 1, userId: 'u', deviceId: 'd' });
  await flush();
  const seqs = () => c.received.filter((f) => f.type === FrameType.DATA).map((f) => `${(f as { id: string }).id}:${(f as { seq: number }).seq}`);
  void gw.push('u', 'm0', { id: 'm0', waitMs: 0 });
  await flush();
  c.send({ type: FrameType.ACK, ack: 1 });
  await flush();
  assert.deepEqual(delivered, ['m0']);
  // The socket backs up (a slow link): a, with a short ttl, waits behind it past its time.
  let backedUp = true;
  Object.defineProperty(server, 'bufferedBytes', { get: () => (backedUp ? 1 << 30 : 0) });
  const drain = server.awaitDrain.bind(server);
  server.awaitDrain = () => {};
  void gw.push('u', 'a', { id: 'a', ttlMs: 100, waitMs: 0 });
  await flush();
  clock.advance(200);
  backedUp = false;
  drain(); // the link drains: a is taken, past its time, and not written
  await flush();
  assert.deepEqual(seqs(), ['m0:1']);
  assert.equal(await gw.sweepExpired(), 1); // the sweep removes a: the mailbox is empty
  assert.deepEqual(expired, ['a']);
  const b = gw.push('u', 'b', { id: 'b', waitMs: 5000 });
  await flush();
  const [, sb] = seqs()[1].split(':');
  c.send({ type: FrameType.ACK, ack: Number(sb) });
  await flush();
  assert.deepEqual(expired, ['a'], 'b reported expired');
  assert.deepEqual(delivered, ['m0', 'b']);
  assert.deepEqual((await b).devices, [{ deviceId: 'd', status: 'delivered' }]);
  assert.equal(await gw.options.store.depth('u', 'd'), 0);
  await gw.close();
});

// A mailbox does not queue an id it still holds; one whose time-to-live had ended but that the sweep
// had not removed yet still counted as held: a retry with a fresh ttl was not queued, answered
// queued, and the sweep then removed the only copy. The docs: once that copy expired, a retry is
// queued again.
test('a retried push whose first copy\'s ttl has ended (not yet swept) is queued again: the device gets it', async () => {
  const clock = new ManualClock(1000);
  const gw = gateway(clock, new MemoryStore(), { delivery: { sweepIntervalMs: 1_000_000 } });
  const expired: string[] = [];
  gw.on('expired', (e) => expired.push(e.id));
  const d = dialer(() => gw);
  const first = client(clock, d.dial);
  await Promise.all([first.c.connect(), settle(clock)]);
  first.c.close();
  await settle(clock, 50);
  await gw.push('u', 'x1', { id: 'x', ttlMs: 1000, waitMs: 0 });
  clock.advance(1500); // its time is up; the sweep has not run
  const r = await gw.push('u', 'x2', { id: 'x', ttlMs: 60_000, waitMs: 0 });
  assert.deepEqual(r.devices, [{ deviceId: 'd', status: 'queued' }]);
  await gw.sweepExpired();
  assert.equal(await gw.options.store.depth('u', 'd'), 1, 'the retry waits in the mailbox');
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  await settle(clock, 200);
  assert.deepEqual(got, ['x2']);
  assert.deepEqual(expired, ['x']);
  c.close();
  await gw.close();
});

test("resume: a push while the HELLO's lastSeq is being removed waits for it; the message the old link delivered is not re-sent, the new one comes once", async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const delivered: string[] = [];
  gw.on('delivered', (e) => delivered.push(`${e.id}@${e.seq}`));
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  d.links[0].peer.deaf = true; // the client's ACK of m1 is lost with the link
  void gw.push('u', 'one', { id: 'm1' });
  await settle(clock, 20);
  assert.deepEqual(got, ['one']);
  g.hold('ackResumed');
  d.links[0].destroy();
  await settle(clock, 100);
  assert.equal(g.waiting('ackResumed'), 1, 'the resumed link removes what lastSeq acknowledges');
  void gw.push('u', 'two', { id: 'm2' });
  await settle(clock, 20);
  g.release('ackResumed');
  await settle(clock, 200);
  assert.deepEqual(got, ['one', 'two']);
  const ids = d.links.at(-1)!.received.filter((f) => f.type === FrameType.DATA).map((f) => (f as { id?: string }).id);
  assert.deepEqual(ids, ['m2'], 'm1 is not written again on the resumed link');
  assert.deepEqual(delivered, ['m1@1', 'm2@2']);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  c.close();
  await gw.close();
});

test("resume: a store that fails the removal of what the HELLO's lastSeq acknowledges closes the link (retryable); nothing is lost", async () => {
  const clock = new ManualClock(1000);
  const g = gated(new MemoryStore());
  const gw = gateway(clock, g.store);
  const faults: string[] = [];
  gw.on('fault', (e) => faults.push(e.op));
  const d = dialer(() => gw);
  const { c, got } = client(clock, d.dial);
  await Promise.all([c.connect(), settle(clock)]);
  d.links[0].peer.deaf = true;
  void gw.push('u', 'one', { id: 'm1' });
  await settle(clock, 20);
  g.fail('ackResumed');
  d.links[0].destroy();
  await settle(clock, 100);
  assert.ok(faults.includes('ackResumed'), `faults: ${faults}`);
  g.fail('ackResumed', false);
  await settle(clock, 500);
  await settle(clock, 500);
  assert.equal(c.state, 'open');
  assert.deepEqual(got, ['one']);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  c.close();
  await gw.close();
});
