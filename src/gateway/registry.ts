import type { ServerConnection } from './connection.js';

/** The connections of this process by user and device; one per device. */
export class Registry {
  private readonly users = new Map<string, Map<string, ServerConnection>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get userCount(): number {
    return this.users.size;
  }

  get(userId: string, deviceId: string): ServerConnection | undefined {
    return this.users.get(userId)?.get(deviceId);
  }

  devices(userId: string): Iterable<ServerConnection> {
    return this.users.get(userId)?.values() ?? [];
  }

  /** Registers `conn`, returning the connection it replaces for the same device. */
  add(conn: ServerConnection): ServerConnection | undefined {
    let devices = this.users.get(conn.userId);
    if (!devices) this.users.set(conn.userId, (devices = new Map()));
    const previous = devices.get(conn.deviceId);
    devices.set(conn.deviceId, conn);
    if (!previous) this.count++;
    return previous;
  }

  /** Removes `conn` if it is still the registered one for its device. */
  remove(conn: ServerConnection): boolean {
    const devices = this.users.get(conn.userId);
    if (!devices || devices.get(conn.deviceId) !== conn) return false;
    devices.delete(conn.deviceId);
    if (devices.size === 0) this.users.delete(conn.userId);
    this.count--;
    return true;
  }

  *all(): IterableIterator<ServerConnection> {
    for (const devices of this.users.values()) yield* devices.values();
  }
}
