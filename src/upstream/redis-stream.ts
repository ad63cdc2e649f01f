import type { Redis } from 'ioredis';
import type { UpstreamEvent, UpstreamMessage, UpstreamSink } from '../gateway/upstream.js';
import { loadIoredis } from '../gateway/stores/redis-store.js';

export interface StreamSinkOptions {
  /** redis://host:port (ioredis, an optional peer dependency). */
  url: string;
  /** The stream backends read with XREADGROUP. */
  stream?: string;
  /** Trim the stream to about this many entries (XADD MAXLEN ~); 0 keeps everything. */
  maxLen?: number;
}

/**
 * The Redis Streams sink: each message is one XADD to a stream that any
 * number of backend workers, in any language, share through a consumer group
 * (XREADGROUP, XACK; a crashed worker's pending entries are claimed by
 * another). A message is acknowledged to the device once XADD succeeded.
 * Fields: type, user, device, connection, session, id, seq, payload (base64),
 * received_at.
 */
export function streamSink(o: StreamSinkOptions): UpstreamSink & { readonly redis: Redis } {
  const redis = new (loadIoredis('the Redis stream sink'))(o.url, { maxRetriesPerRequest: 1, enableAutoPipelining: true });
  redis.on('error', () => {
    // Reconnects by itself; a failed XADD rejects and the message is retried.
  });
  const stream = o.stream ?? 'longlink:upstream';
  const trim = o.maxLen && o.maxLen > 0 ? (['MAXLEN', '~', String(o.maxLen)] as const) : ([] as const);
  return {
    name: 'redis-stream',
    redis,
    async send(m: UpstreamMessage): Promise<void> {
      await redis.xadd(
        stream,
        ...trim,
        '*',
        'type', 'message',
        'user', m.userId,
        'device', m.deviceId,
        'connection', m.connectionId,
        'session', m.sessionId,
        'id', m.id ?? '',
        'seq', String(m.seq ?? ''),
        'payload', Buffer.from(m.payload).toString('base64'),
        'received_at', String(m.receivedAt),
      );
    },
    async sendEvent(e: UpstreamEvent): Promise<void> {
      const fields: string[] = ['type', e.type, 'user', e.userId, 'device', e.deviceId, 'connection', e.connectionId, 'node', e.nodeId, 'at', String(e.at)];
      if (e.reason !== undefined) fields.push('reason', e.reason, 'code', String(e.code ?? ''), 'initiator', e.initiator ?? '', 'silent_for_ms', String(Math.round(e.silentForMs ?? 0)));
      if (e.resumed !== undefined) fields.push('resumed', String(e.resumed));
      if (e.cleared !== undefined) fields.push('cleared', String(e.cleared), 'silent_for_ms', String(Math.round(e.silentForMs ?? 0)));
      await redis.xadd(stream, ...trim, '*', ...fields);
    },
    async close(): Promise<void> {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
