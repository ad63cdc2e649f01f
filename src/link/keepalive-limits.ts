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
  /** Idle time before the first probe (TCP_KEEPIDLE), in whole seconds (a multiple of 1000); 0 or undefined leaves keepalive off. */
  keepaliveIdleMs?: number;
  /** Time between probes (TCP_KEEPINTVL), in whole seconds (a multiple of 1000). */
  keepaliveIntervalMs?: number;
  /** Unanswered probes before the kernel drops the connection (TCP_KEEPCNT). */
  keepaliveCount?: number;
  /**
   * TCP_USER_TIMEOUT: max time transmitted data may stay unacknowledged. On Linux it also
   * overrides keepaliveCount once a probe is out (closed after this long without an answer):
   * give it at least keepaliveIdleMs + keepaliveIntervalMs × keepaliveCount.
   */
  userTimeoutMs?: number;
}

/**
 * The largest values Linux's setsockopt takes (anything above fails with
 * EINVAL): TCP_KEEPCNT at most 127 probes (MAX_TCP_KEEPCNT), TCP_KEEPIDLE
 * and TCP_KEEPINTVL at most 32767 s (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL),
 * TCP_USER_TIMEOUT an int of milliseconds. Apart from node:net (with the
 * options' type) so the browser build (client options) can check them too,
 * and its declarations need no Node types.
 */
export const KEEPALIVE_LIMITS = {
  keepaliveIdleMs: 32_767_000,
  keepaliveIntervalMs: 32_767_000,
  keepaliveCount: 127,
  userTimeoutMs: 2 ** 31 - 1,
} as const;

export function validateKeepalive(o: KeepaliveOptions): void {
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be a non-negative number (got ${v})`);
    }
  }
  // The kernel takes TCP_KEEPIDLE and TCP_KEEPINTVL in whole seconds: 1500 was cut to 1 s, unsaid.
  for (const k of ['keepaliveIdleMs', 'keepaliveIntervalMs'] as const) {
    const v = o[k];
    if (v !== undefined && v > 0 && v < 1000) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be at least 1000 (the kernel counts whole seconds)`);
    }
    if (v !== undefined && v % 1000 !== 0) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be a whole number of seconds (the kernel counts whole seconds; got ${v}, which it would cut to ${Math.floor(v / 1000)} s)`);
    }
  }
  // Keepalive is on only with an idle time: an interval or count without one was set on no socket,
  // while whoever gave them believed dead peers were probed.
  if (!(o.keepaliveIdleMs !== undefined && o.keepaliveIdleMs > 0)) {
    const orphan = (['keepaliveIntervalMs', 'keepaliveCount'] as const).filter((k) => o[k] !== undefined && o[k]! > 0);
    if (orphan.length > 0) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${orphan.join(' and ')} need${orphan.length > 1 ? '' : 's'} keepaliveIdleMs (TCP keepalive is off without an idle time)`);
  }
  // A count of probes, and TCP_USER_TIMEOUT's milliseconds: setsockopt takes an int, cutting a fraction off.
  for (const k of ['keepaliveCount', 'userTimeoutMs'] as const) {
    const v = o[k];
    if (v !== undefined && !Number.isInteger(v)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be an integer (got ${v})`);
  }
  for (const k of Object.keys(KEEPALIVE_LIMITS) as (keyof typeof KEEPALIVE_LIMITS)[]) {
    const v = o[k];
    if (v !== undefined && v > KEEPALIVE_LIMITS[k]) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `${k} must be at most ${KEEPALIVE_LIMITS[k]} (the kernel refuses more; got ${v})`);
    }
  }
}
