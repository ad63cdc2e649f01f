/** A seeded PRNG (mulberry32): the same seed gives the same run, on any machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Exponential with the given mean, from a uniform source. */
export const exponential = (rand: () => number, mean: number) => (mean > 0 ? -mean * Math.log(1 - rand()) : 0);
