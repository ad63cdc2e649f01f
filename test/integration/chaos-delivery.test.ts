import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import { fixture, sleep, spawnNode, type JsonProc } from '../helpers/procs.js';

// Exactly once, in order, through chaos: client processes and the gateway
// stream numbered messages both ways over real sockets while the test keeps
// breaking the links (client socket destroyed, client frozen with SIGSTOP
// longer than the silence limit, gateway-side forced close). Every message
// must reach the application on the other side once, in order.

const CLIENTS = [
  { user: 'c0', transport: 'tcp' },
  { user: 'c1', transport: 'ws' },
  { user: 'c2', transport: 'tcp' },
  { user: 'c3', transport: 'ws' },
] as const;
const PER_CLIENT = 2500; // 10,000 each way in all
const PACE_MS = 8;

test(`chaos: ${PER_CLIENT * CLIENTS.length} messages each way arrive exactly once and in order through cuts, freezes and forced closes`, { timeout: 120_000 }, async () => {
  const gw = new Gateway({
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
      for (const c of CLIENTS) for (let j = k; j < Math.min(k + 4, PER_CLIENT); j++) void gw.push(c.user, `srv:${j}`, { waitMs: 0 });
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
    assert.equal(d.acked, PER_CLIENT);
    assert.ok((d.opens as number) > 1, 'it reconnected');
  }
  for (const c of CLIENTS) {
    const got = received.get(c.user) ?? [];
    assert.equal(got.length, PER_CLIENT, `gateway got ${got.length} from ${c.user}, exactly once`);
    assert.ok(got.every((k, idx) => k === idx), `in order from ${c.user}`);
  }
  assert.deepEqual(drops, [], 'nothing dropped or expired');
  assert.ok(actions.cut > 0 && actions.freeze > 0 && actions.forced > 0, JSON.stringify(actions));
  assert.ok((offlineReasons.get('heartbeat-timeout') ?? 0) > 0, 'freezes were detected by the heartbeat');
  // Re-sends happened and were absorbed: that is what was tested.
  const resent = done.reduce((n, d) => n + (d.stats as { resent: number }).resent, 0);
  console.log(`chaos: ${JSON.stringify(actions)}, offline ${JSON.stringify(Object.fromEntries(offlineReasons))}, client re-sends ${resent}, gateway ${JSON.stringify(gw.deliveryStats)}`);
});
