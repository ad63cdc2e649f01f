import { OptionError } from '../protocol/errors.js';
/**
 * The gateway's own pauses. A process that stops running for a while (a long
 * synchronous task, a GC pause, a stop by the OS) reads nothing from its
 * sockets meanwhile, so every peer looks silent for that long; when the
 * process runs again, Node runs expired timers before it polls the sockets,
 * so a naive detector convicts healthy peers for the gateway's own stall.
 * This keeps the recent stalls so a detector can excuse the part of a
 * silence that overlaps them. Pure: times are passed in.
 */
export interface Stall {
  startAt: number;
  endAt: number;
}

export class StallGuard {
  private readonly stalls: Stall[] = [];
  count = 0;
  totalMs = 0;
  longestMs = 0;

  constructor(
    /** A delay shorter than this is ordinary jitter, not a stall. */
    readonly thresholdMs: number,
    /** Stalls remembered; older ones can no longer overlap any open silence worth excusing. */
    private readonly keep = 64,
  ) {
    if (!(thresholdMs > 0)) throw new OptionError('stallGuard.thresholdMs', `must be positive, got ${thresholdMs}`);
  }

  /**
   * A timer due at `expectedAt` ran at `now`, and the loop's own delay
   * monitor saw at most `measuredMs` of blocking since the last observation.
   * Records a stall ending now if either exceeds the threshold; returns its length (0 for none).
   */
  observe(expectedAt: number, now: number, measuredMs = 0): number {
    const ms = Math.max(now - expectedAt, measuredMs);
    if (ms < this.thresholdMs) return 0;
    this.record(now - ms, now);
    return ms;
  }

  record(startAt: number, endAt: number): void {
    const ms = endAt - startAt;
    if (!(ms > 0)) return;
    const last = this.stalls[this.stalls.length - 1];
    if (last && startAt <= last.endAt) {
      // Overlapping reports of one stall (the timer's lateness and the monitor's maximum).
      const added = Math.max(0, endAt - last.endAt);
      last.endAt = Math.max(last.endAt, endAt);
      last.startAt = Math.min(last.startAt, startAt);
      this.totalMs += added;
      this.longestMs = Math.max(this.longestMs, last.endAt - last.startAt);
      return;
    }
    this.stalls.push({ startAt, endAt });
    if (this.stalls.length > this.keep) this.stalls.shift();
    this.count++;
    this.totalMs += ms;
    this.longestMs = Math.max(this.longestMs, ms);
  }

  /** How much of [from, to] the process spent stalled. */
  stalledWithin(from: number, to: number): number {
    let sum = 0;
    for (let i = this.stalls.length - 1; i >= 0; i--) {
      const s = this.stalls[i];
      if (s.endAt <= from) break;
      sum += Math.max(0, Math.min(to, s.endAt) - Math.max(from, s.startAt));
    }
    return sum;
  }
}

/**
 * A wait of `ms` begun at `from` is over at `now`: its end moved later by what of [from, now] its
 * owner spent stalled, at most `ms` again (an answer that came during a stall is read after it, but
 * one that came while reading what piled up blocked the loop again is not read before this runs).
 * The new end if it is still ahead of `now`, or null: the wait is over.
 */
export function excusedEnd(from: number, ms: number, now: number, owner: { stalledWithin(from: number, to: number): number }): number | null {
  const end = from + ms + Math.min(ms, owner.stalledWithin(from, now));
  return now < end ? end : null;
}
