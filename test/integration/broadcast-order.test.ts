import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FanOut, FANOUT_CHUNK, FANOUT_MAX_QUEUED } from '../../src/gateway/fan-out.js';
import { Gateway, type FaultEvent } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { ClusterControl } from '../../src/gateway/stores/store.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';

// Broadcasts are written FANOUT_CHUNK connections a turn (broadcast-fanout.test.ts). What is written to a
// device after a broadcast must still reach it after the broadcast, a write that throws in a later turn
// must not end the process, and broadcasts from other nodes must not pile up without bound.

const DEVICES = FANOUT_CHUNK + 500;
const LIMITS = { handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0, maxConnectionsPerSource: 0 };

async function fleet(gw: Gateway, n: number): Promise<{ clients: MemoryLink[]; servers: MemoryLink[] }> {
  const clients: MemoryLink[] = [];
  const servers: MemoryLink[] = [];
  for (let i = 0; i < n; i++) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    clients.push(client);
    servers.push(server);
  }
  for (let i = 0; i < 1000 && gw.onlineDevices < n; i++) await flush();
  return { clients, servers };
}

const texts = (c: MemoryLink) => c.received.filter((f) => f.type === FrameType.DATA).map((f) => Buffer.from((f as { payload: Uint8Array }).payload).toString());

const pending = (gw: Gateway) => (gw as unknown as { fanOut: { pending: number } }).fanOut.pending;

/** Turns until every queued broadcast is written. */
async function settle(gw: Gateway): Promise<void> {
  for (let i = 0; i < 1000 && pending(gw) > 0; i++) await new Promise((r) => setImmediate(r));
}

test('what is written to a device after a broadcast reaches it after the broadcast, past the first chunk too', async () => {
  const gw = new Gateway({ tcp: false, ws: false, limits: LIMITS });
  await gw.listen();
  try {
    const { clients } = await fleet(gw, DEVICES);
    const last = DEVICES - 1;
    assert.equal(gw.broadcast('one'), DEVICES);
    assert.equal(gw.broadcast('two'), DEVICES);
    // Devices past the first chunk: a push, a send and a kick, made after the broadcasts.
    const pushed = gw.push(`u${last - 2}`, 'pushed', { waitMs: 0 });
    assert.equal(gw.send(`u${last}`, 'after'), 1);
    assert.equal(gw.kick(`u${last - 1}`), 1);
    assert.deepEqual(texts(clients[last]), ['one', 'two', 'after'], 'a send after two broadcasts reaches the device after them');
    assert.deepEqual(texts(clients[last - 1]), ['one', 'two'], 'a kicked device got the broadcasts made before the kick');
    assert.equal(clients[last - 1].received.at(-1)?.type, FrameType.CLOSE, 'and then its CLOSE');
    await pushed;
    assert.deepEqual(texts(clients[last - 2]), ['one', 'two', 'pushed'], 'a push after two broadcasts reaches the device after them');
    await settle(gw);
    // Written once each, in order, everywhere (the ones written early are not written again).
    for (let i = 0; i < DEVICES; i++) {
      if (i >= last - 2) continue;
      assert.deepEqual(texts(clients[i]), ['one', 'two'], `device ${i}`);
    }
    assert.deepEqual(texts(clients[last]), ['one', 'two', 'after']);
  } finally {
    await gw.close();
  }
});
test('a write that throws in a later chunk is a fault, and the broadcast goes on', async () => {
  const gw = new Gateway({ tcp: false, ws: false, limits: LIMITS });
  await gw.listen();
  const faults: FaultEvent[] = [];
  gw.on('fault', (f) => faults.push(f));
  try {
    const { clients, servers } = await fleet(gw, DEVICES);
    // One past the first chunk, one in it (written before broadcast() returns).
    const bad = DEVICES - 10;
    const boom = new Error('write failed');
    servers[bad].send = () => {
      throw boom;
    };
    servers[1].send = () => {
      throw boom;
    };
    assert.equal(gw.broadcast('one'), DEVICES);
    const written = gw.broadcastAcrossCluster('two');
    await settle(gw);
    assert.deepEqual(await written, { here: DEVICES - 2, published: false });
    assert.equal(faults.length, 4, 'each failed write reported');
    assert.ok(faults.every((f) => f.kind === 'broadcast' && f.op === 'write' && f.error === boom));
    assert.equal(faults.filter((f) => f.userId === `u${bad}`).length, 2);
    for (let i = 0; i < DEVICES; i++) if (i !== bad && i !== 1) assert.deepEqual(texts(clients[i]), ['one', 'two'], `device ${i}`);
    // Their CLOSE is written through send() too.
    delete (servers[bad] as Partial<MemoryLink>).send;
    delete (servers[1] as Partial<MemoryLink>).send;
  } finally {
    await gw.close();
  }
});

test('broadcasts from other nodes beyond what the queue holds are dropped as a fault, not queued', async () => {
  let control: ((c: ClusterControl) => void) | undefined;
  const store = new MemoryStore();
  Object.assign(store, {
    joinCluster: async (_n: string, _r: unknown, _s: unknown, onControl: (c: ClusterControl) => void) => {
      control = onControl;
    },
  });
  const gw = new Gateway({ tcp: false, ws: false, limits: LIMITS, store });
  await gw.listen();
  const faults: FaultEvent[] = [];
  gw.on('fault', (f) => faults.push(f));
  try {
    const { clients } = await fleet(gw, DEVICES);
    assert.ok(control);
    const N = FANOUT_MAX_QUEUED + 36;
    for (let i = 0; i < N; i++) control!({ kind: 'broadcast', payload: Buffer.from(`b${i}`) });
    assert.ok(pending(gw) <= FANOUT_MAX_QUEUED, `${pending(gw)} broadcasts queued`);
    const dropped = faults.filter((f) => f.kind === 'broadcast' && f.op === 'queue-full');
    assert.ok(dropped.length >= N - FANOUT_MAX_QUEUED, `${dropped.length} dropped`);
    assert.ok(dropped.every((f) => (f.error as { code?: string }).code === 'LL_ERR_QUEUE_FULL'));
    // A broadcast here is refused the same way while it is full, with nothing written.
    assert.throws(() => gw.broadcast('local'), { code: 'LL_ERR_QUEUE_FULL' });
    await settle(gw);
    const got = texts(clients[DEVICES - 1]);
    assert.equal(got.length, N - dropped.length);
    // Room again once written.
    assert.equal(gw.broadcast('local'), DEVICES);
  } finally {
    await gw.close();
  }
});

test('the fan-out queue is bounded in bytes too: payloads and the lists of connections', async () => {
  const targets = () => Array.from({ length: 10 }, () => ({ fanOutQueued: 0, fanOutWritten: 0 }));
  const q = new FanOut<{ fanOutQueued: number; fanOutWritten: number }>(() => {}, 1, 100, 300);
  // 10 targets (80 bytes) and 20 of payload: 100 bytes each.
  const first = q.add(targets(), 20, () => true);
  void q.add(targets(), 20, () => true);
  void q.add(targets(), 20, () => true);
  assert.throws(() => q.add(targets(), 20, () => true), { code: 'LL_ERR_QUEUE_FULL' });
  assert.equal(q.pending, 3);
  assert.equal(await first, 10);
  // Room again once one is written; a lone broadcast over the bound is still taken.
  void q.add(targets(), 20, () => true);
  assert.equal(q.pending, 3);
  const big = new FanOut<{ fanOutQueued: number; fanOutWritten: number }>(() => {}, 1, 100, 50);
  assert.equal(await big.add(targets(), 1000, () => true), 10);
});
