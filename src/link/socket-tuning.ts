import type { Socket } from 'node:net';
import * as NetKeepAlive from 'net-keepalive';
import { LonglinkError } from '../protocol/errors.js';

/**
 * TCP keepalive as a second layer under the application heartbeat. Node's
 * setKeepAlive sets only the idle delay (and fixes the probe interval at 1 s
 * and count at 10 on Linux); net-keepalive sets TCP_KEEPINTVL, TCP_KEEPCNT and
 * TCP_USER_TIMEOUT through setsockopt. TCP_USER_TIMEOUT bounds how long
 * unacknowledged data may sit before the kernel gives up (otherwise
 * tcp_retries2 = 15 takes about 924 s on Linux).
 */
export interface KeepaliveOptions {
  /** Idle time before the first probe (TCP_KEEPIDLE); 0 or undefined leaves keepalive off. */
  keepaliveIdleMs?: number;
  /** Time between probes (TCP_KEEPINTVL). */
  keepaliveIntervalMs?: number;
  /** Unanswered probes before the kernel drops the connection (TCP_KEEPCNT). */
  keepaliveCount?: number;
  /** TCP_USER_TIMEOUT: max time transmitted data may stay unacknowledged. */
  userTimeoutMs?: number;
}

export function applyKeepalive(socket: Socket, o: KeepaliveOptions): void {
  socket.setNoDelay(true);
  if (o.keepaliveIdleMs && o.keepaliveIdleMs > 0) {
    socket.setKeepAlive(true, o.keepaliveIdleMs);
    if (o.keepaliveIntervalMs) NetKeepAlive.setKeepAliveInterval(socket, o.keepaliveIntervalMs);
    if (o.keepaliveCount) NetKeepAlive.setKeepAliveProbes(socket, o.keepaliveCount);
  }
  if (o.userTimeoutMs && o.userTimeoutMs > 0) NetKeepAlive.setUserTimeout(socket, o.userTimeoutMs);
}

/** What the kernel actually holds for a socket (for tests and the admin view). */
export function readKeepalive(socket: Socket): { intervalMs: number; count: number; userTimeoutMs: number } {
  return {
    intervalMs: NetKeepAlive.getKeepAliveInterval(socket),
    count: NetKeepAlive.getKeepAliveProbes(socket),
    userTimeoutMs: NetKeepAlive.getUserTimeout(socket),
  };
}

export function validateKeepalive(o: KeepaliveOptions): void {
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be a non-negative number (got ${v})`);
    }
  }
  // The kernel takes TCP_KEEPIDLE and TCP_KEEPINTVL in whole seconds.
  for (const k of ['keepaliveIdleMs', 'keepaliveIntervalMs'] as const) {
    const v = o[k];
    if (v !== undefined && v > 0 && v < 1000) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be at least 1000 (the kernel counts whole seconds)`);
    }
  }
}
