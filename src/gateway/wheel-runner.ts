import type { Clock, Timers, TimerHandle } from '../core/clock.js';
import type { TimerWheel, WheelTimer } from '../core/timer-wheel.js';

/** What the runner reports about its own timeliness (see event-loop-guard.ts). */
export interface RunnerGuard {
  /** The runner's timer, due at `expectedAt`, runs at `now`; returns the stall seen, in ms (0 for none). */
  tick(expectedAt: number, now: number): number;
  /** Runs `fn` once the process has read its sockets (after Node's poll phase). */
  afterIo(fn: () => void): void;
}

/**
 * Drives a TimerWheel from real (or injected) time: one timer for the whole
 * gateway, armed only while the wheel holds something, waking once per tick.
 * After a stall of the process the expiry waits until pending socket input is
 * read, so peers whose frames sat in the kernel meanwhile are heard first.
 */
export class WheelRunner<T> {
  private handle: TimerHandle | null = null;
  private stopped = false;
  private expectedAt = 0;

  constructor(
    private readonly wheel: TimerWheel<T>,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly onExpire: (target: T, timer: WheelTimer<T>) => void,
    private readonly guard: RunnerGuard | null = null,
  ) {}

  /** Call after scheduling on the wheel, so a sleeping runner wakes up. */
  kick(): void {
    if (this.handle !== null || this.stopped || this.wheel.size === 0) return;
    this.arm();
  }

  private arm(): void {
    const now = this.clock.now();
    const delay = Math.max(1, this.wheel.nextTickAt() - now);
    this.expectedAt = now + delay;
    this.handle = this.timers.setTimeout(this.run, delay);
  }

  private readonly run = (): void => {
    this.handle = null;
    if (this.guard && this.guard.tick(this.expectedAt, this.clock.now()) > 0) {
      // Keep the handle non-null so kick() does not arm a second timer meanwhile.
      this.handle = { deferred: true } as unknown as TimerHandle;
      this.guard.afterIo(() => {
        this.handle = null;
        if (!this.stopped) this.expire();
      });
      return;
    }
    this.expire();
  };

  private expire(): void {
    this.wheel.advance(this.clock.now(), this.onExpire);
    if (this.wheel.size > 0 && !this.stopped) this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.handle !== null && !(this.handle as { deferred?: boolean }).deferred) this.timers.clearTimeout(this.handle);
    this.handle = null;
  }
}
