import { systemClock, systemTimers, type Clock, type Timers, type TimerHandle } from '../core/clock.js';

/**
 * Log lines a client can cause are rate-limited per reason: the first
 * `perInterval` of a key in each interval are written as usual, the rest only
 * counted, and one summary line per key says how many were held back when the
 * interval ends. (A sequenced flood closed as a slow consumer once wrote
 * 936,588 "message dropped" lines, 168 MB of log, in 40 s.) One timer at a
 * time, armed only while something is held back.
 */
export class LogLimiter {
  private windowStart = 0;
  private readonly counts = new Map<string, number>();
  private readonly held = new Map<string, number>();
  private timer: TimerHandle | null = null;

  constructor(
    private readonly summary: (key: string, held: number, intervalMs: number) => void,
    readonly intervalMs = 10_000,
    readonly perInterval = 20,
    private readonly clock: Clock = systemClock,
    private readonly timers: Timers = systemTimers,
  ) {
    this.windowStart = clock.now();
  }

  /** Whether to write this line of `key`; if not, it is counted for the summary. */
  allow(key: string): boolean {
    const now = this.clock.now();
    if (now - this.windowStart >= this.intervalMs) this.roll(now);
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    if (n <= this.perInterval) return true;
    this.held.set(key, (this.held.get(key) ?? 0) + 1);
    this.timer ??= this.timers.setTimeout(() => {
      this.timer = null;
      this.roll(this.clock.now());
    }, Math.max(1, this.windowStart + this.intervalMs - now));
    return false;
  }

  private roll(now: number): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    for (const [key, n] of this.held) this.summary(key, n, this.intervalMs);
    this.held.clear();
    this.counts.clear();
    this.windowStart = now;
  }

  /** Writes what is held back now (on shutdown). */
  flush(): void {
    this.roll(this.clock.now());
  }
}
