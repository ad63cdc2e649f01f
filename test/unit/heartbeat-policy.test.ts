import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  activeDetectionMs,
  clampInterval,
  DEFAULT_POLICY,
  DEFAULT_PROBES,
  dropUndefined,
  negotiate,
  resolvePolicy,
  resolveProbes,
  silenceLimitMs,
  suspectAfterMs,
  type HeartbeatPolicy,
} from '../../src/core/heartbeat-policy.js';
import { LonglinkError } from '../../src/protocol/errors.js';

/** Asserts `fn` throws a LonglinkError with code LL_ERR_INVALID_OPTION whose message matches. */
function assertInvalid(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LonglinkError, `a LonglinkError, got ${String(e)}`);
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'LL_ERR_INVALID_OPTION');
    assert.equal(e.name, 'LonglinkError');
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('resolvePolicy', () => {
  test('no options: the documented defaults, as a fresh object', () => {
    assert.deepEqual(DEFAULT_POLICY, {
      intervalMs: 25_000,
      minIntervalMs: 5_000,
      maxIntervalMs: 600_000,
      missBudget: 2,
      graceMs: 5_000,
      allowServerDirection: true,
    });
    const p = resolvePolicy();
    assert.deepEqual(p, DEFAULT_POLICY);
    assert.notEqual(p, DEFAULT_POLICY);
    assert.deepEqual(resolvePolicy({}), DEFAULT_POLICY);
  });

  test('given options override the defaults; undefined ones do not', () => {
    const p = resolvePolicy({ intervalMs: 60_000, missBudget: 3, graceMs: undefined, allowServerDirection: false });
    assert.deepEqual(p, { ...DEFAULT_POLICY, intervalMs: 60_000, missBudget: 3, allowServerDirection: false });
  });

  test('boundary values that are allowed', () => {
    assert.doesNotThrow(() => resolvePolicy({ minIntervalMs: 1000, intervalMs: 1000, maxIntervalMs: 1000 }));
    assert.doesNotThrow(() => resolvePolicy({ missBudget: 1 }));
    assert.doesNotThrow(() => resolvePolicy({ graceMs: 0 }));
    assert.doesNotThrow(() => resolvePolicy({ minIntervalMs: 1, intervalMs: 1 }));
  });

  test('intervals and graceMs must be whole milliseconds (they go into WELCOME as varints)', () => {
    assertInvalid(() => resolvePolicy({ minIntervalMs: 0.5, intervalMs: 0.5 }), /minIntervalMs must be an integer/);
    assertInvalid(() => resolvePolicy({ intervalMs: 25_000 * 1.1 }), /intervalMs must be an integer \(got 27500.000000000004\)/);
    assertInvalid(() => resolvePolicy({ maxIntervalMs: 600_000.5 }), /maxIntervalMs must be an integer/);
    assertInvalid(() => resolvePolicy({ graceMs: 2500.5 }), /graceMs must be an integer >= 0/);
    assertInvalid(() => resolvePolicy({ graceMs: Infinity }), /graceMs/);
    assertInvalid(() => resolvePolicy({ maxIntervalMs: Infinity }), /maxIntervalMs/);
  });

  test('interval ordering errors: 0 < min <= interval <= max', () => {
    const re = /0 < minIntervalMs <= intervalMs <= maxIntervalMs/;
    assertInvalid(() => resolvePolicy({ minIntervalMs: 0 }), re);
    assertInvalid(() => resolvePolicy({ minIntervalMs: -5 }), re);
    assertInvalid(() => resolvePolicy({ minIntervalMs: 30_000 }), /got 30000, 25000, 600000/);
    assertInvalid(() => resolvePolicy({ intervalMs: 700_000 }), re);
    assertInvalid(() => resolvePolicy({ maxIntervalMs: 20_000 }), re);
    assertInvalid(() => resolvePolicy({ intervalMs: Number.NaN }), re);
    assertInvalid(() => resolvePolicy({ minIntervalMs: Number.NaN }), re);
    assertInvalid(() => resolvePolicy({ maxIntervalMs: Number.NaN }), re);
  });

  test('missBudget must be an integer >= 1', () => {
    for (const missBudget of [0, -1, 1.5, Number.NaN, Infinity]) {
      assertInvalid(() => resolvePolicy({ missBudget }), /missBudget must be an integer >= 1/);
    }
  });

  test('graceMs must be >= 0', () => {
    assertInvalid(() => resolvePolicy({ graceMs: -1 }), /graceMs must be an integer >= 0 \(got -1\)/);
    assertInvalid(() => resolvePolicy({ graceMs: Number.NaN }), /graceMs/);
  });
});

describe('resolveProbes', () => {
  test('defaults: 5 s PONG timeout, then 2 probes 2 s apart', () => {
    assert.deepEqual(DEFAULT_PROBES, { pongTimeoutMs: 5_000, probeCount: 2, probeIntervalMs: 2_000 });
    assert.deepEqual(resolveProbes(), DEFAULT_PROBES);
    assert.notEqual(resolveProbes(), DEFAULT_PROBES);
    assert.deepEqual(resolveProbes({ probeCount: 0, pongTimeoutMs: undefined }), { ...DEFAULT_PROBES, probeCount: 0 });
  });

  test('rejects a non-positive timeout or probe interval and a negative count', () => {
    assertInvalid(() => resolveProbes({ pongTimeoutMs: 0 }), /pongTimeoutMs/);
    assertInvalid(() => resolveProbes({ probeIntervalMs: 0 }));
    assertInvalid(() => resolveProbes({ probeIntervalMs: -1 }));
    assertInvalid(() => resolveProbes({ probeCount: -1 }));
    assertInvalid(() => resolveProbes({ pongTimeoutMs: Number.NaN }));
  });
});

describe('clampInterval', () => {
  const policy = resolvePolicy({ intervalMs: 30_000, minIntervalMs: 10_000, maxIntervalMs: 120_000 });

  test('no usable request gets the default interval', () => {
    for (const ms of [undefined, 0, -1, -30_000, Number.NaN]) {
      assert.equal(clampInterval(policy, ms), 30_000, `request ${ms}`);
    }
  });

  test('requests are clamped into [min, max]', () => {
    assert.equal(clampInterval(policy, 1), 10_000);
    assert.equal(clampInterval(policy, 9_999), 10_000);
    assert.equal(clampInterval(policy, 10_000), 10_000);
    assert.equal(clampInterval(policy, 45_000), 45_000);
    assert.equal(clampInterval(policy, 120_000), 120_000);
    assert.equal(clampInterval(policy, 120_001), 120_000);
    assert.equal(clampInterval(policy, Infinity), 120_000);
  });

  test('fractional requests are rounded to whole milliseconds', () => {
    assert.equal(clampInterval(policy, 45_000.4), 45_000);
    assert.equal(clampInterval(policy, 45_000.5), 45_001);
  });

  test('the result is a whole number even from an unvalidated policy (it goes into WELCOME)', () => {
    const raw = { intervalMs: 27_500.5, minIntervalMs: 1000.5, maxIntervalMs: 60_000.5 };
    for (const ms of [undefined, 0, 500, 30_000.2, 1e9]) assert.ok(Number.isInteger(clampInterval(raw, ms)), `request ${ms}`);
  });

  test('property: the result is always within [min, max]', () => {
    fc.assert(
      fc.property(fc.option(fc.double(), { nil: undefined }), (ms) => {
        const got = clampInterval(policy, ms);
        assert.ok(got >= policy.minIntervalMs && got <= policy.maxIntervalMs, `${ms} -> ${got}`);
      }),
    );
  });
});

describe('negotiate', () => {
  const policy: HeartbeatPolicy = resolvePolicy({ intervalMs: 30_000, minIntervalMs: 10_000, maxIntervalMs: 120_000, missBudget: 3, graceMs: 4_000 });

  test('a HELLO with nothing to ask gets the default, client-sent', () => {
    assert.deepEqual(negotiate(policy, {}), {
      intervalMs: 30_000,
      minIntervalMs: 10_000,
      maxIntervalMs: 120_000,
      missBudget: 3,
      graceMs: 4_000,
      direction: 'client',
    });
  });

  test('the requested interval is granted when in range, clamped otherwise', () => {
    assert.equal(negotiate(policy, { intervalMs: 60_000 }).intervalMs, 60_000);
    assert.equal(negotiate(policy, { intervalMs: 1_000 }).intervalMs, 10_000);
    assert.equal(negotiate(policy, { intervalMs: 3_600_000 }).intervalMs, 120_000);
    assert.equal(negotiate(policy, { intervalMs: 0 }).intervalMs, 30_000);
  });

  test('server-sent heartbeats are granted when allowed', () => {
    assert.equal(negotiate(policy, { direction: 'server' }).direction, 'server');
    assert.equal(negotiate(policy, { direction: 'client' }).direction, 'client');
  });

  test('server-sent heartbeats are refused (client-sent granted) when not allowed', () => {
    const strict = { ...policy, allowServerDirection: false };
    const g = negotiate(strict, { direction: 'server', intervalMs: 50_000 });
    assert.equal(g.direction, 'client');
    assert.equal(g.intervalMs, 50_000, 'the interval is still honoured');
    assert.equal(negotiate(strict, { direction: 'client' }).direction, 'client');
  });
});

describe('detection formulas', () => {
  test('silenceLimitMs = intervalMs × missBudget + graceMs', () => {
    assert.equal(silenceLimitMs(DEFAULT_POLICY), 25_000 * 2 + 5_000);
    assert.equal(silenceLimitMs({ intervalMs: 1000, missBudget: 3, graceMs: 500 }), 3500);
    assert.equal(silenceLimitMs({ intervalMs: 1000, missBudget: 1, graceMs: 0 }), 1000);
  });

  test('suspectAfterMs = intervalMs + graceMs', () => {
    assert.equal(suspectAfterMs(DEFAULT_POLICY), 30_000);
    assert.equal(suspectAfterMs({ intervalMs: 1000, graceMs: 500 }), 1500);
  });

  test('activeDetectionMs = intervalMs + pongTimeoutMs + probeCount × probeIntervalMs', () => {
    assert.equal(activeDetectionMs(25_000, DEFAULT_PROBES), 25_000 + 5_000 + 2 * 2_000);
    assert.equal(activeDetectionMs(1000, { pongTimeoutMs: 300, probeCount: 0, probeIntervalMs: 999 }), 1300);
    assert.equal(activeDetectionMs(1000, { pongTimeoutMs: 300, probeCount: 4, probeIntervalMs: 50 }), 1500);
  });

  test('the formulas work on a negotiated grant', () => {
    const g = negotiate(resolvePolicy({ missBudget: 3, graceMs: 2_000 }), { intervalMs: 40_000 });
    assert.equal(silenceLimitMs(g), 122_000);
    assert.equal(suspectAfterMs(g), 42_000);
  });

  test('property: the passive side suspects no later than it gives up', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e7 }), fc.integer({ min: 1, max: 100 }), fc.integer({ min: 0, max: 1e6 }), (intervalMs, missBudget, graceMs) => {
        const g = { intervalMs, missBudget, graceMs };
        assert.ok(suspectAfterMs(g) <= silenceLimitMs(g));
        assert.equal(suspectAfterMs(g) === silenceLimitMs(g), missBudget === 1);
      }),
    );
  });
});

describe('dropUndefined', () => {
  test('removes undefined keys and keeps every other value, falsy ones included', () => {
    assert.deepEqual(dropUndefined({ a: 1, b: undefined, c: 0, d: null, e: false, f: '' }), { a: 1, c: 0, d: null, e: false, f: '' });
    assert.equal(Object.hasOwn(dropUndefined({ b: undefined }), 'b'), false);
  });
});
