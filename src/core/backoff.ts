import { dropUndefined, MAX_TIMER_MS } from './heartbeat-policy.js';
import { OptionError } from '../protocol/errors.js';

/**
 * Reconnect delays: exponential growth with full jitter (AWS Architecture
 * Blog, "Exponential Backoff and Jitter", 2015). The ceiling is capped first
 * and the jitter applied after, so a fleet that has failed many times spreads
 * over [minDelayMs, maxDelayMs] instead of piling up at the cap, which is what
 * jitter-then-cap does (socket.io-client's backo2).
 */
export interface BackoffOptions {
  /** Ceiling of the first delay. */
  initialDelayMs: number;
  /** Ceiling no delay exceeds. */
  maxDelayMs: number;
  /** Floor every delay respects, so a storm never retries in a tight loop. */
  minDelayMs: number;
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialDelayMs: 1000,
  maxDelayMs: 30_000,
  minDelayMs: 100,
  factor: 2,
};

export class Backoff {
  readonly opts: BackoffOptions;
  private attempt = 0;

  constructor(opts: Partial<BackoffOptions> = {}, private readonly random: () => number = Math.random) {
    // An explicit undefined means "the default", not NaN delays.
    this.opts = { ...DEFAULT_BACKOFF, ...dropUndefined(opts) };
    // A NaN delay arms setTimeout(NaN), which fires after 1 ms (a tight reconnect loop); one above
    // the timer's bound fires at once, again and again.
    for (const k of ['initialDelayMs', 'maxDelayMs', 'minDelayMs'] as const) {
      const v = this.opts[k];
      if (!(Number.isFinite(v) && v >= 0 && v <= MAX_TIMER_MS)) throw new OptionError(`reconnect.${k}`, `must be a number from 0 to ${MAX_TIMER_MS} (got ${v})`);
    }
    if (!(Number.isFinite(this.opts.factor) && this.opts.factor >= 1)) throw new OptionError('reconnect.factor', `must be a finite number >= 1 (got ${this.opts.factor})`);
    if (this.opts.minDelayMs > this.opts.maxDelayMs) throw new OptionError('reconnect.minDelayMs', 'exceeds maxDelayMs');
  }

  get attempts(): number {
    return this.attempt;
  }

  /** The ceiling for attempt n (0-based), before jitter. */
  ceiling(n: number): number {
    const { initialDelayMs, maxDelayMs, factor } = this.opts;
    // 0 × factor^n is 0, but a large factor overflows factor^n to Infinity, and 0 × Infinity is NaN
    // (a NaN delay arms setTimeout(NaN): a reconnect every millisecond).
    if (initialDelayMs === 0) return 0;
    // The power uncut: an overflow to Infinity is capped like any ceiling above maxDelayMs, where an
    // exponent cut at 64 held a factor near 1 far below it (1.01^64 = 1.89: 189 ms for ever from 100).
    return Math.min(maxDelayMs, initialDelayMs * Math.pow(factor, n));
  }

  /** The delay before the next attempt. */
  next(): number {
    const ceiling = this.ceiling(this.attempt++);
    return Math.max(this.opts.minDelayMs, Math.floor(this.random() * ceiling));
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** A deterministic random source (mulberry32) for simulations and tests. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
