/**
 * The reconnect storm: tens of thousands of clients lose the gateway at once
 * and come back.
 *
 *   npm run bench -- --storm [--clients 24000] [--workers 2] [--loadgens auto] [--sources 128]
 *                            [--modes crash,drain] [--down-s 3] [--drain-window-ms 10000] [--out docs/bench]
 *
 * One `longlink serve --workers W --redis …` (node:cluster, a private
 * redis-server) with its default limits, and L load-generator processes of
 * real SDK clients (bench/storm-client.ts: backoff with full jitter, GOAWAY
 * hints honoured), each on source addresses of its own. Once all are open,
 * for each mode:
 *   crash  the gateway's processes are SIGKILLed; a new gateway starts on the
 *          same port `--down-s` later. Clients find out from the dead socket
 *          and retry on their own backoff.
 *   drain  the gateway gets SIGTERM and drains (GOAWAY hints over
 *          `--drain-window-ms`); a new gateway starts as soon as it exits.
 * Reported per mode: seconds from the new gateway listening until every
 * client is open again, handshake latency (dial to WELCOME) p50/p99 of the
 * attempts that succeeded, the peak per-second handshake rate against the
 * mean over the return, failed attempts by code, the gateway's peak RSS and
 * whether any worker died. Bounded: each return is given `--max-back-s`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { redisUnavailable, startRedis, type TestRedis } from '../test/helpers/redis.js';
import { panelFrame } from './chart.js';
import { Child, hardFileLimit, killTree, proc, spawnRaised, tree } from './proc-tools.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '..', 'src', 'cli', 'index.js');
const CLIENT = path.join(here, 'storm-client.js');

export type StormMode = 'crash' | 'drain';

export interface StormOptions {
  clients: number;
  workers: number;
  loadgens: number | 'auto';
  sources: number;
  modes: StormMode[];
  downS: number;
  drainWindowMs: number;
  maxBackS: number;
  /** Ceiling for the initial ramp. */
  rampTimeoutS: number;
  /** Pause before each storm and after each return (default 3000). */
  settleMs?: number;
  out: string | null;
}

export interface StormSecond {
  /** Seconds since the old gateway was stopped. */
  s: number;
  open: number;
  handshakes: number;
  failed: number;
}

export interface StormResult {
  mode: StormMode;
  clients: number;
  /** From stopping the old gateway until the new one listened. */
  downS: number;
  /** From the new gateway listening until every client was open again (null: not within maxBackS). */
  allBackS: number | null;
  backCount: number;
  handshakeP50Ms: number;
  handshakeP99Ms: number;
  handshakeMaxMs: number;
  peakPerS: number;
  meanPerS: number;
  failedAttempts: Record<string, number>;
  gatewayPeakRssMB: number;
  workerDeaths: number;
  seconds: StormSecond[];
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

export async function runStorm(o: StormOptions, log: (m: string) => void): Promise<{ options: StormOptions; machine: string; when: string; ramp: { clients: number; seconds: number }; results: StormResult[] }> {
  const noRedis = redisUnavailable();
  if (noRedis) throw new Error(`the storm run needs Redis for its gateway workers: ${noRedis}`);
  const perProcess = Math.floor(hardFileLimit() * 0.8);
  if (o.clients / o.workers > perProcess) throw new Error(`${o.clients} clients need more than ${o.workers} workers (${perProcess} files each)`);
  const loadgens = o.loadgens === 'auto' ? Math.max(2, Math.ceil(o.clients / 8000)) : o.loadgens;
  let redis: TestRedis | null = null;
  let gw: Child | null = null;
  const gens: Child[] = [];
  const workerDeaths = { n: 0 };
  let port = 0;

  const startGateway = async () => {
    const g = new Child(
      spawnRaised(
        [
          CLI, 'serve', '--no-admin', '--workers', String(o.workers), '--redis', redis!.url, '--tcp-port', String(port), '--no-ws',
          '--heartbeat-interval-ms', '30000', '--drain-window-ms', String(o.drainWindowMs), '--log-level', 'info',
        ],
        ['ignore', 'pipe', 'inherit'],
      ),
    );
    g.lines.push((l) => {
      if (l.event === 'worker-exit') workerDeaths.n++;
    });
    const listening = await g.next((l) => l.event === 'listening' && l.workers !== undefined, 60_000, 'gateway workers listening');
    port = Number(/:(\d+)$/.exec(String(listening.tcp))?.[1]);
    return g;
  };
  const exited = (c: Child) => new Promise<void>((r) => (c.proc.exitCode !== null || c.proc.signalCode !== null ? r() : c.proc.once('exit', () => r())));

  // Latest tick per load generator, and every tick since the current storm began.
  const latestOpen = new Map<number, number>();
  let ticks: { t: number; open: number; opens: number; failed: number; lat: number[]; codes: Record<string, number> }[] = [];
  /** Clients open across all load generators, after each tick. */
  let openSeries: { t: number; open: number }[] = [];
  const openNow = () => [...latestOpen.values()].reduce((a, b) => a + b, 0);

  const cleanup = async () => {
    for (const g of gens) g.proc.stdin?.end();
    await Promise.all(gens.map(exited));
    if (gw && gw.proc.exitCode === null) {
      killTree(gw.proc.pid!);
      await exited(gw);
    }
    await redis?.stop();
  };
  try {
    redis = await startRedis();
    gw = await startGateway();
    log(`gateway: ${o.workers} workers on port ${port}; ${loadgens} load generators for ${o.clients} clients on ${o.sources} source addresses`);
    const per = Math.ceil(o.clients / loadgens);
    const srcPer = Math.max(1, Math.floor(o.sources / loadgens));
    const rampStart = Date.now();
    for (let i = 0; i < loadgens; i++) {
      const count = Math.min(per, o.clients - per * i);
      if (count <= 0) break;
      const cfg = { url: `tcp://127.0.0.1:${port}`, count, prefix: `s${i}u`, sources: srcPer, sourceBase: i * srcPer, intervalMs: 30_000, maxMs: 3600_000 };
      const g = new Child(spawnRaised(['--max-semi-space-size=16', CLIENT, JSON.stringify(cfg)], ['pipe', 'pipe', 'inherit']));
      g.lines.push((l) => {
        if (l.ev !== 'tick') return;
        latestOpen.set(i, Number(l.open));
        ticks.push(l as unknown as (typeof ticks)[number]);
        openSeries.push({ t: Number(l.t), open: openNow() });
      });
      gens.push(g);
    }
    while (openNow() < o.clients) {
      if (Date.now() - rampStart > o.rampTimeoutS * 1000) throw new Error(`only ${openNow()} of ${o.clients} clients opened within ${o.rampTimeoutS} s`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const ramp = { clients: o.clients, seconds: Math.round((Date.now() - rampStart) / 100) / 10 };
    log(`all ${o.clients} clients open after ${ramp.seconds} s`);
    const settleMs = o.settleMs ?? 3000;
    await new Promise((r) => setTimeout(r, settleMs));

    const results: StormResult[] = [];
    for (const mode of o.modes) {
      ticks = [];
      openSeries = [];
      const deathsBefore = workerDeaths.n;
      const old = gw!;
      const stopAt = Date.now();
      if (mode === 'crash') {
        killTree(old.proc.pid!);
        await exited(old);
        await new Promise((r) => setTimeout(r, o.downS * 1000));
      } else {
        old.proc.kill('SIGTERM');
        await exited(old);
      }
      let peakRss = 0;
      const rssTimer = setInterval(() => {
        if (!gw || gw === old) return;
        const rss = tree(gw.proc.pid!).map(proc).reduce((a, x) => a + (x?.rssKB ?? 0), 0) / 1024;
        peakRss = Math.max(peakRss, rss);
      }, 500);
      // Workers accept before the primary reports them all listening: the return starts at the launch.
      const launchAt = Date.now();
      gw = await startGateway();
      const upAt = Date.now();
      log(`${mode}: old gateway stopped; new one listening ${((upAt - stopAt) / 1000).toFixed(1)} s later`);
      let backAt: number | null = null;
      while (Date.now() - upAt < o.maxBackS * 1000) {
        await new Promise((r) => setTimeout(r, 250));
        const t = ticks.at(-1)?.t ?? 0;
        if (openNow() >= o.clients && t > upAt) {
          // The tick that first showed everyone open: its second is when the last came back.
          backAt = t;
          break;
        }
      }
      await new Promise((r) => setTimeout(r, Math.min(1500, settleMs)));
      clearInterval(rssTimer);
      const during = ticks.filter((k) => k.t > launchAt && (backAt === null || k.t <= backAt + 1000));
      const lat = during.flatMap((k) => k.lat);
      const bySecond = new Map<number, StormSecond>();
      for (const k of ticks) {
        const s = Math.floor((k.t - stopAt) / 1000);
        const row = bySecond.get(s) ?? { s, open: 0, handshakes: 0, failed: 0 };
        row.handshakes += k.opens;
        row.failed += k.failed;
        bySecond.set(s, row);
      }
      for (const q of openSeries) {
        const row = bySecond.get(Math.floor((q.t - stopAt) / 1000));
        if (row) row.open = q.open; // the last reading in that second
      }
      const seconds = [...bySecond.values()].sort((a, b) => a.s - b.s);
      const returnSeconds = seconds.filter((r) => r.s >= Math.floor((launchAt - stopAt) / 1000) && (backAt === null || r.s <= Math.floor((backAt - stopAt) / 1000)));
      const failedAttempts: Record<string, number> = {};
      for (const k of ticks) for (const [c, n] of Object.entries(k.codes)) failedAttempts[c] = (failedAttempts[c] ?? 0) + n;
      const back = returnSeconds.reduce((a, r) => a + r.handshakes, 0);
      const r: StormResult = {
        mode,
        clients: o.clients,
        downS: Math.round((upAt - stopAt) / 100) / 10,
        allBackS: backAt === null ? null : Math.round((backAt - upAt) / 100) / 10,
        backCount: back,
        handshakeP50Ms: pct(lat, 50),
        handshakeP99Ms: pct(lat, 99),
        handshakeMaxMs: Math.max(0, ...lat),
        peakPerS: Math.max(0, ...returnSeconds.map((x) => x.handshakes)),
        meanPerS: returnSeconds.length ? Math.round(back / returnSeconds.length) : 0,
        failedAttempts,
        gatewayPeakRssMB: Math.round(peakRss),
        workerDeaths: workerDeaths.n - deathsBefore,
        seconds,
      };
      log(`${mode}: all back ${r.allBackS ?? 'NOT'} s after restart; handshake p50 ${r.handshakeP50Ms} ms p99 ${r.handshakeP99Ms} ms; peak ${r.peakPerS}/s, mean ${r.meanPerS}/s; failed attempts ${JSON.stringify(failedAttempts)}; gateway peak RSS ${r.gatewayPeakRssMB} MB`);
      results.push(r);
      await new Promise((r2) => setTimeout(r2, settleMs));
    }
    const report = {
      options: o,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
      when: new Date().toISOString(),
      ramp,
      results,
    };
    if (o.out) {
      fs.mkdirSync(o.out, { recursive: true });
      fs.writeFileSync(path.join(o.out, 'storm.json'), JSON.stringify(report, null, 1) + '\n');
      fs.writeFileSync(path.join(o.out, 'storm.md'), stormMarkdown(report));
      fs.writeFileSync(path.join(o.out, 'storm.svg'), stormSvg(results));
    }
    return report;
  } finally {
    await cleanup();
  }
}

export function stormMarkdown(r: { options: StormOptions; machine: string; when: string; ramp: { clients: number; seconds: number }; results: StormResult[] }): string {
  const row = (label: string, f: (x: StormResult) => string) => `| ${label} | ${r.results.map(f).join(' | ')} |`;
  return [
    `${r.machine}; ${r.when}. ${r.options.clients.toLocaleString('en')} SDK clients in ${Math.ceil(r.options.clients / 8000)}+ load-generator processes, gateway \`serve --workers ${r.options.workers} --redis\` with its default limits (2,000 new connections/s per worker). Initial ramp: ${r.ramp.seconds} s.`,
    '',
    `| | ${r.results.map((x) => x.mode).join(' | ')} |`,
    `|---|${r.results.map(() => '---').join('|')}|`,
    row('old gateway stopped → new one listening', (x) => `${x.downS} s`),
    row('new one listening → all clients open', (x) => (x.allBackS === null ? `not within ${r.options.maxBackS} s` : `${x.allBackS} s`)),
    row('handshake latency p50 / p99 / max (dial → WELCOME)', (x) => `${x.handshakeP50Ms} / ${x.handshakeP99Ms} / ${x.handshakeMaxMs} ms`),
    row('handshakes per second: peak / mean over the return', (x) => `${x.peakPerS.toLocaleString('en')} / ${x.meanPerS.toLocaleString('en')} (${x.meanPerS ? (x.peakPerS / x.meanPerS).toFixed(1) : '-'}×)`),
    row('failed attempts, by code', (x) => Object.entries(x.failedAttempts).map(([c, n]) => `${c}: ${n.toLocaleString('en')}`).join(', ') || 'none'),
    row('gateway peak RSS (all workers)', (x) => `${x.gatewayPeakRssMB} MB`),
    row('gateway workers that died', (x) => String(x.workerDeaths)),
    '',
  ].join('\n');
}

export function stormSvg(results: StormResult[]): string {
  const W = 720;
  const H = 220;
  const pad = { l: 70, r: 20, t: 26, b: 30 };
  const colors = ['#c0392b', '#2471a3'];
  const sMax = Math.max(1, ...results.flatMap((r) => r.seconds.map((x) => x.s)));
  const panels = [
    { title: 'handshakes per second (WELCOMEs received)', get: (x: StormSecond) => x.handshakes },
    { title: 'clients open', get: (x: StormSecond) => x.open },
  ];
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * panels.length}" font-family="sans-serif" font-size="11">`];
  panels.forEach((p, k) => {
    const oy = k * H;
    const max = Math.max(1, ...results.flatMap((r) => r.seconds.map(p.get)));
    const x = (s: number) => pad.l + (Math.max(0, s) / sMax) * (W - pad.l - pad.r);
    const y = (v: number) => oy + H - pad.b - (v / max) * (H - pad.t - pad.b);
    out.push(...panelFrame({ title: p.title, oy, W, H, pad, y0: y(0), yMax: y(max), max, xLabel: `${sMax} s after the old gateway stopped` }));
    results.forEach((r, i) => {
      const pts = r.seconds.filter((q) => q.s >= 0).map((q) => `${x(q.s).toFixed(1)},${y(p.get(q)).toFixed(1)}`).join(' ');
      out.push(`<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.6" points="${pts}"/>`);
      out.push(`<rect x="${pad.l + 300 + i * 120}" y="${oy + 5}" width="10" height="10" fill="${colors[i % colors.length]}"/><text x="${pad.l + 314 + i * 120}" y="${oy + 14}">${r.mode}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
