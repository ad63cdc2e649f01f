import type { LivenessDetector, Verdict } from './liveness-detector.js';

/**
 * Freshness-point detector with learned expected arrivals (Chen, Toueg and
 * Aguilera 2002, NFD-E). A fixed detector counts silence from the last
 * arrival, so one heartbeat that came early shortens the next deadline and
 * one that came late lengthens it: its bound carries the delay of whichever
 * heartbeat came last. This one learns when heartbeats are due: the client
 * sends on a lattice (every `intervalMs`), so arrival i is at
 * phase + k_i·interval + delay_i, and the mean of (arrival − k·interval) over
 * the recent window estimates phase + mean delay. Heartbeat k+1 is expected
 * at EA = that mean + (k+1)·interval, and the peer is dead when no newer
 * heartbeat has come by EA + `lateMs`. Lost heartbeats are recognised from
 * the gap (k advances by the number of intervals that passed), so a loss
 * does not disturb the estimate. Anything other than a heartbeat proves life
 * but restarts the lattice (the client's scheduler counts from its last send).
 * Pure: time is passed in.
 */
export interface FreshnessOptions {
  /** How late the next expected heartbeat may be before the peer is dead. */
  lateMs: number;
  /** How late it may be before the peer is suspect (a probe goes out). */
  suspectLateMs: number;
  /** Heartbeats in the arrival-time estimate. */
  windowSize: number;
}

export class FreshnessDetector implements LivenessDetector {
  lastHeardAt: number;
  private readonly offsets: Float64Array;
  private next = 0;
  private count = 0;
  private sum = 0;
  /** Lattice index of the last heartbeat in this segment, and its arrival. */
  private k = -1;
  private lastBeatAt = 0;
  private suspectedAt = -1;
  readonly o: FreshnessOptions;

  constructor(
    public intervalMs: number,
    now: number,
    opts: Partial<FreshnessOptions> & Pick<FreshnessOptions, 'lateMs'>,
  ) {
    this.o = {
      lateMs: opts.lateMs,
      suspectLateMs: opts.suspectLateMs ?? Math.min(opts.lateMs, intervalMs / 2),
      windowSize: opts.windowSize ?? 32,
    };
    if (!(this.o.lateMs > 0 && this.o.suspectLateMs > 0 && this.o.suspectLateMs <= this.o.lateMs)) {
      throw new RangeError('freshness needs 0 < suspectLateMs <= lateMs');
    }
    if (!(this.o.windowSize >= 1)) throw new RangeError('windowSize must be at least 1');
    this.offsets = new Float64Array(this.o.windowSize);
    this.lastHeardAt = now;
  }

  heard(now: number, heartbeat = true): void {
    this.lastHeardAt = now;
    if (!heartbeat) {
      // The client's next heartbeat now counts from its own last send: start a new lattice.
      this.restart();
      return;
    }
    if (this.k < 0) {
      this.k = 0;
      this.offsets.fill(0);
    } else {
      // Heartbeats lost on the way show as a gap of several intervals.
      this.k += Math.max(1, Math.round((now - this.lastBeatAt) / this.intervalMs));
    }
    this.lastBeatAt = now;
    const offset = now - this.k * this.intervalMs;
    if (this.count === this.offsets.length) this.sum -= this.offsets[this.next];
    else this.count++;
    this.offsets[this.next] = offset;
    this.next = (this.next + 1) % this.offsets.length;
    this.sum += offset;
  }

  private restart(): void {
    this.k = -1;
    this.count = this.next = 0;
    this.sum = 0;
  }

  setIntervalMs(ms: number): void {
    if (ms === this.intervalMs) return;
    this.intervalMs = ms;
    this.restart();
  }

  /** When the next heartbeat is expected to arrive. */
  expectedAt(): number {
    // No lattice yet (just connected, or data restarted it): one interval after the last frame.
    if (this.count === 0) return this.lastHeardAt + this.intervalMs;
    return this.sum / this.count + (this.k + 1) * this.intervalMs;
  }

  deadline(): number {
    return this.expectedAt() + this.o.lateMs;
  }

  check(now: number): Verdict {
    if (now >= this.deadline()) return 'dead';
    if (now >= this.expectedAt() + this.o.suspectLateMs) {
      if (this.suspectedAt === this.lastHeardAt) return 'suspected';
      this.suspectedAt = this.lastHeardAt;
      return 'suspect';
    }
    return 'alive';
  }

  nextCheckAt(now: number): number {
    const suspectAt = this.expectedAt() + this.o.suspectLateMs;
    return now < suspectAt && this.suspectedAt !== this.lastHeardAt ? suspectAt : this.deadline();
  }
}
