import { sourceKey } from './source-key.js';
import { TokenBucket } from '../core/token-bucket.js';

/** Limits on who may open a connection (0 turns a limit off). */
export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerSource: number;
  handshakesPerSecond: number;
  handshakeBurst: number;
  /** Connections accepted but not yet open (HELLO not yet answered) held at once. */
  maxPendingHandshakes: number;
  /** The same from one source address: one source must not fill the gateway's whole handshake backlog. */
  maxPendingHandshakesPerSource: number;
  /**
   * The share of the handshake rate (and burst) one source address may take once the bucket is
   * less than half full (absent or 1: no share, one source may take it all).
   */
  handshakeSourceShare?: number;
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
  /** Refused for taking more than its share of the handshake rate (handshakeSourceShare) while it was contended. */
  refusedRatePerSource: number;
  refusedPending: number;
  refusedPendingPerSource: number;
}

/** Refused sockets still open from one source (their GOAWAY or 503 written, the peer given a second to close). */
export const MAX_REFUSED_OPEN_PER_SOURCE = 64;

/** The same from all sources. */
export const MAX_REFUSED_OPEN = 1024;

/** The longest a backlog of refused handshakes is spread over. */
const MAX_SPREAD_MS = 60_000;

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
  readonly stats: AdmissionStats = { admitted: 0, refusedTotal: 0, refusedPerSource: 0, refusedRate: 0, refusedRatePerSource: 0, refusedPending: 0, refusedPendingPerSource: 0 };
  /**
   * A source's share of the handshake rate, as a GCRA: when its next handshake is due at its share's
   * pace (ms), for the sources that took one while the bucket was contended. An entry at or before
   * now is the same as none: they are swept when the map doubles.
   */
  private readonly sourceTat = new Map<string, number>();
  private sweepSourcesAt = 1024;
  /** Refused sockets still open, in all and by source (see holdRefused). */
  private refusedOpen = 0;
  private readonly refusedOpenPerSource = new Map<string, number>();
  /** Connections admitted and not yet open, in all and by source. */
  private pending = 0;
  private readonly pendingPerSource = new Map<string, number>();
  /** Handshakes finished and connections refused, in the current and the previous second. */
  private second = 0;
  private openedPerS = [0, 0];
  private refused = [0, 0];

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
  admit(address: string, now: number): Refusal | null {
    const source = sourceKey(address);
    const l = this.limits;
    this.roll(now);
    if (l.maxConnections > 0 && this.total >= l.maxConnections) {
      this.stats.refusedTotal++;
      return { reason: 'too-many-connections', message: `the gateway holds its limit of ${l.maxConnections} connections`, retryAfterMs: this.spread(FULL_RETRY_MS) };
    }
    const mine = this.perSource.get(source) ?? 0;
    if (l.maxConnectionsPerSource > 0 && mine >= l.maxConnectionsPerSource) {
      this.stats.refusedPerSource++;
      return { reason: 'too-many-connections', message: `${source} holds its limit of ${l.maxConnectionsPerSource} connections`, retryAfterMs: this.spread(FULL_RETRY_MS) };
    }
    const myPending = this.pendingPerSource.get(source) ?? 0;
    if (l.maxPendingHandshakesPerSource > 0 && myPending >= l.maxPendingHandshakesPerSource) {
      // 500 idle sockets from one address, reopened as they timed out, once held the whole
      // backlog and locked every other source out (issue 20). Its own share is far smaller.
      this.stats.refusedPendingPerSource++;
      return { reason: 'rate-limited', message: `${source} has ${myPending} handshakes in progress`, retryAfterMs: this.spread(2000) };
    }
    if (l.maxPendingHandshakes > 0 && this.pending >= l.maxPendingHandshakes) {
      // The gateway is already handshaking as fast as it can: more in parallel would
      // only make every handshake slower (and time out). Come back when the backlog has cleared.
      this.stats.refusedPending++;
      this.refused[1]++;
      return { reason: 'rate-limited', message: `${this.pending} handshakes are already in progress`, retryAfterMs: this.backlogHint() };
    }
    let sourceDue = -1;
    const share = l.handshakeSourceShare ?? 1;
    if (this.bucket && share < 1 && this.bucket.available(now) < this.bucket.burst / 2) {
      // The bucket is contended: one source takes at most its share. A connect-and-close loop from
      // one address (nothing held, nothing pending) once took every token, and every other address
      // was refused for as long as it ran.
      const gap = 1000 / (share * this.bucket.ratePerSec);
      const burstMs = gap * Math.max(1, Math.floor(share * this.bucket.burst));
      const tat = Math.max(now, this.sourceTat.get(source) ?? now);
      if (tat - now >= burstMs) {
        this.stats.refusedRatePerSource++;
        return {
          reason: 'rate-limited',
          message: `${source} takes more than its share of ${l.handshakesPerSecond} new connections a second`,
          retryAfterMs: Math.ceil(tat - now - burstMs + gap) + Math.round(this.random() * Math.max(1000, burstMs)),
        };
      }
      sourceDue = tat + gap;
    }
    if (this.bucket && !this.bucket.take(now)) {
      this.stats.refusedRate++;
      this.refused[1]++;
      // Everyone refused now would see the same wait: spread them over the time the bucket needs to
      // admit them all (those refused in the last second) at its rate, at least one burst's refill.
      // Spread over one refill only, a storm ten times the burst was told to come back within a
      // second, nine in ten were refused again, and again (the backoff alone thinned them out).
      const refillMs = (1000 * this.bucket.burst) / this.bucket.ratePerSec;
      const waiting = Math.max(this.refused[0], this.refused[1]);
      const spreadMs = Math.max(1000, refillMs, Math.min(MAX_SPREAD_MS, (1000 * waiting) / this.bucket.ratePerSec));
      return {
        reason: 'rate-limited',
        message: `more than ${l.handshakesPerSecond} new connections a second`,
        retryAfterMs: this.bucket.waitMs(now) + Math.round(this.random() * spreadMs),
      };
    }
    if (sourceDue >= 0) this.chargeSource(source, sourceDue, now);
    this.total++;
    this.pending++;
    this.pendingPerSource.set(source, myPending + 1);
    this.perSource.set(source, mine + 1);
    this.stats.admitted++;
    return null;
  }

  /**
   * A refused socket is answered (GOAWAY, or a 503) and given a second to close: true, and it is
   * counted until refusedClosed, or false when its source already has MAX_REFUSED_OPEN_PER_SOURCE
   * such sockets open (or all have MAX_REFUSED_OPEN), and it is to be dropped at once, unanswered.
   * A peer that neither reads nor closes, refused as fast as it connects, once had the gateway
   * hold a socket for each refusal of the last second: past the file limit, accept() failed for all.
   */
  holdRefused(address: string): boolean {
    const source = sourceKey(address);
    const mine = this.refusedOpenPerSource.get(source) ?? 0;
    if (mine >= MAX_REFUSED_OPEN_PER_SOURCE || this.refusedOpen >= MAX_REFUSED_OPEN) return false;
    this.refusedOpenPerSource.set(source, mine + 1);
    this.refusedOpen++;
    return true;
  }

  /** A socket holdRefused counted has closed. */
  refusedClosed(address: string): void {
    const source = sourceKey(address);
    const n = (this.refusedOpenPerSource.get(source) ?? 1) - 1;
    if (n <= 0) this.refusedOpenPerSource.delete(source);
    else this.refusedOpenPerSource.set(source, n);
    this.refusedOpen--;
  }

  private chargeSource(source: string, due: number, now: number): void {
    this.sourceTat.set(source, due);
    if (this.sourceTat.size < this.sweepSourcesAt) return;
    for (const [s, t] of this.sourceTat) if (t <= now) this.sourceTat.delete(s);
    this.sweepSourcesAt = Math.max(1024, 2 * this.sourceTat.size);
  }

  /** Connections admitted and not yet open: handed to the gateway, or still in their TLS handshake or WebSocket upgrade. */
  get pendingHandshakes(): number {
    return this.pending;
  }

  /** An admitted connection finished its handshake (WELCOME sent). */
  opened(address: string, now: number): void {
    const source = sourceKey(address);
    this.roll(now);
    this.pending--;
    this.donePending(source);
    this.openedPerS[1]++;
  }

  private roll(now: number): void {
    const s = Math.floor(now / 1000);
    if (s === this.second) return;
    const gap = s - this.second;
    this.openedPerS = gap === 1 ? [this.openedPerS[1], 0] : [0, 0];
    this.refused = gap === 1 ? [this.refused[1], 0] : [0, 0];
    this.second = s;
  }

  /**
   * A retry hint for a backlog: spread the refused over the time the gateway,
   * at the rate it is opening connections now, needs to take them all
   * (at least 2 s, at most 60 s), so they return about as fast as it can serve.
   */
  private backlogHint(): number {
    const rate = Math.max(50, this.openedPerS[0], this.openedPerS[1]);
    const waiting = Math.max(this.refused[0], this.refused[1]) + this.pending;
    const spreadMs = Math.min(MAX_SPREAD_MS, Math.max(2000, (1000 * waiting) / rate));
    return Math.round(500 + this.random() * spreadMs);
  }

  /** A connection admitted from `source` ended (`wasOpen`: after its handshake finished). */
  release(address: string, wasOpen: boolean): void {
    const source = sourceKey(address);
    if (!wasOpen) {
      this.pending--;
      this.donePending(source);
    }
    this.total--;
    const n = (this.perSource.get(source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(source);
    else this.perSource.set(source, n);
  }

  private donePending(source: string): void {
    const n = (this.pendingPerSource.get(source) ?? 1) - 1;
    if (n <= 0) this.pendingPerSource.delete(source);
    else this.pendingPerSource.set(source, n);
  }

  private spread(meanMs: number): number {
    return Math.round(meanMs * (0.5 + this.random()));
  }
}
