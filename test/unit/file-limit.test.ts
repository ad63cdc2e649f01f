import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway, type FaultEvent } from '../../src/gateway/gateway.js';
import { adminSocketBudget, connectionCeiling, FD_RESERVE, openFileLimit } from '../../src/gateway/file-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

test('the open-files limit is read from /proc/self/limits; unknown or unlimited gives no ceiling', () => {
  assert.equal(openFileLimit(() => LIMITS), 20000);
  assert.equal(openFileLimit(() => LIMITS.replace('20000                20000', 'unlimited            unlimited')), null);
  assert.equal(openFileLimit(() => { throw new Error('no /proc'); }), null);
  assert.equal(connectionCeiling(20000), 19600 - FD_RESERVE - 1024);
  assert.equal(connectionCeiling(null), null);
});

test('the files kept back from devices count the admin port\'s sockets at their bound, a sixteenth of a low file limit, and the upstream\'s sockets', () => {
  assert.equal(adminSocketBudget(null), 1024);
  assert.equal(adminSocketBudget(1_048_576), 1024);
  assert.equal(adminSocketBudget(1024), 64, 'a default ulimit -n: the admin port may not take what devices need');
  assert.equal(adminSocketBudget(100), 16);
  assert.equal(connectionCeiling(1024), Math.floor(1024 * 0.98) - FD_RESERVE - 64);
  assert.equal(connectionCeiling(20000, 320), 19600 - FD_RESERVE - 1024 - 320, 'a webhook\'s 256 + 64 sockets');
  assert.ok(connectionCeiling(1024)! + FD_RESERVE + adminSocketBudget(1024) < 1024, 'devices, the reserve and a full admin port fit the limit together');
});

test('a gateway with a webhook upstream keeps its sockets back too', async () => {
  const limit = openFileLimit();
  if (limit === null) return;
  const { webhookSink } = await import('../../src/upstream/webhook.js');
  const sink = webhookSink({ url: 'http://127.0.0.1:9/' });
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, limits: { maxConnections: limit * 10 }, upstream: { sink } });
  await gw.listen();
  assert.equal(sink.maxSockets, 256 + 64);
  assert.equal(gw.options.limits.maxConnections, connectionCeiling(limit, 320));
  await gw.close();
  await sink.close?.();
});

test('a gateway allowed fewer files than maxConnections lowers it at listen and says so (refusals stay GOAWAYs, not resets)', async () => {
  const limit = openFileLimit();
  if (limit === null) return; // not Linux: nothing to read
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, limits: { maxConnections: limit * 10 } });
  const faults: FaultEvent[] = [];
  gw.on('fault', (f) => faults.push(f));
  await gw.listen();
  assert.equal(gw.options.limits.maxConnections, connectionCeiling(limit));
  assert.equal(faults.length, 1);
  assert.equal(faults[0].kind, 'config');
  assert.match(String(faults[0].error), /maxConnections lowered/);
  await gw.close();
});
