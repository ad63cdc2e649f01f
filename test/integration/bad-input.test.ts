import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway, type ProtocolErrorEvent } from '../../src/gateway/gateway.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { encodeDelimited, encodeFrame } from '../../src/protocol/frame-codec.js';
import { FrameDecoder } from '../../src/protocol/frame-decoder.js';
import { FrameType, PROTOCOL_VERSION, type Frame } from '../../src/protocol/frames.js';
import { waitEvent } from '../helpers/procs.js';

// Bad input over real sockets: each offender is closed with its stable code,
// and a healthy client on the same gateway keeps working throughout.

const MAX = 1024;
let gw: Gateway;
let urls: { tcp: string; ws: string; tcpPort: number; wsPort: number };
const errors: ProtocolErrorEvent[] = [];

before(async () => {
  gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, maxFrameBytes: MAX, handshakeTimeoutMs: 300, wheelTickMs: 10 });
  gw.on('message', (m) => gw.send(m.userId, m.payload));
  gw.on('protocol-error', (e) => errors.push(e));
  const a = await gw.listen();
  urls = { tcp: `tcp://127.0.0.1:${a.tcp!.port}`, ws: `ws://127.0.0.1:${a.ws!.port}/longlink`, tcpPort: a.tcp!.port, wsPort: a.ws!.port };
});
after(() => gw.close());

/** Sends raw bytes over TCP; resolves with the frames received and whether the server closed. */
function rawTcp(chunks: Uint8Array[], opts: { end?: boolean } = {}): Promise<{ frames: Frame[]; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect(urls.tcpPort, '127.0.0.1');
    const frames: Frame[] = [];
    const dec = new FrameDecoder();
    s.on('data', (d) => dec.push(d, (f) => frames.push(f)));
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      if (opts.end) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => resolve({ frames, ms: performance.now() - t0 }));
    setTimeout(() => reject(new Error('server did not close the offender')), 5000).unref();
  });
}

function rawWs(messages: (Uint8Array | string)[]): Promise<{ code: number; reason: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(urls.ws);
    ws.on('open', () => {
      for (const m of messages) ws.send(m);
    });
    ws.on('error', () => {});
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), ms: performance.now() - t0 }));
    setTimeout(() => reject(new Error('server did not close the offender')), 5000).unref();
  });
}

function varint(n: number): Uint8Array {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return Uint8Array.from(out);
}

const hello = (user: string) => ({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: user, deviceId: 'd' }) as const;
const closeCode = (frames: Frame[]) => frames.find((f): f is Extract<Frame, { type: 8 }> => f.type === FrameType.CLOSE)?.code;

describe('bad input closes only the offender', () => {
  const healthy: LonglinkClient[] = [];
  before(async () => {
    for (const url of [urls.tcp, urls.ws]) {
      const c = new LonglinkClient({ url, userId: `healthy-${healthy.length}`, deviceId: 'd' });
      await c.connect();
      healthy.push(c);
    }
  });
  after(() => healthy.forEach((c) => c.close()));

  async function healthyStillWorks() {
    for (const c of healthy) {
      assert.equal(c.state, 'open');
      const got = waitEvent(c, 'message', (m) => Buffer.from(m.payload).toString() === 'still here', 2000);
      c.send('still here');
      await got;
    }
  }

  const tcpCases: [string, Uint8Array[], number, { end?: boolean }?][] = [
    ['malformed field (wire type 7)', [Uint8Array.from([2, FrameType.PING, 0x0f])], CloseCodes['malformed-frame']],
    ['oversized length prefix, refused before buffering', [varint(10_000_000)], CloseCodes['frame-too-large']],
    ['frame over maxFrameBytes', [encodeDelimited({ type: FrameType.DATA, payload: new Uint8Array(MAX + 1) })], CloseCodes['frame-too-large']],
    ['unknown frame type', [Uint8Array.from([1, 0x7f])], CloseCodes['unknown-frame']],
    ['empty frame', [Uint8Array.from([0])], CloseCodes['malformed-frame']],
    ['DATA before HELLO', [encodeDelimited({ type: FrameType.DATA, payload: new Uint8Array(3) })], CloseCodes['unexpected-frame']],
    ['a second HELLO', [encodeDelimited(hello('h2')), encodeDelimited(hello('h2'))], CloseCodes['unexpected-frame']],
    ['WELCOME from a client', [encodeDelimited(hello('h3')), encodeDelimited({ type: FrameType.GOAWAY, code: 4002 })], CloseCodes['unexpected-frame']],
    ['unsupported version', [encodeDelimited({ ...hello('h4'), version: 7 })], CloseCodes['unsupported-version']],
  ];
  for (const [name, chunks, code] of tcpCases) {
    test(`tcp: ${name} → ${code}`, async () => {
      const { frames } = await rawTcp(chunks);
      assert.equal(closeCode(frames), code);
      await healthyStillWorks();
    });
  }

  test('tcp: a frame split at every byte boundary is still accepted', async () => {
    const s = net.connect(urls.tcpPort, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const bytes = encodeDelimited(hello('split'));
    const online = waitEvent(gw, 'online', (e) => e.userId === 'split', 2000);
    for (const b of bytes) {
      s.write(Uint8Array.of(b));
      await new Promise((r) => setImmediate(r));
    }
    await online;
    s.destroy();
  });

  test('tcp: a truncated frame at end of stream is reported as truncated-frame', async () => {
    const before = errors.length;
    const whole = encodeDelimited(hello('trunc'));
    await rawTcp([whole.subarray(0, whole.length - 3)], { end: true });
    const e = errors.slice(before).find((x) => x.transport === 'tcp');
    assert.equal(e?.error.code, 'LL_ERR_TRUNCATED_FRAME');
    await healthyStillWorks();
  });

  const wsCases: [string, (Uint8Array | string)[], number][] = [
    ['text message', ['{"hello":1}'], CloseCodes['malformed-frame']],
    ['malformed binary', [Uint8Array.from([FrameType.PING, 0x0f])], CloseCodes['malformed-frame']],
    ['oversized binary', [new Uint8Array(MAX + 1).fill(FrameType.DATA, 0, 1)], CloseCodes['frame-too-large']],
    ['unknown frame type', [Uint8Array.from([0x7f])], CloseCodes['unknown-frame']],
    ['truncated field', [encodeFrame(hello('x')).subarray(0, 5)], CloseCodes['truncated-frame']],
    ['DATA before HELLO', [encodeFrame({ type: FrameType.DATA, payload: new Uint8Array(3) })], CloseCodes['unexpected-frame']],
  ];
  for (const [name, msgs, code] of wsCases) {
    test(`ws: ${name} → ${code}`, async () => {
      const r = await rawWs(msgs);
      assert.equal(r.code, code);
      assert.ok(r.reason.length > 0, 'a reason is given');
      await healthyStillWorks();
    });
  }

  test('every protocol error carried its typed code', () => {
    assert.ok(errors.length >= tcpCases.length + wsCases.length - 2);
    for (const e of errors) assert.match(e.error.code, /^LL_ERR_[A-Z_]+$/);
  });
});

describe('handshake deadline', () => {
  for (const transport of ['tcp', 'ws'] as const) {
    test(`${transport}: a peer that connects and never says HELLO is closed with handshake-timeout`, async () => {
      if (transport === 'tcp') {
        const { frames, ms } = await rawTcp([]);
        assert.equal(closeCode(frames), CloseCodes['handshake-timeout']);
        assert.ok(ms >= 290 && ms < 1000, `closed after ${ms.toFixed(0)} ms (deadline 300)`);
      } else {
        const r = await rawWs([]);
        assert.equal(r.code, CloseCodes['handshake-timeout']);
        assert.ok(r.ms >= 290 && r.ms < 1000, `closed after ${r.ms.toFixed(0)} ms (deadline 300)`);
      }
      assert.equal(gw.connectionCount, 0, 'the silent peer was freed');
    });
  }

  test('ws: the deadline counts from the socket\'s accept, not from its upgrade: slow upgrade headers, then no HELLO, are closed within one deadline', async () => {
    // The socket is counted as a pending handshake (of its source too) from its accept: the upgrade
    // used to start a second deadline, so such a peer held its slot for twice handshakeTimeoutMs.
    const s = net.connect(urls.wsPort, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    const t0 = performance.now();
    s.write('GET /longlink HTTP/1.1\r\nHost: x\r\n');
    await new Promise((r) => setTimeout(r, 200));
    s.write('Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    let bytes = Buffer.alloc(0);
    /** The code of the WebSocket close frame after the 101 answer (server frames are unmasked, short here). */
    const wsCloseCode = (): number | undefined => {
      let at = bytes.indexOf('\r\n\r\n');
      if (at < 0) return undefined;
      for (at += 4; at + 2 <= bytes.length; at += 2 + (bytes[at + 1] & 0x7f)) {
        if ((bytes[at] & 0x0f) === 8 && at + 4 <= bytes.length) return bytes.readUInt16BE(at + 2);
      }
      return undefined;
    };
    const closeAt = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no close frame within 2 s: ${JSON.stringify(bytes.toString('latin1'))}`)), 2000);
      s.on('data', (d: Buffer) => {
        bytes = Buffer.concat([bytes, d]);
        if (wsCloseCode() !== undefined) {
          clearTimeout(t);
          resolve(performance.now() - t0);
        }
      });
    });
    assert.match(bytes.toString('latin1'), /^HTTP\/1\.1 101 /);
    assert.equal(wsCloseCode(), CloseCodes['handshake-timeout']);
    s.destroy();
    assert.ok(closeAt >= 250 && closeAt < 450, `closed after ${closeAt.toFixed(0)} ms (deadline 300 from accept)`);
  });

  test('ws: upgrade headers begun late, then dripped, are cut one deadline after the accept (not one after their first byte)', async () => {
    // Node's headersTimeout counts from a request's first byte: a peer silent for most of the
    // deadline, then sending its headers a byte at a time, held its pending slot for two.
    const g = new Gateway({ tcp: false, ws: { port: 0 }, handshakeTimeoutMs: 1000 });
    const port = (await g.listen()).ws!.port;
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    try {
      await new Promise((r) => s.once('connect', r));
      const t0 = performance.now();
      const closed = new Promise<number>((r) => s.once('close', () => r(performance.now() - t0)));
      await new Promise((r) => setTimeout(r, 900));
      const request = 'GET /longlink HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
      let i = 0;
      const drip = setInterval(() => s.destroyed || s.write(request[i++ % request.length]), 50);
      const closeAt = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(Infinity), 4000))]);
      clearInterval(drip);
      assert.ok(!text.startsWith('HTTP/1.1 101'), `never upgraded: ${JSON.stringify(text)}`);
      assert.ok(closeAt >= 950 && closeAt < 1500, `closed after ${closeAt.toFixed(0)} ms (deadline 1000 from accept)`);
    } finally {
      s.destroy();
      await g.close();
    }
  });
});
