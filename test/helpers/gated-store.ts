import type { Store } from '../../src/gateway/stores/store.js';

/**
 * A store whose chosen calls wait until released, in the order they were made (as Redis answers
 * one connection's commands), or fail as a Redis that gave up retrying would: each `await` of the
 * gateway's on a store call becomes a place a test can stop the world and change it.
 */
export function gated(inner: Store) {
  const gates = new Map<string, (() => void)[]>();
  const hold = new Set<string>();
  const failing = new Set<string>();
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      const name = String(prop);
      return (...args: unknown[]) => {
        if (failing.has(name)) return Promise.reject(new Error(`${name}: Reached the max retries per request limit`));
        if (!hold.has(name)) return v.apply(target, args);
        return new Promise((resolve, reject) => {
          const list = gates.get(name) ?? [];
          list.push(() => {
            try {
              resolve(v.apply(target, args));
            } catch (e) {
              reject(e);
            }
          });
          gates.set(name, list);
        });
      };
    },
  });
  return {
    store,
    /** Calls of `name` from now on wait for release(). */
    hold: (name: string) => hold.add(name),
    /** Calls of `name` fail (or, with false, no longer). */
    fail: (name: string, on = true) => (on ? failing.add(name) : failing.delete(name)),
    /** The held calls of `name` go through, in order, and later ones are no longer held. */
    release(name: string) {
      hold.delete(name);
      for (const go of gates.get(name) ?? []) go();
      gates.delete(name);
    },
    waiting: (name: string) => gates.get(name)?.length ?? 0,
  };
}
