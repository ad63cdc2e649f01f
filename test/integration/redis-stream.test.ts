import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { Gateway } from '../../src/gateway/gateway.js';
import { STREAM_MAXLEN_DEFAULT, streamSink } from '../../src/upstream/redis-stream.js';
import { redisUnavailable, startRedis, type TestRedis } from '../helpers/redis.js';

// The stream sink trims its stream when asked (MAXLEN ~), and not by default: trimming by length
// drops entries whether a worker has read them or not, and a device's message is acknowledged
// once XADD succeeded. Unbounded growth is Redis's maxmemory with noeviction to stop (XADD fails).

const noRedis = redisUnavailable();
let redis: TestRedis | null = null;
before(async () => {
  if (!noRedis) redis = await startRedis();
});
after(async () => redis?.stop());

const msg = (i: number) => ({ userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: `m${i}`, seq: i, payload: new Uint8Array([i & 0xff]), receivedAt: i });

test('the stream sink trims its stream (MAXLEN ~) to what it is given, and not at all by default or with 0', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const r = new Redis(redis!.url);
  const monitor = await r.monitor();
  const seen: string[][] = [];
  monitor.on('monitor', (_t: string, args: string[]) => {
    if (args[0]?.toLowerCase() === 'xadd') seen.push(args);
  });
  const byDefault = streamSink({ url: redis!.url, stream: 'default' });
  const small = streamSink({ url: redis!.url, stream: 'small', maxLen: 100 });
  const all = streamSink({ url: redis!.url, stream: 'all', maxLen: 0 });
  try {
    await byDefault.send(msg(0));
    for (let i = 0; i < 1000; i++) await small.send(msg(i));
    await all.send(msg(0));
    await new Promise((res) => setTimeout(res, 100));
    assert.ok(seen.find((a) => a[1] === 'default') && !seen.find((a) => a[1] === 'default')!.includes('MAXLEN'), 'no trimming by default');
    assert.equal(STREAM_MAXLEN_DEFAULT, 0);
    assert.ok(seen.find((a) => a[1] === 'small')!.includes('MAXLEN'));
    assert.ok(!seen.find((a) => a[1] === 'all')?.includes('MAXLEN'), 'maxLen 0 keeps everything');
    // Approximate trimming drops whole nodes of the stream (100 entries each by default).
    const len = await r.xlen('small');
    assert.ok(len >= 100 && len <= 200, `trimmed to about 100: ${len}`);
  } finally {
    monitor.disconnect();
    r.disconnect();
    for (const s of [byDefault, small, all]) await s.close?.();
  }
});

test('an XADD to a Redis that stops answering (no reset: a host gone) fails at the sink\'s timeout and is retried, rather than hang for the kernel\'s quarter of an hour', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const net = await import('node:net');
  let blackhole = false;
  const port = Number(new URL(redis!.url).port);
  const socks: import('node:net').Socket[] = [];
  const proxy = net.createServer((c) => {
    const s = net.connect(port, '127.0.0.1');
    socks.push(c, s);
    c.on('data', (d) => void (blackhole || s.write(d)));
    s.on('data', (d) => void (blackhole || c.write(d)));
    c.on('error', () => {});
    s.on('error', () => {});
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  const sink = streamSink({ url: `redis://127.0.0.1:${(proxy.address() as import('node:net').AddressInfo).port}`, stream: `stall-${Date.now()}`, timeoutMs: 1500 });
  const msg = { userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 1 };
  try {
    await sink.send(msg);
    blackhole = true;
    const t0 = Date.now();
    const outcome = await Promise.race([
      sink.send({ ...msg, id: 'm2' }).then(
        () => 'ok',
        (e: Error) => `rejected: ${e.message}`,
      ),
      new Promise((r) => setTimeout(() => r('still pending'), 6000)),
    ]);
    assert.match(String(outcome), /^rejected: .*timed out/i, `after ${Date.now() - t0} ms: ${outcome}`);
  } finally {
    sink.redis.disconnect();
    for (const s of socks) s.destroy();
    proxy.close();
  }
});

test('after a failover behind one address (the old master now a replica answering READONLY), the sink reconnects and its XADD reaches the new master, rather than fail on the old connection for ever', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const net = await import('node:net');
  // A name that moves to the new master on failover (a managed Redis's primary endpoint, a VIP):
  // connections made after the switch reach the new master; the open one stays with the old.
  const other = await startRedis();
  let target = Number(new URL(redis!.url).port);
  const socks: import('node:net').Socket[] = [];
  const proxy = net.createServer((c) => {
    const s = net.connect(target, '127.0.0.1');
    socks.push(c, s);
    c.pipe(s).pipe(c);
    c.on('error', () => {});
    s.on('error', () => {});
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  const stream = `failover-${Date.now()}`;
  const sink = streamSink({ url: `redis://127.0.0.1:${(proxy.address() as import('node:net').AddressInfo).port}`, stream, timeoutMs: 2000 });
  const oldMaster = new Redis(redis!.url);
  const newMaster = new Redis(other.url);
  try {
    await sink.send(msg(1));
    // The failover: the other server is the master now, the old one replicates it.
    target = other.port;
    await oldMaster.call('REPLICAOF', '127.0.0.1', String(other.port));
    const outcomes: string[] = [];
    for (let i = 2; i <= 4; i++) {
      outcomes.push(await sink.send(msg(i)).then(() => 'ok', (e: Error) => e.message.split(' ')[0]));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(outcomes.includes('ok'), `an XADD succeeded after the failover: ${outcomes}`);
    assert.ok((await newMaster.xlen(stream)) >= 1, 'on the new master');
  } finally {
    await oldMaster.call('REPLICAOF', 'NO', 'ONE').catch(() => {});
    oldMaster.disconnect();
    newMaster.disconnect();
    sink.redis.disconnect();
    for (const s of socks) s.destroy();
    proxy.close();
    await other.stop();
  }
});

test('a stream sink on a Redis that deletes keys when full (maxmemory-policy other than noeviction) is reported at listen: a fault LL_ERR_STORE_EVICTS, config, op "upstream redis-stream"; under noeviction none', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const admin = new Redis(redis!.url);
  const gateways: Gateway[] = [];
  const sinks: ReturnType<typeof streamSink>[] = [];
  const start = async () => {
    const sink = streamSink({ url: redis!.url, stream: 'checked' });
    sinks.push(sink);
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink } });
    const faults: { kind: string; op: string; code?: string; message: string }[] = [];
    // Only the sink's: a file limit lower than the default connection limit is reported too.
    gw.on('fault', (f) => f.op !== 'limits.maxConnections' && faults.push({ kind: f.kind, op: f.op, code: (f.error as { code?: string }).code, message: String((f.error as Error).message) }));
    gateways.push(gw);
    await gw.listen();
    // Checked in the background, so a backend not reachable yet does not hold the listeners back.
    await new Promise((r) => setTimeout(r, 300));
    return faults;
  };
  try {
    assert.deepEqual(await start(), [], 'noeviction: nothing to report');
    await admin.config('SET', 'maxmemory-policy', 'volatile-lru');
    const faults = await start();
    assert.equal(faults.length, 1, JSON.stringify(faults));
    assert.deepEqual([faults[0].kind, faults[0].op, faults[0].code], ['config', 'upstream redis-stream', 'LL_ERR_STORE_EVICTS']);
    assert.match(faults[0].message, /volatile-lru.*the stream/);
  } finally {
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    admin.disconnect();
    for (const gw of gateways) await gw.close();
    for (const sink of sinks) await sink.close?.();
  }
});
