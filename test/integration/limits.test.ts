import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { MAX_REFUSED_OPEN_PER_SOURCE } from '../../src/gateway/admission.js';
import { Gateway, type RefusedEvent } from '../../src/gateway/gateway.js';
import type { GatewayOptions } from '../../src/gateway/options.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';

// Every limit over real sockets: the offender is closed (or refused) with its
// own code, and a client that keeps within the limits is unaffected.

async function gateway(opts: GatewayOptions): Promise<{ gw: Gateway; port: number; refused: RefusedEvent[] }> {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, wheelTickMs: 10, ...opts });
  const refused: RefusedEvent[] = [];
  gw.on('refused', (e) => refused.push(e));
  return { gw, port: (await gw.listen()).tcp!.port, refused };
}

describe('connection limits', () => {
  test('maxConnections: the next is refused with GOAWAY and too-many-connections; a freed slot is reused', async () => {
    const { gw, port, refused } = await gateway({ limits: { maxConnections: 3 } });
    try {
      const held = [new RawPeer(port), new RawPeer(port), new RawPeer(port)];
      await Promise.all(held.map((p) => p.connected));
      await new Promise((r) => setTimeout(r, 50));
      const extra = new RawPeer(port);
      await extra.closed;
      assert.equal(extra.closeCode, CloseCodes['too-many-connections']);
      assert.equal(extra.goaway?.code, CloseCodes['too-many-connections']);
      assert.ok(extra.goaway!.reconnectAfterMs! >= 5000 && extra.goaway!.reconnectAfterMs! <= 15000, 'the hint spreads returns over 5-15 s');
      assert.equal(refused.length, 1);
      held[0].destroy();
      await held[0].closed;
      await new Promise((r) => setTimeout(r, 50));
      const next = new RawPeer(port);
      next.hello('late');
      await next.welcome();
      assert.equal(gw.admissionStats().refusedTotal, 1);
      for (const p of [...held, next]) p.destroy();
    } finally {
      await gw.close();
    }
  });

  test('maxConnectionsPerSource: a third from 127.0.0.2 is refused, another source is not', async () => {
    const { gw, port } = await gateway({ limits: { maxConnectionsPerSource: 2 } });
    try {
      const a = [new RawPeer(port, { localAddress: '127.0.0.2' }), new RawPeer(port, { localAddress: '127.0.0.2' })];
      await Promise.all(a.map((p) => p.connected));
      await new Promise((r) => setTimeout(r, 50));
      const third = new RawPeer(port, { localAddress: '127.0.0.2' });
      const other = new RawPeer(port, { localAddress: '127.0.0.3' });
      await third.closed;
      assert.equal(third.closeCode, CloseCodes['too-many-connections']);
      other.hello('other');
      await other.welcome();
      assert.equal(gw.admissionStats().refusedPerSource, 1);
      for (const p of [...a, other]) p.destroy();
    } finally {
      await gw.close();
    }
  });

  test('maxOnlineDevicesPerUser: a new device of a user at the bound gets GOAWAY and too-many-devices; a device online reconnecting is admitted, another user is not counted, a freed place is reused', async () => {
    const { gw, port, refused } = await gateway({ limits: { maxOnlineDevicesPerUser: 3 } });
    const peers: RawPeer[] = [];
    const peer = () => {
      const p = new RawPeer(port);
      peers.push(p);
      return p;
    };
    try {
      const held = ['d1', 'd2', 'd3'].map((d) => {
        const p = peer();
        p.hello('u', d);
        return p;
      });
      for (const p of held) await p.welcome();
      const fourth = peer();
      fourth.hello('u', 'd4');
      await fourth.closed;
      assert.equal(fourth.closeCode, CloseCodes['too-many-devices'], "a fourth device of u is refused: the user's devices online are bounded");
      assert.equal(fourth.goaway?.code, CloseCodes['too-many-devices']);
      assert.ok(fourth.goaway!.reconnectAfterMs! >= 15_000 && fourth.goaway!.reconnectAfterMs! <= 45_000, `the hint spreads returns over 15-45 s (${fourth.goaway!.reconnectAfterMs})`);
      assert.deepEqual(refused.map((e) => [e.reason, e.userId, e.deviceId, e.retryAfterMs]), [['too-many-devices', 'u', 'd4', fourth.goaway!.reconnectAfterMs]], 'refused in the handshake: a `refused` event names the device');
      assert.equal((await gw.presence('u')).length, 3);
      // d2 reconnects (its old link not yet closed): at the bound, and admitted; the old link is replaced.
      const again = peer();
      again.hello('u', 'd2');
      await again.welcome();
      await held[1].closed;
      assert.equal(held[1].closeCode, CloseCodes.replaced);
      const other = peer();
      other.hello('v', 'd4');
      await other.welcome();
      // d1 leaves: d4 takes its place.
      held[0].destroy();
      for (let i = 0; i < 100 && (await gw.presence('u')).length > 2; i++) await new Promise((r) => setTimeout(r, 10));
      const late = peer();
      late.hello('u', 'd4');
      await late.welcome();
      assert.deepEqual((await gw.presence('u')).map((e) => e.deviceId).sort(), ['d2', 'd3', 'd4']);
    } finally {
      for (const p of peers) p.destroy();
      await gw.close();
    }
  });

  test('handshake rate: beyond the burst new connections are refused with rate-limited, and a client honours the hint', async () => {
    const { gw, port, refused } = await gateway({ limits: { handshakesPerSecond: 4, handshakeBurst: 4 } });
    try {
      const peers = Array.from({ length: 7 }, () => new RawPeer(port));
      await new Promise((r) => setTimeout(r, 150));
      const closedCodes = peers.map((p) => p.closeCode).filter((c) => c !== undefined);
      assert.ok(closedCodes.length === 3 || closedCodes.length === 2, `four admitted by the burst (and at most one refilled), the rest refused (${closedCodes.length})`);
      assert.ok(closedCodes.every((c) => c === CloseCodes['rate-limited']));
      assert.ok(refused.every((e) => e.reason === 'rate-limited' && e.retryAfterMs > 0));
      for (const p of peers) p.destroy();
      // The bucket is empty again: a real client is refused, waits the hint, and gets in.
      for (let i = 0; i < 6; i++) new RawPeer(port).destroy();
      await new Promise((r) => setTimeout(r, 20));
      const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'patient', deviceId: 'd' });
      const delays: number[] = [];
      c.on('reconnecting', (e) => delays.push(e.delayMs));
      await c.connect();
      assert.ok(delays.length >= 1, 'the first attempt was refused');
      assert.ok(refused.some((e) => e.retryAfterMs === delays[0]), 'the client waited exactly the GOAWAY hint');
      c.close();
    } finally {
      await gw.close();
    }
  });

  test('one address in a connect-and-close loop cannot take the whole handshake rate: newcomers from another address still get in', async () => {
    // Each socket is closed as soon as it connects: nothing is held or pending, so only a rate bounds the loop.
    const { gw, port } = await gateway({ limits: { handshakesPerSecond: 100 } });
    let stop = false;
    let attempts = 0;
    const loop = async () => {
      while (!stop) {
        const s = net.connect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        await new Promise<void>((r) => {
          const t = setTimeout(r, 50);
          const done = () => (clearTimeout(t), r());
          s.once('connect', done);
          s.once('close', done);
        });
        attempts++;
        s.destroy();
      }
    };
    const loops = Array.from({ length: 10 }, loop);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const got: string[] = [];
      for (let i = 0; i < 5; i++) {
        const p = new RawPeer(port, { localAddress: '127.0.0.2' });
        await p.connected;
        p.hello(`newcomer-${i}`);
        const f = await p.next(() => true);
        got.push(f.type === FrameType.WELCOME ? 'welcome' : f.type === FrameType.GOAWAY ? `goaway ${f.reason}` : `frame ${f.type}`);
        p.destroy();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(attempts > 500, `the loop ran (${attempts} sockets)`);
      assert.deepEqual(got, ['welcome', 'welcome', 'welcome', 'welcome', 'welcome']);
      assert.ok(gw.admissionStats().refusedRatePerSource > 0, 'the loop was refused by its share');
    } finally {
      stop = true;
      await Promise.all(loops);
      await gw.close();
    }
  });
});

describe('WebSocket admission at accept', () => {
  /** A raw socket to the WebSocket port that sends nothing (an upgrade never finished). */
  function idleSocket(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
      s.once('error', reject);
    });
  }

  test('sockets that never finish the upgrade count per source; the refused get a 503 with the GOAWAY hint, closed cleanly', async () => {
    const gw = new Gateway({ tcp: false, ws: { port: 0 }, limits: { maxConnectionsPerSource: 5, maxPendingHandshakesPerSource: 100 } });
    const refused: RefusedEvent[] = [];
    gw.on('refused', (e) => refused.push(e));
    const port = (await gw.listen()).ws!.port;
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 5; i++) held.push(await idleSocket(port));
      // The sixth from the same address is refused at accept, before a byte of its request.
      const sixth = await idleSocket(port);
      let answer = '';
      sixth.on('data', (d) => (answer += d));
      sixth.write('GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      const how = await new Promise<string>((r) => {
        sixth.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
        sixth.once('end', () => r('end'));
      });
      sixth.destroy();
      assert.equal(how, 'end', 'a clean close, never a reset');
      assert.match(answer, /^HTTP\/1.1 503 /);
      assert.match(answer, /\r\nx-longlink-goaway: too-many-connections; \d+\r\n/i);
      assert.equal(refused.at(-1)?.transport, 'ws');
      // Another source is unaffected, and a longlink client from the full one honours the hint.
      const other = new LonglinkClient({ url: `ws://127.0.0.1:${port}/longlink`, userId: 'other', deviceId: 'd', localAddress: '127.0.0.2' });
      await other.connect();
      other.close();
      const c = new LonglinkClient({ url: `ws://127.0.0.1:${port}/longlink`, userId: 'u', deviceId: 'd' });
      const closes: { code: number }[] = [];
      const delays: number[] = [];
      c.on('close', (e) => closes.push(e));
      c.on('reconnecting', (e) => delays.push(e.delayMs));
      const connected = c.connect().catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(closes[0]?.code, CloseCodes['too-many-connections']);
      assert.equal(delays[0], refused.at(-1)!.retryAfterMs, 'the client waits the hint from the 503');
      // Abandoned upgrades give their places back.
      for (const s of held) s.destroy();
      held.length = 0;
      c.close();
      await new Promise((r) => setTimeout(r, 100));
      const before = gw.admissionStats().refusedPerSource;
      for (let i = 0; i < 5; i++) held.push(await idleSocket(port));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(gw.admissionStats().refusedPerSource, before, 'five places free again');
      await connected;
    } finally {
      for (const s of held) s.destroy();
      await gw.close();
    }
  });

  test('pending upgrades are bounded per source: one address cannot hold the whole backlog', async () => {
    const gw = new Gateway({ tcp: false, ws: { port: 0 }, limits: { maxPendingHandshakes: 20, maxPendingHandshakesPerSource: 4 } });
    const port = (await gw.listen()).ws!.port;
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) held.push(await idleSocket(port));
      const fifth = await idleSocket(port);
      const ended = await new Promise<boolean>((r) => {
        fifth.once('end', () => r(true));
        fifth.once('error', () => r(false));
        fifth.resume();
      });
      assert.ok(ended, 'refused with a response and a clean close');
      fifth.destroy();
      assert.equal(gw.admissionStats().refusedPendingPerSource, 1);
      const c = new LonglinkClient({ url: `ws://127.0.0.1:${port}/longlink`, userId: 'u', deviceId: 'd', localAddress: '127.0.0.2' });
      await c.connect();
      c.close();
    } finally {
      for (const s of held) s.destroy();
      await gw.close();
    }
  });

  test('a plain HTTP request on the WebSocket port gets 426 and the socket is closed: it cannot be kept alive as a pending handshake', async () => {
    const gw = new Gateway({ tcp: false, ws: { port: 0 }, limits: { maxPendingHandshakesPerSource: 4 } });
    const port = (await gw.listen()).ws!.port;
    try {
      const s = net.connect(port, '127.0.0.1');
      let text = '';
      s.setEncoding('utf8');
      s.on('data', (d) => (text += d));
      s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
      const ended = await new Promise<boolean>((r) => {
        const t = setTimeout(() => r(false), 2000);
        s.once('close', () => (clearTimeout(t), r(true)));
      });
      assert.match(text, /^HTTP\/1\.1 426/);
      assert.match(text, /connection: close/i);
      assert.ok(ended, 'closed by the gateway right after the answer, though the request asked for keep-alive');
      // Its pending-handshake slot is free again: a source at its bound connects.
      const held: net.Socket[] = [];
      for (let i = 0; i < 3; i++) held.push(await idleSocket(port));
      const c = new LonglinkClient({ url: `ws://127.0.0.1:${port}/longlink`, userId: 'u', deviceId: 'd' });
      await c.connect();
      c.close();
      for (const h of held) h.destroy();
    } finally {
      await gw.close();
    }
  });
});

test(`refused sockets that neither read nor close are held at most ${MAX_REFUSED_OPEN_PER_SOURCE} from one source (each waited out its GOAWAY or 503 for a second): the rest are dropped at once, on both ports`, async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, limits: { maxConnectionsPerSource: 1 } });
  const a = await gw.listen();
  const servers = gw as unknown as { tcpServer: net.Server; wsServer: { http: net.Server } };
  try {
    for (const [port, server, from] of [[a.tcp!.port, servers.tcpServer, '127.0.0.3'], [a.ws!.port, servers.wsServer.http, '127.0.0.4']] as const) {
      const socks: net.Socket[] = [];
      const answers: string[] = [];
      for (let i = 0; i < 300; i++) {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
        s.on('error', () => {});
        if (i >= 1 && i < 10) {
          // A few that read: refused with an answer (GOAWAY or 503).
          answers.push('');
          const k = answers.length - 1;
          s.on('data', (d: Buffer) => (answers[k] += d.toString('latin1')));
        } else s.pause();
        socks.push(s);
        // The first is admitted: connected before the rest.
        if (i === 0) await new Promise((r) => s.once('connect', r));
      }
      await Promise.all(socks.slice(1).map((s) => new Promise((r) => (s.once('connect', r), s.once('close', r)))));
      await new Promise((r) => setTimeout(r, 200));
      const held = await new Promise<number>((r) => server.getConnections((_e, n) => r(n)));
      // The one admitted, and the refused still waiting for their peer.
      assert.ok(held <= 1 + MAX_REFUSED_OPEN_PER_SOURCE, `${held} sockets held for one source with a limit of 1`);
      assert.equal(answers.filter((t) => t.length > 0).length, 9, 'the first refused were answered');
      // Their places come back as they close: the source, refused again, is answered again.
      for (const s of socks.slice(1)) s.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const again = net.connect({ port, host: '127.0.0.1', localAddress: from });
      again.on('error', () => {});
      let text = '';
      again.on('data', (d: Buffer) => (text += d.toString('latin1')));
      if (port === a.ws!.port) again.write('GET /longlink HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((r) => again.once('close', r));
      assert.ok(text.length > 0, 'answered again');
      socks[0].destroy();
    }
  } finally {
    await gw.close();
  }
});

describe('heartbeat-rate enforcement (too-many-pings)', () => {
  const opts: GatewayOptions = { limits: { minPingGapMs: 50, pingBurst: 4 }, heartbeat: { intervalMs: 1000, minIntervalMs: 250 } };

  test('a flood of PINGs is warned once, then sent GOAWAY and closed with 4006; a polite peer is not', async () => {
    const { gw, port } = await gateway(opts);
    try {
      const polite = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'polite', deviceId: 'd', intervalMs: 250 });
      const warnings: number[] = [];
      polite.on('warning', (w) => warnings.push(w.code));
      await polite.connect();
      const flood = new RawPeer(port);
      flood.hello('flood');
      await flood.welcome();
      const offline = once(gw, 'offline');
      for (let i = 0; i < 20; i++) flood.send({ type: FrameType.PING });
      await flood.closed;
      const pongs = flood.frames.filter((f): f is Extract<Frame, { type: 4 }> => f.type === FrameType.PONG);
      assert.equal(pongs.filter((p) => p.warn === CloseCodes['too-many-pings']).length, 1, 'exactly one warning');
      assert.ok(pongs.length >= 5 && pongs.length <= 6, `the burst and the warned one are answered (${pongs.length})`);
      assert.equal(flood.goaway?.code, CloseCodes['too-many-pings']);
      assert.ok(flood.goaway!.reconnectAfterMs! >= 1000, 'told to come back no sooner than an interval');
      assert.equal(flood.closeCode, CloseCodes['too-many-pings']);
      assert.equal((await offline)[0].reason, 'too-many-pings');
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(polite.state, 'open');
      assert.deepEqual(warnings, []);
      polite.close();
    } finally {
      await gw.close();
    }
  });

  test('PONG and ACK frames are paced too (with PINGs and with DATA): a flood of either is warned, then closed; a peer that only floods them is not served for free', async () => {
    const { gw, port } = await gateway({ ...opts, limits: { ...opts.limits, maxDataPerSecond: 100, dataBurst: 10 } });
    try {
      const pongs = new RawPeer(port);
      pongs.hello('pongs');
      await pongs.welcome();
      for (let i = 0; i < 20; i++) pongs.send({ type: FrameType.PONG });
      await pongs.closed;
      assert.equal(pongs.frames.filter((f) => f.type === FrameType.PONG && (f as { warn?: number }).warn === CloseCodes['too-many-pings']).length, 1, 'warned once');
      assert.equal(pongs.closeCode, CloseCodes['too-many-pings']);
      const acks = new RawPeer(port);
      acks.hello('acks');
      await acks.welcome();
      for (let i = 0; i < 40; i++) acks.send({ type: FrameType.ACK, ack: 0 });
      await acks.closed;
      assert.equal(acks.frames.filter((f) => f.type === FrameType.PONG && (f as { warn?: number }).warn === CloseCodes['too-many-messages']).length, 1, 'warned once');
      assert.equal(acks.closeCode, CloseCodes['too-many-messages']);
      // The SDK's own acknowledgements and heartbeats stay far inside both paces.
      const sdk = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'sdk', deviceId: 'd', intervalMs: 250 });
      const warnings: number[] = [];
      sdk.on('warning', (w) => warnings.push(w.code));
      await sdk.connect();
      const pushed = await Promise.all(Array.from({ length: 200 }, (_, i) => gw.push('sdk', `m${i}`, { waitMs: 3000 })));
      assert.equal(pushed.filter((r) => r.delivered === 1).length, 200, 'every one acknowledged');
      // PONGs the gateway asked for are not paced, however often it asks (an operator probing from the dashboard).
      for (let i = 0; i < 60; i++) {
        assert.ok(gw.probe('sdk', 'd'));
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(sdk.state, 'open');
      assert.deepEqual(warnings, []);
      sdk.close();
    } finally {
      await gw.close();
    }
  });

  test('a warned peer that calms down is forgiven; the client SDK reports the warning', async () => {
    const { gw, port } = await gateway(opts);
    try {
      const p = new RawPeer(port);
      p.hello('bursty');
      await p.welcome();
      // Burst 4 at 50 ms: the 5th PING (or the 6th, if the first ones were spread over a few ms) breaks the pace.
      for (let i = 0; i < 6; i++) p.send({ type: FrameType.PING });
      await p.next((f) => f.type === FrameType.PONG && f.warn === CloseCodes['too-many-pings']);
      await new Promise((r) => setTimeout(r, 300)); // the allowance refills (4 × 50 ms)
      for (let i = 0; i < 4; i++) p.send({ type: FrameType.PING });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(p.closeCode, undefined, 'not closed');
      assert.equal(gw.connection('bursty', 'd')?.stats.pingsIn, 10);
      p.destroy();
      // The SDK surfaces the warning as an event.
      const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'sdk', deviceId: 'd' });
      await c.connect();
      const warned = once(c, 'warning');
      // Each change of interval is announced in a PING at once (state flushes are paced by the SDK itself).
      for (let i = 0; i < 8; i++) c.setIntervalMs(i % 2 === 0 ? 2000 : 1000);
      assert.deepEqual((await warned)[0], { code: 4006, reason: 'too-many-pings' });
      c.close();
    } finally {
      await gw.close();
    }
  });
});

test('a write bound too small for the stream to see backpressure is refused with a clear error', () => {
  assert.throws(() => new Gateway({ tcp: false, ws: false, limits: { maxWriteBufferBytes: 10_000 } }), (e: { code?: string; message: string }) => e.code === 'LL_ERR_INVALID_OPTION' && /at least 131072/.test(e.message));
});

test('client outbox: beyond maxOutbox, send throws LL_ERR_OUTBOX_FULL and nothing is queued', () => {
  const c = new LonglinkClient({ url: 'tcp://127.0.0.1:1', userId: 'u', deviceId: 'd', maxOutbox: 3 });
  for (let i = 0; i < 3; i++) c.send(`m${i}`);
  assert.throws(() => c.send('one too many'), (e: { code?: string }) => e.code === 'LL_ERR_OUTBOX_FULL');
  assert.equal(c.pendingCount, 3);
  c.close();
});

describe('slow consumer', () => {
  test('a peer that stops reading is closed with slow-consumer, and every message stays queued for its next connection', async () => {
    const { gw, port } = await gateway({
      limits: { maxWriteBufferBytes: 256 * 1024, slowConsumerMs: 500 },
      delivery: { maxQueuedBytesPerDevice: 64 << 20, maxQueuedPerDevice: 10_000, probeBeforePushMs: 0, pushWaitMs: 0 },
      maxFrameBytes: 128 * 1024,
    });
    try {
      const other = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'other', deviceId: 'd' });
      await other.connect();
      const slow = new RawPeer(port);
      slow.hello('slow');
      await slow.welcome();
      slow.socket.pause(); // reads nothing more: the kernel buffers fill, then the gateway's
      const offline = once(gw, 'offline');
      const N = 400;
      const payload = Buffer.alloc(64 * 1024, 7);
      const pushes = Array.from({ length: N }, (_, i) => gw.push('slow', payload, { id: `m${i}` }));
      const [e] = await offline;
      await Promise.all(pushes);
      assert.equal(e.reason, 'slow-consumer');
      assert.equal(e.code, CloseCodes['slow-consumer']);
      assert.equal(await gw.queueDepth('slow', 'd'), N, 'nothing was dropped');
      slow.destroy();
      // The device comes back with a real client that reads: flow control paces the
      // 25 MB to it (it is never taken for a slow consumer), all N, in order, once.
      const back = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'slow', deviceId: 'd', maxFrameBytes: 128 * 1024 });
      const ids: string[] = [];
      const all = new Promise<void>((r) => back.on('message', (m) => ids.push(m.id!) === N && r()));
      await back.connect();
      await all;
      assert.deepEqual(ids, Array.from({ length: N }, (_, i) => `m${i}`));
      assert.equal(other.state, 'open');
      for (let i = 0; i < 100 && gw.deliveryStats.delivered < N; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(gw.deliveryStats.delivered, N, 'every message acknowledged');
      back.close();
      other.close();
    } finally {
      await gw.close();
    }
  });

  test('small frames to a peer that stopped reading cost their bytes, not a queued write each: the heap stays near maxWriteBufferBytes', async () => {
    const v8 = await import('node:v8');
    const vm = await import('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const { gw, port } = await gateway({});
    try {
      const p = new RawPeer(port);
      p.hello('deaf');
      await p.welcome();
      p.socket.pause();
      let offline: { reason: string } | null = null;
      gw.on('offline', (e) => (offline = e));
      const heap = () => {
        gc();
        const m = process.memoryUsage();
        return m.heapUsed + m.external;
      };
      const base = heap();
      let peak = 0;
      let sent = 0;
      // Fire-and-forget sends of 10 bytes (a frame of 14): 4 MiB of them is about 300,000 writes.
      const payload = Buffer.alloc(10);
      while (offline === null && sent < 2_000_000) {
        for (let i = 0; i < 20_000 && offline === null; i++) sent += gw.send('deaf', payload);
        peak = Math.max(peak, heap() - base);
        await new Promise((r) => setImmediate(r));
      }
      assert.equal((offline as { reason: string } | null)?.reason, 'slow-consumer');
      // Queued as a write each, they held 51 MB of heap and buffers behind the 4 MiB bound.
      assert.ok(peak < 16 << 20, `${(peak / 1e6).toFixed(1)} MB held for ${sent} frames of 14 bytes; the bound is 4 MiB`);
      p.destroy();
    } finally {
      await gw.close();
    }
  });

  test('PONGs piling up past maxWriteBufferBytes (PING pace off, a peer that pings and never reads) close the link', async () => {
    const { gw, port } = await gateway({ limits: { minPingGapMs: 0, maxWriteBufferBytes: 128 * 1024, slowConsumerMs: 60_000 } });
    try {
      const other = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'other', deviceId: 'd' });
      await other.connect();
      const p = new RawPeer(port);
      p.hello('deaf');
      await p.welcome();
      p.socket.pause();
      let offline: { reason: string; code: number } | null = null;
      gw.on('offline', (e) => {
        if (e.userId === 'deaf') offline = e;
      });
      // 32,768 bare PINGs a write: each is answered with a PONG the peer never reads.
      const pings = Buffer.alloc(64 * 1024);
      for (let i = 0; i < pings.length; i += 2) pings.set([1, FrameType.PING], i);
      const t0 = Date.now();
      let written = 0;
      while (offline === null && Date.now() - t0 < 20_000) {
        if (!p.socket.write(pings)) await new Promise((r) => setTimeout(r, 5));
        written += pings.length;
        await new Promise((r) => setImmediate(r));
      }
      const e = offline as { reason: string; code: number } | null;
      assert.ok(e, `not closed after ${written} bytes of PINGs, ${Math.round(process.memoryUsage().heapUsed / 1e6)} MB of heap`);
      assert.equal(e.reason, 'slow-consumer');
      assert.equal(e.code, CloseCodes['slow-consumer']);
      assert.equal(other.state, 'open');
      p.destroy();
      other.close();
    } finally {
      await gw.close();
    }
  });

  test('fire-and-forget output piling up past maxWriteBufferBytes closes the link at once', async () => {
    const { gw, port } = await gateway({ limits: { maxWriteBufferBytes: 256 * 1024, slowConsumerMs: 60_000 }, maxFrameBytes: 128 * 1024 });
    try {
      const p = new RawPeer(port);
      p.hello('deaf');
      await p.welcome();
      p.socket.pause();
      const offline = once(gw, 'offline');
      const payload = Buffer.alloc(100 * 1024);
      const t0 = Date.now();
      let sent = 0;
      while (gw.connection('deaf', 'd') && sent < 1000) sent += gw.send('deaf', payload);
      const [e] = await offline;
      assert.equal(e.reason, 'slow-consumer');
      assert.ok(Date.now() - t0 < 5000, 'closed by the bound, not by the 60 s stall timer');
      assert.ok(sent < 1000);
      p.destroy();
    } finally {
      await gw.close();
    }
  });
});
