import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway, type FaultEvent } from '../../src/gateway/gateway.js';
import { connectionCeiling, FD_RESERVE, openFileLimit } from '../../src/gateway/file-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

test('the open-files limit is read from /proc/self/limits; unknown or unlimited gives no ceiling', () => {
  assert.equal(openFileLimit(() => LIMITS), 20000);
  assert.equal(openFileLimit(() => LIMITS.replace('20000                20000', 'unlimited            unlimited')), null);
  assert.equal(openFileLimit(() => { throw new Error('no /proc'); }), null);
  assert.equal(connectionCeiling(20000), 19600 - FD_RESERVE);
  assert.equal(connectionCeiling(null), null);
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
