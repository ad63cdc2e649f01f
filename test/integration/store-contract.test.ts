import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { after, before, describe, test } from 'node:test';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import type { Store } from '../../src/gateway/stores/store.js';
import { redisUnavailable, startRedis, startRedisCluster, type TestRedis, type TestRedisCluster } from '../helpers/redis.js';

// One contract, two stores: the in-memory default and Redis (a real server
// of the test's own). Whatever the gateway relies on holds for both.

const LIMITS = { maxMessages: 3, maxBytes: 1 << 20 };
const msg = (id: string, expiresAt = 1e13, bytes = 1) => ({ id, payload: new Uint8Array(bytes).fill(7), enqueuedAt: 1000, expiresAt });
const ids = (ms: { id: string }[]) => ms.map((m) => m.id);
const noRedis = redisUnavailable();

let redis: TestRedis | null = null;
let rcluster: TestRedisCluster | null = null;
let prefixN = 0;
before(async () => {
  if (!noRedis) [redis, rcluster] = await Promise.all([startRedis(), startRedisCluster()]);
});
after(async () => {
  await Promise.all([redis?.stop(), rcluster?.stop()]);
});

/** The address (redis://host:port) of the master holding a device's mailbox. */
async function masterOf(s: RedisStore, userId: string, deviceId: string): Promise<string> {
  const key = (s as unknown as { mailbox(u: string, d: string): { list: string } }).mailbox(userId, deviceId).list;
  const n = (s.redis as unknown as { nodes(role: string): Redis[] }).nodes('master')[0];
  try {
    await n.exists(key);
    return `redis://${n.options.host}:${n.options.port}`;
  } catch (err) {
    // Another master's slot: the refusal names it.
    const moved = /MOVED \d+ (\S+)/.exec((err as Error).message);
    if (!moved) throw err;
    return `redis://${moved[1]}`;
  }
}

/** Keys matching a pattern, on every master of a cluster. */
async function keysLike(s: RedisStore, pattern: string): Promise<string[]> {
  const r = s.redis as unknown as { nodes?: (role: string) => { keys(p: string): Promise<string[]> }[]; keys(p: string): Promise<string[]> };
  if (!s.isCluster) return r.keys(pattern);
  return (await Promise.all(r.nodes!('master').map((n) => n.keys(pattern)))).flat();
}

/** The bounds both stores take. */
type Bounds = { dedupIdsPerDevice?: number; dedupWindowMs?: number; maxKnownDevicesPerUser?: number };
const kinds: { name: string; make: (b?: Bounds) => Store; skip: string | false }[] = [
  { name: 'memory', make: (b = {}) => new MemoryStore(b), skip: false },
  { name: 'redis', make: (b = {}) => new RedisStore({ url: redis!.url, prefix: `t${++prefixN}:`, ...b }), skip: noRedis ? `skipped: ${noRedis}` : false },
  // Three masters: every script must name keys of one slot, or the cluster refuses it (CROSSSLOT).
  { name: 'redis cluster', make: (b = {}) => new RedisStore({ url: rcluster!.url, cluster: true, prefix: `t${++prefixN}:`, ...b }), skip: noRedis ? `skipped: ${noRedis}` : false },
];

for (const kind of kinds) {
  describe(`store contract: ${kind.name}`, { skip: kind.skip }, () => {
    const withStore = (name: string, fn: (s: Store) => Promise<void>, bounds?: Bounds) =>
      test(name, async () => {
        const s = kind.make(bounds);
        try {
          await fn(s);
        } finally {
          await s.close();
        }
      });

    // A copy whose time was over but that the sweep had not removed counted as held: a retry with a
    // fresh time was not queued, and the sweep then removed the only copy.
    withStore('a retry of an id whose held copy\'s time is over is queued: the mailbox\'s expired messages go first, returned', async (s) => {
      await s.enqueue('u', 'd', msg('old', 1500, 3), LIMITS);
      await s.enqueue('u', 'd', msg('x', 2000, 5), LIMITS);
      await s.enqueue('u', 'd', msg('live', 1e13, 7), LIMITS);
      const retry = { ...msg('x', 1e13, 2), enqueuedAt: 2000 };
      const gone = await s.enqueue('u', 'd', retry, LIMITS);
      assert.deepEqual(gone.map((m) => [m.id, m.expiresAt, m.payload.length]), [['old', 1500, 3], ['x', 2000, 5]]);
      assert.equal(await s.depth('u', 'd'), 2);
      assert.deepEqual((await s.take('u', 'd', 'L1', 0)).map((m) => [m.id, m.expiresAt]), [['live', 1e13], ['x', 1e13]]);
      assert.deepEqual(await s.enqueue('u', 'd', { ...retry, enqueuedAt: 3000 }, LIMITS), [], 'the retry\'s copy is held');
      assert.deepEqual(await s.expire(1e12, true), []);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L1', 2)), ['live', 'x']);
      assert.equal(await s.depth('u', 'd'), 0);
    });

    withStore('a message whose id the mailbox holds is not queued again (a retried push); once acknowledged it may be', async (s) => {
      await s.enqueue('u', 'd', msg('a'), LIMITS);
      await s.enqueue('u', 'd', msg('b'), LIMITS);
      assert.deepEqual(await s.enqueue('u', 'd', msg('a'), LIMITS), []);
      assert.equal(await s.depth('u', 'd'), 2);
      const taken = await s.take('u', 'd', 'L1', 0);
      assert.deepEqual(ids(taken), ['a', 'b']);
      await s.enqueue('u', 'd', msg('b'), LIMITS); // sent, not acknowledged: still held
      assert.equal(await s.depth('u', 'd'), 2);
      await s.ack('u', 'd', 'L1', 2);
      await s.enqueue('u', 'd', msg('a'), LIMITS); // acknowledged: a new message under an old id
      assert.deepEqual(ids(await s.take('u', 'd', 'L1', 2)), ['a']);
      // Evicted or expired, an id is free again.
      const tight = { maxMessages: 1, maxBytes: 1 << 20 };
      assert.deepEqual(ids(await s.enqueue('u', 'x', msg('e1'), tight)), []);
      assert.deepEqual(ids(await s.enqueue('u', 'x', msg('e2'), tight)), ['e1']);
      assert.deepEqual(ids(await s.enqueue('u', 'x', msg('e1'), tight)), ['e2']);
      assert.equal(await s.depth('u', 'x'), 1);
      await s.enqueue('u', 'y', msg('t1', 5000), LIMITS);
      assert.equal((await s.expire(6000, true)).length, 1);
      await s.enqueue('u', 'y', msg('t1'), LIMITS);
      assert.equal(await s.depth('u', 'y'), 1);
    });

    withStore('a mailbox numbers for its holder, hands out what is past afterSeq, and acks remove in order', async (s) => {
      for (const id of ['a', 'b', 'c']) await s.enqueue('u', 'd', msg(id), LIMITS);
      const taken = await s.take('u', 'd', 'L1', 0);
      assert.deepEqual(taken.map((m) => [m.id, m.seq]), [['a', 1], ['b', 2], ['c', 3]]);
      assert.deepEqual(Buffer.from(taken[0].payload), Buffer.from([7]));
      assert.deepEqual(ids(await s.take('u', 'd', 'L1', 2)), ['c']);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L1', 2)), ['a', 'b']);
      assert.deepEqual(await s.ack('u', 'd', 'L-other', 3), [], 'another holder cannot ack');
      assert.equal(await s.depth('u', 'd'), 1);
      // A new holder renumbers what is left, above every number handed out before.
      assert.deepEqual((await s.take('u', 'd', 'L2', 0)).map((m) => [m.id, m.seq]), [['c', 4]]);
    });

    withStore('numbers never go back: holders that alternate (a stale link and a live one) never reuse a number', async (s) => {
      for (const id of ['p1', 'p2']) await s.enqueue('u', 'd', msg(id), LIMITS);
      // The live link B has carried 3 messages of its session; the stale link A none.
      const b1 = await s.take('u', 'd', 'B', 3);
      assert.deepEqual(b1.map((m) => [m.id, m.seq]), [['p1', 4], ['p2', 5]], 'numbered above what B already carries');
      await s.enqueue('u', 'd', msg('p3'), LIMITS);
      const a = await s.take('u', 'd', 'A', 0);
      assert.deepEqual(a.map((m) => [m.id, m.seq]), [['p1', 6], ['p2', 7], ['p3', 8]], 'A renumbers above 5, not from 1');
      assert.deepEqual(await s.ack('u', 'd', 'B', 5), [], "B's ack speaks only while B holds the mailbox");
      const b2 = await s.take('u', 'd', 'B', 5);
      assert.deepEqual(b2.map((m) => [m.id, m.seq]), [['p1', 9], ['p2', 10], ['p3', 11]], 'B gets everything again, above 5');
      assert.deepEqual(ids(await s.ack('u', 'd', 'B', 11)), ['p1', 'p2', 'p3']);
    });

    withStore("a resume's lastSeq removes what a link of its session numbered up to it, nothing unnumbered, nothing of another session's link", async (s) => {
      const WIDE = { maxMessages: 10, maxBytes: 1 << 20 };
      for (const id of ['a', 'b', 'c']) await s.enqueue('u', 'd', msg(id), WIDE);
      assert.ok(s.ackResumed, 'both stores implement it');
      // Link L1 of session S1 numbered a, b, c (1-3) and wrote a and b; d came after, unnumbered.
      assert.deepEqual((await s.take('u', 'd', 'L1', 0, 'S1')).map((m) => m.seq), [1, 2, 3]);
      await s.enqueue('u', 'd', msg('d'), WIDE);
      assert.deepEqual(await s.ackResumed('u', 'd', 'S2', 2), [], "another session's lastSeq means nothing to this mailbox");
      const gone = await s.ackResumed('u', 'd', 'S1', 2);
      assert.deepEqual(gone.map((m) => [m.id, m.seq, m.expiresAt]), [['a', 1, 1e13], ['b', 2, 1e13]]);
      assert.equal(await s.depth('u', 'd'), 2);
      // The resumed link L2 (also S1) takes above lastSeq; a lastSeq past every number removes only numbered ones.
      assert.deepEqual((await s.take('u', 'd', 'L2', 2, 'S1')).map((m) => [m.id, m.seq]), [['c', 4], ['d', 5]]);
      await s.enqueue('u', 'd', msg('e'), WIDE);
      assert.deepEqual(ids(await s.ackResumed('u', 'd', 'S1', 1e9)), ['c', 'd'], 'e was never numbered: it stays');
      assert.deepEqual((await s.take('u', 'd', 'L3', 1e9, 'S1')).map((m) => [m.id, m.seq]), [['e', 1e9 + 1]]);
      // Emptied, the mailbox goes whole, as an ack's does; none there, nothing happens.
      assert.deepEqual(ids(await s.ackResumed('u', 'd', 'S1', 1e9 + 1)), ['e']);
      assert.equal(await s.depth('u', 'd'), 0);
      assert.deepEqual(await s.ackResumed('u', 'd', 'S1', 5), []);
      await s.enqueue('u', 'd', msg('f'), WIDE);
      assert.deepEqual(await s.ackResumed('u', 'd', 'S1', 5), [], 'a new mailbox is held by no session until a take');
      assert.deepEqual((await s.take('u', 'd', 'X', 0)).map((m) => [m.id, m.seq]), [['f', 1]]);
      assert.deepEqual(await s.ackResumed('u', 'd', 'S1', 5), [], 'nor by one its holder did not name');
      assert.deepEqual(await s.ackResumed('u', 'd', '', 5), []);
    });

    withStore('the holder takes again what is past afterSeq: numbered ones not carried yet, then new ones numbered next, around an expiry and an eviction in between', async (s) => {
      const limits = { maxMessages: 40, maxBytes: 1 << 20 };
      for (let i = 0; i < 30; i++) await s.enqueue('u', 'd', msg(`a${i}`, i === 20 ? 5000 : 1e13), limits);
      assert.equal((await s.take('u', 'd', 'L', 0)).length, 30);
      // The link carried 25 of them (the rest were numbered by a take whose writes never went).
      assert.deepEqual((await s.expire(6000, true)).map((g) => [g.message.id, g.message.seq]), [['a20', 21]]);
      for (let i = 0; i < 12; i++) await s.enqueue('u', 'd', msg(`b${i}`), limits);
      assert.equal(await s.depth('u', 'd'), 40, 'one expired, one evicted (a0)');
      const again = await s.take('u', 'd', 'L', 25);
      assert.deepEqual(again.map((m) => [m.id, m.seq]), [['a25', 26], ['a26', 27], ['a27', 28], ['a28', 29], ['a29', 30], ...Array.from({ length: 12 }, (_, i) => [`b${i}`, 31 + i])]);
      assert.deepEqual(await s.take('u', 'd', 'L', 42), []);
      await s.enqueue('u', 'd', msg('c'), limits);
      assert.deepEqual((await s.take('u', 'd', 'L', 42)).map((m) => [m.id, m.seq]), [['c', 43]]);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 22)), ['a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9', 'a10', 'a11', 'a12', 'a13', 'a14', 'a15', 'a16', 'a17', 'a18', 'a19', 'a21']);
    });

    withStore('a mailbox made anew (the store lost its data) numbers above what the link carries', async (s) => {
      await s.enqueue('u', 'fresh', msg('x'), LIMITS);
      assert.deepEqual((await s.take('u', 'fresh', 'L', 29)).map((m) => [m.id, m.seq]), [['x', 30]]);
      assert.deepEqual(await s.ack('u', 'fresh', 'L', 29), [], 'an acknowledgement of older numbers removes nothing');
      assert.deepEqual(ids(await s.ack('u', 'fresh', 'L', 30)), ['x']);
    });

    withStore('the oldest are evicted beyond the limits, and reported', async (s) => {
      for (const id of ['a', 'b', 'c']) await s.enqueue('u', 'd', msg(id), LIMITS);
      assert.deepEqual(ids(await s.enqueue('u', 'd', msg('d'), LIMITS)), ['a']);
      assert.deepEqual(ids(await s.enqueue('u', 'd', msg('big', 1e13, 100), { maxMessages: 10, maxBytes: 50 })), ['b', 'c', 'd']);
      assert.equal(await s.depth('u', 'd'), 1, 'the newest stays even when alone over the byte limit');
    });

    withStore('with the live link named (liveHolder), what it numbered is never evicted: the oldest not numbered go, else the new message is refused', async (s) => {
      for (const id of ['a', 'b', 'c']) await s.enqueue('u', 'd', msg(id), LIMITS);
      await s.take('u', 'd', 'h', 0);
      const live = { ...LIMITS, liveHolder: 'h' };
      assert.deepEqual((await s.enqueue('u', 'd', msg('x'), live)).map((m) => [m.id, m.seq]), [['x', 0]], 'x refused: a, b, c are on their way to h');
      assert.deepEqual(ids(await s.take('u', 'd', 'h', 3)), [], 'x not queued');
      assert.deepEqual(ids(await s.enqueue('u', 'd', msg('e'), { ...LIMITS, liveHolder: 'gone' })), ['a'], 'another link named: the oldest goes, as without');
      assert.deepEqual(ids(await s.enqueue('u', 'd', msg('f'), live)), ['e'], 'e, not numbered yet, goes before b and c');
      assert.deepEqual(ids(await s.enqueue('u', 'd', msg('g', 1e13, 2), { maxMessages: 10, maxBytes: 4, liveHolder: 'h' })), ['f'], 'the byte bound too');
      assert.deepEqual(ids(await s.ack('u', 'd', 'h', 3)), ['b', 'c']);
      assert.deepEqual(ids(await s.take('u', 'd', 'h', 3)), ['g']);
    });

    withStore('expiry removes only what is due, across mailboxes', async (s) => {
      await s.enqueue('u', 'd1', msg('old', 5000), LIMITS);
      await s.enqueue('u', 'd1', msg('new', 9000), LIMITS);
      await s.enqueue('v', 'd2', msg('old2', 6000), LIMITS);
      const gone = await s.expire(7000, true);
      assert.deepEqual(gone.map((g) => [g.userId, g.deviceId, g.message.id]).sort(), [['u', 'd1', 'old'], ['v', 'd2', 'old2']]);
      assert.deepEqual(await s.expire(7000, true), []);
      assert.equal(await s.depth('u', 'd1'), 1);
      assert.deepEqual(await s.expire(8999, true), []);
      assert.deepEqual((await s.expire(9000, true)).map((g) => g.message.id), ['new'], 'due at its expiresAt');
    });

    withStore('expiry stays exact when the earliest message goes first (acknowledged, or evicted by the bound)', async (s) => {
      await s.enqueue('u', 'd', msg('early', 5000), LIMITS);
      await s.enqueue('u', 'd', msg('late', 9000), LIMITS);
      await s.take('u', 'd', 'h', 0);
      assert.equal((await s.ack('u', 'd', 'h', 1)).length, 1, 'the earliest acknowledged');
      assert.deepEqual(await s.expire(6000, true), [], 'nothing due at 6 s: the index does not lose the later one');
      assert.deepEqual((await s.expire(9000, true)).map((g) => g.message.id), ['late']);
      // Evicted by the per-device bound (three): the earliest goes, the rest expire when due.
      for (const [id, x] of [['a', 1000], ['b', 8000], ['c', 8500], ['d', 8700]] as const) await s.enqueue('v', 'd', msg(id, x), LIMITS);
      assert.deepEqual(await s.expire(2000, true), []);
      assert.deepEqual((await s.expire(8600, true)).map((g) => g.message.id).sort(), ['b', 'c']);
      assert.equal(await s.depth('v', 'd'), 1);
    });

    withStore('presence: online, replaced, offline only by its own connection', async (s) => {
      const e = { userId: 'u:1', deviceId: 'd', connectionId: 'c1', nodeId: 'n1', transport: 'tcp' as const, since: 1, clientInfo: { os: 'x' } };
      if (s instanceof RedisStore) await s.joinCluster('n1', () => {});
      await s.setOnline(e);
      assert.deepEqual(await s.devices('u:1'), [e]);
      await s.setOnline({ ...e, connectionId: 'c2' });
      assert.equal(await s.setOffline('u:1', 'd', 'c1'), false, 'a replaced connection does not take the device offline');
      assert.equal(await s.setOffline('u:1', 'd', 'c2'), true);
      assert.deepEqual(await s.devices('u:1'), []);
    });

    withStore('presence: a handshake that lost its link puts back the entry it displaced, only while the entry is still its own', async (s) => {
      const e1 = { userId: 'u', deviceId: 'd', connectionId: 'c1', nodeId: 'n1', transport: 'tcp' as const, since: 1, clientInfo: {} };
      if (s instanceof RedisStore) await s.joinCluster('n1', () => {});
      await s.setOnline(e1);
      const displaced = (await s.setOnline({ ...e1, connectionId: 'c2', since: 2 })) || undefined;
      // A shared store says what it replaced (the gateway tells that link's node); the memory store may not.
      if (s instanceof RedisStore) assert.deepEqual(displaced && { ...displaced, inc: undefined }, { ...e1, inc: undefined });
      assert.equal(await s.setOffline('u', 'd', 'c2', e1), true);
      assert.deepEqual((await s.devices('u')).map((e) => e.connectionId), ['c1'], 'c1 is back');
      await s.setOnline({ ...e1, connectionId: 'c3', since: 3 });
      assert.equal(await s.setOffline('u', 'd', 'c2', e1), false, 'not its own any more: nothing put back');
      assert.deepEqual((await s.devices('u')).map((e) => e.connectionId), ['c3']);
      if (s.takeBackOnline) {
        // A take-back puts back the other node's entry its write displaced, unless that link has gone meanwhile.
        const onA = { ...e1, connectionId: 'ka', nodeId: 'A', since: 10 };
        const onB = { ...e1, connectionId: 'kb', nodeId: 'B', since: 11 };
        await s.setOnline(onA);
        await s.setOnline(onB);
        assert.equal((await s.takeBackOnline('u', 'd', 'kb'))?.connectionId, 'ka', 'put back');
        await s.setOnline(onB);
        assert.equal(await s.setOffline('u', 'd', 'ka'), false, 'not its entry any more');
        assert.equal(await s.takeBackOnline('u', 'd', 'kb'), undefined, 'the gone link is not put back');
        // Nor by a handshake that lost its link, given the entry it displaced: that link closed since (its
        // node's removal found it displaced), and no one would remove it again.
        await s.setOnline(onA);
        await s.setOnline(onB);
        assert.equal(await s.setOffline('u', 'd', 'ka'), false);
        assert.equal(await s.setOffline('u', 'd', 'kb', onA), true);
        assert.equal(await s.setOnline(onB), undefined, 'no ghost of ka was left for the next link to replace');
        // Nor by a later take-back when a third node's link displaced it before its own take-back ran:
        // kb's write landed (its answer lost), kc's displaced kb, kb's take-back found kc's entry; kc's
        // write then lost its answer too, and its take-back put back kb, a link closed for good.
        const onC = { ...e1, connectionId: 'kc', nodeId: 'C', since: 12 };
        await s.setOffline('u', 'd', 'kb');
        await s.setOnline(onA);
        await s.setOnline(onB);
        await s.setOnline(onC);
        assert.equal(await s.takeBackOnline('u', 'd', 'kb'), undefined, 'not its entry any more');
        assert.equal(await s.takeBackOnline('u', 'd', 'kc'), undefined, 'kb, gone, is not put back');
        assert.equal(await s.setOnline(onC), undefined, 'no ghost of kb in presence');
        await s.setOnline({ ...e1, connectionId: 'c3', since: 3 });
      }
      if (s.restoreOnline) {
        // After a resync: written where absent or its own, never over another link's entry.
        assert.equal(await s.restoreOnline({ ...e1, connectionId: 'c1' }), false);
        assert.equal(await s.restoreOnline({ ...e1, connectionId: 'c3', since: 4 }), true);
        await s.setOffline('u', 'd', 'c3');
        assert.equal(await s.restoreOnline({ ...e1, connectionId: 'c1' }), true);
        assert.deepEqual((await s.devices('u')).map((e) => e.connectionId), ['c1']);
      }
    });

    withStore('sessions: saved, loaded until they expire, deleted', async (s) => {
      const r = { sessionId: 's', resumeToken: 'tok', userId: 'u', deviceId: 'd', clientInfo: {}, createdAt: 1, inSeq: 4 };
      const now = Date.now();
      await s.saveSession(r, now + 60_000);
      assert.deepEqual(await s.loadSession('tok', now), r);
      assert.equal(await s.loadSession('tok', now + 60_001), undefined);
      await s.deleteSession('tok');
      assert.equal(await s.loadSession('tok', now), undefined);
    });

    withStore('a closed record is not saved over one held open by another node (unlessOpenElsewhere); over its own, or a closed one, it is', async (s) => {
      const now = Date.now();
      const open = { sessionId: 's', resumeToken: `tok-open-${prefixN}`, userId: 'u', deviceId: 'd', clientInfo: {}, createdAt: 1, inSeq: 7, openOn: 'B' };
      await s.saveSession(open, now + 3_600_000);
      const { openOn: _b, ...closedByA } = { ...open, inSeq: 2 };
      await s.saveSession(closedByA, now + 120_000, 'A');
      assert.deepEqual(await s.loadSession(open.resumeToken, now), open, 'B holds it open: A, ending its old link late, writes nothing');
      await s.saveSession(closedByA, now + 120_000, 'B');
      assert.deepEqual(await s.loadSession(open.resumeToken, now), closedByA, 'B itself closes it');
      await s.saveSession({ ...closedByA, inSeq: 3 }, now + 120_000, 'A');
      assert.equal((await s.loadSession(open.resumeToken, now))?.inSeq, 3, 'over a closed record, anyone');
    });

    withStore('session records are bounded per device: a new session beyond the bound drops the oldest', async (s) => {
      const rec = (i: number) => ({ sessionId: `s${i}`, resumeToken: `tok-${prefixN}-${i}`, userId: 'u', deviceId: 'd', clientInfo: {}, createdAt: i, inSeq: 0 });
      const far = Date.now() + 60_000;
      for (let i = 0; i < 10; i++) await s.saveSession(rec(i), far);
      await s.saveSession({ ...rec(9), inSeq: 3 }, far); // saving again is not a new session
      const now = Date.now();
      const kept = (await Promise.all([...Array(10).keys()].map((i) => s.loadSession(`tok-${prefixN}-${i}`, now)))).map((r) => (r ? 1 : 0));
      assert.deepEqual(kept, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1], 'the newest four (the default bound) are kept');
      assert.equal((await s.loadSession(`tok-${prefixN}-9`, now))?.inSeq, 3);
    });

    withStore('a session saved by a node whose clock runs behind is the newest of its device, not evicted at once at the bound', async (s) => {
      const rec = (i: number) => ({ sessionId: `s${i}`, resumeToken: `skew-${prefixN}-${i}`, userId: 'u', deviceId: 'sk', clientInfo: {}, createdAt: i, inSeq: 0 });
      const far = Date.now() + 3_600_000;
      for (let i = 0; i < 4; i++) await s.saveSession(rec(i), far);
      const realNow = Date.now;
      const behind = realNow() - 600_000;
      Date.now = () => behind; // this node's clock ten minutes behind the others'
      try {
        await s.saveSession(rec(4), far);
      } finally {
        Date.now = realNow;
      }
      const now = Date.now();
      const kept = (await Promise.all([0, 1, 2, 3, 4].map((i) => s.loadSession(`skew-${prefixN}-${i}`, now)))).map((r) => (r ? 1 : 0));
      assert.deepEqual(kept, [0, 1, 1, 1, 1], 'the oldest saved goes, not the one just saved');
    });

    withStore('a deleted session leaves the device\'s bound: it no longer pushes out an older live one', async (s) => {
      const rec = (i: number) => ({ sessionId: `s${i}`, resumeToken: `del-${prefixN}-${i}`, userId: 'u', deviceId: 'dd', clientInfo: {}, createdAt: i, inSeq: 0 });
      const far = Date.now() + 60_000;
      for (let i = 0; i < 4; i++) await s.saveSession(rec(i), far);
      await s.deleteSession(`del-${prefixN}-3`);
      await s.saveSession(rec(4), far);
      const now = Date.now();
      const kept = (await Promise.all([0, 1, 2, 3, 4].map((i) => s.loadSession(`del-${prefixN}-${i}`, now)))).map((r) => (r ? 1 : 0));
      assert.deepEqual(kept, [1, 1, 1, 0, 1], 'four live sessions fit the bound of four');
      await s.deleteSession(`del-${prefixN}-3`); // again: nothing to do
    });

    withStore('known devices and duplicate detection of client message ids', async (s) => {
      const t = Date.now();
      await s.rememberDevice('u', 'd1', t + 5000);
      await s.rememberDevice('u', 'd2', t + 1000);
      await s.enqueue('u', 'd2', msg('held'), LIMITS);
      assert.deepEqual((await s.knownDevices('u', t + 2000)).sort(), ['d1', 'd2'], 'd2 is past its time but still holds a message');
      await s.ack('u', 'd2', '', 0);
      assert.equal(await s.seenInbound('u', 'd1', 'm1', t), false);
      assert.equal(await s.markInbound('u', 'd1', 'm1', t), true);
      assert.equal(await s.seenInbound('u', 'd1', 'm1', t), true);
      assert.equal(await s.markInbound('u', 'd1', 'm1', t), false);
      assert.equal(await s.markInbound('u', 'd2', 'm1', t), true, 'per device');
    });

    withStore(
      'the dedup record is a window: at most dedupIdsPerDevice ids, none older than dedupWindowMs',
      async (s) => {
        const t = Date.now();
        for (let i = 0; i < 5; i++) assert.equal(await s.markInbound('u', 'd', `m${i}`, t + i), true);
        assert.equal(await s.seenInbound('u', 'd', 'm0', t + 5), false, 'the oldest went beyond three ids');
        assert.equal(await s.seenInbound('u', 'd', 'm1', t + 5), false);
        assert.equal(await s.seenInbound('u', 'd', 'm4', t + 5), true);
        assert.equal(await s.seenInbound('u', 'd', 'm4', t + 4 + 60_000), false, 'past the window a re-send counts as new');
        assert.equal(await s.markInbound('u', 'd', 'm4', t + 4 + 60_000), true);
      },
      { dedupIdsPerDevice: 3, dedupWindowMs: 60_000 },
    );

    withStore(
      'known devices are bounded per user: a new device beyond it evicts the one whose time ends first',
      async (s) => {
        const t = Date.now();
        await s.rememberDevice('u', 'a', t + 30_000);
        await s.rememberDevice('u', 'b', t + 10_000);
        await s.rememberDevice('u', 'c', t + 20_000);
        await s.rememberDevice('u', 'a', t + 40_000); // a known device again: no eviction
        assert.deepEqual((await s.knownDevices('u', t)).sort(), ['a', 'b', 'c']);
        await s.rememberDevice('u', 'd', t + 50_000);
        assert.deepEqual((await s.knownDevices('u', t)).sort(), ['a', 'c', 'd'], 'b, whose time ended first, went');
      },
      { maxKnownDevicesPerUser: 3 },
    );

    withStore(
      'the known-device bound never evicts an online device (its sessions and dedup ids stay); with every known device online, a new one is remembered beyond it, and the next new one brings it back below',
      async (s) => {
        if (s instanceof RedisStore) await s.joinCluster('n1', () => {});
        const t = Date.now();
        const on = (d: string) => s.setOnline({ userId: 'u', deviceId: d, connectionId: `c-${d}`, nodeId: 'n1', transport: 'tcp', since: 1, clientInfo: {} });
        const tok = `kd-${prefixN}`;
        // a, online, has the time that ends first, a session and a recorded client message id.
        await s.rememberDevice('u', 'a', t + 10_000);
        await on('a');
        await s.saveSession({ sessionId: 's', resumeToken: tok, userId: 'u', deviceId: 'a', clientInfo: {}, createdAt: 1, inSeq: 0 }, t + 60_000);
        assert.equal(await s.markInbound('u', 'a', 'm1', t), true);
        await s.rememberDevice('u', 'b', t + 20_000);
        await s.rememberDevice('u', 'c', t + 30_000);
        await s.rememberDevice('u', 'd', t + 40_000);
        assert.deepEqual((await s.knownDevices('u', t)).sort(), ['a', 'c', 'd'], 'b (not online) went, not a');
        assert.ok(await s.loadSession(tok, t), 'the online device can still resume');
        assert.equal(await s.markInbound('u', 'a', 'm1', t), false, 'and its duplicate check holds');
        // Every known device online: the new one is remembered beyond the bound (what a store keeps
        // of it must be found to evict it once it is offline), none is evicted.
        await on('c');
        await on('d');
        await s.rememberDevice('u', 'e', t + 50_000);
        assert.deepEqual((await s.knownDevices('u', t)).sort(), ['a', 'c', 'd', 'e']);
        // Once some are offline, the next new device brings it back below the bound, the oldest going first.
        assert.equal(await s.setOffline('u', 'c', 'c-c'), true);
        await s.rememberDevice('u', 'f', t + 60_000);
        assert.deepEqual((await s.knownDevices('u', t)).sort(), ['a', 'd', 'f'], 'c and e (not online) went');
        assert.ok(await s.loadSession(tok, t));
      },
      { maxKnownDevicesPerUser: 3 },
    );

    withStore('an emptied mailbox is deleted; the next message is numbered above what the link already carries', async (s) => {
      await s.enqueue('u', 'd', msg('a'), LIMITS);
      assert.deepEqual((await s.take('u', 'd', 'L', 0)).map((m) => m.seq), [1]);
      await s.ack('u', 'd', 'L', 1);
      if (s instanceof MemoryStore) assert.equal(s.footprint.mailboxes, 0);
      // (The last acknowledgement's record, `mba`, stays a minute for a re-sent one.)
      if (s instanceof RedisStore) assert.equal((await keysLike(s, `${(s as unknown as { o: { prefix: string } }).o.prefix}*:mb*`)).filter((k) => !k.includes(':mba:')).length, 0, 'no list, no meta');
      await s.enqueue('u', 'd', msg('b'), LIMITS);
      assert.deepEqual((await s.take('u', 'd', 'L', 1)).map((m) => [m.id, m.seq]), [['b', 2]]);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 2)), ['b']);
      // Expiry empties one as well.
      await s.enqueue('u', 'd', msg('c', 5), LIMITS);
      assert.equal((await s.expire(10, true)).length, 1);
      if (s instanceof MemoryStore) assert.equal(s.footprint.mailboxes, 0);
      if (s instanceof RedisStore) assert.equal((await keysLike(s, `${(s as unknown as { o: { prefix: string } }).o.prefix}*:mb*`)).filter((k) => !k.includes(':mba:')).length, 0);
    });

    // Ids are any strings (HELLO's and the server API's alike): NUL, separators and hash-tag braces
    // included. Two devices whose ids join to the same text are still two devices, each a slot of its own.
    withStore('ids holding NUL, colons, braces or percent signs are keys of their own device: no device shares another\'s records', async (s) => {
      const pairs = [['a\u0000b', 'c'], ['a', 'b\u0000c'], ['x:y', 'z'], ['x', 'y:z'], ['{u}', '}{'], ['%7B', '{'], ['u}', 'd:{x}']] as const;
      const now = Date.now();
      if (s instanceof RedisStore) await s.joinCluster('n1', () => {});
      for (const [i, [u, d]] of pairs.entries()) {
        assert.equal(await s.markInbound(u, d, 'm1', now), true, `${JSON.stringify([u, d])}: its first m1 is new`);
        await s.enqueue(u, d, msg(`p${i}`), LIMITS);
        await s.rememberDevice(u, d, now + 60_000);
        await s.setOnline({ userId: u, deviceId: d, connectionId: `c${i}`, nodeId: 'n1', transport: 'tcp', since: 1, clientInfo: {} });
        await s.saveSession({ sessionId: `s${i}`, resumeToken: `tok${i}-${prefixN}`, userId: u, deviceId: d, clientInfo: {}, createdAt: 1, inSeq: i }, now + 60_000);
      }
      for (const [i, [u, d]] of pairs.entries()) {
        const who = JSON.stringify([u, d]);
        assert.equal(await s.seenInbound(u, d, 'm1', now), true, who);
        assert.equal(await s.markInbound(u, d, 'm1', now), false, `${who}: m1 again is a duplicate`);
        assert.deepEqual(ids(await s.take(u, d, 'L', 0)), [`p${i}`], `${who}: its own mailbox`);
        assert.deepEqual((await s.devices(u)).map((e) => [e.deviceId, e.connectionId]), [[d, `c${i}`]], `${who}: its own presence`);
        assert.deepEqual(await s.knownDevices(u, now), [d], `${who}: its own known devices`);
        const r = await s.loadSession(`tok${i}-${prefixN}`, now);
        assert.deepEqual([r?.userId, r?.deviceId, r?.inSeq], [u, d, i], `${who}: its own session`);
      }
    });
  });
}

for (const on of ['one server', 'a cluster'] as const) describe(`redis store on ${on}: lease, routing, control`, { skip: noRedis ? `skipped: ${noRedis}` : false }, () => {
  const at = () => (on === 'one server' ? { url: redis!.url } : { url: rcluster!.url, cluster: true });
  test('an acknowledgement answers what the holder\'s earlier ones removed above answeredUpTo (their answers may have been lost); without it, only a re-sent one does', async () => {
    const s = new RedisStore({ ...at(), prefix: `ackans${++prefixN}:` });
    try {
      const limits = { maxMessages: 10, maxBytes: 1 << 20 };
      for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) await s.enqueue('u', 'd', msg(id), limits);
      await s.take('u', 'd', 'L', 0);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 2, 0)), ['a', 'b']); // its answer lost
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 3, 0)), ['a', 'b', 'c'], 'the lost answer comes with the next');
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 3, 0)), ['a', 'b', 'c'], 're-sent: the same answer');
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 2, 3)), [], 'read up to 3: nothing again');
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 4, 3)), ['d']);
      assert.deepEqual(ids(await s.ack('u', 'd', 'M', 5, 0)), [], 'another holder is answered nothing of L\'s');
      // Without answeredUpTo (callers before it): an earlier answer is given again only to the same call.
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 5)), ['e']);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 5)), ['e']);
      assert.deepEqual(ids(await s.ack('u', 'd', 'L', 6)), ['f']);
    } finally {
      await s.close();
    }
  });

  test('a known device past its time is forgotten only if nobody remembered it since it was read (a handshake meanwhile keeps it)', async () => {
    const s = new RedisStore({ ...at(), prefix: `forget${++prefixN}:` });
    try {
      const t = Date.now();
      await s.rememberDevice('u', 'd', t + 10);
      const key = (s as unknown as { uk(u: string, p: string): string }).uk('u', 'known');
      const read = await s.redis.hget(key, 'd');
      await s.rememberDevice('u', 'd', t + 60_000); // a handshake between knownDevices' read and its delete
      const forget = (s.redis as unknown as { llForgetDevice(k: string, d: string, v: string): Promise<number> }).llForgetDevice;
      assert.equal(await forget.call(s.redis, key, 'd', read!), 0);
      assert.deepEqual(await s.knownDevices('u', t + 20), ['d']);
      assert.equal(await forget.call(s.redis, key, 'd', String(t + 60_000)), 1, 'unchanged since read: forgotten');
    } finally {
      await s.close();
    }
  });

  // MONITOR watches one server: the cluster's variant does not have this test (rather than reporting it skipped).
  if (on === 'one server') test('a new device of a user with many devices online does not read every known device: remembering one costs about the same however many are online', async () => {
    const prefix = `kdmany${++prefixN}:`;
    const s = new RedisStore({ ...at(), prefix, maxKnownDevicesPerUser: 4 });
    let node: Redis | null = null;
    try {
      await s.joinCluster('n1', () => {});
      const t = Date.now();
      const connect = async (d: string) => {
        await s.rememberDevice('u', d, t + 60_000);
        await s.setOnline({ userId: 'u', deviceId: d, connectionId: `c-${d}`, nodeId: 'n1', transport: 'tcp', since: 1, clientInfo: {} });
      };
      for (let i = 0; i < 300; i++) await connect(`d${i}`);
      node = new Redis(redis!.url);
      const monitor = await node.monitor();
      const calls: string[] = [];
      monitor.on('monitor', (_t: string, args: string[]) => calls.push(String(args[0]).toLowerCase()));
      // 40 more devices connect, and 40 made-up ids come and go (connect, close), while the 300 stay online.
      for (let i = 0; i < 40; i++) await connect(`e${i}`);
      for (let i = 0; i < 40; i++) {
        await connect(`x${i}`);
        await s.setOffline('u', `x${i}`, `c-x${i}`);
      }
      await new Promise((r) => setTimeout(r, 100));
      monitor.disconnect();
      const read = calls.filter((c) => c === 'hexists' || c === 'hgetall').length;
      assert.ok(read <= 80 * 20, `${read} known devices read (HEXISTS, HGETALL) for 80 new devices of a user with 300 online`);
      const known = await s.knownDevices('u', t);
      assert.ok(known.includes('x39') && known.includes('e39') && known.includes('d0'), 'the online ones and the newest are known');
      assert.ok(known.filter((d) => d.startsWith('x')).length <= 340 / 8 + 4, `made-up ids that went offline are still evicted (${known.length} known)`);
    } finally {
      node?.disconnect();
      await s.close();
    }
  });

  test("with every known device online, one user's made-up device ids keep no more devices' state than the bound (their dedup ids, 24 h each, and session indexes)", async () => {
    const prefix = `kdon${++prefixN}:`;
    const s = new RedisStore({ ...at(), prefix, maxKnownDevicesPerUser: 3 });
    try {
      await s.joinCluster('n1', () => {});
      const t = Date.now();
      // Three devices of the user stay connected (three links)...
      for (const d of ['a', 'b', 'c']) {
        await s.rememberDevice('u', d, t + 60_000);
        await s.setOnline({ userId: 'u', deviceId: d, connectionId: `c-${d}`, nodeId: 'n1', transport: 'tcp', since: 1, clientInfo: {} });
      }
      // ...while links with new device ids come and go, each recording client message ids (a handshake, DATA, close).
      for (let i = 0; i < 50; i++) {
        const d = `x${i}`;
        await s.rememberDevice('u', d, t + 60_000 + i);
        await s.saveSession({ sessionId: `s${i}`, resumeToken: `${prefix}t${i}`, userId: 'u', deviceId: d, clientInfo: {}, createdAt: 1, inSeq: 0 }, t + 60_000);
        for (let m = 0; m < 5; m++) await s.markInbound('u', d, `m${m}`, t);
      }
      const inbound = (await keysLike(s, `${prefix}*:in:*`)).length;
      const indexes = (await keysLike(s, `${prefix}*:dsess:*`)).length;
      assert.ok(inbound <= 4 && indexes <= 4, `${inbound} devices' dedup ids and ${indexes} session indexes kept with maxKnownDevicesPerUser 3`);
      assert.deepEqual((await s.devices('u')).map((e) => e.deviceId).sort(), ['a', 'b', 'c'], 'no online device lost its state');
      assert.ok((await s.knownDevices('u', t)).includes('x49'), 'the newest is known (pushes queue for it)');
    } finally {
      await s.close();
    }
  });

  test('presence of a node whose lease lapsed is not reported; an earlier incarnation of a live node is cleaned up', async () => {
    const a = new RedisStore({ ...at(), prefix: 'lease:', leaseTtlMs: 300, leaseRenewMs: 100 });
    const b = new RedisStore({ ...at(), prefix: 'lease:', leaseTtlMs: 300, leaseRenewMs: 100 });
    await a.joinCluster('A', () => {});
    await b.joinCluster('B', () => {});
    await a.setOnline({ userId: 'u', deviceId: 'd1', connectionId: 'c1', nodeId: 'A', transport: 'tcp', since: 1, clientInfo: {} });
    await b.setOnline({ userId: 'u', deviceId: 'd2', connectionId: 'c2', nodeId: 'B', transport: 'tcp', since: 1, clientInfo: {} });
    assert.deepEqual((await b.devices('u')).map((e) => e.nodeId).sort(), ['A', 'B']);
    // A dies without a word: its lease stops being renewed.
    a.abandon();
    await new Promise((r) => setTimeout(r, 450));
    assert.deepEqual((await b.devices('u')).map((e) => e.nodeId), ['B']);
    // Not deleted: a lease can lapse on a live node (a stall), which then writes its presence again.
    assert.equal(await b.redis.hlen('lease:{u:u}:presence'), 2);
    // A comes back under the same id: a new incarnation, so the old entry is gone for good.
    const a2 = new RedisStore({ ...at(), prefix: 'lease:', leaseTtlMs: 300, leaseRenewMs: 100 });
    await a2.joinCluster('A', () => {});
    assert.deepEqual((await b.devices('u')).map((e) => e.nodeId), ['B']);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await b.redis.hlen('lease:{u:u}:presence'), 1, "the old incarnation's entry was deleted");
    await a2.close();
    await b.close();
  });

  test('acknowledging, or overflowing, a full mailbox does not read it whole: an ACK costs what it removes', async () => {
    const s = new RedisStore({ ...at(), prefix: `full${++prefixN}:` });
    let node: Redis | null = null;
    try {
      const limits = { maxMessages: 500, maxBytes: 1 << 20 };
      for (let i = 0; i < 500; i++) await s.enqueue('u', 'd', msg(`m${i}`, 1e13, 10), limits);
      await s.take('u', 'd', 'h', 0);
      // Lua's own calls show in MONITOR on the node that runs them (one server; on a cluster, the mailbox's master).
      node = new Redis(on === 'one server' ? redis!.url : await masterOf(s, 'u', 'd'));
      const monitor = await node.monitor();
      const calls: string[] = [];
      monitor.on('monitor', (_t: string, args: string[]) => calls.push(String(args[0]).toLowerCase()));
      for (let i = 1; i <= 5; i++) assert.equal((await s.ack('u', 'd', 'h', i)).length, 1);
      // At its bound (495 here): the oldest is evicted.
      assert.equal((await s.enqueue('u', 'd', msg('over', 1e13, 10), { ...limits, maxMessages: 495 })).length, 1);
      await new Promise((r) => setTimeout(r, 100));
      monitor.disconnect();
      assert.ok(calls.includes('lpop'), `the script ran where watched: ${calls.slice(0, 10)}`);
      assert.equal(calls.filter((c) => c === 'lrange').length, 0, 'no LRANGE of the mailbox');
      assert.equal(await s.depth('u', 'd'), 495);
    } finally {
      node?.disconnect();
      await s.close();
    }
  });

  test('a take by the mailbox\'s holder reads what it hands out, not the whole mailbox (a device that never acknowledges keeps its mailbox full, and each push flushes)', async () => {
    const s = new RedisStore({ ...at(), prefix: `tail${++prefixN}:` });
    let node: Redis | null = null;
    try {
      const limits = { maxMessages: 500, maxBytes: 1 << 20 };
      for (let i = 0; i < 500; i++) await s.enqueue('u', 'd', msg(`m${i}`, 1e13, 10), limits);
      assert.equal((await s.take('u', 'd', 'h', 0)).length, 500);
      node = new Redis(on === 'one server' ? redis!.url : await masterOf(s, 'u', 'd'));
      const monitor = await node.monitor();
      const lranges: string[][] = [];
      monitor.on('monitor', (_t: string, args: string[]) => String(args[0]).toLowerCase() === 'lrange' && lranges.push(args.map(String)));
      await s.enqueue('u', 'd', msg('new', 1e13, 10), limits);
      // Sent up to 450: the 50 numbered past it (across chunks) and the new one, numbered next.
      assert.deepEqual((await s.take('u', 'd', 'h', 450)).map((m) => [m.id, m.seq]), [...Array.from({ length: 50 }, (_, k) => [`m${450 + k}`, 451 + k]), ['new', 501]]);
      assert.deepEqual((await s.take('u', 'd', 'h', 501)).map((m) => m.id), [], 'nothing past what the link carries');
      await new Promise((r) => setTimeout(r, 100));
      monitor.disconnect();
      const read = lranges.reduce((n, a) => n + (Number(a[3]) - Number(a[2]) + 1), 0);
      assert.ok(lranges.length > 0 && lranges.every((a) => a[3] !== '-1') && read < 200, `read ${read} entries: ${JSON.stringify(lranges.map((a) => a.slice(2)))}`);
      // Still one mailbox: acknowledged in order, and a new holder renumbers what is left.
      assert.equal((await s.ack('u', 'd', 'h', 500)).length, 499, 'm0 was evicted for the new one');
      assert.deepEqual((await s.take('u', 'd', 'h2', 0)).map((m) => [m.id, m.seq]), [['new', 502]]);
    } finally {
      node?.disconnect();
      await s.close();
    }
  });

  test('a route published to a node reaches its handler', async () => {
    const a = new RedisStore({ ...at(), prefix: 'route:' });
    const got: string[][] = [];
    await a.joinCluster('A', (u, d) => got.push([u, d]));
    const b = new RedisStore({ ...at(), prefix: 'route:' });
    await b.route('A', 'user 1', 'dev:1');
    for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, [['user 1', 'dev:1']]);
    await a.close();
    await b.close();
  });

  test('kicks, disconnects, replaced notices and broadcasts reach the other node; a node does not hear its own broadcast', async () => {
    const got: { a: unknown[]; b: unknown[] } = { a: [], b: [] };
    const a = new RedisStore({ ...at(), prefix: 'ctl:' });
    const b = new RedisStore({ ...at(), prefix: 'ctl:' });
    await a.joinCluster('A', () => {}, undefined, (c) => got.a.push(c));
    await b.joinCluster('B', () => {}, undefined, (c) => got.b.push(c));
    assert.deepEqual(await a.nodes(), ['A', 'B']);
    await b.control('A', { kind: 'kick', userId: 'u', deviceId: 'd' });
    await b.control('A', { kind: 'disconnect', userId: 'u', reconnectAfterMs: 500 });
    await b.control('A', { kind: 'replaced', userId: 'u', deviceId: 'd', connectionId: 'old', byConnectionId: 'new', resumed: true });
    await b.broadcast(Buffer.from('hi'), 'm1');
    // A kind this version does not know (a newer node's) is ignored, not taken for a disconnect.
    await b.redis.publish('ctl:route:A', JSON.stringify({ k: 'future', u: 'u', d: 'd' }));
    for (let i = 0; i < 100 && got.a.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    // Each PUBLISH may go through another node of a cluster: no order between them.
    const byKind = (xs: unknown[]) => [...xs].sort((x, y) => String((x as { kind: string }).kind).localeCompare((y as { kind: string }).kind));
    assert.deepEqual(byKind(got.a), byKind([
      { kind: 'kick', userId: 'u', deviceId: 'd' },
      { kind: 'disconnect', userId: 'u', reconnectAfterMs: 500 },
      { kind: 'replaced', userId: 'u', deviceId: 'd', connectionId: 'old', byConnectionId: 'new', resumed: true },
      { kind: 'broadcast', payload: Buffer.from('hi'), id: 'm1' },
    ]));
    assert.deepEqual(got.b, []);
    await a.close();
    await b.close();
  });
});

test('redis store: the periodic sweep reads a few shards in turn, and every due message goes within one round of them', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const s = new RedisStore({ url: redis!.url, prefix: `sweep${++prefixN}:`, mailboxShards: 4, sweepShardsPerCall: 1 });
  try {
    for (let u = 0; u < 12; u++) await s.enqueue(`user${u}`, 'd', msg(`m${u}`, 5), LIMITS);
    const perCall: number[] = [];
    for (let i = 0; i < 4; i++) perCall.push((await s.expire(10)).length);
    assert.equal(perCall.reduce((a, b) => a + b, 0), 12, 'all twelve within four calls');
    assert.ok(perCall.filter((n) => n > 0).length > 1, `spread over the shards: ${perCall}`);
    assert.deepEqual(await s.expire(10), []);
  } finally {
    await s.close();
  }
});

test('redis store: one expiry call reads a bounded part of what is due and answers without payloads (full mailboxes due at once made one answer of gigabytes); with `all`, everything due goes', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const s = new RedisStore({ url: redis!.url, prefix: `budget${++prefixN}:`, mailboxShards: 1 });
  try {
    (s as unknown as { expireBudget: number }).expireBudget = 4;
    const fill = async (tag: string) => {
      for (const u of ['a', 'b', 'c']) for (let i = 0; i < 3; i++) await s.enqueue(u, 'd', { ...msg(`${tag}${u}${i}`, 5, 1000) }, LIMITS);
    };
    await fill('x');
    const first = await s.expire(10);
    assert.equal(first.length, 6, 'two mailboxes (3 + 3 read, past 4): the third waits');
    assert.ok(first.every((g) => g.message.payload.length === 0 && g.message.expiresAt === 5 && g.message.enqueuedAt === 1000), 'ids and times, no payload');
    assert.equal((await s.expire(10)).length, 3, 'the next call takes the rest');
    assert.deepEqual(await s.expire(10), []);
    await fill('y');
    const every = await s.expire(10, true);
    assert.deepEqual(every.map((g) => g.message.id).sort(), ['ya0', 'ya1', 'ya2', 'yb0', 'yb1', 'yb2', 'yc0', 'yc1', 'yc2']);
    for (const u of ['a', 'b', 'c']) assert.equal(await s.depth(u, 'd'), 0);
  } finally {
    await s.close();
  }
});

test('memory store: known devices and dedup ids are bounded in all and swept when past their time', async () => {
  const s = new MemoryStore({ maxKnownDevices: 100, maxDedupBytes: 100 * (64 + 4), dedupWindowMs: 1000 });
  const t = 1_000_000;
  for (let i = 0; i < 1000; i++) {
    await s.rememberDevice(`u${i}`, 'd', t + 1000 + i);
    await s.markInbound(`u${i}`, 'd', `m${String(i).padStart(3, '0')}`, t + i);
  }
  assert.equal(s.footprint.knownDevices, 100, 'the devices seen longest ago went');
  assert.deepEqual(await s.knownDevices('u999', t), ['d']);
  assert.deepEqual(await s.knownDevices('u0', t), []);
  assert.ok(s.footprint.dedupBytes <= 100 * 68, `dedup bytes bounded (${s.footprint.dedupBytes})`);
  assert.equal(await s.seenInbound('u999', 'd', 'm999', t + 999), true, 'the most recent kept');
  // Past their time, both go at the next sweep, messages or not.
  await s.expire(t + 5000);
  assert.deepEqual(s.footprint, { mailboxes: 0, knownDevices: 0, dedupDevices: 0, dedupBytes: 0 });
  await s.close();
});

test("memory store: one user's dedup ids are bounded on their own (maxDedupBytesPerUser): its ids under many devices push out its own, never another user's", async () => {
  const s = new MemoryStore({ maxDedupBytes: 100 * (64 + 4), maxDedupBytesPerUser: 10 * (64 + 4) });
  const t = 1_000_000;
  await s.markInbound('alice', 'phone', 'a000', t);
  for (let i = 0; i < 1000; i++) await s.markInbound('mallory', `d${i % 50}`, `m${String(i).padStart(3, '0')}`, t + 1 + i);
  assert.equal(await s.seenInbound('alice', 'phone', 'a000', t + 2000), true, "alice's id is kept");
  assert.equal(await s.seenInbound('mallory', 'd49', 'm999', t + 2000), true, "mallory's newest is kept");
  assert.equal(await s.seenInbound('mallory', 'd0', 'm000', t + 2000), false, "mallory's oldest went");
  assert.ok(s.footprint.dedupBytes <= 11 * 68, `${s.footprint.dedupBytes} bytes`);
  // A bound below one id keeps the id just recorded.
  const tiny = new MemoryStore({ maxDedupBytesPerUser: 1 });
  assert.equal(await tiny.markInbound('u', 'd', 'x', t), true);
  assert.equal(await tiny.markInbound('u', 'd', 'x', t + 1), false);
  await s.expire(t + 25 * 3600_000);
  assert.deepEqual(s.footprint, { mailboxes: 0, knownDevices: 0, dedupDevices: 0, dedupBytes: 0 });
  await s.close();
  await tiny.close();
});

test('memory store: queued bytes are bounded in all (maxQueuedBytes): a message past it is refused with LL_ERR_QUEUE_FULL, nothing queued is evicted for it, and room comes back as messages are acknowledged, evicted or expire', async () => {
  const s = new MemoryStore({ maxQueuedBytes: 1000 });
  const big = { maxMessages: 100, maxBytes: 600 };
  await s.enqueue('u1', 'd', msg('a', 1e13, 600), big);
  await s.enqueue('u2', 'd', msg('b', 2000, 300), big);
  await assert.rejects(s.enqueue('u3', 'd', msg('c', 1e13, 101), big), { code: 'LL_ERR_QUEUE_FULL' });
  assert.equal(s.footprint.mailboxes, 2, 'no mailbox made for the refused message');
  await s.enqueue('u3', 'd', msg('c', 1e13, 100), big); // exactly the bound
  assert.equal((await s.queueTotals()).bytes, 1000);
  // Acknowledged: room again.
  await s.take('u1', 'd', 'h', 0);
  await s.ack('u1', 'd', 'h', 1);
  await s.enqueue('u4', 'd', msg('d', 1e13, 600), big);
  await assert.rejects(s.enqueue('u5', 'd', msg('e', 1e13, 1), big), { code: 'LL_ERR_QUEUE_FULL' });
  // Expired: room again.
  await s.expire(3000);
  await s.enqueue('u5', 'd', msg('e', 1e13, 300), big);
  // A device's own bound evicting its oldest gives room back too.
  await s.enqueue('u5', 'd', msg('f', 1e13, 300), { maxMessages: 1, maxBytes: 600 });
  assert.equal((await s.queueTotals()).bytes, 1000);
  // A device online here is taken past the bound (its messages are on their way out), up to twice it.
  await s.setOnline({ userId: 'u6', deviceId: 'd', connectionId: 'c6', nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
  await s.enqueue('u6', 'd', msg('g', 1e13, 500), big);
  assert.equal((await s.queueTotals()).bytes, 1500);
  await s.enqueue('u6', 'd', msg('h', 1e13, 500), { maxMessages: 100, maxBytes: 1000 });
  await assert.rejects(s.enqueue('u6', 'd', msg('i', 1e13, 1), { maxMessages: 100, maxBytes: 2000 }), { code: 'LL_ERR_QUEUE_FULL' });
  await s.close();
});

test('memory store: past the user\'s bound, the oldest messages of its devices not online make room for the one online (stale installs do not lock out the live phone); a user id holding NUL is accounted right', async () => {
  const s = new MemoryStore({ maxQueuedBytesPerUser: 4000 });
  const perDevice = { maxMessages: 1000, maxBytes: 1000 };
  const user = 'tenant\u0000alice';
  for (let d = 0; d < 4; d++) await s.rememberDevice(user, `stale${d}`, 1e13);
  await s.setOnline({ userId: user, deviceId: 'phone', connectionId: 'c', nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
  const dropped: string[] = [];
  for (let i = 0; i < 20; i++) {
    for (let d = 0; d < 4; d++) for (const e of await s.enqueue(user, `stale${d}`, msg(`s${i}`, 1e13 + i, 100), perDevice)) dropped.push(`${e.deviceId ?? `stale${d}`}:${e.id}`);
    const out = await s.enqueue(user, 'phone', msg(`p${i}`, 1e13, 100), perDevice);
    for (const e of out) dropped.push(`${e.deviceId}:${e.id}`);
    await s.take(user, 'phone', 'c', 0);
    await s.ack(user, 'phone', 'c', 1e9); // the phone acknowledges at once
  }
  assert.ok(dropped.some((x) => x.startsWith('stale')), 'the stale devices\' oldest went');
  assert.ok((await s.queueTotals()).bytes <= 4000);
  // Expiry gives the user's room back (the key holds NUL: it is not split to find the user).
  await s.expire(1e13 + 100);
  await s.enqueue(user, 'phone', msg('after', 2e13, 3900), { maxMessages: 10, maxBytes: 4000 });
  await s.close();
});

test('memory store: one user\'s devices together hold at most maxQueuedBytesPerUser, online or not, so devices that never acknowledge cannot take what every user shares', async () => {
  const s = new MemoryStore({ maxQueuedBytes: 100_000, maxQueuedBytesPerUser: 10_000 });
  const perDevice = { maxMessages: 1000, maxBytes: 4000 };
  // The attacker's 40 devices, all online, none acknowledging: each would hold its 4,000 bytes.
  for (let d = 0; d < 40; d++) await s.setOnline({ userId: 'mallory', deviceId: `d${d}`, connectionId: `c${d}`, nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
  let refused = 0;
  for (let i = 0; i < 5; i++) {
    for (let d = 0; d < 40; d++) await s.enqueue('mallory', `d${d}`, msg(`m${i}`, 1e13, 1000), perDevice).catch((e: { code: string }) => (assert.equal(e.code, 'LL_ERR_QUEUE_FULL'), refused++));
  }
  assert.equal((await s.queueTotals()).bytes, 10_000);
  assert.equal(refused, 190);
  // Everyone else's offline pushes still go in.
  await s.enqueue('alice', 'phone', msg('hi', 1e13, 9000), { maxMessages: 10, maxBytes: 1 << 20 }).catch(() => assert.fail('alice refused'));
  // Acknowledged, expired: the user's room comes back.
  await s.take('mallory', 'd0', 'c0', 0);
  await s.ack('mallory', 'd0', 'c0', 10);
  await s.enqueue('mallory', 'd1', msg('again', 1e13, 1000), perDevice);
  await s.close();
});

test('memory store: the devices kept per user are bounded (maxDevicesPerUser): a new one drops one holding only sessions, then the one seen longest ago, never an online one', async () => {
  const s = new MemoryStore({ maxDevicesPerUser: 4 });
  const far = Date.now() + 60_000;
  const rec = (d: string) => ({ sessionId: `s-${d}`, resumeToken: `t-${d}`, userId: 'u', deviceId: d, clientInfo: {}, createdAt: 1, inSeq: 0 });
  const online = (d: string) => ({ userId: 'u', deviceId: d, connectionId: `c-${d}`, nodeId: 'n', transport: 'tcp' as const, since: 1, clientInfo: {} });
  await s.setOnline(online('on'));
  await s.rememberDevice('u', 'k1', far + 1);
  await s.rememberDevice('u', 'k2', far + 2);
  await s.saveSession(rec('sess'), far); // a device that only holds a session
  // A connect-and-close loop of new devices: each pushes out what is not online, session-only first.
  await s.rememberDevice('u', 'k3', far + 3);
  assert.equal(await s.loadSession('t-sess', Date.now()), undefined, 'the session-only device went first');
  assert.deepEqual((await s.knownDevices('u', Date.now())).sort(), ['k1', 'k2', 'k3']);
  await s.rememberDevice('u', 'k4', far + 4);
  assert.deepEqual((await s.knownDevices('u', Date.now())).sort(), ['k2', 'k3', 'k4'], 'then the one seen longest ago');
  for (let i = 0; i < 1000; i++) {
    await s.saveSession(rec(`x${i}`), far);
    await s.rememberDevice('u', `x${i}`, far + 10 + i);
  }
  assert.ok(s.sessionCount <= 4, `sessions of shed devices went with them (${s.sessionCount})`);
  assert.deepEqual((await s.devices('u')).map((e) => e.deviceId), ['on'], 'the online device stays');
  assert.equal((await s.knownDevices('u', Date.now())).length, 3);
  await s.close();
});

test('memory store: records of ended links are bounded in estimated bytes; open ones are not counted', async () => {
  const s = new MemoryStore({ maxDetachedSessionBytes: 10 * 1900 });
  const rec = (i: number, open: boolean) => ({ sessionId: `s${i}`, resumeToken: `t${i}`, userId: `u${i}`, deviceId: 'd', clientInfo: { blob: 'x'.repeat(1000) }, createdAt: i, inSeq: 0, ...(open ? { openOn: 'n' } : {}) });
  const far = Date.now() + 60_000;
  for (let i = 0; i < 20; i++) await s.saveSession(rec(i, true), far);
  assert.equal(s.sessionCount, 20, 'open sessions are not what the budget bounds');
  assert.equal(s.detachedSessionBytes, 0);
  // Their links end (saved again without openOn), then a connect-and-close loop of 100 more.
  for (let i = 0; i < 20; i++) await s.saveSession(rec(i, false), far);
  for (let i = 100; i < 200; i++) await s.saveSession(rec(i, false), far);
  assert.ok(s.detachedSessionBytes <= 10 * 1900, `${s.detachedSessionBytes} bytes`);
  assert.equal(s.sessionCount, 10, 'the ten most recently saved are kept');
  assert.ok(await s.loadSession('t199', Date.now()));
  assert.equal(await s.loadSession('t0', Date.now()), undefined);
  // A kept record whose link opens again leaves the budget.
  await s.saveSession(rec(199, true), far);
  assert.ok(s.detachedSessionBytes <= 9 * 1900);
  await s.close();
});

test("memory store: one user's records of ended links are bounded on their own (maxDetachedSessionBytesPerUser): its churn drops its own, never another user's", async () => {
  const s = new MemoryStore({ maxDetachedSessionBytes: 100 * 1900, maxDetachedSessionBytesPerUser: 10 * 1900 });
  const rec = (i: number, userId: string, deviceId = `d${i}`) => ({ sessionId: `s${i}`, resumeToken: `t${i}`, userId, deviceId, clientInfo: { blob: 'x'.repeat(1000) }, createdAt: i, inSeq: 0 });
  const far = Date.now() + 60_000;
  await s.saveSession(rec(0, 'alice', 'phone'), far);
  for (let i = 1; i <= 1000; i++) await s.saveSession(rec(i, 'mallory'), far);
  assert.ok(await s.loadSession('t0', Date.now()), "alice's record is kept");
  assert.ok(await s.loadSession('t1000', Date.now()), "mallory's newest is kept");
  assert.equal(await s.loadSession('t1', Date.now()), undefined, "mallory's oldest went");
  assert.ok(s.detachedSessionBytes <= 11 * 1900, `${s.detachedSessionBytes} bytes`);
  await s.close();
});

test('memory store: a record\'s estimated bytes count each clientInfo entry, not only its strings (1,000 empty entries are 50 KB of heap, not 1 KB)', async () => {
  const s = new MemoryStore();
  const rec = (clientInfo: Record<string, string>) => ({ sessionId: 's', resumeToken: 't', userId: 'u', deviceId: 'd', clientInfo, createdAt: 0, inSeq: 0 });
  const far = Date.now() + 60_000;
  await s.saveSession(rec({}), far);
  const bare = s.detachedSessionBytes;
  await s.saveSession(rec(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, '']))), far);
  assert.ok(s.detachedSessionBytes - bare >= 1000 * 40, `1,000 entries counted ${s.detachedSessionBytes - bare} bytes`);
  await s.close();
});

test('memory store: session records are bounded per device and in all (an attacker reconnecting without resuming, or with one token for many devices)', async () => {
  const s = new MemoryStore({ maxSessionsPerDevice: 2, maxSessions: 5 });
  const rec = (i: number, deviceId = 'd') => ({ sessionId: `s${i}`, resumeToken: `t${i}`, userId: 'u', deviceId, clientInfo: {}, createdAt: i, inSeq: 0 });
  const far = Date.now() + 60_000;
  for (let i = 0; i < 10; i++) await s.saveSession(rec(i), far);
  assert.equal(s.sessionCount, 2, 'two per device');
  assert.equal(await s.loadSession('t7', Date.now()), undefined, 'older ones dropped');
  assert.ok(await s.loadSession('t9', Date.now()), 'the newest kept');
  await s.saveSession({ ...rec(9), inSeq: 5 }, far); // saving again is not a new session
  assert.equal(s.sessionCount, 2);
  for (let i = 0; i < 10; i++) await s.saveSession(rec(100 + i, `dev${i}`), far);
  assert.equal(s.sessionCount, 5, 'five in all');
  assert.ok(await s.loadSession('t109', Date.now()));
  assert.equal(await s.loadSession('t9', Date.now()), undefined, 'the least recently saved went first');
  await s.close();
});

test('memory store: expired records never loaded again are swept a step at a time as saves go on, each record looked at once a round', async () => {
  const s = new MemoryStore({ maxSessions: 1_000_000, maxDetachedSessionBytes: 1 << 30 });
  const rec = (i: number) => ({ sessionId: `s${i}`, resumeToken: `t${i}`, userId: `u${i}`, deviceId: 'd', clientInfo: {}, createdAt: i, inSeq: 0 });
  const past = Date.now() - 1;
  const far = Date.now() + 600_000;
  // 5,000 records already expired (a TTL passed while nobody loaded them), then live ones saved after.
  for (let i = 0; i < 5000; i++) await s.saveSession(rec(i), past);
  assert.ok(s.sessionCount < 5000, `the sweeps during those saves dropped some (${s.sessionCount} left)`);
  // A sweep every 1,024 saves looks at 2,048 records: 3 more sweeps take the rest whatever the order.
  for (let i = 5000; i < 5000 + 3 * 1024; i++) await s.saveSession(rec(i), far);
  assert.equal(s.sessionCount, 3 * 1024, 'only the live records are left');
  // A small store: a sweep stops after one round rather than going round again.
  const small = new MemoryStore();
  for (let i = 0; i < 1024; i++) await small.saveSession(rec(i), i < 3 ? past : far);
  assert.equal(small.sessionCount, 1021);
  await s.close();
  await small.close();
});
