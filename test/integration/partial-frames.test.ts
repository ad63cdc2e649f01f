import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { sleep } from '../helpers/procs.js';

// What a link holds of a frame not whole yet is counted over all links (limits.maxPartialFrameBytes).
// A peer announces a frame of about 64 KB and sends a quarter of it, then one more byte: the
// gateway's buffer grows fourfold to the frame's size, so each such peer had it hold 64 KB for
// as long as it stayed open, with no bound but maxConnections × maxFrameBytes (6.4 GB).

const BUDGET = 300_000; // room for four such frames (65,534 bytes each over TCP, 65,550 over WebSocket), not five

/** A DATA frame of nearly maxFrameBytes (65,534 bytes with its prefix), as a client may send. */
const BIG = encodeDelimited({ type: FrameType.DATA, payload: Buffer.alloc(65_520, 0x61) });

/** A TCP peer past HELLO holding the first quarter of BIG and a byte: the gateway grew its buffer to the whole frame. */
async function holdBig(port: number, i: number, localAddress?: string): Promise<RawPeer> {
  const p = new RawPeer(port, localAddress ? { localAddress } : {});
  p.hello(`u${i}`, 'd');
  await p.welcome();
  p.write(BIG.subarray(0, 16_500));
  await sleep(30);
  p.write(BIG.subarray(16_500, 16_501));
  await sleep(30);
  return p;
}

async function tcpHolder(port: number, i: number): Promise<{ closed: () => number | undefined; done: Promise<void>; destroy: () => void }> {
  const p = await holdBig(port, i);
  return { closed: () => p.closeCode, done: p.closed, destroy: () => p.destroy() };
}

/** A WebSocket peer (raw socket, before HELLO) holding a partial binary frame that announced 65,000 bytes. */
async function wsHolder(port: number): Promise<{ closed: () => number | undefined; done: Promise<void>; destroy: () => void }> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  let bytes = Buffer.alloc(0);
  s.on('data', (d: Buffer) => (bytes = Buffer.concat([bytes, d])));
  const done = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise((r) => s.once('connect', r));
  s.write(`GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  for (let i = 0; i < 100 && bytes.indexOf('\r\n\r\n') < 0; i++) await sleep(10);
  assert.match(bytes.toString('latin1'), /^HTTP\/1\.1 101 /);
  const header = Buffer.from([0x82, 0x80 | 126, 0, 0, 1, 2, 3, 4]);
  header.writeUInt16BE(65_000, 2);
  s.write(Buffer.concat([header, Buffer.alloc(16_500, 1)]));
  await sleep(30);
  s.write(Buffer.alloc(1, 1));
  await sleep(30);
  /** The code of the WebSocket close frame after the 101 answer. */
  const closed = (): number | undefined => {
    let at = bytes.indexOf('\r\n\r\n');
    if (at < 0) return undefined;
    for (at += 4; at + 2 <= bytes.length; ) {
      let len = bytes[at + 1] & 0x7f;
      let hdr = 2;
      if (len === 126) {
        len = bytes.readUInt16BE(at + 2);
        hdr = 4;
      }
      if ((bytes[at] & 0x0f) === 8 && at + 4 <= bytes.length) return bytes.readUInt16BE(at + 2);
      at += hdr + len;
    }
    return undefined;
  };
  return { closed, done, destroy: () => s.destroy() };
}

for (const kind of ['tcp', 'ws'] as const) {
  test(`${kind}: partial frames held over all links are bounded (maxPartialFrameBytes): past it a link is closed with server-error (4004), and a closed link's bytes are let go`, async () => {
    const limits = { maxPartialFrameBytes: BUDGET, inboundSourceShare: 1 };
    const gw = new Gateway(kind === 'tcp' ? { tcp: { port: 0 }, ws: false, limits } : { tcp: false, ws: { port: 0 }, limits });
    const addr = await gw.listen();
    const port = kind === 'tcp' ? addr.tcp!.port : addr.ws!.port;
    const peers: Awaited<ReturnType<typeof tcpHolder>>[] = [];
    try {
      for (let i = 0; i < 6; i++) peers.push(kind === 'tcp' ? await tcpHolder(port, i) : await wsHolder(port));
      await sleep(100);
      assert.deepEqual(
        peers.map((p) => p.closed()),
        [undefined, undefined, undefined, undefined, CloseCodes['server-error'], CloseCodes['server-error']],
      );
      assert.ok(gw.partialFrames.heldBytes <= BUDGET, `${gw.partialFrames.heldBytes} bytes held in partial frames (budget ${BUDGET})`);
      await Promise.race([Promise.all([peers[4].done, peers[5].done]), sleep(3000)]);
      const held = gw.partialFrames.heldBytes;
      assert.ok(held > 3 * 65_536, `the four open links hold their frames (${held} bytes)`);
      peers[0].destroy();
      for (let i = 0; i < 100 && gw.partialFrames.heldBytes === held; i++) await sleep(10);
      assert.ok(held - gw.partialFrames.heldBytes > 65_000, `a closed link's partial frame is let go (${held} -> ${gw.partialFrames.heldBytes})`);
      // Room again: a new holder is let in.
      const again = kind === 'tcp' ? await tcpHolder(port, 9) : await wsHolder(port);
      peers.push(again);
      await sleep(50);
      assert.equal(again.closed(), undefined);
    } finally {
      for (const p of peers) p.destroy();
      await gw.close();
    }
    for (let i = 0; i < 100 && gw.partialFrames.heldBytes > 0; i++) await sleep(10);
    assert.equal(gw.partialFrames.heldBytes, 0, 'nothing is held once every link is gone');
  });
}

test('tcp: a frame completed gives back what it held, and one source holds at most its share once half the budget is held', async () => {
  // Two sources: 127.0.0.1 and 127.0.0.2. With a share of a quarter of 600,000, one source may
  // hold two frames' worth (150,000 bytes, rounded down by what a frame costs) once 300,000 are held.
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, limits: { maxPartialFrameBytes: 600_000, inboundSourceShare: 0.25 } });
  const port = (await gw.listen()).tcp!.port;
  const open: RawPeer[] = [];
  const holder = async (i: number, localAddress: string) => {
    const p = await holdBig(port, i, localAddress);
    open.push(p);
    return p;
  };
  try {
    const a = [await holder(0, '127.0.0.1'), await holder(1, '127.0.0.1')];
    const b = [await holder(2, '127.0.0.2'), await holder(3, '127.0.0.2')];
    // 4 frames (262,136 bytes) held; the next from 127.0.0.1 takes the total past half (300,000) and its share.
    const a3 = await holder(4, '127.0.0.1');
    await sleep(50);
    assert.equal(a3.closeCode, CloseCodes['server-error']);
    for (const p of [...a, ...b]) assert.equal(p.closeCode, undefined);
    // A frame completed: what it held is let go, and the link goes on.
    const before = gw.partialFrames.heldBytes;
    const got = new Promise((r) => gw.once('message', r));
    b[0].write(BIG.subarray(16_501));
    await got;
    assert.equal(before - gw.partialFrames.heldBytes, BIG.length);
    assert.equal(b[0].closeCode, undefined);
  } finally {
    for (const p of open) p.destroy();
    await gw.close();
  }
});
