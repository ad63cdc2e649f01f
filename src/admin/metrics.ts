import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Gateway, OfflineEvent, TrafficStats } from '../gateway/gateway.js';
import type { DisconnectReason } from '../gateway/disconnect.js';
import { subscribe } from './subscribe.js';

/** Closes the gateway made because it judged the peer dead or unable to keep up. */
export const DETECTION_REASONS: ReadonlySet<DisconnectReason> = new Set(['heartbeat-timeout', 'slow-consumer']);

/** A close the gateway's own detection made (a client that times the gateway out may close with the same code). */
export function isDetection(e: Pick<OfflineEvent, 'reason' | 'initiator'>): boolean {
  return e.initiator === 'gateway' && DETECTION_REASONS.has(e.reason);
}

const RTT_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const DETECTION_BUCKETS_S = [0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600];
/**
 * DETECTION_BUCKETS_S, doubled past 600 s up to the longest detection the policy allows: a client
 * may announce maxIntervalMs (600 s by default, detected at 1205 s), and a histogram cannot show a
 * quantile above its top finite bucket (histogram_quantile answered 600 for every such detection).
 */
function detectionBuckets(gw: Pick<Gateway, 'options'>): number[] {
  const { heartbeat: p, probes, detector } = gw.options;
  const lateMs = detector.kind === 'freshness' && detector.lateMs !== undefined ? detector.lateMs : (p.missBudget - 1) * p.maxIntervalMs + p.graceMs;
  const longestS = Math.max(p.maxIntervalMs * p.missBudget + p.graceMs, p.maxIntervalMs + lateMs, p.maxIntervalMs + probes.pongTimeoutMs + probes.probeCount * probes.probeIntervalMs) / 1000;
  const b = [...DETECTION_BUCKETS_S];
  while (b[b.length - 1] < longestS) b.push(b[b.length - 1] * 2);
  return b;
}
const DELIVERY_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600];

/** DELIVERY_BUCKETS_S, doubled past 1 h up to the default message TTL (24 h): a delivery counts the time queued while offline. */
function deliveryBuckets(gw: Pick<Gateway, 'options'>): number[] {
  const b = [...DELIVERY_BUCKETS_S];
  while (b[b.length - 1] * 1000 < gw.options.delivery.messageTtlMs) b.push(b[b.length - 1] * 2);
  return b;
}

/** The process's own metrics, collected once per process however many gateways it runs (prom-client cannot stop them). */
let processRegistry: Registry | null = null;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** `fn`'s answer, reused for `ms`: one scrape asks several metrics for the same walk over every connection. */
function reuse<T>(fn: () => T, ms = 100): () => T {
  let at = -Infinity;
  let value: T;
  return () => {
    const now = performance.now();
    if (now - at > ms) {
      value = fn();
      at = now;
    }
    return value;
  };
}

export interface MetricsOptions {
  /** Also export the process metrics (CPU, memory, GC, event-loop lag) prom-client collects. Default true. */
  processMetrics?: boolean;
}

/**
 * The gateway in Prometheus terms (prom-client). Event-driven numbers
 * (disconnects, RTT, delivery latency) are counted as they happen; totals the
 * gateway already keeps (frames, heartbeats, delivery counters) are read at
 * scrape time, so the hot path pays nothing for metrics.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly detach: () => void;
  private readonly withProcess: boolean;

  constructor(gw: Gateway, opts: MetricsOptions = {}) {
    const r = this.registry;
    this.withProcess = opts.processMetrics !== false;
    const trafficStats = reuse(() => gw.trafficStats());
    const flowStats = reuse(() => gw.flowStats());

    new Gauge({
      name: 'longlink_connections',
      help: 'Connections held, by transport (handshake: accepted, not yet open)',
      labelNames: ['transport'],
      registers: [r],
      collect() {
        const n = gw.connectionCounts();
        this.set({ transport: 'tcp' }, n.tcp);
        this.set({ transport: 'ws' }, n.ws);
        this.set({ transport: 'handshake' }, n.handshaking);
      },
    });
    new Gauge({ name: 'longlink_online_devices', help: 'Devices online on this node', registers: [r], collect() { this.set(gw.onlineDevices); } });
    new Gauge({
      name: 'longlink_online_users',
      help: 'Users with at least one device online on this node (not in the --workers primary\'s sum: a user on two workers counted twice)',
      registers: [r],
      // A count of distinct users does not add up: summed over cluster workers, a user with devices
      // on two of them was two. The primary leaves it out; each worker's admin port has its own.
      aggregator: 'omit',
      collect() {
        this.set(gw.onlineUsers);
      },
    });

    // Totals the gateway keeps, exported as counters that follow them.
    const traffic = (name: string, help: string, inKey: keyof TrafficStats, outKey: keyof TrafficStats) => {
      const seen = { in: 0, out: 0 };
      new Counter({
        name,
        help,
        labelNames: ['direction'],
        registers: [r],
        collect() {
          const t = trafficStats();
          this.inc({ direction: 'in' }, t[inKey] - seen.in);
          this.inc({ direction: 'out' }, t[outKey] - seen.out);
          seen.in = t[inKey];
          seen.out = t[outKey];
        },
      });
    };
    traffic('longlink_heartbeats_total', 'PINGs received from clients (in) and sent by the gateway (out: server-sent heartbeats and probes)', 'pingsIn', 'pingsOut');
    traffic('longlink_frames_total', 'Frames received and sent', 'framesIn', 'framesOut');
    traffic('longlink_data_frames_total', 'DATA frames received and sent', 'dataIn', 'dataOut');

    // A counter that follows running totals the gateway keeps: one, or one per value of `label`.
    const follow = (name: string, help: string, read: () => number | Record<string, number>, label?: string) => {
      const seen = new Map<string, number>();
      new Counter({
        name,
        help,
        labelNames: label ? [label] : [],
        registers: [r],
        collect() {
          const v = read();
          for (const [k, total] of Object.entries(typeof v === 'number' ? { '': v } : v)) {
            const d = total - (seen.get(k) ?? 0);
            seen.set(k, total);
            if (label) this.inc({ [label]: k }, d);
            else this.inc(d);
          }
        },
      });
    };
    follow('longlink_handshake_timeouts_total', 'Connections closed because the handshake (HELLO to WELCOME) did not finish in time', () => gw.handshakeTimeouts);
    follow('longlink_suspicions_total', 'Heartbeats found overdue: a probe was sent', () => gw.suspicionStats.suspected);
    follow('longlink_false_suspicions_total', 'Suspected peers heard again after all (each a conviction a tighter detector would have got wrong)', () => gw.suspicionStats.cleared);
    // The timer machinery's work: per wheel tick it must stay constant however long the gateway runs
    // (rate(arms) / rate(ticks) near 1; issue 18 was a runner whose arms per tick grew with uptime).
    follow('longlink_wheel_ticks_total', 'Timer wheel ticks processed', () => gw.timerStats().ticks);
    follow('longlink_wheel_expiries_total', 'Connection deadlines that came due on the timer wheel (each re-checked, most re-armed)', () => gw.timerStats().expired);
    follow('longlink_timer_arms_total', "Host timers the wheel's runner armed (about one per tick while the wheel holds anything)", () => gw.timerStats().arms);
    new Gauge({ name: 'longlink_wheel_timers', help: 'Connection deadlines on the timer wheel', registers: [r], collect() { this.set(gw.timerStats().wheelSize); } });
    const d = gw.deliveryStats;
    follow('longlink_push_total', 'Reliable pushes (one per push call, whatever the device count)', () => d.pushed);
    follow('longlink_push_unacked_at_close_total', 'Messages written to a link that closed before acknowledging them (re-sent later)', () => d.unackedAtClose);
    follow('longlink_probes_before_push_total', 'Pushes that probed a silent link first', () => d.probesBeforePush);
    follow('longlink_dead_links_found_total', 'Probes before push that went unanswered: dead links found before writing into them', () => d.deadLinksFound);
    follow('longlink_duplicates_in_total', 'Client DATA dropped as a re-send of what was already accepted', () => d.duplicatesIn);
    // Presence removals and acknowledged messages' removal that the store failed, retried until it takes them.
    follow('longlink_store_retries_total', 'Store writes retried after a failure: recovered (taken at a later try), dropped (given up: too many waiting, or the gateway closed)', () => ({ recovered: gw.storeRetryStats().recovered, dropped: gw.storeRetryStats().dropped }), 'result');
    new Gauge({ name: 'longlink_store_retries_pending', help: 'Store writes waiting for another try (presence removals, acknowledged messages)', registers: [r], collect() { this.set(gw.storeRetryStats().pending); } });

    const outcomes = new Counter({ name: 'longlink_push_outcomes_total', help: 'Per-device outcome of reliable pushes', labelNames: ['outcome'], registers: [r] });
    const deliverySeconds = new Histogram({ name: 'longlink_push_delivery_seconds', help: 'From push to the device acknowledging it', buckets: deliveryBuckets(gw), registers: [r] });
    const disconnects = new Counter({ name: 'longlink_disconnects_total', help: 'Devices gone offline, by reason', labelNames: ['reason'], registers: [r] });
    const detections = new Counter({ name: 'longlink_detections_total', help: 'Links the gateway closed as dead or stuck, by reason', labelNames: ['reason'], registers: [r] });
    const detectionBucketsS = detectionBuckets(gw);
    const detectionSeconds = new Histogram({
      name: 'longlink_detection_seconds',
      help: 'Detection time: from the last frame heard to the close, by reason',
      labelNames: ['reason'],
      buckets: detectionBucketsS,
      registers: [r],
    });
    // A link replaced by the same device's newer one writes no offline: its death (often unnoticed, behind a NAT) counts here.
    const replaced = new Counter({ name: 'longlink_replaced_links_total', help: 'Links closed because a newer link of the same device took over, by whether the old one had been silent for more than its heartbeat interval (stale: it had most likely died unnoticed)', labelNames: ['stale'], registers: [r] });
    const replacedSilence = new Histogram({ name: 'longlink_replaced_silence_seconds', help: 'How long a replaced link had been silent when its device came back on a newer one', buckets: detectionBucketsS, registers: [r] });
    for (const stale of ['true', 'false']) replaced.inc({ stale }, 0);
    const rtt = new Histogram({ name: 'longlink_heartbeat_rtt_seconds', help: 'Round trip of the gateway\'s own PINGs (server-sent heartbeats, probes)', buckets: RTT_BUCKETS_S, registers: [r] });
    const refused = new Counter({ name: 'longlink_refused_total', help: 'Connections refused by a limit: at accept (too-many-connections, rate-limited) or in the handshake (too-many-devices)', labelNames: ['reason'], registers: [r] });
    for (const reason of ['too-many-connections', 'rate-limited', 'too-many-devices']) refused.inc({ reason }, 0);
    // A fault is the gateway's or its dependencies' failure, not the device's: an authenticator or a
    // store failing a handshake (the device told 4004) showed only in the log.
    const faults = new Counter({ name: 'longlink_faults_total', help: 'Faults the gateway survived, by kind: store, listener, config, upstream, auth (an authenticator that failed: the device was told 4004)', labelNames: ['kind'], registers: [r] });
    for (const kind of ['store', 'listener', 'config', 'upstream', 'auth']) faults.inc({ kind }, 0);
    const protocolErrors = new Counter({ name: 'longlink_protocol_errors_total', help: 'Connections closed for bad input, by error code', labelNames: ['code'], registers: [r] });
    for (const o of ['delivered', 'expired', 'dropped']) outcomes.inc({ outcome: o }, 0);

    new Gauge({
      name: 'longlink_unacked_messages',
      help: 'Messages written to links and not yet acknowledged',
      registers: [r],
      collect() {
        this.set(flowStats().unacked);
      },
    });
    new Gauge({
      name: 'longlink_write_stalled_connections',
      help: 'Links whose delivery waits for a full write buffer to drain',
      registers: [r],
      collect() {
        this.set(flowStats().writeStalled);
      },
    });
    if (gw.upstreamStats()) {
      const up = () => gw.upstreamStats()!;
      follow('longlink_upstream_messages_total', "Devices' messages handed to the upstream sink: accepted by the backend, failed (each failed attempt; retried while the link is open), refused (a backlog bound was full: GOAWAY, or a fire-and-forget message dropped), rejected (the backend refused it for good: acknowledged, not retried)", () => ({ accepted: up().accepted, failed: up().failures, refused: up().refusedBacklog, rejected: up().rejected }), 'result');
      follow('longlink_upstream_events_total', 'Lifecycle events sent upstream: sent, lost (three attempts failed), dropped (maxPendingEvents were already on their way)', () => ({ sent: up().eventsSent, lost: up().eventsLost, dropped: up().eventsDropped }), 'result');
      new Gauge({
        name: 'longlink_upstream_pending',
        help: "Waiting for the upstream sink now: devices' messages (what maxPending bounds), requests to the sink in flight, lifecycle events",
        labelNames: ['kind'],
        registers: [r],
        collect() {
          this.set({ kind: 'messages' }, flowStats().inboundWaiting);
          this.set({ kind: 'requests' }, up().pending);
          this.set({ kind: 'events' }, up().eventsPending);
        },
      });
    }
    new Gauge({
      name: 'longlink_inbound_waiting',
      help: 'Client messages waiting to be accepted (the store\'s duplicate check and record, or the upstream backend), and their payload bytes',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        const f = flowStats();
        this.set({ kind: 'messages' }, f.inboundWaiting);
        this.set({ kind: 'bytes' }, f.inboundWaitingBytes);
      },
    });
    const store = gw.options.store;
    if (store.queueTotals) {
      const totals = () => store.queueTotals!();
      new Gauge({ name: 'longlink_queued_messages', help: 'Messages held in device mailboxes (unacknowledged or waiting)', registers: [r], async collect() { this.set((await totals()).messages); } });
      new Gauge({ name: 'longlink_queued_bytes', help: 'Payload bytes held in device mailboxes', registers: [r], async collect() { this.set((await totals()).bytes); } });
    }
    // One read per scrape for the four gauges below (each read computes the histogram's percentiles).
    const loop = reuse(() => gw.eventLoopStats());
    new Gauge({
      name: 'longlink_event_loop_delay_seconds',
      help: 'The gateway event loop\'s delay since start (the stall guard\'s histogram)',
      labelNames: ['quantile'],
      registers: [r],
      // Across cluster workers: the worst worker's, not a sum.
      aggregator: 'max',
      collect() {
        const s = loop();
        if (!s) return;
        this.set({ quantile: '0.5' }, s.delayP50Ms / 1000);
        this.set({ quantile: '0.99' }, s.delayP99Ms / 1000);
        this.set({ quantile: '1' }, s.delayMaxMs / 1000);
      },
    });

    // The network, measured by the heartbeats themselves (what `longlink tune --from` reads).
    const byTransport = (read: (t: 'tcp' | 'ws') => number) => () => ({ tcp: read('tcp'), ws: read('ws') });
    follow('longlink_heartbeat_gaps_total', 'Gaps measured between consecutive client heartbeats (nothing else between), by transport', byTransport((t) => gw.heartbeatLateness(t).count), 'transport');
    follow('longlink_heartbeat_slots_missed_total', 'Client heartbeat slots that stayed empty in those gaps (a heartbeat lost, or not sent), by transport', byTransport((t) => gw.heartbeatLateness(t).missed), 'transport');
    new Gauge({
      name: 'longlink_heartbeat_lateness_seconds',
      help: 'How late client heartbeats come against their slot (the previous heartbeat plus one interval), over every connection since start, by transport; `mean` and `stddev` beside the quantiles',
      labelNames: ['transport', 'quantile'],
      registers: [r],
      aggregator: 'max',
      collect() {
        for (const t of ['tcp', 'ws'] as const) {
          const s = gw.heartbeatLateness(t);
          if (s.count === 0) continue;
          for (const q of [0.5, 0.9, 0.99, 0.999]) this.set({ transport: t, quantile: String(q) }, s.quantile(q) / 1000);
          this.set({ transport: t, quantile: '1' }, s.maxMs() / 1000);
          this.set({ transport: t, quantile: 'mean' }, s.meanMs / 1000);
          this.set({ transport: t, quantile: 'stddev' }, s.stdMs / 1000);
        }
      },
    });
    new Gauge({
      name: 'longlink_heartbeat_loss_ratio',
      help: 'Share of client heartbeat slots that stayed empty, by transport',
      labelNames: ['transport'],
      registers: [r],
      aggregator: 'max',
      collect() {
        for (const t of ['tcp', 'ws'] as const) {
          const s = gw.heartbeatLateness(t);
          if (s.count > 0) this.set({ transport: t }, s.lossRate);
        }
      },
    });

    // GC pauses stop every connection at once: the longest is what a detector's grace must cover.
    const gc = () => loop()?.gc;
    new Gauge({
      name: 'longlink_gc_pause_longest_seconds',
      help: 'The longest garbage-collection pause since the gateway started',
      registers: [r],
      aggregator: 'max',
      collect() {
        const s = gc();
        if (s) this.set(s.longestMs / 1000);
      },
    });
    new Gauge({
      name: 'longlink_gc_pauses',
      help: 'Garbage-collection pauses since the gateway started',
      registers: [r],
      collect() {
        const s = gc();
        if (s) this.set(s.count);
      },
    });
    new Gauge({
      name: 'longlink_gc_pause_time_seconds',
      help: 'Time spent in garbage-collection pauses since the gateway started',
      registers: [r],
      collect() {
        const s = gc();
        if (s) this.set(s.totalMs / 1000);
      },
    });

    this.detach = subscribe(gw, {
      offline: (e) => {
        disconnects.inc({ reason: e.reason });
        if (isDetection(e)) {
          detections.inc({ reason: e.reason });
          detectionSeconds.observe({ reason: e.reason }, e.silentForMs / 1000);
        }
      },
      replaced: (e) => {
        replaced.inc({ stale: String(e.stale) });
        replacedSilence.observe(e.silentForMs / 1000);
      },
      rtt: (e) => rtt.observe(e.sampleMs / 1000),
      delivered: (e) => {
        outcomes.inc({ outcome: 'delivered' });
        deliverySeconds.observe(e.ageMs / 1000);
      },
      expired: () => outcomes.inc({ outcome: 'expired' }),
      dropped: () => outcomes.inc({ outcome: 'dropped' }),
      refused: (e) => refused.inc({ reason: e.reason }),
      fault: (e) => faults.inc({ kind: e.kind }),
      'protocol-error': (e) => protocolErrors.inc({ code: e.error.code }),
    });
  }

  /** The exposition text for a scrape. */
  text(): Promise<string> {
    return (this.withProcess ? Registry.merge([processMetrics(), this.registry]) : this.registry).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The registries a cluster primary aggregates (prom-client's AggregatorRegistry, through IPC). */
  get registries(): Registry[] {
    return this.withProcess ? [processMetrics(), this.registry] : [this.registry];
  }

  close(): void {
    this.detach();
    this.registry.clear();
  }
}
