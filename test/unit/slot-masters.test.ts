import assert from 'node:assert/strict';
import { test } from 'node:test';
import { slotMasters } from '../../src/gateway/stores/redis-store.js';

// The failover watch compares these maps: one string per full map, null while a slot has no master.

const map = (...ranges: [number, number, string][]) => {
  const slots: string[][] = [];
  for (const [a, b, m] of ranges) for (let i = a; i <= b; i++) slots[i] = [m, `${m}-replica`];
  return slots;
};

test('slotMasters: ranges of one master each; replicas do not count; a change of master changes it', () => {
  const three = map([0, 5460, 'a:1'], [5461, 10922, 'b:2'], [10923, 16383, 'c:3']);
  assert.equal(slotMasters(three), '0-5460@a:1,5461-10922@b:2,10923-16383@c:3,');
  const sameMastersOtherReplicas = three.map(([m]) => [m, 'x:9']);
  assert.equal(slotMasters(sameMastersOtherReplicas), slotMasters(three));
  const failedOver = map([0, 5460, 'a:1'], [5461, 10922, 'b2:5'], [10923, 16383, 'c:3']);
  assert.notEqual(slotMasters(failedOver), slotMasters(three));
  assert.equal(slotMasters(map([0, 16383, 'a:1'])), '0-16383@a:1,');
});

test('slotMasters: null before the map is loaded and while any slot is unserved', () => {
  assert.equal(slotMasters([]), null);
  const gap = map([0, 5460, 'a:1'], [10923, 16383, 'c:3']);
  gap.length = 16384;
  assert.equal(slotMasters(gap), null);
  const lastMissing = map([0, 16382, 'a:1']);
  assert.equal(slotMasters(lastMissing), null);
});
