import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { dial } from '../../src/client/connect.js';
import { listenTcp } from '../../src/gateway/transports/tcp-listener.js';
import { listenWs } from '../../src/gateway/transports/ws-listener.js';
import type { Link } from '../../src/link/link.js';
import { readsDirect, type SocketLink } from '../../src/link/socket-link.js';
import { TcpLink } from '../../src/link/tcp-link.js';
import { BARE_PING, encodeDelimited, encodeFrame } from '../../src/protocol/frame-codec.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import { sleep } from '../helpers/procs.js';

// Accepted sockets read into one buffer the whole process shares (socket-link.ts, readDirect): the
// next read of any socket overwrites it. What a link keeps past a read (a payload, part of a frame)
// must have been copied out; a bare heartbeat is acted on in place.

const SIZES = [1, 7, 300, 40_000, 5000, 70_000, 2, 50_000, 65_536];
function payloadOf(client: number, i: number): Buffer {
  const b = Buffer.alloc(SIZES[i % SIZES.length]);
  for (let k = 0; k < b.length; k++) b[k] = (client * 31 + i * 7 + k) & 0xff;
  return b;
}

/** The client link's own port: the server's link knows it as its peer's. */
function localPortOf(l: Link): number {
  const c = l as unknown as { socket?: net.Socket; ws?: { _socket: net.Socket } };
  const port = (c.socket ?? c.ws?._socket)?.localPort;
  assert.ok(port, 'the client link has a socket');
  return port;
}

function collector(received: Map<number, { pings: number; data: Frame[] }>, key: number) {
  const got = { pings: 0, data: [] as Frame[] };
  received.set(key, got);
  return {
    onLinkFrame: (f: Frame) => {
      if (f.type === FrameType.PING) got.pings++;
      // Kept as handed over, no copy: a view of the shared buffer would be overwritten by later reads.
      else if (f.type === FrameType.DATA) got.data.push(f);
    },
    onLinkError: (err: Error) => assert.fail(`link error ${err.message}`),
    onLinkClose: () => {},
  };
}

test('TCP and WebSocket links read into the shared buffer, and every payload they keep stays whole while other sockets read', async () => {
  const accepted: Link[] = [];
  const received = new Map<number, { pings: number; data: Frame[] }>();
  const onLink = (l: Link) => {
    accepted.push(l);
    l.bind(collector(received, (l as SocketLink).remotePort));
  };
  const tcp = await listenTcp({ port: 0, host: '127.0.0.1', maxFrameBytes: 1 << 20, keepalive: {} }, onLink);
  const ws = await listenWs({ port: 0, host: '127.0.0.1', path: '/longlink', maxFrameBytes: 1 << 20, keepalive: {} }, onLink);
  const urls = [`tcp://127.0.0.1:${(tcp.address() as net.AddressInfo).port}`, `ws://127.0.0.1:${(ws.http.address() as net.AddressInfo).port}/longlink`];
  const clients: Link[] = [];
  for (let c = 0; c < 6; c++) clients.push(await dial(urls[c % 2], { timeoutMs: 2000, maxFrameBytes: 1 << 20, keepalive: {} }));
  while (accepted.length < clients.length) await sleep(5);
  for (const l of accepted) assert.ok(readsDirect((l as SocketLink).socket), `a ${l.transport} link reads into the shared buffer`);
  const ports = clients.map(localPortOf);
  const N = 180;
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < clients.length; c++) {
      clients[c].send({ type: FrameType.DATA, seq: i + 1, payload: payloadOf(c, i) });
      clients[c].send(BARE_PING);
    }
    // Pauses let heartbeats arrive alone, a read of their own (the in-place path), between bursts.
    if (i % 10 === 0) {
      await sleep(15);
      for (const cl of clients) cl.send(BARE_PING);
      await sleep(15);
    }
  }
  const deadline = Date.now() + 20_000;
  const done = () => ports.every((p) => (received.get(p)?.data.length ?? 0) === N && received.get(p)!.pings === N + N / 10);
  while (!done() && Date.now() < deadline) await sleep(20);
  for (let c = 0; c < clients.length; c++) {
    const got = received.get(ports[c])!;
    assert.equal(got.pings, N + N / 10, `client ${c}: every PING`);
    assert.equal(got.data.length, N, `client ${c}: every DATA`);
    got.data.forEach((f, i) => {
      assert.equal((f as { seq: number }).seq, i + 1);
      assert.ok(Buffer.from((f as { payload: Uint8Array }).payload).equals(payloadOf(c, i)), `client ${c}, message ${i + 1}: bytes intact`);
    });
  }
  for (const l of [...clients, ...accepted]) l.destroy();
  await new Promise((r) => tcp.close(r));
  await new Promise((r) => ws.wss.close(() => ws.http.close(r)));
});

function masked(payload: Uint8Array): Buffer {
  const mask = randomBytes(4);
  const head = payload.length < 126 ? Buffer.of(0x82, 0x80 | payload.length) : Buffer.of(0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

test('WebSocket: frames sent with the upgrade request (ws puts them back on the socket) come before what the shared buffer reads next', async () => {
  const frames: Frame[] = [];
  let link!: Link;
  const ws = await listenWs({ port: 0, host: '127.0.0.1', path: '/longlink', maxFrameBytes: 1 << 20, keepalive: {} }, (l) => {
    link = l;
    l.bind({ onLinkFrame: (f) => frames.push(f), onLinkError: (e) => assert.fail(e.message), onLinkClose: () => {} });
  });
  const s = net.connect((ws.http.address() as net.AddressInfo).port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  const data = (seq: number) => encodeFrame({ type: FrameType.DATA, seq, payload: Uint8Array.of(seq) });
  const request = 'GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  s.write(Buffer.concat([Buffer.from(request), masked(data(1)), masked(data(2)), masked(Uint8Array.of(FrameType.PING))]));
  await new Promise((r) => s.once('data', r));
  while (!link) await sleep(5);
  for (let seq = 3; seq <= 5; seq++) {
    s.write(masked(seq === 4 ? Uint8Array.of(FrameType.PING) : data(seq)));
    await sleep(20);
  }
  const deadline = Date.now() + 5000;
  while (frames.length < 6 && Date.now() < deadline) await sleep(10);
  assert.deepEqual(
    frames.map((f) => (f.type === FrameType.DATA ? (f as { seq: number }).seq : 'ping')),
    [1, 2, 'ping', 3, 'ping', 5],
  );
  assert.ok(readsDirect((link as SocketLink).socket));
  s.destroy();
  link.destroy();
  await new Promise((r) => ws.wss.close(() => ws.http.close(r)));
});

test('a socket that is not a TCP handle (a Unix socket) stays on the Readable stream and reads the same', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'll-direct-'));
  const where = path.join(dir, 's');
  const frames: Frame[] = [];
  let link!: TcpLink;
  const srv = net.createServer((sock) => {
    link = new TcpLink(sock, 1 << 20);
    link.bind({ onLinkFrame: (f) => frames.push(f), onLinkError: (e) => assert.fail(e.message), onLinkClose: () => {} });
  });
  await new Promise<void>((r) => srv.listen(where, () => r()));
  try {
    const c = net.connect(where);
    await new Promise((r) => c.once('connect', r));
    c.write(encodeDelimited({ type: FrameType.DATA, seq: 1, payload: Uint8Array.of(7, 7) }));
    await sleep(20);
    c.write(encodeDelimited(BARE_PING));
    const deadline = Date.now() + 5000;
    while (frames.length < 2 && Date.now() < deadline) await sleep(10);
    assert.equal(readsDirect(link.socket), false, 'a Pipe handle is left to Node');
    assert.deepEqual(frames.map((f) => f.type), [FrameType.DATA, FrameType.PING]);
    assert.deepEqual([...(frames[0] as { payload: Uint8Array }).payload], [7, 7]);
    c.destroy();
  } finally {
    await new Promise((r) => srv.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
