import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { StallGuard } from '../core/stall-guard.js';
import { gcStats, watchGc, type GcStats } from './gc-watch.js';
import type { RunnerGuard } from './wheel-runner.js';

export interface StallGuardOptions {
  /** Excuse silences that overlap the gateway's own stalls (default true). */
  enabled: boolean;
  /** Event-loop blocking at least this long counts as a stall. */
  thresholdMs: number;
}

export const STALL_DEFAULTS: StallGuardOptions = { enabled: true, thresholdMs: 200 };

/** monitorEventLoopDelay's timer period: every sample it records includes it, so it is taken off. */
const RESOLUTION_MS = 10;

export interface EventLoopStats {
  /** Event-loop delay percentiles since the gateway started (monitorEventLoopDelay, its timer period taken off). */
  delayP50Ms: number;
  delayP99Ms: number;
  delayMaxMs: number;
  /** Stalls at or over the threshold, their total and the longest. */
  stalls: number;
  stalledMs: number;
  longestStallMs: number;
  /** The process's garbage-collection pauses since the gateway started. */
  gc: GcStats;
}

/**
 * Measures the gateway's own event loop with `monitorEventLoopDelay` and the
 * wheel runner's lateness, and records stalls in a StallGuard that the
 * connections consult before convicting a peer.
 */
export class EventLoopGuard implements RunnerGuard {
  readonly stalls: StallGuard;
  private readonly sinceTick: IntervalHistogram;
  private readonly overall: IntervalHistogram;

  constructor(readonly options: StallGuardOptions) {
    this.stalls = new StallGuard(options.thresholdMs);
    this.sinceTick = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.overall = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    watchGc();
    this.sinceTick.enable();
    this.overall.enable();
  }

  tick(expectedAt: number, now: number): number {
    // The histogram's max is the longest single block since it was last reset (ns); resolution is
    // subtracted. Reset only after a stall: below the threshold the max means nothing to the guard,
    // and reset() clears the whole HDR histogram, which cost 7% of the heartbeat path when done per tick.
    const measured = this.sinceTick.count > 0 ? this.sinceTick.max / 1e6 - RESOLUTION_MS : 0;
    if (measured >= this.options.thresholdMs) this.sinceTick.reset();
    return this.options.enabled ? this.stalls.observe(expectedAt, now, measured) : 0;
  }

  resumed(): void {
    // The monitor's maximum is the longest block since its last reset, wherever it fell: one from
    // while the runner sat idle was recorded at its next tick as a stall ending then, and excused
    // that much of any silence around it.
    this.sinceTick.reset();
  }

  afterIo(fn: () => void): void {
    setImmediate(fn);
  }

  stalledWithin(from: number, to: number): number {
    return this.options.enabled ? this.stalls.stalledWithin(from, to) : 0;
  }

  stats(): EventLoopStats {
    const h = this.overall;
    const ms = (ns: number) => (Number.isFinite(ns) && h.count > 0 ? Math.max(0, Math.round(ns / 1e4) / 100 - RESOLUTION_MS) : 0);
    return {
      delayP50Ms: ms(h.percentile(50)),
      delayP99Ms: ms(h.percentile(99)),
      delayMaxMs: ms(h.max),
      stalls: this.stalls.count,
      stalledMs: Math.round(this.stalls.totalMs),
      longestStallMs: Math.round(this.stalls.longestMs),
      gc: gcStats(),
    };
  }

  stop(): void {
    this.sinceTick.disable();
    this.overall.disable();
  }
}
