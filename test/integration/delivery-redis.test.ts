import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { LonglinkClient } from '../../src/client/client.js';
import { dial } from '../../src/client/connect.js';
import { Gateway, NODE_CLOCK_SKEW_MS, type OfflineEvent, type OnlineEvent, type ReplacedEvent } from '../../src/gateway/gateway.js';
import { CutLink } from '../helpers/cut-link.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { FrameType, type WelcomeFrame } from '../../src/protocol/frames.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { sleep } from '../helpers/procs.js';
import { memoryLinkPair } from '../helpers/memory-link.js';
import { PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { redisUnavailable, startRedis, type TestRedis } from '../helpers/redis.js';

// Issue 19's findings that need a shared store, on a real Redis of the test's
// own: routing by presence across nodes, a Redis that loses its data, a node
// that crashes with an old session open, a lease that lapses, a node
// restarted under the same id, and wake-ups across a re-subscription.

const noRedis = redisUnavailable();
let redis: TestRedis | null = null;
let prefixN = 0;
before(async () => {
  if (!noRedis) redis = await startRedis();
});
after(async () => redis?.stop());

const POLICY = { intervalMs: 500, minIntervalMs: 100, maxIntervalMs: 10_000, missBudget: 3, graceMs: 500 };
const LEASE = { leaseTtlMs: 600, leaseRenewMs: 150 };

async function node(prefix: string, nodeId: string, extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  const store = new RedisStore({ url: redis!.url, prefix, ...LEASE });
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId, store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 }, ...extra });
  const a = await gw.listen();
  return { gw, store, url: `tcp://127.0.0.1:${a.tcp!.port}` };
}

/** Stops nodes: gateways first (their links close through the store), then the stores. */
async function stop(...nodes: { gw: Gateway; store: RedisStore }[]): Promise<void> {
  for (const n of nodes) await n.gw.close();
  for (const n of nodes) await n.store.close();
}

async function eventually(what: string, pred: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('delivery on a shared Redis store', { skip: noRedis ? `skipped: ${noRedis}` : false }, () => {
  test('1. a push through a node holding a stale half-open link is routed to the node of the live one, and delivered', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const got: string[] = [];
    // The device first on A, then on B; A keeps its link (to A it looks alive: a stale link it has not found out about).
    const first = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 500 });
    await first.connect();
    const live = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 500 });
    live.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    await live.connect();
    await eventually('B in presence', async () => (await A.gw.presence('u')).some((e) => e.nodeId === 'B'));
    const r1 = await B.gw.push('u', 'p1', { waitMs: 2000 });
    const r2 = await A.gw.push('u', 'p2', { waitMs: 2000 });
    const r3 = await B.gw.push('u', 'p3', { waitMs: 2000 });
    await eventually('all three', () => got.length >= 3);
    await sleep(300);
    assert.deepEqual(got, ['p1', 'p2', 'p3']);
    assert.equal(r1.devices[0].status, 'delivered');
    assert.equal(r2.devices[0].status, 'delivered', 'A routed it to B (not into its stale link), and B reported the acknowledgement to A');
    assert.equal(r3.devices[0].status, 'delivered');
    await eventually('the mailbox empties', async () => (await B.gw.queueDepth('u', 'd')) === 0);
    first.close();
    live.close();
    await stop(A, B);
  });

  test('1b. a device that moves to another node while its old link there is half-open: the old node closes that link as replaced at once, and never reports the device offline', async () => {
    const prefix = `d${++prefixN}:`;
    // A finds a silent link dead only after 500 ms × 6 + 1 s: slower than the move, as with real intervals.
    const slow = { intervalMs: 500, minIntervalMs: 100, maxIntervalMs: 10_000, missBudget: 6, graceMs: 1000 };
    const A = await node(prefix, 'A', { heartbeat: slow });
    const B = await node(prefix, 'B', { heartbeat: slow });
    const offline: OfflineEvent[] = [];
    const replaced: ReplacedEvent[] = [];
    const online: OnlineEvent[] = [];
    A.gw.on('offline', (e) => offline.push(e));
    A.gw.on('replaced', (e) => replaced.push(e));
    B.gw.on('online', (e) => online.push(e));
    const links: CutLink[] = [];
    const c = new LonglinkClient({
      url: [A.url, B.url],
      userId: 'u',
      deviceId: 'd',
      intervalMs: 300,
      adaptive: false,
      probes: { pongTimeoutMs: 150, probeCount: 0, probeIntervalMs: 100 },
      reconnect: { initialDelayMs: 50, minDelayMs: 50, maxDelayMs: 100 },
      dial: async (u, o) => {
        const l = new CutLink(await dial(u, o));
        links.push(l);
        return l;
      },
    });
    try {
      await c.connect();
      await eventually('A in presence', async () => (await B.gw.presence('u')).some((e) => e.nodeId === 'A'));
      const old = A.gw.connection('u', 'd')!;
      const got: string[] = [];
      c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
      links[0].cut = true; // the path drops everything both ways; A still holds its end
      // A push A writes into the dead link: it waits for an acknowledgement that will come through B.
      const pushed = A.gw.push('u', 'x', { waitMs: 20_000 });
      await eventually('the device on B', () => online.length === 1, 5000);
      await eventually('A closes its link as replaced', () => replaced.length === 1, 2000);
      const settled = await Promise.race([pushed, sleep(1000).then(() => null)]);
      assert.ok(settled, "the push's wait ends with the move, not at waitMs");
      assert.equal(settled.devices[0].status, 'queued');
      await eventually('the push delivered through B', () => got.includes('x'), 5000);
      const [r] = replaced;
      assert.equal(r.connectionId, old.connectionId);
      assert.equal(r.byConnectionId, online[0].connectionId, 'the link on B took over');
      assert.equal(r.resumed, true, 'the device resumed its session on B');
      assert.equal(A.gw.connectionCount, 0);
      // Past the time A's own detector would have declared the old link dead.
      await sleep(4500);
      assert.deepEqual(offline, [], 'A never reports the device offline');
      assert.deepEqual((await A.gw.presence('u')).map((e) => e.nodeId), ['B']);
    } finally {
      c.close();
      for (const l of links) l.release();
      await stop(A, B);
    }
  });

  /** Holds the answers of a store's setOnline (the write is done; the reply waits) until released. */
  function holdSetOnline(store: RedisStore) {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let written = 0;
    const real = store.setOnline.bind(store);
    store.setOnline = async (e) => {
      const r = await real(e);
      written++;
      await gate;
      return r;
    };
    return { release, written: () => written };
  }

  test('1c. the move is told while the old link is still in its handshake: that link gives way when its presence write answers, and never announces online', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const events: string[] = [];
    for (const [n, g] of [['A', A.gw], ['B', B.gw]] as const) {
      g.on('online', (e) => events.push(`${n} online ${e.connectionId}`));
      g.on('offline', (e) => events.push(`${n} offline ${e.connectionId}`));
      g.on('replaced', (e) => events.push(`${n} replaced ${e.connectionId} by ${e.byConnectionId}`));
    }
    const held = holdSetOnline(A.store);
    const first = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const second = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    try {
      const opening = first.connect().then(() => 'open', (err: Error) => err.message);
      await eventually("A's presence write done, its answer held", () => held.written() === 1);
      await second.connect();
      await eventually('B online', () => events.some((e) => e.startsWith('B online')));
      await sleep(200); // the notice reaches A while its link is in the handshake
      held.release();
      assert.notEqual(await opening, 'open', 'the first link never opens');
      await eventually('A replaced', () => events.some((e) => e.startsWith('A replaced')));
      const bId = events.find((e) => e.startsWith('B online'))!.split(' ')[2];
      assert.ok(events.some((e) => e.startsWith('A replaced') && e.endsWith(`by ${bId}`)), events.join('; '));
      await sleep(300);
      assert.deepEqual(events.filter((e) => e.startsWith('A online') || e.includes('offline')), [], events.join('; '));
      assert.deepEqual((await A.gw.presence('u')).map((e) => e.connectionId), [bId]);
    } finally {
      held.release();
      first.close();
      second.close();
      await stop(A, B);
    }
  });

  test('1d. a handshake whose link closes while its presence write is out puts back the link it displaced, and tells no one', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const replaced: ReplacedEvent[] = [];
    A.gw.on('replaced', (e) => replaced.push(e));
    const live = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const late = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await live.connect();
      const liveId = A.gw.connection('u', 'd')!.connectionId;
      const held = holdSetOnline(B.store);
      const opening = late.connect().catch(() => {});
      // B's write replaced A's entry; then the link on B goes (a client that gave up on a stalled handshake).
      await eventually("B's presence write done, its answer held", () => held.written() === 1);
      late.close();
      await sleep(200);
      held.release();
      await opening;
      await eventually('the live link on A is in presence again', async () => (await B.gw.presence('u')).map((e) => e.connectionId).join() === liveId).catch(async (err: Error) => {
        throw new Error(`${err.message}: presence ${JSON.stringify(await B.gw.presence('u'))}, live ${liveId}, B holds ${B.gw.connectionCount}, late ${late.state}`);
      });
      await sleep(300);
      assert.deepEqual(replaced, [], 'A was not told to close its link');
      assert.equal(live.state, 'open');
      assert.equal(A.gw.connection('u', 'd')?.connectionId, liveId);
    } finally {
      live.close();
      late.close();
      await stop(A, B);
    }
  });

  test('1f. a handshake on the same node whose link closes while its presence write is out does not put back the link it replaced there', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const first = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const second = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await first.connect();
      const held = holdSetOnline(A.store);
      const opening = second.connect().catch(() => {});
      await eventually("the second link's presence write done, its answer held", () => held.written() === 1);
      second.close(); // the first link is closed already: the second took over on HELLO
      await sleep(200);
      held.release();
      await opening;
      await eventually('no link left in presence', async () => (await A.gw.presence('u')).length === 0, 3000);
      assert.equal(A.gw.connectionCount, 0);
    } finally {
      first.close();
      second.close();
      await stop(A);
    }
  });

  test("1f2. two handshakes of a device on one node, the first displacing its link on another node and replaced by the second while its presence write is out: that node is told, and closes its link as replaced (no late `offline` there)", async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const events: string[] = [];
    for (const [n, g] of [['A', A.gw], ['B', B.gw]] as const) {
      g.on('online', (e) => events.push(`${n} online ${e.connectionId}`));
      g.on('offline', (e) => events.push(`${n} offline ${e.connectionId}`));
      g.on('replaced', (e) => events.push(`${n} replaced ${e.connectionId} by ${e.byConnectionId}`));
    }
    // The device's old link on A (its path died unseen: A would find it dead only later).
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    // Its client moved to B, gave up on a slow handshake there and tried B again.
    const first = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const second = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await old.connect();
      const oldId = A.gw.connection('u', 'd')!.connectionId;
      const held = holdSetOnline(B.store);
      const opening = first.connect().catch(() => {});
      await eventually("the first link's presence write done (it displaced A's), its answer held", () => held.written() === 1);
      const secondOpen = second.connect();
      await eventually("the second link's presence write done (it displaced the first's)", () => held.written() === 2);
      held.release();
      await opening;
      await secondOpen;
      const secondId = B.gw.connection('u', 'd')!.connectionId;
      await eventually('A closes its old link as replaced', () => events.includes(`A replaced ${oldId} by ${secondId}`), 3000).catch((err: Error) => {
        throw new Error(`${err.message}: ${events.join('; ')}; A holds ${A.gw.connectionCount}`);
      });
      old.close();
      await sleep(300);
      assert.deepEqual(events.filter((e) => e.startsWith('A ') && !e.startsWith('A replaced')).slice(1), [], events.join('; '));
      assert.ok(!events.some((e) => e.includes('offline')), events.join('; '));
      assert.deepEqual((await A.gw.presence('u')).map((e) => e.connectionId), [secondId]);
    } finally {
      old.close();
      first.close();
      second.close();
      await stop(A, B);
    }
  });

  test("1f3. a link that took over `online` from the link it replaced on its node and closes while its presence write is out: a listener of its `offline` that reads presence at once no longer finds the device", async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const first = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const second = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const seen: Promise<string[]>[] = [];
    A.gw.on('offline', () => seen.push(A.gw.presence('u').then((p) => p.map((e) => e.connectionId))));
    try {
      await first.connect();
      const held = holdSetOnline(A.store);
      const opening = second.connect().catch(() => {});
      await eventually("the second link's presence write done, its answer held", () => held.written() === 1);
      second.close();
      await eventually('offline emitted', () => seen.length === 1, 3000);
      const read = await seen[0];
      held.release();
      await opening;
      assert.deepEqual(read, [], 'presence read by the offline listener');
      await eventually('no link left in presence', async () => (await A.gw.presence('u')).length === 0, 3000);
    } finally {
      first.close();
      second.close();
      await stop(A);
    }
  });

  test("1f4. the same as 1f2 when the first handshake's presence write is done but its answer lost: that node is told all the same", async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const replaced: ReplacedEvent[] = [];
    A.gw.on('replaced', (e) => replaced.push(e));
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const first = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const second = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await old.connect();
      const oldId = A.gw.connection('u', 'd')!.connectionId;
      // The first write is done (it displaces A's entry), its answer lost once the second's is in.
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let written = 0;
      const real = B.store.setOnline.bind(B.store);
      B.store.setOnline = async (e, max) => {
        const r = await real(e, max);
        if (++written > 1) return r;
        await gate;
        throw new Error('reply lost');
      };
      const opening = first.connect().catch(() => {});
      await eventually("the first link's presence write done", () => written === 1);
      await second.connect();
      const secondId = B.gw.connection('u', 'd')!.connectionId;
      release();
      await opening;
      await eventually('A closes its old link as replaced', () => replaced.length === 1, 3000).catch(async (err: Error) => {
        throw new Error(`${err.message}: A holds ${A.gw.connectionCount}, presence ${JSON.stringify(await A.gw.presence('u'))}`);
      });
      assert.equal(replaced[0].connectionId, oldId);
      assert.equal(replaced[0].byConnectionId, secondId);
      assert.deepEqual((await A.gw.presence('u')).map((e) => e.connectionId), [secondId]);
    } finally {
      old.close();
      first.close();
      second.close();
      await stop(A, B);
    }
  });

  test('1g. a presence write the store did but whose answer was lost: the failed handshake takes it back', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const real = A.store.setOnline.bind(A.store);
    A.store.setOnline = async (e) => {
      await real(e);
      throw new Error('reply lost');
    };
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await assert.rejects(c.connect());
      await eventually('no entry left', async () => (await A.gw.presence('u')).length === 0, 3000);
    } finally {
      c.close();
      await stop(A);
    }
  });

  test('1i. a presence write whose answer was lost, on a node the device moved to: taking it back puts back the other node\'s open link it displaced', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const replaced: ReplacedEvent[] = [];
    A.gw.on('replaced', (e) => replaced.push(e));
    const real = B.store.setOnline.bind(B.store);
    B.store.setOnline = async (e) => {
      await real(e);
      throw new Error('reply lost');
    };
    const live = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const failing = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await live.connect();
      const liveId = A.gw.connection('u', 'd')!.connectionId;
      await assert.rejects(failing.connect());
      await eventually("A's open link in presence again", async () => (await B.gw.presence('u')).map((e) => e.connectionId).join() === liveId, 3000).catch(async (err: Error) => {
        throw new Error(`${err.message}: presence ${JSON.stringify(await B.gw.presence('u'))}, live ${liveId}`);
      });
      await sleep(300);
      assert.deepEqual(replaced, [], 'A was not told to close its link');
      assert.equal(live.state, 'open');
      // The displaced entry kept for the take-back is gone with it.
      const r = new Redis(redis!.url);
      try {
        assert.equal(await r.hlen(`${prefix}{u:u}:displaced`), 0);
      } finally {
        r.disconnect();
      }
    } finally {
      live.close();
      failing.close();
      await stop(A, B);
    }
  });

  test('1j. a handshake whose link closed while its authenticator was slow writes nothing: the session the device resumed on another node meanwhile stays held there, and is saved closed when that link ends', async () => {
    const prefix = `d${++prefixN}:`;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let asked = 0;
    const A = await node(prefix, 'A', {
      authenticate: async (h) => {
        asked++;
        await gate; // a connect hook whose backend is slow
        return { userId: h.userId, deviceId: h.deviceId };
      },
    });
    const B = await node(prefix, 'B', { sessionTtlMs: 60_000 });
    const peers: RawPeer[] = [];
    const peer = async (port: number) => {
      const p = new RawPeer(port);
      peers.push(p);
      await p.connected;
      return p;
    };
    const portOf = (n: { url: string }) => Number(new URL(n.url).port);
    try {
      // The device's session, from an earlier link on B.
      const first = await peer(portOf(B));
      first.hello('u', 'd', { intervalMs: 300 });
      const w1 = (await first.welcome()) as WelcomeFrame;
      first.socket.destroy();
      await eventually('the first link gone from B', () => B.gw.connectionCount === 0);
      // It tries A, whose hook hangs; it gives up on A and resumes on B.
      const stalled = await peer(portOf(A));
      stalled.hello('u', 'd', { intervalMs: 300, resumeToken: w1.resumeToken });
      await eventually("A's hook asked", () => asked === 1);
      stalled.socket.destroy();
      await eventually('A saw the link close', () => A.gw.connectionCount === 0);
      const live = await peer(portOf(B));
      live.hello('u', 'd', { intervalMs: 300, resumeToken: w1.resumeToken });
      const w2 = (await live.welcome()) as WelcomeFrame;
      assert.equal(w2.resumed, true);
      // The hook answers at last, for a link long gone.
      release();
      await sleep(300);
      assert.equal((await B.store.loadSession(w1.resumeToken, Date.now()))?.openOn, 'B', 'the session is held open on B, where its link is');
      assert.deepEqual((await B.gw.presence('u')).map((e) => e.nodeId), ['B']);
      live.socket.destroy();
      await eventually('the live link gone from B', () => B.gw.connectionCount === 0);
      await eventually('B saves the session closed', async () => (await B.store.loadSession(w1.resumeToken, Date.now()))?.openOn === undefined, 2000);
    } finally {
      release();
      for (const p of peers) p.socket.destroy();
      await stop(A, B);
    }
  });

  test('1k. a handshake slower than the device\'s move (its client gave up on it and went to another node; its path died, so no close came) gives way when it finishes: it does not close the newer link as replaced', async () => {
    const prefix = `d${++prefixN}:`;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let asked = 0;
    const A = await node(prefix, 'A', {
      authenticate: async (h) => {
        asked++;
        await gate;
        return { userId: h.userId, deviceId: h.deviceId };
      },
    });
    const B = await node(prefix, 'B');
    const events: string[] = [];
    for (const [n, g] of [['A', A.gw], ['B', B.gw]] as const) {
      g.on('online', (e) => events.push(`${n} online ${e.connectionId}`));
      g.on('offline', (e) => events.push(`${n} offline ${e.connectionId}`));
      g.on('replaced', (e) => events.push(`${n} replaced ${e.connectionId}`));
    }
    const stalled = new RawPeer(Number(new URL(A.url).port));
    const live = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    try {
      await stalled.connected;
      stalled.hello('u', 'd', { intervalMs: 300 });
      await eventually("A's hook asked", () => asked === 1);
      // The client gives up on A (after its handshake timeout, 10 s by default): later than two nodes' clocks may differ.
      await sleep(NODE_CLOCK_SKEW_MS + 100);
      await live.connect();
      const liveId = B.gw.connection('u', 'd')!.connectionId;
      release(); // A's handshake goes on, for a link whose client is long gone to B
      await eventually('A done with its link', () => A.gw.connectionCount === 0, 3000).catch(() => {});
      await sleep(400);
      assert.equal(live.state, 'open', `the live link stays open (${events.join('; ')})`);
      assert.equal(B.gw.connection('u', 'd')?.connectionId, liveId);
      assert.deepEqual((await A.gw.presence('u')).map((e) => e.connectionId), [liveId]);
      assert.equal(A.gw.connectionCount, 0, 'the stale link is closed');
      assert.deepEqual(events.filter((e) => e.startsWith('A ') || e.includes('offline') || e.includes('replaced')), [], events.join('; '));
    } finally {
      release();
      stalled.socket.destroy();
      live.close();
      await stop(A, B);
    }
  });

  test('1l. the same with a resumed session: the stale handshake does not leave the session marked held open on its node (the newer link could never save it closed)', async () => {
    const prefix = `d${++prefixN}:`;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let asked = 0;
    const A = await node(prefix, 'A', {
      authenticate: async (h) => {
        asked++;
        await gate;
        return { userId: h.userId, deviceId: h.deviceId };
      },
    });
    const B = await node(prefix, 'B', { sessionTtlMs: 60_000 });
    const peers: RawPeer[] = [];
    const peer = async (port: number) => {
      const p = new RawPeer(port);
      peers.push(p);
      await p.connected;
      return p;
    };
    const portOf = (n: { url: string }) => Number(new URL(n.url).port);
    const openOn = async (token: string) => (await B.store.loadSession(token, Date.now()))?.openOn;
    try {
      const first = await peer(portOf(B));
      first.hello('u', 'd', { intervalMs: 300 });
      const { resumeToken } = (await first.welcome()) as WelcomeFrame;
      first.socket.destroy();
      await eventually('the first link gone from B', () => B.gw.connectionCount === 0);
      const stalled = await peer(portOf(A)); // its path dies after HELLO: A never hears it close
      stalled.hello('u', 'd', { intervalMs: 300, resumeToken });
      await eventually("A's hook asked", () => asked === 1);
      // The client gives up on A (after its handshake timeout, 10 s by default): later than two nodes' clocks may differ.
      await sleep(NODE_CLOCK_SKEW_MS + 100);
      const live = await peer(portOf(B));
      live.hello('u', 'd', { intervalMs: 300, resumeToken });
      assert.equal(((await live.welcome()) as WelcomeFrame).resumed, true);
      release();
      await eventually('A done with its link', () => A.gw.connectionCount === 0, 3000);
      await sleep(200);
      assert.notEqual(await openOn(resumeToken), 'A', 'not held open on A, which gave its link up');
      live.socket.destroy();
      await eventually('B saves the session closed', async () => (await openOn(resumeToken)) === undefined, 2000);
    } finally {
      release();
      for (const p of peers) p.socket.destroy();
      await stop(A, B);
    }
  });

  test('1m. node clocks a little apart (A\'s 800 ms ahead, under the skew allowed): a device whose link on A died unseen and that came back on B at once keeps its link on B; the stale one on A is closed as replaced', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A', { wallClock: { now: () => Date.now() + 800 } });
    const B = await node(prefix, 'B');
    const portOf = (n: { url: string }) => Number(new URL(n.url).port);
    const stale = new RawPeer(portOf(A));
    const live = new RawPeer(portOf(B));
    try {
      await stale.connected;
      stale.hello('u', 'd', { intervalMs: 300 });
      await stale.welcome();
      // Its path dies without a word reaching A; the client is on B within milliseconds (by A's clock, before A accepted it).
      await live.connected;
      live.hello('u', 'd', { intervalMs: 300 });
      const first = await live.next((f) => f.type === FrameType.WELCOME || f.type === FrameType.CLOSE);
      assert.equal(first.type, FrameType.WELCOME, `the live link is not closed as replaced (close code ${live.closeCode})`);
      await eventually('A closes its stale link as replaced', () => stale.closeCode === CloseCodes.replaced, 3000);
      assert.deepEqual((await B.gw.presence('u')).map((e) => e.nodeId), ['B']);
    } finally {
      stale.destroy();
      live.destroy();
      await stop(A, B);
    }
  });

  test('1h. a device found only in presence (no known-device record) is in the push result, however short its wait', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const admin = new Redis(redis!.url);
    try {
      await A.store.rememberDevice('u', 'd1', Date.now() + 60_000);
      // d2 online on B, its known-device record gone (a store that lost part of its data).
      await B.store.setOnline({ userId: 'u', deviceId: 'd2', connectionId: 'c2', nodeId: 'B', transport: 'tcp', since: Date.now(), clientInfo: {} });
      await admin.hdel(`${prefix}{u:u}:known`, 'd2');
      const r = await A.gw.push('u', 'x', { waitMs: 0 });
      assert.deepEqual(r.devices.map((d) => d.deviceId).sort(), ['d1', 'd2']);
      assert.equal(await A.gw.queueDepth('u', 'd2'), 1, 'queued for d2 too');
    } finally {
      admin.disconnect();
      await stop(A, B);
    }
  });

  test('1e. a push that races the device\'s move to another node is not stranded: presence is read after the mailbox is written', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const first = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const second = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const got: string[] = [];
    second.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    // A's mailbox write waits until the device has moved (and B's first flush found nothing).
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const enqueue = A.store.enqueue.bind(A.store);
    A.store.enqueue = async (...args) => {
      await gate;
      return enqueue(...args);
    };
    try {
      await first.connect();
      const pushed = A.gw.push('u', 'x', { waitMs: 3000 });
      await sleep(100);
      first.close();
      await second.connect();
      await eventually('presence on B', async () => (await B.gw.presence('u')).some((e) => e.nodeId === 'B'));
      release();
      await pushed;
      await eventually('the push reaches the device on B', () => got.includes('x'), 3000);
    } finally {
      release();
      first.close();
      second.close();
      await stop(A, B);
    }
  });

  test('1o. a wake-up whose publish fails (a Redis blip after the mailbox write) is published again: the push reaches the device on the other node without waiting for another push', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const c = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const got: string[] = [];
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    const faults: string[] = [];
    A.gw.on('fault', (f) => faults.push(f.op));
    const route = A.store.route.bind(A.store);
    let failed = 0;
    A.store.route = async (...args) => {
      if (failed++ === 0) throw new Error('Command timed out');
      return route(...args);
    };
    try {
      await c.connect();
      await eventually('presence on B', async () => (await A.gw.presence('u')).some((e) => e.nodeId === 'B'));
      const r = await A.gw.push('u', 'x', { waitMs: 0 });
      assert.equal(r.devices[0].status, 'queued');
      assert.ok(faults.includes('route'), 'the failed publish is reported');
      // Nothing else flushes the device on B: no other push, no reconnect.
      await eventually('the push reaches the device on B', () => got.includes('x'), 4000);
    } finally {
      c.close();
      await stop(A, B);
    }
  });

  test('1p. a push whose presence read fails (a Redis blip after the mailbox write) still wakes the node holding the device: it is read again until the store answers', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const c = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const got: string[] = [];
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    const faults: string[] = [];
    A.gw.on('fault', (f) => faults.push(f.op));
    try {
      await c.connect();
      await eventually('presence on B', async () => (await A.gw.presence('u')).some((e) => e.nodeId === 'B'));
      const devices = A.store.devices.bind(A.store);
      let failed = 0;
      A.store.devices = async (...args) => {
        if (failed++ === 0) throw new Error('Command timed out');
        return devices(...args);
      };
      const r = await A.gw.push('u', 'x', { waitMs: 0 });
      assert.equal(r.devices[0].status, 'queued');
      assert.ok(faults.includes('devices'), 'the failed read is reported');
      // Nothing else flushes the device on B: no other push, no reconnect.
      await eventually('the push reaches the device on B', () => got.includes('x'), 4000);
    } finally {
      c.close();
      await stop(A, B);
    }
  });

  test('2. Redis loses its data under an open link: what is pushed afterwards is delivered, nothing acknowledged away', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const got: string[] = [];
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    await c.connect();
    for (let i = 0; i < 5; i++) await A.gw.push('u', `a${i}`, { waitMs: 2000 });
    const admin = new Redis(redis!.url);
    await admin.flushall();
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await A.gw.push('u', `b${i}`, { waitMs: 2000 }));
    await sleep(800); // heartbeats carry the client's cumulative acknowledgement
    assert.deepEqual(got, ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
    assert.deepEqual(results.map((r) => r.devices[0].status), Array(5).fill('delivered'));
    // The node notices the reset at its next lease renewal and writes its presence again.
    await eventually('presence re-asserted', async () => (await A.gw.presence('u')).length === 1);
    admin.disconnect();
    c.close();
    await A.gw.close();
    await A.store.close();
  });

  test('2b. Redis loses its data while a device is offline: its known-device record goes too, so a push answers unknown-user and queues nothing until it connects again (docs/PROTOCOL.md says so)', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    await c.connect();
    c.close();
    await eventually('offline', async () => (await A.gw.presence('u')).length === 0);
    assert.equal((await A.gw.push('u', 'kept', { waitMs: 0 })).devices[0]?.status, 'queued', 'known before the loss');
    const admin = new Redis(redis!.url);
    await admin.flushall();
    admin.disconnect();
    const r = await A.gw.push('u', 'lost', { waitMs: 0 });
    assert.equal(r.unknownUser, true, 'an offline device is unknown after the loss (unknown-user)');
    assert.deepEqual(r.devices, []);
    for (const doc of ['docs/PROTOCOL.md', 'docs/SCALING.md', 'docs/SERVER-API.md']) {
      const text = readFileSync(new URL(`../../../${doc}`, import.meta.url), 'utf8').replace(/\s+/g, ' ');
      assert.match(text, /known-device record[s]? of (the )?devices that were offline|offline devices' known-device records/, `${doc} says an empty restart forgets offline devices`);
    }
    await A.gw.close();
    await A.store.close();
  });

  test('2c. after Redis loses its data a node writes its links\' records again many at a time: 400 devices are found again, not one store round trip after another', async () => {
    let inFlight = 0;
    let most = 0;
    class CountingStore extends RedisStore {
      override async restoreOnline(entry: Parameters<RedisStore['restoreOnline']>[0]): Promise<boolean> {
        most = Math.max(most, ++inFlight);
        try {
          return await super.restoreOnline(entry);
        } finally {
          inFlight--;
        }
      }
    }
    const store = new CountingStore({ url: redis!.url, prefix: `d${++prefixN}:`, ...LEASE });
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: { ...POLICY, intervalMs: 60_000, maxIntervalMs: 120_000 }, nodeId: 'A', store, wheelTickMs: 10, limits: { maxConnectionsPerSource: 0, handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 } });
    await gw.listen();
    const N = 400;
    const clients = Array.from({ length: N }, (_, i) => {
      const [server, client] = memoryLinkPair();
      gw.accept(server);
      client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
      return client;
    });
    await eventually('every link open', () => clients.every((c) => c.received.some((f) => f.type === FrameType.WELCOME)), 20_000);
    const admin = new Redis(redis!.url);
    await admin.flushall();
    const t0 = Date.now();
    await eventually('every device online again', async () => (await Promise.all(clients.map((_, i) => gw.presence(`u${i}`)))).every((p) => p.length === 1), 20_000);
    const ms = Date.now() - t0;
    admin.disconnect();
    assert.ok(most > 1, `presence written again for several links at once (at most ${most} at a time; ${N} devices in ${ms} ms)`);
    for (const c of clients) c.close(1000, 'bye');
    await gw.close();
    await store.close();
  });

  test('5. a node that crashes with a session older than sessionTtlMs open: the device resumes it on another node', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A', { sessionTtlMs: 1000 });
    const B = await node(prefix, 'B', { sessionTtlMs: 1000 });
    const c = new LonglinkClient({ url: [A.url, B.url], userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { initialDelayMs: 50, minDelayMs: 50 } });
    const online: boolean[] = [];
    B.gw.on('online', (e) => online.push(e.resumed));
    await c.connect();
    await sleep(1500); // older than sessionTtlMs
    // A dies without a word: its lease lapses; the client's link to it breaks.
    A.store.abandon();
    await A.gw.close();
    await eventually('resumed on B', () => online.length > 0, 8000);
    assert.deepEqual(online, [true], 'resumed, not session-lost');
    c.close();
    await B.gw.close();
    await B.store.close();
  });

  test('6. a lease that lapses once does not lose a live node\'s presence for good', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const got: string[] = [];
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    await c.connect();
    const admin = new Redis(redis!.url);
    await admin.del(`${prefix}{n}:node:A`); // the lease lapses (a stall, a failover)
    await eventually('A writes its presence again', async () => (await B.gw.presence('u')).length === 1, 3000);
    const r = await B.gw.push('u', 'after', { waitMs: 2000 });
    await eventually('delivered through A', () => got.includes('after'));
    assert.equal(r.devices[0].status, 'delivered', 'routed to A, which delivers it and reports the acknowledgement to B');
    admin.disconnect();
    c.close();
    await stop(A, B);
  });

  test('6b. a node whose lease lapsed does not take back a device whose entry a newer link on another node holds', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const admin = new Redis(redis!.url);
    // A holds the device's old link; the device's newer link is on B, and the `replaced` word to A
    // was lost (pub/sub is best effort): B's entry, written as B's handshake writes it.
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    try {
      await old.connect();
      await B.store.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'newer', nodeId: 'B', transport: 'tcp', since: Date.now(), clientInfo: {} });
      const restored: boolean[] = [];
      const restore = A.store.restoreOnline.bind(A.store);
      A.store.restoreOnline = async (e) => {
        const r = await restore(e);
        restored.push(r);
        return r;
      };
      await admin.del(`${prefix}{n}:node:A`); // A's lease lapses: A writes its presence again
      await eventually("A's re-assertion", () => restored.length > 0, 3000);
      assert.deepEqual(restored, [false], "A leaves the device's entry to B's newer link");
      assert.deepEqual((await B.gw.presence('u')).map((e) => e.connectionId), ['newer']);
    } finally {
      admin.disconnect();
      old.close();
      await stop(A, B);
    }
  });

  test('6c. a node whose lease lapsed while its device moved on (the `replaced` word lost with the lease) closes its old link as replaced: no late `offline` for a device online elsewhere', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const admin = new Redis(redis!.url);
    const offline: OfflineEvent[] = [];
    const replaced: ReplacedEvent[] = [];
    A.gw.on('offline', (e) => offline.push(e));
    A.gw.on('replaced', (e) => replaced.push(e));
    // A's old link: to A it looks alive (a path that died, or a node cut off from Redis and its
    // clients at once). The device's newer link is on B; B's `replaced` word was published while A
    // was gone and given up with A's lease, so A never hears it.
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await old.connect();
      const oldId = A.gw.connection('u', 'd')!.connectionId;
      await sleep(NODE_CLOCK_SKEW_MS + 100); // the device's newer link, accepted later than two nodes' clocks may differ
      await B.store.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'newer', nodeId: 'B', transport: 'tcp', since: Date.now(), clientInfo: {} });
      await admin.del(`${prefix}{n}:node:A`); // A's lease lapses: A writes its presence again, and finds the device gone on
      await eventually('A closes its old link', () => A.gw.connectionCount === 0, 3000);
      assert.deepEqual(offline, [], 'no offline: the device is online on B');
      assert.equal(replaced.length, 1);
      assert.equal(replaced[0].connectionId, oldId);
      assert.equal(replaced[0].byConnectionId, 'newer');
      assert.equal(replaced[0].resumed, false, "B's link did not resume the old link's session");
      assert.deepEqual((await B.gw.presence('u')).map((e) => e.connectionId), ['newer']);
    } finally {
      admin.disconnect();
      old.close();
      await stop(A, B);
    }
  });

  test('6c2. the same when the newer link\'s node has not renewed its lease yet either (an outage that lapsed every lease)', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const admin = new Redis(redis!.url);
    const replaced: ReplacedEvent[] = [];
    A.gw.on('replaced', (e) => replaced.push(e));
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await old.connect();
      await sleep(NODE_CLOCK_SKEW_MS + 100); // the device's newer link, accepted later than two nodes' clocks may differ
      await A.store.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'newer', nodeId: 'C', transport: 'tcp', since: Date.now(), clientInfo: {} });
      await admin.del(`${prefix}{n}:node:A`);
      await eventually('A closes its old link', () => A.gw.connectionCount === 0, 3000);
      assert.deepEqual(replaced.map((e) => e.byConnectionId), ['newer']);
    } finally {
      admin.disconnect();
      old.close();
      await stop(A);
    }
  });

  test('6d. the same after a store reset: a link whose device opened a newer link on another node (accepted later) gives way; one whose entry an older link holds does not', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const admin = new Redis(redis!.url);
    const replaced: ReplacedEvent[] = [];
    A.gw.on('replaced', (e) => replaced.push(e));
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const other = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'e', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await old.connect();
      await other.connect();
      const otherId = A.gw.connection('u', 'e')!.connectionId;
      // Device d's newer link (on B, accepted after A's); device e's entry an older link's (a stale
      // link on B restored first after the reset): that one A leaves alone.
      await sleep(NODE_CLOCK_SKEW_MS + 100); // the device's newer link, accepted later than two nodes' clocks may differ
      await B.store.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'newer', nodeId: 'B', transport: 'tcp', since: Date.now(), clientInfo: {} });
      await B.store.setOnline({ userId: 'u', deviceId: 'e', connectionId: 'older', nodeId: 'B', transport: 'tcp', since: 1, clientInfo: {} });
      await admin.del(`${prefix}{n}:epoch`); // what A sees of a Redis that lost its data
      await eventually("A closes d's old link", () => A.gw.connection('u', 'd') === undefined, 3000);
      await sleep(300);
      assert.deepEqual(replaced.map((e) => e.byConnectionId), ['newer']);
      assert.equal(A.gw.connection('u', 'e')?.connectionId, otherId, "e's link stays");
    } finally {
      admin.disconnect();
      old.close();
      other.close();
      await stop(A, B);
    }
  });

  test('6e. a `replaced` word that arrives after the node wrote its link\'s entry again (the newer link already gone) leaves no entry of the closed link behind', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A');
    const B = await node(prefix, 'B');
    const old = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      await old.connect();
      const oldId = A.gw.connection('u', 'd')!.connectionId;
      // What A's presence holds after: B's link displaced A's entry and told A (the word held up while
      // A's subscription came back), B's link closed (its entry removed), A's lease lapsed and A wrote
      // its link's entry again. Then the word comes.
      assert.deepEqual((await B.gw.presence('u')).map((e) => e.connectionId), [oldId]);
      await B.store.control('A', { kind: 'replaced', userId: 'u', deviceId: 'd', connectionId: oldId, byConnectionId: 'gone', resumed: false });
      await eventually('A closes the link', () => A.gw.connectionCount === 0, 2000);
      await eventually('no ghost of it in presence', async () => (await B.gw.presence('u')).length === 0, 2000);
    } finally {
      old.close();
      await stop(A, B);
    }
  });

  test('7. a node restarted under the same id does not keep its dead presence; default node ids are unique per start', async () => {
    const prefix = `d${++prefixN}:`;
    const A1 = new RedisStore({ url: redis!.url, prefix, ...LEASE });
    await A1.joinCluster('A', () => {});
    await A1.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'old', nodeId: 'A', transport: 'tcp', since: 1, clientInfo: {} });
    A1.abandon(); // SIGKILL
    const A2 = new RedisStore({ url: redis!.url, prefix, ...LEASE });
    await A2.joinCluster('A', () => {});
    assert.deepEqual(await A2.devices('u'), [], "the old incarnation's entry is not reported");
    await A2.close();
    const g1 = new Gateway({ tcp: false, ws: false });
    const g2 = new Gateway({ tcp: false, ws: false });
    assert.notEqual(g1.options.nodeId, g2.options.nodeId);
    await g1.close();
    await g2.close();
  });

  test('12. upstream: a re-send that reaches another node while the first node\'s backend still holds the message is handed over once', async () => {
    const prefix = `d${++prefixN}:`;
    const sent: string[] = [];
    let releaseA!: () => void;
    const heldA = new Promise<void>((r) => (releaseA = r));
    const A = await node(prefix, 'A', { upstream: { sink: { name: 'slow', send: async (m) => { sent.push(`A:${m.id}`); await heldA; } } } });
    const B = await node(prefix, 'B', { upstream: { sink: { name: 'fast', send: async (m) => void sent.push(`B:${m.id}`) } } });
    const handed: string[] = [];
    for (const n of [A, B]) n.gw.on('message', (m) => handed.push(`${m.id}`));
    const links: CutLink[] = [];
    const c = new LonglinkClient({
      url: [A.url, B.url],
      userId: 'u',
      deviceId: 'd',
      intervalMs: 300,
      adaptive: false,
      probes: { pongTimeoutMs: 150, probeCount: 0, probeIntervalMs: 100 },
      reconnect: { initialDelayMs: 50, minDelayMs: 50, maxDelayMs: 100 },
      dial: async (u, o) => {
        const l = new CutLink(await dial(u, o));
        links.push(l);
        return l;
      },
    });
    try {
      await c.connect();
      c.send('hello', { id: 'm1' });
      await eventually('A\'s backend has m1', () => sent.includes('A:m1'));
      links[0].cut = true; // the path dies; the client moves to B and re-sends m1 there
      await eventually('the client on B', () => B.gw.connectionCount === 1, 5000);
      await sleep(300);
      releaseA(); // A's backend answers at last
      await eventually('m1 acknowledged', () => c.pendingCount === 0, 8000);
      await sleep(200);
      assert.deepEqual(sent, ['A:m1'], `the backends got: ${sent}`);
      assert.deepEqual(handed, ['m1'], `handed over: ${handed}`);
    } finally {
      c.close();
      for (const l of links) l.release();
      await stop(A, B);
    }
  });

  test('13. upstream: a device message costs the store no more than before the cross-node claim (docs/SCALING.md): the claim is one request with the duplicate check, its end one with the record', async () => {
    const prefix = `d${++prefixN}:`;
    const A = await node(prefix, 'A', { upstream: { sink: { name: 'fast', send: async () => {} } } });
    // Its own connection closed too: left open, it kept reconnecting to the stopped server, and the run from exiting.
    const watcher = new Redis(redis!.url);
    const monitor = await watcher.monitor();
    // Requests that touch the device's inbound record or a message's claim, and nothing else of the node's (lease, sweep).
    const touched: string[] = [];
    monitor.on('monitor', (_t: string, args: string[], source: string) => {
      if (source === 'lua') return; // a command a script ran: part of that one request
      if (args.some((a) => a.startsWith(prefix) && (a.includes(':in:') || a.includes(':claim:')))) touched.push(args[0].toLowerCase());
    });
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 500 });
    const handed: string[] = [];
    A.gw.on('message', (m) => handed.push(`${m.id}`));
    try {
      await c.connect();
      const n = 10;
      for (let i = 0; i < n; i++) c.send(`m${i}`, { id: `m${i}` });
      await eventually('all acknowledged', () => c.pendingCount === 0);
      await eventually('the monitor caught up', () => touched.length >= 2 * n);
      await sleep(200);
      assert.equal(handed.length, n);
      assert.equal(touched.length, 2 * n, `two requests a message (a check with the claim, the record ending it), not: ${touched.join(' ')}`);
      // Still one at a time across nodes: a re-send of a message taken in is a duplicate.
      assert.equal(await A.store.seenInbound('u', 'd', 'm0', Date.now()), true);
    } finally {
      c.close();
      monitor.disconnect();
      watcher.disconnect();
      await stop(A);
    }
  });

  test('14. an acknowledgement whose answer was lost (its retry too), then a later one answered: every message it removed is still reported delivered, each once', async () => {
    /** Loses the answers of the next acknowledgements, after Redis ran them (a timeout, a cut). */
    class LosingStore extends RedisStore {
      lose = 0;
      override async ack(userId: string, deviceId: string, holder: string, upTo: number, answeredUpTo?: number) {
        const answer = await super.ack(userId, deviceId, holder, upTo, answeredUpTo);
        if (this.lose > 0) {
          this.lose--;
          throw new Error('Command timed out');
        }
        return answer;
      }
    }
    const store = new LosingStore({ url: redis!.url, prefix: `d${++prefixN}:`, ...LEASE });
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId: 'A', store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 } });
    await gw.listen();
    const delivered: string[] = [];
    gw.on('delivered', (e) => delivered.push(e.id));
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
    await eventually('welcome', () => client.received.some((f) => f.type === FrameType.WELCOME));
    const pushes = ['p1', 'p2', 'p3'].map((id) => gw.push('u', id, { id, waitMs: 3000 }));
    await eventually('three messages', () => client.received.filter((f) => f.type === FrameType.DATA).length === 3);
    // The acknowledgement of two and its retry at once both lose their answers; the acknowledgement
    // of three is answered before the next retry (a second away), which found only three's answer kept.
    store.lose = 2;
    client.send({ type: FrameType.ACK, ack: 2 });
    await sleep(100);
    client.send({ type: FrameType.ACK, ack: 3 });
    const results = await Promise.all(pushes);
    assert.deepEqual(results.map((r) => r.devices[0]?.status), ['delivered', 'delivered', 'delivered']);
    await sleep(1500); // the lost one's retry (1 s) answers again: nothing reported twice
    assert.deepEqual(delivered, ['p1', 'p2', 'p3']);
    assert.equal(await gw.queueDepth('u', 'd'), 0);
    client.close(1000, 'bye');
    await gw.close();
    await store.close();
  });

  // The mailbox scripts encode a message's seq with cjson, exact only below 10^14: a resume lastSeq
  // of 2^48 (taken) numbered the next messages 2.8147497671066e+14 each, the same seq; the gateway
  // wrote the first and skipped the rest as already sent, and the device's ACK of that seq removed
  // them all, reported delivered, never sent.
  test('15. a resume lastSeq the gateway takes numbers the next messages exactly on Redis: each sent once, in order', async () => {
    const A = await node(`d${++prefixN}:`, 'A');
    const port = Number(new URL(A.url).port);
    const first = new RawPeer(port);
    first.hello('big');
    const w = (await first.welcome()) as WelcomeFrame;
    first.destroy();
    await eventually('the first link gone', () => A.gw.onlineDevices === 0);
    for (const lastSeq of [2 ** 48, 2 ** 46]) {
      const peer = new RawPeer(port);
      peer.hello('big', 'd', { resumeToken: w.resumeToken, lastSeq });
      const answer = await peer.next((f) => f.type === FrameType.WELCOME || f.type === FrameType.CLOSE);
      if (answer.type === FrameType.CLOSE) {
        assert.equal(answer.code, CloseCodes['field-too-large'], `lastSeq ${lastSeq}`);
        assert.notEqual(lastSeq, 2 ** 46, 'a lastSeq far below 10^14 resumes');
        continue;
      }
      for (const m of ['a', 'b', 'c']) await A.gw.push('big', m, { id: `${lastSeq}${m}`, waitMs: 0 });
      const data = () => peer.frames.filter((f): f is Extract<typeof f, { type: typeof FrameType.DATA }> => f.type === FrameType.DATA);
      await eventually(`three messages after lastSeq ${lastSeq}`, () => data().length >= 3, 1500).catch(() => {});
      assert.deepEqual(data().map((f) => [f.seq, Buffer.from(f.payload).toString()]), [[lastSeq + 1, 'a'], [lastSeq + 2, 'b'], [lastSeq + 3, 'c']], `after lastSeq ${lastSeq}`);
      peer.send({ type: FrameType.ACK, ack: lastSeq + 3 });
      await eventually('acknowledged', async () => (await A.gw.queueDepth('big', 'd')) === 0);
      peer.destroy();
      await eventually('the link gone', () => A.gw.onlineDevices === 0);
    }
    await stop(A);
  });

  test('16. maxOnlineDevicesPerUser over two nodes: the bound is the cluster\'s, new devices racing on both nodes at the bound-1 get one place, and a device online reconnecting through the other node is admitted at the bound', async () => {
    const prefix = `d${++prefixN}:`;
    // Raw peers send no heartbeats: a long interval keeps them open through the test.
    const extra = { limits: { maxOnlineDevicesPerUser: 3 }, heartbeat: { ...POLICY, intervalMs: 10_000 } };
    const A = await node(prefix, 'A', extra);
    const B = await node(prefix, 'B', extra);
    const port = (n: { url: string }) => Number(new URL(n.url).port);
    const peers: RawPeer[] = [];
    const open = (n: { url: string }, userId: string, deviceId: string) => {
      const p = new RawPeer(port(n));
      peers.push(p);
      p.hello(userId, deviceId);
      return p;
    };
    try {
      const d1 = open(A, 'u', 'd1');
      const d2 = open(A, 'u', 'd2');
      await d1.welcome();
      await d2.welcome();
      const d3 = open(B, 'u', 'd3');
      await d3.welcome();
      // Two on A, one on B: a fourth device is refused on either node.
      for (const n of [A, B]) {
        const p = open(n, 'u', 'd4');
        await p.closed;
        assert.equal(p.closeCode, CloseCodes['too-many-devices'], `a fourth device of u on ${n === A ? 'A' : 'B'} is refused: the bound counts both nodes' devices`);
        assert.equal(p.goaway?.code, CloseCodes['too-many-devices']);
      }
      // d1 (online on A) reconnects through B at the bound: admitted, and A's link is replaced.
      const moved = open(B, 'u', 'd1');
      await moved.welcome();
      await d1.closed;
      assert.equal(d1.closeCode, CloseCodes.replaced);
      await open(A, 'v', 'd4').welcome();
      assert.deepEqual((await A.gw.presence('u')).map((e) => `${e.deviceId}@${e.nodeId}`).sort(), ['d1@B', 'd2@A', 'd3@B']);
      // d3 leaves: one place, and eight new devices ask for it at once, half on each node.
      d3.destroy();
      await eventually('d3 offline', async () => (await A.gw.presence('u')).length === 2);
      const racing = Array.from({ length: 8 }, (_, i) => open(i % 2 === 0 ? A : B, 'u', `n${i}`));
      const outcomes = await Promise.all(racing.map((p) => Promise.race([p.welcome(5000).then(() => 'welcomed'), p.closed.then(() => String(p.closeCode))])));
      assert.deepEqual(outcomes.filter((o) => o === 'welcomed').length, 1, `one of the racing devices gets the place (${outcomes.join(', ')})`);
      assert.equal(outcomes.filter((o) => o === String(CloseCodes['too-many-devices'])).length, 7);
      assert.equal((await B.gw.presence('u')).length, 3);
    } finally {
      for (const p of peers) p.destroy();
      await stop(A, B);
    }
  });

  test('11. a wake-up published after the subscriber reconnects is not lost', async () => {
    const prefix = `d${++prefixN}:`;
    const s = new RedisStore({ url: redis!.url, prefix, ...LEASE });
    const routed: string[] = [];
    const resyncs: string[] = [];
    await s.joinCluster('A', (u) => routed.push(u), (r) => resyncs.push(r));
    const admin = new Redis(redis!.url);
    await admin.client('KILL', 'TYPE', 'pubsub');
    await eventually('resync after re-subscribing', () => resyncs.includes('resubscribed'));
    const other = new RedisStore({ url: redis!.url, prefix });
    await other.route('A', 'after', 'd');
    await eventually('the wake-up arrives', () => routed.includes('after'));
    admin.disconnect();
    await other.close();
    await s.close();
  });
});

if (noRedis) test(`delivery on Redis skipped: ${noRedis}`, { skip: noRedis }, () => {});
