import type { CloseReason } from '../protocol/errors.js';

const SETTLED: Promise<void> = Promise.resolve();

/**
 * One link's place in reliable delivery, both ways: what it wrote and what
 * the client acknowledged of it, what the client sent and what the gateway
 * owes it an acknowledgement for. Made only once a link carries sequenced
 * data: an idle heartbeating connection never pays for one. Only the
 * Delivery object (delivery.ts) changes it.
 */
export class LinkDelivery {
  /** Highest client DATA seq handed to the application (what the gateway acknowledges). */
  inSeq = 0;
  /** Whether inSeq has not been acknowledged to the client yet. */
  ackOwed = false;
  /** Highest gateway DATA seq written to this link, and the highest the client acknowledged. */
  sentSeq = 0;
  ackedSeq = 0;
  /** Serializes the handling of inbound DATA (dedup may await the store). */
  inbound: Promise<void> = SETTLED;
  /** Inbound DATA waiting in that chain, and its payload bytes (the inbound budgets). */
  inboundWaiting = 0;
  inboundBytes = 0;
  flushing = false;
  flushAgain = false;
  /**
   * Every message the store's acknowledgements removed with seq ≤ this has been reported delivered
   * (passed as `answeredUpTo`; a shared store answers again, with a later call, what one whose
   * answer was lost removed, and what is at or below it is not reported twice).
   */
  reportedUpTo = 0;
  /**
   * Numbers of messages a take handed this link that were not written, their time-to-live over:
   * an acknowledgement of a later one removes them, and they are reported expired, not delivered.
   */
  expiredUnsent: Set<number> | null = null;
  /**
   * The highest of those: a take asks for what is above it and sentSeq. Asked for what was above
   * sentSeq alone, a mailbox the sweep had emptied (of those) was made anew numbering from sentSeq,
   * and the next message got an expired one's seq: its acknowledgement reported it expired.
   */
  skippedSeq = 0;
  /** The last acknowledgement's removal from the store, while it is out (a close waits for it before reporting the rest queued). */
  settling: Promise<void> | null = null;
  /**
   * Set once the link was refused for a budget its DATA broke (GOAWAY 4004, 4009) while messages it
   * sent before were waiting: the close it will get once they are taken in, and when at the latest.
   */
  refusal: { reason: CloseReason; message: string; until: number } | null = null;

  /** Returns inSeq and marks it acknowledged (the caller puts it on a frame). */
  takeAck(): number {
    this.ackOwed = false;
    return this.inSeq;
  }

  /** Nothing sent, received, owed or waiting: the state may be dropped and made again when needed. */
  get pristine(): boolean {
    return this.sentSeq === 0 && this.ackedSeq === 0 && this.inSeq === 0 && !this.ackOwed && this.inboundWaiting === 0 && !this.flushing && !this.flushAgain;
  }

  /** Messages written and not yet acknowledged. */
  get unacked(): number {
    return this.sentSeq - this.ackedSeq;
  }
}
