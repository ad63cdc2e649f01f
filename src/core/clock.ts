import { MAX_TIMER_MS } from './heartbeat-policy.js';

/**
 * Time as the pure core sees it: a monotonic millisecond counter it is handed,
 * never read from the system itself, so tests can drive it to the millisecond.
 */
export interface Clock {
  now(): number;
}

export type TimerHandle = unknown;

/** The one-shot timer the I/O layers use; injectable for the same reason as Clock. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = { now: () => performance.now() };

export const systemTimers: Timers = {
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // Timers never keep a process alive on their own; open sockets and
    // servers do that.
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A clock and timers that move only when told to; timers fire in time order. */
export class ManualClock implements Clock, Timers {
  private t: number;
  private seq = 0;
  private timers: ManualTimer[] = [];
  /** Timers ever armed and fired: tests count work with them, not time. */
  armedCount = 0;
  firedCount = 0;

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  /**
   * Throws RangeError for a delay Node would not keep: NaN or past MAX_TIMER_MS, which Node fires
   * after 1 ms. Taken as given (NaN as never, 1e10 as 1e10 ms), a timer that overflowed in
   * production passed every clock-driven test. A negative delay (a deadline already past) fires
   * now, as in Node: that one means what it says.
   */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (!(ms <= MAX_TIMER_MS)) throw new RangeError(`ManualClock: setTimeout(${ms}): Node would fire it after 1 ms (a delay must be at most ${MAX_TIMER_MS})`);
    const timer: ManualTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.armedCount++;
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    if (handle) (handle as ManualTimer).cancelled = true;
  }

  /** Moves time forward by `ms` firing nothing, as for a process that was not running (a stall): what fell due fires late, at the next advance. */
  jump(ms: number): void {
    this.t += ms;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    this.advanceTo(this.t + ms);
  }

  advanceTo(target: number): void {
    for (;;) {
      let next: ManualTimer | undefined;
      for (const timer of this.timers) {
        if (timer.cancelled || timer.at > target) continue;
        if (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq)) next = timer;
      }
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next && !x.cancelled);
      this.t = Math.max(this.t, next.at);
      this.firedCount++;
      next.fn();
    }
    this.t = Math.max(this.t, target);
  }

  get pendingTimers(): number {
    return this.timers.filter((x) => !x.cancelled).length;
  }
}
