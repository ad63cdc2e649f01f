/**
 * Per-user maps of devices, where almost every user has one device: the
 * single entry is kept inline and a Map is made only for the second, which
 * saves a Map (a few hundred bytes) per connected user in the registry and
 * the in-memory store. Values that carry their own `deviceId` (connections,
 * presence entries) are stored as they are, without even a wrapper.
 */
export class UserDevices<V> {
  private readonly users = new Map<string, Slot<V>>();

  get userCount(): number {
    return this.users.size;
  }

  /** Devices held for one user. */
  countOf(userId: string): number {
    const s = this.users.get(userId);
    return s === undefined ? 0 : s instanceof Map ? s.size : 1;
  }

  get(userId: string, deviceId: string): V | undefined {
    const s = this.users.get(userId);
    if (s === undefined) return undefined;
    if (s instanceof Map) return s.get(deviceId);
    return deviceOf(s) === deviceId ? valueOf(s) : undefined;
  }

  /** Sets and returns the previous value. */
  set(userId: string, deviceId: string, value: V): V | undefined {
    const s = this.users.get(userId);
    if (s === undefined) {
      this.users.set(userId, slot(deviceId, value));
      return undefined;
    }
    if (s instanceof Map) {
      const prev = s.get(deviceId);
      s.set(deviceId, value);
      return prev;
    }
    if (deviceOf(s) === deviceId) {
      this.users.set(userId, slot(deviceId, value));
      return valueOf(s);
    }
    this.users.set(
      userId,
      new Map([
        [deviceOf(s), valueOf(s)],
        [deviceId, value],
      ]),
    );
    return undefined;
  }

  delete(userId: string, deviceId: string): boolean {
    const s = this.users.get(userId);
    if (s === undefined) return false;
    if (s instanceof Map) {
      const had = s.delete(deviceId);
      if (s.size === 0) this.users.delete(userId);
      return had;
    }
    if (deviceOf(s) !== deviceId) return false;
    this.users.delete(userId);
    return true;
  }

  /** [deviceId, value] pairs of one user. */
  *entries(userId: string): IterableIterator<[string, V]> {
    const s = this.users.get(userId);
    if (s === undefined) return;
    if (s instanceof Map) yield* s.entries();
    else yield [deviceOf(s), valueOf(s)];
  }

  *values(userId: string): IterableIterator<V> {
    for (const [, v] of this.entries(userId)) yield v;
  }

  *all(): IterableIterator<V> {
    for (const s of this.users.values()) {
      if (s instanceof Map) yield* s.values();
      else yield valueOf(s);
    }
  }

  clear(): void {
    this.users.clear();
  }
}

/** A lone device: the value itself when it names its device, else a wrapper. */
type Slot<V> = V | Wrapped<V> | Map<string, V>;

class Wrapped<V> {
  constructor(
    readonly deviceId: string,
    readonly value: V,
  ) {}
}

function slot<V>(deviceId: string, value: V): Slot<V> {
  const own = typeof value === 'object' && value !== null && !(value instanceof Map) && (value as { deviceId?: unknown }).deviceId === deviceId;
  return own ? value : new Wrapped(deviceId, value);
}

function deviceOf<V>(s: V | Wrapped<V>): string {
  return (s as { deviceId: string }).deviceId;
}

function valueOf<V>(s: V | Wrapped<V>): V {
  return s instanceof Wrapped ? (s.value as V) : (s as V);
}
