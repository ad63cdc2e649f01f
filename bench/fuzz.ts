/**
 * Fuzzing the gateway over real sockets: the frame decoder and the
 * connection state machine, with random, mutated and truncated frames sent
 * in every phase (before HELLO, while HELLO is being authenticated, open),
 * over TCP and WebSocket, split into random chunks. Seeded, so a failure
 * replays with its seed.
 *
 *   npm run bench -- --fuzz [--cases 200000] [--seed N] [--concurrency 64]
 *
 * What must hold, checked per case and at the end: the gateway process never
 * throws; every close it sends carries a known code; every protocol error is
 * typed; every connection ends (none leaks: the gateway's connection count,
 * admission count and registry return to zero); and a healthy client on the
 * same gateway is answered throughout. A short run of the same engine is in
 * `npm test` (test/integration/fuzz.test.ts).
 */
import net from 'node:net';
import { WebSocket } from 'ws';
import { seededRandom } from '../src/core/backoff.js';
import { LonglinkClient } from '../src/client/client.js';
import { Gateway } from '../src/gateway/gateway.js';
import { CloseCodes, LonglinkError } from '../src/protocol/errors.js';
import { encodeDelimited, encodeFrame } from '../src/protocol/frame-codec.js';
import { FrameDecoder } from '../src/protocol/frame-decoder.js';
import { FrameType, PROTOCOL_VERSION, type Frame } from '../src/protocol/frames.js';

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Cases in flight at once. */
  concurrency?: number;
  /** Share of cases over WebSocket (the rest over TCP). */
  wsShare?: number;
  /** Wall-clock bound for the whole run; it stops early (and says so) past it. */
  maxMs?: number;
  onProgress?: (done: number, report: FuzzReport) => void;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  byPhase: Record<Phase, number>;
  byKind: Record<Kind, number>;
  byTransport: { tcp: number; ws: number };
  /** How the gateway ended each case, by close code (0: the peer's own FIN, no CLOSE from the gateway). */
  closes: Record<string, number>;
  protocolErrors: number;
  /** Failures of the properties; empty on success. */
  violations: string[];
  healthyRoundTrips: number;
  leftConnections: number;
  ms: number;
  stoppedEarly: boolean;
}

type Phase = 'handshake' | 'hello' | 'open';
type Kind = 'random' | 'mutated' | 'truncated' | 'valid-sequence';
const PHASES: Phase[] = ['handshake', 'hello', 'open'];
const KINDS: Kind[] = ['random', 'mutated', 'truncated', 'valid-sequence'];
const KNOWN_CODES = new Set<number>(Object.values(CloseCodes));

/** A random but well-formed frame of any type. */
function randomFrame(rnd: () => number): Frame {
  const int = (n: number) => Math.floor(rnd() * n);
  const str = (max: number) => Array.from({ length: int(max) }, () => String.fromCharCode(32 + int(90))).join('');
  const bytes = (max: number) => Uint8Array.from({ length: int(max) }, () => int(256));
  const big = () => (rnd() < 0.1 ? Number.MAX_SAFE_INTEGER - int(10) : int(rnd() < 0.5 ? 10 : 1e6));
  switch (1 + int(8)) {
    case 1:
      return {
        type: FrameType.HELLO,
        version: rnd() < 0.9 ? PROTOCOL_VERSION : int(5),
        userId: str(20),
        deviceId: str(12),
        ...(rnd() < 0.3 ? { token: str(60) } : {}),
        ...(rnd() < 0.3 ? { resumeToken: str(30) } : {}),
        ...(rnd() < 0.3 ? { lastSeq: big() } : {}),
        ...(rnd() < 0.3 ? { intervalMs: big() } : {}),
        ...(rnd() < 0.2 ? { direction: rnd() < 0.5 ? 'server' : 'client' } : {}),
        ...(rnd() < 0.2 ? { clientInfo: { [str(8)]: str(8) } } : {}),
      } as Frame;
    case 2:
      return {
        type: FrameType.WELCOME,
        sessionId: str(10),
        resumeToken: str(10),
        resumed: rnd() < 0.5,
        heartbeat: { intervalMs: big(), minIntervalMs: big(), maxIntervalMs: big(), missBudget: int(5), graceMs: big(), direction: 'client' },
      };
    case 3:
      return {
        type: FrameType.PING,
        ...(rnd() < 0.2 ? { ack: big() } : {}),
        ...(rnd() < 0.2 ? { state: { [str(6)]: str(6) } } : {}),
        ...(rnd() < 0.2 ? { intervalMs: big() } : {}),
      };
    case 4:
      return { type: FrameType.PONG, ...(rnd() < 0.3 ? { ack: big() } : {}) };
    case 5:
      return {
        type: FrameType.DATA,
        payload: bytes(rnd() < 0.05 ? 4000 : 64),
        ...(rnd() < 0.6 ? { seq: big() } : {}),
        ...(rnd() < 0.5 ? { id: str(16) } : {}),
        ...(rnd() < 0.2 ? { ack: big() } : {}),
      };
    case 6:
      return { type: FrameType.ACK, ack: big() };
    case 7:
      return { type: FrameType.GOAWAY, code: int(5000), ...(rnd() < 0.5 ? { reconnectAfterMs: big() } : {}) };
    default:
      return { type: FrameType.CLOSE, code: rnd() < 0.5 ? 1000 : int(5000), ...(rnd() < 0.5 ? { reason: str(30) } : {}) };
  }
}

function mutate(rnd: () => number, b: Uint8Array): Uint8Array {
  const int = (n: number) => Math.floor(rnd() * n);
  let out = Uint8Array.from(b);
  for (let k = 1 + int(3); k > 0; k--) {
    switch (int(5)) {
      case 0: // flip bits
        if (out.length) out[int(out.length)] ^= 1 << int(8);
        break;
      case 1: {
        // delete a range
        const at = int(out.length + 1);
        out = Uint8Array.from([...out.subarray(0, at), ...out.subarray(at + 1 + int(4))]);
        break;
      }
      case 2: {
        // insert random bytes
        const at = int(out.length + 1);
        out = Uint8Array.from([...out.subarray(0, at), ...Array.from({ length: 1 + int(4) }, () => int(256)), ...out.subarray(at)]);
        break;
      }
      case 3: // a byte set to an edge value
        if (out.length) out[int(out.length)] = [0x00, 0x7f, 0x80, 0xff][int(4)];
        break;
      default: // a huge length prefix
        out = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, ...out]);
    }
  }
  return out;
}

/** What one case sends after reaching its phase: whole messages (WebSocket) or one byte stream (TCP). */
function payloadFor(rnd: () => number, kind: Kind, ws: boolean): Uint8Array[] {
  const int = (n: number) => Math.floor(rnd() * n);
  const enc = (f: Frame) => (ws ? encodeFrame(f) : encodeDelimited(f));
  const n = 1 + int(4);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    if (kind === 'random') out.push(Uint8Array.from({ length: int(48) }, () => int(256)));
    else if (kind === 'mutated') out.push(mutate(rnd, enc(randomFrame(rnd))));
    else if (kind === 'truncated') {
      const b = enc(randomFrame(rnd));
      out.push(b.subarray(0, int(b.length)));
      break; // nothing can follow a truncation on a stream
    } else out.push(enc(randomFrame(rnd)));
  }
  return out;
}

function splitRandomly(rnd: () => number, bytes: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const n = 1 + Math.floor(rnd() * Math.max(1, bytes.length - at));
    parts.push(bytes.subarray(at, at + n));
    at += n;
  }
  return parts;
}

export function caseRandom(seed: number, i: number): () => number {
  return seededRandom((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const t0 = performance.now();
  const concurrency = o.concurrency ?? 48;
  const wsShare = o.wsShare ?? 0.2;
  const report: FuzzReport = {
    seed: o.seed,
    cases: 0,
    byPhase: { handshake: 0, hello: 0, open: 0 },
    byKind: { random: 0, mutated: 0, truncated: 0, 'valid-sequence': 0 },
    byTransport: { tcp: 0, ws: 0 },
    closes: {},
    protocolErrors: 0,
    violations: [],
    healthyRoundTrips: 0,
    leftConnections: -1,
    ms: 0,
    stoppedEarly: false,
  };
  const violate = (m: string) => {
    if (report.violations.length < 50) report.violations.push(m);
  };
  const gw = new Gateway({
    tcp: { port: 0 },
    ws: { port: 0 },
    handshakeTimeoutMs: 2000,
    maxFrameBytes: 2048,
    wheelTickMs: 20,
    // Every case is a new connection from 127.0.0.1, as fast as it can go.
    limits: { maxConnectionsPerSource: 0, handshakesPerSecond: 0 },
    // Authentication takes a moment, so frames also land while HELLO is pending.
    authenticate: async (h) => {
      if (h.userId.startsWith('slow')) await new Promise((r) => setTimeout(r, 5));
      return { userId: h.userId, deviceId: h.deviceId };
    },
  });
  gw.on('protocol-error', (e) => {
    report.protocolErrors++;
    if (!(e.error instanceof LonglinkError) || !/^LL_ERR_[A-Z_]+$/.test(e.error.code)) violate(`untyped protocol error: ${e.error}`);
  });
  const onUncaught = (err: Error) => violate(`uncaught in the gateway process: ${err.stack ?? err}`);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const addrs = await gw.listen();
  const tcpPort = addrs.tcp!.port;
  const wsUrl = `ws://127.0.0.1:${addrs.ws!.port}/longlink`;

  // The bystander: a real client whose round trips must keep working.
  gw.on('message', (m) => {
    if (m.userId === 'healthy') gw.send('healthy', m.payload);
  });
  const healthy = new LonglinkClient({ url: `tcp://127.0.0.1:${tcpPort}`, userId: 'healthy', deviceId: 'd' });
  await healthy.connect();
  let healthyBusy = false;
  const healthyTimer = setInterval(() => {
    if (healthyBusy) return;
    healthyBusy = true;
    const t = setTimeout(() => {
      violate('the healthy client went unanswered for 5 s');
      healthyBusy = false;
    }, 5000);
    healthy.once('message', () => {
      clearTimeout(t);
      report.healthyRoundTrips++;
      healthyBusy = false;
    });
    try {
      healthy.send('ping?');
    } catch (err) {
      violate(`healthy client: ${err}`);
    }
  }, 100);

  const count = (closeCode: number | undefined) => {
    const k = String(closeCode ?? 0);
    report.closes[k] = (report.closes[k] ?? 0) + 1;
    if (closeCode !== undefined && !KNOWN_CODES.has(closeCode)) violate(`unknown close code ${closeCode}`);
  };

  const tcpCase = (i: number, rnd: () => number, phase: Phase, chunks: Uint8Array[], user: string) =>
    new Promise<void>((resolve) => {
      const s = net.connect(tcpPort, '127.0.0.1');
      const dec = new FrameDecoder(1 << 20);
      let code: number | undefined;
      let welcomed = false;
      const fire = () => {
        for (const c of chunks) for (const part of splitRandomly(rnd, c)) s.write(part);
        s.end();
      };
      s.on('data', (d) => {
        try {
          dec.push(d, (f) => {
            if (f.type === FrameType.CLOSE) code = f.code;
            if (f.type === FrameType.WELCOME && phase === 'open' && !welcomed) {
              welcomed = true;
              fire();
            }
          });
        } catch (err) {
          violate(`case ${i}: the gateway sent bytes that do not decode: ${err}`);
        }
      });
      s.on('connect', () => {
        if (phase === 'handshake') return fire();
        s.write(encodeDelimited({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: user, deviceId: 'd' }));
        if (phase === 'hello') fire();
      });
      s.on('error', () => {});
      const guard = setTimeout(() => {
        violate(`case ${i} (tcp, ${phase}): the connection was still open after 8 s`);
        s.destroy();
      }, 8000);
      s.on('close', () => {
        clearTimeout(guard);
        count(code);
        resolve();
      });
    });

  const wsCase = (i: number, phase: Phase, messages: Uint8Array[], user: string) =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
      let code: number | undefined;
      let welcomed = false;
      const fire = () => {
        for (const m of messages) ws.send(m);
        ws.close(1000);
      };
      ws.on('message', (d: Buffer) => {
        if (d[0] === FrameType.WELCOME && phase === 'open' && !welcomed) {
          welcomed = true;
          fire();
        }
      });
      ws.on('open', () => {
        if (phase === 'handshake') return fire();
        ws.send(encodeFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: user, deviceId: 'd' }));
        if (phase === 'hello') fire();
      });
      ws.on('error', () => {});
      const guard = setTimeout(() => {
        violate(`case ${i} (ws, ${phase}): the connection was still open after 8 s`);
        ws.terminate();
      }, 8000);
      ws.on('close', (c) => {
        clearTimeout(guard);
        code = c >= 4000 ? c : undefined;
        count(code);
        resolve();
      });
    });

  let next = 0;
  const worker = async () => {
    while (next < o.cases) {
      if (o.maxMs !== undefined && performance.now() - t0 > o.maxMs) {
        report.stoppedEarly = true;
        return;
      }
      const i = next++;
      // Each case has its own stream of randomness: case i replays alone with the same seed.
      const rnd = caseRandom(o.seed, i);
      const phase = PHASES[Math.floor(rnd() * PHASES.length)];
      const kind = KINDS[Math.floor(rnd() * KINDS.length)];
      const ws = rnd() < wsShare;
      // A small pool of users, so sessions are also replaced and resumed under fire.
      const user = `${phase === 'hello' ? 'slow' : 'u'}${Math.floor(rnd() * 200)}`;
      const chunks = payloadFor(rnd, kind, ws);
      report.byPhase[phase]++;
      report.byKind[kind]++;
      report.byTransport[ws ? 'ws' : 'tcp']++;
      await (ws ? wsCase(i, phase, chunks, user) : tcpCase(i, rnd, phase, chunks, user));
      report.cases++;
      if (report.cases % 1000 === 0) o.onProgress?.(report.cases, report);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));

  // No leaks: only the healthy client is left once the last case is over.
  for (let i = 0; i < 100 && gw.connectionCount > 1; i++) await new Promise((r) => setTimeout(r, 50));
  report.leftConnections = gw.connectionCount;
  if (gw.connectionCount !== 1) violate(`${gw.connectionCount - 1} fuzz connections leaked`);
  if (gw.onlineDevices !== 1) violate(`${gw.onlineDevices - 1} devices still registered`);
  if (gw.admissionStats().admitted - report.cases - 1 < 0) violate('admission counted fewer connections than were made');
  if (healthy.state !== 'open') violate(`the healthy client is ${healthy.state}`);
  clearInterval(healthyTimer);
  healthy.close();
  await gw.close();
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
  report.ms = Math.round(performance.now() - t0);
  return report;
}

export function fuzzMarkdown(r: FuzzReport): string {
  const closes = Object.entries(r.closes)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code === '0' ? 'peer FIN' : code}: ${n}`)
    .join(', ');
  return [
    `${r.cases} cases in ${(r.ms / 1000).toFixed(1)} s (seed ${r.seed}${r.stoppedEarly ? ', stopped at the time bound' : ''})`,
    `phases: ${JSON.stringify(r.byPhase)}; kinds: ${JSON.stringify(r.byKind)}; transports: ${JSON.stringify(r.byTransport)}`,
    `closes by code: ${closes}`,
    `protocol errors (all typed): ${r.protocolErrors}; healthy client round trips: ${r.healthyRoundTrips}; connections left: ${r.leftConnections - 1}`,
    r.violations.length ? `VIOLATIONS:\n${r.violations.join('\n')}` : 'violations: none',
  ].join('\n');
}
