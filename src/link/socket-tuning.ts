import { createRequire } from 'node:module';
import { Socket, type Server } from 'node:net';
import { LonglinkError } from '../protocol/errors.js';
import type { KeepaliveOptions } from './keepalive-limits.js';

type NetKeepAliveModule = typeof import('net-keepalive');

/**
 * net-keepalive (a native FFI binding) is loaded only when a keepalive option
 * needs it, so the package imports where the binary is missing (installed
 * with --omit=optional, another platform's lockfile): there the portable
 * setKeepAlive (idle time only) is used, with one warning to each receiver (see KeepaliveWarning).
 */
let netKeepAlive: NetKeepAliveModule | null | undefined;
/** Why net-keepalive could not be loaded (told to each warning's receiver once, when it first needs it). */
let loadFailure = '';

/**
 * Where a socket's tuning problem goes: the binding missing (LL_ERR_UNAVAILABLE) or a value the
 * kernel refused (LL_ERR_INVALID_OPTION). Passed per call, not set for the process: two gateways
 * in one process each hear of their own sockets (the gateway sends it to its `fault` event).
 */
export type KeepaliveWarning = (error: LonglinkError) => void;

/** Without a receiver: the process's warnings (stderr). */
const processWarning: KeepaliveWarning = (e) => process.emitWarning(e.message, 'LonglinkWarning');

function loadNetKeepAlive(): NetKeepAliveModule | null {
  if (netKeepAlive !== undefined) return netKeepAlive;
  // Its FFI binding's loader asks process.report.getReport() whether libc is musl, and a report
  // looks up the name of every open socket's peer, synchronously: where DNS does not answer
  // (a lab namespace, a host with a dead resolver) that blocked the event loop 5 s per socket
  // on the first keepalive setting. The report's network part is not needed for that.
  const report = process.report as (typeof process.report & { excludeNetwork?: boolean }) | undefined;
  const excluded = report?.excludeNetwork;
  if (report) report.excludeNetwork = true;
  try {
    netKeepAlive = createRequire(import.meta.url)('net-keepalive') as NetKeepAliveModule;
  } catch (err) {
    netKeepAlive = null;
    loadFailure = `net-keepalive could not be loaded (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): TCP keepalive interval, count and TCP_USER_TIMEOUT are not set; only the idle time is (socket.setKeepAlive)`;
  } finally {
    if (report) report.excludeNetwork = excluded ?? false;
  }
  return netKeepAlive;
}

/** Whether the native setters are available (loads them on first call). */
export function keepaliveTuningAvailable(): boolean {
  return loadNetKeepAlive() !== null;
}

/** Problems already told to each receiver: one warning per distinct problem, not one per socket. */
const told = new WeakMap<KeepaliveWarning, Set<string>>();

function tell(warn: KeepaliveWarning, error: LonglinkError): void {
  let seen = told.get(warn);
  if (!seen) told.set(warn, (seen = new Set()));
  if (seen.has(error.message)) return;
  seen.add(error.message);
  warn(error);
}

/**
 * Tunes a connected socket. Called from connection and connect listeners,
 * where a throw would be uncaught and end the process: a value the kernel
 * refuses (EINVAL from setsockopt: callers that skip option validation, or a
 * kernel with lower limits) skips the rest of the tuning, told to `warn` once.
 */
export function applyKeepalive(socket: Socket, o: KeepaliveOptions, warn: KeepaliveWarning = processWarning): void {
  try {
    tune(socket, o, warn);
  } catch (err) {
    const message = `TCP keepalive tuning failed (${err instanceof Error ? err.message : String(err)}) for ${JSON.stringify(o)}: the rest of the tuning is skipped for this socket`;
    tell(warn, new LonglinkError('LL_ERR_INVALID_OPTION', message));
  }
}

/** Whether the options hold a setting only net-keepalive can make (interval, count, user timeout). */
function needsNative(o: KeepaliveOptions): boolean {
  return !!((o.keepaliveIdleMs && (o.keepaliveIntervalMs || o.keepaliveCount)) || (o.userTimeoutMs && o.userTimeoutMs > 0));
}

/**
 * Sets the keepalive interval, count and user timeout once on a listening socket: Linux copies a
 * listener's TCP options to every connection it accepts, and net-keepalive's setters go through FFI
 * at tens of µs each (33 µs measured, three per connection, as much as the rest of a handshake's
 * set-up on the gateway's side). Returns what each accepted socket must still have set itself:
 * nothing but no-delay, or, off Linux or where the listener could not be tuned, all of it as before.
 */
export function tuneListener(server: Server, o: KeepaliveOptions): KeepaliveOptions {
  if (!needsNative(o) || process.platform !== 'linux') return o;
  const handle = (server as unknown as { _handle: { fd?: number; setKeepAlive?: (on: boolean, delaySecs: number) => number } | null })._handle;
  const native = loadNetKeepAlive();
  if (!native || !handle || !(typeof handle.fd === 'number' && handle.fd >= 0) || typeof handle.setKeepAlive !== 'function') return o;
  // net-keepalive takes a Socket and reads its handle's fd: the listener's handle, seen as one.
  const listening = Object.create(Socket.prototype, { _handle: { value: handle } }) as Socket;
  try {
    if (o.keepaliveIdleMs && o.keepaliveIdleMs > 0) {
      // SO_KEEPALIVE and the idle time on the listener too: Node's setKeepAlive on an accepted socket
      // (libuv's) would also set the interval and count to its own (1 s, 10), over the inherited ones.
      if (handle.setKeepAlive(true, Math.floor(o.keepaliveIdleMs / 1000)) !== 0) return o;
      if (o.keepaliveIntervalMs) native.setKeepAliveInterval(listening, o.keepaliveIntervalMs);
      if (o.keepaliveCount) native.setKeepAliveProbes(listening, o.keepaliveCount);
    }
    if (o.userTimeoutMs && o.userTimeoutMs > 0) native.setUserTimeout(listening, o.userTimeoutMs);
  } catch {
    // Each socket then tries, and reports what the kernel refused (applyKeepalive).
    return o;
  }
  // Only TCP_NODELAY is set per socket (applyKeepalive always sets it).
  return {};
}

function tune(socket: Socket, o: KeepaliveOptions, warn: KeepaliveWarning): void {
  socket.setNoDelay(true);
  const wantsNative = needsNative(o);
  const native = wantsNative ? loadNetKeepAlive() : null;
  if (wantsNative && !native) tell(warn, new LonglinkError('LL_ERR_UNAVAILABLE', loadFailure));
  if (o.keepaliveIdleMs && o.keepaliveIdleMs > 0) {
    socket.setKeepAlive(true, o.keepaliveIdleMs);
    if (native && o.keepaliveIntervalMs) native.setKeepAliveInterval(socket, o.keepaliveIntervalMs);
    if (native && o.keepaliveCount) native.setKeepAliveProbes(socket, o.keepaliveCount);
  }
  if (native && o.userTimeoutMs && o.userTimeoutMs > 0) native.setUserTimeout(socket, o.userTimeoutMs);
}

/** What the kernel actually holds for a socket (for tests and the admin view). */
export function readKeepalive(socket: Socket): { intervalMs: number; count: number; userTimeoutMs: number } {
  const native = loadNetKeepAlive();
  if (!native) throw new LonglinkError('LL_ERR_UNAVAILABLE', 'reading keepalive settings needs net-keepalive, which could not be loaded');
  return {
    intervalMs: native.getKeepAliveInterval(socket),
    count: native.getKeepAliveProbes(socket),
    userTimeoutMs: native.getUserTimeout(socket),
  };
}

export { validateKeepalive, type KeepaliveOptions } from './keepalive-limits.js';
