import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { CloseCodes, LonglinkError } from '../../src/protocol/errors.js';
import { FrameType } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The Node client's heartbeat, detection and reconnect policy on a fake clock,
// against a real Gateway over in-memory links.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
const PROBES = { pongTimeoutMs: 300, probeCount: 2, probeIntervalMs: 100 };

function setup(opts: { random?: () => number } = {}) {
  const clock = new ManualClock(5_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock });
  const links: MemoryLink[] = [];
  let up = true;
  const client = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    probes: PROBES,
    reconnect: { initialDelayMs: 1000, maxDelayMs: 8000, minDelayMs: 100, stableAfterMs: 5000 },
    clock,
    timers: clock,
    random: opts.random ?? (() => 0.5),
    dial: async () => {
      if (!up) throw new Error('ECONNREFUSED');
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      links.push(c);
      return c;
    },
  });
  const closes: CloseEvent[] = [];
  const delays: number[] = [];
  client.on('close', (e) => closes.push(e));
  client.on('reconnecting', (r) => delays.push(r.delayMs));
  return { clock, gw, client, links, closes, delays, setUp: (v: boolean) => (up = v) };
}

const sentPings = (l: MemoryLink) => l.peer.received.filter((f) => f.type === FrameType.PING);

test('an idle client pings once per interval and never goes offline', async () => {
  const { clock, gw, client, links } = setup();
  let offline = 0;
  gw.on('offline', () => offline++);
  await Promise.all([client.connect(), flush()]);
  for (let i = 0; i < 100; i++) clock.advance(100);
  assert.equal(sentPings(links[0]).length, 10);
  assert.equal(client.stats.pongsReceived, 10);
  assert.equal(offline, 0);
  client.close();
  await gw.close();
});

test('traffic suppresses heartbeats in both directions', async () => {
  const { clock, gw, client, links } = setup();
  gw.on('message', (m) => gw.send(m.userId, m.payload));
  await Promise.all([client.connect(), flush()]);
  for (let i = 0; i < 20; i++) {
    clock.advance(500);
    client.send('x');
    await flush();
  }
  assert.equal(sentPings(links[0]).length, 0, 'outbound data is a heartbeat');
  assert.equal(client.stats.dataReceived, 20);
  client.close();
  await gw.close();
});

test('a silent gateway is declared dead at interval + pongTimeout + probeCount × probeInterval', async () => {
  const { clock, gw, client, links, closes } = setup();
  await Promise.all([client.connect(), flush()]);
  const heard = clock.now();
  links[0].deaf = true; // the gateway freezes: nothing reaches the client
  clock.advance(1000 + 300 + 200 - 1);
  assert.equal(closes.length, 0);
  assert.equal(client.state, 'suspect', 'suspect while probing');
  assert.equal(sentPings(links[0]).length, 3, 'one heartbeat and two quick probes');
  clock.advance(1);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, CloseCodes['heartbeat-timeout']);
  assert.equal(closes[0].willReconnect, true);
  assert.equal(clock.now() - heard, 1500);
  client.close();
  await gw.close();
});

test('reconnects with capped exponential backoff and full jitter, then resumes; a stable link resets the backoff', async () => {
  const { clock, gw, client, links, delays, setUp } = setup({ random: () => 0.999 });
  await Promise.all([client.connect(), flush()]);
  const firstSession = client.sessionId;
  setUp(false);
  links[0].destroy();
  for (let i = 0; i < 6; i++) {
    clock.advance(delays.at(-1)!);
    await flush();
  }
  // ceilings 1000, 2000, 4000, 8000, 8000, ... with random → 1 takes the ceiling.
  assert.deepEqual(delays.slice(0, 6), [999, 1998, 3996, 7992, 7992, 7992]);
  setUp(true);
  clock.advance(delays.at(-1)!);
  await flush();
  assert.equal(client.state, 'open');
  assert.equal(client.sessionId, firstSession, 'session resumed with the token');
  clock.advance(5000); // stable: the next loss starts from the first ceiling again
  links.at(-1)!.destroy();
  assert.equal(delays.at(-1), 999);
  client.close();
  await gw.close();
});

test('GOAWAY reconnect-after hint overrides the backoff', async () => {
  const { clock, client, gw, delays } = setup();
  await Promise.all([client.connect(), flush()]);
  await gw.close({ reconnectAfterMs: 4321 });
  assert.deepEqual(delays, [4321]);
  clock.advance(1);
  client.close();
});

test('networkChanged probes at once, and reconnects at once when down', async () => {
  const { clock, gw, client, links, delays, setUp } = setup();
  await Promise.all([client.connect(), flush()]);
  clock.advance(100);
  client.networkChanged();
  assert.equal(sentPings(links[0]).length, 1, 'immediate probe');
  assert.equal(client.stats.pongsReceived, 1);
  setUp(false);
  links[0].destroy();
  assert.equal(client.state, 'reconnecting');
  assert.ok(delays[0] >= 100);
  setUp(true);
  client.networkChanged();
  await flush();
  assert.equal(client.state, 'open', 'reconnected without waiting for the backoff');
  client.close();
  await gw.close();
});

test('a link lost while networkChanged()\'s check is on (a page resumed from a freeze, the network gone) reconnects at once; one lost after the check was answered waits the backoff', async () => {
  const { clock, gw, client, links, delays } = setup();
  await Promise.all([client.connect(), flush()]);
  links[0].deaf = true; // the network is gone: the check is not answered
  client.networkChanged();
  assert.equal(client.state, 'suspect', 'checking');
  links[0].destroy();
  assert.deepEqual(delays, [0], 'the check found it dead: back at once');
  clock.advance(0);
  await flush();
  assert.equal(client.state, 'open');
  client.networkChanged();
  await flush();
  assert.equal(client.state, 'open', 'the check was answered');
  links[1].destroy();
  assert.ok(delays[1] >= 100, `then a loss waits the backoff (${delays[1]} ms)`);
  client.close();
  await gw.close();
});

test('a network change during a doomed attempt makes the next attempt go at once', async () => {
  const clock = new ManualClock(5_000);
  let fail: ((err: Error) => void) | null = null;
  const client = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    reconnect: { initialDelayMs: 30_000, minDelayMs: 30_000, maxDelayMs: 30_000 },
    clock,
    timers: clock,
    random: () => 0.5,
    dial: () => new Promise((_, reject) => (fail = reject)),
  });
  const delays: number[] = [];
  client.on('reconnecting', (r) => delays.push(r.delayMs));
  client.connect().catch(() => {});
  await flush();
  // The attempt hangs on the old network; the network comes back meanwhile; then the attempt fails.
  client.networkChanged();
  fail!(new Error('ENETUNREACH'));
  await flush();
  assert.deepEqual(delays, [0], 'retried at once, not after the 30 s backoff');
  clock.advance(0);
  await flush();
  // Without a network change, a failure waits out the backoff as before.
  fail!(new Error('ENETUNREACH'));
  await flush();
  assert.equal(delays[1], 30_000);
  client.close();
});

test('client state rides on the next heartbeat; flush sends it now', async () => {
  const { clock, gw, client, links } = setup();
  await Promise.all([client.connect(), flush()]);
  client.updateState({ fg: '0' });
  assert.equal(sentPings(links[0]).length, 0);
  clock.advance(1000);
  // The first heartbeat also carries the RTT the handshake measured (0 over in-memory links).
  assert.deepEqual(sentPings(links[0])[0], { type: FrameType.PING, state: { fg: '0' }, rttMs: 0 });
  client.updateState({ fg: '1' }, { flush: true });
  assert.equal(sentPings(links[0]).length, 2);
  assert.deepEqual(gw.connection('u', 'd')?.clientState, { fg: '1' });
  client.close();
  await gw.close();
});

test('setIntervalMs is announced at once and the gateway detector follows it', async () => {
  const { clock, gw, client, links } = setup();
  let offline = 0;
  gw.on('offline', () => offline++);
  await Promise.all([client.connect(), flush()]);
  client.setIntervalMs(3000);
  assert.equal(sentPings(links[0])[0]?.intervalMs, 3000);
  assert.equal(gw.connection('u', 'd')?.intervalMs, 3000);
  clock.advance(2999);
  assert.equal(sentPings(links[0]).length, 1, 'no heartbeat before the new interval');
  clock.advance(1);
  assert.equal(sentPings(links[0]).length, 2);
  assert.equal(sentPings(links[0])[1].intervalMs, undefined, 'announced once');
  for (let i = 0; i < 30; i++) clock.advance(1000);
  assert.equal(offline, 0);
  client.close();
  await gw.close();
});

test('permanent close codes stop reconnecting; kicked is one', async () => {
  const { gw, client, closes } = setup();
  await Promise.all([client.connect(), flush()]);
  gw.kick('u');
  assert.equal(closes.at(-1)?.code, CloseCodes.kicked);
  assert.equal(closes.at(-1)?.willReconnect, false);
  assert.equal(client.state, 'closed');
  await gw.close();
});

test('server-sent mode: the client sends no heartbeats and detects a silent gateway by its silence limit', async () => {
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: PROBES, wheelTickMs: 1, clock, timers: clock });
  let link!: MemoryLink;
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', direction: 'server', clock, timers: clock, reconnect: { enabled: false },
    dial: async () => {
      const [s, c] = memoryLinkPair();
      gw.accept(s);
      return (link = c);
    },
  });
  const closes: CloseEvent[] = [];
  client.on('close', (e) => closes.push(e));
  await Promise.all([client.connect(), flush()]);
  for (let i = 0; i < 50; i++) clock.advance(100);
  assert.equal(client.stats.pingsSent, 0);
  assert.equal(link.received.filter((f) => f.type === FrameType.PING).length, 5, 'the gateway sends them');
  link.deaf = true;
  const heard = clock.now();
  clock.advance(2500);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, CloseCodes['heartbeat-timeout']);
  assert.ok(clock.now() - heard <= 2500);
  await gw.close();
});

test('server-sent mode: the client detector follows setIntervalMs, clamped as the gateway clamps it', async () => {
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: PROBES, wheelTickMs: 1, clock, timers: clock });
  let link!: MemoryLink;
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', direction: 'server', clock, timers: clock, reconnect: { enabled: false },
    dial: async () => {
      const [s, c] = memoryLinkPair();
      gw.accept(s);
      return (link = c);
    },
  });
  const closes: CloseEvent[] = [];
  client.on('close', (e) => closes.push(e));
  await Promise.all([client.connect(), flush()]);
  const gwPings = () => link.received.filter((f) => f.type === FrameType.PING).length;

  // Longer than the WELCOME's 1000 ms limit base: the old detector (limit 2500 ms)
  // would convict this healthy link within 2.5 s of the gateway's new pace.
  client.setIntervalMs(4000);
  assert.equal(client.heartbeat?.intervalMs, 4000);
  await flush();
  assert.equal(gw.connection('u', 'd')?.intervalMs, 4000);
  let before = gwPings();
  for (let i = 0; i < 400; i++) clock.advance(100);
  assert.equal(closes.length, 0, 'healthy link kept');
  assert.equal(gwPings() - before, 10, 'the gateway pings every 4 s');

  // Above the granted maximum: both sides clamp to 10 s.
  client.setIntervalMs(60_000);
  assert.equal(client.heartbeat?.intervalMs, 10_000);
  await flush();
  assert.equal(gw.connection('u', 'd')?.intervalMs, 10_000);
  before = gwPings();
  for (let i = 0; i < 1000; i++) clock.advance(100);
  assert.equal(closes.length, 0);
  assert.equal(gwPings() - before, 10);

  // Shorter: adopted on the PONG, then a silent gateway is caught at the new limit.
  client.setIntervalMs(500);
  await flush();
  assert.equal(gw.connection('u', 'd')?.intervalMs, 500);
  for (let i = 0; i < 20; i++) clock.advance(100);
  assert.equal(closes.length, 0);
  link.deaf = true;
  const heardBy = clock.now();
  for (let i = 0; i < 30 && closes.length === 0; i++) clock.advance(100);
  assert.equal(closes[0]?.code, CloseCodes['heartbeat-timeout']);
  assert.ok(clock.now() - heardBy <= 500 * 2 + 500, `closed after ${clock.now() - heardBy} ms`);
  await gw.close();
});

test('setIntervalMs rejects a non-positive interval with a typed error', () => {
  const client = new LonglinkClient({ url: 'tcp://test', userId: 'u', deviceId: 'd', reconnect: { enabled: false } });
  assert.throws(() => client.setIntervalMs(0), { code: 'LL_ERR_INVALID_OPTION' });
  client.close();
});

test('with several gateway URLs the client stays on one while it works and moves to the next after a failure', async () => {
  const clock = new ManualClock(5_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock });
  const dialed: string[] = [];
  const client = new LonglinkClient({
    url: ['tcp://a', 'tcp://b'],
    userId: 'u',
    deviceId: 'd',
    probes: PROBES,
    reconnect: { initialDelayMs: 100, maxDelayMs: 100, minDelayMs: 100 },
    clock,
    timers: clock,
    random: () => 0.5,
    dial: async (url) => {
      dialed.push(url);
      if (url === 'tcp://a' && dialed.length === 1) throw new Error('ECONNREFUSED');
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      return c;
    },
  });
  const opened = client.connect();
  await flush();
  clock.advance(100);
  await Promise.all([opened, flush()]);
  assert.deepEqual(dialed, ['tcp://a', 'tcp://b']);
  assert.equal(client.url, 'tcp://b');
  for (let i = 0; i < 50; i++) clock.advance(100);
  assert.deepEqual(dialed, ['tcp://a', 'tcp://b'], 'no move while the link works');
  client.close();
  await gw.close();
});

test('a GOAWAY hint beyond a timer\'s range is capped at an hour on both sides, never read as "at once"', async () => {
  const { clock, gw, client, links } = setup();
  await Promise.all([client.connect(), flush()]);
  gw.disconnect('u', 'd', { reconnectAfterMs: 2 ** 40 });
  await flush();
  const goaway = links[0].received.find((f) => f.type === FrameType.GOAWAY) as { reconnectAfterMs: number } | undefined;
  assert.equal(goaway?.reconnectAfterMs, 3600_000, 'the gateway caps what it sends');
  clock.advance(60_000);
  await flush();
  assert.equal(links.length, 1, 'no reconnect a millisecond later (the overflow) nor within a minute');
  clock.advance(3600_000);
  await flush();
  assert.equal(links.length, 2, 'back after the hour');
  client.close();
  await gw.close();
});

test('a URL no dialer can open is refused when the client is made, not retried forever', () => {
  for (const url of ['http://127.0.0.1:7420', 'not a url', 'ftp://x']) {
    assert.throws(() => new LonglinkClient({ url, userId: 'u', deviceId: 'd' }), (e: { code?: string; message: string }) => e.code === 'LL_ERR_INVALID_OPTION' && /^url: /.test(e.message), url);
  }
  assert.throws(() => new LonglinkClient({ url: ['tcp://127.0.0.1:1', 'http://x'], userId: 'u', deviceId: 'd' }), /url\[1\]: scheme http: is not supported/);
});

test('the client tells the gateway its smoothed RTT on a PING once it has one, then only when it moves; the gateway shows it', async () => {
  const { clock, gw, client, links } = setup();
  await Promise.all([client.connect(), flush()]);
  for (let i = 0; i < 50; i++) {
    clock.advance(100);
    await flush();
  }
  const pings = sentPings(links[0]) as { rttMs?: number }[];
  assert.equal(pings.length, 5);
  assert.equal(pings[0].rttMs, 0, 'the first heartbeat carries the handshake\'s round trip (in-memory links answer at once)');
  assert.deepEqual(pings.slice(1).map((p) => p.rttMs), [undefined, undefined, undefined, undefined], 'unchanged: bare heartbeats');
  assert.equal(gw.listConnections()[0].rttMs, 0);
  client.close();
  await gw.close();
});

test('updateState() reaches the gateway within one interval while traffic flows both ways (no idle heartbeat is due)', async () => {
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock });
  const client = new LonglinkClient({
    url: 'tcp://x',
    userId: 'u',
    deviceId: 'd',
    probes: PROBES,
    clock,
    timers: clock,
    dial: async () => {
      const [s, c] = memoryLinkPair();
      gw.accept(s);
      return c;
    },
  });
  await Promise.all([client.connect(), flush()]);
  const pings = client.stats.pingsSent;
  client.updateState({ foreground: '0' });
  let reachedAt = -1;
  const from = clock.now();
  for (let t = 0; t < 30 * POLICY.intervalMs && reachedAt < 0; t += 100) {
    client.send('up');
    void gw.push('u', 'down');
    clock.advance(100);
    await flush();
    if (gw.connection('u', 'd')!.clientState.foreground === '0') reachedAt = clock.now();
  }
  assert.ok(reachedAt >= 0, `still pending after 30 intervals of two-way traffic (${client.stats.pingsSent - pings} PINGs sent)`);
  assert.ok(reachedAt - from <= POLICY.intervalMs + 100, `reached the gateway after ${reachedAt - from} ms`);
  client.close();
  await gw.close();
});

test('a URL the dialer can never open (LL_ERR_BAD_URL: a scheme it does not speak, a browser\'s mixed-content refusal) ends the client for good, and connect() settles, instead of retrying at backoff pace for ever', async () => {
  const clock = new ManualClock(5_000);
  let dials = 0;
  const client = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    clock,
    timers: clock,
    dial: async () => {
      dials++;
      throw new LonglinkError('LL_ERR_BAD_URL', 'the browser refuses to open ws://insecure.example/: SecurityError');
    },
  });
  const closes: CloseEvent[] = [];
  client.on('close', (e) => closes.push(e));
  const settled = client.connect().then(() => 'resolved', () => 'rejected');
  for (let i = 0; i < 10; i++) {
    await flush();
    clock.advance(10_000);
  }
  assert.equal(dials, 1);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].willReconnect, false);
  assert.match(await settled, /resolved|rejected/);
  client.close();
});

test('connect() called again and again while the gateway is down shares one wait: listeners do not pile up, and every call settles at the open', async () => {
  const { clock, client, setUp } = setup();
  setUp(false);
  const calls = Array.from({ length: 100 }, () => client.connect());
  await flush();
  assert.ok(client.listenerCount('close') <= 2 && client.listenerCount('open') <= 2, `${client.listenerCount('close')} close and ${client.listenerCount('open')} open listeners after 100 calls`);
  setUp(true);
  for (let i = 0; i < 20 && client.state !== 'open'; i++) {
    clock.advance(1000);
    await flush();
  }
  const opened = await Promise.all(calls);
  assert.equal(opened.length, 100);
  assert.equal(client.listenerCount('close'), 1, 'only the test\'s own');
  client.close();
});

test('the outbox is bounded in bytes too (maxOutboxBytes): a client offline for long holds at most that, a lone message always fits, and acknowledgements make room', async () => {
  const clock = new ManualClock(5_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock });
  let up = false;
  const client = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    maxOutboxBytes: 100,
    clock,
    timers: clock,
    random: () => 0.5,
    dial: async () => {
      if (!up) throw new Error('ECONNREFUSED');
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      return c;
    },
  });
  client.connect().catch(() => {});
  await flush();
  client.send(new Uint8Array(60));
  assert.throws(() => client.send(new Uint8Array(60)), { code: 'LL_ERR_OUTBOX_FULL' });
  client.send(new Uint8Array(40));
  up = true;
  for (let i = 0; i < 20 && client.pendingCount > 0; i++) {
    clock.advance(1000);
    await flush();
  }
  assert.equal(client.pendingCount, 0, 'delivered and acknowledged');
  client.send(new Uint8Array(100));
  assert.throws(() => new LonglinkClient({ url: 'tcp://x:1', userId: 'u', deviceId: 'd', maxOutboxBytes: 0 }), { code: 'LL_ERR_INVALID_OPTION' });
  client.close();
  await gw.close();
});

test('connect() after close() (or after a close for good) starts the backoff afresh: the first failed attempt waits from the initial delay, not from where the last run left it', async () => {
  const { clock, gw, client, links, delays, setUp } = setup({ random: () => 0.999 });
  setUp(false);
  const first = client.connect().catch(() => undefined);
  for (let i = 0; i < 6; i++) {
    await flush();
    clock.advance(10_000);
  }
  await flush();
  assert.equal(delays.at(-1), 7992, 'at the cap');
  client.close();
  await first;
  delays.length = 0;
  const second = client.connect().catch(() => undefined);
  await flush();
  assert.deepEqual(delays, [999], 'close() then connect(): the first ceiling again');
  client.close();
  await second;
  // A close for good (kicked) after failures, then connect(): the same.
  setUp(true);
  const third = client.connect();
  await flush();
  await third;
  setUp(false);
  links.at(-1)!.destroy();
  for (let i = 0; i < 4; i++) {
    await flush();
    clock.advance(10_000);
  }
  await flush();
  setUp(true);
  clock.advance(10_000);
  await flush();
  assert.equal(client.state, 'open');
  gw.kick('u');
  assert.equal(client.state, 'closed');
  setUp(false);
  delays.length = 0;
  const fourth = client.connect().catch(() => undefined);
  await flush();
  assert.deepEqual(delays, [999], 'kicked then connect(): the first ceiling again');
  client.close();
  await fourth;
  await gw.close();
});

test("the 'reconnecting' event's attempt counts every reconnect in a row, hinted (GOAWAY) and immediate ones too", async () => {
  const { clock, client, gw, setUp } = setup();
  const attempts: number[] = [];
  client.on('reconnecting', (r) => attempts.push(r.attempt));
  await Promise.all([client.connect(), flush()]);
  setUp(false);
  await gw.close({ reconnectAfterMs: 300 });
  clock.advance(300);
  await flush();
  // The dial failing: a network change while it is in flight makes the next attempt go at once.
  clock.advance(10_000);
  client.networkChanged();
  await flush();
  clock.advance(10_000);
  await flush();
  assert.deepEqual(attempts.slice(0, 4), [1, 2, 3, 4]);
  client.close();
});

test('the outbox goes out at the client pace (maxDataPerSecond, dataBurst) and within the window (maxInFlight): a gateway with a tight DATA pace takes it all, in order, without 4009', async () => {
  const clock = new ManualClock(5_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, limits: { maxDataPerSecond: 10, dataBurst: 4 } });
  const got: string[] = [];
  gw.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  const links: MemoryLink[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', clock, timers: clock, random: () => 0.5,
    maxDataPerSecond: 10, dataBurst: 2, maxInFlight: 3,
    dial: async () => {
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      links.push(c);
      return c;
    },
  });
  const closes: number[] = [];
  client.on('close', (e) => closes.push(e.code));
  const sent = Array.from({ length: 10 }, (_, i) => `m${i}`);
  for (const s of sent) client.send(s);
  await Promise.all([client.connect(), flush()]);
  const dataOut = () => links[0].peer.received.filter((f) => f.type === FrameType.DATA).length;
  assert.equal(dataOut(), 2, 'the burst');
  clock.advance(100);
  await flush();
  assert.equal(dataOut(), 3, 'then one per 100 ms');
  for (let i = 0; i < 30 && client.pendingCount > 0; i++) {
    clock.advance(50);
    await flush();
    // Written and not acknowledged: never more than the window.
    assert.ok(dataOut() - (10 - client.pendingCount) <= 3, 'within maxInFlight');
  }
  assert.equal(client.pendingCount, 0);
  assert.deepEqual(got, sent);
  assert.deepEqual(closes, []);
  client.close();
  await gw.close();
});

test('a DATA pace so slow its next slot is past 2^31 - 1 ms arms its timer at the cap (Node fires a longer one after 1 ms), and the message still waits its turn', async () => {
  const clock = new ManualClock(5_000);
  // A coarse wheel, so the timers counted below are the few the 10 s need.
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 500, clock, timers: clock });
  const links: MemoryLink[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', clock, timers: clock, random: () => 0.5,
    // One message every ~31.7 years: the slot after the first is 1e12 ms away.
    maxDataPerSecond: 1e-9, dataBurst: 1,
    dial: async () => {
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      links.push(c);
      return c;
    },
  });
  client.send('first');
  client.send('second');
  // ManualClock throws for a delay past 2^31 - 1 ms, as Node would not keep it: before the cap, this threw.
  await Promise.all([client.connect(), flush()]);
  const dataOut = () => links[0].peer.received.filter((f) => f.type === FrameType.DATA).length;
  assert.equal(dataOut(), 1, 'the burst of one');
  const fired = clock.firedCount;
  for (let i = 0; i < 10; i++) {
    clock.advance(1_000);
    await flush();
  }
  assert.equal(dataOut(), 1, 'still waiting for its slot');
  assert.equal(client.pendingCount, 1);
  // Ten seconds: the heartbeats' timers and the wheel's, not a pace timer re-armed every millisecond.
  assert.ok(clock.firedCount - fired < 100, `${clock.firedCount - fired} timers fired in 10 s`);
  client.close();
  await gw.close();
});

test('updateState({ flush: true }) while the link is down goes in a PING as soon as the next link opens, not one interval later', async () => {
  // Server-sent heartbeats (the browser default): the client pings only on demand, so a flushed
  // state (a tab going to the background, say) that waited out a reconnect waited a whole interval more.
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: { ...POLICY, intervalMs: 10_000 }, probes: PROBES, wheelTickMs: 1, clock, timers: clock });
  const links: MemoryLink[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', direction: 'server', clock, timers: clock, random: () => 0.5,
    reconnect: { initialDelayMs: 200, maxDelayMs: 200, minDelayMs: 100 },
    dial: async () => {
      const [s, c] = memoryLinkPair();
      gw.accept(s);
      links.push(c);
      return c;
    },
  });
  await Promise.all([client.connect(), flush()]);
  links[0].destroy();
  assert.equal(client.state as string, 'reconnecting');
  client.updateState({ fg: '0' }, { flush: true });
  for (let i = 0; i < 10 && (client.state as string) !== 'open'; i++) {
    clock.advance(100);
    await flush();
  }
  assert.equal(client.state as string, 'open');
  assert.deepEqual(gw.connection('u', 'd')?.clientState, { fg: '0' }, 'the flushed state reached the gateway with the new link');
  // While connecting, too.
  links[1].destroy();
  clock.advance(50);
  client.updateState({ fg: '1' }, { flush: true });
  for (let i = 0; i < 10 && client.state !== 'open'; i++) {
    clock.advance(100);
    await flush();
  }
  assert.deepEqual(gw.connection('u', 'd')?.clientState, { fg: '1' });
  client.close();
  await gw.close();
});

test('updateState({ flush: true }) on every change goes at most one PING per half the shortest interval, the last state included: never too-many-pings', async () => {
  // The gateway's own default PING pace; the policy's minIntervalMs is 200 ms, so flushes go at most every 100 ms.
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: PROBES, wheelTickMs: 1, clock, timers: clock });
  const links: MemoryLink[] = [];
  const closes: CloseEvent[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', clock, timers: clock, random: () => 0.5,
    dial: async () => {
      const [s, c] = memoryLinkPair();
      gw.accept(s);
      links.push(c);
      return c;
    },
  });
  client.on('close', (e) => closes.push(e));
  await Promise.all([client.connect(), flush()]);
  // A slider dragged for two seconds: a flush every 5 ms.
  for (let i = 0; i < 400; i++) {
    client.updateState({ level: String(i) }, { flush: true });
    clock.advance(5);
    await flush();
  }
  clock.advance(200);
  await flush();
  const pings = sentPings(links[0]).length;
  assert.ok(pings <= 2000 / 100 + 3, `${pings} PINGs for 400 flushes in 2 s`);
  assert.equal(links.length, 1, 'the link stayed up');
  assert.deepEqual(closes, []);
  assert.equal(client.state, 'open');
  assert.deepEqual(gw.connection('u', 'd')?.clientState, { level: '399' }, 'the last state reached the gateway');
  client.close({ flushMs: 0 });
  await gw.close();
});

test('server-sent mode: the client\'s own freeze (a sleep, a long task) longer than its silence limit does not convict a gateway whose PING waits in the socket', async () => {
  // Two clocks: the client's process freezes, the gateway's runs on.
  const gwClock = new ManualClock(0);
  const clock = new ManualClock(0);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: { pongTimeoutMs: 5000, probeCount: 0 }, wheelTickMs: 1, clock: gwClock, timers: gwClock });
  let link!: MemoryLink;
  let frozen = false;
  const held: Uint8Array[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', direction: 'server', clock, timers: clock, reconnect: { enabled: false },
    dial: async () => {
      const [s, c] = memoryLinkPair();
      gw.accept(s);
      // What arrives while the client's process is frozen waits in the kernel, read only when it runs.
      const deliver = c.deliverBytes.bind(c);
      c.deliverBytes = (b) => (frozen ? held.push(b) : deliver(b));
      return (link = c);
    },
  });
  const closes: CloseEvent[] = [];
  client.on('close', (e) => closes.push(e));
  await Promise.all([client.connect(), flush()]);
  const both = (ms: number) => {
    for (let i = 0; i < ms; i += 10) {
      gwClock.advance(10);
      clock.advance(10);
    }
  };
  both(1500);
  assert.equal(link.received.filter((f) => f.type === FrameType.PING).length, 1);
  // The client's process freezes for 3 s (its silence limit is 2.5 s); the gateway pings it meanwhile.
  frozen = true;
  gwClock.advance(3000);
  clock.jump(3000);
  clock.advance(0); // it runs again: its overdue timer first
  const closedBeforeRead = closes.length;
  frozen = false;
  for (const b of held.splice(0)) link.deliverBytes(b); // then the poll reads the socket
  clock.advance(1);
  assert.equal(closedBeforeRead + closes.length, 0, `the client closed (${closes[0]?.reason}) before reading the gateway's PING that waited in its socket`);
  both(3000);
  assert.equal(closes.length, 0);
  client.close();
  await gw.close();
});

test('updateState() from JavaScript: null or undefined deletes the key (as the protocol\'s empty value), any other non-string is refused at the call, and no timer throws', async () => {
  const { clock, gw, client } = setup();
  await Promise.all([client.connect(), flush()]);
  client.updateState({ fg: '1', net: 'wifi' }, { flush: true });
  assert.deepEqual(gw.connection('u', 'd')?.clientState, { fg: '1', net: 'wifi' });
  // Types forbid these; plain JavaScript passes them. The heartbeat carrying them ran in a timer.
  client.updateState({ fg: null, net: undefined } as unknown as Record<string, string>);
  assert.doesNotThrow(() => clock.advance(1000), 'the heartbeat carrying the state');
  assert.deepEqual(gw.connection('u', 'd')?.clientState, {}, 'null and undefined deleted the keys');
  for (const bad of [5, true, { a: 1 }]) {
    assert.throws(() => client.updateState({ fg: bad } as unknown as Record<string, string>), (e: LonglinkError) => e.code === 'LL_ERR_INVALID_OPTION', JSON.stringify(bad));
  }
  assert.doesNotThrow(() => clock.advance(2000), 'nothing refused was kept pending');
  assert.deepEqual(gw.connection('u', 'd')?.clientState, {});
  assert.equal(client.state, 'open');
  client.close();
  await gw.close();
});

test('send() from JavaScript: a payload that is neither a string nor bytes (a number, an object, an ArrayBuffer, null) is refused at the call, not sent as an empty message', async () => {
  const { gw, client } = setup();
  const got: number[] = [];
  gw.on('message', (m) => got.push(m.payload.length));
  await Promise.all([client.connect(), flush()]);
  for (const bad of [123, { a: 1 }, new ArrayBuffer(3), null, new DataView(new ArrayBuffer(2))]) {
    assert.throws(() => client.send(bad as unknown as Uint8Array), (e: LonglinkError) => e.code === 'LL_ERR_INVALID_OPTION', Object.prototype.toString.call(bad));
  }
  assert.equal(client.pendingCount, 0, 'nothing refused was queued');
  client.send(Buffer.from('ab'));
  client.send('xyz');
  await flush();
  assert.deepEqual(got, [2, 3]);
  client.close();
  await gw.close();
});

test('send() from JavaScript: an id that is not a string (a number, an object, a boolean) is refused at the call, not sent as its text while `acked` reports the value', async () => {
  const { clock, gw, client } = setup();
  const acked: unknown[] = [];
  client.on('acked', (a) => acked.push(a.id));
  await Promise.all([client.connect(), flush()]);
  for (const bad of [5, { a: 1 }, 5n, true]) {
    assert.throws(() => client.send('x', { id: bad as unknown as string }), (e: LonglinkError) => e.code === 'LL_ERR_INVALID_OPTION', String(bad));
  }
  assert.equal(client.pendingCount, 0, 'nothing refused was queued');
  assert.equal(client.send('x', { id: 'm-5' }), 'm-5');
  for (const none of [undefined, null]) assert.match(client.send('y', { id: none as unknown as string }), /-\d+$/, 'no id (undefined, or null from JavaScript) is a generated one');
  await flush();
  clock.advance(100); // the gateway's ackDelayMs
  await flush();
  assert.deepEqual(acked.slice(0, 1), ['m-5']);
  client.close();
  await gw.close();
});

test("send(): an id longer than the gateway's id limit, or empty, is refused at the call: kept for re-sending, it made the gateway close every link with field-too-large (permanent)", async () => {
  const { clock, gw, client } = setup();
  const closes: number[] = [];
  client.on('close', (c) => closes.push(c.code));
  await Promise.all([client.connect(), flush()]);
  for (const bad of ['x'.repeat(129), 'é'.repeat(65), '']) {
    assert.throws(() => client.send('x', { id: bad }), (e: LonglinkError) => e.code === 'LL_ERR_INVALID_OPTION', `${bad.length} characters`);
  }
  assert.equal(client.pendingCount, 0, 'nothing refused was queued');
  assert.equal(client.send('x', { id: 'é'.repeat(64) }), 'é'.repeat(64), '128 bytes fits');
  await flush();
  clock.advance(100);
  await flush();
  assert.deepEqual(closes, [], 'the gateway kept the link');
  assert.equal(client.pendingCount, 0, 'and acknowledged the message');
  client.close();
  await gw.close();
});

test("networkChanged() from a 'reconnecting' handler (within a second of the last attempt a network change started) plans one attempt, not a second one beside it that dials again over the open link", async () => {
  const { clock, gw, client, links, delays, closes, setUp } = setup();
  await Promise.all([client.connect(), flush()]);
  setUp(false);
  links[0].destroy();
  let changes = 0;
  client.on('reconnecting', () => {
    if (changes++ === 0) client.networkChanged(); // the app hears of the network again meanwhile
  });
  client.networkChanged(); // the network is back (it is not): an attempt at once, which fails
  await flush();
  assert.equal(delays.length, 2);
  setUp(true);
  const states: string[] = [];
  client.on('state', (s) => states.push(s));
  for (let i = 0; i < 200; i++) {
    clock.advance(100);
    await flush();
  }
  assert.deepEqual(states, ['connecting', 'open'], `one attempt dialed, not two (${links.length - 1} dials; then ${closes.slice(2).map((c) => `${c.code} ${c.reason}`).join(', ')})`);
  assert.equal(client.state, 'open');
  assert.equal(links.length, 2);
  assert.equal(links[1].closed, false, 'the link in use is the one the attempt opened');
  client.close();
  await gw.close();
});

test("networkChanged() from a 'close' handler (willReconnect) plans the next attempt at once, within the once-a-second cap, not after the backoff", async () => {
  const { clock, gw, client, links, delays } = setup();
  await Promise.all([client.connect(), flush()]);
  client.on('close', (e) => {
    if (e.willReconnect) client.networkChanged(); // the app learns the link died of a network change
  });
  links[0].destroy();
  assert.deepEqual(delays, [0], 'the first redial at once');
  clock.advance(0);
  await flush();
  assert.equal(client.state, 'open');
  clock.advance(300);
  links[1].destroy();
  assert.deepEqual(delays, [0, 700], 'the next one a second after the last the network started, not the backoff');
  clock.advance(700);
  await flush();
  assert.equal(client.state, 'open');
  assert.equal(links.length, 3);
  client.close();
  await gw.close();
});

/** A gateway whose authenticator (a connect hook) grants every device 3 s, whatever it asks, answering in the same turn. */
function hookSetup() {
  const clock = new ManualClock(0);
  const authenticate = (h: { userId: string; deviceId: string }) => ({ userId: h.userId, deviceId: h.deviceId, heartbeat: { intervalMs: 3000 } });
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: PROBES, wheelTickMs: 1, clock, timers: clock, authenticate });
  const links: MemoryLink[] = [];
  const dial = async () => {
    const [s, c] = memoryLinkPair();
    gw.accept(s);
    links.push(c);
    return c;
  };
  return { clock, gw, links, dial };
}

test('a WELCOME that comes back within the HELLO\'s write (an in-process link) is not followed by a PING re-announcing the interval HELLO asked for', async () => {
  const { clock, gw, links, dial } = hookSetup();
  const client = new LonglinkClient({ url: 'tcp://test', userId: 'u', deviceId: 'd', intervalMs: 1000, probes: PROBES, clock, timers: clock, reconnect: { enabled: false }, dial });
  await Promise.all([client.connect(), flush()]);
  assert.deepEqual(sentPings(links[0]).map((f) => f.intervalMs), [], 'HELLO carried the interval: nothing re-announced');
  assert.equal(client.heartbeat?.intervalMs, 3000);
  assert.equal(gw.connection('u', 'd')?.intervalMs, 3000);
  client.close();
  await gw.close();
});

test("a connect hook's heartbeat interval binds the link: the client's later announcements (setIntervalMs, the adaptive learner's probes) do not undo it", async () => {
  const { clock, gw, dial } = hookSetup();
  let offline = 0;
  gw.on('offline', () => offline++);
  const fixed = new LonglinkClient({ url: 'tcp://test', userId: 'u', deviceId: 'fixed', intervalMs: 1000, probes: PROBES, clock, timers: clock, reconnect: { enabled: false }, dial });
  await Promise.all([fixed.connect(), flush()]);
  fixed.setIntervalMs(8000);
  await flush();
  assert.equal(gw.connection('u', 'fixed')?.intervalMs, 3000, "setIntervalMs does not move the hook's interval");
  assert.equal(fixed.heartbeat?.intervalMs, 3000, 'the client keeps the interval the gateway times it with');
  const adaptive = new LonglinkClient({ url: 'tcp://test', userId: 'u', deviceId: 'adaptive', adaptive: true, probes: PROBES, clock, timers: clock, reconnect: { enabled: false }, dial });
  await Promise.all([adaptive.connect(), flush()]);
  for (let i = 0; i < 300; i++) {
    clock.advance(100);
    await flush();
  }
  assert.equal(gw.connection('u', 'adaptive')?.intervalMs, 3000, "the adaptive client's probes do not move the hook's interval");
  assert.equal(adaptive.heartbeat?.intervalMs, 3000);
  assert.equal(offline, 0);
  fixed.close();
  adaptive.close();
  await gw.close();
});
