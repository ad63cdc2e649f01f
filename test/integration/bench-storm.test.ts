import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runStorm } from '../../bench/storm-bench.js';
import { redisUnavailable } from '../helpers/redis.js';

// The storm run at a small size: it must count every client back in both
// modes (a broken setup cannot pass silently). No timing is asserted.

const noRedis = redisUnavailable();

test('storm run (small): every client comes back after a crash and after a drain', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const r = await runStorm(
    { clients: 300, workers: 2, loadgens: 2, sources: 8, modes: ['crash', 'drain'], downS: 0.5, drainWindowMs: 2000, maxBackS: 60, rampTimeoutS: 60, settleMs: 500, out: null },
    () => {},
  );
  assert.equal(r.results.length, 2);
  for (const x of r.results) {
    assert.notEqual(x.allBackS, null, `${x.mode}: everyone came back`);
    assert.ok(x.backCount >= 300, `${x.mode}: ${x.backCount} handshakes counted on the return`);
    assert.equal(x.workerDeaths, 0);
    assert.ok(x.handshakeP50Ms > 0 && x.handshakeP99Ms >= x.handshakeP50Ms);
    assert.ok(x.seconds.some((s) => s.handshakes > 0));
  }
  // A crash is seen by every client as failed attempts while the gateway is down.
  assert.ok(Object.values(r.results[0].failedAttempts).reduce((a, b) => a + b, 0) > 0);
});
