import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FreshnessDetector } from '../../src/core/freshness-detector.js';
import { SilenceDetector } from '../../src/core/liveness-detector.js';
import { HeartbeatScheduler } from '../../src/core/heartbeat-scheduler.js';
import { DEFAULT_PROBES } from '../../src/core/heartbeat-policy.js';
import { seededRandom } from '../../src/core/backoff.js';

test('the deadline counts from when the next heartbeat is due, not from when the last one arrived', () => {
  // Heartbeats sent every 1000 ms from t=0 arrive with delays 50, 50, 50, then 250 ms.
  const d = new FreshnessDetector(1000, 0, { lateMs: 1500, suspectLateMs: 200 });
  for (const a of [1050, 2050, 3050]) d.heard(a);
  assert.equal(d.expectedAt(), 4050);
  assert.equal(d.deadline(), 5550);
  d.heard(4250); // one late arrival moves the estimate by a quarter of its lateness (window mean), not all of it
  // (200 ms late: were it a late send, one loss after it still could not convict with 1,500 ms of slack)
  assert.equal(d.expectedAt(), 5000 + (50 + 50 + 50 + 250) / 4);
  assert.equal(d.deadline(), 5100 + 1500);
});

test('a late send followed by a loss is not convicted before the nominal bound (issue 20)', () => {
  // Interval 1000, miss budget 2, grace 200: lateMs = 1200, so a fixed detector allows 2200 ms of silence.
  const d = new FreshnessDetector(1000, 0, { lateMs: 1200, suspectLateMs: 200 });
  for (let t = 1010; t <= 10_010; t += 1000) d.heard(t);
  // The client's app hangs 400 ms: the heartbeat due at 11,000 goes out at 11,400 (arrives 11,410),
  // and its scheduler counts the next from there: 12,410, which is lost; then 13,410.
  d.heard(11_410);
  assert.ok(d.deadline() >= 11_410 + 2200, `deadline ${d.deadline()} before last + 2200`);
  assert.notEqual(d.check(13_409), 'dead', 'the old detector convicted at 13,246');
  d.heard(13_410);
  // Confirmed: the lattice moved; it is re-anchored, and the next is due one interval on.
  assert.equal(d.expectedAt(), 14_410);
  d.heard(14_410);
  assert.equal(d.expectedAt(), 15_410);
  assert.equal(d.deadline(), 15_410 + 1200);
});

test('a lost heartbeat is recognised from the gap and does not shift the expected time', () => {
  const d = new FreshnessDetector(1000, 0, { lateMs: 1500 });
  for (const a of [1020, 2020, 3020]) d.heard(a);
  d.heard(5020); // 4020 lost
  assert.equal(d.expectedAt(), 6020);
});

test('a heartbeat more than half an interval late is not taken for a loss once the next one lands in its slot', () => {
  // Every 1000 ms, 50 ms on the way; the tenth takes 650 ms. Against the ninth's arrival its gap is
  // 1.6 intervals, as if one had been lost; the eleventh, on time, shows it was only late. Taken as a
  // loss, every later heartbeat was one slot off and the expected time drifted up to an interval late
  // over the next 32 heartbeats (12,923 here instead of 12,105): a dead peer lived that much longer.
  const d = new FreshnessDetector(1000, 0, { lateMs: 1500 });
  for (let k = 1; k <= 9; k++) d.heard(k * 1000 + 50);
  d.heard(10_650);
  d.heard(11_050);
  const mean = (10 * 50 + 650) / 11;
  assert.ok(Math.abs(d.expectedAt() - (12_000 + mean)) < 1e-9, `expected at ${d.expectedAt()}`);
  for (let k = 12; k <= 40; k++) {
    d.heard(k * 1000 + 50);
    assert.ok(d.expectedAt() <= (k + 1) * 1000 + 50 + 600 / 11 + 1e-9, `after heartbeat ${k}: expected at ${d.expectedAt()}`);
  }
  // A real loss is still one: 41,050 lost, 42,050 arrives (the late one is still in the window of 32).
  d.heard(42_050);
  assert.equal(d.expectedAt(), 43_000 + (31 * 50 + 650) / 32);
});

test('heartbeats held back and read at once (a stall of the path or of the gateway) do not push the deadlines after it back', () => {
  // Every 1000 ms, 50 ms on the way, lateMs 1500; the ten due from 41,050 to 50,050 are all read at 50,200.
  // Taken as ten consecutive slots, they filled the window with slots they never had: the deadline after
  // each of the next 30 heartbeats was up to 7 s late (8,453 ms after the next was due, for 1,500).
  const d = new FreshnessDetector(1000, 0, { budget: { missBudget: 2, graceMs: 500 } });
  for (let k = 1; k <= 40; k++) d.heard(k * 1000 + 50);
  for (let k = 41; k <= 50; k++) d.heard(50_200);
  assert.equal(d.lastHeardAt, 50_200);
  for (let k = 51; k <= 90; k++) {
    const due = k * 1000 + 50;
    // The first after them is expected an interval after the last one read: held back or the client's
    // probe (from which it would count the next), the gateway cannot tell, and the lattice restarts there.
    const bound = k === 51 ? 50_200 + 1000 + 1500 - due : 1500 + 50;
    assert.ok(d.deadline() - due <= bound, `heartbeat ${k}: deadline ${d.deadline() - due} ms after it was due`);
    assert.notEqual(d.check(due), 'dead');
    d.heard(due);
  }
  assert.equal(d.deadline(), 91_050 + 1500);
});

test('verdicts: alive, suspect once, suspected, dead at the deadline; the next check times follow', () => {
  const d = new FreshnessDetector(1000, 0, { lateMs: 1500, suspectLateMs: 300 });
  for (const a of [1000, 2000, 3000]) d.heard(a);
  assert.equal(d.check(4299), 'alive');
  assert.equal(d.nextCheckAt(4000), 4300);
  assert.equal(d.check(4300), 'suspect');
  assert.equal(d.check(4400), 'suspected');
  assert.equal(d.nextCheckAt(4400), 5500);
  assert.equal(d.check(5499), 'suspected');
  assert.equal(d.check(5500), 'dead');
});

test('a frame other than a heartbeat proves life and restarts the lattice', () => {
  const d = new FreshnessDetector(1000, 0, { lateMs: 1500 });
  for (const a of [1000, 2000, 3000]) d.heard(a);
  d.heard(3400, false);
  assert.equal(d.lastHeardAt, 3400);
  assert.equal(d.expectedAt(), 4400, 'one interval after the data frame');
  d.heard(4410);
  assert.equal(d.expectedAt(), 5410);
  d.setIntervalMs(2000);
  assert.equal(d.expectedAt(), 6410, 'a new interval forgets the lattice');
});

test('before any heartbeat the peer has one interval plus lateMs, as the fixed detector would give', () => {
  const d = new FreshnessDetector(1000, 500, { lateMs: 1500 });
  assert.equal(d.deadline(), 3000);
  assert.throws(() => new FreshnessDetector(1000, 0, { lateMs: 0 }), { code: 'LL_ERR_INVALID_OPTION' });
  assert.throws(() => new FreshnessDetector(1000, 0, { lateMs: 100, suspectLateMs: 200 }), { code: 'LL_ERR_INVALID_OPTION' });
});

/** Ten heartbeats on the interval, then one lost: the verdict until two intervals after the last. */
function oneLoss(d: { heard(n: number, h?: boolean): void; check(n: number): string; setIntervalMs(ms: number): void }, I: number): string {
  d.setIntervalMs(I);
  let t = 0;
  for (let i = 0; i < 10; i++) d.heard((t += I));
  for (let now = t; now < t + 2 * I; now += 100) if (d.check(now) === 'dead') return `dead at +${now - t}`;
  return 'alive';
}

test('with lateMs unset, it follows the interval the client announces: one lost heartbeat is tolerated at 25, 50 and 200 s', () => {
  const budget = { missBudget: 2, graceMs: 5_000 };
  for (const I of [25_000, 50_000, 200_000]) {
    assert.equal(oneLoss(new FreshnessDetector(25_000, 0, { budget, suspectLateMs: 5_000 }), I), 'alive', `${I} ms`);
    assert.equal(oneLoss(new SilenceDetector(25_000, 2, 5_000, 0), I), 'alive', `silence, ${I} ms`);
  }
  const d = new FreshnessDetector(25_000, 0, { budget, suspectLateMs: 5_000 });
  d.setIntervalMs(200_000);
  assert.equal(d.o.lateMs, 205_000);
  assert.equal(d.o.suspectLateMs, 5_000);
  // A lateMs that was set stays as set (the operator's choice).
  const fixed = new FreshnessDetector(25_000, 0, { lateMs: 30_000, suspectLateMs: 5_000 });
  fixed.setIntervalMs(200_000);
  assert.equal(fixed.o.lateMs, 30_000);
});

test('a suspicion not yet raised is still checked when asked after its time (a re-arm before the wheel fired)', () => {
  const f = new FreshnessDetector(25_000, 0, { lateMs: 30_000, suspectLateMs: 5_000 });
  const suspectAt = f.expectedAt() + 5_000;
  assert.equal(f.nextCheckAt(suspectAt + 10), suspectAt);
  assert.equal(f.check(suspectAt + 10), 'suspect');
  assert.equal(f.nextCheckAt(suspectAt + 10), f.deadline());
});

test("the client's own probe after a late PONG moves its lattice: the next heartbeat, an interval after the probe, is not convicted", () => {
  // The client's scheduler (default probes: PONG within 5 s, else a probe PING) sends every 25 s; each
  // heartbeat takes 40 ms to the gateway. The PONG to the tenth is held up 6 s on the way back (a
  // congested downlink), so the client probes at +5 s, and counts its next heartbeat from that probe.
  // The gateway has missBudget 1, grace 3 s: the silence detector keeps this client alive.
  const I = 25_000;
  const sched = new HeartbeatScheduler(I, DEFAULT_PROBES, 0);
  const fresh = new FreshnessDetector(I, 0, { budget: { missBudget: 1, graceMs: 3000 }, suspectLateMs: 3000 });
  const silence = new SilenceDetector(I, 1, 3000, 0);
  const pongs: number[] = [];
  let beats = 0;
  let last = 0;
  while (beats < 20) {
    const t = Math.min(sched.nextWakeAt(), pongs[0] ?? Infinity);
    if (t === pongs[0]) {
      pongs.shift();
      sched.received(t);
      continue;
    }
    const action = sched.poll(t);
    if (action !== 'ping' && action !== 'probe') continue;
    sched.sent(t);
    beats++;
    const arrives = (last = t + 40);
    for (const d of [silence, fresh]) {
      assert.notEqual(d.check(arrives - 1), 'dead', `${d.constructor.name}: ${action} ${beats} (sent at ${t}) arrives after the deadline ${d.deadline()}`);
      d.heard(arrives, true);
    }
    pongs.push(arrives + (beats === 10 ? 6000 : 40));
    pongs.sort((a, b) => a - b);
  }
  assert.equal(beats, 20);
  // Re-anchored on the probe's phase: the next is due an interval after the last, to the millisecond.
  assert.equal(fresh.expectedAt(), last + I);
});

test("the client's probe read close after its heartbeat (or with it) still moves the lattice: a live client whose delays stay within graceMs is not convicted", () => {
  // Every 25 s; the path's delay alternates 0 and 2 s (a mean deviation of 1 s, so "far" is 4 s). The
  // PONG to the 60th heartbeat (which took 2 s) comes back 5.5 s later: the client probes at +5 s, and
  // the probe, on the way 0 s, is read 3 s after that heartbeat, nearer its slot than the next. The
  // client counts its next heartbeat from the probe: taken for nothing, the next (2 s on the way)
  // came 7 s after the old lattice's slot, past its 5 s grace, where every delay was at most 2 s.
  const I = 25_000;
  const sched = new HeartbeatScheduler(I, DEFAULT_PROBES, 0);
  const fresh = new FreshnessDetector(I, 0, { budget: { missBudget: 1, graceMs: 5000 } });
  const silence = new SilenceDetector(I, 1, 5000, 0);
  const pongs: number[] = [];
  let beats = 0;
  let up = 0;
  while (beats < 70) {
    const t = Math.min(sched.nextWakeAt(), pongs[0] ?? Infinity);
    if (t === pongs[0]) {
      pongs.shift();
      sched.received(t);
      continue;
    }
    const action = sched.poll(t);
    if (action !== 'ping' && action !== 'probe') continue;
    sched.sent(t);
    beats++;
    const arrives = (up = Math.max(up, t + (action === 'probe' ? 0 : beats % 2 === 0 ? 2000 : 0)));
    for (const d of [silence, fresh]) {
      assert.notEqual(d.check(arrives - 1), 'dead', `${d.constructor.name}: ${action} ${beats} (sent at ${t}) arrives at ${arrives}, after the deadline ${d.deadline()}`);
      d.heard(arrives, true);
    }
    pongs.push(arrives + (beats === 60 ? 5500 : 0));
    pongs.sort((a, b) => a - b);
  }
});

test('large jitter (seeded simulation): a client whose every delay is within graceMs is never convicted, however its probes move its lattice', () => {
  // Chen et al.'s channel, but the client is longlink's scheduler: each way a delay uniform in [0, J]
  // (in order, as on TCP), the PONG too, so a round trip over pongTimeoutMs (5 s) sends a probe and
  // moves the client's lattice to it. missBudget 1, graceMs J: a detector whose expected time is on
  // the client's present lattice never convicts. Shifts below "far" accumulated in the window of 32,
  // the expected time fell seconds behind, and the deviation they left kept re-anchoring from firing.
  const I = 25_000;
  for (const J of [3000, 8000, 14_000]) {
    const rand = seededRandom(J);
    let convicted = 0;
    const runs = 100;
    for (let run = 0; run < runs; run++) {
      // Probe waits long enough that the client itself never gives up (the run is about the gateway).
      const sched = new HeartbeatScheduler(I, { ...DEFAULT_PROBES, probeIntervalMs: Math.max(2000, J) }, 0);
      const fresh = new FreshnessDetector(I, 0, { budget: { missBudget: 1, graceMs: J } });
      const pongs: number[] = [];
      let up = 0;
      let down = 0;
      for (let beats = 0; beats < 200; ) {
        const t = Math.min(sched.nextWakeAt(), pongs[0] ?? Infinity);
        if (t === pongs[0]) {
          pongs.shift();
          sched.received(t);
          continue;
        }
        const action = sched.poll(t);
        assert.notEqual(action, 'dead');
        if (action !== 'ping' && action !== 'probe') continue;
        sched.sent(t);
        beats++;
        const arrives = (up = Math.max(up, t + rand() * J));
        if (arrives >= fresh.deadline()) {
          convicted++;
          break;
        }
        fresh.heard(arrives, true);
        pongs.push((down = Math.max(down, arrives + rand() * J)));
        pongs.sort((a, b) => a - b);
      }
    }
    assert.equal(convicted, 0, `delays within J = ${J} ms: ${convicted} of ${runs} live clients convicted`);
  }
});
