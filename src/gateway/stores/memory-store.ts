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
export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly presence = new UserDevices<PresenceEntry>();
  private readonly sessions = new Map<string, { record: SessionRecord; expiresAt: number }>();
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
    this.sessions.set(record.resumeToken, { record, expiresAt });
    // Expired sessions are dropped on load; sweep now and then so ones never
    // loaded again do not pile up.
    if (++this.saves % 1024 === 0) this.sweep(Date.now());
  }

  async loadSession(resumeToken: string, now: number): Promise<SessionRecord | undefined> {
    const s = this.sessions.get(resumeToken);
    if (!s) return undefined;
    if (s.expiresAt <= now) {
      this.sessions.delete(resumeToken);
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
    this.sessions.delete(resumeToken);
  }

  private sweep(now: number): void {
    for (const [token, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(token);
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
    this.mailboxes.clear();
    this.known.clear();
  }
}
