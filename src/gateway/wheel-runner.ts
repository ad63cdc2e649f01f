import type { Clock, Timers, TimerHandle } from '../core/clock.js';
import type { TimerWheel, WheelTimer } from '../core/timer-wheel.js';

/** A runner timer this late (ms) ran after a block of the loop: its expiry waits for the sockets to be read. */
export const DEFER_LATE_MS = 10;

/** What the runner reports about its own timeliness (see event-loop-guard.ts). */
export interface RunnerGuard {
  /** The runner's timer, due at `expectedAt`, runs at `now`; returns the stall seen, in ms (0 for none). */
  tick(expectedAt: number, now: number): number;
  /** Runs `fn` once the process has read its sockets (after Node's poll phase). */
  afterIo(fn: () => void): void;
  /**
   * The runner wakes after sitting idle (an empty wheel): no deadline was running meanwhile, so
   * what blocked the loop then is no stall of anyone's; the next tick() must not report it.
   */
  resumed?(): void;
}

/** The runner's own work since it started: constant per tick however long it runs. */
export interface RunnerStats {
  /** Timers armed (one per tick while the wheel holds anything). */
  arms: number;
  /** Times the runner woke and expired the wheel. */
  runs: number;
}

/**
 * Drives a TimerWheel from real (or injected) time: one timer for the whole
 * gateway, armed only while the wheel holds something, waking once per tick.
 * After a stall of the process (any block that made its timer DEFER_LATE_MS
 * late) the expiry waits until pending socket input is read, so peers whose
 * frames sat in the kernel meanwhile are heard first.
 *
 * Invariant: at most one pending timer, whatever the expiry callbacks do. A
 * callback that reschedules a connection calls kick(); during expiry that only
 * notes the wheel changed, and expire() arms once when it is done. (Arming in
 * kick() there, then again after advance(), orphaned one self-re-arming chain
 * per such tick: CPU per heartbeat grew with uptime, issue 18.)
 */
export class WheelRunner<T> {
  private handle: TimerHandle | null = null;
  private stopped = false;
  private expiring = false;
  /** True while the expiry waits for socket input after a stall (pending, though not a timer). */
  private deferred = false;
  private expectedAt = 0;
  readonly stats: RunnerStats = { arms: 0, runs: 0 };

  constructor(
    private readonly wheel: TimerWheel<T>,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly onExpire: (target: T, timer: WheelTimer<T>) => void,
    private readonly guard: RunnerGuard | null = null,
  ) {}

  /** Call after scheduling on the wheel, so a sleeping runner wakes up. */
  kick(): void {
    if (this.handle !== null || this.deferred || this.expiring || this.stopped || this.wheel.size === 0) return;
    // Nothing pending: the wheel was empty (while it holds anything, expire() re-arms).
    this.guard?.resumed?.();
    this.arm();
  }

  /** True while a timer (or a deferred expiry) is pending: the runner's one purpose. */
  get pending(): boolean {
    return this.handle !== null || this.deferred;
  }

  private arm(): void {
    const now = this.clock.now();
    // Whole milliseconds: Node keeps one timer list per distinct duration, and a
    // fractional delay (performance.now() is fractional) would make a new one per arm.
    const delay = Math.max(1, Math.ceil(this.wheel.nextTickAt() - now));
    this.expectedAt = now + delay;
    this.stats.arms++;
    this.handle = this.timers.setTimeout(this.run, delay);
  }

  private readonly run = (): void => {
    this.handle = null;
    if (this.stopped) return;
    const now = this.clock.now();
    // Deferred after any block, not only a recorded stall: one under the threshold still ran this
    // timer before the poll, and a deadline that passed during it convicted a peer whose frame sat
    // unread in the kernel (a 190 ms block, a PING that came 100 ms before its deadline). Waiting
    // for the read excuses nothing; it only judges by what came.
    if (this.guard && (this.guard.tick(this.expectedAt, now) > 0 || now - this.expectedAt >= DEFER_LATE_MS)) {
      this.deferred = true;
      const guard = this.guard;
      const deferredAt = this.clock.now();
      guard.afterIo(() => {
        this.deferred = false;
        if (this.stopped) return;
        // Reading what piled up may itself block the loop: that stall is recorded too, since this
        // expiry runs before the next read and the silences it prolonged are not the peers' doing.
        // (Not deferred again: a gateway always busy would then never expire anything.)
        guard.tick(deferredAt, this.clock.now());
        this.expire();
      });
      return;
    }
    this.expire();
  };

  private expire(): void {
    this.stats.runs++;
    this.expiring = true;
    try {
      this.wheel.advance(this.clock.now(), this.onExpire);
    } finally {
      this.expiring = false;
      if (this.wheel.size > 0 && !this.stopped && this.handle === null && !this.deferred) this.arm();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.handle !== null) this.timers.clearTimeout(this.handle);
    this.handle = null;
  }
}
