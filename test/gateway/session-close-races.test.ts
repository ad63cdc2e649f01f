import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { Store } from '../../src/gateway/stores/store.js';
import type { UpstreamEvent, UpstreamSink } from '../../src/gateway/upstream.js';
import { FrameType, PROTOCOL_VERSION, type HelloFrame, type WelcomeFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';
import { gated } from '../helpers/gated-store.js';

// When a session's record is saved closed (resumable for sessionTtlMs, counted among the ended
// sessions the store bounds), and the order the backend hears of a link's life.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };

function gateway(clock: ManualClock, store: Store, extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  return new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, store, handshakeTimeoutMs: 3000, ...extra });
}

/** A raw client end over an in-memory link: the test writes the frames. */
function peer(gw: Gateway): { client: MemoryLink; server: MemoryLink } {
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  return { client, server };
}
function hello(client: MemoryLink, extra: Partial<HelloFrame> = {}): void {
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', ...extra });
}
function welcome(client: MemoryLink): WelcomeFrame | undefined {
  return client.received.find((f): f is WelcomeFrame => f.type === FrameType.WELCOME);
}

/** A device's first link, open. */
async function opened(gw: Gateway) {
  const a = peer(gw);
  hello(a.client);
  await flush();
  return { a, token: welcome(a.client)!.resumeToken };
}
/** The device resumes `token` on a new link, whose save of the session held open the store answers only on release (Redis, later). */
async function resumeWhileSaveHeld(gw: Gateway, g: ReturnType<typeof gated>, token: string) {
  g.hold('saveSession');
  const b = peer(gw);
  hello(b.client, { resumeToken: token, lastSeq: 0 });
  await flush();
  assert.equal(g.waiting('saveSession'), 1, "the new link's save of the session (held open) is out");
  return b;
}

test('the old link of a session closing while its resume on a new link saves the record: the record stays held open (resumable while the new link lives)', async () => {
  const clock = new ManualClock(1_000_000);
  const mem = new MemoryStore();
  const g = gated(mem);
  const gw = gateway(clock, g.store, { sessionTtlMs: 1000, nodeId: 'n1' });
  const { a, token } = await opened(gw);
  // The device comes back on a new link resuming its session; the store answers its save later (Redis).
  const b = await resumeWhileSaveHeld(gw, g, token);
  // Meanwhile the gateway hears the old link end (its FIN arrives now, or its detector fires).
  a.client.destroy();
  await flush();
  g.release('saveSession');
  await flush();
  const wb = welcome(b.client);
  assert.equal(wb?.resumed, true, 'the new link resumed the session');
  assert.equal(gw.connectionCount, 1);
  const rec = mem.loadSession(token, clock.now());
  // Past sessionTtlMs, the link still alive (silence limit 2.5 s): the device moves to a new link and resumes.
  clock.advance(1200);
  await flush();
  assert.equal(gw.connectionCount, 1, 'link b is still open');
  const c = peer(gw);
  hello(c.client, { resumeToken: token, lastSeq: 0 });
  await flush();
  assert.equal(welcome(c.client)?.resumed, true, `the session is resumable while its link lives (its record after b opened: ${JSON.stringify(rec)})`);
  await gw.close();
});

test('an online listener that kicks the device: the upstream gets online before offline (numbered in that order)', async () => {
  const clock = new ManualClock(1_000_000);
  const events: UpstreamEvent[] = [];
  const sink: UpstreamSink = { name: 't', send: async () => {}, sendEvent: async (e) => void events.push(e) };
  const gw = gateway(clock, new MemoryStore(), { upstream: { sink, events: ['online', 'offline'] } });
  const app: string[] = [];
  gw.on('online', (e) => {
    app.push('online');
    gw.kick(e.userId, e.deviceId); // e.g. a banned user, refused on connect
  });
  gw.on('offline', () => app.push('offline'));
  const a = peer(gw);
  hello(a.client);
  await flush();
  assert.deepEqual(app, ['online', 'offline']);
  const bySeq = [...events].sort((x, y) => x.seq! - y.seq!).map((e) => e.type);
  assert.deepEqual(bySeq, ['online', 'offline'], 'the backend, ordering by seq, must end with the device offline');
  await gw.close();
});

test('a link replaced by a new session of its device: its own session is resumable for sessionTtlMs after, not for the 12 h of an open record', async () => {
  const clock = new ManualClock(1_000_000);
  const mem = new MemoryStore();
  const gw = gateway(clock, mem, { sessionTtlMs: 1000, nodeId: 'n1' });
  const a = peer(gw);
  hello(a.client);
  await flush();
  const old = welcome(a.client)!.resumeToken;
  // The app restarts without its token (a new session) while the gateway still holds the old link.
  const b = peer(gw);
  hello(b.client);
  await flush();
  assert.equal(welcome(b.client)?.resumed, false);
  assert.equal(a.client.closed, true, 'a was replaced');
  b.client.send({ type: FrameType.CLOSE, code: 1000 });
  await flush();
  clock.advance(60_000); // far past sessionTtlMs after both links ended
  await flush();
  const rec = mem.loadSession(old, clock.now());
  const c = peer(gw);
  hello(c.client, { resumeToken: old, lastSeq: 0 });
  await flush();
  assert.equal(welcome(c.client)?.resumed, false, `a session whose link ended 60 s ago (sessionTtlMs 1 s) was resumed; its record: ${JSON.stringify(rec)}`);
  await gw.close();
});

test('a connect-replace-close loop keeps no more records of ended links than maxDetachedSessionBytes allows', async () => {
  const clock = new ManualClock(1_000_000);
  const mem = new MemoryStore({ maxDetachedSessionBytes: 20_000 });
  const gw = gateway(clock, mem, { limits: { handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 } });
  const clientInfo = { pad: 'x'.repeat(1000) };
  for (let i = 0; i < 200; i++) {
    const deviceId = `d${i}`;
    const a = peer(gw);
    hello(a.client, { deviceId, clientInfo });
    const b = peer(gw);
    hello(b.client, { deviceId, clientInfo });
    b.client.send({ type: FrameType.CLOSE, code: 1000 });
    await flush();
  }
  assert.equal(gw.connectionCount, 0, 'no link is open');
  // Every record now is of a link that ended: ~1,850 bytes each by the store's own estimate.
  const held = mem.sessionCount;
  assert.ok(held * 1800 <= 2 * 20_000, `${held} session records of ended links held (≈${held * 1.8} KB) with maxDetachedSessionBytes 20 KB; counted as detached: ${mem.detachedSessionBytes} bytes`);
  await gw.close();
});

test('a handshake whose link closes while it saves its session held open saves it closed: resumable for sessionTtlMs, not for 12 h', async () => {
  const clock = new ManualClock(1_000_000);
  const mem = new MemoryStore();
  const g = gated(mem);
  const gw = gateway(clock, g.store, { sessionTtlMs: 1000, nodeId: 'n1' });
  const { a, token } = await opened(gw);
  a.client.send({ type: FrameType.CLOSE, code: 1000 });
  await flush();
  // The device resumes on a new link, which goes away while the store has its save.
  const b = await resumeWhileSaveHeld(gw, g, token);
  b.client.destroy();
  await flush();
  g.release('saveSession');
  await flush();
  assert.equal(welcome(b.client), undefined, 'b never opened');
  assert.equal(mem.loadSession(token, clock.now())?.openOn, undefined, 'the record is not left held open by a link that is gone');
  clock.advance(1200);
  await flush();
  const c = peer(gw);
  hello(c.client, { resumeToken: token, lastSeq: 0 });
  await flush();
  assert.equal(welcome(c.client)?.resumed, false, 'past sessionTtlMs after its last link ended, the session is gone');
  await gw.close();
});

test("a resume acknowledges in WELCOME what the session's live link took in while the handshake waited for the store", async () => {
  const clock = new ManualClock(1_000_000);
  const mem = new MemoryStore();
  const g = gated(mem);
  const gw = gateway(clock, g.store, { nodeId: 'n1' });
  const upstream: string[] = [];
  gw.on('message', (m) => upstream.push(m.id ?? Buffer.from(m.payload).toString()));
  const { a, token } = await opened(gw);
  const b = await resumeWhileSaveHeld(gw, g, token);
  // A message sent on the old link just before the client gave up on it arrives now, and is taken in there.
  a.client.send({ type: FrameType.DATA, seq: 1, payload: Buffer.from('late') });
  await flush();
  assert.deepEqual(upstream, ['late']);
  g.release('saveSession');
  await flush();
  const w = welcome(b.client);
  assert.equal(w?.resumed, true);
  assert.equal(w?.ack, 1, 'WELCOME acknowledges the message the old link took in');
  await gw.close();
});

test("a few users reconnecting without resuming, with made-up device ids, do not evict another user's resumable session (its resume still succeeds, its queued message comes once)", async () => {
  // Wall time now: the store sweeps expired records by Date.now().
  const clock = new ManualClock(Date.now());
  const mem = new MemoryStore(); // the defaults: 32 MiB of records of ended links
  const gw = gateway(clock, mem, { limits: { handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 } });
  // Alice's phone opens a session and goes away (resumable for sessionTtlMs); a message is queued for it.
  const a = peer(gw);
  hello(a.client, { userId: 'alice', deviceId: 'phone' });
  await flush();
  const token = welcome(a.client)!.resumeToken;
  a.client.destroy();
  await flush();
  assert.equal((await gw.push('alice', 'for alice', { waitMs: 0 })).devices[0]?.status, 'queued');
  // Five accounts, each with 1,024 made-up device ids, connect with a 1 KiB clientInfo and close, four times over.
  const clientInfo = { pad: 'x'.repeat(1000) };
  for (let round = 0; round < 4; round++) {
    for (let u = 0; u < 5; u++) {
      for (let d = 0; d < 1024; d++) {
        const m = peer(gw);
        hello(m.client, { userId: `mallory${u}`, deviceId: `d${d}`, clientInfo });
        m.client.destroy();
      }
      await flush();
    }
  }
  assert.equal(gw.connectionCount, 0);
  const b = peer(gw);
  hello(b.client, { userId: 'alice', deviceId: 'phone', resumeToken: token, lastSeq: 0 });
  await flush();
  assert.equal(welcome(b.client)?.resumed, true, `alice's session was evicted by other users' churn (${mem.sessionCount} records held, ${mem.detachedSessionBytes} bytes)`);
  const got = b.client.received.filter((f) => f.type === FrameType.DATA).map((f) => Buffer.from((f as { payload: Uint8Array }).payload).toString());
  assert.deepEqual(got, ['for alice']);
  await gw.close();
});

test("one user recording client message ids under many device ids does not push another user's ids out of the dedup record (a re-send is not handed over twice)", async () => {
  const clock = new ManualClock(Date.now());
  // Scaled down from the defaults (64 MiB, about 350,000 ids of 128 bytes): the same order of eviction.
  const bounds: ConstructorParameters<typeof MemoryStore>[0] = { maxDedupBytes: 400_000 };
  Object.assign(bounds, { maxDedupBytesPerUser: 100_000 });
  const mem = new MemoryStore(bounds);
  const gw = gateway(clock, mem, { limits: { handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 } });
  const taken: string[] = [];
  gw.on('message', (m) => {
    if (m.userId === 'alice') taken.push(m.id!);
  });
  // Alice's message is taken in; the link goes before its acknowledgement reaches her.
  const a = peer(gw);
  hello(a.client, { userId: 'alice', deviceId: 'phone' });
  await flush();
  a.client.send({ type: FrameType.DATA, seq: 1, id: 'alice-1', payload: Buffer.from('hi') });
  await flush();
  a.client.destroy();
  await flush();
  // Mallory: 4,000 ids of 120 characters under four device ids.
  for (let d = 0; d < 4; d++) {
    const m = peer(gw);
    hello(m.client, { userId: 'mallory', deviceId: `d${d}` });
    await flush();
    for (let i = 1; i <= 1000; i++) m.client.send({ type: FrameType.DATA, seq: i, id: `${d}-${i}-`.padEnd(120, 'x'), payload: Buffer.from('x') });
    await flush();
    m.client.destroy();
    await flush();
  }
  // Alice comes back and re-sends what was never acknowledged.
  const b = peer(gw);
  hello(b.client, { userId: 'alice', deviceId: 'phone' });
  await flush();
  b.client.send({ type: FrameType.DATA, seq: 1, id: 'alice-1', payload: Buffer.from('hi') });
  await flush();
  assert.deepEqual(taken, ['alice-1'], `alice's message was handed over twice (the dedup record holds ${mem.footprint.dedupBytes} bytes)`);
  await gw.close();
});
