import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type OfflineEvent } from '../../src/gateway/gateway.js';
import { FrameType, PROTOCOL_VERSION, type WelcomeFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair } from '../helpers/memory-link.js';

// A gateway's own pauses must not convict a live client: what the stall guard excuses, and the
// probe a stall held back. Each case failed before its fix.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };

/** The gateway's process does not run for `ms` (a GC pause, a blocked loop): time moves, nothing fires. */
const stall = (clock: ManualClock, ms: number) => clock.jump(ms);
const immediate = () => new Promise<void>((r) => setImmediate(r));

function setup() {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, stallGuard: { enabled: true } });
  const offline: OfflineEvent[] = [];
  gw.on('offline', (e) => offline.push(e));
  return { clock, gw, offline };
}

async function open(gw: Gateway) {
  const [server, client] = memoryLinkPair();
  server.remoteAddress = '10.0.0.1';
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
  await flush();
  assert.ok(client.received.find((f): f is WelcomeFrame => f.type === FrameType.WELCOME));
  return { client, server };
}

test('two stalls in a row (the second while reading what piled up, before the deferred expiry) are both excused: a heartbeat that arrived before the deadline is read, not convicted', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  const t0 = clock.now();
  clock.advance(1000);
  client.send({ type: FrameType.PING });
  clock.advance(1000);
  client.send({ type: FrameType.PING }); // last heard t0+2000, deadline t0+4500
  // The PING of t0+3000 is lost; the client is alive and its PING of t0+4000 arrives at t0+4400.
  clock.advance(1900); // t0+3900
  stall(clock, 400); // first stall: t0+3900 .. t0+4300
  clock.advance(0); // the runner's timer runs late: stall recorded, expiry deferred until sockets are read
  assert.equal(offline.length, 0);
  // Sockets are read (nothing there yet). The catch-up itself blocks the loop 700 ms more;
  // meanwhile, at t0+4400, the client's PING lands in the kernel.
  stall(clock, 700); // t0+5000
  await immediate(); // the deferred expiry
  const closedAtDeferred = offline.length;
  client.send({ type: FrameType.PING }); // the poll after that reads the PING that came at t0+4400
  await immediate();
  assert.equal(closedAtDeferred, 0, `closed for silence at t0+${clock.now() - t0}, though its PING arrived at t0+4400, before the deadline t0+4500; stalls excused: ${JSON.stringify(gw.eventLoopStats())}`);
  await gw.close();
});

test('control: one stall of the same total length is excused', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  clock.advance(1000);
  client.send({ type: FrameType.PING });
  clock.advance(1000);
  client.send({ type: FrameType.PING });
  clock.advance(1900);
  stall(clock, 1100);
  clock.advance(0);
  client.send({ type: FrameType.PING }); // read in the poll before the deferred expiry
  await immediate();
  await immediate();
  assert.equal(offline.length, 0);
  await gw.close();
});

test('a stall over both the suspicion point and the deadline: the probe is still sent, and a live client that answers it is kept', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  const t0 = clock.now(); // last heard: suspect at t0+1500 (probe), dead at t0+2500
  // The client's heartbeats are lost on the way (a path hiccup); it answers a probe, as the docs count on.
  clock.advance(1400);
  const pingsBefore = client.received.filter((f) => f.type === FrameType.PING).length;
  stall(clock, 1200); // t0+1400 .. t0+2600
  clock.advance(0);
  await immediate(); // the deferred expiry, after the sockets were read
  const probes = client.received.filter((f) => f.type === FrameType.PING).length - pingsBefore;
  assert.equal(probes, 1, 'the probe the stall held back is sent');
  client.send({ type: FrameType.PONG });
  clock.advance(1500); // past t0+2500 + the 1200 ms excused
  await immediate();
  assert.equal(offline.length, 0, `probes sent after the stall: ${probes}; closed at t0+${clock.now() - t0} (${offline[0]?.reason})`);
  await gw.close();
});

test('control: without the stall the probe goes out at the suspicion point and the answer keeps the client', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  clock.advance(1500);
  assert.equal(client.received.filter((f) => f.type === FrameType.PING).length, 1);
  client.send({ type: FrameType.PONG });
  clock.advance(2000);
  assert.equal(offline.length, 0);
  await gw.close();
});

test('a stall just under the threshold that a deadline passes during: the heartbeat that arrived before the deadline is read first, not convicted', async () => {
  const { clock, gw, offline } = setup();
  const { client } = await open(gw);
  const t0 = clock.now();
  clock.advance(1000);
  client.send({ type: FrameType.PING });
  clock.advance(1000);
  client.send({ type: FrameType.PING }); // last heard t0+2000, deadline t0+4500
  // The PING of t0+3000 is lost; the one of t0+4000 lands at t0+4400, while the gateway is blocked
  // t0+4350 .. t0+4540: 190 ms, under the 200 ms threshold, so nothing is recorded or excused.
  clock.advance(2350);
  stall(clock, 190);
  clock.advance(0); // the runner's timer runs 190 ms late, before the poll that reads the PING
  const closedBeforeRead = offline.length;
  client.send({ type: FrameType.PING }); // the poll reads the PING that came at t0+4400
  await immediate();
  await immediate();
  assert.equal(closedBeforeRead + offline.length, 0, `closed for silence at t0+${clock.now() - t0} (${offline[0]?.reason}), though its PING arrived at t0+4400, before the deadline t0+4500`);
  clock.advance(1000);
  client.send({ type: FrameType.PING });
  clock.advance(1000);
  assert.equal(offline.length, 0);
  await gw.close();
});

test('server-sent heartbeats: two stalls in a row over the last probe\'s wait do not convict a client whose answer arrived in time', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: { pongTimeoutMs: 1000, probeCount: 1, probeIntervalMs: 1000 }, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, stallGuard: { enabled: true } });
  const offline: OfflineEvent[] = [];
  gw.on('offline', (e) => offline.push(e));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1', direction: 'server' });
  await flush();
  const t0 = clock.now();
  const pings = () => client.received.filter((f) => f.type === FrameType.PING).length;
  // A background tab: its answer to the PING of t0+1000 is lost; it answers the probe of t0+2000
  // slowly, at t0+2900, before the probe's wait ends at t0+3000.
  clock.advance(2500);
  assert.equal(pings(), 2, 'the PING and the probe went out');
  stall(clock, 300); // first stall: t0+2500 .. t0+2800
  clock.advance(0); // recorded, expiry deferred until the sockets are read (nothing there yet)
  stall(clock, 500); // reading what piled up blocks until t0+3300; the answer lands at t0+2900
  await immediate(); // the deferred expiry
  const closedAtDeferred = offline.length;
  client.send({ type: FrameType.PONG }); // read by the poll after it
  await immediate();
  assert.equal(closedAtDeferred + offline.length, 0, `closed at t0+${clock.now() - t0} (${offline[0]?.reason}), though the answer to the probe arrived at t0+2900, before its wait ended at t0+3000; ${JSON.stringify(gw.eventLoopStats())}`);
  // Heartbeats go on: each PING answered.
  for (let i = 0; i < 6; i++) {
    clock.advance(500);
    client.send({ type: FrameType.PONG });
  }
  assert.equal(offline.length, 0);
  await gw.close();
});

test('probe before push: two stalls in a row over the probe\'s wait do not close a client whose answer arrived in time', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: { pongTimeoutMs: 1000 }, delivery: { probeBeforePushMs: 500 }, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, stallGuard: { enabled: true } });
  const offline: OfflineEvent[] = [];
  gw.on('offline', (e) => offline.push(e));
  const { client } = await open(gw);
  const t0 = clock.now();
  clock.advance(600);
  void gw.push('u1', 'hello', { id: 'm1' });
  await flush();
  assert.equal(client.received.filter((f) => f.type === FrameType.PING).length, 1, 'the probe went out; its wait ends at t0+1600');
  // The client answers at t0+1500, while the gateway is stalled: t0+1000 .. t0+1300, recorded and
  // the expiry deferred; then reading what piled up blocks until t0+1800.
  clock.advance(400);
  stall(clock, 300);
  clock.advance(0);
  stall(clock, 500);
  await immediate(); // the deferred expiry
  const closedAtDeferred = offline.length;
  client.send({ type: FrameType.PONG }); // read by the poll after it
  await flush();
  assert.equal(closedAtDeferred + offline.length, 0, `closed at t0+${clock.now() - t0} (${offline[0]?.reason}), though the answer to the probe arrived at t0+1500, before its wait ended at t0+1600`);
  assert.ok(client.received.some((f) => f.type === FrameType.DATA), 'the message went out after the answer');
  await gw.close();
});

test('control: a client that never answers the probe is still closed, at most one wait later', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, probes: { pongTimeoutMs: 1000 }, delivery: { probeBeforePushMs: 500 }, wheelTickMs: 1, clock, timers: clock, handshakeTimeoutMs: 3000, stallGuard: { enabled: true } });
  const offline: { reason: string; at: number }[] = [];
  gw.on('offline', (e) => offline.push({ reason: e.reason, at: clock.now() }));
  await open(gw);
  const t0 = clock.now();
  clock.advance(600);
  void gw.push('u1', 'hello', { id: 'm1' });
  await flush();
  clock.advance(400);
  stall(clock, 300);
  clock.advance(0);
  stall(clock, 500);
  await immediate();
  clock.advance(1000);
  assert.deepEqual(offline.map((e) => e.reason), ['heartbeat-timeout']);
  // The wait, plus the 800 ms of it stalled (the runner's timer, armed 1 ms ahead, saw 799).
  const at = offline[0].at - t0;
  assert.ok(at >= 2390 && at <= 2400, `closed at t0+${at}`);
  await gw.close();
});
