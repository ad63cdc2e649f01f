/**
 * The long hold: does a heartbeat cost the same after half an hour as after a
 * minute? (issue 18: it did not; CPU per heartbeat grew by about 10 µs every
 * 30 s at a 30 s interval.)
 *
 *   npm run bench -- --hold [--connections 60000] [--interval-ms 30000] [--hold-s 1800]
 *                           [--sample-s 60] [--peers net,longlink-tcp] [--servers auto]
 *
 * Every peer runs at the same time on the same load, so noise on the machine
 * hits both alike: per peer, S server processes (bench/peers/server.ts; S so
 * no process needs more than 85% of the open-files limit) and one load
 * generator beside each (bench/peers/loadgen.ts), every connection sending a
 * bare heartbeat once per interval from the moment it opens. Once all are
 * open the hold begins; every --sample-s each server reports its own CPU
 * (process.cpuUsage), RSS, event-loop delay since the last sample, pending
 * timers and (longlink) the timer wheel's work, and the load generators their
 * heartbeats answered. CPU per heartbeat is per sample window and per peer;
 * ratios to bare node:net are taken within the same window.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { panelFrame } from './chart.js';
import { Child, hardFileLimit, spawnRaised } from './proc-tools.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.join(here, 'peers', 'server.js');
const LOADGEN = path.join(here, 'peers', 'loadgen.js');

export type HoldPeer = 'net' | 'longlink-tcp' | 'longlink-ws';
export const HOLD_PEERS: HoldPeer[] = ['net', 'longlink-tcp', 'longlink-ws'];

export interface HoldOptions {
  connections: number;
  intervalMs: number;
  holdS: number;
  sampleS: number;
  peers: HoldPeer[];
  servers: number | 'auto';
  out: string;
  rampTimeoutS: number;
}

interface ServerStat {
  cpuUs: number;
  rss: number;
  heapUsed: number;
  loopP50Ms: number;
  loopP99Ms: number;
  loopMaxMs: number;
  timeouts: number;
  timers: { arms: number; ticks: number; visited: number; expired: number; wheelSize: number } | null;
}

interface GenStat {
  open: number;
  closed: number;
  failed: number;
  pings: number;
  pongs: number;
}

/** One peer's figures over one sample window. */
export interface HoldWindow {
  peer: HoldPeer;
  /** Minutes (or windows) since the hold began, at the window's end. */
  atS: number;
  open: number;
  closed: number;
  heartbeats: number;
  heartbeatsPerS: number;
  cpuUsPerHeartbeat: number;
  cpuPct: number;
  rssMB: number;
  heapMB: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /** Timers pending in the busiest server process at the window's end. */
  timeouts: number;
  /** The wheel runner's timers armed per second and wheel visits per heartbeat (longlink only). */
  armsPerS: number | null;
  visitsPerHeartbeat: number | null;
}

export interface HoldResult {
  when: string;
  machine: string;
  options: HoldOptions & { servers: number };
  rampS: number;
  windows: HoldWindow[];
  /** Per peer: first full window against the last, and the ratio to net within the last. */
  summary: Record<string, { firstUs: number; lastUs: number; change: number; ratioFirst: number | null; ratioLast: number | null; closed: number; maxLoopP99Ms: number; rssFirstMB: number; rssLastMB: number }>;
}

interface Side {
  peer: HoldPeer;
  servers: Child[];
  gens: Child[];
  last: ServerStat[];
  gen: GenStat[];
  /** Each load generator's 'ready', awaited from the moment it is spawned (a small one may be ready before the next side is). */
  readies: Promise<unknown>[];
}

const ask = <T>(c: Child, cmd: string, ev: string): Promise<T> => {
  const p = c.next((l) => l.ev === ev, 30_000, ev) as Promise<unknown>;
  c.proc.stdin!.write(cmd + '\n');
  return p as Promise<T>;
};

export async function runHold(o: HoldOptions, log: (m: string) => void): Promise<HoldResult> {
  const fileLimit = hardFileLimit();
  const perProcess = Math.floor(fileLimit * 0.85);
  const servers = o.servers === 'auto' ? Math.max(1, Math.ceil(o.connections / perProcess)) : o.servers;
  const per = Math.ceil(o.connections / servers);
  if (per > perProcess) throw new Error(`${per} connections per server process exceed 85% of the open-files limit (${fileLimit}); use more --servers`);
  log(`${o.connections} connections per peer (${o.peers.join(', ')}), heartbeat every ${o.intervalMs} ms, hold ${o.holdS} s sampled every ${o.sampleS} s; ${servers} server processes per peer, one load generator each`);
  const t0 = Date.now();
  const sides: Side[] = [];
  let stopped = false;
  const all = () => sides.flatMap((s) => [...s.gens, ...s.servers]);
  const cleanup = async () => {
    if (stopped) return;
    stopped = true;
    for (const c of all()) c.proc.stdin?.end();
    await Promise.all(
      all().map(
        (c) =>
          new Promise<void>((r) => {
            if (c.proc.exitCode !== null || c.proc.signalCode !== null) return r();
            const k = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
            c.proc.once('exit', () => {
              clearTimeout(k);
              r();
            });
          }),
      ),
    );
  };
  const onSignal = () => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  try {
    let sourceBase = 0;
    for (const peer of o.peers) {
      const side: Side = { peer, servers: [], gens: [], last: [], gen: [], readies: [] };
      sides.push(side);
      for (let i = 0; i < servers; i++) {
        const count = Math.min(per, o.connections - per * i);
        if (count <= 0) break;
        const srv = new Child(spawnRaised(['--max-semi-space-size=16', SERVER, peer, String(o.intervalMs)], ['pipe', 'pipe', 'inherit']));
        side.servers.push(srv);
        const { port } = (await srv.next((l) => l.ev === 'listening', 30_000, `${peer} server listening`)) as { port: number };
        // Two source addresses per generator: 28,000 ephemeral ports each is room for 15,000 connections and their TIME_WAITs.
        const cfg = { port, count, intervalMs: o.intervalMs, maxMs: (o.rampTimeoutS + o.holdS + 300) * 1000, sources: 2, sourceBase, concurrency: 40, prefix: `${peer}-${i}-`, pingDuringSetup: true };
        sourceBase += 2;
        const gen = new Child(spawnRaised(['--max-semi-space-size=16', LOADGEN, peer, JSON.stringify(cfg)], ['pipe', 'pipe', 'inherit']));
        side.gens.push(gen);
        side.readies.push(gen.next((l) => l.ev === 'ready', o.rampTimeoutS * 1000, `${peer} load generator ready`));
      }
    }
    // Ramp: all peers open at once; progress every 10 s.
    const readies = sides.flatMap((s) => s.readies);
    let ready = false;
    const allReady = Promise.all(readies).finally(() => (ready = true));
    while (!ready) {
      await Promise.race([allReady.catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
      const opened = await Promise.all(sides.map(async (s) => (await Promise.all(s.gens.map((g) => ask<GenStat>(g, 'stats', 'stats')))).reduce((a, x) => a + x.open, 0)));
      log(`ramp: ${sides.map((s, i) => `${s.peer} ${opened[i]}`).join(', ')} open`);
    }
    await allReady;
    const rampS = (Date.now() - t0) / 1000;

    const collect = async () =>
      Promise.all(
        sides.map(async (s) => ({
          srv: await Promise.all(s.servers.map((c) => ask<ServerStat>(c, 'stat', 'stat'))),
          gen: await Promise.all(s.gens.map((c) => ask<GenStat>(c, 'stats', 'stats'))),
        })),
      );
    let prev = await collect();
    let prevAt = performance.now();
    const holdAt = prevAt;
    const windows: HoldWindow[] = [];
    log(`hold: all ${o.connections} connections per peer open after ${rampS.toFixed(0)} s`);
    while (performance.now() - holdAt < o.holdS * 1000 - 500) {
      const wait = Math.min(o.sampleS * 1000, o.holdS * 1000 - (performance.now() - holdAt));
      await new Promise((r) => setTimeout(r, wait));
      const cur = await collect();
      const now = performance.now();
      const dt = (now - prevAt) / 1000;
      const atS = Math.round((now - holdAt) / 1000);
      const line: string[] = [];
      sides.forEach((s, k) => {
        const a = prev[k];
        const b = cur[k];
        const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((acc, x) => acc + f(x), 0);
        const cpuUs = sum(b.srv, (x) => x.cpuUs) - sum(a.srv, (x) => x.cpuUs);
        const heartbeats = sum(b.gen, (x) => x.pongs) - sum(a.gen, (x) => x.pongs);
        const arms = b.srv[0].timers ? sum(b.srv, (x) => x.timers!.arms) - sum(a.srv, (x) => x.timers!.arms) : null;
        const visits = b.srv[0].timers ? sum(b.srv, (x) => x.timers!.visited) - sum(a.srv, (x) => x.timers!.visited) : null;
        const w: HoldWindow = {
          peer: s.peer,
          atS,
          open: sum(b.gen, (x) => x.open - x.closed),
          closed: sum(b.gen, (x) => x.closed),
          heartbeats,
          heartbeatsPerS: Math.round(heartbeats / dt),
          cpuUsPerHeartbeat: heartbeats > 0 ? +(cpuUs / heartbeats).toFixed(2) : NaN,
          cpuPct: +((cpuUs / 1e6 / dt) * 100).toFixed(2),
          rssMB: +(sum(b.srv, (x) => x.rss) / 2 ** 20).toFixed(1),
          heapMB: +(sum(b.srv, (x) => x.heapUsed) / 2 ** 20).toFixed(1),
          loopP99Ms: +Math.max(...b.srv.map((x) => x.loopP99Ms)).toFixed(2),
          loopMaxMs: +Math.max(...b.srv.map((x) => x.loopMaxMs)).toFixed(2),
          timeouts: Math.max(...b.srv.map((x) => x.timeouts)),
          armsPerS: arms === null ? null : +(arms / dt).toFixed(1),
          visitsPerHeartbeat: visits === null || heartbeats === 0 ? null : +(visits / heartbeats).toFixed(3),
        };
        windows.push(w);
        line.push(`${s.peer} ${w.cpuUsPerHeartbeat} µs/hb (${w.heartbeatsPerS}/s, loop p99 ${w.loopP99Ms} ms, RSS ${w.rssMB.toFixed(0)} MB${w.armsPerS !== null ? `, ${w.armsPerS} arms/s` : ''}${w.closed ? `, ${w.closed} closed` : ''})`);
      });
      log(`${atS} s: ${line.join('; ')}`);
      prev = cur;
      prevAt = now;
    }
    const result: HoldResult = {
      when: new Date().toISOString(),
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, Linux ${os.release()}`,
      options: { ...o, servers },
      rampS: Math.round(rampS),
      windows,
      summary: summarize(windows, o.peers),
    };
    fs.mkdirSync(o.out, { recursive: true });
    fs.writeFileSync(path.join(o.out, 'hold.json'), JSON.stringify(result, null, 2) + '\n');
    fs.writeFileSync(path.join(o.out, 'hold.md'), holdMarkdown(result));
    fs.writeFileSync(path.join(o.out, 'hold.svg'), holdSvg(result));
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    await cleanup();
  }
}

export function summarize(windows: HoldWindow[], peers: HoldPeer[]): HoldResult['summary'] {
  const out: HoldResult['summary'] = {};
  const at = (peer: HoldPeer) => windows.filter((w) => w.peer === peer);
  const net = at('net');
  for (const peer of peers) {
    const ws = at(peer);
    if (ws.length === 0) continue;
    const first = ws[0];
    const last = ws[ws.length - 1];
    const ratio = (w: HoldWindow) => {
      const n = net.find((x) => x.atS === w.atS);
      return n && peer !== 'net' ? +(w.cpuUsPerHeartbeat / n.cpuUsPerHeartbeat).toFixed(3) : null;
    };
    out[peer] = {
      firstUs: first.cpuUsPerHeartbeat,
      lastUs: last.cpuUsPerHeartbeat,
      change: +(last.cpuUsPerHeartbeat / first.cpuUsPerHeartbeat - 1).toFixed(3),
      ratioFirst: ratio(first),
      ratioLast: ratio(last),
      closed: last.closed,
      maxLoopP99Ms: Math.max(...ws.map((w) => w.loopP99Ms)),
      rssFirstMB: first.rssMB,
      rssLastMB: last.rssMB,
    };
  }
  return out;
}

export function holdMarkdown(r: HoldResult): string {
  const o = r.options;
  const peers = o.peers;
  const byAt = [...new Set(r.windows.map((w) => w.atS))];
  const get = (peer: HoldPeer, atS: number) => r.windows.find((w) => w.peer === peer && w.atS === atS);
  const others = peers.filter((p) => p !== 'net');
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const lines = [
    `${r.machine}; ${r.when}. ${o.connections.toLocaleString('en')} connections per peer, all peers at once, each connection heartbeating every ${o.intervalMs / 1000} s; ${o.servers} server processes per peer; all open after ${r.rampS} s, then held ${Math.round(o.holdS / 60)} min, sampled every ${o.sampleS} s. CPU is the servers' own (process.cpuUsage) per heartbeat answered in the window; ratios are to bare node:net in the same window.`,
    '',
    `| at | ${peers.map((p) => `${p} µs/heartbeat`).join(' | ')} | ${others.map((p) => `${p} ÷ net`).join(' | ')} | ${others.map((p) => `${p} loop p99 / max (ms)`).join(' | ')} | ${peers.map((p) => `${p} RSS (MB)`).join(' | ')} | ${others.map((p) => `${p} runner arms/s`).join(' | ')} |`,
    `|---|${peers.map(() => '---|').join('')}${others.map(() => '---|').join('')}${others.map(() => '---|').join('')}${peers.map(() => '---|').join('')}${others.map(() => '---|').join('')}`,
  ];
  for (const atS of byAt) {
    const net = get('net', atS);
    const cells = [
      // Windows end a second or two past the minute (sampling takes time): whole minutes read better.
      o.sampleS % 60 === 0 ? `${Math.round(atS / 60)} min` : `${atS} s`,
      ...peers.map((p) => get(p, atS)?.cpuUsPerHeartbeat.toFixed(1) ?? '—'),
      ...others.map((p) => (net && get(p, atS) ? (get(p, atS)!.cpuUsPerHeartbeat / net.cpuUsPerHeartbeat).toFixed(2) : '—')),
      ...others.map((p) => (get(p, atS) ? `${get(p, atS)!.loopP99Ms.toFixed(1)} / ${get(p, atS)!.loopMaxMs.toFixed(0)}` : '—')),
      ...peers.map((p) => get(p, atS)?.rssMB.toFixed(0) ?? '—'),
      ...others.map((p) => String(get(p, atS)?.armsPerS ?? '—')),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('');
  for (const [peer, s] of Object.entries(r.summary)) {
    lines.push(
      `- ${peer}: ${s.firstUs.toFixed(1)} µs per heartbeat in the first window, ${s.lastUs.toFixed(1)} µs in the last (${pct(s.change)})${s.ratioLast !== null ? `; ${s.ratioFirst?.toFixed(2)}× net in the first window, ${s.ratioLast.toFixed(2)}× in the last` : ''}; RSS ${s.rssFirstMB.toFixed(0)} → ${s.rssLastMB.toFixed(0)} MB; worst event-loop delay p99 ${s.maxLoopP99Ms.toFixed(1)} ms; ${s.closed} connections closed.`,
    );
  }
  lines.push('');
  return lines.join('\n');
}

const COLORS: Record<HoldPeer, string> = { net: '#7f8c8d', 'longlink-tcp': '#2471a3', 'longlink-ws': '#8e44ad' };

export function holdSvg(r: HoldResult): string {
  const W = 720;
  const H = 190;
  const pad = { l: 70, r: 20, t: 24, b: 30 };
  const peers = r.options.peers;
  const tMax = Math.max(1, ...r.windows.map((w) => w.atS));
  const net = (atS: number) => r.windows.find((w) => w.peer === 'net' && w.atS === atS);
  const panels: { title: string; peers: HoldPeer[]; get: (w: HoldWindow) => number }[] = [
    { title: 'server CPU per heartbeat (µs)', peers, get: (w) => w.cpuUsPerHeartbeat },
    { title: 'CPU per heartbeat ÷ bare node:net, same window', peers: peers.filter((p) => p !== 'net'), get: (w) => w.cpuUsPerHeartbeat / (net(w.atS)?.cpuUsPerHeartbeat ?? NaN) },
    { title: 'event-loop delay p99 (ms, worst server)', peers, get: (w) => w.loopP99Ms },
    { title: 'server RSS (MB, all processes)', peers, get: (w) => w.rssMB },
  ];
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * panels.length}" font-family="sans-serif" font-size="11">`];
  panels.forEach((p, k) => {
    const oy = k * H;
    const vals = r.windows.filter((w) => p.peers.includes(w.peer)).map(p.get).filter(Number.isFinite);
    const max = Math.max(k === 1 ? 1.5 : 1, ...vals) * 1.1;
    const x = (t: number) => pad.l + (t / tMax) * (W - pad.l - pad.r);
    const y = (v: number) => oy + H - pad.b - (v / max) * (H - pad.t - pad.b);
    out.push(...panelFrame({ title: p.title, oy, W, H, pad, y0: y(0), yMax: y(max), max, xLabel: `${(tMax / 60).toFixed(0)} min` }));
    if (k === 1) out.push(`<line x1="${pad.l}" y1="${y(1).toFixed(1)}" x2="${W - pad.r}" y2="${y(1).toFixed(1)}" stroke="#bbb" stroke-dasharray="4 3"/><text x="${pad.l + 3}" y="${y(1) - 3}" fill="#888">1.0 (the floor)</text>`);
    p.peers.forEach((peer, i) => {
      const ws = r.windows.filter((w) => w.peer === peer && Number.isFinite(p.get(w)));
      const pts = ws.map((w) => `${x(w.atS).toFixed(1)},${y(p.get(w)).toFixed(1)}`).join(' ');
      out.push(`<polyline fill="none" stroke="${COLORS[peer]}" stroke-width="1.8" points="${pts}"/>`);
      out.push(`<rect x="${pad.l + 380 + i * 120}" y="${oy + 5}" width="10" height="10" fill="${COLORS[peer]}"/><text x="${pad.l + 394 + i * 120}" y="${oy + 14}">${peer}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
