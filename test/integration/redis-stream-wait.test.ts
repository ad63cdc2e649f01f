import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { systemTimers } from '../../src/core/clock.js';
import { UpstreamRunner } from '../../src/gateway/upstream.js';
import { streamSink } from '../../src/upstream/redis-stream.js';
import { redisUnavailable, startRedis, type TestRedis } from '../helpers/redis.js';

// With waitReplicas, an entry XADD wrote but WAIT did not see replicated in time failed the attempt,
// and every retry wrote the message again: while a replica was down, each device's waiting message
// added an entry per retry (one every few seconds, for as long as the outage), a stream growing
// without bound with copies the workers must each dedup, until Redis was full.

const noRedis = redisUnavailable();
let master: TestRedis | null = null;
before(async () => {
  if (!noRedis) master = await startRedis();
});
after(async () => master?.stop());

test('a stream entry written but not replicated in time is waited for again on retry, not written again: one entry per message however long the replica is away', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const stream = `wait-${Date.now()}`;
  const sink = streamSink({ url: master!.url, stream, waitReplicas: 1, waitTimeoutMs: 50 });
  const runner = new UpstreamRunner({ sink, retryMinMs: 20, retryMaxMs: 40 }, systemTimers, () => {});
  const r = new Redis(master!.url);
  let replica: TestRedis | null = null;
  let replicaRedis: Redis | null = null;
  const t0 = Date.now();
  try {
    const msg = { userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 1 };
    const delivered = runner.deliver(msg, () => Date.now() - t0 < 15_000);
    // No replica for a second: WAIT answers 0 at every attempt.
    await new Promise((res) => setTimeout(res, 1000));
    const during = await r.xlen(stream);
    replica = await startRedis();
    replicaRedis = new Redis(replica.url);
    // Loaded from the socket: a replica writes the master's snapshot to dump.rdb in the cwd otherwise.
    await replicaRedis.call('CONFIG', 'SET', 'repl-diskless-load', 'on-empty-db');
    await replicaRedis.call('REPLICAOF', '127.0.0.1', String(master!.port));
    assert.deepEqual(await delivered, {}, 'accepted once the replica has it');
    assert.ok(runner.stats.failures >= 5, `retried while no replica answered (${runner.stats.failures} failures)`);
    assert.equal(during, 1, `entries while the replica was away: ${during}`);
    assert.equal(await r.xlen(stream), 1, 'one entry for the one message');
    assert.equal(await replicaRedis.xlen(stream), 1, 'the replica holds it');
  } finally {
    r.disconnect();
    replicaRedis?.disconnect();
    await sink.close?.();
    await replica?.stop();
  }
});

test('a stream entry written but not replicated, then gone (a failover to a replica that never got it), is written again on retry', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const stream = `gone-${Date.now()}`;
  const sink = streamSink({ url: master!.url, stream, waitReplicas: 1, waitTimeoutMs: 50 });
  const r = new Redis(master!.url);
  let replica: TestRedis | null = null;
  let replicaRedis: Redis | null = null;
  try {
    const msg = { userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 1 };
    await assert.rejects(sink.send(msg), /reached 0 of 1 replicas/);
    const first = (await r.xrange(stream, '-', '+'))[0]![0];
    await r.xdel(stream, first);
    replica = await startRedis();
    replicaRedis = new Redis(replica.url);
    // Loaded from the socket: a replica writes the master's snapshot to dump.rdb in the cwd otherwise.
    await replicaRedis.call('CONFIG', 'SET', 'repl-diskless-load', 'on-empty-db');
    await replicaRedis.call('REPLICAOF', '127.0.0.1', String(master!.port));
    let ok = false;
    for (let i = 0; i < 100 && !ok; i++) ok = await sink.send(msg).then(() => true, () => new Promise<boolean>((res) => setTimeout(() => res(false), 100)));
    assert.ok(ok, 'accepted once the replica is there');
    const entries = await r.xrange(stream, '-', '+');
    assert.equal(entries.length, 1, 'written again, once');
    assert.notEqual(entries[0]![0], first);
    assert.equal(await replicaRedis.xlen(stream), 1, 'the replica holds it');
  } finally {
    r.disconnect();
    replicaRedis?.disconnect();
    await sink.close?.();
    await replica?.stop();
  }
});
