import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, roundRatios } from '../../bench/ratios.js';

// BENCHMARKS.md gives medians over rounds; with an even number of rounds (--repeat 2) the lower
// middle value was taken, the best of two rounds for a cost.
test('the median of an even count is the mean of the two middle values; of an odd count, the middle one', () => {
  assert.equal(median([31, 26]), 28.5);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([NaN, 5, null, undefined]), 5, 'figures a round did not have are left out');
  assert.equal(median([]), null);
});

test('the per-round ratio median over two rounds is not the better round alone', () => {
  const runs = [
    { round: 0, peer: 'net', v: 20 },
    { round: 0, peer: 'll', v: 22.4 },
    { round: 1, peer: 'net', v: 20 },
    { round: 1, peer: 'll', v: 27 },
  ];
  const r = roundRatios(runs, (x) => x.peer === 'll', (x) => x.peer === 'net', (x) => x.v)!;
  assert.ok(Math.abs(r.median - 1.235) < 1e-9, `median ${r.median}`);
  assert.deepEqual([r.min, r.max].map((x) => Math.round(x * 100) / 100), [1.12, 1.35]);
});
