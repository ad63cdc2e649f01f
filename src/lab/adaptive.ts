import { performance } from 'node:perf_hooks';
import { LabRun, labPolicy, type Variant } from './scenarios.js';
import type { AgentLine } from './agent-proc.js';

/**
 * The adaptive heartbeat in the lab: for each NAT timeout T (unknown to the
 * client), one lab whose strict NAT forgets a mapping idle for T, and in it
 * the adaptive client beside fixed-interval clients, each with its own
 * gateway, over the same time span. Reports convergence (probe steps, links
 * lost while learning, the settled interval as a share of T), drops after
 * convergence, and heartbeats per hour against the minimum ceil(3600 / (0.95 T)).
 */
export interface AdaptiveLabOptions {
  timeoutsSec: number[];
  /** Wall time each lab runs, the same for every variant. */
  spanMs: number;
  /** The adaptive client's start interval for an unknown network. */
  startMs: number;
  /** Fixed intervals to compare with (ms). */
  fixedMs: number[];
  log?: (m: string) => void;
}

export interface AdaptiveRow {
  timeoutSec: number;
  variant: string;
  adaptive: boolean;
  spanMs: number;
  /** Links lost in the whole span, and before / after the adaptive client settled. */
  drops: number;
  dropsWhileLearning: number | null;
  dropsAfterSettled: number | null;
  settledMs: number | null;
  settledShareOfT: number | null;
  probeSteps: number | null;
  /** From the start of the run to settling. */
  learnedInMs: number | null;
  heartbeats: number;
  heartbeatsPerHour: number;
  heartbeatsPerHourAfterSettled: number | null;
  /** ceil(3600 / (0.95 T)): the fewest heartbeats per hour that keep this NAT's mapping. */
  minimumPerHour: number;
  bytes: { up: number; down: number };
}

export interface AdaptiveReport {
  startedAt: string;
  options: Omit<AdaptiveLabOptions, 'log'>;
  rows: AdaptiveRow[];
  /** The adaptive client's interval over time, per NAT timeout (ms from the start). */
  timelines: { timeoutSec: number; points: { atMs: number; intervalMs: number; change: string }[]; drops: number[] }[];
}

const now = () => performance.timeOrigin + performance.now();

export const PROBES = { pongTimeoutMs: 1000, probeCount: 1, probeIntervalMs: 500 };

/** Gateway and client for the adaptive heartbeat (or a fixed interval) in the lab. */
export function adaptiveVariant(name: string, o: { startMs: number } | { fixedMs: number }): Variant {
  const heartbeat = labPolicy('startMs' in o ? o.startMs : o.fixedMs, { minIntervalMs: 500, maxIntervalMs: 600_000, graceMs: 1000 });
  return {
    name,
    gateway: { heartbeat, probes: PROBES, wheelTickMs: 50 },
    client: 'startMs' in o ? { adaptive: { startMs: o.startMs }, probes: PROBES } : { intervalMs: o.fixedMs, probes: PROBES },
  };
}

export async function runAdaptiveLab(o: AdaptiveLabOptions): Promise<AdaptiveReport> {
  const startedAt = new Date().toISOString();
  // One lab failing ends the others' spans early, and the error waits for their teardown: with
  // Promise.all it was thrown while they still ran, and the CLI exited with their namespaces up.
  const failed = new AbortController();
  const settled = await Promise.allSettled(
    o.timeoutsSec.map((t) =>
      oneTimeout(t, o, failed.signal).catch((err) => {
        failed.abort(err);
        throw err;
      }),
    ),
  );
  const bad = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  const results = settled.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof oneTimeout>>>).value);
  const { log: _log, ...options } = o;
  return { startedAt, options, rows: results.flatMap((r) => r.rows), timelines: results.map((r) => r.timeline) };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function span(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => (clearTimeout(timer), signal.removeEventListener('abort', done), resolve());
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

async function oneTimeout(timeoutSec: number, o: AdaptiveLabOptions, stop: AbortSignal) {
  const variants = [
    adaptiveVariant('adaptive', { startMs: o.startMs }),
    ...o.fixedMs.map((ms) => adaptiveVariant(`fixed ${ms / 1000} s`, { fixedMs: ms })),
  ];
  const run = await LabRun.open(`adaptive-${timeoutSec}`, variants, { natTimeoutSec: timeoutSec, strict: true, log: o.log });
  try {
    if (stop.aborted) throw stop.reason;
    const t0 = now();
    const settledStats: Promise<{ at: number; pings: number; line: AgentLine } | null> = (async () => {
      const adaptive = run.running[0];
      const line = await adaptive.clients.waitFor((l) => l.ev === 'interval' && l.phase === 'settled', o.spanMs);
      if (!line) return null;
      o.log?.(`NAT ${timeoutSec} s: settled at ${line.intervalMs} ms after ${((line.t - t0) / 1000).toFixed(0)} s, ${line.probes} probe steps`);
      const s = await adaptive.clients.stats();
      return { at: line.t, pings: (s.clients as { pingsSent: number }[])[0].pingsSent, line };
    })();
    // Cut short by a failed sibling, nobody awaits it: its stats() must not reject unhandled as the agents die.
    settledStats.catch(() => {});
    const progress = setInterval(() => o.log?.(`NAT ${timeoutSec} s: ${((now() - t0) / 1000).toFixed(0)} of ${o.spanMs / 1000} s`), 60_000);
    await span(o.spanMs, stop);
    clearInterval(progress);
    if (stop.aborted) throw stop.reason;
    const settled = await settledStats;
    const bytes = await run.lab.bytes();
    const rows: AdaptiveRow[] = [];
    let timeline: AdaptiveReport['timelines'][number] = { timeoutSec, points: [], drops: [] };
    for (const r of run.running) {
      const s = await r.clients.stats();
      const pings = (s.clients as { pingsSent: number }[])[0].pingsSent;
      const closes = r.clients.lines.filter((l) => l.ev === 'close').map((l) => l.t);
      const adaptive = r.index === 0;
      const minimumPerHour = Math.ceil(3600 / (0.95 * timeoutSec));
      const end = now();
      const row: AdaptiveRow = {
        timeoutSec,
        variant: r.variant.name,
        adaptive,
        spanMs: o.spanMs,
        drops: closes.length,
        dropsWhileLearning: adaptive ? (settled ? closes.filter((t) => t <= settled.at).length : closes.length) : null,
        dropsAfterSettled: adaptive && settled ? closes.filter((t) => t > settled.at).length : null,
        settledMs: adaptive && settled ? Number(settled.line.intervalMs) : null,
        settledShareOfT: adaptive && settled ? Number(settled.line.intervalMs) / (timeoutSec * 1000) : null,
        probeSteps: adaptive && settled ? Number(settled.line.probes) : null,
        learnedInMs: adaptive && settled ? Math.round(settled.at - t0) : null,
        heartbeats: pings,
        heartbeatsPerHour: (pings / (end - t0)) * 3_600_000,
        heartbeatsPerHourAfterSettled: adaptive && settled ? ((pings - settled.pings) / (end - settled.at)) * 3_600_000 : null,
        minimumPerHour,
        bytes: bytes[r.index],
      };
      rows.push(row);
      if (adaptive) {
        timeline = {
          timeoutSec,
          points: r.clients.lines.filter((l) => l.ev === 'interval').map((l) => ({ atMs: Math.round(l.t - t0), intervalMs: Number(l.intervalMs), change: String(l.change) })),
          drops: closes.map((t) => Math.round(t - t0)),
        };
      }
    }
    return { rows, timeline };
  } finally {
    await run.close();
  }
}
