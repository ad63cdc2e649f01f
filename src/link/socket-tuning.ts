import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { LonglinkError } from '../protocol/errors.js';
import type { KeepaliveOptions } from './keepalive-limits.js';

type NetKeepAliveModule = typeof import('net-keepalive');

/**
 * net-keepalive (a native FFI binding) is loaded only when a keepalive option
 * needs it, so the package imports where the binary is missing (installed
 * with --omit=optional, another platform's lockfile): there the portable
 * setKeepAlive (idle time only) is used, with one warning.
 */
let netKeepAlive: NetKeepAliveModule | null | undefined;
let warn: (message: string) => void = (m) => process.emitWarning(m, 'LonglinkWarning');

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
    warn(`net-keepalive could not be loaded (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): TCP keepalive interval, count and TCP_USER_TIMEOUT are not set; only the idle time is (socket.setKeepAlive)`);
  } finally {
    if (report) report.excludeNetwork = excluded ?? false;
  }
  return netKeepAlive;
}

/** Where the fallback warning goes (the gateway routes it to its `fault` event). */
export function onKeepaliveWarning(fn: (message: string) => void): void {
  warn = fn;
}

/** Whether the native setters are available (loads them on first call). */
export function keepaliveTuningAvailable(): boolean {
  return loadNetKeepAlive() !== null;
}

/** Kernel refusals already reported: one warning per distinct error, not one per socket. */
const refusals = new Set<string>();

/**
 * Tunes a connected socket. Called from connection and connect listeners,
 * where a throw would be uncaught and end the process: a value the kernel
 * refuses (EINVAL from setsockopt: callers that skip option validation, or a
 * kernel with lower limits) skips the rest of the tuning, reported once.
 */
export function applyKeepalive(socket: Socket, o: KeepaliveOptions): void {
  try {
    tune(socket, o);
  } catch (err) {
    const message = `TCP keepalive tuning failed (${err instanceof Error ? err.message : String(err)}) for ${JSON.stringify(o)}: the rest of the tuning is skipped for this socket`;
    if (refusals.has(message)) return;
    refusals.add(message);
    warn(message);
  }
}

function tune(socket: Socket, o: KeepaliveOptions): void {
  socket.setNoDelay(true);
  const wantsNative = !!((o.keepaliveIdleMs && (o.keepaliveIntervalMs || o.keepaliveCount)) || (o.userTimeoutMs && o.userTimeoutMs > 0));
  const native = wantsNative ? loadNetKeepAlive() : null;
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
