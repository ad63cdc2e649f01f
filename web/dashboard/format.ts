/**
 * Number, duration and clock formatting. A fixed locale so the page reads the
 * same everywhere (and tests see "1,234", not "1 234" or "1.234").
 */

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

export const DASH = '—';

export function fmtInt(n: number | null | undefined): string {
  return n == null || !Number.isFinite(n) ? DASH : intFmt.format(n);
}

/** A latency: sub-10 ms values keep a decimal (loopback RTTs are fractions of a ms). */
export function fmtMs(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  return `${ms < 10 ? oneDecimal.format(ms) : intFmt.format(ms)} ms`;
}

/** A span of time in the largest unit that keeps it short: 850 ms, 2.5 s, 25 s, 3m 4s, 2h 5m, 3d 4h. */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${intFmt.format(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${oneDecimal.format(s)} s`;
  const total = Math.floor(s);
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  return sec > 0 ? `${m}m ${sec}s` : `${m} min`;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** Wall-clock time of day, 24 h, local zone; seconds unless asked not to. */
export function fmtClock(t: number, seconds = true): string {
  const d = new Date(t);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return seconds ? `${hm}:${pad(d.getSeconds())}` : hm;
}

/** A bucket bound for the RTT histogram's axis: 0.5, 20, 1s, 2.5s; a missing or infinite bound is the overflow bucket. */
export function fmtBound(le: number | null): string {
  if (le == null || !Number.isFinite(le)) return '∞';
  return le >= 1000 ? `${oneDecimal.format(le / 1000)}s` : oneDecimal.format(le);
}

/** `a=1 b=2`, keys sorted so rows don't reshuffle between polls. */
export function fmtKv(rec: Record<string, string> | null | undefined): string {
  if (!rec) return '';
  return Object.keys(rec)
    .sort()
    .map((k) => `${k}=${rec[k]}`)
    .join(' ');
}
