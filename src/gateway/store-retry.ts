import type { Clock, TimerHandle, Timers } from '../core/clock.js';

/** What the retries have done; `pending` bounded by `maxPending`. */
export interface StoreRetryStats {
  /** Calls that failed at least once and are waiting for another try. */
  pending: number;
  /** Calls that failed once or more and then succeeded. */
  recovered: number;
  /** Calls given up: `maxPending` were already waiting (the oldest goes), or the owner stopped (a call made after, once, failed). */
  dropped: number;
}

export interface StoreRetryOptions {
  /** First wait after a failure (ms); doubled after each, up to maxDelayMs. */
  initialDelayMs: number;
  maxDelayMs: number;
  /**
   * Calls kept at once, in flight or waiting for another try: beyond it the
   * oldest waiting one is given up (and a new call, if all are in flight, is
   * made once, untracked).
   */
  maxPending: number;
  /** Most calls a wake-up starts (a resync after a long outage must not fire them all at once). */
  batch: number;
}

export const STORE_RETRY_DEFAULTS: StoreRetryOptions = { initialDelayMs: 1000, maxDelayMs: 60_000, maxPending: 100_000, batch: 1000 };

/** Between two batches of one wake-up's due calls (ms). */
const BATCH_GAP_MS = 10;

interface Chore {
  run: () => Promise<unknown>;
  /** Called when the call is given up (see `do`). */
  dropped: (() => void) | undefined;
  attempt: number;
  /** Waiting for another try (else in flight), due at `dueAt`. */
  waiting: boolean;
  dueAt: number;
}

/**
 * Store writes that must happen some time, though nobody waits for them: a
 * closed link's presence entry removed, an acknowledged message removed.
 * Fire-and-forget, one failure (a Redis blip) would leave an online ghost for
 * good, or a message the device already has re-sent and reported expired.
 * Each call is tried at once; a failed one is tried again with capped
 * exponential backoff until it succeeds. A call is keyed: a newer one for the
 * same key supersedes an older one, waiting or in flight. Every call given
 * here must be safe to repeat and harmless late (conditional on a connection
 * id, for example). One timer for all, armed only while something waits;
 * each wake-up tries everything due within half the initial delay.
 */
export class StoreRetry {
  readonly stats: StoreRetryStats = { pending: 0, recovered: 0, dropped: 0 };
  /** The latest call per key, in flight or waiting, until it succeeds. */
  private readonly chores = new Map<string, Chore>();
  private timer: TimerHandle | null = null;
  private timerAt = Infinity;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly o: StoreRetryOptions = STORE_RETRY_DEFAULTS,
  ) {}

  /** Calls tracked now, in flight or waiting. */
  get size(): number {
    return this.chores.size;
  }

  /**
   * Runs `run` now, and again later until it succeeds (see the class comment). `dropped` is called
   * if it is given up instead (beyond maxPending, or stopped; not when superseded): what its owner
   * keeps for it until it succeeds can go.
   */
  do(key: string, run: () => Promise<unknown>, dropped?: () => void): void {
    const untracked = () => {
      this.stats.dropped++;
      dropped?.();
    };
    if (this.stopped) {
      // The owner is closing, but calls still come: a handshake whose presence write was out answers
      // now, and its take-back (which puts back a live link of another node it displaced) must be
      // made. Made once, untracked: nothing is retried past the end.
      void Promise.resolve().then(run).catch(untracked);
      return;
    }
    const old = this.chores.get(key);
    if (!old && this.chores.size >= this.o.maxPending) {
      this.dropOldest();
      if (this.chores.size >= this.o.maxPending) {
        // Every tracked call is in flight (a store that queues while it is down): made once, untracked.
        void Promise.resolve().then(run).catch(untracked);
        return;
      }
    }
    if (old?.waiting) this.stats.pending--;
    const c: Chore = { run, dropped, attempt: 0, waiting: false, dueAt: 0 };
    this.chores.set(key, c);
    this.attempt(key, c);
  }

  /** Tries every waiting call now (the store is back: a resync). */
  retryNow(): void {
    if (this.stats.pending === 0) return;
    const now = this.clock.now();
    for (const c of this.chores.values()) if (c.waiting) c.dueAt = now;
    this.armAt(now, now);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.stats.dropped += this.stats.pending;
    this.stats.pending = 0;
    // In flight ones too: one that fails now is not tried again.
    const left = [...this.chores.values()];
    this.chores.clear();
    for (const c of left) c.dropped?.();
  }

  private attempt(key: string, c: Chore): void {
    let p: Promise<unknown>;
    try {
      p = c.run();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        if (this.chores.get(key) === c) this.chores.delete(key);
        if (c.attempt > 0) this.stats.recovered++;
      },
      () => {
        // Superseded meanwhile by a newer call for the key, or stopped: this one is moot.
        if (this.stopped || this.chores.get(key) !== c) return;
        const now = this.clock.now();
        c.dueAt = now + Math.min(this.o.maxDelayMs, this.o.initialDelayMs * 2 ** c.attempt);
        c.attempt++;
        c.waiting = true;
        this.stats.pending++;
        this.armAt(c.dueAt, now);
      },
    );
  }

  private dropOldest(): void {
    for (const [key, c] of this.chores) {
      if (!c.waiting) continue;
      this.chores.delete(key);
      this.stats.pending--;
      this.stats.dropped++;
      c.dropped?.();
      return;
    }
  }

  private armAt(due: number, now: number): void {
    if (due >= this.timerAt) return;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timerAt = due;
    this.timer = this.timers.setTimeout(this.run, Math.max(0, due - now));
  }

  private readonly run = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.clock.now();
    const horizon = now + this.o.initialDelayMs / 2;
    let next = Infinity;
    let started = 0;
    for (const [key, c] of [...this.chores]) {
      if (!c.waiting) continue;
      if (c.dueAt > horizon || started >= this.o.batch) {
        next = Math.min(next, started >= this.o.batch ? now + BATCH_GAP_MS : c.dueAt);
        continue;
      }
      started++;
      c.waiting = false;
      this.stats.pending--;
      this.attempt(key, c);
    }
    if (next < Infinity) this.armAt(next, now);
  };
}
