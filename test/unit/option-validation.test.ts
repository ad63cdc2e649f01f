import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkBrowserClient } from '../../src/browser/index.js';
import { LonglinkClient } from '../../src/client/client.js';
import { ManualClock, systemTimers } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { RedisStore, type RedisStoreOptions } from '../../src/gateway/stores/redis-store.js';
import { UpstreamRunner, type UpstreamSink } from '../../src/gateway/upstream.js';
import { streamSink } from '../../src/upstream/redis-stream.js';
import { webhookSink } from '../../src/upstream/webhook.js';
import { flush, memoryLinkPair } from '../helpers/memory-link.js';

// Options that would reach the wire or the kernel as values they cannot carry
// (a fractional or infinite interval in a varint, a keepalive count above
// TCP_KEEPCNT's 127) are refused when the gateway or client is built, with
// LL_ERR_INVALID_OPTION naming the option: not a RangeError or EINVAL thrown
// later from an event handler, which would end the process.

const base = { url: 'tcp://x:1', userId: 'u', deviceId: 'd' };
const invalid = (name: RegExp) => (e: unknown) => {
  assert.equal((e as { code?: string }).code, 'LL_ERR_INVALID_OPTION');
  assert.match((e as Error).message, name);
  return true;
};

test('gateway heartbeat: fractional, infinite or NaN values are refused at construction', () => {
  for (const heartbeat of [{ graceMs: 2500.5 }, { intervalMs: 25_000 * 1.1 }, { minIntervalMs: 5000.5 }, { maxIntervalMs: 600_000.5 }, { graceMs: Infinity }]) {
    const name = new RegExp(Object.keys(heartbeat)[0]);
    assert.throws(() => new Gateway({ tcp: false, ws: false, heartbeat }), invalid(name), JSON.stringify(heartbeat));
  }
});

test('client intervalMs: fractional, NaN, negative, infinite or beyond a timer is refused at construction', () => {
  for (const intervalMs of [25_000 * 1.1, NaN, -1, 0, Infinity, 2 ** 31]) {
    assert.throws(() => new LonglinkClient({ ...base, intervalMs }), invalid(/intervalMs/), String(intervalMs));
    assert.throws(() => new LonglinkClient({ ...base, intervalMs, adaptive: true }), invalid(/intervalMs/), `adaptive, ${intervalMs}`);
  }
  for (const startMs of [4000.5, NaN, Infinity]) {
    assert.throws(() => new LonglinkClient({ ...base, adaptive: { startMs } }), invalid(/startMs/), String(startMs));
  }
  assert.doesNotThrow(() => new LonglinkClient({ ...base, intervalMs: 27_500 }));
});

test('setIntervalMs refuses what HELLO could not carry, connected or not', async () => {
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, clock, timers: clock, wheelTickMs: 1 });
  const hellos: (number | undefined)[] = [];
  const client = new LonglinkClient({
    ...base,
    clock,
    timers: clock,
    reconnect: { initialDelayMs: 100, maxDelayMs: 100, minDelayMs: 100 },
    dial: async () => {
      const [s, c] = memoryLinkPair();
      const send = c.send.bind(c);
      c.send = (f) => {
        if (f.type === 1) hellos.push((f as { intervalMs?: number }).intervalMs);
        send(f);
      };
      gw.accept(s);
      return c;
    },
  });
  for (const ms of [27_500.5, NaN, -5, Infinity, 2 ** 31]) assert.throws(() => client.setIntervalMs(ms), invalid(/intervalMs/), `disconnected, ${ms}`);
  client.setIntervalMs(27_500);
  await Promise.all([client.connect(), flush()]);
  assert.deepEqual(hellos, [27_500]);
  for (const ms of [27_500.5, NaN, Infinity]) assert.throws(() => client.setIntervalMs(ms), invalid(/intervalMs/), `connected, ${ms}`);
  assert.equal(client.state, 'open');
  client.close();
  await gw.close();
});

test('keepalive values the kernel refuses are refused by gateway and client options', () => {
  const bad = [
    { keepaliveIdleMs: 1000, keepaliveCount: 200 }, // TCP_KEEPCNT: at most 127
    { keepaliveIdleMs: 1000, keepaliveCount: 2.5 },
    { userTimeoutMs: 3_000_000_000 }, // TCP_USER_TIMEOUT is an int
    { keepaliveIdleMs: 32_768_000 }, // TCP_KEEPIDLE: at most 32767 s
    { keepaliveIdleMs: 1000, keepaliveIntervalMs: 32_768_000 }, // TCP_KEEPINTVL: at most 32767 s
    { keepaliveIdleMs: 1000, keepaliveIntervalMs: 500 }, // whole seconds
    { keepaliveIdleMs: 1500 }, // whole seconds: the kernel took 1 s
    { keepaliveIdleMs: 60_000, keepaliveIntervalMs: 2500 },
    { userTimeoutMs: 2500.5 },
    { keepaliveIdleMs: NaN },
  ];
  for (const keepalive of bad) {
    const name = new RegExp(Object.keys(keepalive).at(-1)!);
    assert.throws(() => new Gateway({ tcp: false, ws: false, keepalive }), invalid(name), `gateway ${JSON.stringify(keepalive)}`);
    assert.throws(() => new LonglinkClient({ ...base, keepalive }), invalid(name), `client ${JSON.stringify(keepalive)}`);
  }
  const top = { keepaliveIdleMs: 32_767_000, keepaliveIntervalMs: 32_767_000, keepaliveCount: 127, userTimeoutMs: 2 ** 31 - 1 };
  // TCP_USER_TIMEOUT counts milliseconds: any whole number of them.
  assert.doesNotThrow(() => new Gateway({ tcp: false, ws: false, keepalive: { keepaliveIdleMs: 2000, keepaliveIntervalMs: 1000, userTimeoutMs: 2500 } }));
  assert.doesNotThrow(() => new Gateway({ tcp: false, ws: false, keepalive: top }));
  assert.doesNotThrow(() => new LonglinkClient({ ...base, keepalive: top }));
});

test('keepalive interval or count without an idle time is refused: keepalive is off without one, so they were silently not applied', () => {
  for (const keepalive of [{ keepaliveIntervalMs: 10_000 }, { keepaliveCount: 3 }, { keepaliveIdleMs: 0, keepaliveIntervalMs: 10_000, keepaliveCount: 3 }]) {
    assert.throws(() => new Gateway({ tcp: false, ws: false, keepalive }), invalid(/keepaliveIdleMs/), `gateway ${JSON.stringify(keepalive)}`);
    assert.throws(() => new LonglinkClient({ ...base, keepalive }), invalid(/keepaliveIdleMs/), `client ${JSON.stringify(keepalive)}`);
  }
  // The user timeout stands alone (it does not need keepalive), and 0 for the others means unset.
  for (const keepalive of [{ userTimeoutMs: 30_000 }, { keepaliveIntervalMs: 0, keepaliveCount: 0 }, { keepaliveIdleMs: 60_000, keepaliveCount: 3 }]) {
    assert.doesNotThrow(() => new Gateway({ tcp: false, ws: false, keepalive }), JSON.stringify(keepalive));
    assert.doesNotThrow(() => new LonglinkClient({ ...base, keepalive }), JSON.stringify(keepalive));
  }
});

test('reconnect backoff options that would make NaN, instant or overflowing delays are refused', () => {
  for (const reconnect of [{ maxDelayMs: Number(undefined) }, { initialDelayMs: NaN }, { minDelayMs: NaN }, { factor: NaN }, { factor: 0 }, { factor: 0.5 }, { maxDelayMs: Infinity }, { maxDelayMs: 2 ** 31 }, { initialDelayMs: -1 }]) {
    const name = new RegExp(`reconnect.${Object.keys(reconnect)[0]}`);
    assert.throws(() => new LonglinkClient({ ...base, reconnect }), invalid(name), JSON.stringify(reconnect));
  }
  assert.doesNotThrow(() => new LonglinkClient({ ...base, reconnect: { factor: 1, maxDelayMs: 2 ** 31 - 1 } }));
});

test('client timeouts a timer cannot hold are refused: handshakeTimeoutMs Infinity ("no limit") once made every attempt time out after 1 ms', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ handshakeTimeoutMs: Infinity }, /handshakeTimeoutMs/],
    [{ handshakeTimeoutMs: 2 ** 31 }, /handshakeTimeoutMs/],
    [{ handshakeTimeoutMs: 0 }, /handshakeTimeoutMs/],
    [{ handshakeTimeoutMs: NaN }, /handshakeTimeoutMs/],
    [{ reconnect: { stableAfterMs: Infinity } }, /stableAfterMs/],
    [{ reconnect: { stableAfterMs: -1 } }, /stableAfterMs/],
    [{ ackDelayMs: NaN }, /ackDelayMs/],
    [{ ackDelayMs: 2 ** 31 }, /ackDelayMs/],
    [{ closeFlushMs: NaN }, /closeFlushMs/],
    [{ closeFlushMs: -1 }, /closeFlushMs/],
  ];
  for (const [opts, name] of cases) assert.throws(() => new LonglinkClient({ ...base, ...opts }), invalid(name), JSON.stringify(opts));
  assert.doesNotThrow(() => new LonglinkClient({ ...base, handshakeTimeoutMs: 2 ** 31 - 1, ackDelayMs: 0, closeFlushMs: 0, reconnect: { stableAfterMs: 0 } }));
  assert.throws(() => new LonglinkClient(base).close({ flushMs: NaN }), invalid(/flushMs/));
});

// An explicit undefined means "the default" everywhere else in the options (dropUndefined);
// here it overrides the browser client's own defaults with the Node ones.
test('browser client: an explicit undefined direction or timers keeps the browser defaults', () => {
  const opts: { direction?: 'client' | 'server'; timers?: undefined } = { direction: undefined, timers: undefined };
  const c = new LonglinkBrowserClient({ url: 'ws://gw.example/longlink', userId: 'u', deviceId: 'd', watchPage: false, ...opts });
  assert.equal(c.options.direction, 'server', 'server-sent heartbeats are the browser default');
  assert.notEqual(c.options.timers, systemTimers, "Node's timers call unref(), which a browser timer id does not have");
  c.close();
});

test('client maxFrameBytes, maxOutbox, maxOutboxBytes, maxInFlight, maxInFlightBytes, maxDataPerSecond, dataBurst: NaN, 0 (but a pace of 0), negative or fractional is refused at construction', () => {
  for (const v of [NaN, 0, -1, Infinity]) {
    for (const name of ['maxFrameBytes', 'maxOutbox', 'maxOutboxBytes', 'maxInFlight', 'maxInFlightBytes'] as const) {
      assert.throws(() => new LonglinkClient({ ...base, [name]: v }), invalid(new RegExp(name)), `${name} ${v}`);
    }
  }
  assert.throws(() => new LonglinkClient({ ...base, maxFrameBytes: 1000.5 }), invalid(/maxFrameBytes/));
  assert.throws(() => new LonglinkClient({ ...base, maxInFlight: 1.5 }), invalid(/maxInFlight/));
  for (const v of [NaN, -1, Infinity]) assert.throws(() => new LonglinkClient({ ...base, maxDataPerSecond: v }), invalid(/maxDataPerSecond/), `maxDataPerSecond ${v}`);
  for (const v of [NaN, 0, -1, 2.5]) assert.throws(() => new LonglinkClient({ ...base, dataBurst: v }), invalid(/dataBurst/), `dataBurst ${v}`);
  assert.doesNotThrow(() => new LonglinkClient({ ...base, maxDataPerSecond: 0, dataBurst: 1 }).close());
  assert.doesNotThrow(() => new LonglinkClient({ ...base, maxFrameBytes: 4096, maxOutbox: 1, maxOutboxBytes: 1, maxInFlight: 1, maxInFlightBytes: 1 }).close());
});

test('wheelTickMs beyond a timer (2^31 − 1 ms) is refused: Node fires such a timer after 1 ms, and the runner re-armed it every millisecond', () => {
  for (const wheelTickMs of [2 ** 31, 2 ** 40, Number.MAX_VALUE]) {
    assert.throws(() => new Gateway({ tcp: false, ws: false, wheelTickMs }), invalid(/wheelTickMs/), String(wheelTickMs));
  }
  assert.doesNotThrow(() => new Gateway({ tcp: false, ws: false, wheelTickMs: 2 ** 31 - 1 }));
});

test('client clientInfo from JavaScript: a value that is not a string is refused at construction (null or undefined is left out), never thrown by the HELLO encoder inside an attempt', async () => {
  for (const v of [5, true, { a: 1 }]) {
    assert.throws(() => new LonglinkClient({ ...base, clientInfo: { app: v } as unknown as Record<string, string> }), invalid(/clientInfo\.app/), JSON.stringify(v));
  }
  const rejections: unknown[] = [];
  const onRejection = (r: unknown) => rejections.push(r);
  process.on('unhandledRejection', onRejection);
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, clock, timers: clock });
  try {
    const client = new LonglinkClient({
      ...base,
      clientInfo: { app: null, os: 'linux', v: undefined } as unknown as Record<string, string>,
      clock,
      timers: clock,
      dial: async () => {
        const [s, c] = memoryLinkPair();
        gw.accept(s);
        return c;
      },
    });
    const opened = client.connect().then(() => 'open', (e: Error) => e.message);
    await flush();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(rejections.map(String), [], 'no unhandled rejection');
    assert.equal(await Promise.race([opened, 'pending']), 'open');
    assert.deepEqual(gw.connection('u', 'd')?.clientInfo, { os: 'linux' });
    client.close();
  } finally {
    process.off('unhandledRejection', onRejection);
    await gw.close();
  }
});

// Each of these is armed as one timer: past 2^31 − 1 ms Node fires it after 1 ms, so a value meant
// as "rarely" or "long" (sweepIntervalMs 1e10) made it run every millisecond.
const GATEWAY_TIMER_OPTIONS: [string, (ms: number) => ConstructorParameters<typeof Gateway>[0], number][] = [
  ['delivery.sweepIntervalMs', (ms) => ({ delivery: { sweepIntervalMs: ms } }), 1],
  ['delivery.pushWaitMs', (ms) => ({ delivery: { pushWaitMs: ms } }), 0],
  ['delivery.ackDelayMs', (ms) => ({ delivery: { ackDelayMs: ms } }), 0],
  ['handshakeTimeoutMs', (ms) => ({ handshakeTimeoutMs: ms }), 1],
];

test('gateway options armed as one timer are refused beyond 2^31 − 1 ms (Node fires such a timer after 1 ms)', () => {
  for (const [name, opts, min] of GATEWAY_TIMER_OPTIONS) {
    const re = new RegExp(name.replace('.', '\\.'));
    for (const ms of [2 ** 31, 1e10, Infinity, NaN, min - 1]) {
      assert.throws(() => new Gateway({ tcp: false, ws: false, ...opts(ms) }), invalid(re), `${name} ${ms}`);
    }
    for (const ms of [min, 2 ** 31 - 1]) assert.doesNotThrow(() => new Gateway({ tcp: false, ws: false, ...opts(ms) }), `${name} ${ms}`);
  }
});

// The sinks' deadlines are timers too: the webhook's per request, the Redis stream's per command
// (ioredis commandTimeout). Past 2^31 − 1 ms each request or XADD failed 1 ms after it went out.
const SINK_TIMER_OPTIONS: [string, (ms: number) => UpstreamSink, RegExp][] = [
  ['webhookSink timeoutMs', (ms) => webhookSink({ url: 'http://127.0.0.1:1/', timeoutMs: ms }), /webhook timeoutMs/],
  ['streamSink timeoutMs', (ms) => streamSink({ url: 'redis://127.0.0.1:1', timeoutMs: ms }), /stream timeoutMs/],
  ['streamSink waitTimeoutMs', (ms) => streamSink({ url: 'redis://127.0.0.1:1', waitTimeoutMs: ms }), /stream (waitTimeoutMs|timeoutMs)/],
];

test('upstream sinks refuse a deadline a timer cannot hold (beyond 2^31 − 1 ms, NaN, below 1)', async () => {
  for (const [name, make, re] of SINK_TIMER_OPTIONS) {
    for (const ms of [2 ** 31, 3e9, Infinity, NaN, -1]) {
      let sink: UpstreamSink | undefined;
      try {
        assert.throws(() => (sink = make(ms)), invalid(re), `${name} ${ms}`);
      } finally {
        await sink?.close?.();
      }
    }
  }
  await webhookSink({ url: 'http://127.0.0.1:1/', timeoutMs: 2 ** 31 - 1 }).close?.();
});

test('a WAIT timeout is a whole number of ms from 1: Redis reads 0 as "until the replicas answer" and refuses a fraction', async () => {
  for (const waitTimeoutMs of [0, 0.5, 250.5]) {
    let sink: UpstreamSink | undefined;
    let store: RedisStore | undefined;
    try {
      assert.throws(() => (sink = streamSink({ url: 'redis://127.0.0.1:1', waitReplicas: 1, waitTimeoutMs })), invalid(/stream waitTimeoutMs/), `streamSink ${waitTimeoutMs}`);
      assert.throws(() => (store = new RedisStore({ url: 'redis://127.0.0.1:1', waitReplicas: 1, waitTimeoutMs })), invalid(/redis waitTimeoutMs/), `RedisStore ${waitTimeoutMs}`);
    } finally {
      await sink?.close?.();
      await store?.close().catch(() => {});
    }
  }
});

test("the upstream runner's default attempt deadline (the sink's plus a second) stays a timer's", () => {
  const sink: UpstreamSink = { name: 'slow', timeoutMs: 2 ** 31 - 1, send: async () => {} };
  const runner = new UpstreamRunner({ sink }, systemTimers, () => {});
  assert.ok(runner.o.attemptTimeoutMs <= 2 ** 31 - 1, `attemptTimeoutMs ${runner.o.attemptTimeoutMs}`);
  for (const attemptTimeoutMs of [2 ** 31, 1e10]) {
    assert.throws(() => new UpstreamRunner({ sink, attemptTimeoutMs }, systemTimers, () => {}), invalid(/attemptTimeoutMs/));
  }
});

// The Redis store's lease renewal is a setInterval, its subscriber's check a timer of the lease's
// slack, and each command's deadline (ioredis commandTimeout) a timer: past 2^31 − 1 ms Node fires
// each after 1 ms, a lease renewed (and a PING sent) every millisecond, every command timed out.
const REDIS_TIMER_OPTIONS: [Partial<RedisStoreOptions>, RegExp][] = [
  [{ leaseTtlMs: 2 ** 31, leaseRenewMs: 5000 }, /leaseTtlMs/],
  [{ leaseTtlMs: 1e10, leaseRenewMs: 3e9 }, /leaseTtlMs/],
  [{ commandTimeoutMs: 2 ** 31 }, /commandTimeoutMs/],
  [{ waitTimeoutMs: 2 ** 31 }, /commandTimeoutMs|waitTimeoutMs/],
];

test('the Redis store refuses lease and command timings a timer cannot hold', async () => {
  for (const [opts, re] of REDIS_TIMER_OPTIONS) {
    let store: RedisStore | undefined;
    try {
      assert.throws(() => (store = new RedisStore({ url: 'redis://127.0.0.1:1', ...opts })), invalid(re), JSON.stringify(opts));
    } finally {
      await store?.close().catch(() => {});
    }
  }
});
