import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { ServerApi } from '../../src/admin/server-api.js';
import { sleep } from '../helpers/procs.js';
import { freePort, redisUnavailable, restartableRedis, startRedis, type TestRedis } from '../helpers/redis.js';

// The Redis store against what a review found it could not take: strings Redis's JSON cannot
// read back, subscriptions that drop or go silent, a Redis that comes back from an older
// snapshot, replies lost after a command was applied. Each case failed before its fix.

const noRedis = redisUnavailable();
let redis: TestRedis | null = null;
let n = 0;
before(async () => {
  if (!noRedis) redis = await startRedis();
});
after(async () => redis?.stop());
const LIMITS = { maxMessages: 100, maxBytes: 1 << 20 };
const msg = (id: string, expiresAt = 1e13) => ({ id, payload: Buffer.from('x'), enqueuedAt: 1000, expiresAt });
/** "\ud800", as JSON from a backend or a JWT can carry it. */
const LONE = JSON.parse('"\\ud800"') as string;
const POLICY = { intervalMs: 500, minIntervalMs: 100, maxIntervalMs: 10_000, missBudget: 3, graceMs: 500 };

async function node(url: string, prefix: string, nodeId: string, extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  const store = new RedisStore({ url, prefix, leaseTtlMs: 600, leaseRenewMs: 150 });
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId, store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 }, ...extra });
  const a = await gw.listen();
  return { gw, store, url: `tcp://127.0.0.1:${a.tcp!.port}` };
}
async function stop(...nodes: { gw: Gateway; store: RedisStore }[]) {
  for (const x of nodes) await x.gw.close();
  for (const x of nodes) await x.store.close();
}
async function eventually(pred: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await sleep(20);
  }
  return false;
}

/** A redis-server of the test's own that keeps an RDB snapshot (SAVE) and can crash and come back from it. */
async function snapshotRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'll-rdb-'));
  const rs = await restartableRedis({ dir });
  return {
    url: rs.url,
    async save() {
      const admin = new Redis(rs.url);
      await admin.save();
      admin.disconnect();
    },
    /** A crash (what came after the snapshot is gone), then a start from the snapshot. */
    async crashAndRestart() {
      await rs.kill();
      await rs.start();
    },
    stop() {
      rs.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('redis store under faults', { skip: noRedis ?? false }, () => {
  test('a push with a ttlMs that is no finite time (Infinity, NaN, 0) or a waitMs beyond a timer is refused, and its shard\'s sweep keeps expiring every other mailbox', async () => {
    const store = new RedisStore({ url: redis!.url, prefix: `rf${++n}:`, mailboxShards: 1, leaseTtlMs: 600, leaseRenewMs: 150 });
    const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, nodeId: 'A', store, wheelTickMs: 10 });
    await gw.listen();
    try {
      await store.rememberDevice('u', 'd', Date.now() + 3600_000);
      await store.rememberDevice('v', 'e', Date.now() + 3600_000);
      await gw.push('u', 'soon', { ttlMs: 50, waitMs: 0 });
      for (const ttlMs of [Infinity, NaN, 0, -1]) {
        await assert.rejects(gw.push('u', 'forever', { ttlMs, waitMs: 0 }), { code: 'LL_ERR_INVALID_OPTION' }, `ttlMs ${ttlMs}`);
      }
      for (const waitMs of [Infinity, NaN, -1, 2 ** 31]) {
        await assert.rejects(gw.push('u', 'forever', { waitMs }), { code: 'LL_ERR_INVALID_OPTION' }, `waitMs ${waitMs}`);
      }
      // The store itself refuses such an expiry from any other caller.
      await assert.rejects(store.enqueue('u', 'd', msg('forever', Infinity), LIMITS), { code: 'LL_ERR_INVALID_OPTION' });
      await gw.push('v', 'short', { ttlMs: 50, waitMs: 0 });
      assert.equal(await gw.queueDepth('u', 'd'), 1, 'nothing refused was queued');
      await sleep(100);
      assert.equal(await gw.sweepExpired(), 2, 'both mailboxes of the shard expired');
    } finally {
      await gw.close();
      await store.close();
    }
  });

  test('a message id with a lone surrogate neither wedges its mailbox nor stops its shard\'s expiry sweep', async () => {
    const s = new RedisStore({ url: redis!.url, prefix: `rf${++n}:`, mailboxShards: 1 });
    try {
      await s.enqueue('u', 'd', msg(`${LONE}bad`, 5000), LIMITS);
      await s.enqueue('v', 'd', msg('ok', 5000), LIMITS); // another user's mailbox, the same shard
      const taken = await s.take('u', 'd', 'c1', 0);
      assert.deepEqual(taken.map((m) => m.id), ['\uFFFDbad'], 'taken, the lone surrogate read as U+FFFD (as UTF-8 would)');
      const swept = await s.expire(10_000, true);
      assert.equal(swept.length, 2, 'both expired: the sweep of the shard went through');
      assert.equal(await s.depth('v', 'd'), 0);
    } finally {
      await s.close();
    }
  });

  test('clientInfo with a lone surrogate does not make the device\'s presence entry unreadable (it could never connect again)', async () => {
    const s = new RedisStore({ url: redis!.url, prefix: `rf${++n}:` });
    try {
      await s.joinCluster('A', () => {});
      const e = { userId: 'u', deviceId: 'd', connectionId: 'c1', nodeId: 'A', transport: 'tcp' as const, since: 1, clientInfo: { name: LONE } };
      await s.setOnline(e);
      assert.equal(await s.setOffline('u', 'd', 'c1'), true);
      await s.setOnline({ ...e, connectionId: 'c2', clientInfo: { [LONE]: 'k' } });
      assert.deepEqual((await s.devices('u')).map((x) => x.clientInfo), [{ '\uFFFD': 'k' }]);
      await s.setOnline({ ...e, connectionId: 'c3', clientInfo: {} });
    } finally {
      await s.close();
    }
  });

  test('a push naming an id, user or device with a lone surrogate is refused (LL_ERR_INVALID_ID; the server API answers 400), and the device\'s later pushes arrive', async () => {
    const A = await node(redis!.url, `rf${++n}:`, 'A');
    const got: string[] = [];
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    try {
      await c.connect();
      await assert.rejects(A.gw.push('u', 'poison', { id: LONE, waitMs: 200 }), { code: 'LL_ERR_INVALID_ID' });
      await assert.rejects(A.gw.push(LONE, 'poison', { waitMs: 200 }), { code: 'LL_ERR_INVALID_ID' });
      await assert.rejects(A.gw.push('u', 'poison', { deviceId: LONE, waitMs: 200 }), { code: 'LL_ERR_INVALID_ID' });
      const api = new ServerApi(A.gw);
      for (const body of [{ user: 'u', text: 'x', id: LONE }, { user: LONE, text: 'x' }, { users: ['u', LONE], text: 'x' }, { user: 'u', device: LONE, text: 'x' }]) {
        await assert.rejects(api.run('push', body), (e: { status?: number; code?: string; message: string }) => e.status === 400 && e.code === 'LL_ERR_BAD_REQUEST' && /well-formed/.test(e.message));
      }
      const r = await A.gw.push('u', 'later', { waitMs: 2000 });
      assert.equal(r.delivered, 1);
      assert.deepEqual(got, ['later']);
    } finally {
      c.close();
      await stop(A);
    }
  });

  test('an authenticator that names a user with a lone surrogate is refused (auth-failed); one whose clientInfo holds one is taken, with U+FFFD', async () => {
    const A = await node(redis!.url, `rf${++n}:`, 'A', {
      authenticate: async (h) => (h.deviceId === 'bad' ? { userId: LONE, deviceId: 'bad' } : { userId: h.userId, deviceId: h.deviceId, clientInfo: { note: `x${LONE}` } }),
    });
    const bad = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'bad', intervalMs: 300, reconnect: { enabled: false } });
    const good = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'good', intervalMs: 300 });
    try {
      const closed = new Promise<CloseEvent>((r) => bad.once('close', r));
      bad.connect().catch(() => {});
      assert.equal((await closed).code, 4510);
      await good.connect();
      assert.ok(await eventually(async () => (await A.gw.presence('u')).length === 1));
      assert.deepEqual((await A.gw.presence('u'))[0].clientInfo, { note: 'x\uFFFD' });
    } finally {
      bad.close();
      good.close();
      await stop(A);
    }
  });

  test('a Redis that restarts from an older snapshot (RDB; AOF fsynced each second, after a crash) is noticed: the nodes write their presence, sessions and known devices again', async () => {
    const rs = await snapshotRedis();
    const A = await node(rs.url, 'p:', 'A');
    const B = await node(rs.url, 'p:', 'B');
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    const got: string[] = [];
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    try {
      await sleep(300);
      await rs.save(); // the snapshot: the epoch and both leases are in it, the device is not
      await c.connect();
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 1));
      await rs.crashAndRestart();
      assert.ok(await eventually(async () => (await B.gw.presence('u').catch(() => [])).length === 1), 'the device is online again in presence');
      const r = await B.gw.push('u', 'hello', { waitMs: 2000 });
      assert.equal(r.unknownUser ?? false, false);
      assert.ok(await eventually(() => got.includes('hello')));
    } finally {
      c.close();
      await stop(A, B);
      rs.stop();
    }
  });

  test("a Redis that restarts from a snapshot holding the entry of the device's past link (closed since, on a live node): its live link on another node takes the entry over, and pushes reach it", async () => {
    const rs = await snapshotRedis();
    const A = await node(rs.url, 'p:', 'A');
    const B = await node(rs.url, 'p:', 'B');
    const replaced: string[] = [];
    A.gw.on('replaced', (e) => replaced.push(e.connectionId));
    const first = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const second = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    const got: string[] = [];
    second.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    try {
      await first.connect();
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 1));
      await rs.save(); // the snapshot: the device's entry is its link on A
      first.close(); // the device leaves A ...
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 0), 'offline');
      await sleep(1200); // more than two nodes' clocks may differ (NODE_CLOCK_SKEW_MS) after its first link
      await second.connect(); // ... and comes back on B
      const secondId = B.gw.connection('u', 'd')!.connectionId;
      assert.ok(await eventually(async () => (await B.gw.presence('u')).map((e) => e.connectionId).join() === secondId));
      await rs.crashAndRestart();
      // Both nodes notice (the run id) and write their links' presence again: only B has one.
      const back = await eventually(async () => (await B.gw.presence('u').catch(() => [])).map((e) => e.connectionId).join() === secondId, 4000);
      const presence = (await B.gw.presence('u').catch(() => [])).map((e) => `${e.nodeId}/${e.connectionId === secondId ? 'live' : 'closed link'}`);
      assert.ok(back, `presence after the restart: [${presence.join(', ')}] (want B/live)`);
      const r = await A.gw.push('u', 'hello', { waitMs: 2000 });
      assert.equal(r.unknownUser ?? false, false);
      assert.ok(await eventually(() => got.includes('hello'), 3000), 'a push from A reaches the live link on B');
      assert.equal(B.gw.connectionCount, 1, 'the live link stays open');
      assert.deepEqual(replaced, [], 'A had no link of the device to close');
    } finally {
      first.close();
      second.close();
      await stop(A, B);
      rs.stop();
    }
  });

  test('a subscription that goes silent (a middlebox drops it without a reset) is noticed and made again: a push from another node still arrives', async () => {
    // A proxy to Redis that can blackhole the subscribing connection both ways, its socket left open.
    const port = await freePort();
    const conns: { c: net.Socket; s: net.Socket; sub: boolean; dead: boolean }[] = [];
    const proxy = net.createServer((c) => {
      const s = net.connect(redis!.port, '127.0.0.1');
      const p = { c, s, sub: false, dead: false };
      conns.push(p);
      c.on('data', (d) => {
        if (d.toString('latin1').toLowerCase().includes('subscribe')) p.sub = true;
        if (!p.dead) s.write(d);
      });
      s.on('data', (d) => !p.dead && c.write(d));
      c.on('error', () => {});
      s.on('error', () => {});
      c.on('close', () => s.destroy());
    });
    await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', r));
    const prefix = `rf${++n}:`;
    const A = await node(`redis://127.0.0.1:${port}`, prefix, 'A');
    const B = await node(redis!.url, prefix, 'B');
    const got: string[] = [];
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    try {
      await c.connect();
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 1));
      for (const p of conns) if (p.sub) p.dead = true;
      await sleep(1500); // leases still renew on the other connection
      assert.equal((await B.gw.presence('u')).length, 1);
      await B.gw.push('u', 'x', { waitMs: 0 });
      assert.ok(await eventually(() => got.includes('x'), 3000), 'the push waits in the mailbox: the wake-up went to a dead subscription');
      assert.ok(A.store.subRestarts >= 1);
    } finally {
      c.close();
      for (const p of conns) {
        p.c.destroy();
        p.s.destroy();
      }
      proxy.close();
      await stop(A, B);
    }
  });

  test('a Redis that stops answering (SIGSTOP) fails a push within commandTimeoutMs (LL_ERR_STORE_UNAVAILABLE), not never; it serves again once resumed', async () => {
    const own = await startRedis();
    const store = new RedisStore({ url: own.url, prefix: 'p:', commandTimeoutMs: 1500 });
    const gw = new Gateway({ tcp: false, ws: false, store, heartbeat: POLICY });
    try {
      await store.rememberDevice('u', 'd', Date.now() + 60_000);
      process.kill(own.pid, 'SIGSTOP');
      const t0 = Date.now();
      await assert.rejects(gw.push('u', 'x', { waitMs: 0 }), { code: 'LL_ERR_STORE_UNAVAILABLE' });
      assert.ok(Date.now() - t0 < 5000, `failed after ${Date.now() - t0} ms`);
      process.kill(own.pid, 'SIGCONT');
      const r = await gw.push('u', 'y', { waitMs: 0 });
      assert.deepEqual(r.devices.map((d) => d.status), ['queued']);
    } finally {
      try {
        process.kill(own.pid, 'SIGCONT');
      } catch {
        // gone
      }
      await gw.close();
      await store.close();
      await own.stop();
    }
  });

  test('a lease that lapsed while the node\'s commands were held up (a cut that healed, a Redis stopped) is noticed though the late renewals, timed out, renewed it: the node writes its presence again and a push queued meanwhile arrives', async () => {
    // A proxy that can hold up A's commands connection (not its subscription) both ways, socket
    // open, and then let everything through at once, as TCP does when a cut heals.
    const port = await freePort();
    const held: { c: net.Socket; s: net.Socket; sub: boolean; hold: boolean; up: Buffer[]; down: Buffer[] }[] = [];
    const proxy = net.createServer((c) => {
      const s = net.connect(redis!.port, '127.0.0.1');
      const p = { c, s, sub: false, hold: false, up: [] as Buffer[], down: [] as Buffer[] };
      held.push(p);
      c.on('data', (d) => {
        if (d.toString('latin1').toLowerCase().includes('subscribe')) p.sub = true;
        if (p.hold) p.up.push(d);
        else s.write(d);
      });
      s.on('data', (d) => (p.hold ? p.down.push(d) : c.write(d)));
      c.on('error', () => {});
      s.on('error', () => {});
      c.on('close', () => s.destroy());
    });
    await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', r));
    const prefix = `rf${++n}:`;
    // Commands time out (as the default 5 s does against a 15 s lease) well before the lease lapses.
    const store = new RedisStore({ url: `redis://127.0.0.1:${port}`, prefix, leaseTtlMs: 600, leaseRenewMs: 150, waitTimeoutMs: 50, commandTimeoutMs: 200 });
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId: 'A', store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 } });
    const A = { gw, store, url: `tcp://127.0.0.1:${(await gw.listen()).tcp!.port}` };
    const reasons: string[] = [];
    const spied = store as unknown as { onResync?: (r: string) => void };
    const told = spied.onResync;
    spied.onResync = (r) => (reasons.push(r), told?.(r));
    const B = await node(redis!.url, prefix, 'B');
    const got: string[] = [];
    const c = new LonglinkClient({ url: A.url, userId: 'u', deviceId: 'd', intervalMs: 300 });
    c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    try {
      await c.connect();
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 1));
      for (const p of held) if (!p.sub) p.hold = true;
      // A's lease lapses: B no longer sees the device, so its push is queued and wakes no one.
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 0, 3000));
      const r = await B.gw.push('u', 'x', { waitMs: 0 });
      assert.deepEqual(r.devices.map((d) => d.status), ['queued']);
      await sleep(300);
      for (const p of held) {
        p.hold = false;
        for (const d of p.up.splice(0)) p.s.write(d);
        for (const d of p.down.splice(0)) p.c.write(d);
      }
      assert.ok(await eventually(() => got.includes('x'), 3000), `the queued push arrives (resyncs: ${reasons})`);
      assert.ok(await eventually(async () => (await B.gw.presence('u')).length === 1), 'A is seen again');
    } finally {
      c.close();
      for (const p of held) {
        p.c.destroy();
        p.s.destroy();
      }
      proxy.close();
      await stop(A, B);
    }
  });

  test('a kick published while the device\'s node is between subscriptions (a reconnection) is published again until heard: the device is kicked', async () => {
    const prefix = `rf${++n}:`;
    const A = await node(redis!.url, prefix, 'A');
    const B = await node(redis!.url, prefix, 'B');
    const c = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd', intervalMs: 300, reconnect: { enabled: false } });
    try {
      const closed = new Promise<CloseEvent>((r) => c.once('close', r));
      await c.connect();
      assert.ok(await eventually(async () => (await A.gw.presence('u')).length === 1));
      // B's subscription drops (a network blip, client-output-buffer-limit pubsub, CLIENT KILL).
      (B.store as unknown as { sub: Redis }).sub.disconnect(true);
      assert.equal(await A.gw.closeAcrossCluster('kick', 'u'), 1);
      const ev = await Promise.race([closed, sleep(3000).then(() => null)]);
      assert.equal(ev?.code, 4507, 'the kicked device is still connected to B');
    } finally {
      c.close();
      await stop(A, B);
    }
  });

  test('a device past its known time but still holding messages stays known (as in the memory store): its record\'s key lives as long as its messages', async () => {
    const s = new RedisStore({ url: redis!.url, prefix: `rf${++n}:` });
    try {
      const t = Date.now();
      await s.rememberDevice('u', 'd', t + 200);
      await s.enqueue('u', 'd', msg('held', t + 60_000), LIMITS);
      await sleep(400);
      assert.deepEqual(await s.knownDevices('u', Date.now()), ['d']);
    } finally {
      await s.close();
    }
  });

  /**
   * A proxy to Redis that, armed with a marker, forwards the next request holding it, lets Redis
   * run it, then cuts the connection instead of passing the answer back (an answer lost after the
   * command was applied): ioredis sends it again on its new connection.
   */
  async function answerDropper() {
    const port = await freePort();
    let marker: string | null = null;
    let cuts = 0;
    const server = net.createServer((c) => {
      const s = net.connect(redis!.port, '127.0.0.1');
      let dropNext = false;
      c.on('data', (d) => {
        if (marker && d.toString('latin1').includes(marker)) {
          marker = null;
          dropNext = true;
        }
        s.write(d);
      });
      s.on('data', (d) => {
        if (dropNext) {
          cuts++;
          c.destroy();
          s.destroy();
          return;
        }
        c.write(d);
      });
      c.on('error', () => {});
      s.on('error', () => {});
      c.on('close', () => s.destroy());
      s.on('close', () => c.destroy());
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    return { url: `redis://127.0.0.1:${port}`, arm: (m: string) => (marker = m), cuts: () => cuts, close: () => server.close() };
  }

  test('a queued message whose answer was lost (the command re-sent) is in the mailbox once', async () => {
    const p = await answerDropper();
    const s = new RedisStore({ url: p.url, prefix: `rf${++n}:` });
    try {
      p.arm('only-once-id');
      await s.enqueue('u', 'd', msg('only-once-id'), LIMITS);
      assert.equal(p.cuts(), 1);
      assert.equal(await s.depth('u', 'd'), 1);
    } finally {
      await s.close();
      p.close();
    }
  });

  test('a presence write whose answer was lost (re-sent) still answers with the other node\'s entry it displaced, which a take-back then puts back', async () => {
    const p = await answerDropper();
    const s = new RedisStore({ url: p.url, prefix: `rf${++n}:` });
    try {
      const base = { userId: 'u', deviceId: 'd', transport: 'tcp' as const, since: 1, clientInfo: {} };
      await s.setOnline({ ...base, connectionId: 'b1', nodeId: 'B' });
      p.arm('a1-conn');
      const old = await s.setOnline({ ...base, connectionId: 'a1-conn', nodeId: 'A' });
      assert.equal(p.cuts(), 1);
      assert.equal(old?.connectionId, 'b1');
      assert.equal((await s.takeBackOnline('u', 'd', 'a1-conn'))?.connectionId, 'b1');
    } finally {
      await s.close();
      p.close();
    }
  });

  test('one user\'s token making up device ids keeps at most maxKnownDevicesPerUser devices\' state: an evicted device takes its inbound ids and sessions with it', async () => {
    const prefix = `rf${++n}:`;
    const s = new RedisStore({ url: redis!.url, prefix, maxKnownDevicesPerUser: 8 });
    const r = new Redis(redis!.url);
    try {
      const now = Date.now();
      for (let i = 0; i < 40; i++) {
        const deviceId = `dev ${i}/é`; // encoded in key names: the script must name them the same way
        await s.rememberDevice('mallory', deviceId, now + 60_000 + i);
        await s.markInbound('mallory', deviceId, `m${i}`, now);
        await s.saveSession({ sessionId: `s${i}`, resumeToken: `t${i}`, userId: 'mallory', deviceId, inSeq: 0, clientInfo: {}, createdAt: now }, now + 60_000);
      }
      assert.equal((await r.keys(`${prefix}*:in:*`)).length, 8);
      assert.equal((await r.keys(`${prefix}*:dsess:*`)).length, 8);
      assert.equal((await r.keys(`${prefix}session:*`)).length, 8);
      assert.equal((await s.knownDevices('mallory', Date.now())).length, 8);
    } finally {
      r.disconnect();
      await s.close();
    }
  });

  test('the presence entries of a node that crashed (its id never reused) are deleted when read once it has been gone ten leases, not kept for ever', async () => {
    const prefix = `rf${++n}:`;
    const lease = { leaseTtlMs: 300, leaseRenewMs: 100 };
    const a = new RedisStore({ url: redis!.url, prefix, ...lease });
    await a.joinCluster('A-crashes', () => {});
    for (let i = 0; i < 20; i++) await a.setOnline({ userId: `u${i}`, deviceId: 'd', connectionId: `c${i}`, nodeId: 'A-crashes', transport: 'tcp', since: 1, clientInfo: {} });
    a.abandon();
    const b = new RedisStore({ url: redis!.url, prefix, ...lease });
    const r = new Redis(redis!.url);
    try {
      await b.joinCluster('B', () => {});
      await sleep(600); // the lease lapsed: not reported, but kept (it may only have lapsed)
      for (let i = 0; i < 20; i++) assert.deepEqual(await b.devices(`u${i}`), []);
      await sleep(100);
      assert.equal((await r.keys(`${prefix}*presence`)).length, 20);
      await sleep(3000); // ten leases
      for (let i = 0; i < 20; i++) assert.deepEqual(await b.devices(`u${i}`), []);
      assert.ok(await eventually(async () => (await r.keys(`${prefix}*presence`)).length === 0, 2000), 'the dead node\'s entries are gone');
    } finally {
      r.disconnect();
      await b.close();
    }
  });

  test('a node taken for dead that renews and writes its entry again while another node removes its entries keeps it: the removal checks the entry is still the one read', async () => {
    const prefix = `rf${++n}:`;
    const lease = { leaseTtlMs: 3000, leaseRenewMs: 1000 };
    const entry = { userId: 'u', deviceId: 'd', connectionId: 'c', nodeId: 'X', transport: 'tcp' as const, since: 1, clientInfo: {} };
    const x = new RedisStore({ url: redis!.url, prefix, ...lease });
    const a = new RedisStore({ url: redis!.url, prefix, ...lease });
    const r = new Redis(redis!.url);
    const reasserted: string[] = [];
    try {
      // What the gateway does when its lease lapsed: writes its open links' entries again.
      await x.joinCluster('X', () => {}, (why) => void x.restoreOnline(entry).then(() => reasserted.push(why)));
      await x.setOnline(entry);
      // A's presence read pauses once it has read the last-seen times, until the test lets it go on.
      let release!: () => void;
      const gate = new Promise<void>((res) => (release = res));
      let paused = false;
      const mget = a.redis.mget.bind(a.redis) as (...keys: string[]) => Promise<(string | null)[]>;
      (a.redis as unknown as { mget: unknown }).mget = async (...keys: string[]) => {
        const v = await mget(...keys);
        if (keys.some((k) => k.includes(':seen:'))) {
          paused = true;
          await gate;
        }
        return v;
      };
      // Just after X's renewal, X looks long dead (no lease, last seen long ago: a stall of ten
      // leases), and A reads the user's presence.
      const seen = await r.get(`${prefix}{n}:seen:X`);
      assert.ok(await eventually(async () => (await r.get(`${prefix}{n}:seen:X`)) !== seen, 3000));
      await r.multi().del(`${prefix}{n}:node:X`).set(`${prefix}{n}:seen:X`, '1').exec();
      assert.deepEqual(await a.devices('u'), [], 'X holds no lease');
      assert.ok(await eventually(() => paused, 2000), 'A read the last-seen times');
      // X renews (its lease had lapsed) and writes its entry again; then A's removal goes on.
      assert.ok(await eventually(() => reasserted.includes('lease-lapsed'), 3000), 'X wrote its entry again');
      release();
      await sleep(200);
      assert.deepEqual((await a.devices('u')).map((e) => e.connectionId), ['c'], "X's entry, written again after A read it, is still there");
    } finally {
      r.disconnect();
      await a.close();
      await x.close();
    }
  });

  test('a second process given the node id of a live node (one config or LONGLINK_NODE_ID for every replica) is refused at join (LL_ERR_NODE_ID_IN_USE): the live node keeps its presence; one restarted under the id of a node that crashed joins', async () => {
    const prefix = `rf${++n}:`;
    const lease = { leaseTtlMs: 600, leaseRenewMs: 150 };
    const a = new RedisStore({ url: redis!.url, prefix, ...lease });
    const dup = new RedisStore({ url: redis!.url, prefix, ...lease });
    const resyncs: string[] = [];
    try {
      await a.joinCluster('A', () => {}, (r) => resyncs.push(r));
      await a.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'c', nodeId: 'A', transport: 'tcp', since: 1, clientInfo: {} });
      await assert.rejects(dup.joinCluster('A', () => {}), (err: Error & { code?: string }) => err.code === 'LL_ERR_NODE_ID_IN_USE');
      await dup.close(); // a refused store's close leaves the live node's lease alone
      await sleep(400);
      assert.deepEqual((await a.devices('u')).map((e) => e.connectionId), ['c'], "A's presence is A's");
      assert.deepEqual(resyncs, [], 'A was never taken for a node whose lease lapsed');
      // A crashes: a process restarted under its id joins (after one renewal's wait), and A's old entry is not reported.
      a.abandon();
      const again = new RedisStore({ url: redis!.url, prefix, ...lease });
      try {
        await again.joinCluster('A', () => {});
        assert.deepEqual(await again.devices('u'), []);
      } finally {
        await again.close();
      }
    } finally {
      await dup.close();
      await a.close();
    }
  });

  test('two gateways started at once under one node id (each looked before the other held the lease) report it: a fault LL_ERR_NODE_ID_IN_USE, once', async () => {
    const prefix = `rf${++n}:`;
    const a = await node(redis!.url, prefix, 'same');
    const store = new RedisStore({ url: redis!.url, prefix, leaseTtlMs: 600, leaseRenewMs: 150 });
    // As if it had looked for a lease before the first node wrote its own.
    (store as unknown as { refuseIfHeld: () => Promise<void> }).refuseIfHeld = async () => {};
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId: 'same', store, wheelTickMs: 10 });
    const faults: string[] = [];
    for (const g of [a.gw, gw]) g.on('fault', (f) => faults.push((f.error as { code?: string }).code ?? String(f.error)));
    try {
      await gw.listen();
      assert.ok(await eventually(() => faults.includes('LL_ERR_NODE_ID_IN_USE'), 3000), `faults: ${faults.join(', ')}`);
      await sleep(600);
      assert.ok(faults.filter((c) => c === 'LL_ERR_NODE_ID_IN_USE').length <= 2, 'once per gateway');
    } finally {
      await stop(a, { gw, store });
    }
  });

  test('a Redis that deletes keys when full (a maxmemory-policy other than noeviction) is reported at listen: a fault LL_ERR_STORE_EVICTS, config, op maxmemory-policy; under noeviction none', async () => {
    const admin = new Redis(redis!.url);
    const started: { gw: Gateway; store: RedisStore }[] = [];
    const join = async (nodeId: string) => {
      const store = new RedisStore({ url: redis!.url, prefix: `rf${++n}:`, leaseTtlMs: 600, leaseRenewMs: 150 });
      const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, nodeId, store, wheelTickMs: 10 });
      const faults: { kind: string; op: string; code?: string; message: string }[] = [];
      // Only the store's: a file limit lower than the default connection limit is reported too.
      gw.on('fault', (f) => f.op !== 'limits.maxConnections' && faults.push({ kind: f.kind, op: f.op, code: (f.error as { code?: string }).code, message: String((f.error as Error).message) }));
      started.push({ gw, store });
      await gw.listen();
      return faults;
    };
    try {
      assert.equal(((await admin.config('GET', 'maxmemory-policy')) as string[])[1], 'noeviction', "Redis's default");
      assert.deepEqual(await join('keeps'), [], 'noeviction: nothing to report');
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const faults = await join('evicts');
      assert.equal(faults.length, 1, JSON.stringify(faults));
      assert.deepEqual([faults[0].kind, faults[0].op, faults[0].code], ['config', 'maxmemory-policy', 'LL_ERR_STORE_EVICTS']);
      assert.match(faults[0].message, /allkeys-lru.*noeviction/);
    } finally {
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      admin.disconnect();
      await stop(...started);
    }
  });

  test('a WAIT timeout of 5 s or more stays valid: the command timeout, unset, leaves a WAIT its whole time', async () => {
    const s = new RedisStore({ url: redis!.url, prefix: `rf${++n}:`, waitTimeoutMs: 10_000 });
    await s.close();
    assert.throws(() => new RedisStore({ url: redis!.url, waitTimeoutMs: 10_000, commandTimeoutMs: 5000 }), { code: 'LL_ERR_INVALID_OPTION' });
  });

  test('an acknowledgement whose answer was lost (re-sent) still answers what it removed: the messages are reported delivered', async () => {
    const p = await answerDropper();
    const s = new RedisStore({ url: p.url, prefix: `rf${++n}:` });
    try {
      await s.enqueue('u', 'd', msg('m1'), LIMITS);
      await s.enqueue('u', 'd', msg('m2'), LIMITS);
      await s.take('u', 'd', 'conn-xyz', 0);
      p.arm('conn-xyz');
      const acked = await s.ack('u', 'd', 'conn-xyz', 2);
      assert.equal(p.cuts(), 1);
      assert.deepEqual(acked.map((m) => [m.id, m.seq]), [['m1', 1], ['m2', 2]]);
      assert.equal(await s.depth('u', 'd'), 0);
    } finally {
      await s.close();
      p.close();
    }
  });

  test('an entry Redis cannot read, left by an older version (a lone surrogate in its JSON), is dropped where met: its mailbox and its shard\'s sweep go on', async () => {
    const prefix = `rf${++n}:`;
    const s = new RedisStore({ url: redis!.url, prefix, mailboxShards: 1 });
    const r = new Redis(redis!.url);
    try {
      const bad = '{"id":"\\ud800","p":"eA==","n":1,"e":1000,"x":5000,"s":0}';
      for (const [u, d] of [['u', 'd'], ['v', 'd']]) {
        await r.rpush(`${prefix}{m0}:mb:${u}:${d}`, bad);
        await r.zadd(`${prefix}{m0}:expiry`, 5000, `${u}:${d}`);
      }
      await s.enqueue('u', 'd', msg('good'), LIMITS);
      assert.deepEqual((await s.take('u', 'd', 'c1', 0)).map((m) => m.id), ['good']);
      assert.deepEqual((await s.ack('u', 'd', 'c1', 1)).map((m) => m.id), ['good']);
      await s.enqueue('w', 'd', msg('due', 5000), LIMITS);
      assert.deepEqual((await s.expire(10_000, true)).map((e) => e.message.id), ['due']);
      assert.equal(await s.depth('v', 'd'), 0, 'the unreadable entry went with the sweep');
    } finally {
      r.disconnect();
      await s.close();
    }
  });

  test('a user\'s presence expires unless a live link refreshes it: the entries of a node that crashed for good and is never read again do not stay in Redis for ever', async () => {
    const prefix = `rf${++n}:`;
    const s = new RedisStore({ url: redis!.url, prefix });
    const r = new Redis(redis!.url);
    try {
      const { PRESENCE_TTL_MS } = await import('../../src/gateway/stores/redis-store.js');
      const key = `${prefix}{u:u}:presence`;
      const entry = { userId: 'u', deviceId: 'd', connectionId: 'c1', nodeId: 'crashed', since: 1, transport: 'tcp' as const, clientInfo: {} };
      await s.setOnline(entry);
      const ttl = await r.pttl(key);
      assert.ok(ttl > PRESENCE_TTL_MS - 60_000 && ttl <= PRESENCE_TTL_MS, `written with a TTL (${ttl} ms)`);
      // An open link's refresh raises it again; it never lowers it.
      await r.pexpire(key, 1000);
      await s.touchPresence('u');
      assert.ok((await r.pttl(key)) > PRESENCE_TTL_MS - 60_000);
      // A hash an older version wrote without a TTL gets one at the next write.
      await r.persist(key);
      await s.setOnline({ ...entry, deviceId: 'd2', connectionId: 'c2' });
      assert.ok((await r.pttl(key)) > 0);
      await r.persist(key);
      assert.equal(await s.restoreOnline({ ...entry, deviceId: 'd3', connectionId: 'c3' }), true);
      assert.ok((await r.pttl(key)) > 0, 'and at a re-assertion');
      // With nobody refreshing it, it goes.
      await r.pexpire(key, 50);
      await sleep(100);
      assert.equal(await r.exists(key), 0);
    } finally {
      r.disconnect();
      await s.close();
    }
  });
});

describe('redis store close without a Redis', () => {
  test('close() of a store whose connection never became ready (nothing listens; a server that accepts and never answers) returns at once, not after the command timeout', async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((res) => silent.listen(0, '127.0.0.1', res));
    const sockets: net.Socket[] = [];
    silent.on('connection', (s) => sockets.push(s));
    try {
      for (const port of [await freePort(), (silent.address() as net.AddressInfo).port]) {
        const s = new RedisStore({ url: `redis://127.0.0.1:${port}` });
        await sleep(200);
        const t0 = Date.now();
        await s.close();
        const took = Date.now() - t0;
        assert.ok(took < 1000, `close() took ${took} ms with Redis at ${port} not ready`);
      }
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((res) => silent.close(res));
    }
  });
});
