import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { UpstreamRejectedError, type UpstreamMessage, type UpstreamSink } from '../../src/gateway/upstream.js';
import { ServerApi, PushBody } from '../../src/admin/server-api.js';
import { FrameType, PROTOCOL_VERSION, type DataFrame, type HelloFrame, type WelcomeFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The upstream (what devices send, on its way to a backend) and the server API (what backends
// push) against backends that refuse, stores that fail for some users, and acknowledgements that
// race a close: each case a defect a review found, failing before its fix.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
function setup(extra: ConstructorParameters<typeof Gateway>[0] = {}) {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, handshakeTimeoutMs: 3000, ...extra });
  return { clock, gw };
}
async function open(gw: Gateway, hello: Partial<HelloFrame> = {}): Promise<{ client: MemoryLink; server: MemoryLink }> {
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1', ...hello });
  await flush();
  assert.ok(client.received.find((f): f is WelcomeFrame => f.type === FrameType.WELCOME));
  return { client, server };
}


class FlakyStore extends MemoryStore {
  failFor = new Set<string>();
  override async knownDevices(userId: string, now: number): Promise<string[]> {
    if (this.failFor.has(userId)) throw new Error('ETIMEDOUT');
    return super.knownDevices(userId, now);
  }
  override async devices(userId: string) {
    if (this.failFor.has(userId)) throw new Error('ETIMEDOUT');
    return super.devices(userId);
  }
}

/** A store whose acknowledgements answer a little later (a round trip to Redis). */
class SlowAckStore extends MemoryStore {
  override async ack(userId: string, deviceId: string, holder: string, upTo: number) {
    await new Promise((r) => setTimeout(r, 5));
    return super.ack(userId, deviceId, holder, upTo);
  }
}

test('a message the backend refuses for good (UpstreamRejectedError) is not retried: acknowledged, and the device\'s later messages go on', async () => {
  const got: number[] = [];
  let attempts = 0;
  const sink: UpstreamSink = {
    name: 't',
    send: async (m: UpstreamMessage) => {
      if (m.payload[0] === 0) { attempts++; throw new UpstreamRejectedError('webhook answered HTTP 400'); }
      got.push(m.payload[0]);
    },
  };
  const { clock, gw } = setup({ upstream: { sink } });
  const { client } = await open(gw);
  const messages: string[] = [];
  gw.on('message', (e) => messages.push(String(e.id)));
  for (let seq = 1; seq <= 3; seq++) client.send({ type: FrameType.DATA, seq, id: `m${seq}`, payload: new Uint8Array([seq - 1]) });
  for (let i = 0; i < 10; i++) { clock.advance(1000); client.send({ type: FrameType.PING }); await flush(); } // 10 s, the link alive
  assert.deepEqual(got, [1, 2], 'messages 2 and 3 reach the backend');
  assert.equal(attempts, 1, 'tried once');
  const acks = client.received.filter((f) => 'ack' in f && f.ack !== undefined).map((f) => (f as { ack: number }).ack);
  assert.equal(Math.max(...acks), 3, 'all three acknowledged to the device');
  assert.equal(gw.upstreamStats()!.rejected, 1);
  assert.deepEqual(messages, [2, 3].map((n) => `m${n}`), 'the refused one is not handed to the application');
  await gw.close();
});

test('a push to several users answers per user: one whose store read fails is `failed`, the others queued; all failing fails the request; a user named twice gets one message', async () => {
  const store = new FlakyStore();
  const { gw } = setup({ store });
  for (const u of ['a', 'b']) {
    const { client } = await open(gw, { userId: u });
    client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
    await flush();
  }
  store.failFor.add('b');
  const api = new ServerApi(gw);
  let answer: unknown;
  try {
    answer = await api.run('push', { users: ['a', 'b'], text: 'hi', waitMs: 0 });
  } catch (err) {
    answer = { threw: (err as Error).message };
  }
  const results = (answer as { results: { user: string; status: string; error?: { code: string } }[] }).results;
  assert.deepEqual(results.map((r) => [r.user, r.status]), [['a', 'ok'], ['b', 'failed']], JSON.stringify(answer));
  assert.equal(results[1].error?.code, 'LL_ERR_STORE_UNAVAILABLE');
  assert.equal(await gw.queueDepth('a', 'd1'), 1);
  store.failFor.add('a');
  await assert.rejects(api.run('push', { users: ['a', 'b'], text: 'hi', waitMs: 0 }));
  store.failFor.clear();
  const twice = (await api.run('push', { users: ['a', 'a'], text: 'again', waitMs: 0 })) as { results: unknown[] };
  assert.equal(twice.results.length, 1);
  assert.equal(await gw.queueDepth('a', 'd1'), 2);
  await gw.close();
});

test('server API batch: pushes to the same user run in order, also when one of them names it among `users`', async () => {
  const log: string[] = [];
  const fake = {
    options: { maxFrameBytes: 65_536 },
    push: async (user: string, p: string) => {
      log.push(`start ${p}/${user}`);
      await new Promise((r) => setTimeout(r, p === '1' ? 30 : 1));
      log.push(`end ${p}/${user}`);
      return { id: 'x', devices: [], delivered: 0 };
    },
  };
  const api = new ServerApi(fake as never);
  await api.run('batch', { commands: [{ op: 'push', args: { user: 'a', text: '1' } }, { op: 'push', args: { users: ['a', 'b'], text: '2' } }] });
  assert.ok(log.indexOf('end 1/a') < log.indexOf('start 2/a'), `second push to a started before the first ended: ${log.join(', ')}`);
  assert.ok(log.indexOf('end 1/a') < log.indexOf('start 2/b'), 'the push to a and b waits for a\'s chain as a whole');
});

test('server API batch: a push holds up the next to its user only until it is queued, not while it waits for the device\'s ack', async () => {
  const { gw } = setup();
  const { client } = await open(gw);
  const api = new ServerApi(gw);
  // The device takes its messages but does not acknowledge them yet: each push waits up to waitMs.
  const batch = api.run('batch', {
    commands: [
      { op: 'push', args: { user: 'u1', text: '1', waitMs: 10_000 } },
      { op: 'push', args: { users: ['u1', 'nobody'], text: '2', waitMs: 10_000 } },
      { op: 'push', args: { user: 'u1', text: '3', waitMs: 10_000 } },
    ],
  }) as Promise<{ results: { status?: string; devices?: { status: string }[]; results?: unknown[] }[] }>;
  for (let i = 0; i < 10; i++) await flush();
  // No time has passed on the gateway's clock: before, only the first was sent until its wait ran out.
  const data = client.received.filter((f): f is DataFrame => f.type === FrameType.DATA);
  assert.deepEqual(data.map((f) => Buffer.from(f.payload).toString()), ['1', '2', '3'], 'all three sent, in order, with no ack yet');
  client.send({ type: FrameType.ACK, ack: data[2].seq! });
  const r = await batch;
  assert.deepEqual(r.results[0].devices!.map((d) => d.status), ['delivered']);
  assert.deepEqual(r.results[2].devices!.map((d) => d.status), ['delivered']);
  await gw.close();
});

test('server API batch: ordering still holds when the first push to a user is slow to queue', async () => {
  const log: string[] = [];
  const fake = {
    options: { maxFrameBytes: 65_536 },
    push: async (user: string, p: string, opts: { onQueued?: () => void }) => {
      log.push(`start ${p}/${user}`);
      await new Promise((r) => setTimeout(r, p === '1' ? 30 : 1));
      log.push(`queued ${p}/${user}`);
      opts.onQueued?.();
      await new Promise((r) => setTimeout(r, 50));
      log.push(`end ${p}/${user}`);
      return { id: 'x', devices: [], delivered: 0 };
    },
  };
  const api = new ServerApi(fake as never);
  await api.run('batch', { commands: [{ op: 'push', args: { user: 'a', text: '1' } }, { op: 'push', args: { users: ['a', 'b'], text: '2' } }, { op: 'push', args: { user: 'b', text: '3' } }] });
  assert.ok(log.indexOf('queued 1/a') < log.indexOf('start 2/a'), `second push to a started before the first was queued: ${log.join(', ')}`);
  assert.ok(log.indexOf('start 2/a') < log.indexOf('end 1/a'), `second push to a waited for the first's acks: ${log.join(', ')}`);
  assert.ok(log.indexOf('queued 2/b') < log.indexOf('start 3/b'), `third push to b started before the second was queued for b: ${log.join(', ')}`);
  assert.ok(log.indexOf('start 3/b') < log.indexOf('end 2/b'), `third push waited for the second's acks: ${log.join(', ')}`);
});

test('a device that acknowledges a push and then closes (before the store removed it) is reported delivered, not queued', async () => {
  const store = new SlowAckStore();
  const { gw } = setup({ store, delivery: { probeBeforePushMs: 0 } });
  const { client } = await open(gw);
  const delivered: string[] = [];
  gw.on('delivered', (e) => delivered.push(e.id));
  const p = gw.push('u1', 'hello', { id: 'p1', waitMs: 5000 });
  await flush();
  const data = client.received.find((f) => f.type === FrameType.DATA) as { seq: number } | undefined;
  assert.ok(data);
  client.send({ type: FrameType.ACK, ack: data.seq });
  client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
  const r = await p;
  await flush();
  assert.equal(r.devices[0].status, 'delivered');
  await gw.close();
});

test('server API: a base64 payload of a length base64 cannot have is refused; unpadded ones are taken', () => {
  for (const bad of ['A', 'AAAAA', 'AA=', 'AAAAA==']) assert.equal(PushBody.safeParse({ user: 'a', base64: bad }).success, false, bad);
  for (const good of ['', 'aGk', 'aGk=', 'aGVsbG8', 'aGVsbG8=', 'AAAAAA==']) assert.equal(PushBody.safeParse({ user: 'a', base64: good }).success, true, good);
});

test('upstream: the backend\'s reply to a fire-and-forget message (no seq) goes back to the device too', async () => {
  const sink: UpstreamSink = { name: 't', send: async () => ({ reply: 'pong' }) };
  const { gw } = setup({ upstream: { sink }, delivery: { probeBeforePushMs: 0 } });
  const { client } = await open(gw);
  client.send({ type: FrameType.DATA, payload: new Uint8Array([1]) });
  client.send({ type: FrameType.DATA, seq: 1, id: 'm1', payload: new Uint8Array([2]) });
  for (let i = 0; i < 5; i++) await flush();
  const replies = client.received.filter((f) => f.type === FrameType.DATA).map((f) => Buffer.from((f as { payload: Uint8Array }).payload).toString());
  assert.equal(replies.length, 2);
  await gw.close();
});

test('upstream: a reply the backend\'s answer could not carry (replyError, as a webhook answer over its bound) is a fault, not silence; the message is acknowledged', async () => {
  const sink: UpstreamSink = { name: 't', send: async () => ({ replyError: Object.assign(new Error('answer too large'), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' }) }) };
  const { clock, gw } = setup({ upstream: { sink } });
  const faults: { kind: string; op: string; deviceId?: string }[] = [];
  gw.on('fault', (f) => faults.push(f));
  const { client } = await open(gw);
  client.send({ type: FrameType.DATA, seq: 1, id: 'm1', payload: new Uint8Array([2]) });
  client.send({ type: FrameType.DATA, payload: new Uint8Array([3]) });
  for (let i = 0; i < 5; i++) { clock.advance(100); await flush(); }
  assert.deepEqual(faults.map((f) => [f.kind, f.op, f.deviceId]), [['upstream', 'upstream-reply', 'd1'], ['upstream', 'upstream-reply', 'd1']]);
  assert.ok(client.received.some((f) => 'ack' in f && (f as { ack?: number }).ack === 1), 'acknowledged');
  await gw.close();
});

test('server API: a store failure on a presence read (as on kick, disconnect and broadcast across nodes) is 503 store-unavailable, as on push, not a 500', async () => {
  const store = new FlakyStore();
  const { gw } = setup({ store });
  store.failFor.add('a');
  const api = new ServerApi(gw);
  await assert.rejects(api.run('presence', { users: ['a'] }), (e: Error & { status?: number; code?: string }) => e.status === 503 && e.code === 'LL_ERR_STORE_UNAVAILABLE');
  await gw.close();
});

test('upstream lifecycle events are numbered per node as made (seq), so a backend can order them whatever order they arrive in', async () => {
  const events: { type: string; seq?: number }[] = [];
  let failOnce = true;
  const sink: UpstreamSink = {
    name: 't',
    send: async () => {},
    sendEvent: async (e) => {
      // The first attempt at `online` fails: its retry lands after `offline`.
      if (e.type === 'online' && failOnce) {
        failOnce = false;
        throw new Error('backend blip');
      }
      events.push({ type: e.type, seq: e.seq });
    },
  };
  const { clock, gw } = setup({ upstream: { sink, events: ['online', 'offline'], retryMinMs: 100 } });
  const { client } = await open(gw);
  client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
  for (let i = 0; i < 20; i++) {
    clock.advance(50);
    await flush();
  }
  assert.deepEqual(events, [{ type: 'offline', seq: 2 }, { type: 'online', seq: 1 }], 'arrived out of order, numbered in order');
  await gw.close();
});

test('upstream lifecycle events dropped beyond maxPendingEvents are numbered all the same: the next event delivered shows the gap', async () => {
  const events: { type: string; deviceId: string; seq?: number }[] = [];
  const hanging: (() => void)[] = [];
  const sink: UpstreamSink = {
    name: 't',
    send: async () => {},
    sendEvent: (e) =>
      new Promise<void>((r) =>
        hanging.push(() => {
          events.push({ type: e.type, deviceId: e.deviceId, seq: e.seq });
          r();
        }),
      ),
  };
  const { gw } = setup({ upstream: { sink, events: ['online', 'offline'], maxPendingEvents: 1 } });
  // d1 online (on its way), d1 offline dropped: a backend keeping presence from these would keep d1 online for good.
  const { client } = await open(gw, { deviceId: 'd1' });
  client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
  await flush();
  assert.equal(gw.upstreamStats()!.eventsDropped, 1);
  for (const r of hanging.splice(0)) r();
  await flush();
  await open(gw, { deviceId: 'd2' });
  await flush();
  for (const r of hanging.splice(0)) r();
  await flush();
  assert.deepEqual(events, [
    { type: 'online', deviceId: 'd1', seq: 1 },
    { type: 'online', deviceId: 'd2', seq: 3 },
  ], 'seq 2 (the dropped offline) is missing: the backend can tell');
  await gw.close();
});

test('receivedAt is when the gateway read the message, not when its turn to go upstream came: a message behind one the backend held for 30 s says when it arrived', async () => {
  const seen: UpstreamMessage[] = [];
  const held: (() => void)[] = [];
  const sink: UpstreamSink = { name: 't', send: (m) => (seen.push(m), new Promise<void>((r) => held.push(r))) };
  // Past the runner's default deadline (30 s): a sink that takes this long is given this long.
  const { clock, gw: g } = setup({ upstream: { sink, attemptTimeoutMs: 60_000 } });
  const { client } = await open(g);
  const readAt = clock.now();
  client.send({ type: FrameType.DATA, seq: 1, id: 'a', payload: new Uint8Array([1]) });
  client.send({ type: FrameType.DATA, seq: 2, id: 'b', payload: new Uint8Array([2]) });
  await flush();
  assert.equal(seen.length, 1);
  // The backend holds the first for 30 s (heartbeats keep the link up meanwhile).
  for (let t = 0; t < 30; t++) {
    client.send({ type: FrameType.PING });
    clock.advance(1000);
    await flush();
  }
  held.shift()!();
  await flush();
  assert.equal(seen.length, 2);
  assert.deepEqual(seen.map((m) => m.receivedAt - readAt), [0, 0], 'both were read at the same time');
  await g.close();
});

test('upstream: a sink whose send never settles does not hold the device\'s messages for good: past the runner\'s deadline the attempt fails (LL_ERR_UPSTREAM_TIMEOUT) and is retried', async () => {
  // A sink of the user's own, without a deadline of its own: the first call for each payload hangs for ever.
  const seen = new Set<number>();
  let calls = 0;
  const sink: UpstreamSink = {
    name: 't',
    send: (m: UpstreamMessage) => {
      calls++;
      if (seen.has(m.payload[0])) return Promise.resolve();
      seen.add(m.payload[0]);
      return new Promise<void>(() => {});
    },
  };
  const { clock, gw } = setup({ upstream: { sink } });
  const faults: { op: string; error: unknown }[] = [];
  gw.on('fault', (f) => faults.push(f));
  const { client } = await open(gw);
  client.send({ type: FrameType.DATA, seq: 1, id: 'm1', payload: new Uint8Array([1]) });
  client.send({ type: FrameType.DATA, seq: 2, id: 'm2', payload: new Uint8Array([2]) });
  client.send({ type: FrameType.DATA, payload: new Uint8Array([3]) }); // fire-and-forget
  for (let i = 0; i < 70; i++) { clock.advance(1000); client.send({ type: FrameType.PING }); await flush(); } // 70 s, the link alive
  const acks = client.received.filter((f) => 'ack' in f && f.ack !== undefined).map((f) => (f as { ack: number }).ack);
  assert.equal(Math.max(0, ...acks), 2, 'both sequenced messages acknowledged once retried');
  assert.equal(gw.upstreamStats()!.pending, 0, 'nothing held as pending by the hung calls');
  assert.equal(calls, 5, 'each sequenced message tried twice, the fire-and-forget once');
  const codes = faults.map((f) => (f.error as { code?: string }).code);
  assert.deepEqual(codes, ['LL_ERR_UPSTREAM_TIMEOUT', 'LL_ERR_UPSTREAM_TIMEOUT', 'LL_ERR_UPSTREAM_TIMEOUT'], 'each hung attempt reported, with a stable code');
  await gw.close();
});

test('upstream: fire-and-forget and sequenced messages share one maxPending: sequenced ones are refused once fire-and-forget ones fill it (the bound was not doubled)', async () => {
  const held: (() => void)[] = [];
  const sink: UpstreamSink = { name: 't', send: () => new Promise<void>((r) => held.push(r)) };
  const { gw } = setup({ upstream: { sink, maxPending: 4 } });
  const { client } = await open(gw);
  for (let i = 0; i < 4; i++) client.send({ type: FrameType.DATA, payload: new Uint8Array([i]) }); // fire-and-forget, held by the backend
  await flush();
  assert.equal(gw.upstreamStats()!.pending, 4, 'the four fire-and-forget messages fill maxPending');
  const other = await open(gw, { deviceId: 'd2' });
  for (let seq = 1; seq <= 4; seq++) other.client.send({ type: FrameType.DATA, seq, id: `s${seq}`, payload: new Uint8Array([seq]) });
  await flush();
  assert.equal(gw.flowStats().inboundWaiting, 0, 'sequenced messages admitted beyond maxPending');
  assert.ok(other.client.received.some((f) => f.type === FrameType.GOAWAY), 'the sequenced messages\' link is refused');
  for (const r of held) r();
  await gw.close();
});

test('upstream: a backend\'s reply whose push fails while the store is down (after the device\'s message was acknowledged) is pushed again once the store answers, not lost', async () => {
  class DownStore extends MemoryStore {
    down = false;
    constructor(readonly readsToo: boolean) {
      super();
    }
    override async enqueue(...args: Parameters<MemoryStore['enqueue']>) {
      if (this.down) throw new Error('ECONNREFUSED');
      return super.enqueue(...args);
    }
    override async knownDevices(userId: string, now: number): Promise<string[]> {
      if (this.down && this.readsToo) throw new Error('ECONNREFUSED');
      return super.knownDevices(userId, now);
    }
  }
  // The push's first read fails (it throws), or only its mailbox write (it resolves `failed`).
  for (const readsToo of [true, false]) {
    const store = new DownStore(readsToo);
    const sink: UpstreamSink = { name: 't', send: async () => ({ reply: 'pong' }) };
    const { clock, gw } = setup({ store, upstream: { sink }, delivery: { probeBeforePushMs: 0 } });
    const faults: string[] = [];
    gw.on('fault', (f) => faults.push(f.op));
    const { client } = await open(gw);
    store.down = true;
    client.send({ type: FrameType.DATA, seq: 1, id: 'm1', payload: new Uint8Array([1]) });
    for (let i = 0; i < 3; i++) await flush();
    assert.ok(faults.includes(readsToo ? 'upstream-reply' : 'enqueue'), 'the failed reply push is reported');
    store.down = false; // the store is back a few seconds later
    for (let i = 0; i < 5; i++) { clock.advance(1000); client.send({ type: FrameType.PING }); await flush(); }
    assert.ok(client.received.some((f) => 'ack' in f && (f as { ack?: number }).ack === 1), 'the message is acknowledged');
    const replies = client.received.filter((f) => f.type === FrameType.DATA).map((f) => Buffer.from((f as { payload: Uint8Array }).payload).toString());
    assert.deepEqual(replies, ['pong'], `the reply reaches the device once the store is back (reads failing too: ${readsToo})`);
    await gw.close();
  }
});
