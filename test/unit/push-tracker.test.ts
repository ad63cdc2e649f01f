import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { PushTracker, type PushResult } from '../../src/gateway/push-tracker.js';

/** Counts the tracker's lookups of pending pushes (the work a settle does per push it looks at). */
function countLookups(t: PushTracker): { n: number } {
  const pending = (t as unknown as { pending: Map<string, unknown> }).pending;
  const counter = { n: 0 };
  const get = pending.get.bind(pending);
  pending.get = (k: string) => (counter.n++, get(k));
  return counter;
}

test('push tracker: a closing link settles only the pushes waiting on its device, not every push pending to its user', async () => {
  const clock = new ManualClock();
  const t = new PushTracker(clock);
  const results: Promise<PushResult>[] = [];
  // A user's device that never acknowledges: 2,000 pushes wait on it (pushWaitMs).
  for (let i = 0; i < 2000; i++) {
    results.push(t.track('u', `m${i}`, ['phone'], 10_000));
    t.queued('u', `m${i}`, 'phone'); // in the mailbox: a close settles it from here on
  }
  // One to two devices, one to another user.
  const both = t.track('u', 'pair', ['phone', 'tablet'], 10_000);
  t.queued('u', 'pair', 'phone');
  t.queued('u', 'pair', 'tablet');
  const other = t.track('v', 'm0', ['phone'], 10_000);
  t.queued('v', 'm0', 'phone');
  const lookups = countLookups(t);
  // A connect-and-close loop of new device ids under the same user: each close settles nothing.
  for (let j = 0; j < 100; j++) t.settleDevice('u', `fresh${j}`, 'queued');
  assert.equal(lookups.n, 0, `${lookups.n} pending pushes looked at for 100 closes of devices no push waits on`);
  assert.equal(t.size, 2002);
  // The tablet's close settles its one push's share, and that push waits on the phone still.
  t.settleDevice('u', 'tablet', 'queued');
  assert.ok(lookups.n <= 2, `${lookups.n} lookups for the tablet`);
  assert.equal(t.size, 2002);
  // The phone's close settles every push waiting on it, and only the user's.
  t.settleDevice('u', 'phone', 'queued');
  assert.equal(t.size, 1);
  for (const r of await Promise.all(results)) assert.deepEqual(r.devices, [{ deviceId: 'phone', status: 'queued' }]);
  assert.deepEqual((await both).devices, [
    { deviceId: 'phone', status: 'queued' },
    { deviceId: 'tablet', status: 'queued' },
  ]);
  t.settle('v', 'm0', 'phone', 'delivered');
  assert.equal((await other).delivered, 1);
  // Nothing left indexed: a later close finds nothing.
  assert.equal((t as unknown as { byDevice: Map<string, unknown> }).byDevice.size, 0);
});

test('push tracker: a push resolved by its wait, or by the same id again, no longer waits on its devices', async () => {
  const clock = new ManualClock();
  const t = new PushTracker(clock);
  const first = t.track('u', 'x', ['a', 'b'], 1000);
  const second = t.track('u', 'x', ['a'], 1000); // the same id again: the first resolves now
  assert.deepEqual((await first).devices.map((d) => d.status), ['queued', 'queued']);
  const h = t.hold('u', 'x');
  h.expect('c');
  t.queued('u', 'x', 'c');
  h.release();
  t.settleDevice('u', 'c', 'dropped');
  clock.advance(1000);
  assert.deepEqual((await second).devices, [
    { deviceId: 'a', status: 'queued' },
    { deviceId: 'c', status: 'dropped' },
  ]);
  assert.equal(t.size, 0);
  assert.equal((t as unknown as { byDevice: Map<string, unknown> }).byDevice.size, 0);
});

test('push tracker: a device whose mailbox write has not answered is not settled by its link closing (the write may still fail)', async () => {
  const clock = new ManualClock();
  const t = new PushTracker(clock);
  const r = t.track('u', 'x', ['a', 'b'], 1000);
  t.queued('u', 'x', 'a');
  t.settleDevice('u', 'a', 'queued');
  t.settleDevice('u', 'b', 'queued'); // b's write is still out
  t.settle('u', 'x', 'b', 'failed');
  assert.deepEqual((await r).devices, [
    { deviceId: 'a', status: 'queued' },
    { deviceId: 'b', status: 'failed' },
  ]);
  assert.equal((t as unknown as { byDevice: Map<string, unknown> }).byDevice.size, 0);
});

test('push tracker: pushes are told apart by user and id whatever they hold: user a\\0b\'s id c and user a\'s id b\\0c are two pushes', async () => {
  const t = new PushTracker(new ManualClock());
  const first = t.track('a\u0000b', 'c', ['d'], 10_000);
  let firstDone = false;
  void first.then(() => (firstDone = true));
  const second = t.track('a', 'b\u0000c', ['d'], 10_000);
  await Promise.resolve();
  assert.equal(firstDone, false, "another user's push does not end this one");
  assert.equal(t.size, 2);
  t.settle('a\u0000b', 'c', 'd', 'delivered');
  assert.equal((await first).delivered, 1);
  assert.equal(t.size, 1, "the other user's push still waits on its device");
  t.settle('a', 'b\u0000c', 'd', 'delivered');
  assert.equal((await second).delivered, 1);
});

test('push tracker: devices awaited on other nodes are bounded, and released as they settle or their push resolves', async () => {
  const clock = new ManualClock();
  const t = new PushTracker(clock, 3);
  const a = t.track('u', 'a', ['d1', 'd2'], 1000);
  const b = t.track('u', 'b', ['d1', 'd2'], 1000);
  assert.equal(t.awaitRemote('u', 'a', 'd1'), true);
  assert.equal(t.awaitRemote('u', 'a', 'd1'), true, 'asked again: still one');
  assert.equal(t.awaitRemote('u', 'a', 'd2'), true);
  assert.equal(t.awaitRemote('u', 'b', 'd1'), true);
  assert.equal(t.awaitRemote('u', 'b', 'd2'), false, 'over the bound: the caller answers it queued at once');
  assert.equal(t.awaitRemote('u', 'zero', 'd1'), false, 'no such push');
  assert.equal(t.awaitingRemote, 3);
  t.settle('u', 'a', 'd1', 'delivered'); // the other node's report
  assert.equal(t.awaitingRemote, 2);
  t.settle('u', 'b', 'd2', 'queued');
  clock.advance(1000);
  assert.deepEqual((await a).devices, [{ deviceId: 'd1', status: 'delivered' }, { deviceId: 'd2', status: 'queued' }]);
  assert.deepEqual((await b).devices, [{ deviceId: 'd1', status: 'queued' }, { deviceId: 'd2', status: 'queued' }]);
  assert.equal(t.awaitingRemote, 0, 'resolved at waitMs: none left awaited');
  const c = t.track('u', 'c', ['d1'], 0);
  assert.equal(t.awaitRemote('u', 'c', 'd1'), false, 'waitMs 0 waits for nothing');
  clock.advance(1);
  await c;
});
