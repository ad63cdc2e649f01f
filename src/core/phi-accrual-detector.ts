import type { LivenessDetector, Verdict } from './liveness-detector.js';
import { OptionError } from '../protocol/errors.js';

/**
 * Phi accrual failure detector (Hayashibara et al., 2004; the variant Akka
 * and Cassandra use). Instead of a fixed silence limit it learns the
 * distribution of inter-arrival times and reports suspicion as
 *
 *   phi(t) = -log10(P(next arrival later than t since the last one))
 *
 * under a normal model with the observed mean and standard deviation, the
 * mean raised by `acceptablePauseMs` (tolerated hiccups such as a GC). phi = 1
 * means a 10% chance that a live peer would still be this late, phi = 8 one in
 * 10^8. A link is suspect at `suspectPhi` and dead at `deadPhi`.
 *
 * Until `minSamples` arrivals are seen, the announced interval stands in for
 * the mean with a standard deviation of a quarter of it. Pure: time is passed
 * in, nothing is read from the system.
 */
export interface PhiOptions {
  /** phi at which the peer is suspect (a probe goes out). */
  suspectPhi: number;
  /** phi at which the link is closed. */
  deadPhi: number;
  /** Inter-arrival samples kept. */
  windowSize: number;
  /** Floor of the standard deviation, so a very regular peer is not convicted by one late packet. */
  minStdDevMs: number;
  /** Added to the mean: pauses a live peer may take. */
  acceptablePauseMs: number;
  /** Arrivals needed before the learned distribution is trusted. */
  minSamples: number;
}

export const DEFAULT_PHI: PhiOptions = {
  suspectPhi: 3,
  deadPhi: 8,
  windowSize: 200,
  minStdDevMs: 500,
  acceptablePauseMs: 0,
  minSamples: 5,
};

export class PhiAccrualDetector implements LivenessDetector {
  // A number from the start, so stored as an unboxed double (see SilenceDetector).
  lastHeardAt = 0;
  private readonly o: PhiOptions;
  private readonly samples: Float64Array;
  private next = 0;
  private count = 0;
  private sum = 0;
  private sumSq = 0;
  private suspectedAt = -1;
  /** The last heartbeat heard (the start counts as one: the first is due an interval after it). */
  private lastBeatAt = 0;

  constructor(
    public intervalMs: number,
    now: number,
    opts: Partial<PhiOptions> = {},
  ) {
    this.o = { ...DEFAULT_PHI };
    // An option given as undefined keeps its default (spread, it would replace it and make phi NaN).
    for (const k of Object.keys(DEFAULT_PHI) as (keyof PhiOptions)[]) if (opts[k] !== undefined) this.o[k] = opts[k]!;
    const o = this.o;
    if (!(o.deadPhi > 0 && o.suspectPhi > 0 && o.suspectPhi <= o.deadPhi)) {
      throw new OptionError('detector', 'phi thresholds must satisfy 0 < suspectPhi <= deadPhi');
    }
    // Each of these would make the model 0/0 or NaN, and phi NaN never convicts.
    if (!(Number.isInteger(o.windowSize) && o.windowSize >= 1)) throw new OptionError('detector.windowSize', 'must be a whole number, at least 1');
    if (!(Number.isInteger(o.minSamples) && o.minSamples >= 1 && o.minSamples <= o.windowSize)) throw new OptionError('detector.minSamples', 'must be a whole number from 1 to windowSize');
    if (!(Number.isFinite(o.minStdDevMs) && o.minStdDevMs > 0)) throw new OptionError('detector.minStdDevMs', 'must be a positive number');
    if (!(Number.isFinite(o.acceptablePauseMs) && o.acceptablePauseMs >= 0)) throw new OptionError('detector.acceptablePauseMs', 'must be a number, 0 or more');
    this.samples = new Float64Array(o.windowSize);
    this.lastHeardAt = this.lastBeatAt = now;
  }

  /**
   * Any frame proves life; only heartbeats are learned from. A heartbeat right
   * after another is one gap. One after other traffic was counted by the
   * client either from its last send (longlink's scheduler, with idle
   * suppression: a run of data frames moves the next heartbeat; taken from the
   * last heartbeat, ten minutes of data would be one ten-minute sample and a
   * dead peer would take ten minutes to convict) or from its last heartbeat (a
   * client that pings every interval whatever it sends, or one that heard
   * nothing back): the gap learned is the one since the last frame, but never
   * less than the interval unless the one since the last heartbeat is. Taken
   * from the last frame alone, heartbeats sent soon after data frames taught
   * gaps far below the interval, and once only heartbeats remained a live
   * client was probed within seconds of each and closed when a probe's answer
   * took a second or so.
   */
  heard(now: number, heartbeat = true): void {
    let gap = now - this.lastHeardAt;
    if (heartbeat && this.lastBeatAt !== this.lastHeardAt) gap = Math.min(now - this.lastBeatAt, Math.max(gap, this.intervalMs));
    this.lastHeardAt = now;
    if (!heartbeat) return;
    this.lastBeatAt = now;
    if (gap <= 0) return;
    if (this.count === this.samples.length) {
      const old = this.samples[this.next];
      this.sum -= old;
      this.sumSq -= old * old;
    } else {
      this.count++;
    }
    this.samples[this.next] = gap;
    this.next = (this.next + 1) % this.samples.length;
    this.sum += gap;
    this.sumSq += gap * gap;
  }

  /** A new announced interval invalidates what was learned about the old one. */
  setIntervalMs(ms: number): void {
    if (ms === this.intervalMs) return;
    this.intervalMs = ms;
    this.count = this.next = 0;
    this.sum = this.sumSq = 0;
  }

  /** Mean and standard deviation of the model in use. */
  model(): { meanMs: number; stdDevMs: number; learned: boolean } {
    const learned = this.count >= this.o.minSamples;
    let mean = this.intervalMs;
    let sd = this.intervalMs / 4;
    if (learned) {
      mean = this.sum / this.count;
      sd = Math.sqrt(Math.max(0, this.sumSq / this.count - mean * mean));
    }
    return { meanMs: mean + this.o.acceptablePauseMs, stdDevMs: Math.max(sd, this.o.minStdDevMs), learned };
  }

  phi(now: number): number {
    const { meanMs, stdDevMs } = this.model();
    return phiOf(now - this.lastHeardAt, meanMs, stdDevMs);
  }

  /** Silence after the last arrival at which phi reaches `target`. */
  silenceForPhi(target: number): number {
    const { meanMs, stdDevMs } = this.model();
    return meanMs + stdDevMs * zForPhi(target);
  }

  deadline(): number {
    return this.lastHeardAt + this.silenceForPhi(this.o.deadPhi);
  }

  check(now: number): Verdict {
    // Also by the times nextCheckAt() and deadline() give: phi there, computed back through erfc and
    // log10, can fall an ulp short of its threshold, and the verdict came a wheel tick after its time.
    const p = this.phi(now);
    if (p >= this.o.deadPhi || now >= this.deadline()) return 'dead';
    if (p >= this.o.suspectPhi || now >= this.lastHeardAt + this.silenceForPhi(this.o.suspectPhi)) {
      if (this.suspectedAt === this.lastHeardAt) return 'suspected';
      this.suspectedAt = this.lastHeardAt;
      return 'suspect';
    }
    return 'alive';
  }

  nextCheckAt(_now: number): number {
    // A suspicion not yet raised is checked even if its time has passed (a re-arm came first).
    return this.suspectedAt !== this.lastHeardAt ? Math.min(this.lastHeardAt + this.silenceForPhi(this.o.suspectPhi), this.deadline()) : this.deadline();
  }
}

/** phi for a silence of `t` under N(mean, sd): -log10 of the upper tail. */
export function phiOf(t: number, mean: number, sd: number): number {
  const tail = 0.5 * erfc((t - mean) / (sd * Math.SQRT2));
  return tail <= 0 ? Infinity : -Math.log10(tail);
}

/** The z such that the upper normal tail beyond z is 10^-phi (inverse of phiOf). */
const zCache = new Map<number, number>();

export function zForPhi(phi: number): number {
  // Thresholds are few and fixed per gateway; the bisection runs once for each.
  let z = zCache.get(phi);
  if (z === undefined) {
    z = zForPhiUncached(phi);
    if (zCache.size < 1024) zCache.set(phi, z);
  }
  return z;
}

function zForPhiUncached(phi: number): number {
  // Bisection on a monotone function: exact enough (1e-9) and branch-free to reason about.
  let lo = -10;
  let hi = 40;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (phiOf(mid, 0, 1) < phi) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * Complementary error function, accurate to about 1e-7 relative even far in
 * the tail (W. J. Cody's rational Chebyshev form as given in Numerical
 * Recipes, erfcc), which phi needs: a naive 1 - erf loses everything past z ≈ 6.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}
