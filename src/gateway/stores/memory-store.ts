import { UserDevices } from '../device-map.js';
import { idKey } from '../id-key.js';
import type { MailboxLimits, PresenceEntry, QueuedMessage, SessionRecord, Store } from './store.js';
import { LonglinkError, tooManyDevices } from '../../protocol/errors.js';
import { ExpiryQueue } from './expiry-queue.js';

interface Mailbox {
  /** Whose it is (a key split at NUL would cut a user id that holds one). */
  userId: string;
  deviceId: string;
  /** The connection the mailbox is bound to ('' for none yet). */
  holder: string;
  /** Its session ('' if not told): what a resume's lastSeq acknowledges (see ackResumed). */
  session: string;
  /** The highest number handed out: numbers never go back, whoever holds the mailbox. */
  highSeq: number;
  messages: QueuedMessage[];
  bytes: number;
  /**
   * No message expires before it (a lower bound: an ack or an eviction only
   * raises the true earliest); Infinity once the mailbox is dropped. The
   * sweep takes only the mailboxes with something due from `expiry`, in
   * order of this time: reading every queued message every sweepIntervalMs
   * blocked the event loop 300 ms a second at a million held, and looking at
   * every mailbox 6–8 ms a second at 200,000.
   */
  nextExpiry: number;
  /**
   * The ids held, once the mailbox holds ID_INDEX_FROM messages (below, a scan is as quick and a
   * set would cost every mailbox of one message): an enqueue checked a retried id by reading every
   * message held, 1,000 cache misses per device of a push, 40 ms per push to 100 devices of one
   * user with full mailboxes that never acknowledge.
   */
  ids: Set<string> | null;
}

/** Messages a mailbox holds before it keeps a set of their ids. */
const ID_INDEX_FROM = 16;

/**
 * What the store keeps of one (user, device): presence, resume tokens and the
 * known-device mark in one object and one map entry, since nearly every
 * connected device has all three (three maps and their wrappers cost about
 * 250 bytes more per connection).
 */
class DeviceEntry {
  /** Presence, as fields ('' while offline): an entry object of its own cost about 100 bytes a device. */
  connectionId = '';
  nodeId = '';
  transport: PresenceEntry['transport'] = 'tcp';
  since = 0;
  clientInfo: PresenceEntry['clientInfo'] = NO_INFO;
  /** Resume tokens, oldest first: a lone token as itself. */
  tokens: string | string[] | null = null;
  /**
   * Remembered until (wall ms), or -1; while remembered, linked in the store's known list, or
   * LINGERING: past its time, known only while its mailbox holds messages (the lingering list).
   */
  knownUntil = -1;
  prevKnown: DeviceEntry | null = null;
  nextKnown: DeviceEntry | null = null;

  constructor(
    readonly userId: string,
    readonly deviceId: string,
  ) {}

  get online(): boolean {
    return this.connectionId !== '';
  }

  presence(): PresenceEntry {
    return { userId: this.userId, deviceId: this.deviceId, connectionId: this.connectionId, nodeId: this.nodeId, transport: this.transport, since: this.since, clientInfo: this.clientInfo };
  }
}

const NO_INFO: PresenceEntry['clientInfo'] = Object.freeze({});

/** One device's recent client message ids: id → when recorded (wall ms), oldest first. */
interface DedupWindow {
  ids: Map<string, number>;
  bytes: number;
  /** When the newest id was recorded (the sweep reads it instead of walking the ids). */
  last: number;
  user: UserDedup;
}

/** One user's dedup windows (maxDedupBytesPerUser): by dedupKey, least recently recorded first, and their bytes. */
interface UserDedup {
  userId: string;
  windows: Map<string, DedupWindow>;
  bytes: number;
}

/**
 * The default store: plain maps in this process. Nothing survives a restart,
 * and nothing is shared between processes.
 */
export interface MemoryStoreOptions {
  /**
   * Session records kept per (user, device): a new session beyond it drops
   * the oldest. A client reconnecting without resuming (or an attacker with
   * one valid token) otherwise leaves a record per HELLO for sessionTtlMs.
   */
  maxSessionsPerDevice?: number;
  /** Session records kept in all; beyond it the least recently saved goes. */
  maxSessions?: number;
  /**
   * Estimated heap bytes of session records whose link has ended (kept only
   * for a resume): beyond it the least recently saved of them go. Records of
   * open links are not counted (the connection limit bounds those); a
   * connect-and-close loop makes nothing else.
   */
  maxDetachedSessionBytes?: number;
  /**
   * Of those, what one user's records may hold: beyond it the user's own least recently saved go.
   * Without it a few users reconnecting without resuming, with made-up device ids (4 records per
   * device, 1,024 devices each), filled maxDetachedSessionBytes and every other user's session
   * went: their resume failed (`session-lost`).
   */
  maxDetachedSessionBytesPerUser?: number;
  /**
   * The duplicate-detection window for client message ids, per device: at
   * most this many ids, none older than `dedupWindowMs`. A re-send older than
   * the window is delivered again (at least once still holds).
   */
  dedupIdsPerDevice?: number;
  dedupWindowMs?: number;
  /** Bytes of remembered ids in all (UTF-16 length plus 64 per entry); beyond it the least recently active device's oldest ids go. */
  maxDedupBytes?: number;
  /**
   * Of those, what one user's devices may hold: beyond it the user's own least recently active
   * device's oldest ids go. Without it one user recording ids under a few device ids (four
   * connections, a few thousand DATA a second) pushed every other user's ids out of the record,
   * and their re-sends after a reconnect were handed over twice.
   */
  maxDedupBytesPerUser?: number;
  /**
   * Devices remembered per user (for pushes while offline); a new one at it evicts the ones not
   * online seen longest ago. When every known device is online, the new one is remembered beyond it.
   */
  maxKnownDevicesPerUser?: number;
  /** Devices remembered in all; beyond it the one seen longest ago goes. */
  maxKnownDevices?: number;
  /**
   * Devices the store keeps records of per user (known, or holding sessions,
   * or online). A new one beyond it drops the records of one that is not
   * online: one holding only sessions first, else the one seen longest ago.
   * Without it a connect-and-close loop under one user with new device ids
   * grew the user's entries to every session held (250,000), and each new
   * device, and each push to the user, walked them all.
   */
  maxDevicesPerUser?: number;
  /**
   * Payload bytes queued in all mailboxes. A message past it for a device
   * that is not online is refused (LL_ERR_QUEUE_FULL: its push reports
   * `failed` for that device) rather than evict another user's; one for an
   * online device is taken (it is delivered and acknowledged at once), up to
   * twice this bound in all. The per-device bounds alone let pushes to many
   * devices (the chat relay's `@user`, from one sender) hold gigabytes for
   * the messages' TTL.
   */
  maxQueuedBytes?: number;
  /**
   * Payload bytes queued for one user's devices together, online or not:
   * beyond, a push to that user fails for the device (LL_ERR_QUEUE_FULL).
   * Without it one user's devices that never acknowledge (up to
   * maxDevicesPerUser, each holding its per-device bound) could hold the
   * whole of maxQueuedBytes, and every other user's offline pushes failed.
   */
  maxQueuedBytesPerUser?: number;
}

export const MEMORY_STORE_DEFAULTS = {
  maxSessionsPerDevice: 4,
  maxSessions: 250_000,
  maxDetachedSessionBytes: 32 << 20,
  maxDetachedSessionBytesPerUser: 256 << 10,
  dedupIdsPerDevice: 1024,
  dedupWindowMs: 24 * 3600_000,
  maxDedupBytes: 64 << 20,
  maxDedupBytesPerUser: 2 << 20,
  maxKnownDevicesPerUser: 64,
  maxKnownDevices: 200_000,
  maxQueuedBytes: 256 << 20,
  maxQueuedBytesPerUser: 16 << 20,
  maxDevicesPerUser: 1024,
};

/** What a session record costs beyond its clientInfo's characters (measured: 1,840 bytes with 1,000 characters). */
const SESSION_RECORD_BYTES = 800;
/** What one clientInfo entry holds in the heap besides its two strings (a dictionary slot and the string headers). */
const CLIENT_INFO_ENTRY_BYTES = 48;

function sessionBytes(r: SessionRecord): number {
  // The ids too: a gateway bounds them (maxIdBytes, 1,024 bytes each), but they are the record's own strings.
  let n = SESSION_RECORD_BYTES + r.userId.length + r.deviceId.length;
  // An entry costs its property's slot besides its strings (a hook's clientInfo is bounded by its JSON only).
  for (const [k, v] of Object.entries(r.clientInfo)) n += CLIENT_INFO_ENTRY_BYTES + k.length + String(v).length;
  return n;
}

/**
 * A session record as the store keeps it: the caller's fields copied, with
 * the expiry beside them (a record and a wrapper for the expiry took 32 bytes
 * more per session). A load hands out a copy, so what a caller does to it
 * reaches the store only by saving it, as with a networked store.
 */
class StoredSession {
  readonly sessionId: string;
  readonly resumeToken: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly clientInfo: SessionRecord['clientInfo'];
  readonly createdAt: number;
  readonly inSeq: number;
  readonly openOn: string | undefined;

  constructor(
    r: SessionRecord,
    readonly expiresAt: number,
  ) {
    this.sessionId = r.sessionId;
    this.resumeToken = r.resumeToken;
    this.userId = r.userId;
    this.deviceId = r.deviceId;
    this.clientInfo = r.clientInfo;
    this.createdAt = r.createdAt;
    this.inSeq = r.inSeq;
    this.openOn = r.openOn;
  }

  record(): SessionRecord {
    const r: SessionRecord = { sessionId: this.sessionId, resumeToken: this.resumeToken, userId: this.userId, deviceId: this.deviceId, clientInfo: this.clientInfo, createdAt: this.createdAt, inSeq: this.inSeq };
    if (this.openOn !== undefined) r.openOn = this.openOn;
    return r;
  }
}

/** Messages the per-user bound takes from one mailbox: its first `count`, of `bytes` payload bytes. */
interface Eviction {
  box: Mailbox;
  count: number;
  bytes: number;
}

/**
 * The `knownUntil` of a device past its time whose mailbox still holds messages. Left at the head
 * of the known list, every such device was looked at again by every sweep (each second): 70 ms a
 * sweep at 200,000 (devices unseen for knownDeviceTtlMs that still get a push a day never empty).
 * In a list of their own, they go when their mailbox empties.
 */
const LINGERING = 0;

interface KnownList {
  head: DeviceEntry | null;
  tail: DeviceEntry | null;
}

/** Session records a sweep looks at, every 1,024 saves: twice as many, so it keeps ahead of the saves. */
const SWEEP_STEP = 2048;

/** What an id costs in the dedup record beyond its characters (map entry, number, key). */
const DEDUP_ENTRY_BYTES = 64;

/**
 * One key per (user, device), whatever the ids hold: the user's length first. Ids are any strings
 * (NUL included); joined by a NUL, user `a\0b` device `c` and user `a` device `b\0c` shared a
 * window, and one's message ids made the other's messages duplicates, dropped.
 */
const dedupKey = idKey;

export class MemoryStore implements Store {
  readonly kind = 'memory';
  /** Presence, resume tokens and the known-device mark of each (user, device), in one entry. */
  private readonly devicesByUser = new UserDevices<DeviceEntry>();
  /** By resume token, least recently saved first (a save moves a record to the end). */
  private readonly sessions = new Map<string, StoredSession>();
  /** Records of ended links by token, least recently saved first, with their estimated bytes. */
  private readonly detached = new Map<string, number>();
  private detachedBytes = 0;
  /** The same by user (maxDetachedSessionBytesPerUser): their tokens, least recently saved first, and bytes. */
  private readonly detachedByUser = new Map<string, { tokens: Map<string, number>; bytes: number }>();
  private readonly limits: Required<MemoryStoreOptions>;

  constructor(opts: MemoryStoreOptions = {}) {
    this.limits = { ...MEMORY_STORE_DEFAULTS, ...opts };
  }
  private saves = 0;
  /** Where the session sweep goes on from (see sweep). */
  private sweeper: IterableIterator<string> | null = null;
  /**
   * Only while they hold messages: an emptied mailbox is deleted (its numbering restarts above the
   * next holder's afterSeq). By user, so the per-user bound finds every mailbox of the user,
   * including one of a device whose other records are gone (the known-device bound dropped it).
   */
  private readonly mailboxes = new UserDevices<Mailbox>();
  /** Mailboxes by their nextExpiry, for the sweep. */
  private readonly expiry = new ExpiryQueue<Mailbox>((m) => m.nextExpiry);
  private mailboxCount = 0;
  /** Every known device in order of `knownUntil` (a remember moves it to the end), for the sweep and the bound. */
  private readonly known: KnownList = { head: null, tail: null };
  /** Known devices past their time still holding messages (LINGERING), in the order their time ended. */
  private readonly lingering: KnownList = { head: null, tail: null };
  /** Devices in both lists. */
  private knownCount = 0;
  /** By dedupKey, least recently recorded first. */
  private readonly dedup = new Map<string, DedupWindow>();
  private dedupBytes = 0;
  private readonly dedupByUser = new Map<string, UserDedup>();
  /** Payload bytes in all mailboxes (maxQueuedBytes), and per user with any queued (maxQueuedBytesPerUser). */
  private queuedBytes = 0;
  private readonly userQueuedBytes = new Map<string, number>();
  /** Of those, the bytes queued for the user's devices not online (what the per-user bound may evict). */
  private readonly userOfflineBytes = new Map<string, number>();

  /**
   * The entry looked up last. A handshake asks for the same device's entry
   * in three calls (rememberDevice, saveSession, setOnline); at 10,000
   * devices each lookup in the big table is a few cache misses. Cleared when
   * its entry leaves the table.
   */
  private recent: DeviceEntry | null = null;

  private find(userId: string, deviceId: string): DeviceEntry | undefined {
    const r = this.recent;
    if (r !== null && r.userId === userId && r.deviceId === deviceId) return r;
    const e = this.devicesByUser.get(userId, deviceId);
    if (e !== undefined) this.recent = e;
    return e;
  }

  private entry(userId: string, deviceId: string): DeviceEntry {
    let e = this.find(userId, deviceId);
    if (e === undefined) {
      if (this.devicesByUser.countOf(userId) >= this.limits.maxDevicesPerUser) this.shedDeviceOf(userId);
      this.devicesByUser.set(userId, deviceId, (this.recent = e = new DeviceEntry(userId, deviceId)));
    }
    return e;
  }

  /** Drops the records of one device of a user at its bound: one holding only sessions, else the one seen longest ago; never an online one. */
  private shedDeviceOf(userId: string): void {
    let victim: DeviceEntry | undefined;
    for (const e of this.devicesByUser.values(userId)) {
      if (!e.online && (victim === undefined || e.knownUntil < victim.knownUntil)) victim = e;
    }
    if (victim === undefined) return;
    const tokens = victim.tokens === null ? [] : typeof victim.tokens === 'string' ? [victim.tokens] : [...victim.tokens];
    for (const t of tokens) this.forget(t);
    this.forgetDevice(victim);
    this.tidy(victim);
  }

  /** Drops an entry that holds nothing any more. */
  private tidy(e: DeviceEntry): void {
    if (!e.online && e.tokens === null && e.knownUntil < 0 && this.devicesByUser.get(e.userId, e.deviceId) === e) {
      this.devicesByUser.delete(e.userId, e.deviceId);
      if (this.recent === e) this.recent = null;
    }
  }

  // The handshake's four calls answer at once (see Store): no promise per connection set up.
  setOnline(entry: PresenceEntry, maxDevices = 0): void {
    if (maxDevices > 0) this.admitDevice(entry.userId, entry.deviceId, maxDevices);
    const e = this.entry(entry.userId, entry.deviceId);
    if (!e.online) this.offlineBytesMoved(e, -1);
    e.connectionId = entry.connectionId;
    e.nodeId = entry.nodeId;
    e.transport = entry.transport;
    e.since = entry.since;
    e.clientInfo = entry.clientInfo;
  }

  /** Throws too-many-devices for a device not online while its user has `max` online (see PresenceStore.setOnline). */
  private admitDevice(userId: string, deviceId: string, max: number): void {
    // Fewer records than the bound: fewer online. Else a walk of the user's records (maxDevicesPerUser at most), only for a new device.
    if (this.devicesByUser.countOf(userId) < max || this.find(userId, deviceId)?.online) return;
    let online = 0;
    for (const e of this.devicesByUser.values(userId)) if (e.online && ++online >= max) throw tooManyDevices(max);
  }

  async setOffline(userId: string, deviceId: string, connectionId: string, putBack?: PresenceEntry): Promise<boolean> {
    const e = this.devicesByUser.get(userId, deviceId);
    if (!e || !e.online || e.connectionId !== connectionId) return false;
    if (putBack) {
      this.setOnline(putBack);
      return true;
    }
    e.connectionId = e.nodeId = '';
    e.clientInfo = NO_INFO;
    this.offlineBytesMoved(e, 1);
    this.tidy(e);
    return true;
  }

  async devices(userId: string): Promise<PresenceEntry[]> {
    const out: PresenceEntry[] = [];
    for (const e of this.devicesByUser.values(userId)) if (e.online) out.push(e.presence());
    return out;
  }

  saveSession(record: SessionRecord, expiresAt: number, unlessOpenElsewhere?: string): void {
    const token = record.resumeToken;
    if (unlessOpenElsewhere !== undefined) {
      const held = this.sessions.get(token)?.openOn;
      if (held !== undefined && held !== unlessOpenElsewhere) return;
    }
    const prev = this.sessions.get(token);
    const known = this.sessions.delete(token);
    this.sessions.set(token, new StoredSession(record, expiresAt));
    if (!known) {
      const e = this.entry(record.userId, record.deviceId);
      if (e.tokens === null) e.tokens = token;
      else if (typeof e.tokens === 'string') e.tokens = [e.tokens, token];
      else e.tokens.push(token);
      for (let excess = (typeof e.tokens === 'string' ? 1 : e.tokens.length) - this.limits.maxSessionsPerDevice; excess > 0 && e.tokens !== null; excess--) {
        this.forget(typeof e.tokens === 'string' ? e.tokens : e.tokens[0]);
      }
      while (this.sessions.size > this.limits.maxSessions) this.forget(this.sessions.keys().next().value!);
    }
    // Only a known record can be detached (the detached list is a subset of sessions).
    if (prev !== undefined) this.unDetach(token, prev.userId);
    if (record.openOn === undefined && this.sessions.has(token)) {
      const bytes = sessionBytes(record);
      this.detached.set(token, bytes);
      this.detachedBytes += bytes;
      let mine = this.detachedByUser.get(record.userId);
      if (mine === undefined) this.detachedByUser.set(record.userId, (mine = { tokens: new Map(), bytes: 0 }));
      mine.tokens.set(token, bytes);
      mine.bytes += bytes;
      // The user's own first: one user's churn must not push out another user's records.
      while (mine.bytes > this.limits.maxDetachedSessionBytesPerUser && mine.tokens.size > 1) this.forget(mine.tokens.keys().next().value!);
      while (this.detachedBytes > this.limits.maxDetachedSessionBytes && this.detached.size > 1) this.forget(this.detached.keys().next().value!);
    }
    // Expired sessions are dropped on load; sweep now and then so ones never
    // loaded again do not pile up.
    if (++this.saves % 1024 === 0) this.sweep(Date.now());
  }

  loadSession(resumeToken: string, now: number): SessionRecord | undefined {
    const s = this.sessions.get(resumeToken);
    if (!s) return undefined;
    if (s.expiresAt <= now) {
      this.forget(resumeToken);
      return undefined;
    }
    return s.record();
  }

  async queueTotals(): Promise<{ mailboxes: number; messages: number; bytes: number }> {
    let messages = 0;
    let bytes = 0;
    for (const m of this.mailboxes.all()) {
      messages += m.messages.length;
      bytes += m.bytes;
    }
    return { mailboxes: this.mailboxCount, messages, bytes };
  }

  async deleteSession(resumeToken: string): Promise<void> {
    this.forget(resumeToken);
  }

  private unDetach(token: string, userId: string): void {
    const bytes = this.detached.get(token);
    if (bytes === undefined) return;
    this.detached.delete(token);
    this.detachedBytes -= bytes;
    const mine = this.detachedByUser.get(userId)!;
    mine.tokens.delete(token);
    mine.bytes -= bytes;
    if (mine.tokens.size === 0) this.detachedByUser.delete(userId);
  }

  private forget(token: string): void {
    const s = this.sessions.get(token);
    if (!s) return;
    this.sessions.delete(token);
    this.unDetach(token, s.userId);
    const e = this.devicesByUser.get(s.userId, s.deviceId);
    if (e === undefined) return;
    if (e.tokens === token) e.tokens = null;
    else if (Array.isArray(e.tokens)) {
      const i = e.tokens.indexOf(token);
      if (i >= 0) e.tokens.splice(i, 1);
      if (e.tokens.length === 1) e.tokens = e.tokens[0];
    }
    this.tidy(e);
  }

  /** Session records held (for tests and the bound's proof). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Estimated bytes of the records of ended links. */
  get detachedSessionBytes(): number {
    return this.detachedBytes;
  }

  /**
   * Looks at the next SWEEP_STEP records from where the last sweep stopped. A
   * Map iterator stays valid while entries come and go, so no copy is made:
   * copying every record every 1,024 saves made garbage in proportion to all
   * sessions held, per connection opened.
   */
  private sweep(now: number): void {
    let it = this.sweeper ?? this.sessions.keys();
    for (let n = Math.min(SWEEP_STEP, this.sessions.size); n > 0; n--) {
      let r = it.next();
      if (r.done) {
        // Once round: start again.
        it = this.sessions.keys();
        r = it.next();
        if (r.done) break;
      }
      if (this.sessions.get(r.value)!.expiresAt <= now) this.forget(r.value);
    }
    this.sweeper = it;
  }

  private mailbox(userId: string, deviceId: string): Mailbox {
    let m = this.mailboxes.get(userId, deviceId);
    if (!m) {
      this.mailboxes.set(userId, deviceId, (m = { userId, deviceId, holder: '', session: '', highSeq: 0, messages: [], bytes: 0, nextExpiry: Infinity, ids: null }));
      this.mailboxCount++;
    }
    return m;
  }

  private dropMailbox(m: Mailbox): void {
    if (this.mailboxes.get(m.userId, m.deviceId) !== m) return;
    this.mailboxes.delete(m.userId, m.deviceId);
    this.mailboxCount--;
    // Its entry in the expiry queue is stale from now on.
    m.nextExpiry = Infinity;
    // A device past its time was known only for its messages.
    const e = this.devicesByUser.get(m.userId, m.deviceId);
    if (e !== undefined && e.knownUntil === LINGERING) this.forgetDevice(e);
  }

  private hasMessagesFor(userId: string, deviceId: string): boolean {
    return this.mailboxCount > 0 && this.mailboxes.get(userId, deviceId) !== undefined;
  }

  async enqueue(userId: string, deviceId: string, msg: Omit<QueuedMessage, 'seq'>, limits: MailboxLimits): Promise<QueuedMessage[]> {
    const len = msg.payload.length;
    let m = this.mailboxes.get(userId, deviceId);
    // Held already (a retried push): not queued twice. From the newest: a retry comes soon after.
    // A copy whose time is over is not held (it is never sent again): the mailbox's expired
    // messages go now, reported with the evicted, and the retry is queued.
    const expired: QueuedMessage[] = [];
    if (m && (m.ids === null || m.ids.has(msg.id))) {
      let held: QueuedMessage | undefined;
      for (let i = m.messages.length - 1; i >= 0 && !held; i--) if (m.messages[i].id === msg.id) held = m.messages[i];
      if (held) {
        if (held.expiresAt > msg.enqueuedAt) return [];
        this.expireBox(m, msg.enqueuedAt, { push: (e) => expired.push(e.message) });
        m = this.mailboxes.get(userId, deviceId);
      }
    }
    // The oldest the device's own bounds push out to take it (never the new one): their bytes are room.
    // Not those numbered for the live link (limits.liveHolder), written or about to be: the device
    // acknowledges them. If the rest make no room, the new one is the one dropped.
    let drop = 0;
    let freed = 0;
    let from = 0;
    if (m) {
      if (limits.liveHolder !== undefined && m.holder === limits.liveHolder) {
        from = m.messages.length;
        while (from > 0 && m.messages[from - 1].seq === 0) from--;
      }
      let n = m.messages.length + 1;
      let bytes = m.bytes + len;
      for (; n > 1 && (n > limits.maxMessages || bytes > limits.maxBytes) && from + drop < m.messages.length; n--) {
        const l = m.messages[from + drop++].payload.length;
        bytes -= l;
        freed += l;
      }
      if (n > 1 && (n > limits.maxMessages || bytes > limits.maxBytes)) return [...expired.map((e) => ({ ...e, deviceId })), { ...msg, seq: 0 }];
    }
    // Past the user's bound, the oldest messages of the user's other devices that are not online go
    // first (stale installs must not lock out the live one); if they do not make room, it is refused.
    // Never below one device's own bound: a user with one device may always hold what it may.
    const userCap = Math.max(this.limits.maxQueuedBytesPerUser, limits.maxBytes);
    let mine = (this.userQueuedBytes.get(userId) ?? 0) + len - freed;
    let plan: Eviction[] = [];
    const online = this.find(userId, deviceId)?.online === true;
    if (mine > userCap) {
      // Only the user's other devices not online can make room: when they cannot, it is refused
      // without a walk of the user's mailboxes (one per device of a push to a thousand devices
      // online, all of them past the bound, was a million steps a push).
      const room = (this.userOfflineBytes.get(userId) ?? 0) - (m !== undefined && !online ? m.bytes : 0);
      if (mine - room > userCap) {
        throw new LonglinkError('LL_ERR_QUEUE_FULL', `the mailboxes of user ${userId} hold ${mine - len + freed} bytes; ${len} more would pass maxQueuedBytesPerUser (${userCap})`);
      }
      plan = this.planUserEviction(userId, deviceId, mine - userCap);
      const made = plan.reduce((n, p) => n + p.bytes, 0);
      if (mine - made > userCap) {
        throw new LonglinkError('LL_ERR_QUEUE_FULL', `the mailboxes of user ${userId} hold ${mine - len + freed} bytes; ${len} more would pass maxQueuedBytesPerUser (${userCap})`);
      }
      mine -= made;
      freed += made;
    }
    // A device online here takes it all the same: it is on its way out, and refusing it would turn a
    // store full of messages for offline devices into an outage for everyone connected.
    const total = this.queuedBytes + len - freed;
    if (total > this.limits.maxQueuedBytes && (total > 2 * this.limits.maxQueuedBytes || !online)) {
      throw new LonglinkError('LL_ERR_QUEUE_FULL', `the mailboxes hold ${this.queuedBytes} bytes; ${len} more would pass maxQueuedBytes (${this.limits.maxQueuedBytes})`);
    }
    const evicted: QueuedMessage[] = [];
    for (const p of plan) {
      for (const e of p.box.messages.splice(0, p.count)) {
        p.box.ids?.delete(e.id);
        evicted.push({ ...e, deviceId: p.box.deviceId });
      }
      p.box.bytes -= p.bytes;
      this.queuedBytes -= p.bytes;
      this.addOfflineBytes(userId, -p.bytes); // planned only from devices not online
      if (p.box.messages.length === 0) this.dropMailbox(p.box);
    }
    const box = m ?? this.mailbox(userId, deviceId);
    const own = drop > 0 ? box.messages.splice(from, drop) : [];
    if (box.ids !== null) for (const e of own) box.ids.delete(e.id);
    const ownBytes = own.reduce((n, e) => n + e.payload.length, 0);
    box.messages.push({ ...msg, seq: 0 });
    if (box.ids !== null) box.ids.add(msg.id);
    else if (box.messages.length >= ID_INDEX_FROM) box.ids = new Set(box.messages.map((e) => e.id));
    if (msg.expiresAt < box.nextExpiry) {
      box.nextExpiry = msg.expiresAt;
      this.expiry.push(box, box.nextExpiry);
      // Also here, not only at the sweep: mailboxes made and dropped between sweeps (or with no sweep running) leave entries.
      this.expiry.compact(() => this.mailboxes.all(), this.mailboxCount);
    }
    box.bytes += len - ownBytes;
    this.queuedBytes += len - ownBytes;
    if (!online) this.addOfflineBytes(userId, len - ownBytes);
    this.userQueuedBytes.set(userId, mine);
    const out = evicted.length > 0 ? [...own, ...evicted] : own;
    return expired.length > 0 ? [...expired.map((e) => ({ ...e, deviceId })), ...out] : out;
  }

  /**
   * The oldest messages of `userId`'s devices other than `deviceId` that are
   * not online, oldest first across them, until `need` bytes: how many of
   * each mailbox's first messages would go. May fall short. A merge over a
   * heap of the mailboxes by their next message: a scan of every mailbox per
   * message taken cost 4 million steps (about 60 ms) for one 64 KiB push to a user
   * whose 1,000 offline devices held small messages.
   */
  private planUserEviction(userId: string, deviceId: string, need: number): Eviction[] {
    const heap: Eviction[] = [];
    const head = (c: Eviction) => c.box.messages[c.count].enqueuedAt;
    const down = (i: number) => {
      for (;;) {
        const l = 2 * i + 1;
        let m = i;
        if (l < heap.length && head(heap[l]) < head(heap[m])) m = l;
        if (l + 1 < heap.length && head(heap[l + 1]) < head(heap[m])) m = l + 1;
        if (m === i) return;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    };
    const plan: Eviction[] = [];
    for (const box of this.mailboxes.values(userId)) {
      if (box.deviceId === deviceId || box.messages.length === 0 || this.find(userId, box.deviceId)?.online) continue;
      heap.push({ box, count: 0, bytes: 0 });
    }
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
    for (let got = 0; got < need && heap.length > 0; ) {
      const next = heap[0];
      const l = next.box.messages[next.count++].payload.length;
      if (next.count === 1) plan.push(next);
      next.bytes += l;
      got += l;
      if (next.count === next.box.messages.length) {
        const last = heap.pop()!;
        if (heap.length === 0) break;
        heap[0] = last;
      }
      down(0);
    }
    return plan;
  }

  holdsNothingFor(userId: string, deviceId: string): boolean {
    // Most gateways hold no queued message at all: no key to build.
    return !this.hasMessagesFor(userId, deviceId);
  }

  async take(userId: string, deviceId: string, holder: string, afterSeq: number, session = ''): Promise<QueuedMessage[]> {
    // No mailbox yet: nothing to number, and none is made (most devices never get a message queued).
    const m = this.mailboxes.get(userId, deviceId);
    if (!m) return [];
    let next = Math.max(m.highSeq, afterSeq);
    const rebind = m.holder !== holder;
    m.holder = holder;
    m.session = session;
    const msgs = m.messages;
    // Bound to the same holder, the mailbox is its numbered messages, ascending, then new ones
    // (seq 0): what it returns is a suffix, found from the end. A flush per push walked all of a
    // full mailbox (1,000) for each device of a user whose devices never acknowledge.
    let from = 0;
    if (!rebind) {
      from = msgs.length;
      while (from > 0 && (msgs[from - 1].seq === 0 || msgs[from - 1].seq > afterSeq)) from--;
    }
    const out: QueuedMessage[] = [];
    for (let i = from; i < msgs.length; i++) {
      const msg = msgs[i];
      if (rebind || msg.seq === 0) msg.seq = ++next;
      if (msg.seq > afterSeq) out.push(msg);
    }
    m.highSeq = next;
    return out;
  }

  async ack(userId: string, deviceId: string, holder: string, upTo: number): Promise<QueuedMessage[]> {
    const m = this.mailboxes.get(userId, deviceId);
    if (!m || m.holder !== holder) return [];
    return this.removeUpTo(m, userId, deviceId, upTo);
  }

  async ackResumed(userId: string, deviceId: string, session: string, upTo: number): Promise<QueuedMessage[]> {
    const m = this.mailboxes.get(userId, deviceId);
    if (!m || m.session === '' || m.session !== session) return [];
    return this.removeUpTo(m, userId, deviceId, upTo);
  }

  /** Removes the mailbox's numbered messages with seq ≤ upTo (its first ones: numbers ascend). */
  private removeUpTo(m: Mailbox, userId: string, deviceId: string, upTo: number): QueuedMessage[] {
    let n = 0;
    while (n < m.messages.length && m.messages[n].seq !== 0 && m.messages[n].seq <= upTo) n++;
    const acked = m.messages.splice(0, n);
    if (m.ids !== null) for (const a of acked) m.ids.delete(a.id);
    let removed = 0;
    for (const a of acked) {
      m.bytes -= a.payload.length;
      this.queuedBytes -= a.payload.length;
      this.unqueued(userId, a.payload.length);
      removed += a.payload.length;
    }
    if (removed > 0 && this.find(userId, deviceId)?.online !== true) this.addOfflineBytes(userId, -removed);
    if (m.messages.length === 0) this.dropMailbox(m);
    return acked;
  }

  async expire(now: number): Promise<{ userId: string; deviceId: string; message: QueuedMessage }[]> {
    const out: { userId: string; deviceId: string; message: QueuedMessage }[] = [];
    this.expiry.takeDue(now, (m) => this.expireBox(m, now, out));
    // Entries of mailboxes dropped or moved are left behind until their time: bounded by the live ones.
    this.expiry.compact(() => this.mailboxes.all(), this.mailboxCount);
    this.sweepKnown(now);
    this.sweepDedup(now);
    return out;
  }

  /** Removes the mailbox's messages whose time is over (at `now`) into `out`. */
  private expireBox(m: Mailbox, now: number, out: { push(e: { userId: string; deviceId: string; message: QueuedMessage }): void }): void {
    {
      const { userId, deviceId } = m;
      let nextExpiry = Infinity;
      const before = m.bytes;
      m.messages = m.messages.filter((message) => {
        const x = message.expiresAt;
        if (x > now) {
          if (x < nextExpiry) nextExpiry = x;
          return true;
        }
        m.bytes -= message.payload.length;
        this.queuedBytes -= message.payload.length;
        this.unqueued(userId, message.payload.length);
        m.ids?.delete(message.id);
        out.push({ userId, deviceId, message });
        return false;
      });
      m.nextExpiry = nextExpiry;
      if (m.bytes < before && this.devicesByUser.get(userId, deviceId)?.online !== true) this.addOfflineBytes(userId, m.bytes - before);
      if (m.messages.length === 0) this.dropMailbox(m);
      else this.expiry.push(m, nextExpiry);
    }
  }

  async depth(userId: string, deviceId: string): Promise<number> {
    return this.mailboxes.get(userId, deviceId)?.messages.length ?? 0;
  }

  rememberDevice(userId: string, deviceId: string, until: number): void {
    const prev = this.find(userId, deviceId);
    if (prev !== undefined && prev.knownUntil >= until) return;
    // A new device at the user's bound: forget the ones not online seen longest ago, back to one below
    // it where they allow (no walk while the user has fewer entries). An online one is never forgotten
    // (pushes from other nodes find it by it, as the Redis store, which also drops its sessions and
    // dedup ids); when every known device is online, the new one is remembered beyond the bound all the
    // same, as in the Redis store, where only the known list can find a device's state to evict it.
    if ((prev === undefined || prev.knownUntil < 0) && this.devicesByUser.countOf(userId) >= this.limits.maxKnownDevicesPerUser) {
      let n = 0;
      const offline: DeviceEntry[] = [];
      for (const e of this.devicesByUser.values(userId)) {
        if (e.knownUntil < 0) continue;
        n++;
        if (!e.online) offline.push(e);
      }
      if (n >= this.limits.maxKnownDevicesPerUser) {
        offline.sort((a, b) => a.knownUntil - b.knownUntil);
        for (let i = 0; i < Math.min(offline.length, n - this.limits.maxKnownDevicesPerUser + 1); i++) this.forgetDevice(offline[i]);
      }
    }
    const e = this.entry(userId, deviceId);
    if (e.knownUntil >= 0) this.unlinkKnown(e);
    e.knownUntil = until;
    this.linkKnown(e);
    // Past their time first: they were seen longest ago.
    while (this.knownCount > this.limits.maxKnownDevices) this.forgetDevice((this.lingering.head ?? this.known.head)!);
  }

  /** The list `e` belongs in, by its knownUntil. */
  private listOf(e: DeviceEntry): KnownList {
    return e.knownUntil === LINGERING ? this.lingering : this.known;
  }

  private linkKnown(e: DeviceEntry): void {
    const l = this.listOf(e);
    e.prevKnown = l.tail;
    e.nextKnown = null;
    if (l.tail) l.tail.nextKnown = e;
    else l.head = e;
    l.tail = e;
    this.knownCount++;
  }

  private unlinkKnown(e: DeviceEntry): void {
    const l = this.listOf(e);
    if (e.prevKnown) e.prevKnown.nextKnown = e.nextKnown;
    else l.head = e.nextKnown;
    if (e.nextKnown) e.nextKnown.prevKnown = e.prevKnown;
    else l.tail = e.prevKnown;
    e.prevKnown = e.nextKnown = null;
    this.knownCount--;
  }

  private forgetDevice(e: DeviceEntry): void {
    if (e.knownUntil < 0) return;
    this.unlinkKnown(e);
    e.knownUntil = -1;
    this.tidy(e);
  }

  /** Drops devices past their time (the order is by time, so it stops at the first that is not). */
  private sweepKnown(now: number): void {
    for (let e = this.known.head; e !== null; ) {
      const next = e.nextKnown;
      if (e.knownUntil > now) break;
      if (!this.hasMessagesFor(e.userId, e.deviceId)) this.forgetDevice(e);
      else {
        // Still holding messages: kept, out of the sweep's way, until its mailbox empties (dropMailbox).
        this.unlinkKnown(e);
        e.knownUntil = LINGERING;
        this.linkKnown(e);
      }
      e = next;
    }
  }

  async knownDevices(userId: string, now: number): Promise<string[]> {
    const out: string[] = [];
    for (const e of [...this.devicesByUser.values(userId)]) {
      if (e.knownUntil < 0) continue;
      if (e.knownUntil > now || this.hasMessagesFor(userId, e.deviceId)) out.push(e.deviceId);
      else this.forgetDevice(e);
    }
    return out;
  }

  /** Devices remembered (for tests and the bound's proof). */
  get knownDeviceCount(): number {
    return this.knownCount;
  }

  async seenInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const at = this.dedup.get(dedupKey(userId, deviceId))?.ids.get(id);
    return at !== undefined && at > now - this.limits.dedupWindowMs;
  }

  async markInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const key = dedupKey(userId, deviceId);
    let w = this.dedup.get(key);
    if (w) {
      this.dedup.delete(key);
      w.user.windows.delete(key);
    } else {
      let user = this.dedupByUser.get(userId);
      if (user === undefined) this.dedupByUser.set(userId, (user = { userId, windows: new Map(), bytes: 0 }));
      w = { ids: new Map(), bytes: 0, last: now, user };
    }
    // Most recently recorded last: the bounds evict from the least active device.
    this.dedup.set(key, w);
    w.user.windows.set(key, w);
    const at = w.ids.get(id);
    if (at !== undefined && at > now - this.limits.dedupWindowMs) return false;
    w.ids.delete(id);
    w.ids.set(id, now);
    w.last = Math.max(w.last, now);
    this.addDedup(w, id.length + DEDUP_ENTRY_BYTES);
    for (const [old, t] of w.ids) {
      if (w.ids.size <= this.limits.dedupIdsPerDevice && t > now - this.limits.dedupWindowMs) break;
      this.dropId(key, w, old);
    }
    // The user's own first (never the id just recorded): one user's ids must not push out another's.
    for (const user = w.user; user.bytes > this.limits.maxDedupBytesPerUser; ) {
      const [k, lru] = user.windows.entries().next().value!;
      const old = lru.ids.keys().next().value!;
      if (lru === w && old === id) break;
      this.dropId(k, lru, old);
    }
    while (this.dedupBytes > this.limits.maxDedupBytes) {
      const [k, lru] = this.dedup.entries().next().value!;
      this.dropId(k, lru, lru.ids.keys().next().value!);
    }
    return true;
  }

  private addDedup(w: DedupWindow, bytes: number): void {
    w.bytes += bytes;
    w.user.bytes += bytes;
    this.dedupBytes += bytes;
  }

  private dropId(key: string, w: DedupWindow, id: string): void {
    w.ids.delete(id);
    this.addDedup(w, -(id.length + DEDUP_ENTRY_BYTES));
    if (w.ids.size === 0) this.dropWindow(key, w);
  }

  private dropWindow(key: string, w: DedupWindow): void {
    this.dedup.delete(key);
    w.user.windows.delete(key);
    if (w.user.windows.size === 0) this.dedupByUser.delete(w.user.userId);
  }

  /** Devices whose newest id is past the window go whole; the order is by last record, so it stops early. */
  private sweepDedup(now: number): void {
    for (const [key, w] of this.dedup) {
      if (w.last > now - this.limits.dedupWindowMs) break;
      this.dedupBytes -= w.bytes;
      w.user.bytes -= w.bytes;
      this.dropWindow(key, w);
    }
  }

  /** What the store holds beyond sessions and presence, for the budget's proof. */
  get footprint(): { mailboxes: number; knownDevices: number; dedupDevices: number; dedupBytes: number } {
    return { mailboxes: this.mailboxCount, knownDevices: this.knownCount, dedupDevices: this.dedup.size, dedupBytes: this.dedupBytes };
  }

  async close(): Promise<void> {
    this.devicesByUser.clear();
    this.recent = null;
    this.sessions.clear();
    this.detached.clear();
    this.detachedBytes = 0;
    this.detachedByUser.clear();
    this.mailboxes.clear();
    this.mailboxCount = 0;
    this.expiry.clear();
    this.known.head = this.known.tail = this.lingering.head = this.lingering.tail = null;
    this.knownCount = 0;
    this.dedup.clear();
    this.dedupBytes = 0;
    this.dedupByUser.clear();
    this.queuedBytes = 0;
    this.userQueuedBytes.clear();
    this.userOfflineBytes.clear();
  }

  /** A device went online (-1) or offline (+1): its queued bytes leave or join its user's offline bytes. */
  private offlineBytesMoved(e: DeviceEntry, sign: 1 | -1): void {
    const box = this.mailboxCount > 0 ? this.mailboxes.get(e.userId, e.deviceId) : undefined;
    if (box !== undefined) this.addOfflineBytes(e.userId, sign * box.bytes);
  }

  private addOfflineBytes(userId: string, delta: number): void {
    if (delta === 0) return;
    const left = (this.userOfflineBytes.get(userId) ?? 0) + delta;
    if (left > 0) this.userOfflineBytes.set(userId, left);
    else this.userOfflineBytes.delete(userId);
  }

  private unqueued(userId: string, bytes: number): void {
    const left = (this.userQueuedBytes.get(userId) ?? 0) - bytes;
    if (left > 0) this.userQueuedBytes.set(userId, left);
    else this.userQueuedBytes.delete(userId);
  }
}
