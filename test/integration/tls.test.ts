import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { once } from 'node:events';
import { Gateway } from '../../src/gateway/gateway.js';
import { LonglinkClient } from '../../src/client/client.js';
import { readKeepalive } from '../../src/link/socket-tuning.js';
import { TcpLink } from '../../src/link/tcp-link.js';
import { testCertificate } from '../helpers/certs.js';

// TLS on both transports with a certificate made for this run: sessions,
// heartbeats and delivery work over tls:// and wss://, an untrusted
// certificate is refused by the client, plaintext and stalled handshakes are
// dropped, and the gateway keeps serving.

describe('TLS (tcp and wss)', () => {
  let gw: Gateway;
  let cert: { cert: string; key: string };
  let tcpPort: number;
  let wsPort: number;
  before(async () => {
    cert = await testCertificate();
    gw = new Gateway({
      tcp: { port: 0, tls: cert },
      ws: { port: 0, tls: cert },
      keepalive: { keepaliveIdleMs: 7000, keepaliveIntervalMs: 2000, keepaliveCount: 3 },
      handshakeTimeoutMs: 400,
      heartbeat: { intervalMs: 200, minIntervalMs: 100 },
    });
    const a = await gw.listen();
    tcpPort = a.tcp!.port;
    wsPort = a.ws!.port;
  });
  after(() => gw.close());

  for (const scheme of ['tls', 'wss'] as const) {
    test(`${scheme}: a session opens, heartbeats flow, and messages go both ways`, async () => {
      const url = scheme === 'tls' ? `tls://localhost:${tcpPort}` : `wss://localhost:${wsPort}/longlink`;
      const c = new LonglinkClient({ url, userId: `u-${scheme}`, deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
      const got = new Promise<string>((r) => gw.once('message', (m) => r(Buffer.from(m.payload).toString())));
      await c.connect();
      c.send(`hello over ${scheme}`);
      assert.equal(await got, `hello over ${scheme}`);
      const inbox = once(c, 'message');
      const res = await gw.push(`u-${scheme}`, 'pushed');
      assert.equal(res.devices[0].status, 'delivered');
      assert.equal(Buffer.from((await inbox)[0].payload).toString(), 'pushed');
      const pings = c.stats.pingsSent;
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(c.stats.pingsSent >= pings + 2, 'heartbeats keep flowing over TLS');
      assert.equal(c.stats.pongsReceived, c.stats.pingsSent);
      c.close();
    });

    test(`${scheme}: a client that does not trust the certificate refuses the gateway`, async () => {
      const url = scheme === 'tls' ? `tls://localhost:${tcpPort}` : `wss://localhost:${wsPort}/longlink`;
      const c = new LonglinkClient({ url, userId: 'u', deviceId: 'd', reconnect: { enabled: false } });
      await assert.rejects(c.connect());
      c.close();
    });
  }

  test('keepalive options reach TLS sockets on the gateway', async () => {
    const conn = once(gw, 'online');
    const c = new LonglinkClient({ url: `tls://localhost:${tcpPort}`, userId: 'ka', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
    await c.connect();
    const [e] = await conn;
    const socket = (gw as unknown as { registry: { get(u: string, d: string): { link: TcpLink } } }).registry.get(e.userId, e.deviceId).link.socket;
    assert.ok(socket instanceof tls.TLSSocket);
    assert.equal(readKeepalive(socket).intervalMs, 2000);
    assert.equal(readKeepalive(socket).count, 3);
    c.close();
  });

  test('tls: the handshake deadline counts from the TCP accept, not again from the end of the TLS handshake: a slow TLS handshake, then no HELLO, is closed within one deadline', async () => {
    // The TLS handshake and HELLO each had the whole handshakeTimeoutMs (400 ms here): such a peer was held for up to twice it.
    const raw = net.connect(tcpPort, '127.0.0.1');
    raw.on('error', () => {});
    await once(raw, 'connect');
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 250));
    const s = tls.connect({ socket: raw, ca: cert.cert, servername: 'localhost' });
    s.on('error', () => {});
    s.resume(); // read the gateway's CLOSE, or its end never comes
    const closed = once(s, 'close');
    await once(s, 'secureConnect');
    await closed;
    const ms = performance.now() - t0;
    assert.ok(ms >= 350 && ms < 600, `closed ${ms.toFixed(0)} ms after the TCP accept (deadline 400)`);
  });

  test('plaintext to the TLS port and a stalled TLS handshake are dropped; others are unaffected', async () => {
    const keeper = new LonglinkClient({ url: `tls://localhost:${tcpPort}`, userId: 'keeper', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
    await keeper.connect();
    // Plaintext longlink bytes are not a TLS ClientHello.
    const plain = net.connect(tcpPort, '127.0.0.1');
    plain.on('error', () => {});
    plain.write(Buffer.from([0x10, 0x01, 0x02, 0x03]));
    // Connected, and then silent: the TLS handshake never starts.
    const silent = net.connect(tcpPort, '127.0.0.1');
    silent.on('error', () => {});
    const t0 = Date.now();
    await Promise.all([once(plain, 'close'), once(silent, 'close')]);
    assert.ok(Date.now() - t0 < 3000, 'both are dropped by the handshake deadline');
    assert.equal(keeper.state, 'open');
    assert.equal(gw.connection('keeper', 'd')?.userId, 'keeper');
    keeper.close();
  });
});

test('setTls on a gateway that serves no TLS is refused with a code; on a TLS one a bad pair throws and leaves the listener as it was', async () => {
  const plain = new Gateway({ tcp: { port: 0 }, ws: false });
  await plain.listen();
  try {
    const c = await testCertificate();
    assert.throws(() => plain.setTls(c), { code: 'LL_ERR_INVALID_OPTION' });
  } finally {
    await plain.close();
  }
  const [a, b] = await Promise.all([testCertificate(), testCertificate()]);
  const gw = new Gateway({ tcp: { port: 0, tls: a }, ws: { port: 0, tls: a } });
  const addr = await gw.listen();
  try {
    assert.throws(() => gw.setTls({ cert: b.cert, key: a.key }));
    const served = async (port: number) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' });
      await once(s, 'secureConnect');
      const f = s.getPeerX509Certificate()!.fingerprint256;
      s.destroy();
      return f;
    };
    const { X509Certificate } = await import('node:crypto');
    for (const p of [addr.tcp!.port, addr.ws!.port]) assert.equal(await served(p), new X509Certificate(a.cert).fingerprint256, 'the old pair still served');
    gw.setTls(b);
    for (const p of [addr.tcp!.port, addr.ws!.port]) assert.equal(await served(p), new X509Certificate(b.cert).fingerprint256, 'the new pair served');
  } finally {
    await gw.close();
  }
});

test('wss: a socket refused at accept gets its 503 and GOAWAY hint inside TLS (not as plaintext, a TLS error to the client), and the client honours it', async () => {
  const { dial } = await import('../../src/client/connect.js');
  const { RefusedError } = await import('../../src/protocol/errors.js');
  const cert = await testCertificate();
  const gw = new Gateway({ tcp: false, ws: { port: 0, tls: cert }, limits: { maxConnectionsPerSource: 1 } });
  const refused: { retryAfterMs: number }[] = [];
  gw.on('refused', (e) => refused.push(e));
  const url = `wss://localhost:${(await gw.listen()).ws!.port}/longlink`;
  const held = new LonglinkClient({ url, userId: 'held', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
  try {
    await held.connect();
    const err = await dial(url, { timeoutMs: 3000, maxFrameBytes: 65536, keepalive: {}, tls: { ca: cert.cert } }).then(
      (l) => (l.destroy(), null),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RefusedError, `refused with ${String(err)}`);
    assert.equal(err.reason, 'too-many-connections');
    assert.equal(err.retryAfterMs, refused.at(-1)!.retryAfterMs);
    const c = new LonglinkClient({ url, userId: 'u', deviceId: 'd', tls: { ca: cert.cert } });
    const delays: number[] = [];
    c.on('reconnecting', (e) => delays.push(e.delayMs));
    const connected = c.connect().catch(() => {});
    for (let i = 0; i < 100 && delays.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(delays[0], refused.at(-1)!.retryAfterMs, 'the client waits the hint from the 503');
    c.close();
    await connected;
    assert.equal(held.state, 'open');
  } finally {
    held.close();
    await gw.close();
  }
});

test('a refused socket that sends a plain GET (not an upgrade) gets the same 503 and GOAWAY hint on wss:// as on ws:// (wss answered 426, without the hint)', async () => {
  const cert = await testCertificate();
  const answers: Record<string, string> = {};
  for (const secure of [false, true]) {
    const gw = new Gateway({ tcp: false, ws: { port: 0, ...(secure ? { tls: cert } : {}) }, limits: { maxConnectionsPerSource: 1 } });
    const port = (await gw.listen()).ws!.port;
    const url = `${secure ? 'wss' : 'ws'}://localhost:${port}/longlink`;
    const held = new LonglinkClient({ url, userId: 'held', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
    try {
      await held.connect();
      const s = secure ? tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: cert.cert }) : net.connect(port, '127.0.0.1');
      await once(s, secure ? 'secureConnect' : 'connect');
      let text = '';
      s.setEncoding('utf8');
      s.on('data', (d) => (text += d));
      s.on('error', () => {});
      s.write('GET /longlink HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 3000))]);
      s.destroy();
      // The hint's milliseconds vary from one gateway to the next: the status and the reason must not.
      answers[secure ? 'wss' : 'ws'] = text.split('\r\n')[0] + ' ' + (/x-longlink-goaway: ([a-z-]+); \d+/i.exec(text)?.[1] ?? '(no hint)');
    } finally {
      held.close();
      await gw.close();
    }
  }
  assert.equal(answers.ws, 'HTTP/1.1 503 Service Unavailable too-many-connections');
  assert.equal(answers.wss, answers.ws);
});

describe('admission on the TLS ports counts a socket from its TCP accept, through its TLS handshake', () => {
  /** A raw TCP socket to `port` that sends nothing (a TLS handshake never started); `closed` once the gateway drops it. */
  function stalled(port: number): Promise<{ s: net.Socket; closed: () => boolean }> {
    return new Promise((resolve, reject) => {
      let closed = false;
      const s = net.connect({ port, host: '127.0.0.1' }, () => resolve({ s, closed: () => closed }));
      s.on('error', () => {});
      s.once('close', () => (closed = true));
      s.once('end', () => (closed = true));
      s.once('error', reject);
    });
  }
  const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

  for (const scheme of ['tls', 'wss'] as const) {
    test(`${scheme}: stalled TLS handshakes from one address are bounded by maxPendingHandshakesPerSource and maxConnectionsPerSource, and give their places back on every path`, async () => {
      const cert = await testCertificate();
      const gw = new Gateway({
        tcp: scheme === 'tls' ? { port: 0, tls: cert } : false,
        ws: scheme === 'wss' ? { port: 0, tls: cert } : false,
        handshakeTimeoutMs: 5000,
        limits: { maxConnectionsPerSource: 6, maxPendingHandshakesPerSource: 3 },
      });
      const a = await gw.listen();
      const port = scheme === 'tls' ? a.tcp!.port : a.ws!.port;
      const url = scheme === 'tls' ? `tls://localhost:${port}` : `wss://localhost:${port}/longlink`;
      const sockets: net.Socket[] = [];
      const clients: LonglinkClient[] = [];
      try {
        // 30 sockets from one address, each silent: the gateway keeps at most 3 (its pending share).
        const opened = [];
        for (let i = 0; i < 30; i++) opened.push(await stalled(port));
        sockets.push(...opened.map((o) => o.s));
        // wss answers a refused socket inside TLS (its 503 and hint), so it holds it up to 2 s for that; tls:// closes it at once.
        await settle(scheme === 'wss' ? 2300 : 150);
        const kept = opened.filter((o) => !o.closed()).length;
        assert.ok(kept <= 3, `the gateway keeps ${kept} stalled TLS handshakes from one address (maxPendingHandshakesPerSource 3)`);
        assert.ok(gw.admissionStats().refusedPendingPerSource >= 27, 'refused for their pending handshakes');
        // Closed mid-handshake: the places come back.
        for (const s of sockets) s.destroy();
        sockets.length = 0;
        await settle();
        // A finished handshake is counted once: 6 sessions from one address open (not 3 TLS + 3 counted twice), the 7th is refused.
        for (let i = 0; i < 6; i++) {
          const c = new LonglinkClient({ url, userId: `u${i}`, deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
          clients.push(c);
          await c.connect();
        }
        const seventh = new LonglinkClient({ url, userId: 'u7', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
        await assert.rejects(seventh.connect());
        seventh.close();
        for (const c of clients) c.close();
        clients.length = 0;
        await settle(300);
        // A failed TLS handshake (plaintext) gives its place back.
        for (let i = 0; i < 5; i++) {
          const p = net.connect(port, '127.0.0.1');
          p.on('error', () => {});
          p.write(Buffer.from([0x10, 0x01, 0x02, 0x03]));
          await once(p, 'close');
        }
        // So does the TLS handshake deadline.
        const slow = new Gateway({ tcp: scheme === 'tls' ? { port: 0, tls: cert } : false, ws: scheme === 'wss' ? { port: 0, tls: cert } : false, handshakeTimeoutMs: 200, limits: { maxConnectionsPerSource: 6, maxPendingHandshakesPerSource: 3 } });
        const sa = await slow.listen();
        const sport = scheme === 'tls' ? sa.tcp!.port : sa.ws!.port;
        try {
          for (let round = 0; round < 2; round++) {
            const batch = [];
            for (let i = 0; i < 3; i++) batch.push(await stalled(sport));
            await Promise.all(batch.map((b) => (b.closed() ? null : once(b.s, 'close'))));
          }
          const before = slow.admissionStats().refusedPendingPerSource;
          const c = new LonglinkClient({ url: scheme === 'tls' ? `tls://localhost:${sport}` : `wss://localhost:${sport}/longlink`, userId: 'after', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
          await c.connect();
          c.close();
          assert.equal(slow.admissionStats().refusedPendingPerSource, before, 'timed-out handshakes gave their places back');
        } finally {
          await slow.close();
        }
        const c = new LonglinkClient({ url, userId: 'last', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
        await c.connect();
        c.close();
      } finally {
        for (const s of sockets) s.destroy();
        for (const c of clients) c.close();
        await gw.close();
      }
    });
  }
});

for (const kind of ['ws', 'wss', 'tls'] as const) {
  test(`${kind}: sockets reset by their peer before the gateway saw them (no remote address at accept) give their admission places back`, async () => {
    // Such sockets all shared one key ("undefined|undefined"): each overwrote the last one's entry, whose close then
    // released nothing. 2,000 of them left 499 handshakes counted as pending for ever: the whole backlog (500), and
    // every newcomer from anywhere was refused.
    const cert = await testCertificate();
    const gw = new Gateway({
      tcp: kind === 'tls' ? { port: 0, tls: cert } : false,
      ws: kind === 'tls' ? false : { port: 0, ...(kind === 'wss' ? { tls: cert } : {}) },
      handshakeTimeoutMs: 5000,
      limits: { maxConnectionsPerSource: 0, maxPendingHandshakesPerSource: 0, handshakesPerSecond: 0 },
    });
    const a = await gw.listen();
    const port = kind === 'tls' ? a.tcp!.port : a.ws!.port;
    try {
      for (let round = 0; round < 4; round++) {
        const all = [];
        for (let i = 0; i < 500; i++) {
          all.push(
            new Promise<void>((r) => {
              const s = net.connect(port, '127.0.0.1');
              s.on('error', () => r());
              s.on('connect', () => {
                s.resetAndDestroy();
                r();
              });
            }),
          );
        }
        await Promise.all(all);
      }
      await new Promise((r) => setTimeout(r, 500));
      const admission = (gw as unknown as { admission: { connections: number } }).admission;
      assert.equal(admission.connections, 0, 'every reset socket gave its place back');
      const url = kind === 'tls' ? `tls://localhost:${port}` : `${kind}://localhost:${port}/longlink`;
      const c = new LonglinkClient({ url, userId: 'u', deviceId: 'd', tls: { ca: cert.cert }, reconnect: { enabled: false } });
      await c.connect();
      c.close();
    } finally {
      await gw.close();
    }
  });
}

for (const kind of ['ws', 'wss', 'tls'] as const) {
  test(`${kind}: a peer that resets its socket and connects again from the same port has both sockets give their admission places back`, async () => {
    // Sockets being admitted were found by address and port: the new socket took the key before the old one's
    // close came, and the old one, no longer found, kept its places for ever (299 of 300 from one port).
    const cert = await testCertificate();
    const gw = new Gateway({
      tcp: kind === 'tls' ? { port: 0, tls: cert } : false,
      ws: kind === 'tls' ? false : { port: 0, ...(kind === 'wss' ? { tls: cert } : {}) },
      handshakeTimeoutMs: 5000,
      limits: { maxConnectionsPerSource: 0, maxPendingHandshakesPerSource: 0, handshakesPerSecond: 0 },
    });
    const a = await gw.listen();
    const port = kind === 'tls' ? a.tcp!.port : a.ws!.port;
    const localPort = 20000 + Math.floor(Math.random() * 20000);
    try {
      for (let i = 0; i < 100; i++) {
        const s = await new Promise<net.Socket | null>((r) => {
          const s = net.connect({ port, host: '127.0.0.1', localPort });
          s.on('error', () => r(null));
          s.on('connect', () => r(s));
        });
        s?.resetAndDestroy();
      }
      await new Promise((r) => setTimeout(r, 500));
      const admission = (gw as unknown as { admission: { connections: number } }).admission;
      assert.equal(admission.connections, 0, 'every reset socket gave its place back');
    } finally {
      await gw.close();
    }
  });
}

for (const kind of ['tls', 'wss'] as const) {
  test(`${kind}: close() does not wait out the handshake deadline of a socket stalled in its TLS handshake`, async () => {
    // The sockets still in their TLS handshake were no link yet, so close() closed none of them, and
    // the listener's close waited for each to time out: with the default deadline a shutdown (or the
    // end of a drain) took 10 s more for one idle socket, however soon everything else was done.
    const cert = await testCertificate();
    const gw = new Gateway({ tcp: kind === 'tls' ? { port: 0, host: '127.0.0.1', tls: cert } : false, ws: kind === 'wss' ? { port: 0, host: '127.0.0.1', tls: cert } : false, handshakeTimeoutMs: 8000 });
    const a = await gw.listen();
    const s = net.connect((kind === 'tls' ? a.tcp : a.ws)!.port, '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await gw.close();
    const took = performance.now() - t0;
    s.destroy();
    assert.ok(took < 1000, `close() took ${Math.round(took)} ms`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((gw as unknown as { admission: { connections: number } }).admission.connections, 0, 'the dropped socket gave its place back');
  });
}
