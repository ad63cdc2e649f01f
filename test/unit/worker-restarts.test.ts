import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerRestarts } from '../../src/cli/serve.js';

// serve --workers: a worker that keeps dying is replaced after a doubling delay, capped, per
// worker slot, and forgiven once a replacement has stayed up.

test('worker restarts: at once, then a delay doubling per death in a row up to the cap, reset by a worker that stayed up', () => {
  let now = 0;
  const r = new WorkerRestarts({ firstDelayMs: 100, maxDelayMs: 1000, healthyAfterMs: 10_000 }, () => now);
  const dieAfter = (index: number, ms: number) => {
    r.started(index);
    now += ms;
    return r.exited(index);
  };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => dieAfter(0, 50)), [0, 100, 200, 400, 800, 1000]);
  assert.equal(dieAfter(1, 50), 0, 'another worker has its own count');
  assert.equal(dieAfter(0, 10_000), 0, 'a worker that stayed up is replaced at once');
  assert.equal(dieAfter(0, 50), 100);
});
