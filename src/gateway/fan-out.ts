/**
 * Writes to every connection, FANOUT_CHUNK writes per turn of the event loop. A broadcast written in
 * one pass blocked the loop for as many writes as there are connections (about half a second at
 * 200,000), and a thousand broadcasts at once for all of theirs (4.5 s over 1,710 devices), with no
 * heartbeat answered meanwhile: devices were taken for dead. Broadcasts take their turns one after
 * another, in the order they were made (so every connection gets them in that order), and the chunk
 * is over all of them: each running its own chunks, many would still fill one turn between them.
 */
export const FANOUT_CHUNK = 2000;

interface Job<T> {
  targets: T[];
  next: number;
  written: number;
  write: (t: T) => boolean;
  done: (written: number) => void;
}

export class FanOut<T> {
  private readonly jobs: Job<T>[] = [];
  private scheduled = false;

  constructor(private readonly chunk = FANOUT_CHUNK) {}

  /** Broadcasts not yet written everywhere. */
  get pending(): number {
    return this.jobs.length;
  }

  /**
   * Queues writing to each of `targets` (`write` says whether it wrote). With nothing queued before
   * it, the first chunk is written now (a small gateway's broadcast is out before this returns).
   * Resolves with the number written.
   */
  add(targets: T[], write: (t: T) => boolean): Promise<number> {
    return new Promise((done) => {
      this.jobs.push({ targets, next: 0, written: 0, write, done });
      if (this.jobs.length === 1 && !this.scheduled) this.step();
    });
  }

  private readonly step = (): void => {
    this.scheduled = false;
    try {
      let left = this.chunk;
      while (left > 0 && this.jobs.length > 0) {
        const j = this.jobs[0];
        const end = Math.min(j.targets.length, j.next + left);
        left -= end - j.next;
        // Past each target before writing it: a write that throws is not retried for ever.
        while (j.next < end) if (j.write(j.targets[j.next++])) j.written++;
        if (j.next === j.targets.length) {
          this.jobs.shift();
          j.done(j.written);
        }
      }
    } finally {
      if (this.jobs.length > 0 && !this.scheduled) {
        this.scheduled = true;
        setImmediate(this.step);
      }
    }
  };
}
