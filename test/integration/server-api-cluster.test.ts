import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { AdminServer } from '../../src/admin/admin-server.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { FrameType } from '../../src/protocol/frames.js';
import { sleep, spawnServe } from '../helpers/procs.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';

// The server API on any node reaches every device: three nodes on one Redis, a user's two
// devices on nodes B and C, pushes through node A's API; each device gets each message once;
// broadcast, disconnect and kick through A reach them too.

const noRedis = redisUnavailable();

test('pushes through one node reach every device of the user on the other nodes, each exactly once; broadcast, disconnect and kick too', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const redis = await startRedis();
  const nodes = await Promise.all(['a', 'b', 'c'].map((n) => spawnServe(['--redis', redis.url, '--node-id', `node-${n}`, '--app', 'none', '--api-key', 'k'])));
  const api = String(nodes[0].lines.find((l) => l.event === 'listening')!.serverApi);
  const devices = [new LonglinkClient({ url: nodes[1].tcp, userId: 'u', deviceId: 'd1' }), new LonglinkClient({ url: nodes[2].tcp, userId: 'u', deviceId: 'd2' })];
  const got: string[][] = [[], []];
  devices.forEach((c, i) => c.on('message', (m) => got[i].push(m.id ?? '')));
  try {
    await Promise.all(devices.map((c) => c.connect()));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${api}push`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body: JSON.stringify({ user: 'u', text: `n${i}`, id: `push-${i}`, waitMs: 2000 }) });
      const body = (await res.json()) as { status: string; devices: { deviceId: string; status: string }[] };
      assert.equal(body.status, 'ok');
      assert.deepEqual(body.devices.map((d) => d.deviceId).sort(), ['d1', 'd2']);
      ids.push(`push-${i}`);
    }
    for (let i = 0; i < 100 && got.some((g) => g.length < ids.length); i++) await new Promise((r) => setTimeout(r, 50));
    for (const g of got) assert.deepEqual(g, ids, 'every message once, in order');

    // Broadcast, disconnect and kick through node A reach the devices on B and C.
    const call = async (op: string, body: unknown) => {
      const res = await fetch(`${api}${op}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body: JSON.stringify(body) });
      assert.equal(res.status, 200, `${op}: ${res.status}`);
      return (await res.json()) as Record<string, unknown>;
    };
    const closes: { code: number; willReconnect: boolean }[][] = [[], []];
    devices.forEach((c, i) => c.on('close', (e) => closes[i].push({ code: e.code, willReconnect: e.willReconnect })));
    assert.deepEqual(await call('broadcast', { text: 'all', id: 'bc-1' }), { sent: 0, published: true }, 'node A holds no device; B and C are told');
    for (let i = 0; i < 100 && got.some((g) => !g.includes('bc-1')); i++) await new Promise((r) => setTimeout(r, 50));
    for (const g of got) assert.ok(g.includes('bc-1'), 'the broadcast reached the devices on the other nodes');
    assert.deepEqual(await call('disconnect', { user: 'u', device: 'd1', reconnectAfterMs: 100 }), { disconnected: 1 });
    for (let i = 0; i < 100 && closes[0].length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(closes[0][0]?.willReconnect, true, 'd1 (on B) was told to go away and come back');
    assert.deepEqual(closes[1], [], 'd2 untouched');
    await new Promise<void>((r) => (devices[0].state === 'open' ? r() : devices[0].once('open', () => r())));
    assert.deepEqual(await call('kick', { user: 'u' }), { kicked: 2 });
    for (let i = 0; i < 100 && closes.some((c) => !c.some((e) => e.code === 4507)); i++) await new Promise((r) => setTimeout(r, 50));
    for (const c of closes) assert.ok(c.some((e) => e.code === 4507 && !e.willReconnect), 'kicked on its own node, not reconnecting');
  } finally {
    for (const c of devices) c.close();
    await Promise.all(nodes.map((n) => n.kill()));
    await redis.stop();
  }
});

// In-process nodes on one Redis: a push through node A to a device whose link is on node B.

async function apiNode(redisUrl: string, prefix: string, nodeId: string) {
  const store = new RedisStore({ url: redisUrl, prefix, leaseTtlMs: 600, leaseRenewMs: 150 });
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, nodeId, store, wheelTickMs: 10, delivery: { probeBeforePushMs: 0 } });
  const tcp = (await gw.listen()).tcp!.port;
  const admin = new AdminServer(gw, { port: 0, apiKey: 'k' });
  const port = (await admin.listen()).port;
  const call = async (op: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/${op}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { delivered: number; devices: { deviceId: string; status: string }[] } };
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await admin.close();
    await gw.close();
    await store.close();
  };
  return { gw, tcp, url: `tcp://127.0.0.1:${tcp}`, call, stop };
}

test('a push through node A to a device on node B waits up to its waitMs like one to a device on A: delivered once B reports the acknowledgement, queued at waitMs if none, queued at once with waitMs 0', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const redis = await startRedis();
  const A = await apiNode(redis.url, 'w:', 'A');
  const B = await apiNode(redis.url, 'w:', 'B');
  const dev = new LonglinkClient({ url: B.url, userId: 'u', deviceId: 'd' });
  const got: string[] = [];
  dev.on('message', (m) => got.push(m.id ?? ''));
  const deliveredOnB: string[] = [];
  B.gw.on('delivered', (e) => deliveredOnB.push(e.id));
  // A device on B that takes every message and never acknowledges one.
  const mute = new RawPeer(B.tcp);
  try {
    await dev.connect();
    await mute.connected;
    mute.hello('m', 'd');
    await mute.welcome();
    for (let i = 0; i < 100 && !(await A.gw.presence('u')).some((e) => e.nodeId === 'B'); i++) await sleep(20);
    for (let i = 0; i < 100 && !(await A.gw.presence('m')).some((e) => e.nodeId === 'B'); i++) await sleep(20);

    let t = Date.now();
    const r = await A.call('push', { user: 'u', text: 'hi', id: 'p1', waitMs: 5000 });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.devices, [{ deviceId: 'd', status: 'delivered' }], 'B reported the acknowledgement to A, which waited for it');
    assert.equal(r.body.delivered, 1);
    assert.ok(Date.now() - t < 2500, `answered once acknowledged, not at waitMs (${Date.now() - t} ms)`);
    assert.deepEqual(got, ['p1']);
    assert.deepEqual(deliveredOnB, ['p1'], 'B, which holds the link, emits delivered');

    t = Date.now();
    const never = await A.call('push', { user: 'm', text: 'hi', id: 'p2', waitMs: 800 });
    const waited = Date.now() - t;
    assert.deepEqual(never.body.devices, [{ deviceId: 'd', status: 'queued' }], 'no acknowledgement within waitMs: queued');
    assert.ok(waited >= 700 && waited < 3000, `answered at waitMs (${waited} ms)`);
    await mute.next((f) => f.type === FrameType.DATA && f.id === 'p2');

    t = Date.now();
    const now = await A.call('push', { user: 'u', text: 'hi', id: 'p3', waitMs: 0 });
    assert.deepEqual(now.body.devices, [{ deviceId: 'd', status: 'queued' }], 'waitMs 0: queued at once');
    assert.ok(Date.now() - t < 500, `answered at once (${Date.now() - t} ms)`);
    for (let i = 0; i < 100 && !got.includes('p3'); i++) await sleep(20);
    assert.deepEqual(got, ['p1', 'p3']);
  } finally {
    mute.destroy();
    dev.close();
    await A.stop();
    await B.stop();
    await redis.stop();
  }
});

test('a push retried with the same id through another node, while the device holds the first copy unacknowledged, is answered delivered there once the device acknowledges', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const redis = await startRedis();
  const A = await apiNode(redis.url, 'r:', 'A');
  const B = await apiNode(redis.url, 'r:', 'B');
  // The device, on B, takes the message and acknowledges only when told.
  const dev = new RawPeer(B.tcp);
  try {
    await dev.connected;
    dev.hello('u', 'd');
    await dev.welcome();
    for (let i = 0; i < 100 && !(await A.gw.presence('u')).some((e) => e.nodeId === 'B'); i++) await sleep(20);

    // The backend's first try, through B: no acknowledgement within its waitMs.
    const first = await B.call('push', { user: 'u', text: 'hi', id: 'r1', waitMs: 300 });
    assert.deepEqual(first.body.devices, [{ deviceId: 'd', status: 'queued' }]);
    const data = (await dev.next((f) => f.type === FrameType.DATA && f.id === 'r1')) as { seq: number };

    // Its retry, through A (the mailbox holds the first copy, so nothing new is queued).
    const t = Date.now();
    const retry = A.call('push', { user: 'u', text: 'hi', id: 'r1', waitMs: 3000 });
    await sleep(300);
    dev.send({ type: FrameType.ACK, ack: data.seq });
    const r = await retry;
    assert.deepEqual(r.body.devices, [{ deviceId: 'd', status: 'delivered' }], 'B reported the acknowledgement to A, which the retry waits on');
    assert.ok(Date.now() - t < 2500, `answered once acknowledged, not at waitMs (${Date.now() - t} ms)`);
    assert.equal(dev.frames.filter((f) => f.type === FrameType.DATA && f.id === 'r1').length, 1, 'the device got it once');
  } finally {
    dev.destroy();
    await A.stop();
    await B.stop();
    await redis.stop();
  }
});
