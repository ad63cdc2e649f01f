import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway, type OfflineEvent } from '../../src/gateway/gateway.js';
import { sleep, spawnCli } from '../helpers/procs.js';
import { RawPeer } from '../helpers/raw-peer.js';

// The gateway's own stall must not convict its peers: a client in another
// process keeps heartbeating while the gateway's event loop is blocked for
// three silence limits; its frames wait in the kernel. With the guard, the
// gateway reads them before judging; without it, Node runs the expired timer
// first and the healthy client is closed.

const POLICY = { intervalMs: 300, minIntervalMs: 100, maxIntervalMs: 5000, missBudget: 2, graceMs: 200 }; // limit 800 ms

function blockEventLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy: the gateway is stalled
  }
}

async function stallOnce(stallGuard: boolean): Promise<{ offline: OfflineEvent[]; stats: ReturnType<Gateway['eventLoopStats']> }> {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, wheelTickMs: 10, stallGuard: stallGuard ? { thresholdMs: 200 } : false });
  const { tcp } = await gw.listen();
  const offline: OfflineEvent[] = [];
  gw.on('offline', (e) => offline.push(e));
  const client = spawnCli(['client', '--url', `tcp://127.0.0.1:${tcp!.port}`, '--user', 'steady', '--json', '--interval-ms', '300']);
  try {
    await client.waitFor((l) => l.event === 'open', 10_000, 'open');
    await sleep(700);
    blockEventLoop(2500);
    await sleep(1200);
    return { offline: [...offline], stats: gw.eventLoopStats() };
  } finally {
    await client.kill();
    await gw.close();
  }
}

test('a stall of the gateway itself does not convict a client whose heartbeats kept coming', async () => {
  const { offline, stats } = await stallOnce(true);
  assert.deepEqual(offline.map((e) => e.reason), [], 'no one closed');
  assert.ok(stats && stats.stalls >= 1 && stats.longestStallMs >= 2000, `the stall was measured: ${JSON.stringify(stats)}`);
  assert.ok(stats.delayMaxMs >= 2000, 'monitorEventLoopDelay saw it');
});

test('without the guard, the same stall convicts the healthy client (the guard is what saves it)', async () => {
  const { offline, stats } = await stallOnce(false);
  assert.equal(stats, null);
  assert.deepEqual(offline.map((e) => e.reason), ['heartbeat-timeout']);
});

test('a gateway kept busy by repeated stalls still finds a dead client within two silence limits and one stall', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, wheelTickMs: 10, stallGuard: { thresholdMs: 200 } });
  const { tcp } = await gw.listen();
  const offline: number[] = [];
  gw.on('offline', () => offline.push(performance.now()));
  const dead = new RawPeer(tcp!.port);
  await dead.connected;
  dead.hello('dead');
  await dead.welcome();
  const silentFrom = performance.now(); // it never sends again: a dead client
  // The gateway blocks 600 ms out of every 700 (its sockets are read in between).
  for (let i = 0; i < 12 && offline.length === 0; i++) {
    blockEventLoop(600);
    await sleep(100);
  }
  await sleep(200);
  assert.equal(offline.length, 1, 'the dead client was found while the gateway stayed busy');
  const took = offline[0] - silentFrom;
  // The limit is 800 ms; the excuse at most another 800; plus the stall it was found in and the tick.
  assert.ok(took <= 800 + 800 + 600 + 400, `found after ${Math.round(took)} ms`);
  dead.destroy();
  await gw.close();
});
