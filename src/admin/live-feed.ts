import type { Gateway, OfflineEvent, OnlineEvent, ReplacedEvent, TrafficStats } from '../gateway/gateway.js';
import { CloseCodes } from '../protocol/errors.js';
import type { Timers, TimerHandle } from '../core/clock.js';
import { isDetection } from './metrics.js';
import { subscribe } from './subscribe.js';
import { SampleWindow } from './sample-window.js';
import type { OfflineNotice, OnlineNotice, Overview, RttSummary, Snapshot, Tick } from './api-types.js';

/** Upper bounds (ms) of the RTT distribution the dashboard draws. */
const RTT_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, Infinity];
const RTT_WINDOW_MS = 60_000;
const MAX_RTT_SAMPLES = 20_000;

export interface LiveFeedOptions {
  tickMs?: number;
  /** Ticks kept for a new dashboard (default 600: ten minutes). */
  historyTicks?: number;
  /** Disconnections kept for a new dashboard. */
  recentOffline?: number;
  /**
   * Online and offline notices streamed between two ticks; beyond, they are
   * counted in the next tick (`noticesSkipped`) instead. A connect-and-close
   * loop makes thousands a second, each written to every open dashboard.
   */
  maxNoticesPerTick?: number;
  timers: Timers;
  /** Wall-clock ms: the time stamps shown. */
  wallNow: () => number;
  /**
   * Monotonic ms, for the rates, the RTT window and the uptime: a wall clock
   * stepped back by NTP would make one tick's rates spike and empty the RTT
   * window. Defaults to `wallNow`.
   */
  now?: () => number;
}

export type FeedEvent = { event: 'tick'; data: Tick } | { event: 'online'; data: OnlineNotice } | { event: 'offline'; data: OfflineNotice };

/**
 * What the live dashboard streams: one Tick a second (counts, heartbeat
 * rate, the last minute's RTT distribution) and online/offline notices as
 * they happen, with enough history that a page opened now starts full.
 */
export class LiveFeed {
  private readonly history: Tick[] = [];
  private readonly recent: OfflineNotice[] = [];
  private readonly rttSamples = new SampleWindow(MAX_RTT_SAMPLES);
  private readonly subscribers = new Set<(e: FeedEvent) => void>();
  private readonly disconnects: Record<string, number> = {};
  private detections = 0;
  private last: TrafficStats;
  private lastAt: number;
  private timer: TimerHandle | null = null;
  /** Notices streamed since the last tick, and those past maxNoticesPerTick (counted in the next tick). */
  private noticesSent = 0;
  private noticesSkipped = 0;
  private readonly o: Required<LiveFeedOptions>;
  private readonly detach: () => void;
  readonly startedAt: number;
  /** When it started on the monotonic clock (uptime). */
  private readonly startedMono: number;

  constructor(private readonly gw: Gateway, opts: LiveFeedOptions) {
    this.o = { tickMs: 1000, historyTicks: 600, recentOffline: 50, maxNoticesPerTick: 100, now: opts.wallNow, ...opts };
    this.startedAt = this.o.wallNow();
    this.startedMono = this.o.now();
    this.last = gw.trafficStats();
    this.lastAt = this.startedMono;
    this.detach = subscribe(gw, {
      online: (e) => this.onOnline(e),
      offline: (e) => this.onOffline(e),
      replaced: (e) => this.onReplaced(e),
      rtt: (e) => this.rttSamples.add(this.o.now(), e.sampleMs),
    });
    this.schedule();
  }

  private onOnline(e: OnlineEvent): void {
    const { userId, deviceId, connectionId, transport, resumed } = e;
    this.publish({ event: 'online', data: { t: this.o.wallNow(), userId, deviceId, connectionId, transport, resumed } });
  }

  private onOffline(e: OfflineEvent): void {
    const detection = isDetection(e);
    if (detection) this.detections++;
    this.disconnects[e.reason] = (this.disconnects[e.reason] ?? 0) + 1;
    const { userId, deviceId, connectionId, transport, reason, code } = e;
    this.listDisconnect({ t: this.o.wallNow(), userId, deviceId, connectionId, transport, reason, code, silentForMs: Math.round(e.silentForMs), detection });
  }

  /** Keeps the notice among the recent disconnections and streams it. */
  private listDisconnect(n: OfflineNotice): void {
    this.recent.unshift(n);
    if (this.recent.length > this.o.recentOffline) this.recent.pop();
    this.publish({ event: 'offline', data: n });
  }

  /** A replaced link is listed with the disconnections (the link ended; the device stays online), with the silence it had. */
  private onReplaced(e: ReplacedEvent): void {
    this.disconnects.replaced = (this.disconnects.replaced ?? 0) + 1;
    const { userId, deviceId, connectionId, transport } = e;
    this.listDisconnect({ t: this.o.wallNow(), userId, deviceId, connectionId, transport, reason: 'replaced', code: CloseCodes.replaced, silentForMs: Math.round(e.silentForMs), detection: false, stale: e.stale });
  }

  private schedule(): void {
    this.timer = this.o.timers.setTimeout(() => {
      // The next tick is due whatever this one does: a throw here once stopped the feed for good.
      try {
        this.tick();
      } finally {
        if (this.timer !== null) this.schedule();
      }
    }, this.o.tickMs);
  }

  /** Takes the next Tick now (the timer calls it every tickMs). */
  tick(): Tick {
    const now = this.o.now();
    const t = this.gw.trafficStats();
    const secs = Math.max(0.001, (now - this.lastAt) / 1000);
    const tick: Tick = {
      t: this.o.wallNow(),
      connections: this.gw.connectionCount,
      online: this.gw.onlineDevices,
      users: this.gw.onlineUsers,
      heartbeatsPerSec: round1((t.pingsIn - this.last.pingsIn + t.pingsOut - this.last.pingsOut) / secs),
      framesPerSec: round1((t.framesIn - this.last.framesIn + t.framesOut - this.last.framesOut) / secs),
      detections: this.detections,
      suspicions: this.gw.suspicionStats.suspected,
      falseSuspicions: this.gw.suspicionStats.cleared,
      rtt: this.rttSummary(now),
      noticesSkipped: this.noticesSkipped,
    };
    // Pages missed some disconnections: the latest, with this tick only (not its copy in the history).
    const sent: Tick = this.noticesSkipped > 0 ? { ...tick, recent: [...this.recent] } : tick;
    this.noticesSent = 0;
    this.noticesSkipped = 0;
    this.last = t;
    this.lastAt = now;
    this.history.push(tick);
    if (this.history.length > this.o.historyTicks) this.history.shift();
    this.publish({ event: 'tick', data: sent });
    return sent;
  }

  /** The RTT samples of the last minute; `now` on the monotonic clock. */
  rttSummary(now = this.o.now()): RttSummary {
    const ms = this.rttSamples.sortedSince(now - RTT_WINDOW_MS);
    // At more than MAX_RTT_SAMPLES a minute the ring holds only the newest: say how far back they go.
    const oldest = this.rttSamples.oldestAt;
    const windowMs = this.rttSamples.full && oldest !== null && oldest > now - RTT_WINDOW_MS ? Math.round(now - oldest) : RTT_WINDOW_MS;
    const q = (p: number) => (ms.length ? round1(ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]) : null);
    const buckets = RTT_BUCKETS_MS.map((le) => ({ le, count: 0 }));
    for (const v of ms) buckets.find((b) => v <= b.le)!.count++;
    // JSON has no Infinity: the overflow bucket's bound is null.
    return { count: ms.length, windowMs, p50: q(0.5), p90: q(0.9), p99: q(0.99), buckets: buckets.map((b) => ({ le: Number.isFinite(b.le) ? b.le : null, count: b.count })) };
  }

  overview(): Overview {
    const gw = this.gw;
    const counts = gw.connectionCounts();
    const loop = gw.eventLoopStats();
    const p = gw.options.heartbeat;
    return {
      nodeId: gw.options.nodeId,
      startedAt: this.startedAt,
      uptimeMs: this.o.now() - this.startedMono,
      // Handshakes counted as admission counts them (sockets still in their upgrade too): the total is their sum.
      connections: { total: counts.tcp + counts.ws + counts.handshaking, ...counts },
      online: { devices: gw.onlineDevices, users: gw.onlineUsers },
      policy: { intervalMs: p.intervalMs, minIntervalMs: p.minIntervalMs, maxIntervalMs: p.maxIntervalMs, missBudget: p.missBudget, graceMs: p.graceMs, allowServerDirection: p.allowServerDirection },
      detector: gw.options.detector.kind,
      traffic: gw.trafficStats(),
      delivery: { ...gw.deliveryStats },
      admission: { ...gw.admissionStats() },
      disconnects: { ...this.disconnects },
      detections: this.detections,
      suspicions: gw.suspicionStats.suspected,
      falseSuspicions: gw.suspicionStats.cleared,
      eventLoop: loop ? { p50Ms: loop.delayP50Ms, p99Ms: loop.delayP99Ms, maxMs: loop.delayMaxMs, gcLongestMs: loop.gc.longestMs, gcPauses: loop.gc.count } : null,
    };
  }

  snapshot(): Snapshot {
    return { overview: this.overview(), history: [...this.history], recent: [...this.recent] };
  }

  /** Calls `fn` with every event from now on; returns the function that stops it. */
  subscribe(fn: (e: FeedEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  private publish(e: FeedEvent): void {
    if (this.subscribers.size === 0) return;
    if (e.event !== 'tick' && this.noticesSent++ >= this.o.maxNoticesPerTick) {
      this.noticesSkipped++;
      return;
    }
    for (const fn of this.subscribers) {
      // One subscriber's bug is reported as the gateway reports a listener's, and the others still get the event.
      try {
        fn(e);
      } catch (error) {
        this.gw.emit('fault', { kind: 'listener', op: `live-feed ${e.event}`, error });
      }
    }
  }

  close(): void {
    if (this.timer !== null) this.o.timers.clearTimeout(this.timer);
    this.timer = null;
    this.detach();
    this.subscribers.clear();
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
