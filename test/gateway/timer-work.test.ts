import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type TimerStats } from '../../src/gateway/gateway.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The gateway must cost the same after an hour as after a minute (issue 18).
// Thousands of connections heartbeat on the fake clock for many intervals; the
// work of the timer machinery per interval (timers armed, pending, wheel ticks
// and visits) is counted, not timed, and must not grow. Before the fix the
// runner orphaned one self-re-arming timer chain per tick that rescheduled a
// connection, and armed timers per interval grew without bound.

const NO_LIMITS = { maxConnections: 0, maxConnectionsPerSource: 0, handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 };

async function fleet(n: number, intervalMs: number) {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({
    tcp: false,
    ws: false,
    clock,
    timers: clock,
    heartbeat: { intervalMs, minIntervalMs: intervalMs, maxIntervalMs: intervalMs, missBudget: 2, graceMs: Math.min(5000, intervalMs / 2) },
    limits: NO_LIMITS,
  });
  const clients: MemoryLink[] = [];
  for (let i = 0; i < n; i++) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    clients.push(client);
    if (i % 500 === 499) await flush();
  }
  await flush();
  assert.equal(gw.onlineDevices, n, 'every client online');
  return { clock, gw, clients };
}

interface Window extends Omit<TimerStats, 'runnerPending' | 'wheelSize'> {
  armed: number;
  pending: number;
  heartbeats: number;
}

/**
 * Heartbeats every client once per interval, spread evenly over it (each at its
 * own phase), advancing the clock in 10 ms steps; counts each interval's work.
 */
function heartbeat(f: Awaited<ReturnType<typeof fleet>>, intervalMs: number, intervals: number): Window[] {
  const { clock, gw, clients } = f;
  const n = clients.length;
  const start = clock.now();
  const next = clients.map((_, i) => start + Math.floor((i * intervalMs) / n) + 1);
  let k = 0;
  const out: Window[] = [];
  const stats = () => ({ ...gw.timerStats(), armed: clock.armedCount, pings: gw.trafficStats().pingsIn });
  let before = stats();
  for (let w = 0; w < intervals; w++) {
    const end = start + (w + 1) * intervalMs;
    while (clock.now() < end) {
      clock.advance(10);
      // Fail fast: a leak of timer chains makes the fake clock itself quadratic.
      if (clock.pendingTimers > 16) assert.fail(`${clock.pendingTimers} timers pending at ${clock.now() - start} ms: a timer chain leaks`);
      while (next[k] <= clock.now()) {
        clients[k].send({ type: FrameType.PING });
        clients[k].received.length = 0;
        next[k] += intervalMs;
        k = (k + 1) % n;
      }
    }
    const after = stats();
    out.push({
      ticks: after.ticks - before.ticks,
      visited: after.visited - before.visited,
      expired: after.expired - before.expired,
      arms: after.arms - before.arms,
      runs: after.runs - before.runs,
      armed: after.armed - before.armed,
      pending: clock.pendingTimers,
      heartbeats: after.pings - before.pings,
    });
    before = after;
  }
  assert.equal(gw.onlineDevices, n, 'no healthy client was convicted');
  return out;
}

function assertFlat(ws: Window[], intervalMs: number, n: number): void {
  // Two intervals of warm-up: the connections' first deadlines, set at HELLO, fall in them.
  const first = ws[2];
  const last = ws[ws.length - 1];
  const ticksPerInterval = intervalMs / 50;
  for (const [i, w] of ws.entries()) {
    if (i === 0) continue;
    assert.equal(w.heartbeats, n, `interval ${i}: every client heartbeat once`);
    assert.equal(w.ticks, ticksPerInterval, `interval ${i}: one wheel tick per 50 ms`);
    assert.ok(w.arms <= ticksPerInterval + 1, `interval ${i}: runner armed ${w.arms} timers for ${ticksPerInterval} ticks`);
    assert.ok(w.pending <= first.pending, `interval ${i}: ${w.pending} timers pending (first steady interval: ${first.pending})`);
  }
  // Work per heartbeat and per tick in the last interval equals the first steady one.
  assert.equal(last.armed, first.armed, `timers armed per interval: first ${first.armed}, last ${last.armed}`);
  assert.equal(last.arms, first.arms);
  assert.equal(last.runs, first.runs);
  assert.ok(Math.abs(last.visited - first.visited) <= 0.02 * first.visited + 2, `wheel visits: first ${first.visited}, last ${last.visited}`);
  assert.ok(Math.abs(last.expired - first.expired) <= 0.02 * first.expired + 2, `expiries: first ${first.expired}, last ${last.expired}`);
  assert.ok(first.expired > 0, 'expiries that reschedule happened (the lazy re-arm)');
}

test('2,000 connections heartbeating every 1 s for 40 intervals: timer work per interval is constant', async () => {
  const f = await fleet(2000, 1000);
  const ws = heartbeat(f, 1000, 40);
  assertFlat(ws, 1000, 2000);
  await f.gw.close();
});

test('1,000 connections heartbeating every 30 s for 12 intervals (6 min): timer work per interval is constant', async () => {
  const f = await fleet(1000, 30_000);
  const ws = heartbeat(f, 30_000, 12);
  assertFlat(ws, 30_000, 1000);
  await f.gw.close();
});

test('300 SDK clients (client- and server-sent heartbeats, data both ways) for 30 intervals: pending and armed timers constant on both sides', async () => {
  const clock = new ManualClock(1_000_000);
  const intervalMs = 2000;
  const gw = new Gateway({
    tcp: false,
    ws: false,
    clock,
    timers: clock,
    heartbeat: { intervalMs, minIntervalMs: 500, maxIntervalMs: 60_000, missBudget: 2, graceMs: 1000 },
    limits: NO_LIMITS,
  });
  gw.on('message', (m) => {
    // Every tenth message is answered: data the other way, acknowledged by the client.
    if (m.seq !== undefined && m.seq % 10 === 0) gw.send(m.userId, m.payload);
  });
  const clients: LonglinkClient[] = [];
  for (let i = 0; i < 300; i++) {
    const c = new LonglinkClient({
      url: 'tcp://test',
      userId: `u${i}`,
      deviceId: 'd',
      direction: i % 2 ? 'server' : 'client',
      clock,
      timers: clock,
      random: () => 0.5,
      dial: async () => {
        const [server, link] = memoryLinkPair();
        gw.accept(server);
        return link;
      },
    });
    clients.push(c);
    await Promise.all([c.connect(), flush()]);
  }
  assert.equal(gw.onlineDevices, 300);
  const rows: { pending: number; armed: number }[] = [];
  let armed = clock.armedCount;
  for (let w = 0; w < 30; w++) {
    for (let step = 0; step < intervalMs; step += 50) {
      clock.advance(50);
      // Each client sends one message per interval, at its own phase.
      for (let i = step / 50; i < 300; i += intervalMs / 50) clients[i].send(`m${w}`);
      await flush();
    }
    rows.push({ pending: clock.pendingTimers, armed: clock.armedCount - armed });
    armed = clock.armedCount;
  }
  assert.equal(gw.onlineDevices, 300, 'nobody convicted');
  // Warm-up: each client's stable timer (backoff reset once the link has held) fires in the first intervals.
  const steady = rows.slice(6);
  const maxPending = Math.max(...steady.map((r) => r.pending));
  const minPending = Math.min(...steady.map((r) => r.pending));
  assert.ok(maxPending - minPending <= 10, `pending timers stay level: ${minPending}..${maxPending}`);
  assert.ok(maxPending <= 300 * 3 + 10, `at most a few timers per client (heartbeat, ack, stable): ${maxPending}`);
  // Pairs of intervals: a silence deadline of 2 × interval + grace re-arms every second heartbeat.
  const first = steady[0].armed + steady[1].armed;
  const last = steady[steady.length - 2].armed + steady[steady.length - 1].armed;
  assert.ok(Math.abs(last - first) <= 0.05 * first, `timers armed per interval: first ${first}, last ${last}`);
  for (const c of clients) c.close();
  await gw.close();
});
