import { LonglinkError } from '../protocol/errors.js';

/**
 * Writes to every connection, FANOUT_CHUNK writes per turn of the event loop. A broadcast written in
 * one pass blocked the loop for as many writes as there are connections (about half a second at
 * 200,000), and a thousand broadcasts at once for all of theirs (4.5 s over 1,710 devices), with no
 * heartbeat answered meanwhile: devices were taken for dead. Broadcasts take their turns one after
 * another, in the order they were made (so every connection gets them in that order), and the chunk
 * is over all of them: each running its own chunks, many would still fill one turn between them.
 */
export const FANOUT_CHUNK = 2000;

/**
 * What the queue holds at most: broadcasts, and bytes (payloads, and 8 bytes per connection listed).
 * Each queued broadcast holds its payload and a list of this node's connections (1.6 MB at
 * 200,000): the server API's budget bounds this node's own, but broadcasts from other nodes came in
 * without one. Beyond, a broadcast is refused (LL_ERR_QUEUE_FULL) before anything is written.
 */
export const FANOUT_MAX_QUEUED = 64;
export const FANOUT_MAX_BYTES = 64 * 1024 * 1024;

/**
 * What a target carries so that anything else written to it can go after the broadcasts made before
 * it (see FanOut.flush): broadcasts are numbered in the order made; the last one that will be written
 * to this target, and the last one that was (or was passed, the target being closed).
 */
export interface FanOutTarget {
  fanOutQueued: number;
  fanOutWritten: number;
}

interface Job<T> {
  /** Numbered in the order made, one after another: the queue's jobs have consecutive numbers. */
  n: number;
  targets: T[];
  /** What it holds (FANOUT_MAX_BYTES). */
  bytes: number;
  next: number;
  written: number;
  write: (t: T) => boolean;
  done: (written: number) => void;
}

export class FanOut<T extends FanOutTarget> {
  private readonly jobs: Job<T>[] = [];
  private scheduled = false;
  private made = 0;
  private held = 0;

  /** `onError`: a write threw (reported; the broadcast goes on to the others). */
  constructor(
    private readonly onError: (error: unknown, target: T) => void,
    private readonly chunk = FANOUT_CHUNK,
    private readonly maxQueued = FANOUT_MAX_QUEUED,
    private readonly maxBytes = FANOUT_MAX_BYTES,
  ) {}

  /** Broadcasts not yet written everywhere. */
  get pending(): number {
    return this.jobs.length;
  }

  /**
   * Queues writing to each of `targets` (`write` says whether it wrote). With nothing queued before
   * it, the first chunk is written now (a small gateway's broadcast is out before this returns).
   * Resolves with the number written. Throws LL_ERR_QUEUE_FULL, having queued nothing, when the
   * queue holds FANOUT_MAX_QUEUED broadcasts, or this one would take it past FANOUT_MAX_BYTES
   * (`payloadBytes` and its list); one alone is always taken.
   */
  add(targets: T[], payloadBytes: number, write: (t: T) => boolean): Promise<number> {
    const bytes = payloadBytes + 8 * targets.length;
    if (this.jobs.length > 0 && (this.jobs.length >= this.maxQueued || this.held + bytes > this.maxBytes)) {
      throw new LonglinkError('LL_ERR_QUEUE_FULL', `${this.jobs.length} broadcasts (${this.held} bytes) wait to be written; at most ${this.maxQueued} and ${this.maxBytes} bytes: this one (${bytes} bytes) was not`);
    }
    this.held += bytes;
    const n = ++this.made;
    // A target is in every broadcast from the one it opened before to the one it closed before (the
    // gateway's choice of targets): those still owed to it are the numbers after fanOutWritten.
    for (const t of targets) {
      if (t.fanOutWritten >= t.fanOutQueued) t.fanOutWritten = n - 1;
      t.fanOutQueued = n;
    }
    return new Promise((done) => {
      this.jobs.push({ n, targets, bytes, next: 0, written: 0, write, done });
      if (this.jobs.length === 1 && !this.scheduled) this.step();
    });
  }

  /**
   * Writes to `t` now the broadcasts still queued for it, in order: something else written to it next
   * (a push, a send, a CLOSE) is not read before a broadcast made earlier. The fan-out passes it by
   * when it gets there. Nothing to do (the usual case) costs one comparison.
   */
  flush(t: T): void {
    if (t.fanOutWritten >= t.fanOutQueued) return;
    const first = this.jobs.length > 0 ? this.jobs[0].n : Infinity;
    while (t.fanOutWritten < t.fanOutQueued) {
      const j = this.jobs[t.fanOutWritten + 1 - first];
      if (j) this.writeTo(j, t);
      else t.fanOutWritten++;
    }
  }

  private writeTo(j: Job<T>, t: T): void {
    // Past it before writing: a write that throws is not retried for ever.
    t.fanOutWritten = j.n;
    // Caught here: thrown from a later turn's setImmediate it ended the process, and from the first
    // chunk (in add's promise) it was an unhandled rejection; from a flush, it failed someone else's push.
    try {
      if (j.write(t)) j.written++;
    } catch (error) {
      this.onError(error, t);
    }
  }

  private readonly step = (): void => {
    this.scheduled = false;
    try {
      let left = this.chunk;
      while (left > 0 && this.jobs.length > 0) {
        const j = this.jobs[0];
        const end = Math.min(j.targets.length, j.next + left);
        left -= end - j.next;
        while (j.next < end) {
          const t = j.targets[j.next++];
          // Written already if flushed ahead of something else.
          if (t.fanOutWritten < j.n) this.writeTo(j, t);
        }
        if (j.next === j.targets.length) {
          this.jobs.shift();
          this.held -= j.bytes;
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
