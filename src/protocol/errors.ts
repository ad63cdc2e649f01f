import type { NonCloseErrorCode } from './error-codes.js';
/**
 * Every reason a connection can end, with a stable numeric code and a stable
 * string name. The numeric codes double as WebSocket close codes (4000-4999 is
 * the private-use range of RFC 6455 §7.4.2), so both transports report the same
 * number. The range tells a client what to do:
 *   1000        normal close, do not reconnect
 *   4000-4499   transient: reconnect with backoff (or after GOAWAY's hint)
 *   4500-4999   permanent: the client or its credentials are at fault; do not
 *               reconnect automatically
 * docs/PROTOCOL.md lists the same table; keep them in step.
 */
export const CloseCodes = {
  'normal': 1000,
  'heartbeat-timeout': 4000,
  'handshake-timeout': 4001,
  'going-away': 4002,
  'slow-consumer': 4003,
  'server-error': 4004,
  'transport-error': 4005,
  'too-many-pings': 4006,
  'too-many-connections': 4007,
  'rate-limited': 4008,
  'too-many-messages': 4009,
  'too-many-devices': 4010,
  'frame-too-large': 4500,
  'malformed-frame': 4501,
  'unknown-frame': 4502,
  'unexpected-frame': 4503,
  'truncated-frame': 4504,
  'unsupported-version': 4505,
  'replaced': 4506,
  'kicked': 4507,
  'field-too-large': 4508,
  'policy-violation': 4509,
  'auth-failed': 4510,
  'auth-missing': 4511,
  'auth-expired': 4512,
} as const;

export type CloseReason = keyof typeof CloseCodes;

const byCode = new Map<number, CloseReason>(
  (Object.entries(CloseCodes) as [CloseReason, number][]).map(([name, code]) => [code, name]),
);

/** The reason name for a numeric code; unknown codes map by range. */
export function reasonForCode(code: number): CloseReason {
  const known = byCode.get(code);
  if (known) return known;
  // A code this version does not know keeps its range's meaning: permanent codes must not read as
  // server-error (which a client retries).
  if (code >= 4500 && code <= 4999) return 'policy-violation';
  return 'transport-error';
}

/**
 * The code of a reason name read from the network (a refusal header), or undefined: an own name
 * only, as a plain lookup would take `constructor` for a reason and give a function as the code.
 */
export function codeForReason(reason: string): number | undefined {
  return Object.hasOwn(CloseCodes, reason) ? CloseCodes[reason as CloseReason] : undefined;
}

/** Whether a client should reconnect after a close with this code. */
export function shouldReconnect(code: number): boolean {
  if (code === CloseCodes.normal) return false;
  return !(code >= 4500 && code <= 4999);
}

/** Base class for every error longlink raises on purpose. `code` is stable. */
type Snake<S extends string> = S extends `${infer A}-${infer B}` ? `${A}_${Snake<B>}` : S;

/** The code of a close reason: `heartbeat-timeout` → `LL_ERR_HEARTBEAT_TIMEOUT`. */
export type CloseErrorCode = `LL_ERR_${Uppercase<Snake<CloseReason>>}`;

/** Every code a LonglinkError can carry; docs/ERRORS.md explains each. */
export type LonglinkErrorCode = CloseErrorCode | NonCloseErrorCode;

export class LonglinkError extends Error {
  readonly code: LonglinkErrorCode;
  constructor(code: LonglinkErrorCode, message: string) {
    super(message);
    this.name = 'LonglinkError';
    this.code = code;
  }
}

/**
 * The gateway refused a connection before it opened (a WebSocket upgrade answered
 * 503): the GOAWAY reason and its retry hint, which the client honours like GOAWAY's.
 */
export class RefusedError extends LonglinkError {
  constructor(
    readonly reason: string,
    readonly retryAfterMs: number,
    message: string,
  ) {
    super('LL_ERR_REFUSED', message);
    this.name = 'RefusedError';
  }
}

/**
 * The WebSocket upgrade was answered with another HTTP status, by something that is not a
 * longlink gateway's refusal (a proxy, a load balancer, another server). `retryAfterMs`: the
 * `Retry-After` of a 503 or 429, which the client waits at least before its next attempt.
 */
export class UpgradeRefusedError extends LonglinkError {
  constructor(
    readonly status: number,
    readonly retryAfterMs: number | undefined,
    message: string,
  ) {
    super('LL_ERR_UPGRADE_REFUSED', message);
    this.name = 'UpgradeRefusedError';
  }
}

/**
 * A peer sent something the protocol does not allow. Carries the close reason
 * the connection is closed with; `code` is `LL_ERR_` + the reason in upper case
 * (for example `LL_ERR_FRAME_TOO_LARGE`).
 */
export class ProtocolError extends LonglinkError {
  readonly reason: CloseReason;
  readonly closeCode: number;
  constructor(reason: CloseReason, message: string) {
    super(errorCodeFor(reason), message);
    this.name = 'ProtocolError';
    this.reason = reason;
    this.closeCode = CloseCodes[reason];
  }
}

/**
 * The byte stream ended inside a frame (truncated-frame, found at the end
 * rather than in a frame's fields): to a client, a connection lost
 * mid-write, retried like any other; to the gateway, a peer to close as truncated.
 */
export class StreamEndedError extends ProtocolError {
  constructor(message: string) {
    super('truncated-frame', message);
    this.name = 'StreamEndedError';
  }
}

/** What a store's setOnline throws for a device beyond its user's bound (see PresenceStore.setOnline). */
export function tooManyDevices(maxDevices: number): ProtocolError {
  return new ProtocolError('too-many-devices', `the user has its limit of ${maxDevices} devices online`);
}

export function errorCodeFor(reason: CloseReason): CloseErrorCode {
  return ('LL_ERR_' + reason.toUpperCase().replace(/-/g, '_')) as CloseErrorCode;
}

/**
 * An option out of range or inconsistent, from any constructor a user
 * reaches through options (core classes included): `path` names it.
 */
export class OptionError extends LonglinkError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super('LL_ERR_INVALID_OPTION', `${path}: ${message}`);
    this.name = 'OptionError';
  }
}
