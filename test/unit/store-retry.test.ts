import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { StoreRetry } from '../../src/gateway/store-retry.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

/** A store call that fails `failures` times, then succeeds; it logs when it was tried. */
function flaky(clock: ManualClock, failures: number) {
  const tries: number[] = [];
  return {
    tries,
    run: () => {
      tries.push(clock.now());
      return tries.length <= failures ? Promise.reject(new Error('store down')) : Promise.resolve();
    },
  };
}

test('a call that fails is tried again with capped exponential backoff until it succeeds; then no timer is left', async () => {
  const clock = new ManualClock(0);
  const r = new StoreRetry(clock, clock, { initialDelayMs: 1000, maxDelayMs: 4000, maxPending: 10, batch: 100 });
  const c = flaky(clock, 4);
  r.do('k', c.run);
  for (let t = 0; t < 20_000; t += 100) {
    await flush();
    clock.advance(100);
  }
  await flush();
  assert.deepEqual(c.tries, [0, 1000, 3000, 7000, 11000]);
  assert.deepEqual(r.stats, { pending: 0, recovered: 1, dropped: 0 });
  assert.equal(clock.pendingTimers, 0);
});

test('a newer call for the same key supersedes the one waiting, and one in flight that fails', async () => {
  const clock = new ManualClock(0);
  const r = new StoreRetry(clock, clock);
  const old = flaky(clock, 100);
  r.do('k', old.run);
  await flush();
  assert.equal(r.stats.pending, 1);
  const newer = flaky(clock, 0);
  r.do('k', newer.run);
  await flush();
  assert.equal(r.stats.pending, 0);
  clock.advance(120_000);
  await flush();
  assert.deepEqual(old.tries, [0], 'never tried again');
  assert.deepEqual(newer.tries, [0]);
  // In flight: the older fails after the newer was given; it is not queued.
  let failOld!: (e: Error) => void;
  r.do('j', () => new Promise((_, rej) => (failOld = rej)));
  r.do('j', () => Promise.resolve());
  failOld(new Error('late'));
  await flush();
  assert.equal(r.stats.pending, 0);
});

test('at most maxPending are kept: a call beyond them while all are in flight is made once, untracked; a waiting one is given up for a new one; retryNow tries the rest at once; stop drops them', async () => {
  const clock = new ManualClock(0);
  const r = new StoreRetry(clock, clock, { initialDelayMs: 1000, maxDelayMs: 60_000, maxPending: 3, batch: 100 });
  const calls = ['a', 'b', 'c', 'd'].map((k) => ({ k, c: flaky(clock, 1) }));
  for (const { k, c } of calls) r.do(k, c.run);
  await flush();
  assert.deepEqual(r.stats, { pending: 3, recovered: 0, dropped: 1 }, 'd, made while a, b and c were in flight, failed untracked');
  assert.equal(r.size, 3);
  const e = flaky(clock, 0);
  r.do('e', e.run);
  await flush();
  assert.deepEqual(r.stats, { pending: 2, recovered: 0, dropped: 2 }, 'a, the oldest waiting, was given up for e');
  clock.advance(10);
  r.retryNow();
  clock.advance(0);
  await flush();
  assert.deepEqual(calls.map(({ c }) => c.tries.length), [1, 2, 2, 1], 'b and c tried again at once');
  assert.deepEqual(r.stats, { pending: 0, recovered: 2, dropped: 2 });
  assert.equal(r.size, 0);
  r.do('e', flaky(clock, 5).run);
  await flush();
  r.stop();
  assert.deepEqual(r.stats, { pending: 0, recovered: 2, dropped: 3 });
  assert.equal(clock.pendingTimers, 0);
  r.do('f', flaky(clock, 0).run);
  assert.equal(r.stats.pending, 0, 'nothing is taken after stop');
});

test('a wake-up starts at most `batch` calls; the rest follow in further batches shortly after', async () => {
  const clock = new ManualClock(0);
  const r = new StoreRetry(clock, clock, { initialDelayMs: 1000, maxDelayMs: 60_000, maxPending: 100, batch: 2 });
  const calls = [...Array(5).keys()].map((i) => ({ k: `k${i}`, c: flaky(clock, 1) }));
  for (const { k, c } of calls) r.do(k, c.run);
  await flush();
  r.retryNow();
  clock.advance(0);
  await flush();
  assert.equal(calls.filter(({ c }) => c.tries.length === 2).length, 2);
  clock.advance(10);
  await flush();
  assert.equal(calls.filter(({ c }) => c.tries.length === 2).length, 4);
  clock.advance(10);
  await flush();
  assert.equal(calls.filter(({ c }) => c.tries.length === 2).length, 5);
  assert.deepEqual(r.stats, { pending: 0, recovered: 5, dropped: 0 });
});

test('a call given up is told so (its owner may forget what it kept for it): the oldest waiting beyond maxPending, one made untracked that fails, those left at stop; not one that succeeds or is superseded', async () => {
  const clock = new ManualClock(0);
  const r = new StoreRetry(clock, clock, { initialDelayMs: 1000, maxDelayMs: 60_000, maxPending: 2, batch: 100 });
  const dropped: string[] = [];
  const give = (k: string, failures: number) => r.do(k, flaky(clock, failures).run, () => dropped.push(k));
  give('a', 100);
  give('b', 100);
  give('c', 100); // a and b in flight: made once, untracked
  await flush();
  assert.deepEqual(dropped, ['c']);
  give('d', 0); // a, the oldest waiting, goes
  await flush();
  assert.deepEqual(dropped, ['c', 'a']);
  give('b', 100); // supersedes b: the old one is not given up, the new one is
  give('e', 100);
  await flush();
  r.stop();
  assert.deepEqual(dropped.sort(), ['a', 'b', 'c', 'e']);
  give('f', 1); // after stop: made once
  await flush();
  assert.deepEqual(dropped.sort(), ['a', 'b', 'c', 'e', 'f']);
});
