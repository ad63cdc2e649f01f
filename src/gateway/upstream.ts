import { randomBytes } from 'node:crypto';
import { Backoff } from '../core/backoff.js';
import type { Timers } from '../core/clock.js';
import { dropUndefined, MAX_TIMER_MS } from '../core/heartbeat-policy.js';
import { LonglinkError } from '../protocol/errors.js';

/** A device's message on its way to the backend. */
export interface UpstreamMessage {
  userId: string;
  deviceId: string;
  connectionId: string;
  sessionId: string;
  /** The client's message id (the backend's idempotency key) and its in-session number. */
  id?: string;
  seq?: number;
  payload: Uint8Array;
  /** Wall-clock ms when the gateway read it. */
  receivedAt: number;
}

export type UpstreamEventType = 'online' | 'offline' | 'suspect' | 'replaced';

/**
 * A device's connection came or went, went quiet past its suspicion point,
 * or was replaced by a newer one of the same device (sent upstream when
 * `events` asks for it).
 */
export interface UpstreamEvent {
  type: UpstreamEventType;
  userId: string;
  deviceId: string;
  connectionId: string;
  nodeId: string;
  /** offline: why, its close code, who ended it, and how long the device had been silent (the detection time). */
  reason?: string;
  code?: number;
  initiator?: 'gateway' | 'peer';
  silentForMs?: number;
  /** online, replaced: whether it (the newer link) resumed its session. */
  resumed?: boolean;
  /**
   * replaced: the newer link that took over (`connectionId` is the one it
   * closed, with no `offline`: the device stayed online), and whether the old
   * one had been silent past its heartbeat interval (stale: a link a NAT or
   * a network switch had already killed) or not.
   */
  byConnectionId?: string;
  stale?: boolean;
  /** suspect: false when the device went quiet past its suspicion point (a probe went out), true when it was heard again. */
  cleared?: boolean;
  /** Wall-clock ms. */
  at: number;
  /**
   * Set by the gateway: this node's count of events, from 1 at its start.
   * Events are sent concurrently and retried, so they may arrive out of
   * order or twice; (nodeId, run, seq) orders and identifies them. Events
   * lost (three attempts failed) or dropped (`maxPendingEvents`) are counted
   * too: a number that never arrives is a missing event.
   */
  seq?: number;
  /**
   * Set by the gateway: this run of the node (random at each start). A node
   * restarted under the same id (`--node-id`, a re-forked worker) counts
   * from 1 again: without it a backend would take its first events for
   * duplicates of the last run's.
   */
  run?: string;
}

/**
 * A sink's way to say the backend refuses a message for good (malformed,
 * forbidden, too large for it): retried, it would be refused again, and the
 * device's later messages, taken in one at a time, would wait behind it for
 * ever. Any other failure is retried.
 */
export class UpstreamRejectedError extends LonglinkError {
  constructor(message: string) {
    super('LL_ERR_UPSTREAM_REJECTED', message);
    this.name = 'UpstreamRejectedError';
  }
}

/**
 * A sink's way to say the backend is there but asks for a pause (a webhook's
 * 429 or 503 with Retry-After): the next attempt waits at least
 * `retryAfterMs`, at most `retryMaxMs` (a backend cannot hold a device's
 * messages for an hour). Any failure is retried; this one says when.
 */
export class UpstreamBusyError extends LonglinkError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super('LL_ERR_UPSTREAM_BUSY', message);
    this.name = 'UpstreamBusyError';
  }
}

/** What a sink may answer: a reply pushed back to the device that sent the message. */
export interface UpstreamAnswer {
  reply?: Uint8Array | string;
  /** The backend accepted the message, but its reply could not be taken (too large, say): reported as a `fault`. */
  replyError?: Error;
}

/**
 * Where devices' messages go (a webhook, a stream). `send` resolves once the
 * backend has the message (then the device gets its acknowledgement) and
 * rejects when it does not (then it is retried).
 */
export interface UpstreamSink {
  readonly name: string;
  send(msg: UpstreamMessage): Promise<UpstreamAnswer | void>;
  /** Lifecycle events, best effort (a few retries); sinks without it get none. */
  sendEvent?(e: UpstreamEvent): Promise<void>;
  close?(): Promise<void>;
  /**
   * Checked once at `listen()`: a set-up that would lose what the sink
   * accepted (a Redis that evicts keys), reported as a `fault` of kind config,
   * op `upstream <name>`. Null when fine or not knowable.
   */
  checkSetup?(): Promise<Error | null>;
  /** Connections it may hold open to the backend at most: files the gateway keeps back from devices. */
  readonly maxSockets?: number;
  /** Its own deadline for one call (ms), if it has one: the runner's (`attemptTimeoutMs`) is never shorter by default. */
  readonly timeoutMs?: number;
}

export interface UpstreamOptions {
  sink: UpstreamSink;
  /** Messages of one connection waiting for the backend; beyond it the link gets GOAWAY (its client re-sends later). */
  maxPendingPerConnection?: number;
  /** The same for the whole process. */
  maxPending?: number;
  /** Retry delays while the backend fails: capped exponential with full jitter. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Lifecycle events to send as well (none by default). */
  events?: UpstreamEventType[];
  /**
   * Lifecycle events on their way (attempts and the waits between them) at
   * once; beyond it an event is dropped and counted. Devices that connect and
   * leave while the backend is slow would otherwise pile up requests without
   * bound (each held up to three attempts and the sink's timeout).
   */
  maxPendingEvents?: number;
  /**
   * Longest one call to the sink (a message's attempt, an event's) may go
   * unanswered: past it the call counts as failed (a `fault`,
   * LL_ERR_UPSTREAM_TIMEOUT) and a message is retried. A sink that never
   * settles (one of your own, without a deadline) would otherwise hold its
   * device's messages, and a slot of `maxPending`, for good. Default: 30 s,
   * or the sink's own `timeoutMs` plus a second if that is longer (its own
   * deadline answers first, with its own error).
   */
  attemptTimeoutMs?: number;
}

export const UPSTREAM_DEFAULTS = { maxPendingPerConnection: 256, maxPending: 20_000, retryMinMs: 100, retryMaxMs: 10_000, events: [] as UpstreamEventType[], maxPendingEvents: 10_000, attemptTimeoutMs: 30_000 };

export interface UpstreamStats {
  accepted: number;
  failures: number;
  /** Refused for good by the backend (UpstreamRejectedError): not retried, acknowledged to the device. */
  rejected: number;
  eventsSent: number;
  /** Sent three times and refused each time. */
  eventsLost: number;
  /** Not sent: `maxPendingEvents` were already on their way. */
  eventsDropped: number;
  eventsPending: number;
  pending: number;
  refusedBacklog: number;
}

/**
 * Hands devices' messages to the sink, retrying with capped backoff and
 * jitter while it fails, for as long as the device's link is open. A message
 * the backend never accepted is never acknowledged: the device's SDK keeps it
 * and re-sends it on its next connection, so an outage loses nothing.
 */
export class UpstreamRunner {
  readonly o: Required<UpstreamOptions>;
  private eventSeq = 0;
  /** This process's run of the node, on every event (see UpstreamEvent.run). */
  private readonly run = randomBytes(6).toString('base64url');
  readonly stats: UpstreamStats = { accepted: 0, failures: 0, rejected: 0, eventsSent: 0, eventsLost: 0, eventsDropped: 0, eventsPending: 0, pending: 0, refusedBacklog: 0 };
  /** Payload bytes of the fire-and-forget messages in flight (they share the gateway's waiting-bytes budget). */
  private fireBytes = 0;
  /** Fire-and-forget messages in flight: they share maxPending with the sequenced ones waiting. */
  private fireCount = 0;
  get fireAndForgetBytes(): number {
    return this.fireBytes;
  }

  constructor(
    opts: UpstreamOptions,
    private readonly timers: Timers,
    private readonly onFailure: (err: unknown, msg: UpstreamMessage) => void,
    private readonly random: () => number = Math.random,
  ) {
    const sinkTimeout = opts.sink.timeoutMs;
    // At most a timer's: a sink's deadline near MAX_TIMER_MS, plus the second, made one Node fires after 1 ms.
    const attemptTimeoutMs = sinkTimeout !== undefined && Number.isFinite(sinkTimeout) ? Math.min(MAX_TIMER_MS, Math.max(UPSTREAM_DEFAULTS.attemptTimeoutMs, Math.ceil(sinkTimeout) + 1000)) : UPSTREAM_DEFAULTS.attemptTimeoutMs;
    this.o = { ...UPSTREAM_DEFAULTS, attemptTimeoutMs, ...dropUndefined(opts) } as Required<UpstreamOptions>;
    for (const k of ['maxPendingPerConnection', 'maxPending', 'maxPendingEvents', 'retryMinMs', 'retryMaxMs', 'attemptTimeoutMs'] as const) {
      const v = this.o[k];
      if (!(Number.isInteger(v) && v > 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `upstream.${k} must be a positive integer (got ${v})`);
    }
    for (const k of ['retryMaxMs', 'attemptTimeoutMs'] as const) {
      if (this.o[k] > MAX_TIMER_MS) throw new LonglinkError('LL_ERR_INVALID_OPTION', `upstream.${k} must be at most ${MAX_TIMER_MS} (got ${this.o[k]})`);
    }
  }

  /**
   * Whether one more message may wait: the connection has `pendingHere` waiting already, all links
   * `pendingAll` (queued behind each link's first included). The fire-and-forget messages in flight
   * count too: without them, fire-and-forget filled maxPending and sequenced ones then took as much again.
   */
  admits(pendingHere: number, pendingAll: number): boolean {
    const ok = pendingHere < this.o.maxPendingPerConnection && pendingAll + this.fireCount < this.o.maxPending;
    if (!ok) this.stats.refusedBacklog++;
    return ok;
  }

  /**
   * Resolves with the sink's answer once it accepted `msg`, `'rejected'` if
   * the backend refused it for good, or null if `stillWanted()` turned false first.
   */
  async deliver(msg: UpstreamMessage, stillWanted: () => boolean): Promise<UpstreamAnswer | 'rejected' | null> {
    // Made on the first failure only: a healthy backend costs no backoff per message.
    let backoff: Backoff | null = null;
    let failed: unknown;
    this.stats.pending++;
    try {
      while (stillWanted()) {
        try {
          const answer = (await this.bounded(() => this.o.sink.send(msg))) ?? {};
          this.stats.accepted++;
          return answer;
        } catch (err) {
          failed = err;
          this.onFailure(err, msg);
          if (err instanceof UpstreamRejectedError) {
            this.stats.rejected++;
            return 'rejected';
          }
          this.stats.failures++;
        }
        const delay = this.delay((backoff ??= this.backoff()), failed);
        await new Promise<void>((r) => this.timers.setTimeout(r, delay));
      }
      return null;
    } finally {
      this.stats.pending--;
    }
  }

  /**
   * A message without a sequence number: one attempt, nothing waits for it.
   * It counts in the process's pending bound all the same, so a fire-and-forget
   * flood cannot pile up requests to a slow backend; beyond it, it is dropped.
   */
  fireAndForget(msg: UpstreamMessage, waitingAll = 0, onAnswer?: (answer: UpstreamAnswer) => void, bytes?: { waitingBytes: number; maxBytes: number }, onDone?: () => void): boolean {
    // One budget with the sequenced messages waiting (`waitingAll`, those in flight included).
    const size = msg.payload.length;
    if (waitingAll + this.fireCount >= this.o.maxPending || (bytes && bytes.waitingBytes + this.fireBytes + size > bytes.maxBytes)) {
      this.stats.refusedBacklog++;
      return false;
    }
    this.stats.pending++;
    this.fireCount++;
    this.fireBytes += size;
    // A sink of the user's that throws rather than rejects, or never settles: it left pending and
    // fireBytes raised for good (every later fire-and-forget refused). bounded() turns both into a rejection.
    this.bounded(() => this.o.sink.send(msg))
      .then(
        (answer) => {
          this.stats.accepted++;
          // A reply goes back to the device as for any message (the backend does not know the difference).
          if (answer) onAnswer?.(answer);
        },
        (err: unknown) => {
          this.stats.failures++;
          this.onFailure(err, msg);
        },
      )
      .finally(() => {
        this.stats.pending--;
        this.fireCount--;
        this.fireBytes -= size;
        onDone?.();
      });
    return true;
  }

  /**
   * One call to the sink, failed (LL_ERR_UPSTREAM_TIMEOUT) if it has not settled within
   * attemptTimeoutMs, or if it throws rather than rejects. A late answer is ignored: the
   * message was retried meanwhile, and the backend deduplicates by id.
   */
  private bounded<T>(call: () => Promise<T>): Promise<T> {
    const ms = this.o.attemptTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const t = this.timers.setTimeout(() => reject(new LonglinkError('LL_ERR_UPSTREAM_TIMEOUT', `upstream ${this.o.sink.name}: no answer within ${ms} ms (attemptTimeoutMs)`)), ms);
      let p: Promise<T>;
      try {
        p = call();
      } catch (err) {
        p = Promise.reject(err);
      }
      Promise.resolve(p).then(
        (v) => {
          this.timers.clearTimeout(t);
          resolve(v);
        },
        (err: unknown) => {
          this.timers.clearTimeout(t);
          reject(err);
        },
      );
    });
  }

  /** The wait before the next attempt: the backoff's, or longer if the backend asked for it (UpstreamBusyError), up to retryMaxMs. */
  private delay(backoff: Backoff, err: unknown): number {
    const next = backoff.next();
    const asked = err instanceof UpstreamBusyError && Number.isFinite(err.retryAfterMs) ? Math.min(err.retryAfterMs, this.o.retryMaxMs) : 0;
    return Math.max(next, asked);
  }

  private backoff(): Backoff {
    return new Backoff({ initialDelayMs: this.o.retryMinMs, minDelayMs: Math.max(1, Math.floor(this.o.retryMinMs / 2)), maxDelayMs: this.o.retryMaxMs, factor: 2 }, this.random);
  }

  /**
   * Sends a lifecycle event if asked for: three attempts with backoff, then
   * counted as lost; dropped at once while `maxPendingEvents` are on their way.
   */
  async event(e: UpstreamEvent): Promise<void> {
    const sink = this.o.sink;
    if (!sink.sendEvent || !this.o.events.includes(e.type)) return;
    // Numbered as made: the order the backend restores, whatever order they arrive in. A dropped
    // event takes its number too, so the next one delivered shows the gap (as a lost one's does).
    const seq = ++this.eventSeq;
    if (this.stats.eventsPending >= this.o.maxPendingEvents) {
      this.stats.eventsDropped++;
      return;
    }
    this.stats.eventsPending++;
    e = { ...e, run: this.run, seq };
    try {
      const backoff = this.backoff();
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await this.bounded(() => sink.sendEvent!(e));
          this.stats.eventsSent++;
          return;
        } catch (err) {
          // No wait after the last attempt: the event is lost, and it no longer counts as pending.
          if (attempt < 2) await new Promise<void>((r) => this.timers.setTimeout(r, this.delay(backoff, err)));
        }
      }
      this.stats.eventsLost++;
    } finally {
      this.stats.eventsPending--;
    }
  }
}
