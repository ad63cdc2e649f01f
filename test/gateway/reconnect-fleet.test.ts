import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { seededRandom } from '../../src/core/backoff.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { RefusedError } from '../../src/protocol/errors.js';
import { FrameType } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair } from '../helpers/memory-link.js';

// A fleet of in-process clients on a fake clock, against real Gateways over in-memory links: how a
// fleet comes back after a gateway restart (the clients' reconnect policy and the gateway's hints).

const POLICY = { intervalMs: 30_000, minIntervalMs: 1000, maxIntervalMs: 60_000, missBudget: 2, graceMs: 500 };

function fleet(n: number, clock: ManualClock, target: () => Gateway | null) {
  const dials: number[] = [];
  const clients: LonglinkClient[] = [];
  for (let i = 0; i < n; i++) {
    clients.push(
      new LonglinkClient({
        url: 'tcp://test',
        userId: `u${i}`,
        deviceId: 'd',
        clock,
        timers: clock,
        random: seededRandom(i + 1),
        dial: async () => {
          dials.push(clock.now());
          const gw = target();
          if (!gw) throw new Error('ECONNREFUSED');
          const [server, c] = memoryLinkPair();
          server.remoteAddress = `10.0.${i >> 8}.${i & 255}`;
          if (gw.accept(server) === null) {
            // Refused at accept: its GOAWAY came before the client could bind the link. Handed over as
            // a WebSocket 503 hands it (X-Longlink-Goaway), which the client treats as that GOAWAY.
            const g = c.received.find((f) => f.type === FrameType.GOAWAY) as { reason: string; reconnectAfterMs: number } | undefined;
            if (!g) throw new Error('ECONNRESET');
            throw new RefusedError(g.reason, g.reconnectAfterMs, 'refused');
          }
          return c;
        },
      }),
    );
  }
  return { clients, dials };
}

test('a reconnect storm far above the handshake bucket comes back at the bucket\'s pace: the refused are spread over the time it needs, not refused again and again', async () => {
  const N = 300;
  const clock = new ManualClock(1_000_000);
  const g1 = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10, clock, timers: clock });
  let gw: Gateway | null = g1;
  const { clients } = fleet(N, clock, () => gw);
  await Promise.all([Promise.all(clients.map((c) => c.connect())), flush()]);
  clock.advance(20_000); // stable links: every backoff is reset
  await flush();
  // The gateway restarts (crash: no hint) and its successor takes 20 new connections a second.
  const g2 = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10, clock, timers: clock, limits: { handshakesPerSecond: 20, handshakeBurst: 20 } });
  let refused = 0;
  g2.on('refused', () => refused++);
  gw = g2;
  await g1.close();
  const start = clock.now();
  let allBackAt = -1;
  for (let s = 0; s < 60 && allBackAt < 0; s++) {
    for (let k = 0; k < 10; k++) {
      clock.advance(100);
      await flush();
    }
    if (clients.every((c) => c.state === 'open')) allBackAt = (clock.now() - start) / 1000;
  }
  // 20 + 20/s takes 300 back in 14 s at best. With every refusal told "within a second", 958 were
  // refused (3 a client) and the last came back after 39 s.
  // 20 + 20/s takes 300 back in 14 s at best. With every refusal told "within a second" (one burst's
  // refill), about 960 were refused (3 a client), most of them again and again; spread over the time
  // the bucket needs for those refused, about 530.
  assert.ok(refused < 700, `refused ${refused} times for ${N} clients`);
  assert.ok(allBackAt > 0 && allBackAt <= 45, `everyone back (${allBackAt} s)`);
  for (const c of clients) c.close();
  await g2.close();
});
