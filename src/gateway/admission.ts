import { TokenBucket } from '../core/token-bucket.js';

/** Limits on who may open a connection (0 turns a limit off). */
export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerSource: number;
  handshakesPerSecond: number;
  handshakeBurst: number;
}

export interface Refusal {
  reason: 'too-many-connections' | 'rate-limited';
  message: string;
  /** The hint for GOAWAY: when to try again, spread so refused clients do not return together. */
  retryAfterMs: number;
}

export interface AdmissionStats {
  admitted: number;
  refusedTotal: number;
  refusedPerSource: number;
  refusedRate: number;
}

/** How long a client refused for a full gateway waits, on average (spread ±50%). */
export const FULL_RETRY_MS = 10_000;

/**
 * Admission at accept time, before a single byte is read: connection count in
 * total and per source address, and a token bucket on new connections (the
 * handshake rate). Policy only; the gateway closes what this refuses.
 */
export class Admission {
  private total = 0;
  private readonly perSource = new Map<string, number>();
  private readonly bucket: TokenBucket | null;
  readonly stats: AdmissionStats = { admitted: 0, refusedTotal: 0, refusedPerSource: 0, refusedRate: 0 };

  constructor(
    readonly limits: AdmissionLimits,
    now: number,
    private readonly random: () => number = Math.random,
  ) {
    this.bucket = limits.handshakesPerSecond > 0 ? new TokenBucket(limits.handshakesPerSecond, Math.max(1, limits.handshakeBurst), now) : null;
  }

  get connections(): number {
    return this.total;
  }

  /** Counts the connection in and returns null, or says why it is refused (and counts nothing). */
  admit(source: string, now: number): Refusal | null {
    const l = this.limits;
    if (l.maxConnections > 0 && this.total >= l.maxConnections) {
      this.stats.refusedTotal++;
      return { reason: 'too-many-connections', message: `the gateway holds its limit of ${l.maxConnections} connections`, retryAfterMs: this.spread(FULL_RETRY_MS) };
    }
    const mine = this.perSource.get(source) ?? 0;
    if (l.maxConnectionsPerSource > 0 && mine >= l.maxConnectionsPerSource) {
      this.stats.refusedPerSource++;
      return { reason: 'too-many-connections', message: `${source} holds its limit of ${l.maxConnectionsPerSource} connections`, retryAfterMs: this.spread(FULL_RETRY_MS) };
    }
    if (this.bucket && !this.bucket.take(now)) {
      this.stats.refusedRate++;
      // Everyone refused now would see the same wait: spread them over the
      // time the bucket needs to admit a full burst again.
      const refillMs = (1000 * this.bucket.burst) / this.bucket.ratePerSec;
      return {
        reason: 'rate-limited',
        message: `more than ${l.handshakesPerSecond} new connections a second`,
        retryAfterMs: this.bucket.waitMs(now) + Math.round(this.random() * Math.max(1000, refillMs)),
      };
    }
    this.total++;
    this.perSource.set(source, mine + 1);
    this.stats.admitted++;
    return null;
  }

  /** A connection admitted from `source` ended. */
  release(source: string): void {
    this.total--;
    const n = (this.perSource.get(source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(source);
    else this.perSource.set(source, n);
  }

  private spread(meanMs: number): number {
    return Math.round(meanMs * (0.5 + this.random()));
  }
}
