import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import type { UpstreamMessage, UpstreamSink } from '../../src/gateway/upstream.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { sleep } from '../helpers/procs.js';

// Client messages waiting for a backend are counted by what they really hold: a payload that is a
// view into a larger read chunk does not keep the chunk, and fire-and-forget messages count bytes.

/** A DATA frame (length-delimited) with a `payloadBytes` payload and an unknown field (15) of `padBytes` the decoder skips. */
function paddedData(seq: number, id: string, payloadBytes: number, padBytes: number): Uint8Array {
  const inner = encodeDelimited({ type: FrameType.DATA, seq, id, payload: new Uint8Array(payloadBytes).fill(0x61) });
  // Unwrap the length prefix, append field 15 (wire type 2), wrap again.
  let k = 0;
  while (inner[k] & 0x80) k++;
  const varint = (n: number) => {
    const out: number[] = [];
    for (;;) {
      const b = n & 0x7f;
      n = Math.floor(n / 128);
      if (n === 0) return out.concat(b);
      out.push(b | 0x80);
    }
  };
  const frame = Buffer.concat([inner.subarray(k + 1), Buffer.from([0x7a, ...varint(padBytes)]), Buffer.alloc(padBytes)]);
  return Buffer.concat([Buffer.from(varint(frame.length)), frame]);
}

test('a message waiting for the backend keeps only its payload, not the read chunk it came in (a 1-byte payload padded to 60 KB)', async () => {
  const seen: UpstreamMessage[] = [];
  // A backend that never answers: messages wait in the gateway.
  const sink: UpstreamSink = { name: 'hang', send: (m) => (seen.push(m), new Promise(() => {})) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink } });
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u1', 'd1');
    await p.welcome();
    // One device's messages go upstream one at a time; the first is with the backend, the others wait behind it.
    for (let i = 1; i <= 20; i++) {
      p.write(paddedData(i, `m${i}`, 1, 60_000));
      await sleep(2); // one frame per read, as a sender over a network would
    }
    p.send({ type: FrameType.DATA, payload: Buffer.from('x') }); // and one fire-and-forget
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(10);
    assert.equal(seen.length, 2);
    // At most Buffer's shared pool slab (8 KiB), which small buffers share.
    for (const m of seen) assert.ok(m.payload.buffer.byteLength <= Buffer.poolSize, `a ${m.payload.length}-byte payload keeps ${m.payload.buffer.byteLength} bytes alive`);
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('fire-and-forget messages to a slow backend are bounded in bytes too (maxInboundWaitingBytes), not only in count', async () => {
  const sink: UpstreamSink = { name: 'hang', send: () => new Promise(() => {}) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPending: 20_000 }, limits: { maxInboundWaitingBytes: 1 << 20 } });
  const port = (await gw.listen()).tcp!.port;
  const p = new RawPeer(port);
  try {
    p.hello('u2', 'd2');
    await p.welcome();
    for (let i = 0; i < 100; i++) p.send({ type: FrameType.DATA, payload: new Uint8Array(60_000) });
    for (let i = 0; i < 100 && gw.upstreamStats()!.refusedBacklog === 0; i++) await sleep(10);
    await sleep(100);
    const st = gw.upstreamStats()!;
    assert.ok(st.pending * 60_000 <= 1 << 20, `${st.pending} fire-and-forget messages of 60 KB wait for the backend: more than the 1 MiB budget`);
    assert.ok(st.pending >= 10, `the budget's worth was let through (${st.pending})`);
    assert.ok(st.refusedBacklog > 0);
  } finally {
    p.destroy();
    await gw.close();
  }
});

test('WebSocket control pings are paced, before HELLO too: past a burst of 10 and one a second, the link closes with 4006 too-many-pings; a ping every second is answered', async () => {
  const net = await import('node:net');
  const gw = new Gateway({ tcp: false, ws: { port: 0 } });
  const port = (await gw.listen()).ws!.port;
  const upgrade = () =>
    new Promise<import('node:net').Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', reject);
      s.once('connect', () => s.write('GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'));
      let head = '';
      const onData = (d: Buffer) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          s.off('data', onData);
          if (!head.startsWith('HTTP/1.1 101')) reject(new Error(head));
          else resolve(s);
        }
      };
      s.on('data', onData);
    });
  // A masked, empty PING: 0x89 0x80 and 4 mask bytes.
  const PING = Buffer.from([0x89, 0x80, 1, 2, 3, 4]);
  try {
    const flood = await upgrade();
    const got: Buffer[] = [];
    flood.on('data', (d) => got.push(d));
    const closed = new Promise((r) => flood.once('close', r));
    flood.write(Buffer.concat(Array.from({ length: 20_000 }, () => PING)));
    await closed;
    const bytes = Buffer.concat(got);
    let pongs = 0;
    let closeCode = 0;
    for (let k = 0; k + 1 < bytes.length; ) {
      const op = bytes[k] & 0x0f;
      const len = bytes[k + 1] & 0x7f;
      if (op === 0xa) pongs++;
      if (op === 0x8 && len >= 2) closeCode = bytes.readUInt16BE(k + 2);
      k += 2 + len;
    }
    assert.ok(pongs <= 10, `${pongs} pongs answered to a flood of 20,000 pings`);
    assert.equal(closeCode, 4006);

    // A peer pinging once a second (a ws client's keepalive) is answered every time.
    const calm = await upgrade();
    // Counted frame by frame: under load two pongs come in one read.
    const calmBytes: Buffer[] = [];
    calm.on('data', (d) => calmBytes.push(d));
    const countPongs = () => {
      const b = Buffer.concat(calmBytes);
      let n = 0;
      for (let k = 0; k + 1 < b.length; k += 2 + (b[k + 1] & 0x7f)) if ((b[k] & 0x0f) === 0xa) n++;
      return n;
    };
    for (let i = 0; i < 12; i++) {
      calm.write(PING);
      await sleep(i < 9 ? 5 : 1100); // the burst of 10, then one a second
    }
    for (let i = 0; i < 40 && countPongs() < 12; i++) await sleep(50);
    assert.equal(countPongs(), 12);
    assert.equal(calm.destroyed, false);
    calm.destroy();
  } finally {
    await gw.close();
  }
});

test('unasked WebSocket pongs (the gateway sends no pings) are paced with pings: a stream of them closes the link with 4006, one a second does not', async () => {
  const net = await import('node:net');
  const gw = new Gateway({ tcp: false, ws: { port: 0 } });
  const port = (await gw.listen()).ws!.port;
  const upgrade = () =>
    new Promise<import('node:net').Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', reject);
      s.once('connect', () => s.write('GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'));
      let head = '';
      const onData = (d: Buffer) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          s.off('data', onData);
          if (!head.startsWith('HTTP/1.1 101')) reject(new Error(head));
          else resolve(s);
        }
      };
      s.on('data', onData);
    });
  // A masked PONG with the largest payload a control frame may carry: 0x8a, 0x80 | 125, 4 mask bytes, 125 bytes.
  const PONG = Buffer.concat([Buffer.from([0x8a, 0x80 | 125, 1, 2, 3, 4]), Buffer.alloc(125)]);
  try {
    const flood = await upgrade();
    const got: Buffer[] = [];
    flood.on('data', (d) => got.push(d));
    const closed = new Promise((r) => flood.once('close', r));
    // Before the fix they were read and ignored for as long as the peer sent them (gigabytes; the link never closed).
    flood.write(Buffer.concat(Array.from({ length: 20_000 }, () => PONG)));
    const outcome = await Promise.race([closed.then(() => 'closed'), sleep(5000).then(() => 'open')]);
    assert.equal(outcome, 'closed', 'a stream of pongs closes the link');
    const bytes = Buffer.concat(got);
    let closeCode = 0;
    for (let k = 0; k + 1 < bytes.length; ) {
      const len = bytes[k + 1] & 0x7f;
      if ((bytes[k] & 0x0f) === 0x8 && len >= 2) closeCode = bytes.readUInt16BE(k + 2);
      k += 2 + (len === 126 ? 2 + bytes.readUInt16BE(k + 2) : len);
    }
    assert.equal(closeCode, 4006);

    // A one-way keepalive, a pong a second, is fine.
    const calm = await upgrade();
    for (let i = 0; i < 12; i++) {
      calm.write(PONG);
      await sleep(i < 9 ? 5 : 1100);
    }
    await sleep(50);
    assert.equal(calm.destroyed, false);
    calm.destroy();
    flood.destroy();
  } finally {
    await gw.close();
  }
});

test('one source address holds at most a quarter of the upstream backlog all links share once it is half full: links of one laptop, each within its own bound, no longer fill it and get the next device refused', async () => {
  // A healthy backend that answers in 1 s; each device's messages go to it one at a time.
  const sink: UpstreamSink = { name: 'slowish', send: () => new Promise((r) => setTimeout(() => r(), 1000)) };
  // The defaults' ratio (256 per link, 20,000 in all: 79 links) scaled down: 8 links of 50 would fill 400.
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPendingPerConnection: 64, maxPending: 400 } });
  const port = (await gw.listen()).tcp!.port;
  const peers: RawPeer[] = [];
  try {
    const attackers: RawPeer[] = [];
    for (let i = 0; i < 8; i++) {
      const p = new RawPeer(port, { localAddress: '127.0.0.2' });
      peers.push(p);
      p.hello(`bot${i}`, 'd');
      await p.welcome();
      attackers.push(p);
    }
    for (const p of attackers) {
      for (let k = 1; k <= 50; k++) p.send({ type: FrameType.DATA, seq: k, payload: new Uint8Array(1) });
      await sleep(20);
    }
    // Its share (a quarter) is enforced once the whole is half full: it holds at most about 200.
    assert.ok(gw.flowStats().inboundWaiting <= 210, `one source holds ${gw.flowStats().inboundWaiting} of 400`);
    assert.ok(attackers.some((p) => p.goaway?.code === 4004), 'the source past its share is told to come back later');
    const v = new RawPeer(port, { localAddress: '127.0.0.3' });
    peers.push(v);
    v.hello('victim', 'phone');
    await v.welcome();
    v.send({ type: FrameType.DATA, seq: 1, id: 'hello', payload: Buffer.from('hi') });
    await v.next((f) => f.type === FrameType.ACK || f.type === FrameType.PONG, 3000).catch(() => undefined);
    assert.equal(v.goaway, undefined, `the victim's first message was refused (GOAWAY ${v.goaway?.code})`);
  } finally {
    for (const p of peers) p.destroy();
    await gw.close();
  }
});

test('many users behind one address (a carrier-grade NAT, a proxy) are not held to a source\'s share while the gateway has room; inboundSourceShare 1 turns it off', async () => {
  const sink: UpstreamSink = { name: 'slowish', send: () => new Promise((r) => setTimeout(() => r(), 1000)) };
  for (const share of [0.25, 1]) {
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPendingPerConnection: 64, maxPending: 400 }, limits: { inboundSourceShare: share } });
    const port = (await gw.listen()).tcp!.port;
    const peers: RawPeer[] = [];
    try {
      // 5 users, 30 messages each: 150 of 400, under half: nobody refused.
      for (let i = 0; i < 5; i++) {
        const p = new RawPeer(port);
        peers.push(p);
        p.hello(`user${i}`, 'd');
        await p.welcome();
        for (let k = 1; k <= 30; k++) p.send({ type: FrameType.DATA, seq: k, payload: new Uint8Array(1) });
      }
      await sleep(100);
      assert.deepEqual(peers.map((p) => p.goaway?.code), [undefined, undefined, undefined, undefined, undefined]);
      if (share === 1) {
        // Off: 8 more links of 40 from the same address fill all 400, the share never asked.
        for (let i = 0; i < 6; i++) {
          const p = new RawPeer(port);
          peers.push(p);
          p.hello(`more${i}`, 'd');
          await p.welcome();
          for (let k = 1; k <= 40; k++) p.send({ type: FrameType.DATA, seq: k, payload: new Uint8Array(1) });
        }
        await sleep(100);
        assert.equal(gw.flowStats().inboundWaiting, 390);
      }
    } finally {
      for (const p of peers) p.destroy();
      await gw.close();
    }
  }
  assert.throws(() => new Gateway({ tcp: false, ws: false, limits: { inboundSourceShare: 0 } }), { code: 'LL_ERR_INVALID_OPTION' });
});

test('fire-and-forget messages from one source hold at most its share of the waiting bytes once they are half full: another device\'s still go', async () => {
  const got: string[] = [];
  const sink: UpstreamSink = { name: 'hang', send: (m) => (got.push(m.userId), new Promise(() => {})) };
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, upstream: { sink, maxPending: 20_000 }, limits: { maxInboundWaitingBytes: 1 << 20, maxInboundWaitingBytesPerLink: 64 << 10 } });
  const port = (await gw.listen()).tcp!.port;
  const laptop = new RawPeer(port, { localAddress: '127.0.0.2' });
  const other = new RawPeer(port, { localAddress: '127.0.0.3' });
  try {
    laptop.hello('mallory', 'd');
    other.hello('victim', 'd');
    await Promise.all([laptop.welcome(), other.welcome()]);
    for (let i = 0; i < 100; i++) laptop.send({ type: FrameType.DATA, payload: new Uint8Array(30_000) });
    await sleep(200);
    const fromLaptop = got.length;
    assert.ok(fromLaptop * 30_000 <= (1 << 20) / 2 + 30_000, `one source holds ${fromLaptop} x 30 KB`);
    other.send({ type: FrameType.DATA, payload: new Uint8Array(30_000) });
    for (let i = 0; i < 50 && !got.includes('victim'); i++) await sleep(10);
    assert.ok(got.includes('victim'), 'the other device\'s message went to the backend');
  } finally {
    laptop.destroy();
    other.destroy();
    await gw.close();
  }
});
