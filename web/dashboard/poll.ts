/**
 * Polling without overlap: the next request starts a period after the last
 * one finished, so a slow server is never asked twice at once. A stop/start
 * begins a new generation; a request still out from the old one schedules nothing.
 */
export class Poller {
  private timer = 0;
  private gen = 0;
  private running = false;
  private inFlight = false;
  private again = false;
  /** When the pending timer fires (performance.now()); Infinity when none is pending. */
  private dueAt = Infinity;

  constructor(
    private readonly task: () => Promise<void>,
    private readonly periodMs: number,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.gen++;
    this.inFlight = false;
    this.again = false;
    this.run(this.gen);
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.dueAt = Infinity;
  }

  /** Poll soon rather than at the next period (something changed). */
  soon(delayMs = 250): void {
    if (!this.running) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    // Never later than a poll already due: on a busy gateway notices come more often than
    // delayMs, and each pushing the poll back again starved it for as long as they kept coming.
    if (performance.now() + delayMs >= this.dueAt) return;
    this.arm(this.gen, delayMs);
  }

  private arm(gen: number, delayMs: number): void {
    clearTimeout(this.timer);
    this.dueAt = performance.now() + delayMs;
    this.timer = window.setTimeout(() => this.run(gen), delayMs);
  }

  private run(gen: number): void {
    if (!this.running || gen !== this.gen) return;
    clearTimeout(this.timer);
    this.dueAt = Infinity;
    this.inFlight = true;
    this.task()
      .catch(() => {}) // tasks show their own errors; polling goes on
      .finally(() => {
        if (gen !== this.gen) return;
        this.inFlight = false;
        if (!this.running) return;
        const wait = this.again ? 250 : this.periodMs;
        this.again = false;
        this.arm(gen, wait);
      });
  }
}
