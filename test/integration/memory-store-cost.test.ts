import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { QueuedMessage } from '../../src/gateway/stores/store.js';

// What one operation of the in-memory store costs at its bounds, counted in
// reads of the queued messages' fields (a wall-time bound would be flaky on a
// shared machine): the store runs on the gateway's event loop, so an operation
// that walks everything it holds stalls every connection.

const far = 1e13;
const session = (userId: string, deviceId: string) => ({ sessionId: `s-${deviceId}`, resumeToken: `t-${userId}-${deviceId}`, userId, deviceId, clientInfo: {}, createdAt: 1, inSeq: 0 });

/** Makes every stored message of `deviceId` count the reads of `field` (take hands out the stored objects). */
async function countReads(s: MemoryStore, userId: string, deviceId: string, field: 'enqueuedAt' | 'expiresAt', counter: { reads: number }): Promise<void> {
  for (const m of await s.take(userId, deviceId, 'counting', 0)) {
    const v = m[field];
    Object.defineProperty(m as QueuedMessage, field, {
      get: () => (counter.reads++, v),
      enumerable: true,
    });
  }
}

test('memory store: the per-user bound takes the oldest messages across the user\'s offline devices without scanning every device per message taken', async () => {
  const devices = 200;
  const perDevice = 50;
  const s = new MemoryStore({ maxQueuedBytesPerUser: devices * perDevice });
  const limits = { maxMessages: 1000, maxBytes: 4096 };
  // Offline devices of one user that held sessions, each with small messages queued (a client that never acknowledged).
  for (let d = 0; d < devices; d++) s.saveSession(session('u', `d${d}`), far);
  s.saveSession(session('u', 'new'), far);
  let at = 0;
  for (let i = 0; i < perDevice; i++) for (let d = 0; d < devices; d++) await s.enqueue('u', `d${d}`, { id: `m${i}`, payload: new Uint8Array(1), enqueuedAt: at++, expiresAt: far }, limits);
  const counter = { reads: 0 };
  for (let d = 0; d < devices; d++) await countReads(s, 'u', `d${d}`, 'enqueuedAt', counter);
  // One push as large as a device may hold: 4,096 one-byte messages make room for it.
  const evicted = await s.enqueue('u', 'new', { id: 'big', payload: new Uint8Array(4096), enqueuedAt: at++, expiresAt: far }, limits);
  assert.equal(evicted.length, 4096);
  // Oldest first across the devices: exactly the first 4,096 enqueued.
  assert.deepEqual(evicted.map((m) => m.enqueuedAt).sort((a, b) => a - b), Array.from({ length: 4096 }, (_, i) => i));
  assert.equal((await s.queueTotals()).bytes, devices * perDevice);
  // A scan of every device per message taken read ~1.6 million; a heap of them reads ~log2(200) per message.
  assert.ok(counter.reads < 4096 * 40, `${counter.reads} reads of enqueuedAt to take 4,096 messages from ${devices} devices`);
  await s.close();
});

test('memory store: past the user\'s bound, messages of devices the known-device bound forgot still make room (they do not lock the live device out until they expire)', async () => {
  const s = new MemoryStore({ maxKnownDevicesPerUser: 2, maxQueuedBytesPerUser: 3000 });
  const limits = { maxMessages: 10, maxBytes: 1000 };
  const msg = (id: string, enqueuedAt: number, bytes: number) => ({ id, payload: new Uint8Array(bytes), enqueuedAt, expiresAt: far });
  // Three old installs fill the user's bound; each newer install pushes the oldest out of the known devices.
  s.rememberDevice('u', 's0', far);
  s.rememberDevice('u', 's1', far + 1);
  await s.enqueue('u', 's0', msg('a', 1, 1000), limits);
  await s.enqueue('u', 's1', msg('b', 2, 1000), limits);
  s.rememberDevice('u', 's2', far + 2); // s0 forgotten, its mailbox kept
  await s.enqueue('u', 's2', msg('c', 3, 1000), limits);
  s.rememberDevice('u', 's3', far + 3);
  s.rememberDevice('u', 's4', far + 4); // s1, s2 forgotten
  assert.deepEqual((await s.knownDevices('u', 0)).sort(), ['s3', 's4']);
  assert.equal((await s.queueTotals()).bytes, 3000);
  // The live phone comes online: a push to it must evict the oldest of the stale ones, not fail.
  s.setOnline({ userId: 'u', deviceId: 'phone', connectionId: 'c', nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
  const evicted = await s.enqueue('u', 'phone', msg('p', 4, 500), limits);
  assert.deepEqual(
    evicted.map((m) => `${m.deviceId}:${m.id}`),
    ['s0:a'],
  );
  assert.equal(await s.depth('u', 'phone'), 1);
  assert.equal((await s.queueTotals()).bytes, 2500);
  await s.close();
});

test('memory store: the expiry sweep reads the messages only of mailboxes with one due (it runs every second; reading all of them stalled the loop 300 ms at a million held)', async () => {
  const s = new MemoryStore();
  const limits = { maxMessages: 1000, maxBytes: 1 << 20 };
  const mailboxes = 100;
  const perBox = 50;
  for (let i = 0; i < perBox; i++) for (let d = 0; d < mailboxes; d++) await s.enqueue(`u${d}`, 'd', { id: `m${i}`, payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: 1_000_000 + i }, limits);
  // One mailbox whose later message expires first (a push with a shorter ttlMs).
  await s.enqueue('v', 'd', { id: 'long', payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: far }, limits);
  await s.enqueue('v', 'd', { id: 'short', payload: new Uint8Array(1), enqueuedAt: 2, expiresAt: 500 }, limits);
  const counter = { reads: 0 };
  for (let d = 0; d < mailboxes; d++) await countReads(s, `u${d}`, 'd', 'expiresAt', counter);
  // Nothing of the u mailboxes is due: none of their messages is read.
  const gone = await s.expire(600);
  assert.deepEqual(gone.map((g) => `${g.userId}:${g.message.id}`), ['v:short']);
  assert.equal(counter.reads, 0, `${counter.reads} messages read by a sweep with none of them due`);
  assert.equal(await s.depth('v', 'd'), 1);
  // Due ones still go, each mailbox read once.
  const later = await s.expire(1_000_000);
  assert.equal(later.length, mailboxes);
  assert.ok(counter.reads <= mailboxes * perBox, `${counter.reads} reads`);
  assert.equal((await s.queueTotals()).messages, mailboxes * (perBox - 1) + 1);
  await s.close();
});

test('memory store: a push to a device whose full mailbox is never acknowledged costs what it adds: the retry check and the flush\'s take do not read every message held', async () => {
  const s = new MemoryStore();
  const limits = { maxMessages: 1000, maxBytes: 1 << 20 };
  const msg = (id: string) => ({ id, payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: far });
  s.setOnline({ userId: 'u', deviceId: 'd', connectionId: 'c', nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
  for (let i = 0; i < 1000; i++) await s.enqueue('u', 'd', msg(`m${i}`), limits);
  const held = await s.take('u', 'd', 'c', 0);
  let sent = held.at(-1)!.seq;
  let reads = 0;
  for (const m of held) {
    const id = m.id;
    let seq = m.seq;
    Object.defineProperty(m as QueuedMessage, 'id', { get: () => (reads++, id), enumerable: true });
    Object.defineProperty(m as QueuedMessage, 'seq', { get: () => (reads++, seq), set: (v: number) => (seq = v), enumerable: true });
  }
  for (let i = 1000; i < 1010; i++) {
    // The device's own bound drops its oldest; the flush then takes what is new.
    const dropped = await s.enqueue('u', 'd', msg(`m${i}`), limits);
    assert.deepEqual(dropped.map((e) => e.id), [`m${i - 1000}`]);
    const out = await s.take('u', 'd', 'c', sent);
    assert.deepEqual(out.map((e) => [e.id, e.seq]), [[`m${i}`, sent + 1]]);
    sent = out[0].seq;
  }
  // Reading all of them took 1,000 reads of ids per enqueue and 2,000 of seqs per take.
  assert.ok(reads <= 10 * 4, `${reads} reads of held messages for 10 pushes`);
  // Still exact: an id held is not queued twice, one that left may be queued anew.
  assert.deepEqual(await s.enqueue('u', 'd', msg('m500'), limits), []);
  assert.equal(await s.depth('u', 'd'), 1000);
  assert.deepEqual((await s.enqueue('u', 'd', msg('m0'), limits)).map((e) => e.id), ['m10']);
  const again = await s.take('u', 'd', 'c', sent);
  assert.deepEqual(again.map((e) => e.id), ['m0']);
  sent = again[0].seq;
  // Acknowledged: their ids may come again (m11..m1005 go; m1006..m1009 and m0 stay).
  assert.equal((await s.ack('u', 'd', 'c', sent - 5)).length, 995);
  assert.equal(await s.depth('u', 'd'), 5);
  assert.deepEqual(await s.enqueue('u', 'd', msg('m11'), limits), []);
  assert.equal(await s.depth('u', 'd'), 6);
  assert.deepEqual(await s.enqueue('u', 'd', msg('m1009'), limits), [], 'm1009 still held');
  assert.equal(await s.depth('u', 'd'), 6);
  await s.close();
});

test('memory store: known devices past their time that still hold messages are not looked at again by every sweep; they go when their mailbox empties', async () => {
  const s = new MemoryStore();
  const limits = { maxMessages: 10, maxBytes: 1 << 20 };
  const n = 1000;
  // Devices not seen for knownDeviceTtlMs that still get pushes: known while their mailbox holds messages.
  for (let i = 0; i < n; i++) {
    s.rememberDevice(`u${i}`, 'd', 1000 + i);
    await s.enqueue(`u${i}`, 'd', { id: 'm', payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: 1_000_000 + i }, limits);
  }
  s.rememberDevice('fresh', 'd', 10_000_000);
  await s.expire(5000);
  assert.equal(s.knownDeviceCount, n + 1);
  assert.deepEqual(await s.knownDevices('u7', 5000), ['d'], 'past its time, still holding a message');
  // Each later sweep (every second) with nothing due does not look at them again.
  const mailboxes = (s as unknown as { mailboxes: { get(u: string, d: string): unknown } }).mailboxes;
  const get = mailboxes.get.bind(mailboxes);
  let lookups = 0;
  mailboxes.get = (u: string, d: string) => (lookups++, get(u, d));
  for (let k = 0; k < 10; k++) await s.expire(6000 + k);
  assert.equal(lookups, 0, `${lookups} mailbox lookups in 10 sweeps with ${n} known devices past their time`);
  mailboxes.get = get;
  // A device seen again is known for its new time; the others go as their messages expire, or by the bound first.
  s.rememberDevice('u0', 'd', 10_000_000);
  const gone = await s.expire(1_000_000 + 499);
  assert.equal(gone.length, 500);
  assert.equal(s.knownDeviceCount, n + 1 - 499, 'u1..u499 forgotten with their last message; u0 seen again');
  assert.deepEqual(await s.knownDevices('u1', 1_000_000 + 499), []);
  assert.deepEqual(await s.knownDevices('u0', 1_000_000 + 499), ['d']);
  assert.deepEqual(await s.knownDevices('u999', 1_000_000 + 499), ['d']);
  await s.close();
  const b = new MemoryStore({ maxKnownDevices: 3 });
  b.rememberDevice('a', 'd', 100);
  await b.enqueue('a', 'd', { id: 'm', payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: 1e13 }, limits);
  b.rememberDevice('b', 'd', 1e12);
  b.rememberDevice('c', 'd', 1e12 + 1);
  await b.expire(200); // a lingers
  b.rememberDevice('e', 'd', 1e12 + 2);
  assert.deepEqual(await b.knownDevices('a', 200), [], 'the device past its time went first at the bound');
  assert.deepEqual(await b.knownDevices('b', 200), ['d']);
  await b.close();
});

test('memory store: past the user\'s bound with every other device online, a push is refused per device without walking the user\'s mailboxes', async () => {
  const devices = 300;
  const s = new MemoryStore({ maxQueuedBytesPerUser: devices * 100 });
  const limits = { maxMessages: 1000, maxBytes: 1000 };
  // One user's devices, all online, none acknowledging, together at the user's bound.
  for (let d = 0; d < devices; d++) s.setOnline({ userId: 'u', deviceId: `d${d}`, connectionId: `c${d}`, nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
  for (let d = 0; d < devices; d++) await s.enqueue('u', `d${d}`, { id: 'first', payload: new Uint8Array(100), enqueuedAt: 1, expiresAt: far }, limits);
  const mailboxes = (s as unknown as { mailboxes: { values(u: string): Iterable<unknown> } }).mailboxes;
  const values = mailboxes.values.bind(mailboxes);
  let walks = 0;
  mailboxes.values = (u: string) => (walks++, values(u));
  let refused = 0;
  for (let d = 0; d < devices; d++) {
    await s.enqueue('u', `d${d}`, { id: 'next', payload: new Uint8Array(10), enqueuedAt: 2, expiresAt: far }, limits).catch((e: { code: string }) => (assert.equal(e.code, 'LL_ERR_QUEUE_FULL'), refused++));
  }
  assert.equal(refused, devices);
  assert.equal(walks, 0, `${walks} walks of the user's ${devices} mailboxes for one push to its devices`);
  // One goes offline: its messages are room again, found by the walk.
  await s.setOffline('u', 'd0', 'c0');
  mailboxes.values = values;
  const evicted = await s.enqueue('u', 'd1', { id: 'next', payload: new Uint8Array(10), enqueuedAt: 2, expiresAt: far }, limits);
  assert.deepEqual(evicted.map((e) => `${e.deviceId}:${e.id}`), ['d0:first']);
  await s.close();
});

test('memory store: the bytes of a user\'s devices not online stay exact through presence changes, acknowledgements, evictions and expiry', async () => {
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor((seed / 2 ** 31) * n));
  const s = new MemoryStore({ maxQueuedBytesPerUser: 3000, maxDevicesPerUser: 4, maxKnownDevicesPerUser: 3 });
  const limits = { maxMessages: 5, maxBytes: 1000 };
  const inner = s as unknown as {
    mailboxes: { values(u: string): Iterable<{ deviceId: string; bytes: number }> };
    devicesByUser: { get(u: string, d: string): { online: boolean } | undefined };
    userOfflineBytes: Map<string, number>;
  };
  const users = ['a', 'b'];
  const conn = new Map<string, string>();
  let n = 0;
  let refused = 0;
  let userEvicted = 0;
  for (let step = 0; step < 3000; step++) {
    const u = users[rnd(2)];
    const d = `d${rnd(6)}`;
    const k = `${u}/${d}`;
    switch (rnd(7)) {
      case 0:
        conn.set(k, `c${n++}`);
        s.setOnline({ userId: u, deviceId: d, connectionId: conn.get(k)!, nodeId: 'n', transport: 'tcp', since: 1, clientInfo: {} });
        break;
      case 1:
        if (conn.has(k)) await s.setOffline(u, d, conn.get(k)!);
        break;
      case 2:
      case 3:
        for (const e of await s.enqueue(u, d, { id: `m${n++}`, payload: new Uint8Array(1 + rnd(400)), enqueuedAt: step, expiresAt: step + 300 + rnd(1500) }, limits).catch(() => (refused++, []))) if (e.deviceId !== undefined) userEvicted++;
        break;
      case 4:
        if (conn.has(k)) {
          const got = await s.take(u, d, conn.get(k)!, 0);
          if (got.length > 0) await s.ack(u, d, conn.get(k)!, got[rnd(got.length)].seq);
        }
        break;
      case 5:
        await s.expire(step);
        break;
      case 6:
        s.rememberDevice(u, d, step + 100);
        break;
    }
    for (const user of users) {
      let offline = 0;
      for (const m of inner.mailboxes.values(user)) if (inner.devicesByUser.get(user, m.deviceId)?.online !== true) offline += m.bytes;
      assert.equal(inner.userOfflineBytes.get(user) ?? 0, offline, `step ${step}: ${user}'s bytes not online`);
    }
  }
  assert.ok(refused > 0 && userEvicted > 0, `the bound both refused (${refused}) and evicted from other devices (${userEvicted})`);
  await s.close();
});

test('memory store: its bookkeeping (byte totals per user and in all, bytes not online, mailbox and known counts, the known and lingering lists, id sets, expiry bounds) matches what it holds through a random sequence of every operation', async () => {
  let seed = 11;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor((seed / 2 ** 31) * n));
  interface Box { userId: string; deviceId: string; messages: QueuedMessage[]; bytes: number; nextExpiry: number; ids: Set<string> | null }
  interface Entry { userId: string; deviceId: string; online: boolean; knownUntil: number; prevKnown: Entry | null; nextKnown: Entry | null }
  // Small bounds, so that devices are shed, forgotten and remembered again, and mailboxes pass 16 messages.
  const s = new MemoryStore({ maxQueuedBytesPerUser: 300, maxQueuedBytes: 900, maxKnownDevices: 5, maxKnownDevicesPerUser: 3, maxDevicesPerUser: 4, maxSessionsPerDevice: 2 });
  const inner = s as unknown as {
    mailboxes: { all(): Iterable<Box>; get(u: string, d: string): Box | undefined };
    mailboxCount: number;
    devicesByUser: { all(): Iterable<Entry>; get(u: string, d: string): Entry | undefined };
    known: { head: Entry | null; tail: Entry | null };
    lingering: { head: Entry | null; tail: Entry | null };
    knownCount: number;
    queuedBytes: number;
    userQueuedBytes: Map<string, number>;
    userOfflineBytes: Map<string, number>;
  };
  const outcomes = { refused: 0, evicted: 0, lingered: 0, indexed: 0 };
  const nonZero = (m: Map<string, number>) => new Map([...m].filter(([, v]) => v !== 0));
  const check = (step: number) => {
    const at = `step ${step}`;
    let total = 0;
    let boxes = 0;
    const perUser = new Map<string, number>();
    const offline = new Map<string, number>();
    for (const b of inner.mailboxes.all()) {
      boxes++;
      assert.ok(b.messages.length > 0, `${at}: an empty mailbox kept`);
      const bytes = b.messages.reduce((n, m) => n + m.payload.length, 0);
      assert.equal(b.bytes, bytes, `${at}: ${b.userId}/${b.deviceId}'s bytes`);
      total += bytes;
      if (bytes > 0) perUser.set(b.userId, (perUser.get(b.userId) ?? 0) + bytes);
      if (bytes > 0 && inner.devicesByUser.get(b.userId, b.deviceId)?.online !== true) offline.set(b.userId, (offline.get(b.userId) ?? 0) + bytes);
      if (b.ids !== null) outcomes.indexed++;
      if (b.ids !== null) assert.deepEqual([...b.ids].sort(), b.messages.map((m) => m.id).sort(), `${at}: ${b.userId}/${b.deviceId}'s id set`);
      for (const m of b.messages) assert.ok(m.expiresAt >= b.nextExpiry, `${at}: a message expires before its mailbox's bound`);
    }
    assert.equal(inner.queuedBytes, total, `${at}: bytes in all`);
    assert.equal(inner.mailboxCount, boxes, `${at}: mailboxes`);
    assert.deepEqual(nonZero(inner.userQueuedBytes), perUser, `${at}: bytes per user`);
    assert.deepEqual(nonZero(inner.userOfflineBytes), offline, `${at}: bytes per user not online`);
    let listed = 0;
    for (const [list, lingering] of [[inner.known, false], [inner.lingering, true]] as const) {
      let prev: Entry | null = null;
      for (let e = list.head; e !== null; e = e.nextKnown) {
        listed++;
        assert.equal(e.prevKnown, prev, `${at}: list links`);
        assert.equal(inner.devicesByUser.get(e.userId, e.deviceId), e, `${at}: a listed device not in the table`);
        assert.equal(e.knownUntil === 0, lingering, `${at}: ${e.userId}/${e.deviceId} in the wrong list`);
        if (lingering) assert.ok(inner.mailboxes.get(e.userId, e.deviceId), `${at}: lingering without messages`);
        prev = e;
      }
      assert.equal(list.tail, prev, `${at}: list tail`);
    }
    assert.equal(inner.knownCount, listed, `${at}: known devices`);
  };
  const users = ['a', 'b'];
  const holders = ['h1', 'h2', 'h3'];
  let now = 1000;
  for (let step = 0; step < 4000; step++) {
    now++;
    const u = users[rnd(2)];
    const d = `d${rnd(6)}`;
    const h = holders[rnd(3)];
    switch (rnd(10)) {
      case 0:
      case 1:
      case 2: {
        const msg = { id: `m${rnd(30)}`, payload: new Uint8Array(u === 'a' ? rnd(4) : rnd(150)), enqueuedAt: now, expiresAt: now + (rnd(2) === 0 ? rnd(3000) : rnd(30_000)) };
        const got = await s.enqueue(u, d, msg, { maxMessages: u === 'a' ? 40 : 1 + rnd(40), maxBytes: 50 + rnd(250) }).catch(() => (outcomes.refused++, []));
        outcomes.evicted += got.filter((e) => e.deviceId !== undefined).length;
        break;
      }
      case 3:
        await s.take(u, d, h, rnd(8));
        break;
      case 4:
        await s.ack(u, d, h, rnd(40));
        break;
      case 5:
        now += rnd(300);
        await s.expire(now);
        outcomes.lingered += inner.lingering.head !== null ? 1 : 0;
        break;
      case 6:
        s.setOnline({ userId: u, deviceId: d, connectionId: h, nodeId: 'n', transport: 'tcp', since: now, clientInfo: {} });
        break;
      case 7:
        await s.setOffline(u, d, h);
        break;
      case 8:
        s.rememberDevice(u, d, now + rnd(2000));
        break;
      case 9:
        if (rnd(2) === 0) s.saveSession({ ...session(u, d), resumeToken: `t${rnd(8)}` }, now + 5000);
        else await s.knownDevices(u, now);
        break;
    }
    check(step);
  }
  assert.ok(outcomes.refused > 0 && outcomes.evicted > 0 && outcomes.lingered > 0 && outcomes.indexed > 0, `the sequence reached the bounds and the lingering list: ${JSON.stringify(outcomes)}`);
  await s.close();
});

test('memory store: the expiry sweep looks only at mailboxes with something due, not at every mailbox (6–8 ms a second at 200,000), and its queue stays bounded by the mailboxes held', async () => {
  const s = new MemoryStore();
  const limits = { maxMessages: 1000, maxBytes: 1 << 20 };
  const mailboxes = 5000;
  for (let d = 0; d < mailboxes; d++) await s.enqueue(`u${d}`, 'd', { id: 'm', payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: 1_000_000 + d }, limits);
  // Counts the mailboxes any walk of all of them visits.
  const boxes = (s as unknown as { mailboxes: { all(): Iterable<unknown> } }).mailboxes;
  const all = boxes.all.bind(boxes);
  let visited = 0;
  boxes.all = function* () {
    for (const m of all()) {
      visited++;
      yield m;
    }
  };
  for (let t = 0; t < 20; t++) assert.deepEqual(await s.expire(1000 + t), []);
  assert.equal(visited, 0, `${visited} mailboxes looked at by 20 sweeps with none due`);
  // The due ones go, in order, and only they are looked at.
  const gone = await s.expire(1_000_000 + 9);
  assert.deepEqual(gone.map((g) => g.userId), Array.from({ length: 10 }, (_, d) => `u${d}`));
  assert.equal(visited, 0);
  // Mailboxes made and emptied again and again (a push acknowledged at once) leave entries behind: bounded.
  const queue = (s as unknown as { expiry: { size: number } }).expiry;
  for (let k = 0; k < 20_000; k++) {
    await s.enqueue('churn', 'd', { id: `c${k}`, payload: new Uint8Array(1), enqueuedAt: 1, expiresAt: 2_000_000 - k }, limits);
    const [taken] = await s.take('churn', 'd', 'conn', 0);
    await s.ack('churn', 'd', 'conn', taken.seq);
  }
  assert.equal(await s.depth('churn', 'd'), 0);
  assert.ok(queue.size <= 2 * mailboxes + 1024, `${queue.size} entries in the expiry queue for ${mailboxes} mailboxes`);
  // Still exact after the rebuilds: every remaining mailbox expires at its time.
  const rest = await s.expire(1_000_000 + mailboxes);
  assert.equal(rest.length, mailboxes - 10);
  assert.equal((await s.queueTotals()).messages, 0);
  await s.close();
});
