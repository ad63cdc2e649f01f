import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { MAX_TIMER_MS } from '../../core/heartbeat-policy.js';
import { LonglinkError, tooManyDevices } from '../../protocol/errors.js';
import { toWellFormed } from '../../protocol/well-formed.js';
import { MEMORY_STORE_DEFAULTS } from './memory-store.js';
import { connectRedis, evictingServer, evictionError, isCluster, loadIoredisModule, redactUrl } from './redis-connect.js';
import { ACK, ACK_RESUMED, CLAIM_INBOUND, ENQUEUE, EXPIRE, EXTEND_TTL, FORGET_DEVICE, FORGET_PRESENCE, INDEX_SESSION, SAVE_SESSION_UNLESS_OPEN, MARK_INBOUND, MARK_INBOUND_CLAIMED, REMEMBER_DEVICE, RENEW_LEASE, RESTORE_ONLINE, SET_OFFLINE, SET_ONLINE, TAKE, TAKE_BACK, TOUCH_PRESENCE, RELEASE_INBOUND } from './redis-lua.js';
import type { ClusterControl, MailboxLimits, NodeControl, PresenceEntry, QueuedMessage, ResyncReason, SessionRecord, Store, StoreFaultOp } from './store.js';

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
 * node next flushes that device (on its next ack or reconnect). The same
 * channel carries kicks and disconnects for the node's devices, and
 * `ll:all` carries broadcasts.
 *
 * Redis Cluster (`cluster: true`): every key carries a hash tag, so each
 * script and transaction touches one slot: `{u:<user>}` for what belongs to
 * a user (presence, known devices, dedup ids, session index), `{m<shard>}`
 * for mailboxes and their shard's expiry index (the shard from the user, so
 * the sweep reads `mailboxShards` indexes), `{n}` for node leases and the
 * epoch. Pub/sub is the cluster's broadcast PUBLISH; the subscription is a
 * connection of its own to one node, moved to another when that node goes,
 * and every move flushes every device (`resubscribed`), as a reconnection
 * to a single server does.
 */
export interface RedisStoreOptions {
  /** redis://host:port; with `cluster`, one or more seed nodes separated by commas. */
  url: string;
  /** Connect to a Redis Cluster (the URL lists seeds). */
  cluster?: boolean;
  /** Key prefix (default `ll:`), so several deployments can share a server. No braces: they would change the hash tags. */
  prefix?: string;
  /**
   * Mailboxes are spread over this many shards (hash tags); the expiry sweep
   * reads one index per shard each `sweepIntervalMs`. More shards spread a
   * cluster's mailbox load over more slots.
   */
  mailboxShards?: number;
  /**
   * Shards the periodic sweep reads per call, in turn: every shard is read
   * once per `mailboxShards / sweepShardsPerCall` sweeps (8 s by default), so
   * a node's steady load stays a few commands per second.
   */
  sweepShardsPerCall?: number;
  /**
   * Replicas that must hold a queued message (and an inbound id) before it
   * counts as accepted (WAIT); 0 does not wait. With 1, a master that dies
   * right after accepting a push does not take it with it.
   */
  waitReplicas?: number;
  /** How long a write waits for `waitReplicas`; a write not replicated in time fails (and is retried or reported). */
  waitTimeoutMs?: number;
  leaseTtlMs?: number;
  leaseRenewMs?: number;
  /** Session records kept per (user, device); a new session beyond it drops the oldest (as the memory store does). */
  maxSessionsPerDevice?: number;
  /** The duplicate-detection window per device, in ids and in time (as the memory store's). */
  dedupIdsPerDevice?: number;
  dedupWindowMs?: number;
  /**
   * Devices remembered per user; a new one beyond it evicts the one not online whose time ends
   * first (with its sessions and dedup ids). When every known device is online, the new one is not
   * remembered until one is offline.
   */
  maxKnownDevicesPerUser?: number;
  /**
   * A command not answered in this long fails (a Redis paused or cut off
   * without a reset): the push answers 503 / `failed`, a handshake or an
   * acknowledgement fails its link with 4004, retried. Without it they would
   * wait as long as the server does not answer.
   */
  commandTimeoutMs?: number;
}

export const REDIS_DEFAULTS = {
  cluster: false,
  prefix: 'll:',
  mailboxShards: 64,
  sweepShardsPerCall: 8,
  waitReplicas: 0,
  waitTimeoutMs: 1000,
  leaseTtlMs: 15_000,
  leaseRenewMs: 5000,
  maxSessionsPerDevice: 4,
  dedupIdsPerDevice: MEMORY_STORE_DEFAULTS.dedupIdsPerDevice,
  dedupWindowMs: MEMORY_STORE_DEFAULTS.dedupWindowMs,
  maxKnownDevicesPerUser: MEMORY_STORE_DEFAULTS.maxKnownDevicesPerUser,
  commandTimeoutMs: 5000,
};

/** `w`, `wu`: QueuedMessage.reportTo (only on a message whose push waits). */
type Json = { id: string; p: string; n: number; e: number; x: number; s: number; w?: string; wu?: number };

const enc = (s: string) => encodeURIComponent(s);

/** Leases a node without one has not been seen for before its presence entries are deleted when read. */
const DEAD_NODE_LEASES = 10;
/**
 * A user's presence hash lives this long past its last write or refresh:
 * the open session record's TTL, which every open link refreshes at half of
 * it (Gateway.refreshSession), so a live link's entry never lapses.
 */
export const PRESENCE_TTL_MS = 12 * 3600_000;

/**
 * Mailbox entries one shard's expiry call reads before it starts no other
 * mailbox: a few ms of Redis, whatever is due at once.
 */
const EXPIRE_READ_PER_CALL = 10_000;

/** Kicks and notices to other nodes published again at once, at most (see republish). */
const MAX_REPUBLISHING = 10_000;

/**
 * JSON that Redis's cjson can read back: a lone surrogate (which JSON.stringify
 * writes as an escape cjson refuses) becomes U+FFFD. Otherwise one such string
 * would make every script that reads the entry fail: a mailbox no one can take
 * from, a shard's sweep stopped, a presence entry no one can replace. The gateway
 * refuses such ids at its edges; this is for what gets past (a custom store caller).
 */
function storeJson(v: unknown): string {
  const text = JSON.stringify(v);
  return /\\u[dD][89a-fA-F]/.test(text) ? JSON.stringify(toWellFormed(v)) : text;
}

export { loadIoredis } from './redis-connect.js';

/** FNV-1a: the user's mailbox shard, the same on every node. */
function shardOf(userId: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) h = Math.imul(h ^ userId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % shards;
}

/** What the route channels carry besides wake-ups. */
type Control =
  | { k: 'kick' | 'disconnect'; u: string; d?: string; ms?: number }
  | { k: 'replaced'; u: string; d: string; c: string; b: string; r: 0 | 1 }
  | { k: 'check'; u: string; d: string; c: string }
  | { k: 'delivered'; u: string; d: string; ids: string[] }
  | { k: 'broadcast'; p: string; id?: string; from: string };
const toMessage = (raw: string): QueuedMessage => {
  const m = JSON.parse(raw) as Json;
  return { id: m.id, payload: Buffer.from(m.p, 'base64'), enqueuedAt: m.e, expiresAt: m.x, seq: m.s, ...(typeof m.w === 'string' && typeof m.wu === 'number' ? { reportTo: { nodeId: m.w, until: m.wu } } : {}) };
};

declare module 'ioredis' {
  interface RedisCommander<Context> {
    llEnqueue(list: string, meta: string, expiry: string, ids: string, msg: string, bytes: number, maxMessages: number, maxBytes: number, mbid: string, expiresAt: number, id: string, now: number, liveHolder: string): Promise<string[]>;
    llTake(list: string, meta: string, holder: string, afterSeq: number, session?: string): Promise<string[]>;
    llAckResumed(list: string, meta: string, expiry: string, ids: string, session: string, upTo: number, mbid: string): Promise<string[]>;
    llAck(list: string, meta: string, expiry: string, ids: string, unread: string, holder: string, upTo: number, mbid: string, answeredUpTo?: number): Promise<string[]>;
    llExpire(expiry: string, now: number, listPrefix: string, metaPrefix: string, idsPrefix: string, budget: number): Promise<[number, ...string[]]>;
    llMarkInbound(ids: string, id: string, kept: number, now: number, windowMs: number): Promise<number>;
    llMarkInboundClaimed(ids: string, claim: string, id: string, kept: number, now: number, windowMs: number, holder: string): Promise<number>;
    llRemember(known: string, presence: string, deviceId: string, until: number, max: number, ttlMs: number, userPrefix: string): Promise<string[]>;
    llSetOffline(presence: string, displaced: string, deviceId: string, connectionId: string, putBack?: string): Promise<number>;
    llForgetPresence(presence: string, displaced: string, deviceId: string, raw: string): Promise<number>;
    llSetOnline(presence: string, displaced: string, deviceId: string, entry: string, nodeId: string, ttlMs: number, maxDevices: number): Promise<string | null>;
    llRestoreOnline(presence: string, displaced: string, deviceId: string, entry: string, connectionId: string, ttlMs: number): Promise<number>;
    llTouchPresence(presence: string, displaced: string, ttlMs: number): Promise<number>;
    llTakeBack(presence: string, displaced: string, deviceId: string, connectionId: string): Promise<string>;
    llRenewLease(lease: string, epoch: string, seen: string, admin: string, directory: string, incarnation: string, ttlMs: number, now: number, adminUrl: string, nodeId: string): Promise<[string, string]>;
    llIndexSession(index: string, token: string, now: number, max: number, ttlMs: number): Promise<string[]>;
    llSaveSessionUnlessOpen(key: string, value: string, ttlMs: number, nodeId: string): Promise<number>;
    llForgetDevice(key: string, deviceId: string, until: string): Promise<number>;
    llExtendTtl(key: string, ttlMs: number): Promise<number>;
    llClaimInbound(ids: string, claim: string, id: string, holder: string, ttlMs: number, now: number, windowMs: number): Promise<number>;
    llReleaseInbound(claim: string, holder: string): Promise<number>;
  }
}

export class RedisStore implements Store {
  readonly kind = 'redis';
  /** Whether this store talks to a Redis Cluster. */
  get isCluster(): boolean {
    return this.o.cluster;
  }
  readonly redis: Redis;
  private sub: Redis | null = null;
  private onControl: ((c: ClusterControl) => void) | undefined;
  private readonly o: Required<RedisStoreOptions>;
  private nodeId: string | null = null;
  /** This process's incarnation of the node: the lease's value and every presence entry's `inc`. */
  private readonly incarnation = randomBytes(6).toString('base64url');
  /** This process's presence writes so far: each entry it writes carries the next (see presenceJson). */
  private presenceWrites = 0;
  private epoch: string | null = null;
  private onResync: ((reason: ResyncReason) => void) | undefined;
  private onFault: ((error: Error, op: StoreFaultOp) => void) | undefined;
  /** Monotonic ms when the last renewal that was answered was sent (see renewLease). */
  private leaseAnsweredAt = performance.now();
  /** A renewal failed since the last answered one: it may yet run, unread (see renewLease). */
  private leaseUnsure = false;
  /** Renewals in a row that found the lease another incarnation's (see renewLease). */
  private foreignRenewals = 0;
  private duplicateTold = false;
  private leaseTimer: NodeJS.Timeout | null = null;
  private sweepCursor = 0;
  /** Mailbox entries one shard's expiry call reads at most, beyond the mailbox it is in (see EXPIRE). */
  private expireBudget = EXPIRE_READ_PER_CALL;
  /** This node's admin URL, kept beside its lease so other nodes' dashboards can reach it. */
  private adminUrl: string | null = null;
  private closed = false;
  private subTimer: NodeJS.Timeout | null = null;
  /** A cluster's masters asked for their run ids (see watchMasterRestarts). */
  private runIdTimer: NodeJS.Timeout | null = null;
  /** Kicks and notices being published again (nobody heard them yet). */
  private republishing = 0;
  /** Subscriptions restarted because they stopped answering. */
  subRestarts = 0;
  /** The Redis server's run id when last connected (single server): a new one is a restart. */
  private runId: string | null = null;
  /** The connection's last error, to say why Redis is unreachable (ioredis's own rejection only counts retries). */
  private lastConnectError: Error | null = null;

  constructor(opts: RedisStoreOptions) {
    this.o = { ...REDIS_DEFAULTS, ...opts } as Required<RedisStoreOptions>;
    if (!(this.o.leaseRenewMs > 0 && this.o.leaseRenewMs < this.o.leaseTtlMs)) {
      throw new LonglinkError('LL_ERR_INVALID_OPTION', 'redis lease: need 0 < leaseRenewMs < leaseTtlMs');
    }
    // The renewal is a setInterval and the subscriber's check a timer of the lease's slack: past
    // MAX_TIMER_MS Node fires each after 1 ms (a renewal and a PING every millisecond).
    if (!(this.o.leaseTtlMs <= MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `redis leaseTtlMs must be at most ${MAX_TIMER_MS} (got ${this.o.leaseTtlMs})`);
    if (/[{}]/.test(this.o.prefix)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `redis prefix ${JSON.stringify(this.o.prefix)}: no braces (they would change the keys' hash tags)`);
    if (!(Number.isInteger(this.o.mailboxShards) && this.o.mailboxShards >= 1 && this.o.mailboxShards <= 16384)) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'redis mailboxShards: an integer from 1 to 16384');
    if (!(Number.isInteger(this.o.sweepShardsPerCall) && this.o.sweepShardsPerCall >= 1)) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'redis sweepShardsPerCall: an integer ≥ 1');
    if (!(Number.isInteger(this.o.waitReplicas) && this.o.waitReplicas >= 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', 'redis waitReplicas: an integer ≥ 0');
    // Whole ms from 1: Redis refuses a fractional WAIT timeout (every replicated write failed), and reads 0
    // as "until the replicas answer", so a 0 held each write to the command's deadline, then failed it.
    if (!(Number.isInteger(this.o.waitTimeoutMs) && this.o.waitTimeoutMs >= 1 && this.o.waitTimeoutMs < MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `redis waitTimeoutMs: a whole number of ms from 1 to ${MAX_TIMER_MS - 1} (got ${this.o.waitTimeoutMs})`);
    // Unset, it leaves a WAIT its whole timeout (a slow replica's setting stays valid).
    if (opts.commandTimeoutMs === undefined) this.o.commandTimeoutMs = Math.max(REDIS_DEFAULTS.commandTimeoutMs, this.o.waitTimeoutMs + 1000);
    // ioredis arms it as one timer per command: past MAX_TIMER_MS every command timed out after 1 ms.
    if (!(Number.isInteger(this.o.commandTimeoutMs) && this.o.commandTimeoutMs > this.o.waitTimeoutMs && this.o.commandTimeoutMs <= MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `redis commandTimeoutMs: an integer above waitTimeoutMs (${this.o.waitTimeoutMs}), at most ${MAX_TIMER_MS} (got ${this.o.commandTimeoutMs})`);
    this.redis = connectRedis({ url: this.o.url, cluster: this.o.cluster }, 'RedisStore', { maxRetriesPerRequest: 3, commandTimeout: this.o.commandTimeoutMs });
    this.redis.on('error', (err: Error) => {
      // ioredis reconnects by itself; operations in flight reject and the gateway reports them.
      this.lastConnectError = err;
    });
    this.redis.on('ready', () => {
      this.lastConnectError = null;
      if (!this.o.cluster) void this.checkRunId();
    });
    this.redis.defineCommand('llEnqueue', { numberOfKeys: 4, lua: ENQUEUE });
    this.redis.defineCommand('llTake', { numberOfKeys: 2, lua: TAKE });
    this.redis.defineCommand('llAck', { numberOfKeys: 5, lua: ACK });
    this.redis.defineCommand('llAckResumed', { numberOfKeys: 4, lua: ACK_RESUMED });
    this.redis.defineCommand('llExpire', { numberOfKeys: 1, lua: EXPIRE });
    this.redis.defineCommand('llMarkInbound', { numberOfKeys: 1, lua: MARK_INBOUND });
    this.redis.defineCommand('llMarkInboundClaimed', { numberOfKeys: 2, lua: MARK_INBOUND_CLAIMED });
    this.redis.defineCommand('llRemember', { numberOfKeys: 2, lua: REMEMBER_DEVICE });
    this.redis.defineCommand('llSetOffline', { numberOfKeys: 2, lua: SET_OFFLINE });
    this.redis.defineCommand('llForgetPresence', { numberOfKeys: 2, lua: FORGET_PRESENCE });
    this.redis.defineCommand('llSetOnline', { numberOfKeys: 2, lua: SET_ONLINE });
    this.redis.defineCommand('llRestoreOnline', { numberOfKeys: 2, lua: RESTORE_ONLINE });
    this.redis.defineCommand('llTouchPresence', { numberOfKeys: 2, lua: TOUCH_PRESENCE });
    this.redis.defineCommand('llTakeBack', { numberOfKeys: 2, lua: TAKE_BACK });
    this.redis.defineCommand('llIndexSession', { numberOfKeys: 1, lua: INDEX_SESSION });
    this.redis.defineCommand('llSaveSessionUnlessOpen', { numberOfKeys: 1, lua: SAVE_SESSION_UNLESS_OPEN });
    this.redis.defineCommand('llForgetDevice', { numberOfKeys: 1, lua: FORGET_DEVICE });
    this.redis.defineCommand('llExtendTtl', { numberOfKeys: 1, lua: EXTEND_TTL });
    this.redis.defineCommand('llClaimInbound', { numberOfKeys: 2, lua: CLAIM_INBOUND });
    this.redis.defineCommand('llReleaseInbound', { numberOfKeys: 1, lua: RELEASE_INBOUND });
    this.redis.defineCommand('llRenewLease', { numberOfKeys: 5, lua: RENEW_LEASE });
  }

  /** A key of no particular slot (session records, channels). */
  private k(...parts: string[]): string {
    return this.o.prefix + parts.join(':');
  }

  /** Node leases, their last-seen times and the epoch: one slot, so MGET and MULTI over them work on a cluster. */
  private nk(...parts: string[]): string {
    return `${this.o.prefix}{n}:${parts.join(':')}`;
  }

  /** What belongs to one user. */
  private uk(userId: string, ...parts: string[]): string {
    return `${this.o.prefix}{u:${enc(userId)}}:${parts.join(':')}`;
  }

  /** A mailbox shard's keys. */
  private mk(shard: number, ...parts: string[]): string {
    return `${this.o.prefix}{m${shard}}:${parts.join(':')}`;
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

  /**
   * Starts this node's lease and listens for wake-ups; `onRoute` is called
   * with (userId, deviceId), `onControl` with kicks, disconnects and
   * broadcasts other nodes send.
   */
  async joinCluster(
    nodeId: string,
    onRoute: (userId: string, deviceId: string) => void,
    onResync?: (reason: ResyncReason) => void,
    onControl?: (c: ClusterControl) => void,
    onFault?: (error: Error, op: StoreFaultOp) => void,
  ): Promise<void> {
    await this.reachable();
    // Before the id is this store's: a refused store's close must not delete the live node's lease.
    await this.refuseIfHeld(nodeId);
    this.nodeId = nodeId;
    this.onResync = onResync;
    this.onControl = onControl;
    this.onFault = onFault;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.renewLease();
        break;
      } catch (err) {
        // A cluster that has just come up may still be telling its clients where the slots are.
        if (attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    this.leaseTimer = setInterval(() => void this.renewLease().catch(() => {}), this.o.leaseRenewMs);
    this.leaseTimer.unref();
    await this.checkEviction();
    const channels = [this.k('route', nodeId), this.k('all')];
    const onMessage = (_channel: string, message: string) => {
      try {
        const m = JSON.parse(message) as [string, string] | Control;
        if (Array.isArray(m)) return onRoute(m[0], m[1]);
        if (m.k === 'broadcast') {
          if (m.from !== nodeId) onControl?.({ kind: 'broadcast', payload: Buffer.from(m.p, 'base64'), ...(m.id !== undefined ? { id: m.id } : {}) });
        } else if (m.k === 'replaced') {
          onControl?.({ kind: 'replaced', userId: m.u, deviceId: m.d, connectionId: m.c, byConnectionId: m.b, resumed: m.r === 1 });
        } else if (m.k === 'check') {
          onControl?.({ kind: 'check', userId: m.u, deviceId: m.d, connectionId: m.c });
        } else if (m.k === 'delivered') {
          if (Array.isArray(m.ids)) onControl?.({ kind: 'delivered', userId: m.u, deviceId: m.d, ids: m.ids.filter((id) => typeof id === 'string') });
        } else if (m.k === 'kick' || m.k === 'disconnect') onControl?.({ kind: m.k, userId: m.u, ...(m.d !== undefined ? { deviceId: m.d } : {}), ...(m.ms !== undefined ? { reconnectAfterMs: m.ms } : {}) });
      } catch {
        // not ours
      }
    };
    if (isCluster(this.redis)) {
      this.watchFailovers(this.redis as unknown as import('ioredis').Cluster);
      this.watchMasterRestarts(this.redis as unknown as import('ioredis').Cluster);
      await this.subscribeInCluster(channels, onMessage);
      // Gone quiet: its node is left for the next ('end' moves the subscription on).
      this.watchSubscriber((sub) => sub.disconnect());
      return;
    }
    const sub = (this.sub = this.redis.duplicate());
    sub.on('error', () => {});
    sub.on('message', onMessage);
    await sub.subscribe(...channels);
    // After a lost connection ioredis subscribes again, but 'ready' comes before that is done:
    // subscribe explicitly, then resync, so a wake-up published in between is not assumed seen.
    // (Registered once subscribed: every 'ready' from here on is a reconnection.)
    sub.on('ready', () => {
      sub.subscribe(...channels).then(
        () => this.onResync?.('resubscribed'),
        () => {},
      );
    });
    // Gone quiet: reconnected, which subscribes again and resyncs as above.
    this.watchSubscriber((s) => s.disconnect(true));
  }

  /**
   * Two live processes under one node id (one config file or LONGLINK_NODE_ID for every replica)
   * would each take the other's renewal for a lapse of its own (a re-assertion of everything at
   * every renewal), delete the other's presence entries as an earlier incarnation's when read, and
   * share one route channel. A lease of another incarnation is a crashed predecessor's, left to
   * lapse, or a live node's: watched for one renewal, a live one renews it (its last-seen time
   * moves), and the id is refused (LL_ERR_NODE_ID_IN_USE).
   */
  private async refuseIfHeld(nodeId: string): Promise<void> {
    const lease = this.nk('node', nodeId);
    const seen = this.nk('seen', nodeId);
    const [held, ttl, seenAt] = await Promise.all([this.redis.get(lease), this.redis.pttl(lease), this.redis.get(seen)]);
    if (held === null || ttl <= 0) return;
    // Past its renewal time by a margin: a loaded machine runs the live node's renewal timer (and
    // this one) late by tens of ms at times, more than a short lease's quarter (tests use 150 ms).
    await new Promise((r) => setTimeout(r, Math.min(MAX_TIMER_MS, Math.min(ttl, this.o.leaseRenewMs) + Math.max(250, this.o.leaseRenewMs / 4))));
    const [heldNow, seenNow] = await this.redis.mget(lease, seen);
    if (heldNow !== null && (heldNow !== held || seenNow !== seenAt)) throw this.nodeIdInUse(nodeId);
  }

  /** Reported once, at join, as Sidekiq and BullMQ do (see evictingServer). */
  private async checkEviction(): Promise<void> {
    const found = await evictingServer(this.redis);
    if (found) this.onFault?.(evictionError(found, 'messages, sessions and presence the gateway reported stored'), 'maxmemory-policy');
  }

  private nodeIdInUse(nodeId: string): LonglinkError {
    return new LonglinkError('LL_ERR_NODE_ID_IN_USE', `node id ${JSON.stringify(nodeId)} is held by another live gateway on this Redis (prefix ${this.o.prefix}): give each node its own --node-id, or leave it unset (a unique one is made)`);
  }

  /**
   * A subscription only listens, so a connection that died without a reset
   * (a middlebox that dropped it) would go unnoticed for the kernel's
   * keepalive, two hours: every wake-up, kick and notice to this node lost
   * meanwhile, while its lease, renewed on the other connection, says it is
   * fine. A PING each lease renewal, answered within the lease's slack
   * (`leaseTtlMs - leaseRenewMs`), says it still hears; otherwise `restart`.
   */
  private watchSubscriber(restart: (sub: Redis) => void): void {
    let asking = false;
    const deadline = this.o.leaseTtlMs - this.o.leaseRenewMs;
    this.subTimer = setInterval(() => {
      const sub = this.sub;
      if (!sub || asking || this.closed || sub.status !== 'ready') return;
      asking = true;
      let timer: NodeJS.Timeout | undefined;
      void Promise.race([sub.ping().then(() => true, () => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadline)))]).then((heard) => {
        clearTimeout(timer);
        asking = false;
        if (!heard && this.sub === sub && !this.closed) {
          this.subRestarts++;
          restart(sub);
        }
      });
    }, this.o.leaseRenewMs);
    this.subTimer.unref();
  }

  /**
   * A cluster's PUBLISH reaches every node, so one subscription to any node
   * hears everything. It is a plain connection of ours (not ioredis's own
   * cluster subscriber) so that we know when it moved: when its node goes,
   * the next known node is tried, and once subscribed there every device is
   * flushed, since what was published in between was not heard.
   */
  private async subscribeInCluster(channels: string[], onMessage: (channel: string, message: string) => void): Promise<void> {
    const cluster = this.redis as unknown as import('ioredis').Cluster;
    const io = loadIoredisModule();
    let turn = 0;
    let first = true;
    /** Tries again after `ms`, once joined (a failure while joining is the caller's to see). */
    const again = (ms: number) => {
      if (!first && !this.closed) setTimeout(() => void attach().catch(() => again(500)), ms).unref();
    };
    const attach = async (): Promise<void> => {
      if (this.closed) return;
      const nodes = cluster.nodes('all');
      if (nodes.length === 0) throw new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `no node of the Redis Cluster at ${redactUrl(this.o.url)} is known`);
      const at = nodes[turn++ % nodes.length].options;
      const sub = new io.Redis({ host: at.host, port: at.port, username: at.username, password: at.password, tls: at.tls, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 2000 });
      this.sub = sub;
      sub.on('error', () => {});
      sub.on('message', onMessage);
      // Its node went (or it never got there): the next node, unless a newer subscription took over.
      sub.once('end', () => this.sub === sub && again(200));
      try {
        await sub.connect();
        await sub.subscribe(...channels);
      } catch (err) {
        sub.disconnect();
        if (first) throw err;
        return;
      }
      if (!first) this.onResync?.('resubscribed');
      first = false;
    };
    await attach();
  }

  /**
   * Replication is asynchronous: a replica that takes over a slot may lack
   * the last writes its master acknowledged (presence, known devices,
   * sessions; mailbox writes wait for a replica and survive). ioredis
   * re-reads the slot map every `slotsRefreshInterval` and after a MOVED;
   * when a slot's master changed, the gateway writes its links' records
   * again (`failover`). A map with a slot unserved (mid-failover) is not
   * compared: the change is reported once the new master serves.
   */
  private watchFailovers(cluster: import('ioredis').Cluster): void {
    let seen: string | null = slotMasters(cluster.slots);
    cluster.on('refresh', () => {
      const now = slotMasters(cluster.slots);
      if (now === null || now === seen) return;
      const moved = seen !== null;
      seen = now;
      if (moved && !this.closed) this.onResync?.('failover');
    });
  }

  /**
   * A master of a cluster that restarts before its replica is promoted
   * (within the cluster's node timeout: a supervisor's quick restart) keeps
   * its slots, so the slot map does not change, and comes back with what its
   * snapshot held, or nothing without persistence (its replica then copies
   * that). The epoch key lives in one slot only, so another master's loss
   * went unseen. Each master's run id tells it (`store-reset`), as a single
   * server's does: asked when the client connects to the master again (the
   * connection pool drops a node's connection when it goes and makes a new
   * one once the slot map names it again), and once per lease renewal.
   */
  private watchMasterRestarts(cluster: import('ioredis').Cluster): void {
    const runIds = new Map<string, string>();
    let asking = false;
    /** Whether the master's run id is another than when last asked (it restarted). */
    const restartedNow = async (n: Redis): Promise<boolean> => {
      const at = `${n.options.host}:${n.options.port}`;
      try {
        const id = /run_id:(\w+)/.exec(await n.info('server'))?.[1];
        if (id === undefined) return false;
        const before = runIds.get(at);
        runIds.set(at, id);
        return before !== undefined && before !== id;
      } catch {
        // unreachable now (one that went leaves the pool until it is back): compared when it answers
        return false;
      }
    };
    const reset = async () => {
      if (this.closed) return;
      // The lease first, as checkRunId does: if the master held the `{n}` slot, this node's lease and
      // last-seen time went with it, and other nodes neither report its entries, written again now,
      // nor keep them when read (a node not seen is dead). Left to the timer, its devices were offline
      // to every other node for up to a renewal after the master was back. A master just back may
      // refuse the first commands (its cluster state not yet ok): tried again, as at join.
      for (let attempt = 1; !this.closed; attempt++) {
        try {
          await this.renewLease();
          break;
        } catch {
          if (attempt >= 10) break;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      if (!this.closed) this.onResync?.('store-reset');
    };
    const check = async () => {
      const restarted = (await Promise.all(cluster.nodes('master').map(restartedNow))).some(Boolean);
      // A replica now is forgotten: promoted later, it is a failover, not a restart.
      for (const n of cluster.nodes('slave')) runIds.delete(`${n.options.host}:${n.options.port}`);
      if (restarted) await reset();
    };
    // A master's connection made again: asked at once (what a single server's reconnection does).
    cluster.on('+node', (n: Redis) => {
      if (this.closed || n.options.readOnly) return;
      void restartedNow(n).then((restarted) => (restarted ? reset() : undefined));
    });
    const tick = () => {
      if (asking || this.closed) return;
      asking = true;
      void check().finally(() => (asking = false));
    };
    this.runIdTimer = setInterval(tick, this.o.leaseRenewMs);
    this.runIdTimer.unref();
    tick();
  }

  /**
   * A Redis restarted from a snapshot (RDB, or an AOF fsynced each second,
   * after a crash) has the epoch and even this node's lease, so neither says
   * that the writes since the snapshot are gone (presence, sessions, known
   * devices). Its run id, new at every start, does: a connection that comes
   * back to another run id is a store that may have lost data.
   */
  private async checkRunId(): Promise<void> {
    let id: string | undefined;
    try {
      id = /run_id:(\w+)/.exec(await this.redis.info('server'))?.[1];
    } catch {
      return; // asked again at the next (re)connection
    }
    if (id === undefined) return;
    const before = this.runId;
    this.runId = id;
    if (before === null || before === id || this.nodeId === null || this.closed) return;
    // The lease first: it went with the data (or lapsed in the outage), and other nodes report this
    // node's entries, written again now, only while it holds one (and delete them as a dead node's
    // when its last-seen time is gone too). Left to the timer, the node's devices were offline to
    // every other node, and their pushes woke no one, for up to a renewal after it was back.
    await this.renewLease().catch(() => {});
    if (!this.closed) this.onResync?.('store-reset');
  }

  private async renewLease(): Promise<void> {
    if (this.nodeId === null || this.closed) return;
    const now = Date.now();
    const sent = performance.now();
    let prevRaw: string, epochRaw: string;
    try {
      [prevRaw, epochRaw] = await this.redis.llRenewLease(
        this.nk('node', this.nodeId), this.nk('epoch'), this.nk('seen', this.nodeId), this.nk('admin', this.nodeId), this.nk('nodes'),
        this.incarnation, this.o.leaseTtlMs, now, this.adminUrl ?? '', this.nodeId,
      );
    } catch (err) {
      this.leaseUnsure = true;
      throw err;
    }
    // A renewal that timed out is not withdrawn: ioredis still sends it (its offline queue, or
    // commands re-sent on reconnection), or a stopped Redis runs it once resumed. The first of them
    // to run after a lapse saw it (no previous holder), but its answer went unread, and the ones
    // after it find the lease ours again. So when renewals failed and no answer came for a lease's
    // time, the lease may have lapsed unseen: other nodes stopped seeing this node's presence and
    // woke no one here.
    const unsure = this.leaseUnsure && performance.now() - this.leaseAnsweredAt >= this.o.leaseTtlMs;
    this.leaseUnsure = false;
    this.leaseAnsweredAt = Math.max(this.leaseAnsweredAt, sent);
    const prev = prevRaw || null;
    const epoch = epochRaw || null;
    const first = this.epoch === null;
    if (epoch === null) {
      // No epoch: a store that is new, or that lost its data since we last looked.
      const mine = randomBytes(6).toString('base64url');
      const set = await this.redis.set(this.nk('epoch'), mine, 'NX');
      this.epoch = set === 'OK' ? mine : await this.redis.get(this.nk('epoch'));
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
    } else if (prev !== this.incarnation || unsure) {
      this.onResync?.('lease-lapsed');
    }
    // A lapsed lease is gone (prev null); one another incarnation renewed since ours, renewal after
    // renewal, is another live process under this id (both started at once, so the check at join
    // saw no lease). Told once; the re-assertion above keeps this node's presence written meanwhile.
    this.foreignRenewals = prev !== null && prev !== this.incarnation ? this.foreignRenewals + 1 : 0;
    if (this.foreignRenewals >= 2 && !this.duplicateTold) {
      this.duplicateTold = true;
      this.onFault?.(this.nodeIdInUse(this.nodeId), 'nodeId');
    }
  }

  /** When a node was last seen renewing its lease (wall ms; now if it holds one), or null if unknown. */
  async nodeSeenAt(nodeId: string): Promise<number | null> {
    const [lease, seen] = await this.redis.mget(this.nk('node', nodeId), this.nk('seen', nodeId));
    if (lease !== null) return Date.now();
    return seen === null ? null : Number(seen);
  }

  async route(nodeId: string, userId: string, deviceId: string): Promise<void> {
    await this.redis.publish(this.k('route', nodeId), JSON.stringify([userId, deviceId]));
  }

  /** Kicks, disconnects, `replaced` and `check` notices to another node (its route channel). */
  async control(nodeId: string, c: NodeControl): Promise<void> {
    const m: Control =
      c.kind === 'replaced'
        ? { k: 'replaced', u: c.userId, d: c.deviceId, c: c.connectionId, b: c.byConnectionId, r: c.resumed ? 1 : 0 }
        : c.kind === 'check'
          ? { k: 'check', u: c.userId, d: c.deviceId, c: c.connectionId }
          : c.kind === 'delivered'
            ? { k: 'delivered', u: c.userId, d: c.deviceId, ids: c.ids }
            : { k: c.kind, u: c.userId, ...(c.deviceId !== undefined ? { d: c.deviceId } : {}), ...(c.reconnectAfterMs !== undefined ? { ms: c.reconnectAfterMs } : {}) };
    const channel = this.k('route', nodeId);
    const text = JSON.stringify(m);
    const heard = await this.redis.publish(channel, text);
    // Nobody heard it: the node is between subscriptions (a reconnection), or gone. Unlike a wake-up,
    // whose message waits in its mailbox and whose loss a resubscription's flush makes good, a kick or
    // a notice lost here is lost for good. (A cluster's PUBLISH counts only its own node's listeners.)
    // A delivery report is not: the push waiting for it is bounded by its waitMs and answers queued without it.
    if (heard === 0 && !this.o.cluster && c.kind !== 'delivered') this.republish(nodeId, channel, text);
  }

  /**
   * Publishes again, backing off, until someone hears it, the node's lease is
   * gone (its links went with it), or a lease's time passed (a node that has
   * not resubscribed by then has lapsed and re-asserts everything). Bounded in
   * number: beyond MAX_REPUBLISHING at once, a notice is given up.
   */
  private republish(nodeId: string, channel: string, text: string): void {
    if (this.republishing >= MAX_REPUBLISHING) return;
    this.republishing++;
    const until = Date.now() + this.o.leaseTtlMs;
    let delay = 50;
    const attempt = async (): Promise<void> => {
      if (this.closed || Date.now() > until) return void this.republishing--;
      try {
        if ((await this.redis.get(this.nk('node', nodeId))) === null || (await this.redis.publish(channel, text)) > 0) return void this.republishing--;
      } catch {
        // the store is down: tried again below, within the lease's time
      }
      delay = Math.min(delay * 2, 1000);
      setTimeout(() => void attempt(), delay).unref();
    };
    setTimeout(() => void attempt(), delay).unref();
  }

  /** A best-effort DATA frame to every connection of every other node. */
  async broadcast(payload: Uint8Array, id?: string): Promise<void> {
    const m: Control = { k: 'broadcast', p: Buffer.from(payload).toString('base64'), from: this.nodeId ?? '', ...(id !== undefined ? { id } : {}) };
    await this.redis.publish(this.k('all'), JSON.stringify(m));
  }

  /** Says where this node's admin port is, for the dashboards of the others (kept with the lease). */
  async advertise(adminUrl: string): Promise<void> {
    this.adminUrl = adminUrl;
    if (this.nodeId !== null) await this.redis.set(this.nk('admin', this.nodeId), adminUrl, 'PX', this.o.leaseTtlMs);
  }

  /** Every node holding a lease, with its admin URL (null: none advertised). */
  async directory(): Promise<{ nodeId: string; adminUrl: string | null }[]> {
    const ids = await this.nodes();
    if (ids.length === 0) return [];
    const urls = await this.redis.mget(...ids.map((n) => this.nk('admin', n)));
    return ids.map((nodeId, i) => ({ nodeId, adminUrl: urls[i] || null }));
  }

  /** Nodes that hold a lease now (ids), read from the `{n}` slot. */
  async nodes(): Promise<string[]> {
    // The directory is kept by the lease script; the leases themselves say who is alive now.
    const ids = await this.redis.zrangebyscore(this.nk('nodes'), Date.now() - this.o.leaseTtlMs, '+inf');
    const live = await this.liveNodes(ids);
    return ids.filter((n) => live.has(n)).sort();
  }

  /** The incarnation holding each node's lease (absent: no lease). */
  async liveNodes(nodeIds: string[]): Promise<Map<string, string>> {
    if (nodeIds.length === 0) return new Map();
    const vals = await this.redis.mget(...nodeIds.map((n) => this.nk('node', n)));
    const out = new Map<string, string>();
    nodeIds.forEach((n, i) => vals[i] !== null && out.set(n, vals[i]!));
    return out;
  }

  // Presence.

  /** A user's presence hash, and beside it the other-node entries its current entries displaced (TAKE_BACK). */
  private presenceKeys(userId: string): [string, string] {
    return [this.uk(userId, 'presence'), this.uk(userId, 'displaced')];
  }

  /**
   * An entry as stored: with this process's incarnation when it is this node's, so a node restarted
   * under the same id does not revive it, and a number of its own (`w`), so that a write of the same
   * entry again (after a lapse) differs from the one another node read and took for a dead node's.
   */
  private presenceJson(entry: PresenceEntry): string {
    return storeJson(entry.nodeId === this.nodeId ? { ...entry, inc: this.incarnation, w: ++this.presenceWrites } : entry);
  }

  async setOnline(entry: PresenceEntry, maxDevices = 0): Promise<PresenceEntry | undefined> {
    const old = await this.redis.llSetOnline(...this.presenceKeys(entry.userId), entry.deviceId, this.presenceJson(entry), entry.nodeId, PRESENCE_TTL_MS, maxDevices);
    if (old === null) {
      // Refused at the bound. A read of the user's presence drops what it finds of dead nodes and
      // old incarnations (see devices), so the device's next try is not refused for a crashed node's entries.
      void this.devices(entry.userId).catch(() => {});
      throw tooManyDevices(maxDevices);
    }
    // With its incarnation (`inc`): if it is put back (setOffline), it is put back as it was. (Its
    // write's number is not needed there: it only tells writes apart, see presenceJson.)
    if (!old) return undefined;
    const { w: _w, ...prev } = JSON.parse(old) as PresenceEntry & { w?: number };
    return prev;
  }

  async restoreOnline(entry: PresenceEntry): Promise<boolean> {
    return (await this.redis.llRestoreOnline(...this.presenceKeys(entry.userId), entry.deviceId, this.presenceJson(entry), entry.connectionId, PRESENCE_TTL_MS)) === 1;
  }

  async touchPresence(userId: string): Promise<void> {
    await this.redis.llTouchPresence(...this.presenceKeys(userId), PRESENCE_TTL_MS);
  }

  async presenceOf(userId: string, deviceId: string): Promise<PresenceEntry | undefined> {
    const raw = await this.redis.hget(this.uk(userId, 'presence'), deviceId);
    if (!raw) return undefined;
    const { inc: _inc, w: _w, ...entry } = JSON.parse(raw) as PresenceEntry & { inc?: string; w?: number };
    return entry;
  }

  async takeBackOnline(userId: string, deviceId: string, connectionId: string): Promise<PresenceEntry | undefined> {
    const prev = await this.redis.llTakeBack(...this.presenceKeys(userId), deviceId, connectionId);
    if (!prev) return undefined;
    const { inc: _inc, w: _w, ...entry } = JSON.parse(prev) as PresenceEntry & { inc?: string; w?: number };
    return entry;
  }

  async setOffline(userId: string, deviceId: string, connectionId: string, putBack?: PresenceEntry): Promise<boolean> {
    // A put-back entry is the one setOnline returned, incarnation and all.
    const keys = this.presenceKeys(userId);
    const r = putBack ? await this.redis.llSetOffline(...keys, deviceId, connectionId, storeJson(putBack)) : await this.redis.llSetOffline(...keys, deviceId, connectionId);
    return r === 1;
  }

  async devices(userId: string): Promise<PresenceEntry[]> {
    const key = this.uk(userId, 'presence');
    const raws = Object.values(await this.redis.hgetall(key));
    const all = raws.map((raw) => JSON.parse(raw) as PresenceEntry & { inc?: string; w?: number });
    const live = await this.liveNodes([...new Set(all.map((e) => e.nodeId))]);
    const out: PresenceEntry[] = [];
    const leaseless: { raw: string; entry: PresenceEntry }[] = [];
    all.forEach(({ inc, w: _w, ...e }, i) => {
      const holder = live.get(e.nodeId);
      if (holder !== undefined && (inc === undefined || inc === holder)) out.push(e);
      // An earlier incarnation of a node that is alive again: those links are gone for sure.
      else if (holder !== undefined) void this.redis.llSetOffline(...this.presenceKeys(userId), e.deviceId, e.connectionId).catch(() => {});
      else leaseless.push({ raw: raws[i], entry: e });
    });
    // A node without a lease may only have lapsed (it writes its presence again when it notices, within
    // a renewal), so its entries stay; one not seen for DEAD_NODE_LEASES leases is gone (crashed, and
    // its id, random per start, never comes back): its entries would stay in Redis for ever.
    if (leaseless.length > 0) void this.forgetDeadNodes(userId, leaseless).catch(() => {});
    return out;
  }

  private async forgetDeadNodes(userId: string, entries: { raw: string; entry: PresenceEntry }[]): Promise<void> {
    const nodes = [...new Set(entries.map((e) => e.entry.nodeId))];
    const seen = await this.redis.mget(...nodes.map((n) => this.nk('seen', n)));
    const before = Date.now() - DEAD_NODE_LEASES * this.o.leaseTtlMs;
    const dead = new Set(nodes.filter((_, i) => seen[i] === null || Number(seen[i]) < before));
    // Only the entry as read: a node that was only stalled may have renewed since the last-seen
    // times were read and written the entry again (the same link's), which must stay.
    for (const { raw, entry } of entries) if (dead.has(entry.nodeId)) await this.redis.llForgetPresence(...this.presenceKeys(userId), entry.deviceId, raw);
  }

  // Sessions.

  async saveSession(record: SessionRecord, expiresAt: number, unlessOpenElsewhere?: string): Promise<void> {
    const ttl = Math.max(1, Math.round(expiresAt - Date.now()));
    // The record first, then its place in the device's index: a crash in between leaves a
    // record no index counts, which expires with its TTL. The oldest beyond the bound go.
    const key = this.k('session', record.resumeToken);
    const value = storeJson({ record, expiresAt });
    if (unlessOpenElsewhere === undefined) await this.redis.set(key, value, 'PX', ttl);
    else if (!(await this.redis.llSaveSessionUnlessOpen(key, value, ttl, unlessOpenElsewhere))) return;
    const evicted = await this.redis.llIndexSession(this.uk(record.userId, 'dsess', enc(record.deviceId)), record.resumeToken, Date.now(), this.o.maxSessionsPerDevice, ttl);
    if (evicted.length > 0) await Promise.all(evicted.map((t) => this.redis.del(this.k('session', t))));
  }

  async loadSession(resumeToken: string, now: number): Promise<SessionRecord | undefined> {
    const raw = await this.redis.get(this.k('session', resumeToken));
    if (!raw) return undefined;
    const s = JSON.parse(raw) as { record: SessionRecord; expiresAt: number };
    return s.expiresAt > now ? s.record : undefined;
  }

  async deleteSession(resumeToken: string): Promise<void> {
    // Its place in the device's index goes too, or it would count against the device's bound
    // until the index evicted it, pushing out an older session still resumable.
    const raw = await this.redis.getdel(this.k('session', resumeToken));
    if (!raw) return;
    const { record } = JSON.parse(raw) as { record: SessionRecord };
    await this.redis.zrem(this.uk(record.userId, 'dsess', enc(record.deviceId)), resumeToken);
  }

  // Mailboxes.

  /** A mailbox's list, meta hash, the ids it holds, and its shard's expiry index (one slot). */
  private mailbox(userId: string, deviceId: string): { list: string; meta: string; ids: string; expiry: string; id: string } {
    const shard = shardOf(userId, this.o.mailboxShards);
    const id = this.mbid(userId, deviceId);
    return { list: this.mk(shard, 'mb', id), meta: this.mk(shard, 'mbm', id), ids: this.mk(shard, 'mbi', id), expiry: this.mk(shard, 'expiry'), id };
  }

  /**
   * Waits until `waitReplicas` replicas hold this connection's writes so far.
   * On a cluster the WAIT rides in a pipeline with a key of the written slot,
   * so it goes to that slot's master.
   */
  private async replicated(slotKey: string): Promise<void> {
    if (this.o.waitReplicas === 0) return;
    const res = await this.redis.pipeline().exists(slotKey).call('WAIT', this.o.waitReplicas, this.o.waitTimeoutMs).exec();
    const acked = Number(res?.[1]?.[1] ?? 0);
    if (res?.[1]?.[0]) throw res[1][0];
    if (acked < this.o.waitReplicas) throw new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `a write reached ${acked} of ${this.o.waitReplicas} replicas within ${this.o.waitTimeoutMs} ms`);
  }

  async enqueue(userId: string, deviceId: string, msg: Omit<QueuedMessage, 'seq'>, limits: MailboxLimits): Promise<QueuedMessage[]> {
    // Stored as JSON null, an expiry the shard's sweep script cannot compare: every sweep of it failed.
    if (!Number.isFinite(msg.expiresAt)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `enqueue: expiresAt must be a finite wall-clock time (got ${msg.expiresAt})`);
    const mb = this.mailbox(userId, deviceId);
    const json: Json = { id: msg.id, p: Buffer.from(msg.payload).toString('base64'), n: msg.payload.length, e: msg.enqueuedAt, x: msg.expiresAt, s: 0 };
    if (msg.reportTo) Object.assign(json, { w: msg.reportTo.nodeId, wu: msg.reportTo.until });
    // The user's known devices live (as a key) as long as the message may: a device past its known
    // time is still known while it holds messages (knownDevices), as in the memory store, but only
    // if the key with its record has not expired first.
    const [evicted] = await Promise.all([
      this.redis.llEnqueue(mb.list, mb.meta, mb.expiry, mb.ids, storeJson(json), msg.payload.length, limits.maxMessages, limits.maxBytes, mb.id, msg.expiresAt, toWellFormed(msg.id), msg.enqueuedAt, limits.liveHolder ?? ''),
      this.redis.llExtendTtl(this.uk(userId, 'known'), Math.max(1, Math.round(msg.expiresAt - Date.now()))),
    ]);
    await this.replicated(mb.list);
    return evicted.map(toMessage);
  }

  async take(userId: string, deviceId: string, holder: string, afterSeq: number, session?: string): Promise<QueuedMessage[]> {
    const mb = this.mailbox(userId, deviceId);
    return (await (session === undefined ? this.redis.llTake(mb.list, mb.meta, holder, afterSeq) : this.redis.llTake(mb.list, mb.meta, holder, afterSeq, session))).map(toMessage);
  }

  async ackResumed(userId: string, deviceId: string, session: string, upTo: number): Promise<QueuedMessage[]> {
    const mb = this.mailbox(userId, deviceId);
    return (await this.redis.llAckResumed(mb.list, mb.meta, mb.expiry, mb.ids, session, upTo, mb.id)).map(toMessage);
  }

  async ack(userId: string, deviceId: string, holder: string, upTo: number, answeredUpTo?: number): Promise<QueuedMessage[]> {
    const mb = this.mailbox(userId, deviceId);
    const keys = [mb.list, mb.meta, mb.expiry, mb.ids, this.mk(shardOf(userId, this.o.mailboxShards), 'mba', mb.id)] as const;
    const raw = answeredUpTo === undefined ? await this.redis.llAck(...keys, holder, upTo, mb.id) : await this.redis.llAck(...keys, holder, upTo, mb.id, answeredUpTo);
    return raw.map(toMessage);
  }

  /** The next `sweepShardsPerCall` shards' due messages (`all`: every shard's). */
  async expire(now: number, all = false): Promise<{ userId: string; deviceId: string; message: QueuedMessage }[]> {
    const total = this.o.mailboxShards;
    const n = all ? total : Math.min(total, this.o.sweepShardsPerCall);
    const first = all ? 0 : this.sweepCursor;
    this.sweepCursor = (this.sweepCursor + n) % total;
    const shards = Array.from({ length: n }, (_, i) => (first + i) % total);
    // A shard's call reads a bounded part of what is due (see EXPIRE); with `all`, called again until none is left.
    const sweep = async (s: number): Promise<string[]> => {
      const got: string[] = [];
      for (;;) {
        const [more, ...flat] = await this.redis.llExpire(this.mk(s, 'expiry'), now, this.mk(s, 'mb', ''), this.mk(s, 'mbm', ''), this.mk(s, 'mbi', ''), this.expireBudget);
        for (const x of flat) got.push(x);
        if (!all || more !== 1) return got;
      }
    };
    const flats = await Promise.all(shards.map(sweep));
    const out: { userId: string; deviceId: string; message: QueuedMessage }[] = [];
    for (const flat of flats) {
      for (let i = 0; i < flat.length; i += 2) {
        const [u, d] = flat[i].split(':').map(decodeURIComponent);
        out.push({ userId: u, deviceId: d, message: toMessage(flat[i + 1]) });
      }
    }
    return out;
  }

  async depth(userId: string, deviceId: string): Promise<number> {
    return this.redis.llen(this.mailbox(userId, deviceId).list);
  }

  async rememberDevice(userId: string, deviceId: string, until: number): Promise<void> {
    const evicted = await this.redis.llRemember(this.uk(userId, 'known'), this.uk(userId, 'presence'), deviceId, until, this.o.maxKnownDevicesPerUser, Math.max(1, Math.round(until - Date.now())), this.uk(userId, ''));
    if (evicted.length > 0) await Promise.all(evicted.map((t) => this.redis.del(this.k('session', t))));
  }

  async knownDevices(userId: string, now: number): Promise<string[]> {
    const key = this.uk(userId, 'known');
    const all = await this.redis.hgetall(key);
    const out: string[] = [];
    for (const [deviceId, until] of Object.entries(all)) {
      if (Number(until) > now || (await this.depth(userId, deviceId)) > 0) out.push(deviceId);
      else await this.redis.llForgetDevice(key, deviceId, until);
    }
    return out;
  }

  async seenInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const at = await this.redis.zscore(this.uk(userId, 'in', enc(deviceId)), id);
    return at !== null && Number(at) > now - this.o.dedupWindowMs;
  }

  async markInbound(userId: string, deviceId: string, id: string, now: number, claimedBy?: string): Promise<boolean> {
    const key = this.uk(userId, 'in', enc(deviceId));
    const fresh =
      (claimedBy === undefined
        ? await this.redis.llMarkInbound(key, id, this.o.dedupIdsPerDevice, now, this.o.dedupWindowMs)
        : await this.redis.llMarkInboundClaimed(key, this.claimKey(userId, deviceId, id), id, this.o.dedupIdsPerDevice, now, this.o.dedupWindowMs, claimedBy)) === 1;
    await this.replicated(key);
    return fresh;
  }

  async claimInbound(userId: string, deviceId: string, id: string, holder: string, ttlMs: number, now: number): Promise<'claimed' | 'held' | 'seen'> {
    const r = await this.redis.llClaimInbound(this.uk(userId, 'in', enc(deviceId)), this.claimKey(userId, deviceId, id), id, holder, ttlMs, now, this.o.dedupWindowMs);
    return r === 2 ? 'seen' : r === 1 ? 'claimed' : 'held';
  }

  async releaseInbound(userId: string, deviceId: string, id: string, holder: string): Promise<void> {
    await this.redis.llReleaseInbound(this.claimKey(userId, deviceId, id), holder);
  }

  /** A client message id's claim (in the user's slot, beside the device's inbound ids: one script reads both). */
  private claimKey(userId: string, deviceId: string, id: string): string {
    return this.uk(userId, 'claim', enc(deviceId), enc(id));
  }

  /** Drops the connections at once without releasing the lease: what a crash does (for tests and drills). */
  abandon(): void {
    this.closed = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.subTimer) clearInterval(this.subTimer);
    if (this.runIdTimer) clearInterval(this.runIdTimer);
    this.sub?.disconnect();
    this.redis.disconnect();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.subTimer) clearInterval(this.subTimer);
    if (this.runIdTimer) clearInterval(this.runIdTimer);
    this.sub?.disconnect();
    // Not connected (Redis unreachable or not answering): a command, the lease's deletion or
    // QUIT, would wait out the command timeout for nothing, and hold up serve's stop. The lease lapses.
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    // A clean stop gives up the lease at once; a crash lets it lapse.
    if (this.nodeId !== null) {
      await Promise.all([this.redis.del(this.nk('node', this.nodeId)), this.redis.zrem(this.nk('nodes'), this.nodeId)]).catch(() => {});
    }
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Each slot range's master ("first-last@host:port,..."), or null while a slot has none. */
export function slotMasters(slots: string[][]): string | null {
  if (slots.length < 16384) return null;
  let out = '';
  let from = 0;
  for (let i = 1; i <= 16384; i++) {
    const master = slots[from]?.[0];
    if (master === undefined) return null;
    if (i === 16384 || slots[i]?.[0] !== master) {
      out += `${from}-${i - 1}@${master},`;
      from = i;
    }
  }
  return out;
}
