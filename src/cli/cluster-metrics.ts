import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';

/** prom-client's own IPC messages: each worker answers them (an AggregatorRegistry made in the worker). */
const REQ = 'prom-client:getMetricsReq';
const RES = 'prom-client:getMetricsRes';

/**
 * Longest a scrape of the primary waits for a worker's metrics. A worker that
 * has not answered by then (its event loop blocked, a GC storm) is left out
 * of that scrape and counted in `longlink_cluster_workers_unanswered`.
 */
export const CLUSTER_METRICS_DEADLINE_MS = 3000;

interface Scrape {
  waiting: Set<number>;
  /** One entry per registry of each worker that answered (getMetricsAsJSON of each). */
  got: object[];
  /** Workers that answered with an error instead of metrics. */
  failed: number;
  finish: () => void;
}

/**
 * The cluster's metrics on the primary: every ready worker's registries,
 * summed (prom-client's aggregation), from the workers that answer within the
 * deadline. prom-client's own `clusterMetrics()` asked every worker, ready or
 * not, and failed the whole scrape (503 after 5 s) when one did not answer:
 * one hung or still-starting worker took every worker's metrics away, the
 * moment they were wanted most. Its timed-out requests also stayed in its
 * map for good, the other workers' answers with them.
 */
export class ClusterMetrics {
  private next = 0;
  private readonly scrapes = new Map<number, Scrape>();

  constructor(
    /** The workers that have listened (their AggregatorRegistry is made by then). */
    private readonly ready: () => Worker[],
    private readonly deadlineMs = CLUSTER_METRICS_DEADLINE_MS,
  ) {
    cluster.on('message', (w: Worker, m: { type?: string; requestId?: number; metrics?: object[]; error?: string }) => {
      if (m?.type !== RES || typeof m.requestId !== 'number') return;
      const s = this.scrapes.get(m.requestId);
      if (!s || !s.waiting.delete(w.id)) return;
      if (Array.isArray(m.metrics)) s.got.push(...m.metrics);
      else s.failed++;
      if (s.waiting.size === 0) s.finish();
    });
  }

  get contentType(): string {
    return AggregatorRegistry.PROMETHEUS_CONTENT_TYPE;
  }

  /** The summed text, and how many ready workers gave nothing to it. */
  async text(): Promise<string> {
    const requestId = this.next++;
    const s: Scrape = { waiting: new Set(), got: [], failed: 0, finish: () => {} };
    const done = new Promise<void>((resolve) => (s.finish = resolve));
    this.scrapes.set(requestId, s);
    for (const w of this.ready()) {
      if (!w.isConnected()) continue;
      s.waiting.add(w.id);
      w.send({ type: REQ, requestId });
    }
    let timer: NodeJS.Timeout | undefined;
    if (s.waiting.size > 0) await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.deadlineMs)))]);
    clearTimeout(timer);
    this.scrapes.delete(requestId);
    const unanswered = s.waiting.size + s.failed;
    const summed = s.got.length > 0 ? await AggregatorRegistry.aggregate(s.got).metrics() : '';
    return (
      summed +
      '# HELP longlink_cluster_workers_unanswered Workers that gave no metrics to this scrape within its deadline (hung, busy past it, or failing): what is above leaves them out.\n' +
      '# TYPE longlink_cluster_workers_unanswered gauge\n' +
      `longlink_cluster_workers_unanswered ${unanswered}\n`
    );
  }
}
