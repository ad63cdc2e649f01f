/** A seeded PRNG (mulberry32): the same seed gives the same run, on any machine. */
export { seededRandom as mulberry32 } from '../core/backoff.js';

/** Exponential with the given mean, from a uniform source. */
export const exponential = (rand: () => number, mean: number) => (mean > 0 ? -mean * Math.log(1 - rand()) : 0);
