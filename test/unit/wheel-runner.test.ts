import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { TimerWheel, WheelTimer } from '../../src/core/timer-wheel.js';
import { WheelRunner, type RunnerGuard } from '../../src/gateway/wheel-runner.js';

// The runner's invariant: one pending timer, one armed per tick, whatever the
// expiry callbacks do. Counted on the manual clock, never timed.

interface Periodic {
  timer: WheelTimer<Periodic>;
  periodMs: number;
  fired: number;
}

/** Periodic targets that reschedule themselves from inside the expiry and kick the runner, as connections do. */
function setup(n: number, periodMs: (i: number) => number, guard: RunnerGuard | null = null) {
  const clock = new ManualClock(0);
  const wheel = new TimerWheel<Periodic>({ tickMs: 50, startMs: 0 });
  let runner: WheelRunner<Periodic>;
  const onExpire = (p: Periodic) => {
    p.fired++;
    wheel.schedule(p.timer, clock.now() + p.periodMs);
    runner.kick();
  };
  runner = new WheelRunner(wheel, clock, clock, onExpire, guard);
  const targets: Periodic[] = [];
  for (let i = 0; i < n; i++) {
    const p: Periodic = { timer: undefined as unknown as WheelTimer<Periodic>, periodMs: periodMs(i), fired: 0 };
    p.timer = new WheelTimer(p);
    targets.push(p);
    wheel.schedule(p.timer, (i * 37) % p.periodMs);
    runner.kick();
  }
  return { clock, wheel, runner, targets };
}

/** Per window of `windowMs`: timers armed and pending, wheel ticks and visits, expiries. */
function windows(s: ReturnType<typeof setup>, windowMs: number, count: number) {
  const out: { armed: number; pending: number; ticks: number; visited: number; expired: number; arms: number }[] = [];
  for (let k = 0; k < count; k++) {
    const a = { armed: s.clock.armedCount, ...s.wheel.stats, arms: s.runner.stats.arms };
    for (let t = 0; t < windowMs; t += 50) {
      s.clock.advance(50);
      // Fail fast: leaked chains would make the fake clock itself quadratic.
      assert.ok(s.clock.pendingTimers <= 1, `${s.clock.pendingTimers} timers pending: a timer chain leaks`);
    }
    out.push({
      armed: s.clock.armedCount - a.armed,
      pending: s.clock.pendingTimers,
      ticks: s.wheel.stats.ticks - a.ticks,
      visited: s.wheel.stats.visited - a.visited,
      expired: s.wheel.stats.expired - a.expired,
      arms: s.runner.stats.arms - a.arms,
    });
  }
  return out;
}

describe('WheelRunner: one timer, whatever the callbacks do', () => {
  test('callbacks that reschedule and kick during expiry leave exactly one pending timer', () => {
    const s = setup(100, () => 1000);
    for (let t = 0; t < 10_000; t += 50) {
      s.clock.advance(50);
      assert.equal(s.clock.pendingTimers, 1, `at ${s.clock.now()} ms`);
    }
    assert.ok(s.runner.pending);
    assert.ok(s.targets.every((p) => p.fired === 10), 'each target fired once per period');
  });

  test('work per window is the same in the last window as in the first (1 s periods, 1,000 targets, 60 windows)', () => {
    const s = setup(1000, () => 1000);
    const w = windows(s, 1000, 60);
    const first = w[1];
    const last = w[w.length - 1];
    assert.equal(first.ticks, 20, '20 ticks of 50 ms per second');
    assert.equal(first.arms, 20, 'one timer armed per tick');
    for (const x of w.slice(1)) {
      assert.equal(x.pending, 1, 'one pending timer at every window boundary');
      assert.equal(x.arms, first.arms);
      assert.equal(x.armed, first.armed);
      assert.equal(x.expired, 1000);
    }
    assert.equal(last.visited, first.visited);
  });

  test('the same at 30 s periods with mixed periods, 2,000 targets, 40 windows of 30 s', () => {
    const s = setup(2000, (i) => 30_000 + (i % 7) * 1_000);
    const w = windows(s, 30_000, 40);
    const first = w[2];
    for (const x of w.slice(2)) {
      assert.equal(x.pending, 1);
      assert.equal(x.arms, 600, 'one arm per 50 ms tick');
      assert.equal(x.armed, x.arms, 'the runner is the only timer');
    }
    const last = w[w.length - 1];
    // Mixed periods drift against the window, so expiries per window vary a little; visits follow them, nothing more.
    assert.ok(Math.abs(last.expired - first.expired) <= 0.1 * first.expired, `${last.expired} vs ${first.expired}`);
    assert.equal(last.visited, last.expired, 'no timer spans a revolution: every visit is an expiry');
  });

  test('a deferred expiry (after a stall) holds the one purpose: kick() during it arms nothing', () => {
    const deferred: (() => void)[] = [];
    let stall = true;
    const guard: RunnerGuard = {
      tick: () => (stall ? 500 : 0),
      afterIo: (fn) => deferred.push(fn),
    };
    const s = setup(10, () => 1000, guard);
    s.clock.advance(50);
    assert.equal(deferred.length, 1, 'expiry deferred until sockets are read');
    assert.equal(s.clock.pendingTimers, 0);
    s.runner.kick();
    assert.equal(s.clock.pendingTimers, 0, 'kick while deferred arms no second timer');
    stall = false;
    deferred.shift()!();
    assert.equal(s.clock.pendingTimers, 1);
    s.clock.advance(5000);
    assert.equal(s.clock.pendingTimers, 1);
    assert.equal(deferred.length, 0);
  });

  test('a throwing callback does not stop the runner or orphan a timer', () => {
    const clock = new ManualClock(0);
    const wheel = new TimerWheel<number>({ tickMs: 50, startMs: 0 });
    const runner = new WheelRunner(wheel, clock, clock, (n, t) => {
      wheel.schedule(t, clock.now() + 100);
      runner.kick();
      if (n === 1) throw new Error('boom');
    });
    wheel.schedule(new WheelTimer(1), 100);
    runner.kick();
    assert.throws(() => clock.advance(100), /boom/);
    assert.equal(clock.pendingTimers, 1, 're-armed despite the throw');
    runner.stop();
    assert.equal(clock.pendingTimers, 0);
  });

  test('stop() clears the timer and kick() after it arms nothing', () => {
    const s = setup(10, () => 1000);
    s.runner.stop();
    assert.equal(s.clock.pendingTimers, 0);
    s.runner.kick();
    s.clock.advance(5000);
    assert.equal(s.clock.pendingTimers, 0);
  });
});

test('a loop block while the runner sat idle (empty wheel) is not recorded as a stall at its next tick: it delayed no deadline', async () => {
  // The runner runs on the manual clock; only the event-loop monitor is real, and it sees one real
  // 300 ms block of this process, before any timer is on the wheel.
  const { EventLoopGuard } = await import('../../src/gateway/event-loop-guard.js');
  const guard = new EventLoopGuard({ enabled: true, thresholdMs: 200 });
  try {
    const clock = new ManualClock(1_000_000);
    const wheel = new TimerWheel<string>({ tickMs: 50, startMs: clock.now() });
    const runner = new WheelRunner(wheel, clock, clock, () => {}, guard);
    const block = (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    // Two turns of the loop: the monitor's overdue timer runs (its first run only starts its count).
    const turns = async () => {
      for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
    };
    block(20);
    await turns();
    block(300);
    await turns();
    assert.ok(guard.stats().delayMaxMs >= 250, `the monitor saw the block: ${JSON.stringify(guard.stats())}`);
    // Long after, a connection comes: its timer goes on the wheel and the runner wakes.
    clock.advance(60_000);
    wheel.schedule(new WheelTimer('conn'), clock.now() + 1000);
    runner.kick();
    clock.advance(50); // the runner's first tick, on time
    assert.equal(guard.stalls.count, 0, `recorded ${JSON.stringify(guard.stats())}`);
    assert.equal(guard.stalledWithin(clock.now() - 1000, clock.now()), 0, 'no silence ending now is excused');
    runner.stop();
  } finally {
    guard.stop();
  }
});
