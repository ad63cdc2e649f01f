import { PerformanceObserver, constants } from 'node:perf_hooks';

/** Garbage-collection pauses of this process since the first gateway in it started watching. */
export interface GcStats {
  /** Pauses seen, and their total. */
  count: number;
  totalMs: number;
  /** The longest single pause, and its kind (`minor`, `major`, `incremental`, `weak`). */
  longestMs: number;
  longestKind: string;
}

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
};

const stats: GcStats = { count: 0, totalMs: 0, longestMs: 0, longestKind: '' };
let observer: PerformanceObserver | null = null;

/**
 * Starts watching (once per process: GC is the process's, however many
 * gateways it runs). A pause stops every connection's timers and reads at
 * once, so the longest one is what a detector's grace has to cover.
 */
export function watchGc(): void {
  if (observer) return;
  observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = KINDS[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
      stats.count++;
      stats.totalMs += e.duration;
      if (e.duration > stats.longestMs) {
        stats.longestMs = e.duration;
        stats.longestKind = kind;
      }
    }
  });
  observer.observe({ entryTypes: ['gc'] });
}

export function gcStats(): GcStats {
  return { ...stats, totalMs: Math.round(stats.totalMs * 100) / 100, longestMs: Math.round(stats.longestMs * 100) / 100 };
}
