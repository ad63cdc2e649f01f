import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExpiryQueue } from '../../src/gateway/stores/expiry-queue.js';
import { mulberry32 } from '../../src/sim/rng.js';

test('expiry queue: against a naive model, items come due once each, in order of due time, whatever moved or went in between', () => {
  for (let seed = 1; seed <= 30; seed++) {
    const rnd = mulberry32(seed);
    const items = Array.from({ length: 40 }, (_, i) => ({ id: i, due: Infinity }));
    const q = new ExpiryQueue<{ id: number; due: number }>((x) => x.due);
    let now = 0;
    for (let step = 0; step < 2000; step++) {
      const x = items[Math.floor(rnd() * items.length)];
      const r = rnd();
      if (r < 0.5) {
        // Due earlier (or for the first time): told to the queue.
        const at = now + 1 + Math.floor(rnd() * 100);
        if (at < x.due) {
          x.due = at;
          q.push(x, at);
        }
      } else if (r < 0.6) {
        // Gone, or moved later: the queue is not told.
        x.due = rnd() < 0.5 ? Infinity : x.due + Math.floor(rnd() * 50);
        if (Number.isFinite(x.due)) q.push(x, x.due);
      } else if (r < 0.65) {
        q.compact(() => items, items.length);
      } else {
        now += Math.floor(rnd() * 20);
        const expected = items.filter((i) => i.due <= now).sort((a, b) => a.due - b.due || a.id - b.id).map((i) => ({ ...i }));
        const got: { id: number; due: number }[] = [];
        q.takeDue(now, (i) => {
          got.push({ ...i });
          i.due = Infinity;
        });
        assert.deepEqual(got.map((i) => i.due), expected.map((i) => i.due), `seed ${seed} step ${step}: due times`);
        assert.deepEqual(new Set(got.map((i) => i.id)), new Set(expected.map((i) => i.id)), `seed ${seed} step ${step}: items`);
      }
    }
  }
});

test('expiry queue: compact keeps only live items once stale entries outnumber them', () => {
  const live = [{ due: 10 }, { due: 20 }];
  const q = new ExpiryQueue<{ due: number }>((x) => x.due);
  for (const x of live) q.push(x, x.due);
  for (let i = 0; i < 5000; i++) q.push({ due: Infinity }, 5 + i);
  q.compact(() => live, live.length);
  assert.equal(q.size, 2);
  const got: number[] = [];
  q.takeDue(100, (x) => got.push(x.due));
  assert.deepEqual(got, [10, 20]);
});
