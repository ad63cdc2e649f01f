import type { PresenceEntry, SessionRecord, Store } from './store.js';

/**
 * The default store: plain maps in this process. Nothing survives a restart,
 * and nothing is shared between processes.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly presence = new Map<string, Map<string, PresenceEntry>>();
  private readonly sessions = new Map<string, { record: SessionRecord; expiresAt: number }>();
  private saves = 0;

  async setOnline(entry: PresenceEntry): Promise<void> {
    let devices = this.presence.get(entry.userId);
    if (!devices) this.presence.set(entry.userId, (devices = new Map()));
    devices.set(entry.deviceId, entry);
  }

  async setOffline(userId: string, deviceId: string, connectionId: string): Promise<boolean> {
    const devices = this.presence.get(userId);
    const entry = devices?.get(deviceId);
    if (!devices || !entry || entry.connectionId !== connectionId) return false;
    devices.delete(deviceId);
    if (devices.size === 0) this.presence.delete(userId);
    return true;
  }

  async devices(userId: string): Promise<PresenceEntry[]> {
    return [...(this.presence.get(userId)?.values() ?? [])];
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

  async deleteSession(resumeToken: string): Promise<void> {
    this.sessions.delete(resumeToken);
  }

  private sweep(now: number): void {
    for (const [token, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(token);
  }

  async close(): Promise<void> {
    this.presence.clear();
    this.sessions.clear();
  }
}
