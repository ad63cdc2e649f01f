import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { sleep } from '../helpers/procs.js';

// Issue 18 over real sockets and real timers for a minute: the gateway's timer
// work per second (wheel runner arms and runs) and the process's pending
// timers stay level while 300 clients heartbeat every second over TCP and
// WebSocket. The runner's old leak added one self-re-arming timer chain per
// tick that rescheduled a connection, so its arms per second grew every
// second; counting them catches that without timing anything.

const WINDOW_MS = 10_000;

test('a minute of heartbeats over real sockets: timer arms per second and pending timers stay level', { timeout: 120_000 }, async () => {
  const gw = new Gateway({
    tcp: { port: 0 },
    ws: { port: 0 },
    heartbeat: { intervalMs: 1000, minIntervalMs: 500, maxIntervalMs: 60_000, missBudget: 3, graceMs: 1000 },
    limits: { maxConnectionsPerSource: 0, handshakesPerSecond: 0 },
  });
  const a = await gw.listen();
  const urls = { tcp: `tcp://127.0.0.1:${a.tcp!.port}`, ws: `ws://127.0.0.1:${a.ws!.port}/longlink` };
  const clients: LonglinkClient[] = [];
  let closes = 0;
  for (let i = 0; i < 300; i++) {
    const c = new LonglinkClient({ url: i % 3 === 0 ? urls.ws : urls.tcp, userId: `u${i}`, deviceId: 'd', direction: i % 2 ? 'server' : 'client' });
    c.on('close', () => closes++);
    clients.push(c);
  }
  await Promise.all(clients.map((c) => c.connect()));
  const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  // Warm-up: every client's stable timer fires and the detectors settle.
  await sleep(12_000);
  const rows: { arms: number; runs: number; timeouts: number; pings: number }[] = [];
  let prev = { ...gw.timerStats(), pings: gw.trafficStats().pingsIn + gw.trafficStats().pingsOut };
  for (let w = 0; w < 6; w++) {
    await sleep(WINDOW_MS);
    const cur = { ...gw.timerStats(), pings: gw.trafficStats().pingsIn + gw.trafficStats().pingsOut };
    rows.push({ arms: cur.arms - prev.arms, runs: cur.runs - prev.runs, timeouts: timeouts(), pings: cur.pings - prev.pings });
    prev = cur;
  }
  const ticks = WINDOW_MS / gw.options.wheelTickMs;
  for (const [i, r] of rows.entries()) {
    // One arm per tick, plus the early wake-ups of a timer whose libuv clock lagged the real one.
    assert.ok(r.arms <= ticks * 1.6, `window ${i}: ${r.arms} arms for ${ticks} ticks`);
    assert.ok(r.pings >= 300 * 8, `window ${i}: ${r.pings} heartbeats`);
  }
  const first = rows[0];
  const last = rows[rows.length - 1];
  assert.ok(last.arms <= first.arms * 1.25 + 20, `arms per window: first ${first.arms}, last ${last.arms}`);
  assert.ok(last.timeouts <= first.timeouts + 30, `pending timers: first ${first.timeouts}, last ${last.timeouts}`);
  assert.equal(closes, 0, 'no link dropped');
  assert.equal(gw.timerStats().runnerPending, true);
  for (const c of clients) c.close();
  await gw.close();
});
