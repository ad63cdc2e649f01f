/**
 * Items in order of when they are next due, for a sweep that should cost what
 * is due and not what is held: a binary min-heap of (at, item) with lazy
 * removal. An item that goes (its due time Infinity) need not be taken out,
 * and one whose due time moves is pushed again at the new time; an entry
 * whose time no longer matches what `current` says of its item is stale and
 * skipped when it comes up.
 *
 * Stale entries are bounded: when they outnumber the live ones (and there
 * are more than a few), the queue is rebuilt from the live items the caller
 * lists, so memory follows what is held, not how much came and went.
 */
export class ExpiryQueue<T> {
  private at: number[] = [];
  private items: T[] = [];

  /**
   * @param current the item's due time now, or Infinity if it has none (or is gone)
   */
  constructor(private readonly current: (item: T) => number) {}

  get size(): number {
    return this.at.length;
  }

  /** The item is due at `at`: call whenever its due time changes to a finite one (the entry at its old time is stale from then on). */
  push(item: T, at: number): void {
    if (!Number.isFinite(at)) return;
    this.at.push(at);
    this.items.push(item);
    this.up(this.at.length - 1);
  }

  /**
   * Hands every item due at `now` or before to `handle`, in order of due
   * time, stale entries skipped. `handle` moves the item's due time past
   * `now` (or to Infinity) and pushes it again if it has one; an item with
   * two entries at one time is handled once, since the second is stale by then.
   */
  takeDue(now: number, handle: (item: T) => void): void {
    while (this.at.length > 0 && this.at[0] <= now) {
      const at = this.at[0];
      const item = this.items[0];
      this.pop();
      // Stale: the item's time moved (it has an entry at the new time) or it has none now.
      if (this.current(item) === at) handle(item);
    }
  }

  /** Rebuilds from the live items when stale entries outnumber them: call after a sweep. */
  compact(live: () => Iterable<T>, liveCount: number): void {
    if (this.at.length <= 1024 || this.at.length <= 2 * liveCount) return;
    const at: number[] = [];
    const items: T[] = [];
    for (const item of live()) {
      const t = this.current(item);
      if (!Number.isFinite(t)) continue;
      at.push(t);
      items.push(item);
    }
    this.at = at;
    this.items = items;
    for (let i = (at.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  clear(): void {
    this.at = [];
    this.items = [];
  }

  private pop(): void {
    const lastAt = this.at.pop()!;
    const lastItem = this.items.pop()!;
    if (this.at.length === 0) return;
    this.at[0] = lastAt;
    this.items[0] = lastItem;
    this.down(0);
  }

  private up(i: number): void {
    const { at, items } = this;
    const t = at[i];
    const item = items[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (at[p] <= t) break;
      at[i] = at[p];
      items[i] = items[p];
      i = p;
    }
    at[i] = t;
    items[i] = item;
  }

  private down(i: number): void {
    const { at, items } = this;
    const n = at.length;
    const t = at[i];
    const item = items[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const c = l + 1 < n && at[l + 1] < at[l] ? l + 1 : l;
      if (at[c] >= t) break;
      at[i] = at[c];
      items[i] = items[c];
      i = c;
    }
    at[i] = t;
    items[i] = item;
  }
}
