import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Backoff, DEFAULT_BACKOFF, seededRandom } from '../../src/core/backoff.js';

/** A random source that returns the given values in turn, then repeats the last. */
const scripted = (...xs: number[]) => {
  let i = 0;
  return () => xs[Math.min(i++, xs.length - 1)];
};

/** Largest double below 1, the top of Math.random's range. */
const ALMOST_ONE = 1 - Number.EPSILON / 2;

describe('Backoff: options', () => {
  test('defaults: 1 s initial ceiling, 30 s cap, 100 ms floor, factor 2', () => {
    assert.deepEqual(DEFAULT_BACKOFF, { initialDelayMs: 1000, maxDelayMs: 30_000, minDelayMs: 100, factor: 2 });
    const b = new Backoff();
    assert.deepEqual(b.opts, DEFAULT_BACKOFF);
    assert.notEqual(b.opts, DEFAULT_BACKOFF, 'a copy, so the defaults cannot be mutated through it');
  });

  test('partial options override only what they name', () => {
    const b = new Backoff({ maxDelayMs: 5000 });
    assert.deepEqual(b.opts, { ...DEFAULT_BACKOFF, maxDelayMs: 5000 });
  });

  test('an option given as undefined keeps its default (no NaN delays)', () => {
    const b = new Backoff({ initialDelayMs: undefined, maxDelayMs: undefined, minDelayMs: undefined, factor: undefined }, () => 0.5);
    assert.deepEqual(b.opts, DEFAULT_BACKOFF);
    assert.equal(b.next(), 500);
  });

  test('minDelayMs above maxDelayMs is refused; equal is allowed and gives a constant delay', () => {
    assert.throws(() => new Backoff({ minDelayMs: 10, maxDelayMs: 5 }), { code: 'LL_ERR_INVALID_OPTION' });
    assert.throws(() => new Backoff({ minDelayMs: 40_000 }), { code: 'LL_ERR_INVALID_OPTION' }, 'against the default cap');
    const flat = new Backoff({ minDelayMs: 700, maxDelayMs: 700 }, seededRandom(3));
    for (let i = 0; i < 20; i++) assert.equal(flat.next(), 700);
  });
});

describe('Backoff: invalid options', () => {
  test('NaN, negative, infinite or timer-overflowing delays and a factor below 1 are refused, naming the option', () => {
    const bad: Partial<typeof DEFAULT_BACKOFF>[] = [
      { initialDelayMs: NaN },
      { initialDelayMs: -1 },
      { minDelayMs: NaN },
      { maxDelayMs: NaN },
      { maxDelayMs: Infinity },
      { maxDelayMs: 2 ** 31 },
      { initialDelayMs: 2 ** 31 },
      { factor: NaN },
      { factor: 0 },
      { factor: 0.9 },
      { factor: Infinity },
    ];
    for (const o of bad) {
      assert.throws(() => new Backoff(o), (e: Error & { code?: string }) => e.code === 'LL_ERR_INVALID_OPTION' && e.message.includes(`reconnect.${Object.keys(o)[0]}`), JSON.stringify(o));
    }
    // The largest delay a timer takes, and a constant backoff, are fine.
    const b = new Backoff({ initialDelayMs: 2 ** 31 - 1, maxDelayMs: 2 ** 31 - 1, factor: 1 }, () => 0.5);
    assert.equal(b.next(), Math.floor((2 ** 31 - 1) / 2));
  });
});

describe('Backoff: ceilings', () => {
  test('the ceiling is initialDelayMs × factor^n, capped at maxDelayMs', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 5000, minDelayMs: 0, factor: 2 });
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6, 7].map((n) => b.ceiling(n)),
      [100, 200, 400, 800, 1600, 3200, 5000, 5000],
    );
    const tri = new Backoff({ initialDelayMs: 10, maxDelayMs: 1e6, minDelayMs: 0, factor: 3 });
    assert.deepEqual([0, 1, 2, 3].map((n) => tri.ceiling(n)), [10, 30, 90, 270]);
  });

  test('factor 1 is a constant ceiling', () => {
    const b = new Backoff({ initialDelayMs: 250, maxDelayMs: 1000, minDelayMs: 0, factor: 1 });
    assert.deepEqual([0, 5, 50].map((n) => b.ceiling(n)), [250, 250, 250]);
  });

  test('an initial delay above the cap is capped from the first attempt', () => {
    const b = new Backoff({ initialDelayMs: 10_000, maxDelayMs: 3000, minDelayMs: 0 });
    assert.equal(b.ceiling(0), 3000);
  });

  test('the ceiling stays finite and at the cap after any number of failures', () => {
    const b = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, factor: 2 });
    for (const n of [30, 64, 65, 1000, 1e9, Number.MAX_SAFE_INTEGER]) {
      assert.equal(b.ceiling(n), 30_000, `attempt ${n}`);
    }
    const big = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, factor: 10 });
    assert.equal(big.ceiling(1e6), 30_000);
  });

  test('a factor close to 1 still climbs to the cap (the exponent was cut at 64)', () => {
    // factor^64 is 1.89 for 1.01 and 3.55 for 1.02: the ceiling stopped there, far below maxDelayMs.
    for (const factor of [1.01, 1.02, 1.05]) {
      const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 30_000, minDelayMs: 0, factor });
      const n = Math.ceil(Math.log(300) / Math.log(factor));
      assert.equal(b.ceiling(n), 30_000, `factor ${factor}, attempt ${n}: ceiling ${b.ceiling(n)}`);
      assert.equal(b.ceiling(n - 1), Math.min(30_000, 100 * factor ** (n - 1)));
    }
  });

  test('an initial delay of 0 with a factor whose power overflows gives the floor, never NaN', () => {
    // factor^n overflows to Infinity (1e6^52, 1e300^2), and 0 × Infinity was NaN: setTimeout(NaN) fires after 1 ms.
    for (const factor of [1e6, 1e300]) {
      const b = new Backoff({ initialDelayMs: 0, factor }, () => 0.5);
      for (let n = 0; n < 70; n++) {
        assert.equal(b.ceiling(n), 0, `factor ${factor}, attempt ${n}`);
        assert.equal(b.next(), 100, `factor ${factor}, attempt ${n}: the 100 ms floor`);
      }
    }
  });

  test('ceiling() is a pure query and does not count as an attempt', () => {
    const b = new Backoff();
    b.ceiling(3);
    b.ceiling(3);
    assert.equal(b.attempts, 0);
  });
});

describe('Backoff: full jitter', () => {
  test('the delay is floor(random × ceiling): 0 maps to the floor, just under 1 to ceiling − 1', () => {
    const low = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, minDelayMs: 0 }, () => 0);
    assert.deepEqual([low.next(), low.next(), low.next()], [0, 0, 0]);
    const high = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, minDelayMs: 0 }, () => ALMOST_ONE);
    assert.deepEqual(
      Array.from({ length: 6 }, () => high.next()),
      [99, 199, 399, 799, 999, 999],
      'never reaches the ceiling itself, and never exceeds the cap',
    );
    const mid = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, minDelayMs: 0 }, scripted(0.5, 0.25, 0.125));
    assert.deepEqual([mid.next(), mid.next(), mid.next()], [50, 50, 50]);
  });

  test('the floor applies after the jitter', () => {
    const b = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, minDelayMs: 250 }, scripted(0, 0.1, 0.5));
    assert.equal(b.next(), 250, '0 × 1000 raised to the floor');
    assert.equal(b.next(), 250, '0.1 × 2000 = 200 raised to the floor');
    assert.equal(b.next(), 2000, '0.5 × 4000 is above the floor');
  });

  test('when the ceiling is below the floor, the delay is the floor', () => {
    const b = new Backoff({ initialDelayMs: 50, maxDelayMs: 10_000, minDelayMs: 100 }, () => ALMOST_ONE);
    assert.equal(b.next(), 100);
    assert.equal(b.next(), 100, 'ceiling 100: 99 raised to 100');
    assert.equal(b.next(), 199);
  });

  test('at the cap, delays spread over [min, max] instead of piling up at the cap', () => {
    const b = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, minDelayMs: 100 }, seededRandom(2024));
    for (let i = 0; i < 10; i++) b.next(); // reach the cap
    const delays = Array.from({ length: 5000 }, () => b.next());
    assert.ok(delays.every((d) => d >= 100 && d < 30_000));
    const mean = delays.reduce((s, d) => s + d, 0) / delays.length;
    assert.ok(mean > 14_000 && mean < 16_000, `mean ${mean} is near max / 2`);
    assert.ok(delays.filter((d) => d >= 29_000).length < 300, 'no pile-up at the cap');
    assert.ok(delays.filter((d) => d < 1000).length > 50, 'some retry early');
  });

  test('property: every delay lies in [min, max(min, min(max, initial × factor^n))] and is an integer', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.integer({ min: 0, max: 200_000 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        fc.integer(),
        fc.integer({ min: 1, max: 80 }),
        (initialDelayMs, minDelayMs, extra, factor, seed, count) => {
          const maxDelayMs = minDelayMs + extra;
          const b = new Backoff({ initialDelayMs, maxDelayMs, minDelayMs, factor }, seededRandom(seed));
          for (let n = 0; n < count; n++) {
            assert.equal(b.attempts, n);
            const ceiling = Math.min(maxDelayMs, initialDelayMs * factor ** n);
            const d = b.next();
            assert.ok(Number.isInteger(d), `delay ${d}`);
            assert.ok(d >= minDelayMs, `attempt ${n}: ${d} below floor ${minDelayMs}`);
            assert.ok(d <= Math.max(minDelayMs, ceiling), `attempt ${n}: ${d} above ceiling ${ceiling}`);
            assert.ok(d <= maxDelayMs);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('Backoff: attempts and reset', () => {
  test('attempts counts next() calls; reset starts the ceilings over', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 10_000, minDelayMs: 0 }, () => ALMOST_ONE);
    assert.equal(b.attempts, 0);
    assert.deepEqual([b.next(), b.next(), b.next()], [99, 199, 399]);
    assert.equal(b.attempts, 3);
    b.reset();
    assert.equal(b.attempts, 0);
    assert.equal(b.next(), 99, 'back to the initial ceiling');
    assert.equal(b.attempts, 1);
    b.reset();
    b.reset();
    assert.equal(b.attempts, 0, 'reset is idempotent');
  });

  test('reset after reaching the cap', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 400, minDelayMs: 0 }, () => ALMOST_ONE);
    for (let i = 0; i < 10; i++) b.next();
    assert.equal(b.next(), 399);
    b.reset();
    assert.equal(b.next(), 99);
  });
});

describe('seededRandom', () => {
  test('is deterministic per seed, and Backoffs with the same seed agree', () => {
    const a = seededRandom(12345);
    const b = seededRandom(12345);
    const xs = Array.from({ length: 100 }, () => a());
    assert.deepEqual(Array.from({ length: 100 }, () => b()), xs);
    const b1 = new Backoff({}, seededRandom(9));
    const b2 = new Backoff({}, seededRandom(9));
    const d1 = Array.from({ length: 30 }, () => b1.next());
    assert.deepEqual(Array.from({ length: 30 }, () => b2.next()), d1);
  });

  test('different seeds give different sequences', () => {
    const a = Array.from({ length: 10 }, seededRandom(1));
    const b = Array.from({ length: 10 }, seededRandom(2));
    assert.notDeepEqual(a, b);
  });

  test('seeds are taken as unsigned 32-bit integers', () => {
    assert.equal(seededRandom(-1)(), seededRandom(0xffff_ffff)());
    assert.equal(seededRandom(2 ** 32 + 5)(), seededRandom(5)());
  });

  test('values lie in [0, 1) and are roughly uniform', () => {
    const r = seededRandom(77);
    const buckets = new Array(10).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const x = r();
      assert.ok(x >= 0 && x < 1, `${x}`);
      buckets[Math.floor(x * 10)]++;
    }
    assert.ok(buckets.every((n) => n > 1800 && n < 2200), `buckets ${buckets}`);
  });

  test('property: any seed yields values in [0, 1)', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const r = seededRandom(seed);
        for (let i = 0; i < 50; i++) {
          const x = r();
          assert.ok(x >= 0 && x < 1);
        }
      }),
    );
  });
});
