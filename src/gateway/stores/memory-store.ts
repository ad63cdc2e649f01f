import { UserDevices } from '../device-map.js';
import type { MailboxLimits, PresenceEntry, QueuedMessage, SessionRecord, Store } from './store.js';

/** Client message ids remembered per device for duplicate detection. */
export const INBOUND_IDS_KEPT = 4096;

interface Mailbox {
  /** The connection the mailbox is bound to ('' for none yet). */
  holder: string;
  /** The highest number handed out: numbers never go back, whoever holds the mailbox. */
  highSeq: number;
  messages: QueuedMessage[];
  bytes: number;
  /** Insertion-ordered, so the oldest id is evicted first. */
  inboundIds: Set<string>;
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
}

export const MEMORY_STORE_DEFAULTS = { maxSessionsPerDevice: 4, maxSessions: 250_000 };

export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly presence = new UserDevices<PresenceEntry>();
  /** By resume token, least recently saved first (a save moves a record to the end). */
  private readonly sessions = new Map<string, { record: SessionRecord; expiresAt: number }>();
  /** Resume tokens by (user, device), oldest first. */
  private readonly deviceSessions = new UserDevices<string[]>();
  private readonly limits: Required<MemoryStoreOptions>;

  constructor(opts: MemoryStoreOptions = {}) {
    this.limits = { ...MEMORY_STORE_DEFAULTS, ...opts };
  }
  private saves = 0;
  private readonly mailboxes = new Map<string, Mailbox>();
  private readonly known = new UserDevices<number>();

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
      while (tokens.length > this.limits.maxSessionsPerDevice) this.sessions.delete(tokens.shift()!);
      while (this.sessions.size > this.limits.maxSessions) this.forget(this.sessions.keys().next().value!);
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

  private forget(token: string): void {
    const s = this.sessions.get(token);
    if (!s) return;
    this.sessions.delete(token);
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

  private sweep(now: number): void {
    for (const [token, s] of [...this.sessions]) if (s.expiresAt <= now) this.forget(token);
  }

  private mailbox(userId: string, deviceId: string): Mailbox {
    const key = `${userId}\u0000${deviceId}`;
    let m = this.mailboxes.get(key);
    if (!m) this.mailboxes.set(key, (m = { holder: '', highSeq: 0, messages: [], bytes: 0, inboundIds: new Set() }));
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
    }
    return out;
  }

  async depth(userId: string, deviceId: string): Promise<number> {
    return this.mailboxes.get(`${userId}\u0000${deviceId}`)?.messages.length ?? 0;
  }

  async rememberDevice(userId: string, deviceId: string, until: number): Promise<void> {
    this.known.set(userId, deviceId, Math.max(until, this.known.get(userId, deviceId) ?? 0));
  }

  async knownDevices(userId: string, now: number): Promise<string[]> {
    const out: string[] = [];
    for (const [deviceId, until] of [...this.known.entries(userId)]) {
      if (until > now || (this.mailboxes.get(`${userId}\u0000${deviceId}`)?.messages.length ?? 0) > 0) out.push(deviceId);
      else this.known.delete(userId, deviceId);
    }
    return out;
  }

  async seenInbound(userId: string, deviceId: string, id: string): Promise<boolean> {
    return this.mailboxes.get(`${userId}\u0000${deviceId}`)?.inboundIds.has(id) ?? false;
  }

  async markInbound(userId: string, deviceId: string, id: string): Promise<boolean> {
    const ids = this.mailbox(userId, deviceId).inboundIds;
    if (ids.has(id)) return false;
    ids.add(id);
    if (ids.size > INBOUND_IDS_KEPT) ids.delete(ids.values().next().value!);
    return true;
  }

  async close(): Promise<void> {
    this.presence.clear();
    this.sessions.clear();
    this.deviceSessions.clear();
    this.mailboxes.clear();
    this.known.clear();
  }
}
