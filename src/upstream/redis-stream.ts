import type { Redis } from 'ioredis';
import { MAX_TIMER_MS } from '../core/heartbeat-policy.js';
import { LonglinkError } from '../protocol/errors.js';
import type { UpstreamEvent, UpstreamMessage, UpstreamSink } from '../gateway/upstream.js';
import { connectRedis, evictingServer, evictionError } from '../gateway/stores/redis-connect.js';

export interface StreamSinkOptions {
  /** redis://host:port (ioredis, an optional peer dependency); with `cluster`, seed nodes separated by commas. */
  url: string;
  /** A Redis Cluster: the stream is one key, so one slot, served by its master and moved with it on failover. */
  cluster?: boolean;
  /** The stream backends read with XREADGROUP. */
  stream?: string;
  /**
   * Trim the stream to about this many entries (XADD MAXLEN ~); 0 (the
   * default) keeps everything. Trimming drops the oldest entries whether a
   * consumer group has read them or not, and a device's message is
   * acknowledged once XADD succeeded: set it only above what the workers
   * can fall behind by. Untrimmed, the stream grows until Redis's
   * `maxmemory`; with `noeviction` XADD then fails and devices keep their
   * messages (nothing acknowledged is lost). Workers trim what their group
   * has processed with XTRIM MINID.
   */
  maxLen?: number;
  /**
   * Replicas that must hold an entry before the device's message is
   * acknowledged (WAIT); 0 does not wait. An entry written but not
   * replicated in time is waited for again at the retry, and written again
   * only if it is gone (a failover lost it): the backend dedups by `id`.
   */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  /**
   * Longest an XADD (with its WAIT) may go unanswered before it fails and is
   * retried, as the webhook's deadline (default 10,000 ms): a Redis that stops
   * answering without resetting the connection (a host gone, a partition)
   * would otherwise hold every device's messages until the kernel gave up
   * on the connection, a quarter of an hour.
   */
  timeoutMs?: number;
}

/**
 * The Redis Streams sink: each message is one XADD to a stream that any
 * number of backend workers, in any language, share through a consumer group
 * (XREADGROUP, XACK; a crashed worker's pending entries are claimed by
 * another). A message is acknowledged to the device once XADD succeeded.
 * Fields: type, user, device, connection, session, id, seq, payload (base64),
 * received_at.
 */
/** No trimming by default: trimming by length can drop entries no worker has read. */
export const STREAM_MAXLEN_DEFAULT = 0;

/**
 * A retry of an entry written before whose replication was not seen: if the entry is still there
 * (ARGV[1]), a write that changes nothing (XSETID to the stream's own last id), so that this
 * connection's WAIT covers it (WAIT counts replicas that have this connection's last write, and a
 * reconnected connection has written nothing); if it is gone (a failover to a replica that never got
 * it, a trim), written again (ARGV[2..], XADD's arguments after the key).
 */
const REWRITE_IF_GONE = `
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then redis.call('XSETID', KEYS[1], info[i + 1]) end
  end
  return ARGV[1]
end
return redis.call('XADD', KEYS[1], unpack(ARGV, 2))`;

export function streamSink(o: StreamSinkOptions): UpstreamSink & { readonly redis: Redis } {
  const waitMs = o.waitTimeoutMs ?? 1000;
  // ioredis arms the deadline as one timer per command: past MAX_TIMER_MS (or NaN) Node fires it
  // after 1 ms, and every XADD failed at once. WAIT's own timeout is a second inside it.
  // Whole ms from 1: Redis refuses a fractional WAIT timeout (every XADD failed), and reads 0 as "until
  // the replicas answer", so a 0 held each message to the command's deadline, then failed it.
  if (!(Number.isInteger(waitMs) && waitMs >= 1 && waitMs <= MAX_TIMER_MS - 1000)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `redis stream waitTimeoutMs must be a whole number of ms from 1 to ${MAX_TIMER_MS - 1000} (got ${waitMs})`);
  if (o.timeoutMs !== undefined && !(o.timeoutMs >= 1 && o.timeoutMs <= MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `redis stream timeoutMs must be from 1 to ${MAX_TIMER_MS} ms (got ${o.timeoutMs})`);
  const timeoutMs = Math.max(o.timeoutMs ?? 10_000, waitMs + 1000);
  const redis = connectRedis({ url: o.url, cluster: o.cluster === true }, 'the Redis stream sink', { maxRetriesPerRequest: 1, commandTimeout: timeoutMs });
  redis.on('error', () => {
    // Reconnects by itself; a failed XADD rejects and the message is retried.
  });
  const stream = o.stream ?? 'longlink:upstream';
  const maxLen = o.maxLen ?? STREAM_MAXLEN_DEFAULT;
  const trim = maxLen > 0 ? (['MAXLEN', '~', String(maxLen)] as const) : ([] as const);
  const replicas = o.waitReplicas ?? 0;
  // Entries written whose replication WAIT did not see, by the message (or event) retried: the runner
  // hands the same object to every attempt. Written again at each retry, one message became an entry
  // per retry for as long as a replica was away.
  const unreplicated = new WeakMap<object, string>();
  // With replicas to wait for, XADD and WAIT go in one pipeline (on a cluster, to the stream's master).
  const append = async (of: object, fields: string[]): Promise<void> => {
    if (replicas === 0) {
      await redis.xadd(stream, ...trim, '*', ...fields);
      return;
    }
    const written = unreplicated.get(of);
    const pipe = redis.pipeline();
    if (written === undefined) pipe.xadd(stream, ...trim, '*', ...fields);
    else pipe.eval(REWRITE_IF_GONE, 1, stream, written, ...trim, '*', ...fields);
    const res = await pipe.call('WAIT', replicas, waitMs).exec();
    const [addErr, id] = res?.[0] ?? [new Error('no answer to XADD')];
    if (addErr) throw addErr;
    unreplicated.set(of, String(id));
    const [waitErr, acked] = res?.[1] ?? [new Error('no answer to WAIT')];
    if (waitErr) throw waitErr;
    if (Number(acked) < replicas) throw new Error(`XADD reached ${Number(acked)} of ${replicas} replicas within ${waitMs} ms`);
    unreplicated.delete(of);
  };
  return {
    name: 'redis-stream',
    redis,
    timeoutMs,
    async send(m: UpstreamMessage): Promise<void> {
      await append(m, [
        'type', 'message',
        'user', m.userId,
        'device', m.deviceId,
        'connection', m.connectionId,
        'session', m.sessionId,
        'id', m.id ?? '',
        'seq', String(m.seq ?? ''),
        'payload', Buffer.from(m.payload).toString('base64'),
        'received_at', String(m.receivedAt),
      ]);
    },
    async sendEvent(e: UpstreamEvent): Promise<void> {
      const fields: string[] = ['type', e.type, 'user', e.userId, 'device', e.deviceId, 'connection', e.connectionId, 'node', e.nodeId, 'at', String(e.at), ...(e.seq !== undefined ? ['seq', String(e.seq)] : []), ...(e.run !== undefined ? ['run', e.run] : [])];
      if (e.reason !== undefined) fields.push('reason', e.reason, 'code', String(e.code ?? ''), 'initiator', e.initiator ?? '', 'silent_for_ms', String(Math.round(e.silentForMs ?? 0)));
      if (e.resumed !== undefined) fields.push('resumed', String(e.resumed));
      if (e.cleared !== undefined) fields.push('cleared', String(e.cleared), 'silent_for_ms', String(Math.round(e.silentForMs ?? 0)));
      if (e.byConnectionId !== undefined) fields.push('by_connection', e.byConnectionId, 'stale', String(e.stale ?? false), 'silent_for_ms', String(Math.round(e.silentForMs ?? 0)));
      await append(e, fields);
    },
    async checkSetup(): Promise<Error | null> {
      const found = await evictingServer(redis);
      return found ? evictionError(found, 'the stream: device messages acknowledged once written, before any worker read them') : null;
    },
    async close(): Promise<void> {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
