import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { TimerWheel, WheelTimer } from '../../src/core/timer-wheel.js';
import { WheelRunner } from '../../src/gateway/wheel-runner.js';

// The wheel reads no clock: every test hands it the time. No sleeping.

/** Advances the wheel to `now` and returns the targets that expired, in firing order. */
function fire<T>(w: TimerWheel<T>, now: number): T[] {
  const out: T[] = [];
  const n = w.advance(now, (t) => out.push(t));
  assert.equal(n, out.length, 'advance returns the number of expired timers');
  return out;
}

/** Advances every `step` ms from `from` to `to` and records when each target fired. */
function driveEvery<T>(w: TimerWheel<T>, from: number, to: number, step: number): Map<T, number> {
  const firedAt = new Map<T, number>();
  for (let now = from; now <= to; now += step) {
    w.advance(now, (t) => {
      assert.equal(firedAt.has(t), false, `${String(t)} fired twice`);
      firedAt.set(t, now);
    });
  }
  return firedAt;
}

describe('TimerWheel: construction', () => {
  test('defaults to a 50 ms tick and an empty wheel', () => {
    const w = new TimerWheel<string>();
    assert.equal(w.tickMs, 50);
    assert.equal(w.size, 0);
    assert.equal(w.nextTickAt(), 50);
  });

  test('refuses a tick that is not positive', () => {
    for (const tickMs of [0, -1, Number.NaN]) {
      assert.throws(() => new TimerWheel({ tickMs }), { code: 'LL_ERR_INVALID_OPTION' }, `tickMs ${tickMs}`);
    }
  });

  test('refuses a tick beyond a timer, and a slot count whose power of two is not an int32 (the constructor looped forever)', () => {
    for (const tickMs of [Infinity, 2 ** 31]) {
      assert.throws(() => new TimerWheel({ tickMs }), { code: 'LL_ERR_INVALID_OPTION' }, `tickMs ${tickMs}`);
    }
    for (const slots of [2 ** 31, 2 ** 31 + 1, Infinity, 2 ** 40]) {
      assert.throws(() => new TimerWheel({ slots }), { code: 'LL_ERR_INVALID_OPTION' }, `slots ${slots}`);
    }
  });

  test('refuses a start time that is not a finite number (NaN left every timer unexpired for ever)', () => {
    for (const startMs of [Number.NaN, Infinity, -Infinity]) {
      assert.throws(() => new TimerWheel({ startMs }), { code: 'LL_ERR_INVALID_OPTION' }, `startMs ${startMs}`);
    }
    // A finite start still works.
    const w = new TimerWheel<string>({ tickMs: 10, startMs: 1_000 });
    w.schedule(new WheelTimer('x'), 1_015);
    const fired: string[] = [];
    w.advance(1_010, (t) => fired.push(t));
    assert.equal(fired.length, 0);
    w.advance(1_020, (t) => fired.push(t));
    assert.deepEqual(fired, ['x']);
  });

  test('rounds the slot count up to a power of two (slot = tick & (slots - 1))', () => {
    const w = new TimerWheel<string>({ tickMs: 1, slots: 5 }); // 8 slots
    const t = new WheelTimer('x');
    w.schedule(t, 13); // tick 13 -> slot 5, one full round before it
    assert.equal(t.slot, 13 & 7);
    assert.equal(t.tick, 13);
    const exact = new TimerWheel<string>({ tickMs: 1, slots: 16 });
    const u = new WheelTimer('u');
    exact.schedule(u, 13);
    assert.equal(u.slot, 13);
    assert.equal(u.tick, 13);
  });

  test('startMs: ticks before it are never processed, and nextTickAt follows it', () => {
    const w = new TimerWheel<string>({ tickMs: 10, startMs: 1234 });
    assert.equal(w.nextTickAt(), 1240);
    assert.deepEqual(fire(w, 1000), [], 'advancing backwards does nothing');
    assert.equal(w.nextTickAt(), 1240);
  });

  test('a new WheelTimer is unscheduled and carries its target', () => {
    const target = { id: 1 };
    const t = new WheelTimer(target);
    assert.equal(t.target, target);
    assert.equal(t.scheduled, false);
    assert.equal(t.tick, -1);
  });
});

describe('TimerWheel: accuracy', () => {
  test('1 ms tick: fires exactly at the deadline, never 1 ms before', () => {
    for (const d of [1, 2, 7, 999, 1000, 1001, 1023, 1024, 1025, 2048, 5000]) {
      const w = new TimerWheel<number>({ tickMs: 1 });
      w.schedule(new WheelTimer(d), d);
      assert.deepEqual(fire(w, d - 1), [], `deadline ${d} not at ${d - 1}`);
      assert.equal(w.size, 1);
      assert.deepEqual(fire(w, d), [d], `deadline ${d} at ${d}`);
      assert.equal(w.size, 0);
    }
  });

  test('50 ms tick: a deadline fires at the first tick boundary at or after it', () => {
    const cases: [deadline: number, firesAt: number][] = [
      [1000, 1000], // on a boundary: exactly on time
      [1001, 1050], // just after: 49 ms late, still within one tick
      [1049, 1050],
      [1050, 1050],
      [1, 50],
    ];
    for (const [d, at] of cases) {
      const w = new TimerWheel<number>({ tickMs: 50 });
      w.schedule(new WheelTimer(d), d);
      assert.deepEqual(fire(w, at - 1), [], `deadline ${d} not at ${at - 1}`);
      assert.deepEqual(fire(w, at), [d], `deadline ${d} at ${at}`);
    }
  });

  test('advanced every millisecond, a timer fires never early and less than one tick late', () => {
    const w = new TimerWheel<number>({ tickMs: 20, slots: 16 });
    const deadlines = [0, 1, 19, 20, 21, 39, 40, 317, 319, 320, 321, 640, 641, 999];
    // Schedule relative to a wheel already at 0: a deadline of 0 is due at tick 1.
    deadlines.forEach((d, i) => w.schedule(new WheelTimer(i), d));
    const firedAt = driveEvery(w, 0, 1100, 1);
    deadlines.forEach((d, i) => {
      const at = firedAt.get(i);
      assert.ok(at !== undefined, `timer ${i} (deadline ${d}) fired`);
      if (d > 0) {
        assert.ok(at >= d, `timer ${i} fired at ${at}, before its deadline ${d}`);
        assert.ok(at - d < 20, `timer ${i} fired ${at - d} ms late`);
        assert.equal(at, Math.ceil(d / 20) * 20);
      } else {
        assert.equal(at, 20, 'a deadline at the current tick waits for the next one');
      }
    });
  });

  test('one large advance fires every due timer, tick by tick, and leaves later ones', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    w.schedule(new WheelTimer('c'), 300);
    w.schedule(new WheelTimer('a'), 100);
    w.schedule(new WheelTimer('b'), 200);
    w.schedule(new WheelTimer('d'), 301);
    assert.deepEqual(fire(w, 300), ['a', 'b', 'c'], 'in deadline order across ticks');
    assert.equal(w.size, 1);
    assert.equal(w.nextTickAt(), 310);
    assert.deepEqual(fire(w, 309), []);
    assert.deepEqual(fire(w, 310), ['d']);
  });

  test('advance to the same or an earlier time is a no-op', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    w.schedule(new WheelTimer('a'), 500);
    fire(w, 200);
    assert.deepEqual(fire(w, 200), []);
    assert.deepEqual(fire(w, 100), []);
    assert.equal(w.nextTickAt(), 210);
    assert.deepEqual(fire(w, 500), ['a']);
  });

  test('fractional ticks and times are handled (floor for now, ceil for deadlines)', () => {
    const w = new TimerWheel<string>({ tickMs: 2.5 });
    w.schedule(new WheelTimer('a'), 6); // ceil(6 / 2.5) = tick 3 = 7.5 ms
    assert.deepEqual(fire(w, 7.4), []);
    assert.deepEqual(fire(w, 7.5), ['a']);
  });
});

describe('TimerWheel: cancel', () => {
  test('cancel unlinks the timer, clears it, and shrinks size', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const a = new WheelTimer('a');
    w.schedule(a, 100);
    assert.equal(a.scheduled, true);
    assert.equal(w.deadlineOf(a), 100);
    assert.equal(w.size, 1);
    w.cancel(a);
    assert.equal(a.scheduled, false);
    assert.equal(w.deadlineOf(a), -1);
    assert.equal(a.prev, null);
    assert.equal(a.next, null);
    assert.equal(w.size, 0);
    assert.deepEqual(fire(w, 10_000), []);
  });

  test('cancelling an unscheduled, already cancelled or already fired timer is a harmless no-op', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const a = new WheelTimer('a');
    const b = new WheelTimer('b');
    w.cancel(a);
    assert.equal(w.size, 0);
    w.schedule(a, 50);
    w.schedule(b, 80);
    w.cancel(a);
    w.cancel(a);
    assert.equal(w.size, 1);
    assert.deepEqual(fire(w, 80), ['b']);
    w.cancel(b);
    assert.equal(w.size, 0);
    const c = new WheelTimer('c');
    w.schedule(c, 200);
    assert.deepEqual(fire(w, 200), ['c'], 'the wheel still works after the no-ops');
  });

  test('cancel works at the head, middle and tail of a crowded slot', () => {
    // Slots are LIFO lists: the last scheduled is the head.
    for (const victim of [0, 2, 4]) {
      const w = new TimerWheel<number>({ tickMs: 10 });
      const ts = [0, 1, 2, 3, 4].map((i) => new WheelTimer(i));
      for (const t of ts) w.schedule(t, 100);
      w.cancel(ts[victim]);
      assert.equal(w.size, 4);
      const got = fire(w, 100).sort();
      assert.deepEqual(got, [0, 1, 2, 3, 4].filter((i) => i !== victim));
    }
  });

  test('cancel of a timer many rounds away', () => {
    const w = new TimerWheel<string>({ tickMs: 1, slots: 4 });
    const far = new WheelTimer('far');
    w.schedule(far, 1000);
    driveEvery(w, 1, 500, 1);
    w.cancel(far);
    assert.equal(w.size, 0);
    assert.deepEqual(fire(w, 5000), []);
  });

  test('cancelling half of 100k timers is exact', () => {
    const w = new TimerWheel<number>({ tickMs: 1, slots: 64 });
    const ts = Array.from({ length: 100_000 }, (_, i) => new WheelTimer(i));
    ts.forEach((t, i) => w.schedule(t, 1 + (i % 5000)));
    for (let i = 0; i < ts.length; i += 2) w.cancel(ts[i]);
    assert.equal(w.size, 50_000);
    const got = fire(w, 5000);
    assert.equal(got.length, 50_000);
    assert.ok(got.every((i) => i % 2 === 1));
    assert.equal(w.size, 0);
  });
});

describe('TimerWheel: timers beyond one revolution', () => {
  test('default wheel (1024 slots × 50 ms = 51.2 s): a deadline three revolutions away fires on its round', () => {
    const w = new TimerWheel<string>();
    const revolution = 1024 * 50;
    const d = 3 * revolution + 7; // not a tick boundary: due at the next one
    const t = new WheelTimer('far');
    w.schedule(t, d);
    assert.equal(t.tick, 3 * 1024 + 1, 'its tick, three revolutions on');
    const firedAt = driveEvery(w, 50, d + 100, 50);
    assert.equal(firedAt.get('far'), 3 * revolution + 50);
  });

  test('same slot, different rounds: each fires on its own revolution', () => {
    const w = new TimerWheel<string>({ tickMs: 10, slots: 8 }); // revolution 80 ms
    w.schedule(new WheelTimer('r0'), 30);
    w.schedule(new WheelTimer('r1'), 110);
    w.schedule(new WheelTimer('r5'), 430);
    const firedAt = driveEvery(w, 0, 1000, 10);
    assert.deepEqual([...firedAt], [['r0', 30], ['r1', 110], ['r5', 430]]);
  });

  test('a far timer survives one big advance that stops short of it, then fires exactly', () => {
    const w = new TimerWheel<string>({ tickMs: 10, slots: 8 });
    w.schedule(new WheelTimer('far'), 10_000);
    w.schedule(new WheelTimer('keep-busy'), 9_990);
    assert.deepEqual(fire(w, 9_989), []);
    assert.deepEqual(fire(w, 9_990), ['keep-busy']);
    assert.deepEqual(fire(w, 9_999), []);
    assert.deepEqual(fire(w, 10_000), ['far']);
  });

  test('a deadline exactly one revolution ahead (tick = processed + slots) fires on time', () => {
    const w = new TimerWheel<string>({ tickMs: 1, slots: 8 });
    fire(w, 5);
    w.schedule(new WheelTimer('x'), 13); // tick 13 = processed (5) + 8, same slot as tick 5
    assert.deepEqual(fire(w, 12), []);
    assert.deepEqual(fire(w, 13), ['x']);
  });

  // A tick-by-tick walk over 1e12 ticks would never finish: the test itself is the check.
  test('an empty wheel skips ahead, and scheduling after a huge jump is exact', () => {
    const w = new TimerWheel<string>({ tickMs: 1, slots: 16 });
    assert.deepEqual(fire(w, 1e12), []);
    assert.equal(w.nextTickAt(), 1e12 + 1);
    w.schedule(new WheelTimer('x'), 1e12 + 100);
    assert.deepEqual(fire(w, 1e12 + 99), []);
    assert.deepEqual(fire(w, 1e12 + 100), ['x']);
  });
});

describe('TimerWheel: work after idle time and stalls', () => {
  // The empty wheel skips ahead only when it is advanced while empty. A gateway's runner sleeps while
  // the wheel is empty, so the first timer after a quiet night is scheduled on a wheel whose last
  // processed tick is hours old: its advance walked every tick since (a month: 52 million ticks, 200 ms).
  test('a timer scheduled after a long idle time: the advance that catches up does work for a revolution, not for the time passed', () => {
    const w = new TimerWheel<string>({ tickMs: 50 });
    w.schedule(new WheelTimer('a'), 1000);
    assert.deepEqual(fire(w, 1000), ['a']);
    const month = 30 * 86_400_000;
    w.schedule(new WheelTimer('b'), month + 30_000);
    const before = w.stats.ticks;
    assert.deepEqual(fire(w, month), []);
    assert.ok(w.stats.ticks - before <= 2 * 1024, `${w.stats.ticks - before} ticks walked for one timer`);
    assert.equal(w.nextTickAt(), month + 50);
    assert.deepEqual(fire(w, month + 29_999), []);
    assert.deepEqual(fire(w, month + 30_000), ['b']);
  });

  test('a long stall with timers due throughout: each fires once, at its tick, in order, and the work is not per tick passed', () => {
    const w = new TimerWheel<number>({ tickMs: 10, slots: 64 });
    const deadlines = [5, 640, 641, 5_000, 100_000, 100_005, 3_600_000, 86_400_000, 86_400_010];
    deadlines.forEach((d, i) => w.schedule(new WheelTimer(i), d));
    const ticks: number[] = [];
    const got = fire(w, 86_400_000);
    w.advance(86_400_000, () => ticks.push(0));
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(ticks, []);
    assert.ok(w.stats.ticks < 20 * 64, `${w.stats.ticks} ticks walked over a day`);
    assert.deepEqual(fire(w, 86_400_010), [8]);
  });

  test('a stall: callbacks that reschedule into the stalled stretch still fire at their tick, in order', () => {
    const w = new TimerWheel<string>({ tickMs: 10, slots: 16 });
    const order: [string, number][] = [];
    const a = new WheelTimer('a');
    const b = new WheelTimer('b');
    w.schedule(a, 100);
    w.advance(1_000_000, (t, timer) => {
      order.push([t, w.nextTickAt() - 10]);
      if (t === 'a') w.schedule(b, 50_000); // inside the stretch being caught up
      if (t === 'b') w.schedule(timer, 2_000_000);
    });
    assert.deepEqual(order, [['a', 100], ['b', 50_000]]);
    assert.equal(w.size, 1);
  });
});

describe('TimerWheel: rescheduling', () => {
  test('schedule on a scheduled timer moves it (later and earlier) without changing size', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const a = new WheelTimer('a');
    w.schedule(a, 100);
    w.schedule(a, 300);
    assert.equal(w.size, 1);
    assert.equal(w.deadlineOf(a), 300);
    assert.deepEqual(fire(w, 200), []);
    w.schedule(a, 250);
    assert.equal(w.size, 1);
    assert.deepEqual(fire(w, 249), []);
    assert.deepEqual(fire(w, 250), ['a']);
    assert.deepEqual(fire(w, 1000), [], 'fired once only');
  });

  test('a fired timer can be scheduled again', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const a = new WheelTimer('a');
    w.schedule(a, 10);
    assert.deepEqual(fire(w, 10), ['a']);
    assert.equal(a.scheduled, false);
    assert.equal(w.deadlineOf(a), -1);
    w.schedule(a, 50);
    assert.deepEqual(fire(w, 49), []);
    assert.deepEqual(fire(w, 50), ['a']);
  });

  test('the expiring timer is unscheduled inside its own callback', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const a = new WheelTimer('a');
    w.schedule(a, 10);
    w.advance(10, (_t, timer) => {
      assert.equal(timer, a);
      assert.equal(timer.scheduled, false);
      assert.equal(w.deadlineOf(timer), -1);
      assert.equal(w.size, 0);
    });
  });

  test('a callback rescheduling its own timer (a periodic timer) fires once per period, on time', () => {
    const w = new TimerWheel<string>({ tickMs: 5, slots: 4 }); // 20 ms revolution
    const t = new WheelTimer('p');
    const period = 35;
    w.schedule(t, period);
    const times: number[] = [];
    for (let now = 0; now <= 400; now++) {
      w.advance(now, (_x, timer) => {
        times.push(now);
        w.schedule(timer, now + period);
      });
    }
    // Deadlines 35, 70, 105, ... each fires at the tick that reaches it.
    assert.deepEqual(times, [35, 70, 105, 140, 175, 210, 245, 280, 315, 350, 385]);
    assert.equal(w.size, 1);
  });

  test('a callback rescheduling its timer to an already-passed time gets it next tick, never the same tick', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    const t = new WheelTimer('x');
    w.schedule(t, 10);
    const ticks: number[] = [];
    w.advance(100, (_x, timer) => {
      ticks.push(w.nextTickAt() - w.tickMs);
      if (ticks.length < 4) w.schedule(timer, 0);
    });
    assert.deepEqual(ticks, [10, 20, 30, 40]);
  });

  test('a callback rescheduling its timer one revolution ahead into its own slot is not revisited now', () => {
    const w = new TimerWheel<string>({ tickMs: 1, slots: 8 });
    const t = new WheelTimer('x');
    w.schedule(t, 3);
    const times: number[] = [];
    w.advance(30, (_x, timer) => {
      times.push(w.nextTickAt() - 1);
      if (times.length < 3) w.schedule(timer, times.at(-1)! + 8); // same slot, next revolution
    });
    assert.deepEqual(times, [3, 11, 19]);
  });

  test('a callback may cancel another timer still waiting in the same slot', () => {
    // Regression: the detached slot list used to lose every timer after the
    // cancelled one, fire the cancelled timer anyway, and miscount size.
    const w = new TimerWheel<string>({ tickMs: 10 });
    const ts = ['a', 'b', 'c', 'd'].map((n) => new WheelTimer(n));
    for (const t of ts) w.schedule(t, 100); // slot list: d c b a
    const got = fire(w, 100);
    assert.deepEqual(got.sort(), ['a', 'b', 'c', 'd'], 'baseline');

    for (const victim of ['a', 'b', 'c']) {
      const w2 = new TimerWheel<string>({ tickMs: 10 });
      const us = new Map(['a', 'b', 'c', 'd'].map((n) => [n, new WheelTimer(n)]));
      for (const u of us.values()) w2.schedule(u, 100);
      const out: string[] = [];
      w2.advance(100, (n) => {
        out.push(n);
        if (n === 'd') w2.cancel(us.get(victim)!);
      });
      assert.deepEqual(out.sort(), ['a', 'b', 'c', 'd'].filter((n) => n !== victim), `cancel ${victim} from d's callback`);
      assert.equal(w2.size, 0);
      assert.equal(us.get(victim)!.scheduled, false);
      for (const u of us.values()) assert.equal(u.scheduled, false);
      assert.deepEqual(fire(w2, 10_000), []);
    }
  });

  test('a callback may reschedule another timer still waiting in the same slot', () => {
    for (const victim of ['a', 'b', 'c']) {
      const w = new TimerWheel<string>({ tickMs: 10 });
      const us = new Map(['a', 'b', 'c', 'd'].map((n) => [n, new WheelTimer(n)]));
      for (const u of us.values()) w.schedule(u, 100);
      const log: [string, number][] = [];
      const onExpire = (n: string) => {
        log.push([n, w.nextTickAt() - w.tickMs]);
        if (n === 'd') w.schedule(us.get(victim)!, 500);
      };
      w.advance(100, onExpire);
      assert.deepEqual(log.map(([n]) => n).sort(), ['a', 'b', 'c', 'd'].filter((n) => n !== victim), `move ${victim}`);
      assert.equal(w.size, 1);
      assert.equal(w.deadlineOf(us.get(victim)!), 500);
      w.advance(499, onExpire);
      assert.equal(log.length, 3, 'the moved timer does not fire early');
      w.advance(500, onExpire);
      assert.deepEqual(log.at(-1), [victim, 500]);
      assert.equal(w.size, 0);
    }
  });

  test('a callback may schedule, cancel and reschedule timers in other slots', () => {
    const w = new TimerWheel<string>({ tickMs: 10, slots: 8 });
    const a = new WheelTimer('a');
    const b = new WheelTimer('b');
    const c = new WheelTimer('c');
    const fresh = new WheelTimer('fresh');
    w.schedule(a, 10);
    w.schedule(b, 50);
    w.schedule(c, 60);
    const log: string[] = [];
    w.advance(1000, (n) => {
      log.push(`${n}@${w.nextTickAt() - w.tickMs}`);
      if (n === 'a') {
        w.cancel(b);
        w.schedule(c, 30);
        w.schedule(fresh, 250);
      }
    });
    assert.deepEqual(log, ['a@10', 'c@30', 'fresh@250']);
    assert.equal(w.size, 0);
  });

  test('a callback may call advance again without losing the rest of its slot', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    for (const n of ['a', 'b', 'c']) w.schedule(new WheelTimer(n), 100);
    w.schedule(new WheelTimer('later'), 200);
    const out: string[] = [];
    let nested = false;
    const onExpire = (n: string) => {
      out.push(n);
      if (!nested) {
        nested = true;
        w.advance(150, onExpire); // nothing due in (100, 150]
      }
    };
    w.advance(100, onExpire);
    assert.deepEqual(out.sort(), ['a', 'b', 'c']);
    assert.equal(w.size, 1);
    assert.deepEqual(fire(w, 200), ['later']);
  });
});

describe('TimerWheel: many timers and past deadlines', () => {
  test('many timers in one slot all fire on the same tick', () => {
    const w = new TimerWheel<number>({ tickMs: 50 });
    const n = 10_000;
    for (let i = 0; i < n; i++) w.schedule(new WheelTimer(i), 1000 + (i % 50)); // all round up to 1000 or 1050
    assert.equal(w.size, n);
    assert.deepEqual(fire(w, 999), []);
    const at1000 = fire(w, 1000);
    assert.equal(at1000.length, n / 50, 'only the deadline 1000 ones at 1000');
    const at1050 = fire(w, 1050);
    assert.equal(at1050.length, n - n / 50);
    assert.equal(new Set([...at1000, ...at1050]).size, n, 'each exactly once');
    assert.equal(w.size, 0);
  });

  test('size counts scheduled timers through schedule, reschedule, cancel and expiry', () => {
    const w = new TimerWheel<number>({ tickMs: 10, slots: 4 });
    const ts = Array.from({ length: 20 }, (_, i) => new WheelTimer(i));
    ts.forEach((t, i) => w.schedule(t, 10 * (i + 1)));
    assert.equal(w.size, 20);
    ts.slice(0, 5).forEach((t) => w.schedule(t, 1000));
    assert.equal(w.size, 20);
    ts.slice(5, 10).forEach((t) => w.cancel(t));
    assert.equal(w.size, 15);
    assert.equal(fire(w, 150).length, 5); // 11..15
    assert.equal(w.size, 10);
    assert.equal(fire(w, 1000).length, 10);
    assert.equal(w.size, 0);
  });

  test('a deadline in the past fires at the next tick, not on an advance that processes no new tick', () => {
    const w = new TimerWheel<string>({ tickMs: 10, startMs: 1000 });
    fire(w, 1505);
    assert.equal(w.nextTickAt(), 1510);
    const t = new WheelTimer('late');
    w.schedule(t, 200);
    assert.equal(t.tick, 151, 'due at the first tick not yet processed');
    assert.equal(w.deadlineOf(t), 1510);
    assert.deepEqual(fire(w, 1509), [], 'tick 150 was already processed');
    assert.deepEqual(fire(w, 1510), ['late'], 'at most one tick late from the time it was scheduled');
  });

  test('a deadline before startMs fires at the first tick after start', () => {
    const w = new TimerWheel<string>({ tickMs: 10, startMs: 1000 });
    w.schedule(new WheelTimer('old'), 0);
    w.schedule(new WheelTimer('now'), 1000);
    assert.deepEqual(fire(w, 1009), []);
    assert.deepEqual(fire(w, 1010).sort(), ['now', 'old']);
  });

  test('a negative deadline is treated as the past', () => {
    const w = new TimerWheel<string>({ tickMs: 10 });
    w.schedule(new WheelTimer('neg'), -500);
    assert.deepEqual(fire(w, 10), ['neg']);
  });
});

describe('TimerWheel: driven by a ManualClock, as the gateway does', () => {
  test('a runner that wakes at nextTickAt fires each deadline at its tick boundary', () => {
    const clock = new ManualClock(0);
    const w = new TimerWheel<string>({ tickMs: 50, slots: 16, startMs: clock.now() });
    const firedAt: [string, number][] = [];
    let armed = false;
    const run = () => {
      armed = false;
      w.advance(clock.now(), (t) => firedAt.push([t, clock.now()]));
      kick();
    };
    const kick = () => {
      if (armed || w.size === 0) return;
      armed = true;
      clock.setTimeout(run, Math.max(1, w.nextTickAt() - clock.now()));
    };
    w.schedule(new WheelTimer('a'), 120);
    w.schedule(new WheelTimer('b'), 2_000);
    w.schedule(new WheelTimer('c'), 30_001);
    kick();
    clock.advance(29_999);
    assert.deepEqual(firedAt, [['a', 150], ['b', 2000]]);
    clock.advance(60_000);
    assert.deepEqual(firedAt.at(-1), ['c', 30_050]);
    assert.equal(clock.pendingTimers, 0, 'the runner sleeps once the wheel is empty');
  });
});

describe('TimerWheel: properties', () => {
  type Op =
    | { kind: 'schedule'; id: number; deadline: number }
    | { kind: 'cancel'; id: number }
    | { kind: 'advance'; by: number };

  const opArb = (ids: number, span: number): fc.Arbitrary<Op> =>
    fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('schedule' as const), id: fc.nat(ids - 1), deadline: fc.integer({ min: -50, max: span }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), id: fc.nat(ids - 1) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), by: fc.integer({ min: 0, max: span / 4 }) }) },
    );

  test('matches a reference model: each timer fires once, at the first advance reaching its tick, never early', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom(1, 2, 4, 8, 64),
        fc.array(opArb(12, 4000), { maxLength: 150 }),
        (tickMs, slots, ops) => {
          const w = new TimerWheel<number>({ tickMs, slots });
          const timers = Array.from({ length: 12 }, (_, i) => new WheelTimer(i));
          // Reference: the tick each scheduled timer is due at.
          const due = new Map<number, { tick: number; deadline: number }>();
          let processed = 0;
          let now = 0;
          for (const op of ops) {
            if (op.kind === 'schedule') {
              w.schedule(timers[op.id], op.deadline);
              due.set(op.id, { tick: Math.max(Math.ceil(op.deadline / tickMs), processed + 1), deadline: op.deadline });
            } else if (op.kind === 'cancel') {
              w.cancel(timers[op.id]);
              due.delete(op.id);
            } else {
              now += op.by;
              const target = Math.floor(now / tickMs);
              const expected = [...due].filter(([, d]) => d.tick <= target).map(([id]) => id).sort((a, b) => a - b);
              const got: number[] = [];
              w.advance(now, (id) => {
                const d = due.get(id);
                assert.ok(d, `timer ${id} fired but was not scheduled`);
                assert.ok(now >= d.deadline, `timer ${id} fired at ${now}, before ${d.deadline}`);
                got.push(id);
              });
              assert.deepEqual(got.sort((a, b) => a - b), expected);
              for (const id of expected) due.delete(id);
              processed = Math.max(processed, target);
            }
            assert.equal(w.size, due.size);
            for (const t of timers) assert.equal(t.scheduled, due.has(t.target));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('with callbacks that cancel and reschedule other timers, the wheel still agrees with the model', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.constantFrom(1, 4, 16),
        fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 30 }),
        // What each firing does: [victim index, new deadline offset or -1 to cancel]
        fc.array(fc.tuple(fc.nat(29), fc.integer({ min: -1, max: 300 })), { minLength: 1, maxLength: 60 }),
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 40 }),
        (tickMs, slots, deadlines, actions, steps) => {
          const n = deadlines.length;
          const w = new TimerWheel<number>({ tickMs, slots });
          const timers = deadlines.map((_, i) => new WheelTimer(i));
          const due = new Map<number, { tick: number; deadline: number }>();
          deadlines.forEach((d, i) => {
            w.schedule(timers[i], d);
            due.set(i, { tick: Math.max(Math.ceil(d / tickMs), 1), deadline: d });
          });
          let a = 0;
          let now = 0;
          for (const step of steps) {
            now += step;
            w.advance(now, (id) => {
              const tick = w.nextTickAt() / tickMs - 1; // the tick being processed
              const d = due.get(id);
              assert.ok(d, `timer ${id} fired but was not scheduled`);
              assert.equal(d.tick, tick, `timer ${id} due at tick ${d.tick} fired at tick ${tick}`);
              assert.ok(tick * tickMs >= d.deadline, 'never early');
              due.delete(id);
              const [v, off] = actions[a++ % actions.length];
              const victim = v % n;
              if (off < 0) {
                w.cancel(timers[victim]);
                due.delete(victim);
              } else {
                const deadline = tick * tickMs + off - 100;
                w.schedule(timers[victim], deadline);
                due.set(victim, { tick: Math.max(Math.ceil(deadline / tickMs), tick + 1), deadline });
              }
              assert.equal(w.size, due.size);
            });
            const target = Math.floor(now / tickMs);
            for (const [id, d] of due) assert.ok(d.tick > target, `timer ${id} due at tick ${d.tick} was left behind at ${target}`);
            assert.equal(w.size, due.size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('with callbacks that advance the wheel again (and far), nothing fires early, twice, or is left behind', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 5, 50),
        fc.constantFrom(1, 2, 8, 64),
        fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 16 }),
        // What each firing does: [0 schedule, 1 cancel, 2 nested advance, 3 nothing], a victim, an amount in ticks.
        fc.array(fc.tuple(fc.nat(3), fc.nat(15), fc.nat(300)), { minLength: 1, maxLength: 60 }),
        fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 20 }),
        (tickMs, slots, deadlines, actions, steps) => {
          const w = new TimerWheel<number>({ tickMs, slots });
          const timers = deadlines.map((_, i) => new WheelTimer(i));
          const due = new Map<number, number>();
          deadlines.forEach((d, i) => {
            w.schedule(timers[i], d * tickMs);
            due.set(i, timers[i].tick);
          });
          let now = 0;
          let a = 0;
          let depth = 0;
          const onExpire = (id: number) => {
            const tick = due.get(id);
            assert.ok(tick !== undefined, `timer ${id} fired but was not scheduled`);
            assert.ok(tick * tickMs <= now, `timer ${id} due at ${tick * tickMs} fired at ${now}`);
            due.delete(id);
            const [kind, v, amount] = actions[a++ % actions.length];
            const victim = v % timers.length;
            if (kind === 0) {
              w.schedule(timers[victim], now + (amount - 20) * tickMs);
              due.set(victim, timers[victim].tick);
            } else if (kind === 1) {
              w.cancel(timers[victim]);
              due.delete(victim);
            } else if (kind === 2 && depth < 3) {
              depth++;
              now += amount * tickMs;
              w.advance(now, onExpire);
              depth--;
            }
          };
          for (const step of steps) {
            now += step * tickMs;
            w.advance(now, onExpire);
            const target = Math.floor(now / tickMs);
            for (const [id, tick] of due) assert.ok(tick > target, `timer ${id} due at tick ${tick} was left behind at ${target}`);
            assert.equal(w.size, due.size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('advanced once per tick, no timer fires early or a whole tick late', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.integer({ min: 1, max: 50_000 }), { minLength: 1, maxLength: 40 }),
        (tickMs, slots, deadlines) => {
          const w = new TimerWheel<number>({ tickMs, slots });
          deadlines.forEach((d, i) => w.schedule(new WheelTimer(i), d));
          const max = Math.max(...deadlines);
          let fired = 0;
          for (let now = tickMs; w.size > 0; now += tickMs) {
            assert.ok(now <= max + tickMs, 'everything fired by then');
            w.advance(now, (i) => {
              fired++;
              assert.ok(now >= deadlines[i], `timer ${i} fired at ${now} before ${deadlines[i]}`);
              assert.ok(now - deadlines[i] < tickMs, `timer ${i} fired ${now - deadlines[i]} ms late`);
            });
          }
          assert.equal(fired, deadlines.length);
        },
      ),
      { numRuns: 200 },
    );
  });
});

test('a nested advance past a timer still waiting in the outer call\'s list: it fires in that call, not a turn of the wheel later', () => {
  // 1 ms ticks, 4 slots: a (tick 1) and b (tick 5) share slot 1. While a's callback runs, b waits in the
  // outer call's list, outside its slot, and the nested advance to 6 passes tick 5 without it; put back
  // as "a later turn", b waited until tick 9.
  const w = new TimerWheel<string>({ tickMs: 1, slots: 4 });
  const a = new WheelTimer('a');
  const b = new WheelTimer('b');
  w.schedule(b, 5);
  w.schedule(a, 1); // the head: visited first
  const fired: [string, number][] = [];
  w.advance(1, (n) => {
    fired.push([n, w.nextTickAt() - 1]);
    if (n === 'a') w.advance(6, (m) => fired.push([m, w.nextTickAt() - 1]));
  });
  assert.deepEqual(fired, [['a', 1], ['b', 6]]);
  assert.equal(w.size, 0);
  assert.equal(b.scheduled, false);
});

test('a callback that throws: a timer of a later round in its slot keeps its tick, also with a fractional tick length', () => {
  // 0.1 ms ticks, 4 slots: y (tick 6) shares slot 2 with x (tick 2). Put back through
  // schedule(y, 6 × 0.1), it was due at ceil(0.6000000000000001 / 0.1) = tick 7, a tick late.
  const w = new TimerWheel<string>({ tickMs: 0.1, slots: 4 });
  const x = new WheelTimer('x');
  const y = new WheelTimer('y');
  w.schedule(y, 0.6);
  w.schedule(x, 0.2);
  assert.equal(y.tick, 6);
  assert.throws(() => w.advance(0.25, (n) => { if (n === 'x') throw new Error('boom'); }), /boom/);
  assert.equal(y.tick, 6, 'y keeps its tick');
  const fired: string[] = [];
  w.advance(0.55, (n) => fired.push(n));
  assert.equal(fired.length, 0, 'not before its tick');
  w.advance(0.65, (n) => fired.push(n));
  assert.deepEqual(fired, ['y']);
});

test('a callback that throws loses no timer: the rest of its slot stays scheduled, due at the next tick, and the lists stay whole', () => {
  const w = new TimerWheel<string>({ tickMs: 10, startMs: 0, slots: 8 });
  const ts = ['a', 'b', 'c'].map((n) => new WheelTimer(n));
  for (const t of ts) w.schedule(t, 100);
  const fired: string[] = [];
  assert.throws(() => w.advance(100, (n) => { fired.push(n); if (fired.length === 1) throw new Error('boom'); }), /boom/);
  assert.equal(w.size, 2);
  assert.equal(ts.filter((t) => t.scheduled).length, 2);
  // Cancelling one of them touches only its own list: a timer scheduled since into the slot survives.
  const kept = ts.find((t) => t.scheduled)!;
  const x = new WheelTimer('x');
  w.schedule(x, 180); // tick 18: slot 2, the slot the three were due in
  w.cancel(kept);
  w.advance(10_000, (n) => fired.push(n));
  assert.deepEqual([...fired].sort(), ['a', 'b', 'c', 'x'].filter((n) => n !== kept.target));
  assert.equal(w.size, 0);
});

test('the timers left by a throwing callback fire at the next tick, through the runner, and the runner then sleeps', () => {
  const clock = new ManualClock(0);
  const w = new TimerWheel<number>({ tickMs: 50, startMs: 0 });
  const fired: [number, number][] = [];
  const r = new WheelRunner(w, clock, clock, (n) => {
    fired.push([n, clock.now()]);
    if (n === 1) throw new Error('a listener threw');
  });
  for (const n of [3, 2, 1]) w.schedule(new WheelTimer(n), 100);
  r.kick();
  assert.throws(() => clock.advance(100), /a listener threw/);
  clock.advance(60_000);
  assert.deepEqual(fired.map(([n]) => n).sort(), [1, 2, 3]);
  assert.ok(fired.every(([, at]) => at <= 150), `late: ${JSON.stringify(fired)}`);
  assert.equal(w.size, 0);
  assert.equal(r.pending, false);
});

test('a nested advance whose callback cancels a timer still waiting in the outer call\'s list: it never fires, the rest do', () => {
  for (const victim of ['b', 'c']) {
    const w = new TimerWheel<string>({ tickMs: 10, startMs: 0 });
    const t: Record<string, WheelTimer<string>> = {};
    for (const n of ['c', 'b', 'a']) {
      t[n] = new WheelTimer(n);
      w.schedule(t[n], 100); // slot list a -> b -> c
    }
    t.d = new WheelTimer('d');
    w.schedule(t.d, 120);
    const fired: string[] = [];
    const on = (n: string) => {
      fired.push(n);
      if (n === 'a') w.advance(150, on);
      if (n === 'd') w.cancel(t[victim]); // b is the outer list's head by then
    };
    w.advance(100, on);
    w.advance(60_000, on);
    assert.ok(!fired.includes(victim), `${victim} was cancelled: ${fired}`);
    assert.deepEqual([...fired].sort(), ['a', 'b', 'c', 'd'].filter((n) => n !== victim));
    assert.equal(w.size, 0);
  }
});
