import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Cluster } from 'ioredis';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { streamSink } from '../../src/upstream/redis-stream.js';
import { execFileSync } from 'node:child_process';
import { sleep } from '../helpers/procs.js';
import { redisUnavailable, startRedisCluster, type TestRedisCluster } from '../helpers/redis.js';

// Issue 22, part 5: the store and the stream sink on a Redis Cluster of three
// masters (one replica each) that the test starts, through a master crash:
// the master of the device's mailbox, the node the other gateway's
// subscription is on, and the master of the upstream stream are killed in
// turn and come back as replicas. Every push that was accepted reaches the
// device exactly once; every message the device sent is in the stream, and
// none was acknowledged to the device before it was there.

const noRedis = redisUnavailable();
let rc: TestRedisCluster | null = null;
before(async () => {
  if (!noRedis) rc = await startRedisCluster();
});
after(async () => rc?.stop());

const POLICY = { intervalMs: 500, minIntervalMs: 100, maxIntervalMs: 10_000, missBudget: 6, graceMs: 1000 };
const LEASE = { leaseTtlMs: 6000, leaseRenewMs: 1000 };

async function node(nodeId: string, extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  const store = new RedisStore({ url: rc!.url, cluster: true, waitReplicas: 1, waitTimeoutMs: 500, prefix: 'rc:', ...LEASE });
  const gw = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, heartbeat: POLICY, nodeId, store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 }, ...extra });
  const a = await gw.listen();
  return { gw, store, url: `tcp://127.0.0.1:${a.tcp!.port}` };
}

async function eventually(what: string, pred: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Kills a master, waits for its replica to take over, starts it again and waits until it replicates. */
async function crashAndRecover(port: number, log: string[]): Promise<void> {
  const t0 = Date.now();
  rc!.kill(port);
  await rc!.waitHealthy(30_000);
  log.push(`killed ${port}: served again after ${Date.now() - t0} ms`);
  await rc!.restart(port);
  await eventually(`${port} back as a replica`, () => rc!.replicating(port));
  log.push(`${port} rejoined after ${Date.now() - t0} ms`);
}

describe('Redis Cluster: a master crash under pushes and upstream messages', { skip: noRedis ? `skipped: ${noRedis}` : false }, () => {
  test('pushes across nodes reach the device exactly once through two master crashes; the subscription moves', async () => {
    const log: string[] = [];
    const A = await node('A');
    const B = await node('B');
    const got = new Map<string, number>();
    const client = new LonglinkClient({ url: B.url, userId: 'u1', deviceId: 'd1', intervalMs: 500 });
    client.on('message', (m) => m.id !== undefined && got.set(m.id, (got.get(m.id) ?? 0) + 1));
    try {
      await client.connect();
      await eventually('B in presence', async () => (await A.gw.presence('u1')).some((e) => e.nodeId === 'B'));
      const mailboxMaster = await rc!.masterOf('rc:{m' + shard('u1') + '}:expiry');
      const subPort = (B.store as unknown as { sub: { options: { port: number } } }).sub.options.port;
      const accepted: string[] = [];
      let failedTries = 0;
      // Why the last try failed (the push's error, or the store fault behind a 'failed' device), for the message if one never succeeds.
      let lastFailure = '';
      A.gw.on('fault', (f) => (lastFailure = `${f.op}: ${f.error instanceof Error ? f.error.message : String(f.error)}`));
      // Every store fault either node met, with the time since the start, for a failure's message.
      const t0 = Date.now();
      const faults: string[] = [];
      for (const [name, n] of [['A', A], ['B', B]] as const) {
        n.gw.on('fault', (f) => faults.push(`${name}+${Date.now() - t0}ms ${f.op}: ${f.error instanceof Error ? f.error.message : String(f.error)}`));
      }
      /** What each side holds and sees, for a failure's message. */
      const diagnose = async () => {
        const r = A.store.redis as unknown as Cluster;
        const raw = async (what: () => Promise<unknown>) => what().then((v) => JSON.stringify(v), (e: Error) => `error ${e.message}`);
        return [
          `presence ${await raw(() => r.hgetall('rc:{u:u1}:presence'))} (master ${await rc!.masterOf('rc:{u:u1}:presence').catch(() => '?')}; nodes: ${await rc!.clusterNodes('rc:{u:u1}:presence').catch((e: Error) => e.message)})`,
          `known ${await raw(() => r.hgetall('rc:{u:u1}:known'))}`,
          `leases A ${await raw(() => r.get('rc:{n}:node:A'))} B ${await raw(() => r.get('rc:{n}:node:B'))} epoch ${await raw(() => r.get('rc:{n}:epoch'))} (master ${await rc!.masterOf('rc:{n}:epoch').catch(() => '?')})`,
          `A sees ${await raw(() => A.gw.presence('u1'))}; client ${client.state}; B holds ${B.gw.connectionCount} links`,
          `faults: ${faults.slice(-20).join(' | ')}`,
        ].join('; ');
      };
      const pushAll = async (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          const id = `m${i}`;
          // A push the store did not take (or did not replicate) is retried with its id: the device drops a second copy.
          // For as long as a crash and recovery may take (the cluster's own bounds below: 30 s each to serve again and to rejoin).
          const giveUpAt = Date.now() + 60_000;
          for (let tries = 0; ; tries++) {
            if (Date.now() >= giveUpAt) assert.fail(`push ${id} never accepted in 60 s (${tries} tries; last: ${lastFailure}; ${log.join('; ')}; ${await diagnose()})`);
            const r = await A.gw.push('u1', `p${i}`, { id, waitMs: 0 }).catch((err: Error) => ((lastFailure = err.message), null));
            if (r && r.devices.length === 1 && r.devices[0].status !== 'failed') break;
            if (r) lastFailure = r.devices.length === 1 ? `${r.devices[0].status} (${lastFailure})` : `devices: ${JSON.stringify(r.devices)}`;
            failedTries++;
            await sleep(100);
          }
          accepted.push(id);
        }
      };
      await pushAll(0, 40);
      log.push(`crash 1 on the mailbox's master ${mailboxMaster} (B subscribed on ${subPort})`);
      const crash1 = crashAndRecover(mailboxMaster, log);
      await pushAll(40, 80);
      await crash1;
      // The node B's subscription is on now (a master or a replica): B moves it, and flushes.
      const subPort2 = (B.store as unknown as { sub: { options: { port: number } } }).sub.options.port;
      log.push(`crash 2 on B's subscription node ${subPort2} (the mailbox's master ${await rc!.masterOf('rc:{m' + shard('u1') + '}:expiry')})`);
      const crash2 = crashAndRecover(subPort2, log);
      await pushAll(80, 120);
      await crash2;
      await pushAll(120, 140);
      await eventually('every accepted push delivered', () => accepted.every((id) => got.has(id)), 30_000).catch(async (err: Error) => {
        const missing = accepted.filter((id) => !got.has(id));
        const depth = await B.gw.queueDepth('u1', 'd1').catch((e: Error) => `unknown (${e.message})`);
        const sub = (B.store as unknown as { sub: { options: { port: number }; status: string } }).sub;
        throw new Error(`${err.message}: missing ${missing.join(',')}; B's mailbox holds ${depth}; B subscribed on ${sub.options.port} (${sub.status}); ${log.join('; ')}; ${await diagnose()}`);
      });
      await sleep(500);
      const twice = [...got].filter(([, n]) => n > 1);
      assert.deepEqual(twice, [], 'no push reached the app twice');
      assert.equal(got.size, 140);
      const newSub = (B.store as unknown as { sub: { options: { port: number } } }).sub.options.port;
      assert.notEqual(newSub, subPort2, 'the subscription moved to another node');
      assert.ok(subPort !== mailboxMaster || subPort2 !== subPort, 'the first crash moved it too, when it was on that node');
      await eventually('the mailbox empties', async () => (await B.gw.queueDepth('u1', 'd1')) === 0);
      console.log(`cluster pushes: ${accepted.length} accepted, ${failedTries} tries refused during failovers; ${log.join('; ')}`);
    } finally {
      client.close();
      await A.gw.close();
      await B.gw.close();
      await A.store.close();
      await B.store.close();
    }
  });

  test('upstream to a stream on the cluster: every message the device sent is in the stream after its master crashed, none acknowledged before', async () => {
    const log: string[] = [];
    const sink = streamSink({ url: rc!.url, cluster: true, stream: 'rc-up', waitReplicas: 1, waitTimeoutMs: 500 });
    const B = await node('S', { upstream: { sink, retryMinMs: 100, retryMaxMs: 500 } });
    const client = new LonglinkClient({ url: B.url, userId: 'u2', deviceId: 'd2', intervalMs: 500 });
    const acked = new Set<string>();
    client.on('acked', (a) => acked.add(a.id));
    const redis = sink.redis as unknown as Cluster;
    const inStream = async () => {
      const entries = await redis.xrange('rc-up', '-', '+');
      const ids = new Map<string, number>();
      for (const [, fields] of entries) {
        const at = fields.indexOf('id');
        if (fields[fields.indexOf('type') + 1] === 'message' && at >= 0) ids.set(fields[at + 1], (ids.get(fields[at + 1]) ?? 0) + 1);
      }
      return ids;
    };
    try {
      await client.connect();
      const streamMaster = await rc!.masterOf('rc-up');
      const sent: string[] = [];
      // Every acknowledgement must find its message in the stream: checked as they come.
      const early: string[] = [];
      client.on('acked', (a) => {
        void inStream().then((ids) => !ids.has(a.id) && early.push(a.id), () => {});
      });
      for (let i = 0; i < 30; i++) sent.push(client.send(`r${i}`));
      await eventually('the first 30 acknowledged', () => sent.every((id) => acked.has(id)));
      const crash = crashAndRecover(streamMaster, log);
      for (let i = 30; i < 90; i++) {
        sent.push(client.send(`r${i}`));
        await sleep(20);
      }
      await crash;
      await eventually('all acknowledged', () => sent.every((id) => acked.has(id)), 40_000);
      const ids = await inStream();
      for (const id of sent) assert.ok(ids.has(id), `${id} is in the stream`);
      assert.deepEqual(early, [], 'no message acknowledged before it was in the stream');
      const dups = [...ids].filter(([, n]) => n > 1).length;
      console.log(`cluster stream: ${sent.length} sent, all in the stream, ${dups} written twice (XADD done, WAIT timed out: the backend dedups by id); ${log.join('; ')}`);
    } finally {
      client.close();
      await B.gw.close();
      await B.store.close();
      await sink.close?.();
    }
  });

  test('a replica that takes over without the last writes (replication cut): the node writes its links\' presence, session and known device again', { skip: nftUnavailable() ?? false }, async () => {
    const A = await node('FA');
    const B = await node('FB');
    const table = `llrc${process.pid}`;
    let client: LonglinkClient | null = null;
    let master = 0;
    try {
      // A user whose records live on a master we can cut off from its replica.
      master = await rc!.masterOf('rc:{u:u9}:presence');
      const replica = await rc!.replicaOf(master);
      const eph = await rc!.replicationPort(master);
      // The replication stream (master port → the replica's connection) goes nowhere; everything else flows.
      execFileSync('nft', ['-f', '-'], { input: `table inet ${table} {\n chain out { type filter hook output priority 0; tcp sport ${master} tcp dport ${eph} drop; }\n}\n` });
      client = new LonglinkClient({ url: B.url, userId: 'u9', deviceId: 'd9', intervalMs: 500 });
      const got: string[] = [];
      client.on('message', (m) => m.id !== undefined && got.push(m.id));
      await client.connect();
      await eventually('u9 in presence on the master', async () => (await A.gw.presence('u9')).some((e) => e.nodeId === 'FB'));
      // The records must come back from the node's own re-assertion, not from a reconnect's handshake.
      const linkId = B.gw.connection('u9', 'd9')!.connectionId;
      let opens = 0;
      B.gw.on('online', () => opens++);
      B.gw.on('replaced', () => opens++);
      // The replica never got them: what a failover in the replication lag loses.
      assert.equal(await rc!.readOn(replica, 'rc:{u:u9}:presence'), 0, 'the cut held: the replica lacks the presence entry');
      rc!.kill(master);
      await rc!.waitHealthy(30_000);
      // Node FB sees the slot's new master at its next slot-map refresh and writes its records again.
      await eventually('u9 back in presence after the failover', async () => (await A.gw.presence('u9').catch(() => [])).some((e) => e.nodeId === 'FB'), 20_000);
      await eventually('the known device written again', async () => (await A.store.knownDevices('u9', Date.now())).includes('d9'), 5000);
      await eventually('the open session indexed again', async () => (await rc!.readOn(await rc!.masterOf('rc:{u:u9}:presence'), 'rc:{u:u9}:dsess:d9')) === 1, 5000);
      // And a push from the other node reaches the device.
      const r = await A.gw.push('u9', 'after', { id: 'f1', waitMs: 5000 });
      assert.equal(r.devices.length, 1);
      await eventually('the push after the failover delivered', () => got.includes('f1'), 10_000);
      assert.equal(B.gw.connection('u9', 'd9')?.connectionId, linkId, 'the same link throughout');
      assert.equal(opens, 0, 'no new link opened');
    } finally {
      try {
        execFileSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
      } catch {
        // not made
      }
      client?.close();
      await A.gw.close();
      await B.gw.close();
      await A.store.close();
      await B.store.close();
      if (master) await rc!.restart(master);
    }
  });

  test('a master that restarts empty before its replica is promoted (its slots, so the slot map, unchanged) is noticed: the node writes its links\' records again (store-reset)', async () => {
    const prefix = `rs${Date.now() % 100000}:`;
    const nPort = await rc!.masterOf(`${prefix}{n}:epoch`);
    let user = 0;
    while ((await rc!.masterOf(`${prefix}{u:u${user}}:presence`)) === nPort) user++;
    const port = await rc!.masterOf(`${prefix}{u:u${user}}:presence`);
    const { Redis } = await import('ioredis');
    const admins = rc!.ports.map((p) => new Redis(p, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true }));
    for (const a of admins) a.on('error', () => {});
    const setTimeoutMs = (ms: number) => Promise.all(admins.map((a) => a.connect().catch(() => {}).then(() => a.config('SET', 'cluster-node-timeout', String(ms))).catch(() => {})));
    // No failover while it is down: it comes back as the master of its slots, with nothing.
    await setTimeoutMs(60_000);
    const store = new RedisStore({ url: rc!.url, cluster: true, prefix, leaseTtlMs: 3000, leaseRenewMs: 200 });
    const reasons: string[] = [];
    try {
      await store.joinCluster('A', () => {}, (r) => reasons.push(r));
      await store.setOnline({ userId: `u${user}`, deviceId: 'd', connectionId: 'c', nodeId: 'A', transport: 'tcp', since: 1, clientInfo: {} });
      await sleep(500); // each master's run id seen
      rc!.kill(port);
      await sleep(200);
      await rc!.restart(port);
      await eventually('the restart noticed', () => reasons.includes('store-reset'), 15_000);
      assert.ok(!reasons.includes('failover'), `no failover: ${reasons}`);
    } finally {
      await store.close();
      await setTimeoutMs(1000);
      for (const a of admins) a.disconnect();
      await rc!.waitHealthy(30_000);
    }
  });

  test('the master of the lease slot restarting empty is noticed at the reconnection, not a lease renewal later: the node takes its lease again and another node reports its device within 4 s', async () => {
    const prefix = `rl${Date.now() % 100000}:`;
    const nPort = await rc!.masterOf(`${prefix}{n}:epoch`);
    let user = 0;
    while ((await rc!.masterOf(`${prefix}{u:u${user}}:presence`)) === nPort) user++;
    const userId = `u${user}`;
    const { Redis } = await import('ioredis');
    const admins = rc!.ports.map((p) => new Redis(p, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true }));
    for (const a of admins) a.on('error', () => {});
    const setTimeoutMs = (ms: number) => Promise.all(admins.map((a) => a.connect().catch(() => {}).then(() => a.config('SET', 'cluster-node-timeout', String(ms))).catch(() => {})));
    // No failover while it is down: it comes back as the master of its slots, with nothing.
    await setTimeoutMs(60_000);
    // A renewal every 10 s: a restart right after one leaves the next far off.
    const mk = async (nodeId: string) => {
      const store = new RedisStore({ url: rc!.url, cluster: true, prefix, leaseTtlMs: 30_000, leaseRenewMs: 10_000 });
      const gw = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, heartbeat: POLICY, nodeId, store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 } });
      const a = await gw.listen();
      return { gw, store, url: `tcp://127.0.0.1:${a.tcp!.port}` };
    };
    const A = await mk('LA');
    const B = await mk('LB');
    const client = new LonglinkClient({ url: B.url, userId, deviceId: 'd', intervalMs: 500 });
    const nAdmin = admins[rc!.ports.indexOf(nPort)];
    try {
      await client.connect();
      await eventually('A sees the device', async () => (await A.gw.presence(userId)).length === 1);
      // Just after B's renewal (its last-seen time moves), the lease slot's master restarts empty.
      const seen = await nAdmin.get(`${prefix}{n}:seen:LB`);
      await eventually("B's renewal", async () => (await nAdmin.get(`${prefix}{n}:seen:LB`)) !== seen, 15_000);
      rc!.kill(nPort);
      await sleep(200);
      await rc!.restart(nPort);
      const t0 = Date.now();
      let found = -1;
      for (const end = t0 + 4000; Date.now() < end; await sleep(50)) {
        if ((await A.gw.presence(userId).catch(() => [])).length === 1) {
          found = Date.now() - t0;
          break;
        }
      }
      assert.ok(found >= 0, `A reports B's device within 4 s of the restart (lease ${await A.store.liveNodes(['LB']).then((m) => m.get('LB') ?? 'none', (e: Error) => e.message)})`);
    } finally {
      client.close();
      await A.gw.close();
      await B.gw.close();
      await A.store.close();
      await B.store.close();
      await setTimeoutMs(1000);
      for (const a of admins) a.disconnect();
      await rc!.waitHealthy(30_000);
    }
  });

  test('a cluster whose masters delete keys when full (maxmemory-policy allkeys-lru) is reported at listen, by the store and by the stream sink (which checks once its client knows the masters)', async () => {
    const { Redis } = await import('ioredis');
    const admins = rc!.ports.map((port) => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 }));
    const setAll = (policy: string) => Promise.all(admins.map((a) => a.config('SET', 'maxmemory-policy', policy).catch(() => {})));
    await setAll('allkeys-lru');
    // Made and started in one turn: the sink's client has not read the slot map when listen() asks.
    const store = new RedisStore({ url: rc!.url, cluster: true, prefix: 'rc-evict:', ...LEASE });
    const sink = streamSink({ url: rc!.url, cluster: true, stream: 'rc-evict' });
    const gw = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, heartbeat: POLICY, nodeId: 'evict-check', store, upstream: { sink } });
    const faults: { op: string; code?: string }[] = [];
    gw.on('fault', (f) => faults.push({ op: f.op, code: (f.error as { code?: string }).code }));
    try {
      await gw.listen();
      await eventually('both reports', () => faults.filter((f) => f.code === 'LL_ERR_STORE_EVICTS').length === 2, 15_000);
      assert.deepEqual(faults.filter((f) => f.code === 'LL_ERR_STORE_EVICTS').map((f) => f.op).sort(), ['maxmemory-policy', 'upstream redis-stream']);
    } finally {
      await setAll('noeviction');
      for (const a of admins) a.disconnect();
      await gw.close();
      await store.close();
      await sink.close?.();
    }
  });
});

/** Why a test that cuts a replication stream with nftables cannot run here, or null. */
function nftUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'skipped: cutting a replication stream needs root (nftables)';
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'skipped: nft is not installed (Debian package nftables)';
  }
}

/** The store's mailbox shard of a user (FNV-1a, 64 shards): the same function as the store's. */
function shard(userId: string, shards = 64): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) h = Math.imul(h ^ userId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % shards;
}
