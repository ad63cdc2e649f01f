import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import type { PushResult } from '../../src/gateway/push-tracker.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { fixture, sleep, spawnNode, type JsonProc } from '../helpers/procs.js';

// Exactly once, in order, through chaos: client processes and the gateway
// stream numbered messages both ways over real sockets while the test keeps
// breaking the links (client socket destroyed, client frozen with SIGSTOP
// longer than the silence limit, gateway-side forced close). Every message
// must reach the application on the other side once, in order.
//
// The checker reads every side's log: what the device's application was handed
// (the client process), what the backend was told (each push's result, and the
// `delivered`, `dropped`, `expired` events: every message reported delivered
// once, in push order, to the device that has it, nothing else), and what the
// store holds at the end (nothing: every mailbox emptied by acknowledgements).

const CLIENTS = [
  { user: 'c0', transport: 'tcp' },
  { user: 'c1', transport: 'ws' },
  { user: 'c2', transport: 'tcp' },
  { user: 'c3', transport: 'ws' },
] as const;
const PER_CLIENT = 2500; // 10,000 each way in all
const PACE_MS = 8;

test(`chaos: ${PER_CLIENT * CLIENTS.length} messages each way arrive exactly once and in order through cuts, freezes and forced closes`, { timeout: 120_000 }, async () => {
  const store = new MemoryStore();
  const gw = new Gateway({
    store,
    tcp: { port: 0 },
    ws: { port: 0 },
    wheelTickMs: 10,
    heartbeat: { intervalMs: 300, minIntervalMs: 100, missBudget: 2, graceMs: 200 },
    delivery: { maxQueuedPerDevice: PER_CLIENT * 2, ackDelayMs: 20 },
  });
  const a = await gw.listen();
  const urls = { tcp: `tcp://127.0.0.1:${a.tcp!.port}`, ws: `ws://127.0.0.1:${a.ws!.port}/longlink` };

  const received = new Map<string, number[]>();
  gw.on('message', (m) => {
    const [user, k] = Buffer.from(m.payload).toString().split(':');
    assert.equal(user, m.userId);
    let list = received.get(user);
    if (!list) received.set(user, (list = []));
    list.push(Number(k));
  });
  const drops: string[] = [];
  gw.on('dropped', (e) => drops.push(`${e.id} ${e.reason}`));
  gw.on('expired', (e) => drops.push(`${e.id} expired`));
  // What the backend was told of its pushes, per user: ids reported delivered, in the order reported.
  const deliveredIds = new Map<string, string[]>();
  const elsewhere: string[] = [];
  gw.on('delivered', (e) => {
    // Not asserted here: the gateway catches what its listeners throw.
    if (e.deviceId !== 'chaos') elsewhere.push(`${e.id} to ${e.deviceId}`);
    let list = deliveredIds.get(e.userId);
    if (!list) deliveredIds.set(e.userId, (list = []));
    list.push(e.id);
  });
  const results: Promise<PushResult>[] = [];
  const offlineReasons = new Map<string, number>();
  gw.on('offline', (e) => offlineReasons.set(e.reason, (offlineReasons.get(e.reason) ?? 0) + 1));

  const procs: JsonProc[] = [];
  after(async () => {
    for (const p of procs) {
      p.child.kill('SIGCONT');
      await p.kill();
    }
    await gw.close();
  });
  for (const c of CLIENTS) procs.push(spawnNode(fixture('chaos-client'), [urls[c.transport], c.user, String(PER_CLIENT), String(PACE_MS)]));
  await Promise.all(procs.map((p) => p.waitFor((l) => l.event === 'ready', 10_000, 'ready')));

  // The gateway's side of the stream: pushes paced like the clients' sends.
  let pushing = true;
  const pusher = (async () => {
    for (let k = 0; k < PER_CLIENT; k += 4) {
      for (const c of CLIENTS) for (let j = k; j < Math.min(k + 4, PER_CLIENT); j++) results.push(gw.push(c.user, `srv:${j}`, { id: `${c.user}/${j}`, waitMs: 0 }));
      await sleep(PACE_MS);
    }
    pushing = false;
  })();

  // Chaos while the streams run.
  const actions = { cut: 0, freeze: 0, forced: 0 };
  let step = 0;
  while (pushing || step < 12) {
    const i = step % CLIENTS.length;
    const kind = (['cut', 'freeze', 'forced'] as const)[Math.floor(step / CLIENTS.length) % 3];
    step++;
    if (kind === 'cut') procs[i].child.stdin!.write('cut\n');
    else if (kind === 'forced') gw.disconnect(CLIENTS[i].user);
    else {
      procs[i].child.kill('SIGSTOP');
      await sleep(1100); // past the 800 ms silence limit: the gateway closes it
      procs[i].child.kill('SIGCONT');
    }
    actions[kind]++;
    await sleep(250);
  }
  await pusher;

  const done = await Promise.all(procs.map((p) => p.waitFor((l) => l.event === 'done', 60_000, 'all messages delivered and acknowledged')));
  for (const [i, d] of done.entries()) {
    assert.equal(d.received, PER_CLIENT, `${CLIENTS[i].user} got every message`);
    assert.equal(d.duplicates, 0, `${CLIENTS[i].user} got no duplicate`);
    assert.equal(d.outOfOrder, 0, `${CLIENTS[i].user} got them in order`);
    assert.equal(d.foreign, 0, `${CLIENTS[i].user} got only the gateway's messages`);
    assert.equal(d.acked, PER_CLIENT);
    assert.ok((d.opens as number) > 1, 'it reconnected');
  }
  for (const c of CLIENTS) {
    const got = received.get(c.user) ?? [];
    assert.equal(got.length, PER_CLIENT, `gateway got ${got.length} from ${c.user}, exactly once`);
    assert.ok(got.every((k, idx) => k === idx), `in order from ${c.user}`);
  }
  assert.deepEqual(drops, [], 'nothing dropped or expired');
  // Each push was queued for the one device (none failed, dropped or expired, none for another device).
  const outcomes = new Map<string, number>();
  for (const r of await Promise.all(results)) {
    assert.deepEqual(r.devices.map((d) => d.deviceId), ['chaos'], `push ${r.id} was for the device`);
    const s = r.devices[0].status;
    outcomes.set(s, (outcomes.get(s) ?? 0) + 1);
  }
  assert.ok([...outcomes.keys()].every((s) => s === 'queued' || s === 'delivered'), JSON.stringify(Object.fromEntries(outcomes)));
  // The device has every message; the backend must be told each delivered once, in push order.
  // The last acknowledgements may still be on their way in.
  for (let i = 0; i < 500 && CLIENTS.some((c) => (deliveredIds.get(c.user)?.length ?? 0) < PER_CLIENT); i++) await sleep(10);
  for (const c of CLIENTS) {
    const want = Array.from({ length: PER_CLIENT }, (_, j) => `${c.user}/${j}`);
    const got = deliveredIds.get(c.user) ?? [];
    const firstWrong = got.findIndex((id, j) => id !== want[j]);
    assert.ok(got.length === PER_CLIENT && firstWrong < 0, `${c.user}: ${got.length} reported delivered; first out of place at ${firstWrong}: ${got[firstWrong]} (want ${want[firstWrong]})`);
  }
  assert.deepEqual(elsewhere, [], 'delivered to a device that never had it');
  assert.equal(gw.deliveryStats.delivered, PER_CLIENT * CLIENTS.length, 'delivered counted once per message');
  // What the store holds at the end: nothing (every message acknowledged away).
  assert.deepEqual(await store.queueTotals(), { mailboxes: 0, messages: 0, bytes: 0 }, 'the store still holds messages');
  assert.ok(actions.cut > 0 && actions.freeze > 0 && actions.forced > 0, JSON.stringify(actions));
  assert.ok((offlineReasons.get('heartbeat-timeout') ?? 0) > 0, 'freezes were detected by the heartbeat');
  // Re-sends happened and were absorbed: that is what was tested.
  const resent = done.reduce((n, d) => n + (d.stats as { resent: number }).resent, 0);
  console.log(`chaos: ${JSON.stringify(actions)}, offline ${JSON.stringify(Object.fromEntries(offlineReasons))}, client re-sends ${resent}, gateway ${JSON.stringify(gw.deliveryStats)}`);
});
