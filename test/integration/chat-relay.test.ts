import assert from 'node:assert/strict';
import { test } from 'node:test';
import { relayChat } from '../../src/cli/chat-relay.js';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import type { Store } from '../../src/gateway/stores/store.js';
import { FrameType } from '../../src/protocol/frames.js';
import { sleep } from '../helpers/procs.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';

// The built-in relay acknowledges a message to its sender before it relays it: whatever it then
// fails to relay must not be lost without a word. Its pushes wait for no acknowledgement (a
// recipient that never reads would hold the sender's budget, 64 in progress, for pushWaitMs); what
// goes over the budget anyway (a burst within one read) is told to its sender.

const noRedis = redisUnavailable();
const N = 100;

async function node(nodeId: string, store?: Store) {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, nodeId, ...(store ? { store } : {}), limits: { maxDataPerSecond: 10_000, dataBurst: 1_000 }, delivery: { probeBeforePushMs: 0 } });
  const port = (await gw.listen()).tcp!.port;
  return { gw, port };
}

/** Alice (on `from`) sends N "@m" messages; m (a raw peer on `to`) takes them and never acknowledges one. */
async function relayToMute(from: { gw: Gateway; port: number }, to: { gw: Gateway; port: number }) {
  const drops: string[] = [];
  const errors: unknown[] = [];
  relayChat(from.gw, (e) => errors.push(e), undefined, (user, why) => drops.push(`${user} ${why}`));
  const mute = new RawPeer(to.port);
  const alice = new LonglinkClient({ url: `tcp://127.0.0.1:${from.port}`, userId: 'alice', deviceId: 'phone' });
  try {
    await mute.connected;
    mute.hello('m', 'd');
    await mute.welcome();
    const toAlice: string[] = [];
    alice.on('message', (msg) => toAlice.push(Buffer.from(msg.payload).toString('utf8')));
    await alice.connect();
    for (let i = 0; i < 100 && !(await from.gw.presence('m')).length; i++) await sleep(20);
    for (let i = 0; i < N; i++) alice.send(`@m n${i}`);
    const got = () => mute.frames.filter((f) => f.type === FrameType.DATA).length;
    const told = () => toAlice.reduce((n, t) => n + Number(/^\(not relayed: (\d+) message/.exec(t)?.[1] ?? 0), 0);
    for (let i = 0; i < 250 && got() + told() < N; i++) await sleep(20);
    assert.equal(got() + told(), N, `every message relayed to m (which never acknowledges), or its sender told: ${got()} relayed, ${told()} told (${drops.length} over the budget)`);
    assert.equal(told(), drops.length, 'what went over the budget, and only that, was told');
    assert.ok(got() >= 64, `the budget's worth at least was relayed at once: ${got()}`);
    assert.deepEqual(errors, []);
  } finally {
    alice.close();
    mute.destroy();
  }
}

test(`the relay passes on every message to a recipient that never acknowledges, or tells its sender (${N} from one sender, budget 64 per sender)`, async () => {
  const gw = await node('solo');
  try {
    await relayToMute(gw, gw);
  } finally {
    await gw.gw.close();
  }
});

test(`the same across nodes on Redis: sender on A, the recipient on B`, { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const redis = await startRedis();
  const stores = ['A', 'B'].map(() => new RedisStore({ url: redis.url, prefix: 'cr:', leaseTtlMs: 600, leaseRenewMs: 150 }));
  const A = await node('A', stores[0]);
  const B = await node('B', stores[1]);
  try {
    await relayToMute(A, B);
  } finally {
    await A.gw.close();
    await B.gw.close();
    for (const s of stores) await s.close();
    await redis.stop();
  }
});

/** Alice and Bob on the node's port, with what each is sent. */
function aliceAndBob(port: number) {
  const bob = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'bob', deviceId: 'b' });
  const alice = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'alice', deviceId: 'phone' });
  const toAlice: string[] = [];
  const toBob: string[] = [];
  alice.on('message', (m) => toAlice.push(Buffer.from(m.payload).toString()));
  bob.on('message', (m) => toBob.push(Buffer.from(m.payload).toString()));
  return { alice, bob, toAlice, toBob };
}

/** A store whose writes into `slowFor`'s mailboxes wait until `release()` (a slow store, for one recipient). */
class SlowForStore extends MemoryStore {
  private waiting: (() => void)[] = [];
  constructor(private readonly slowFor: string) {
    super();
  }
  override async enqueue(...args: Parameters<MemoryStore['enqueue']>) {
    if (args[0] === this.slowFor) await new Promise<void>((r) => this.waiting.push(r));
    return super.enqueue(...args);
  }
  release(): void {
    for (const go of this.waiting.splice(0)) go();
  }
}

test('a message over the relay\'s budget (a slow store) is not dropped without a word: its sender is told it was not relayed', async () => {
  const store = new SlowForStore('bob');
  const { gw, port } = await node('solo', store);
  const drops: string[] = [];
  relayChat(gw, () => {}, { perUser: 2, total: 100 }, (user, why) => drops.push(`${user} ${why}`));
  const { alice, bob, toAlice, toBob } = aliceAndBob(port);
  try {
    await bob.connect();
    await alice.connect();
    for (let i = 0; i < 5; i++) alice.send(`@bob n${i}`);
    for (let i = 0; i < 100 && drops.length < 3; i++) await sleep(20);
    assert.deepEqual(drops, ['alice user', 'alice user', 'alice user'], 'two in progress (the store is slow), three over the budget');
    for (let i = 0; i < 100 && !toAlice.some((t) => t.startsWith('(not relayed')); i++) await sleep(20);
    const told = toAlice.filter((t) => t.startsWith('(not relayed'));
    assert.ok(told.length > 0, `alice was told that what she was acknowledged was not relayed: ${JSON.stringify(toAlice)}`);
    const count = told.reduce((n, t) => n + Number(/^\(not relayed: (\d+) /.exec(t)?.[1] ?? 0), 0);
    assert.equal(count, 3, `every message not relayed is counted once: ${JSON.stringify(told)}`);
    store.release();
    for (let i = 0; i < 100 && toBob.length < 2; i++) await sleep(20);
    assert.deepEqual(toBob, ['alice: n0', 'alice: n1'], 'what was in progress is relayed');
  } finally {
    alice.close();
    bob.close();
    await gw.close();
  }
});

/** A store that fails writes into `failFor`'s mailboxes (and, with `knownToo`, the look-up of that user's devices) while `failing`. */
class FailingForStore extends MemoryStore {
  failing = true;
  writes = 0;
  constructor(
    private readonly failFor: string,
    private readonly knownToo = false,
  ) {
    super();
  }
  override async enqueue(...args: Parameters<MemoryStore['enqueue']>) {
    if (args[0] === this.failFor) {
      this.writes++;
      if (this.failing) throw new Error('store down (test)');
    }
    return super.enqueue(...args);
  }
  override async knownDevices(...args: Parameters<MemoryStore['knownDevices']>) {
    if (this.knownToo && this.failing && args[0] === this.failFor) throw new Error('store down (test)');
    return super.knownDevices(...args);
  }
}

for (const knownToo of [false, true]) {
  test(`a store that fails the relayed message's write${knownToo ? ' (and the look-up of the recipient\'s devices)' : ''} for a while does not lose it: tried again, written once, its sender not told`, async () => {
    const store = new FailingForStore('bob', knownToo);
    const { gw, port } = await node('solo', store);
    const errors: unknown[] = [];
    relayChat(gw, (e) => errors.push(e), { perUser: 8, total: 100, retryMs: [50, 50, 100, 100, 200, 200, 400, 400] });
    const { alice, bob, toAlice, toBob } = aliceAndBob(port);
    try {
      await bob.connect();
      await alice.connect();
      for (let i = 0; i < 3; i++) alice.send(`@bob n${i}`);
      // Failed a few times (the retries last 1.5 s in all here).
      for (let i = 0; i < 50 && !knownToo && store.writes < 6; i++) await sleep(20);
      await sleep(300);
      assert.deepEqual(toBob, [], 'nothing written while the store fails');
      store.failing = false;
      for (let i = 0; i < 150 && toBob.length < 3; i++) await sleep(20);
      await sleep(200);
      assert.deepEqual([...toBob].sort(), ['alice: n0', 'alice: n1', 'alice: n2'], 'each relayed once the store is back');
      assert.deepEqual(toAlice, [], 'the sender was told nothing');
      assert.deepEqual(errors, []);
    } finally {
      alice.close();
      bob.close();
      await gw.close();
    }
  });
}

test('a store that fails the write past the retries: the sender is told it was not relayed, and the error is reported', async () => {
  const store = new FailingForStore('bob');
  const { gw, port } = await node('solo', store);
  const errors: unknown[] = [];
  relayChat(gw, (e) => errors.push(e), { perUser: 8, total: 100, retryMs: [20, 20, 20] });
  const { alice, bob, toAlice } = aliceAndBob(port);
  try {
    await bob.connect();
    await alice.connect();
    alice.send('@bob lost?');
    for (let i = 0; i < 100 && toAlice.length === 0; i++) await sleep(20);
    assert.deepEqual(toAlice, ['(not relayed to bob: the store failed it; send again later)']);
    assert.equal(store.writes, 4, 'the first write and three more');
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as { code?: string }).code, 'LL_ERR_STORE_UNAVAILABLE');
  } finally {
    alice.close();
    bob.close();
    await gw.close();
  }
});

test('a gateway closed while a relayed message waits to be tried again: no more tries, and nothing reported', async () => {
  const store = new FailingForStore('bob');
  const { gw, port } = await node('solo', store);
  const errors: unknown[] = [];
  relayChat(gw, (e) => errors.push(e), { perUser: 8, total: 100, retryMs: [100, 100, 100, 100, 100] });
  const { alice, bob } = aliceAndBob(port);
  try {
    await bob.connect();
    await alice.connect();
    alice.send('@bob later');
    for (let i = 0; i < 100 && store.writes === 0; i++) await sleep(10);
    assert.equal(store.writes, 1, 'the first write failed');
  } finally {
    alice.close();
    bob.close();
    await gw.close();
  }
  const writes = store.writes;
  await sleep(700);
  assert.equal(store.writes, writes, 'not tried again after the close');
  assert.deepEqual(errors, []);
});
