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
