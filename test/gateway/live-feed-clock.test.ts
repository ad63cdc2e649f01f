import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { LiveFeed } from '../../src/admin/live-feed.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair } from '../helpers/memory-link.js';

// The dashboard's rates, RTT window and uptime run on the monotonic clock; only the time stamps
// shown are the wall clock's, which NTP may step back or forward.

test('a wall clock stepped back an hour does not make the live feed\'s rates spike, empty its RTT window, or shrink its uptime', async () => {
  const clock = new ManualClock(1_000_000);
  let wall = 1_700_000_000_000;
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 }, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const feed = new LiveFeed(gw, { timers: clock, wallNow: () => wall, now: () => clock.now(), tickMs: 1000 });
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
  await flush();
  const ticks: { heartbeatsPerSec: number; t: number; rtt: { count: number } }[] = [];
  feed.subscribe((e) => e.event === 'tick' && ticks.push(e.data));
  for (let s = 0; s < 5; s++) {
    for (let k = 0; k < 10; k++) client.send({ type: FrameType.PING });
    gw.emit('rtt', { userId: 'u', deviceId: 'd', connectionId: 'c', transport: 'tcp', sampleMs: 5 } as never);
    await flush();
    // NTP steps the wall clock back an hour just before the third tick.
    if (s === 2) wall -= 3_600_000;
    wall += 1000;
    clock.advance(1000);
    await flush();
  }
  assert.equal(ticks.length, 5);
  for (const t of ticks) assert.ok(t.heartbeatsPerSec <= 10, `a tick's rate was ${t.heartbeatsPerSec}/s for 10 pings a second`);
  assert.equal(ticks[4].rtt.count, 5, 'every RTT sample of the last minute is still counted');
  assert.ok(ticks[2].t < ticks[1].t, 'the time stamps shown are the wall clock\'s');
  assert.equal(feed.overview().uptimeMs, 5000);
  feed.close();
  await gw.close();
});

test('an RTT summary says how far back its samples go when more came in the minute than are kept', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const feed = new LiveFeed(gw, { timers: clock, wallNow: () => clock.now(), now: () => clock.now(), tickMs: 1000 });
  const rtt = (sampleMs: number) => gw.emit('rtt', { userId: 'u', deviceId: 'd', connectionId: 'c', transport: 'tcp', sampleMs } as never);
  // A quiet minute: the summary covers all of it.
  for (let s = 0; s < 10; s++) {
    rtt(5);
    clock.advance(1000);
  }
  assert.equal(feed.rttSummary().windowMs, 60_000);
  assert.equal(feed.rttSummary().count, 10);
  // 5,000 samples a second: the 20,000 kept are the last four seconds' (a minute's worth would be 300,000).
  for (let s = 0; s < 10; s++) {
    for (let k = 0; k < 5000; k++) rtt(s < 6 ? 1000 : 2);
    clock.advance(1000);
  }
  const r = feed.rttSummary();
  assert.equal(r.count, 20_000);
  assert.equal(r.windowMs, 4000, 'the samples kept span the last 4 s, not the minute');
  assert.equal(r.p99, 2, 'and they are the newest');
  feed.close();
  await gw.close();
});

test('a tick after skipped notices carries the recent disconnections, which the history does not keep', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const feed = new LiveFeed(gw, { timers: clock, wallNow: () => clock.now(), now: () => clock.now(), tickMs: 1000, maxNoticesPerTick: 10 });
  const seen: { event: string; data: { userId?: string; recent?: { userId: string }[]; noticesSkipped?: number } }[] = [];
  feed.subscribe((e) => seen.push(e as never));
  const offline = (userId: string) => gw.emit('offline', { userId, deviceId: 'd', connectionId: `c-${userId}`, transport: 'tcp', reason: 'transport-close', code: 4000, initiator: 'peer', silentForMs: 0 } as never);
  for (let i = 0; i < 5; i++) offline(`calm${i}`);
  clock.advance(1000);
  const calm = seen.filter((e) => e.event === 'tick').at(-1)!.data;
  assert.equal(calm.recent, undefined, 'nothing skipped: the tick is as small as ever');
  for (let i = 0; i < 30; i++) offline(`storm${i}`);
  clock.advance(1000);
  const notices = seen.filter((e) => e.event === 'offline');
  assert.equal(notices.length, 15, 'five, then ten of the thirty streamed');
  const tick = seen.filter((e) => e.event === 'tick').at(-1)!.data;
  assert.equal(tick.noticesSkipped, 20);
  assert.ok(tick.recent, 'the tick carries the recent list');
  assert.equal(tick.recent[0].userId, 'storm29', 'with the latest disconnection, never streamed, first');
  assert.equal(tick.recent.length, 35);
  const snap = feed.snapshot();
  assert.ok(snap.history.every((t) => t.recent === undefined), 'the history (each new page\'s snapshot) does not keep the copies');
  clock.advance(1000);
  assert.equal(seen.filter((e) => e.event === 'tick').at(-1)!.data.recent, undefined, 'and the next calm tick goes without');
  feed.close();
  await gw.close();
});

// LiveFeed is public: an application subscribing to it runs inside the feed's timer. A throw from
// the tick left the next tick unscheduled (the dashboard froze for good, with no error anywhere under
// a fake clock, and the process ended under Node's timers), and starved the subscribers after it.
test('a subscriber that throws is reported as a listener fault; the feed keeps ticking, to every other subscriber', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const feed = new LiveFeed(gw, { timers: clock, wallNow: () => clock.now(), now: () => clock.now(), tickMs: 1000 });
  const faults: { kind: string; op: string; error: unknown }[] = [];
  gw.on('fault', (f) => faults.push(f));
  let throws = 1;
  feed.subscribe((e) => {
    if (e.event === 'tick' && throws-- > 0) throw new Error('a subscriber bug');
  });
  const ticks: number[] = [];
  feed.subscribe((e) => e.event === 'tick' && ticks.push(e.data.t));
  const escaped: unknown[] = [];
  for (let s = 0; s < 3; s++) {
    try {
      clock.advance(1000);
    } catch (err) {
      escaped.push(err);
    }
  }
  assert.deepEqual(escaped, [], 'nothing escaped into the timer');
  assert.equal(ticks.length, 3, 'every tick reached the other subscriber');
  assert.deepEqual(faults.map((f) => [f.kind, f.op, (f.error as Error).message]), [['listener', 'live-feed tick', 'a subscriber bug']]);
  feed.close();
  await gw.close();
});
