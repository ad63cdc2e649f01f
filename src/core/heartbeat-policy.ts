import { LonglinkError } from '../protocol/errors.js';
import type { HeartbeatDirection, HeartbeatGrant, HelloFrame } from '../protocol/frames.js';

/**
 * The server's heartbeat policy and the formulas that bound detection.
 *
 * The side that sends heartbeats ("active") runs a HeartbeatScheduler; the
 * other side ("passive") runs a liveness detector. Client-sent is the default;
 * a client may ask for server-sent (a background browser tab whose timers are
 * throttled can still answer a PING, but cannot send one on time).
 *
 * Passive side (the server, by default) closes a link silent for
 *   silenceLimitMs = intervalMs × missBudget + graceMs
 * and sends one probe PING once it has been silent for intervalMs + graceMs.
 * Active side (the client, by default) declares the link dead at most
 *   intervalMs + pongTimeoutMs + probeCount × probeIntervalMs
 * after it last heard anything.
 */
export interface HeartbeatPolicy {
  /** Default heartbeat interval, for clients that do not announce one. */
  intervalMs: number;
  /** Shortest interval a client may announce. */
  minIntervalMs: number;
  /** Longest interval a client may announce. */
  maxIntervalMs: number;
  /** Heartbeat intervals of silence tolerated before the link is closed. */
  missBudget: number;
  /** Slack for delay and jitter added to the silence limit. */
  graceMs: number;
  /** Whether clients may ask the server to send the heartbeats. */
  allowServerDirection: boolean;
}

/** How the active side waits for an answer and rechecks before giving up. */
export interface ProbeOptions {
  /** How long to wait for any inbound frame after a PING. */
  pongTimeoutMs: number;
  /** Quick probes sent after a missed PONG before declaring the link dead. */
  probeCount: number;
  /** Wait after each quick probe. */
  probeIntervalMs: number;
}

export const DEFAULT_POLICY: HeartbeatPolicy = {
  intervalMs: 25_000,
  minIntervalMs: 5_000,
  maxIntervalMs: 600_000,
  missBudget: 2,
  graceMs: 5_000,
  allowServerDirection: true,
};

export const DEFAULT_PROBES: ProbeOptions = {
  pongTimeoutMs: 5_000,
  probeCount: 2,
  probeIntervalMs: 2_000,
};

export function resolvePolicy(p: Partial<HeartbeatPolicy> = {}): HeartbeatPolicy {
  const policy = { ...DEFAULT_POLICY, ...dropUndefined(p) };
  const problem = policyProblem(policy);
  if (problem) throw new LonglinkError('LL_ERR_INVALID_OPTION', `heartbeat: ${problem}`);
  return policy;
}

/** The longest delay a timer takes (2^31 − 1 ms, about 24.8 days); a longer one fires at once, again and again. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * What is wrong with a heartbeat policy or grant, if anything: the gateway
 * checks its options with it, and the client the grant in a WELCOME (a
 * broken or hostile gateway must not make it arm a timer that overflows).
 */
export function policyProblem(p: Pick<HeartbeatPolicy, 'intervalMs' | 'minIntervalMs' | 'maxIntervalMs' | 'missBudget' | 'graceMs'>): string | null {
  const { intervalMs, minIntervalMs, maxIntervalMs, missBudget, graceMs } = p;
  // Whole milliseconds: they go into WELCOME as varints, whose encoder throws on a fraction.
  for (const [k, v] of [['minIntervalMs', minIntervalMs], ['intervalMs', intervalMs], ['maxIntervalMs', maxIntervalMs]] as const) {
    if (typeof v === 'number' && Number.isFinite(v) && !Number.isInteger(v)) return `${k} must be an integer (got ${v})`;
  }
  if (!(minIntervalMs > 0 && minIntervalMs <= intervalMs && intervalMs <= maxIntervalMs)) return `needs 0 < minIntervalMs <= intervalMs <= maxIntervalMs (got ${minIntervalMs}, ${intervalMs}, ${maxIntervalMs})`;
  if (!(Number.isInteger(missBudget) && missBudget >= 1)) return `missBudget must be an integer >= 1 (got ${missBudget})`;
  if (!(Number.isInteger(graceMs) && graceMs >= 0)) return `graceMs must be an integer >= 0 (got ${graceMs})`;
  if (!Number.isFinite(maxIntervalMs) || maxIntervalMs * missBudget + graceMs > MAX_TIMER_MS) return `maxIntervalMs × missBudget + graceMs must fit a timer (${MAX_TIMER_MS} ms; got ${maxIntervalMs * missBudget + graceMs})`;
  return null;
}

export function resolveProbes(p: Partial<ProbeOptions> = {}): ProbeOptions {
  const probes = { ...DEFAULT_PROBES, ...dropUndefined(p) };
  // Each wait is one timer: above MAX_TIMER_MS Node fires it after 1 ms, and the scheduler, not yet
  // due, re-arms it (a 1 ms loop); Infinity arms none, and the link's heartbeat stops for good.
  const wait = (v: number) => v > 0 && v <= MAX_TIMER_MS;
  if (!(wait(probes.pongTimeoutMs) && wait(probes.probeIntervalMs) && Number.isInteger(probes.probeCount) && probes.probeCount >= 0)) {
    throw new LonglinkError(
      'LL_ERR_INVALID_OPTION',
      `pongTimeoutMs and probeIntervalMs must be from 1 to ${MAX_TIMER_MS} ms, probeCount a whole number >= 0 (got ${probes.pongTimeoutMs}, ${probes.probeIntervalMs}, ${probes.probeCount})`,
    );
  }
  return probes;
}

/** Rounds and clamps a wished interval to the range; absent or 0 means the default. Also used by the client, on its grant. */
export function clampInterval(policy: Pick<HeartbeatPolicy, 'intervalMs' | 'minIntervalMs' | 'maxIntervalMs'>, ms: number | undefined): number {
  // Rounded last: the result goes into WELCOME as a varint (a fraction would throw there).
  if (ms === undefined || !(ms > 0)) return Math.round(policy.intervalMs);
  return Math.round(Math.min(policy.maxIntervalMs, Math.max(policy.minIntervalMs, ms)));
}

/** Who sends the heartbeats: the server only when the client asks and the policy allows it. */
export function grantedDirection(policy: Pick<HeartbeatPolicy, 'allowServerDirection'>, asked: HeartbeatDirection | undefined): HeartbeatDirection {
  return asked === 'server' && policy.allowServerDirection ? 'server' : 'client';
}

/** The grant a server answers a HELLO with. */
export function negotiate(policy: HeartbeatPolicy, hello: Pick<HelloFrame, 'direction' | 'intervalMs'>): HeartbeatGrant {
  const direction = grantedDirection(policy, hello.direction);
  return {
    intervalMs: clampInterval(policy, hello.intervalMs),
    minIntervalMs: policy.minIntervalMs,
    maxIntervalMs: policy.maxIntervalMs,
    missBudget: policy.missBudget,
    graceMs: policy.graceMs,
    direction,
  };
}

export function silenceLimitMs(g: Pick<HeartbeatGrant, 'intervalMs' | 'missBudget' | 'graceMs'>): number {
  return g.intervalMs * g.missBudget + g.graceMs;
}

export function suspectAfterMs(g: Pick<HeartbeatGrant, 'intervalMs' | 'graceMs'>): number {
  return g.intervalMs + g.graceMs;
}

export function activeDetectionMs(intervalMs: number, p: ProbeOptions): number {
  return intervalMs + p.pongTimeoutMs + p.probeCount * p.probeIntervalMs;
}

export function dropUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
