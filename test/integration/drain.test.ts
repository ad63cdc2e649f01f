import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway, type OnlineEvent } from '../../src/gateway/gateway.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { CloseCodes } from '../../src/protocol/errors.js';

// Graceful drain over real sockets: GOAWAY hints spread evenly over the
// window, acknowledgements in flight are waited for, nothing new is written,
// and the clients come back (to the gateway that replaces this one) when
// their hint says, resuming their sessions.

describe('graceful drain', () => {
  test('hints spread over the window, in-flight acks settle, clients return on time and resume', async () => {
    const store = new MemoryStore();
    const common = { ws: false as const, store, wheelTickMs: 10 };
    const a = new Gateway({ ...common, tcp: { port: 0 } });
    const port = (await a.listen()).tcp!.port;
    const N = 30;
    const WINDOW = 1500;
    const clients: LonglinkClient[] = [];
    const hints = new Map<string, number>();
    for (let i = 0; i < N; i++) {
      const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: `u${i}`, deviceId: 'd', ackDelayMs: i === 0 ? 300 : 50 });
      c.on('reconnecting', (e) => hints.set(`u${i}`, e.delayMs));
      await c.connect();
      clients.push(c);
    }
    // u0 has a message in flight: it acknowledges only after 300 ms.
    const delivered: string[] = [];
    a.on('delivered', (e) => delivered.push(e.id));
    const got0 = new Promise((r) => clients[0].once('message', r));
    void a.push('u0', 'in flight', { id: 'inflight' });
    await got0;

    const b = new Gateway({ ...common, tcp: { port } });
    const backAt = new Map<string, OnlineEvent & { at: number }>();
    b.on('online', (e) => backAt.set(e.userId, { ...e, at: performance.now() }));
    const t0 = performance.now();
    const draining = a.drain({ windowMs: WINDOW, ackTimeoutMs: 3000 });
    // The listener is gone at once: the replacement takes the port while A drains.
    await b.listen();
    // Pushed during the drain: written by nobody on A, queued for the next connection.
    void a.push('u1', 'during drain', { id: 'queued' });
    const got1 = new Promise<string>((r) => clients[1].on('message', (m) => m.id === 'queued' && r(m.id)));
    const report = await draining;
    const drainMs = performance.now() - t0;

    assert.deepEqual(report, { connections: N, settled: N, timedOut: 0, maxHintMs: report.maxHintMs });
    assert.ok(report.maxHintMs <= WINDOW);
    assert.ok(drainMs >= 250, `the drain waited for u0's acknowledgement (${drainMs.toFixed(0)} ms)`);
    assert.deepEqual(delivered, ['inflight'], 'the in-flight message was acknowledged before the link closed');

    // One hint in each N-th of the window: even, with no two clients in the same slot.
    const sorted = [...hints.values()].sort((x, y) => x - y);
    assert.equal(sorted.length, N);
    sorted.forEach((h, i) => assert.ok(h >= Math.floor((WINDOW * i) / N) && h <= Math.ceil((WINDOW * (i + 1)) / N), `hint ${i} = ${h}`));

    // Everyone is back on B, no sooner than told, with the session resumed.
    for (let i = 0; i < 200 && backAt.size < N; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(backAt.size, N);
    for (const [user, e] of backAt) {
      assert.ok(e.at - t0 >= hints.get(user)! - 15, `${user} came back ${(e.at - t0).toFixed(0)} ms after the drain began, its hint was ${hints.get(user)}`);
      assert.ok(e.resumed, `${user} resumed its session`);
    }
    assert.equal(await got1, 'queued');
    for (const c of clients) c.close();
    await b.close();
    await store.close();
  });

  test('a gateway draining with nothing in flight closes every link at once and refuses newcomers', async () => {
    const a = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, wheelTickMs: 10 });
    const addrs = await a.listen();
    const cs = [
      new LonglinkClient({ url: `tcp://127.0.0.1:${addrs.tcp!.port}`, userId: 't', deviceId: 'd', reconnect: { enabled: false } }),
      new LonglinkClient({ url: `ws://127.0.0.1:${addrs.ws!.port}/longlink`, userId: 'w', deviceId: 'd', reconnect: { enabled: false } }),
    ];
    await Promise.all(cs.map((c) => c.connect()));
    const codes = cs.map((c) => new Promise<number>((r) => c.once('close', (e) => r(e.code))));
    const t0 = performance.now();
    const report = await a.drain({ windowMs: 5000 });
    assert.ok(performance.now() - t0 < 2000, 'no acknowledgement to wait for');
    assert.equal(report.settled, 2);
    assert.deepEqual(await Promise.all(codes), [CloseCodes['going-away'], CloseCodes['going-away']]);
    const late = new LonglinkClient({ url: `tcp://127.0.0.1:${addrs.tcp!.port}`, userId: 'late', deviceId: 'd', reconnect: { enabled: false } });
    await assert.rejects(late.connect());
    late.close();
  });
});

test('drain refuses a window or wait no timer can hold (past 2^31 - 1 ms a timer fires at once) and leaves the gateway serving', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  await gw.listen();
  try {
    await assert.rejects(gw.drain({ windowMs: 2 ** 32 }), { code: 'LL_ERR_INVALID_OPTION' });
    await assert.rejects(gw.drain({ ackTimeoutMs: Number.NaN }), { code: 'LL_ERR_INVALID_OPTION' });
    assert.equal(gw.closed, false, 'still serving');
  } finally {
    await gw.close();
  }
});

test('drain refuses a window longer than a hint can carry (an hour): clamped, the hints past it were all an hour, and half the fleet came back in the same instant', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  await gw.listen();
  try {
    await assert.rejects(gw.drain({ windowMs: 2 * 3600_000 }), { code: 'LL_ERR_INVALID_OPTION' });
    assert.equal(gw.closed, false, 'still serving');
  } finally {
    await gw.close();
  }
});
