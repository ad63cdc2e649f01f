import type { TransportKind } from '../../link/link.js';
import type { ClientState } from '../../protocol/frames.js';

/**
 * What the gateway keeps beyond one process's sockets: presence (user and
 * device to connection) and sessions (for resume). Every method is async so a
 * networked store (Redis) fits the same shape; the in-memory store is the
 * default. Heartbeats never touch the store: liveness stays in the process.
 */
export interface PresenceEntry {
  userId: string;
  deviceId: string;
  connectionId: string;
  nodeId: string;
  transport: TransportKind;
  /** Wall-clock ms when this connection came online. */
  since: number;
  clientInfo: ClientState;
}

export interface SessionRecord {
  sessionId: string;
  resumeToken: string;
  userId: string;
  deviceId: string;
  clientInfo: ClientState;
  createdAt: number;
}

export interface PresenceStore {
  setOnline(entry: PresenceEntry): Promise<void>;
  /** Removes the entry only if it still belongs to `connectionId` (a newer connection may have replaced it). */
  setOffline(userId: string, deviceId: string, connectionId: string): Promise<boolean>;
  devices(userId: string): Promise<PresenceEntry[]>;
}

export interface SessionStore {
  /** Keeps the session until `expiresAt` (wall-clock ms), when it may be forgotten. */
  saveSession(record: SessionRecord, expiresAt: number): Promise<void>;
  loadSession(resumeToken: string, now: number): Promise<SessionRecord | undefined>;
  deleteSession(resumeToken: string): Promise<void>;
}

export interface Store extends PresenceStore, SessionStore {
  readonly kind: string;
  close(): Promise<void>;
}
