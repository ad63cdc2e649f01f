import { OptionError } from '../protocol/errors.js';
import { MAX_TIMER_MS } from './heartbeat-policy.js';
/**
 * A hashed timing wheel (Varghese and Lauck, 1987): schedule and cancel in
 * O(1), expiry in O(1) per timer plus O(1) per tick. One wheel holds every
 * connection's next deadline, so N connections cost no per-connection
 * setTimeout (Node keeps one list per distinct duration, and jittered
 * deadlines would make thousands of them).
 *
 * Accuracy: a timer with deadline D fires on the first `advance(now)` whose
 * tick index reaches ceil(D / tickMs). It never fires early, and fires at most
 * one tick late if the wheel is advanced every tick.
 *
 * The wheel is pure: it reads no clock. Its driver calls `advance` with the
 * time (see gateway/wheel-runner.ts).
 */
export class WheelTimer<T> {
  /**
   * The tick it fires at; -1 when not scheduled. A tick number, not the
   * deadline in ms: a small integer, where a fractional ms time would be a
   * heap number of 16 bytes more per timer (one per connection), and the
   * wheel's rounds follow from it.
   */
  tick = -1;
  slot = -1;
  prev: WheelTimer<T> | null = null;
  next: WheelTimer<T> | null = null;
  constructor(readonly target: T) {}

  get scheduled(): boolean {
    return this.slot >= 0;
  }
}

export interface TimerWheelOptions {
  /** Tick length in ms; the resolution of every deadline. */
  tickMs?: number;
  /** Number of slots (rounded up to a power of two). */
  slots?: number;
  /** Time of construction; ticks before it are never processed. */
  startMs?: number;
}

/** Work the wheel has done since it was made; per tick it must not grow with uptime. */
export interface TimerWheelStats {
  /** Ticks processed. */
  ticks: number;
  /** Timers looked at during expiry (the due ones and those only passing a round). */
  visited: number;
  /** Timers that expired. */
  expired: number;
}

export class TimerWheel<T> {
  readonly tickMs: number;
  readonly stats: TimerWheelStats = { ticks: 0, visited: 0, expired: 0 };
  private readonly mask: number;
  private readonly heads: (WheelTimer<T> | null)[];
  private processedTick: number;
  private count = 0;
  /**
   * The slot lists being expired by `advance` (one per nested call), each
   * detached from its slot. Kept as proper list heads so a callback can
   * cancel or reschedule a timer still waiting in any of them.
   */
  private readonly expiring: (WheelTimer<T> | null)[] = [];

  constructor(opts: TimerWheelOptions = {}) {
    this.tickMs = opts.tickMs ?? 50;
    if (!(this.tickMs > 0)) throw new OptionError('wheelTickMs', 'must be positive');
    // The runner arms one timer per tick: beyond 2^31 − 1 ms Node fires it after 1 ms (a busy loop).
    if (!(this.tickMs <= MAX_TIMER_MS)) throw new OptionError('wheelTickMs', `must be at most ${MAX_TIMER_MS}`);
    const slots = opts.slots ?? 1024;
    // Rounded up by doubling an int32: from 2^31 up (or Infinity) that never reached it and looped forever.
    if (!(slots <= 2 ** 30)) throw new OptionError('slots', `must be at most ${2 ** 30}`);
    let n = 1;
    while (n < slots) n <<= 1;
    this.mask = n - 1;
    this.heads = new Array<WheelTimer<T> | null>(n).fill(null);
    const startMs = opts.startMs ?? 0;
    // NaN made every tick NaN: no timer ever expired, and each advance() walked nothing.
    if (!Number.isFinite(startMs)) throw new OptionError('startMs', `must be a finite number of ms (got ${startMs})`);
    this.processedTick = Math.floor(startMs / this.tickMs);
  }

  get size(): number {
    return this.count;
  }

  /** Schedules (or moves) `timer` to fire at `deadlineMs`. */
  schedule(timer: WheelTimer<T>, deadlineMs: number): void {
    if (timer.slot >= 0) this.unlink(timer);
    this.link(timer, Math.max(Math.ceil(deadlineMs / this.tickMs), this.processedTick + 1));
  }

  private link(timer: WheelTimer<T>, tick: number): void {
    const slot = tick & this.mask;
    timer.tick = tick;
    timer.slot = slot;
    timer.prev = null;
    timer.next = this.heads[slot];
    if (timer.next) timer.next.prev = timer;
    this.heads[slot] = timer;
    this.count++;
  }

  cancel(timer: WheelTimer<T>): void {
    if (timer.slot >= 0) this.unlink(timer);
    timer.tick = -1;
  }

  /** When `timer` fires (ms, its deadline rounded up to a tick), or -1 when it is not scheduled. */
  deadlineOf(timer: WheelTimer<T>): number {
    return timer.tick < 0 ? -1 : timer.tick * this.tickMs;
  }

  private unlink(timer: WheelTimer<T>): void {
    if (timer.prev) timer.prev.next = timer.next;
    else if (this.heads[timer.slot] === timer) this.heads[timer.slot] = timer.next;
    else {
      // The head of a list being expired (nested advance calls: one list each, seldom more than one).
      const lists = this.expiring;
      for (let i = lists.length - 1; i >= 0; i--) {
        if (lists[i] === timer) {
          lists[i] = timer.next;
          break;
        }
      }
    }
    if (timer.next) timer.next.prev = timer.prev;
    timer.prev = timer.next = null;
    timer.slot = -1;
    this.count--;
  }

  /**
   * Processes every tick up to `nowMs` and calls `onExpire` for each timer
   * due. A callback may reschedule its timer or any other, and may call
   * advance itself. A callback that throws stops this call (the error goes
   * to the caller); the timers still due with it are kept, due at the next
   * tick. Returns the number of timers that expired.
   */
  advance(nowMs: number, onExpire: (target: T, timer: WheelTimer<T>) => void): number {
    const targetTick = Math.floor(nowMs / this.tickMs);
    let expired = 0;
    // A callback may itself call advance: each call expires a list of its own.
    const lists = this.expiring;
    const level = lists.length;
    lists.push(null);
    // processedTick when the wheel was last searched for its earliest timer (see below).
    let searchedAt = -Infinity;
    const slots = this.heads.length;
    try {
      while (this.processedTick < targetTick) {
        if (targetTick - this.processedTick > slots && this.processedTick - searchedAt >= slots) {
          // More than a revolution to go (the wheel sat empty while idle, and was just given a
          // timer; or the process stalled): walking every tick would cost in proportion to the
          // time passed (a month idle, 52 million ticks and 200 ms blocked at 50 ms). No timer is
          // due before the earliest, so skip to it. Searched at most once per revolution walked,
          // which costs as much as the search.
          searchedAt = this.processedTick;
          const first = this.earliestTick();
          if (first - 1 > this.processedTick) {
            this.processedTick = Math.min(first - 1, targetTick);
            continue;
          }
        }
        const tick = ++this.processedTick;
        const slot = tick & this.mask;
        this.stats.ticks++;
        // Detach the slot so timers rescheduled by callbacks are not revisited.
        lists[level] = this.heads[slot];
        this.heads[slot] = null;
        while (lists[level]) {
          const node = lists[level]!;
          const next = node.next;
          lists[level] = next;
          if (next) next.prev = null;
          node.prev = node.next = null;
          this.stats.visited++;
          // Compared with processedTick, not this call's tick: a callback's nested advance may have
          // processed past this node's tick while it waited here, outside its slot, and put back it
          // would wait a whole turn of the wheel more.
          if (node.tick > this.processedTick) {
            // Due in a later turn of the wheel.
            node.next = this.heads[slot];
            if (node.next) node.next.prev = node;
            this.heads[slot] = node;
          } else {
            node.slot = -1;
            node.tick = -1;
            this.count--;
            expired++;
            onExpire(node.target, node);
          }
        }
        if (this.count === 0) {
          this.processedTick = Math.max(this.processedTick, targetTick);
          break;
        }
      }
    } finally {
      // Left only by a callback that threw: still scheduled, due at the next tick.
      let rest = lists[level];
      lists.length = level;
      while (rest) {
        const node = rest;
        rest = node.next;
        node.prev = node.next = null;
        node.slot = -1;
        this.count--;
        // By tick, not through schedule(node, tick × tickMs): with a fractional tick that product
        // divided back can round up (0.1 × 3 / 0.1 = 3.0000000000000004), a tick late.
        this.link(node, Math.max(node.tick, this.processedTick + 1));
      }
      this.stats.expired += expired;
    }
    return expired;
  }

  /** The earliest tick of any scheduled timer, also those in lists being expired (Infinity if none). */
  private earliestTick(): number {
    let first = Infinity;
    const scan = (head: WheelTimer<T> | null) => {
      for (let t = head; t; t = t.next) if (t.tick < first) first = t.tick;
    };
    for (const head of this.heads) scan(head);
    for (const head of this.expiring) scan(head);
    return first;
  }

  /** The time at which the next tick will be processed. */
  nextTickAt(): number {
    return (this.processedTick + 1) * this.tickMs;
  }
}
