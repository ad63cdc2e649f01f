import type { LivenessDetector } from '../core/liveness-detector.js';
import { SilenceDetector } from '../core/liveness-detector.js';
import { PhiAccrualDetector } from '../core/phi-accrual-detector.js';
import { FreshnessDetector } from '../core/freshness-detector.js';
import { exponential, mulberry32 } from './rng.js';

/**
 * Failure-detector quality by deterministic simulation, in the terms of Chen,
 * Toueg and Aguilera (2002): detection time T_D, mistake recurrence time T_MR
 * and mistake duration T_M. The channel is theirs: the client sends a
 * heartbeat every `intervalMs`, each is lost with probability `lossRate` or
 * arrives after baseDelayMs + Exp(jitterMs). Every detector sees the same
 * arrivals (common random numbers, seeded), so differences are the
 * detectors' own. The detectors are longlink's real classes, fed simulated
 * time; nothing sleeps.
 *
 * A mistake (false suspicion) is an arrival after the detector's deadline:
 * it had convicted a live peer, for T_M = arrival − deadline. T_D is sampled
 * at every heartbeat as if the peer crashed right after sending it (the worst
 * phase): deadline − send time; the report gives its mean and its 99.9th
 * percentile, the latter used as "the" T_D when detectors are compared at
 * equal T_D (with unbounded delays no timeout-based detector has a hard
 * bound, so a high percentile stands in for Chen et al.'s upper bound).
 */
export interface Channel {
  intervalMs: number;
  lossRate: number;
  baseDelayMs: number;
  /** Mean of the exponential part of the delay. */
  jitterMs: number;
}

export interface DetectorKind {
  name: string;
  /** The detector with its one tuning knob set. */
  make(knob: number, channel: Channel, now: number): LivenessDetector;
  /** Knob range for calibration; larger knob = later deadline. */
  knobRange: [number, number];
  knobLabel: (knob: number) => string;
}

export const DETECTORS: DetectorKind[] = [
  {
    name: 'fixed',
    make: (silenceMs, c, now) => new SilenceDetector(c.intervalMs, 1, silenceMs - c.intervalMs, now),
    knobRange: [1000, 200_000],
    knobLabel: (k) => `silence > ${(k / 1000).toFixed(3)} s`,
  },
  {
    name: 'phi',
    make: (deadPhi, c, now) => new PhiAccrualDetector(c.intervalMs, now, { deadPhi, suspectPhi: Math.min(deadPhi, 1) }),
    knobRange: [0.05, 300],
    knobLabel: (k) => `phi ≥ ${k.toFixed(2)}`,
  },
  {
    name: 'freshness',
    make: (lateMs, c, now) => new FreshnessDetector(c.intervalMs, now, { lateMs, suspectLateMs: Math.min(lateMs, 1) }),
    knobRange: [1, 200_000],
    knobLabel: (k) => `next heartbeat late by > ${(k / 1000).toFixed(3)} s`,
  },
];

export interface SimRun {
  connections: number;
  hoursPerConnection: number;
  seed: number;
  /** Heartbeats at the start of each connection not scored (detectors learning). */
  warmupBeats?: number;
}

export interface DetectorResult {
  name: string;
  knob: number;
  knobLabel: string;
  heartbeats: number;
  connectionHours: number;
  mistakes: number;
  /** Mean mistake duration T_M. */
  meanMistakeMs: number;
  /** Mistake recurrence time T_MR in hours (Infinity with no mistake). */
  mistakeRecurrenceHours: number;
  mistakesPerConnectionMonth: number;
  tdMeanMs: number;
  tdP999Ms: number;
}

const TD_BUCKET_MS = 1;
/** T_D up to 400 s in 1 ms buckets; one more bucket holds everything beyond. */
const TD_BUCKETS = 400_000;

/** Runs every detector (each with its knob) over the same simulated heartbeats. */
export function simulate(channel: Channel, detectors: { kind: DetectorKind; knob: number }[], run: SimRun, progress?: (done: number) => void): DetectorResult[] {
  const rand = mulberry32(run.seed);
  const beatsPerConn = Math.round((run.hoursPerConnection * 3_600_000) / channel.intervalMs);
  const warmup = run.warmupBeats ?? 50;
  const n = detectors.length;
  const mistakes = new Float64Array(n);
  const mistakeMs = new Float64Array(n);
  const tdSum = new Float64Array(n);
  const tdHist = detectors.map(() => new Uint32Array(TD_BUCKETS + 1));
  let scored = 0;
  const dets: LivenessDetector[] = new Array(n);
  for (let c = 0; c < run.connections; c++) {
    for (let i = 0; i < n; i++) dets[i] = detectors[i].kind.make(detectors[i].knob, channel, 0);
    let lastArrival = -Infinity;
    for (let k = 1; k <= beatsPerConn + warmup; k++) {
      const sentAt = k * channel.intervalMs;
      const lost = rand() < channel.lossRate;
      const arrival = sentAt + channel.baseDelayMs + exponential(rand, channel.jitterMs);
      const count = k > warmup;
      if (!lost && arrival > lastArrival) {
        lastArrival = arrival;
        for (let i = 0; i < n; i++) {
          const d = dets[i];
          const deadline = d.deadline();
          if (count && arrival > deadline) {
            mistakes[i]++;
            mistakeMs[i] += arrival - deadline;
          }
          d.heard(arrival, true);
        }
      }
      if (count) {
        scored++;
        for (let i = 0; i < n; i++) {
          const td = dets[i].deadline() - sentAt;
          tdSum[i] += td;
          const b = Math.min(TD_BUCKETS, Math.max(0, Math.floor(td / TD_BUCKET_MS)));
          tdHist[i][b]++;
        }
      }
    }
    if (progress && (c & 255) === 255) progress(c + 1);
  }
  const hours = (scored * channel.intervalMs) / 3_600_000;
  return detectors.map(({ kind, knob }, i) => ({
    name: kind.name,
    knob,
    knobLabel: kind.knobLabel(knob),
    heartbeats: scored,
    connectionHours: hours,
    mistakes: mistakes[i],
    meanMistakeMs: mistakes[i] ? mistakeMs[i] / mistakes[i] : 0,
    mistakeRecurrenceHours: mistakes[i] ? hours / mistakes[i] : Infinity,
    mistakesPerConnectionMonth: (mistakes[i] / hours) * 720,
    tdMeanMs: tdSum[i] / scored,
    tdP999Ms: percentile(tdHist[i], scored, 0.999) * TD_BUCKET_MS,
  }));
}

/**
 * The q-quantile's bucket's upper edge; Infinity when it lies beyond the
 * histogram's range (reported as the range's end, a T_D of 10 minutes read
 * as 400 s and passed any target above that).
 */
function percentile(hist: Uint32Array, total: number, q: number): number {
  const want = Math.ceil(total * q);
  let seen = 0;
  for (let b = 0; b < hist.length - 1; b++) {
    seen += hist[b];
    if (seen >= want) return b + 1;
  }
  return Infinity;
}

/**
 * The knob at which a detector's T_D (99.9th percentile) equals `targetMs`,
 * by bisection on a calibration run (its own seed, so the scored run is not
 * the one it was tuned on).
 */
export function calibrate(kind: DetectorKind, channel: Channel, targetMs: number, run: SimRun): number {
  let [lo, hi] = kind.knobRange;
  for (let i = 0; i < 40; i++) {
    const mid = kind.name === 'phi' ? Math.sqrt(lo * hi) : (lo + hi) / 2;
    const [r] = simulate(channel, [{ kind, knob: mid }], run);
    if (r.tdP999Ms > targetMs) hi = mid;
    else lo = mid;
    if (hi - lo < (kind.name === 'phi' ? 1e-4 * lo : 0.5)) break;
  }
  return lo;
}
