/**
 * A detector configured from the quality asked for, after Chen, Toueg and
 * Aguilera (2002, section 5, with the delay distribution known): given a
 * detection time T_D and a false-suspicion rate, the longest heartbeat
 * interval (the fewest heartbeats an hour) for which the freshness detector
 * meets both on a network with loss probability p and heartbeat lateness L.
 *
 * The freshness detector expects heartbeat l+1 at EA = its slot plus the
 * mean delay, and convicts at τ = EA + lateMs. With the peer alive that is a
 * mistake when none of the heartbeats sent before τ has arrived by then. The
 * j-th of them was sent j intervals after the slot. On a stream transport
 * (TCP, WebSocket) a heartbeat cannot overtake the one before, so none has
 * arrived exactly when the first that was not lost is later than τ, and
 *
 *   P(mistake at τ) = Σ_j p^j·(1 − p)·Pr(L > lateMs − j·η),   j = 0, 1, … (Pr = 1 once lateMs − jη < 0)
 *
 * (Chen et al.'s product over j, Π_j [p + (1 − p)·Pr(L > lateMs − j·η)],
 * takes each heartbeat's delay as independent, as over UDP; where a single
 * late heartbeat can outlast lateMs, that put the rate thousands of times too
 * low, since the heartbeats behind it wait with it. Where only losses
 * matter the two agree.)
 *
 * There is one freshness point per interval, so mistakes recur every
 * η / P(mistake) on average. A peer that crashes right after sending is
 * convicted η + E(D) + lateMs after that send, so for T_D the detector gets
 * lateMs = T_D − η − E(D), less two margins of longlink's detector: its
 * estimate of E(D) is a mean over 32 heartbeats (four of its standard errors
 * off), and after a heartbeat far later than its slot it expects the next
 * one no sooner than an interval after that one (a late send moves the
 * client's lattice), so where that happens more than once in a thousand
 * heartbeats the 99.9th percentile of T_D carries the lateness's own. A
 * heartbeat over half an interval late is taken for one after a loss until
 * the next arrives (its deadline an interval late meanwhile): where more than
 * one in a thousand is, T_D carries an interval, and where that is common
 * (HALF_LATE_LOST) the lattice is lost and the interval not used. The
 * search goes down from the longest interval the policy allows and takes the
 * first that meets the rate.
 *
 * L, measured by the gateway, is the lateness of a heartbeat against the
 * previous one's arrival plus one interval (D_i − D_{i−1} plus the client's
 * timer error), not against the mean delay (D − E(D), which the gateway
 * cannot see without synchronised clocks); its tail is the longer of the
 * two, so the rate computed is an overestimate and the interval chosen a
 * little short, never long. The simulation checks the result.
 *
 * The silence detector is computed the same way: convicted S after the
 * last arrival, so its T_D (at the 99.9th percentile) is S + E(D) + L_p99.9,
 * and a mistake after a heartbeat needs each later one j to be later than
 * S − j·η against it (an estimate that errs low: see TuneTarget.detectors).
 */

export interface NetworkModel {
  /** Chance a heartbeat never arrives. */
  lossRate: number;
  /** Mean one-way delay (about half the RTT): part of the detection time. */
  delayMeanMs: number;
  /** Pr(lateness > x ms). */
  lateSurvival(xMs: number): number;
  /** The lateness (ms) exceeded once in a thousand heartbeats, and its standard deviation. */
  lateP999Ms: number;
  lateStdMs: number;
  /** Where the figures came from, for the report. */
  source: string;
  /** Heartbeats the figures rest on (0: a model, not a measurement). */
  heartbeats: number;
}

export interface TuneTarget {
  /** T_D: a crashed peer is convicted within this long of its last heartbeat. */
  detectWithinMs: number;
  /** At most this many false suspicions per connection per month (30 days). */
  falseSuspicionsPerMonth: number;
  /** The intervals the policy allows (clients are clamped into them). */
  minIntervalMs?: number;
  maxIntervalMs?: number;
  /**
   * Detectors to choose from (default: freshness only). The silence
   * detector's rate is an estimate that errs low: its deadlines all count
   * from one arrival, so when that one came early every later heartbeat
   * looks late together, which the product over heartbeats leaves out (the
   * simulation shows it; docs/LAB.md). It is reported beside freshness,
   * and chosen only when asked for.
   */
  detectors?: TunedDetector[];
}

export type TunedDetector = 'freshness' | 'silence';

export interface TunedPolicy {
  ok: true;
  /** The detector chosen (of those asked, the one that allows the longest interval). */
  detector: TunedDetector;
  intervalMs: number;
  /**
   * How long after the due time (freshness: lateMs) or after the last
   * heartbeat (silence: the silence limit) the peer is convicted. With
   * missBudget and graceMs below, interval × missBudget + grace is
   * interval + lateMs (freshness's default lateMs) or the silence limit.
   */
  lateMs: number;
  missBudget: number;
  graceMs: number;
  heartbeatsPerHour: number;
  /** What the model expects at this setting. */
  falseSuspicionsPerMonth: number;
  detectWithinMs: number;
  /** The other detector at the same interval and T_D, for comparison (null when it has no room there). */
  other: { detector: TunedDetector; falseSuspicionsPerMonth: number } | null;
}

export interface Untunable {
  ok: false;
  /** Why no interval the policy allows meets the target. */
  reason: string;
  /** The lowest rate reachable at this T_D, and where. */
  best: { intervalMs: number; falseSuspicionsPerMonth: number } | null;
  /** The shortest T_D (within 10× the one asked) at which the rate is met, if any. */
  detectWithinMsNeeded: number | null;
}

export type TuneResult = TunedPolicy | Untunable;

const MONTH_MS = 30 * 24 * 3600_000;
/**
 * Above this share of heartbeats over half an interval late the freshness
 * detector's lattice does not hold (in the simulation: T_D p99.9 40 s for a
 * 30 s target at 1.3 s heartbeats with 2 s of exponential jitter, a third
 * of them that late); up to it (4% at 5.1 s with 1 s of jitter) it does.
 */
const HALF_LATE_LOST = 0.05;
/** Intervals are searched on this grid (ms). */
const STEP_MS = 10;

/** The freshness detector's lateMs for detection within `td` at interval `eta` (see above); ≤ 0 when there is no room. */
export function freshnessLateMs(td: number, eta: number, net: NetworkModel): number {
  const stdC = net.lateStdMs / Math.SQRT2;
  let lateMs = td - eta - net.delayMeanMs - (4 * stdC) / Math.sqrt(32);
  // A heartbeat more than half an interval late lands nearer the next slot and is taken for one that
  // followed a loss until the next arrives; meanwhile the deadline is an interval later. Where that
  // happens more than once in a thousand heartbeats the 99.9th percentile of T_D carries it; where it
  // is common (a jitter near the interval) the lattice itself is lost: no room.
  const halfLate = net.lateSurvival(eta / 2);
  if (halfLate > HALF_LATE_LOST) return 0;
  if (halfLate > 0.001) lateMs -= eta;
  // "Far" as FreshnessDetector.farMs has it, with its deviation (a mean |C|) about 0.8 σ_C.
  const far = Math.max(eta / 50, 4 * 0.8 * stdC, (lateMs - eta) / 2);
  if (net.lateSurvival(far) > 0.001) lateMs -= net.lateP999Ms;
  return lateMs;
}

/** Expected false suspicions per connection-month of the freshness detector at (interval, lateMs). */
export function freshnessMistakesPerMonth(intervalMs: number, lateMs: number, net: NetworkModel): number {
  return (firstArrivalLate(lateMs, intervalMs, 0, net) * MONTH_MS) / intervalMs;
}

/** The same for the silence detector convicting `silenceMs` after the last heartbeat heard. */
export function silenceMistakesPerMonth(intervalMs: number, silenceMs: number, net: NetworkModel): number {
  return (firstArrivalLate(silenceMs, intervalMs, 1, net) * MONTH_MS) / intervalMs;
}

/**
 * Pr(the first heartbeat not lost, of those sent `from`, `from` + 1, …
 * intervals on, is later than `slackMs` − its offset): on an ordered stream,
 * that nothing has arrived by then (see the top of this file).
 */
function firstArrivalLate(slackMs: number, intervalMs: number, from: number, net: NetworkModel): number {
  const p = net.lossRate;
  let allLost = 1;
  let miss = 0;
  for (let j = from; ; j++) {
    const x = slackMs - j * intervalMs;
    // Sent after the deadline less its delay: it cannot arrive in time, nor can any after it.
    if (x < 0) return Math.min(1, miss + allLost);
    miss += allLost * (1 - p) * Math.min(1, net.lateSurvival(x));
    allLost *= p;
    if (allLost === 0) return Math.min(1, miss);
  }
}

/** Where the silence detector convicts for detection within `td` (T_D p99.9 = S + E(D) + the lateness's p99.9). */
export function silenceLimitMs(td: number, net: NetworkModel): number {
  return td - net.delayMeanMs - net.lateP999Ms;
}

/** The knob and the expected rate of one detector at interval `eta` for T_D `td` (null: no room). */
function evaluate(d: TunedDetector, td: number, eta: number, net: NetworkModel): { knobMs: number; perMonth: number } | null {
  if (d === 'freshness') {
    const lateMs = freshnessLateMs(td, eta, net);
    return lateMs > 0 ? { knobMs: lateMs, perMonth: freshnessMistakesPerMonth(eta, lateMs, net) } : null;
  }
  const s = silenceLimitMs(td, net);
  return s > eta ? { knobMs: s, perMonth: silenceMistakesPerMonth(eta, s, net) } : null;
}

/**
 * The policy with the fewest heartbeats an hour that meets the target on
 * this network: for each detector asked (freshness by default), the longest
 * interval that meets it, and of those the longest; or why none does.
 */
export function tuneDetector(target: TuneTarget, net: NetworkModel): TuneResult {
  const td = target.detectWithinMs;
  const rate = target.falseSuspicionsPerMonth;
  if (!(td > 0) || !(rate > 0)) throw new RangeError('detectWithinMs and falseSuspicionsPerMonth must be positive');
  const lo = Math.max(STEP_MS, target.minIntervalMs ?? STEP_MS);
  const maxI = target.maxIntervalMs ?? Infinity;
  const found = (target.detectors ?? ['freshness']).map((d) => ({ d, ...search(d, td, rate, lo, maxI, net, STEP_MS) }));
  const met = found.filter((f) => f.met).sort((a, b) => b.met!.intervalMs - a.met!.intervalMs)[0];
  if (met) return policy(met.d, met.met!.intervalMs, td, net);
  // None: say what the network allows, and what T_D would do (feasibility only grows with T_D: bisect, to 0.5 %).
  const feasible = (t: number) => found.some((f) => search(f.d, t, rate, lo, maxI, net, 10 * STEP_MS).met);
  let needed: number | null = null;
  if (feasible(10 * td)) {
    let [a, b] = [td, 10 * td];
    while (b - a > td / 200) {
      const m = (a + b) / 2;
      if (feasible(m)) b = m;
      else a = m;
    }
    needed = Math.ceil(b / 100) * 100;
  }
  const hi = Math.min(maxI, td - net.delayMeanMs - 1);
  const best = found.map((f) => f.best).filter((b): b is Point => b !== null).sort((a, b) => a.falseSuspicionsPerMonth - b.falseSuspicionsPerMonth)[0] ?? null;
  const why =
    hi < lo
      ? `a detection time of ${fmt(td)} leaves no interval within the policy's ${fmt(lo)} to ${fmt(maxI)} once the mean delay (${fmt(net.delayMeanMs)}) is taken off`
      : best
        ? `at ${fmt(td)} the fewest false suspicions reachable with intervals of ${fmt(lo)} to ${fmt(hi)} are ${fmtRate(best.falseSuspicionsPerMonth)} a month (at ${fmt(best.intervalMs)}), above the ${fmtRate(rate)} asked: with ${pct(net.lossRate)} of heartbeats lost and lateness up to ${fmt(net.lateP999Ms)} (p99.9), too many in a row are lost or late`
        : `no interval between ${fmt(lo)} and ${fmt(hi)} leaves time to wait for a late heartbeat (or is long enough, against a lateness of up to ${fmt(net.lateP999Ms)} (p99.9), for heartbeats to keep to their slots)`;
  return { ok: false, reason: why, best, detectWithinMsNeeded: needed };
}

/** Down from the longest interval: the first that meets the rate at this T_D, and the lowest rate seen. */
function search(d: TunedDetector, td: number, rate: number, lo: number, maxI: number, net: NetworkModel, step: number): { met: Point | null; best: Point | null } {
  const hi = Math.min(maxI, td - net.delayMeanMs - 1);
  let best: Point | null = null;
  for (let eta = Math.floor(hi / step) * step; eta >= lo; eta -= step) {
    const e = evaluate(d, td, eta, net);
    if (!e) continue;
    const p = { intervalMs: eta, falseSuspicionsPerMonth: e.perMonth };
    if (!best || e.perMonth < best.falseSuspicionsPerMonth) best = p;
    if (e.perMonth <= rate) return { met: p, best };
  }
  return { met: null, best };
}

interface Point {
  intervalMs: number;
  falseSuspicionsPerMonth: number;
}

function policy(d: TunedDetector, eta: number, td: number, net: NetworkModel): TunedPolicy {
  const e = evaluate(d, td, eta, net)!;
  // missBudget and grace so that interval × missBudget + grace is interval + lateMs (freshness) or the silence limit.
  // Any split gives that bound, but grace is also where the gateway suspects an overdue heartbeat and
  // probes (the detectors' suspicion point defaults to it), and the client's answer restarts the
  // freshness detector's lattice (the client counts its next heartbeat from it). The largest budget
  // whose grace is still the lateness's p99.9 keeps that to one heartbeat in a thousand; the
  // smallest remainder (a few ms) made every heartbeat a few ms late a probe (a fifth of them at
  // 100 ms of jitter), with its round trip and a lattice learned again.
  const bound = d === 'freshness' ? eta + e.knobMs : e.knobMs;
  const missBudget = Math.max(1, Math.floor((bound - net.lateP999Ms) / eta));
  const graceMs = Math.round(bound - missBudget * eta);
  const otherD = d === 'freshness' ? 'silence' : 'freshness';
  const other = evaluate(otherD, td, eta, net);
  return {
    ok: true,
    detector: d,
    intervalMs: eta,
    lateMs: Math.round(e.knobMs),
    missBudget,
    graceMs,
    heartbeatsPerHour: 3_600_000 / eta,
    falseSuspicionsPerMonth: e.perMonth,
    detectWithinMs: td,
    other: other ? { detector: otherD, falseSuspicionsPerMonth: other.perMonth } : null,
  };
}

const fmt = (ms: number) => (ms >= 1000 ? `${+(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);
const pct = (x: number) => `${+(x * 100).toFixed(3)}%`;
export const fmtRate = (x: number) => (x >= 10 ? x.toFixed(0) : x >= 0.01 ? x.toPrecision(2) : x.toExponential(1));
