import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLimiter } from '../../src/cli/log-limiter.js';
import { ManualClock } from '../../src/core/clock.js';

test('log lines a client can cause: the first of each key per interval pass, the rest are summed in one line per key and interval', () => {
  const clock = new ManualClock(0);
  const summaries: [string, number][] = [];
  const l = new LogLimiter((key, held) => summaries.push([key, held]), 10_000, 3, clock, clock);
  let drops = 0;
  let refusals = 0;
  // A flood: 100,000 drops over 40 s, and a refusal now and then.
  for (let i = 0; i < 100_000; i++) {
    if (l.allow('dropped overflow')) drops++;
    if (i % 10_000 === 0 && l.allow('refused rate-limited')) refusals++;
    if (i % 250 === 249) clock.advance(100);
  }
  clock.advance(10_000); // the last interval ends: its summary is written
  const intervals = 5;
  assert.ok(drops <= 3 * intervals, `${drops} drop lines written`);
  const heldDrops = summaries.filter(([k]) => k === 'dropped overflow').reduce((a, [, n]) => a + n, 0);
  assert.equal(drops + heldDrops, 100_000, 'every drop is either written or counted in a summary');
  assert.equal(refusals, 10, 'a rare key is never held back');
  assert.ok(summaries.length <= intervals, `${summaries.length} summary lines`);
  assert.equal(clock.pendingTimers, 0, 'no timer once nothing is held');
});
