import { silenceLimitMs, tuneDetector, type TuneResult, type TuneTarget } from '../core/detector-tuning.js';
import { LatenessStats } from '../core/lateness-stats.js';
import { measuredNetwork } from '../core/network-model.js';
import { DETECTORS, simulate, type Channel, type DetectorResult } from './detector-sim.js';
import { exponential, mulberry32 } from './rng.js';

/**
 * The configurator checked end to end in the simulation, as an operator
 * would use it: the gateway measures the network at the interval it runs
 * (heartbeat lateness and empty slots, as the gateway computes them), the
 * configurator picks a policy from those figures, and the detector it
 * chose, with that policy, is then scored on the same network over
 * `hours` connection-hours it has not seen.
 */
export interface TuneCheck {
  channel: Omit<Channel, 'intervalMs'>;
  measuredAtIntervalMs: number;
  measuredHeartbeats: number;
  target: TuneTarget;
  result: TuneResult;
  /** The tuned detector on the simulated network (null when no policy was found). */
  scored: DetectorResult | null;
  /** The silence detector on the same heartbeats, at the same interval and T_D (its limit as tuneDetector computes it). */
  silence: DetectorResult | null;
}

/** Heartbeats on `channel` as the gateway would see them, gaps measured between arrivals. */
export function measureChannel(channel: Channel, connections: number, beatsPerConnection: number, seed: number): LatenessStats {
  const rand = mulberry32(seed);
  const stats = new LatenessStats();
  for (let c = 0; c < connections; c++) {
    let last = -Infinity;
    for (let k = 1; k <= beatsPerConnection; k++) {
      const lost = rand() < channel.lossRate;
      const arrival = k * channel.intervalMs + channel.baseDelayMs + exponential(rand, channel.jitterMs);
      // Over a stream transport a heartbeat cannot overtake the one before; a reordered one is dropped here as in the scoring.
      if (lost || arrival <= last) continue;
      if (last > -Infinity) stats.observeGap(arrival - last, channel.intervalMs);
      last = arrival;
    }
  }
  return stats;
}

export function checkTuning(
  channel: Omit<Channel, 'intervalMs'>,
  target: TuneTarget,
  o: { measuredAtIntervalMs: number; measureHours: number; hours: number; seed: number },
): TuneCheck {
  const at: Channel = { ...channel, intervalMs: o.measuredAtIntervalMs };
  const beats = Math.round((10 * 3_600_000) / o.measuredAtIntervalMs);
  const stats = measureChannel(at, Math.max(1, Math.round(o.measureHours / 10)), beats, o.seed + 1);
  // The gateway knows the mean delay from its RTT (half of it); here, the channel's.
  const net = measuredNetwork(stats, channel.baseDelayMs + channel.jitterMs, `measured: ${stats.count} heartbeats`);
  const result = tuneDetector(target, net);
  let scored: DetectorResult | null = null;
  let silence: DetectorResult | null = null;
  if (result.ok) {
    // The sim's `fixed` detector is the silence detector with its limit as the knob.
    const kind = DETECTORS.find((d) => d.name === (result.detector === 'freshness' ? 'freshness' : 'fixed'))!;
    const fixed = DETECTORS.find((d) => d.name === 'fixed')!;
    const limit = silenceLimitMs(target.detectWithinMs, net);
    const rs = simulate({ ...channel, intervalMs: result.intervalMs }, [{ kind, knob: result.lateMs }, ...(limit > result.intervalMs ? [{ kind: fixed, knob: limit }] : [])], {
      connections: Math.max(1, Math.round(o.hours / 10)),
      hoursPerConnection: 10,
      seed: o.seed,
    });
    scored = rs[0];
    silence = rs[1] ?? null;
  }
  return { channel, measuredAtIntervalMs: o.measuredAtIntervalMs, measuredHeartbeats: stats.count, target, result, scored, silence };
}
