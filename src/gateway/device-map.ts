/**
 * Per-user maps of devices, where almost every user has one device: the
 * single entry is kept inline and a Map is made only for the second, which
 * saves a Map (a few hundred bytes) per connected user in the registry and
 * the in-memory store.
 */
export class UserDevices<V> {
  private readonly users = new Map<string, Slot<V>>();

  get userCount(): number {
    return this.users.size;
  }

  get(userId: string, deviceId: string): V | undefined {
    const s = this.users.get(userId);
    if (s === undefined) return undefined;
    if (s instanceof Map) return s.get(deviceId);
    return s.deviceId === deviceId ? s.value : undefined;
  }

  /** Sets and returns the previous value. */
  set(userId: string, deviceId: string, value: V): V | undefined {
    const s = this.users.get(userId);
    if (s === undefined) {
      this.users.set(userId, { deviceId, value });
      return undefined;
    }
    if (s instanceof Map) {
      const prev = s.get(deviceId);
      s.set(deviceId, value);
      return prev;
    }
    if (s.deviceId === deviceId) {
      const prev = s.value;
      s.value = value;
      return prev;
    }
    this.users.set(
      userId,
      new Map([
        [s.deviceId, s.value],
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
    if (s.deviceId !== deviceId) return false;
    this.users.delete(userId);
    return true;
  }

  /** [deviceId, value] pairs of one user. */
  *entries(userId: string): IterableIterator<[string, V]> {
    const s = this.users.get(userId);
    if (s === undefined) return;
    if (s instanceof Map) yield* s.entries();
    else yield [s.deviceId, s.value];
  }

  *values(userId: string): IterableIterator<V> {
    for (const [, v] of this.entries(userId)) yield v;
  }

  *all(): IterableIterator<V> {
    for (const s of this.users.values()) {
      if (s instanceof Map) yield* s.values();
      else yield s.value;
    }
  }

  clear(): void {
    this.users.clear();
  }
}

type Slot<V> = { deviceId: string; value: V } | Map<string, V>;
