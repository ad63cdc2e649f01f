/**
 * Well-formed Unicode: no lone UTF-16 surrogate. JSON from a backend
 * ("\ud800") or a JWT can carry one; UTF-8 cannot, so such a string does not
 * survive a trip through bytes, and Redis's cjson refuses to read it back (a
 * mailbox or presence entry holding one could never be read again). Ids are
 * refused at the edges; free-form data (clientInfo) has them replaced.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g');

export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** `v` with every lone surrogate in its strings and keys replaced by U+FFFD (as UTF-8 encoding would). */
export function toWellFormed<T>(v: T): T {
  if (typeof v === 'string') return (isWellFormed(v) ? v : v.replace(LONE_SURROGATES, '\uFFFD')) as T;
  if (Array.isArray(v)) return v.map(toWellFormed) as T;
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, toWellFormed(k), { value: toWellFormed(x), enumerable: true, writable: true, configurable: true });
    return out as T;
  }
  return v;
}
