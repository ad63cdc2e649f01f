import { UserDevices } from '../device-map.js';
import type { MailboxLimits, PresenceEntry, QueuedMessage, SessionRecord, Store } from './store.js';

interface Mailbox {
  /** The connection the mailbox is bound to ('' for none yet). */
  holder: string;
  /** The highest number handed out: numbers never go back, whoever holds the mailbox. */
  highSeq: number;
  messages: QueuedMessage[];
  bytes: number;
}

/** One device's recent client message ids: id → when recorded (wall ms), oldest first. */
interface DedupWindow {
  ids: Map<string, number>;
  bytes: number;
  /** When the newest id was recorded (the sweep reads it instead of walking the ids). */
  last: number;
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
   * The duplicate-detection window for client message ids, per device: at
   * most this many ids, none older than `dedupWindowMs`. A re-send older than
   * the window is delivered again (at least once still holds).
   */
  dedupIdsPerDevice?: number;
  dedupWindowMs?: number;
  /** Bytes of remembered ids in all (UTF-16 length plus 64 per entry); beyond it the least recently active device's oldest ids go. */
  maxDedupBytes?: number;
  /** Devices remembered per user (for pushes while offline); a new one beyond it evicts the one seen longest ago. */
  maxKnownDevicesPerUser?: number;
  /** Devices remembered in all; beyond it the one seen longest ago goes. */
  maxKnownDevices?: number;
}

export const MEMORY_STORE_DEFAULTS = {
  maxSessionsPerDevice: 4,
  maxSessions: 250_000,
  maxDetachedSessionBytes: 32 << 20,
  dedupIdsPerDevice: 1024,
  dedupWindowMs: 24 * 3600_000,
  maxDedupBytes: 64 << 20,
  maxKnownDevicesPerUser: 64,
  maxKnownDevices: 200_000,
};

/** What a session record costs beyond its clientInfo's characters (measured: 1,840 bytes with 1,000 characters). */
const SESSION_RECORD_BYTES = 800;

function sessionBytes(r: SessionRecord): number {
  let n = SESSION_RECORD_BYTES;
  for (const [k, v] of Object.entries(r.clientInfo)) n += k.length + String(v).length;
  return n;
}

/** What an id costs in the dedup record beyond its characters (map entry, number, key). */
const DEDUP_ENTRY_BYTES = 64;

export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly presence = new UserDevices<PresenceEntry>();
  /** By resume token, least recently saved first (a save moves a record to the end). */
  private readonly sessions = new Map<string, { record: SessionRecord; expiresAt: number }>();
  /** Resume tokens by (user, device), oldest first. */
  private readonly deviceSessions = new UserDevices<string[]>();
  /** Records of ended links by token, least recently saved first, with their estimated bytes. */
  private readonly detached = new Map<string, number>();
  private detachedBytes = 0;
  private readonly limits: Required<MemoryStoreOptions>;

  constructor(opts: MemoryStoreOptions = {}) {
    this.limits = { ...MEMORY_STORE_DEFAULTS, ...opts };
  }
  private saves = 0;
  /** Only while they hold messages: an emptied mailbox is deleted (its numbering restarts above the next holder's afterSeq). */
  private readonly mailboxes = new Map<string, Mailbox>();
  /** By user: device → remembered until (wall ms). */
  private readonly known = new UserDevices<number>();
  /** Every known device by `user\0device`, in order of `until` (a remember moves it to the end), for the sweep and the bound. */
  private readonly knownOrder = new Map<string, number>();
  /** By `user\0device`, least recently recorded first. */
  private readonly dedup = new Map<string, DedupWindow>();
  private dedupBytes = 0;

  async setOnline(entry: PresenceEntry): Promise<void> {
    this.presence.set(entry.userId, entry.deviceId, entry);
  }

  async setOffline(userId: string, deviceId: string, connectionId: string): Promise<boolean> {
    const entry = this.presence.get(userId, deviceId);
    if (!entry || entry.connectionId !== connectionId) return false;
    return this.presence.delete(userId, deviceId);
  }

  async devices(userId: string): Promise<PresenceEntry[]> {
    return [...this.presence.values(userId)];
  }

  async saveSession(record: SessionRecord, expiresAt: number): Promise<void> {
    const token = record.resumeToken;
    const known = this.sessions.delete(token);
    this.sessions.set(token, { record, expiresAt });
    if (!known) {
      let tokens = this.deviceSessions.get(record.userId, record.deviceId);
      if (!tokens) this.deviceSessions.set(record.userId, record.deviceId, (tokens = []));
      tokens.push(token);
      while (tokens.length > this.limits.maxSessionsPerDevice) this.forget(tokens.shift()!);
      while (this.sessions.size > this.limits.maxSessions) this.forget(this.sessions.keys().next().value!);
    }
    this.unDetach(token);
    if (record.openOn === undefined && this.sessions.has(token)) {
      const bytes = sessionBytes(record);
      this.detached.set(token, bytes);
      this.detachedBytes += bytes;
      while (this.detachedBytes > this.limits.maxDetachedSessionBytes && this.detached.size > 1) this.forget(this.detached.keys().next().value!);
    }
    // Expired sessions are dropped on load; sweep now and then so ones never
    // loaded again do not pile up.
    if (++this.saves % 1024 === 0) this.sweep(Date.now());
  }

  async loadSession(resumeToken: string, now: number): Promise<SessionRecord | undefined> {
    const s = this.sessions.get(resumeToken);
    if (!s) return undefined;
    if (s.expiresAt <= now) {
      this.forget(resumeToken);
      return undefined;
    }
    return s.record;
  }

  async queueTotals(): Promise<{ mailboxes: number; messages: number; bytes: number }> {
    let messages = 0;
    let bytes = 0;
    for (const m of this.mailboxes.values()) {
      messages += m.messages.length;
      bytes += m.bytes;
    }
    return { mailboxes: this.mailboxes.size, messages, bytes };
  }

  async deleteSession(resumeToken: string): Promise<void> {
    this.forget(resumeToken);
  }

  private unDetach(token: string): void {
    const bytes = this.detached.get(token);
    if (bytes === undefined) return;
    this.detached.delete(token);
    this.detachedBytes -= bytes;
  }

  private forget(token: string): void {
    const s = this.sessions.get(token);
    if (!s) return;
    this.sessions.delete(token);
    this.unDetach(token);
    const tokens = this.deviceSessions.get(s.record.userId, s.record.deviceId);
    if (!tokens) return;
    const i = tokens.indexOf(token);
    if (i >= 0) tokens.splice(i, 1);
    if (tokens.length === 0) this.deviceSessions.delete(s.record.userId, s.record.deviceId);
  }

  /** Session records held (for tests and the bound's proof). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Estimated bytes of the records of ended links. */
  get detachedSessionBytes(): number {
    return this.detachedBytes;
  }

  private sweep(now: number): void {
    for (const [token, s] of [...this.sessions]) if (s.expiresAt <= now) this.forget(token);
  }

  private mailbox(userId: string, deviceId: string): Mailbox {
    const key = `${userId}\u0000${deviceId}`;
    let m = this.mailboxes.get(key);
    if (!m) this.mailboxes.set(key, (m = { holder: '', highSeq: 0, messages: [], bytes: 0 }));
    return m;
  }

  async enqueue(userId: string, deviceId: string, msg: Omit<QueuedMessage, 'seq'>, limits: MailboxLimits): Promise<QueuedMessage[]> {
    const m = this.mailbox(userId, deviceId);
    m.messages.push({ ...msg, seq: 0 });
    m.bytes += msg.payload.length;
    const evicted: QueuedMessage[] = [];
    while (m.messages.length > 1 && (m.messages.length > limits.maxMessages || m.bytes > limits.maxBytes)) {
      const old = m.messages.shift()!;
      m.bytes -= old.payload.length;
      evicted.push(old);
    }
    return evicted;
  }

  async take(userId: string, deviceId: string, holder: string, afterSeq: number): Promise<QueuedMessage[]> {
    const key = `${userId}\u0000${deviceId}`;
    // No mailbox yet: nothing to number, and none is made (most devices never get a message queued).
    if (!this.mailboxes.has(key)) return [];
    const m = this.mailbox(userId, deviceId);
    let next = Math.max(m.highSeq, afterSeq);
    const rebind = m.holder !== holder;
    m.holder = holder;
    const out: QueuedMessage[] = [];
    for (const msg of m.messages) {
      if (rebind || msg.seq === 0) msg.seq = ++next;
      if (msg.seq > afterSeq) out.push(msg);
    }
    m.highSeq = next;
    return out;
  }

  async ack(userId: string, deviceId: string, holder: string, upTo: number): Promise<QueuedMessage[]> {
    const m = this.mailboxes.get(`${userId}\u0000${deviceId}`);
    if (!m || m.holder !== holder) return [];
    let n = 0;
    while (n < m.messages.length && m.messages[n].seq !== 0 && m.messages[n].seq <= upTo) n++;
    const acked = m.messages.splice(0, n);
    for (const a of acked) m.bytes -= a.payload.length;
    if (m.messages.length === 0) this.mailboxes.delete(`${userId}\u0000${deviceId}`);
    return acked;
  }

  async expire(now: number): Promise<{ userId: string; deviceId: string; message: QueuedMessage }[]> {
    const out: { userId: string; deviceId: string; message: QueuedMessage }[] = [];
    for (const [key, m] of this.mailboxes) {
      if (!m.messages.some((x) => x.expiresAt <= now)) continue;
      const [userId, deviceId] = key.split('\u0000');
      m.messages = m.messages.filter((message) => {
        if (message.expiresAt > now) return true;
        m.bytes -= message.payload.length;
        out.push({ userId, deviceId, message });
        return false;
      });
      if (m.messages.length === 0) this.mailboxes.delete(key);
    }
    this.sweepKnown(now);
    this.sweepDedup(now);
    return out;
  }

  async depth(userId: string, deviceId: string): Promise<number> {
    return this.mailboxes.get(`${userId}\u0000${deviceId}`)?.messages.length ?? 0;
  }

  async rememberDevice(userId: string, deviceId: string, until: number): Promise<void> {
    const prev = this.known.get(userId, deviceId);
    if (prev !== undefined && prev >= until) return;
    if (prev === undefined) {
      // A new device beyond the user's bound: forget the one seen longest ago.
      let n = 0;
      let oldest: [string, number] | undefined;
      for (const e of this.known.entries(userId)) {
        n++;
        if (!oldest || e[1] < oldest[1]) oldest = e;
      }
      if (oldest && n >= this.limits.maxKnownDevicesPerUser) this.forgetDevice(userId, oldest[0]);
    }
    this.known.set(userId, deviceId, until);
    const key = `${userId}\u0000${deviceId}`;
    this.knownOrder.delete(key);
    this.knownOrder.set(key, until);
    while (this.knownOrder.size > this.limits.maxKnownDevices) {
      const [u, d] = this.knownOrder.keys().next().value!.split('\u0000');
      this.forgetDevice(u, d);
    }
  }

  private forgetDevice(userId: string, deviceId: string): void {
    this.known.delete(userId, deviceId);
    this.knownOrder.delete(`${userId}\u0000${deviceId}`);
  }

  /** Drops devices past their time (the order is by time, so it stops at the first that is not). */
  private sweepKnown(now: number): void {
    for (const [key, until] of this.knownOrder) {
      if (until > now) break;
      const [u, d] = key.split('\u0000');
      // Still holding messages: kept until they are delivered or expire.
      if (this.mailboxes.has(key)) continue;
      this.forgetDevice(u, d);
    }
  }

  async knownDevices(userId: string, now: number): Promise<string[]> {
    const out: string[] = [];
    for (const [deviceId, until] of [...this.known.entries(userId)]) {
      if (until > now || (this.mailboxes.get(`${userId}\u0000${deviceId}`)?.messages.length ?? 0) > 0) out.push(deviceId);
      else this.forgetDevice(userId, deviceId);
    }
    return out;
  }

  /** Devices remembered (for tests and the bound's proof). */
  get knownDeviceCount(): number {
    return this.knownOrder.size;
  }

  async seenInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const at = this.dedup.get(`${userId}\u0000${deviceId}`)?.ids.get(id);
    return at !== undefined && at > now - this.limits.dedupWindowMs;
  }

  async markInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean> {
    const key = `${userId}\u0000${deviceId}`;
    let w = this.dedup.get(key);
    if (w) this.dedup.delete(key);
    else w = { ids: new Map(), bytes: 0, last: now };
    // Most recently recorded last: the process bound evicts from the least active device.
    this.dedup.set(key, w);
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
    while (this.dedupBytes > this.limits.maxDedupBytes) {
      const [k, lru] = this.dedup.entries().next().value!;
      this.dropId(k, lru, lru.ids.keys().next().value!);
    }
    return true;
  }

  private addDedup(w: DedupWindow, bytes: number): void {
    w.bytes += bytes;
    this.dedupBytes += bytes;
  }

  private dropId(key: string, w: DedupWindow, id: string): void {
    w.ids.delete(id);
    this.addDedup(w, -(id.length + DEDUP_ENTRY_BYTES));
    if (w.ids.size === 0) this.dedup.delete(key);
  }

  /** Devices whose newest id is past the window go whole; the order is by last record, so it stops early. */
  private sweepDedup(now: number): void {
    for (const [key, w] of this.dedup) {
      if (w.last > now - this.limits.dedupWindowMs) break;
      this.dedupBytes -= w.bytes;
      this.dedup.delete(key);
    }
  }

  /** What the store holds beyond sessions and presence, for the budget's proof. */
  get footprint(): { mailboxes: number; knownDevices: number; dedupDevices: number; dedupBytes: number } {
    return { mailboxes: this.mailboxes.size, knownDevices: this.knownOrder.size, dedupDevices: this.dedup.size, dedupBytes: this.dedupBytes };
  }

  async close(): Promise<void> {
    this.presence.clear();
    this.sessions.clear();
    this.deviceSessions.clear();
    this.detached.clear();
    this.detachedBytes = 0;
    this.mailboxes.clear();
    this.known.clear();
    this.knownOrder.clear();
    this.dedup.clear();
    this.dedupBytes = 0;
  }
}
