import { dropUndefined } from './heartbeat-policy.js';
import { OptionError } from '../protocol/errors.js';

/**
 * Learns, per network, the longest heartbeat interval the path's NAT and
 * middleboxes tolerate (the idea of WeChat's "smart heartbeat" in Mars).
 * Pure: the client tells it what happened, with times passed in.
 *
 * - grow: from a safe start, each probe is a heartbeat gap `growth` times
 *   the last one that held;
 * - after the first failure (the gap's heartbeat went unanswered through the
 *   fast recheck: the NAT had dropped the mapping), fine: climb from the last
 *   gap that held in steps of `fineGrowth`, never to a gap known to fail;
 * - settled: `margin` below the largest gap that held, once the next fine
 *   step would reach a failed gap (or a second failure marks the top);
 * - a failure at the settled interval (the path changed) falls back to half
 *   and climbs again; after `reprobeAfterMs` settled, one step above is tried
 *   in case the path now allows more.
 * With growth 2, fineGrowth 1.12 and margin 0.07 the settled interval lies
 * between 0.93/1.12 = 83% and 93% of the real timeout, after at most two
 * lost links. Any idle gap that application traffic survived counts as
 * evidence too, so idle suppression saves probes.
 */
export type LearnerPhase = 'grow' | 'fine' | 'settled';

export interface LearnerOptions {
  /** Interval for a network never seen; default the gateway's granted interval. */
  startMs?: number;
  growth: number;
  fineGrowth: number;
  margin: number;
  /** Settled this long, try one step above (the path may allow more now). */
  reprobeAfterMs: number;
  /**
   * Networks remembered, the least recently used forgotten beyond: an app that names networks by
   * BSSID or address would otherwise grow the records (and the state it saves) without end.
   */
  maxNetworks: number;
}

export const LEARNER_DEFAULTS: LearnerOptions = { growth: 2, fineGrowth: 1.12, margin: 0.07, reprobeAfterMs: 6 * 3_600_000, maxNetworks: 64 };

/** What is known about one network; exported and imported as JSON. */
export interface NetworkRecord {
  /** Largest idle gap known to have held. */
  heldMs: number;
  /** Smallest probed gap known to have failed (null: none yet). */
  failedMs: number | null;
  phase: LearnerPhase;
  /** The interval in use: a probe while learning, the settled one after. */
  intervalMs: number;
  probes: number;
  failures: number;
  settledAt: number | null;
}

export interface LearnerSnapshot {
  version: 1;
  network: string;
  networks: Record<string, NetworkRecord>;
}

export type LearnerChange = 'probe-held' | 'probe-failed' | 'settled' | 'fallback' | 'reprobe' | 'evidence' | 'network' | 'range';

export class IntervalLearner {
  readonly o: LearnerOptions;
  private records = new Map<string, NetworkRecord>();
  private current: string;
  private minMs = 1;
  private maxMs = Infinity;

  constructor(opts: Partial<LearnerOptions> = {}, network = 'default') {
    this.o = { ...LEARNER_DEFAULTS, ...dropUndefined(opts) };
    const { growth, fineGrowth, margin } = this.o;
    if (!(growth > 1 && fineGrowth > 1 && fineGrowth <= growth)) throw new OptionError('adaptive', 'need 1 < fineGrowth <= growth');
    if (!(margin >= 0 && margin < 1)) throw new OptionError('adaptive.margin', 'must be in [0, 1)');
    if (this.o.startMs !== undefined && !(this.o.startMs > 0 && Number.isFinite(this.o.startMs))) throw new OptionError('adaptive.startMs', `must be a positive number (got ${this.o.startMs})`);
    if (!(this.o.reprobeAfterMs > 0)) throw new OptionError('adaptive.reprobeAfterMs', `must be a positive number of ms, Infinity for never (got ${this.o.reprobeAfterMs})`);
    if (!(Number.isInteger(this.o.maxNetworks) && this.o.maxNetworks >= 1)) throw new OptionError('adaptive.maxNetworks', `must be a whole number >= 1 (got ${this.o.maxNetworks})`);
    this.current = network;
  }

  get network(): string {
    return this.current;
  }

  /** The record for the current network, or null before its first start is known. */
  get record(): NetworkRecord | null {
    return this.records.get(this.current) ?? null;
  }

  /** The interval to use now; `fallbackStartMs` seeds a network never seen (the gateway's grant). */
  intervalMs(fallbackStartMs?: number): number | undefined {
    const r = this.records.get(this.current) ?? this.seed(fallbackStartMs);
    return r?.intervalMs;
  }

  private seed(fallbackStartMs: number | undefined): NetworkRecord | null {
    const start = this.o.startMs ?? fallbackStartMs;
    if (start === undefined) return null;
    const held = this.clamp(start);
    const r: NetworkRecord = { heldMs: held, failedMs: null, phase: 'grow', intervalMs: held, probes: 0, failures: 0, settledAt: null };
    this.records.set(this.current, r);
    this.forgetOldest();
    this.nextProbe(r, 0);
    return r;
  }

  /** Beyond maxNetworks, the least recently used records go (never the current one: it is the newest). */
  private forgetOldest(): void {
    for (const id of this.records.keys()) {
      if (this.records.size <= this.o.maxNetworks) return;
      if (id !== this.current) this.records.delete(id);
    }
  }

  /** The gateway's allowed range (WELCOME). Returns 'range' if the interval in use changed (or was first set). */
  setRange(minMs: number, maxMs: number, grantedMs: number, now: number): LearnerChange | null {
    this.minMs = minMs;
    this.maxMs = maxMs;
    const existed = this.records.get(this.current);
    const r = existed ?? this.seed(grantedMs);
    if (!r) return null;
    const before = existed ? r.intervalMs : NaN;
    r.heldMs = this.clamp(r.heldMs);
    if (r.phase === 'settled') r.intervalMs = this.settledInterval(r);
    else this.nextProbe(r, now);
    return r.intervalMs !== before ? 'range' : null;
  }

  /** Switch to another network's record (creating it from the start interval). */
  switchNetwork(id: string, now: number, fallbackStartMs?: number): LearnerChange {
    this.current = id;
    const known = this.records.get(id);
    if (known) {
      // Most recently used last, so the bound forgets networks not seen for longest.
      this.records.delete(id);
      this.records.set(id, known);
    } else this.seed(fallbackStartMs);
    void now;
    return 'network';
  }

  /**
   * The link stayed up across an idle gap of `gapMs` (something came back
   * after it). Returns what changed, or null.
   */
  held(gapMs: number, now: number): LearnerChange | null {
    const r = this.records.get(this.current);
    // A gap far above the interval in use is a stall of the client (a heartbeat runs once the link is
    // idle an interval): what it reads after one may have crossed the NAT mid-stall, waiting in a
    // buffer since, so the stall proves nothing held. Counted, one frozen tab raised the interval
    // above the NAT's timeout, as failed() would lower it for every sleep.
    if (!r || gapMs > STALL_FACTOR * r.intervalMs) return null;
    const tol = tolerance(r.intervalMs);
    if (r.phase !== 'settled' && gapMs >= r.intervalMs - tol && r.intervalMs > r.heldMs) {
      r.heldMs = Math.max(r.intervalMs, this.clamp(gapMs));
      r.probes++;
      if (r.failedMs !== null && r.failedMs <= r.heldMs) r.failedMs = null;
      this.nextProbe(r, now);
      return (r.phase as LearnerPhase) === 'settled' ? 'settled' : 'probe-held';
    }
    if (gapMs > r.heldMs + tolerance(r.heldMs)) {
      // Traffic survived a longer gap than we had proven: free evidence.
      r.heldMs = this.clamp(gapMs);
      if (r.failedMs !== null && r.failedMs <= r.heldMs) r.failedMs = null;
      if (r.phase === 'settled') {
        const before = r.intervalMs;
        r.intervalMs = this.settledInterval(r);
        return r.intervalMs !== before ? 'evidence' : null;
      }
      this.nextProbe(r, now);
      return 'evidence';
    }
    return null;
  }

  /**
   * The link died after an idle gap of `gapMs`: its heartbeat went unanswered
   * through the fast recheck. Only a gap at the interval in use teaches
   * anything: a shorter one died of something else, and one well above it
   * means the client did not send on time (its event loop blocked, the tab
   * frozen, the device asleep), so the gateway's silence limit or the stall
   * itself may have ended the link; charged to the interval, every such sleep
   * would ratchet it down.
   */
  failed(gapMs: number, now: number): LearnerChange | null {
    const r = this.records.get(this.current);
    if (!r || gapMs < r.intervalMs - tolerance(r.intervalMs) || gapMs > STALL_FACTOR * r.intervalMs) return null;
    r.failures++;
    if (r.phase === 'settled') {
      // The path changed under a settled interval: fall back and climb again.
      r.failedMs = r.intervalMs;
      r.heldMs = this.clamp(Math.min(r.heldMs, r.intervalMs) / 2);
      r.phase = 'fine';
      r.settledAt = null;
      r.intervalMs = r.heldMs;
      this.nextProbe(r, now);
      return 'fallback';
    }
    r.probes++;
    r.failedMs = Math.min(r.failedMs ?? Infinity, r.intervalMs);
    r.phase = 'fine';
    this.nextProbe(r, now);
    return (r.phase as LearnerPhase) === 'settled' ? 'settled' : 'probe-failed';
  }

  /** Call now and then: a settled network is re-probed after `reprobeAfterMs`. */
  poll(now: number): LearnerChange | null {
    const r = this.records.get(this.current);
    if (!r || r.phase !== 'settled') return null;
    // Imported: its settledAt was on another process's monotonic clock. Dated from now instead.
    if (r.settledAt === null) r.settledAt = now;
    if (now - r.settledAt < this.o.reprobeAfterMs) return null;
    if (r.heldMs >= this.maxMs) {
      r.settledAt = now;
      return null;
    }
    r.phase = 'fine';
    r.failedMs = null;
    r.settledAt = null;
    this.nextProbe(r, now);
    return 'reprobe';
  }

  /** Sets the next probe, or settles when none is worth the risk. */
  private nextProbe(r: NetworkRecord, now: number): void {
    if (r.phase === 'settled') return;
    const factor = r.phase === 'grow' && r.failedMs === null ? this.o.growth : this.o.fineGrowth;
    if (r.phase === 'grow' && r.failedMs !== null) r.phase = 'fine';
    const next = this.clamp(r.heldMs * factor);
    const ceiling = r.failedMs ?? Infinity;
    if (next >= ceiling || next <= r.heldMs) {
      r.phase = 'settled';
      r.settledAt = now;
      r.intervalMs = this.settledInterval(r);
      return;
    }
    r.intervalMs = next;
  }

  private settledInterval(r: NetworkRecord): number {
    // Nothing failed and the range is exhausted: the top of the range is safe as it is.
    if (r.failedMs === null && r.heldMs >= this.maxMs) return this.maxMs;
    return this.clamp(Math.round(r.heldMs * (1 - this.o.margin)));
  }

  private clamp(ms: number): number {
    return Math.min(this.maxMs, Math.max(this.minMs, Math.round(ms)));
  }

  export(): LearnerSnapshot {
    return { version: 1, network: this.current, networks: Object.fromEntries([...this.records].map(([k, v]) => [k, { ...v }])) };
  }

  /** Loads what `export` produced; a known network then starts at its learned interval. */
  import(s: LearnerSnapshot): void {
    // typeof null is 'object': `networks: null` (a snapshot cut short) threw a bare TypeError below.
    if (typeof s !== 'object' || s === null || s.version !== 1 || typeof s.networks !== 'object' || s.networks === null) throw new OptionError('adaptive.state', 'not a learner snapshot (version 1)');
    const records = new Map<string, NetworkRecord>();
    const ms = (v: number) => Number.isFinite(v) && v > 0;
    for (const [id, r] of Object.entries(s.networks)) {
      const ok = r && ms(r.heldMs) && ms(r.intervalMs) && ['grow', 'fine', 'settled'].includes(r.phase) && (r.failedMs === null || ms(r.failedMs));
      if (!ok) throw new OptionError('adaptive.state', `bad learner record for network ${id}`);
      // Whole milliseconds (the interval goes into HELLO as a varint). settledAt was on the exporting
      // process's monotonic clock, meaningless here: the first poll dates it, so the re-probe comes
      // reprobeAfterMs after this run starts, not after that process's uptime.
      const round = (v: number) => Math.max(1, Math.round(v));
      records.set(id, { ...r, heldMs: round(r.heldMs), intervalMs: round(r.intervalMs), failedMs: r.failedMs === null ? null : round(r.failedMs), settledAt: null });
    }
    this.records = records;
    if (typeof s.network === 'string') this.current = s.network;
    // A snapshot from a build without the bound (or with a larger one): its newest records are kept.
    const cur = this.records.get(this.current);
    if (cur) {
      this.records.delete(this.current);
      this.records.set(this.current, cur);
    }
    this.forgetOldest();
  }
}

/** A failed gap above this many intervals was a stall of the client, not the NAT's timeout. */
const STALL_FACTOR = 1.5;

/** A gap within this of the interval counts as the interval (the PONG's round trip shortens it). */
const tolerance = (ms: number) => Math.max(0.05 * ms, 50);
