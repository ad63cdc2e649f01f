import { systemClock, systemTimers, type Clock, type Timers } from '../core/clock.js';
import {
  dropUndefined,
  resolvePolicy,
  resolveProbes,
  type HeartbeatPolicy,
  type ProbeOptions,
} from '../core/heartbeat-policy.js';
import { validateKeepalive, type KeepaliveOptions } from '../link/socket-tuning.js';
import { LonglinkError } from '../protocol/errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/frame-decoder.js';
import type { HelloFrame } from '../protocol/frames.js';
import { MemoryStore } from './stores/memory-store.js';
import type { Store } from './stores/store.js';

export interface ListenOptions {
  port?: number;
  host?: string;
}

export interface WsListenOptions extends ListenOptions {
  /** HTTP path WebSocket upgrades are accepted on. */
  path?: string;
}

/** Identity the authenticator vouches for. */
export interface Identity {
  userId: string;
  deviceId: string;
}

/**
 * Decides whether a HELLO may open a session. Throw (or reject) with a
 * ProtocolError('auth-failed', ...) to refuse; return the identity to use.
 */
export type Authenticate = (hello: HelloFrame, peer: { remoteAddress: string; transport: string }) => Identity | Promise<Identity>;

export interface GatewayOptions {
  /** Raw TCP listener; omit or set to false for none. */
  tcp?: ListenOptions | false;
  /** WebSocket listener; omit or set to false for none. */
  ws?: WsListenOptions | false;
  heartbeat?: Partial<HeartbeatPolicy>;
  /** How the server waits and rechecks when it sends the heartbeats (server direction). */
  probes?: Partial<ProbeOptions>;
  keepalive?: KeepaliveOptions;
  /** A connection must send HELLO within this time. */
  handshakeTimeoutMs?: number;
  maxFrameBytes?: number;
  /** How long a session may be resumed after its connection ends. */
  sessionTtlMs?: number;
  /** Identifies this process in presence entries. */
  nodeId?: string;
  store?: Store;
  authenticate?: Authenticate;
  /** Timer wheel tick: the resolution of every deadline. */
  wheelTickMs?: number;
  clock?: Clock;
  timers?: Timers;
  /** Wall-clock ms, for presence timestamps and session expiry. */
  wallClock?: Clock;
}

export interface ResolvedGatewayOptions {
  tcp: Required<ListenOptions> | false;
  ws: Required<WsListenOptions> | false;
  heartbeat: HeartbeatPolicy;
  probes: ProbeOptions;
  keepalive: KeepaliveOptions;
  handshakeTimeoutMs: number;
  maxFrameBytes: number;
  sessionTtlMs: number;
  nodeId: string;
  store: Store;
  authenticate: Authenticate;
  wheelTickMs: number;
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
  const keepalive = dropUndefined(o.keepalive ?? {});
  validateKeepalive(keepalive);
  return {
    tcp: o.tcp === false ? false : { port: o.tcp?.port ?? DEFAULT_TCP_PORT, host: o.tcp?.host ?? DEFAULTS.host },
    ws: o.ws === false ? false : { port: o.ws?.port ?? DEFAULT_WS_PORT, host: o.ws?.host ?? DEFAULTS.host, path: o.ws?.path ?? DEFAULTS.wsPath },
    heartbeat: resolvePolicy(o.heartbeat),
    probes: resolveProbes(o.probes),
    keepalive,
    handshakeTimeoutMs: positive('handshakeTimeoutMs', o.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs),
    maxFrameBytes: positive('maxFrameBytes', o.maxFrameBytes ?? DEFAULTS.maxFrameBytes),
    sessionTtlMs: positive('sessionTtlMs', o.sessionTtlMs ?? DEFAULTS.sessionTtlMs),
    nodeId: o.nodeId ?? `node-${process.pid}`,
    store: o.store ?? new MemoryStore(),
    authenticate: o.authenticate ?? acceptAll,
    wheelTickMs: positive('wheelTickMs', o.wheelTickMs ?? DEFAULTS.wheelTickMs),
    clock: o.clock ?? systemClock,
    timers: o.timers ?? systemTimers,
    wallClock: o.wallClock ?? { now: () => Date.now() },
  };
}
