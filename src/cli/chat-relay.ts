import { randomUUID } from 'node:crypto';
import type { Gateway } from '../gateway/gateway.js';
import { LonglinkError } from '../protocol/errors.js';

/**
 * What the relay may have in progress: pushes until they resolve (they wait
 * for no acknowledgement), so a sender cannot pile up work and
 * memory at the rate it can send while the store is slow.
 */
export interface RelayBudget {
  /** Pushes in progress on behalf of one sending user. */
  perUser: number;
  /** Pushes in progress in all. */
  total: number;
  /**
   * While the store fails a relayed message's write, it is tried again after
   * each of these waits (ms; about 30 s in all), holding its place in the
   * budget; then its sender is told it was not relayed.
   */
  retryMs?: readonly number[];
}

export const RELAY_RETRY_MS: readonly number[] = [250, 500, 1000, 2000, 4000, 8000, 8000, 8000];
export const RELAY_BUDGET: RelayBudget = { perUser: 64, total: 4096, retryMs: RELAY_RETRY_MS };

const storeFailed = (err: unknown) => err instanceof LonglinkError && err.code === 'LL_ERR_STORE_UNAVAILABLE';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * The CLI gateways' built-in application: a message "@user text" is pushed
 * to that user's devices (queued for those offline), anything else is
 * echoed back to the sender's devices. A message over the budget is not
 * relayed (`onDrop` says so; the log limits how often), and its sender,
 * which was acknowledged it already, is told so: a notice "(not relayed: N
 * messages ...)" to its devices, one at a time per sender (what goes over
 * the budget while one is on its way is counted in the next), so a sender
 * flooding a slow store adds at most one push of its own.
 *
 * A store that fails the write (down, failing over) does not lose the
 * message: the push is tried again, under the same id and only for the
 * devices whose write failed, over `retryMs` (about 30 s), the message
 * holding its place in the budget meanwhile; a message still not written
 * then is told to its sender ("not relayed: ... the store failed").
 *
 * A message is in progress until its push resolves; the push waits for no
 * acknowledgement (waitMs 0: the message was acknowledged to its sender
 * already and the relay reads only `unknownUser` and failed writes), so it resolves a timer's
 * turn after its mailbox write, not pushWaitMs later for a recipient that
 * never reads. Freed as soon as the write was queued, the budget bounded
 * nothing a flood could not refill every read: four never-reading senders
 * held the event loop's p99 delay at 50-80 ms (the attack suite's flood-seq,
 * 7-17 ms with the budget held to the push's end).
 */
export function relayChat(gw: Gateway, onError: (err: unknown) => void, budget: RelayBudget = RELAY_BUDGET, onDrop?: (userId: string, why: 'user' | 'total') => void): void {
  const retryMs = budget.retryMs ?? RELAY_RETRY_MS;
  const inFlight = new Map<string, number>();
  let total = 0;
  /** Messages over the budget not told to their sender yet, and the senders with a notice on its way. */
  const untold = new Map<string, { n: number; why: 'user' | 'total' }>();
  const telling = new Set<string>();
  const tell = (userId: string) => {
    const u = untold.get(userId);
    if (!u || telling.has(userId)) return;
    untold.delete(userId);
    telling.add(userId);
    const busy = u.why === 'user' ? `${budget.perUser} of yours are in progress` : `${budget.total} are in progress`;
    void gw
      .push(userId, `(not relayed: ${u.n} message${u.n === 1 ? '' : 's'}; the relay is busy, ${busy}: send again later)`, { waitMs: 0 })
      .catch(onError)
      .finally(() => {
        telling.delete(userId);
        tell(userId);
      });
  };
  gw.on('message', (m) => {
    const mine = inFlight.get(m.userId) ?? 0;
    if (mine >= budget.perUser || total >= budget.total) {
      const why = mine >= budget.perUser ? 'user' : 'total';
      onDrop?.(m.userId, why);
      const u = untold.get(m.userId);
      if (u) u.n++;
      else untold.set(m.userId, { n: 1, why });
      tell(m.userId);
      return;
    }
    inFlight.set(m.userId, mine + 1);
    total++;
    const done = () => {
      total--;
      const left = (inFlight.get(m.userId) ?? 1) - 1;
      if (left <= 0) inFlight.delete(m.userId);
      else inFlight.set(m.userId, left);
    };
    const text = Buffer.from(m.payload).toString('utf8');
    const relay = /^@(\S+)\s+([\s\S]*)$/.exec(text);
    const say = async (userId: string, body: string) => {
      const r = await pushSurely(userId, body);
      if (r?.unknownUser) await gw.push(m.userId, `(${userId} has never connected: nothing can wait for them)`, { waitMs: 0 });
    };
    /** The push, again while the store fails it (the whole push, or some devices' writes); null once it gave up, its sender told. */
    const pushSurely = async (userId: string, body: string) => {
      // One id for every try: a device whose write went through holds one copy.
      const id = randomUUID();
      let failed: string[] | null = null; // null: not one device's write is known to be done yet
      let result: Awaited<ReturnType<Gateway['push']>> | null = null;
      for (let attempt = 0; ; attempt++) {
        try {
          if (failed === null) {
            result = await gw.push(userId, body, { waitMs: 0, id });
            failed = result.devices.filter((d) => d.status === 'failed').map((d) => d.deviceId);
          } else {
            const still: string[] = [];
            for (const deviceId of failed) {
              const r = await gw.push(userId, body, { waitMs: 0, id, deviceId }).catch((err: unknown) => (storeFailed(err) ? null : Promise.reject(err)));
              if (!r || r.devices.some((d) => d.status === 'failed')) still.push(deviceId);
            }
            failed = still;
          }
        } catch (err) {
          if (!storeFailed(err)) throw err;
        }
        if (failed?.length === 0) return result;
        if (attempt >= retryMs.length) break;
        await sleep(retryMs[attempt]);
        // Closed meanwhile: its store is going or gone, and the sender with it; nothing to retry or tell.
        if (gw.closed) return null;
      }
      onError(new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `relay: a message from ${m.userId} to ${userId} not written${failed ? ` for ${failed.join(', ')}` : ''}: the store failed it for ${retryMs.reduce((a, b) => a + b, 0)} ms`));
      await gw.push(m.userId, `(not relayed${relay ? ` to ${userId}` : ''}: the store failed it; send again later)`, { waitMs: 0 });
      return null;
    };
    void (relay ? say(relay[1], `${m.userId}: ${relay[2]}`) : say(m.userId, `echo: ${text}`))
      .catch((err: unknown) =>
        // The relayed text is the message plus a prefix: near maxFrameBytes it may no longer fit a frame.
        err instanceof LonglinkError && err.code === 'LL_ERR_PAYLOAD_TOO_LARGE' ? gw.push(m.userId, `(not relayed: ${err.message})`, { waitMs: 0 }) : Promise.reject(err),
      )
      .catch(onError)
      // In progress until its push (and any notice or error) is out.
      .finally(done);
  });
}
