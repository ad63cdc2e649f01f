/**
 * One heartbeat server per peer, for the benchmark, in a process of its own
 * (so its RSS and CPU are its own): `node server.js <peer> <intervalMs>`.
 * Prints {"ev":"listening","port"} and answers stdin commands: `mem`
 * (process.memoryUsage), `stat` (CPU used, RSS, event-loop delay since the
 * last `stat`, pending timers, and the gateway's timer work) and `fanout N`
 * (N small messages to every client).
 *
 * - net: the floor for Node: a bare node:net server answering each 2-byte
 *   PING with a 2-byte PONG (longlink's own bare frames).
 * - net-hello: the floor plus longlink's handshake round trip: the client's
 *   HELLO is read and a frame typed WELCOME, as long as longlink's, is
 *   written, then as net. What any protocol with a handshake pays in Node and the kernel,
 *   for telling longlink's own set-up cost from the round trip's.
 * - longlink-tcp / longlink-ws: the gateway, sessions, presence and
 *   detection on, clients sending the heartbeat.
 * - ws: `ws` with its documented heartbeat (the server pings every
 *   interval, terminates a client that did not pong since the last round).
 * - socketio: socket.io v4, WebSocket transport, its own ping/pong.
 * - aedes: MQTT broker; clients send PINGREQ at their keepalive.
 */
import net from 'node:net';
import http from 'node:http';
import readline from 'node:readline';
import fs from 'node:fs';
import inspector from 'node:inspector';
import v8 from 'node:v8';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { WebSocketServer, type WebSocket } from 'ws';
import { Server as IoServer } from 'socket.io';
import { Gateway } from '../../src/gateway/gateway.js';
import { markAlive } from './ws-readme.js';
import { BARE_PONG_DELIMITED } from '../../src/protocol/frame-codec.js';

const [peer, intervalArg] = process.argv.slice(2);
const intervalMs = Number(intervalArg ?? 1000);
const say = (ev: string, d: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, ...d }) + '\n');
let fanout: (n: number) => Promise<void> = async () => {};
let timerStats: () => Record<string, unknown> | null = () => null;
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
// A Buffer, as longlink's TCP link writes, so neither pays for wrapping a Uint8Array per write.
const PONG = Buffer.from(BARE_PONG_DELIMITED);
/** net-hello's reply to HELLO: a frame typed WELCOME (2) as long as the one longlink writes, 64 bytes with its length prefix. */
const WELCOME_SIZED = new Uint8Array(64);
WELCOME_SIZED[0] = 63;
WELCOME_SIZED[1] = 2;

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'stat') {
    const cpu = process.cpuUsage();
    const ms = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - 10) : 0);
    say('stat', {
      cpuUs: cpu.user + cpu.system,
      rss: process.memoryUsage.rss(),
      heapUsed: process.memoryUsage().heapUsed,
      loopP50Ms: ms(loop.percentile(50)),
      loopP99Ms: ms(loop.percentile(99)),
      loopMaxMs: ms(loop.max),
      timeouts: process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length,
      timers: timerStats(),
    });
    loop.reset();
  }
  if (cmd === 'mem') say('mem', { ...process.memoryUsage(), spaces: Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.space_size])), used: Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.space_used_size])) });
  // For profiling by hand (with --expose-gc): how much of RSS a full collection gives back.
  if (cmd === 'gc') {
    const before = process.memoryUsage.rss();
    (globalThis as { gc?: () => void }).gc?.();
    say('gc', { before, after: process.memoryUsage.rss() });
  }
  // For profiling by hand: sampled allocations between `alloc start [major]` and `alloc stop <file>`;
  // with `major`, objects a full collection freed are kept in the profile (garbage that was
  // promoted before it died), with `all` every allocation, garbage or not; `stop` forces that collection (under --expose-gc) first.
  if (cmd === 'alloc') {
    const [, what, file] = line.trim().split(/\s+/);
    if (what === 'start') {
      await post('HeapProfiler.enable');
      await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: file === 'major' || file === 'all', includeObjectsCollectedByMinorGC: file === 'all' });
      say('alloc');
    } else {
      (globalThis as { gc?: () => void }).gc?.();
      const r = (await post('HeapProfiler.stopSampling')) as { profile: unknown };
      fs.writeFileSync(file, JSON.stringify(r.profile));
      say('alloc', { file });
    }
  }
  // CPU profile of a window the caller marks (`prof start [intervalUs]`, `prof stop <file>`): the
  // set-up alone, without the process's start-up that --cpu-prof would take in too.
  if (cmd === 'prof') {
    const [, what, a2] = line.trim().split(/\s+/);
    if (what === 'start') {
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: Number(a2 ?? 200) });
      await post('Profiler.start');
      say('prof');
    } else {
      const r = (await post('Profiler.stop')) as { profile: unknown };
      fs.writeFileSync(a2, JSON.stringify(r.profile));
      say('prof', { file: a2 });
    }
  }
  // For profiling by hand: a heap snapshot of the server as it stands.
  if (cmd === 'heap') say('heap', { file: v8.writeHeapSnapshot(arg) });
  if (cmd === 'fanout') {
    await fanout(Number(arg));
    say('fanout-done');
  }
});
process.stdin.on('end', () => process.exit(0));

let session: inspector.Session | null = null;
function post(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
  if (!session) {
    session = new inspector.Session();
    session.connect();
  }
  const s = session;
  return new Promise((resolve, reject) => s.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main(): Promise<number> {
  switch (peer) {
    case 'net': {
      const sockets = new Set<net.Socket>();
      const server = net.createServer((s) => {
        sockets.add(s);
        s.setNoDelay(true);
        s.on('data', (d) => {
          for (let i = 1; i < d.length; i += 2) s.write(PONG);
        });
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      });
      fanout = async (n) => {
        const msg = Buffer.from([0x01, 0x06]); // a 1-byte frame: the floor's "message"
        for (let i = 0; i < n; i++) for (const s of sockets) s.write(msg);
      };
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return (server.address() as net.AddressInfo).port;
    }
    case 'net-hello': {
      // The floor plus the handshake's one read and one write: the first chunk (HELLO) is
      // answered with a WELCOME-sized reply, then PINGs with PONGs as the floor does.
      const sockets = new Set<net.Socket>();
      const server = net.createServer({ noDelay: true }, (s) => {
        sockets.add(s);
        let welcomed = false;
        s.on('data', (d) => {
          if (!welcomed) {
            welcomed = true;
            s.write(Buffer.from(WELCOME_SIZED));
            return;
          }
          for (let i = 1; i < d.length; i += 2) s.write(PONG);
        });
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      });
      fanout = async (n) => {
        const msg = Buffer.from([0x01, 0x06]);
        for (let i = 0; i < n; i++) for (const s of sockets) s.write(msg);
      };
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return (server.address() as net.AddressInfo).port;
    }
    case 'longlink-tcp':
    case 'longlink-ws': {
      const tcp = peer === 'longlink-tcp';
      const gw = new Gateway({
        tcp: tcp ? { host: '127.0.0.1', port: 0 } : false,
        ws: tcp ? false : { host: '127.0.0.1', port: 0 },
        heartbeat: { intervalMs, minIntervalMs: 100, maxIntervalMs: 600_000 },
        // Capacity is measured, so admission does not cap the set-up rate or the
        // load generator's few source addresses; the PING pace and write bounds stay on.
        limits: { handshakesPerSecond: 0, maxConnectionsPerSource: 0, maxConnections: 0 },
      });
      timerStats = () => ({ ...gw.timerStats() });
      fanout = async (n) => {
        const payload = Buffer.from('x');
        for (let i = 0; i < n; i++) gw.broadcast(payload);
      };
      const a = await gw.listen();
      return (tcp ? a.tcp : a.ws)!.port;
    }
    case 'ws': {
      const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      const alive = markAlive(wss);
      // The heartbeat from ws's README.
      setInterval(() => {
        for (const ws of wss.clients) {
          if (!alive.get(ws)) {
            ws.terminate();
            continue;
          }
          alive.set(ws, false);
          ws.ping();
        }
      }, intervalMs);
      fanout = async (n) => {
        for (let i = 0; i < n; i++) for (const ws of wss.clients) ws.send('x');
      };
      await new Promise<void>((r) => wss.once('listening', () => r()));
      return (wss.address() as net.AddressInfo).port;
    }
    case 'socketio': {
      const httpServer = http.createServer();
      const io = new IoServer(httpServer, { transports: ['websocket'], pingInterval: intervalMs, pingTimeout: Math.max(1000, intervalMs) });
      fanout = async (n) => {
        for (let i = 0; i < n; i++) io.emit('m', 'x');
      };
      await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
      return (httpServer.address() as net.AddressInfo).port;
    }
    case 'aedes': {
      const { default: aedesFactory } = (await import('aedes')) as unknown as { default: () => { handle: (s: net.Socket) => void; publish: (p: object, cb: () => void) => void } };
      const broker = aedesFactory();
      const server = net.createServer(broker.handle);
      fanout = async (n) => {
        for (let i = 0; i < n; i++) await new Promise<void>((r) => broker.publish({ cmd: 'publish', topic: 'all', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, r));
      };
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return (server.address() as net.AddressInfo).port;
    }
    default:
      throw new Error(`unknown peer ${peer}`);
  }
}

say('listening', { port: await main(), pid: process.pid });
