import { silenceLimitMs, suspectAfterMs } from './heartbeat-policy.js';

/**
 * The passive side's view of a peer. Only inbound frames count: a busy
 * sender that hears nothing back has no proof the peer is alive (the
 * MQTT.js keepalive lesson). `heard` is a single store, so the per-frame cost
 * is nil; the owner polls `check` when `nextCheckAt` comes due (one wheel
 * entry per connection, re-armed lazily as Netty's IdleStateHandler does).
 */
export type Verdict = 'alive' | 'suspect' | 'suspected' | 'dead';

export interface LivenessDetector {
  readonly lastHeardAt: number;
  /** The heartbeat interval it expects (setIntervalMs moves it). */
  readonly intervalMs: number;
  /** Any inbound frame; `heartbeat` says whether it was a heartbeat (adaptive detectors learn only from those). */
  heard(now: number, heartbeat?: boolean): void;
  /** 'suspect' is returned once per silence, on the transition; then 'suspected'. */
  check(now: number): Verdict;
  nextCheckAt(now: number): number;
  /** Time at which the peer will be declared dead if nothing arrives. */
  deadline(): number;
  setIntervalMs(ms: number): void;
}

/** Fixed miss-count detector: dead after intervalMs × missBudget + graceMs of silence. */
export class SilenceDetector implements LivenessDetector {
  // Starts as a number, not undefined (a class field without an initializer is defined as undefined
  // first): V8 then stores it as a double in place, where a tagged field allocates a new heap number
  // at every timestamp written to it, on every heartbeat.
  lastHeardAt = 0;
  private suspectedAt = -1;

  constructor(
    public intervalMs: number,
    readonly missBudget: number,
    readonly graceMs: number,
    now: number,
  ) {
    this.lastHeardAt = now;
  }

  heard(now: number): void {
    this.lastHeardAt = now;
  }

  setIntervalMs(ms: number): void {
    this.intervalMs = ms;
  }

  get limitMs(): number {
    return silenceLimitMs(this);
  }

  deadline(): number {
    return this.lastHeardAt + silenceLimitMs(this);
  }

  check(now: number): Verdict {
    if (now >= this.deadline()) return 'dead';
    if (now >= this.lastHeardAt + suspectAfterMs(this)) {
      if (this.suspectedAt === this.lastHeardAt) return 'suspected';
      this.suspectedAt = this.lastHeardAt;
      return 'suspect';
    }
    return 'alive';
  }

  nextCheckAt(_now: number): number {
    // A suspicion not yet raised is checked even if its time has passed (a re-arm came first).
    return this.suspectedAt !== this.lastHeardAt ? Math.min(this.lastHeardAt + suspectAfterMs(this), this.deadline()) : this.deadline();
  }
}
