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
