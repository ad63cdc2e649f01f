import { randomUUID } from 'node:crypto';
import type { Timers, TimerHandle } from '../core/clock.js';
import { MAX_TIMER_MS } from '../core/heartbeat-policy.js';
import { LonglinkError } from '../protocol/errors.js';
import { FrameType, type DataFrame } from '../protocol/frames.js';
import type { ServerConnection } from './connection.js';
import { LinkDelivery } from './link-delivery.js';
import type { ResolvedGatewayOptions } from './options.js';
import type { StoreRetry } from './store-retry.js';
import { PushTracker, type PushResult } from './push-tracker.js';
import type { Registry } from './registry.js';
import type { PresenceEntry, QueuedMessage } from './stores/store.js';
import type { UpstreamAnswer, UpstreamMessage, UpstreamRunner } from './upstream.js';
import { assertPayloadFits } from '../protocol/data-frame-size.js';
import { isWellFormed } from '../protocol/well-formed.js';
import { sourceKey } from './source-key.js';
import { idKey } from './id-key.js';

/**
 * Reliable delivery, both ways, in one place: push into per-device mailboxes
 * and flush them to links, routing by the store's presence; inbound DATA in
 * order with dedup by seq and id; acknowledgements batched out and settled
 * in; expiry and drops reported. The gateway wires it to connections; the
 * connection is only a link with a detector.
 *
 * The rules that make "acknowledged means delivered" hold across nodes,
 * sessions and a store that loses its data:
 * - A mailbox is bound to the link that takes from it; a new holder
 *   renumbers what is left above every number used before and above what its
 *   link already carries, and an ACK removes messages only while its link
 *   holds the mailbox. A number therefore never names two messages to one
 *   link (see MailboxStore.take).
 * - Every decision made across an `await` re-checks what it depends on (the
 *   link still open, not draining, not probing, writable).
 * - A store call that fails never crashes the process and never counts as
 *   success: the link is closed with a retryable code, or the push reports
 *   the device as `failed`.
 */

export interface DeliveryEvents {
  message(e: { conn: ServerConnection; payload: Uint8Array; seq?: number; id?: string }): void;
  delivered(e: { userId: string; deviceId: string; id: string; seq: number; ageMs: number }): void;
  drop(event: 'expired' | 'dropped', e: { userId: string; deviceId: string; id: string; seq: number; ageMs: number; reason: 'ttl' | 'overflow' }): void;
  /** A store call failed; what was affected was closed or reported, never assumed done. */
  fault(op: string, err: unknown, where?: { userId: string; deviceId?: string }): void;
}

export interface PushOptions {
  /** Message id; generated when omitted. The client drops a second delivery of the same id. */
  id?: string;
  /** Time-to-live; default `delivery.messageTtlMs`. */
  ttlMs?: number;
  /** How long the promise waits for acknowledgements; default `delivery.pushWaitMs`. */
  waitMs?: number;
  /** Only this device of the user (known or online); otherwise every device of the user. */
  deviceId?: string;
  /**
   * Called once the message is in the mailbox of every device it is for (or
   * known to have failed there), before acknowledgements are waited for; not
   * called when nothing was queued (unknown user or device, store down). What
   * lets a caller keep pushes to one user in order without waiting out each
   * one's acknowledgements.
   */
  onQueued?: () => void;
}

/** Delivery counters since the gateway started. */
export interface DeliveryStats {
  pushed: number;
  delivered: number;
  expired: number;
  dropped: number;
  /** Messages written to a link that closed before acknowledging them (they stay queued and are re-sent). */
  unackedAtClose: number;
  /** Pushes that waited for a probe first. */
  probesBeforePush: number;
  /** Probes before push that went unanswered: dead links found before anything was written into them. */
  deadLinksFound: number;
  /** Client DATA frames dropped as re-sends of what was already accepted. */
  duplicatesIn: number;
  /** Store calls that failed (the affected link was closed, or the push reported `failed`). */
  storeFaults: number;
}

/** A link's claim on a client message id in the store (claimInbound): whose, and whether the record ended it. */
interface Claim {
  holder: string | null;
  ended: boolean;
}

/** Longest a client message waits for the same message from an older link of its device to be taken in. */
const TAKE_IN_WAIT_MS = 5_000;
/** How often a client message waits to look again at another node's claim on the same message (see claim). */
const CLAIM_POLL_MS = 50;
/** How long past a push's waitMs its acknowledgement is still reported to its node (the wait counts from its last write; clocks differ). */
const REPORT_GRACE_MS = 5_000;
/** Message ids in one delivery report to another node: one acknowledgement may remove a whole mailbox. */
const REPORT_IDS_PER_CONTROL = 256;

export class Delivery {
  readonly stats: DeliveryStats = {
    pushed: 0, delivered: 0, expired: 0, dropped: 0, unackedAtClose: 0, probesBeforePush: 0, deadLinksFound: 0, duplicatesIn: 0, storeFaults: 0,
  };
  readonly tracker: PushTracker;
  private readonly owedAcks = new Set<ServerConnection>();
  private ackTimer: TimerHandle | null = null;
  private sweepTimer: TimerHandle | null = null;
  private stopped = false;
  /** Client messages with an id being taken in (checked, handed over, recorded), by user, device and id (idKey): see message(). */
  private readonly takingIn = new Map<string, Promise<void>>();
  /** Client messages of every link waiting to be accepted (store checks, the backend), and their payload bytes. */
  readonly inbound = { messages: 0, bytes: 0 };
  /**
   * The same by source address: one source may hold at most inboundSourceShare of
   * what all links share (the upstream backlog, the waiting bytes). Without it
   * a few dozen links of one laptop, each within its own share, filled the
   * whole and every other device's next message was the one refused.
   */
  private readonly bySource = new Map<string, SourceHeld>();

  constructor(
    private readonly o: ResolvedGatewayOptions,
    private readonly registry: Registry,
    private readonly events: DeliveryEvents,
    private readonly onSweep: () => void = () => {},
    /** Where devices' messages go before they are acknowledged (a webhook, a stream), if anywhere. */
    readonly upstream: UpstreamRunner | null = null,
    /** Retries an acknowledgement's removal that the store failed (see settle). */
    private readonly chores: StoreRetry | null = null,
  ) {
    this.tracker = new PushTracker(o.timers);
  }

  private get timers(): Timers {
    return this.o.timers;
  }

  /** The link's delivery state, made on first use. */
  private state(conn: ServerConnection): LinkDelivery {
    return (conn.delivery ??= new LinkDelivery());
  }

  /** `receivedAt`: when the frame was read (a sequenced one may wait its turn long after). */
  private upstreamMessage(conn: ServerConnection, f: DataFrame, receivedAt = this.o.wallClock.now()): UpstreamMessage {
    return {
      userId: conn.userId,
      deviceId: conn.deviceId,
      connectionId: conn.id,
      sessionId: conn.sessionId,
      ...(f.id !== undefined ? { id: f.id } : {}),
      ...(f.seq !== undefined ? { seq: f.seq } : {}),
      payload: f.payload,
      receivedAt,
    };
  }

  private fault(op: string, err: unknown, conn?: ServerConnection): void {
    this.stats.storeFaults++;
    this.events.fault(op, err, conn && { userId: conn.userId, deviceId: conn.deviceId });
    // The link cannot be served right now; the client comes back and resumes (4004 is retryable).
    // The store's error (its address, say) went to the fault event, not to the device.
    conn?.closeWith('server-error', `store unavailable (${op})`);
  }

  // Links.

  /** WELCOME is out. `inSeq`, `outSeq`: what the session already carried both ways (a resume). */
  opened(conn: ServerConnection, inSeq: number, outSeq: number): void {
    if (inSeq > 0 || outSeq > 0) {
      const d = this.state(conn);
      d.inSeq = inSeq;
      // Numbers handed to this link start above what the client has (its HELLO lastSeq). What is
      // left is renumbered and re-sent; the client drops by id what it already has.
      d.sentSeq = d.ackedSeq = outSeq;
      // But first lastSeq acknowledges what the session's earlier link handed over. Renumbered, it
      // was acknowledged only by an ACK the client sent for the new numbers: one it sent before a
      // close() from its open handler is at or below lastSeq and removes nothing, and the app's next
      // run, a fresh process with no memory of ids, was given it again.
      if (outSeq > 0 && this.o.store.ackResumed) {
        void this.ackResumed(conn, d, outSeq);
        return;
      }
    } else if (this.o.store.holdsNothingFor?.(conn.userId, conn.deviceId)) {
      // A new session with nothing queued: a push from here on flushes for itself (the link is open).
      return;
    }
    void this.flush(conn);
  }

  /** Removes what the resumed session's earlier link delivered up to `upTo` (the HELLO's lastSeq), then flushes. */
  private ackResumed(conn: ServerConnection, d: LinkDelivery, upTo: number): void {
    // No take before the removal (a push meanwhile waits for it): this link's take would renumber
    // those messages above lastSeq first, and the removal would find none.
    d.flushing = true;
    const op = this.tracker.removal();
    const store = this.o.store;
    const removal = (async () => store.ackResumed!(conn.userId, conn.deviceId, conn.sessionId, upTo))();
    // A close meanwhile reports these delivered before the rest of its pushes queued (see closed).
    const settling = (d.settling = removal
      .then(
        (gone) => {
          const now = this.o.wallClock.now();
          for (const m of gone) {
            // Its time is over: the old link may have skipped it unsent (its expiredUnsent, unknown
            // here), and the sweep would have reported it expired in a moment anyway.
            if (m.expiresAt <= now) {
              this.reportDrop('expired', conn.userId, conn.deviceId, m, 'ttl', op);
              continue;
            }
            this.stats.delivered++;
            this.events.delivered({ userId: conn.userId, deviceId: conn.deviceId, id: m.id, seq: m.seq, ageMs: now - m.enqueuedAt });
            this.tracker.settle(conn.userId, m.id, conn.deviceId, 'delivered');
          }
          this.tellWaiting(conn.userId, conn.deviceId, gone.filter((m) => m.expiresAt > now), now);
        },
        (err) => this.fault('ackResumed', err, conn),
      )
      // A throwing `delivered` listener is the application's (reported), not the link's.
      .catch((err) => this.events.fault('message', err))
      .finally(() => {
        if (d.settling === settling) d.settling = null;
        d.flushing = false;
        void this.flush(conn);
      }));
  }

  /** The link closed: what it owed is forgotten, what it carried unacknowledged stays queued. */
  closed(conn: ServerConnection, stillRegistered: boolean): void {
    this.owedAcks.delete(conn);
    if (conn.delivery) this.stats.unackedAtClose += conn.delivery.unacked;
    if (!stillRegistered) return;
    // An acknowledgement still being removed from the store reports its pushes delivered first.
    const settling = conn.delivery?.settling;
    // Only the pushes waiting now: those made meanwhile wait on the device's next link, if it has one.
    if (settling) void settling.then(this.tracker.settleDeviceLater(conn.userId, conn.deviceId, 'queued'));
    else this.tracker.settleDevice(conn.userId, conn.deviceId, 'queued');
  }

  /** The device's link here gave way to its newer link on another node: what waited on this one stays queued for that one. */
  movedAway(userId: string, deviceId: string): void {
    this.tracker.settleDevice(userId, deviceId, 'queued');
  }

  /**
   * Whether everything written to the link has been acknowledged and no client message of it is
   * still being taken in (a draining link may go). One closed half-way through its taking in was
   * handed over, or is with the backend, unacknowledged: the client re-sends it to the next
   * gateway, which (a restart with a memory store, another node before the record lands) takes it
   * in a second time.
   */
  settled(conn: ServerConnection): boolean {
    const d = conn.delivery;
    return !d || (d.unacked === 0 && d.inboundWaiting === 0);
  }

  /** A draining link goes once settled. */
  private goIfDrained(conn: ServerConnection): void {
    if (conn.draining && conn.phase === 'open' && this.settled(conn)) conn.closeWith('going-away');
    // A refused link goes once what it took in before the refusal is (the close carries its ack).
    const refusal = conn.delivery?.refusal;
    if (refusal && conn.phase === 'open' && conn.delivery!.inboundWaiting === 0) conn.closeWith(refusal.reason, refusal.message);
  }

  // Inbound: client DATA, in order, once.

  message(conn: ServerConnection, frame: DataFrame): void {
    const f = detached(frame);
    const seq = f.seq;
    const up = this.upstream;
    if (seq === undefined) {
      this.events.message({ conn, payload: f.payload, ...(f.id !== undefined ? { id: f.id } : {}) });
      // Fire-and-forget both ways: one attempt upstream, no acknowledgement to wait for. Its bytes
      // share the waiting-bytes budget with the sequenced messages' (a flood of large ones to a slow
      // backend is refused by size, not only by count).
      if (!up) return;
      const source = sourceKey(conn.link.remoteAddress);
      const bytes = f.payload.length;
      // A source's share of those bytes too, once they are half full (see inboundRefusal).
      if (this.overSourceShare(this.bySource.get(source), bytes)) {
        up.stats.refusedBacklog++;
        return;
      }
      const held = this.hold(source, 0, bytes);
      const release = () => this.release(source, held, 0, bytes);
      if (!up.fireAndForget(this.upstreamMessage(conn, f), this.inbound.messages, (answer) => this.reply(conn, answer), { waitingBytes: this.inbound.bytes, maxBytes: this.o.limits.maxInboundWaitingBytes }, release)) release();
      return;
    }
    // Draining: nothing new is taken in (what is waiting is finished); the client keeps it in its
    // outbox and re-sends it on its next link, which the WELCOME's ack tells it.
    if (conn.draining) return;
    const d = this.state(conn);
    const bytes = f.payload.length;
    const source = sourceKey(conn.link.remoteAddress);
    const refusal = this.inboundRefusal(d, bytes, this.bySource.get(source), source);
    if (refusal) {
      // The store or the backend is behind (or down): this link's client keeps its messages and re-sends them later.
      conn.refuse('server-error', 5000, refusal);
      return;
    }
    const held = this.hold(source, 1, bytes);
    // Read now: it may wait its turn behind messages the backend holds for minutes.
    const receivedAt = this.o.wallClock.now();
    d.inboundWaiting++;
    d.inboundBytes += bytes;
    this.inbound.messages++;
    this.inbound.bytes += bytes;
    // One at a time, in arrival order: duplicate detection may wait on the store.
    d.inbound = d.inbound
      .then(async () => {
        // Nothing recorded yet: a link closed meanwhile drops it, and the client re-sends it. Not one
        // the peer ended on purpose (its CLOSE may come in the same read): a client that quits never does.
        if (!takesIn(conn)) return;
        if (seq <= d.inSeq) {
          this.stats.duplicatesIn++;
          this.accept(conn, d.inSeq); // re-acknowledge: the client evidently missed it
          return;
        }
        if (f.id === undefined) return this.takeIn(conn, f, seq, receivedAt);
        // The same message may be on its way in from an older link of the device (a re-send after a
        // reconnect, while the backend or the store still holds the first): checked once that is done,
        // the record says whether it went in. Checked before, it would go in twice. The wait is
        // bounded (a backend that never answers the old link's call must not stall this link): past
        // it, at least once holds and the message may go in twice.
        const key = idKey(conn.userId, idKey(conn.deviceId, f.id));
        for (let earlier = this.takingIn.get(key); earlier; earlier = this.takingIn.get(key)) {
          if (!(await this.within(earlier, TAKE_IN_WAIT_MS))) break;
        }
        let done!: () => void;
        const mine = new Promise<void>((r) => (done = r));
        this.takingIn.set(key, mine);
        // This link's claim on the id in the store, if it holds one; its record ends it (in the same request).
        const claim: Claim = { holder: null, ended: false };
        try {
          let seen: boolean | undefined;
          let op = 'seenInbound';
          try {
            // The older link may be on another node (the client moved while that node's backend held
            // the message): the store's claim stands for the map above there. Only with a backend:
            // without one nothing waits between the hand-over and the record. The claim checks the
            // record too (one request, as the check alone was).
            if (up && this.o.store.claimInbound) {
              op = 'claimInbound';
              const got = await this.claim(conn, f.id);
              if (got === null) return; // closed while waiting: the client re-sends it
              if (got === 'claimed') claim.holder = conn.id;
              if (got !== 'held') seen = got === 'seen';
              op = 'seenInbound';
            }
            // No claim (the wait ran out, or no store for it): the record is checked on its own.
            seen ??= await this.o.store.seenInbound(conn.userId, conn.deviceId, f.id, this.o.wallClock.now());
          } catch (err) {
            return this.fault(op, err, conn);
          }
          if (seen) {
            this.stats.duplicatesIn++;
            if (conn.phase === 'open') this.accept(conn, seq);
            return;
          }
          await this.takeIn(conn, f, seq, receivedAt, claim);
        } finally {
          if (this.takingIn.get(key) === mine) this.takingIn.delete(key);
          done();
          // Not recorded (the link closed with the backend, the record failed): ended on its own, so a
          // re-send does not wait out its time limit. A release that fails leaves it to that limit.
          if (claim.holder !== null && !claim.ended) void this.o.store.releaseInbound?.(conn.userId, conn.deviceId, f.id, claim.holder).catch(() => {});
        }
      })
      .finally(() => {
        d.inboundWaiting--;
        d.inboundBytes -= bytes;
        this.inbound.messages--;
        this.inbound.bytes -= bytes;
        this.release(source, held, 1, bytes);
        this.goIfDrained(conn);
      })
      .catch((err) => {
        // A throwing application listener is the gateway's problem, not the link's (the gateway logs it).
        this.events.fault('message', err);
      });
  }

  /**
   * Claims a client message id in the store for this link, waiting (polling) while another link
   * holds it, at most TAKE_IN_WAIT_MS: `claimed`; `seen` if it was recorded (by that link, say);
   * `held` if the wait ran out (at least once then holds: the message may go in twice); null if
   * the link closed meanwhile.
   */
  private async claim(conn: ServerConnection, id: string): Promise<'claimed' | 'seen' | 'held' | null> {
    const store = this.o.store;
    const until = this.o.clock.now() + TAKE_IN_WAIT_MS;
    for (;;) {
      const got = await store.claimInbound!(conn.userId, conn.deviceId, id, conn.id, TAKE_IN_WAIT_MS, this.o.wallClock.now());
      if (got !== 'held') return got;
      if (!takesIn(conn)) return null;
      if (this.o.clock.now() >= until) return 'held';
      await new Promise<void>((r) => this.timers.setTimeout(r, CLAIM_POLL_MS));
      if (!takesIn(conn)) return null;
    }
  }

  /** Whether `p` settled within `ms` (it never rejects). */
  private within(p: Promise<void>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = this.timers.setTimeout(() => resolve(false), ms);
      void p.then(() => {
        this.timers.clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** A client message not seen before: to the backend (if any), the application, the record, then acknowledged. */
  private async takeIn(conn: ServerConnection, f: DataFrame, seq: number, receivedAt: number, claim?: Claim): Promise<void> {
    const up = this.upstream;
    if (up) {
      // The backend first: acknowledged to the device only once it has the message. If the link
      // closes while the backend is down, nothing is acknowledged or recorded: the client re-sends.
      // A link its peer ended gets one attempt after the close (as if the CLOSE had come later), no retries.
      let tried = false;
      const answer = await up.deliver(this.upstreamMessage(conn, f, receivedAt), () => conn.phase === 'open' || (conn.endedByPeer && !tried && (tried = true)));
      if (answer === null) return;
      if (answer === 'rejected') {
        // Refused for good (the fault is reported): acknowledged and recorded, so neither this link
        // nor a re-send holds the device's later messages behind it; not handed to the application.
        await this.record(conn, f, claim);
        if (conn.phase === 'open') this.accept(conn, seq);
        return;
      }
      this.reply(conn, answer);
    }
    // Handed over, then recorded, then acknowledged: a crash between the first two can only make
    // the client's re-send a second delivery, never make a message acknowledged and lost (recording
    // first lost one in the fault run: the node died between the record and the hand-over). It is
    // handed over even if the link closed during the await: the client re-sends it, and the record
    // makes that a duplicate.
    this.events.message({ conn, payload: f.payload, seq, ...(f.id !== undefined ? { id: f.id } : {}) });
    await this.record(conn, f, claim);
    if (conn.phase === 'open') this.accept(conn, seq);
  }

  /**
   * Pushes a backend's reply to the device whose message it answers. That message is acknowledged
   * whatever happens here (the backend has it), so a reply the store did not take (down for a
   * moment) was lost, a fault its only trace: it is pushed again, under the same id (a store holds
   * one copy), until the store takes it or its time (messageTtlMs) is over.
   */
  private reply(conn: ServerConnection, answer: UpstreamAnswer): void {
    const where = { userId: conn.userId, deviceId: conn.deviceId };
    if (answer.replyError) this.events.fault('upstream-reply', answer.replyError, where);
    const payload = answer.reply;
    if (payload === undefined) return;
    const id = randomUUID();
    const until = this.o.wallClock.now() + this.o.delivery.messageTtlMs;
    const send = async (): Promise<void> => {
      const ttlMs = until - this.o.wallClock.now();
      if (ttlMs <= 0) return this.events.fault('upstream-reply', new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `reply ${id} to ${conn.deviceId} not queued: the store did not take it within messageTtlMs`), where);
      const r = await this.push(conn.userId, payload, { deviceId: conn.deviceId, waitMs: 0, id, ttlMs });
      if (r.devices.some((d) => d.status === 'failed')) throw new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `reply ${id} to ${conn.deviceId} not queued: the store failed the write`);
    };
    send().catch((err: unknown) => {
      this.events.fault('upstream-reply', err, where);
      // Only what the store failed; a reply that can never go (too large for a frame) is not tried again.
      if (err instanceof LonglinkError && err.code === 'LL_ERR_STORE_UNAVAILABLE') this.chores?.do(`reply\0${id}`, send);
    });
  }

  /** Records a client message's id as taken in, so a re-send is a duplicate; ends the link's claim on it in the same request. */
  private async record(conn: ServerConnection, f: DataFrame, claim?: Claim): Promise<void> {
    if (f.id === undefined) return;
    try {
      await this.o.store.markInbound(conn.userId, conn.deviceId, f.id, this.o.wallClock.now(), claim?.holder ?? undefined);
      if (claim) claim.ended = true;
    } catch (err) {
      // Not recorded: a re-send would be taken in again. Acknowledge all the same (it was).
      this.stats.storeFaults++;
      this.events.fault('markInbound', err, { userId: conn.userId, deviceId: conn.deviceId });
    }
  }

  /** Why one more message of `bytes` of a link may not wait with those already waiting, if it may not. */
  private inboundRefusal(d: LinkDelivery, bytes: number, mine: SourceHeld | undefined, source: string): string | null {
    const l = this.o.limits;
    const up = this.upstream;
    const here = d.inboundWaiting;
    if (up && !up.admits(here, this.inbound.messages)) return `upstream ${up.o.sink.name} backlog: ${here} messages of this link (${this.inbound.messages} in all) wait for the backend`;
    // A source's share (inboundSourceShare, never less than one link's bound; its first message always
    // goes in, as a link's does), once the whole is half full: an idle gateway serves one address
    // behind which many users are (a carrier-grade NAT, a proxy) as much as it can.
    const share = l.inboundSourceShare;
    if (mine && mine.messages > 0 && share < 1) {
      if (up && this.inbound.messages >= up.o.maxPending / 2 && mine.messages >= Math.max(up.o.maxPendingPerConnection, up.o.maxPending * share)) return `upstream ${up.o.sink.name} backlog: ${mine.messages} messages from ${source} wait for the backend (a source's share of maxPending)`;
      if (this.overSourceShare(mine, bytes)) return `${mine.bytes} bytes of messages from ${source} wait to be accepted (a source's share of maxInboundWaitingBytes)`;
    }
    if (here >= l.maxInboundWaitingPerLink) return `${here} messages of this link wait to be accepted (maxInboundWaitingPerLink)`;
    // A link's own share first (a lone message is always let in): one link must not fill what all share.
    if (here > 0 && d.inboundBytes + bytes > l.maxInboundWaitingBytesPerLink) return `${d.inboundBytes} bytes of this link's messages wait to be accepted (maxInboundWaitingBytesPerLink)`;
    if (this.inbound.bytes + (up?.fireAndForgetBytes ?? 0) + bytes > l.maxInboundWaitingBytes) return `${this.inbound.bytes} bytes of client messages wait to be accepted (maxInboundWaitingBytes)`;
    return null;
  }

  /**
   * Whether `bytes` more from a source holding `mine` would pass its share of
   * maxInboundWaitingBytes (sequenced and fire-and-forget together; never less
   * than one link's bound), counted once the whole is half full.
   */
  private overSourceShare(mine: SourceHeld | undefined, bytes: number): boolean {
    const l = this.o.limits;
    if (!mine || l.inboundSourceShare >= 1) return false;
    if (this.inbound.bytes + (this.upstream?.fireAndForgetBytes ?? 0) < l.maxInboundWaitingBytes / 2) return false;
    return mine.bytes + bytes > Math.max(l.maxInboundWaitingBytesPerLink, l.maxInboundWaitingBytes * l.inboundSourceShare);
  }

  private hold(source: string, messages: number, bytes: number): SourceHeld {
    let held = this.bySource.get(source);
    if (!held) this.bySource.set(source, (held = { messages: 0, bytes: 0 }));
    held.messages += messages;
    held.bytes += bytes;
    return held;
  }

  /** What `hold` counted goes; a source's entry goes once it holds nothing. */
  private release(source: string, held: SourceHeld, messages: number, bytes: number): void {
    held.messages -= messages;
    held.bytes -= bytes;
    if (held.messages === 0 && held.bytes === 0 && this.bySource.get(source) === held) this.bySource.delete(source);
  }

  private accept(conn: ServerConnection, seq: number): void {
    const d = this.state(conn);
    if (seq > d.inSeq) d.inSeq = seq;
    d.ackOwed = true;
    this.owe(conn);
  }

  /** Acknowledgements ride on the next frame out; alone only after ackDelayMs. */
  private owe(conn: ServerConnection): void {
    this.owedAcks.add(conn);
    if (this.ackTimer !== null || this.stopped) return;
    this.ackTimer = this.timers.setTimeout(() => {
      this.ackTimer = null;
      const owed = [...this.owedAcks];
      this.owedAcks.clear();
      for (const c of owed) c.flushAck();
    }, this.o.delivery.ackDelayMs);
  }

  // Outbound: acknowledgements from the client.

  acked(conn: ServerConnection, upTo: number): void {
    const d = conn.delivery;
    if (upTo <= (d?.ackedSeq ?? 0)) return;
    // The client cannot acknowledge what was never written on this link.
    if (!d || upTo > d.sentSeq) {
      conn.closeWith('malformed-frame', `acknowledgement ${upTo} is beyond the last sequence number sent (${d?.sentSeq ?? 0})`);
      return;
    }
    const from = d.ackedSeq;
    d.ackedSeq = upTo;
    const settling = (d.settling = this.settle(conn, d, from, upTo)
      // A throwing `delivered` listener is the application's (reported), not the link's.
      .catch((err) => this.events.fault('message', err))
      .finally(() => {
        if (d.settling === settling) d.settling = null;
      }));
    // Draining: everything this link carried is now safe; it may go.
    this.goIfDrained(conn);
  }

  private async settle(conn: ServerConnection, d: LinkDelivery, from: number, upTo: number): Promise<void> {
    const store = this.o.store;
    let acked: QueuedMessage[];
    // What it removes unsent (expired) settles only pushes written before it (see PushTracker.settle).
    const op = this.tracker.removal();
    try {
      acked = await store.ack(conn.userId, conn.deviceId, conn.id, upTo, d.reportedUpTo);
    } catch (err) {
      this.stats.storeFaults++;
      this.events.fault('ack', err, { userId: conn.userId, deviceId: conn.deviceId });
      // The device has them: they must go. Left, they would wait for a take this link never makes
      // (it has sent them) and be reported expired. Tried again until the store takes it; the store
      // removes only what this link was given, so late is harmless. A later acknowledgement that
      // supersedes this retry (same key) is answered what this one removed too (answeredUpTo).
      this.chores?.do(`ack ${conn.id}`, () => {
        const again = this.tracker.removal();
        return store.ack(conn.userId, conn.deviceId, conn.id, upTo, d.reportedUpTo).then((late) => this.report(conn, d, late, upTo, again));
      });
      return;
    }
    const removed = this.report(conn, d, acked, upTo, op);
    // Fewer removed than this link was given: another link took the mailbox meanwhile (a stale one,
    // woken by a presence read from before this link's), renumbering them. Taken back and re-sent
    // here (the client drops them by id and acknowledges again); else nothing would send them until
    // the next push, and they would expire. (An expiry or eviction meanwhile also shows as fewer: a
    // take that finds nothing new.)
    if (removed < upTo - from && this.writable(conn)) void this.flush(conn);
  }

  /**
   * Reports messages an acknowledgement removed: delivered, each once (the answer may repeat what an
   * earlier one whose answer was read held). Returns how many of them are numbered in (…, upTo] above
   * what was reported before.
   */
  private report(conn: ServerConnection, d: LinkDelivery, acked: QueuedMessage[], upTo: number, op: number): number {
    const now = this.o.wallClock.now();
    const below = d.reportedUpTo;
    let n = 0;
    let told: QueuedMessage[] | undefined;
    for (const m of acked) {
      if (m.seq <= below) continue;
      n++;
      if (m.seq > d.reportedUpTo) d.reportedUpTo = m.seq;
      // Never written (its time was over): the acknowledgement of a later message removed it.
      if (d.expiredUnsent?.delete(m.seq)) {
        this.reportDrop('expired', conn.userId, conn.deviceId, m, 'ttl', op);
        continue;
      }
      this.stats.delivered++;
      this.events.delivered({ userId: conn.userId, deviceId: conn.deviceId, id: m.id, seq: m.seq, ageMs: now - m.enqueuedAt });
      this.tracker.settle(conn.userId, m.id, conn.deviceId, 'delivered');
      if (m.reportTo) (told ??= []).push(m);
    }
    if (told) this.tellWaiting(conn.userId, conn.deviceId, told, now);
    // Everything this holder removed up to upTo is in this answer or was in one read before.
    if (upTo > d.reportedUpTo) d.reportedUpTo = upTo;
    if (d.expiredUnsent) {
      for (const s of d.expiredUnsent) if (s <= d.reportedUpTo) d.expiredUnsent.delete(s);
      if (d.expiredUnsent.size === 0) d.expiredUnsent = null;
    }
    return n;
  }

  // Outbound: mailbox to link.

  private writable(conn: ServerConnection): boolean {
    return conn.phase === 'open' && conn.probeDeadline === null && !conn.draining && conn.writeStalledAt < 0;
  }

  /** Writes every queued message the link has not carried yet, in order. */
  async flush(conn: ServerConnection): Promise<void> {
    if (!this.writable(conn)) return;
    const d = this.state(conn);
    if (d.flushing) {
      d.flushAgain = true;
      return;
    }
    d.flushing = true;
    try {
      do {
        d.flushAgain = false;
        const msgs = await this.o.store.take(conn.userId, conn.deviceId, conn.id, Math.max(d.sentSeq, d.skippedSeq), conn.sessionId);
        const now = this.o.wallClock.now();
        for (const m of msgs) {
          // The take was an await: the link may have closed, begun draining, or started a probe.
          if (!this.writable(conn)) return;
          if (m.seq <= d.sentSeq) continue;
          // Its time-to-live is over (the sweep, every sweepIntervalMs, has not removed it yet): not
          // sent. Sent, it reached the device up to a sweep round late and was reported delivered.
          if (m.expiresAt <= now) {
            (d.expiredUnsent ??= new Set()).add(m.seq);
            if (m.seq > d.skippedSeq) d.skippedSeq = m.seq;
            continue;
          }
          // Flow control: the rest waits in the store until the link drains.
          if (conn.writeBackedUp) return conn.stallWrites();
          // Counted as sent before the write: a link that answers within it (in-process) may ack it at once.
          d.sentSeq = m.seq;
          conn.send({ type: FrameType.DATA, seq: m.seq, id: m.id, payload: m.payload });
        }
      } while (d.flushAgain && this.writable(conn));
    } catch (err) {
      this.fault('take', err, conn);
    } finally {
      d.flushing = false;
      // Nothing carried either way (the usual flush at open finds an empty mailbox): an idle link keeps no state.
      if (conn.delivery === d && d.pristine) conn.delivery = null;
    }
  }

  /** Hands new messages to an open connection, probing it first if it has been silent too long. */
  deliver(conn: ServerConnection): void {
    if (conn.phase !== 'open' || conn.draining) return;
    if (conn.probeDeadline !== null) return; // the answer to the probe out will flush
    const threshold = this.o.delivery.probeBeforePushMs ?? conn.grant?.intervalMs ?? 0;
    const now = this.o.clock.now();
    if (threshold > 0 && now - conn.lastHeardAt >= threshold) {
      this.stats.probesBeforePush++;
      conn.probeBeforePush(this.o.probes.pongTimeoutMs, now);
      return;
    }
    void this.flush(conn);
  }

  /**
   * Reliable push to every device of `userId`, connected or not: each device
   * gets the message in order, once, acknowledged; devices that are offline
   * get it from their mailbox when they come back. Resolves with each
   * device's outcome once all have settled, or after `waitMs`.
   */
  async push(userId: string, payload: Uint8Array | string, opts: PushOptions = {}): Promise<PushResult> {
    const o = this.o;
    // A copy of the caller's bytes: a store in this process keeps what it is given until the device
    // acknowledges it, and a buffer reused for the next message (or a view into a larger one) would
    // change what waits in the mailbox (or keep the whole alive while its few bytes are counted).
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
    const id = opts.id ?? randomUUID();
    assertPayloadFits(bytes, id, o.maxFrameBytes);
    for (const [name, v] of [['user', userId], ['device', opts.deviceId], ['message id', opts.id]] as const) {
      if (v !== undefined && !isWellFormed(v)) throw new LonglinkError('LL_ERR_INVALID_ID', `push: the ${name} ${JSON.stringify(v)} is not well-formed Unicode (a lone surrogate)`);
    }
    // Infinity is no "never": Redis stores it as null, and the expiry script of its whole mailbox shard then failed on every sweep.
    if (opts.ttlMs !== undefined && !(Number.isFinite(opts.ttlMs) && opts.ttlMs > 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `push: ttlMs must be a positive finite number of ms (got ${opts.ttlMs})`);
    // Armed as one timer: beyond MAX_TIMER_MS or NaN, Node fires it after 1 ms.
    if (opts.waitMs !== undefined && !(opts.waitMs >= 0 && opts.waitMs <= MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `push: waitMs must be from 0 to ${MAX_TIMER_MS} ms (got ${opts.waitMs})`);
    const now = o.wallClock.now();
    let known: string[];
    try {
      known = await o.store.knownDevices(userId, now);
    } catch (err) {
      // Nothing was queued: say so, with a code, rather than resolve with a result that means something.
      this.stats.storeFaults++;
      this.events.fault('knownDevices', err, { userId });
      throw new LonglinkError('LL_ERR_STORE_UNAVAILABLE', `push to ${userId} not queued: the store is unavailable (${err instanceof Error ? err.message : String(err)})`);
    }
    let devices = new Set(known);
    for (const c of this.registry.devices(userId)) devices.add(c.deviceId);
    const only = opts.deviceId;
    // With a shared store, where each device lives is the store's presence (the newest link's
    // HELLO wrote it), not whichever link happens to be here: a local one may be a stale half-open.
    // It is read after the mailboxes are written: a node writes presence before its first flush
    // of a new link, so either presence names that link's node or that flush finds the message.
    // Only when presence decides which devices there are (none known: a store reset, say) is it read first.
    let presence: Map<string, PresenceEntry> | null = null;
    let presenceFailed = false;
    const readPresence = async () => {
      try {
        return new Map((await o.store.devices(userId)).map((e) => [e.deviceId, e]));
      } catch (err) {
        // Presence unknown: the local link, if any, is the best guess; the message is durable either way.
        this.stats.storeFaults++;
        this.events.fault('devices', err, { userId });
        presenceFailed = true;
        return new Map<string, PresenceEntry>();
      }
    };
    const presenceFirst = o.store.route !== undefined && (devices.size === 0 || (only !== undefined && !devices.has(only)));
    if (presenceFirst) {
      presence = await readPresence();
      // Devices online elsewhere count even if their known-device record is gone (a store reset).
      for (const d of presence.keys()) devices.add(d);
    }
    if (devices.size === 0) return { id, devices: [], delivered: 0, unknownUser: true };
    if (only !== undefined) {
      if (!devices.has(only)) return { id, devices: [], delivered: 0, unknownDevice: true };
      devices = new Set([only]);
    }
    const waitMs = opts.waitMs ?? o.delivery.pushWaitMs;
    const done = this.tracker.track(userId, id, devices, waitMs);
    // Open until every mailbox write has answered (waitMs counts from there: a write that fails after
    // it must say failed, not queued), and, presence being read after the mailboxes, for devices found only there.
    const held = this.tracker.hold(userId, id);
    const presenceAfter = o.store.route !== undefined && !presenceFirst;
    this.stats.pushed++;
    const limits = { maxMessages: o.delivery.maxQueuedPerDevice, maxBytes: o.delivery.maxQueuedBytesPerDevice };
    const expiresAt = now + (opts.ttlMs ?? o.delivery.messageTtlMs);
    // A push that waits, on a shared store: whichever node the device acknowledges on tells this one
    // (see remoteDelivered). Until a little past waitMs, which counts from the last write; later no one listens.
    const reportTo = waitMs > 0 && o.store.route ? { nodeId: o.nodeId, until: now + waitMs + REPORT_GRACE_MS } : undefined;
    const queued: string[] = [];
    const enqueue = async (deviceId: string) => {
      try {
        const op = this.tracker.writing(userId, id, deviceId);
        // The device's link here: what it was given is not evicted (the device acknowledges it; reported
        // dropped, the backend was told the opposite of what happened).
        const local = this.registry.get(userId, deviceId);
        const live = local && local.phase === 'open' ? { ...limits, liveHolder: local.id } : limits;
        const evicted = await o.store.enqueue(userId, deviceId, { id, payload: bytes, enqueuedAt: now, expiresAt, ...(reportTo ? { reportTo } : {}) }, live);
        // Evicted, or (a retry of an id whose copy's time was over) removed as expired.
        let refused = false;
        for (const m of evicted) {
          const over = m.expiresAt <= now;
          // This very message, not queued (the mailbox is full of what the live link was given): its
          // own push's outcome, whatever the write's number.
          const mine = !over && m.id === id && m.seq === 0 && (m.deviceId ?? deviceId) === deviceId;
          refused ||= mine;
          this.reportDrop(over ? 'expired' : 'dropped', userId, m.deviceId ?? deviceId, m, over ? 'ttl' : 'overflow', mine ? undefined : op);
        }
        if (refused) return;
        queued.push(deviceId);
        this.tracker.queued(userId, id, deviceId);
      } catch (err) {
        this.stats.storeFaults++;
        this.events.fault('enqueue', err, { userId, deviceId });
        this.tracker.settle(userId, id, deviceId, 'failed');
      }
    };
    for (const deviceId of devices) await enqueue(deviceId);
    if (presenceAfter) {
      presence = await readPresence();
      // Devices online elsewhere without a known-device record (a store reset): queued for too.
      for (const d of presence.keys()) {
        if (devices.has(d) || only !== undefined) continue;
        devices.add(d);
        held.expect(d);
        await enqueue(d);
      }
    }
    for (const deviceId of queued) {
      const local = this.registry.get(userId, deviceId);
      if (!o.store.route || !presence) {
        if (local && local.phase === 'open') this.deliver(local);
        else this.tracker.settle(userId, id, deviceId, 'queued');
        continue;
      }
      const entry = presence.get(deviceId);
      if (local && local.phase === 'open' && (!entry || (entry.nodeId === o.nodeId && entry.connectionId === local.id))) {
        this.deliver(local);
        continue;
      }
      // Queued, durably; the node holding the device's newest link delivers it, and tells this one
      // when it is acknowledged if the push waits for it (within its waitMs, and the bound on such waits).
      if (!(entry && entry.nodeId !== o.nodeId && this.tracker.awaitRemote(userId, id, deviceId))) this.tracker.settle(userId, id, deviceId, 'queued');
      // No local link and presence unread: the device may be on another node, which nothing else
      // wakes for this message (it waited for the device's next push or reconnect, or expired).
      // Read again, and woken, until the store answers.
      if (!entry && presenceFailed) this.chores?.do(`locate ${idKey(userId, deviceId)}`, () => this.wakeWhereOnline(userId, deviceId));
      if (entry) {
        if (entry.nodeId === o.nodeId) {
          if (local && local.phase === 'open') this.deliver(local);
        } else {
          const to = entry.nodeId;
          await o.store.route(to, userId, deviceId).catch((err) => {
            this.events.fault('route', err, { userId, deviceId });
            // The message waits in the mailbox, but nothing else wakes that node for it (no other push,
            // no reconnect): it sat there until it expired. Published again until the store takes it
            // (a late or extra wake-up only flushes a mailbox, which is harmless).
            this.chores?.do(`route ${idKey(to, idKey(userId, deviceId))}`, () => o.store.route!(to, userId, deviceId));
          });
        }
      }
    }
    held.release();
    opts.onQueued?.();
    return done;
  }

  /**
   * Tells the nodes whose pushes wait on these acknowledged messages (reportTo: another node, its
   * wait not over), one control per node and REPORT_IDS_PER_CONTROL ids. Best effort: a report
   * lost leaves that push to answer `queued` at its waitMs, which is true (the message was queued).
   */
  private tellWaiting(userId: string, deviceId: string, acked: QueuedMessage[], now: number): void {
    const control = this.o.store.control;
    if (!control) return;
    let byNode: Map<string, string[]> | undefined;
    for (const m of acked) {
      const r = m.reportTo;
      if (!r || r.nodeId === this.o.nodeId || r.until < now) continue;
      byNode ??= new Map();
      const ids = byNode.get(r.nodeId);
      if (ids) ids.push(m.id);
      else byNode.set(r.nodeId, [m.id]);
    }
    if (!byNode) return;
    for (const [nodeId, ids] of byNode) {
      for (let i = 0; i < ids.length; i += REPORT_IDS_PER_CONTROL) {
        void control.call(this.o.store, nodeId, { kind: 'delivered', userId, deviceId, ids: ids.slice(i, i + REPORT_IDS_PER_CONTROL) }).catch(() => {});
      }
    }
  }

  /** Another node reports `userId`'s device acknowledged these messages there: pushes here waiting on them settle delivered. */
  remoteDelivered(userId: string, deviceId: string, ids: string[]): void {
    for (const id of ids) this.tracker.settle(userId, id, deviceId, 'delivered');
  }

  /** Wakes the node that presence says holds the device's link (this one, or another through the store). */
  private async wakeWhereOnline(userId: string, deviceId: string): Promise<void> {
    const store = this.o.store;
    const entry = (await store.devices(userId)).find((e) => e.deviceId === deviceId);
    if (!entry) return;
    if (entry.nodeId === this.o.nodeId) this.wake(userId, deviceId);
    else await store.route?.(entry.nodeId, userId, deviceId);
  }

  /** Another node queued for a device connected here, or wake-ups may have been missed. */
  wake(userId: string, deviceId: string): void {
    const conn = this.registry.get(userId, deviceId);
    if (conn) this.deliver(conn);
  }

  wakeAll(): void {
    for (const conn of this.registry.all()) this.deliver(conn);
  }

  /** `op`: the store call that removed it (see PushTracker.settle: a push whose write came later is not settled by it). */
  private reportDrop(event: 'expired' | 'dropped', userId: string, deviceId: string, m: QueuedMessage, reason: 'ttl' | 'overflow', op?: number): void {
    this.stats[event]++;
    this.events.drop(event, { userId, deviceId, id: m.id, seq: m.seq, ageMs: this.o.wallClock.now() - m.enqueuedAt, reason });
    this.tracker.settle(userId, m.id, deviceId, event, op);
  }

  // Expiry.

  startSweeping(): void {
    const tick = () => {
      this.sweepTimer = null;
      if (this.stopped) return;
      this.onSweep();
      this.sweepExpired(false).then(
        () => this.rearmSweep(tick),
        (err) => {
          this.stats.storeFaults++;
          this.events.fault('expire', err);
          this.rearmSweep(tick);
        },
      );
    };
    this.rearmSweep(tick);
  }

  private rearmSweep(tick: () => void): void {
    if (this.stopped || this.sweepTimer !== null) return;
    this.sweepTimer = this.timers.setTimeout(tick, this.o.delivery.sweepIntervalMs);
  }

  /** Removes expired messages now and reports them (the sweep does this every `sweepIntervalMs`, perhaps a part of the store at a time). */
  async sweepExpired(all = true): Promise<number> {
    const op = this.tracker.removal();
    const gone = await this.o.store.expire(this.o.wallClock.now(), all);
    for (const g of gone) this.reportDrop('expired', g.userId, g.deviceId, g.message, 'ttl', op);
    return gone.length;
  }

  /** Messages written to open links and not yet acknowledged, and acknowledgements owed. */
  flowStats(): { unacked: number; writeStalled: number; owedAcks: number; inboundWaiting: number; inboundWaitingBytes: number } {
    let unacked = 0;
    let writeStalled = 0;
    for (const c of this.registry.all()) {
      if (c.delivery) unacked += c.delivery.unacked;
      if (c.writeStalledAt >= 0) writeStalled++;
    }
    return { unacked, writeStalled, owedAcks: this.owedAcks.size, inboundWaiting: this.inbound.messages, inboundWaitingBytes: this.inbound.bytes };
  }

  stop(): void {
    this.stopped = true;
    if (this.sweepTimer !== null) this.timers.clearTimeout(this.sweepTimer);
    if (this.ackTimer !== null) this.timers.clearTimeout(this.ackTimer);
    this.sweepTimer = this.ackTimer = null;
    this.tracker.flushAll();
  }
}

/** What one source address has waiting: sequenced messages, and the payload bytes of those and of its fire-and-forget messages on their way to a backend. */
interface SourceHeld {
  messages: number;
  bytes: number;
}

/**
 * The frame with a payload of its own when it is a view into a much larger
 * buffer (the socket's read chunk, which the decoder reads frames from in
 * place): a message that waits (for the store, the backend) would otherwise
 * keep the whole chunk alive, e.g. 60 KB behind a 1-byte payload padded with an
 * unknown field, while the waiting-bytes budgets count its payload only.
 */
function detached(f: DataFrame): DataFrame {
  const p = f.payload;
  // Within Buffer's shared 8 KiB pool (small copies land there too) it holds at most that.
  return p.buffer.byteLength > Math.max(Buffer.poolSize, p.byteLength + 1024) ? { ...f, payload: Buffer.from(p) } : f;
}

/** Whether a link's client messages waiting their turn are still taken in: it is open, or its peer ended it on purpose. */
function takesIn(conn: ServerConnection): boolean {
  return conn.phase === 'open' || conn.endedByPeer;
}
