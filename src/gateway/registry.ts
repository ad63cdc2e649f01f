import type { ServerConnection } from './connection.js';
import { UserDevices } from './device-map.js';

/** The connections of this process by user and device; one per device. */
export class Registry {
  private readonly users = new UserDevices<ServerConnection>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get userCount(): number {
    return this.users.userCount;
  }

  get(userId: string, deviceId: string): ServerConnection | undefined {
    return this.users.get(userId, deviceId);
  }

  devices(userId: string): Iterable<ServerConnection> {
    return this.users.values(userId);
  }

  /** Registers `conn`, returning the connection it replaces for the same device. */
  add(conn: ServerConnection): ServerConnection | undefined {
    const previous = this.users.set(conn.userId, conn.deviceId, conn);
    if (!previous) this.count++;
    return previous;
  }

  /** Removes `conn` if it is still the registered one for its device. */
  remove(conn: ServerConnection): boolean {
    if (this.users.get(conn.userId, conn.deviceId) !== conn) return false;
    this.users.delete(conn.userId, conn.deviceId);
    this.count--;
    return true;
  }

  *all(): IterableIterator<ServerConnection> {
    yield* this.users.all();
  }
}
