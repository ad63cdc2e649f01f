/**
 * The last ten minutes of ticks, and the server's clock as the ticks tell it
 * (the dashboard may run on a machine whose clock differs from the gateway's).
 */
import type { Tick } from '../../src/admin/api-types.js';

const WINDOW_MS = 10 * 60_000;

export class TickWindow {
  private list: Tick[] = [];
  private offsetMs = 0;

  /** The gateway's history, oldest first as it sends it. */
  reset(history: Tick[]): void {
    this.list = [];
    for (const t of history) this.add(t);
    this.trim();
    const last = this.latest;
    if (last) this.offsetMs = last.t - Date.now();
  }

  push(t: Tick): void {
    this.add(t);
    this.trim();
    this.offsetMs = t.t - Date.now();
  }

  /**
   * Ticks come in order, stamped with the gateway's wall clock. One stamped before the last
   * means that clock was stepped back (NTP): the ticks stamped after it belong to the time
   * before the step and are dropped, so the charts go on. Ignoring the new ticks instead
   * froze the charts (and sorting the history by time mixed the two) for as long as the step.
   */
  private add(t: Tick): void {
    const last = this.latest;
    if (last && t.t === last.t) return;
    if (last && t.t < last.t) {
      let keep = this.list.length;
      while (keep > 0 && this.list[keep - 1]!.t >= t.t) keep--;
      this.list.length = keep;
    }
    this.list.push(t);
  }

  get ticks(): readonly Tick[] {
    return this.list;
  }

  get latest(): Tick | undefined {
    return this.list[this.list.length - 1];
  }

  /** Now on the gateway's clock (ms since the epoch). */
  serverNow(): number {
    return Date.now() + this.offsetMs;
  }

  private trim(): void {
    const last = this.latest;
    if (!last) return;
    const from = last.t - WINDOW_MS;
    let i = 0;
    while (i < this.list.length && this.list[i]!.t < from) i++;
    if (i > 0) this.list.splice(0, i);
  }
}
