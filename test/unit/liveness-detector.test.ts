import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { silenceLimitMs, suspectAfterMs } from '../../src/core/heartbeat-policy.js';
import { SilenceDetector, type LivenessDetector, type Verdict } from '../../src/core/liveness-detector.js';

// interval 1000, missBudget 3, grace 500, last heard at 10 000:
//   suspect at 10 000 + 1000 + 500        = 11 500
//   dead    at 10 000 + 1000 × 3 + 500    = 13 500
const T0 = 10_000;
const make = (now = T0) => new SilenceDetector(1000, 3, 500, now);

/**
 * The gateway's way of driving a detector: check only when nextCheckAt comes
 * due, on a ManualClock. Returns each verdict other than 'alive' with its time.
 */
function drive(clock: ManualClock, d: LivenessDetector, events: { at: number; heard?: true }[], until: number): [Verdict, number][] {
  const log: [Verdict, number][] = [];
  let handle: unknown = null;
  let dead = false;
  const arm = () => {
    if (handle) clock.clearTimeout(handle);
    handle = clock.setTimeout(onTimer, d.nextCheckAt(clock.now()) - clock.now());
  };
  const onTimer = () => {
    handle = null;
    const v = d.check(clock.now());
    if (v !== 'alive') log.push([v, clock.now()]);
    if (v === 'dead') dead = true;
    else arm();
  };
  for (const e of events) {
    clock.setTimeout(() => {
      if (!dead) d.heard(clock.now());
      // Lazy re-arm: the armed check only ever moves later, so it stays.
    }, e.at - clock.now());
  }
  arm();
  clock.advanceTo(until);
  return log;
}

describe('SilenceDetector: construction and formulas', () => {
  test('starts as heard at construction, with the policy formulas', () => {
    const d = make();
    assert.equal(d.lastHeardAt, T0);
    assert.equal(d.intervalMs, 1000);
    assert.equal(d.missBudget, 3);
    assert.equal(d.graceMs, 500);
    assert.equal(d.limitMs, 3500);
    assert.equal(d.limitMs, silenceLimitMs(d));
    assert.equal(d.deadline(), T0 + 3500);
    assert.equal(d.check(T0), 'alive');
  });
});

describe('SilenceDetector: verdicts at the exact millisecond', () => {
  test('alive until 1 ms before suspectAfter, suspect exactly at it', () => {
    const d = make();
    assert.equal(d.check(T0 + 1499), 'alive');
    assert.equal(d.check(T0 + 1500), 'suspect');
  });

  test("'suspect' is reported once per silence, then 'suspected'", () => {
    const d = make();
    assert.equal(d.check(T0 + 1500), 'suspect');
    assert.equal(d.check(T0 + 1500), 'suspected');
    assert.equal(d.check(T0 + 2000), 'suspected');
    assert.equal(d.check(T0 + 3499), 'suspected');
  });

  test('dead exactly at lastHeard + silenceLimit, not 1 ms earlier', () => {
    const d = make();
    assert.equal(d.check(T0 + 3499), 'suspect', 'first check in the suspect window reports the transition');
    assert.equal(d.check(T0 + 3499), 'suspected');
    assert.equal(d.check(T0 + 3500), 'dead');
  });

  test('dead without ever being checked as suspect, and dead stays dead', () => {
    const d = make();
    assert.equal(d.check(T0 + 3500), 'dead');
    assert.equal(d.check(T0 + 3500), 'dead');
    assert.equal(d.check(T0 + 1e9), 'dead');
  });

  test('a check at an earlier time than lastHeard is alive', () => {
    const d = make();
    assert.equal(d.check(T0 - 5000), 'alive');
  });

  test('missBudget 1: suspectAfter equals the limit, so the verdict goes straight to dead', () => {
    const d = new SilenceDetector(1000, 1, 200, 0);
    assert.equal(d.limitMs, suspectAfterMs(d));
    assert.equal(d.check(1199), 'alive');
    assert.equal(d.check(1200), 'dead');
  });

  test('grace 0: suspect after one interval, dead after missBudget intervals', () => {
    const d = new SilenceDetector(1000, 2, 0, 0);
    assert.equal(d.check(999), 'alive');
    assert.equal(d.check(1000), 'suspect');
    assert.equal(d.check(1999), 'suspected');
    assert.equal(d.check(2000), 'dead');
  });
});

describe('SilenceDetector: heard()', () => {
  test('any inbound frame resets the silence: deadlines move with lastHeardAt', () => {
    const d = make();
    d.heard(T0 + 1000);
    assert.equal(d.lastHeardAt, T0 + 1000);
    assert.equal(d.deadline(), T0 + 4500);
    assert.equal(d.check(T0 + 2499), 'alive');
    assert.equal(d.check(T0 + 2500), 'suspect');
    assert.equal(d.check(T0 + 4499), 'suspected');
    assert.equal(d.check(T0 + 4500), 'dead');
  });

  test('hearing from a suspected peer makes it alive, and a new silence is reported as suspect again', () => {
    const d = make();
    assert.equal(d.check(T0 + 2000), 'suspect');
    d.heard(T0 + 2100);
    assert.equal(d.check(T0 + 2100), 'alive');
    assert.equal(d.check(T0 + 3599), 'alive');
    assert.equal(d.check(T0 + 3600), 'suspect', 'a new silence, a new transition');
    assert.equal(d.check(T0 + 3601), 'suspected');
    assert.equal(d.check(T0 + 5600), 'dead');
  });

  test('a heartbeat flag is accepted (the LivenessDetector interface) and changes nothing here', () => {
    const a: LivenessDetector = make();
    const b: LivenessDetector = make();
    a.heard(T0 + 700, true);
    b.heard(T0 + 700, false);
    assert.equal(a.deadline(), b.deadline());
  });

  test('steady traffic inside the suspect window keeps the peer alive forever', () => {
    const d = make();
    for (let t = T0; t < T0 + 100_000; t += 1499) {
      d.heard(t);
      assert.equal(d.check(t + 1499), 'alive');
    }
  });
});

describe('SilenceDetector: setIntervalMs', () => {
  test('a longer interval moves both deadlines later, even mid-silence', () => {
    const d = make();
    assert.equal(d.check(T0 + 1500), 'suspect');
    d.setIntervalMs(2000); // suspect at +2500, dead at +6500
    assert.equal(d.intervalMs, 2000);
    assert.equal(d.limitMs, 6500);
    assert.equal(d.deadline(), T0 + 6500);
    assert.equal(d.check(T0 + 2000), 'alive');
    assert.equal(d.check(T0 + 6499), 'suspected', 'the silence from T0 was already reported');
    assert.equal(d.check(T0 + 6500), 'dead');
  });

  test('a shorter interval makes the verdict come earlier', () => {
    const d = make();
    d.setIntervalMs(200); // suspect at +700, dead at +1100
    assert.equal(d.deadline(), T0 + 1100);
    assert.equal(d.check(T0 + 699), 'alive');
    assert.equal(d.check(T0 + 700), 'suspect');
    assert.equal(d.check(T0 + 1099), 'suspected');
    assert.equal(d.check(T0 + 1100), 'dead');
  });
});

describe('SilenceDetector: nextCheckAt', () => {
  test('until the suspicion is raised it is the suspect time (past it: check at once); then the deadline', () => {
    const d = make();
    assert.equal(d.nextCheckAt(T0), T0 + 1500);
    assert.equal(d.nextCheckAt(T0 + 1499), T0 + 1500);
    assert.equal(d.nextCheckAt(T0 + 1500), T0 + 1500);
    assert.equal(d.check(T0 + 1500), 'suspect');
    assert.equal(d.nextCheckAt(T0 + 1500), T0 + 3500);
    assert.equal(d.nextCheckAt(T0 + 3000), T0 + 3500);
    assert.equal(d.nextCheckAt(T0 + 9000), T0 + 3500, 'overdue: check at once');
  });

  test('follows heard() and setIntervalMs()', () => {
    const d = make();
    d.heard(T0 + 400);
    assert.equal(d.nextCheckAt(T0 + 400), T0 + 1900);
    d.setIntervalMs(3000);
    assert.equal(d.nextCheckAt(T0 + 400), T0 + 3900);
    assert.equal(d.nextCheckAt(T0 + 3900), T0 + 3900);
    d.check(T0 + 3900);
    assert.equal(d.nextCheckAt(T0 + 3900), T0 + 400 + 9500);
  });

  test('driven on a ManualClock, a silent peer is suspected and declared dead at the exact milliseconds', () => {
    const clock = new ManualClock(T0);
    const log = drive(clock, make(), [], T0 + 60_000);
    assert.deepEqual(log, [
      ['suspect', T0 + 1500],
      ['dead', T0 + 3500],
    ]);
  });

  test('driven lazily, traffic postpones the verdicts to the exact milliseconds after the last frame', () => {
    const clock = new ManualClock(T0);
    const events = [{ at: T0 + 300 }, { at: T0 + 1400 }, { at: T0 + 2000 }];
    const log = drive(clock, make(), events, T0 + 60_000);
    assert.deepEqual(log, [
      ['suspect', T0 + 3500],
      ['dead', T0 + 5500],
    ]);
  });

  test('a frame after the suspect verdict rescues the peer', () => {
    const clock = new ManualClock(T0);
    const log = drive(clock, make(), [{ at: T0 + 2000 }], T0 + 60_000);
    assert.deepEqual(log, [
      ['suspect', T0 + 1500],
      ['suspect', T0 + 3500],
      ['dead', T0 + 5500],
    ]);
  });

  test('property: driven lazily, the peer dies exactly silenceLimit after the last frame heard', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 3000 }),
        fc.array(fc.integer({ min: 1, max: 4000 }), { maxLength: 30 }),
        (intervalMs, missBudget, graceMs, gaps) => {
          const d = new SilenceDetector(intervalMs, missBudget, graceMs, 0);
          const limit = intervalMs * missBudget + graceMs;
          // Keep only frames that arrive before the peer would be dead.
          const events: { at: number }[] = [];
          let last = 0;
          for (const g of gaps) {
            if (g >= limit) break;
            last += g;
            events.push({ at: last });
          }
          const log = drive(new ManualClock(0), d, events, last + limit + 10_000);
          assert.deepEqual(log.at(-1), ['dead', last + limit]);
          assert.equal(log.filter(([v]) => v === 'dead').length, 1);
          for (const [v, at] of log) {
            if (v === 'suspect') assert.ok(missBudget > 1, 'never suspect when suspect time = dead time');
            if (v !== 'dead') assert.ok(at < last + limit);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

test('a suspicion not yet raised is still checked when asked after its time (a re-arm before the wheel fired)', () => {
  const d = new SilenceDetector(1000, 3, 500, 0);
  const suspectAt = d.nextCheckAt(0);
  assert.ok(suspectAt < d.deadline());
  assert.equal(d.nextCheckAt(suspectAt + 10), suspectAt);
  assert.equal(d.check(suspectAt + 10), 'suspect');
  assert.equal(d.nextCheckAt(suspectAt + 10), d.deadline());
});
