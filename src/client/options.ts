import type { ClientTlsOptions, DialOptions } from './dial-options.js';
import { systemClock, systemTimers, type Clock, type Timers } from '../core/clock.js';
import { DEFAULT_BACKOFF, type BackoffOptions } from '../core/backoff.js';
import { dropUndefined, MAX_TIMER_MS, resolveProbes, type ProbeOptions } from '../core/heartbeat-policy.js';
import { validateKeepalive, type KeepaliveOptions } from '../link/keepalive-limits.js';
import { LonglinkError, OptionError } from '../protocol/errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/frame-decoder.js';
import { putEntry } from '../protocol/frame-codec.js';
import type { ClientState, HeartbeatDirection } from '../protocol/frames.js';
import type { Link } from '../link/link.js';
import type { LearnerOptions, LearnerSnapshot } from '../core/interval-learner.js';

/** Adaptive heartbeat: learn the longest interval each network allows. */
export type AdaptiveOptions = Partial<LearnerOptions> & {
  /** The network the device is on now (for example `wifi:home`); switch with `networkChanged(id)`. */
  network?: string;
  /** What an earlier run learned (`client.learner.export()`), so known networks start at their interval. */
  state?: LearnerSnapshot;
};

/** Gives the token for the next connection attempt. */
export type TokenProvider = () => string | Promise<string>;

export interface ClientOptions {
  /**
   * `tcp://host:port` or `ws://host:port/path`; or several gateways (nodes of
   * one cluster): the client stays on one while it works and moves to the
   * next after a failed attempt or a lost link.
   */
  url: string | string[];
  userId: string;
  deviceId: string;
  /**
   * Credentials for HELLO (a signed JWT for the gateway's jwtAuthenticator).
   * A function is asked before every connection attempt, so a refreshed token
   * is used, and a close for an expired token (4512) is retried with a new one.
   */
  token?: string | TokenProvider;
  /** Sent once in HELLO and cached by the gateway (app version, OS, ...). String values; from JavaScript, null or undefined ones are left out and any other throws LL_ERR_INVALID_OPTION. */
  clientInfo?: ClientState;
  /** Who sends heartbeats; 'server' suits clients whose timers are throttled. */
  direction?: HeartbeatDirection;
  /** The interval to announce; the gateway clamps it to its allowed range. Default: the gateway's. */
  intervalMs?: number;
  /**
   * Learn the interval per network instead (true for the defaults): probe
   * longer gaps, fall back after a failure, settle just below the longest
   * that held. `intervalMs`, if given, is the start for unknown networks.
   */
  adaptive?: boolean | AdaptiveOptions;
  probes?: Partial<ProbeOptions>;
  reconnect?: Partial<BackoffOptions> & {
    /** Reconnect automatically after transient closes (default true). */
    enabled?: boolean;
    /** A connection open this long resets the backoff. */
    stableAfterMs?: number;
  };
  /** Time allowed for connect + HELLO/WELCOME. */
  handshakeTimeoutMs?: number;
  maxFrameBytes?: number;
  /**
   * Longest id `send` takes, in UTF-8 bytes (128, the gateway's default
   * `limits.maxMessageIdBytes`; raise both together). `send` throws
   * LL_ERR_INVALID_OPTION beyond it.
   */
  maxMessageIdBytes?: number;
  /** Most messages waiting for acknowledgement; `send` throws LL_ERR_OUTBOX_FULL beyond it. */
  maxOutbox?: number;
  /**
   * Most payload bytes waiting for acknowledgement (16 MiB): a tab or app
   * offline for long, sending large messages, would otherwise hold up to
   * maxOutbox × maxFrameBytes (650 MB). `send` throws LL_ERR_OUTBOX_FULL
   * beyond it; a lone message always fits.
   */
  maxOutboxBytes?: number;
  /**
   * Most messages written on a link and not yet acknowledged (128); the rest
   * of the outbox goes out as acknowledgements come back. The gateway takes
   * client messages in one at a time and closes a link whose waiting ones
   * pass its budgets (GOAWAY 4004: an upstream backend's 256 per link, 4 MiB
   * of payload): an outbox written all at once after a reconnect was refused
   * whole, and again on every reconnect.
   */
  maxInFlight?: number;
  /** The same in payload bytes (1 MiB); a lone message always goes. */
  maxInFlightBytes?: number;
  /**
   * The pace of DATA on a link: on average `maxDataPerSecond` (1,000; 0 for
   * none), bursts of `dataBurst` (1,000), the rest waiting in the outbox. The
   * gateway closes a link above its own pace (1,000 a second, bursts of 2,000
   * by default; GOAWAY 4009): an outbox of thousands re-sent after a
   * reconnect was closed, again on every reconnect. The burst is half the
   * gateway's, for frames bunched on the way.
   */
  maxDataPerSecond?: number;
  dataBurst?: number;
  /** Longest an acknowledgement waits for a frame to ride on before it is sent alone. */
  ackDelayMs?: number;
  /**
   * How long `close()` waits, at most, for the outbox to be written and
   * acknowledged over an open link before it sends CLOSE (5,000 ms; 0 closes
   * at once). Its promise resolves with what is left unacknowledged.
   */
  closeFlushMs?: number;
  keepalive?: KeepaliveOptions;
  /** For `tls://` and `wss://` URLs: node:tls options such as `ca` (to trust a private CA) or `servername`. */
  tls?: ClientTlsOptions;
  /** Local address to connect from (multi-homed hosts, load generators). */
  localAddress?: string;
  clock?: Clock;
  timers?: Timers;
  random?: () => number;
  /** Opens the link; replaceable for other transports (the browser build) and tests. */
  dial?: (url: string, opts: DialOptions) => Promise<Link>;
}

export interface ResolvedClientOptions {
  urls: string[];
  userId: string;
  deviceId: string;
  token: string | TokenProvider | undefined;
  clientInfo: ClientState;
  direction: HeartbeatDirection;
  intervalMs: number | undefined;
  adaptive: AdaptiveOptions | null;
  probes: ProbeOptions;
  backoff: BackoffOptions;
  reconnectEnabled: boolean;
  stableAfterMs: number;
  handshakeTimeoutMs: number;
  maxFrameBytes: number;
  maxMessageIdBytes: number;
  maxOutbox: number;
  maxOutboxBytes: number;
  maxInFlight: number;
  maxInFlightBytes: number;
  maxDataPerSecond: number;
  dataBurst: number;
  ackDelayMs: number;
  closeFlushMs: number;
  keepalive: KeepaliveOptions;
  tls: ClientTlsOptions | undefined;
  localAddress: string | undefined;
  clock: Clock;
  timers: Timers;
  random: () => number;
}

export const CLIENT_DEFAULTS = {
  handshakeTimeoutMs: 10_000,
  stableAfterMs: 10_000,
  maxMessageIdBytes: 128,
  maxOutbox: 10_000,
  maxOutboxBytes: 16 << 20,
  maxInFlight: 128,
  maxInFlightBytes: 1 << 20,
  maxDataPerSecond: 1000,
  dataBurst: 1000,
  ackDelayMs: 50,
  closeFlushMs: 5000,
};

export function resolveClientOptions(o: ClientOptions): ResolvedClientOptions {
  const urls = (Array.isArray(o.url) ? o.url : [o.url]).filter(Boolean);
  if (urls.length === 0) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'url is required');
  urls.forEach((u, i) => {
    const at = urls.length > 1 ? `url[${i}]` : 'url';
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${at}: ${JSON.stringify(u)} is not a URL (tcp://host:port, tls://, ws://host:port/longlink or wss://)`);
    }
    // A URL no dialer can open is refused now, not retried forever (a custom dial decides for itself).
    if (!o.dial && !['tcp:', 'tls:', 'ws:', 'wss:'].includes(parsed.protocol)) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${at}: scheme ${parsed.protocol} is not supported (use tcp://, tls://, ws:// or wss://)`);
    }
  });
  if (!o.userId || !o.deviceId) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'userId and deviceId are required');
  // maxFrameBytes NaN: every send refused as too large, and what comes in unbounded.
  for (const k of ['maxOutbox', 'maxOutboxBytes', 'maxInFlight', 'maxInFlightBytes', 'dataBurst', 'maxFrameBytes', 'maxMessageIdBytes'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be a positive integer (got ${v})`);
  }
  // Its gap (1000 / rate ms) is armed as a timer: NaN or a negative rate would fire at once, again and again.
  if (o.maxDataPerSecond !== undefined && !(Number.isFinite(o.maxDataPerSecond) && o.maxDataPerSecond >= 0)) throw new OptionError('maxDataPerSecond', `must be a finite number >= 0, 0 for no pace (got ${o.maxDataPerSecond})`);
  // Checked now, not when the HELLO encoder meets it inside an attempt (a function is checked per answer).
  if (o.token !== undefined && typeof o.token !== 'string' && typeof o.token !== 'function') throw new OptionError('token', `must be a string or a function (got ${o.token === null ? 'null' : typeof o.token})`);
  const r = o.reconnect ?? {};
  // Announced in HELLO as a varint (a fraction or Infinity throws there) and armed as a timer.
  if (o.intervalMs !== undefined) checkIntervalMs('intervalMs', o.intervalMs);
  if (typeof o.adaptive === 'object' && o.adaptive.startMs !== undefined) checkIntervalMs('adaptive.startMs', o.adaptive.startMs);
  // Each is armed as one timer: beyond MAX_TIMER_MS (Infinity meant as "no limit") or NaN, Node fires
  // it after 1 ms, and a 1 ms handshake timeout fails every attempt, retried for ever.
  checkTimerMs('handshakeTimeoutMs', o.handshakeTimeoutMs, 1);
  checkTimerMs('reconnect.stableAfterMs', r.stableAfterMs, 0);
  checkTimerMs('ackDelayMs', o.ackDelayMs, 0);
  checkTimerMs('closeFlushMs', o.closeFlushMs, 0);
  const clientInfo = checkClientInfo(o.clientInfo ?? {});
  const keepalive = dropUndefined(o.keepalive ?? {});
  validateKeepalive(keepalive);
  return {
    urls,
    userId: o.userId,
    deviceId: o.deviceId,
    token: o.token,
    clientInfo,
    direction: o.direction ?? 'client',
    intervalMs: o.intervalMs,
    adaptive: o.adaptive ? { ...(o.intervalMs !== undefined ? { startMs: o.intervalMs } : {}), ...(o.adaptive === true ? {} : o.adaptive) } : null,
    probes: resolveProbes(o.probes),
    backoff: { ...DEFAULT_BACKOFF, ...dropUndefined({ initialDelayMs: r.initialDelayMs, maxDelayMs: r.maxDelayMs, minDelayMs: r.minDelayMs, factor: r.factor }) },
    reconnectEnabled: r.enabled ?? true,
    stableAfterMs: r.stableAfterMs ?? CLIENT_DEFAULTS.stableAfterMs,
    handshakeTimeoutMs: o.handshakeTimeoutMs ?? CLIENT_DEFAULTS.handshakeTimeoutMs,
    maxFrameBytes: o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    maxMessageIdBytes: o.maxMessageIdBytes ?? CLIENT_DEFAULTS.maxMessageIdBytes,
    maxOutbox: o.maxOutbox ?? CLIENT_DEFAULTS.maxOutbox,
    maxOutboxBytes: o.maxOutboxBytes ?? CLIENT_DEFAULTS.maxOutboxBytes,
    maxInFlight: o.maxInFlight ?? CLIENT_DEFAULTS.maxInFlight,
    maxInFlightBytes: o.maxInFlightBytes ?? CLIENT_DEFAULTS.maxInFlightBytes,
    maxDataPerSecond: o.maxDataPerSecond ?? CLIENT_DEFAULTS.maxDataPerSecond,
    dataBurst: o.dataBurst ?? CLIENT_DEFAULTS.dataBurst,
    ackDelayMs: o.ackDelayMs ?? CLIENT_DEFAULTS.ackDelayMs,
    closeFlushMs: o.closeFlushMs ?? CLIENT_DEFAULTS.closeFlushMs,
    keepalive,
    tls: o.tls,
    localAddress: o.localAddress,
    clock: o.clock ?? systemClock,
    timers: o.timers ?? systemTimers,
    random: o.random ?? Math.random,
  };
}

/** An interval the client announces: whole milliseconds a timer can take. Throws LL_ERR_INVALID_OPTION naming `name`. */
export function checkIntervalMs(name: string, ms: number): void {
  if (!(Number.isInteger(ms) && ms > 0 && ms <= MAX_TIMER_MS)) throw new OptionError(name, `must be an integer from 1 to ${MAX_TIMER_MS} ms (got ${ms})`);
}

/** A delay armed as one timer, from `min` to MAX_TIMER_MS ms (undefined: the default). Throws LL_ERR_INVALID_OPTION naming `name`. */
function checkTimerMs(name: string, ms: number | undefined, min: number): void {
  if (ms !== undefined && !(ms >= min && ms <= MAX_TIMER_MS)) throw new OptionError(name, `must be a number from ${min} to ${MAX_TIMER_MS} ms (got ${ms})`);
}

/**
 * clientInfo as HELLO carries it. Plain JavaScript passes what the types forbid: a null or undefined
 * value is left out; any other value that is not a string is refused here, not thrown by the HELLO
 * encoder inside an attempt (an unhandled rejection, which ends a Node process).
 */
function checkClientInfo(info: ClientState): ClientState {
  const out: ClientState = {};
  for (const [k, v] of Object.entries(info)) {
    const value: unknown = v;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'string') throw new OptionError(`clientInfo.${k}`, `must be a string (got ${typeof value})`);
    putEntry(out, k, value);
  }
  return out;
}
