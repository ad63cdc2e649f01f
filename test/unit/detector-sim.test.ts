import assert from 'node:assert/strict';
import { test } from 'node:test';
import { calibrate, DETECTORS, simulate, type Channel } from '../../src/sim/detector-sim.js';
import { pointTable, sweepSvg, sweepTable } from '../../src/sim/sim-report.js';
import { mulberry32 } from '../../src/sim/rng.js';

const kind = (n: string) => DETECTORS.find((d) => d.name === n)!;
// Scaled down (1 s heartbeats) so a test run is small; the shape is the bench's.
const channel: Channel = { intervalMs: 997, lossRate: 0.05, baseDelayMs: 2, jitterMs: 1 };

test('the seeded generator repeats itself and spreads over [0, 1)', () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 10_000 }, () => a());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
});

test('a clean channel gives no false suspicion and T_D equal to the setting', () => {
  const clean: Channel = { intervalMs: 1000, lossRate: 0, baseDelayMs: 5, jitterMs: 0 };
  const [fixed, fresh] = simulate(clean, [{ kind: kind('fixed'), knob: 2500 }, { kind: kind('freshness'), knob: 1500 }], { connections: 10, hoursPerConnection: 0.5, seed: 1 });
  assert.equal(fixed.mistakes, 0);
  assert.equal(fresh.mistakes, 0);
  assert.equal(fixed.tdP999Ms, 2505 + 1, 'last arrival (send + 5 ms) + 2500, in 1 ms buckets');
  assert.ok(Math.abs(fresh.tdMeanMs - 2505) < 1, `expected send + interval + delay + lateMs (${fresh.tdMeanMs})`);
});

test('a T_D beyond the histogram\'s 400 s reads as Infinity, not as 400 s (which passed any longer target)', () => {
  const slow: Channel = { intervalMs: 100_000, lossRate: 0, baseDelayMs: 5, jitterMs: 0 };
  const [fixed] = simulate(slow, [{ kind: kind('fixed'), knob: 500_000 }], { connections: 1, hoursPerConnection: 5, seed: 1 });
  assert.equal(fixed.tdP999Ms, Infinity, `T_D p99.9 ${fixed.tdP999Ms} for a silence limit of 500 s`);
  assert.ok(Math.abs(fixed.tdMeanMs - 500_005) < 1, 'the mean is exact');
  const [near] = simulate(slow, [{ kind: kind('fixed'), knob: 399_000 }], { connections: 1, hoursPerConnection: 5, seed: 1 });
  assert.equal(near.tdP999Ms, 399_005 + 1, 'below the range\'s end, as before');
});

test('same seed, same result; calibration lands on the target T_D', () => {
  const run = { connections: 50, hoursPerConnection: 1, seed: 3 };
  const tuned = DETECTORS.map((k) => ({ kind: k, knob: calibrate(k, channel, 3000, { connections: 20, hoursPerConnection: 1, seed: 9 }) }));
  const a = simulate(channel, tuned, run);
  const b = simulate(channel, tuned, run);
  assert.deepEqual(a, b);
  for (const r of a) assert.ok(Math.abs(r.tdP999Ms - 3000) <= 40, `${r.name}: T_D p99.9 ${r.tdP999Ms} vs 3000`);
});

test('at equal T_D just above three intervals, the freshness detector makes far fewer false suspicions than the fixed one', () => {
  const tuned = ['fixed', 'freshness'].map((n) => ({ kind: kind(n), knob: calibrate(kind(n), channel, 3000, { connections: 20, hoursPerConnection: 1, seed: 9 }) }));
  const [fixed, fresh] = simulate(channel, tuned, { connections: 100, hoursPerConnection: 2, seed: 5 });
  assert.ok(fixed.mistakes >= 50, `the fixed detector errs when two heartbeats in a row are lost (${fixed.mistakes})`);
  assert.ok(fresh.mistakes * 10 <= fixed.mistakes, `freshness ${fresh.mistakes} vs fixed ${fixed.mistakes}`);
  const table = pointTable({ jitterMs: 1, targetTdMs: 3000, results: [fixed, fresh] });
  assert.match(table, /\| fixed \| silence > /);
  assert.match(sweepTable([{ jitterMs: 1, targetTdMs: 3000, results: [fixed, { ...fixed, name: 'phi' }, fresh] }]), /\| 1 ms \| 3 s \|/);
  assert.match(sweepSvg([{ jitterMs: 1, targetTdMs: 3000, results: [fixed, { ...fixed, name: 'phi' }, fresh] }]), /<polyline/);
});
