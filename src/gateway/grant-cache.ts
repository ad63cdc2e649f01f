import { clampInterval, grantedDirection, negotiate, type HeartbeatPolicy } from '../core/heartbeat-policy.js';
import type { HeartbeatGrant, HelloFrame } from '../protocol/frames.js';

/**
 * One shared, frozen grant per (direction, interval) the gateway has granted,
 * instead of one object per connection: nearly all clients of a fleet ask for
 * the same few intervals. Connections replace their grant, never mutate it.
 */
export class GrantCache {
  private readonly grants = new Map<number, HeartbeatGrant>();

  /** Distinct grants kept; an adaptive fleet asking for thousands of intervals just gets fresh objects. */
  constructor(private readonly limit = 4096) {}

  get(policy: HeartbeatPolicy, hello: Pick<HelloFrame, 'direction' | 'intervalMs'>): HeartbeatGrant {
    // Interval and direction are all that vary for one policy: looked up before a grant is built.
    const intervalMs = clampInterval(policy, hello.intervalMs);
    const key = grantedDirection(policy, hello.direction) === 'server' ? -intervalMs - 1 : intervalMs;
    const hit = this.grants.get(key);
    if (hit) return hit;
    const g = negotiate(policy, hello);
    if (this.grants.size < this.limit) this.grants.set(key, Object.freeze(g));
    return g;
  }
}
