import type { ProbeOptions } from './heartbeat-policy.js';
import { excusedEnd } from './stall-guard.js';

/**
 * The active side of a heartbeat: decides when to send a PING and when the
 * link is dead. Pure; the owner calls `poll(now)` at `nextWakeAt()` and acts
 * on the answer.
 *
 * - A PING goes out only when the link was idle for a whole interval in either
 *   direction: outbound traffic already keeps NAT mappings fresh, inbound
 *   traffic already proves the peer alive, and both are needed to skip one.
 * - After a PING, any inbound frame within pongTimeoutMs settles it.
 * - Otherwise the link is suspect: `probeCount` quick probes follow, each
 *   given probeIntervalMs, before the link is declared dead. This learns the
 *   network's state in seconds instead of a further whole interval.
 */
export type HeartbeatAction = 'none' | 'ping' | 'probe' | 'dead';
export type HeartbeatPhase = 'healthy' | 'awaiting' | 'suspect' | 'dead';

export class HeartbeatScheduler {
  // Numbers from the start, so stored as unboxed doubles (see SilenceDetector).
  private lastSentAt = 0;
  private lastReceivedAt = 0;
  private waitUntil = -1;
  /** When the current wait began: waitUntil moves later by an excused stall (see poll). */
  private waitFrom = 0;
  private probesSent = 0;
  private isDead = false;

  constructor(
    private intervalMs: number,
    private readonly probes: ProbeOptions,
    now: number,
  ) {
    this.lastSentAt = now;
    this.lastReceivedAt = now;
  }

  get phase(): HeartbeatPhase {
    if (this.isDead) return 'dead';
    if (this.waitUntil < 0) return 'healthy';
    return this.probesSent > 0 ? 'suspect' : 'awaiting';
  }

  get interval(): number {
    return this.intervalMs;
  }

  get lastHeardAt(): number {
    return this.lastReceivedAt;
  }

  setIntervalMs(ms: number): void {
    this.intervalMs = ms;
  }

  sent(now: number): void {
    this.lastSentAt = now;
  }

  /**
   * Records inbound traffic. Returns true when this settled an outstanding
   * PING, which can move the next wake-up earlier than the one armed (the
   * owner must re-arm); otherwise the next wake-up only moves later.
   */
  received(now: number): boolean {
    this.lastReceivedAt = now;
    if (this.waitUntil < 0) return false;
    this.waitUntil = -1;
    this.probesSent = 0;
    return true;
  }

  /**
   * Start a quick check now, whatever the interval says (the network changed,
   * or the application wants proof before acting). Returns false if a check
   * is already running.
   */
  checkNow(now: number): boolean {
    if (this.isDead || this.waitUntil >= 0) return false;
    this.wait(now, this.probes.probeIntervalMs);
    this.probesSent = 1;
    return true;
  }

  /**
   * `owner`, if given, says how much of a span its own process spent stalled (the gateway's stall
   * guard): that part of the last wait is added to it, up to the wait's length. An answer that came
   * during a stall is read after it, but one that came while the reading itself blocked the loop
   * is not read before this runs.
   */
  poll(now: number, owner?: { stalledWithin(from: number, to: number): number }): HeartbeatAction {
    if (this.isDead) return 'none';
    if (this.waitUntil >= 0) {
      if (now < this.waitUntil) return 'none';
      if (this.probesSent < this.probes.probeCount) {
        this.probesSent++;
        this.wait(now, this.probes.probeIntervalMs);
        return 'probe';
      }
      if (owner) {
        // A probe's wait, or the PING's with no probes.
        const end = excusedEnd(this.waitFrom, this.probesSent > 0 ? this.probes.probeIntervalMs : this.probes.pongTimeoutMs, now, owner);
        if (end !== null) {
          this.waitUntil = end;
          return 'none';
        }
      }
      this.isDead = true;
      return 'dead';
    }
    if (now - this.lastSentAt >= this.intervalMs || now - this.lastReceivedAt >= this.intervalMs) {
      this.wait(now, this.probes.pongTimeoutMs);
      return 'ping';
    }
    return 'none';
  }

  private wait(now: number, ms: number): void {
    this.waitFrom = now;
    this.waitUntil = now + ms;
  }

  nextWakeAt(): number {
    if (this.isDead) return Infinity;
    if (this.waitUntil >= 0) return this.waitUntil;
    return Math.min(this.lastSentAt, this.lastReceivedAt) + this.intervalMs;
  }
}
