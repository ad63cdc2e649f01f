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
