import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventLoopGuard, STALL_DEFAULTS } from '../../src/gateway/event-loop-guard.js';
import { gcStats } from '../../src/gateway/gc-watch.js';

test('the event-loop guard reports GC pauses, and delays without the histogram timer period in them', async () => {
  const guard = new EventLoopGuard(STALL_DEFAULTS);
  try {
    // Garbage enough for the young generation to be collected a few times.
    let keep = 0;
    for (let i = 0; i < 200_000; i++) keep += [i, { i }].length;
    assert.ok(keep > 0);
    await new Promise((r) => setTimeout(r, 300));
    const s = guard.stats();
    assert.ok(s.gc.count > 0, `pauses seen: ${s.gc.count}`);
    assert.ok(s.gc.longestMs > 0 && s.gc.longestMs <= s.gc.totalMs, `longest ${s.gc.longestMs} ms of ${s.gc.totalMs} ms`);
    assert.ok(['minor', 'major', 'incremental', 'weak', 'other'].includes(s.gc.longestKind));
    assert.deepEqual(gcStats().count >= s.gc.count, true);
    // monitorEventLoopDelay records its 10 ms timer period in every sample: an idle loop's median
    // delay is about 0, not 10 ms.
    assert.ok(s.delayP50Ms < 8, `median delay ${s.delayP50Ms} ms`);
  } finally {
    guard.stop();
  }
});
