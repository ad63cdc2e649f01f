/**
 * How late heartbeats arrive, measured where they arrive. A client sends
 * every `interval` from its last send, so a heartbeat's slot is the previous
 * one's arrival plus one interval, and its lateness is how far after that
 * slot it came (the difference of two one-way delays, plus the client's
 * timer error; negative when early). A gap of k intervals means k − 1 slots
 * went empty: heartbeats lost on the way, or not sent. Gaps with any other
 * frame in between are not measured (the client counts from that frame), nor
 * a gap of less than half an interval (a heartbeat sent out of turn).
 *
 * Fixed memory whatever the count: positive lateness in log buckets, four to
 * an octave (each about 19 % wide) from 0.5 ms to about 2.3 hours, plus the
 * moments. Pure, no clock.
 */

/** Lower edge of the first bucket: lateness at or below it counts as on time. */
const FIRST_EDGE_MS = 0.5;
const PER_OCTAVE = 4;
const BUCKETS = 96;
const EDGES = Array.from({ length: BUCKETS + 1 }, (_, b) => FIRST_EDGE_MS * 2 ** (b / PER_OCTAVE));

/** Upper edge (ms) of bucket b. */
export const latenessBucketEdge = (b: number): number => EDGES[b + 1];

export interface LatenessSnapshot {
  /** Gaps measured (one per heartbeat that followed another heartbeat). */
  count: number;
  /** Slots that went empty in those gaps (lost or unsent heartbeats). */
  missed: number;
  /** missed / (count + missed): the chance a heartbeat's slot stays empty. */
  lossRate: number;
  meanMs: number;
  stdMs: number;
  /** Gaps whose heartbeat came at or before its slot (+0.5 ms). */
  onTime: number;
  /** [upper edge in ms, count] of the late ones, buckets with a count only. */
  buckets: [number, number][];
}

export class LatenessStats {
  count = 0;
  missed = 0;
  private sum = 0;
  private sumSq = 0;
  private onTime = 0;
  private readonly late = new Float64Array(BUCKETS);
  /** For survival(), which the configurator calls many thousands of times: counts above each bucket, and the tail fit. */
  private cache: { above: Float64Array; tail: ReturnType<LatenessStats['fitTail']> } | null = null;

  /** One heartbeat `latenessMs` after its slot, with `missedSlots` empty slots before it. */
  observe(latenessMs: number, missedSlots = 0): void {
    this.cache = null;
    this.count++;
    this.missed += missedSlots;
    this.sum += latenessMs;
    this.sumSq += latenessMs * latenessMs;
    if (latenessMs <= FIRST_EDGE_MS) {
      this.onTime++;
      return;
    }
    const b = Math.ceil(PER_OCTAVE * Math.log2(latenessMs / FIRST_EDGE_MS)) - 1;
    this.late[Math.min(BUCKETS - 1, Math.max(0, b))]++;
  }

  /**
   * A heartbeat `gapMs` after the previous one, on a client sending every
   * `intervalMs`: the gap's whole intervals are its slot (and the empty
   * slots before it), the rest its lateness. Returns the empty slots, or
   * null for a heartbeat sent out of turn, less than half an interval after
   * the last (a flushed state, a check after a network change): the gap says
   * when the app asked, not how the path delays heartbeats, and taken as
   * lateness it was −(interval − gap), −24 s for a check a second after a
   * 25 s heartbeat, in the mean and deviation the configurator reads.
   */
  observeGap(gapMs: number, intervalMs: number): number | null {
    if (gapMs < intervalMs / 2) return null;
    const k = Math.round(gapMs / intervalMs);
    this.observe(gapMs - k * intervalMs, k - 1);
    return k - 1;
  }

  get meanMs(): number {
    return this.count ? this.sum / this.count : 0;
  }

  get stdMs(): number {
    if (this.count < 2) return 0;
    const m = this.meanMs;
    return Math.sqrt(Math.max(0, (this.sumSq - this.count * m * m) / (this.count - 1)));
  }

  get lossRate(): number {
    return this.count + this.missed ? this.missed / (this.count + this.missed) : 0;
  }

  /** The q-quantile of lateness (ms; 0 for on time), from the buckets. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    let seen = this.onTime;
    const want = q * this.count;
    if (seen >= want) return 0;
    for (let b = 0; b < BUCKETS; b++) {
      if (this.late[b] === 0) continue;
      if (seen + this.late[b] >= want) {
        // Log-linear within the bucket.
        const f = (want - seen) / this.late[b];
        return EDGES[b] * (EDGES[b + 1] / EDGES[b]) ** f;
      }
      seen += this.late[b];
    }
    return this.maxMs();
  }

  /** Upper edge of the highest bucket with a count (0 when none was late). */
  maxMs(): number {
    for (let b = BUCKETS - 1; b >= 0; b--) if (this.late[b] > 0) return EDGES[b + 1];
    return 0;
  }

  snapshot(): LatenessSnapshot {
    const buckets: [number, number][] = [];
    for (let b = 0; b < BUCKETS; b++) if (this.late[b] > 0) buckets.push([round3(EDGES[b + 1]), this.late[b]]);
    return { count: this.count, missed: this.missed, lossRate: this.lossRate, meanMs: round3(this.meanMs), stdMs: round3(this.stdMs), onTime: this.onTime, buckets };
  }

  /** Rebuilds the statistics a snapshot describes (another process's, or a saved one). */
  static fromSnapshot(s: LatenessSnapshot): LatenessStats {
    const out = new LatenessStats();
    out.count = s.count;
    out.missed = s.missed;
    out.onTime = s.onTime;
    out.sum = s.meanMs * s.count;
    out.sumSq = s.count > 1 ? s.stdMs * s.stdMs * (s.count - 1) + s.count * s.meanMs * s.meanMs : s.meanMs * s.meanMs * s.count;
    for (const [edge, n] of s.buckets) {
      const b = Math.round(PER_OCTAVE * Math.log2(edge / FIRST_EDGE_MS)) - 1;
      if (b >= 0 && b < BUCKETS) out.late[b] += n;
    }
    return out;
  }

  /**
   * Pr(lateness > x). Within the measured range, from the buckets; past the
   * 99th percentile, never less than an exponential tail fitted to the top
   * 1 % (its mean excess over that percentile), so that what one month's
   * target needs (chances of 1e-6 and below, rarely seen in a day's
   * heartbeats) comes from the shape of the tail rather than from its
   * last observed value. Below zero it is taken as 1 (a heartbeat may come
   * early, but a detector is not credited for it).
   */
  survival(xMs: number): number {
    if (this.count === 0) return xMs < 0 ? 1 : 0;
    if (xMs <= FIRST_EDGE_MS) return xMs < 0 ? 1 : (this.count - this.onTime) / this.count;
    const c = (this.cache ??= this.prepare());
    const b = Math.ceil(PER_OCTAVE * Math.log2(xMs / FIRST_EDGE_MS)) - 1;
    // Buckets wholly above x, plus the share of x's own bucket above it (log-uniform within).
    let above = 0;
    if (b < BUCKETS) {
      above = c.above[b + 1];
      if (this.late[b] > 0) above += this.late[b] * (Math.log(EDGES[b + 1] / xMs) / Math.log(EDGES[b + 1] / EDGES[b]));
    }
    const empirical = above / this.count;
    const tail = c.tail;
    if (!tail || xMs <= tail.thresholdMs) return empirical;
    return Math.max(empirical, tail.fraction * Math.exp(-(xMs - tail.thresholdMs) / tail.meanExcessMs));
  }

  private prepare(): { above: Float64Array; tail: ReturnType<LatenessStats['fitTail']> } {
    const above = new Float64Array(BUCKETS + 2);
    for (let b = BUCKETS - 1; b >= 0; b--) above[b] = above[b + 1] + this.late[b];
    return { above, tail: this.fitTail() };
  }

  /** The exponential tail past the 99th percentile: its threshold, the share of heartbeats beyond it, their mean excess. */
  tail(): { thresholdMs: number; fraction: number; meanExcessMs: number } | null {
    return (this.cache ??= this.prepare()).tail;
  }

  private fitTail(): { thresholdMs: number; fraction: number; meanExcessMs: number } | null {
    const t = this.quantile(0.99);
    if (t <= 0) return null;
    let n = 0;
    let excess = 0;
    for (let b = 0; b < BUCKETS; b++) {
      if (this.late[b] === 0 || EDGES[b + 1] <= t) continue;
      // A bucket's values at its geometric middle (the part above the threshold, for the bucket that holds it).
      const lo = Math.max(EDGES[b], t);
      const share = EDGES[b] >= t ? 1 : Math.log(EDGES[b + 1] / t) / Math.log(EDGES[b + 1] / EDGES[b]);
      const k = this.late[b] * share;
      n += k;
      excess += k * (Math.sqrt(lo * EDGES[b + 1]) - t);
    }
    if (n <= 0) return null;
    // Never thinner than the spread seen overall: a handful of top values does not make a short tail.
    return { thresholdMs: t, fraction: n / this.count, meanExcessMs: Math.max(excess / n, this.stdMs / 4, FIRST_EDGE_MS) };
  }
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
