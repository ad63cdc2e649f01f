import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { Gateway, type OfflineEvent } from '../../src/gateway/gateway.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { sleep, spawnCli, spawnServe, waitEvent } from '../helpers/procs.js';

// Heartbeats and detection over real loopback sockets, for both transports.
// Bounds are the documented formulas plus one wheel tick plus a tolerance for
// a loaded CI machine; the exact millisecond is proven on the fake clock.

const TOLERANCE_MS = 250;
const TICK = 10;
const POLICY = { intervalMs: 300, minIntervalMs: 100, maxIntervalMs: 5000, missBudget: 2, graceMs: 200 };
const LIMIT = POLICY.intervalMs * POLICY.missBudget + POLICY.graceMs; // 800

async function gateway() {
  const gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, heartbeat: POLICY, wheelTickMs: TICK });
  const a = await gw.listen();
  return { gw, urls: { tcp: `tcp://127.0.0.1:${a.tcp!.port}`, ws: `ws://127.0.0.1:${a.ws!.port}/longlink` } };
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`liveness over ${transport}`, () => {
    test('heartbeats keep an idle link up, and each round trip yields an RTT', async () => {
      const { gw, urls } = await gateway();
      const offline: OfflineEvent[] = [];
      gw.on('offline', (e) => offline.push(e));
      const client = new LonglinkClient({ url: urls[transport], userId: 'idle', deviceId: 'd', intervalMs: 150 });
      const rtts: number[] = [];
      client.on('rtt', (r) => rtts.push(r.sampleMs));
      const closes: CloseEvent[] = [];
      client.on('close', (e) => closes.push(e));
      const w = await client.connect();
      assert.equal(w.heartbeat.intervalMs, 150);
      await sleep(1500);
      assert.deepEqual(offline, []);
      assert.deepEqual(closes, []);
      assert.ok(client.stats.pingsSent >= 7 && client.stats.pingsSent <= 11, `about 10 heartbeats in 1.5 s (${client.stats.pingsSent})`);
      assert.equal(rtts.length, client.stats.pongsReceived + 1, 'one sample per PONG, plus HELLO → WELCOME');
      assert.ok(rtts.length >= 7 && rtts.every((r) => r >= 0 && r < 200));
      assert.equal(gw.connection('idle', 'd')?.transport, transport);
      // Client-sent heartbeats: the gateway has no RTT of its own, and shows what the client reports on its PINGs.
      const shown = gw.connection('idle', 'd')!.rttMs;
      assert.ok(shown !== null && shown >= 0 && shown < 200, `the client's report: ${shown}`);
      assert.ok(gw.networkStats()[transport].rtt!.count >= 1, 'counted for the transport');
      client.close();
      await gw.close();
    });

    test('application traffic suppresses heartbeats', async () => {
      const { gw, urls } = await gateway();
      gw.on('message', (m) => gw.send(m.userId, m.payload));
      const client = new LonglinkClient({ url: urls[transport], userId: 'busy', deviceId: 'd', intervalMs: 300 });
      await client.connect();
      for (let i = 0; i < 12; i++) {
        client.send(`m${i}`);
        await sleep(100);
      }
      assert.equal(client.stats.pingsSent, 0);
      assert.equal(client.stats.dataReceived, 12);
      client.close();
      await gw.close();
    });

    test('a frozen client process (SIGSTOP) is detected within interval × missBudget + grace and reported offline', async () => {
      const { gw, urls } = await gateway();
      const proc = spawnCli(['client', '--url', urls[transport], '--user', 'frozen', '--device', 'd', '--interval-ms', String(POLICY.intervalMs), '--json']);
      after(() => proc.kill());
      await waitEvent(gw, 'online', (e: { userId: string }) => e.userId === 'frozen', 10_000);
      await sleep(1000); // it stays up while heartbeating
      assert.equal(gw.onlineDevices, 1);
      const stoppedAt = performance.now();
      proc.child.kill('SIGSTOP');
      const [e]: [OfflineEvent] = (await waitEvent(gw, 'offline', () => true, 5000)) as [OfflineEvent];
      const detectedAfter = performance.now() - stoppedAt;
      assert.equal(e.reason, 'heartbeat-timeout');
      assert.equal(e.code, CloseCodes['heartbeat-timeout']);
      assert.ok(e.silentForMs >= LIMIT, `not before the limit (${e.silentForMs})`);
      assert.ok(e.silentForMs <= LIMIT + TICK + TOLERANCE_MS, `silent ${e.silentForMs} ms ≤ ${LIMIT} + tick + tolerance`);
      assert.ok(detectedAfter <= LIMIT + TICK + TOLERANCE_MS, `detected ${detectedAfter.toFixed(0)} ms after the freeze`);
      assert.equal(gw.onlineDevices, 0);
      assert.equal(gw.connectionCount, 0);
      assert.deepEqual(await gw.presence('frozen'), []);
      await proc.kill();
      await gw.close();
    });

    test('a frozen gateway (SIGSTOP) is detected by the client, which reconnects with backoff and resumes after SIGCONT', async () => {
      const server = await spawnServe(['--heartbeat-interval-ms', '300', '--heartbeat-min-interval-ms', '100', '--wheel-tick-ms', '10', '--log-level', 'info']);
      after(() => server.kill());
      const probes = { pongTimeoutMs: 200, probeCount: 2, probeIntervalMs: 100 };
      const client = new LonglinkClient({
        url: server[transport],
        userId: 'c',
        deviceId: 'd',
        probes,
        handshakeTimeoutMs: 400,
        reconnect: { initialDelayMs: 200, maxDelayMs: 800, minDelayMs: 50 },
      });
      const closes: (CloseEvent & { at: number })[] = [];
      const delays: number[] = [];
      client.on('close', (e) => closes.push({ ...e, at: performance.now() }));
      client.on('reconnecting', (r) => delays.push(r.delayMs));
      const first = await client.connect();
      await sleep(700);
      const stoppedAt = performance.now();
      server.child.kill('SIGSTOP');
      await waitEvent(client, 'close', () => true, 5000);
      const detect = closes[0].at - stoppedAt;
      const bound = 300 + probes.pongTimeoutMs + probes.probeCount * probes.probeIntervalMs; // 700
      assert.equal(closes[0].code, CloseCodes['heartbeat-timeout']);
      assert.equal(closes[0].willReconnect, true);
      assert.ok(detect <= bound + TOLERANCE_MS, `detected ${detect.toFixed(0)} ms after the freeze (bound ${bound})`);
      await sleep(2500); // attempts fail (no WELCOME from a stopped process) and back off
      assert.ok(delays.length >= 2, `several attempts while frozen (${delays.length})`);
      const ceilings = [200, 400, 800, 800, 800, 800, 800, 800];
      delays.forEach((d, i) => assert.ok(d >= 50 && d <= ceilings[Math.min(i, 7)], `delay ${i} = ${d} within [50, ${ceilings[i]}]`));
      assert.equal(client.state === 'open', false);
      server.child.kill('SIGCONT');
      const [w]: [typeof first] = (await waitEvent(client, 'open', () => true, 5000)) as [typeof first];
      assert.equal(w.resumed, true, 'the session resumes');
      assert.equal(w.sessionId, first.sessionId);
      client.close();
      await server.kill();
    });
  });
}
