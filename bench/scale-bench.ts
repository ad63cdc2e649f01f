/**
 * The scale run: as many heartbeating connections as this machine holds,
 * with the load generator beside the gateway.
 *
 *   npm run bench -- --scale [--target 200000] [--hold-s 600] [--interval-ms 30000]
 *                            [--workers auto] [--loadgens auto] [--sources 128] [--out docs/bench]
 *
 * One `longlink serve --workers W --redis …` (node:cluster workers sharing a
 * private redis-server), L load-generator processes (bench/peers/loadgen.ts,
 * longlink over TCP, each with source addresses of its own), every process's
 * soft file limit raised to its hard limit, and W and L chosen so no process
 * needs more than 85% of that limit. Connections heartbeat from the moment
 * they open. After the ramp the run holds for --hold-s, sampling every 5 s:
 * connections per side, heartbeats answered, disconnects seen by the clients
 * and `offline` events logged by the gateway, RSS and CPU of the gateway,
 * the load generators and Redis, file descriptors per process, the machine's
 * available memory and TCP sockets. The report says whether the target was
 * reached, what failed if it was not (error codes), and which resource would
 * run out next, by how much headroom.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { panelFrame } from './chart.js';
import { Child, CLK_TCK, hardFileLimit, proc, spawnRaised, tree } from './proc-tools.js';
import { redisUnavailable, startRedis, type TestRedis } from '../test/helpers/redis.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '..', 'src', 'cli', 'index.js');
const LOADGEN = path.join(here, 'peers', 'loadgen.js');

export interface ScaleOptions {
  target: number;
  holdS: number;
  intervalMs: number;
  workers: number | 'auto';
  loadgens: number | 'auto';
  sources: number;
  out: string;
  /** Longest the ramp may take before the hold starts anyway. */
  rampTimeoutS: number;
}

interface GenStats {
  open: number;
  failed: number;
  closed: number;
  pings: number;
  pongs: number;
  failures: Record<string, number>;
  closes: Record<string, number>;
}

export interface ScaleSample {
  t: number;
  phase: 'ramp' | 'hold';
  clientOpen: number;
  gatewayOnline: number;
  pongsPerS: number;
  clientClosed: number;
  gatewayOffline: number;
  gatewayRssMB: number;
  loadgenRssMB: number;
  redisRssMB: number;
  gatewayCpuPct: number;
  loadgenCpuPct: number;
  redisCpuPct: number;
  maxFdsPerProcess: number;
  memAvailableMB: number;
  tcpSockets: number;
  /** The worst worker's longest event-loop delay in this sample's interval (prom-client's per-scrape histogram), ms. */
  loopMaxMs: number;
  /** Since the gateway started, across workers (the worst worker's): event-loop delay p99 and the longest GC pause, ms; GC pauses in all. */
  loopP99SinceStartMs: number;
  gcLongestMs: number;
  gcPauses: number;
  gcTimeMs: number;
}

/** The figures of the gateway's own /metrics (the cluster primary sums or takes the worst of its workers). */
export function runtimeFigures(metrics: string): { loopMaxMs: number; loopP99SinceStartMs: number; gcLongestMs: number; gcPauses: number; gcTimeMs: number } {
  const get = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? NaN);
  // prom-client's histogram keeps its 10 ms timer period in every sample; longlink's own gauges take it off.
  const lagMax = get(/^nodejs_eventloop_lag_max_seconds ([0-9.e+-]+)/m);
  return {
    loopMaxMs: Number.isFinite(lagMax) ? Math.max(0, lagMax * 1000 - 10) : NaN,
    loopP99SinceStartMs: get(/^longlink_event_loop_delay_seconds\{quantile="0.99"\} ([0-9.e+-]+)/m) * 1000,
    gcLongestMs: get(/^longlink_gc_pause_longest_seconds ([0-9.e+-]+)/m) * 1000,
    gcPauses: get(/^longlink_gc_pauses ([0-9.e+-]+)/m),
    gcTimeMs: get(/^longlink_gc_pause_time_seconds ([0-9.e+-]+)/m) * 1000,
  };
}

/** A base port with `n` free ports from it (the primary's admin port and one per worker). */
async function freePortRun(n: number): Promise<number> {
  const free = (p: number) =>
    new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(p, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
  for (let tries = 0; tries < 50; tries++) {
    const base = 20000 + Math.floor(Math.random() * 20000);
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = await free(base + i);
    if (ok) return base;
  }
  throw new Error(`no run of ${n} free ports for the admin listeners`);
}

function meminfo(): { totalMB: number; availableMB: number } {
  const m = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(m)?.[1] ?? 0);
  return { totalMB: kb('MemTotal') / 1024, availableMB: kb('MemAvailable') / 1024 };
}

function tcpSockets(): number {
  const s = fs.readFileSync('/proc/net/sockstat', 'utf8');
  return Number(/TCP: inuse (\d+)/.exec(s)?.[1] ?? 0);
}

function portRange(): number {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return hi - lo + 1;
  } catch {
    return 28232;
  }
}

export async function runScale(o: ScaleOptions, log: (m: string) => void): Promise<Record<string, unknown>> {
  const noRedis = redisUnavailable();
  if (noRedis) throw new Error(`the scale run needs Redis for its gateway workers: ${noRedis}`);
  const fileLimit = hardFileLimit();
  const perProcess = Math.floor(fileLimit * 0.85);
  const workers = o.workers === 'auto' ? Math.max(2, Math.ceil(o.target / perProcess)) : o.workers;
  const loadgens = o.loadgens === 'auto' ? Math.max(2, Math.ceil(o.target / perProcess)) : o.loadgens;
  const ports = portRange();
  log(`target ${o.target} connections, heartbeat every ${o.intervalMs} ms, hold ${o.holdS} s; ${workers} gateway workers, ${loadgens} load generators, ${o.sources} source addresses; open-files limit ${fileLimit} per process`);

  const t0 = Date.now();
  let redis: TestRedis | null = null;
  let gw: Child | null = null;
  const gens: Child[] = [];
  const samples: ScaleSample[] = [];
  const online = { count: 0 };
  const offline: Record<string, number> = {};
  const offlineAtHold = { n: 0 };
  let stopped = false;
  const cleanup = async () => {
    if (stopped) return;
    stopped = true;
    for (const g of gens) g.proc.stdin?.end();
    await Promise.all(gens.map((g) => new Promise((r) => (g.proc.exitCode !== null ? r(null) : g.proc.once('exit', r)))));
    if (gw && gw.proc.exitCode === null) {
      const exited = new Promise((r) => gw!.proc.once('exit', r));
      gw.proc.kill('SIGTERM');
      const k = setTimeout(() => gw!.proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(k);
    }
    await redis?.stop();
  };
  const onSignal = () => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  try {
    redis = await startRedis();
    const redisPid = redis.pid;
    // The admin ports: the primary's /metrics carries every worker's event-loop delay and GC pauses.
    const adminPort = await freePortRun(workers + 1);
    gw = new Child(
      spawnRaised(
        [
          '--max-semi-space-size=16',
          CLI,
          'serve',
          '--admin-port',
          String(adminPort),
          '--log-every-connection',
          '--workers',
          String(workers),
          '--redis',
          redis.url,
          '--tcp-port',
          '0',
          '--no-ws',
          '--heartbeat-interval-ms',
          String(o.intervalMs),
          '--heartbeat-min-interval-ms',
          String(Math.min(o.intervalMs, 5000)),
          // The run measures how many connections fit: admission must not be what stops it.
          '--max-connections',
          '0',
          '--max-connections-per-source',
          '0',
          '--handshakes-per-second',
          '0',
          '--log-level',
          'info',
        ],
        ['ignore', 'pipe', 'inherit'],
      ),
    );
    gw.lines.push((l) => {
      if (l.event === 'online') online.count++;
      if (l.event === 'offline') {
        online.count--;
        const k = String(l.reason);
        offline[k] = (offline[k] ?? 0) + 1;
      }
    });
    // One worker is a plain gateway process (no cluster primary): its own 'listening' line has no worker count.
    const listening = await gw.next((l) => l.event === 'listening' && (workers === 1 || l.workers !== undefined), 60_000, 'gateway workers listening');
    const port = Number(/:(\d+)$/.exec(String(listening.tcp))?.[1]);
    log(`gateway: ${workers} workers on tcp port ${port}, Redis on ${redis.port}`);

    const per = Math.ceil(o.target / loadgens);
    const srcPer = Math.max(1, Math.floor(o.sources / loadgens));
    const stats: GenStats[] = [];
    for (let i = 0; i < loadgens; i++) {
      const count = Math.min(per, o.target - per * i);
      if (count <= 0) break;
      const cfg = {
        port,
        count,
        intervalMs: o.intervalMs,
        maxMs: (o.rampTimeoutS + o.holdS + 600) * 1000,
        sources: srcPer,
        sourceBase: i * srcPer,
        concurrency: 40,
        prefix: `g${i}u`,
        pingDuringSetup: true,
      };
      const g = new Child(spawnRaised(['--max-semi-space-size=16', LOADGEN, 'longlink-tcp', JSON.stringify(cfg)], ['pipe', 'pipe', 'inherit']));
      gens.push(g);
      stats.push({ open: 0, failed: 0, closed: 0, pings: 0, pongs: 0, failures: {}, closes: {} });
    }
    const readies = gens.map((g) => g.next((l) => l.ev === 'ready', o.rampTimeoutS * 1000, 'load generator ready').catch(() => null));
    let rampDone = false;
    const ramp = Promise.all(readies).then((r) => {
      rampDone = true;
      return r;
    });

    const ask = async () => {
      const got = await Promise.all(
        gens.map((g, i) => {
          if (g.proc.exitCode !== null) return Promise.resolve(stats[i]);
          const p = g.next((l) => l.ev === 'stats', 30_000, 'stats').catch(() => stats[i]);
          g.proc.stdin!.write('stats\n');
          return p;
        }),
      );
      got.forEach((s, i) => (stats[i] = s as unknown as GenStats));
      return stats;
    };
    const gwRoot = gw.proc.pid!;
    const genPids = gens.map((g) => g.proc.pid!);
    let prev = { at: Date.now(), pongs: 0, gwTicks: 0, genTicks: 0, redisTicks: 0 };
    let holdStartAt = 0;
    let holdStart: { pongs: number; pings: number; closed: number } | null = null;
    const sample = async (phase: 'ramp' | 'hold') => {
      const s = await ask();
      const sum = (k: 'open' | 'closed' | 'pongs' | 'pings' | 'failed') => s.reduce((a, x) => a + Number(x[k] ?? 0), 0);
      const gwProcs = tree(gwRoot).map(proc).filter((x): x is NonNullable<typeof x> => x !== null);
      const genProcs = genPids.map(proc).filter((x): x is NonNullable<typeof x> => x !== null);
      const rp = redisPid ? proc(redisPid) : null;
      const rt = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(10_000) })
        .then((r) => r.text())
        .then(runtimeFigures)
        .catch(() => ({ loopMaxMs: NaN, loopP99SinceStartMs: NaN, gcLongestMs: NaN, gcPauses: NaN, gcTimeMs: NaN }));
      const now = Date.now();
      const dt = (now - prev.at) / 1000;
      const gwTicks = gwProcs.reduce((a, x) => a + x.ticks, 0);
      const genTicks = genProcs.reduce((a, x) => a + x.ticks, 0);
      const redisTicks = rp?.ticks ?? 0;
      const pct = (d: number) => (dt > 0 ? ((d / CLK_TCK / dt) * 100) : 0);
      const row: ScaleSample = {
        t: Math.round((now - t0) / 100) / 10,
        phase,
        clientOpen: sum('open') - sum('closed'),
        gatewayOnline: online.count,
        pongsPerS: dt > 0 ? Math.round((sum('pongs') - prev.pongs) / dt) : 0,
        clientClosed: sum('closed'),
        gatewayOffline: Object.values(offline).reduce((a, b) => a + b, 0),
        gatewayRssMB: gwProcs.reduce((a, x) => a + x.rssKB, 0) / 1024,
        loadgenRssMB: genProcs.reduce((a, x) => a + x.rssKB, 0) / 1024,
        redisRssMB: (rp?.rssKB ?? 0) / 1024,
        gatewayCpuPct: pct(gwTicks - prev.gwTicks),
        loadgenCpuPct: pct(genTicks - prev.genTicks),
        redisCpuPct: pct(redisTicks - prev.redisTicks),
        maxFdsPerProcess: Math.max(0, ...gwProcs.map((x) => x.fds), ...genProcs.map((x) => x.fds)),
        memAvailableMB: meminfo().availableMB,
        tcpSockets: tcpSockets(),
        ...rt,
      };
      prev = { at: now, pongs: sum('pongs'), gwTicks, genTicks, redisTicks };
      samples.push(row);
      log(
        `${row.t.toFixed(0)} s ${phase}: ${row.clientOpen} open (gateway ${row.gatewayOnline} online), ${row.pongsPerS} heartbeats/s, ${row.clientClosed} closed, gateway RSS ${row.gatewayRssMB.toFixed(0)} MB, CPU gateway ${row.gatewayCpuPct.toFixed(0)}% load ${row.loadgenCpuPct.toFixed(0)}% redis ${row.redisCpuPct.toFixed(0)}%, loop max ${row.loopMaxMs.toFixed(0)} ms, longest GC ${row.gcLongestMs.toFixed(1)} ms, available ${(row.memAvailableMB / 1024).toFixed(1)} GiB`,
      );
      return { row, pongs: sum('pongs'), pings: sum('pings'), closed: sum('closed'), failed: sum('failed') };
    };

    // Ramp: sample until every load generator has opened its share (or given up).
    await sample('ramp');
    while (!rampDone) {
      await Promise.race([ramp, new Promise((r) => setTimeout(r, 5000))]);
      await sample('ramp');
    }
    const readyLines = await ramp;
    const rampS = (Date.now() - t0) / 1000;
    // Hold: every connection heartbeating; nothing may be closed.
    const h0 = await sample('hold');
    holdStart = { pongs: h0.pongs, pings: h0.pings, closed: h0.closed };
    offlineAtHold.n = h0.row.gatewayOffline;
    holdStartAt = Date.now();
    let last = h0;
    while (Date.now() - holdStartAt < o.holdS * 1000) {
      await new Promise((r) => setTimeout(r, Math.min(5000, o.holdS * 1000 - (Date.now() - holdStartAt) + 10)));
      last = await sample('hold');
    }
    const holdS = (Date.now() - holdStartAt) / 1000;
    const failures: Record<string, number> = {};
    const closes: Record<string, number> = {};
    for (const s of stats) {
      for (const [k, v] of Object.entries(s.failures ?? {})) failures[k] = (failures[k] ?? 0) + v;
      for (const [k, v] of Object.entries(s.closes ?? {})) closes[k] = (closes[k] ?? 0) + v;
    }
    const hold = samples.filter((x) => x.phase === 'hold');
    const peak = (get: (x: ScaleSample) => number) => Math.max(...hold.map(get));
    const opened = last.row.clientOpen + last.closed;
    const held = last.row.clientOpen;
    const mem = meminfo();
    const minAvailMB = Math.min(...samples.map((x) => x.memAvailableMB));
    const memUsedMB = mem.totalMB - minAvailMB;
    const baseUsedMB = mem.totalMB - samples[0].memAvailableMB;
    const perConnKB = held > 0 ? ((memUsedMB - baseUsedMB) * 1024) / held : NaN;
    const cores = os.cpus().length;
    const steady = steadyFigures(samples, held);
    const cpuPct = steady.cpuPct;
    // What would run out next, as the number of connections at which it would.
    const ceilings = {
      memory: held > 0 ? Math.floor(held + ((minAvailMB - mem.totalMB * 0.05) * 1024) / perConnKB) : NaN,
      cpu: held > 0 ? Math.floor((held * cores * 100) / Math.max(1, cpuPct)) : NaN,
      ports: o.sources * ports,
      files: Math.min(workers, loadgens) * perProcess,
    };
    // Files are per process: more workers and load generators lift that one, so it is not a limit of the machine.
    const next = (Object.entries(ceilings) as [keyof typeof ceilings, number][]).filter(([k, v]) => k !== 'files' && Number.isFinite(v)).sort((a, b) => a[1] - b[1])[0];
    const result = {
      when: new Date().toISOString(),
      machine: `${cores} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, Linux ${os.release()}`,
      options: { ...o, workers, loadgens },
      fileLimit,
      portRange: ports,
      target: o.target,
      opened,
      held,
      failedToOpen: last.failed,
      failures,
      rampS: Math.round(steady.allOpenAtS ?? rampS),
      connectsPerS: Math.round(opened / (steady.allOpenAtS ?? rampS)),
      holdS: Math.round(holdS),
      // Answers to PINGs sent in the hold: the ones in flight when it began are answered in it, so they are not counted.
      heartbeatsInHold: last.pongs - holdStart.pings,
      pingsInHold: last.pings - holdStart.pings,
      heartbeatsPerS: Math.round((last.pongs - holdStart.pings) / holdS),
      closedInHold: last.closed - holdStart.closed,
      closedTotal: last.closed,
      closes,
      gatewayOfflineInHold: last.row.gatewayOffline - offlineAtHold.n,
      gatewayOffline: offline,
      peakGatewayRssMB: Math.round(peak((x) => x.gatewayRssMB)),
      gatewayRssPerConnKB: held > 0 ? +((peak((x) => x.gatewayRssMB) * 1024) / held).toFixed(2) : null,
      peakLoadgenRssMB: Math.round(peak((x) => x.loadgenRssMB)),
      peakRedisRssMB: Math.round(peak((x) => x.redisRssMB)),
      machineMemUsedMB: Math.round(memUsedMB),
      machineMemPerConnKB: +perConnKB.toFixed(2),
      peakCpuPct: Math.round(peak((x) => x.gatewayCpuPct + x.loadgenCpuPct + x.redisCpuPct)),
      steadyCpuPct: Math.round(steady.cpuPct),
      steadyGatewayCpuPct: Math.round(steady.gatewayCpuPct),
      gatewayCpuUsPerHeartbeat: Math.round((steady.gatewayCpuPct * 1e4) / Math.max(1, (last.pongs - holdStart.pongs) / holdS)),
      peakGatewayCpuPct: Math.round(peak((x) => x.gatewayCpuPct)),
      maxFdsPerProcess: peak((x) => x.maxFdsPerProcess),
      peakTcpSockets: peak((x) => x.tcpSockets),
      // The garbage collector and the event loop at this size: what a detector's grace must cover.
      runtime: runtimeSummary(samples, h0.row, last.row, holdS),
      ceilings,
      nextLimit: next ? { resource: next[0], connections: next[1] } : null,
      readyLines,
      samples,
    };
    fs.mkdirSync(o.out, { recursive: true });
    fs.writeFileSync(path.join(o.out, 'scale.json'), JSON.stringify(result, null, 2) + '\n');
    fs.writeFileSync(path.join(o.out, 'scale.md'), scaleMarkdown(result));
    fs.writeFileSync(path.join(o.out, 'scale.svg'), scaleSvg(samples));
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    await cleanup();
  }
}

/**
 * Event-loop delay and GC pauses: over the whole run (the ramp included, the
 * heavier part) and in the hold. The longest GC pause since start is read at
 * the hold's start and end: if it grew, the hold had the longest.
 */
export function runtimeSummary(samples: ScaleSample[], holdStart: ScaleSample, holdEnd: ScaleSample, holdS: number) {
  const hold = samples.filter((x) => x.phase === 'hold' && Number.isFinite(x.loopMaxMs));
  const finite = samples.filter((x) => Number.isFinite(x.loopMaxMs));
  // A scrape can fail (a busy worker misses the primary's deadline): use the nearest sample that read the figures.
  const read = samples.filter((x) => Number.isFinite(x.gcLongestMs));
  const start = Number.isFinite(holdStart.gcLongestMs) ? holdStart : (read.find((x) => x.t >= holdStart.t) ?? holdStart);
  const end = Number.isFinite(holdEnd.gcLongestMs) ? holdEnd : (read.at(-1) ?? holdEnd);
  const pauses = end.gcPauses - start.gcPauses;
  const gcMs = end.gcTimeMs - start.gcTimeMs;
  return {
    loopP99Ms: +end.loopP99SinceStartMs.toFixed(2),
    loopMaxInHoldMs: hold.length ? +Math.max(...hold.map((x) => x.loopMaxMs)).toFixed(1) : null,
    loopMaxMs: finite.length ? +Math.max(...finite.map((x) => x.loopMaxMs)).toFixed(1) : null,
    gcLongestMs: +end.gcLongestMs.toFixed(2),
    gcLongestInHoldMs: end.gcLongestMs > start.gcLongestMs ? +end.gcLongestMs.toFixed(2) : null,
    gcLongestBeforeHoldMs: +start.gcLongestMs.toFixed(2),
    gcPausesInHold: pauses,
    // Summed over workers: the share of one worker's time is this divided by the workers.
    gcMsPerSecondInHold: holdS > 0 ? +(gcMs / holdS).toFixed(2) : null,
  };
}

/** Averages over the part of the hold with every connection open (the ramp may run into the hold). */
export function steadyFigures(samples: ScaleSample[], held: number): { cpuPct: number; gatewayCpuPct: number; allOpenAtS: number | null } {
  const all = samples.filter((x) => x.phase === 'hold' && x.clientOpen >= held);
  const use = all.length > 1 ? all.slice(1) : samples.filter((x) => x.phase === 'hold');
  const mean = (get: (x: ScaleSample) => number) => use.reduce((a, x) => a + get(x), 0) / Math.max(1, use.length);
  return {
    cpuPct: mean((x) => x.gatewayCpuPct + x.loadgenCpuPct + x.redisCpuPct),
    gatewayCpuPct: mean((x) => x.gatewayCpuPct),
    allOpenAtS: samples.find((x) => x.clientOpen + x.clientClosed >= held)?.t ?? null,
  };
}

export function scaleMarkdown(r: Record<string, any>): string {
  const reached = r.held >= r.target && r.closedInHold === 0 && r.gatewayOfflineInHold === 0;
  const fmt = (n: number) => Math.round(n).toLocaleString('en');
  return [
    `${r.machine}; ${r.when}. ${r.options.workers} gateway workers (node:cluster, Redis store), ${r.options.loadgens} load generators, ${r.options.sources} source addresses, open-files limit ${r.fileLimit} per process.`,
    '',
    '| figure | value |',
    '|---|---|',
    `| target | ${fmt(r.target)} connections, heartbeat every ${r.options.intervalMs / 1000} s |`,
    `| opened | ${fmt(r.opened)}, all open after ${r.rampS} s (${fmt(r.connectsPerS)}/s, each heartbeating from the moment it opened); ${fmt(r.failedToOpen)} failed to open${Object.keys(r.failures).length ? ` (${Object.entries(r.failures).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} |`,
    `| held for ${r.holdS} s | ${fmt(r.held)} |`,
    `| heartbeats answered in the hold | ${fmt(r.heartbeatsInHold)} of ${fmt(r.pingsInHold)} sent (${fmt(r.heartbeatsPerS)}/s) |`,
    `| disconnects in the hold | ${r.closedInHold} seen by clients, ${r.gatewayOfflineInHold} offline events on the gateway |`,
    `| gateway RSS (all workers) | ${fmt(r.peakGatewayRssMB)} MB, ${r.gatewayRssPerConnKB} KB per connection |`,
    `| load generators RSS | ${fmt(r.peakLoadgenRssMB)} MB; Redis ${fmt(r.peakRedisRssMB)} MB |`,
    `| machine memory used (all processes and the kernel) | ${fmt(r.machineMemUsedMB)} MB, ${r.machineMemPerConnKB} KB per connection |`,
    `| CPU with all connections open (gateway + load + Redis, of ${os.cpus().length * 100}%) | ${r.steadyCpuPct}% (gateway ${r.steadyGatewayCpuPct}%, ${r.gatewayCpuUsPerHeartbeat} µs per heartbeat); peak ${r.peakCpuPct}% |`,
    `| most files open in one process | ${fmt(r.maxFdsPerProcess)} of ${fmt(r.fileLimit)} |`,
    `| TCP sockets in use (both ends) | ${fmt(r.peakTcpSockets)} |`,
    ...(r.runtime
      ? [
          `| event-loop delay (worst worker) | p99 ${r.runtime.loopP99Ms} ms over the whole run; longest ${r.runtime.loopMaxInHoldMs} ms in the hold, ${r.runtime.loopMaxMs} ms in the run |`,
          `| garbage-collection pauses | longest ${r.runtime.gcLongestMs} ms (${r.runtime.gcLongestInHoldMs === null ? `in the ramp; none as long in the hold` : 'in the hold'}); ${fmt(r.runtime.gcPausesInHold)} pause${r.runtime.gcPausesInHold === 1 ? "" : "s"} in the hold, ${r.runtime.gcMsPerSecondInHold} ms per second summed over ${r.options.workers} workers |`,
        ]
      : []),
    `| where each resource would run out | memory ≈ ${fmt(r.ceilings.memory)}, CPU ≈ ${fmt(r.ceilings.cpu)}, ports ${fmt(r.ceilings.ports)}, files ${fmt(r.ceilings.files)} connections with these processes (more processes lift it) |`,
    '',
    reached
      ? `Reached the target: ${fmt(r.held)} connections held for ${r.holdS} s with no disconnect. The run stopped at the target, not at a limit; the first resource to run out would be ${r.nextLimit?.resource} at about ${fmt(r.nextLimit?.connections ?? 0)} connections.`
      : `Did not hold the target: ${fmt(r.held)} of ${fmt(r.target)} held; ${r.closedInHold} disconnects in the hold.`,
    '',
  ].join('\n');
}

export function scaleSvg(samples: ScaleSample[]): string {
  const W = 720;
  const H = 190;
  const pad = { l: 70, r: 20, t: 24, b: 30 };
  const tMax = Math.max(1, ...samples.map((s) => s.t));
  const panels: { title: string; series: { name: string; color: string; get: (s: ScaleSample) => number }[] }[] = [
    {
      title: 'connections',
      series: [
        { name: 'open (clients)', color: '#2471a3', get: (s) => s.clientOpen },
        { name: 'online (gateway)', color: '#27ae60', get: (s) => s.gatewayOnline },
        { name: 'closed (clients)', color: '#c0392b', get: (s) => s.clientClosed },
      ],
    },
    {
      title: 'heartbeats answered per second',
      series: [{ name: 'round trips/s', color: '#8e44ad', get: (s) => s.pongsPerS }],
    },
    {
      title: 'memory (MB)',
      series: [
        { name: 'gateway RSS', color: '#2471a3', get: (s) => s.gatewayRssMB },
        { name: 'load generators RSS', color: '#d68910', get: (s) => s.loadgenRssMB },
        { name: 'Redis RSS', color: '#7f8c8d', get: (s) => s.redisRssMB },
      ],
    },
    {
      title: 'event loop and GC (ms, worst worker)',
      series: [
        { name: 'loop delay, longest in 5 s', color: '#c0392b', get: (s) => (Number.isFinite(s.loopMaxMs) ? s.loopMaxMs : 0) },
        { name: 'longest GC pause so far', color: '#16a085', get: (s) => (Number.isFinite(s.gcLongestMs) ? s.gcLongestMs : 0) },
      ],
    },
    {
      title: 'CPU (% of one core)',
      series: [
        { name: 'gateway', color: '#2471a3', get: (s) => s.gatewayCpuPct },
        { name: 'load generators', color: '#d68910', get: (s) => s.loadgenCpuPct },
        { name: 'Redis', color: '#7f8c8d', get: (s) => s.redisCpuPct },
      ],
    },
  ];
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * panels.length}" font-family="sans-serif" font-size="11">`];
  panels.forEach((p, k) => {
    const oy = k * H;
    const max = Math.max(1, ...p.series.flatMap((s) => samples.map(s.get)));
    const x = (t: number) => pad.l + (t / tMax) * (W - pad.l - pad.r);
    const y = (v: number) => oy + H - pad.b - (v / max) * (H - pad.t - pad.b);
    out.push(...panelFrame({ title: p.title, oy, W, H, pad, y0: y(0), yMax: y(max), max, xLabel: `${Math.round(tMax)} s` }));
    const holdAt = samples.find((s) => s.phase === 'hold')?.t;
    if (holdAt !== undefined) out.push(`<line x1="${x(holdAt)}" y1="${y(0)}" x2="${x(holdAt)}" y2="${y(max)}" stroke="#bbb" stroke-dasharray="4 3"/><text x="${x(holdAt) + 3}" y="${y(max) + 10}" fill="#888">hold</text>`);
    p.series.forEach((s, i) => {
      const pts = samples.map((r) => `${x(r.t).toFixed(1)},${y(s.get(r)).toFixed(1)}`).join(' ');
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.6" points="${pts}"/>`);
      out.push(`<rect x="${pad.l + 240 + i * 140}" y="${oy + 5}" width="10" height="10" fill="${s.color}"/><text x="${pad.l + 254 + i * 140}" y="${oy + 14}">${s.name}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
