import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { topK } from '../../src/core/top-k.js';

test('topK agrees with a full sort', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -1000, max: 1000 })), fc.integer({ min: 0, max: 30 }), (xs, k) => {
      const want = [...xs].sort((a, b) => b - a).slice(0, k);
      assert.deepEqual(topK(xs, k, (x) => x), want);
    }),
  );
});

test('a count that is not a whole number: a fraction is cut to its whole part, NaN is none (a NaN threw a TypeError)', () => {
  // Gateway.listConnections({ limit }) hands its limit here: 2.5 gave three connections, NaN threw.
  const xs = [5, 1, 4, 2, 3];
  assert.deepEqual(topK(xs, 2.5, (x) => x), [5, 4]);
  assert.deepEqual(topK(xs, 0.5, (x) => x), []);
  assert.deepEqual(topK(xs, NaN, (x) => x), []);
  assert.deepEqual(topK(xs, Infinity, (x) => x), [5, 4, 3, 2, 1]);
});
