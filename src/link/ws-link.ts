import type { WebSocket, RawData } from 'ws';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { BARE_PING, decodeFrame, encodeFrame } from '../protocol/frame-codec.js';
import { CLOSE_LINGER_MS, type Link, type LinkEvents } from './link.js';
import { isWsCloseCode, wsCloseReason } from '../protocol/ws-framing.js';

// The link rides on its WebSocket, so the listeners can be shared functions
// instead of three closures per connection (as SocketLink does on its socket).
const kLink = Symbol('longlink.wsLink');
type LinkedWs = WebSocket & { [kLink]: WsLink };
function onWsMessage(this: LinkedWs, data: RawData, isBinary: boolean): void {
  this[kLink].onMessage(data, isBinary);
}
function onWsError(this: LinkedWs, err: Error): void {
  this[kLink].onError(err);
}
function onWsClose(this: LinkedWs, code: number, reason: Buffer): void {
  this[kLink].finish({ code, reason: reason.toString() });
}

/**
 * A Link over a `ws` WebSocket: the Node client's, and the gateway's should
 * its listener fail to take an upgraded socket over (ws-socket-link.ts is the
 * gateway's usual one). One frame per binary message.
 */
export class WsLink implements Link {
  readonly transport = 'ws' as const;
  private events: LinkEvents | null = null;
  private done = false;
  private poisoned = false;

  constructor(
    readonly ws: WebSocket,
    private readonly maxFrameBytes: number,
    readonly remoteAddress = '',
    readonly remotePort = 0,
  ) {
    ws.binaryType = 'nodebuffer';
    (ws as LinkedWs)[kLink] = this;
    const linked = ws as LinkedWs;
    linked.on('message', onWsMessage as (this: WebSocket, ...args: unknown[]) => void);
    linked.on('error', onWsError as (this: WebSocket, ...args: unknown[]) => void);
    linked.on('close', onWsClose as (this: WebSocket, ...args: unknown[]) => void);
  }

  get closed(): boolean {
    return this.done;
  }

  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  bind(events: LinkEvents): void {
    this.events = events;
  }

  awaitDrain(): void {
    // ws has no drain event of its own; its socket's says the same thing.
    const socket = (this.ws as unknown as { _socket?: { once(e: 'drain', cb: () => void): void } })._socket;
    if (this.done || !socket) return;
    socket.once('drain', () => {
      if (!this.done) this.events?.onLinkDrain?.();
    });
  }

  /** @internal ws listener */
  onMessage(data: RawData, isBinary: boolean): void {
    // Closing (our CLOSE sent): what the peer still sends is dropped undecoded.
    if (this.poisoned || this.done || this.ws.readyState !== 1) return;
    // Nearly all traffic: a bare PING, handed over as the one shared frame object.
    if (isBinary && (data as Buffer).length === 1 && (data as Buffer)[0] === FrameType.PING && Buffer.isBuffer(data)) {
      this.events?.onLinkFrame(BARE_PING);
      return;
    }
    try {
      if (!isBinary) throw new ProtocolError('malformed-frame', 'text messages are not frames; send binary');
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (buf.length > this.maxFrameBytes) {
        throw new ProtocolError('frame-too-large', `frame of ${buf.length} bytes exceeds the limit of ${this.maxFrameBytes}`);
      }
      this.events?.onLinkFrame(decodeFrame(buf));
    } catch (err) {
      this.poisoned = true;
      if (err instanceof ProtocolError) this.events?.onLinkError(err);
      else this.destroy();
    }
  }

  /** @internal ws listener */
  onError(err: Error): void {
    // ws refused a message over its maxPayload (2 × maxFrameBytes) itself and closes with 1009: the
    // same fault as one over maxFrameBytes, found here. Taken for a transport error, it was retried,
    // and a queued message met again on every resume: a reconnect loop that could never succeed.
    if ((err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && !this.done && !this.poisoned) {
      this.poisoned = true;
      this.events?.onLinkError(new ProtocolError('frame-too-large', `a message exceeds the limit of ${this.maxFrameBytes} bytes (${err.message})`));
    }
    this.finish({ error: err });
  }

  /** @internal ws listener */
  finish(info: { code?: number; reason?: string; error?: Error }): void {
    if (this.done) return;
    this.done = true;
    if (info.error) this.ws.terminate();
    this.events?.onLinkClose(info);
  }

  send(f: Frame): void {
    if (this.done || this.ws.readyState !== 1) return;
    this.ws.send(encodeFrame(f));
  }

  close(code: number, reason: string): void {
    if (this.done || this.ws.readyState !== 1) {
      this.ws.terminate();
      return;
    }
    this.ws.send(encodeFrame({ type: FrameType.CLOSE, code, reason }));
    // RFC 6455 close reasons are limited to 123 bytes; cut mid-character, the reason grew past
    // them again as U+FFFD and ws threw.
    this.ws.close(code, wsCloseReason(reason));
    const t = setTimeout(() => this.ws.terminate(), CLOSE_LINGER_MS);
    t.unref();
    this.ws.once('close', () => clearTimeout(t));
  }

  closedByPeer(code: number): void {
    if (this.done || this.ws.readyState !== 1) {
      this.ws.terminate();
      return;
    }
    this.ws.close(isWsCloseCode(code) ? code : 1000);
    const t = setTimeout(() => this.ws.terminate(), CLOSE_LINGER_MS);
    t.unref();
    this.ws.once('close', () => clearTimeout(t));
  }

  destroy(): void {
    this.ws.terminate();
  }
}
