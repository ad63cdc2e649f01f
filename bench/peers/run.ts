import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * Runs one peer's server and the load generator against it, and measures:
 * server RSS and heap per connection, server CPU per heartbeat round trip
 * and per connection set up (from /proc, so it is the server process's own),
 * connections set up per second, and heartbeat bytes on the wire per round trip (counted on the
 * client sockets).
 */
export const PEERS = ['net', 'net-hello', 'longlink-tcp', 'longlink-ws', 'ws', 'socketio', 'aedes', 'mosquitto'] as const;
export type Peer = (typeof PEERS)[number];

export interface PeerResult {
  peer: Peer;
  connections: number;
  failed: number;
  /** Measured connections that closed by the end of the steady window (a server's keepalive, a reset): their figures are not a full load's. */
  closed: number;
  setupMs: number;
  connectsPerSecond: number;
  /** Server CPU from the load generator's start to its last connection open, per connection: the set-up's cost to the server alone (the wall time shares two cores with the load generator). */
  setupCpuUsPerConnection: number;
  /** The load generator's own CPU over the set-up, per connection: the other process on the two cores. */
  clientSetupCpuUsPerConnection: number;
  /** Connections opened and closed before the measured set-up (the warm-up), and their server CPU per connection, closes included. */
  warmup: { connections: number; serverCpuUsPerConnection: number } | null;
  rssPerConnectionKB: number;
  heapPerConnectionKB: number | null;
  memoryPerConnectionKB: Record<string, number> | null;
  steadyS: number;
  roundTrips: number;
  roundTripsPerSecond: number;
  cpuUsPerRoundTrip: number;
  bytesPerRoundTrip: number;
  /** Messages a second delivered to the connected clients when the server sends to all of them (null: not measured). */
  fanoutPerSecond: number | null;
  /** Fan-out messages the clients counted (rounds × connections when none was lost). */
  fanoutMessages: number | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
  } catch {
    return 100;
  }
})();

class Proc {
  readonly lines: Record<string, unknown>[] = [];
  private waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  constructor(readonly child: ChildProcess) {
    if (child.stdout) {
      readline.createInterface({ input: child.stdout }).on('line', (t) => {
        let l: Record<string, unknown>;
        try {
          l = JSON.parse(t);
        } catch {
          return;
        }
        this.lines.push(l);
        this.waiters = this.waiters.filter((w) => (w.pred(l) ? (w.resolve(l), false) : true));
      });
    }
  }
  wait(pred: (l: Record<string, unknown>) => boolean, ms: number, what: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }
  async ask(cmd: string, ev: string): Promise<Record<string, unknown>> {
    const p = this.wait((l) => l.ev === ev, 10_000, ev);
    this.child.stdin!.write(cmd + '\n');
    return p;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin?.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    this.child.kill('SIGTERM');
    await exited;
    clearTimeout(t);
  }
}

function memoryBreakdown(m0: Record<string, unknown>, m1: Record<string, unknown>, open: number): Record<string, number> {
  const per = (a: unknown, b: unknown) => Math.round(((Number(b) - Number(a)) / 1024 / Math.max(1, open)) * 100) / 100;
  const s0 = (m0.spaces ?? {}) as Record<string, number>;
  const s1 = (m1.spaces ?? {}) as Record<string, number>;
  const out: Record<string, number> = { heapTotal: per(m0.heapTotal, m1.heapTotal), external: per(m0.external, m1.external), arrayBuffers: per(m0.arrayBuffers, m1.arrayBuffers) };
  for (const k of Object.keys(s1)) out[k] = per(s0[k] ?? 0, s1[k]);
  return out;
}

function procStat(pid: number): { cpuTicks: number; rssKB: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { cpuTicks: Number(f[11]) + Number(f[12]), rssKB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export function mosquittoUnavailable(): string | null {
  try {
    execFileSync('mosquitto', ['-h'], { stdio: 'ignore' });
    return null;
  } catch (err) {
    // mosquitto -h exits 3 after printing help; a missing binary throws ENOENT.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'mosquitto is not installed (Debian package mosquitto)' : null;
  }
}

async function startServer(peer: Peer, intervalMs: number): Promise<{ proc: Proc; port: number; node: boolean; cleanup: () => void }> {
  if (peer === 'mosquitto') {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'll-mosq-'));
    const conf = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type none\nmax_keepalive 65535\n`);
    const proc = new Proc(spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] }));
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
        s.on('error', () => r(false));
      });
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return { proc, port, node: false, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
  }
  const proc = new Proc(spawn(process.execPath, ['--max-semi-space-size=16', path.join(here, 'server.js'), peer, String(intervalMs)], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const l = await proc.wait((x) => x.ev === 'listening', 10_000, 'listening');
  return { proc, port: Number(l.port), node: true, cleanup: () => {} };
}

export async function runPeer(
  peer: Peer,
  o: { count: number; intervalMs: number; steadyS: number; settleS?: number; sources?: number; fanoutRounds?: number; warmup?: number },
  log: (m: string) => void = () => {},
): Promise<PeerResult> {
  const server = await startServer(peer, o.intervalMs);
  const pid = server.proc.child.pid!;
  try {
    await new Promise((r) => setTimeout(r, 500));
    const mem0 = server.node ? await server.proc.ask('mem', 'mem') : null;
    let pre = procStat(pid);
    const rss0 = pre.rssKB;
    const gen = new Proc(
      spawn(
        process.execPath,
        [path.join(here, 'loadgen.js'), peer, JSON.stringify({ port: server.port, count: o.count, intervalMs: o.intervalMs, maxMs: 30 * 60_000, sources: o.sources ?? 16, warmup: o.warmup ?? 0 })],
        {
          stdio: ['pipe', 'pipe', 'inherit'],
        },
      ),
    );
    try {
      let warmup: PeerResult['warmup'] = null;
      if (o.warmup) {
        // The warm-up's connections were opened and closed: the measured set-up starts now, on a warm server.
        // Memory is still counted from before the warm-up: a baseline taken after it would let the
        // measured connections reuse the pages the warm-up's connections freed (up to its whole footprint),
        // and what a server keeps of closed connections (longlink: their resumable sessions) counts against it.
        const w = await gen.wait((l) => l.ev === 'warm', 5 * 60_000, 'warm');
        const warm = procStat(pid);
        warmup = { connections: Number(w.opened), serverCpuUsPerConnection: (((warm.cpuTicks - pre.cpuTicks) / CLK_TCK) * 1e6) / Math.max(1, Number(w.opened)) };
        pre = warm;
        gen.child.stdin!.write('go\n');
      }
      gen.child.stdout!.on('data', () => {
        const p = gen.lines.filter((l) => l.ev === 'progress').at(-1);
        if (p) log(`${peer}: ${p.open}/${o.count} connected`);
      });
      const ready = await gen.wait((l) => l.ev === 'ready', 15 * 60_000, 'ready');
      const setupTicks = procStat(pid).cpuTicks - pre.cpuTicks;
      await new Promise((r) => setTimeout(r, (o.settleS ?? 3) * 1000));
      const mem1 = server.node ? await server.proc.ask('mem', 'mem') : null;
      const s0 = await gen.ask('stats', 'stats');
      const c0 = procStat(pid);
      log(`${peer}: measuring ${o.steadyS} s of heartbeats`);
      await new Promise((r) => setTimeout(r, o.steadyS * 1000));
      const s1 = await gen.ask('stats', 'stats');
      const c1 = procStat(pid);
      // Fan-out: the server sends `rounds` small messages to every client; timed until the clients counted them all.
      let fanoutPerSecond: number | null = null;
      let fanoutMessages: number | null = null;
      const rounds = o.fanoutRounds ?? 0;
      if (rounds > 0) {
        log(`${peer}: fan-out, ${rounds} messages to each of ${o.count}`);
        const m0 = Number(s1.messages);
        const want = m0 + rounds * Number(ready.open);
        const f0 = performance.now();
        if (server.node) server.proc.child.stdin!.write(`fanout ${rounds}\n`);
        else await mqttPublish(server.port, rounds);
        let got = m0;
        for (let t = 0; t < 600 && got < want; t++) {
          await new Promise((r) => setTimeout(r, 50));
          got = Number((await gen.ask('stats', 'stats')).messages);
        }
        fanoutPerSecond = (got - m0) / ((performance.now() - f0) / 1000);
        fanoutMessages = got - m0;
      }
      const roundTrips = Number(s1.pongs) - Number(s0.pongs);
      const bytes = Number(s1.bytesIn) - Number(s0.bytesIn) + (Number(s1.bytesOut) - Number(s0.bytesOut));
      const open = Number(ready.open);
      return {
        peer,
        connections: open,
        failed: Number(ready.failed),
        closed: Number(s1.closed),
        setupMs: Math.round(Number(ready.setupMs)),
        connectsPerSecond: open / (Number(ready.setupMs) / 1000),
        setupCpuUsPerConnection: ((setupTicks / CLK_TCK) * 1e6) / Math.max(1, open),
        clientSetupCpuUsPerConnection: Number(ready.cpuUs) / Math.max(1, open),
        warmup,
        rssPerConnectionKB: (c1.rssKB - rss0) / Math.max(1, open),
        heapPerConnectionKB: mem0 && mem1 ? (Number(mem1.heapUsed) - Number(mem0.heapUsed)) / 1024 / Math.max(1, open) : null,
        // Where RSS goes (Node servers): V8's committed spaces and memory outside the heap, per connection, once all are open.
        memoryPerConnectionKB: mem0 && mem1 ? memoryBreakdown(mem0, mem1, open) : null,
        steadyS: o.steadyS,
        roundTrips,
        roundTripsPerSecond: roundTrips / o.steadyS,
        cpuUsPerRoundTrip: roundTrips > 0 ? (((c1.cpuTicks - c0.cpuTicks) / CLK_TCK) * 1e6) / roundTrips : NaN,
        bytesPerRoundTrip: roundTrips > 0 ? bytes / roundTrips : NaN,
        fanoutPerSecond,
        fanoutMessages,
      };
    } finally {
      await gen.stop();
    }
  } finally {
    await server.proc.stop();
    server.cleanup();
  }
}

/** Mosquitto has no stdin: a raw MQTT publisher sends `rounds` QoS 0 messages to topic "all". */
async function mqttPublish(port: number, rounds: number): Promise<void> {
  const id = Buffer.from('bench-publisher');
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, 0, id.length]), id]);
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.concat([Buffer.from([0x10, body.length]), body])));
    s.once('data', () => {
      for (let i = 0; i < rounds; i++) s.write(Buffer.from([0x30, 6, 0, 3, 0x61, 0x6c, 0x6c, 0x78]));
      s.end(() => resolve());
    });
    s.on('error', reject);
  });
}
