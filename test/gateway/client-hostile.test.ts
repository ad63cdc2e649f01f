import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { RecentIds } from '../../src/client/recent-ids.js';
import { ManualClock } from '../../src/core/clock.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { FrameType, type HeartbeatGrant } from '../../src/protocol/frames.js';
import { escapeControls } from '../../src/cli/escape.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The client facing a broken or hostile gateway (or a man in the middle on ws://): what it may
// be made to keep or do is bounded, and what makes no sense closes the link as malformed.

const GRANT: HeartbeatGrant = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500, direction: 'client' };

function setup() {
  const clock = new ManualClock(5_000);
  const servers: MemoryLink[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    reconnect: { initialDelayMs: 1000, maxDelayMs: 8000, minDelayMs: 100, stableAfterMs: 5000 },
    clock,
    timers: clock,
    random: () => 0.5,
    dial: async () => {
      const [server, c] = memoryLinkPair();
      server.bind({ onLinkFrame: () => {}, onLinkError: () => {}, onLinkClose: () => {} });
      servers.push(server);
      return c;
    },
  });
  const closes: CloseEvent[] = [];
  const delays: number[] = [];
  client.on('close', (e) => closes.push(e));
  client.on('reconnecting', (r) => delays.push(r.delayMs));
  const welcome = (heartbeat: HeartbeatGrant = GRANT) => servers.at(-1)!.send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 't', resumed: false, heartbeat });
  return { clock, client, servers, closes, delays, welcome };
}

test('a WELCOME whose grant would overflow a timer, or makes no sense, closes the link as malformed (no reconnect), and arms no timer loop', async () => {
  for (const bad of [{ intervalMs: 3e9, maxIntervalMs: 3e9 }, { intervalMs: 0 }, { minIntervalMs: 2000 }, { missBudget: 0 }, { graceMs: 3e9 }]) {
    const { clock, client, closes, welcome } = setup();
    const opening = client.connect().catch(() => {});
    await flush();
    welcome({ ...GRANT, ...bad });
    await flush();
    await opening;
    assert.equal(closes[0]?.code, CloseCodes['malformed-frame'], JSON.stringify(bad));
    assert.equal(closes[0]?.willReconnect, false);
    assert.ok(clock.pendingTimers <= 2, `no timer loop (${clock.pendingTimers} pending)`);
    client.close();
  }
});

test('an acknowledgement of more than the client sent closes the link as malformed; the outbox is kept', async () => {
  const { client, closes, welcome, servers } = setup();
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  client.send('one');
  client.send('two');
  servers[0].send({ type: FrameType.ACK, ack: 7 });
  await flush();
  assert.equal(closes[0]?.code, CloseCodes['malformed-frame']);
  assert.equal(client.pendingCount, 2, 'nothing reported delivered');
  client.close();
});

test('a resumed WELCOME acknowledging more than the client sent closes as malformed before anything opens', async () => {
  const { clock, client, closes, welcome, servers, delays } = setup();
  const events: string[] = [];
  client.on('open', () => events.push('open'));
  client.on('close', (e) => events.push(`close ${e.code}`));
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  client.send('one');
  servers[0].close(CloseCodes['going-away'], 'bye');
  await flush();
  clock.advance(delays[0]);
  await flush();
  servers[1].send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 't', resumed: true, heartbeat: GRANT, ack: 9 });
  await flush();
  assert.equal(closes.at(-1)?.code, CloseCodes['malformed-frame']);
  assert.deepEqual(events, ['open', `close ${CloseCodes['going-away']}`, `close ${CloseCodes['malformed-frame']}`], 'no open after the close');
  assert.equal(client.pendingCount, 1);
  client.close();
});

test('reconnect hints in a row wait at least the backoff: a gateway answering every link with GOAWAY 0 cannot make the client loop', async () => {
  const { clock, client, delays, welcome, servers } = setup();
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  for (let i = 0; i < 4; i++) {
    servers.at(-1)!.send({ type: FrameType.GOAWAY, code: CloseCodes['going-away'], reconnectAfterMs: 0 });
    servers.at(-1)!.close(CloseCodes['going-away'], 'again');
    await flush();
    clock.advance(delays.at(-1)!);
    await flush();
    welcome();
    await flush();
  }
  assert.equal(delays[0], 0, 'the first hint is honoured exactly');
  assert.ok(delays.slice(1).every((d) => d >= 100), `then the backoff: ${delays}`);
  assert.ok(delays[3] > delays[1], `and it grows: ${delays}`);
  client.close();
});

test('the client remembers message ids bounded in characters as well as in count', () => {
  const ids = new RecentIds(4096);
  const long = 'x'.repeat(200_000);
  for (let i = 0; i < 100; i++) assert.ok(ids.add(`${i}:${long}`), 'an id too long to remember is taken as new');
  assert.equal(ids.heldChars, 0);
  for (let i = 0; i < 10_000; i++) ids.add(`${i}:${'y'.repeat(10_000)}`);
  assert.ok(ids.heldChars <= 4096 * 256, `bounded: ${ids.heldChars}`);
  assert.equal(ids.add(`9999:${'y'.repeat(10_000)}`), false, 'the most recent are kept');
});

test('an id seen again becomes the newest: one the gateway keeps re-sending is remembered while newer ids go through', () => {
  const ids = new RecentIds(3);
  for (const id of ['a', 'b', 'c']) assert.ok(ids.add(id));
  assert.equal(ids.add('a'), false, 'a duplicate');
  assert.ok(ids.add('d'), 'forgets the least recently seen: b, not a');
  assert.equal(ids.add('a'), false, 'a is still known');
  assert.ok(ids.add('b'), 'b was forgotten');
  assert.equal(ids.size, 3);
  assert.equal(ids.heldChars, 3);
});

test('longlink client prints text from the gateway with its control characters escaped', () => {
  assert.equal(escapeControls('hi\u001b]52;c;ZXZpbA==\u0007 there\r\n\ttab'), 'hi\\x1b]52;c;ZXZpbA==\\x07 there\\x0d\\x0a\ttab');
  assert.equal(escapeControls('plain é 😀'), 'plain é 😀');
});

test('close() from the state handler that a frame ends a suspect spell with: that frame goes to nothing after the close', async () => {
  const { client, servers, welcome } = setup();
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  const events: string[] = [];
  client.on('message', (m) => events.push(`message:${Buffer.from(m.payload).toString()}`));
  client.on('close', () => events.push('close'));
  client.networkChanged();
  assert.equal(client.state, 'suspect');
  client.on('state', (s) => s === 'open' && client.close());
  servers[0].send({ type: FrameType.DATA, seq: 1, id: 'm1', payload: new TextEncoder().encode('late') });
  await flush();
  assert.deepEqual(events, ['close'], 'not handed over after close(): its ack did not go with the CLOSE');
});

test("close() from the 'rtt' handler of a PONG that carries a warning: no 'warning' after 'close'", async () => {
  const { clock, client, servers, welcome } = setup();
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  const events: string[] = [];
  client.on('close', () => events.push('close'));
  client.on('warning', () => events.push('warning'));
  client.on('rtt', () => {
    events.push('rtt');
    client.close();
  });
  clock.advance(GRANT.intervalMs);
  assert.ok(servers[0].received.some((f) => f.type === FrameType.PING), 'a heartbeat went');
  servers[0].send({ type: FrameType.PONG, warn: CloseCodes['too-many-pings'] });
  await flush();
  assert.deepEqual(events, ['rtt', 'close']);
});

test("close() from the 'interval' handler of a resumed WELCOME (the learner adopts its interval): no 'acked' after 'close', the outbox is kept for the next link", async () => {
  const clock = new ManualClock(5_000);
  const servers: MemoryLink[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test',
    userId: 'u',
    deviceId: 'd',
    adaptive: { startMs: 1000 },
    reconnect: { initialDelayMs: 1000, maxDelayMs: 1000, minDelayMs: 1000 },
    clock,
    timers: clock,
    random: () => 0.5,
    dial: async () => {
      const [server, c] = memoryLinkPair();
      server.bind({ onLinkFrame: () => {}, onLinkError: () => {}, onLinkClose: () => {} });
      servers.push(server);
      return c;
    },
  });
  const opening = client.connect();
  await flush();
  // The grant differs from the learner's first probe (2 s): every WELCOME makes it announce its own.
  servers[0].send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 't', resumed: false, heartbeat: GRANT });
  await opening;
  client.send('m');
  servers[0].destroy(); // lost before the gateway's ack
  await flush();
  clock.advance(1000);
  await flush();
  assert.equal(servers.length, 2, 'reconnected');
  const events: string[] = [];
  client.on('close', () => events.push('close'));
  client.on('acked', () => events.push('acked'));
  client.on('interval', () => {
    events.push('interval');
    // At once (no wait for the outbox, which would see the WELCOME's ack settle it first).
    void client.close({ flushMs: 0 });
  });
  servers[1].send({ type: FrameType.WELCOME, sessionId: 's', resumeToken: 't', resumed: true, heartbeat: GRANT, ack: 1 });
  await flush();
  assert.deepEqual(events, ['interval', 'close']);
  assert.equal(client.pendingCount, 1, 'settled by the next WELCOME instead');
});

test('the 64th owed ack, sent at once, leaves no ack timer behind (none fires after close())', async () => {
  const { clock, client, welcome, servers } = setup();
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  for (let seq = 1; seq <= 64; seq++) servers[0].send({ type: FrameType.DATA, seq, id: `m${seq}`, payload: new Uint8Array([seq]) });
  assert.deepEqual(servers[0].received.filter((f) => f.type === FrameType.ACK).map((f) => (f as { ack: number }).ack), [64]);
  client.close();
  assert.equal(clock.pendingTimers, 0, 'a timer left pending after close()');
});

test('the 64th owed ack goes after that message reached the handler; a handler that throws leaves it to ackDelayMs, as with fewer owed', async () => {
  const { clock, client, welcome, servers } = setup();
  const opening = client.connect();
  await flush();
  welcome();
  await opening;
  const acked = () => Math.max(0, ...servers[0].received.map((f) => ('ack' in f && typeof f.ack === 'number' ? f.ack : 0)));
  const ackedWhenHandled: number[] = [];
  let throwAt = 0;
  client.on('message', (m) => {
    ackedWhenHandled.push(acked());
    if (m.seq === throwAt) throw new Error('app crashed');
  });
  for (let seq = 1; seq <= 64; seq++) servers[0].send({ type: FrameType.DATA, seq, id: `m${seq}`, payload: new Uint8Array([seq]) });
  assert.equal(ackedWhenHandled[63], 0, 'message 64 was acknowledged before its handler ran');
  assert.equal(acked(), 64, 'sent at once after it');
  // A handler that throws: its error reaches the process (an uncaught exception, which ends it) before any ack timer.
  const rethrown: (() => void)[] = [];
  const real = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => void rethrown.push(fn);
  throwAt = 128;
  try {
    for (let seq = 65; seq <= 128; seq++) servers[0].send({ type: FrameType.DATA, seq, id: `m${seq}`, payload: new Uint8Array([seq]) });
  } finally {
    globalThis.queueMicrotask = real;
  }
  assert.equal(rethrown.length, 1);
  assert.throws(rethrown[0], /app crashed/);
  assert.equal(acked(), 64, 'message 128 acknowledged though its handler threw');
  clock.advance(50);
  assert.equal(acked(), 128, 'acknowledged after ackDelayMs (the process lived on)');
  client.close();
});
