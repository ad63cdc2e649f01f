import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { LonglinkError } from '../../protocol/errors.js';
import { MEMORY_STORE_DEFAULTS } from './memory-store.js';
import { ACK, ENQUEUE, EXPIRE, MARK_INBOUND, REMEMBER_DEVICE, SAVE_SESSION, SET_OFFLINE, TAKE } from './redis-lua.js';
import type { MailboxLimits, PresenceEntry, QueuedMessage, SessionRecord, Store } from './store.js';

/**
 * The store for several gateway nodes: presence, sessions and mailboxes in
 * Redis (through ioredis), so any node can resume any session and deliver
 * any queued message. Mailbox operations are Lua scripts, atomic across
 * nodes. A message is in Redis before `push()` goes on, so a node that dies
 * loses nothing that was accepted.
 *
 * Node liveness is one key per node (`ll:node:<id>`) with a TTL, renewed by
 * one SET per `leaseRenewMs` whatever the number of connections. Its value
 * is the node's incarnation (random per start), which every presence entry
 * of the node carries: entries of a node whose lease lapsed are not
 * reported, so a dead node's devices leave presence within `leaseTtlMs`; a
 * node restarted with the same id has a new incarnation, so its old entries
 * are not reported either (and are deleted when read). A node that finds its
 * lease had lapsed, or the store's epoch key gone (Redis restarted without
 * its data), tells the gateway, which writes its presence and sessions
 * again. Heartbeats never reach Redis.
 *
 * Routing: a push accepted on one node for a device connected to another
 * wakes that node through its pub/sub channel (`ll:route:<id>`); the message
 * itself waits in the mailbox, so a lost wake-up only delays it until the
 * node next flushes that device (on its next ack or reconnect).
 */
export interface RedisStoreOptions {
  url: string;
  /** Key prefix (default `ll:`), so several deployments can share a server. */
  prefix?: string;
  leaseTtlMs?: number;
  leaseRenewMs?: number;
  /** Session records kept per (user, device); a new session beyond it drops the oldest (as the memory store does). */
  maxSessionsPerDevice?: number;
  /** The duplicate-detection window per device, in ids and in time (as the memory store's). */
  dedupIdsPerDevice?: number;
  dedupWindowMs?: number;
  /** Devices remembered per user; a new one beyond it evicts the one whose time ends first. */
  maxKnownDevicesPerUser?: number;
}

export const REDIS_DEFAULTS = {
  prefix: 'll:',
  leaseTtlMs: 15_000,
  leaseRenewMs: 5000,
  maxSessionsPerDevice: 4,
  dedupIdsPerDevice: MEMORY_STORE_DEFAULTS.dedupIdsPerDevice,
  dedupWindowMs: MEMORY_STORE_DEFAULTS.dedupWindowMs,
  maxKnownDevicesPerUser: MEMORY_STORE_DEFAULTS.maxKnownDevicesPerUser,
};

type Json = { id: string; p: string; n: number; e: number; x: number; s: number };

const enc = (s: string) => encodeURIComponent(s);

/**
 * ioredis is an optional peer dependency: loaded when something needs it
 * (`who`: a RedisStore, the stream sink), with an error that says so.
 */
export function loadIoredis(who = 'RedisStore'): typeof Redis {
  try {
    return (createRequire(import.meta.url)('ioredis') as { Redis: typeof Redis }).Redis;
  } catch (err) {
    throw new LonglinkError('LL_ERR_MISSING_DEPENDENCY', `${who} needs the ioredis package (npm install ioredis): ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

/** The URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
const toMessage = (raw: string): QueuedMessage => {
  const m = JSON.parse(raw) as Json;
  return { id: m.id, payload: Buffer.from(m.p, 'base64'), enqueuedAt: m.e, expiresAt: m.x, seq: m.s };
};

declare module 'ioredis' {
  interface RedisCommander<Context> {
    llEnqueue(list: string, meta: string, expiry: string, msg: string, bytes: number, maxMessages: number, maxBytes: number, mbid: string, expiresAt: number): Promise<string[]>;
    llTake(list: string, meta: string, holder: string, afterSeq: number): Promise<string[]>;
    llAck(list: string, meta: string, expiry: string, holder: string, upTo: number, mbid: string): Promise<string[]>;
    llExpire(expiry: string, now: number, listPrefix: string, metaPrefix: string): Promise<string[]>;
    llMarkInbound(ids: string, id: string, kept: number, now: number, windowMs: number): Promise<number>;
    llRemember(known: string, deviceId: string, until: number, max: number, ttlMs: number): Promise<number>;
    llSetOffline(presence: string, deviceId: string, connectionId: string): Promise<number>;
    llSaveSession(key: string, index: string, json: string, ttlMs: number, token: string, now: number, max: number, prefix: string): Promise<number>;
  }
}

export class RedisStore implements Store {
  readonly kind = 'redis';
  readonly redis: Redis;
  private sub: Redis | null = null;
  private readonly o: Required<RedisStoreOptions>;
  private nodeId: string | null = null;
  /** This process's incarnation of the node: the lease's value and every presence entry's `inc`. */
  private readonly incarnation = randomBytes(6).toString('base64url');
  private epoch: string | null = null;
  private onResync: ((reason: 'resubscribed' | 'lease-lapsed' | 'store-reset') => void) | undefined;
  private leaseTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The connection's last error, to say why Redis is unreachable (ioredis's own rejection only counts retries). */
  private lastConnectError: Error | null = null;

  constructor(opts: RedisStoreOptions) {
    this.o = { ...REDIS_DEFAULTS, ...opts } as Required<RedisStoreOptions>;
    if (!(this.o.leaseRenewMs > 0 && this.o.leaseRenewMs < this.o.leaseTtlMs)) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', 'redis lease: need 0 < leaseRenewMs < leaseTtlMs');
    }
    this.redis = new (loadIoredis())(this.o.url, { maxRetriesPerRequest: 3, enableAutoPipelining: true });
    this.redis.on('error', (err: Error) => {
      // ioredis reconnects by itself; operations in flight reject and the gateway reports them.
      this.lastConnectError = err;
    });
    this.redis.on('ready', () => (this.lastConnectError = null));
    this.redis.defineCommand('llEnqueue', { numberOfKeys: 3, lua: ENQUEUE });
    this.redis.defineCommand('llTake', { numberOfKeys: 2, lua: TAKE });
    this.redis.defineCommand('llAck', { numberOfKeys: 3, lua: ACK });
    this.redis.defineCommand('llExpire', { numberOfKeys: 1, lua: EXPIRE });
    this.redis.defineCommand('llMarkInbound', { numberOfKeys: 1, lua: MARK_INBOUND });
    this.redis.defineCommand('llRemember', { numberOfKeys: 1, lua: REMEMBER_DEVICE });
    this.redis.defineCommand('llSetOffline', { numberOfKeys: 1, lua: SET_OFFLINE });
    this.redis.defineCommand('llSaveSession', { numberOfKeys: 2, lua: SAVE_SESSION });
  }

  private k(...parts: string[]): string {
    return this.o.prefix + parts.join(':');
  }

  private mbid(userId: string, deviceId: string): string {
    return `${enc(userId)}:${enc(deviceId)}`;
  }

  // Cluster: lease and routing.

  /**
   * Fails fast, naming the server, when Redis cannot be reached (ioredis alone
   * would say "Reached the max retries per request limit" without saying where).
   */
  async reachable(timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.redis.ping(),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } catch (err) {
      const why = this.lastConnectError?.message ?? (err instanceof Error ? err.message : String(err));
      throw new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `cannot reach Redis at ${redactUrl(this.o.url)}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts this node's lease and listens for wake-ups; `onRoute` is called with (userId, deviceId). */
  async joinCluster(nodeId: string, onRoute: (userId: string, deviceId: string) => void, onResync?: (reason: 'resubscribed' | 'lease-lapsed' | 'store-reset') => void): Promise<void> {
    this.nodeId = nodeId;
    this.onResync = onResync;
    await this.reachable();
    await this.renewLease();
    this.leaseTimer = setInterval(() => void this.renewLease().catch(() => {}), this.o.leaseRenewMs);
    this.leaseTimer.unref();
    const sub = (this.sub = this.redis.duplicate());
    const channel = this.k('route', nodeId);
    sub.on('error', () => {});
    sub.on('message', (_channel: string, message: string) => {
      try {
        const [u, d] = JSON.parse(message) as [string, string];
        onRoute(u, d);
      } catch {
        // not ours
      }
    });
    await sub.subscribe(channel);
    // After a lost connection ioredis subscribes again, but 'ready' comes before that is done:
    // subscribe explicitly, then resync, so a wake-up published in between is not assumed seen.
    // (Registered once subscribed: every 'ready' from here on is a reconnection.)
    sub.on('ready', () => {
      sub.subscribe(channel).then(
        () => onResync?.('resubscribed'),
        () => {},
      );
    });
  }

  private async renewLease(): Promise<void> {
    if (this.nodeId === null || this.closed) return;
    const now = Date.now();
    const [[, prev], [, epoch]] = (await this.redis
      .multi()
      .set(this.k('node', this.nodeId), this.incarnation, 'PX', this.o.leaseTtlMs, 'GET')
      .get(this.k('epoch'))
      .set(this.k('seen', this.nodeId), String(now), 'PX', 24 * 3600_000)
      .exec()) as [Error | null, string | null][];
    const first = this.epoch === null;
    if (epoch === null) {
      // No epoch: a store that is new, or that lost its data since we last looked.
      const mine = randomBytes(6).toString('base64url');
      const set = await this.redis.set(this.k('epoch'), mine, 'NX');
      this.epoch = set === 'OK' ? mine : await this.redis.get(this.k('epoch'));
      if (!first) this.onResync?.('store-reset');
      return;
    }
    if (first) {
      this.epoch = epoch;
      return;
    }
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.onResync?.('store-reset');
    } else if (prev !== this.incarnation) {
      this.onResync?.('lease-lapsed');
    }
  }

  /** When a node was last seen renewing its lease (wall ms; now if it holds one), or null if unknown. */
  async nodeSeenAt(nodeId: string): Promise<number | null> {
    const [lease, seen] = await this.redis.mget(this.k('node', nodeId), this.k('seen', nodeId));
    if (lease !== null) return Date.now();
    return seen === null ? null : Number(seen);
  }

  async route(nodeId: string, userId: string, deviceId: string): Promise<void> {
    await this.redis.publish(this.k('route', nodeId), JSON.stringify([userId, deviceId]));
  }

  /** The incarnation holding each node's lease (absent: no lease). */
  async liveNodes(nodeIds: string[]): Promise<Map<string, string>> {
    if (nodeIds.length === 0) return new Map();
    const vals = await this.redis.mget(...nodeIds.map((n) => this.k('node', n)));
    const out = new Map<string, string>();
    nodeIds.forEach((n, i) => vals[i] !== null && out.set(n, vals[i]!));
    return out;
  }

  // Presence.

  async setOnline(entry: PresenceEntry): Promise<void> {
    // The entry carries this process's incarnation: a node restarted under the same id does not revive it.
    const stored = entry.nodeId === this.nodeId ? { ...entry, inc: this.incarnation } : entry;
    await this.redis.hset(this.k('presence', enc(entry.userId)), entry.deviceId, JSON.stringify(stored));
  }

  async setOffline(userId: string, deviceId: string, connectionId: string): Promise<boolean> {
    return (await this.redis.llSetOffline(this.k('presence', enc(userId)), deviceId, connectionId)) === 1;
  }

  async devices(userId: string): Promise<PresenceEntry[]> {
    const key = this.k('presence', enc(userId));
    const all = Object.values(await this.redis.hgetall(key)).map((raw) => JSON.parse(raw) as PresenceEntry & { inc?: string });
    const live = await this.liveNodes([...new Set(all.map((e) => e.nodeId))]);
    const out: PresenceEntry[] = [];
    for (const { inc, ...e } of all) {
      const holder = live.get(e.nodeId);
      if (holder !== undefined && (inc === undefined || inc === holder)) out.push(e);
      // An earlier incarnation of a node that is alive again: those links are gone for sure.
      // A node without a lease may only have lapsed (it writes its presence again when it notices), so its entries stay.
      else if (holder !== undefined) void this.redis.llSetOffline(key, e.deviceId, e.connectionId).catch(() => {});
    }
    return out;
  }

  // Sessions.

  async saveSession(record: SessionRecord, expiresAt: number): Promise<void> {
    const ttl = Math.max(1, Math.round(expiresAt - Date.now()));
    await this.redis.llSaveSession(
      this.k('session', record.resumeToken), this.k('dsess', enc(record.userId), enc(record.deviceId)), JSON.stringify({ record, expiresAt }), ttl,
      record.resumeToken, Date.now(), this.o.maxSessionsPerDevice, this.k('session', ''),
    );
  }

  async loadSession(resumeToken: string, now: number): Promise<SessionRecord | undefined> {
    const raw = await this.redis.get(this.k('session', resumeToken));
    if (!raw) return undefined;
    const s = JSON.parse(raw) as { record: SessionRecord; expiresAt: number };
    return s.expiresAt > now ? s.record : undefined;
  }

  async deleteSession(resumeToken: string): Promise<void> {
    await this.redis.del(this.k('session', resumeToken));
  }

  // Mailboxes.

  async enqueue(userId: string, deviceId: string, msg: Omit<QueuedMessage, 'seq'>, limits: MailboxLimits): Promise<QueuedMessage[]> {
    const id = this.mbid(userId, deviceId);
    const json: Json = { id: msg.id, p: Buffer.from(msg.payload).toString('base64'), n: msg.payload.length, e: msg.enqueuedAt, x: msg.expiresAt, s: 0 };
    const evicted = await this.redis.llEnqueue(
      this.k('mb', id), this.k('mbm', id), this.k('expiry'), JSON.stringify(json), msg.payload.length, limits.maxMessages, limits.maxBytes, id, msg.expiresAt,
    );
    return evicted.map(toMessage);
  }

  async take(userId: string, deviceId: string, holder: string, afterSeq: number): Promise<QueuedMessage[]> {
    const id = this.mbid(userId, deviceId);
    return (await this.redis.llTake(this.k('mb', id), this.k('mbm', id), holder, afterSeq)).map(toMessage);
  }

  async ack(userId: string, deviceId: string, holder: string, upTo: number): Promise<QueuedMessage[]> {
    const id = this.mbid(userId, deviceId);
    return (await this.redis.llAck(this.k('mb', id), this.k('mbm', id), this.k('expiry'), holder, upTo, id)).map(toMessage);
  }

  async expire(now: number): Promise<{ userId: string; deviceId: string; message: QueuedMessage }[]> {
    const flat = await this.redis.llExpire(this.k('expiry'), now, this.k('mb', ''), this.k('mbm', ''));
    const out: { userId: string; deviceId: string; message: QueuedMessage }[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const [u, d] = flat[i].split(':').map(decodeURIComponent);
      out.push({ userId: u, deviceId: d, message: toMessage(flat[i + 1]) });
    }
    return out;
  }

  async depth(userId: string, deviceId: string): Promise<number> {
    return this.redis.llen(this.k('mb', this.mbid(userId, deviceId)));
  }

  async rememberDevice(userId: string, deviceId: string, until: number): Promise<void> {
    await this.redis.llRemember(this.k('known', enc(userId)), deviceId, until, this.o.maxKnownDevicesPerUser, Math.max(1, Math.round(until - Date.now())));
  }

  async knownDevices(userId: string, now: number): Promise<string[]> {
    const key = this.k('known', enc(userId));
    const all = await this.redis.hgetall(key);
    const out: string[] = [];
    for (const [deviceId, until] of Object.entries(all)) {
      if (Number(until) > now || (await this.depth(userId, deviceId)) > 0) out.push(deviceId);
      else await this.redis.hdel(key, deviceId);
    }
    return out;
  }

  async seenInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const at = await this.redis.zscore(this.k('in', this.mbid(userId, deviceId)), id);
    return at !== null && Number(at) > now - this.o.dedupWindowMs;
  }

  async markInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const mb = this.mbid(userId, deviceId);
    return (await this.redis.llMarkInbound(this.k('in', mb), id, this.o.dedupIdsPerDevice, now, this.o.dedupWindowMs)) === 1;
  }

  /** Drops the connections at once without releasing the lease: what a crash does (for tests and drills). */
  abandon(): void {
    this.closed = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.sub?.disconnect();
    this.redis.disconnect();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    // A clean stop gives up the lease at once; a crash lets it lapse.
    if (this.nodeId !== null) await this.redis.del(this.k('node', this.nodeId)).catch(() => {});
    this.sub?.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
