import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The adaptive heartbeat end to end on a fake clock: the client and a real
// gateway over in-memory links that pass through a strict NAT model (a
// mapping idle for `timeoutMs` is forgotten and every later packet of the
// connection is dropped, as the lab's nftables NAT does).

const POLICY = { intervalMs: 1000, minIntervalMs: 500, maxIntervalMs: 120_000, missBudget: 2, graceMs: 500 };
const PROBES = { pongTimeoutMs: 300, probeCount: 1, probeIntervalMs: 200 };

/** reset: the NAT answers a packet of a forgotten mapping with a TCP reset (many do) instead of dropping it. */
function natPair(clock: ManualClock, timeoutMs: number, reset = false): [MemoryLink, MemoryLink] {
  const [server, client] = memoryLinkPair();
  let lastPacketAt = clock.now();
  let forgotten = false;
  for (const end of [server, client]) {
    const send = end.send.bind(end);
    end.send = (f) => {
      const now = clock.now();
      if (!forgotten && now - lastPacketAt >= timeoutMs) forgotten = true;
      if (forgotten) {
        if (reset) end.destroy(); // reset by the NAT: the connection ends, no CLOSE
        return; // dropped by the NAT: no mapping
      }
      lastPacketAt = now;
      send(f);
    };
  }
  return [server, client];
}

function setup(timeoutMs: number, adaptive: ConstructorParameters<typeof LonglinkClient>[0]['adaptive'], handshakeMs = 0, extra: { policy?: Partial<typeof POLICY>; direction?: 'client' | 'server'; reset?: boolean } = {}) {
  const clock = new ManualClock(1_000_000);
  // handshakeMs: the gateway answers HELLO that long after it (a slow authenticator, a long round trip).
  const authenticate = (h: { userId: string; deviceId: string }) => new Promise<{ userId: string; deviceId: string }>((r) => clock.setTimeout(() => r({ userId: h.userId, deviceId: h.deviceId }), handshakeMs));
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: { ...POLICY, ...extra.policy }, wheelTickMs: 1, clock, timers: clock, ...(handshakeMs > 0 ? { authenticate } : {}) });
  const client = new LonglinkClient({
    url: 'tcp://nat',
    userId: 'u',
    deviceId: 'd',
    probes: PROBES,
    adaptive,
    ...(extra.direction ? { direction: extra.direction } : {}),
    reconnect: { initialDelayMs: 100, maxDelayMs: 100, minDelayMs: 100 },
    clock,
    timers: clock,
    random: () => 0.5,
    dial: async () => {
      const [server, c] = natPair(clock, timeoutMs, extra.reset);
      gw.accept(server);
      return c;
    },
  });
  const closes: { at: number; e: CloseEvent }[] = [];
  const intervals: { at: number; intervalMs: number; phase: string; change: string }[] = [];
  client.on('close', (e) => closes.push({ at: clock.now(), e }));
  client.on('interval', (e) => intervals.push({ at: clock.now(), ...e }));
  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += 100) {
      clock.advance(100);
      await flush();
    }
  };
  return { clock, gw, client, closes, intervals, run };
}

// Probe steps are at most log2(T / start) + 1 doublings plus log(2) / log(1.12) ≈ 6 fine steps.
for (const [timeoutMs, startMs] of [[3500, 1000], [8000, 1000], [8000, 4000], [20_000, 4000], [45_000, 4000]]) {
  test(`behind a ${timeoutMs / 1000} s NAT, from ${startMs / 1000} s, the client settles between 80% and 95% of it, loses at most two links, then none`, async () => {
    const { gw, client, closes, intervals, run } = setup(timeoutMs, { startMs });
    await Promise.all([client.connect(), flush()]);
    await run(timeoutMs * 12);
    const settled = intervals.find((i) => i.phase === 'settled');
    assert.ok(settled, `settled: ${JSON.stringify(intervals)}`);
    const r = client.learner!.record!;
    assert.ok(r.intervalMs / timeoutMs >= 0.8 && r.intervalMs / timeoutMs <= 0.95, `settled at ${r.intervalMs}`);
    const maxSteps = Math.ceil(Math.log2(timeoutMs / startMs)) + 1 + 6;
    assert.ok(r.probes <= maxSteps, `${r.probes} probe steps (bound ${maxSteps})`);
    if (startMs === 4000) assert.ok(r.probes <= 8, `the lab's start: at most 8 probe steps (${r.probes})`);
    const beforeSettle = closes.filter((c) => c.at <= settled.at);
    assert.ok(beforeSettle.length <= 2, `${beforeSettle.length} links lost while learning`);
    assert.ok(beforeSettle.every((c) => c.e.reason === 'no answer to heartbeat and quick probes'));
    assert.deepEqual(closes.filter((c) => c.at > settled.at), [], 'no drop once settled');
    assert.equal(client.state, 'open');
    // The gateway's detector follows the announced interval: it never convicted the probing client.
    const grant = gw.connection('u', 'd')!;
    assert.equal(grant.intervalMs, r.intervalMs);
    client.close();
    await gw.close();
  });
}

test('a persisted state starts a known network at its learned interval, and networkChanged(id) switches', async () => {
  const a = setup(8000, { startMs: 1000, network: 'wifi:home' });
  await Promise.all([a.client.connect(), flush()]);
  await a.run(100_000);
  const learned = a.client.learner!.record!.intervalMs;
  const state = JSON.parse(JSON.stringify(a.client.learner!.export()));
  a.client.close();
  await a.gw.close();

  const b = setup(8000, { startMs: 1000, state });
  await Promise.all([b.client.connect(), flush()]);
  assert.equal(b.client.heartbeat!.intervalMs, learned, 'HELLO announced the learned interval');
  await b.run(60_000);
  assert.deepEqual(b.closes, [], 'and it holds from the start');
  b.client.networkChanged('cell:carrier');
  await b.run(100);
  assert.equal(b.client.learner!.network, 'cell:carrier');
  assert.equal(b.client.heartbeat!.intervalMs, 2000, 'an unknown network starts over: the first probe');
  assert.equal(b.intervals.at(-1)!.change, 'network');
  b.client.close();
  await b.gw.close();
});

test('application traffic counts as evidence: a gap it survived is not probed again', async () => {
  const { gw, client, intervals, run } = setup(60_000, { startMs: 1000 });
  await Promise.all([client.connect(), flush()]);
  assert.equal(client.heartbeat!.intervalMs, 2000, 'probing 2 s');
  await run(1500);
  void gw.push('u', 'news'); // arrives after 1.5 s of silence both ways: longer than the 1 s known to hold
  await run(100);
  assert.equal(intervals.at(-1)!.change, 'evidence');
  const held = client.learner!.record!.heldMs;
  assert.ok(held >= 1500 && held <= 1600, `held ${held}`);
  assert.equal(client.heartbeat!.intervalMs, 2 * held, 'the next probe starts from the evidence');
  client.close();
  await gw.close();
});

test('a slow handshake is not counted as idle: the WELCOME is traffic, so the first gap after it is not taken to have held longer than it did', async () => {
  // Behind a 3 s NAT, with WELCOME 1.5 s after HELLO. The first PING goes one interval after WELCOME;
  // timed from the HELLO instead, its gap read 1.5 s longer than the NAT saw, and the learner
  // settled above the NAT's timeout (every link then died and it fell back, again and again).
  const timeoutMs = 3000;
  const { gw, client, closes, intervals, run } = setup(timeoutMs, { startMs: 1000 }, 1500);
  const connected = client.connect();
  await run(2000);
  await connected;
  await run(timeoutMs * 20);
  const r = client.learner!.record!;
  assert.ok(r.heldMs < timeoutMs, `held ${r.heldMs} ms behind a ${timeoutMs} ms NAT: ${JSON.stringify(intervals)}`);
  assert.equal(r.phase, 'settled');
  assert.ok(r.intervalMs < timeoutMs, `settled at ${r.intervalMs}`);
  const settled = intervals.find((i) => i.phase === 'settled')!;
  assert.deepEqual(closes.filter((c) => c.at > settled.at + 2000), [], 'no drop once settled');
  client.close();
  await gw.close();
});

test('server-sent heartbeats: the learner keeps to the gateway\'s range, so a probe past maxIntervalMs that fails (clamped by the gateway) is learned from, not retried for ever', async () => {
  // Gateway range 500..4000 ms, NAT 3.5 s, start 1.5 s: held 3 s, the next probe (6 s) is clamped to
  // 4 s by the gateway and dies at the NAT. Outside the range, the learner thought it probed 6 s, took
  // the 4 s death for something else, and announced 6 s again on every link: lost every few seconds.
  const timeoutMs = 3500;
  const { gw, client, closes, intervals, run } = setup(timeoutMs, { startMs: 1500 }, 0, { policy: { maxIntervalMs: 4000 }, direction: 'server' });
  await Promise.all([client.connect(), flush()]);
  assert.equal(client.heartbeat!.direction, 'server');
  await run(timeoutMs * 30);
  const r = client.learner!.record!;
  assert.ok(closes.length <= 2, `${closes.length} links lost in ${timeoutMs * 30} ms: ${JSON.stringify(intervals)}`);
  assert.equal(r.phase, 'settled', JSON.stringify(intervals));
  assert.ok(r.intervalMs <= 4000 && r.intervalMs < timeoutMs, `settled at ${r.intervalMs}`);
  const settled = intervals.find((i) => i.phase === 'settled')!;
  assert.deepEqual(closes.filter((c) => c.at > settled.at + 2000), [], 'no drop once settled');
  client.close();
  await gw.close();
});

test('server-sent heartbeats: a start below the gateway\'s minIntervalMs is raised to it, not stuck probing an interval the gateway never uses', async () => {
  const timeoutMs = 60_000;
  const { gw, client, intervals, run } = setup(timeoutMs, { startMs: 100 }, 0, { policy: { minIntervalMs: 1000 }, direction: 'server' });
  await Promise.all([client.connect(), flush()]);
  await run(30_000);
  const r = client.learner!.record!;
  assert.ok(r.intervalMs >= 1000, `learner at ${r.intervalMs}: ${JSON.stringify(intervals)}`);
  assert.ok(r.heldMs >= 4000, `held ${r.heldMs} after 30 s: the learner climbs`);
  assert.equal(client.heartbeat!.intervalMs, r.intervalMs, 'the interval in force is the learner\'s');
  client.close();
  await gw.close();
});

test('a NAT that resets a forgotten mapping (instead of dropping its packets): the probe it kills is learned from, not retried on every link', async () => {
  // Behind an 8 s NAT from 1 s: the 8 s probe's PING is answered by a reset, not by silence. Taken for
  // a loss that says nothing about the NAT, the probe was announced again on every link and reset
  // again, for ever: a link lost every 8 s and never a settled interval.
  const timeoutMs = 8000;
  const { gw, client, closes, intervals, run } = setup(timeoutMs, { startMs: 1000 }, 0, { reset: true });
  await Promise.all([client.connect(), flush()]);
  await run(timeoutMs * 12);
  const r = client.learner!.record!;
  assert.equal(r.phase, 'settled', `${closes.length} links lost: ${JSON.stringify(intervals)}`);
  assert.ok(r.intervalMs / timeoutMs >= 0.8 && r.intervalMs / timeoutMs <= 0.95, `settled at ${r.intervalMs}`);
  const settled = intervals.find((i) => i.phase === 'settled')!;
  assert.ok(closes.filter((c) => c.at <= settled.at).length <= 2, `${closes.length} links lost while learning`);
  assert.deepEqual(closes.filter((c) => c.at > settled.at), [], 'no drop once settled');
  client.close();
  await gw.close();
});
