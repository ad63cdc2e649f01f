import type { LivenessDetector, Verdict } from './liveness-detector.js';
import { OptionError } from '../protocol/errors.js';

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
 * heartbeat has come by EA + `lateMs`. Lost heartbeats are recognised as
 * skipped slots (k is the slot nearest the arrival on the lattice), so a loss
 * does not disturb the estimate; a heartbeat over half an interval late is
 * taken for one after a loss until the next lands in its slot, and then moved
 * back (see relabel); one that lands at or before the last one's slot even
 * so (held back with it, or the client's probe) proves life, the next is
 * expected no sooner than an interval after it, and the lattice restarts from
 * that next one. Anything other than a heartbeat proves life but restarts the
 * lattice (the client's scheduler counts from its last send).
 *
 * A heartbeat far later than its slot is ambiguous: delayed on the way (the
 * lattice stands) or sent late (the client's scheduler counts from that send,
 * so the lattice has moved). Until the next heartbeat tells which, the next one
 * is expected no sooner than one interval after the late one, so a late send
 * followed by a loss keeps the nominal bound of a fixed detector (it once
 * convicted there). When the next heartbeat keeps the new phase, the lattice
 * is re-anchored on it. "Far" is beyond a fiftieth of the interval, four
 * times the mean deviation seen, and half of (lateMs − interval): a late
 * send below that cannot turn one loss into a conviction, so ordinary
 * jitter and the network's tail never trigger it.
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

/**
 * A lateness that follows the interval, as the silence detector's bound does:
 * (missBudget − 1) × interval + graceMs. A client that announces a longer
 * interval (the adaptive heartbeat) is then allowed the same number of lost
 * heartbeats as before, where a fixed lateMs would convict it at the first.
 */
export interface FreshnessBudget {
  missBudget: number;
  graceMs: number;
}

/** lateMs fixed, or following the interval (`budget`); suspectLateMs is capped at lateMs in the latter. */
export type FreshnessSettings = Partial<FreshnessOptions> & ({ lateMs: number } | { budget: FreshnessBudget });

export class FreshnessDetector implements LivenessDetector {
  // A number from the start, so stored as an unboxed double (see SilenceDetector).
  lastHeardAt = 0;
  private readonly offsets: Float64Array;
  private next = 0;
  private count = 0;
  private sum = 0;
  /** Lattice index of the last heartbeat in this segment, and its arrival. */
  private k = -1;
  private lastBeatAt = 0;
  private suspectedAt = -1;
  /** Mean absolute deviation of arrivals from their slots (moving average). */
  private deviation = 0;
  /** Arrival of a heartbeat far later than its slot, until the next one says whether the lattice moved (-1: none). */
  private lateBeatAt = -1;
  /** Arrival of the last heartbeat held back or sent after the last one's slot (see heard), until the next (-1: none). */
  private heldAt = -1;
  /** Slots the last heartbeat's label advanced by (1: none skipped), so relabel() can undo a skip. */
  private lastSkip = 1;
  readonly o: FreshnessOptions;
  private readonly budget: FreshnessBudget | null;
  private readonly suspectWanted: number | undefined;

  constructor(
    public intervalMs: number,
    now: number,
    opts: FreshnessSettings,
  ) {
    this.budget = opts.lateMs === undefined && 'budget' in opts ? opts.budget : null;
    this.suspectWanted = opts.suspectLateMs;
    const lateMs = this.budget ? lateFor(this.budget, intervalMs) : opts.lateMs!;
    this.o = {
      lateMs,
      suspectLateMs: this.budget ? Math.min(lateMs, opts.suspectLateMs ?? intervalMs / 2) : (opts.suspectLateMs ?? Math.min(lateMs, intervalMs / 2)),
      windowSize: opts.windowSize ?? 32,
    };
    if (!(this.o.lateMs > 0 && this.o.suspectLateMs > 0 && this.o.suspectLateMs <= this.o.lateMs)) {
      throw new OptionError('detector', 'freshness needs 0 < suspectLateMs <= lateMs');
    }
    if (!(Number.isInteger(this.o.windowSize) && this.o.windowSize >= 1)) throw new OptionError('detector.windowSize', 'must be a whole number, at least 1');
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
    const I = this.intervalMs;
    if (this.k >= 0 && this.count > 0) {
      this.relabel(now);
      // Nearest to the last heartbeat's slot or before it even so: held back with the one before (a
      // burst after a stall of the path or of this process), or the client's probe after a PONG it did
      // not get within pongTimeoutMs, which its scheduler counts the next heartbeat from. The two cannot
      // be told apart: a heartbeat delayed on the way delays its PONG, and the probe then follows it on
      // the same stream, read a moment after it or with it. Either way it was sent before now, and so
      // the client's next heartbeat goes out within an interval of now: it is expected no sooner, and
      // the lattice starts again from it, as after a data frame. Taken as the next slots, a burst filled
      // the window with slots it never had; ignored, a probe moved the client's lattice by up to
      // pongTimeoutMs unseen, and shifts below "far" (a probe read soon after its heartbeat)
      // accumulated in the window: with a few seconds of jitter the expected time fell seconds behind
      // the client's and a live client whose every delay was within graceMs was convicted (missBudget 1).
      if (Math.round((now - this.sum / this.count) / I) <= this.k) {
        this.heldAt = now;
        return;
      }
      if (this.heldAt >= 0) {
        this.restart();
        this.beat(now);
        return;
      }
      const k = this.slotOf(now);
      const lateness = now - (this.sum / this.count + k * I);
      const pending = this.lateBeatAt;
      this.lateBeatAt = -1;
      if (pending >= 0 && lateness > this.farMs() && Math.abs(now - pending - Math.max(1, Math.round((now - pending) / I)) * I) <= this.farMs()) {
        // Late again, and on the late one's phase: the client's lattice moved there.
        this.restart();
        this.beat(pending);
      } else if (lateness > this.farMs()) {
        this.lateBeatAt = now;
      } else {
        this.deviation += (Math.abs(lateness) - this.deviation) / 16;
      }
    }
    this.beat(now);
  }

  /** How far past its slot a heartbeat must come to be taken for a possible late send. */
  private farMs(): number {
    // A late send of δ then one loss convicts only if δ > lateMs − interval, so lateness below half
    // of that is left to the lattice (the network's tail would otherwise widen every deadline).
    return Math.max(this.intervalMs / 50, 4 * this.deviation, (this.o.lateMs - this.intervalMs) / 2);
  }

  /**
   * The lattice slot of a heartbeat arriving at `now`: the one nearest to it on
   * the lattice, at least the one after the last heartbeat's (heartbeats lost
   * on the way show as a skip). Nearest on the lattice, not the gap since the
   * previous arrival: with that, a previous heartbeat late by a few hundred ms
   * made an on-time one look like it followed a loss.
   */
  private slotOf(now: number): number {
    return Math.max(this.k + 1, Math.round((now - this.sum / this.count) / this.intervalMs));
  }

  /**
   * A heartbeat more than half an interval late lands nearer the slot after
   * its own, and is taken for one that followed a loss. When the next one
   * lands in (or before) that same slot, it was late, not after a loss: move
   * its sample back. Left as it was, every later sample would be one slot off
   * and the expected time drifted an interval late over a window's worth of
   * heartbeats, letting a dead peer live that much longer (and the deviation
   * it left hid real late sends).
   */
  private relabel(now: number): void {
    if (this.lastSkip <= 1) return;
    const nearest = Math.round((now - this.sum / this.count) / this.intervalMs);
    if (nearest > this.k) return;
    const back = Math.min(this.lastSkip - 1, this.k - nearest + 1);
    const prev = (this.next - 1 + this.offsets.length) % this.offsets.length;
    this.offsets[prev] += back * this.intervalMs;
    this.sum += back * this.intervalMs;
    this.k -= back;
    this.lastSkip -= back;
  }

  private beat(now: number): void {
    if (this.k < 0) {
      this.k = 0;
      this.offsets.fill(0);
      this.lastSkip = 1;
    } else {
      const k = this.slotOf(now);
      this.lastSkip = k - this.k;
      this.k = k;
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
    this.lateBeatAt = this.heldAt = -1;
  }

  setIntervalMs(ms: number): void {
    if (ms === this.intervalMs) return;
    this.intervalMs = ms;
    if (this.budget) {
      this.o.lateMs = lateFor(this.budget, ms);
      this.o.suspectLateMs = Math.min(this.o.lateMs, this.suspectWanted ?? ms / 2);
    }
    this.restart();
  }

  /** When the next heartbeat is expected to arrive. */
  expectedAt(): number {
    // No lattice yet (just connected, or data restarted it): one interval after the last frame.
    if (this.count === 0) return this.lastHeardAt + this.intervalMs;
    const onLattice = this.sum / this.count + (this.k + 1) * this.intervalMs;
    // After a far-late heartbeat the next may be one interval after it (a late send), not before; so
    // after one held back or a probe (see heard).
    const after = Math.max(this.lateBeatAt, this.heldAt);
    return after >= 0 ? Math.max(onLattice, after + this.intervalMs) : onLattice;
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

  nextCheckAt(_now: number): number {
    // A suspicion not yet raised is checked even if its time has passed (a re-arm after a stall
    // came first): the probe it sends is what finds a rebooted peer fast.
    return this.suspectedAt !== this.lastHeardAt ? Math.min(this.expectedAt() + this.o.suspectLateMs, this.deadline()) : this.deadline();
  }
}

function lateFor(b: FreshnessBudget, intervalMs: number): number {
  return Math.max(1, (b.missBudget - 1) * intervalMs + b.graceMs);
}
