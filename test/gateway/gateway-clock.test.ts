import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UPSTREAM_DEFAULTS, type UpstreamEvent, type UpstreamSink, type UpstreamStats } from '../../src/gateway/upstream.js';

const pick = (s: Readonly<UpstreamStats>) => ({ eventsSent: s.eventsSent, eventsLost: s.eventsLost, eventsDropped: s.eventsDropped, eventsPending: s.eventsPending });
import { GatewayMetrics } from '../../src/admin/metrics.js';
import { ManualClock } from '../../src/core/clock.js';
import { LIMIT_DEFAULTS, type Identity } from '../../src/gateway/options.js';
import { Gateway, OPEN_SESSION_TTL_MS, type FaultEvent, type OfflineEvent, type ReplacedEvent } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { PresenceEntry, ResyncReason, SessionRecord } from '../../src/gateway/stores/store.js';
import { CloseCodes, LonglinkError, ProtocolError } from '../../src/protocol/errors.js';
import { FrameType, PROTOCOL_VERSION, type Frame, type HelloFrame, type WelcomeFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// Gateway and connection state machine on a fake clock: every deadline is
// checked to the millisecond (wheel tick 1 ms), with no sleeping.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
const LIMIT = POLICY.intervalMs * POLICY.missBudget + POLICY.graceMs; // 2500

function setup(extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, ...extra });
  const offline: OfflineEvent[] = [];
  gw.on('offline', (e) => offline.push(e));
  return { clock, gw, offline };
}

let sources = 0;
/** Each link from a source address of its own (one source may hold only a share of what all share). */
async function open(gw: Gateway, hello: Partial<HelloFrame> = {}): Promise<{ client: MemoryLink; server: MemoryLink; welcome: WelcomeFrame }> {
  const [server, client] = memoryLinkPair();
  server.remoteAddress = `10.0.${(++sources >> 8) & 255}.${sources & 255}`;
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1', ...hello });
  await flush();
  const welcome = client.received.find((f): f is WelcomeFrame => f.type === FrameType.WELCOME);
  assert.ok(welcome, 'WELCOME received');
  return { client, server, welcome };
}

const pings = (l: MemoryLink) => l.received.filter((f) => f.type === FrameType.PING).length;
const lastClose = (l: MemoryLink) => [...l.received].reverse().find((f): f is Extract<Frame, { type: 8 }> => f.type === FrameType.CLOSE);

test('WELCOME carries the policy; a silent client goes offline exactly at interval × missBudget + grace', async () => {
  const { clock, gw, offline } = setup();
  const { client, welcome } = await open(gw);
  assert.deepEqual(
    { ...welcome.heartbeat },
    { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500, direction: 'client' },
  );
  const t0 = clock.now();
  clock.advance(LIMIT - 1);
  assert.equal(offline.length, 0, 'still online 1 ms before the limit');
  assert.equal(gw.onlineDevices, 1);
  clock.advance(1);
  assert.equal(offline.length, 1, 'offline at the limit (tick 1 ms)');
  assert.equal(offline[0].reason, 'heartbeat-timeout');
  assert.equal(offline[0].code, CloseCodes['heartbeat-timeout']);
  assert.equal(offline[0].silentForMs, LIMIT);
  assert.equal(clock.now() - t0, LIMIT);
  assert.equal(lastClose(client)?.code, 4000);
  assert.equal(gw.onlineDevices, 0);
  assert.equal(gw.connectionCount, 0, 'resources freed');
  assert.deepEqual(await gw.presence('u1'), []);
  await gw.close();
});

test('any inbound frame proves life: heartbeats and data both move the deadline', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  for (let i = 0; i < 10; i++) {
    clock.advance(900);
    client.send(i % 2 ? { type: FrameType.PING } : { type: FrameType.DATA, payload: new Uint8Array([i]) });
  }
  assert.equal(offline.length, 0);
  assert.equal(pings(client), 0, 'no probe while the client keeps talking');
  const last = clock.now();
  clock.advance(LIMIT - 1);
  assert.equal(offline.length, 0);
  clock.advance(1);
  assert.equal(offline.length, 1);
  assert.equal(clock.now() - last, LIMIT);
  await gw.close();
});

test('an overdue heartbeat draws one probe PING at interval + grace; its PONG keeps the link', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  clock.advance(POLICY.intervalMs + POLICY.graceMs - 1);
  assert.equal(pings(client), 0);
  clock.advance(1);
  assert.equal(pings(client), 1, 'probe sent when the heartbeat is overdue');
  clock.advance(30);
  client.send({ type: FrameType.PONG });
  clock.advance(LIMIT - 1);
  assert.equal(offline.length, 0, 'the PONG counted as life');
  const c = gw.connection('u1', 'd1');
  assert.equal(c?.rttMs, 30);
  await gw.close();
});

test('a client that never says HELLO is closed at the handshake deadline', async () => {
  const { clock, gw } = setup();
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  assert.equal(gw.connectionCount, 1);
  clock.advance(2999);
  assert.equal(client.closed, false);
  clock.advance(1);
  assert.equal(lastClose(client)?.code, CloseCodes['handshake-timeout']);
  assert.equal(gw.connectionCount, 0);
  await gw.close();
});

test('a slow authenticator: the handshake deadline says HELLO came; a client giving up with CLOSE is a client close', async () => {
  const { clock, gw } = setup({ authenticate: () => new Promise(() => {}) });
  const errors: string[] = [];
  gw.on('protocol-error', (e) => errors.push(e.error.code));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  await flush();
  clock.advance(3000);
  const timeout = lastClose(client);
  assert.equal(timeout?.code, CloseCodes['handshake-timeout']);
  assert.match(timeout?.reason ?? '', /HELLO arrived/);

  const [s2, c2] = memoryLinkPair();
  gw.accept(s2);
  c2.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u2', deviceId: 'd2' });
  await flush();
  c2.send({ type: FrameType.CLOSE, code: CloseCodes.normal, reason: 'client closed' });
  await flush();
  assert.equal(lastClose(c2), undefined, 'nothing sent back');
  assert.deepEqual(errors, []);
  assert.equal(gw.connectionCount, 0);
  await gw.close();
});

test('the client announces its interval in HELLO and PING; the detector follows, clamped to the range', async () => {
  const { clock, gw, offline } = setup();
  const { client, welcome } = await open(gw, { intervalMs: 4000 });
  assert.equal(welcome.heartbeat.intervalMs, 4000);
  clock.advance(4000 * 2 + 500 - 1);
  assert.equal(offline.length, 0, 'a slow client is not convicted early');
  client.send({ type: FrameType.PING, intervalMs: 50 }); // below min: clamped to 200
  assert.equal(gw.connection('u1', 'd1')?.intervalMs, 200);
  const t = clock.now();
  clock.advance(200 * 2 + 500);
  assert.equal(offline.length, 1);
  assert.equal(clock.now() - t, 900, 'a fast client is detected fast');
  await gw.close();
});

test('requested intervals outside the range are clamped in WELCOME', async () => {
  const { gw } = setup();
  const { welcome } = await open(gw, { intervalMs: 60_000 });
  assert.equal(welcome.heartbeat.intervalMs, 10_000);
  await gw.close();
});

test('piggybacked client state is merged, readable and reported; an empty value deletes a key', async () => {
  const { gw } = setup();
  const states: Record<string, string>[] = [];
  gw.on('state', (e) => states.push(e.state));
  const { client } = await open(gw, { clientInfo: { app: '1.2.3' } });
  client.send({ type: FrameType.PING, state: { fg: '1', net: 'wifi' } });
  client.send({ type: FrameType.PING, state: { fg: '' } });
  assert.deepEqual(gw.connection('u1', 'd1')?.clientState, { net: 'wifi' });
  assert.deepEqual(gw.connection('u1', 'd1')?.clientInfo, { app: '1.2.3' });
  assert.deepEqual(states, [{ fg: '1', net: 'wifi' }, { net: 'wifi' }]);
  assert.equal(pings(client), 0);
  assert.equal(client.received.filter((f) => f.type === FrameType.PONG).length, 2, 'every PING is answered');
  await gw.close();
});

test('server-sent heartbeats: the server pings on an idle link and closes at interval + pongTimeout + probes', async () => {
  const { clock, gw, offline } = setup({ probes: { pongTimeoutMs: 300, probeCount: 2, probeIntervalMs: 100 } });
  const { client, welcome } = await open(gw, { direction: 'server' });
  assert.equal(welcome.heartbeat.direction, 'server');
  clock.advance(999);
  assert.equal(pings(client), 0);
  clock.advance(1);
  assert.equal(pings(client), 1, 'PING at the interval');
  client.send({ type: FrameType.PONG });
  const heard = clock.now();
  client.deaf = true; // the client freezes
  clock.advance(1000 + 300 + 2 * 100 - 1);
  assert.equal(offline.length, 0);
  clock.advance(1);
  assert.equal(offline.length, 1);
  assert.equal(offline[0].reason, 'heartbeat-timeout');
  assert.equal(clock.now() - heard, 1500);
  await gw.close();
});

test('server-sent heartbeats: an answer to the gateway\'s PING does not put off a stalled write\'s slow-consumer deadline', async () => {
  // The answer re-armed the wheel timer for the next PING alone: a link whose writes stalled
  // was closed up to an interval late (here 7 s after its deadline).
  const { clock, gw, offline } = setup({
    heartbeat: { ...POLICY, maxIntervalMs: 20_000 },
    probes: { pongTimeoutMs: 5000, probeCount: 2, probeIntervalMs: 100 },
    limits: { maxWriteBufferBytes: 256 * 1024, slowConsumerMs: 8000 },
  });
  const { client, server } = await open(gw, { direction: 'server', intervalMs: 10_000 });
  clock.advance(5000);
  // The peer stops reading: a quarter of the write buffer waits, and it never drains.
  Object.defineProperty(server, 'bufferedBytes', { get: () => 100 * 1024 });
  server.awaitDrain = () => {};
  void gw.push('u1', 'm');
  await flush();
  const stalledAt = clock.now();
  clock.advance(5000);
  assert.equal(pings(client), 1, 'PING at the interval');
  clock.advance(50);
  client.send({ type: FrameType.PONG }); // its answer still gets through
  clock.advance(8000 - 5050 - 1);
  assert.equal(offline.length, 0);
  clock.advance(1);
  assert.equal(offline[0]?.reason, 'slow-consumer', `closed ${offline.length ? 'as ' + offline[0].reason : 'not yet'} ${clock.now() - stalledAt} ms after the stall (slowConsumerMs 8000)`);
  await gw.close();
});

test('server-sent mode is refused when the policy forbids it: the client gets the client direction', async () => {
  const { gw } = setup({ heartbeat: { ...POLICY, allowServerDirection: false } });
  const { welcome } = await open(gw, { direction: 'server' });
  assert.equal(welcome.heartbeat.direction, 'client');
  await gw.close();
});

test('a second connection for the same device replaces the first without an offline event, with a replaced event that carries the old link\'s silence (here and upstream)', async () => {
  const upstream: UpstreamEvent[] = [];
  const sink: UpstreamSink = { name: 'test', send: async () => {}, sendEvent: async (e) => void upstream.push(e) };
  const { gw, offline, clock } = setup({ upstream: { sink, events: ['online', 'offline', 'replaced'] } });
  const online: string[] = [];
  const replaced: ReplacedEvent[] = [];
  gw.on('online', (e) => online.push(e.connectionId));
  gw.on('replaced', (e) => replaced.push(e));
  const first = await open(gw);
  clock.advance(300);
  const second = await open(gw);
  assert.equal(lastClose(first.client)?.code, CloseCodes.replaced);
  assert.equal(second.client.closed, false);
  assert.equal(offline.length, 0);
  assert.equal(online.length, 1);
  assert.equal(gw.onlineDevices, 1);
  assert.equal(replaced.length, 1);
  assert.equal(replaced[0].silentForMs, 300);
  assert.equal(replaced[0].stale, false, 'heard within its interval: a live link, replaced (a network switch)');
  assert.equal(replaced[0].resumed, false);
  assert.equal(replaced[0].intervalMs, POLICY.intervalMs);
  assert.notEqual(replaced[0].byConnectionId, replaced[0].connectionId);

  // The hidden NAT death: the link stops carrying anything (the gateway still holds it open), and the
  // client resumes on a new one before the gateway's deadline. Silent past interval + grace: stale.
  clock.advance(POLICY.intervalMs + POLICY.graceMs + 1);
  const third = await open(gw, { resumeToken: second.welcome.resumeToken });
  assert.equal(third.welcome.resumed, true);
  assert.equal(replaced.length, 2);
  assert.equal(replaced[1].silentForMs, POLICY.intervalMs + POLICY.graceMs + 1);
  assert.equal(replaced[1].stale, true);
  assert.equal(replaced[1].resumed, true);
  assert.equal(replaced[1].sessionId, second.welcome.sessionId);
  assert.equal(gw.replacedLinks, 2);
  assert.equal(offline.length, 0, 'the device never went offline');
  await flush();
  // A backend that follows connection ids sees each take-over: the closed link, the one that took over, and why.
  assert.deepEqual(
    upstream.map((e) => [e.type, e.connectionId, e.byConnectionId ?? null, e.resumed ?? null, e.stale ?? null, e.silentForMs ?? null]),
    [
      ['online', replaced[0].connectionId, null, false, null, null],
      ['replaced', replaced[0].connectionId, replaced[0].byConnectionId, false, false, 300],
      ['replaced', replaced[1].connectionId, replaced[1].byConnectionId, true, true, POLICY.intervalMs + POLICY.graceMs + 1],
    ],
  );
  assert.equal(replaced[1].connectionId, replaced[0].byConnectionId);
  await gw.close();
});

test('frames out of state close with unexpected-frame, unknown kinds with unknown-frame', async () => {
  const { gw, offline } = setup();
  const errors: string[] = [];
  gw.on('protocol-error', (e) => errors.push(e.error.code));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.DATA, payload: new Uint8Array(1) });
  assert.equal(lastClose(client)?.code, CloseCodes['unexpected-frame']);

  const ok = await open(gw);
  ok.client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  assert.equal(lastClose(ok.client)?.code, CloseCodes['unexpected-frame']);
  assert.equal(offline.at(-1)?.reason, 'unexpected-frame');

  const [s2, c2] = memoryLinkPair();
  gw.accept(s2);
  s2.deliverBytes(new Uint8Array([3, 0x7f, 0xff, 0xff]));
  assert.equal(lastClose(c2)?.code, CloseCodes['unknown-frame']);
  assert.deepEqual(errors, ['LL_ERR_UNEXPECTED_FRAME', 'LL_ERR_UNEXPECTED_FRAME', 'LL_ERR_UNKNOWN_FRAME']);
  await gw.close();
});

test('an unsupported protocol version is refused with its code', async () => {
  const { gw } = setup();
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: 99, userId: 'u', deviceId: 'd' });
  await flush();
  assert.equal(lastClose(client)?.code, CloseCodes['unsupported-version']);
  await gw.close();
});

test('a refusing authenticator closes with auth-failed and emits no online', async () => {
  const { gw } = setup({
    authenticate: (h) => {
      if (h.token !== 'good') throw new ProtocolError('auth-failed', 'bad token');
      return { userId: h.userId, deviceId: h.deviceId };
    },
  });
  let online = 0;
  gw.on('online', () => online++);
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', token: 'bad' });
  await flush();
  assert.equal(lastClose(client)?.code, CloseCodes['auth-failed']);
  assert.equal(lastClose(client)?.reason, 'bad token', 'a refusal on purpose says why');
  assert.equal(online, 0);
  await gw.close();
});

test('an authenticator that fails (throws a plain Error, rejects with anything but a coded refusal) is not a refusal: 4004, retried, its detail in a fault, not to the device; a LonglinkError with an auth code refuses', async () => {
  const { gw } = setup({
    authenticate: (h) => {
      if (h.token === 'db-down') throw new Error('connect ECONNREFUSED users-db.internal:5432');
      if (h.token === 'rejects') return Promise.reject('users-db.internal timed out');
      if (h.token === 'expired') throw new LonglinkError('LL_ERR_AUTH_EXPIRED', 'token expired');
      return { userId: h.userId, deviceId: h.deviceId };
    },
  });
  const faults: FaultEvent[] = [];
  const protocolErrors: string[] = [];
  gw.on('fault', (e) => faults.push(e));
  gw.on('protocol-error', (e) => protocolErrors.push(e.error.code));
  const closeFor = async (token: string) => {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', token });
    await flush();
    return lastClose(client);
  };
  for (const token of ['db-down', 'rejects']) {
    const close = await closeFor(token);
    assert.equal(close?.code, CloseCodes['server-error'], `${token}: a failing authenticator is retried (${close?.code} ${close?.reason})`);
    assert.doesNotMatch(close?.reason ?? '', /users-db|5432|ECONNREFUSED/, `${token}: ${close?.reason}`);
  }
  assert.deepEqual(faults.map((f) => [f.kind, f.op, f.userId, f.deviceId]), [['auth', 'authenticate', 'u', 'd'], ['auth', 'authenticate', 'u', 'd']]);
  assert.match(String((faults[0].error as Error).message), /users-db\.internal:5432/, 'the operator has the detail');
  assert.equal(faults[1].error, 'users-db.internal timed out');
  assert.deepEqual(protocolErrors, [], 'the device did nothing wrong');
  const expired = await closeFor('expired');
  assert.deepEqual([expired?.code, expired?.reason], [CloseCodes['auth-expired'], 'token expired']);
  assert.equal(faults.length, 2);
  await gw.close();
});

test('an authenticator aborted through peer.signal (the client left during the handshake) is no failure to report, whatever it rejects with', async () => {
  const { gw } = setup({
    // A database client's own abort error, not the signal's reason.
    authenticate: (_h, peer) => new Promise((_r, reject) => peer.signal!.addEventListener('abort', () => reject(new DOMException('The operation was aborted', 'AbortError')))),
  });
  const faults: FaultEvent[] = [];
  gw.on('fault', (e) => faults.push(e));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
  await flush();
  client.send({ type: FrameType.CLOSE, code: CloseCodes.normal, reason: 'bye' });
  await flush();
  assert.equal(gw.connectionCount, 0);
  assert.deepEqual(faults.map((f) => `${f.kind} ${f.op} ${String(f.error)}`), []);
  await gw.close();
});

test('a failure on the gateway\'s side during the handshake tells the device only to come back (4004): the detail (a store\'s address, a hook\'s redirect target) goes to the operator, not to any peer that sends a HELLO', async () => {
  class DownStore extends MemoryStore {
    override rememberDevice(): Promise<void> {
      return Promise.reject(new Error('connect ECONNREFUSED 10.9.8.7:6379'));
    }
  }
  const { gw } = setup({
    store: new DownStore(),
    authenticate: (h) => {
      if (h.token === 'hook') throw new ProtocolError('server-error', 'connect hook answered a redirect (HTTP 308 to http://10.1.2.3/internal/hello)');
      return { userId: h.userId, deviceId: h.deviceId };
    },
  });
  const faults: unknown[] = [];
  const protocolErrors: string[] = [];
  gw.on('fault', (e) => faults.push(e.error));
  gw.on('protocol-error', (e) => protocolErrors.push(e.error.message));
  for (const token of ['hook', 'store']) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', token });
    await flush();
    const close = lastClose(client);
    assert.equal(close?.code, CloseCodes['server-error'], token);
    assert.doesNotMatch(close?.reason ?? '', /10\.\d|6379|internal|ECONNREFUSED/, `${token}: ${close?.reason}`);
  }
  assert.match(protocolErrors.join(), /10\.1\.2\.3/, 'the operator has the hook\'s detail');
  assert.match(String(faults.map((e) => (e as Error).message)), /10\.9\.8\.7/, 'and the store\'s, as a fault');
  await gw.close();
});

test('a resume token brings back the same session for the same device only', async () => {
  const { gw } = setup();
  const first = await open(gw);
  first.client.close(CloseCodes.normal, 'bye');
  const again = await open(gw, { resumeToken: first.welcome.resumeToken });
  assert.equal(again.welcome.resumed, true);
  assert.equal(again.welcome.sessionId, first.welcome.sessionId);
  const other = await open(gw, { deviceId: 'd2', resumeToken: first.welcome.resumeToken });
  assert.equal(other.welcome.resumed, false);
  assert.notEqual(other.welcome.sessionId, first.welcome.sessionId);
  await gw.close();
});

test('send reaches every open device of a user; probe and kick act on one device', async () => {
  const { gw, offline } = setup();
  const a = await open(gw, { deviceId: 'a' });
  const b = await open(gw, { deviceId: 'b' });
  assert.equal(gw.send('u1', 'hi'), 2);
  assert.equal(gw.send('nobody', 'hi'), 0);
  for (const l of [a.client, b.client]) assert.equal(l.received.filter((f) => f.type === FrameType.DATA).length, 1);
  assert.equal(gw.probe('u1', 'a'), true);
  assert.equal(pings(a.client), 1);
  assert.equal(gw.kick('u1', 'b'), 1);
  assert.equal(lastClose(b.client)?.code, CloseCodes.kicked);
  assert.equal(offline.at(-1)?.reason, 'kicked');
  assert.equal(gw.onlineDevices, 1);
  await gw.close();
});

test('many connections share one wheel and one host timer', async () => {
  const { clock, gw, offline } = setup();
  for (let i = 0; i < 200; i++) await open(gw, { userId: `u${i}` });
  assert.ok(clock.pendingTimers <= 2, `one wheel timer and the queue sweep, not one per connection (${clock.pendingTimers})`);
  clock.advance(LIMIT);
  assert.equal(offline.length, 200);
  assert.ok(offline.every((e) => e.silentForMs === LIMIT));
  await gw.close();
});

test('phi accrual detector: learns the heartbeat rhythm from PINGs only and closes where phi reaches deadPhi', async () => {
  const { clock, gw, offline } = setup({ detector: { kind: 'phi', minStdDevMs: 100, deadPhi: 8, suspectPhi: 3 } });
  const { client } = await open(gw);
  for (let i = 0; i < 20; i++) {
    // a burst of data between heartbeats must not teach it that gaps are short
    for (let j = 0; j < 5; j++) client.send({ type: FrameType.DATA, payload: new Uint8Array(1) });
    clock.advance(1000);
    client.send({ type: FrameType.PING });
  }
  const last = clock.now();
  const { zForPhi } = await import('../../src/core/phi-accrual-detector.js');
  const bound = Math.ceil(1000 + 100 * zForPhi(8)); // mean 1000, sd floored at 100
  clock.advance(bound - 1);
  assert.equal(offline.length, 0, 'not before phi reaches the threshold');
  assert.equal(pings(client), 1, 'one probe when phi passed suspectPhi');
  clock.advance(1);
  assert.equal(offline.length, 1);
  assert.equal(offline[0].reason, 'heartbeat-timeout');
  assert.equal(clock.now() - last, bound);
  assert.ok(bound < LIMIT, `a steady peer is detected faster (${bound} ms) than the fixed bound (${LIMIT} ms)`);
  await gw.close();
});

test('phi accrual detector: a chatty client whose heartbeats fall between its data is not probed nor convicted once only heartbeats remain', async () => {
  // A client by the protocol's rule: it sends fire-and-forget DATA every second and hears nothing
  // back, so it sends a PING every interval (25 s) as well, each soon after a data frame.
  const I = 25_000;
  const { clock, gw, offline } = setup({ heartbeat: { intervalMs: I, minIntervalMs: 1000, maxIntervalMs: 60_000, missBudget: 2, graceMs: 5000 }, detector: { kind: 'phi' } });
  const { client } = await open(gw);
  let nextPing = clock.now() + I + 300;
  const dataUntil = clock.now() + 20 * I;
  let nextData = clock.now() + 1000;
  let answered = 0;
  const RTT = 1500; // a slow mobile network: the answer to a probe takes 1.5 s
  const answerAt: number[] = [];
  let lastPing = 0;
  const end = dataUntil + 8 * I + 100;
  while (clock.now() < end && offline.length === 0) {
    clock.advance(100);
    const now = clock.now();
    for (; answered < pings(client); answered++) answerAt.push(now + RTT);
    while (answerAt.length && answerAt[0] <= now) {
      answerAt.shift();
      client.send({ type: FrameType.PONG });
    }
    if (now >= nextData && now < dataUntil) {
      client.send({ type: FrameType.DATA, payload: new Uint8Array([1]) });
      nextData += 1000;
    }
    if (now >= nextPing) {
      client.send({ type: FrameType.PING });
      lastPing = now;
      nextPing += I;
    }
  }
  assert.equal(offline.length, 0, `a live client is not closed (${offline[0]?.reason} after ${offline[0]?.silentForMs} ms of silence)`);
  assert.equal(answered, 0, `a client silent no longer than its heartbeat interval is not probed (${answered} probes)`);
  // It still convicts a client that really died: learned from the quiet heartbeats, mean 25 s.
  const { zForPhi } = await import('../../src/core/phi-accrual-detector.js');
  const bound = Math.ceil(I + 500 * zForPhi(8)); // eight gaps of exactly I: sd floored at the default 500 ms
  clock.advance(lastPing + bound - 1 - clock.now());
  assert.equal(offline.length, 0);
  clock.advance(1);
  assert.equal(offline.length, 1, 'dead where phi reaches deadPhi over the heartbeat gaps');
  assert.equal(offline[0].reason, 'heartbeat-timeout');
  await gw.close();
});

test('an invalid phi configuration is refused up front', () => {
  assert.throws(() => new Gateway({ tcp: false, ws: false, detector: { kind: 'phi', suspectPhi: 9, deadPhi: 2 } }), { code: 'LL_ERR_INVALID_OPTION' });
});

test('freshness detector: closes when the next heartbeat is lateMs overdue, counted from when it was due', async () => {
  const { clock, gw, offline } = setup({ detector: { kind: 'freshness', lateMs: 700, suspectLateMs: 200 } });
  const { client } = await open(gw);
  // Heartbeats every interval, on the lattice; the last one arrives 18 ms late (within a fiftieth of
  // the interval: jitter, not a late send, which would make the next due an interval after it).
  for (let i = 0; i < 5; i++) {
    clock.advance(POLICY.intervalMs);
    client.send({ type: FrameType.PING });
  }
  clock.advance(POLICY.intervalMs + 18);
  client.send({ type: FrameType.PING });
  const lastAt = clock.now();
  // Expected next: the lattice's mean offset (18/6 = 3 ms) after the next interval point.
  const due = lastAt - 18 + POLICY.intervalMs + 3;
  clock.advance(due + 200 - clock.now() - 1);
  assert.equal(pings(client), 0, 'no probe before suspectLateMs');
  clock.advance(1);
  assert.equal(pings(client), 1, 'one probe when the heartbeat is suspectLateMs overdue');
  clock.advance(due + 700 - clock.now() - 1);
  assert.equal(offline.length, 0);
  clock.advance(1);
  assert.equal(offline.length, 1);
  assert.equal(offline[0].reason, 'heartbeat-timeout');
  await gw.close();
});

test('an invalid freshness configuration is refused up front', () => {
  assert.throws(() => new Gateway({ tcp: false, ws: false, detector: { kind: 'freshness', lateMs: -1 } }), { code: 'LL_ERR_INVALID_OPTION' });
  assert.throws(() => new Gateway({ tcp: false, ws: false, detector: { kind: 'freshness', lateMs: 100, suspectLateMs: 200 } }), { code: 'LL_ERR_INVALID_OPTION' });
});

test('a freshness window below one heartbeat is refused up front, not by every handshake', async () => {
  // windowSize 0.5 passed "a positive number", then each client's detector refused it as it opened.
  for (const windowSize of [0.5, 2.5]) {
    assert.throws(() => new Gateway({ tcp: false, ws: false, detector: { kind: 'freshness', windowSize } }), { code: 'LL_ERR_INVALID_OPTION' }, `windowSize ${windowSize}`);
  }
  const { gw, offline } = setup({ detector: { kind: 'freshness', windowSize: 1 } });
  const { client } = await open(gw);
  assert.ok(client.received.some((f) => f.type === FrameType.WELCOME));
  assert.equal(offline.length, 0);
  await gw.close();
});

test('broadcast writes one best-effort DATA to every open connection and queues nothing', async () => {
  const { gw } = setup();
  const a = await open(gw, { userId: 'a' });
  const b = await open(gw, { userId: 'b', deviceId: 'x' });
  assert.equal(gw.broadcast('all hands'), 2);
  for (const c of [a.client, b.client]) {
    const data = c.received.filter((f) => f.type === FrameType.DATA);
    assert.equal(data.length, 1);
    assert.equal(Buffer.from((data[0] as { payload: Uint8Array }).payload).toString(), 'all hands');
    assert.equal((data[0] as { seq?: number }).seq, undefined, 'unsequenced: not queued, not acknowledged');
  }
  assert.equal(await gw.queueDepth('a', 'd'), 0);
  await gw.close();
});

test('fields a client makes the gateway keep are bounded: clientInfo, merged state, message ids close with field-too-large (4508)', async () => {
  const { gw } = setup({ limits: { maxClientInfoBytes: 100, maxStateBytes: 100, maxStateKeys: 4, maxMessageIdBytes: 16 } });
  const errors: string[] = [];
  gw.on('protocol-error', (e) => errors.push(e.error.code));
  // clientInfo: refused at HELLO, nothing kept.
  const [s1, c1] = memoryLinkPair();
  gw.accept(s1);
  c1.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'big', deviceId: 'd', clientInfo: { blob: 'x'.repeat(200) } });
  await flush();
  assert.equal(lastClose(c1)?.code, 4508);
  assert.equal(gw.onlineDevices, 0);
  // State: a key at a time until over the bound.
  const a = await open(gw, { userId: 'st' });
  for (let i = 0; i < 4; i++) a.client.send({ type: FrameType.PING, state: { [`k${i}`]: 'v' } });
  assert.equal(lastClose(a.client), undefined, 'within the bound');
  a.client.send({ type: FrameType.PING, state: { k4: 'v' } });
  assert.equal(lastClose(a.client)?.code, 4508);
  // A message id longer than the bound.
  const b = await open(gw, { userId: 'ids' });
  b.client.send({ type: FrameType.DATA, seq: 1, id: 'y'.repeat(17), payload: new Uint8Array([1]) });
  await flush();
  assert.equal(lastClose(b.client)?.code, 4508);
  // In UTF-8 bytes, as the limit says: nine characters, eighteen bytes.
  const b2 = await open(gw, { userId: 'ids2' });
  b2.client.send({ type: FrameType.DATA, seq: 1, id: 'é'.repeat(9), payload: new Uint8Array([1]) });
  await flush();
  assert.equal(lastClose(b2.client)?.code, 4508);
  assert.deepEqual(errors, ['LL_ERR_FIELD_TOO_LARGE', 'LL_ERR_FIELD_TOO_LARGE', 'LL_ERR_FIELD_TOO_LARGE', 'LL_ERR_FIELD_TOO_LARGE']);
  // A client within every bound is served.
  const ok = await open(gw, { userId: 'ok', clientInfo: { app: '1.0' } });
  ok.client.send({ type: FrameType.DATA, seq: 1, id: 'short', payload: new Uint8Array([1]) });
  await flush();
  assert.equal(lastClose(ok.client), undefined);
  await gw.close();
});

test('merged PING state and HELLO\'s clientInfo are bounded in UTF-8 bytes, as an authenticator\'s clientInfo and message ids are: 60 characters of é are 120 bytes, over a 100-byte bound', async () => {
  // Counted in UTF-16 units, three-byte characters took a 100-byte budget to 300 bytes.
  const { gw } = setup({ limits: { maxClientInfoBytes: 100, maxStateBytes: 100 } });
  const st = await open(gw, { userId: 'st' });
  st.client.send({ type: FrameType.PING, state: { k: '€'.repeat(20) } });
  assert.equal(lastClose(st.client), undefined, '61 bytes: within the bound');
  st.client.send({ type: FrameType.PING, state: { j: 'é'.repeat(20) } });
  assert.equal(lastClose(st.client)?.code, 4508, 'merged: 61 + 41 bytes');
  const [s1, c1] = memoryLinkPair();
  gw.accept(s1);
  c1.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'info', deviceId: 'd', clientInfo: { plan: 'é'.repeat(60) } });
  await flush();
  assert.equal(lastClose(c1)?.code, 4508, 'clientInfo of 124 bytes');
  const ok = await open(gw, { userId: 'ok', clientInfo: { plan: 'é'.repeat(48) } });
  assert.equal(lastClose(ok.client), undefined, 'clientInfo of 100 bytes');
  await gw.close();
});

test('clientInfo is bounded in entries as well as bytes (maxStateKeys), and a resume lastSeq beyond 2^46 is refused: both close with field-too-large (4508)', async () => {
  const { gw } = setup({ limits: { maxClientInfoBytes: 100, maxStateKeys: 4 } });
  // Five empty entries: 5 bytes by the bytes, five properties kept with the session for its TTL.
  const [s1, c1] = memoryLinkPair();
  gw.accept(s1);
  c1.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'many', deviceId: 'd', clientInfo: { a: '', b: '', c: '', d: '', e: '' } });
  await flush();
  assert.equal(lastClose(c1)?.code, 4508);
  const four = await open(gw, { userId: 'four', clientInfo: { a: '', b: '', c: '', d: '' } });
  assert.equal(lastClose(four.client), undefined, 'within the bound');
  // The mailbox numbers above lastSeq: near 2^53 no DATA to the device could be written again (on Redis, past 10^14 no seq exactly).
  const first = await open(gw, { userId: 'seq', deviceId: 'd' });
  const token = first.welcome.resumeToken;
  first.client.destroy();
  await flush();
  const [s2, c2] = memoryLinkPair();
  gw.accept(s2);
  c2.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'seq', deviceId: 'd', resumeToken: token, lastSeq: Number.MAX_SAFE_INTEGER });
  await flush();
  assert.equal(lastClose(c2)?.code, 4508);
  const [s3, c3] = memoryLinkPair();
  gw.accept(s3);
  c3.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'seq', deviceId: 'd', resumeToken: token, lastSeq: 2 ** 46 });
  await flush();
  assert.ok(c3.received.some((f) => f.type === FrameType.WELCOME && f.resumed), 'lastSeq 2^46 resumes');
  void gw.push('seq', 'after');
  await flush();
  assert.ok(c3.received.some((f) => f.type === FrameType.DATA && f.seq === 2 ** 46 + 1), 'and its next message is numbered above it');
  await gw.close();
});

test('an authenticator\'s clientInfo is bounded in UTF-8 bytes as HELLO\'s is: 80 characters of é are 160 bytes, over a 100-byte bound', async () => {
  const info = (s: string) => ({ userId: 'u', deviceId: 'd', clientInfo: { plan: s } });
  for (const [text, over] of [['é'.repeat(80), true], ['e'.repeat(80), false]] as const) {
    const { gw } = setup({ limits: { maxClientInfoBytes: 100 }, authenticate: () => info(text) });
    const [s1, c1] = memoryLinkPair();
    gw.accept(s1);
    c1.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
    await flush();
    assert.equal(lastClose(c1)?.code, over ? 4508 : undefined, text.slice(0, 3));
    await gw.close();
  }
});

test('an authenticator\'s clientInfo is bounded in entries as HELLO\'s is (maxStateKeys): five empty entries over a bound of four close with field-too-large (4508)', async () => {
  const many = { a: '', b: '', c: '', d: '', e: '' };
  for (const [info, over] of [[many, true], [{ a: '', b: '', c: '', d: '' }, false]] as const) {
    const { gw } = setup({ limits: { maxClientInfoBytes: 100, maxStateKeys: 4 }, authenticate: () => ({ userId: 'u', deviceId: 'd', clientInfo: info }) });
    const [s1, c1] = memoryLinkPair();
    gw.accept(s1);
    c1.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
    await flush();
    assert.equal(lastClose(c1)?.code, over ? 4508 : undefined, `${Object.keys(info).length} entries`);
    assert.equal(gw.onlineDevices, over ? 0 : 1);
    await gw.close();
  }
});

test('an authenticator whose identity is of the wrong shape (a number from a database, a hook\'s JSON) fails with LL_ERR_INVALID_IDENTITY: 4004 and a fault (kind auth), nothing kept under it', async () => {
  const answers: Record<string, unknown> = {
    'num-user': { userId: 42, deviceId: 'd' },
    'num-device': { userId: 'u', deviceId: 7 },
    'no-user': { deviceId: 'd' },
    nothing: undefined,
    'info-number': { userId: 'u', deviceId: 'd', clientInfo: { build: 7 } },
    'info-nested': { userId: 'u', deviceId: 'd', clientInfo: { os: { name: 'x' } } },
    'info-string': { userId: 'u', deviceId: 'd', clientInfo: 'ios' },
    'info-array': { userId: 'u', deviceId: 'd', clientInfo: ['ios'] },
  };
  const { gw } = setup({ authenticate: (h) => (h.token! in answers ? answers[h.token!] : { userId: h.userId, deviceId: h.deviceId }) as Identity });
  const faults: FaultEvent[] = [];
  gw.on('fault', (e) => faults.push(e));
  for (const token of Object.keys(answers)) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: '42', deviceId: '7', token });
    await flush();
    const close = lastClose(client);
    assert.equal(close?.code, CloseCodes['server-error'], `${token}: ${close?.code} ${close?.reason} (online: ${gw.onlineDevices})`);
    const f = faults.at(-1);
    assert.deepEqual([f?.kind, f?.op, (f?.error as LonglinkError | undefined)?.code], ['auth', 'authenticate', 'LL_ERR_INVALID_IDENTITY'], `${token}: ${String((f?.error as Error | undefined)?.message)}`);
  }
  assert.equal(faults.length, Object.keys(answers).length);
  assert.equal(gw.onlineDevices, 0);
  assert.deepEqual([await gw.presence('42'), await gw.presence('u')], [[], []]);
  await gw.close();
});

test('HELLO\'s userId and deviceId are bounded in UTF-8 bytes (maxIdBytes): longer closes with field-too-large (4508) before anything is kept', async () => {
  const { gw } = setup({ limits: { maxIdBytes: 12 } });
  const hello = async (userId: string, deviceId: string) => {
    const [s, c] = memoryLinkPair();
    gw.accept(s);
    c.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId, deviceId });
    await flush();
    return c;
  };
  assert.equal(lastClose(await hello('u'.repeat(13), 'd'))?.code, 4508);
  assert.equal(lastClose(await hello('u', 'é'.repeat(7)))?.code, 4508, 'seven characters, fourteen bytes');
  assert.equal(lastClose(await hello('u', '😀'.repeat(4)))?.code, 4508, 'four characters of four bytes each');
  assert.equal(gw.onlineDevices, 0);
  assert.deepEqual(await gw.presence('u'.repeat(13)), []);
  const ok = await hello('u'.repeat(12), 'é'.repeat(6));
  assert.equal(lastClose(ok), undefined);
  assert.ok(ok.received.some((f) => f.type === FrameType.WELCOME), 'at the bound: served');
  assert.equal(LIMIT_DEFAULTS.maxIdBytes, 1024, 'the default: any id of the server API (256 UTF-16 units, 768 UTF-8 bytes at most) fits');
  await gw.close();
});

test('HELLO\'s resumeToken is bounded as the ids are (maxIdBytes): a longer one closes with field-too-large (4508) before the store looks it up', async () => {
  const store = new MemoryStore();
  const { gw } = setup({ store, limits: { maxIdBytes: 40 } });
  const looked: string[] = [];
  const load = store.loadSession.bind(store);
  store.loadSession = (token, now) => (looked.push(token), load(token, now));
  const hello = async (resumeToken: string) => {
    const [s, c] = memoryLinkPair();
    gw.accept(s);
    c.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', resumeToken });
    await flush();
    return c;
  };
  assert.equal(lastClose(await hello('t'.repeat(41)))?.code, 4508);
  assert.deepEqual(looked, [], 'not looked up');
  const ok = await hello('t'.repeat(40));
  assert.equal(lastClose(ok), undefined);
  assert.ok(ok.received.some((f) => f.type === FrameType.WELCOME), 'at the bound: looked up (unknown, so a new session)');
  assert.deepEqual(looked, ['t'.repeat(40)]);
  await gw.close();
});

test('a push the in-memory store has no room for (maxQueuedBytes in all) reports failed for that device, with a fault saying LL_ERR_QUEUE_FULL; what was queued stays', async () => {
  const { gw } = setup({ store: new MemoryStore({ maxQueuedBytes: 100 }) });
  const faults: string[] = [];
  gw.on('fault', (f) => faults.push(`${f.op} ${(f.error as { code?: string }).code}`));
  const { client } = await open(gw);
  client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
  await flush();
  assert.equal(gw.onlineDevices, 0, 'offline: pushes are queued');
  const first = await gw.push('u1', new Uint8Array(80), { waitMs: 0 });
  assert.deepEqual(first.devices, [{ deviceId: 'd1', status: 'queued' }]);
  const refused = await gw.push('u1', new Uint8Array(30), { waitMs: 0 });
  assert.deepEqual(refused.devices, [{ deviceId: 'd1', status: 'failed' }]);
  assert.deepEqual(faults, ['enqueue LL_ERR_QUEUE_FULL']);
  const small = await gw.push('u1', new Uint8Array(20), { waitMs: 0 });
  assert.deepEqual(small.devices, [{ deviceId: 'd1', status: 'queued' }]);
  const back = await open(gw);
  await flush();
  assert.deepEqual(back.client.received.filter((f) => f.type === FrameType.DATA).map((f) => (f as { payload: Uint8Array }).payload.length), [80, 20]);
  await gw.close();
});

test('client messages waiting to be accepted have a budget: while the store stalls, a link past maxInboundWaitingPerLink, or all links past maxInboundWaitingBytes, get GOAWAY server-error; the others are served and nothing waiting is lost', async () => {
  // A store whose duplicate check hangs until released (a Redis that paused).
  const store = new MemoryStore();
  const stalled: (() => void)[] = [];
  let stall = true;
  const seen = store.seenInbound.bind(store);
  store.seenInbound = (...a: Parameters<MemoryStore['seenInbound']>) => (stall ? new Promise<void>((r) => stalled.push(r)).then(() => seen(...a)) : seen(...a));
  const { gw } = setup({ store, limits: { maxInboundWaitingPerLink: 5, maxInboundWaitingBytes: 1000, maxInboundWaitingBytesPerLink: 700, maxDataPerSecond: 0 } });
  const got: string[] = [];
  gw.on('message', (m) => got.push(`${m.userId}:${m.id}`));
  const data = (seq: number, bytes = 1) => ({ type: FrameType.DATA, seq, id: `m${seq}`, payload: new Uint8Array(bytes) }) as const;
  // Per link: five wait, the sixth is refused.
  const a = await open(gw, { userId: 'a' });
  for (let i = 1; i <= 5; i++) a.client.send(data(i));
  await flush();
  assert.equal(lastClose(a.client), undefined, 'five may wait');
  assert.deepEqual(gw.flowStats().inboundWaiting, 5);
  a.client.send(data(6));
  await flush();
  assert.equal(a.client.received.find((f): f is Extract<Frame, { type: 7 }> => f.type === FrameType.GOAWAY)?.code, 4004, 'GOAWAY with a hint');
  // The five that wait are taken in first (the CLOSE follows, with their ack, once the store answers).
  assert.equal(lastClose(a.client), undefined);
  a.client.send(data(7)); // after the GOAWAY: not acted on
  await flush();
  assert.equal(gw.flowStats().inboundWaiting, 5);
  // One link's bytes: e's 300 wait, 500 more would pass its 700 (a lone message is always let in).
  const e = await open(gw, { userId: 'e' });
  e.client.send(data(1, 300));
  await flush();
  e.client.send(data(2, 500));
  await flush();
  assert.equal(e.client.received.find((f): f is Extract<Frame, { type: 7 }> => f.type === FrameType.GOAWAY)?.code, 4004);
  // In all, by bytes: b's 600 wait (905 in all), c's 500 more would pass 1,000.
  const b = await open(gw, { userId: 'b' });
  const c = await open(gw, { userId: 'c' });
  b.client.send(data(1, 600));
  await flush();
  c.client.send(data(1, 500));
  await flush();
  assert.equal(lastClose(b.client), undefined);
  assert.equal(lastClose(c.client)?.code, 4004, 'nothing of c waited: closed at once');
  // The store comes back: what waited is accepted, in order, the refused links' too, which then close with their ack.
  stall = false;
  for (const r of stalled.splice(0)) r();
  await flush();
  assert.ok(got.includes('b:m1'));
  assert.deepEqual(got.filter((g) => g.startsWith('a:')), ['a:m1', 'a:m2', 'a:m3', 'a:m4', 'a:m5']);
  for (const [link, upTo] of [[a.client, 5], [e.client, 1]] as const) {
    assert.equal(lastClose(link)?.code, 4004);
    const acks = link.received.filter((f) => f.type === FrameType.ACK || ('ack' in f && f.ack !== undefined)).map((f) => (f as { ack?: number }).ack);
    assert.equal(Math.max(0, ...acks.map((x) => x ?? 0)), upTo, 'what it took in is acknowledged before the CLOSE');
  }
  assert.deepEqual(gw.flowStats().inboundWaiting, 0);
  assert.equal(gw.flowStats().inboundWaitingBytes, 0);
  const d = await open(gw, { userId: 'd' });
  d.client.send(data(1, 500));
  await flush();
  assert.ok(got.includes('d:m1'));
  assert.equal(lastClose(d.client), undefined);
  await gw.close();
});

test('the upstream backlog bound in all (maxPending) counts every message waiting for the backend, not only the one in flight per link', async () => {
  const held: (() => void)[] = [];
  const sink: UpstreamSink = { name: 'slow', send: () => new Promise<void>((r) => held.push(r)) };
  const { gw } = setup({ upstream: { sink, maxPending: 3 }, limits: { maxDataPerSecond: 0 } });
  const data = (seq: number) => ({ type: FrameType.DATA, seq, payload: new Uint8Array([seq]) }) as const;
  const a = await open(gw, { userId: 'a' });
  const b = await open(gw, { userId: 'b' });
  a.client.send(data(1));
  a.client.send(data(2)); // behind a's first, which is with the backend
  b.client.send(data(1));
  await flush();
  assert.equal(held.length, 2, 'one in flight per link');
  assert.equal(gw.flowStats().inboundWaiting, 3);
  b.client.send(data(2));
  await flush();
  assert.equal(b.client.received.find((f): f is Extract<Frame, { type: 7 }> => f.type === FrameType.GOAWAY)?.code, 4004, 'the fourth is past maxPending');
  assert.equal(lastClose(a.client), undefined);
  assert.equal(gw.upstreamStats()!.refusedBacklog, 1);
  for (const r of held.splice(0)) r();
  await flush();
  for (const r of held.splice(0)) r();
  await flush();
  assert.equal(gw.flowStats().inboundWaiting, 0);
  // b's first, admitted before the refusal, went to the backend: acknowledged, then the CLOSE.
  assert.equal(lastClose(b.client)?.code, 4004);
  assert.ok(b.client.received.some((f) => f.type === FrameType.ACK && f.ack === 1));
  await gw.close();
});

test('DATA pace: a burst is allowed, a flood is warned (PONG 4009), then GOAWAY and too-many-messages; a steady sender is never touched', async () => {
  const { clock, gw } = setup({ limits: { maxDataPerSecond: 10, dataBurst: 5 } });
  const messages: number[] = [];
  gw.on('message', () => messages.push(1));
  const steady = await open(gw, { userId: 'steady' });
  for (let i = 0; i < 50; i++) {
    steady.client.send({ type: FrameType.DATA, payload: new Uint8Array([i]) });
    clock.advance(100); // 10 a second, for 5 s
  }
  assert.equal(lastClose(steady.client), undefined);
  const flood = await open(gw, { userId: 'flood' });
  for (let i = 0; i < 5; i++) flood.client.send({ type: FrameType.DATA, payload: new Uint8Array([i]) });
  assert.equal(lastClose(flood.client), undefined, 'the burst is allowed');
  flood.client.send({ type: FrameType.DATA, payload: new Uint8Array([5]) });
  const warned = flood.client.received.find((f) => f.type === FrameType.PONG && (f as { warn?: number }).warn === 4009);
  assert.ok(warned, 'warned first');
  assert.equal(lastClose(flood.client), undefined);
  flood.client.send({ type: FrameType.DATA, payload: new Uint8Array([6]) });
  assert.ok(flood.client.received.some((f) => f.type === FrameType.GOAWAY), 'GOAWAY with a hint');
  assert.equal(lastClose(flood.client)?.code, 4009);
  assert.equal(messages.length, 50 + 6, 'what was allowed was handed over; the breach was not');
  await gw.close();
});

test("a client's CLOSE code names its disconnect only when it is a reason a client has (its own detection), never the gateway's decisions", async () => {
  const { gw, offline } = setup();
  const a = await open(gw, { userId: 'a' });
  a.client.send({ type: FrameType.CLOSE, code: CloseCodes.kicked, reason: 'pretend' });
  await flush();
  const b = await open(gw, { userId: 'b' });
  b.client.send({ type: FrameType.CLOSE, code: CloseCodes['heartbeat-timeout'] });
  await flush();
  assert.deepEqual(
    offline.map((e) => [e.userId, e.reason, e.code, e.initiator]),
    [
      ['a', 'client-close', CloseCodes.kicked, 'peer'],
      ['b', 'heartbeat-timeout', CloseCodes['heartbeat-timeout'], 'peer'],
    ],
  );
  await gw.close();
});

test('upstream lifecycle events: online, suspect (when the probe goes out) and offline with its detection time, to the sink', async () => {
  const events: UpstreamEvent[] = [];
  const sink: UpstreamSink = { name: 'test', send: async () => {}, sendEvent: async (e) => void events.push(e) };
  const { clock, gw } = setup({ upstream: { sink, events: ['online', 'suspect', 'offline'] } });
  await open(gw);
  await flush();
  clock.advance(POLICY.intervalMs + POLICY.graceMs);
  await flush();
  clock.advance(LIMIT - POLICY.intervalMs - POLICY.graceMs);
  await flush();
  assert.deepEqual(events.map((e) => [e.type, e.cleared ?? null, e.reason ?? null]), [['online', null, null], ['suspect', false, null], ['offline', null, 'heartbeat-timeout']]);
  assert.equal(events[2].silentForMs, LIMIT, 'the detection time');
  assert.ok(events.every((e) => e.userId === 'u1' && e.deviceId === 'd1'));
  await gw.close();
});

test('upstream lifecycle events have a budget: while the backend hangs, at most maxPendingEvents are on their way and the rest are dropped and counted; a refusing backend loses each after three attempts', async () => {
  const hanging: (() => void)[] = [];
  let refuse = false;
  const sink: UpstreamSink = {
    name: 'test',
    send: async () => {},
    sendEvent: (e) => (refuse ? Promise.reject(new Error(`refused ${e.type}`)) : new Promise<void>((r) => hanging.push(r))),
  };
  const { clock, gw } = setup({ upstream: { sink, events: ['online', 'offline'], maxPendingEvents: 3 } });
  // Five devices come and go: ten events, three taken.
  for (let i = 0; i < 5; i++) {
    const { client } = await open(gw, { deviceId: `d${i}` });
    client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
    await flush();
  }
  assert.equal(gw.connectionCount, 0);
  assert.deepEqual(pick(gw.upstreamStats()!), { eventsSent: 0, eventsLost: 0, eventsDropped: 7, eventsPending: 3 });
  assert.equal(hanging.length, 3, 'three requests out, no more');
  // The backend answers: the budget is free again.
  for (const r of hanging.splice(0)) r();
  await flush();
  assert.deepEqual(pick(gw.upstreamStats()!), { eventsSent: 3, eventsLost: 0, eventsDropped: 7, eventsPending: 0 });
  await open(gw, { deviceId: 'd9' });
  await flush();
  assert.equal(hanging.length, 1, 'the next event goes out');
  hanging.splice(0)[0]();
  await flush();
  // A backend that refuses: three attempts with backoff between them, then lost, and no longer pending.
  refuse = true;
  gw.kick('u1', 'd9');
  await flush();
  assert.equal(gw.upstreamStats()!.eventsPending, 1);
  clock.advance(UPSTREAM_DEFAULTS.retryMaxMs * 2);
  await flush();
  clock.advance(UPSTREAM_DEFAULTS.retryMaxMs * 2);
  await flush();
  assert.deepEqual(pick(gw.upstreamStats()!), { eventsSent: 4, eventsLost: 1, eventsDropped: 7, eventsPending: 0 });
  // What an operator sees.
  const m = await new GatewayMetrics(gw, { processMetrics: false }).registry.metrics();
  for (const line of ['longlink_upstream_events_total{result="sent"} 4', 'longlink_upstream_events_total{result="lost"} 1', 'longlink_upstream_events_total{result="dropped"} 7', 'longlink_upstream_pending{kind="events"} 0', 'longlink_upstream_messages_total{result="refused"} 0']) {
    assert.ok(m.split('\n').includes(line), `metrics show ${line}`);
  }
  await gw.close();
});

test('upstream bounds are checked: zero or a fraction is refused with LL_ERR_INVALID_OPTION', () => {
  const sink: UpstreamSink = { name: 'test', send: async () => {} };
  for (const bad of [{ maxPendingEvents: 0 }, { maxPending: 1.5 }, { maxPendingPerConnection: -1 }]) {
    assert.throws(() => new Gateway({ tcp: false, ws: false, upstream: { sink, ...bad } }), { code: 'LL_ERR_INVALID_OPTION' });
  }
});

test('client heartbeats measure the path: lateness against the slot and empty slots, per link and per transport; a gap with other traffic in it is not measured', async () => {
  const { clock, gw } = setup({ heartbeat: { ...POLICY, missBudget: 8 } });
  const { client } = await open(gw);
  // Frames are handed over a microtask later: each goes before the clock moves on.
  const at = async (ms: number, f: Frame = { type: FrameType.PING }) => {
    clock.advance(ms);
    client.send(f);
    await flush();
  };
  await at(1000); // the first: no gap yet (the previous frame was HELLO)
  await at(1040); // 40 ms late
  await at(1990); // a slot empty, then 10 ms early
  await at(500, { type: FrameType.DATA, payload: new Uint8Array([1]) });
  await at(500); // other traffic between: not a measurement
  await at(1100); // 100 ms late
  await flush();
  const c = gw.listConnections()[0];
  assert.equal(c.path.gaps, 3);
  assert.equal(c.path.missed, 1);
  assert.equal(c.path.lossRate, 1 / 4);
  assert.equal(c.path.latenessMaxMs, 100);
  assert.ok(c.path.latenessMeanMs > 0 && c.path.latenessDevMs > 0);
  const net = gw.networkStats();
  assert.equal(net.tcp.heartbeats.count, 3);
  assert.equal(net.tcp.heartbeats.missed, 1);
  assert.equal(net.tcp.heartbeats.onTime, 1, 'the early one');
  assert.deepEqual(net.tcp.heartbeats.buckets.map(([, n]) => n), [1, 1], '40 ms and 100 ms');
  assert.equal(net.ws.heartbeats.count, 0);
  assert.equal(net.detector, 'silence');
  await gw.close();
});

// A heartbeat sent out of turn (updateState({ flush: true }), a check after networkChanged(), the
// CLI's /state and /probe) comes well before its slot: the gap before it says when the app asked,
// not how the path delays heartbeats. Measured, it was one lateness of −(interval − gap), −24 s for
// a /state a second after a 25 s heartbeat, in the mean and deviation `longlink tune --from` reads.
test('a heartbeat sent out of turn, less than half an interval after the last, is not a measurement of the path (the next gap, from it, is)', async () => {
  const { clock, gw } = setup({ heartbeat: { ...POLICY, missBudget: 8 } });
  const { client } = await open(gw);
  const at = async (ms: number) => {
    clock.advance(ms);
    client.send({ type: FrameType.PING });
    await flush();
  };
  await at(1000); // the first: no gap yet
  await at(1000); // on time
  await at(100); // out of turn: a flushed state
  await at(1000); // on time, counted from the flush
  await at(1000); // on time
  const net = gw.networkStats().tcp.heartbeats;
  assert.deepEqual({ count: net.count, missed: net.missed, meanMs: net.meanMs, onTime: net.onTime }, { count: 3, missed: 0, meanMs: 0, onTime: 3 }, 'three gaps measured, all on time');
  const c = gw.listConnections()[0];
  assert.deepEqual({ gaps: c.path.gaps, mean: c.path.latenessMeanMs, dev: c.path.latenessDevMs }, { gaps: 3, mean: 0, dev: 0 });
  await gw.close();
});

test('a client that reports its smoothed RTT on a PING has it shown (the gateway cannot time client-sent heartbeats) and counted for its transport, bounded', async () => {
  const { clock, gw } = setup();
  const { client } = await open(gw);
  assert.equal(gw.listConnections()[0].rttMs, null, 'nothing measured or reported yet');
  clock.advance(1000);
  client.send({ type: FrameType.PING, rttMs: 42 });
  await flush();
  assert.equal(gw.listConnections()[0].rttMs, 42);
  assert.deepEqual(gw.networkStats().tcp.rtt && { count: gw.networkStats().tcp.rtt!.count, meanMs: gw.networkStats().tcp.rtt!.meanMs }, { count: 1, meanMs: 42 });
  clock.advance(1000);
  client.send({ type: FrameType.PING, rttMs: 10_000_000 });
  await flush();
  assert.equal(gw.listConnections()[0].rttMs, 60_000, 'a report is kept at most 60 s');
  assert.equal(lastClose(client), undefined, 'and the link stays open');
  await gw.close();
});

test('an open link re-saves its session record every half of OPEN_SESSION_TTL_MS, so a link that lasts for days stays resumable', async () => {
  const saves: { at: number; expiresAt: number; openOn: string | undefined }[] = [];
  const touches: number[] = [];
  const store = new (class extends MemoryStore {
    override saveSession(record: SessionRecord, expiresAt: number): void {
      saves.push({ at: clock.now(), expiresAt, openOn: record.openOn });
      super.saveSession(record, expiresAt);
    }
    // A store whose presence expires (Redis) is told to keep it as often.
    async touchPresence(userId: string): Promise<void> {
      touches.push(clock.now());
      assert.equal(userId, 'u1');
    }
  })();
  const clock = new ManualClock(1_000_000);
  const slow = { ...POLICY, intervalMs: 600_000, maxIntervalMs: 600_000 };
  const NODE = 'node-a';
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: slow, wheelTickMs: 1000, clock, timers: clock, wallClock: clock, store, nodeId: NODE });
  const { client, welcome } = await open(gw, { intervalMs: 600_000 });
  const t0 = clock.now();
  assert.deepEqual(saves, [{ at: t0, expiresAt: t0 + OPEN_SESSION_TTL_MS, openOn: NODE }]);
  const half = OPEN_SESSION_TTL_MS / 2;
  // A heartbeat every 10 min for 25 h: the timer that watches them finds each refresh due.
  for (let t = 600_000; t <= 25 * 3600_000; t += 600_000) {
    clock.advance(600_000);
    client.send({ type: FrameType.PING });
    await flush();
  }
  assert.equal(lastClose(client), undefined, 'the link stayed open');
  assert.deepEqual(
    saves.map((s) => [Math.floor((s.at - t0) / half), s.expiresAt - s.at, s.openOn]),
    [0, 1, 2, 3, 4].map((k) => [k, OPEN_SESSION_TTL_MS, NODE]),
    'saved at the handshake, then once in each half TTL, each time for a full TTL and as open here',
  );
  for (let k = 1; k < saves.length; k++) assert.ok(saves[k].at - t0 >= k * half && saves[k].at - t0 < k * half + 600_000, `refresh ${k} within one heartbeat of its due time`);
  assert.equal(store.loadSession(welcome.resumeToken, clock.now())?.sessionId, welcome.sessionId, 'still resumable after 25 h');
  assert.deepEqual(touches, saves.slice(1).map((x) => x.at), 'presence kept with each refresh');
  await gw.close();
});

test("a link kicked by an `online` listener, before its WELCOME, leaves presence (the close is after its presence write)", async () => {
  const { gw } = setup();
  gw.on('online', (e) => gw.kick(e.userId, e.deviceId));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  await flush();
  assert.equal(lastClose(client)?.code, CloseCodes.kicked);
  assert.equal(gw.connectionCount, 0);
  assert.deepEqual(await gw.presence('u1'), [], 'not left online');
  await gw.close();
});

test('a failover re-assertion the store refused is retried, even when a weaker resync (the re-subscription that comes with a failover) runs meanwhile', async () => {
  class FlakyStore extends MemoryStore {
    resync: ((r: ResyncReason) => void) | undefined;
    restores = 0;
    async joinCluster(_node: string, _route: unknown, onResync?: (r: ResyncReason) => void) {
      this.resync = onResync;
    }
    async route() {}
    async restoreOnline(e: PresenceEntry) {
      // The first pass meets the slot's new master not serving yet.
      if (this.restores++ === 0) throw new Error('READONLY');
      this.setOnline(e);
      return true;
    }
  }
  const store = new FlakyStore();
  const { clock, gw } = setup({ store });
  await gw.listen();
  await open(gw);
  const id = gw.connection('u1', 'd1')!.connectionId;
  await store.setOffline('u1', 'd1', id); // what the failover lost
  store.resync!('failover');
  await flush();
  store.resync!('resubscribed');
  await flush();
  // The failed pass is owed: the re-subscription's pass (or a retry) writes the entry again.
  for (let i = 0; i < 5 && (await gw.presence('u1')).length === 0; i++) {
    clock.advance(1000);
    await flush();
  }
  assert.deepEqual((await gw.presence('u1')).map((e) => e.connectionId), [id], 'written again by a retry');
  assert.equal(store.restores, 2);
  await gw.close();
});

test("a link that closes while a re-assertion writes its entry again leaves presence even when the removal that follows fails once (it was not retried: the entry stayed, on a live node, for good)", async () => {
  class SlowStore extends MemoryStore {
    resync: ((r: ResyncReason) => void) | undefined;
    gate: Promise<void> | null = null;
    failOffline = 0;
    async joinCluster(_node: string, _route: unknown, onResync?: (r: ResyncReason) => void) {
      this.resync = onResync;
    }
    async route() {}
    async restoreOnline(e: PresenceEntry) {
      await this.gate;
      this.setOnline(e);
      return true;
    }
    override async setOffline(userId: string, deviceId: string, connectionId: string, putBack?: PresenceEntry) {
      if (this.failOffline > 0 && this.failOffline--) throw new Error('Connection is closed.');
      return super.setOffline(userId, deviceId, connectionId, putBack);
    }
  }
  const store = new SlowStore();
  const { clock, gw } = setup({ store });
  const faults: string[] = [];
  gw.on('fault', (f) => faults.push(f.op));
  await gw.listen();
  await open(gw);
  let release!: () => void;
  store.gate = new Promise<void>((r) => (release = r));
  store.resync!('lease-lapsed');
  await flush();
  gw.kick('u1', 'd1'); // its removal goes now, before the held write lands
  await flush();
  store.failOffline = 1; // a Redis blip: the removal after the write fails once
  release();
  await flush();
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    await flush();
  }
  assert.deepEqual(await gw.presence('u1'), [], `the closed link is not left in presence (faults: ${faults.join(', ')})`);
  await gw.close();
});

/** A store come back from an older snapshot, where a newer link of the device on node B writes its entry between a re-assertion's read and write. */
class RacyStore extends MemoryStore {
  resync: ((r: ResyncReason) => void) | undefined;
  /** Written just before the re-assertion's write: a newer link of the device on node B, between the read and the write. */
  between: PresenceEntry | null = null;
  failPutBack = 0;
  async joinCluster(_node: string, _route: unknown, onResync?: (r: ResyncReason) => void) {
    this.resync = onResync;
  }
  async route() {}
  async restoreOnline(e: PresenceEntry) {
    const held = (await this.devices(e.userId)).find((x) => x.deviceId === e.deviceId);
    if (held && held.connectionId !== e.connectionId) return false;
    this.setOnline(e);
    return true;
  }
  /** The device's entry as written (one user, one device here), to answer what a write displaced. */
  held: PresenceEntry | undefined;
  override setOnline(e: PresenceEntry, maxDevices = 0): PresenceEntry | undefined {
    if (this.between) {
      const b = this.between;
      this.between = null;
      this.setOnline(b);
    }
    const old = this.held;
    super.setOnline(e, maxDevices);
    this.held = e;
    return old && old.connectionId !== e.connectionId ? old : undefined;
  }
  override async setOffline(userId: string, deviceId: string, connectionId: string, putBack?: PresenceEntry) {
    if (putBack && this.failPutBack > 0 && this.failPutBack--) throw new Error('Connection is closed.');
    const done = await super.setOffline(userId, deviceId, connectionId, putBack);
    if (done && !putBack) this.held = undefined;
    return done;
  }
}

test("a re-assertion that takes a device's entry over from an older link and displaces a newer link's that came in between puts the newer one back even when that put-back fails once (the pass stopped, and the next one kept the entry for the link here)", async () => {
  const store = new RacyStore();
  const { clock, gw } = setup({ store });
  const replaced: ReplacedEvent[] = [];
  gw.on('replaced', (e) => replaced.push(e));
  await gw.listen();
  const { client } = await open(gw);
  const id = gw.connection('u1', 'd1')!.connectionId;
  const entry = (connectionId: string, since: number): PresenceEntry => ({ userId: 'u1', deviceId: 'd1', connectionId, nodeId: 'B', transport: 'tcp', since, clientInfo: {} });
  // What a store come back from an older snapshot holds: the device's past link on B.
  store.setOnline(entry('older', 1));
  store.between = entry('newer', 1e15); // accepted after the link here
  store.failPutBack = 1; // a Redis blip: the put-back fails once
  store.resync!('store-reset');
  await flush();
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    if (gw.connectionCount > 0) client.send({ type: FrameType.PING }); // alive all along
    await flush();
  }
  assert.deepEqual((await gw.presence('u1')).map((e) => e.connectionId), ['newer'], `the newer link's entry is put back, not ${id}'s`);
  assert.deepEqual(replaced.map((e) => `${e.connectionId} by ${e.byConnectionId}`), [`${id} by newer`], 'the link here gives way to it');
  await gw.close();
});

test("a put-back owed for a gone link is forgotten when its retry is (the gateway closes): not kept for good", async () => {
  const store = new RacyStore();
  const { clock, gw } = setup({ store });
  await gw.listen();
  const { client } = await open(gw);
  const entry = (connectionId: string, since: number): PresenceEntry => ({ userId: 'u1', deviceId: 'd1', connectionId, nodeId: 'B', transport: 'tcp', since, clientInfo: {} });
  store.setOnline(entry('older', 1));
  store.between = entry('newer', 1e15);
  store.failPutBack = Infinity; // Redis stays down
  store.resync!('store-reset');
  await flush();
  for (let i = 0; i < 3; i++) {
    clock.advance(1000);
    if (gw.connectionCount > 0) client.send({ type: FrameType.PING });
    await flush();
  }
  const owed = (gw as unknown as { putBacks: Map<string, PresenceEntry> }).putBacks;
  assert.equal(owed.size, 1, 'a put-back is owed while its retry waits');
  await gw.close();
  await flush();
  assert.equal(owed.size, 0, 'the put-back owed is forgotten once its retry is dropped');
});
