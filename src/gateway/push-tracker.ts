import type { TimerHandle, Timers } from '../core/clock.js';
import { idKey } from './id-key.js';

/**
 * Where one pushed message stands for one device. `failed`: the store did not
 * confirm it queued it (unreachable, or replicas not confirmed in time): it
 * may be in the mailbox all the same (a write whose answer was lost), so a
 * caller retries with the same id, which the device drops if it has it;
 * every other outcome means the message is, or was, in the device's mailbox.
 */
export type DeviceOutcome = 'delivered' | 'queued' | 'expired' | 'dropped' | 'failed';

export interface PushResult {
  /** The message id (given, or generated). */
  id: string;
  /** One entry per device the message was for. No entries: the user has no known device. */
  devices: { deviceId: string; status: DeviceOutcome }[];
  /** How many devices acknowledged it before `push()` resolved. */
  delivered: number;
  /**
   * Set when nothing was queued because the user has no known device: it never
   * connected, or not within `delivery.knownDeviceTtlMs`. A message cannot wait
   * for a device the gateway has never seen.
   */
  unknownUser?: true;
  /** Set when a push for one device (`deviceId`) found the user but not that device. */
  unknownDevice?: true;
}

interface Pending {
  userId: string;
  id: string;
  devices: Map<string, DeviceOutcome | null>;
  open: number;
  resolve: (r: PushResult) => void;
  timer: TimerHandle | null;
  waitMs: number;
  /** Holds not released yet (see hold): its mailbox writes are out. */
  holds: number;
  /** Resolves as soon as its last hold is released (flushAll came while writes were out). */
  now: boolean;
  /** When (see `op`) its mailbox write to each device was made. */
  writes: Map<string, number>;
  /** Its devices not settled yet whose acknowledgement another node reports (see awaitRemote). */
  remote: Set<string> | null;
}

/**
 * Devices of pending pushes waiting at once for another node's report of their acknowledgement
 * (see awaitRemote): beyond it a push answers such a device `queued` at once, as without reports.
 * Each costs a few hundred bytes until its waitMs ends; the pushes themselves are the caller's.
 */
export const MAX_REMOTE_WAITING = 10_000;

/**
 * Resolves `push()` promises: each waits until every device it targeted has
 * settled (acknowledged, known to be offline, expired or dropped) or until
 * `waitMs`, after which devices still unacknowledged count as `queued` (the
 * message stays in their mailbox and a later `delivered` event tells).
 */
/**
 * Pushes are keyed by user and message id: one id pushed to several users (a
 * group message) is one push per user, each settled by its own devices. The
 * user's length first: ids may hold any character, and joined by a NUL, user
 * `a\0b`'s push `c` and user `a`'s push `b\0c` were one (the second ended the
 * first at once, and the first's device settled the second).
 */
const key = idKey;

export class PushTracker {
  private readonly pending = new Map<string, Pending>();
  /**
   * Pending pushes by user and device, for the devices not settled yet: a closing link settles
   * only the pushes waiting on its device. By user alone, every close of any of a user's devices
   * (a connect-and-close loop of new device ids) walked all the pushes pending to that user: 5 ms
   * a close with 10,000 pending, at up to handshakesPerSecond closes a second.
   */
  private readonly byDevice = new Map<string, Map<string, Set<Pending>>>();

  /** Orders mailbox writes and removals (a store answers a mailbox's calls in the order they were made). */
  private ops = 0;

  /** Devices awaited on other nodes' reports now, in all pending pushes. */
  private remoteWaiting = 0;

  constructor(
    private readonly timers: Timers,
    private readonly maxRemoteWaiting = MAX_REMOTE_WAITING,
  ) {}

  /**
   * Push `id` to `userId` waits for `deviceId`, whose link is on another node, until that node
   * reports it acknowledged (settle delivered) or waitMs ends: false (the caller settles it
   * `queued`) when the push is not waiting for it, or MAX_REMOTE_WAITING devices are awaited so.
   */
  awaitRemote(userId: string, id: string, deviceId: string): boolean {
    const p = this.pending.get(key(userId, id));
    if (!p || p.waitMs <= 0 || p.devices.get(deviceId) !== null) return false;
    if (p.remote?.has(deviceId)) return true;
    if (this.remoteWaiting >= this.maxRemoteWaiting) return false;
    (p.remote ??= new Set()).add(deviceId);
    this.remoteWaiting++;
    return true;
  }

  /** Devices awaited on other nodes' reports now (bounded by MAX_REMOTE_WAITING). */
  get awaitingRemote(): number {
    return this.remoteWaiting;
  }

  /**
   * A store call that may remove messages (an expiry sweep) is being made: what it removed is
   * settled with the number returned (see settle).
   */
  removal(): number {
    return ++this.ops;
  }

  /** Push `id`'s mailbox write to `deviceId` is being made; also the number of the removals (evictions) it makes. */
  writing(userId: string, id: string, deviceId: string): number {
    const op = ++this.ops;
    this.pending.get(key(userId, id))?.writes.set(deviceId, op);
    return op;
  }

  /**
   * Starts tracking message `id` to `userId`'s `deviceIds`; the promise resolves with the outcome.
   * A device's link closing settles it (settleDevice) only once `queued` says its mailbox holds
   * the message: before, the write may still fail, and `queued` would say the message waits there.
   */
  track(userId: string, id: string, deviceIds: Iterable<string>, waitMs: number): Promise<PushResult> {
    return new Promise((resolve) => {
      const devices = new Map<string, DeviceOutcome | null>();
      for (const d of deviceIds) devices.set(d, null);
      const p: Pending = { userId, id, devices, open: devices.size, resolve, timer: null, waitMs, holds: 0, now: false, writes: new Map(), remote: null };
      if (p.open === 0) return resolve(result(p));
      const k = key(userId, id);
      const previous = this.pending.get(k);
      if (previous) this.finish(k, previous); // the same id to the same user again: the older push resolves now
      this.pending.set(k, p);
      this.arm(k, p);
    });
  }

  /** The push resolves after its waitMs, settled or not. */
  private arm(k: string, p: Pending): void {
    p.timer = this.timers.setTimeout(() => {
      p.timer = null;
      this.finish(k, p);
    }, p.waitMs);
  }

  /**
   * Keeps the push just tracked open while its mailbox writes are out and
   * more of its devices may be found (a shared store's presence, read after
   * the mailboxes): `expect` adds one,
   * `release` lets the push resolve once its devices have settled. Its
   * waitMs counts from the release, when the devices are all known.
   */
  hold(userId: string, id: string): { expect(deviceId: string): void; release(): void } {
    const k = key(userId, id);
    const p = this.pending.get(k);
    if (!p) return { expect() {}, release() {} };
    p.open++;
    p.holds++;
    if (p.timer) this.timers.clearTimeout(p.timer);
    p.timer = null;
    let held = true;
    return {
      expect: (deviceId) => {
        if (!held || p.devices.has(deviceId)) return;
        p.devices.set(deviceId, null);
        p.open++;
      },
      release: () => {
        if (!held) return;
        held = false;
        p.holds--;
        if (this.pending.get(k) !== p) return; // resolved meanwhile (the same id pushed again)
        if (--p.open === 0 || (p.now && p.holds === 0)) this.finish(k, p);
        else this.arm(k, p);
      },
    };
  }

  /** The message is in the device's mailbox: from now on its link closing settles it `queued` (see track). */
  queued(userId: string, id: string, deviceId: string): void {
    const p = this.pending.get(key(userId, id));
    if (p && p.devices.get(deviceId) === null) this.index(p, deviceId);
  }

  /**
   * Records an outcome of `userId`'s push `id` on one device; only the first outcome per device counts.
   * `removedBy`: the removal (see removal, writing) that took a message of that id out: the push's
   * only if its write was made before (the copy it wrote, or the one still held that it was not
   * queued again for). A copy removed before the write is an older push's: the write queued a new one.
   */
  settle(userId: string, id: string, deviceId: string, status: DeviceOutcome, removedBy?: number): void {
    const k = key(userId, id);
    const p = this.pending.get(k);
    if (!p) return;
    if (removedBy !== undefined && !((p.writes.get(deviceId) ?? Infinity) < removedBy)) return;
    this.settleOne(k, p, deviceId, status);
  }

  private settleOne(k: string, p: Pending, deviceId: string, status: DeviceOutcome): void {
    if (!p.devices.has(deviceId) || p.devices.get(deviceId) !== null) return;
    p.devices.set(deviceId, status);
    if (p.remote?.delete(deviceId)) this.remoteWaiting--;
    this.unindex(p, deviceId);
    if (--p.open === 0) this.finish(k, p);
  }

  /** Settles every pending push to one device that has not settled yet (its link closed: the rest stays queued). */
  settleDevice(userId: string, deviceId: string, status: DeviceOutcome): void {
    this.settleDeviceLater(userId, deviceId, status)();
  }

  /**
   * settleDevice for the pushes waiting on the device now, when the returned function is called:
   * those made later (to the device's next link) are not the closed link's to settle.
   */
  settleDeviceLater(userId: string, deviceId: string, status: DeviceOutcome): () => void {
    const waiting = this.byDevice.get(userId)?.get(deviceId);
    if (!waiting) return () => {};
    const now = [...waiting];
    return () => this.settleEach(userId, deviceId, now, status);
  }

  private settleEach(userId: string, deviceId: string, waiting: Pending[], status: DeviceOutcome): void {
    for (const p of waiting) {
      const k = key(userId, p.id);
      if (this.pending.get(k) === p) this.settleOne(k, p, deviceId, status);
    }
  }

  private index(p: Pending, deviceId: string): void {
    let devices = this.byDevice.get(p.userId);
    if (!devices) this.byDevice.set(p.userId, (devices = new Map()));
    let waiting = devices.get(deviceId);
    if (!waiting) devices.set(deviceId, (waiting = new Set()));
    waiting.add(p);
  }

  private unindex(p: Pending, deviceId: string): void {
    const devices = this.byDevice.get(p.userId);
    const waiting = devices?.get(deviceId);
    if (!devices || !waiting?.delete(p)) return;
    if (waiting.size > 0) return;
    devices.delete(deviceId);
    if (devices.size === 0) this.byDevice.delete(p.userId);
  }

  get size(): number {
    return this.pending.size;
  }

  /**
   * Resolves everything still pending (on shutdown); a push whose mailbox writes are still out
   * resolves once they have answered (a write that fails then says failed, not queued).
   */
  flushAll(): void {
    for (const [k, p] of [...this.pending]) {
      if (p.holds === 0) {
        this.finish(k, p);
        continue;
      }
      p.now = true;
      if (p.timer !== null) this.timers.clearTimeout(p.timer);
      p.timer = null;
    }
  }

  private finish(k: string, p: Pending): void {
    if (this.pending.get(k) === p) this.pending.delete(k);
    for (const [d, s] of p.devices) if (s === null) this.unindex(p, d);
    if (p.remote) this.remoteWaiting -= p.remote.size;
    p.remote = null;
    if (p.timer !== null) this.timers.clearTimeout(p.timer);
    p.timer = null;
    p.resolve(result(p));
  }
}

function result(p: Pending): PushResult {
  const devices = [...p.devices].map(([deviceId, s]) => ({ deviceId, status: s ?? ('queued' as const) }));
  return { id: p.id, devices, delivered: devices.filter((d) => d.status === 'delivered').length };
}
