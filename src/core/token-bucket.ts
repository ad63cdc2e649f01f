import { OptionError } from '../protocol/errors.js';
/**
 * A token bucket on an injected clock: `ratePerSec` tokens a second, at most
 * `burst` held. Pure: no timers, time comes in with each call.
 */
export class TokenBucket {
  // Numbers from the start, so stored as unboxed doubles (see SilenceDetector).
  private tokens = 0;
  private last = 0;

  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    now: number,
  ) {
    if (!(ratePerSec > 0) || !(burst >= 1)) throw new OptionError('limits', `a rate limit needs rate > 0 and burst >= 1 (got ${ratePerSec}, ${burst})`);
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.ratePerSec) / 1000);
      this.last = now;
    }
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until a token is available (0 if one is now). */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSec);
  }

  available(now: number): number {
    this.refill(now);
    return this.tokens;
  }
}
