import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { spawnServe } from '../helpers/procs.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';

// The server API on any node reaches every device: three nodes on one Redis, a user's two
// devices on nodes B and C, pushes through node A's API; each device gets each message once.

const noRedis = redisUnavailable();

test('pushes through one node reach every device of the user on the other nodes, each exactly once', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const redis = await startRedis();
  const nodes = await Promise.all(['a', 'b', 'c'].map((n) => spawnServe(['--redis', redis.url, '--node-id', `node-${n}`, '--app', 'none', '--api-key', 'k'])));
  const api = String(nodes[0].lines.find((l) => l.event === 'listening')!.serverApi);
  const devices = [new LonglinkClient({ url: nodes[1].tcp, userId: 'u', deviceId: 'd1' }), new LonglinkClient({ url: nodes[2].tcp, userId: 'u', deviceId: 'd2' })];
  const got: string[][] = [[], []];
  devices.forEach((c, i) => c.on('message', (m) => got[i].push(m.id ?? '')));
  try {
    await Promise.all(devices.map((c) => c.connect()));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${api}push`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body: JSON.stringify({ user: 'u', text: `n${i}`, id: `push-${i}`, waitMs: 2000 }) });
      const body = (await res.json()) as { status: string; devices: { deviceId: string; status: string }[] };
      assert.equal(body.status, 'ok');
      assert.deepEqual(body.devices.map((d) => d.deviceId).sort(), ['d1', 'd2']);
      ids.push(`push-${i}`);
    }
    for (let i = 0; i < 100 && got.some((g) => g.length < ids.length); i++) await new Promise((r) => setTimeout(r, 50));
    for (const g of got) assert.deepEqual(g, ids, 'every message once, in order');
  } finally {
    for (const c of devices) c.close();
    await Promise.all(nodes.map((n) => n.kill()));
    await redis.stop();
  }
});
