import type { TimerHandle, Timers } from '../core/clock.js';

/** Where one pushed message stands for one device. */
export type DeviceOutcome = 'delivered' | 'queued' | 'expired' | 'dropped';

export interface PushResult {
  /** The message id (given, or generated). */
  id: string;
  /** One entry per device the message was for. No entries: the user has no known device. */
  devices: { deviceId: string; status: DeviceOutcome }[];
  /** How many devices acknowledged it before `push()` resolved. */
  delivered: number;
}

interface Pending {
  userId: string;
  devices: Map<string, DeviceOutcome | null>;
  open: number;
  resolve: (r: PushResult) => void;
  timer: TimerHandle | null;
}

/**
 * Resolves `push()` promises: each waits until every device it targeted has
 * settled (acknowledged, known to be offline, expired or dropped) or until
 * `waitMs`, after which devices still unacknowledged count as `queued` (the
 * message stays in their mailbox and a later `delivered` event tells).
 */
export class PushTracker {
  private readonly pending = new Map<string, Pending>();
  /** Pending message ids by user, to settle a device's pushes when its link closes. */
  private readonly byUser = new Map<string, Set<string>>();

  constructor(private readonly timers: Timers) {}

  /** Starts tracking message `id` for `deviceIds`; the promise resolves with the outcome. */
  track(id: string, userId: string, deviceIds: Iterable<string>, waitMs: number): Promise<PushResult> {
    return new Promise((resolve) => {
      const devices = new Map<string, DeviceOutcome | null>();
      for (const d of deviceIds) devices.set(d, null);
      const p: Pending = { userId, devices, open: devices.size, resolve, timer: null };
      if (p.open === 0) return resolve(result(id, p));
      const previous = this.pending.get(id);
      if (previous) this.finish(id, previous); // a re-used id: the older push resolves now
      this.pending.set(id, p);
      let ids = this.byUser.get(userId);
      if (!ids) this.byUser.set(userId, (ids = new Set()));
      ids.add(id);
      p.timer = this.timers.setTimeout(() => {
        p.timer = null;
        this.finish(id, p);
      }, waitMs);
    });
  }

  /** Records an outcome; only the first outcome per device counts. */
  settle(id: string, deviceId: string, status: DeviceOutcome): void {
    const p = this.pending.get(id);
    if (!p || !p.devices.has(deviceId) || p.devices.get(deviceId) !== null) return;
    p.devices.set(deviceId, status);
    if (--p.open === 0) this.finish(id, p);
  }

  /** Settles every pending push to one device that has not settled yet (its link closed: the rest stays queued). */
  settleDevice(userId: string, deviceId: string, status: DeviceOutcome): void {
    const ids = this.byUser.get(userId);
    if (!ids) return;
    for (const id of [...ids]) this.settle(id, deviceId, status);
  }

  get size(): number {
    return this.pending.size;
  }

  /** Resolves everything still pending (on shutdown). */
  flushAll(): void {
    for (const [id, p] of [...this.pending]) this.finish(id, p);
  }

  private finish(id: string, p: Pending): void {
    if (this.pending.get(id) === p) {
      this.pending.delete(id);
      const ids = this.byUser.get(p.userId);
      ids?.delete(id);
      if (ids?.size === 0) this.byUser.delete(p.userId);
    }
    if (p.timer !== null) this.timers.clearTimeout(p.timer);
    p.timer = null;
    p.resolve(result(id, p));
  }
}

function result(id: string, p: Pending): PushResult {
  const devices = [...p.devices].map(([deviceId, s]) => ({ deviceId, status: s ?? ('queued' as const) }));
  return { id, devices, delivered: devices.filter((d) => d.status === 'delivered').length };
}
