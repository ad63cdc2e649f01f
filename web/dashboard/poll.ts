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
  /** What a soon() that came while a request was out asked for: the wait after it ends. */
  private againWait = Infinity;
  /** When the last request ended (performance.now()). */
  private lastEnd = -Infinity;
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
    this.againWait = Infinity;
    this.run(this.gen);
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.dueAt = Infinity;
  }

  /**
   * Poll soon rather than at the next period (something changed): in `delayMs`, and at least
   * `minGapMs` after the last request ended (what changes often must not make every page
   * ask the server for the same list several times a second).
   */
  soon(delayMs = 250, minGapMs = 0): void {
    if (!this.running) return;
    if (this.inFlight) {
      this.againWait = Math.min(this.againWait, Math.max(delayMs, minGapMs));
      return;
    }
    const wait = Math.max(delayMs, this.lastEnd + minGapMs - performance.now());
    // Never later than a poll already due: on a busy gateway notices come more often than
    // delayMs, and each pushing the poll back again starved it for as long as they kept coming.
    if (performance.now() + wait >= this.dueAt) return;
    this.arm(this.gen, wait);
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
        this.lastEnd = performance.now();
        if (!this.running) return;
        const wait = Math.min(this.againWait, this.periodMs);
        this.againWait = Infinity;
        this.arm(gen, wait);
      });
  }
}
