import type { ProtocolError } from '../protocol/errors.js';
import type { Frame } from '../protocol/frames.js';

/**
 * One framed, bidirectional connection, whatever carries it. The gateway and
 * the client see only this; TCP and WebSocket differ below it (length-prefixed
 * stream vs one frame per binary message).
 */
export interface LinkEvents {
  onLinkFrame(f: Frame): void;
  /** The peer sent bytes that are not a valid frame; the link is poisoned. */
  onLinkError(err: ProtocolError): void;
  /** Fires exactly once. `code` is the WebSocket close code where one was received. */
  onLinkClose(info: LinkCloseInfo): void;
  /** The write buffer emptied after `awaitDrain()`. */
  onLinkDrain?(): void;
}

export interface LinkCloseInfo {
  code?: number;
  reason?: string;
  error?: Error;
}

export type TransportKind = 'tcp' | 'ws';

export interface Link {
  readonly transport: TransportKind;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly closed: boolean;
  /** Bytes accepted for sending but not yet handed to the kernel. */
  readonly bufferedBytes: number;
  bind(events: LinkEvents): void;
  /** Calls `onLinkDrain` once, when the bytes buffered now have been handed to the kernel (flow control). */
  awaitDrain(): void;
  send(f: Frame): void;
  /** Sends CLOSE with the code, ends the link, and destroys it after a short linger. */
  close(code: number, reason: string): void;
  /**
   * The peer sent CLOSE (which is not answered): ends the link sending no frame of ours. Over
   * WebSocket the close handshake RFC 6455 asks still runs: a close frame with `code` (1000 if
   * a close frame may not carry it), the peer's read, then the TCP close, destroyed after the
   * linger. Dropped at once, the peer's close frame went unanswered (its side saw 1006) and,
   * still unread, made the kernel reset the connection. Over TCP: dropped at once.
   */
  closedByPeer(code: number): void;
  /** Drops the link at once, sending nothing more. */
  destroy(): void;
}

/** How long a closing link waits for the peer's side before it is destroyed. */
export const CLOSE_LINGER_MS = 1000;
