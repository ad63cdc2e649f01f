import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { sleep } from '../helpers/procs.js';
import { redisUnavailable, restartableRedis } from '../helpers/redis.js';

// Two gateway nodes in one process on a Redis that restarts (empty) on the same port.

const noRedis = redisUnavailable();
const POLICY = { intervalMs: 500, minIntervalMs: 100, maxIntervalMs: 10_000, missBudget: 3, graceMs: 500 };

async function until(pred: () => boolean | Promise<boolean>, ms = 8000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await pred()) return Date.now() - t0;
    await sleep(20);
  }
  return -1;
}

describe('a Redis that restarts under two nodes', { skip: noRedis ?? false }, () => {
  test('after a Redis restart (empty) each node is found again at its reconnection, not a lease renewal later: its presence is reported and a push from the other node reaches its device at once', async () => {
    const rs = await restartableRedis();
    // A renewal every 10 s (the default is 5 s): a restart right after one leaves the next far off.
    const opts = { leaseTtlMs: 30_000, leaseRenewMs: 10_000 };
    const mk = async (nodeId: string) => {
      const store = new RedisStore({ url: rs.url, prefix: 'r:', ...opts });
      const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId, store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 } });
      const a = await gw.listen();
      return { gw, store, url: `tcp://127.0.0.1:${a.tcp!.port}` };
    };
    const A = await mk('A');
    const B = await mk('B');
    const got: string[] = [];
    const c = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    const admin = new Redis(rs.url, { retryStrategy: () => 100, maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    try {
      await c.connect();
      assert.ok((await until(async () => (await A.gw.presence('u')).length === 1)) >= 0);
      await A.gw.push('u', 'before', { waitMs: 2000 });
      assert.ok((await until(() => got.includes('before'))) >= 0);
      // Just after B's renewal (its last-seen time moves), Redis restarts without its data.
      const seen = await admin.get('r:{n}:seen:B');
      assert.ok((await until(async () => (await admin.get('r:{n}:seen:B')) !== seen, 15_000)) >= 0);
      await rs.kill();
      await rs.start();
      const t0 = Date.now();
      // B notices at its reconnection (the run id) and writes its device's entry again ...
      assert.ok((await until(async () => (await admin.hget('r:{u:u}:presence', 'd').catch(() => null)) !== null, 3000)) >= 0, 'B wrote its presence again');
      // ... which A reports, and a push from A reaches the device.
      const found = await until(async () => (await A.gw.presence('u').catch(() => [])).length === 1, 3000);
      assert.ok(found >= 0, `A finds the device online within 3 s of the restart (${Date.now() - t0} ms)`);
      await A.gw.push('u', 'after', { waitMs: 0 });
      assert.ok((await until(() => got.includes('after'), 2000)) >= 0, `the push from A arrives (${Date.now() - t0} ms after the restart)`);
      assert.equal(await admin.hlen('r:{u:u}:presence'), 1, 'the entry is still there');
    } finally {
      c.close();
      admin.disconnect();
      await A.gw.close();
      await B.gw.close();
      await A.store.close();
      await B.store.close();
      rs.stop();
    }
  });
});
