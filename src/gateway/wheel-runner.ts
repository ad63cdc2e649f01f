import type { Clock, Timers, TimerHandle } from '../core/clock.js';
import type { TimerWheel, WheelTimer } from '../core/timer-wheel.js';

/**
 * Drives a TimerWheel from real (or injected) time: one timer for the whole
 * gateway, armed only while the wheel holds something, waking once per tick.
 */
export class WheelRunner<T> {
  private handle: TimerHandle | null = null;
  private stopped = false;

  constructor(
    private readonly wheel: TimerWheel<T>,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly onExpire: (target: T, timer: WheelTimer<T>) => void,
  ) {}

  /** Call after scheduling on the wheel, so a sleeping runner wakes up. */
  kick(): void {
    if (this.handle !== null || this.stopped || this.wheel.size === 0) return;
    this.arm();
  }

  private arm(): void {
    const delay = Math.max(1, this.wheel.nextTickAt() - this.clock.now());
    this.handle = this.timers.setTimeout(this.run, delay);
  }

  private readonly run = (): void => {
    this.handle = null;
    this.wheel.advance(this.clock.now(), this.onExpire);
    if (this.wheel.size > 0 && !this.stopped) this.arm();
  };

  stop(): void {
    this.stopped = true;
    if (this.handle !== null) this.timers.clearTimeout(this.handle);
    this.handle = null;
  }
}
