import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StallGuard } from '../../src/core/stall-guard.js';

test('a late timer beyond the threshold is a stall; ordinary lateness is not', () => {
  const g = new StallGuard(200);
  assert.equal(g.observe(1000, 1150), 0);
  assert.equal(g.count, 0);
  assert.equal(g.observe(2000, 5000), 3000);
  assert.deepEqual([g.count, g.totalMs, g.longestMs], [1, 3000, 3000]);
});

test('the loop monitor can report a stall the timer did not see', () => {
  const g = new StallGuard(200);
  assert.equal(g.observe(1000, 1010, 900), 900);
  assert.equal(g.stalledWithin(0, 2000), 900);
});

test('stalledWithin counts only the overlap with the silence', () => {
  const g = new StallGuard(100);
  g.record(1000, 2000);
  g.record(5000, 5500);
  assert.equal(g.stalledWithin(0, 10_000), 1500);
  assert.equal(g.stalledWithin(1500, 5200), 500 + 200);
  assert.equal(g.stalledWithin(2000, 5000), 0, 'touching ends do not count');
  assert.equal(g.stalledWithin(6000, 7000), 0);
});

test('two reports of one stall merge instead of counting twice', () => {
  const g = new StallGuard(100);
  g.record(1000, 3000);
  g.record(1200, 3050);
  assert.deepEqual([g.count, g.totalMs, g.longestMs], [1, 2050, 2050]);
  assert.equal(g.stalledWithin(0, 4000), 2050);
});

test('only the most recent stalls are kept', () => {
  const g = new StallGuard(1, 3);
  for (let i = 0; i < 5; i++) g.record(i * 100, i * 100 + 10);
  assert.equal(g.stalledWithin(0, 1000), 30);
  assert.equal(g.count, 5);
  assert.throws(() => new StallGuard(0), { code: 'LL_ERR_INVALID_OPTION' });
});
