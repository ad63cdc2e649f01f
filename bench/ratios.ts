/**
 * Ratios to a floor, taken within a round: on a shared machine the floor
 * itself drifts between rounds (19.7, 14.1 and 14.5 µs in one run), so
 * dividing the median of one side's runs by the median of the floor's, taken
 * from different rounds, reports a ratio no single round showed.
 */
export interface RoundRatio {
  median: number;
  min: number;
  max: number;
  perRound: number[];
}

export function median(xs: readonly (number | null | undefined)[]): number | null {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = v.length >> 1;
  // An even count: the mean of the two middle values (the lower one was the best of two rounds).
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** For each round with both figures, `value(peer) / value(floor)`; the median of those and their range. */
export function roundRatios<R extends { round: number }>(runs: readonly R[], isPeer: (r: R) => boolean, isFloor: (r: R) => boolean, value: (r: R) => number | null): RoundRatio | null {
  const rounds = [...new Set(runs.map((r) => r.round))].sort((a, b) => a - b);
  const perRound: number[] = [];
  for (const round of rounds) {
    const a = runs.find((r) => r.round === round && isPeer(r));
    const f = runs.find((r) => r.round === round && isFloor(r));
    const av = a ? value(a) : null;
    const fv = f ? value(f) : null;
    if (typeof av === 'number' && typeof fv === 'number' && Number.isFinite(av) && fv > 0) perRound.push(av / fv);
  }
  if (!perRound.length) return null;
  return { median: median(perRound)!, min: Math.min(...perRound), max: Math.max(...perRound), perRound };
}
