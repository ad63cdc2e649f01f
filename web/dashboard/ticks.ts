/**
 * The last ten minutes of ticks, and the server's clock as the ticks tell it
 * (the dashboard may run on a machine whose clock differs from the gateway's).
 */
import type { Tick } from '../../src/admin/api-types.js';

const WINDOW_MS = 10 * 60_000;

export class TickWindow {
  private list: Tick[] = [];
  private offsetMs = 0;

  reset(history: Tick[]): void {
    this.list = history.slice().sort((a, b) => a.t - b.t);
    this.trim();
    const last = this.latest;
    if (last) this.offsetMs = last.t - Date.now();
  }

  push(t: Tick): void {
    const last = this.latest;
    // A tick that repeats or predates the last one (a replay after reconnecting) replaces nothing.
    if (last && t.t <= last.t) return;
    this.list.push(t);
    this.trim();
    this.offsetMs = t.t - Date.now();
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
