import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import { describe, test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { dial } from '../../src/client/connect.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { listenTcp } from '../../src/gateway/transports/tcp-listener.js';
import { listenWs } from '../../src/gateway/transports/ws-listener.js';
import type { Link } from '../../src/link/link.js';
import { readKeepalive } from '../../src/link/socket-tuning.js';
import { TcpLink } from '../../src/link/tcp-link.js';
import { WsSocketLink } from '../../src/link/ws-socket-link.js';
import { WsLink } from '../../src/link/ws-link.js';
import { sleep, waitEvent } from '../helpers/procs.js';

const KEEPALIVE = { keepaliveIdleMs: 5000, keepaliveIntervalMs: 2000, keepaliveCount: 3, userTimeoutMs: 7000 };

function socketOf(link: Link): net.Socket {
  if (link instanceof TcpLink || link instanceof WsSocketLink) return link.socket;
  if (link instanceof WsLink) return (link.ws as unknown as { _socket: net.Socket })._socket;
  throw new Error('unknown link');
}

/** The kernel's keepalive timer of the server side of a loopback connection, by `ss` (seconds left), or null if none. */
function keepaliveTimerS(serverPort: number, clientPort: number): number | null {
  const out = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${serverPort} and dport = :${clientPort} )`], { encoding: 'utf8' });
  const m = /timer:\(keepalive,(?:(\d+)min)?([\d.]+)(m?s)/.exec(out);
  if (!m) return null;
  return (m[1] ? Number(m[1]) * 60 : 0) + Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
}

describe('TCP keepalive tuning', () => {
  test('the listeners tune their listening socket once, and accepted sockets have keepalive on with its idle time (ss shows the timer), without a per-socket FFI call', { skip: process.platform !== 'linux' && 'Linux only' }, async () => {
    const calls: string[] = [];
    const nk = createRequire(import.meta.url)('net-keepalive') as Record<string, (...a: unknown[]) => unknown>;
    const originals = { setKeepAliveInterval: nk.setKeepAliveInterval, setKeepAliveProbes: nk.setKeepAliveProbes, setUserTimeout: nk.setUserTimeout };
    for (const [name, f] of Object.entries(originals)) nk[name] = (...a: unknown[]) => (calls.push(name), f(...a));
    try {
      const accepted: Link[] = [];
      const server = await listenTcp({ port: 0, host: '127.0.0.1', maxFrameBytes: 1024, keepalive: KEEPALIVE }, (l) => accepted.push(l));
      const { http, wss } = await listenWs({ port: 0, host: '127.0.0.1', path: '/longlink', maxFrameBytes: 1024, keepalive: KEEPALIVE }, (l) => accepted.push(l));
      assert.equal(calls.length, 6, `three settings on each listening socket: ${calls.join(', ')}`);
      const ports = [(server.address() as net.AddressInfo).port, (http.address() as net.AddressInfo).port];
      const links = [];
      for (let i = 0; i < 4; i++) links.push(await dial(i % 2 ? `ws://127.0.0.1:${ports[1]}/longlink` : `tcp://127.0.0.1:${ports[0]}`, { timeoutMs: 2000, maxFrameBytes: 1024, keepalive: {} }));
      while (accepted.length < 4) await sleep(5);
      assert.equal(calls.length, 6, 'no FFI call per accepted socket');
      for (const l of accepted) {
        const s = socketOf(l);
        assert.deepEqual(readKeepalive(s), { intervalMs: 2000, count: 3, userTimeoutMs: 7000 });
        const left = keepaliveTimerS(s.localPort!, s.remotePort!);
        assert.ok(left !== null && left > 0 && left <= 5, `keepalive on, idle 5 s: timer ${left}`);
      }
      for (const l of [...links, ...accepted]) l.destroy();
      await new Promise((r) => server.close(r));
      await new Promise((r) => wss.close(() => http.close(r)));
    } finally {
      Object.assign(nk, originals);
    }
  });

  test('the TCP listener sets TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT on accepted sockets', async () => {
    let accepted!: Link;
    const server = await listenTcp({ port: 0, host: '127.0.0.1', maxFrameBytes: 1024, keepalive: KEEPALIVE }, (l) => (accepted = l));
    const port = (server.address() as net.AddressInfo).port;
    const link = await dial(`tcp://127.0.0.1:${port}`, { timeoutMs: 2000, maxFrameBytes: 1024, keepalive: { userTimeoutMs: 4000 } });
    await sleep(50);
    assert.deepEqual(readKeepalive(socketOf(accepted)), { intervalMs: 2000, count: 3, userTimeoutMs: 7000 });
    assert.equal(readKeepalive(socketOf(link)).userTimeoutMs, 4000, 'the client dialer applies its own');
    link.destroy();
    accepted.destroy();
    await new Promise((r) => server.close(r));
  });

  test('the WebSocket listener tunes the upgraded socket the same way', async () => {
    let accepted!: Link;
    const { http, wss } = await listenWs({ port: 0, host: '127.0.0.1', path: '/longlink', maxFrameBytes: 1024, keepalive: KEEPALIVE }, (l) => (accepted = l));
    const port = (http.address() as net.AddressInfo).port;
    const link = await dial(`ws://127.0.0.1:${port}/longlink`, { timeoutMs: 2000, maxFrameBytes: 1024, keepalive: KEEPALIVE });
    await sleep(50);
    assert.deepEqual(readKeepalive(socketOf(accepted)), { intervalMs: 2000, count: 3, userTimeoutMs: 7000 });
    assert.deepEqual(readKeepalive(socketOf(link)), { intervalMs: 2000, count: 3, userTimeoutMs: 7000 });
    link.destroy();
    accepted.destroy();
    await new Promise((r) => wss.close(() => http.close(r)));
  });

  test('the installed ws is taken over: an upgraded socket becomes a WsSocketLink, not the fallback WsLink', async () => {
    // takeOver() finds ws's socket listeners by name; a ws release that renamed them would quietly send
    // every link down the fallback (ws's own framing, outside maxPartialFrameBytes and the lent parser).
    let accepted!: Link;
    const { http, wss } = await listenWs({ port: 0, host: '127.0.0.1', path: '/longlink', maxFrameBytes: 1024, keepalive: KEEPALIVE }, (l) => (accepted = l));
    const port = (http.address() as net.AddressInfo).port;
    const link = await dial(`ws://127.0.0.1:${port}/longlink`, { timeoutMs: 2000, maxFrameBytes: 1024, keepalive: {} });
    await sleep(50);
    assert.ok(accepted instanceof WsSocketLink, `the gateway's link is a ${accepted?.constructor.name}`);
    link.destroy();
    accepted.destroy();
    await new Promise((r) => wss.close(() => http.close(r)));
  });

  test('sub-second keepalive values are refused with a typed error (the kernel counts seconds)', () => {
    assert.throws(() => new Gateway({ keepalive: { keepaliveIdleMs: 500 } }), { code: 'LL_ERR_INVALID_OPTION' });
  });

  test('a keepalive value the kernel refuses (EINVAL) does not throw from the listener or the dialer: the socket works untuned', async () => {
    // Past option validation (listenTcp and dial take options as given): the kernel's refusal is the last line.
    const refused = { keepaliveIdleMs: 5000, keepaliveCount: 200, userTimeoutMs: 3_000_000_000 };
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    let accepted!: Link;
    const server = await listenTcp({ port: 0, host: '127.0.0.1', maxFrameBytes: 1024, keepalive: refused }, (l) => (accepted = l));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const link = await dial(`tcp://127.0.0.1:${port}`, { timeoutMs: 2000, maxFrameBytes: 1024, keepalive: refused });
      await sleep(50);
      assert.ok(accepted, 'the listener handed the socket over');
      assert.ok(warnings.some((m) => /keepalive/i.test(m) && /EINVAL/.test(m)), `reported: ${JSON.stringify(warnings)}`);
      link.destroy();
      accepted.destroy();
    } finally {
      process.off('warning', onWarning);
      await new Promise((r) => server.close(r));
    }
  });
});

for (const transport of ['tcp', 'ws'] as const) {
  describe(`client features over ${transport}`, () => {
    async function setup(extra: ConstructorParameters<typeof Gateway>[0] = {}) {
      const gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, wheelTickMs: 10, heartbeat: { intervalMs: 300, minIntervalMs: 100, missBudget: 2, graceMs: 200 }, ...extra });
      const a = await gw.listen();
      const url = transport === 'tcp' ? `tcp://127.0.0.1:${a.tcp!.port}` : `ws://127.0.0.1:${a.ws!.port}/longlink`;
      return { gw, url };
    }

    test('server-sent heartbeats: the client sends none, the gateway measures RTT, the link stays up', async () => {
      const { gw, url } = await setup({ probes: { pongTimeoutMs: 200, probeCount: 1, probeIntervalMs: 100 } });
      const rtts: number[] = [];
      gw.on('rtt', (r) => rtts.push(r.sampleMs));
      let offline = 0;
      gw.on('offline', () => offline++);
      const client = new LonglinkClient({ url, userId: 'bg-tab', deviceId: 'd', direction: 'server' });
      const w = await client.connect();
      assert.equal(w.heartbeat.direction, 'server');
      await sleep(1300);
      assert.equal(client.stats.pingsSent, 0);
      assert.ok(rtts.length >= 3, `server measured RTT ${rtts.length} times`);
      assert.ok(gw.connection('bg-tab', 'd')!.rttMs! >= 0);
      assert.equal(offline, 0);
      client.close();
      await gw.close();
    });

    test('client info in HELLO and piggybacked state are kept per connection', async () => {
      const { gw, url } = await setup();
      const client = new LonglinkClient({ url, userId: 's', deviceId: 'd', clientInfo: { app: '2.0', os: 'linux' } });
      await client.connect();
      const got = waitEvent(gw, 'state', () => true, 2000);
      client.updateState({ foreground: '1', battery: '80' });
      await got; // rides on the next heartbeat, within one interval
      assert.deepEqual(gw.connection('s', 'd')?.clientState, { foreground: '1', battery: '80' });
      assert.deepEqual(gw.connection('s', 'd')?.clientInfo, { app: '2.0', os: 'linux' });
      client.close();
      await gw.close();
    });

    test('a drain sends GOAWAY and the client waits the hinted time before it comes back', async () => {
      const { gw, url } = await setup();
      const client = new LonglinkClient({ url, userId: 'g', deviceId: 'd', reconnect: { initialDelayMs: 10 } });
      await client.connect();
      const recon = waitEvent(client, 'reconnecting', () => true, 2000);
      const closed = waitEvent(client, 'close', () => true, 2000);
      await gw.close({ reconnectAfterMs: 777 });
      const [c] = await closed;
      assert.equal(c.code, 4002);
      assert.equal(c.willReconnect, true);
      const [r] = await recon;
      assert.equal(r.delayMs, 777);
      client.close();
    });

    test('networkChanged sends an immediate probe and reports its RTT', async () => {
      const { gw, url } = await setup({ heartbeat: { intervalMs: 5000 } });
      const client = new LonglinkClient({ url, userId: 'n', deviceId: 'd' });
      await client.connect();
      const rtt = waitEvent(client, 'rtt', () => true, 1000);
      client.networkChanged();
      assert.equal(client.stats.pingsSent, 1);
      const [r] = await rtt;
      assert.ok(r.sampleMs < 500);
      client.close();
      await gw.close();
    });

    test('messages flow both ways, and send reaches every device of a user', async () => {
      const { gw, url } = await setup();
      const a = new LonglinkClient({ url, userId: 'multi', deviceId: 'phone' });
      const b = new LonglinkClient({ url, userId: 'multi', deviceId: 'laptop' });
      await Promise.all([a.connect(), b.connect()]);
      const fromClient = waitEvent(gw, 'message', () => true, 1000);
      a.send('hi gateway', { id: 'm1' });
      const [m] = await fromClient;
      assert.equal(Buffer.from(m.payload).toString(), 'hi gateway');
      assert.equal(m.id, 'm1');
      assert.equal(m.deviceId, 'phone');
      const got = Promise.all([waitEvent(a, 'message'), waitEvent(b, 'message')]);
      assert.equal(gw.send('multi', 'to all'), 2);
      for (const [x] of await got) assert.equal(Buffer.from(x.payload).toString(), 'to all');
      assert.deepEqual((await gw.presence('multi')).map((p) => p.deviceId).sort(), ['laptop', 'phone']);
      a.close();
      b.close();
      await gw.close();
    });
  });
}

test('a WebSocket client whose TCP closes without a close frame goes offline at once, not at the heartbeat deadline', async () => {
  const { WebSocket } = await import('ws');
  const { encodeFrame } = await import('../../src/protocol/frame-codec.js');
  const { FrameType, PROTOCOL_VERSION } = await import('../../src/protocol/frames.js');
  // A 25 s heartbeat: detection would take a minute; the FIN must be enough.
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 }, heartbeat: { intervalMs: 25_000 } });
  const a = await gw.listen();
  try {
    for (const how of ['terminate', 'end'] as const) {
      const ws = new WebSocket(`ws://127.0.0.1:${a.ws!.port}/longlink`);
      await new Promise((r) => ws.once('open', r));
      const welcomed = new Promise((r) => ws.once('message', r));
      ws.send(encodeFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u-${how}`, deviceId: 'd', intervalMs: 25_000 }));
      await welcomed;
      const offline = waitEvent(gw, 'offline', () => true, 2000);
      const t = performance.now();
      // terminate(): the socket destroyed (a killed process); end(): a FIN with the client still reading.
      if (how === 'terminate') ws.terminate();
      else (ws as unknown as { _socket: net.Socket })._socket.end();
      await offline;
      assert.ok(performance.now() - t < 1000, `${how}: offline after ${(performance.now() - t).toFixed(0)} ms`);
      assert.equal(gw.connectionCount, 0, `${how}: the link is gone`);
    }
  } finally {
    await gw.close();
  }
});

test('WebSocket: the gateway selects no subprotocol (longlink defines none): a client that asks for some is not told the gateway speaks the first it listed', async () => {
  const { WebSocket } = await import('ws');
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 } });
  const a = await gw.listen();
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${a.ws!.port}/longlink`, ['chat', 'longlink']);
    ws.on('error', () => {});
    const selected = await new Promise<string | undefined>((r) => ws.once('upgrade', (res) => r(res.headers['sec-websocket-protocol'] as string | undefined)));
    ws.terminate();
    // Before, ws agreed to whatever came first ('chat'): a client built for another protocol took the
    // gateway for its own server. With none selected, such a client (a browser too) fails the connection.
    assert.equal(selected, undefined, `selected ${selected}`);
    // A client that asks for none (the SDK, the browser SDK) is served as before.
    const c = new LonglinkClient({ url: `ws://127.0.0.1:${a.ws!.port}/longlink`, userId: 'u', deviceId: 'd', reconnect: { enabled: false } });
    await c.connect();
    c.close();
  } finally {
    await gw.close();
  }
});

test('close() does not wait out the close handshake of a WebSocket link the gateway closed earlier', async () => {
  const { WebSocket } = await import('ws');
  const { encodeFrame } = await import('../../src/protocol/frame-codec.js');
  const { FrameType, PROTOCOL_VERSION } = await import('../../src/protocol/frames.js');
  const { CLOSE_LINGER_MS } = await import('../../src/link/link.js');
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 } });
  const a = await gw.listen();
  const ws = new WebSocket(`ws://127.0.0.1:${a.ws!.port}/longlink`);
  await new Promise((r) => ws.once('open', r));
  const welcomed = new Promise((r) => ws.once('message', r));
  ws.send(encodeFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', intervalMs: 1000 }));
  await welcomed;
  // The client stops reading, so it never answers the gateway's close frame: the link lingers.
  (ws as unknown as { _socket: net.Socket })._socket.pause();
  assert.equal(gw.kick('u'), 1);
  await sleep(50);
  const t = performance.now();
  await gw.close();
  const ms = performance.now() - t;
  assert.ok(ms < CLOSE_LINGER_MS * 0.8, `close() took ${ms.toFixed(0)} ms; the linger is ${CLOSE_LINGER_MS} ms`);
  ws.terminate();
});

test('TCP: a chunk that looks like a bare PING goes to the decoder when it ends a frame already begun', async () => {
  const { encodeDelimited, BARE_PING, BARE_PING_DELIMITED } = await import('../../src/protocol/frame-codec.js');
  const { FrameType } = await import('../../src/protocol/frames.js');
  let accepted!: Link;
  const frames: unknown[] = [];
  const server = await listenTcp({ port: 0, host: '127.0.0.1', maxFrameBytes: 1024, keepalive: {} }, (l) => {
    accepted = l;
    l.bind({ onLinkFrame: (f) => frames.push(f), onLinkError: (e) => frames.push(e), onLinkClose: () => {} });
  });
  const port = (server.address() as net.AddressInfo).port;
  const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => s.once('connect', r));
  // A DATA frame whose last two bytes are 01 03, the bytes of a bare PING: sent so they arrive as a chunk of their own.
  const data = encodeDelimited({ type: FrameType.DATA, payload: Uint8Array.of(9, 1, 3) });
  assert.deepEqual([...data.subarray(-2)], [1, 3]);
  s.write(data.subarray(0, -2));
  await sleep(50);
  s.write(data.subarray(-2));
  await sleep(50);
  // And a bare PING on its own, which takes the fast path.
  s.write(BARE_PING_DELIMITED);
  await sleep(50);
  assert.equal(frames.length, 2, `frames: ${JSON.stringify(frames)}`);
  assert.deepEqual([...(frames[0] as { payload: Uint8Array }).payload], [9, 1, 3]);
  assert.equal(frames[1], BARE_PING);
  s.destroy();
  accepted.destroy();
  await new Promise((r) => server.close(r));
});

test('WebSocket: after the gateway sent its close frame, data the peer still sends is dropped and its close frame is read (the link ends with its code, not at the linger)', async () => {
  const { createRequire } = await import('node:module');
  const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, o: object): Buffer[] } };
  const masked = (opcode: number, data: Buffer) => Buffer.concat(Sender.frame(data, { fin: true, opcode, mask: true, readOnly: false, rsv1: false }));
  const { CLOSE_LINGER_MS } = await import('../../src/link/link.js');
  let serverSide!: net.Socket;
  const srv = net.createServer((s) => (serverSide = s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const peer = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  peer.on('data', () => {});
  await new Promise((r) => peer.once('connect', r));
  while (!serverSide) await sleep(5);
  const link = new WsSocketLink(serverSide, 1024);
  const closed = new Promise<{ code?: number }>((r) => link.bind({ onLinkFrame: () => {}, onLinkError: () => {}, onLinkClose: r }));
  link.close(4002, 'going away');
  const t = performance.now();
  const code = Buffer.alloc(2);
  code.writeUInt16BE(4002);
  peer.write(Buffer.concat([masked(0x2, Buffer.from([5, 1])), masked(0x8, code)]));
  const info = await Promise.race([closed, sleep(CLOSE_LINGER_MS * 3).then(() => ({ code: -1 }))]);
  assert.equal(info.code, 4002, 'ended with the code of the close frame the peer sent');
  assert.ok(performance.now() - t < CLOSE_LINGER_MS / 2, `ended after ${(performance.now() - t).toFixed(0)} ms`);
  peer.destroy();
  srv.close();
});

test('WebSocket: a link its owner closes from a frame handler (mid-chunk) still reads the peer\'s close frame and ends on it, not at the linger', async () => {
  const { createRequire } = await import('node:module');
  const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, o: object): Buffer[] } };
  const masked = (opcode: number, data: Buffer) => Buffer.concat(Sender.frame(data, { fin: true, opcode, mask: true, readOnly: false, rsv1: false }));
  const { CLOSE_LINGER_MS } = await import('../../src/link/link.js');
  let serverSide!: net.Socket;
  const srv = net.createServer((s) => (serverSide = s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const peer = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  let got = Buffer.alloc(0);
  peer.on('data', (d) => (got = Buffer.concat([got, d])));
  await new Promise((r) => peer.once('connect', r));
  while (!serverSide) await sleep(5);
  const link = new WsSocketLink(serverSide, 1024);
  let frames = 0;
  // The owner closes on the first frame it reads, as the gateway does on a frame it refuses (unexpected-frame, a pace breach).
  const closed = new Promise<{ code?: number }>((r) =>
    link.bind({ onLinkFrame: () => void (frames++, link.close(4503, 'unexpected')), onLinkError: () => {}, onLinkClose: r }),
  );
  // Two messages in one chunk: the second comes after the close and is dropped.
  peer.write(Buffer.concat([masked(0x2, Buffer.from([3])), masked(0x2, Buffer.from([3]))]));
  // The peer answers the gateway's close frame with its own, and leaves the TCP close to the server (as RFC 6455 asks of a client).
  while (!got.includes(Buffer.from([0x88]))) await sleep(5);
  const t = performance.now();
  const code = Buffer.alloc(2);
  code.writeUInt16BE(4503);
  peer.write(masked(0x8, code));
  const info = await Promise.race([closed, sleep(CLOSE_LINGER_MS * 3).then(() => ({ code: -1 }))]);
  assert.equal(frames, 1, 'nothing after the close is handed over');
  assert.equal(info.code, 4503, 'ended with the code of the close frame the peer sent');
  assert.ok(performance.now() - t < CLOSE_LINGER_MS / 2, `ended after ${(performance.now() - t).toFixed(0)} ms`);
  peer.destroy();
  srv.close();
});

test('WebSocket: a peer that sends its close frame but never its FIN is dropped after the linger, not kept open for good', async () => {
  const { createRequire } = await import('node:module');
  const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, o: object): Buffer[] } };
  const masked = (opcode: number, data: Buffer) => Buffer.concat(Sender.frame(data, { fin: true, opcode, mask: true, readOnly: false, rsv1: false }));
  const { encodeFrame } = await import('../../src/protocol/frame-codec.js');
  const { FrameType, PROTOCOL_VERSION } = await import('../../src/protocol/frames.js');
  const { CLOSE_LINGER_MS } = await import('../../src/link/link.js');
  // A 25 s heartbeat: the link must end on the close handshake, not on the detector.
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 }, heartbeat: { intervalMs: 25_000 } });
  const a = await gw.listen();
  const http = (gw as unknown as { wsServer: { http: import('node:http').Server } }).wsServer.http;
  const open = () => new Promise<number>((r, j) => http.getConnections((e, n) => (e ? j(e) : r(n))));
  // allowHalfOpen: the gateway's FIN does not end this side; it answers nothing and stays connected.
  const peer = net.connect({ port: a.ws!.port, host: '127.0.0.1', allowHalfOpen: true });
  peer.on('error', () => {});
  let got = '';
  peer.on('data', (d) => (got += d.toString('latin1')));
  try {
    await new Promise((r) => peer.once('connect', r));
    peer.write('GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    peer.write(masked(0x2, Buffer.from(encodeFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', intervalMs: 25_000 }))));
    while (gw.connection('u', 'd') === undefined || !got.includes('101')) await sleep(10);
    const offline = waitEvent(gw, 'offline', () => true, CLOSE_LINGER_MS * 3);
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    peer.write(masked(0x8, code));
    const [e] = (await offline) as [{ reason: string; code: number }];
    assert.equal(e.reason, 'client-close');
    assert.equal(e.code, 1000);
    for (let i = 0; i < 100 && (await open()) > 0; i++) await sleep(20);
    assert.equal(await open(), 0, 'the gateway let go of the socket');
  } finally {
    peer.destroy();
    await gw.close();
  }
});

for (const kind of ['tcp', 'ws'] as const) {
  test(`${kind}: frames written while the socket is backed up are held as bytes and go out in order, before the CLOSE`, async () => {
    const { FrameDecoder } = await import('../../src/protocol/frame-decoder.js');
    const { decodeFrame } = await import('../../src/protocol/frame-codec.js');
    const { FrameType } = await import('../../src/protocol/frames.js');
    let serverSide!: net.Socket;
    const srv = net.createServer((s) => (serverSide = s));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const peer = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    peer.on('error', () => {});
    await new Promise((r) => peer.once('connect', r));
    while (!serverSide) await sleep(5);
    const chunks: Buffer[] = [];
    peer.on('data', (d) => chunks.push(d));
    peer.pause();
    const link: Link = kind === 'tcp' ? new TcpLink(serverSide, 1 << 20) : new WsSocketLink(serverSide, 1 << 20);
    link.bind({ onLinkFrame: () => {}, onLinkError: () => {}, onLinkClose: () => {} });
    // Big frames fill the kernel's buffers and Node's; small ones, held, follow; a drain in between lets some out.
    const N = 3000;
    for (let i = 0; i < N; i++) {
      link.send({ type: FrameType.DATA, seq: i + 1, payload: Buffer.alloc(i % 10 === 0 ? 64 * 1024 : 5, i % 251) });
      if (i === N / 2) {
        peer.resume();
        await sleep(20);
        peer.pause();
      }
    }
    assert.ok(link.bufferedBytes > 0);
    link.close(4002, 'going away');
    const ended = new Promise((r) => peer.once('end', r));
    peer.resume();
    await ended;
    const bytes = Buffer.concat(chunks);
    const frames: { type: number; seq?: number; code?: number; payload?: Uint8Array }[] = [];
    if (kind === 'tcp') new FrameDecoder(1 << 20).push(bytes, (f) => frames.push(f));
    else {
      for (let k = 0; k < bytes.length; ) {
        let len = bytes[k + 1] & 0x7f;
        let hdr = 2;
        if (len === 126) (len = bytes.readUInt16BE(k + 2)), (hdr = 4);
        else if (len === 127) (len = bytes.readUInt32BE(k + 6)), (hdr = 10);
        if ((bytes[k] & 0x0f) === 0x2) frames.push(decodeFrame(bytes.subarray(k + hdr, k + hdr + len)));
        k += hdr + len;
      }
    }
    const data = frames.filter((f) => f.type === FrameType.DATA);
    assert.deepEqual(data.map((f) => f.seq), Array.from({ length: N }, (_, i) => i + 1), 'every frame, in order');
    assert.ok(data.every((f, i) => f.payload!.length === (i % 10 === 0 ? 64 * 1024 : 5) && f.payload!.every((b) => b === i % 251)), 'bytes intact');
    assert.equal(frames.at(-1)?.type, FrameType.CLOSE, 'CLOSE last');
    peer.destroy();
    srv.close();
  });
}

test('WsLink: a close reason cut to 123 bytes is cut at a character\'s start (a CJK reason cut mid-character grew past 123 as U+FFFD and ws threw)', async () => {
  const { WebSocketServer, WebSocket } = await import('ws');
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  try {
    const serverSide = new Promise<import('ws').WebSocket>((r) => wss.once('connection', r));
    const c = new WebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}/`);
    const closed = new Promise<{ code: number; reason: string }>((r) => c.once('close', (code, reason) => r({ code, reason: reason.toString() })));
    const link = new WsLink(await serverSide, 65536, '127.0.0.1', 0);
    const reason = `x${'连接被网关关闭'.repeat(10)}`; // then 3 bytes a character: byte 123 falls inside the 41st
    assert.doesNotThrow(() => link.close(4004, reason));
    const got = await closed;
    assert.equal(got.code, 4004);
    assert.ok(Buffer.byteLength(got.reason) <= 123 && reason.startsWith(got.reason) && got.reason.length === 41, `${Buffer.byteLength(got.reason)} bytes, whole characters`);
  } finally {
    wss.close();
  }
});

test('tcp: a chunk that reads as a bare PING (01 03) but ends a frame held in part is decoded as the rest of that frame', async () => {
  const { encodeDelimited } = await import('../../src/protocol/frame-codec.js');
  const { FrameType } = await import('../../src/protocol/frames.js');
  let serverSide!: net.Socket;
  const srv = net.createServer((s) => (serverSide = s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const peer = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', noDelay: true });
  peer.on('error', () => {});
  try {
    await new Promise((r) => peer.once('connect', r));
    while (!serverSide) await sleep(5);
    const frames: { type: number; payload?: Uint8Array }[] = [];
    const errors: Error[] = [];
    const link = new TcpLink(serverSide, 1 << 20);
    link.bind({ onLinkFrame: (f) => frames.push(f), onLinkError: (e) => errors.push(e), onLinkClose: () => {} });
    // A DATA frame whose last two bytes are 01 03, the bare PING's bytes, sent as its own chunk.
    const bytes = Buffer.from(encodeDelimited({ type: FrameType.DATA, payload: new Uint8Array([9, 1, 3]) }));
    assert.deepEqual([...bytes.subarray(-2)], [1, 3]);
    peer.write(bytes.subarray(0, -2));
    await sleep(50);
    peer.write(bytes.subarray(-2));
    await sleep(50);
    peer.write(Buffer.from([1, FrameType.PING]));
    for (let i = 0; i < 100 && frames.length < 2; i++) await sleep(10);
    assert.deepEqual(errors, []);
    assert.deepEqual(
      frames.map((f) => [f.type, f.payload ? [...f.payload] : null]),
      [
        [FrameType.DATA, [9, 1, 3]],
        [FrameType.PING, null],
      ],
    );
    link.destroy();
  } finally {
    peer.destroy();
    await new Promise((r) => srv.close(r));
  }
});

for (const kind of ['tcp', 'ws'] as const) {
  test(`${kind}: links share no decoding state: frames split anywhere, interleaved over links, one refused and one closed mid-chunk`, async () => {
    const { encodeDelimited, encodeFrame } = await import('../../src/protocol/frame-codec.js');
    const { FrameType } = await import('../../src/protocol/frames.js');
    const { createRequire } = await import('node:module');
    const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, o: object): Buffer[] } };
    const wsFrame = (opcode: number, fin: boolean, data: Uint8Array) => Buffer.concat(Sender.frame(Buffer.from(data), { fin, opcode, mask: true, readOnly: false, rsv1: false }));
    // A DATA frame as the link's peer writes it; over WebSocket every fourth in two fragments.
    const data = (i: number, k: number, pad = 0): Buffer => {
      const f = { type: FrameType.DATA, payload: new Uint8Array([i, k, ...new Array(pad).fill(i)]) } as const;
      if (kind === 'tcp') return Buffer.from(encodeDelimited(f));
      const bytes = encodeFrame(f);
      if (k % 4 !== 3) return wsFrame(0x2, true, bytes);
      return Buffer.concat([wsFrame(0x2, false, bytes.subarray(0, 2)), wsFrame(0x0, true, bytes.subarray(2))]);
    };
    const sides: net.Socket[] = [];
    const srv = net.createServer((s) => sides.push(s));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const N = 5;
    const peers: net.Socket[] = [];
    try {
      for (let i = 0; i < N; i++) {
        const p = net.connect({ port, host: '127.0.0.1', noDelay: true });
        p.on('error', () => {});
        p.on('data', () => {});
        await new Promise((r) => p.once('connect', r));
        peers.push(p);
      }
      while (sides.length < N) await sleep(5);
      // sides[i] is not necessarily peers[i]'s other end: match them by port.
      const byPort = new Map(sides.map((s) => [s.remotePort, s]));
      const got: number[][] = [];
      const errors: string[] = [];
      const links = peers.map((p, i) => {
        got.push([]);
        const side = byPort.get(p.localPort!)!;
        const link: Link = kind === 'tcp' ? new TcpLink(side, 256) : new WsSocketLink(side, 256);
        link.bind({
          onLinkFrame: (f) => {
            if (f.type !== FrameType.DATA) return;
            got[i].push(f.payload![0] * 256 + f.payload![1]);
            // Link 1 closes itself at its 41st frame, in the middle of a chunk holding more.
            if (i === 1 && got[i].length === 41) link.close(1000, 'enough');
          },
          onLinkError: (e) => errors.push(`${i}:${e.reason}`),
          onLinkClose: () => {},
        });
        return link;
      });
      // Each peer's stream: 40 DATA frames (its index and a sequence number, padded to various sizes); link 3 then a frame over its 256-byte limit.
      const streams = peers.map((_, i) => {
        const parts: Buffer[] = [];
        for (let k = 0; k < 40; k++) parts.push(data(i, k, (k * 7) % 50));
        if (i === 3) parts.push(kind === 'tcp' ? Buffer.from([0x80, 0x10, 9, 9, 9]) : Buffer.from([0x82, 0xfe, 0x10, 0x00, 1, 2, 3, 4]));
        return Buffer.concat(parts);
      });
      // Chunks of 1 to 9 bytes, round-robin over the peers, so partial frames of several links are held at once.
      const at = streams.map(() => 0);
      let seed = 7;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 9;
      for (let left = N; left > 0; ) {
        left = 0;
        for (let i = 0; i < N; i++) {
          if (at[i] >= streams[i].length) continue;
          const n = 1 + rand();
          peers[i].write(streams[i].subarray(at[i], at[i] + n));
          at[i] += n;
          left++;
        }
        await sleep(1);
      }
      const want = (i: number, n = 40) => Array.from({ length: n }, (_, k) => i * 256 + k);
      for (let t = 0; t < 300 && !(got[0].length === 40 && got[2].length === 40 && got[4].length === 40 && errors.length === 1); t++) await sleep(10);
      // Then whole frames, two to a chunk: link 1 closes at the first of its two, and link 0's chunk comes next,
      // decoded by the decoder link 1 stopped with if it were lent on.
      const two = (i: number) => Buffer.concat([40, 41].map((k) => data(i, k)));
      peers[1].write(two(1));
      await sleep(50);
      peers[0].write(two(0));
      for (let t = 0; t < 100 && got[0].length < 42; t++) await sleep(10);
      assert.deepEqual(errors, ['3:frame-too-large']);
      for (const i of [2, 3, 4]) assert.deepEqual(got[i], want(i), `link ${i}`);
      assert.deepEqual(got[0], want(0, 42), 'link 0');
      assert.deepEqual(got[1], want(1, 41), 'link 1 decoded nothing after it closed');
      // Between frames no link holds a decoder of its own.
      for (const i of [0, 2, 4]) assert.equal((links[i] as unknown as { decoder?: unknown; parser?: unknown })[kind === 'tcp' ? 'decoder' : 'parser'], null, `link ${i} holds no decoder`);
      for (const l of links) l.destroy();
    } finally {
      for (const p of peers) p.destroy();
      await new Promise((r) => srv.close(r));
    }
  });
}

/** A `ws` client past HELLO and WELCOME on the gateway's WebSocket port. */
async function welcomedWs(port: number, userId: string) {
  const { WebSocket } = await import('ws');
  const { encodeFrame } = await import('../../src/protocol/frame-codec.js');
  const { FrameType, PROTOCOL_VERSION } = await import('../../src/protocol/frames.js');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/longlink`);
  const errors: Error[] = [];
  ws.on('error', (e) => errors.push(e));
  await new Promise((r) => ws.once('open', r));
  const welcomed = new Promise((r) => ws.once('message', r));
  ws.send(encodeFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId, deviceId: 'd', intervalMs: 25_000 }));
  await welcomed;
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
  /** A masked close frame written past ws (which refuses to send a forbidden code): `code` undefined for none. */
  const rawClose = (code?: number) => {
    const p = Buffer.alloc(code === undefined ? 0 : 2);
    if (code !== undefined) p.writeUInt16BE(code);
    (ws as unknown as { _socket: net.Socket })._socket.write(Buffer.concat([Buffer.from([0x88, 0x80 | p.length, 0, 0, 0, 0]), p]));
  };
  return { ws, errors, closed, rawClose };
}

test('WebSocket: a close frame with a code RFC 6455 forbids is malformed-frame, not echoed back nor reported as the offline code', async () => {
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 }, heartbeat: { intervalMs: 25_000 } });
  const a = await gw.listen();
  try {
    for (const code of [5, 1006, 1015, 5000]) {
      const c = await welcomedWs(a.ws!.port, `u${code}`);
      const offline = waitEvent(gw, 'offline', () => true, 2000);
      c.rawClose(code);
      const [e] = (await offline) as [{ reason: string; code: number }];
      assert.deepEqual([e.reason, e.code], ['malformed-frame', 4501], `code ${code}`);
      const got = await Promise.race([c.closed, sleep(3000).then(() => ({ code: -1, reason: 'timeout' }))]);
      assert.equal(got.code, 4501, `code ${code}: the client saw ${got.code} ${got.reason}`);
      assert.deepEqual(c.errors.map((x) => x.message), [], `code ${code}: the gateway's answer is a valid close frame`);
    }
  } finally {
    await gw.close();
  }
});

test('WebSocket: a client that sends CLOSE and then its close frame gets the gateway\'s close frame (a clean close, not 1006), and the gateway lets go of the socket', async () => {
  const { encodeFrame } = await import('../../src/protocol/frame-codec.js');
  const { FrameType } = await import('../../src/protocol/frames.js');
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 }, heartbeat: { intervalMs: 25_000 } });
  const a = await gw.listen();
  const http = (gw as unknown as { wsServer: { http: import('node:http').Server } }).wsServer.http;
  const open = () => new Promise<number>((r, j) => http.getConnections((e, n) => (e ? j(e) : r(n))));
  try {
    // As the SDK's close() does (WsLink, BrowserWsLink): CLOSE, then the WebSocket close; and CLOSE alone.
    for (const how of ['close-frame', 'close-only'] as const) {
      const c = await welcomedWs(a.ws!.port, `u-${how}`);
      const offline = waitEvent(gw, 'offline', () => true, 2000);
      c.ws.send(encodeFrame({ type: FrameType.CLOSE, code: 1000, reason: 'client closed' }));
      if (how === 'close-frame') c.ws.close(1000, 'client closed');
      const [e] = (await offline) as [{ reason: string; code: number }];
      assert.deepEqual([e.reason, e.code], ['client-close', 1000]);
      const got = await Promise.race([c.closed, sleep(3000).then(() => ({ code: -1, reason: 'timeout' }))]);
      assert.equal(got.code, 1000, `${how}: the client saw ${got.code} ${got.reason}`);
      assert.deepEqual(c.errors.map((x) => x.message), [], how);
      for (let i = 0; i < 100 && (await open()) > 0; i++) await sleep(20);
      assert.equal(await open(), 0, `${how}: the gateway let go of the socket`);
    }
  } finally {
    await gw.close();
  }
});

test('WebSocket: the close frame answering a client\'s CLOSE carries its code only if it is a known close code (else 1000)', async () => {
  const { encodeFrame } = await import('../../src/protocol/frame-codec.js');
  const { FrameType } = await import('../../src/protocol/frames.js');
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 }, heartbeat: { intervalMs: 25_000 } });
  const a = await gw.listen();
  try {
    for (const [sent, answered] of [[4000, 4000], [4761, 1000], [3000, 1000], [7, 1000]]) {
      const c = await welcomedWs(a.ws!.port, `u${sent}`);
      c.ws.send(encodeFrame({ type: FrameType.CLOSE, code: sent, reason: '' }));
      const got = await Promise.race([c.closed, sleep(3000).then(() => ({ code: -1, reason: 'timeout' }))]);
      assert.equal(got.code, answered, `CLOSE ${sent}`);
    }
  } finally {
    await gw.close();
  }
});

test('WebSocket: a close frame with no status code (a browser\'s ws.close()) is client-close, not transport-close', async () => {
  const gw = new Gateway({ tcp: false, ws: { host: '127.0.0.1', port: 0 }, heartbeat: { intervalMs: 25_000 } });
  const a = await gw.listen();
  try {
    const c = await welcomedWs(a.ws!.port, 'u');
    const offline = waitEvent(gw, 'offline', () => true, 2000);
    c.rawClose();
    const [e] = (await offline) as [{ reason: string; code: number }];
    assert.deepEqual([e.reason, e.code], ['client-close', 1005]);
    assert.equal((await c.closed).code, 1000, 'answered with 1000');
  } finally {
    await gw.close();
  }
});

test('WebSocket: a link closed for too many WebSocket pings still reads the peer\'s close frame and ends on it, not at the linger', async () => {
  const { createRequire } = await import('node:module');
  const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, o: object): Buffer[] } };
  const masked = (opcode: number, data: Buffer) => Buffer.concat(Sender.frame(data, { fin: true, opcode, mask: true, readOnly: false, rsv1: false }));
  const { CLOSE_LINGER_MS } = await import('../../src/link/link.js');
  const { CloseCodes } = await import('../../src/protocol/errors.js');
  let serverSide!: net.Socket;
  const srv = net.createServer((s) => (serverSide = s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const peer = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  let got = Buffer.alloc(0);
  peer.on('data', (d) => (got = Buffer.concat([got, d])));
  await new Promise((r) => peer.once('connect', r));
  while (!serverSide) await sleep(5);
  const link = new WsSocketLink(serverSide, 1024);
  const errors: string[] = [];
  // As the gateway does: a link error closes the link with its code.
  const closed = new Promise<{ code?: number }>((r) =>
    link.bind({ onLinkFrame: () => {}, onLinkError: (e) => void (errors.push(e.reason), link.close(CloseCodes[e.reason], e.message)), onLinkClose: r }),
  );
  // Past the burst of 10 control pings at once.
  peer.write(Buffer.concat(Array.from({ length: 12 }, () => masked(0x9, Buffer.from('p')))));
  while (!got.includes(Buffer.from([0x88]))) await sleep(5);
  assert.deepEqual(errors, ['too-many-pings']);
  const t = performance.now();
  const code = Buffer.alloc(2);
  code.writeUInt16BE(CloseCodes['too-many-pings']);
  peer.write(masked(0x8, code));
  const info = await Promise.race([closed, sleep(CLOSE_LINGER_MS * 3).then(() => ({ code: -1 }))]);
  assert.equal(info.code, CloseCodes['too-many-pings'], 'ended with the code of the close frame the peer sent');
  assert.ok(performance.now() - t < CLOSE_LINGER_MS / 2, `ended after ${(performance.now() - t).toFixed(0)} ms`);
  peer.destroy();
  srv.close();
});

test('close() while listen() is still opening its ports: the ports it opens are closed too and listen() rejects with LL_ERR_CLOSED (the process is not held open)', async () => {
  // close() found no listener yet, and listen() went on to open both after it: the ports stayed
  // bound for good, accepting (and refusing) connections, and the process never exited.
  const gw = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: { port: 0, host: '127.0.0.1' } });
  const listening = gw.listen();
  await gw.close();
  await assert.rejects(listening, { code: 'LL_ERR_CLOSED' });
  const servers = gw as unknown as { tcpServer: net.Server | null; wsServer: { http: net.Server } | null };
  for (const s of [servers.tcpServer, servers.wsServer?.http]) assert.equal(s?.listening ?? false, false, 'no port left open');
  // And listen() on a gateway already closed opens nothing.
  await assert.rejects(gw.listen(), { code: 'LL_ERR_CLOSED' });
});
