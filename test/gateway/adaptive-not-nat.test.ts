import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// The adaptive heartbeat learns only from what a NAT did: a new network starts
// from the gateway's grant (not another network's learned interval), and a link
// lost to a stall (the client's loop blocked, the device asleep) or to a network
// change says nothing about the NAT's timeout. Fake clock, a real gateway, links
// through a strict NAT model whose timeout can change and whose old paths can die.

const POLICY = { intervalMs: 1000, minIntervalMs: 500, maxIntervalMs: 120_000, missBudget: 2, graceMs: 500 };
const PROBES = { pongTimeoutMs: 300, probeCount: 1, probeIntervalMs: 200 };

const paths = { gen: 0, deadBelow: 0 };
function natPair(clock: ManualClock, timeoutMs: () => number): [MemoryLink, MemoryLink] {
  const [server, client] = memoryLinkPair();
  const gen = ++paths.gen;
  let lastPacketAt = clock.now();
  let forgotten = false;
  const forget = () => {
    if (!forgotten && (clock.now() - lastPacketAt >= timeoutMs() || gen <= paths.deadBelow)) forgotten = true;
    return forgotten;
  };
  for (const end of [server, client]) {
    const send = end.send.bind(end);
    end.send = (f) => {
      if (forget()) return; // dropped by the NAT: no mapping
      lastPacketAt = clock.now();
      send(f);
    };
    // A FIN or RST through a NAT that forgot the mapping is dropped too: the peer learns nothing.
    const close = end.close.bind(end);
    const destroy = end.destroy.bind(end);
    const cut = (): boolean => {
      if (forget()) (end as unknown as { finish(): void }).finish();
      return forgotten;
    };
    end.close = (code, reason) => void (cut() || close(code, reason));
    end.destroy = () => void (cut() || destroy());
  }
  return [server, client];
}

function setup(nat: { timeoutMs: number }, adaptive: ConstructorParameters<typeof LonglinkClient>[0]['adaptive']) {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock });
  // freeze(): the client's process stops running (a frozen tab, a blocked loop) while the gateway runs on:
  // its timers and the bytes that reach it wait; wake() runs the timers that fell due, then reads the bytes.
  const frozen = { on: false, timers: [] as { h: { cancelled: boolean }; fn: () => void }[], bytes: [] as { link: MemoryLink; b: Uint8Array }[] };
  const timers = {
    setTimeout: (fn: () => void, ms: number) => {
      const h = clock.setTimeout(() => (frozen.on ? frozen.timers.push({ h: h as { cancelled: boolean }, fn }) : fn()), ms);
      return h;
    },
    clearTimeout: (h: unknown) => clock.clearTimeout(h as never),
  };
  const client = new LonglinkClient({
    url: 'tcp://nat',
    userId: 'u',
    deviceId: 'd',
    probes: PROBES,
    adaptive,
    reconnect: { initialDelayMs: 100, maxDelayMs: 100, minDelayMs: 100 },
    clock,
    timers,
    random: () => 0.5,
    dial: async () => {
      const [server, c] = natPair(clock, () => nat.timeoutMs);
      const deliver = c.deliverBytes.bind(c);
      c.deliverBytes = (b) => (frozen.on ? void frozen.bytes.push({ link: c, b }) : deliver(b));
      gw.accept(server);
      return c;
    },
  });
  const closes: { at: number; e: CloseEvent }[] = [];
  client.on('close', (e) => closes.push({ at: clock.now(), e }));
  const run = async (ms: number) => {
    for (let t = 0; t < ms; t += 100) {
      clock.advance(100);
      await flush();
    }
  };
  /** The process does not run for `ms`: its clock moves, its timers fire only when it wakes. */
  const sleep = async (ms: number) => {
    clock.jump(ms);
    clock.advance(0);
    await flush();
  };
  const freeze = () => void (frozen.on = true);
  const wake = async () => {
    frozen.on = false;
    for (const t of frozen.timers.splice(0)) if (!t.h.cancelled) t.fn();
    for (const { link, b } of frozen.bytes.splice(0)) link.deliverBytes(b);
    await flush();
  };
  return { clock, gw, client, closes, run, sleep, freeze, wake };
}

test('a new network starts from the gateway grant, not from the old network\'s learned interval (at most two links lost learning it)', async () => {
  const nat = { timeoutMs: 60_000 };
  const { client, gw, closes, run } = setup(nat, { network: 'wifi:home' });
  await Promise.all([client.connect(), flush()]);
  await run(900_000);
  const wifi = client.learner!.record!;
  assert.equal(wifi.phase, 'settled');
  assert.ok(wifi.intervalMs > 40_000, `learned ${wifi.intervalMs} on wifi`);
  // The device moves to a cellular network whose NAT forgets after 8 s.
  nat.timeoutMs = 8000;
  const lostBefore = closes.length;
  client.networkChanged('cell:carrier');
  await run(100);
  const cellStart = client.learner!.record!.intervalMs;
  assert.equal(cellStart, 2 * POLICY.intervalMs, `the first probe on an unknown network is ${cellStart} ms (wifi learned ${wifi.intervalMs})`);
  await run(600_000);
  const lost = closes.length - lostBefore;
  assert.ok(lost <= 2, `${lost} links lost learning the new network`);
  assert.equal(client.learner!.record!.phase, 'settled');
  client.close();
  await gw.close();
});

test('a stall past the NAT timeout (loop blocked, device asleep) does not lower the settled interval', async () => {
  const nat = { timeoutMs: 20_000 };
  const { client, gw, closes, run, sleep } = setup(nat, { startMs: 4000 });
  await Promise.all([client.connect(), flush()]);
  await run(300_000);
  const settled = { ...client.learner!.record! };
  assert.equal(settled.phase, 'settled');
  const lostBefore = closes.length;
  await sleep(60_000);
  await run(305_000);
  assert.ok(closes.length > lostBefore, 'the stall cost the link');
  const after = client.learner!.record!;
  assert.equal(after.intervalMs, settled.intervalMs, `one stall moved the interval from ${settled.intervalMs} to ${after.intervalMs}`);
  assert.equal(after.failedMs, settled.failedMs);
  client.close();
  await gw.close();
});

test('repeated sleeps do not ratchet the learned interval down', async () => {
  const nat = { timeoutMs: 20_000 };
  const { client, gw, run, sleep } = setup(nat, { startMs: 4000 });
  await Promise.all([client.connect(), flush()]);
  await run(300_000);
  const seen = [client.learner!.record!.intervalMs];
  for (let i = 0; i < 5; i++) {
    await sleep(60_000); // asleep a minute, about once an hour
    await run(3_600_000);
    seen.push(client.learner!.record!.intervalMs);
  }
  assert.ok(seen.at(-1)! >= 0.8 * nat.timeoutMs, `settled interval after each sleep: ${seen.join(' -> ')} (the NAT allows ${nat.timeoutMs})`);
  client.close();
  await gw.close();
});

test('networkChanged() late in an interval, the old path gone: the loss is not charged as a NAT timeout', async () => {
  const nat = { timeoutMs: 20_000 };
  const { clock, client, gw, closes, run } = setup(nat, { startMs: 4000 });
  await Promise.all([client.connect(), flush()]);
  await run(300_000);
  const settled = { ...client.learner!.record! };
  assert.equal(settled.phase, 'settled');
  // 96% of an interval since the last frame either way.
  const lastHeard = () => (client as unknown as { lastActivityAt: number }).lastActivityAt;
  while (clock.now() - lastHeard() < 0.96 * settled.intervalMs) {
    clock.advance(10);
    await flush();
  }
  const lostBefore = closes.length;
  paths.deadBelow = paths.gen; // Wi-Fi dropped: the old path is gone, a new dial goes over cellular
  client.networkChanged();
  await run(5_000);
  assert.equal(closes.length, lostBefore + 1, 'the check found the old link dead');
  assert.equal(client.state, 'open');
  const r = client.learner!.record!;
  assert.deepEqual([r.phase, r.intervalMs, r.failedMs, r.failures], [settled.phase, settled.intervalMs, settled.failedMs, settled.failures], 'a link lost to a network change is not a NAT timeout');
  client.close();
  await gw.close();
});

test('a frame read late after a stall (a frozen tab, a blocked loop) is not evidence that the whole stall held: the gateway sent it mid-stall', async () => {
  const nat = { timeoutMs: 20_000 };
  const { clock, client, gw, closes, run, freeze, wake } = setup(nat, { startMs: 4000 });
  await Promise.all([client.connect(), flush()]);
  await run(300_000);
  const settled = { ...client.learner!.record! };
  assert.equal(settled.phase, 'settled');
  // Just after a heartbeat's answer: the link idle from here.
  const lastActivity = () => (client as unknown as { lastActivityAt: number }).lastActivityAt;
  while (clock.now() - lastActivity() > 0) {
    clock.advance(10);
    await flush();
  }
  freeze();
  await run(5_000);
  void gw.push('u', 'mid-stall'); // crosses the NAT 5 s in: the mapping is fresh again
  await run(25_000);
  await wake(); // 30 s after the last activity the client reads it
  await run(2_000);
  const r = client.learner!.record!;
  assert.ok(r.heldMs <= nat.timeoutMs, `learned that ${r.heldMs} ms held behind a ${nat.timeoutMs} ms NAT`);
  assert.deepEqual([r.phase, r.intervalMs, r.heldMs], [settled.phase, settled.intervalMs, settled.heldMs], 'the stall taught nothing');
  void closes;
  client.close();
  await gw.close();
});
