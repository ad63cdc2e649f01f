import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { LonglinkError } from '../../protocol/errors.js';

/**
 * One way to reach Redis for the store and the stream sink: a single server
 * (`redis://host:port`) or a Redis Cluster (`cluster: true`, the URL listing
 * one or more seed nodes, comma-separated). Both are handed out as the
 * commander they share: every command longlink sends to a cluster names keys
 * of one slot (hash tags), so the same calls serve both.
 */
export interface RedisTarget {
  /** redis://[user:pass@]host:port; for a cluster, seeds separated by commas. */
  url: string;
  cluster?: boolean;
}

type IoredisModule = { Redis: typeof Redis; Cluster: typeof Cluster };

/**
 * ioredis is an optional peer dependency: loaded when something needs it
 * (`who`: a RedisStore, the stream sink), with an error that says so.
 */
export function loadIoredisModule(who = 'RedisStore'): IoredisModule {
  try {
    return createRequire(import.meta.url)('ioredis') as IoredisModule;
  } catch (err) {
    throw new LonglinkError('LL_ERR_MISSING_DEPENDENCY', `${who} needs the ioredis package (npm install ioredis): ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

export function loadIoredis(who = 'RedisStore'): typeof Redis {
  return loadIoredisModule(who).Redis;
}

/** The URL(s) without passwords or query values, for messages and log lines. */
export function redactUrl(url: string): string {
  return url
    .split(',')
    .map((one) => {
      try {
        const u = new URL(one.trim());
        if (u.password) u.password = '***';
        // A webhook's key is as often in its query (?key=...) as in its userinfo.
        for (const k of new Set(u.searchParams.keys())) u.searchParams.set(k, '***');
        return u.toString();
      } catch {
        return one;
      }
    })
    .join(',');
}

/** Seeds of a cluster URL list, with the credentials and TLS of the first. */
export function clusterSeeds(url: string): { nodes: { host: string; port: number }[]; redisOptions: RedisOptions } {
  const urls = url.split(',').map((s) => s.trim()).filter(Boolean);
  if (urls.length === 0) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'a Redis Cluster needs at least one seed URL');
  const nodes = urls.map((s) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', `not a Redis URL: ${redactUrl(s)}`);
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new LonglinkError('LL_ERR_INVALID_OPTION', `not a Redis URL (redis:// or rediss://): ${redactUrl(s)}`);
    return { host: u.hostname, port: Number(u.port || 6379) };
  });
  const first = new URL(urls[0]);
  const redisOptions: RedisOptions = {
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  return { nodes, redisOptions };
}

/**
 * A connection (single server) or a cluster client. Typed as `Redis`, the
 * commander both share; what only one of them has is reached through
 * `isCluster`.
 */
export function connectRedis(target: RedisTarget, who: string, opts: { maxRetriesPerRequest: number; commandTimeout?: number }): Redis {
  const io = loadIoredisModule(who);
  // A command with no answer in commandTimeout fails (a server that stopped answering without a reset).
  const timeout = opts.commandTimeout !== undefined ? { commandTimeout: opts.commandTimeout } : {};
  if (!target.cluster) return new io.Redis(target.url, { maxRetriesPerRequest: opts.maxRetriesPerRequest, enableAutoPipelining: true, reconnectOnError: readOnlyReconnects, ...timeout });
  const { nodes, redisOptions } = clusterSeeds(target.url);
  const options: ClusterOptions = {
    redisOptions: { ...redisOptions, maxRetriesPerRequest: opts.maxRetriesPerRequest, ...timeout },
    enableAutoPipelining: true,
    // A failover takes the cluster's node timeout and an election; commands wait for it
    // (bounded by maxRedirections) instead of failing at the first MOVED or CLUSTERDOWN.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    maxRedirections: 32,
    slotsRefreshInterval: 2000,
  };
  return new io.Cluster(nodes, options) as unknown as Redis;
}

/**
 * READONLY: the server behind the URL is a replica now (a failover behind a name that moved to
 * the new master: a managed Redis's primary endpoint, a VIP, Sentinel-less DNS). The open
 * connection stays with the old master, and every write failed on it for ever. Reconnect (the
 * name resolves anew); the refused command still fails, and its caller retries it as after any
 * store error (not resent here: an XADD resent alone would land behind the WAIT that follows
 * it in the sink's pipeline, and the WAIT would vouch for nothing).
 */
export function readOnlyReconnects(err: Error): 1 | false {
  return err.message.startsWith('READONLY') ? 1 : false;
}

export function isCluster(r: Redis): r is Redis & Cluster {
  return (r as unknown as { isCluster?: boolean }).isCluster === true;
}

/** How long the eviction check waits for a cluster client to know its masters; past it, none is checked. */
const CLUSTER_READY_WAIT_MS = 10_000;

/**
 * The first master (of one Redis, or of every master of a cluster) whose
 * maxmemory-policy is not noeviction, or null. Under another policy a full
 * Redis deletes keys, and with them what the gateway said it had stored.
 * Null too for a Redis that does not let its configuration be read (a
 * managed service that renames CONFIG, an ACL without it): not knowable.
 */
export async function evictingServer(redis: Redis): Promise<{ policy: string; where: string } | null> {
  const cluster = isCluster(redis) ? (redis as unknown as Cluster) : null;
  // A cluster client knows its masters only once it has read the slot map: until then it lists none.
  // (AbortSignal.timeout's timer does not keep a gateway closed meanwhile alive.)
  if (cluster !== null && cluster.status !== 'ready') await once(cluster, 'ready', { signal: AbortSignal.timeout(CLUSTER_READY_WAIT_MS) }).catch(() => {});
  const servers = cluster !== null ? cluster.nodes('master') : [redis];
  for (const server of servers) {
    let policy: unknown;
    try {
      policy = ((await server.config('GET', 'maxmemory-policy')) as unknown[])[1];
    } catch {
      return null;
    }
    if (typeof policy === 'string' && policy !== 'noeviction') return { policy, where: `${server.options.host ?? 'localhost'}:${server.options.port ?? 6379}` };
  }
  return null;
}

/** The fault for evictingServer's answer: what is at stake is the caller's (`holding`). */
export function evictionError(found: { policy: string; where: string }, holding: string): LonglinkError {
  return new LonglinkError(
    'LL_ERR_STORE_EVICTS',
    `Redis at ${found.where} has maxmemory-policy ${found.policy}: when full it deletes keys, and with them ${holding}; set maxmemory-policy noeviction (writes then fail when it is full, and are retried or reported)`,
  );
}
