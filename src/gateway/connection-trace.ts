/** What a traced connection records: heartbeats and data either way, interval changes, suspicions. */
export type TraceKind = 'ping-in' | 'ping-out' | 'pong-in' | 'data-in' | 'data-out' | 'interval' | 'suspect' | 'state';

export interface TracePoint {
  /** Monotonic ms (the gateway's clock). */
  at: number;
  kind: TraceKind;
  /** RTT for pong-in, the new interval for interval. */
  value?: number;
}

/**
 * A bounded ring of one connection's recent events, kept only while someone
 * watches it (the admin API starts one on demand): recording every
 * connection's timeline would cost more than the connections themselves.
 */
export class ConnectionTrace {
  private readonly ring: TracePoint[] = [];
  private head = 0;
  /** Whether a point has been overwritten. */
  private wrapped = false;
  /** Last time a reader asked (monotonic ms): an unread trace is dropped. */
  lastReadAt: number;

  constructor(
    readonly since: number,
    private readonly capacity = 1024,
  ) {
    this.lastReadAt = since;
  }

  add(at: number, kind: TraceKind, value?: number): void {
    const p: TracePoint = value === undefined ? { at, kind } : { at, kind, value };
    if (this.ring.length < this.capacity) this.ring.push(p);
    else {
      this.ring[this.head] = p;
      this.head = (this.head + 1) % this.capacity;
      this.wrapped = true;
    }
  }

  /**
   * From when the points are complete: when recording began, or, once the ring has wrapped, the
   * oldest point kept. Before it, an empty stretch is not silence: its points were dropped.
   */
  get keptSince(): number {
    return this.wrapped ? this.ring[this.head].at : this.since;
  }

  /** Oldest first. */
  points(): TracePoint[] {
    return this.ring.length < this.capacity ? this.ring.slice() : [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
  }
}
