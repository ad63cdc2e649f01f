/**
 * Round-trip time from bare PING/PONG. Bare heartbeats carry no sequence
 * number (to stay 2 bytes on TCP), so a PONG is matched to the oldest
 * unanswered PING: the peer answers every PING, in order, on an ordered
 * stream. Smoothing follows RFC 6298 (SRTT with alpha 1/8, RTTVAR with 1/4).
 */
export interface RttSample {
  sampleMs: number;
  srttMs: number;
  rttvarMs: number;
  minMs: number;
}

const MAX_OUTSTANDING = 16;

export class RttTracker {
  private readonly sentAt: number[] = [];
  private srtt = -1;
  private rttvar = 0;
  private min = Infinity;
  private last = -1;

  pingSent(now: number): void {
    // A peer that stops answering must not grow this without bound; past the
    // cap the matching is unreliable, so start over.
    if (this.sentAt.length >= MAX_OUTSTANDING) this.sentAt.length = 0;
    this.sentAt.push(now);
  }

  /** Returns the sample, or undefined for a PONG nobody was waiting for. */
  pongReceived(now: number): RttSample | undefined {
    const sent = this.sentAt.shift();
    if (sent === undefined) return undefined;
    const r = Math.max(0, now - sent);
    if (this.srtt < 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.min = Math.min(this.min, r);
    this.last = r;
    return this.current()!;
  }

  /** Forget outstanding pings (the link they were sent on is gone). */
  clearOutstanding(): void {
    this.sentAt.length = 0;
  }

  get outstanding(): number {
    return this.sentAt.length;
  }

  /** The smoothed RTT (ms), or undefined before the first sample; allocates nothing (the client reads it per heartbeat). */
  get srttMs(): number | undefined {
    return this.last < 0 ? undefined : this.srtt;
  }

  current(): RttSample | undefined {
    if (this.last < 0) return undefined;
    return { sampleMs: this.last, srttMs: this.srtt, rttvarMs: this.rttvar, minMs: this.min };
  }
}
