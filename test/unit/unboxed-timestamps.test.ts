import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

/**
 * The fields written on every heartbeat (and every admitted handshake) hold
 * fractional milliseconds. V8 stores such a field as a double in place only
 * if it never held anything but a number; a TypeScript class field with no
 * initializer is first defined as undefined, which makes the field tagged,
 * and then every write allocates a heap number: at 10,000 connections 1.3 MB
 * survived each scavenge, copied every time. V8's --trace-generalization
 * names each field whose representation widens; none of these may widen to
 * tagged ("t").
 */
const script = `
const core = (m) => import(new URL('../../src/core/' + m + '.js', ${JSON.stringify(import.meta.url)}));
const { SilenceDetector } = await core('liveness-detector');
const { PhiAccrualDetector } = await core('phi-accrual-detector');
const { FreshnessDetector } = await core('freshness-detector');
const { HeartbeatScheduler } = await core('heartbeat-scheduler');
const { TokenBucket } = await core('token-bucket');
let t = 1000.25;
for (let i = 0; i < 3; i++) {
  const s = new SilenceDetector(1000, 2, 500, t);
  const p = new PhiAccrualDetector(1000, t);
  const f = new FreshnessDetector(1000, t, { lateMs: 500 });
  const h = new HeartbeatScheduler(1000, { pongTimeoutMs: 500, probeCount: 2, probeIntervalMs: 200 }, t);
  const b = new TokenBucket(10, 5, t);
  for (let j = 0; j < 5; j++) {
    t += 999.75;
    s.heard(t); p.heard(t, true); f.heard(t, true); h.received(t); h.sent(t); b.take(t);
  }
}
`;

test('timestamps written per heartbeat are stored as unboxed doubles', () => {
  const out = execFileSync(process.execPath, ['--trace-generalization', '--input-type=module', '-e', script], { encoding: 'utf8' });
  const fields = ['lastHeardAt', 'lastSentAt', 'lastReceivedAt', 'tokens', 'last'];
  const widened = out.split('\n').filter((l) => fields.some((f) => l.startsWith(`[generalizing]${f}:`)));
  // The trace is there at all (a V8 that dropped the flag would make this test pass vacuously).
  assert.ok(widened.some((l) => l.startsWith('[generalizing]lastHeardAt:')), `no trace of lastHeardAt:\n${out.slice(0, 2000)}`);
  const tagged = widened.filter((l) => /->t\{/.test(l));
  assert.deepEqual(tagged, []);
});
