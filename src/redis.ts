/**
 * `longlink/redis`: the Redis store, for presence, sessions and mailboxes
 * shared by several gateway nodes. Needs the `ioredis` package (an optional
 * peer dependency of longlink).
 */
export { RedisStore, REDIS_DEFAULTS, type RedisStoreOptions } from './gateway/stores/redis-store.js';
export { streamSink, type StreamSinkOptions } from './upstream/redis-stream.js';
