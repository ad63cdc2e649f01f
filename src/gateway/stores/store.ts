import type { TransportKind } from '../../link/link.js';
import type { ClientState } from '../../protocol/frames.js';
import type { Awaitable } from '../run-steps.js';

export type { Awaitable } from '../run-steps.js';

/**
 * What the gateway keeps beyond one process's sockets: presence (user and
 * device to connection) and sessions (for resume). Every method is async so a
 * networked store (Redis) fits the same shape; the in-memory store is the
 * default. The four calls of a handshake (loadSession, rememberDevice,
 * saveSession, setOnline) may also answer at once, with a plain value: a
 * store held in this process then opens a connection in the turn its HELLO
 * arrived (see run-steps.ts). Heartbeats never touch the store: liveness stays in the process.
 */
export interface PresenceEntry {
  userId: string;
  deviceId: string;
  connectionId: string;
  nodeId: string;
  transport: TransportKind;
  /**
   * Wall-clock ms when this connection was accepted (its handshake began); unchanged when the
   * entry is written again. Of two links of a device on two nodes, the later is the client's
   * current one (it holds one link at a time).
   */
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
  /** Highest client DATA sequence number the gateway accepted in this session. */
  inSeq: number;
  /** The node whose link holds the session open, while one does (absent once the link has ended). */
  openOn?: string;
}

export interface PresenceStore {
  /**
   * Writes the device's entry. A shared store returns the entry it replaced
   * (another node's link of the same device, say), so that node can be told;
   * a store of one process may return nothing. With `maxDevices` (> 0), a
   * device without an entry is not written while the user has that many
   * entries: it throws ProtocolError('too-many-devices'), counted and written
   * in one step (a shared store's: one script), so that handshakes on several
   * nodes at once cannot pass the bound together. A store that ignores it
   * does not bound the user's devices (the gateway's maxOnlineDevicesPerUser).
   */
  setOnline(entry: PresenceEntry, maxDevices?: number): Awaitable<PresenceEntry | undefined | void>;
  /**
   * Removes the entry only if it still belongs to `connectionId` (a newer
   * connection may have replaced it). With `putBack`, the entry that
   * `connectionId`'s setOnline replaced goes back in its place instead: a
   * handshake whose link closed while its write was out must not leave the
   * device offline where another link of it is open.
   */
  setOffline(userId: string, deviceId: string, connectionId: string, putBack?: PresenceEntry): Promise<boolean>;
  /**
   * Undoes a setOnline whose answer never came (it may have been written all
   * the same), if the entry is still `connectionId`'s: puts back another
   * node's entry that write displaced, or removes it. Returns the entry put
   * back. A shared store implements it (it kept the displaced entry beside
   * the new one); without it the gateway calls setOffline.
   */
  takeBackOnline?(userId: string, deviceId: string, connectionId: string): Promise<PresenceEntry | undefined>;
  devices(userId: string): Promise<PresenceEntry[]>;
}

export interface SessionStore {
  /**
   * Keeps the session until `expiresAt` (wall-clock ms), when it may be
   * forgotten. With `unlessOpenElsewhere` (a node id), nothing is written if
   * the stored record is held open by another node: a node ending its link
   * late (its detector, after the device resumed elsewhere and before the
   * `replaced` notice came) must not turn the live record into a closed one.
   */
  saveSession(record: SessionRecord, expiresAt: number, unlessOpenElsewhere?: string): Awaitable<void>;
  loadSession(resumeToken: string, now: number): Awaitable<SessionRecord | undefined>;
  deleteSession(resumeToken: string): Promise<void>;
}

/** A message waiting for one device's acknowledgement. */
export interface QueuedMessage {
  id: string;
  payload: Uint8Array;
  /** Wall-clock ms. */
  enqueuedAt: number;
  /** Wall-clock ms after which it is dropped as expired if not yet acknowledged. */
  expiresAt: number;
  /** Sequence number under the mailbox's current holder (a connection); 0 until numbered. */
  seq: number;
  /**
   * Set only on a message `enqueue` evicted from another device of the user
   * (the memory store's per-user bound): whose mailbox it left.
   */
  deviceId?: string;
  /**
   * Set on a message whose push waits for acknowledgements (waitMs) on a shared store: the node
   * whose push waits, told (`delivered` control) when a link on another node removes it by
   * acknowledgement before `until` (wall ms). A store keeps it with the message and gives it back
   * with what ack and ackResumed remove; one that drops it leaves that push to answer `queued`.
   * An enqueue of an id it holds already (a retry) that carries one replaces the held copy's.
   */
  reportTo?: { nodeId: string; until: number };
}

export interface MailboxLimits {
  /** Most messages held per device; the oldest are evicted beyond it. */
  maxMessages: number;
  /** Most payload bytes held per device; the oldest are evicted beyond it. */
  maxBytes: number;
  /**
   * The device's open link, when the caller holds it: while the mailbox is bound to it, the
   * messages it numbered (written to the device, or about to be) are not evicted, since the device
   * acknowledges them; the oldest not numbered go, and if they make no room the new message is
   * returned as evicted, not queued. Without it the oldest go, written or not.
   */
  liveHolder?: string;
}

/**
 * Per-device mailboxes: one ordered queue per (user, device) that is both
 * the outbox of the connected session (messages sent, not yet acknowledged)
 * and the offline queue (messages not yet sent). A message leaves it only by
 * acknowledgement, expiry or eviction, and the last two are reported.
 */
export interface MailboxStore {
  /**
   * Appends a message; returns the messages evicted to respect `limits`
   * (oldest first). A message whose id the mailbox still holds is not
   * appended again (a retried push, or a write re-sent after its answer was
   * lost): once acknowledged, expired or evicted, the id may be queued anew.
   * A copy whose time is over (expiresAt ≤ msg.enqueuedAt) counts as expired:
   * the mailbox's messages whose time is over are removed and returned first
   * (expiresAt tells them from the evicted), and the message is queued.
   */
  enqueue(userId: string, deviceId: string, msg: Omit<QueuedMessage, 'seq'>, limits: MailboxLimits): Promise<QueuedMessage[]>;
  /**
   * Binds the mailbox to `holder` (the connection that will write what it
   * returns), numbers what needs a number, in order, and returns the messages
   * with seq > afterSeq. A new holder renumbers every message left, sent or
   * not; numbers are always above every number the mailbox handed out before
   * and above `afterSeq` (what the holder's link already carries), so a
   * number never means two messages to one link: not across sessions, not
   * across nodes sharing a mailbox, not after the store lost its data.
   * `session`: the holder's session, kept with it for ackResumed.
   */
  take(userId: string, deviceId: string, holder: string, afterSeq: number, session?: string): Promise<QueuedMessage[]>;
  /**
   * A resume's HELLO `lastSeq`, which acknowledges what the session's earlier links handed over:
   * removes and returns the numbered messages with seq ≤ upTo, only while the mailbox is bound to
   * a link of `session` (take's `session`). Those numbers are that link's (a new holder renumbers
   * everything above every number before), and it wrote them in order, so the client had every one
   * up to the last it announced; numbers of another session's link mean nothing to this client.
   * Called before the resumed link's first take. Optional: without it those messages are re-sent
   * under new numbers and only the client's memory of ids drops them.
   */
  ackResumed?(userId: string, deviceId: string, session: string, upTo: number): Promise<QueuedMessage[]>;
  /**
   * Optional, for a store that can answer at once: true only when nothing is
   * queued for the device right now, so a new link skips its first `take`
   * (most devices never have anything queued). A shared store leaves it out
   * and is asked with `take`.
   */
  holdsNothingFor?(userId: string, deviceId: string): boolean;
  /**
   * Removes and returns the messages with seq ≤ upTo, only while the mailbox
   * is bound to `holder`: an acknowledgement speaks for what that link was
   * given, never for numbers another holder handed out. `answeredUpTo`: the
   * caller has read the answers of this holder's earlier calls as far as
   * that seq (it reported every message they removed up to there). A store
   * whose answer can be lost after the call ran (a shared one) keeps what
   * was removed above it (for a minute) and answers it again with any later
   * call of the holder, so the caller must report each message once, by seq.
   * Without it, an earlier call's answer is given again only to the same
   * call (re-sent).
   */
  ack(userId: string, deviceId: string, holder: string, upTo: number, answeredUpTo?: number): Promise<QueuedMessage[]>;
  /**
   * Removes and returns the messages whose expiresAt ≤ now: every one with
   * `all`; otherwise a store may sweep a part per call (the Redis store, a
   * few shards in turn, a bounded part of each), so that every due message
   * goes within a bounded number of calls. The payloads of what it returns
   * may be left empty (a shared store does not send them back).
   */
  expire(now: number, all?: boolean): Promise<{ userId: string; deviceId: string; message: QueuedMessage }[]>;
  /** Messages held for one device (for the admin view and tests). */
  depth(userId: string, deviceId: string): Promise<number>;
  /** Everything held in mailboxes, for metrics; optional because a shared store cannot total it cheaply. */
  queueTotals?(): Promise<{ mailboxes: number; messages: number; bytes: number }>;
  /**
   * Remembers a device of a user until `until` (wall ms), so pushes queue for
   * it while it is offline. Bounded per user (the store's option): a new
   * device at it evicts the ones not online whose time ends first, back to
   * one below it where they allow; an online device is never evicted, and
   * when every known device is online the new one is remembered beyond the
   * bound (the devices online bound the excess; what a store keeps of a
   * device, its inbound ids and sessions, goes when it is evicted).
   */
  rememberDevice(userId: string, deviceId: string, until: number): Awaitable<void>;
  /** Devices remembered for a user, or still holding messages. */
  knownDevices(userId: string, now: number): Promise<string[]>;
  /**
   * Records a client message id for duplicate detection across sessions;
   * false if it was already recorded (a re-send of a message accepted before).
   * The record is a window, bounded per device in ids and in time (`now`,
   * wall ms): a re-send older than it counts as new. `claimedBy`: the
   * holder of the id's claim (claimInbound), ended by the same request.
   */
  markInbound(userId: string, deviceId: string, id: string, now: number, claimedBy?: string): Promise<boolean>;
  /** Whether a client message id was recorded within the window (read only: the gateway checks, hands the message over, then records). */
  seenInbound(userId: string, deviceId: string, id: string, now: number): Promise<boolean>;
}

/**
 * A store shared by several gateway nodes (Redis). Optional: the in-memory
 * store serves one process, where every device is local.
 */
export interface ClusterStore {
  /**
   * Holds this node's liveness lease and listens for wake-ups: `onRoute`
   * when another node queued a message for a device connected here,
   * `onResync` when the store may have forgotten this node: wake-ups missed
   * while the subscription was re-established (`resubscribed`), the lease
   * lapsed so other nodes stopped seeing this node's presence
   * (`lease-lapsed`), the store lost its data (`store-reset`), or a replica
   * took over part of it and may lack the last writes its master took
   * (`failover`). The gateway then writes its presence (and sessions) again
   * and flushes every device. `onFault`: something wrong with the set-up
   * found while running, for the gateway to report, with what it concerns
   * (`op`): another live process under this node id (`nodeId`), a store
   * that may delete what it holds (`maxmemory-policy`).
   */
  joinCluster(
    nodeId: string,
    onRoute: (userId: string, deviceId: string) => void,
    onResync?: (reason: ResyncReason) => void,
    onControl?: (c: ClusterControl) => void,
    onFault?: (error: Error, op: StoreFaultOp) => void,
  ): Promise<void>;
  /**
   * Writes a presence entry again after a resync, unless the device's entry
   * now belongs to another connection (a newer link elsewhere): true if
   * written. setOnline overwrites; this must not, since the link here may
   * be the stale one.
   */
  restoreOnline?(entry: PresenceEntry): Promise<boolean>;
  /**
   * The device's entry as stored, whatever its node's lease (`devices` leaves out nodes without
   * one): whose it is when restoreOnline refused, after an outage that lapsed every lease.
   */
  presenceOf?(userId: string, deviceId: string): Promise<PresenceEntry | undefined>;
  /**
   * An open link's periodic refresh (every half of the open session's TTL):
   * a store whose presence expires (Redis) keeps the user's presence that
   * much longer. Entries no live link refreshes go with it.
   */
  touchPresence?(userId: string): Promise<void>;
  /** When a node was last seen alive (wall ms; now, for a node holding its lease), or null if unknown. */
  nodeSeenAt?(nodeId: string): Promise<number | null>;
  /**
   * Claims a client message id while one link takes it in (the backend, the
   * hand-over, the record), for at most `ttlMs`, unless it was recorded
   * within the window (as seenInbound, in the same request: a message costs
   * no more requests than without the claim): `claimed`, `held` while
   * another link's claim stands, or `seen`. What lets a re-send that reaches
   * another node wait for the first taking-in to be recorded instead of
   * handing the message over a second time (one process needs no store for
   * it). The record ends the claim (markInbound's `claimedBy`).
   */
  claimInbound?(userId: string, deviceId: string, id: string, holder: string, ttlMs: number, now: number): Promise<'claimed' | 'held' | 'seen'>;
  /** Ends `holder`'s claim (only its own: one that expired may be another link's by now), for a message not recorded after all. */
  releaseInbound?(userId: string, deviceId: string, id: string, holder: string): Promise<void>;
  /** Wakes the node holding a device's connection to deliver from its mailbox. */
  route(nodeId: string, userId: string, deviceId: string): Promise<void>;
  /**
   * Kicks or disconnects a user's (or one device's) connections held by
   * another node, tells it that a newer link of a device took over from its
   * link `connectionId` (`replaced`), or asks it whether it still holds one
   * (`check`).
   */
  control?(nodeId: string, c: NodeControl): Promise<void>;
  /** A best-effort DATA frame to every connection of every other node. */
  broadcast?(payload: Uint8Array, id?: string): Promise<void>;
  /** The nodes holding a lease now. */
  nodes?(): Promise<string[]>;
  /** Says where this node's admin port is (kept as long as its lease). */
  advertise?(adminUrl: string): Promise<void>;
  /** Every node holding a lease, with its advertised admin URL. */
  directory?(): Promise<{ nodeId: string; adminUrl: string | null }[]>;
}

/** Why a shared store asks the gateway to write what it holds again (see joinCluster). */
export type ResyncReason = 'resubscribed' | 'lease-lapsed' | 'store-reset' | 'failover';

/** What a shared store's set-up fault concerns (see joinCluster's `onFault`): the gateway's fault `op`. */
export type StoreFaultOp = 'nodeId' | 'maxmemory-policy';

/** What one node asks one other node to do. */
export type NodeControl =
  | { kind: 'kick' | 'disconnect'; userId: string; deviceId?: string; reconnectAfterMs?: number }
  | { kind: 'replaced'; userId: string; deviceId: string; connectionId: string; byConnectionId: string; resumed: boolean }
  /** Is `connectionId` still open there? If not, that node takes its presence entry out. */
  | { kind: 'check'; userId: string; deviceId: string; connectionId: string }
  /** The device acknowledged these messages on the sending node: pushes there waiting on them settle delivered (see QueuedMessage.reportTo). */
  | { kind: 'delivered'; userId: string; deviceId: string; ids: string[] };

/** What one node asks another to do for it (through the store's pub/sub). */
export type ClusterControl = NodeControl | { kind: 'broadcast'; payload: Buffer; id?: string };

export interface Store extends PresenceStore, SessionStore, MailboxStore, Partial<ClusterStore> {
  readonly kind: string;
  close(): Promise<void>;
}
