/**
 * The benchmark's load generator: `node loadgen.js <peer> '<json>'` opens
 * `count` connections to a peer's server, then sends (or, where the server
 * pings, answers) heartbeats spread evenly over the interval from one timer,
 * and counts the round trips that completed. Lean on purpose: raw sockets
 * and hand-written frames where the protocol allows (bare node:net,
 * longlink over TCP, MQTT), the peer's own client library where it does not
 * (ws, socket.io). Source addresses rotate over 127.0.0.x so ephemeral
 * ports do not run out. Bounded: stops when stdin closes or after maxMs.
 * Commands on stdin: `stats`. With `warmup`, that many connections are
 * opened and closed first, then {"ev":"warm"} is said and the measured set-up
 * waits for `go`: the servers' (and this process's) one-time costs, such as
 * compiling their code, stay out of the per-connection figures.
 */
import net from 'node:net';
import readline from 'node:readline';
import { WebSocket } from 'ws';
import { io as ioClient, type Socket as IoSocket } from 'socket.io-client';
import { BARE_PING_BYTES, BARE_PING_DELIMITED, encodeDelimited, encodeFrame } from '../../src/protocol/frame-codec.js';
import { decodeFrame } from '../../src/protocol/frame-codec.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';

interface Config {
  port: number;
  count: number;
  intervalMs: number;
  maxMs: number;
  /** Source addresses 127.0.0.1 … 127.0.0.<sources>. */
  sources?: number;
  concurrency?: number;
  prefix?: string;
  /** First source address is 127.0.0.<1 + sourceBase> (several load generators use disjoint ones). */
  sourceBase?: number;
  /** Start each connection's heartbeats as soon as it is open, not once all are (the scale run's long ramp). */
  pingDuringSetup?: boolean;
  /** Connections opened and closed before the measured set-up (see above). */
  warmup?: number;
}

const peer = process.argv[2];
const cfg = JSON.parse(process.argv[3] ?? '{}') as Config;
const say = (ev: string, d: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, ...d }) + '\n');

interface Conn {
  ping(): void;
  close(): void;
  bytes(): { in: number; out: number };
}

const stats = { open: 0, pings: 0, pongs: 0, messages: 0, failed: 0, closed: 0 };
/** Why connections failed to open, and why open ones were closed (error codes, CLOSE frame codes). */
const failures: Record<string, number> = {};
const closes: Record<string, number> = {};
const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
let stopping = false;
/** Warm-up connections are open or closing: their closes are not counted. */
let warming = false;
const conns: Conn[] = [];
const source = (i: number) => {
  const n = (cfg.sourceBase ?? 0) + (i % (cfg.sources ?? 1));
  return `127.0.${Math.floor(n / 254)}.${1 + (n % 254)}`;
};
const clientInitiated = !['ws', 'socketio'].includes(peer);

function tcp(i: number, onOpen: (s: net.Socket) => void, onData: (s: net.Socket, d: Buffer) => void): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: cfg.port, localAddress: source(i), noDelay: true });
    let opened = false;
    let lastError = '';
    s.once('connect', () => onOpen(s));
    s.on('data', (d) => onData(s, d));
    s.on('error', (e: NodeJS.ErrnoException) => {
      lastError = e.code ?? e.message;
      reject(e);
    });
    s.on('close', () => {
      if (opened && !stopping && !warming) {
        stats.closed++;
        count(closes, lastError || (s as net.Socket & { closeCode?: number }).closeCode?.toString() || 'eof');
      }
      if (!opened) reject(new Error(lastError || 'closed during handshake'));
    });
    (s as net.Socket & { ready: () => void }).ready = () => {
      opened = true;
      resolve(s);
    };
  });
}
const ready = (s: net.Socket) => (s as net.Socket & { ready: () => void }).ready();
const sockBytes = (s: net.Socket) => () => ({ in: s.bytesRead, out: s.bytesWritten });

/**
 * Splits a TCP link's bytes into frames (varint length, then the frame) and
 * counts each by its type byte; a frame cut across chunks is kept until the
 * rest arrives. The same code reads net, net-hello and longlink-tcp (the
 * floors answer with longlink's own bare frames), so the load generator does
 * the same work per frame for each and its share of the two cores, which the
 * set-up time depends on, is the same. Only a CLOSE is decoded (its code).
 */
function frameReader(): (s: net.Socket, d: Buffer) => void {
  let held: Buffer | null = null;
  return (s, chunk) => {
    const d: Buffer = held ? Buffer.concat([held, chunk]) : chunk;
    held = null;
    let k = 0;
    while (k < d.length) {
      let len = 0;
      let shift = 1;
      let p = k;
      for (; p < d.length; p++) {
        len += (d[p] & 0x7f) * shift;
        if ((d[p] & 0x80) === 0) break;
        shift *= 128;
      }
      if (p >= d.length || p + 1 + len > d.length) break;
      if (len > 0) {
        const type = d[p + 1];
        if (type === FrameType.PONG) stats.pongs++;
        else if (type === FrameType.WELCOME) ready(s);
        else if (type === FrameType.CLOSE) (s as net.Socket & { closeCode?: number }).closeCode = (decodeFrame(d.subarray(p + 1, p + 1 + len)) as { code: number }).code;
        else stats.messages++;
      }
      k = p + 1 + len;
    }
    if (k < d.length) held = d.subarray(k);
  };
}

async function open(i: number): Promise<Conn> {
  const user = `${cfg.prefix ?? 'u'}${i}`;
  switch (peer) {
    case 'net': {
      // The floor answers 2-byte frames: 01 04 is a PONG, 01 06 a fan-out message.
      const s = await tcp(i, ready, frameReader());
      return { ping: () => s.write(BARE_PING_DELIMITED), close: () => s.destroy(), bytes: sockBytes(s) };
    }
    case 'net-hello':
    case 'longlink-tcp': {
      // The same HELLO to both; net-hello answers it with a frame typed WELCOME, as long as longlink's.
      const s = await tcp(
        i,
        (s) => s.write(encodeDelimited({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: user, deviceId: 'd', intervalMs: cfg.intervalMs })),
        frameReader(),
      );
      return { ping: () => s.write(BARE_PING_DELIMITED), close: () => s.destroy(), bytes: sockBytes(s) };
    }
    case 'longlink-ws': {
      const ws = new WebSocket(`ws://127.0.0.1:${cfg.port}/longlink`, { localAddress: source(i), perMessageDeflate: false });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => ws.send(encodeFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: user, deviceId: 'd', intervalMs: cfg.intervalMs })));
        ws.on('message', (d: Buffer) => {
          const f = decodeFrame(new Uint8Array(d));
          if (f.type === FrameType.PONG) stats.pongs++;
          else if (f.type === FrameType.DATA) stats.messages++;
          else if (f.type === FrameType.WELCOME) resolve();
        });
        ws.once('error', reject);
      });
      return { ping: () => ws.send(BARE_PING_BYTES), close: () => ws.terminate(), bytes: () => ({ in: (ws as unknown as { _socket: net.Socket })._socket.bytesRead, out: (ws as unknown as { _socket: net.Socket })._socket.bytesWritten }) };
    }
    case 'ws': {
      const ws = new WebSocket(`ws://127.0.0.1:${cfg.port}`, { localAddress: source(i), perMessageDeflate: false });
      ws.on('ping', () => {
        stats.pings++;
        stats.pongs++; // ws answers by itself
      });
      ws.on('message', () => stats.messages++);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      return { ping: () => {}, close: () => ws.terminate(), bytes: () => ({ in: (ws as unknown as { _socket: net.Socket })._socket.bytesRead, out: (ws as unknown as { _socket: net.Socket })._socket.bytesWritten }) };
    }
    case 'socketio': {
      const sock: IoSocket = ioClient(`http://127.0.0.1:${cfg.port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', () => resolve());
        sock.once('connect_error', reject);
      });
      sock.on('m', () => stats.messages++);
      const engine = sock.io.engine as unknown as { on(e: string, f: () => void): void; transport: { ws: { _socket: net.Socket } } };
      engine.on('ping', () => {
        stats.pings++;
        stats.pongs++; // engine.io answers by itself
      });
      // Kept from the start: after a disconnect the transport lets go of it, but its counters stay readable.
      const raw = engine.transport.ws._socket;
      return { ping: () => {}, close: () => sock.disconnect(), bytes: () => ({ in: raw.bytesRead, out: raw.bytesWritten }) };
    }
    case 'aedes':
    case 'mosquitto': {
      const id = Buffer.from(user);
      // The longest MQTT allows: the client paces its PINGREQs itself. Three intervals made the broker
      // close (after 1.5 keepalives of silence) every connection opened 4.5 s before the first
      // PINGREQ, which comes only after the whole set-up: a fifth of aedes's 10,000 at 1 s.
      const keepalive = 65535;
      const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepalive >> 8, keepalive & 0xff, id.length >> 8, id.length & 0xff]);
      const body = Buffer.concat([variable, id]);
      const connect = Buffer.concat([Buffer.from([0x10, body.length]), body]);
      const subscribe = Buffer.from([0x82, 8, 0, 1, 0, 3, 0x61, 0x6c, 0x6c, 0]); // SUBSCRIBE "all" QoS 0
      let connacked = false;
      const s = await tcp(
        i,
        (s) => s.write(connect),
        (s, d) => {
          for (let k = 0; k < d.length; ) {
            const type = d[k] >> 4;
            const len = d[k + 1];
            if (type === 13) stats.pongs++;
            else if (type === 3) stats.messages++;
            else if (type === 2 && !connacked) {
              connacked = true;
              s.write(subscribe);
            } else if (type === 9) ready(s);
            k += 2 + len;
          }
        },
      );
      return { ping: () => s.write(Buffer.from([0xc0, 0x00])), close: () => s.destroy(), bytes: sockBytes(s) };
    }
    default:
      throw new Error(`unknown peer ${peer}`);
  }
}

// Heartbeats: each connection pings once per interval on its own schedule, from
// when it opened (or, if heartbeats start after the set-up, spread evenly over
// the first interval). A queue in due order: appending keeps it sorted. (A
// round robin over a list that grows during the ramp left some connections
// silent for up to two intervals, which a gateway rightly calls dead.)
const live: Conn[] = [];
const queue: Conn[] = [];
const dueAt: number[] = [];
let head = 0;
let lastDue = 0;
let heartbeating = false;
function schedule(c: Conn, at: number): void {
  lastDue = Math.max(lastDue, at);
  queue.push(c);
  dueAt.push(lastDue);
}
function opened(c: Conn): void {
  live.push(c);
  if (heartbeating) schedule(c, performance.now() + cfg.intervalMs);
}
function startHeartbeats(): void {
  if (!clientInitiated) return;
  heartbeating = true;
  const t0 = performance.now();
  live.forEach((c, i) => schedule(c, t0 + (cfg.intervalMs * (i + 1)) / live.length));
  setInterval(() => {
    const now = performance.now();
    while (head < queue.length && dueAt[head] <= now) {
      const c = queue[head];
      const at = dueAt[head];
      head++;
      c.ping();
      stats.pings++;
      // Not before the next tick: after a stall longer than an interval, one ping each, not a burst.
      schedule(c, Math.max(at + cfg.intervalMs, now + 1));
    }
    if (head > 65_536 && head * 2 > queue.length) {
      queue.splice(0, head);
      dueAt.splice(0, head);
      head = 0;
    }
  }, 5);
}
if (cfg.pingDuringSetup) startHeartbeats();

// Answered from the start: the scale run asks for stats, and may stop the run, while connections still open.
/** Set while the warmed-up load generator waits for `go`. */
let go: (() => void) | null = null;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'go') go?.();
  if (line.trim() === 'stats') {
    let bytesIn = 0;
    let bytesOut = 0;
    for (const c of live) {
      const b = c.bytes();
      bytesIn += b.in;
      bytesOut += b.out;
    }
    say('stats', { ...stats, bytesIn, bytesOut, failures, closes });
  }
});
const stop = () => {
  stopping = true;
  for (const c of live) c.close();
  setTimeout(() => process.exit(0), 100);
};
process.stdin.on('end', stop);
setTimeout(stop, cfg.maxMs).unref();

const conc = cfg.concurrency ?? 200;
/** Opens connections first … first + n - 1, `conc` at a time; failures are counted only when `counted`. */
async function ramp(first: number, n: number, counted: boolean, onOpen: (c: Conn, i: number) => void): Promise<void> {
  let next = first;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < first + n) {
        const i = next++;
        try {
          onOpen(await open(i), i);
        } catch (err) {
          if (!counted) continue;
          stats.failed++;
          count(failures, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
        }
      }
    }),
  );
}
if (cfg.warmup) {
  warming = true;
  const warm: Conn[] = [];
  // Numbered after the measured ones, so no identity is shared with them.
  await ramp(cfg.count, cfg.warmup, false, (c) => warm.push(c));
  for (const c of warm) c.close();
  // The server has seen the closes, and its timers and garbage from them have settled.
  await new Promise((r) => setTimeout(r, 1500));
  warming = false;
  say('warm', { opened: warm.length });
  await new Promise<void>((r) => (go = r));
}
const t0 = performance.now();
const cpu0 = process.cpuUsage();
await ramp(0, cfg.count, true, (c, i) => {
  conns[i] = c;
  opened(c);
  stats.open++;
  if (stats.open % 2000 === 0) say('progress', { open: stats.open });
});
say('ready', { open: stats.open, failed: stats.failed, setupMs: performance.now() - t0, cpuUs: ((c) => c.user + c.system)(process.cpuUsage(cpu0)), failures });
if (!cfg.pingDuringSetup) startHeartbeats();

