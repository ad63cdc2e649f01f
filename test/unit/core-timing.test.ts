import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Backoff, seededRandom } from '../../src/core/backoff.js';
import { ManualClock } from '../../src/core/clock.js';
import { activeDetectionMs, clampInterval, DEFAULT_POLICY, negotiate, resolvePolicy, resolveProbes, silenceLimitMs, suspectAfterMs } from '../../src/core/heartbeat-policy.js';
import { HeartbeatScheduler } from '../../src/core/heartbeat-scheduler.js';
import { SilenceDetector } from '../../src/core/liveness-detector.js';
import { RttTracker } from '../../src/core/rtt-tracker.js';
import { TimerWheel, WheelTimer } from '../../src/core/timer-wheel.js';

// The pure core, to the millisecond, with injected time and no sleeping.

describe('TimerWheel', () => {
  const fired = (w: TimerWheel<string>, now: number) => {
    const out: string[] = [];
    w.advance(now, (t) => out.push(t));
    return out;
  };

  test('never fires early and fires within one tick, at 1 ms resolution exactly on time', () => {
    const w = new TimerWheel<string>({ tickMs: 1 });
    w.schedule(new WheelTimer('a'), 2500);
    assert.deepEqual(fired(w, 2499), []);
    assert.deepEqual(fired(w, 2500), ['a']);
    assert.equal(w.size, 0);
  });

  test('with a 50 ms tick a deadline fires at the first tick at or after it', () => {
    const w = new TimerWheel<string>({ tickMs: 50 });
    w.schedule(new WheelTimer('a'), 1001); // tick 21 (1050 ms)
    assert.deepEqual(fired(w, 1049), []);
    assert.deepEqual(fired(w, 1050), ['a']);
  });

  test('cancel removes a timer in O(1); rescheduling moves it', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const a = new WheelTimer('a');
    const b = new WheelTimer('b');
    w.schedule(a, 100);
    w.schedule(b, 100);
    w.cancel(a);
    assert.equal(a.scheduled, false);
    assert.equal(w.size, 1);
    w.schedule(b, 300);
    assert.equal(w.size, 1);
    assert.deepEqual(fired(w, 200), []);
    assert.deepEqual(fired(w, 300), ['b']);
  });

  test('timers many rounds away (beyond slots × tick) fire on their round, not before', () => {
    const w = new TimerWheel<string>({ tickMs: 10, slots: 8 }); // one round = 80 ms
    w.schedule(new WheelTimer('far'), 1000);
    w.schedule(new WheelTimer('near'), 40);
    for (let t = 10; t < 1000; t += 10) {
      const got = fired(w, t);
      if (t === 40) assert.deepEqual(got, ['near']);
      else assert.deepEqual(got, [], `nothing at ${t}`);
    }
    assert.deepEqual(fired(w, 1000), ['far']);
  });

  test('a callback may reschedule its own timer; it is not revisited in the same tick', () => {
    const w = new TimerWheel<string>({ tickMs: 5 });
    const t = new WheelTimer('x');
    w.schedule(t, 5);
    let n = 0;
    w.advance(100, (_x, timer) => {
      n++;
      if (n < 5) w.schedule(timer, timer === t ? 5 * (n + 1) : 0);
    });
    assert.equal(n, 5, 'fired at 5, 10, 15, 20, 25');
  });

  test('a deadline in the past fires at the next advance', () => {
    const w = new TimerWheel<string>({ tickMs: 10, startMs: 1000 });
    w.advance(1500, () => {});
    w.schedule(new WheelTimer('late'), 200);
    assert.deepEqual(fired(w, 1510), ['late']);
  });

  test('property: for any schedule and advance pattern, no timer fires early or more than one tick late', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 50 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 200 }),
        (tick, deadlines, steps) => {
          const w = new TimerWheel<number>({ tickMs: tick, slots: 16 });
          deadlines.forEach((d, i) => w.schedule(new WheelTimer(i), d));
          let now = 0;
          const check = (i: number) => {
            assert.ok(now >= deadlines[i], `timer ${i} fired at ${now} before ${deadlines[i]}`);
          };
          // advancing once per tick bounds lateness to one tick
          for (const s of steps) {
            for (const end = now + s; now < end; ) {
              now = Math.min(end, (Math.floor(now / tick) + 1) * tick);
              w.advance(now, (i) => {
                check(i);
                assert.ok(now - deadlines[i] < 2 * tick, `timer ${i} fired ${now - deadlines[i]} ms late (tick ${tick})`);
              });
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('Backoff', () => {
  test('ceilings double from initialDelayMs and cap at maxDelayMs; delays are full jitter below the ceiling', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, minDelayMs: 10, factor: 2 }, seededRandom(7));
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => b.ceiling(n)), [100, 200, 400, 800, 1000, 1000]);
    for (let i = 0; i < 200; i++) {
      const n = b.attempts;
      const d = b.next();
      assert.ok(d >= 10 && d <= b.ceiling(n), `attempt ${n}: ${d}`);
    }
  });

  test('the floor holds even when the random draw is 0; reset starts over', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, minDelayMs: 25 }, () => 0);
    assert.equal(b.next(), 25);
    b.next();
    assert.equal(b.attempts, 2);
    b.reset();
    assert.equal(b.attempts, 0);
    const top = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000 }, () => 0.9999);
    assert.deepEqual([top.next(), top.next(), top.next()], [100, 199, 399], 'default floor 100 ms');
  });

  test('seededRandom is deterministic and spreads a fleet across the window', () => {
    assert.equal(seededRandom(1)(), seededRandom(1)());
    const r = seededRandom(42);
    const delays = Array.from({ length: 10_000 }, () => new Backoff({ initialDelayMs: 30_000, maxDelayMs: 30_000, minDelayMs: 0 }, r).next());
    const buckets = new Array(10).fill(0);
    for (const d of delays) buckets[Math.floor(d / 3000)]++;
    assert.ok(buckets.every((n) => n > 800 && n < 1200), `even spread: ${buckets}`);
  });

  test('min above max is refused', () => {
    assert.throws(() => new Backoff({ minDelayMs: 10, maxDelayMs: 5 }), { code: 'LL_ERR_INVALID_OPTION' });
  });
});

describe('RttTracker', () => {
  test('a PONG is matched to the oldest outstanding PING; RFC 6298 smoothing', () => {
    const r = new RttTracker();
    assert.equal(r.pongReceived(5), undefined, 'nobody was waiting');
    r.pingSent(0);
    r.pingSent(10);
    const s1 = r.pongReceived(40)!;
    assert.deepEqual(s1, { sampleMs: 40, srttMs: 40, rttvarMs: 20, minMs: 40 });
    const s2 = r.pongReceived(30)!; // matched to the ping at 10
    assert.equal(s2.sampleMs, 20);
    assert.equal(s2.rttvarMs, 0.75 * 20 + 0.25 * 20);
    assert.equal(s2.srttMs, 0.875 * 40 + 0.125 * 20);
    assert.equal(s2.minMs, 20);
    assert.equal(r.outstanding, 0);
  });

  test('outstanding pings are bounded and can be forgotten', () => {
    const r = new RttTracker();
    for (let i = 0; i < 100; i++) r.pingSent(i);
    assert.ok(r.outstanding <= 16);
    r.clearOutstanding();
    assert.equal(r.outstanding, 0);
    assert.equal(r.current(), undefined);
  });
});

describe('heartbeat policy', () => {
  test('defaults and formulas', () => {
    assert.equal(silenceLimitMs(DEFAULT_POLICY), 25_000 * 2 + 5_000);
    assert.equal(suspectAfterMs(DEFAULT_POLICY), 30_000);
    assert.equal(activeDetectionMs(25_000, resolveProbes()), 25_000 + 5_000 + 2 * 2_000);
  });

  test('invalid policies are refused with LL_ERR_INVALID_OPTION', () => {
    for (const bad of [{ minIntervalMs: 0 }, { intervalMs: 1000, minIntervalMs: 2000 }, { intervalMs: 700_000 }, { missBudget: 0 }, { missBudget: 1.5 }, { graceMs: -1 }]) {
      assert.throws(() => resolvePolicy(bad), { code: 'LL_ERR_INVALID_OPTION' }, JSON.stringify(bad));
    }
    assert.throws(() => resolveProbes({ pongTimeoutMs: 0 }), { code: 'LL_ERR_INVALID_OPTION' });
  });

  test('probe waits must fit a timer and probeCount be a whole number (a longer wait fired after 1 ms, again and again; Infinity stopped the heartbeat)', () => {
    for (const bad of [{ pongTimeoutMs: Infinity }, { pongTimeoutMs: 2 ** 31 }, { probeIntervalMs: Infinity }, { probeIntervalMs: 3e9 }, { probeCount: Infinity }, { probeCount: 1.5 }, { probeCount: Number.NaN }, { pongTimeoutMs: Number.NaN }]) {
      assert.throws(() => resolveProbes(bad), { code: 'LL_ERR_INVALID_OPTION' }, JSON.stringify(bad));
    }
    assert.deepEqual(resolveProbes({ pongTimeoutMs: 2 ** 31 - 1, probeIntervalMs: 2 ** 31 - 1, probeCount: 0 }), { pongTimeoutMs: 2 ** 31 - 1, probeIntervalMs: 2 ** 31 - 1, probeCount: 0 });
  });

  test('negotiate clamps the requested interval and honours the direction only when allowed', () => {
    const p = resolvePolicy({ intervalMs: 30_000, minIntervalMs: 10_000, maxIntervalMs: 60_000 });
    assert.equal(negotiate(p, {}).intervalMs, 30_000);
    assert.equal(negotiate(p, { intervalMs: 1 }).intervalMs, 10_000);
    assert.equal(negotiate(p, { intervalMs: 1e9 }).intervalMs, 60_000);
    assert.equal(negotiate(p, { intervalMs: 45_000.4 }).intervalMs, 45_000);
    assert.equal(negotiate(p, { direction: 'server' }).direction, 'server');
    assert.equal(negotiate({ ...p, allowServerDirection: false }, { direction: 'server' }).direction, 'client');
    assert.equal(clampInterval(p, undefined), 30_000);
  });
});

describe('SilenceDetector (passive side)', () => {
  test('alive, then suspect once at interval + grace, then dead exactly at interval × missBudget + grace', () => {
    const d = new SilenceDetector(1000, 3, 200, 0);
    assert.equal(d.check(1199), 'alive');
    assert.equal(d.nextCheckAt(0), 1200);
    assert.equal(d.check(1200), 'suspect');
    assert.equal(d.check(1500), 'suspected', 'suspect is reported once per silence');
    assert.equal(d.nextCheckAt(1200), 3200);
    assert.equal(d.check(3199), 'suspected');
    assert.equal(d.check(3200), 'dead');
  });

  test('any frame resets the silence; a new interval moves the deadline', () => {
    const d = new SilenceDetector(1000, 2, 0, 0);
    d.heard(1500);
    assert.equal(d.deadline(), 3500);
    assert.equal(d.check(2500), 'suspect', 'a new silence is suspected anew');
    d.setIntervalMs(5000);
    assert.equal(d.deadline(), 11_500);
    assert.equal(d.check(3500), 'alive');
  });
});

describe('HeartbeatScheduler (active side)', () => {
  const probes = { pongTimeoutMs: 300, probeCount: 2, probeIntervalMs: 100 };

  test('an idle link pings each interval; an answered ping keeps it healthy', () => {
    const s = new HeartbeatScheduler(1000, probes, 0);
    assert.equal(s.nextWakeAt(), 1000);
    assert.equal(s.poll(999), 'none');
    assert.equal(s.poll(1000), 'ping');
    s.sent(1000);
    assert.equal(s.phase, 'awaiting');
    assert.equal(s.nextWakeAt(), 1300);
    assert.equal(s.received(1020), true, 'settled the outstanding ping');
    assert.equal(s.phase, 'healthy');
    assert.equal(s.nextWakeAt(), 2000);
    assert.equal(s.received(1500), false, 'nothing outstanding');
  });

  test('traffic in both directions suppresses heartbeats; either direction idle for an interval needs one', () => {
    const s = new HeartbeatScheduler(1000, probes, 0);
    for (let t = 400; t <= 4000; t += 400) {
      s.sent(t);
      s.received(t);
      assert.equal(s.poll(t), 'none');
    }
    const busySender = new HeartbeatScheduler(1000, probes, 0);
    busySender.sent(500);
    busySender.sent(900);
    assert.equal(busySender.poll(1000), 'ping', 'sending without hearing back proves nothing');
  });

  test('no answer: quick probes, then dead exactly at interval + pongTimeout + probeCount × probeInterval', () => {
    const s = new HeartbeatScheduler(1000, probes, 0);
    const actions: [number, string][] = [];
    for (let t = 0; t <= 2000; t++) {
      const a = s.poll(t);
      if (a === 'ping' || a === 'probe') s.sent(t);
      if (a !== 'none') actions.push([t, a]);
    }
    assert.deepEqual(actions, [[1000, 'ping'], [1300, 'probe'], [1400, 'probe'], [1500, 'dead']]);
    assert.equal(1500, activeDetectionMs(1000, probes));
    assert.equal(s.phase, 'dead');
    assert.equal(s.nextWakeAt(), Infinity);
  });

  test('checkNow starts quick probes at once, unless a check is already running', () => {
    const s = new HeartbeatScheduler(10_000, probes, 0);
    assert.equal(s.checkNow(50), true);
    assert.equal(s.checkNow(60), false);
    assert.equal(s.phase, 'suspect');
    assert.equal(s.poll(150), 'probe');
    assert.equal(s.poll(250), 'dead', 'dead after probeCount probes with no answer');
  });

  test('an infinite interval never pings (the passive client in server-sent mode)', () => {
    const s = new HeartbeatScheduler(Infinity, probes, 0);
    assert.equal(s.poll(1e12), 'none');
    assert.equal(s.nextWakeAt(), Infinity);
  });

  test('setIntervalMs takes effect on the next wake-up', () => {
    const s = new HeartbeatScheduler(1000, probes, 0);
    s.setIntervalMs(5000);
    assert.equal(s.poll(1000), 'none');
    assert.equal(s.nextWakeAt(), 5000);
  });
});

describe('ManualClock', () => {
  test('fires timers in time order, including timers set by timers', () => {
    const c = new ManualClock(0);
    const log: string[] = [];
    c.setTimeout(() => log.push(`b@${c.now()}`), 20);
    c.setTimeout(() => {
      log.push(`a@${c.now()}`);
      c.setTimeout(() => log.push(`c@${c.now()}`), 5);
    }, 10);
    const x = c.setTimeout(() => log.push('never'), 15);
    c.clearTimeout(x);
    c.advance(100);
    assert.deepEqual(log, ['a@10', 'c@15', 'b@20']);
    assert.equal(c.now(), 100);
  });

  // Node fires a delay that is NaN or past 2^31 − 1 ms after 1 ms. The manual clock took NaN for
  // never and 1e10 for 1e10 ms, so no clock-driven test could see a timer that overflowed: it
  // throws, naming the delay, where Node would have fired at once. A negative one fires now.
  test('refuses a delay Node would not keep (NaN, beyond 2^31 − 1 ms)', () => {
    const c = new ManualClock(0);
    for (const ms of [NaN, 2 ** 31, 1e10, Infinity]) {
      assert.throws(() => c.setTimeout(() => {}, ms), (e: Error) => e instanceof RangeError && e.message.includes(String(ms)), String(ms));
    }
    assert.equal(c.pendingTimers, 0);
    for (const ms of [-5, 0, 0.5, 2 ** 31 - 1]) c.setTimeout(() => {}, ms);
    assert.equal(c.pendingTimers, 4);
    c.advance(0);
    assert.equal(c.pendingTimers, 2, 'the negative delay fired now, with the 0 one');
  });
});
