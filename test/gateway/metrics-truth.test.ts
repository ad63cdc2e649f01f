import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { GatewayMetrics } from '../../src/admin/metrics.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway, type OfflineEvent } from '../../src/gateway/gateway.js';
import { FrameType, PROTOCOL_VERSION, type HelloFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair } from '../helpers/memory-link.js';

// What the metrics say against what happened, on a fake clock with memory links.

/** The histogram's finite buckets and their counts (`le` in seconds). */
function buckets(text: string, name: string, match = ''): [number, number][] {
  const out: [number, number][] = [];
  for (const line of text.split('\n')) {
    const m = line.match(new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\d+)$`));
    if (!m || !m[1].includes(match)) continue;
    const le = m[1].match(/le="([^"]+)"/)![1];
    if (le !== '+Inf') out.push([Number(le), Number(m[2])]);
  }
  return out;
}

test('longlink_detection_seconds has buckets up to the longest detection the policy allows (a client announcing maxIntervalMs)', async () => {
  const clock = new ManualClock(1_000_000);
  // The default policy: a client may announce up to 600 s, detected after 600 × 2 + 5 = 1205 s of silence.
  const gw = new Gateway({ tcp: false, ws: false, wheelTickMs: 1000, clock, timers: clock, wallClock: clock });
  const metrics = new GatewayMetrics(gw, { processMetrics: false });
  const offline: OfflineEvent[] = [];
  gw.on('offline', (e) => offline.push(e));
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  const hello: HelloFrame = { type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1', intervalMs: 600_000 };
  client.send(hello);
  await flush();
  for (let i = 0; i < 1300 && offline.length === 0; i++) clock.advance(1000);
  assert.equal(offline[0]?.reason, 'heartbeat-timeout');
  const silentS = offline[0].silentForMs / 1000;
  assert.ok(silentS >= 1205, `detected after ${silentS} s`);
  const b = buckets(await metrics.registry.metrics(), 'longlink_detection_seconds', 'reason="heartbeat-timeout"');
  const top = b[b.length - 1];
  assert.ok(top[0] >= silentS, `the top finite bucket (le=${top[0]}) holds a detection of ${silentS} s; histogram_quantile cannot show more than it`);
  assert.equal(top[1], 1);
  metrics.close();
  await gw.close();
});

test("an `offline` listener asking presence no longer finds the device that went offline (a user's last device: the user is offline)", async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const seen: string[][] = [];
  const count: number[] = [];
  gw.on('offline', (e) => {
    count.push(gw.deviceCount(e.userId));
    void gw.presence(e.userId).then((p) => seen.push(p.map((x) => x.deviceId)));
  });
  const links = [];
  for (const deviceId of ['phone', 'laptop']) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'alice', deviceId });
    links.push(client);
  }
  await flush();
  assert.deepEqual((await gw.presence('alice')).map((x) => x.deviceId).sort(), ['laptop', 'phone']);
  links[0].send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' });
  await flush();
  links[1].destroy();
  await flush();
  assert.deepEqual(count, [1, 0], 'devices connected here, as each offline is emitted');
  assert.deepEqual(seen, [['laptop'], []], 'presence as each offline listener asked it');
  await gw.close();
});

test('longlink_push_delivery_seconds has buckets up to the message TTL: a message queued overnight for an offline device is not lumped in +Inf', async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, wheelTickMs: 1000, clock, timers: clock, wallClock: clock, delivery: { probeBeforePushMs: 0 } });
  const metrics = new GatewayMetrics(gw, { processMetrics: false });
  const ages: number[] = [];
  gw.on('delivered', (e) => ages.push(e.ageMs));
  const connect = async () => {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' });
    await flush();
    return client;
  };
  (await connect()).send({ type: FrameType.CLOSE, code: 1000, reason: 'night' });
  await flush();
  const r = await gw.push('u1', 'good morning', { id: 'm1' });
  assert.equal(r.devices[0].status, 'queued');
  // Eight hours offline (the default TTL is 24 h), then back.
  for (let i = 0; i < 8 * 60; i++) clock.advance(60_000);
  const c = await connect();
  assert.ok(c.received.some((f) => f.type === FrameType.DATA));
  c.send({ type: FrameType.ACK, ack: 1 });
  await flush();
  assert.equal(ages.length, 1);
  const ageS = ages[0] / 1000;
  const b = buckets(await metrics.registry.metrics(), 'longlink_push_delivery_seconds');
  const top = b[b.length - 1];
  assert.ok(top[0] >= ageS, `the top finite bucket (le=${top[0]}) holds a delivery ${ageS} s after the push`);
  assert.ok(top[0] * 1000 >= gw.options.delivery.messageTtlMs, 'the buckets reach the message TTL');
  metrics.close();
  await gw.close();
});

test('longlink_connections{transport="handshake"} counts the sockets held in their WebSocket upgrade, as maxPendingHandshakes does (loopback)', async () => {
  const gw = new Gateway({ tcp: false, ws: { port: 0, host: '127.0.0.1' }, handshakeTimeoutMs: 10_000, limits: { maxPendingHandshakes: 5 } });
  const metrics = new GatewayMetrics(gw, { processMetrics: false });
  const port = (await gw.listen()).ws!.port;
  const refused: string[] = [];
  gw.on('refused', (e) => refused.push(e.message));
  const held: net.Socket[] = [];
  try {
    // Five peers that connected and never finish their upgrade: the gateway holds them, up to the bound.
    for (let i = 0; i < 5; i++) held.push(await new Promise<net.Socket>((r) => { const s = net.connect(port, '127.0.0.1', () => r(s)); }));
    const sixth = net.connect(port, '127.0.0.1');
    held.push(sixth);
    for (let i = 0; i < 200 && refused.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(refused, ['5 handshakes are already in progress']);
    const text = await metrics.registry.metrics();
    assert.match(text, /^longlink_connections\{transport="handshake"\} 5$/m, 'the gauge shows the five handshakes the refusal counted');
  } finally {
    for (const s of held) s.destroy();
    metrics.close();
    await gw.close();
  }
});
