/** A value, or a promise of it: what a store held in this process answers at once. */
export type Awaitable<T> = T | PromiseLike<T>;

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

/**
 * Runs a generator whose every `yield` hands over a result that may be there
 * already or come later (a store call, an authentication hook): in this very
 * turn while each yielded value is a plain one, and from the first promise
 * on as an async function would, with a rejection thrown back in at its
 * `yield`. So the in-memory store opens a connection in the turn its HELLO
 * arrived, without a promise, two closures and a microtask per call (900
 * bytes of garbage a connection), and a networked store runs the very same steps.
 * A throw before the first promise is thrown to the caller.
 */
export function runSteps<T>(steps: Generator<unknown, T, unknown>): T | Promise<T> {
  let r = steps.next();
  while (!r.done && !isThenable(r.value)) r = steps.next(r.value);
  return r.done ? r.value : resume(steps, r.value as PromiseLike<unknown>);
}

async function resume<T>(steps: Generator<unknown, T, unknown>, pending: PromiseLike<unknown>): Promise<T> {
  for (;;) {
    let r: IteratorResult<unknown, T>;
    let value: unknown;
    let failed = false;
    try {
      value = await pending;
    } catch (err) {
      failed = true;
      value = err;
    }
    // Only the awaited call's failure goes back into the steps; a throw from the steps themselves ends them.
    r = failed ? steps.throw(value) : steps.next(value);
    while (!r.done && !isThenable(r.value)) r = steps.next(r.value);
    if (r.done) return r.value;
    pending = r.value as PromiseLike<unknown>;
  }
}

/** Starts a call nobody waits for; its failure, thrown at once or rejected later, goes to `onError`. */
export function unawaited(call: () => Awaitable<unknown>, onError: (error: unknown) => void): void {
  try {
    const r = call();
    if (isThenable(r)) r.then(undefined, onError);
  } catch (error) {
    onError(error);
  }
}
