import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fuzzMarkdown, runFuzz } from '../../bench/fuzz.js';

// The fuzz engine of bench/fuzz.ts at CI size: 10,000 cases of random,
// mutated and truncated frames in every phase over real TCP and WebSocket.
// The seed is printed; LONGLINK_FUZZ_SEED replays a run.

test('fuzz: 10,000 cases never crash the gateway, leak a connection, or starve a healthy client', async (t) => {
  const seed = Number(process.env.LONGLINK_FUZZ_SEED ?? Date.now() % 1e9);
  const cases = Number(process.env.LONGLINK_FUZZ_CASES ?? 10_000);
  const r = await runFuzz({ cases, seed, concurrency: 48, maxMs: 240_000 });
  for (const line of fuzzMarkdown(r).split('\n')) t.diagnostic(line);
  assert.deepEqual(r.violations, [], `seed ${seed}`);
  assert.equal(r.cases, cases, 'every case ran');
  for (const n of [...Object.values(r.byPhase), ...Object.values(r.byKind)]) assert.ok(n > cases / 20, 'every phase and kind was covered');
  assert.ok(r.byTransport.ws > cases / 10);
  assert.ok(r.protocolErrors > cases / 10, 'most bad input was caught as a protocol error');
  assert.ok(r.healthyRoundTrips > 0);
});
