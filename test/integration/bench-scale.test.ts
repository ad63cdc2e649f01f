import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runScale, runtimeFigures } from '../../bench/scale-bench.js';
import { redisUnavailable } from '../helpers/redis.js';

// The scale run's machinery at a small size: two gateway workers on Redis, two
// load generators; every connection must be opened, answered and kept.
const noRedis = redisUnavailable();

test('scale run at a small size: every connection held and heartbeating, none closed', { skip: noRedis ?? false, timeout: 120_000 }, async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'll-scale-'));
  try {
    const r = await runScale({ target: 400, holdS: 6, intervalMs: 1000, workers: 2, loadgens: 2, sources: 4, out, rampTimeoutS: 60 }, () => {});
    assert.equal(r.opened, 400);
    assert.equal(r.held, 400);
    assert.equal(r.closedInHold, 0);
    assert.equal(r.gatewayOfflineInHold, 0);
    // One round trip per connection per second, give or take the edges of the window.
    assert.ok(Number(r.heartbeatsInHold) >= 400 * 4, `heartbeats answered: ${r.heartbeatsInHold}`);
    assert.ok(Number(r.heartbeatsInHold) <= Number(r.pingsInHold));
    assert.ok(Number(r.peakGatewayRssMB) > 0 && Number(r.maxFdsPerProcess) > 0);
    // The gateway's event loop and GC, read from its own /metrics at every sample.
    const rt = r.runtime as { loopP99Ms: number; loopMaxMs: number | null; gcLongestMs: number; gcPausesInHold: number };
    assert.ok(Number.isFinite(rt.loopP99Ms) && rt.loopP99Ms >= 0, `event-loop p99 ${rt.loopP99Ms}`);
    assert.ok(rt.loopMaxMs !== null && Number.isFinite(rt.loopMaxMs), `event-loop max ${rt.loopMaxMs}`);
    // A small run may see no pause at all in a worker: the figure must be read, not be large.
    assert.ok(Number.isFinite(rt.gcLongestMs) && rt.gcLongestMs >= 0, `longest GC pause ${rt.gcLongestMs}`);
    assert.ok(rt.gcPausesInHold >= 0);
    assert.match(fs.readFileSync(path.join(out, 'scale.md'), 'utf8'), /garbage-collection pauses \| longest/);
    for (const f of ['scale.json', 'scale.md', 'scale.svg']) assert.ok(fs.statSync(path.join(out, f)).size > 100, f);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
if (noRedis) test(`scale run skipped: ${noRedis}`, { skip: noRedis }, () => {});

test('scale run with one worker (a plain gateway process, no cluster primary)', { skip: noRedis ?? false, timeout: 120_000 }, async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'll-scale1-'));
  try {
    const r = await runScale({ target: 100, holdS: 3, intervalMs: 1000, workers: 1, loadgens: 1, sources: 2, out, rampTimeoutS: 60 }, () => {});
    assert.equal(r.held, 100);
    assert.equal(r.closedInHold, 0);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('the scale run reads the event loop and GC from the gateway\'s /metrics', () => {
  const text = [
    'nodejs_eventloop_lag_max_seconds 0.0425',
    'longlink_event_loop_delay_seconds{quantile="0.5"} 0.0002',
    'longlink_event_loop_delay_seconds{quantile="0.99"} 0.0031',
    'longlink_gc_pause_longest_seconds 0.0123',
    'longlink_gc_pauses 42',
    'longlink_gc_pause_time_seconds 0.25',
  ].join('\n');
  const r = runtimeFigures(text);
  // prom-client's histogram keeps its 10 ms timer period; it is taken off.
  assert.ok(Math.abs(r.loopMaxMs - 32.5) < 1e-9, String(r.loopMaxMs));
  assert.ok(Math.abs(r.loopP99SinceStartMs - 3.1) < 1e-9);
  assert.ok(Math.abs(r.gcLongestMs - 12.3) < 1e-9);
  assert.equal(r.gcPauses, 42);
  assert.equal(r.gcTimeMs, 250);
  assert.ok(Number.isNaN(runtimeFigures('').gcLongestMs), 'a failed scrape reads as NaN, not 0');
});
