import { clampInterval, grantedDirection, negotiate, type HeartbeatPolicy } from '../core/heartbeat-policy.js';
import type { HeartbeatGrant, HelloFrame } from '../protocol/frames.js';

/**
 * One shared, frozen grant per (direction, interval) the gateway has granted,
 * instead of one object per connection: nearly all clients of a fleet ask for
 * the same few intervals. Connections replace their grant, never mutate it.
 */
export class GrantCache {
  private readonly grants = new Map<number, HeartbeatGrant>();
  /** Grants whose range is their interval alone (an authenticator set it: see get). */
  private readonly pinned = new Map<number, HeartbeatGrant>();

  /** Distinct grants kept; an adaptive fleet asking for thousands of intervals just gets fresh objects. */
  constructor(private readonly limit = 4096) {}

  /**
   * `pinned`: the interval binds the link (an authenticator, a connect hook, chose it): the grant's
   * range is that interval alone, so the client, which clamps what it announces to the granted
   * range, keeps it, as the gateway does (connection.ts setInterval).
   */
  get(policy: HeartbeatPolicy, hello: Pick<HelloFrame, 'direction' | 'intervalMs'>, pinned = false): HeartbeatGrant {
    // Interval and direction are all that vary for one policy: looked up before a grant is built.
    const intervalMs = clampInterval(policy, hello.intervalMs);
    const key = grantedDirection(policy, hello.direction) === 'server' ? -intervalMs - 1 : intervalMs;
    const grants = pinned ? this.pinned : this.grants;
    const hit = grants.get(key);
    if (hit) return hit;
    const g = negotiate(policy, hello);
    if (pinned) g.minIntervalMs = g.maxIntervalMs = g.intervalMs;
    if (this.grants.size + this.pinned.size < this.limit) grants.set(key, Object.freeze(g));
    return g;
  }
}
