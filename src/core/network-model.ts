import type { NetworkModel } from './detector-tuning.js';
import { LatenessStats, type LatenessSnapshot } from './lateness-stats.js';

/** The network as the gateway measured it: heartbeat lateness and lost slots, and the delay from its RTT. */
export function measuredNetwork(stats: LatenessStats | LatenessSnapshot, delayMeanMs: number, source: string): NetworkModel {
  const s = stats instanceof LatenessStats ? stats : LatenessStats.fromSnapshot(stats);
  return {
    lossRate: s.lossRate,
    delayMeanMs,
    lateSurvival: (x) => s.survival(x),
    lateP999Ms: s.quantile(0.999),
    lateStdMs: s.stdMs,
    source,
    heartbeats: s.count,
  };
}

/**
 * A model network, as in the simulation and in Chen et al.: each heartbeat
 * lost with probability `lossRate`, else delayed baseDelayMs + Exp(jitterMs).
 * Lateness against the previous arrival is then the difference of two
 * exponentials (Laplace: Pr(L > x) = ½·e^(−x/jitter)); early is not credited.
 */
export function exponentialNetwork(o: { lossRate: number; baseDelayMs: number; jitterMs: number }): NetworkModel {
  const mu = o.jitterMs;
  return {
    lossRate: o.lossRate,
    delayMeanMs: o.baseDelayMs + mu,
    lateSurvival: (x) => (x < 0 ? 1 : mu > 0 ? 0.5 * Math.exp(-x / mu) : 0),
    lateP999Ms: mu * Math.log(500),
    lateStdMs: mu * Math.SQRT2,
    source: `model: ${o.lossRate * 100}% loss, delay ${o.baseDelayMs} ms + Exp(${mu} ms)`,
    heartbeats: 0,
  };
}

/**
 * The network from a gateway's Prometheus exposition (what `/metrics` shows,
 * for a gateway reached only through its scrape): the lateness quantiles,
 * the loss ratio and the gap count of one transport, and half the mean RTT
 * of the gateway's own PINGs. Coarser than /api/network's buckets: between
 * quantiles the survival is interpolated (log-linear), below the median it
 * rises linearly to 1 at zero, and past the 99.9th percentile it falls as an
 * exponential with the slope from the 99th to the 99.9th. Null when the
 * text has no such figures.
 */
export function prometheusNetwork(text: string, transport: 'tcp' | 'ws', source: string): NetworkModel | null {
  const value = (name: string, labels: Record<string, string> = {}): number | undefined => {
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
    }
    return undefined;
  };
  const q = (quantile: string) => value('longlink_heartbeat_lateness_seconds', { transport, quantile });
  const pts = (['0.5', '0.9', '0.99', '0.999'] as const).map((k) => [1 - Number(k), (q(k) ?? NaN) * 1000] as const);
  if (pts.some(([, v]) => !Number.isFinite(v))) return null;
  const gaps = value('longlink_heartbeat_gaps_total', { transport }) ?? 0;
  const loss = value('longlink_heartbeat_loss_ratio', { transport }) ?? 0;
  const rttSum = value('longlink_heartbeat_rtt_seconds_sum');
  const rttCount = value('longlink_heartbeat_rtt_seconds_count');
  const [, med] = pts[0];
  const [, p99] = pts[2];
  const [, p999] = pts[3];
  const tailMs = Math.max(1, (p999 - p99) / Math.LN10);
  const survival = (x: number): number => {
    if (x <= 0) return 1;
    if (x <= med) return med > 0 ? 1 - 0.5 * (x / med) : 0.5;
    for (let i = 0; i + 1 < pts.length; i++) {
      const [pa, va] = pts[i];
      const [pb, vb] = pts[i + 1];
      if (x <= vb) return vb > va ? pa * (pb / pa) ** ((x - va) / (vb - va)) : pb;
    }
    return 0.001 * Math.exp(-(x - p999) / tailMs);
  };
  return {
    lossRate: loss,
    delayMeanMs: rttSum !== undefined && rttCount ? (rttSum / rttCount) * 500 : 0,
    lateSurvival: survival,
    lateP999Ms: p999,
    lateStdMs: (q('stddev') ?? 0) * 1000,
    source,
    heartbeats: gaps,
  };
}
