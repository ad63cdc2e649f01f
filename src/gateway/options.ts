import type { ClientState } from '../protocol/frames.js';
import { UPSTREAM_DEFAULTS, type UpstreamOptions } from './upstream.js';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { TlsOptions } from 'node:tls';
import { systemClock, systemTimers, type Clock, type Timers } from '../core/clock.js';
import {
  dropUndefined,
  MAX_TIMER_MS,
  resolvePolicy,
  resolveProbes,
  type HeartbeatPolicy,
  type ProbeOptions,
} from '../core/heartbeat-policy.js';
import { PhiAccrualDetector, type PhiOptions } from '../core/phi-accrual-detector.js';
import { validateKeepalive, type KeepaliveOptions } from '../link/socket-tuning.js';
import { LonglinkError } from '../protocol/errors.js';
import { STALL_DEFAULTS, type StallGuardOptions } from './event-loop-guard.js';
import type { AdmissionLimits } from './admission.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/frame-decoder.js';
import type { HelloFrame } from '../protocol/frames.js';
import { MemoryStore } from './stores/memory-store.js';
import type { Store } from './stores/store.js';

export interface ListenOptions {
  port?: number;
  host?: string;
  /**
   * Serve TLS (node:tls options: at least `cert` and `key`, PEM text or
   * Buffers). TCP then speaks TLS (clients dial `tls://`), WebSocket is
   * `wss://`. The TLS handshake shares `handshakeTimeoutMs`.
   */
  tls?: TlsOptions;
}

export interface WsListenOptions extends ListenOptions {
  /** HTTP path WebSocket upgrades are accepted on. */
  path?: string;
}

/** Identity the authenticator vouches for. */
export interface Identity {
  userId: string;
  deviceId: string;
  /** Replaces HELLO's clientInfo (a connect hook that knows better). */
  clientInfo?: ClientState;
  /**
   * The heartbeat to grant instead of what HELLO asked, clamped to the policy's bounds. An interval
   * set here binds the link: WELCOME grants it as the whole range (minIntervalMs = maxIntervalMs),
   * and an interval the client announces later is clamped to it.
   */
  heartbeat?: { intervalMs?: number; direction?: 'client' | 'server' };
}

/**
 * Decides whether a HELLO may open a session. Throw (or reject) with a
 * ProtocolError('auth-failed' | 'auth-missing' | 'auth-expired', ...) to refuse
 * (for good: the SDK does not retry; the message is the device's close reason);
 * return the identity to use. Any other throw (a plain Error: a database down)
 * is a failure, not a refusal: the device is told 4004 (retried, nothing of the
 * error), the error goes to a `fault` (kind auth). So is an answer that is not
 * an Identity (ids not strings, a clientInfo value not a string):
 * LL_ERR_INVALID_IDENTITY.
 * `peer.signal` aborts when the link closes before the answer (the client left,
 * or its handshake deadline passed): pass it to any request made on the
 * HELLO's behalf, so that it ends with the link and its admission place.
 */
export type Authenticate = (hello: HelloFrame, peer: AuthPeer) => Identity | Promise<Identity>;

/** Who sent the HELLO, for an authenticator. */
export interface AuthPeer {
  /** The peer's address as the socket has it. */
  remoteAddress: string;
  /** `tcp` or `ws`. */
  transport: string;
  /** Aborted when the link closes during the handshake (absent when the authenticator is called outside a gateway). */
  signal?: AbortSignal;
}

/** Reliable push: acknowledgements, per-device queues and probes before push. */
export interface DeliveryOptions {
  /** Most messages kept per device (sent but unacknowledged, plus not yet sent); the oldest are dropped beyond it. */
  maxQueuedPerDevice?: number;
  /** Most payload bytes kept per device. */
  maxQueuedBytesPerDevice?: number;
  /** Default time-to-live of a pushed message that is not yet acknowledged. */
  messageTtlMs?: number;
  /** How long a device that connected once is remembered, so pushes queue for it while it is offline. */
  knownDeviceTtlMs?: number;
  /** How long `push()` waits for acknowledgements before it resolves with `queued` for the rest. */
  pushWaitMs?: number;
  /**
   * Probe before push: a connection silent for at least this long gets a
   * PING, and the message waits for its answer (`probes.pongTimeoutMs`).
   * 0 turns it off; default: the connection's heartbeat interval.
   */
  probeBeforePushMs?: number;
  /** How often expired messages are swept (and reported). */
  sweepIntervalMs?: number;
  /** Longest an acknowledgement waits for a frame to ride on before it is sent alone. */
  ackDelayMs?: number;
}

export interface ResolvedDeliveryOptions {
  maxQueuedPerDevice: number;
  maxQueuedBytesPerDevice: number;
  messageTtlMs: number;
  knownDeviceTtlMs: number;
  pushWaitMs: number;
  probeBeforePushMs: number | null;
  sweepIntervalMs: number;
  ackDelayMs: number;
}

export const DELIVERY_DEFAULTS = {
  maxQueuedPerDevice: 1000,
  maxQueuedBytesPerDevice: 1 << 20,
  messageTtlMs: 24 * 3600_000,
  knownDeviceTtlMs: 30 * 24 * 3600_000,
  pushWaitMs: 10_000,
  sweepIntervalMs: 1000,
  ackDelayMs: 50,
};

/**
 * The passive detector for client-sent heartbeats: `silence` closes at the
 * fixed bound interval × missBudget + grace; `phi` learns each connection's
 * heartbeat timing (phi accrual) and closes when phi reaches `deadPhi`;
 * `freshness` learns when each heartbeat is due and closes when the next one
 * is `lateMs` overdue (default (missBudget − 1) × interval + grace, the same
 * nominal bound as `silence`, counted from when the heartbeat was due rather
 * than from when the last one happened to arrive, and following the interval
 * the client announces).
 */
export type DetectorOptions =
  | { kind: 'silence' }
  | ({ kind: 'phi' } & Partial<PhiOptions>)
  | { kind: 'freshness'; lateMs?: number; suspectLateMs?: number; windowSize?: number };

/**
 * Limits against abuse and overload. 0 turns off maxConnections,
 * maxConnectionsPerSource, maxOnlineDevicesPerUser, handshakesPerSecond, maxPendingHandshakes,
 * maxPendingHandshakesPerSource, minPingGapMs, maxDataPerSecond and
 * maxPartialFrameBytes, and is refused for the rest (LL_ERR_INVALID_OPTION).
 * docs/SECURITY.md says what each defends against.
 */
export interface LimitOptions {
  /** Connections held at once (handshaking ones included); more are refused with too-many-connections (4007). */
  maxConnections?: number;
  /** Connections held at once from one source address. Raise it behind carrier-grade NAT or a proxy. */
  maxConnectionsPerSource?: number;
  /**
   * Distinct devices of one user online at once (over the cluster with a shared store: counted in
   * the store, in the write that sets the device online). A handshake of another device beyond it
   * gets GOAWAY and too-many-devices (4010, transient: it comes back after the hint, 15–45 s); a
   * device already online that reconnects or replaces its link is never refused. Every push to a
   * user writes one mailbox per device online: one credential holding 1,000 devices made a batch of
   * 1,000 pushes a million writes. Raise it for a fleet of machines under one user id.
   */
  maxOnlineDevicesPerUser?: number;
  /** New connections admitted per second (a token bucket); more are refused with rate-limited (4008) and a GOAWAY hint. */
  handshakesPerSecond?: number;
  /** How many new connections may arrive at once before the rate applies (default: one second's worth). */
  handshakeBurst?: number;
  /**
   * The share of that rate (and burst) one source address may take once the bucket is less than
   * half full; beyond it that source alone is refused with rate-limited (4008). A connect-and-close
   * loop from one address holds nothing and is never pending for long, so only this keeps it from
   * taking every new connection the gateway admits. 1 turns it off (raise it behind a carrier-grade
   * NAT or a proxy, where many devices share an address).
   */
  handshakeSourceShare?: number;
  /**
   * Connections accepted but not yet open, at once. Beyond it new ones are
   * refused with rate-limited (4008) and a hint spread over the time the
   * backlog needs at the current handshake rate: in a reconnect storm the
   * gateway keeps handshaking at full speed instead of slowing every
   * handshake until clients time out.
   */
  maxPendingHandshakes?: number;
  /** The same from one source address (default 50, a tenth of the total): one source cannot take the whole backlog. */
  maxPendingHandshakesPerSource?: number;
  /**
   * PINGs are allowed on average one per `minPingGapMs` with bursts of
   * `pingBurst`; a client that pings faster is warned (PONG with code 4006),
   * then sent GOAWAY and closed with too-many-pings (4006). Default: a fifth
   * of the shortest heartbeat interval the policy allows.
   */
  minPingGapMs?: number;
  pingBurst?: number;
  /**
   * DATA from one client, sequenced or not: on average `maxDataPerSecond`,
   * bursts of `dataBurst` (a GCRA, as for PINGs). Over it the client is
   * warned (a PONG with 4009), then sent GOAWAY and closed with
   * too-many-messages (4009): every DATA is work (dedup, the application's
   * handler, a relay), and four connections flooding 47,000 frames a second
   * once stalled the gateway for seconds.
   */
  maxDataPerSecond?: number;
  dataBurst?: number;
  /**
   * Slow consumers. Reliable delivery stops writing to a link once a quarter
   * of this is buffered and resumes when it drains; a link that does not drain
   * within `slowConsumerMs`, or whose unsent output (fire-and-forget sends
   * included) exceeds this, is closed as a slow consumer (4003). Its messages
   * stay queued for its next connection. At least 64 KiB and twice
   * `maxFrameBytes`.
   */
  maxWriteBufferBytes?: number;
  slowConsumerMs?: number;
  /**
   * What one client can make the gateway keep in fields: HELLO's clientInfo
   * (kept with the session, after the link ends), the piggybacked state
   * merged from PINGs (kept while the link lives), and a DATA id (kept in
   * the dedup record). Counted in UTF-8 bytes (keys plus values); a field
   * over its bound closes the link with field-too-large (4508).
   */
  maxClientInfoBytes?: number;
  maxStateBytes?: number;
  maxStateKeys?: number;
  maxMessageIdBytes?: number;
  /** HELLO's userId and deviceId, each, in UTF-8 bytes: every record of the device (session, presence, mailbox, dedup) keeps them. */
  maxIdBytes?: number;
  /**
   * Client messages (sequenced DATA) of one link waiting to be accepted: for
   * the store's duplicate check and record, or for the upstream backend. They
   * are taken one at a time, so a slow store or backend makes them wait;
   * beyond it the link gets GOAWAY server-error (4004) and its client keeps
   * them and re-sends them later.
   */
  maxInboundWaitingPerLink?: number;
  /** Payload bytes of those messages over all links; beyond it, GOAWAY 4004 as above. */
  maxInboundWaitingBytes?: number;
  /** The same for one link (a lone message is always let in), so one link cannot fill what all share. */
  maxInboundWaitingBytesPerLink?: number;
  /**
   * The share of the upstream backlog, of maxInboundWaitingBytes and of
   * maxPartialFrameBytes one source address may hold once they are half full (never less than one
   * link's bound): a few dozen links of one laptop must not fill them and
   * leave every other device refused. 1 turns it off (raise it behind a
   * carrier-grade NAT or a proxy, where many users share an address).
   */
  inboundSourceShare?: number;
  /** HELLO's token, in characters: it goes to the authenticator and a connect hook as it is. */
  maxTokenBytes?: number;
  /**
   * Bytes held in frames not whole yet, over all links (a frame's buffer, as
   * allocated: it grows ahead of what arrived, so a peer that announced 64 KB
   * and sent a quarter holds 64 KB). A link whose partial frame would pass it
   * is closed with server-error (4004); once half of it is held, one source
   * address may hold at most `inboundSourceShare` of it (never less than one
   * frame). Each link was bounded by maxFrameBytes only: 100,000 connections
   * could hold 6.4 GB. 0 turns it off.
   */
  maxPartialFrameBytes?: number;
}

/** Every limit with its default filled in; those of who may connect are the admission's own. */
export interface ResolvedLimits extends AdmissionLimits {
  maxOnlineDevicesPerUser: number;
  handshakeSourceShare: number;
  minPingGapMs: number;
  pingBurst: number;
  maxDataPerSecond: number;
  dataBurst: number;
  maxWriteBufferBytes: number;
  slowConsumerMs: number;
  maxClientInfoBytes: number;
  maxStateBytes: number;
  maxStateKeys: number;
  maxMessageIdBytes: number;
  maxIdBytes: number;
  maxInboundWaitingPerLink: number;
  maxInboundWaitingBytes: number;
  maxInboundWaitingBytesPerLink: number;
  inboundSourceShare: number;
  maxTokenBytes: number;
  maxPartialFrameBytes: number;
}

/** Four times a stream's default high-water mark: the pause point is past it, so 'drain' always follows. */
export const MIN_WRITE_BUFFER_BYTES = 64 * 1024;

export const LIMIT_DEFAULTS = {
  maxConnections: 100_000,
  maxConnectionsPerSource: 1_000,
  // A phone, a tablet, a few desktops and browser tabs are a handful; 64 is also what the stores
  // remember per user for offline pushes (maxKnownDevicesPerUser), so every device a user may have
  // online stays within that bound.
  maxOnlineDevicesPerUser: 64,
  handshakesPerSecond: 2_000,
  maxPendingHandshakes: 500,
  maxPendingHandshakesPerSource: 50,
  // A tenth, as for pending handshakes: ten addresses at full speed to take the rate from the rest.
  handshakeSourceShare: 0.1,
  // 100,000 connections in 2 GB leave about 20 KB each, most of it the socket's: a few KB for fields.
  maxClientInfoBytes: 1024,
  maxStateBytes: 1024,
  maxStateKeys: 32,
  maxMessageIdBytes: 128,
  // The server API takes user and device ids of up to 256 characters: 768 UTF-8 bytes at most.
  maxIdBytes: 1024,
  // As many as the SDK keeps unacknowledged (maxOutbox): its client is never refused for a burst it may
  // send; the bytes bound, over all links, is what bounds memory.
  maxInboundWaitingPerLink: 10_000,
  maxInboundWaitingBytes: 64 << 20,
  maxInboundWaitingBytesPerLink: 4 << 20,
  inboundSourceShare: 0.25,
  // JWTs are a few hundred bytes; an identity provider's with many group claims reaches 8 KiB or more.
  maxTokenBytes: 16_384,
  // As maxInboundWaitingBytes: a thousand frames of the default maxFrameBytes. A frame sent whole is held for a read or two.
  maxPartialFrameBytes: 64 << 20,
  pingBurst: 20,
  maxDataPerSecond: 1000,
  dataBurst: 2000,
  maxWriteBufferBytes: 4 << 20,
  slowConsumerMs: 30_000,
};

export interface GatewayOptions {
  /** Raw TCP listener; omit or set to false for none. */
  tcp?: ListenOptions | false;
  /** WebSocket listener; omit or set to false for none. */
  ws?: WsListenOptions | false;
  heartbeat?: Partial<HeartbeatPolicy>;
  /** How the server waits and rechecks when it sends the heartbeats (server direction). */
  probes?: Partial<ProbeOptions>;
  detector?: DetectorOptions;
  keepalive?: KeepaliveOptions;
  /** A connection must send HELLO within this time. */
  handshakeTimeoutMs?: number;
  maxFrameBytes?: number;
  /** How long a session may be resumed after its connection ends. */
  sessionTtlMs?: number;
  /** Identifies this process in presence entries. */
  nodeId?: string;
  store?: Store;
  delivery?: DeliveryOptions;
  /**
   * Where devices' messages go (a webhook, a Redis stream: `webhookSink`,
   * `streamSink`). A sequenced message is acknowledged to the device only once
   * the sink has it; while the sink fails it is retried, and a device whose
   * backlog passes its bound gets GOAWAY and re-sends later.
   */
  upstream?: UpstreamOptions;
  authenticate?: Authenticate;
  limits?: LimitOptions;
  /** Timer wheel tick: the resolution of every deadline. */
  wheelTickMs?: number;
  /**
   * Do not convict peers for the gateway's own stalls (event-loop blocking of
   * at least `thresholdMs`, measured with monitorEventLoopDelay). On by
   * default with the system clock; off with an injected clock.
   */
  stallGuard?: Partial<StallGuardOptions> | false;
  clock?: Clock;
  timers?: Timers;
  /** Wall-clock ms, for presence timestamps and session expiry. */
  wallClock?: Clock;
}

export interface ResolvedGatewayOptions {
  tcp: { port: number; host: string; tls?: TlsOptions } | false;
  ws: { port: number; host: string; path: string; tls?: TlsOptions } | false;
  heartbeat: HeartbeatPolicy;
  probes: ProbeOptions;
  detector: DetectorOptions;
  keepalive: KeepaliveOptions;
  handshakeTimeoutMs: number;
  maxFrameBytes: number;
  sessionTtlMs: number;
  nodeId: string;
  store: Store;
  delivery: ResolvedDeliveryOptions;
  authenticate: Authenticate;
  limits: ResolvedLimits;
  wheelTickMs: number;
  stallGuard: StallGuardOptions;
  clock: Clock;
  timers: Timers;
  wallClock: Clock;
}

export const DEFAULT_TCP_PORT = 7420;
export const DEFAULT_WS_PORT = 7421;
export const DEFAULTS = {
  host: '127.0.0.1',
  wsPath: '/longlink',
  handshakeTimeoutMs: 10_000,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  sessionTtlMs: 120_000,
  wheelTickMs: 50,
};

const acceptAll: Authenticate = (hello) => ({ userId: hello.userId, deviceId: hello.deviceId });

export function resolveGatewayOptions(o: GatewayOptions): ResolvedGatewayOptions {
  const positive = (name: string, v: number) => {
    if (!(Number.isFinite(v) && v > 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${name} must be a positive number (got ${v})`);
    return v;
  };
  const nonNegative = (name: string, v: number) => {
    if (!(Number.isFinite(v) && v >= 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${name} must be a non-negative number (got ${v})`);
    return v;
  };
  // A delay a timer must hold: beyond 2^31 − 1 ms Node fires it after 1 ms.
  const timerMs = (name: string, v: number, zero = false) => {
    if (zero) nonNegative(name, v);
    else positive(name, v);
    if (v > MAX_TIMER_MS) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${name} must be at most ${MAX_TIMER_MS} (got ${v})`);
    return v;
  };
  const d = o.delivery ?? {};
  // pushWaitMs, sweepIntervalMs and ackDelayMs are each armed as one timer.
  const delivery: ResolvedDeliveryOptions = {
    maxQueuedPerDevice: positive('delivery.maxQueuedPerDevice', d.maxQueuedPerDevice ?? DELIVERY_DEFAULTS.maxQueuedPerDevice),
    maxQueuedBytesPerDevice: positive('delivery.maxQueuedBytesPerDevice', d.maxQueuedBytesPerDevice ?? DELIVERY_DEFAULTS.maxQueuedBytesPerDevice),
    messageTtlMs: positive('delivery.messageTtlMs', d.messageTtlMs ?? DELIVERY_DEFAULTS.messageTtlMs),
    knownDeviceTtlMs: positive('delivery.knownDeviceTtlMs', d.knownDeviceTtlMs ?? DELIVERY_DEFAULTS.knownDeviceTtlMs),
    pushWaitMs: timerMs('delivery.pushWaitMs', d.pushWaitMs ?? DELIVERY_DEFAULTS.pushWaitMs, true),
    probeBeforePushMs: d.probeBeforePushMs === undefined ? null : nonNegative('delivery.probeBeforePushMs', d.probeBeforePushMs),
    sweepIntervalMs: timerMs('delivery.sweepIntervalMs', d.sweepIntervalMs ?? DELIVERY_DEFAULTS.sweepIntervalMs),
    ackDelayMs: timerMs('delivery.ackDelayMs', d.ackDelayMs ?? DELIVERY_DEFAULTS.ackDelayMs, true),
  };
  const heartbeat = resolvePolicy(o.heartbeat);
  const maxFrameBytes = positive('maxFrameBytes', o.maxFrameBytes ?? DEFAULTS.maxFrameBytes);
  const l = o.limits ?? {};
  const hps = nonNegative('limits.handshakesPerSecond', l.handshakesPerSecond ?? LIMIT_DEFAULTS.handshakesPerSecond);
  const limits: ResolvedLimits = {
    maxConnections: nonNegative('limits.maxConnections', l.maxConnections ?? LIMIT_DEFAULTS.maxConnections),
    maxConnectionsPerSource: nonNegative('limits.maxConnectionsPerSource', l.maxConnectionsPerSource ?? LIMIT_DEFAULTS.maxConnectionsPerSource),
    maxOnlineDevicesPerUser: nonNegative('limits.maxOnlineDevicesPerUser', l.maxOnlineDevicesPerUser ?? LIMIT_DEFAULTS.maxOnlineDevicesPerUser),
    handshakesPerSecond: hps,
    handshakeBurst: positive('limits.handshakeBurst', l.handshakeBurst ?? Math.max(1, hps)),
    maxPendingHandshakes: nonNegative('limits.maxPendingHandshakes', l.maxPendingHandshakes ?? LIMIT_DEFAULTS.maxPendingHandshakes),
    maxPendingHandshakesPerSource: nonNegative('limits.maxPendingHandshakesPerSource', l.maxPendingHandshakesPerSource ?? LIMIT_DEFAULTS.maxPendingHandshakesPerSource),
    handshakeSourceShare: l.handshakeSourceShare ?? LIMIT_DEFAULTS.handshakeSourceShare,
    minPingGapMs: nonNegative('limits.minPingGapMs', l.minPingGapMs ?? heartbeat.minIntervalMs / 5),
    pingBurst: positive('limits.pingBurst', l.pingBurst ?? LIMIT_DEFAULTS.pingBurst),
    maxDataPerSecond: nonNegative('limits.maxDataPerSecond', l.maxDataPerSecond ?? LIMIT_DEFAULTS.maxDataPerSecond),
    dataBurst: positive('limits.dataBurst', l.dataBurst ?? LIMIT_DEFAULTS.dataBurst),
    maxWriteBufferBytes: positive('limits.maxWriteBufferBytes', l.maxWriteBufferBytes ?? Math.max(LIMIT_DEFAULTS.maxWriteBufferBytes, 2 * maxFrameBytes)),
    slowConsumerMs: positive('limits.slowConsumerMs', l.slowConsumerMs ?? LIMIT_DEFAULTS.slowConsumerMs),
    maxClientInfoBytes: positive('limits.maxClientInfoBytes', l.maxClientInfoBytes ?? LIMIT_DEFAULTS.maxClientInfoBytes),
    maxStateBytes: positive('limits.maxStateBytes', l.maxStateBytes ?? LIMIT_DEFAULTS.maxStateBytes),
    maxStateKeys: positive('limits.maxStateKeys', l.maxStateKeys ?? LIMIT_DEFAULTS.maxStateKeys),
    maxMessageIdBytes: positive('limits.maxMessageIdBytes', l.maxMessageIdBytes ?? LIMIT_DEFAULTS.maxMessageIdBytes),
    maxIdBytes: positive('limits.maxIdBytes', l.maxIdBytes ?? LIMIT_DEFAULTS.maxIdBytes),
    maxInboundWaitingPerLink: positive('limits.maxInboundWaitingPerLink', l.maxInboundWaitingPerLink ?? LIMIT_DEFAULTS.maxInboundWaitingPerLink),
    maxInboundWaitingBytes: positive('limits.maxInboundWaitingBytes', l.maxInboundWaitingBytes ?? LIMIT_DEFAULTS.maxInboundWaitingBytes),
    maxInboundWaitingBytesPerLink: positive('limits.maxInboundWaitingBytesPerLink', l.maxInboundWaitingBytesPerLink ?? LIMIT_DEFAULTS.maxInboundWaitingBytesPerLink),
    maxTokenBytes: positive('limits.maxTokenBytes', l.maxTokenBytes ?? LIMIT_DEFAULTS.maxTokenBytes),
    maxPartialFrameBytes: nonNegative('limits.maxPartialFrameBytes', l.maxPartialFrameBytes ?? LIMIT_DEFAULTS.maxPartialFrameBytes),
    inboundSourceShare: l.inboundSourceShare ?? LIMIT_DEFAULTS.inboundSourceShare,
  };
  if (!(limits.handshakeSourceShare > 0 && limits.handshakeSourceShare <= 1)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `limits.handshakeSourceShare must be in (0, 1] (got ${limits.handshakeSourceShare})`);
  if (!(limits.inboundSourceShare > 0 && limits.inboundSourceShare <= 1)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `limits.inboundSourceShare must be in (0, 1] (got ${limits.inboundSourceShare})`);
  // Delivery pauses at a quarter of the bound and waits for the socket's 'drain', which
  // fires only once the stream itself saw backpressure (its 16 KiB high-water mark).
  const minWrite = Math.max(2 * maxFrameBytes, MIN_WRITE_BUFFER_BYTES);
  if (limits.maxWriteBufferBytes < minWrite) {
    throw new LonglinkError('LL_ERR_INVALID_OPTION', `limits.maxWriteBufferBytes must be at least ${minWrite} (64 KiB, and twice maxFrameBytes)`);
  }
  const keepalive = dropUndefined(o.keepalive ?? {});
  validateKeepalive(keepalive);
  // The upstream builds its retry Backoff on a first failure: bounds it would refuse then are refused now.
  const retry = { ...UPSTREAM_DEFAULTS, ...dropUndefined(o.upstream ?? {}) };
  if (retry.retryMaxMs > MAX_TIMER_MS) throw new LonglinkError('LL_ERR_INVALID_OPTION', `upstream.retryMaxMs must be at most ${MAX_TIMER_MS} (got ${retry.retryMaxMs})`);
  if (retry.attemptTimeoutMs > MAX_TIMER_MS) throw new LonglinkError('LL_ERR_INVALID_OPTION', `upstream.attemptTimeoutMs must be at most ${MAX_TIMER_MS} (got ${retry.attemptTimeoutMs})`);
  if (retry.retryMinMs > retry.retryMaxMs) throw new LonglinkError('LL_ERR_INVALID_OPTION', `upstream.retryMinMs exceeds upstream.retryMaxMs (${retry.retryMinMs} > ${retry.retryMaxMs})`);
  return {
    tcp: o.tcp === false ? false : { port: o.tcp?.port ?? DEFAULT_TCP_PORT, host: o.tcp?.host ?? DEFAULTS.host, ...validTls('tcp', o.tcp?.tls) },
    ws: o.ws === false ? false : { port: o.ws?.port ?? DEFAULT_WS_PORT, host: o.ws?.host ?? DEFAULTS.host, path: o.ws?.path ?? DEFAULTS.wsPath, ...validTls('ws', o.ws?.tls) },
    heartbeat,
    probes: resolveProbes(o.probes),
    detector: validDetector(o.detector ?? { kind: 'silence' }),
    keepalive,
    // The WebSocket port arms it as one timer per socket accepted (and TLS per handshake).
    handshakeTimeoutMs: timerMs('handshakeTimeoutMs', o.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs),
    maxFrameBytes,
    sessionTtlMs: positive('sessionTtlMs', o.sessionTtlMs ?? DEFAULTS.sessionTtlMs),
    // Unique per process start: a pid alone repeats across containers and restarts.
    nodeId: o.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    store: o.store ?? new MemoryStore(),
    delivery,
    authenticate: o.authenticate ?? acceptAll,
    limits,
    wheelTickMs: timerMs('wheelTickMs', o.wheelTickMs ?? DEFAULTS.wheelTickMs),
    stallGuard: {
      enabled: o.stallGuard === false ? false : (o.stallGuard?.enabled ?? (o.clock === undefined || o.clock === systemClock)),
      thresholdMs: positive('stallGuard.thresholdMs', (o.stallGuard || undefined)?.thresholdMs ?? STALL_DEFAULTS.thresholdMs),
    },
    clock: o.clock ?? systemClock,
    timers: o.timers ?? systemTimers,
    wallClock: o.wallClock ?? { now: () => Date.now() },
  };
}

function validTls(where: string, t: TlsOptions | undefined): { tls?: TlsOptions } {
  if (t === undefined) return {};
  if (!((t.cert && t.key) || t.pfx)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${where}.tls needs cert and key (or pfx)`);
  return { tls: t };
}

function validDetector(d: DetectorOptions): DetectorOptions {
  if (d.kind === 'freshness') {
    for (const k of ['lateMs', 'suspectLateMs', 'windowSize'] as const) {
      const v = d[k];
      if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `detector.${k} must be a positive number (got ${v})`);
    }
    // Checked here, not first by the detector each connection makes: a window below 1 passed the
    // check above and then failed every client's handshake.
    if (d.windowSize !== undefined && !(Number.isInteger(d.windowSize) && d.windowSize >= 1)) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `detector.windowSize must be a whole number, at least 1 (got ${d.windowSize})`);
    }
    if (d.lateMs !== undefined && d.suspectLateMs !== undefined && d.suspectLateMs > d.lateMs) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', 'detector.suspectLateMs must not exceed lateMs');
    }
    return d;
  }
  if (d.kind !== 'phi' && d.kind !== 'silence') throw new LonglinkError('LL_ERR_INVALID_OPTION', `unknown detector kind ${(d as { kind: string }).kind}`);
  if (d.kind === 'phi') {
    const { kind: _kind, ...phi } = d;
    try {
      new PhiAccrualDetector(1000, 0, phi);
    } catch (err) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `detector: ${(err as Error).message}`);
    }
  }
  return d;
}
