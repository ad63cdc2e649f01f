import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
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
