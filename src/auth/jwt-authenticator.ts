import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, jwksCache, importSPKI, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { KeyObject } from 'node:crypto';
import { LonglinkError, ProtocolError } from '../protocol/errors.js';
import type { Authenticate, Identity } from '../gateway/options.js';
import { cappedText } from './connect-hook.js';

/**
 * The most of a JWKS answer read: an issuer's set is a few KB (a handful of keys, x5c chains
 * included). jose reads the whole body whatever its size, so a key set URL answering a gigabyte
 * (a misconfigured or compromised endpoint, a proxy's page) had the gateway buffer and parse it all.
 */
export const MAX_JWKS_BYTES = 1024 * 1024;

/**
 * After the key set URL failed (down, 5xx, a timeout, not a key set), how long before it is asked
 * again. jose fetched again for every HELLO that needed it (a set not fetched yet or stale, or a kid
 * it does not know), so while the issuer was failing each handshake, at up to the handshake rate
 * (2,000 a second), and any forged kid, was one more request to it. Meanwhile the set fetched
 * last, if any, is used.
 */
export const JWKS_RETRY_MS = 5000;

/** The shortest secret each HMAC algorithm may use: its hash's length. */
const HMAC_KEY_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 };

/** jose's fetch for the key set, reading at most MAX_JWKS_BYTES of a 200 answer (past it: not a key set, the token not judged). */
const cappedJwksFetch = async (url: string, init: RequestInit): Promise<Response> => {
  const res = await fetch(url, init);
  // Anything but 200 is refused by jose without reading the body: not read here either.
  if (res.status !== 200) {
    await res.body?.cancel();
    return res;
  }
  return new Response(await cappedText(res, MAX_JWKS_BYTES), { status: 200, headers: res.headers });
};

/**
 * Verifies the signed JWT a client puts in HELLO (`token`) with `jose`, and
 * takes the identity from it: the user from `sub` (or `userClaim`), the
 * device from `did` (or `deviceClaim`). The HELLO's own userId and deviceId
 * must match what the token says, so a token for one device cannot open
 * another's session. Refusals are ProtocolErrors with stable reasons:
 * `auth-missing` (no token), `auth-expired` (exp passed, or nbf not yet),
 * `auth-failed` (bad signature, wrong algorithm, issuer or audience, missing
 * claims, identity mismatch).
 */
export interface JwtAuthOptions {
  /** HS256: the shared secret, at least 32 bytes (48 for HS384, 64 for HS512): a shorter one is refused (LL_ERR_INVALID_OPTION). */
  secret?: string | Uint8Array;
  /** RS256/ES256: the issuer's public key (a KeyObject, or SPKI PEM text; PEM needs `algorithms` with one entry). */
  publicKey?: KeyObject | string;
  /** RS256/ES256: the issuer's keys as a JWK set (picked by `kid`). */
  jwks?: JSONWebKeySet;
  /** RS256/ES256: a URL serving the issuer's JWK set (fetched and cached by jose; an answer over MAX_JWKS_BYTES is not read; after a failure not asked again for JWKS_RETRY_MS). */
  jwksUrl?: string;
  /** Accepted algorithms (default: HS256 with `secret`, RS256 and ES256 otherwise). */
  algorithms?: string[];
  issuer?: string | string[];
  audience?: string | string[];
  /** Claim holding the user id (default `sub`). */
  userClaim?: string;
  /** Claim holding the device id (default `did`); when the token has none, any device of the user may use it. */
  deviceClaim?: string;
  /** Whether a token must name its device (default false: a user-wide token is accepted for any device). */
  requireDevice?: boolean;
  /** Slack for clock skew on exp/nbf/iat, in seconds (default 30). */
  clockToleranceS?: number;
  /**
   * Longest a token may be valid for, from now (default 30 days): a token
   * whose exp lies further ahead (exp: 1e300 is a token that never expires)
   * is refused, as is one issued in the future (iat past now + tolerance).
   */
  maxLifetimeS?: number;
  /** Wall clock in ms (tests); default Date.now. */
  now?: () => number;
}

export function jwtAuthenticator(o: JwtAuthOptions): Authenticate {
  const userClaim = o.userClaim ?? 'sub';
  const deviceClaim = o.deviceClaim ?? 'did';
  const sources = [o.secret, o.publicKey, o.jwks, o.jwksUrl].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'jwtAuthenticator needs exactly one of secret, publicKey, jwks, jwksUrl');
  const algorithms = o.algorithms ?? (o.secret !== undefined ? ['HS256'] : ['RS256', 'ES256']);
  if (o.secret !== undefined) {
    // RFC 7518 3.2: an HMAC key at least as long as its hash. Every user holds a token signed with
    // it, so a short secret ("secret", "changeme") is guessed offline from any one of them, and then
    // anyone's token can be made.
    const bytes = typeof o.secret === 'string' ? Buffer.byteLength(o.secret) : o.secret.length;
    const needed = Math.max(32, ...algorithms.map((a) => HMAC_KEY_BYTES[a] ?? 0));
    if (bytes < needed) throw new LonglinkError('LL_ERR_INVALID_OPTION', `the JWT secret is ${bytes} bytes; ${algorithms.join('/')} needs at least ${needed} (RFC 7518 3.2): a shorter one can be guessed offline from any token a user holds`);
  }
  let key: Promise<Uint8Array | KeyObject | CryptoKey | JWTVerifyGetKey>;
  let remote: ReturnType<typeof createRemoteJWKSet> | null = null;
  /** A PEM key that cannot be imported (not the algorithm's type): every HELLO is told so, retried. */
  let keyError: Error | null = null;
  if (o.secret !== undefined) key = Promise.resolve(typeof o.secret === 'string' ? new TextEncoder().encode(o.secret) : o.secret);
  else if (o.jwks) key = Promise.resolve(createLocalJWKSet(o.jwks));
  else if (o.jwksUrl) {
    // jose writes every set it fetches here (with when): the set held while the URL is not asked.
    const fetched: { jwks?: JSONWebKeySet; uat?: number } = {};
    const r = (remote = createRemoteJWKSet(new URL(o.jwksUrl), { [customFetch]: cappedJwksFetch, [jwksCache]: fetched as Record<string, never> }));
    let failedAt = -Infinity;
    let held: { uat: number; get: JWTVerifyGetKey } | null = null;
    const wallNow = () => (o.now ? o.now() : Date.now());
    key = Promise.resolve(async (header, token) => {
      const sinceFailure = wallNow() - failedAt;
      if (sinceFailure >= 0 && sinceFailure < JWKS_RETRY_MS) {
        if (fetched.jwks === undefined || fetched.uat === undefined) throw new ProtocolError('server-error', `key set unavailable (its URL failed ${Math.round(sinceFailure)} ms ago; asked again ${JWKS_RETRY_MS} ms after)`);
        if (held?.uat !== fetched.uat) held = { uat: fetched.uat, get: createLocalJWKSet(fetched.jwks) };
        try {
          return await held.get(header, token);
        } catch (err) {
          // Maybe a key the issuer added since: come back (4004), not refused for good.
          if (err instanceof errors.JWKSNoMatchingKey) throw new ProtocolError('server-error', 'no key for this token in the key set held, and its URL failed moments ago; retry shortly');
          throw err;
        }
      }
      try {
        return await r(header, token);
      } catch (err) {
        if (keySetUnavailable(err)) failedAt = wallNow();
        throw err;
      }
    });
  }
  else if (typeof o.publicKey === 'string') {
    if (algorithms.length !== 1) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'a PEM publicKey needs exactly one algorithm in `algorithms`');
    key = importSPKI(o.publicKey, algorithms[0]);
    // Handled here: left to the first HELLO, its rejection ended the process a tick after construction.
    key.catch((err: Error) => (keyError = err));
  } else key = Promise.resolve(o.publicKey!);

  return async (hello): Promise<Identity> => {
    if (!hello.token) throw new ProtocolError('auth-missing', 'HELLO carries no token; this gateway requires one');
    let payload: JWTPayload;
    // Set fetched within jose's cooldown (30 s) before this token came: an unknown kid is not looked
    // up again now, though the issuer may have rotated to it since (or a forged kid started the cooldown).
    const cooling = remote?.coolingDown === true;
    try {
      if (keyError) throw new ProtocolError('server-error', `the gateway's public key cannot be used: ${(keyError as Error).message}`);
      const k = await key;
      const opts = {
        algorithms,
        clockTolerance: o.clockToleranceS ?? 30,
        ...(o.issuer !== undefined ? { issuer: o.issuer } : {}),
        ...(o.audience !== undefined ? { audience: o.audience } : {}),
        ...(o.now ? { currentDate: new Date(o.now()) } : {}),
      };
      ({ payload } = typeof k === 'function' ? await jwtVerify(hello.token, k, opts) : await jwtVerify(hello.token, k, opts));
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      // A new key the cooling-down set may not have yet: come back (4004), not refused for good.
      if (cooling && err instanceof errors.JWKSNoMatchingKey) throw new ProtocolError('server-error', 'no key for this token in the key set fetched moments ago; retry shortly');
      // The key set could not be had (the JWKS URL down, slow, or answering garbage): the token was
      // not judged, so the device is told to come back (4004, retried) rather than refused for good.
      if (o.jwksUrl !== undefined && keySetUnavailable(err)) throw new ProtocolError('server-error', `key set unavailable: ${(err as Error).message}`);
      if (err instanceof errors.JWTExpired) throw new ProtocolError('auth-expired', 'token expired');
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'nbf') throw new ProtocolError('auth-expired', 'token not valid yet (nbf)');
      throw new ProtocolError('auth-failed', `token refused: ${(err as Error).message}`);
    }
    if (typeof payload.exp !== 'number') throw new ProtocolError('auth-failed', 'token has no expiry (exp)');
    const nowS = (o.now ? o.now() : Date.now()) / 1000;
    const toleranceS = o.clockToleranceS ?? 30;
    if (payload.exp > nowS + (o.maxLifetimeS ?? 30 * 86_400)) throw new ProtocolError('auth-failed', 'token expiry (exp) is further ahead than the longest lifetime allowed');
    if (typeof payload.iat === 'number' && payload.iat > nowS + toleranceS) throw new ProtocolError('auth-failed', 'token issued in the future (iat)');
    const userId = payload[userClaim];
    if (typeof userId !== 'string' || userId === '') throw new ProtocolError('auth-failed', `token has no ${userClaim} claim`);
    const deviceId = payload[deviceClaim];
    if (deviceId !== undefined && typeof deviceId !== 'string') throw new ProtocolError('auth-failed', `token claim ${deviceClaim} is not a string`);
    if (deviceId === undefined && o.requireDevice) throw new ProtocolError('auth-failed', `token has no ${deviceClaim} claim`);
    if (hello.userId !== userId) throw new ProtocolError('auth-failed', 'HELLO names another user than its token');
    if (deviceId !== undefined && hello.deviceId !== deviceId) throw new ProtocolError('auth-failed', 'HELLO names another device than its token');
    return { userId, deviceId: deviceId ?? hello.deviceId };
  };
}

/**
 * An error of fetching the remote key set, not of the token: a timeout, an
 * answer that is not a key set, a non-200 status (jose's generic error), or
 * the network's own (not jose's at all).
 */
function keySetUnavailable(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return true;
  if (!(err instanceof errors.JOSEError)) return !(err instanceof ProtocolError);
  return err.code === 'ERR_JOSE_GENERIC';
}
