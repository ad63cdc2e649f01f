import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type MessageEvent } from '../../src/gateway/gateway.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType, type Frame, type HeartbeatGrant } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The client against its own event handlers, its token provider and the timing of its
// calls: what an application does from inside an event, or between HELLO and WELCOME,
// must not lose, reorder or strand a message or the client.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
const GRANT: HeartbeatGrant = { ...POLICY, direction: 'client' };

function gateway(clock = new ManualClock(1_000)) {
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: { pongTimeoutMs: 300 }, wheelTickMs: 1, clock, timers: clock, wallClock: clock, delivery: { probeBeforePushMs: 0 } });
  const messages: MessageEvent[] = [];
  gw.on('message', (e) => messages.push(e));
  const texts = () => messages.map((m) => Buffer.from(m.payload).toString());
  return { clock, gw, messages, texts };
}

/** A client of `target().gw`, which dials only while `up()`; random 0 makes the backoff exact. */
function client(target: () => Gateway, clock: ManualClock, opts: { up?: () => boolean; token?: () => Promise<string>; random?: number } = {}) {
  const links: MemoryLink[] = [];
  const c = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    clock,
    timers: clock,
    random: () => opts.random ?? 0,
    reconnect: { minDelayMs: 10, initialDelayMs: 10 },
    ...(opts.token ? { token: opts.token } : {}),
    dial: async () => {
      if (opts.up && !opts.up()) throw new Error('network down');
      const [s, l] = memoryLinkPair();
      target().accept(s);
      links.push(l);
      return l;
    },
  });
  const closes: CloseEvent[] = [];
  const delays: number[] = [];
  c.on('close', (e) => closes.push(e));
  c.on('reconnecting', (r) => delays.push(r.delayMs));
  return { c, links, closes, delays };
}

async function settle(clock: ManualClock, ms = 100, rounds = 5) {
  for (let i = 0; i < rounds; i++) {
    await flush();
    clock.advance(ms / rounds);
  }
  await flush();
}

test('a send() from an open handler waits for the outbox: messages queued offline are all delivered, in order', async () => {
  const { clock, gw, texts } = gateway();
  let up = true;
  const a = client(() => gw, clock, { up: () => up });
  await Promise.all([a.c.connect(), flush()]);
  up = false;
  a.links[0].destroy();
  a.c.send('q1');
  a.c.send('q2');
  a.c.on('open', () => a.c.send('from-open'));
  a.c.on('state', (s) => s === 'open' && a.c.send('from-state'));
  await settle(clock);
  up = true;
  await settle(clock, 500);
  await settle(clock, 500);
  assert.deepEqual(texts(), ['q1', 'q2', 'from-state', 'from-open']);
  assert.equal(a.c.pendingCount, 0);
  a.c.close();
  await gw.close();
});

test('a send-the-next-on-acked pipeline across a resume loses nothing', async () => {
  const { clock, gw, texts } = gateway();
  const a = client(() => gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  let n = 0;
  const next = () => a.c.send('p' + ++n);
  a.c.on('acked', () => n < 6 && next());
  a.links[0].deaf = true; // the gateway's acks are lost with the link
  next();
  await settle(clock);
  a.links[0].peer.deaf = true; // p2 and p3 never reach the gateway
  next();
  next();
  await settle(clock);
  a.links[0].destroy();
  await settle(clock, 500);
  await settle(clock, 500);
  assert.deepEqual(texts(), ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
  a.c.close();
  await gw.close();
});

test('a send() from a state handler on a new session (resume token unknown) is renumbered with the outbox, not refused as an ack beyond it', async () => {
  const first = gateway();
  const clock = first.clock;
  let target = first.gw;
  const a = client(() => target, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.links[0].peer.deaf = true; // the gateway never gets these
  a.c.send('x1');
  a.c.send('x2');
  await settle(clock);
  a.links[0].destroy();
  await first.gw.close();
  const second = gateway(clock); // knows no session: the client's is lost
  target = second.gw;
  a.c.on('state', (s) => s === 'open' && a.c.send('hello'));
  await settle(clock, 500);
  await settle(clock, 500);
  assert.deepEqual(second.texts(), ['x1', 'x2', 'hello']);
  assert.equal(a.c.state, 'open');
  assert.ok(!a.closes.some((e) => e.code === CloseCodes['malformed-frame']), JSON.stringify(a.closes));
  a.c.close();
  await second.gw.close();
});

test('the 64th message in a row is acknowledged at once, with the 63 before it (a burst of exactly 64 is settled)', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  const pushes = [];
  for (let i = 1; i <= 64; i++) pushes.push(gw.push('u', 'm' + i, { id: 'm' + i, ttlMs: 20_000, waitMs: 10_000 }));
  await flush();
  const acks = a.links[0].peer.received.filter((f): f is Frame & { ack: number } => 'ack' in f && f.ack !== undefined).map((f) => f.ack);
  assert.deepEqual(acks, [64], 'one ACK, sent at once, covering all 64');
  await settle(clock);
  assert.equal(await gw.queueDepth('u', 'd'), 0);
  const last = await pushes[63];
  assert.equal(last.devices[0]?.status, 'delivered');
  a.c.close();
  await gw.close();
});

test('a token provider that fails once (its fetch met the outage) is retried with backoff, not final', async () => {
  const { clock, gw } = gateway();
  let asked = 0;
  const a = client(() => gw, clock, {
    token: async () => {
      if (++asked === 2) throw new Error('getaddrinfo ENOTFOUND auth.example');
      return 't';
    },
  });
  await Promise.all([a.c.connect(), flush()]);
  a.links[0].destroy();
  await settle(clock, 1000);
  await settle(clock, 1000);
  assert.equal(a.closes[1]?.code, CloseCodes['transport-error']);
  assert.equal(a.closes[1]?.willReconnect, true);
  assert.match(a.closes[1]?.reason ?? '', /token provider failed: getaddrinfo ENOTFOUND/);
  assert.equal(a.c.state, 'open');
  assert.equal(asked, 3);
  a.c.close();
  await gw.close();
});

test('a token provider that never answers is given up on after the handshake timeout and asked again', async () => {
  const { clock, gw } = gateway();
  let asked = 0;
  const a = client(() => gw, clock, { token: () => (++asked === 1 ? new Promise<string>(() => {}) : Promise.resolve('t')) });
  const opening = a.c.connect();
  await settle(clock, 9_000);
  assert.equal(a.c.state, 'connecting', 'still within the handshake timeout (10 s)');
  await settle(clock, 2_000);
  assert.match(a.closes[0]?.reason ?? '', /token provider did not answer within 10000 ms/);
  assert.equal(a.closes[0]?.willReconnect, true);
  await settle(clock, 500);
  await opening;
  assert.equal(a.c.state, 'open');
  assert.equal(asked, 2);
  a.c.close();
  await gw.close();
});

test('connect() on an open client resolves at once with the WELCOME in force, adding no listener', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  const w = await Promise.all([a.c.connect(), flush()]).then(([w]) => w);
  const listeners = a.c.listenerCount('open') + a.c.listenerCount('close');
  for (let i = 0; i < 100; i++) assert.equal(await a.c.connect(), w);
  assert.equal(a.c.listenerCount('open') + a.c.listenerCount('close'), listeners);
  a.c.close();
  await gw.close();
});

test('connect() from the close handler of a permanent close starts a new attempt and settles', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  let again: Promise<unknown> | null = null;
  const states: string[] = [];
  a.c.on('close', (e) => {
    states.push(a.c.state);
    if (!e.willReconnect && again === null) again = a.c.connect();
  });
  gw.kick('u', 'd');
  await settle(clock, 1000);
  assert.deepEqual(states, ['closed'], 'the state is closed when the close event says so');
  assert.ok(again);
  await again;
  assert.equal(a.c.state, 'open');
  assert.equal(a.links.length, 2);
  a.c.close();
  await gw.close();
});

test('close() from a close handler (willReconnect) stops the client: no reconnect is planned after it', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  a.c.once('close', () => a.c.close());
  a.links[0].destroy();
  await settle(clock, 1000);
  assert.equal(a.c.state, 'closed');
  assert.equal(a.links.length, 1);
  await gw.close();
});

test('setIntervalMs() between HELLO and WELCOME is announced once WELCOME comes', async () => {
  const clock = new ManualClock(1000);
  let server!: MemoryLink;
  const c = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    clock,
    timers: clock,
    random: () => 0,
    dial: async () => {
      const [s, l] = memoryLinkPair();
      server = s;
      return l;
    },
  });
  void c.connect();
  await flush();
  assert.equal(server.received[0]?.type, FrameType.HELLO);
  c.setIntervalMs(5000); // the app went to the background while the gateway authenticated
  server.send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 'r', resumed: false, heartbeat: GRANT });
  assert.ok(server.received.some((f) => f.type === FrameType.PING && f.intervalMs === 5000));
  assert.equal(c.heartbeat?.intervalMs, 5000);
  c.close();
});

test('a network change during an attempt that succeeds leaves the next loss to the backoff', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock, { random: 0.9 });
  const opening = a.c.connect();
  a.c.networkChanged(); // while connecting (a browser's `online` during the handshake)
  await settle(clock);
  await opening;
  for (let i = 0; i < 10; i++) await settle(clock, 1000);
  a.links[0].destroy();
  assert.ok(a.delays[0] > 0, `delay ${a.delays[0]}`);
  a.c.close();
  await gw.close();
});

test("a network change while reconnecting keeps a wait the gateway asked for (GOAWAY's hint), but cuts short a backoff", async () => {
  const clock = new ManualClock(1000);
  const servers: MemoryLink[] = [];
  const c = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    clock,
    timers: clock,
    random: () => 0,
    reconnect: { initialDelayMs: 1000, minDelayMs: 1000 },
    dial: async () => {
      const [s, l] = memoryLinkPair();
      servers.push(s);
      return l;
    },
  });
  void c.connect();
  await flush();
  servers[0].send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 'r', resumed: false, heartbeat: GRANT });
  servers[0].send({ type: FrameType.GOAWAY, code: CloseCodes['going-away'], reconnectAfterMs: 8000 });
  servers[0].destroy();
  await flush();
  assert.equal(c.state, 'reconnecting');
  c.networkChanged();
  await flush();
  assert.equal(servers.length, 1, 'the hinted wait is kept');
  clock.advance(8000);
  await flush();
  assert.equal(servers.length, 2);
  // Now a plain loss: backoff, which a network change does cut short.
  servers[1].send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 'r', resumed: true, heartbeat: GRANT });
  servers[1].destroy();
  await flush();
  assert.equal(c.state, 'reconnecting');
  c.networkChanged();
  await flush();
  assert.equal(servers.length, 3);
  c.close();
});

test('TCP: a gateway that dies inside a frame (its FIN mid-DATA) is a lost connection, retried, not a permanent truncated-frame', async () => {
  let conns = 0;
  const srv = net.createServer((s) => {
    conns++;
    s.once('data', () => {
      s.write(encodeDelimited({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 'r', resumed: false, heartbeat: GRANT }));
      if (conns === 1) s.end(Buffer.from(encodeDelimited({ type: FrameType.DATA, seq: 1, id: 'm1', payload: new Uint8Array(5000) })).subarray(0, 1000));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'u', deviceId: 'd', reconnect: { initialDelayMs: 10, minDelayMs: 5 } });
  const closes: CloseEvent[] = [];
  c.on('close', (e) => closes.push(e));
  const reopened = new Promise((r) => c.on('open', () => conns === 2 && r(null)));
  await c.connect();
  await reopened;
  assert.equal(closes[0]?.code, CloseCodes['transport-error']);
  assert.equal(closes[0]?.willReconnect, true);
  assert.match(closes[0]?.reason ?? '', /stream ended inside a frame/);
  c.close();
  srv.close();
});

test('close() during a dial that hangs (TLS and WebSocket handshakes never answered) ends the dial at once, not at the handshake timeout', async () => {
  for (const scheme of ['tls', 'ws']) {
    const sockets: net.Socket[] = [];
    const closed: Promise<void>[] = [];
    const srv = net.createServer((s) => {
      sockets.push(s);
      closed.push(new Promise((r) => s.on('close', () => r())));
      s.on('error', () => {});
      s.resume(); // reads (so sees the client's FIN), never answers
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const c = new LonglinkClient({ url: `${scheme}://127.0.0.1:${port}`, userId: 'u', deviceId: 'd', handshakeTimeoutMs: 30_000 });
    const opening = c.connect().catch((e) => e);
    while (sockets.length === 0) await new Promise((r) => setTimeout(r, 5));
    c.close();
    const outcome = await Promise.race([closed[0].then(() => 'closed'), new Promise((r) => setTimeout(r, 3000, 'still open after 3 s'))]);
    assert.equal(outcome, 'closed', `${scheme}: the dial's socket`);
    assert.equal(c.state, 'closed');
    void opening;
    srv.close();
  }
});

test('connect() called from an open handler resolves (after the events)', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  let resolved = false;
  a.c.once('open', () => void a.c.connect().then(() => (resolved = true)));
  await Promise.all([a.c.connect(), flush()]);
  await settle(clock);
  assert.ok(resolved);
  a.c.close();
  await gw.close();
});

test('a message sent from an open handler that also changes the interval goes out, with the outbox', async () => {
  const { clock, gw, texts } = gateway();
  let up = true;
  const a = client(() => gw, clock, { up: () => up });
  await Promise.all([a.c.connect(), flush()]);
  up = false;
  a.links[0].destroy();
  a.c.send('queued');
  a.c.once('open', () => {
    a.c.setIntervalMs(2000);
    a.c.send('hi');
  });
  await settle(clock);
  up = true;
  await settle(clock, 500);
  await settle(clock, 500);
  assert.deepEqual(texts(), ['queued', 'hi']);
  assert.equal(a.c.heartbeat?.intervalMs, 2000);
  a.c.close();
  await gw.close();
});

test('close() from a reconnecting (or state) handler stops the client: no attempt runs after it, and a later connect() opens', async () => {
  for (const via of ['reconnecting', 'state'] as const) {
    const { clock, gw } = gateway();
    let tokens = 0;
    const a = client(() => gw, clock, { token: async () => (tokens++, 't') });
    await Promise.all([a.c.connect(), flush()]);
    const states: string[] = [];
    a.c.on('state', (s) => states.push(s));
    if (via === 'reconnecting') a.c.once('reconnecting', () => a.c.close());
    else a.c.on('state', (s) => s === 'reconnecting' && a.c.close());
    a.links[0].destroy();
    await settle(clock, 1000);
    assert.equal(a.c.state, 'closed', via);
    assert.deepEqual(states, ['reconnecting', 'closed'], `${via}: nothing after closed`);
    assert.equal(a.links.length, 1, `${via}: no dial after close()`);
    assert.equal(tokens, 1, `${via}: the token provider is not asked for a closed client`);
    // The client is usable again: connect() opens a link, not a wait that never ends.
    const again = a.c.connect();
    await settle(clock, 100);
    await again;
    assert.equal(a.c.state, 'open', via);
    a.c.close();
    await gw.close();
  }
});

test('close() then connect() from a close handler (willReconnect) runs one attempt, not a second one planned beside it', async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  await Promise.all([a.c.connect(), flush()]);
  let again: Promise<unknown> | null = null;
  const states: string[] = [];
  a.c.on('state', (s) => states.push(s));
  a.c.once('close', () => {
    a.c.close();
    again = a.c.connect();
  });
  a.links[0].destroy();
  await settle(clock, 1000);
  await again;
  await settle(clock, 1000);
  assert.deepEqual(states, ['closed', 'connecting', 'open'], 'no reconnect planned beside the new attempt');
  assert.equal(a.c.state, 'open');
  assert.equal(a.links.length, 2, 'one new link');
  a.c.close();
  await gw.close();
});

test('a token provider that gives no string (null from storage before login) is a failed provider, retried: nothing throws out of the client', async () => {
  const { clock, gw } = gateway();
  let asked = 0;
  const rejections: unknown[] = [];
  const onRejection = (err: unknown) => rejections.push(err);
  process.on('unhandledRejection', onRejection);
  try {
    const a = client(() => gw, clock, { token: async () => (++asked === 1 ? (null as unknown as string) : 't') });
    const opening = a.c.connect();
    await settle(clock, 1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(rejections, []);
    assert.match(a.closes[0]?.reason ?? '', /token provider failed: .*not a string/);
    assert.equal(a.closes[0]?.willReconnect, true);
    await settle(clock, 1000);
    await opening;
    assert.equal(a.c.state, 'open');
    assert.equal(asked, 2);
    a.c.close();
    // A token given as a value is checked when the client is made.
    assert.throws(() => new LonglinkClient({ url: 'tcp://test', userId: 'u', deviceId: 'd', token: null as unknown as string }), { code: 'LL_ERR_INVALID_OPTION' });
  } finally {
    process.off('unhandledRejection', onRejection);
    await gw.close();
  }
});

test("close() from the state handler of a WELCOME ends its events there: no 'open' after 'close', and connect() rejects", async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  const events: string[] = [];
  for (const e of ['open', 'close', 'rtt', 'session-lost'] as const) a.c.on(e, () => events.push(e));
  a.c.on('state', (s) => {
    events.push(`state:${s}`);
    if (s === 'open') a.c.close();
  });
  const opening = a.c.connect();
  const outcome = opening.then(() => 'resolved', () => 'rejected');
  await settle(clock);
  assert.equal(await outcome, 'rejected');
  assert.deepEqual(events, ['state:connecting', 'state:open', 'state:closed', 'close']);
  assert.equal(a.c.state, 'closed');
  await gw.close();
});

test('a listener that throws does not drop the link or skip other listeners: the error is rethrown outside the client', async () => {
  const { clock, gw, texts } = gateway();
  const a = client(() => gw, clock);
  // The test runner's own handler would fail the test on the rethrown error: caught here instead.
  const runners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const thrown: string[] = [];
  process.on('uncaughtException', (err) => thrown.push(err.message));
  try {
    a.c.on('open', () => {
      throw new Error('bug in an open listener');
    });
    a.c.on('message', () => {
      throw new Error('bug in a message listener');
    });
    const got: string[] = [];
    a.c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
    await Promise.all([a.c.connect(), flush()]);
    void gw.push('u', 'hi');
    a.c.send('back');
    await settle(clock, 1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(thrown, ['bug in an open listener', 'bug in a message listener']);
    assert.deepEqual(got, ['hi'], 'the next listener still ran');
    assert.deepEqual(texts(), ['back']);
    assert.equal(a.c.state, 'open');
    assert.equal(a.links.length, 1, 'the link was not dropped');
    assert.equal(a.closes.length, 0);
  } finally {
    process.removeAllListeners('uncaughtException');
    for (const l of runners) process.on('uncaughtException', l);
    a.c.close();
    await gw.close();
  }
});

test('connect() from the state handler of a permanent close (or of close()) waits for its own attempt: the close being reported does not reject it', async () => {
  for (const how of ['kicked', 'close()'] as const) {
    const { clock, gw } = gateway();
    const a = client(() => gw, clock);
    await Promise.all([a.c.connect(), flush()]);
    let again: Promise<unknown> | null = null;
    a.c.on('state', (s) => {
      if (s === 'closed' && again === null) again = a.c.connect();
    });
    if (how === 'kicked') gw.kick('u', 'd');
    else a.c.close();
    await settle(clock, 1000);
    assert.ok(again, how);
    const outcome = await (again as Promise<unknown>).then(() => 'resolved', (e: Error) => `rejected: ${e.message}`);
    assert.equal(outcome, 'resolved', how);
    assert.equal(a.c.state, 'open', how);
    a.c.close();
    await gw.close();
  }
});

test("close() from the state handler of an attempt's start ends it there: connect() rejects (not waits for ever), no 'connecting' event, no dial", async () => {
  const { clock, gw } = gateway();
  const a = client(() => gw, clock);
  const events: string[] = [];
  a.c.on('connecting', () => events.push('connecting'));
  a.c.on('close', () => events.push('close'));
  a.c.once('state', (s) => s === 'connecting' && a.c.close());
  let outcome = 'pending';
  a.c.connect().then(() => (outcome = 'resolved'), () => (outcome = 'rejected'));
  await settle(clock);
  assert.equal(outcome, 'rejected');
  assert.deepEqual(events, ['close']);
  assert.equal(a.links.length, 0);
  assert.equal(a.c.state, 'closed');
  await gw.close();
});

test("close() from an 'acked' handler ends the frame that carried the ack: its message is not handed over after 'close' (unacknowledged, it comes again), and no ack timer is left", async () => {
  // A gateway of our own, to piggyback the ack on a DATA frame as the gateway may.
  const clock = new ManualClock(1_000);
  const servers: MemoryLink[] = [];
  const c = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    clock,
    timers: clock,
    random: () => 0,
    dial: async () => {
      const [server, l] = memoryLinkPair();
      server.bind({ onLinkFrame: () => {}, onLinkError: () => {}, onLinkClose: () => {} });
      servers.push(server);
      return l;
    },
  });
  const events: string[] = [];
  c.on('message', (m) => events.push(`message:${Buffer.from(m.payload).toString()}`));
  c.on('close', () => events.push('close'));
  const opening = c.connect();
  await flush();
  servers[0].send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 't', resumed: false, heartbeat: GRANT });
  await opening;
  c.send('last');
  // The app's "quit once my last message is through".
  c.once('acked', () => {
    events.push('acked');
    c.close();
  });
  servers[0].send({ type: FrameType.DATA, seq: 1, id: 'm1', payload: Buffer.from('news'), ack: 1 });
  await flush();
  assert.deepEqual(events, ['acked', 'close'], "nothing after 'close'");
  assert.equal(clock.pendingTimers, 0, 'no timer armed for a closed client');
  assert.ok(!servers[0].received.some((f) => f.type === FrameType.ACK && f.ack === 1), 'the message not handed over is not acknowledged');
});

test("close() from an 'open' handler of a WELCOME that refused the resume: 'session-lost' is not dropped, it comes with the next WELCOME", async () => {
  const first = gateway();
  const clock = first.clock;
  let target = first.gw;
  const a = client(() => target, clock);
  const lost: { previousSessionId: string | undefined }[] = [];
  a.c.on('session-lost', (e) => lost.push(e));
  const w1 = await Promise.all([a.c.connect(), flush()]).then(([w]) => w);
  a.links[0].destroy();
  await first.gw.close();
  const second = gateway(clock); // restarted with a memory store: the session is gone
  target = second.gw;
  // The app's "was I logged out meanwhile? then stop".
  a.c.once('open', () => void a.c.close());
  await settle(clock, 500);
  assert.equal(a.c.state, 'closed');
  // It connects again later: it resumes the new session, and must still learn the old one is gone.
  await Promise.all([a.c.connect(), flush()]);
  await settle(clock);
  assert.equal(a.c.state, 'open');
  assert.deepEqual(lost, [{ previousSessionId: w1.sessionId }]);
  // Reported once.
  a.links.at(-1)!.destroy();
  await settle(clock, 500);
  assert.equal(a.c.state, 'open');
  assert.equal(lost.length, 1);
  a.c.close();
  await second.gw.close();
});
