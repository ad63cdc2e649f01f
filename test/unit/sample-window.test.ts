import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SampleWindow } from '../../src/admin/sample-window.js';

test('a sample window keeps the newest samples in a ring and filters by time', () => {
  const w = new SampleWindow(4);
  assert.deepEqual([...w.sortedSince(0)], []);
  w.add(10, 5);
  w.add(20, 1);
  w.add(30, 3);
  assert.deepEqual([...w.sortedSince(0)], [1, 3, 5]);
  assert.deepEqual([...w.sortedSince(20)], [1, 3], 'only samples at or after the bound');
  w.add(40, 9);
  w.add(50, 2); // overwrites (10, 5)
  assert.deepEqual([...w.sortedSince(0)], [1, 2, 3, 9]);
  assert.deepEqual([...w.sortedSince(45)], [2]);
  assert.deepEqual([...w.sortedSince(60)], []);
});

test('a sample window tells the time of its oldest sample and whether it has overwritten any', () => {
  const w = new SampleWindow(3);
  assert.equal(w.oldestAt, null);
  w.add(10, 1);
  w.add(20, 1);
  assert.equal(w.oldestAt, 10);
  assert.equal(w.full, false);
  w.add(30, 1);
  assert.equal(w.full, true);
  assert.equal(w.oldestAt, 10);
  w.add(40, 1);
  assert.equal(w.oldestAt, 20);
  w.add(50, 1);
  w.add(60, 1);
  w.add(70, 1);
  assert.equal(w.oldestAt, 50);
});
