import { newId, newToken } from './ids.js';
import { GrantCache } from './grant-cache.js';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { WebSocketServer } from 'ws';
import { SilenceDetector } from '../core/liveness-detector.js';
import { PhiAccrualDetector } from '../core/phi-accrual-detector.js';
import type { RttSample } from '../core/rtt-tracker.js';
import { TimerWheel } from '../core/timer-wheel.js';
import type { Link } from '../link/link.js';
import { CloseCodes, errorCodeFor, LonglinkError, ProtocolError, type CloseReason } from '../protocol/errors.js';
import { isWellFormed, toWellFormed } from '../protocol/well-formed.js';
import { FrameType, MAX_RECONNECT_HINT_MS, type ClientState, type DataFrame, type HelloFrame } from '../protocol/frames.js';
import { goawayFrame, ServerConnection, type ConnectionHost, type Opening, type TrafficStats } from './connection.js';
import { utf8Exceeds, utf8Length } from '../protocol/wire.js';
import type { PushResult } from './push-tracker.js';
import { Delivery, type DeliveryStats, type PushOptions } from './delivery.js';
import type { DisconnectReason } from './disconnect.js';
import { resolveGatewayOptions, type AuthPeer, type GatewayOptions, type Identity, type ResolvedGatewayOptions } from './options.js';
import { Registry } from './registry.js';
import { FanOut } from './fan-out.js';
import { runSteps, unawaited } from './run-steps.js';
import { StoreRetry, type StoreRetryStats } from './store-retry.js';
import type { PresenceEntry, ResyncReason, SessionRecord } from './stores/store.js';
import type { TimerHandle } from '../core/clock.js';
import { listenTcp, type TcpListener } from './transports/tcp-listener.js';
import { PartialFrameBudget } from './partial-frames.js';
import { listenWs } from './transports/ws-listener.js';
import { WheelRunner } from './wheel-runner.js';
import { FreshnessDetector } from '../core/freshness-detector.js';
import { EventLoopGuard, type EventLoopStats } from './event-loop-guard.js';
import { Admission, type AdmissionStats } from './admission.js';
import { connectionCeiling, openFileLimit } from './file-limit.js';
import { ConnectionTrace } from './connection-trace.js';
import { topK } from '../core/top-k.js';
import type { HeartbeatGrant } from '../protocol/frames.js';
import { typedEmitter } from '../core/typed-emitter.js';
import { LatenessStats, type LatenessSnapshot } from '../core/lateness-stats.js';
import { UpstreamRunner, type UpstreamStats } from './upstream.js';
import { assertPayloadFits } from '../protocol/data-frame-size.js';

/** Connections traced at once for the admin view; the least recently read one gives way. */
const MAX_TRACES = 32;
/** A trace nobody has read for this long stops (the sweep drops it). */
const TRACE_IDLE_MS = 60_000;
/**
 * A session record written while its link is open lives this long (re-saved
 * at half of it while the link lasts); once the link ends it is saved again
 * with sessionTtlMs. Bounds what a node that crashed leaves behind.
 */
export const OPEN_SESSION_TTL_MS = 12 * 3600_000;
/** How many times a re-assertion the store refused part of is tried (1 s, 2 s, ... apart). */
const REASSERT_ATTEMPTS = 8;
/**
 * Links a re-assertion writes again at once. One at a time, each link's three store round trips
 * made a node of 4,000 links take 2.5 s on loopback (minutes at 200,000), and until its turn a
 * device was offline to other nodes and, after a store reset, unknown: a push answered
 * `unknown-user` and queued nothing.
 */
const REASSERT_CONCURRENCY = 64;
/** Handshakes a second assumed when spreading close()'s reconnect hints with no handshake rate limit. */
const DEFAULT_SPREAD_RATE = 2000;
/**
 * How far apart two nodes' wall clocks may be when the accept times (`since`) of a device's links
 * on them are compared: another node's link counts as accepted after this one only by more than
 * this. Within it the link whose presence write came last keeps the device, as before `since` was
 * compared: a client that moves at once (its link died unseen) would otherwise find its new link
 * closed as replaced, for good, whenever the old node's clock ran ahead by more than the move took;
 * a client that gave up on a handshake did so after its handshake timeout (10 s by default).
 */
export const NODE_CLOCK_SKEW_MS = 1000;
/** Which resync asks more of a re-assertion: a later one of a higher rank covers a lower one waiting. */
const RESYNC_RANK: Record<ResyncReason, number> = { resubscribed: 0, 'lease-lapsed': 1, failover: 2, 'store-reset': 3 };
const strongest = (a: ResyncReason, b: ResyncReason | null): ResyncReason => (b !== null && RESYNC_RANK[b] > RESYNC_RANK[a] ? b : a);

export interface DeviceRef {
  userId: string;
  deviceId: string;
  connectionId: string;
  sessionId: string;
  transport: 'tcp' | 'ws';
}

export interface OnlineEvent extends DeviceRef {
  resumed: boolean;
  /** The client presented a resume token that was unknown or expired: a new session began. */
  resumeFailed: boolean;
  clientInfo: ClientState;
}

export interface OfflineEvent extends DeviceRef {
  reason: DisconnectReason;
  code: number;
  /** Who ended it: the gateway (a detection, a limit, a kick, a drain), or the peer or the network. */
  initiator: 'gateway' | 'peer';
  /** Monotonic ms since the last frame arrived from the device. */
  silentForMs: number;
}

/**
 * A newer link of the same device took over (its reconnect, often a resume)
 * and the older link was closed with `replaced`. The device stays online, so
 * no `offline` is written; this is where a link that died unnoticed (a NAT
 * that dropped its mapping, a network switch) shows: a long `silentForMs`.
 * Fields of DeviceRef are the old link's.
 */
export interface ReplacedEvent extends DeviceRef {
  /** The link that took over. */
  byConnectionId: string;
  /** It resumed the session the old link carried. */
  resumed: boolean;
  /** Monotonic ms since the old link's last frame. */
  silentForMs: number;
  /** The old link's heartbeat interval. */
  intervalMs: number;
  /**
   * The old link had been silent for more than its heartbeat interval: a heartbeat the client sent (or
   * meant to) never arrived, so the link had most likely died unnoticed (behind a NAT, a client that
   * finds the dead link quickly comes back within one or two intervals).
   */
  stale: boolean;
}

export interface MessageEvent extends DeviceRef {
  payload: Uint8Array;
  id?: string;
  /** The client's sequence number in its session (absent for unsequenced DATA). */
  seq?: number;
}

export interface DeliveryEvent {
  userId: string;
  deviceId: string;
  id: string;
  seq: number;
  /** Wall ms from push to acknowledgement (delivered) or to removal (expired, dropped). */
  ageMs: number;
}

export interface DropEvent extends DeliveryEvent {
  /** `ttl`: not acknowledged within its time-to-live; `overflow`: evicted by the per-device bound. */
  reason: 'ttl' | 'overflow';
}

export type { DeliveryStats, PushOptions } from './delivery.js';

export interface StateEvent extends DeviceRef {
  delta: ClientState;
  state: ClientState;
}

export interface ProtocolErrorEvent {
  connectionId: string;
  remoteAddress: string;
  transport: 'tcp' | 'ws';
  error: ProtocolError;
}

/**
 * A connection refused by a limit (see `limits`): at accept time (`too-many-connections`,
 * `rate-limited`), or in the handshake, after authentication (`too-many-devices`: the user has
 * `maxOnlineDevicesPerUser` devices online; the device is never online, so no `offline` follows).
 */
export interface RefusedEvent {
  remoteAddress: string;
  transport: 'tcp' | 'ws';
  reason: 'too-many-connections' | 'rate-limited' | 'too-many-devices';
  message: string;
  retryAfterMs: number;
  /** The device refused in the handshake (too-many-devices only: at accept nothing is known of it). */
  userId?: string;
  deviceId?: string;
}

export interface DrainOptions {
  /** GOAWAY hints are spread evenly over this window, so clients come back gradually (at most an hour, the longest hint). */
  windowMs?: number;
  /** Longest wait for messages already written to be acknowledged before a link is closed anyway. */
  ackTimeoutMs?: number;
}

export interface DrainReport {
  /** Open connections sent GOAWAY. */
  connections: number;
  /** Of those, closed after everything written to them was acknowledged. */
  settled: number;
  /** Closed by `ackTimeoutMs` with messages unacknowledged (they stay queued in the store). */
  timedOut: number;
  /** The largest reconnect hint given. */
  maxHintMs: number;
}

export const DRAIN_DEFAULTS = { windowMs: 10_000, ackTimeoutMs: 5_000 };

/** The refusals an authenticator may make with a plain LonglinkError of their code (a ProtocolError may carry any reason). */
const AUTH_REFUSALS = ['auth-failed', 'auth-missing', 'auth-expired'] as const satisfies readonly CloseReason[];

/**
 * The authenticator failed rather than refused: it threw a plain Error (its user database down) or
 * rejected with something else. Refused with 4510, which the SDK never retries, an outage locked
 * every device out for good, and the error's text (a host name) went to whoever sent a HELLO; now a
 * `fault` (kind auth) for the operator and 4004 for the device, which comes back with backoff.
 */
class AuthenticatorFailed extends Error {
  constructor(readonly error: unknown) {
    super('authentication unavailable');
  }
}

/** What an authenticator's throw means: a refusal on purpose (a ProtocolError, a LonglinkError with an auth code), the link gone, or a failure. */
function authOutcome(err: unknown): Error {
  if (err instanceof ProtocolError) return err;
  if (err instanceof LonglinkError) {
    // peer.signal's reason, passed on by a request it aborted: the link is gone, nothing to report.
    if (err.code === 'LL_ERR_CLOSED') return err;
    const reason = AUTH_REFUSALS.find((r) => errorCodeFor(r) === err.code);
    if (reason) return new ProtocolError(reason, err.message);
  }
  return new AuthenticatorFailed(err);
}

/** What kind of value `v` is, for a message (not the value: it may be anything an authenticator holds). */
const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

/** Why an authenticator's answer is not an Identity (ids strings, clientInfo an object of strings), or null if it is one. */
function identityFault(identity: unknown): string | null {
  if (identity === null || typeof identity !== 'object') return `the authenticator returned ${kindOf(identity)}, not an identity`;
  const { userId, deviceId, clientInfo } = identity as Record<string, unknown>;
  if (typeof userId !== 'string') return `the authenticator's userId is ${kindOf(userId)}, not a string`;
  if (typeof deviceId !== 'string') return `the authenticator's deviceId is ${kindOf(deviceId)}, not a string`;
  if (clientInfo === undefined || clientInfo === null) return null;
  if (typeof clientInfo !== 'object' || Array.isArray(clientInfo)) return `the authenticator's clientInfo is ${kindOf(clientInfo)}, not an object of strings`;
  for (const [k, v] of Object.entries(clientInfo)) if (typeof v !== 'string') return `the authenticator's clientInfo ${JSON.stringify(k)} is ${kindOf(v)}, not a string`;
  return null;
}

/**
 * Something went wrong that the gateway survived: a store call failed (the
 * affected link was closed with a retryable code, or the push reported the
 * device `failed`), or an application listener threw (caught; the gateway
 * goes on). Log these.
 */
export interface FaultEvent {
  /** `config`: an option was adjusted to what the process can do (the connection limit to the file limit), or the kernel refused it (op `keepalive`: a socket's keepalive tuning, once per problem). */
  /** store: a store call failed; listener: an event listener threw; config: an option was adjusted, or is wrong (a node id another live node holds); upstream: the backend refused or failed a message (it is retried); auth: the authenticator threw something other than a refusal (the device was told 4004, retried); broadcast: writing a broadcast to a connection threw (op write; the others are written), or one from another node was dropped, this node's broadcast queue being full (op queue-full, LL_ERR_QUEUE_FULL). */
  kind: 'store' | 'listener' | 'config' | 'upstream' | 'auth' | 'broadcast';
  /** The store operation, the event whose listener threw, or `authenticate`. */
  op: string;
  error: unknown;
  userId?: string;
  deviceId?: string;
}

export interface GatewayEvents {
  online: [OnlineEvent];
  offline: [OfflineEvent];
  replaced: [ReplacedEvent];
  message: [MessageEvent];
  state: [StateEvent];
  rtt: [DeviceRef & RttSample];
  delivered: [DeliveryEvent];
  expired: [DropEvent];
  dropped: [DropEvent];
  'protocol-error': [ProtocolErrorEvent];
  refused: [RefusedEvent];
  fault: [FaultEvent];
}

/** A snapshot of one connection, for the application and the admin view. */
export interface ConnectionInfo extends DeviceRef {
  /** Order of acceptance in this process (the admin list's page cursor). */
  serial: number;
  remoteAddress: string;
  intervalMs: number;
  direction: 'client' | 'server';
  /** The policy granted in WELCOME, with the interval in force now. */
  policy: HeartbeatGrant | null;
  /** The interval the client announced in HELLO or a PING, if it did: a fixed choice, or an adaptive client's learned value. */
  announcedIntervalMs: number | null;
  connectedForMs: number;
  /** A heartbeat is overdue and a probe is out. */
  suspected: boolean;
  /** Messages written to the link and not yet acknowledged. */
  unacked: number;
  lastHeardMsAgo: number;
  rttMs: number | null;
  clientInfo: ClientState;
  clientState: ClientState;
  /** Frames and heartbeats through this connection so far. */
  stats: TrafficStats;
  /**
   * The path as this link's client heartbeats measure it: gaps measured (heartbeat after heartbeat),
   * empty slots in them and their share, and the lateness against the slot (moving mean and mean
   * deviation, and the largest).
   */
  path: { gaps: number; missed: number; lossRate: number; latenessMeanMs: number; latenessDevMs: number; latenessMaxMs: number };
}

export type { TrafficStats } from './connection.js';

/** One transport's network, measured (see Gateway.networkStats). */
export interface TransportNetwork {
  heartbeats: LatenessSnapshot;
  /** Round trips: the gateway's own PINGs (server-sent heartbeats, probes) and the smoothed RTTs clients report on theirs; null before any. */
  rtt: { count: number; meanMs: number; p50Ms: number; p99Ms: number } | null;
}

export interface NetworkStats {
  nodeId: string;
  policy: { intervalMs: number; minIntervalMs: number; maxIntervalMs: number; missBudget: number; graceMs: number };
  detector: string;
  tcp: TransportNetwork;
  ws: TransportNetwork;
}

export interface TimerStats {
  /** Connections' timers on the wheel now. */
  wheelSize: number;
  ticks: number;
  visited: number;
  expired: number;
  /** Runner timers armed and runs (about one per tick while the wheel holds anything). */
  arms: number;
  runs: number;
  /** Whether the runner's one timer is pending. */
  runnerPending: boolean;
}

/**
 * The gateway: listeners for TCP and WebSocket, the connection registry,
 * presence in the store, and one timer wheel for every connection's deadline.
 */
export class Gateway extends typedEmitter<GatewayEvents>() {
  readonly options: ResolvedGatewayOptions;
  private readonly registry = new Registry();
  /** Broadcasts being written, a chunk per turn (fan-out.ts). */
  private readonly fanOut = new FanOut<ServerConnection>((error, conn) =>
    this.emit('fault', { kind: 'broadcast', op: 'write', error, userId: conn.userId, deviceId: conn.deviceId }),
  );
  /** The re-assertion after a resync (see reassert). */
  private readonly resync: { running: boolean; pending: ResyncReason | null; failed: ResyncReason | null; attempt: number; timer: TimerHandle | null } = {
    running: false,
    pending: null,
    failed: null,
    attempt: 0,
    timer: null,
  };
  /** Links in their handshake that a newer link on another node took over (its `replaced` came first). */
  private readonly movedOn = new WeakMap<ServerConnection, { by: string; resumed: boolean }>();
  /**
   * Resume tokens of sessions a handshake here is saving held open, with how many: the close of
   * the session's other link here must not save it closed over that save (see saveClosed).
   */
  private readonly sessionsOpening = new Map<string, number>();
  /**
   * Handshakes whose authenticator took `peer.signal` (a connect hook's fetch), aborted when the link
   * closes: the call otherwise ran on for its whole timeout after the link, and its admission place,
   * were gone, so a loop of HELLO-then-close kept any number of hook calls in flight.
   */
  private readonly authAborts = new Map<ServerConnection, AbortController>();
  /**
   * This gateway's sockets' keepalive problems (net-keepalive missing, a value the kernel refused),
   * each once: a `fault` (config, keepalive), or the process's warnings when nobody listens for one.
   * Its own receiver, so another gateway in the process hears nothing of them.
   */
  private readonly keepaliveWarning = (error: LonglinkError): void => {
    if (this.listenerCount('fault') > 0) this.emit('fault', { kind: 'config', op: 'keepalive', error });
    else process.emitWarning(error.message, 'LonglinkWarning');
  };
  private readonly grants = new GrantCache();
  /** Every live connection, including those still in the handshake. */
  private readonly connections = new Set<ServerConnection>();
  private readonly host: ConnectionHost;
  private readonly runner: WheelRunner<ServerConnection>;
  private readonly loopGuard: EventLoopGuard | null;
  private readonly admission: Admission;
  /** What the links hold of frames not whole yet, over all of them (limits.maxPartialFrameBytes). */
  readonly partialFrames: PartialFrameBudget;
  /** Set while draining: resolves when the last draining connection has closed. */
  private drained: (() => void) | null = null;
  private listenersClosed: Promise<void> | null = null;
  private tcpServer: TcpListener | null = null;
  private wsServer: { http: HttpServer; wss: WebSocketServer; lingering: Set<import('node:net').Socket>; dropUpgrading: () => void } | null = null;
  private closing = false;
  /** Set once close() has begun (a drain ends in it): the store may be closed too. */
  private closeStarted = false;
  private readonly ownsStore: boolean;
  /** Reliable delivery both ways (delivery.ts): mailboxes, flush, inbound order and dedup, acks. */
  private readonly delivery: Delivery;
  /** Presence removals (and acknowledged messages' removal) retried until the store takes them. */
  private readonly chores: StoreRetry;
  /** By connection id: another link's entry to put back at the removal of this (gone) link's, until the store takes it (see settleHeldEntry). */
  private readonly putBacks = new Map<string, PresenceEntry>();
  /** Heartbeats found overdue (a probe sent), and of those the peers heard again after all: false suspicions. */
  readonly suspicionStats = { suspected: 0, cleared: 0 };
  /** Connections closed because the handshake did not finish in time (most never said HELLO, so no offline event). */
  handshakeTimeouts = 0;
  /** Links closed because a newer link of the same device took over (see the `replaced` event). */
  replacedLinks = 0;
  /** Client heartbeats' lateness and empty slots, over every connection, per transport (networkStats). */
  private readonly lateness = { tcp: new LatenessStats(), ws: new LatenessStats() };
  /** Round trips per transport: the gateway's own PINGs and what clients report on theirs (the same log buckets; no slots). */
  private readonly rtts = { tcp: new LatenessStats(), ws: new LatenessStats() };
  private readonly traces = new Map<string, ServerConnection>();
  /**
   * The timer machinery's work since start (wheel ticks, timers visited and
   * expired, runner timers armed): per tick and per heartbeat it must stay
   * constant however long the gateway runs. Tests and the hold benchmark read it.
   */
  timerStats(): TimerStats {
    const w = this.host.wheel;
    return { wheelSize: w.size, ...w.stats, ...this.runner.stats, runnerPending: this.runner.pending };
  }

  /** Frame counters of connections already closed; `trafficStats` adds the live ones. */
  private readonly closedTraffic: TrafficStats = { framesIn: 0, framesOut: 0, pingsIn: 0, pingsOut: 0, dataIn: 0, dataOut: 0 };

  constructor(opts: GatewayOptions = {}) {
    super();
    this.options = resolveGatewayOptions(opts);
    this.ownsStore = opts.store === undefined;
    const o = this.options;
    const wheel = new TimerWheel<ServerConnection>({ tickMs: o.wheelTickMs, startMs: o.clock.now() });
    this.loopGuard = o.stallGuard.enabled ? new EventLoopGuard(o.stallGuard) : null;
    this.runner = new WheelRunner(wheel, o.clock, o.timers, (conn) => conn.onTimer(o.clock.now()), this.loopGuard);
    this.admission = new Admission(o.limits, o.clock.now());
    this.partialFrames = new PartialFrameBudget(o.limits.maxPartialFrameBytes, o.limits.inboundSourceShare, o.maxFrameBytes);
    this.chores = new StoreRetry(o.clock, o.timers);
    this.delivery = new Delivery(
      o,
      this.registry,
      {
        message: ({ conn, payload, seq, id }) =>
          this.emit('message', { ...ref(conn), payload, ...(seq !== undefined ? { seq } : {}), ...(id !== undefined ? { id } : {}) }),
        delivered: (e) => this.emit('delivered', e),
        drop: (event, e) => this.emit(event, e),
        fault: (op, error, where) => this.emit('fault', { kind: op === 'message' ? 'listener' : op.startsWith('upstream') ? 'upstream' : 'store', op, error, ...where }),
      },
      () => this.expireTraces(o.clock.now()),
      opts.upstream
        ? new UpstreamRunner(opts.upstream, o.timers, (error, m) => this.emit('fault', { kind: 'upstream', op: `upstream ${opts.upstream!.sink.name}`, error, userId: m.userId, deviceId: m.deviceId }))
        : null,
      this.chores,
    );
    this.delivery.startSweeping();
    this.host = {
      lateness: this.lateness,
      clock: o.clock,
      wheel,
      policy: o.heartbeat,
      probes: o.probes,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      limits: o.limits,
      newDetector: (g, now) => {
        const d = o.detector;
        if (d.kind === 'phi') {
          const { kind: _kind, ...phi } = d;
          return new PhiAccrualDetector(g.intervalMs, now, phi);
        }
        if (d.kind === 'freshness') {
          const window = d.windowSize ? { windowSize: d.windowSize } : {};
          const suspectLateMs = d.suspectLateMs ?? Math.max(1, g.graceMs);
          // Unset, lateMs follows the interval the client announces (see FreshnessBudget).
          return d.lateMs !== undefined
            ? new FreshnessDetector(g.intervalMs, now, { lateMs: d.lateMs, suspectLateMs: Math.min(d.lateMs, suspectLateMs), ...window })
            : new FreshnessDetector(g.intervalMs, now, { budget: { missBudget: g.missBudget, graceMs: g.graceMs }, suspectLateMs, ...window });
        }
        return new SilenceDetector(g.intervalMs, g.missBudget, g.graceMs, now);
      },
      wake: () => this.runner.kick(),
      stalledWithin: (from, to) => this.loopGuard?.stalledWithin(from, to) ?? 0,
      flushBroadcasts: (conn) => this.fanOut.flush(conn),
      hello: (conn, hello) => this.onHello(conn, hello),
      message: (conn, f) => this.delivery.message(conn, f),
      opened: (conn, w) => this.onOpened(conn, w),
      acked: (conn, upTo) => this.delivery.acked(conn, upTo),
      probeAnswered: (conn) => void this.delivery.flush(conn),
      writable: (conn) => void this.delivery.flush(conn),
      probeFailed: () => this.delivery.stats.deadLinksFound++,
      sessionRefreshMs: OPEN_SESSION_TTL_MS / 2,
      refreshSession: (conn) => this.refreshSession(conn),
      stateChanged: (conn, delta) => this.emit('state', { ...ref(conn), delta, state: { ...conn.clientState } }),
      clientRtt: (conn, rttMs) => this.rtts[conn.transport].observe(rttMs),
      rtt: (conn, sample) => {
        this.rtts[conn.transport].observe(sample.sampleMs);
        if (this.listenerCount('rtt') > 0) this.emit('rtt', { ...ref(conn), ...sample });
      },
      suspicion: (conn, cleared) => {
        if (cleared) this.suspicionStats.cleared++;
        else this.suspicionStats.suspected++;
        void this.delivery.upstream?.event({ type: 'suspect', userId: conn.userId, deviceId: conn.deviceId, connectionId: conn.id, nodeId: o.nodeId, cleared, silentForMs: o.clock.now() - conn.lastHeardAt, at: o.wallClock.now() });
      },
      protocolError: (conn, error) =>
        this.emit('protocol-error', { connectionId: conn.id, remoteAddress: conn.link.remoteAddress, transport: conn.transport, error }),
      refused: (conn, reason, message, retryAfterMs) =>
        this.emit('refused', { remoteAddress: conn.link.remoteAddress, transport: conn.transport, reason, message, retryAfterMs, userId: conn.userId, deviceId: conn.deviceId }),
      closed: (conn, reason, code) => this.onClosed(conn, reason, code),
    };
  }

  /** Starts the configured listeners; resolves with their bound addresses. */
  async listen(): Promise<{ tcp?: AddressInfo; ws?: AddressInfo }> {
    const o = this.options;
    const out: { tcp?: AddressInfo; ws?: AddressInfo } = {};
    this.openWhileOpen();
    // maxConnections defaults to 100,000; a process allowed fewer files would run out first and reset
    // newcomers (and the admin port) instead of refusing them with GOAWAY. Clamp, and say so.
    const ceiling = connectionCeiling(openFileLimit(), this.delivery.upstream?.o.sink.maxSockets ?? 0);
    if (ceiling !== null && (o.limits.maxConnections === 0 || o.limits.maxConnections > ceiling)) {
      const was = o.limits.maxConnections;
      o.limits.maxConnections = ceiling;
      this.emit('fault', {
        kind: 'config',
        op: 'limits.maxConnections',
        error: new LonglinkError('LL_ERR_FILE_LIMIT', `limits.maxConnections lowered from ${was === 0 ? 'no limit' : was} to ${ceiling}: the process may hold ${openFileLimit()} open files (raise it with ulimit -n)`),
      });
    }
    // Not awaited: a backend not reachable yet must not hold the listeners back (its messages are retried).
    const sink = this.delivery.upstream?.o.sink;
    void sink?.checkSetup?.().then(
      (problem) => problem && this.emit('fault', { kind: 'config', op: `upstream ${sink.name}`, error: problem }),
      () => {},
    );
    // A shared store: hold this node's lease and take wake-ups for devices connected here.
    if (o.store.joinCluster) {
      await o.store.joinCluster(
        o.nodeId,
        (userId, deviceId) => this.delivery.wake(userId, deviceId),
        (reason) => this.reassert(reason),
        (c) => {
          if (c.kind === 'broadcast') {
            // Checked by the node it came from; refused here only if this node's maxFrameBytes is smaller,
            // or dropped when this node's broadcast queue is full (LL_ERR_QUEUE_FULL: no budget bounded them).
            try {
              this.broadcast(c.payload, c.id !== undefined ? { id: c.id } : {});
            } catch (error) {
              const full = error instanceof LonglinkError && error.code === 'LL_ERR_QUEUE_FULL';
              this.emit('fault', full ? { kind: 'broadcast', op: 'queue-full', error } : { kind: 'config', op: 'broadcast', error });
            }
          } else if (c.kind === 'replaced') this.replacedElsewhere(c.userId, c.deviceId, c.connectionId, c.byConnectionId, c.resumed);
          else if (c.kind === 'check') this.checkHeld(c.userId, c.deviceId, c.connectionId);
          else if (c.kind === 'delivered') this.delivery.remoteDelivered(c.userId, c.deviceId, c.ids);
          else if (c.kind === 'kick') this.kick(c.userId, c.deviceId);
          else this.disconnect(c.userId, c.deviceId, c.reconnectAfterMs !== undefined ? { reconnectAfterMs: c.reconnectAfterMs } : {});
        },
        (error, op) => this.emit('fault', { kind: 'config', op, error }),
      );
      this.openWhileOpen();
    }
    if (o.tcp) {
      const t = o.tcp;
      // With TLS, sockets are admitted at TCP accept, before their TLS handshake: a stalled one is
      // counted per source and pending like any other (a refused one is closed: no TLS session to answer in).
      const gate = t.tls
        ? {
            admit: (source: string) => {
              if (this.closing) return 'going-away';
              const refusal = this.admission.admit(source, o.clock.now());
              if (refusal) this.emit('refused', { remoteAddress: source, transport: 'tcp', ...refusal });
              return refusal;
            },
            abandoned: (source: string) => this.admission.release(source, false),
          }
        : undefined;
      this.tcpServer = await listening('tcp', t, () => listenTcp({ ...t, maxFrameBytes: o.maxFrameBytes, keepalive: o.keepalive, onKeepaliveWarning: this.keepaliveWarning, handshakeTimeoutMs: o.handshakeTimeoutMs, hold: this.partialFrames, gate }, (l, spentMs, admitted) => this.accept(l, admitted, spentMs)), () => this.close());
      out.tcp = this.tcpServer.address() as AddressInfo;
      await this.closedWhileListening();
    }
    if (o.ws) {
      // WebSocket sockets are admitted at TCP accept, before their upgrade: one that never
      // finishes it is counted per source like any other (issue 20).
      const gate = {
        admit: (source: string) => {
          if (this.closing) return { reason: 'going-away', retryAfterMs: 1000, message: 'the gateway is shutting down' };
          const refusal = this.admission.admit(source, o.clock.now());
          if (refusal) this.emit('refused', { remoteAddress: source, transport: 'ws', ...refusal });
          return refusal;
        },
        abandoned: (source: string) => this.admission.release(source, false),
        holdRefused: (source: string) => this.admission.holdRefused(source),
        refusedClosed: (source: string) => this.admission.refusedClosed(source),
      };
      const w = o.ws;
      this.wsServer = await listening('ws', w, () => listenWs({ ...w, maxFrameBytes: o.maxFrameBytes, keepalive: o.keepalive, onKeepaliveWarning: this.keepaliveWarning, handshakeTimeoutMs: o.handshakeTimeoutMs, gate, hold: this.partialFrames }, (l, spentMs) => this.accept(l, true, spentMs)), () => this.close());
      out.ws = this.wsServer.http.address() as AddressInfo;
      await this.closedWhileListening();
    }
    return out;
  }

  /** listen() on a gateway whose close() (or drain()) has begun opens nothing. */
  private openWhileOpen(): void {
    if (this.closing) throw new LonglinkError('LL_ERR_CLOSED', 'the gateway is closed (or draining): listen() opens no port');
  }

  /**
   * close() (or drain()) began while listen() waited for a port: it found no listener to close, and
   * the ports opened since stayed bound for good, holding the process open. They are closed now.
   */
  private async closedWhileListening(): Promise<void> {
    if (!this.closing) return;
    this.listenersClosed = null;
    await this.stopAccepting();
    this.openWhileOpen();
  }

  /**
   * Swaps the certificate and key (or any secure-context option) the TLS
   * listeners serve, as when a certificate is renewed: new connections get
   * them, open links keep theirs. The options are merged over those the
   * listener was made with. A pair that does not load (a key that does not
   * match its certificate, say) throws and leaves both listeners as they were.
   */
  setTls(tls: SecureContextOptions): void {
    const o = this.options;
    const servers: { server: { setSecureContext(o: SecureContextOptions): void }; base: SecureContextOptions }[] = [];
    if (o.tcp && o.tcp.tls && this.tcpServer) servers.push({ server: this.tcpServer as unknown as { setSecureContext(o: SecureContextOptions): void }, base: o.tcp.tls });
    if (o.ws && o.ws.tls && this.wsServer) servers.push({ server: this.wsServer.http as unknown as { setSecureContext(o: SecureContextOptions): void }, base: o.ws.tls });
    if (servers.length === 0) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'setTls: no listener serves TLS (or listen() has not run)');
    // Loaded once first, so that a bad pair fails before either listener changed.
    for (const s of servers) createSecureContext({ ...s.base, ...tls });
    for (const s of servers) s.server.setSecureContext({ ...s.base, ...tls });
  }

  /**
   * Adopts a link from any transport (also used by tests with in-memory
   * links), unless the gateway is closing or a limit refuses it: then the
   * link gets GOAWAY with a hint, is closed, and null is returned. `handshakeSpentMs`: how much of
   * the handshake deadline the transport already took (a WebSocket's upgrade, a TLS handshake: counted from the TCP accept).
   */
  accept(link: Link, admitted = false, handshakeSpentMs = 0): ServerConnection | null {
    if (this.closing) {
      if (admitted) this.admission.release(link.remoteAddress, false);
      link.close(CloseCodes['going-away'], 'the gateway is shutting down');
      return null;
    }
    const refusal = admitted ? null : this.admission.admit(link.remoteAddress, this.options.clock.now());
    if (refusal) {
      const address = link.remoteAddress;
      this.emit('refused', { remoteAddress: address, transport: link.transport, ...refusal });
      // Answered and given a second to close, as long as its source has not too many such open.
      if (!this.admission.holdRefused(address)) {
        link.destroy();
        return null;
      }
      link.bind({ onLinkFrame: () => {}, onLinkError: () => {}, onLinkClose: () => this.admission.refusedClosed(address) });
      link.send(goawayFrame(refusal.reason, refusal.retryAfterMs));
      link.close(CloseCodes[refusal.reason], refusal.message);
      return null;
    }
    const conn = new ServerConnection(link, this.host, handshakeSpentMs);
    this.connections.add(conn);
    return conn;
  }

  /**
   * Closes a link a newer one of the same device took over (here, or on the
   * node named in a `replaced` control), and says how long it had been silent.
   * The caller has taken it out of the registry: no `offline` follows.
   */
  private replace(previous: ServerConnection, byConnectionId: string, resumed: boolean): void {
    const silentForMs = this.options.clock.now() - previous.lastHeardAt;
    const g = previous.grant;
    const intervalMs = g?.intervalMs ?? 0;
    const stale = g !== null && silentForMs > g.intervalMs;
    previous.closeWith('replaced', 'a newer connection for this device took over');
    this.replacedLinks++;
    const o = this.options;
    void this.delivery.upstream?.event({ type: 'replaced', userId: previous.userId, deviceId: previous.deviceId, connectionId: previous.id, nodeId: o.nodeId, byConnectionId, resumed, stale, silentForMs, at: o.wallClock.now() });
    if (this.listenerCount('replaced') === 0) return;
    this.emit('replaced', { ...ref(previous), byConnectionId, resumed, silentForMs, intervalMs, stale });
  }

  /** Tells the node of a link this one displaced from presence that `by` took over from it. */
  private tellReplaced(old: PresenceEntry, by: ServerConnection, resumed: boolean): void {
    const c = { kind: 'replaced', userId: by.userId, deviceId: by.deviceId, connectionId: old.connectionId, byConnectionId: by.id, resumed } as const;
    void this.options.store.control?.(old.nodeId, c).catch((err) => this.emit('fault', { kind: 'store', op: 'control (replaced)', error: err }));
  }

  /**
   * A handshake whose link closed while its presence write was out displaced `old` (another node's
   * link), and could not put it back: a newer link of the device holds the entry, having displaced
   * this handshake's entry, not `old`'s (the client's next try, on this node or a third). Nobody else
   * will tell `old`'s node, whose link, the device's past, would stay registered there and report the
   * device `offline` when it dies, while it is online. That node is told the holder took over
   * (whether it resumed is not known here: false), unless `old` is the later of the two.
   */
  private async tellSuccessor(old: PresenceEntry, gone: ServerConnection): Promise<void> {
    const store = this.options.store;
    if (!store.control) return;
    const holder = store.presenceOf ? await store.presenceOf(old.userId, old.deviceId) : (await store.devices(old.userId)).find((e) => e.deviceId === old.deviceId);
    if (!holder || holder.connectionId === old.connectionId || holder.connectionId === gone.id || acceptedAfter(old, holder)) return;
    await store.control(old.nodeId, { kind: 'replaced', userId: old.userId, deviceId: old.deviceId, connectionId: old.connectionId, byConnectionId: holder.connectionId, resumed: false });
  }

  /** Asks the node of a link put back in presence whether it still holds it (checkHeld, there). */
  private askToCheck(e: PresenceEntry): Promise<void> | undefined {
    return this.options.store.control?.(e.nodeId, { kind: 'check', userId: e.userId, deviceId: e.deviceId, connectionId: e.connectionId });
  }

  /** Another node put this node's link `connectionId` back in presence: if it is not open here, out it goes. */
  private checkHeld(userId: string, deviceId: string, connectionId: string): void {
    const conn = this.registry.get(userId, deviceId);
    if (conn && conn.id === connectionId && !isClosed(conn)) return;
    this.removePresence(userId, deviceId, connectionId);
  }

  /**
   * Removes a gone link's presence entry (only while it is still that link's),
   * retried until the store takes it: one failed call would leave the device
   * online in presence for good.
   */
  private removePresence(userId: string, deviceId: string, connectionId: string): void {
    const store = this.options.store;
    // A put-back still owed goes with any later removal of the link (which supersedes it, and else
    // could go first): a plain removal would drop the newer link's entry (see settleHeldEntry).
    const back = this.putBacks.get(connectionId);
    const settled = () => {
      if (back && this.putBacks.get(connectionId) === back) this.putBacks.delete(connectionId);
    };
    // Given up (the retries' bound, the gateway closing), it is owed no more: kept, it stayed for good.
    this.chores.do(`offline ${connectionId}`, () => store.setOffline(userId, deviceId, connectionId, back).then(settled), settled);
  }

  /**
   * Takes back a presence write of `conn` whose answer is not known (it may have been done), retried:
   * puts back another node's link it displaced (that node never heard of this one), and asks that
   * node to check it still holds the link.
   */
  private takeBack(conn: ServerConnection): void {
    const store = this.options.store;
    this.chores.do(`offline ${conn.id}`, () =>
      (store.takeBackOnline ? store.takeBackOnline(conn.userId, conn.deviceId, conn.id) : store.setOffline(conn.userId, conn.deviceId, conn.id).then(() => undefined)).then((back) =>
        back ? this.askToCheck(back) : undefined,
      ),
    );
  }

  /** Store retries waiting (presence removals, acknowledged messages' removal); see store-retry.ts. */
  storeRetryStats(): Readonly<StoreRetryStats> {
    return this.chores.stats;
  }

  /** Another node's newer link of the device took over from `connectionId`, if that is still the device's link here. */
  private replacedElsewhere(userId: string, deviceId: string, connectionId: string, byConnectionId: string, resumed: boolean): void {
    const conn = this.registry.get(userId, deviceId);
    if (!conn || conn.id !== connectionId) return;
    if (conn.phase !== 'open') {
      // Still in its handshake (its setOnline answer not yet here): it gives way when that comes.
      this.movedOn.set(conn, { by: byConnectionId, resumed });
      return;
    }
    this.giveWay(conn, byConnectionId, resumed);
  }

  /** The device's link here gives way to its newer link on another node: replaced, with no `offline`. */
  private giveWay(conn: ServerConnection, byConnectionId: string, resumed: boolean): void {
    this.registry.remove(conn);
    this.replace(conn, byConnectionId, resumed);
    this.delivery.movedAway(conn.userId, conn.deviceId);
    // Its entry is the newer link's as a rule (removal then does nothing), but not if the word came
    // late, after this node wrote the entry again (a resync) and the newer link had gone: unremoved,
    // it would stay for good, the node being alive. Out of the registry, the close removes nothing.
    this.removePresence(conn.userId, conn.deviceId, conn.id);
  }

  /**
   * The network as this gateway measures it, per transport: how late client
   * heartbeats come against their slot and how many slots stay empty (over
   * every connection since start), and the round trips of the gateway's own
   * PINGs. What `longlink tune` reads (`/api/network` on the admin port).
   */
  networkStats(): NetworkStats {
    const o = this.options;
    const per = (t: 'tcp' | 'ws'): TransportNetwork => {
      const r = this.rtts[t];
      return {
        heartbeats: this.lateness[t].snapshot(),
        rtt: r.count ? { count: r.count, meanMs: round1(r.meanMs), p50Ms: round1(r.quantile(0.5)), p99Ms: round1(r.quantile(0.99)) } : null,
      };
    };
    const d = o.detector;
    return {
      nodeId: o.nodeId,
      policy: { intervalMs: o.heartbeat.intervalMs, minIntervalMs: o.heartbeat.minIntervalMs, maxIntervalMs: o.heartbeat.maxIntervalMs, missBudget: o.heartbeat.missBudget, graceMs: o.heartbeat.graceMs },
      detector: d.kind,
      tcp: per('tcp'),
      ws: per('ws'),
    };
  }

  /** The live lateness statistics of one transport's client heartbeats (read them; the gateway writes). */
  heartbeatLateness(transport: 'tcp' | 'ws'): LatenessStats {
    return this.lateness[transport];
  }

  /** Connections admitted and refused at accept time, by limit. */
  admissionStats(): AdmissionStats {
    return { ...this.admission.stats };
  }

  private onHello(conn: ServerConnection, hello: HelloFrame): Opening | Promise<Opening> {
    let opening: Opening | Promise<Opening>;
    try {
      opening = runSteps(this.helloSteps(conn, hello));
    } catch (err) {
      throw this.helloFault(conn, err);
    }
    return opening instanceof Promise ? opening.catch((err: unknown) => Promise.reject(this.helloFault(conn, err))) : opening;
  }

  /**
   * A handshake that failed other than by a refusal (a ProtocolError) or the link going away: a
   * store call's or the authenticator's error. Reported as a `fault` here: the device is told only
   * to come back (4004).
   */
  private helloFault(conn: ServerConnection, err: unknown): unknown {
    if (err instanceof AuthenticatorFailed) {
      // Not when the link is gone: peer.signal aborted the authenticator's call (a client that left), whatever it rejected with.
      if (!isClosed(conn)) this.emit('fault', { kind: 'auth', op: 'authenticate', error: err.error, userId: conn.userId, deviceId: conn.deviceId });
    } else if (!(err instanceof LonglinkError && (err instanceof ProtocolError || err.code === 'LL_ERR_CLOSED'))) {
      this.emit('fault', { kind: 'store', op: 'handshake', error: err, userId: conn.userId, deviceId: conn.deviceId });
    }
    return err;
  }

  /**
   * The handshake, as steps (run-steps.ts): each `yield` is a call that may
   * answer at once (the default authenticator, the in-memory store) or later
   * (a hook, Redis), and after each one that did not, the world may have
   * changed: hence the checks that the link is still there.
   */
  private *helloSteps(conn: ServerConnection, hello: HelloFrame): Generator<unknown, Opening, unknown> {
    const o = this.options;
    let identity: Identity;
    const aborts = this.authAborts;
    try {
      identity = (yield o.authenticate(hello, new HandshakePeer(conn, aborts))) as Identity;
    } catch (err) {
      throw authOutcome(err);
    } finally {
      if (aborts.size !== 0) aborts.delete(conn);
    }
    // A slow hook: the client may have given up on this link and resumed elsewhere meanwhile.
    stillOpen(conn);
    // JavaScript's or a hook's JSON: a user id of 42 made a device no push to '42' found, a missing one
    // failed every handshake as a store fault. The authenticator's failure, not the device's (retried).
    const misshapen = identityFault(identity);
    if (misshapen) throw new AuthenticatorFailed(new LonglinkError('LL_ERR_INVALID_IDENTITY', misshapen));
    // What an authenticator (a connect hook) returns is kept as the HELLO's fields are: the same bounds.
    const l = o.limits;
    for (const name of IDENTITY_IDS) {
      const v = identity[name];
      if (v === hello[name]) continue;
      if (utf8Exceeds(v, l.maxIdBytes)) throw new ProtocolError('field-too-large', `the authenticator's ${name} of ${utf8Length(v)} bytes exceeds the limit of ${l.maxIdBytes}`);
      // A JWT's or a hook's JSON can hold a lone surrogate, which no store could read back (a HELLO's UTF-8 cannot).
      if (!isWellFormed(v)) throw new ProtocolError('auth-failed', `the authenticator's ${name} is not well-formed Unicode (a lone surrogate)`);
    }
    let clientInfo = identity.clientInfo;
    if (clientInfo && clientInfo !== hello.clientInfo) {
      // In UTF-8 bytes, as the limit (and HELLO's clientInfo) counts: a JSON string's length counts é as 1.
      if (utf8Exceeds(JSON.stringify(clientInfo), l.maxClientInfoBytes)) throw new ProtocolError('field-too-large', `the authenticator's clientInfo exceeds the limit of ${l.maxClientInfoBytes} bytes`);
      // In entries too, as HELLO's (connection.ts): a thousand empty ones are a few bytes and 50 KB of heap, kept with the session.
      const keys = Object.keys(clientInfo).length;
      if (keys > l.maxStateKeys) throw new ProtocolError('field-too-large', `the authenticator's clientInfo of ${keys} entries exceeds the limit of ${l.maxStateKeys}`);
      clientInfo = toWellFormed(clientInfo);
    }
    conn.userId = identity.userId;
    conn.deviceId = identity.deviceId;
    if (clientInfo) conn.clientInfo = clientInfo;
    const h = identity.heartbeat;
    // An interval the authenticator sets binds the link: taken from the client's later PINGs, it was
    // undone at once by any client that announces one (the adaptive client does on its first WELCOME).
    const pinned = typeof h?.intervalMs === 'number' && h.intervalMs > 0;
    const grant = this.grants.get(o.heartbeat, h ? { direction: h.direction ?? hello.direction, intervalMs: h.intervalMs ?? hello.intervalMs } : hello, pinned);
    const now = o.wallClock.now();
    let session: SessionRecord | undefined;
    if (hello.resumeToken) {
      const found = (yield o.store.loadSession(hello.resumeToken, now)) as SessionRecord | undefined;
      // A token is only good for the identity it was issued to.
      if (found && found.userId === conn.userId && found.deviceId === conn.deviceId && (yield* this.resumable(found, now))) session = found;
    }
    const resumed = session !== undefined;
    // Every field at once, openOn included: one set afterwards would give each record a property array.
    session ??= {
      sessionId: newId(),
      resumeToken: newToken(),
      userId: conn.userId,
      deviceId: conn.deviceId,
      clientInfo: conn.clientInfo,
      createdAt: now,
      inSeq: 0,
      openOn: o.nodeId,
    };
    // A live connection of the same session (being replaced) knows more than the stored record.
    const live = this.registry.get(conn.userId, conn.deviceId);
    const inSeq = live && live.sessionId === session.sessionId ? Math.max(live.delivery?.inSeq ?? 0, session.inSeq) : session.inSeq;
    yield o.store.rememberDevice(conn.userId, conn.deviceId, now + o.delivery.knownDeviceTtlMs);
    // Not a write for a link that is gone: it would mark the session held open here over the node
    // where the device resumed it meanwhile, whose close could then never save it closed.
    stillOpen(conn);
    this.giveWayToNewer(conn);
    session.clientInfo = conn.clientInfo;
    // Held open on this node: resumable for as long as the link lives (and sessionTtlMs after it
    // ends, even if this node dies without saying so: see resumable()).
    session.openOn = o.nodeId;
    session.inSeq = inSeq;
    const token = session.resumeToken;
    // Only a resumed session can have another link here whose close would save it closed: a new
    // one's token is in no other hands (and a map that grows and shrinks by one reallocates).
    if (resumed) this.sessionsOpening.set(token, (this.sessionsOpening.get(token) ?? 0) + 1);
    try {
      yield o.store.saveSession(session, now + OPEN_SESSION_TTL_MS);
    } finally {
      if (resumed) {
        const n = this.sessionsOpening.get(token)! - 1;
        if (n === 0) this.sessionsOpening.delete(token);
        else this.sessionsOpening.set(token, n);
      }
    }
    try {
      stillOpen(conn);
      this.giveWayToNewer(conn);
    } catch (err) {
      // Saved held open here for a link that will never hold it: for 12 h (and uncounted among
      // the ended sessions a store bounds), unless saved closed.
      this.saveClosed({ ...session, openOn: undefined }, now);
      throw err;
    }
    conn.sessionId = session.sessionId;
    conn.resumeToken = session.resumeToken;
    // The live link of the session may have taken in more while this handshake waited: WELCOME
    // acknowledges up to there, or the client re-sends what was accepted (twice upstream, without ids).
    // Once this link is registered the live one is replaced, and takes in nothing more.
    const acceptedIn = live && live.sessionId === session.sessionId ? Math.max(live.delivery?.inSeq ?? 0, inSeq) : inSeq;

    const previous = this.registry.add(conn);
    // A device replacing its own link stays online: no second `online`, and `offline` only when the last goes.
    // Set before `replaced` is emitted: a listener may close this link at once (a kick), and the
    // device, online through the link replaced, must then be reported offline.
    conn.announced = previous?.announced ?? false;
    if (previous && previous !== conn) this.replace(previous, conn.id, resumed);
    // Until its answer, a close leaves the entry to this handshake (onClosed sends no setOffline).
    conn.presenceOut = true;
    let displaced: PresenceEntry | undefined;
    const entry = this.presenceEntry(conn);
    try {
      // A device with a link here is online: replacing it is never refused (the store may not know it, after a loss).
      displaced = ((yield o.store.setOnline(entry, previous ? 0 : o.limits.maxOnlineDevicesPerUser)) as PresenceEntry | undefined | void) || undefined;
    } catch (err) {
      if (err instanceof ProtocolError && err.reason === 'too-many-devices') {
        // Nothing was written. Out of the registry first: its close is no device going offline; its
        // session is saved closed (a resume's stays resumable for its next try).
        this.movedOn.delete(conn);
        this.registry.remove(conn);
        throw err;
      }
      // The write may have been done all the same (a reply lost): take it back, putting back
      // another node's link it displaced (that node never heard of this one), and ask that node
      // to check it still holds the link. presenceOut stays set: the take-back is in charge of the
      // entry, and the close that follows must not replace it with a plain removal (which would
      // leave the displaced link out).
      this.takeBack(conn);
      // A link of the device here that this one replaced: its entry was to be overwritten by this
      // write, which may not have happened. The device has no link here now; out it goes too.
      if (previous && previous !== conn) this.removePresence(previous.userId, previous.deviceId, previous.id);
      throw err;
    }
    // Another node's link this write displaced: only another node's, since one here was closed by registry.add.
    const elsewhere = displaced && displaced.nodeId !== o.nodeId ? displaced : undefined;
    // That link was accepted after this one: a client has one link at a time, so it gave up on this
    // handshake (a hook or store slower than its handshake timeout, a path that died with no close
    // reaching here) and went there. This link is the device's past and gives way, as one does on a
    // single node (giveWayToNewer); told `replaced`, the newer link's client would never come back.
    const superseded = elsewhere !== undefined && acceptedAfter(elsewhere, entry);
    // Until that entry is back, a close of this link leaves the entry alone, as while setOnline was out.
    if (!superseded) conn.presenceOut = false;
    const moved = this.movedOn.get(conn);
    if (moved || isClosed(conn) || superseded) {
      this.movedOn.delete(conn);
      if (moved) {
        // A newer link on another node took over while this entry was being written (its `replaced`
        // came first): this link gives way as if it had been open. The entry is that link's now. A
        // third node's link this write displaced is told all the same, closed or not here: nobody
        // else will (the newer link displaced this one's entry, not that one's), and unheard it would
        // stay registered there and report the device offline when it dies.
        if (!isClosed(conn) && this.registry.get(conn.userId, conn.deviceId) === conn) this.giveWay(conn, moved.by, moved.resumed);
        if (elsewhere) this.tellReplaced(elsewhere, conn, resumed);
      } else {
        // The link closed while setOnline was out: take the entry back, putting back another node's link
        // it displaced (open, maybe: a client that gave up on this handshake and went there). That node
        // is asked to check it still holds that link, in case it too closed meanwhile. If a newer link
        // took the entry meanwhile, that node is told its link was replaced (see tellSuccessor). Announce nothing.
        this.chores.do(`offline ${conn.id}`, () =>
          o.store
            .setOffline(conn.userId, conn.deviceId, conn.id, elsewhere)
            .then((putBack) => (elsewhere === undefined ? undefined : putBack ? this.askToCheck(elsewhere) : this.tellSuccessor(elsewhere, conn))),
        );
        if (!isClosed(conn)) {
          // Out of the registry first: its close is no device going offline. It never opened: nothing waited on it.
          // Its record was saved held open here, maybe over the newer link's hold (it resumed the same
          // session): the close saves it closed (see onClosed), unless held elsewhere since.
          this.registry.remove(conn);
          throw new ProtocolError('replaced', 'a newer connection of this device opened on another node during the handshake');
        }
      }
      throw new LonglinkError('LL_ERR_CLOSED', moved ? 'replaced during handshake by a link on another node' : 'connection closed during handshake');
    }
    // The device's last link is on another node (a move, often from a link that died unnoticed):
    // that node closes it as replaced, with no `offline`, rather than report the device gone later.
    if (elsewhere) this.tellReplaced(elsewhere, conn, resumed);
    if (!conn.announced) {
      conn.announced = true;
      // Numbered for the backend before a listener can close the link: its offline comes after.
      void this.delivery.upstream?.event({ type: 'online', userId: conn.userId, deviceId: conn.deviceId, connectionId: conn.id, nodeId: o.nodeId, resumed, at: o.wallClock.now() });
      // The event object only for someone to read it (an embedded gateway often has no listener).
      if (this.listenerCount('online') > 0) this.emit('online', { ...ref(conn), resumed, resumeFailed: hello.resumeToken !== undefined && !resumed, clientInfo: conn.clientInfo });
    }
    return {
      sessionId: session.sessionId,
      resumeToken: session.resumeToken,
      resumed,
      grant,
      inSeq: resumed ? acceptedIn : 0,
      outSeq: resumed ? (hello.lastSeq ?? 0) : 0,
    };
  }

  /**
   * A newer link of the device opened here while this handshake waited (a slow
   * authenticator or store): this one is the device's past (a client has one
   * link at a time, and its newer one came later), so it gives way. Registered,
   * it would close the newer, live link as replaced, which a client never retries.
   */
  private giveWayToNewer(conn: ServerConnection): void {
    const current = this.registry.get(conn.userId, conn.deviceId);
    if (current && current !== conn && current.serial > conn.serial) {
      throw new ProtocolError('replaced', 'a newer connection of this device opened during the handshake');
    }
  }

  /**
   * The link's entry. `since` is when it was accepted (wall ms): the same in every write of the
   * entry (a re-assertion does not make it look newer), and what tells which of two links of a
   * device on two nodes the client opened last.
   */
  private presenceEntry(conn: ServerConnection): PresenceEntry {
    const o = this.options;
    const since = Math.round(o.wallClock.now() - (o.clock.now() - conn.connectedAt));
    return { userId: conn.userId, deviceId: conn.deviceId, connectionId: conn.id, nodeId: o.nodeId, transport: conn.transport, since, clientInfo: conn.clientInfo };
  }

  /**
   * A session record saved while its link was open (`openOn`) is resumable
   * while that node lives and for sessionTtlMs after it was last seen, so a
   * link that broke without its node noticing (a network switch, a node
   * crash) resumes however old it was.
   */
  private *resumable(s: SessionRecord, now: number): Generator<unknown, boolean, unknown> {
    const o = this.options;
    if (s.openOn === undefined || s.openOn === o.nodeId || !o.store.nodeSeenAt) return true;
    const seen = (yield o.store.nodeSeenAt(s.openOn)) as number | null;
    return seen !== null && now - seen < o.sessionTtlMs;
  }

  /** Re-saves an open link's session record before its long TTL runs out (called from its timer). */
  private refreshSession(conn: ServerConnection): void {
    const o = this.options;
    unawaited(() => o.store.rememberDevice(conn.userId, conn.deviceId, o.wallClock.now() + o.delivery.knownDeviceTtlMs), () => {});
    if (o.store.touchPresence) unawaited(() => o.store.touchPresence!(conn.userId), () => {});
    // Not over another node's hold: the device may have resumed the session there, and this link be
    // the stale one whose `replaced` has not come (or was lost). Taken back, the record would carry
    // this link's older inSeq, and that node's save of it closed would be refused.
    unawaited(
      () => o.store.saveSession(this.sessionRecord(conn, true), o.wallClock.now() + OPEN_SESSION_TTL_MS, o.nodeId),
      (error) => this.emit('fault', { kind: 'store', op: 'saveSession', error, userId: conn.userId, deviceId: conn.deviceId }),
    );
  }

  /**
   * Saves a session closed (resumable for sessionTtlMs from `now`, counted among the ended ones a
   * store bounds) that a link here held open and no longer does. Not when a link here holds it
   * now or a handshake here is saving it held open (a resume racing the old link's close; this
   * save could land after that one), nor over a hold of another node's (the store checks).
   */
  private saveClosed(record: SessionRecord, now: number): void {
    const o = this.options;
    if (this.sessionsOpening.has(record.resumeToken)) return;
    if (this.registry.get(record.userId, record.deviceId)?.sessionId === record.sessionId) return;
    unawaited(() => o.store.saveSession(record, now + o.sessionTtlMs, o.nodeId), () => {});
  }

  private sessionRecord(conn: ServerConnection, open: boolean): SessionRecord {
    return {
      sessionId: conn.sessionId,
      resumeToken: conn.resumeToken,
      userId: conn.userId,
      deviceId: conn.deviceId,
      clientInfo: conn.clientInfo,
      createdAt: this.options.wallClock.now(),
      inSeq: conn.delivery?.inSeq ?? 0,
      openOn: open ? this.options.nodeId : undefined,
    };
  }

  /**
   * The store may have forgotten this node's presence or sessions (a lapsed
   * lease, a store that restarted without its data, a replica that took over
   * without the last writes): write them again for every link here, and
   * flush every device, since wake-ups may have been lost. A device whose
   * entry is now another link's (it moved on) is left to that link.
   *
   * One re-assertion at a time: a resync that comes while one runs (another
   * failover refresh, a lease lapse) is remembered, the strongest reason
   * kept, and runs after it; one the store refused part of is tried again,
   * backing off, until REASSERT_ATTEMPTS or a new resync starts the count over.
   */
  private reassert(reason: ResyncReason): void {
    // The store is back: what waits to be retried goes now.
    this.chores.retryNow();
    const r = this.resync;
    r.pending = strongest(reason, r.pending);
    r.attempt = 0;
    if (r.timer) this.options.timers.clearTimeout(r.timer);
    r.timer = null;
    if (!r.running) void this.runReassert();
  }

  private async runReassert(): Promise<void> {
    const r = this.resync;
    r.running = true;
    while (r.pending !== null && !this.closing) {
      // A pass that failed is owed until one as strong succeeds: a weaker resync meanwhile (a
      // re-subscription, which comes with a failover) does not pay it.
      const reason = strongest(r.pending, r.failed);
      r.pending = null;
      if (await this.reassertOnce(reason)) {
        r.failed = null;
        continue;
      }
      r.failed = reason;
      if (r.pending === null && ++r.attempt < REASSERT_ATTEMPTS && !this.closing) {
        // The store is not back everywhere yet (a second master still failing over): again, later.
        r.timer = this.options.timers.setTimeout(() => {
          r.timer = null;
          r.pending = strongest(reason, r.pending);
          if (!r.running) void this.runReassert();
        }, 1000 * r.attempt);
      }
    }
    r.running = false;
  }

  /** Writes this node's links' records again (see reassert); false if the store refused one. */
  private async reassertOnce(reason: ResyncReason): Promise<boolean> {
    const o = this.options;
    let ok = true;
    if (reason !== 'resubscribed') {
      const now = o.wallClock.now();
      const lost = reason === 'store-reset' || reason === 'failover';
      const links = [...this.registry.all()];
      let next = 0;
      const one = async (conn: ServerConnection): Promise<void> => {
        if (conn.phase !== 'open') return;
        try {
          const entry = this.presenceEntry(conn);
          const mine = o.store.restoreOnline ? await o.store.restoreOnline(entry) : (await o.store.setOnline(entry), true);
          // It may have closed (or given way) meanwhile: its setOffline may have gone first, and
          // its session record is now its successor's or a closed one, not to be written as open.
          // Removed as any gone link's entry, retried: nothing else removes it once the link is gone.
          if (isClosed(conn) || this.registry.get(conn.userId, conn.deviceId) !== conn) {
            if (mine) this.removePresence(conn.userId, conn.deviceId, conn.id);
            return;
          }
          // The entry is another link's: a newer one's (this link gives way) or an older one's
          // (this link takes the entry over): see settleHeldEntry.
          if (!mine && !(await this.settleHeldEntry(conn, entry, now))) return;
          if (lost) {
            await o.store.saveSession(this.sessionRecord(conn, true), now + OPEN_SESSION_TTL_MS);
            await o.store.rememberDevice(conn.userId, conn.deviceId, now + o.delivery.knownDeviceTtlMs);
          }
        } catch (error) {
          // One fault reported: the pass is tried again whole (runReassert).
          if (ok) this.emit('fault', { kind: 'store', op: `reassert (${reason})`, error });
          ok = false;
        }
      };
      // Each link's writes in order, REASSERT_CONCURRENCY links at a time; none started once the store refused one.
      const worker = async (): Promise<void> => {
        while (ok && next < links.length) await one(links[next++]);
      };
      await Promise.all(Array.from({ length: Math.min(REASSERT_CONCURRENCY, links.length) }, worker));
    }
    this.delivery.wakeAll();
    return ok;
  }

  /**
   * After restoreOnline refused this open link's entry: it is another link's. Returns whether
   * this link holds the entry now.
   *
   * A newer link's: the device moved on and the `replaced` word to this node was lost (given up
   * with a lapsed lease, or in the cut that lapsed it). This link gives way; left registered it
   * would report the device offline, when its detector fired, while it is online there.
   *
   * An older link's: the store came back from an older snapshot (or a replica took over without
   * the last writes) holding the entry of the device's past link, closed since, on a node that
   * lives and never rewrites it. Left so, presence named that link for good and every push was
   * routed to a node without it. This link takes the entry over, as its handshake did, and that
   * link's node is told, as then. The entry is read, then written: what the write displaced is
   * checked again, and put back if it was a newer link's that came in between.
   */
  private async settleHeldEntry(conn: ServerConnection, mine: PresenceEntry, now: number): Promise<boolean> {
    const o = this.options;
    const here = () => !isClosed(conn) && this.registry.get(conn.userId, conn.deviceId) === conn;
    // Its node's lease may have lapsed too (an outage lapses every node's): read the entry as stored.
    let holder = o.store.presenceOf ? await o.store.presenceOf(conn.userId, conn.deviceId) : (await o.store.devices(conn.userId)).find((e) => e.deviceId === conn.deviceId);
    if (!holder || holder.connectionId === conn.id) return false;
    if (acceptedAfter(mine, holder)) {
      if (!here()) return false;
      const displaced = ((await o.store.setOnline(mine)) || undefined) as PresenceEntry | undefined;
      const newer = displaced !== undefined && displaced.connectionId !== conn.id && acceptedAfter(displaced, mine) ? displaced : undefined;
      if (here() && !newer) {
        if (displaced && displaced.connectionId !== conn.id && displaced.nodeId !== o.nodeId) this.tellReplaced(displaced, conn, false);
        return true;
      }
      // Closed meanwhile (its own removal may have gone first), or a newer link wrote its entry since the read.
      // Retried as any removal: awaited, one failure stopped the pass and left the entry this link's
      // (the next pass keeps it: the newer, live link out of presence for good).
      if (newer) this.putBacks.set(conn.id, newer);
      this.removePresence(conn.userId, conn.deviceId, conn.id);
      if (!newer || !here()) return false;
      holder = newer;
    }
    if (!acceptedAfter(holder, mine)) return false;
    const record = await o.store.loadSession(conn.resumeToken, now);
    if (!here()) return false;
    this.giveWay(conn, holder.connectionId, record?.openOn !== undefined && record.openOn !== o.nodeId);
    return false;
  }

  private onOpened(conn: ServerConnection, w: Opening): void {
    this.admission.opened(conn.link.remoteAddress, this.options.clock.now());
    this.delivery.opened(conn, w.inSeq, w.outSeq);
  }

  /**
   * Application listeners run inside the gateway's own paths (a socket's
   * data, a store reply); one that throws must not take the link or the
   * process with it. The throw is reported as a `fault` and the gateway goes on.
   */
  override emit<K extends keyof GatewayEvents>(event: K, ...args: GatewayEvents[K]): boolean {
    try {
      return super.emit(event as keyof GatewayEvents, ...(args as never));
    } catch (error) {
      if (event !== 'fault') {
        try {
          super.emit('fault', { kind: 'listener', op: String(event), error });
        } catch {
          // A fault listener that throws too has nobody left to tell.
        }
      }
      return true;
    }
  }

  /** Delivery counters since the gateway started. */
  get deliveryStats(): DeliveryStats {
    return this.delivery.stats;
  }

  /**
   * Reliable push to every device of `userId`, connected or not: each device
   * gets the message in order, once, acknowledged; devices that are offline
   * get it from their queue when they come back. Resolves with each device's
   * outcome once all have acknowledged, or after `waitMs`.
   */
  push(userId: string, payload: Uint8Array | string, opts: PushOptions = {}): Promise<PushResult> {
    return this.delivery.push(userId, payload, opts);
  }

  /** Removes expired messages now and reports them (the sweep does this every `sweepIntervalMs`). */
  sweepExpired(): Promise<number> {
    return this.delivery.sweepExpired();
  }

  /** Messages held for one device (sent and unacknowledged, or waiting). */
  queueDepth(userId: string, deviceId: string): Promise<number> {
    return this.options.store.depth(userId, deviceId);
  }

  private onClosed(conn: ServerConnection, reason: DisconnectReason, code: number): void {
    this.connections.delete(conn);
    if (conn.trace) this.traces.delete(conn.id);
    this.admission.release(conn.link.remoteAddress, conn.opened);
    const auth = this.authAborts.get(conn);
    if (auth) {
      this.authAborts.delete(conn);
      auth.abort(new LonglinkError('LL_ERR_CLOSED', 'connection closed during handshake'));
    }
    if (this.drained && this.connections.size === 0) this.drained();
    for (const k of Object.keys(this.closedTraffic) as (keyof TrafficStats)[]) this.closedTraffic[k] += conn[k];
    if (reason === 'handshake-timeout') this.handshakeTimeouts++;
    const removed = this.registry.remove(conn);
    this.delivery.closed(conn, removed);
    const o = this.options;
    const now = o.wallClock.now();
    if (!removed) {
      // Replaced, or given way to a link on another node: no device went offline. Its session ended
      // with it unless the link that took over resumed it (saveClosed tells).
      if (conn.sessionId !== '') this.saveClosed(this.sessionRecord(conn, false), now);
      return;
    }
    const silentForMs = o.clock.now() - conn.lastHeardAt;
    // Presence and session bookkeeping are best effort: a store outage must
    // not keep a dead connection around. A link whose setOnline is out leaves
    // the entry to its handshake, which knows by the answer which entry it
    // displaced (see helloSteps). Asked before `offline` is emitted: a listener
    // that reads presence (was it the user's last device?) must not find it.
    if (!conn.presenceOut) this.removePresence(conn.userId, conn.deviceId, conn.id);
    // One out that took `online` over from the link it replaced here is announced: its write, if
    // done, is taken back now (the store answers in order), putting back what it displaced of
    // another node, as its handshake would. Not with a plain removal, which would drop that.
    else if (conn.announced && o.store.takeBackOnline) this.takeBack(conn);
    if (conn.announced) {
      this.emit('offline', { ...ref(conn), reason, code, initiator: conn.closedByGateway ? 'gateway' : 'peer', silentForMs });
      const o = this.options;
      void this.delivery.upstream?.event({ type: 'offline', userId: conn.userId, deviceId: conn.deviceId, connectionId: conn.id, nodeId: o.nodeId, reason, code, initiator: conn.closedByGateway ? 'gateway' : 'peer', silentForMs, at: o.wallClock.now() });
    }
    this.saveClosed(this.sessionRecord(conn, false), now);
    // Known for knownDeviceTtlMs from its last link's end, not from its handshake: a device online
    // for longer would be forgotten (pushes answered unknown-user) the moment it dropped.
    unawaited(() => o.store.rememberDevice(conn.userId, conn.deviceId, now + o.delivery.knownDeviceTtlMs), () => {});
  }

  /**
   * Fire-and-forget: a DATA frame, unsequenced and unacknowledged, to every
   * connected device of `userId` (nothing is queued; see `push` for reliable
   * delivery). Returns how many devices it went to.
   */
  send(userId: string, payload: Uint8Array | string, opts: { id?: string } = {}): number {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    assertPayloadFits(bytes, opts.id, this.options.maxFrameBytes);
    let n = 0;
    for (const conn of this.registry.devices(userId)) {
      // A draining link was told to go: nothing new is written between its GOAWAY and CLOSE.
      if (conn.phase !== 'open' || conn.draining) continue;
      conn.send({ type: FrameType.DATA, payload: bytes, ...(opts.id !== undefined ? { id: opts.id } : {}) });
      n++;
    }
    return n;
  }

  /**
   * Best-effort DATA to every open connection (an announcement, a
   * fire-and-forget fan-out; nothing is queued or acknowledged). One frame
   * object serves all. Returns how many open connections it goes to: up to
   * FANOUT_CHUNK (2,000) are written before it returns, the rest a chunk per
   * turn of the event loop (heartbeats are answered meanwhile), after any
   * broadcast made before it; one that closes first is skipped. Anything
   * written to a connection afterwards (push, send, GOAWAY, CLOSE) goes
   * after it: a connection it still owes gets it first. Throws
   * LL_ERR_QUEUE_FULL, writing nothing, while 64 broadcasts (or 64 MiB of
   * payloads and connection lists) wait to be written.
   */
  broadcast(payload: Uint8Array | string, opts: { id?: string } = {}): number {
    return this.startBroadcast(payload, opts).count;
  }

  private startBroadcast(payload: Uint8Array | string, opts: { id?: string }): { count: number; written: Promise<number> } {
    const frame = { type: FrameType.DATA, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, ...(opts.id !== undefined ? { id: opts.id } : {}) } as const;
    assertPayloadFits(frame.payload, opts.id, this.options.maxFrameBytes);
    // The connections open now: one accepted later (a device that reconnected) is not sent it twice.
    const targets: ServerConnection[] = [];
    for (const conn of this.registry.all()) if (conn.phase === 'open' && !conn.draining) targets.push(conn);
    const written = this.fanOut.add(targets, frame.payload.length, (conn) => {
      if (conn.phase !== 'open' || conn.draining) return false;
      conn.sendBroadcast(frame);
      return true;
    });
    return { count: targets.length, written };
  }

  /** Sends a probe PING to a device now (the answer updates its RTT). */
  probe(userId: string, deviceId: string): boolean {
    const conn = this.registry.get(userId, deviceId);
    if (!conn || conn.phase !== 'open') return false;
    conn.ping();
    this.runner.kick();
    return true;
  }

  /** Closes a device's connection with reason `kicked` (the client does not reconnect). */
  kick(userId: string, deviceId?: string): number {
    const targets = deviceId === undefined ? [...this.registry.devices(userId)] : [this.registry.get(userId, deviceId)].filter((c) => c !== undefined);
    for (const c of targets) c!.closeWith('kicked');
    return targets.length;
  }

  /** Closes one open connection by its id with reason `kicked`; returns 0 if it is no longer open here. */
  kickConnection(connectionId: string): number {
    const c = this.findConnection(connectionId);
    c?.closeWith('kicked');
    return c ? 1 : 0;
  }

  /**
   * Closes a user's connections (or one device's) with `going-away`, a
   * transient reason: the client reconnects, after `reconnectAfterMs` if
   * given (sent in a GOAWAY), and resumes its session. For rebalancing.
   */
  disconnect(userId: string, deviceId?: string, opts: { reconnectAfterMs?: number } = {}): number {
    const targets = deviceId === undefined ? [...this.registry.devices(userId)] : [this.registry.get(userId, deviceId)].filter((c) => c !== undefined);
    for (const c of targets) {
      if (opts.reconnectAfterMs !== undefined) c!.goAway('going-away', opts.reconnectAfterMs);
      else c!.closeWith('going-away');
    }
    return targets.length;
  }

  /**
   * `kick` or `disconnect` on every node: here at once, and on each other
   * node that presence says holds one of the user's devices, through the
   * store. Resolves with the connections targeted (here, plus elsewhere as
   * presence counts them).
   */
  async closeAcrossCluster(kind: 'kick' | 'disconnect', userId: string, deviceId?: string, opts: { reconnectAfterMs?: number } = {}): Promise<number> {
    const here = kind === 'kick' ? this.kick(userId, deviceId) : this.disconnect(userId, deviceId, opts);
    const store = this.options.store;
    if (!store.control) return here;
    const elsewhere = (await store.devices(userId)).filter((e) => e.nodeId !== this.options.nodeId && (deviceId === undefined || e.deviceId === deviceId));
    const nodes = [...new Set(elsewhere.map((e) => e.nodeId))];
    await Promise.all(nodes.map((n) => store.control!(n, { kind, userId, ...(deviceId !== undefined ? { deviceId } : {}), ...opts })));
    return here + elsewhere.length;
  }

  /**
   * `broadcast` on every node: written here (in chunks, as `broadcast`), published to the
   * others. Resolves, once written here, with how many this node's were written to and
   * whether it was published.
   */
  async broadcastAcrossCluster(payload: Uint8Array | string, opts: { id?: string } = {}): Promise<{ here: number; published: boolean }> {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const { written } = this.startBroadcast(bytes, opts);
    const store = this.options.store;
    // Published while this node's connections are written to; answered once both are done.
    const published = store.broadcast ? store.broadcast(bytes, opts.id).then(() => true) : Promise.resolve(false);
    published.catch(() => {}); // awaited below, once this node's writes are done
    const here = await written;
    return { here, published: await published };
  }

  /** Presence as the store sees it (across nodes, with a shared store). */
  presence(userId: string) {
    return this.options.store.devices(userId);
  }

  connection(userId: string, deviceId: string): ConnectionInfo | undefined {
    const c = this.registry.get(userId, deviceId);
    return c && info(c, this.options.clock.now());
  }

  /** Frames and heartbeats through every connection since the gateway started, closed ones included. */
  trafficStats(): TrafficStats {
    const t = { ...this.closedTraffic };
    // Field by field: this walks every connection (once a second for the dashboard, on each scrape).
    for (const c of this.connections) {
      t.framesIn += c.framesIn;
      t.framesOut += c.framesOut;
      t.pingsIn += c.pingsIn;
      t.pingsOut += c.pingsOut;
      t.dataIn += c.dataIn;
      t.dataOut += c.dataOut;
    }
    return t;
  }

  /** The gateway's own event loop: delay percentiles and the stalls excused to peers (null when the guard is off). */
  eventLoopStats(): EventLoopStats | null {
    return this.loopGuard?.stats() ?? null;
  }

  /** An open connection by its id (a linear scan: for the admin API, not the hot path). */
  connectionById(connectionId: string): ConnectionInfo | undefined {
    const c = this.findConnection(connectionId);
    return c && info(c, this.options.clock.now());
  }

  private findConnection(connectionId: string): ServerConnection | undefined {
    const traced = this.traces.get(connectionId);
    if (traced) return traced.phase === 'open' ? traced : undefined;
    for (const c of this.registry.all()) if (c.id === connectionId) return c;
    return undefined;
  }

  /**
   * The timeline of one open connection, recorded from the first call on
   * (up to MAX_TRACES connections are traced at once; the one read least
   * recently stops). Returns undefined if the connection is not open here.
   */
  traceConnection(connectionId: string): { since: number; keptSince: number; points: ReturnType<ConnectionTrace['points']> } | undefined {
    const c = this.findConnection(connectionId);
    if (!c) return undefined;
    const now = this.options.clock.now();
    if (!c.trace) {
      if (this.traces.size >= MAX_TRACES) {
        let oldest: ServerConnection | undefined;
        for (const t of this.traces.values()) if (!oldest || t.trace!.lastReadAt < oldest.trace!.lastReadAt) oldest = t;
        oldest!.trace = null;
        this.traces.delete(oldest!.id);
      }
      c.trace = new ConnectionTrace(now);
      // The interval in force when tracing began, so the timeline's interval line starts at once.
      if (c.grant) c.trace.add(now, 'interval', c.grant.intervalMs);
      this.traces.set(c.id, c);
    }
    c.trace.lastReadAt = now;
    return { since: c.trace.since, keptSince: c.trace.keptSince, points: c.trace.points() };
  }

  /** Stops the traces nobody has read for TRACE_IDLE_MS. */
  expireTraces(now: number): number {
    let n = 0;
    for (const c of this.traces.values()) {
      if (now - c.trace!.lastReadAt < TRACE_IDLE_MS) continue;
      c.trace = null;
      this.traces.delete(c.id);
      n++;
    }
    return n;
  }

  /**
   * Open connections by transport, and those still in the handshake: as maxPendingHandshakes
   * counts them, sockets still in their TLS handshake or WebSocket upgrade included (admitted
   * at TCP accept, not yet handed over: a peer that never finishes its upgrade was held unseen).
   */
  connectionCounts(): { tcp: number; ws: number; handshaking: number } {
    const n = { tcp: 0, ws: 0, handshaking: this.admission.pendingHandshakes };
    for (const c of this.connections) if (c.phase === 'open') n[c.transport]++;
    return n;
  }

  /**
   * Messages written and not yet acknowledged, links whose delivery waits for a full write buffer
   * to drain, and client messages waiting to be accepted (store checks, the backend) with their bytes.
   */
  flowStats(): { unacked: number; writeStalled: number; owedAcks: number; inboundWaiting: number; inboundWaitingBytes: number } {
    return this.delivery.flowStats();
  }

  /** What the upstream sink was handed, refused and lost, and what waits for it now; null without an upstream. */
  upstreamStats(): Readonly<UpstreamStats> | null {
    return this.delivery.upstream?.stats ?? null;
  }

  get onlineUsers(): number {
    return this.registry.userCount;
  }

  /**
   * Open connections, or one user's; with `limit`, the most recently
   * connected first, and only those are described (a gateway of 200,000
   * connections sorts numbers, not snapshots).
   */
  listConnections(opts: { userId?: string; limit?: number; before?: number } = {}): ConnectionInfo[] {
    const now = this.options.clock.now();
    let source: Iterable<ServerConnection> = opts.userId !== undefined ? this.registry.devices(opts.userId) : this.registry.all();
    if (opts.before !== undefined) source = olderThan(source, opts.before);
    const conns = opts.limit !== undefined ? topK(source, opts.limit, (c) => c.serial) : [...source];
    return conns.map((c) => info(c, now));
  }

  /** How many devices of `userId` are connected to this node. */
  deviceCount(userId: string): number {
    let n = 0;
    for (const _ of this.registry.devices(userId)) n++;
    return n;
  }

  /** Whether close() has begun (a drain ends in it): the gateway takes no more work. */
  get closed(): boolean {
    return this.closeStarted;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  get onlineDevices(): number {
    return this.registry.size;
  }

  /**
   * Graceful drain, for a restart or a scale-in: stops accepting, sends every
   * open connection GOAWAY with a reconnect hint, the hints spread evenly
   * over `windowMs` in random order so clients come back gradually, writes
   * nothing new to them (pushes stay queued) and takes in no new client
   * message from them, closes each link once all it carried is acknowledged
   * and the client messages it was taking in are acknowledged too (or after
   * `ackTimeoutMs`), then closes the gateway.
   */
  async drain(opts: DrainOptions = {}): Promise<DrainReport> {
    const o = this.options;
    const windowMs = opts.windowMs ?? DRAIN_DEFAULTS.windowMs;
    const ackTimeoutMs = opts.ackTimeoutMs ?? DRAIN_DEFAULTS.ackTimeoutMs;
    // A timer past 2^31 - 1 ms fires at once: the drain would close every link with no wait. A hint
    // past an hour is sent as an hour: with a longer window, every hint beyond it was the same hour,
    // and that share of the fleet came back in the same instant.
    for (const [k, v, max] of [['windowMs', windowMs, MAX_RECONNECT_HINT_MS], ['ackTimeoutMs', ackTimeoutMs, 0x7fffffff]] as const) {
      if (!(Number.isFinite(v) && v >= 0 && v <= max)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `drain ${k} must be from 0 to ${max} ms (got ${v})`);
    }
    this.closing = true;
    const started = o.clock.now();
    void this.stopAccepting();
    const open: ServerConnection[] = [];
    for (const conn of [...this.connections]) {
      if (conn.phase === 'open') open.push(conn);
      else conn.closeWith('going-away');
    }
    // Fisher-Yates, then one hint per stratum of the window: even and unpredictable.
    for (let i = open.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [open[i], open[j]] = [open[j], open[i]];
    }
    const report: DrainReport = { connections: open.length, settled: 0, timedOut: 0, maxHintMs: 0 };
    const waiting = new Promise<void>((resolve) => {
      this.drained = resolve;
    });
    open.forEach((conn, i) => {
      const hint = Math.round((windowMs * (i + Math.random())) / open.length);
      report.maxHintMs = Math.max(report.maxHintMs, hint);
      conn.draining = true;
      conn.flushAck();
      conn.send(goawayFrame('going-away', hint));
      if (this.delivery.settled(conn)) conn.closeWith('going-away');
    });
    if (this.connections.size > 0) await this.waitAtMost(waiting, ackTimeoutMs);
    this.drained = null;
    // The ACK that let a link go may still be on its way to the store (a Redis round trip): its pushes
    // report delivered once the removal answers. Closing first resolved them `queued`, with the
    // `delivered` event following. Within what is left of ackTimeoutMs.
    const settling = open.map((c) => c.delivery?.settling).filter((p): p is Promise<void> => p != null);
    const left = ackTimeoutMs - (o.clock.now() - started);
    if (settling.length > 0 && left > 0) await this.waitAtMost(Promise.all(settling), left);
    for (const conn of open) {
      if (conn.phase === 'closed' && conn.closeReason === 'going-away' && this.delivery.settled(conn)) report.settled++;
      else if (conn.phase !== 'closed') report.timedOut++;
    }
    await this.close();
    return report;
  }
  /** Until `p` settles or `ms` pass (on the gateway's timers), whichever is first. */
  private async waitAtMost(p: Promise<unknown>, ms: number): Promise<void> {
    let timer: TimerHandle | null = null;
    await Promise.race([p, new Promise<void>((r) => (timer = this.options.timers.setTimeout(r, ms)))]);
    if (timer !== null) this.options.timers.clearTimeout(timer);
  }


  /** Stops accepting at once; existing links live on. Resolves when the listeners have fully closed. */
  private stopAccepting(): Promise<void> {
    if (this.listenersClosed) return this.listenersClosed;
    const closers: Promise<void>[] = [];
    // A listener's close event waits for its last connection, upgraded WebSockets included.
    if (this.tcpServer) {
      const s = this.tcpServer;
      closers.push(new Promise((r) => s.close(() => r())));
    }
    if (this.wsServer) {
      const { http } = this.wsServer;
      closers.push(new Promise((r) => http.close(() => r())));
      http.closeIdleConnections();
    }
    return (this.listenersClosed = Promise.all(closers).then(() => {}));
  }

  /** Stops listening and closes every connection with `going-away` at once (see `drain` for the graceful way). */
  async close(opts: { reconnectAfterMs?: number } = {}): Promise<void> {
    this.closing = true;
    this.closeStarted = true;
    if (this.resync.timer) this.options.timers.clearTimeout(this.resync.timer);
    const all = [...this.connections];
    // Every client told the same hint would come back in the same millisecond: each gets the hint
    // plus a random share of the time the gateway (or its replacement) needs to take them all back
    // at its handshake rate.
    const rate = this.options.limits.handshakesPerSecond || DEFAULT_SPREAD_RATE;
    const spreadMs = (all.length * 1000) / rate;
    for (const conn of all) {
      if (opts.reconnectAfterMs !== undefined) conn.goAway('going-away', opts.reconnectAfterMs + Math.floor(Math.random() * spreadMs));
      else conn.closeWith('going-away');
    }
    this.runner.stop();
    this.loopGuard?.stop();
    this.delivery.stop();
    this.chores.stop();
    const listeners = this.stopAccepting();
    // Sockets still in their TLS handshake (or WebSocket upgrade) are no link yet: dropped here, or
    // the listeners' close waited up to handshakeTimeoutMs for each.
    this.tcpServer?.dropHandshaking();
    if (this.wsServer) {
      const { http, wss, lingering, dropUpgrading } = this.wsServer;
      dropUpgrading();
      wss.close();
      // Upgraded sockets are no longer the HTTP server's: the links are destroyed here (those closed
      // earlier and still waiting for the peer's close frame too), not left to linger.
      for (const conn of all) if (conn.transport === 'ws') conn.link.destroy();
      for (const s of [...lingering]) s.destroy();
      http.closeAllConnections();
    }
    await listeners;
    // A store handed in may be shared with other gateways; only ours is closed.
    if (this.ownsStore) await this.options.store.close();
  }
}

/**
 * Opens one listener; a failure (a busy port, a bad address) closes what the
 * gateway already opened and rejects with LL_ERR_LISTEN naming the transport,
 * address and cause (its `transport`, `host`, `port` and `cause` say which).
 */
async function listening<T>(transport: 'tcp' | 'ws', at: { host: string; port: number }, open: () => Promise<T>, undo: () => Promise<void>): Promise<T> {
  try {
    return await open();
  } catch (err) {
    await undo().catch(() => {});
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EACCES' ? 'permission denied (a port below 1024 needs privileges)' : e.code === 'EADDRNOTAVAIL' ? 'no such local address' : e.message;
    throw Object.assign(new LonglinkError('LL_ERR_LISTEN', `cannot listen for ${transport === 'tcp' ? 'TCP' : 'WebSocket'} on ${at.host}:${at.port}: ${why}`), { transport, host: at.host, port: at.port, cause: err });
  }
}

/** An identity's ids, checked where the authenticator changed them (one array, not one per handshake). */
const IDENTITY_IDS = ['userId', 'deviceId'] as const;

/**
 * The peer an authenticator is told of. Its `signal` is made only for an authenticator that reads
 * it (the default one answers at once), aborted if the link has closed. A class, not an object
 * literal with a getter: V8 defined that literal's accessor at run time, with a closure, on every
 * handshake.
 */
class HandshakePeer implements AuthPeer {
  readonly remoteAddress: string;
  readonly transport: string;
  readonly #conn: ServerConnection;
  readonly #aborts: Map<ServerConnection, AbortController>;
  constructor(conn: ServerConnection, aborts: Map<ServerConnection, AbortController>) {
    this.remoteAddress = conn.link.remoteAddress;
    this.transport = conn.transport;
    this.#conn = conn;
    this.#aborts = aborts;
  }
  get signal(): AbortSignal {
    const conn = this.#conn;
    let ac = this.#aborts.get(conn);
    if (!ac) this.#aborts.set(conn, (ac = new AbortController()));
    if (isClosed(conn)) ac.abort(new LonglinkError('LL_ERR_CLOSED', 'connection closed during handshake'));
    return ac.signal;
  }
}

/** A page's cursor: connections accepted before the one with this serial. */
function* olderThan(conns: Iterable<ServerConnection>, serial: number): Iterable<ServerConnection> {
  for (const c of conns) if (c.serial < serial) yield c;
}

function ref(c: ServerConnection): DeviceRef {
  return { userId: c.userId, deviceId: c.deviceId, connectionId: c.id, sessionId: c.sessionId, transport: c.transport };
}

function info(c: ServerConnection, now: number): ConnectionInfo {
  return {
    ...ref(c),
    serial: c.serial,
    remoteAddress: c.link.remoteAddress,
    intervalMs: c.grant?.intervalMs ?? 0,
    direction: c.grant?.direction ?? 'client',
    policy: c.grant ? { ...c.grant } : null,
    announcedIntervalMs: c.announcedIntervalMs,
    connectedForMs: now - c.connectedAt,
    suspected: c.suspected,
    unacked: c.delivery?.unacked ?? 0,
    lastHeardMsAgo: now - c.lastHeardAt,
    // The gateway's own measure when it pings; otherwise what the client reports of its heartbeats.
    rttMs: c.rtt?.current()?.srttMs ?? (c.clientRttMs >= 0 ? c.clientRttMs : null),
    clientInfo: c.clientInfo,
    clientState: { ...c.clientState },
    stats: c.stats,
    path: c.pathStats,
  };
}

/** Whether `a`'s link was accepted after `b`'s, allowing for the skew of two nodes' clocks (NODE_CLOCK_SKEW_MS). */
function acceptedAfter(a: PresenceEntry, b: PresenceEntry): boolean {
  return a.since > b.since + (a.nodeId === b.nodeId ? 0 : NODE_CLOCK_SKEW_MS);
}

/** A handshake step after a wait: a link closed meanwhile goes no further (LL_ERR_CLOSED). */
function stillOpen(c: ServerConnection): void {
  if (isClosed(c)) throw new LonglinkError('LL_ERR_CLOSED', 'connection closed during handshake');
}

/** Whether the link has closed: a function, so a check after an `await` is not narrowed away by one before it. */
function isClosed(c: ServerConnection): boolean {
  return c.phase === 'closed';
}

const round1 = (x: number) => Math.round(x * 10) / 10;
