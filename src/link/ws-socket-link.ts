import type { Socket } from 'node:net';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { BARE_PING, BARE_PONG, decodeFrame, encodeFrameTransient } from '../protocol/frame-codec.js';
import { isWsCloseCode, wsCloseFrame, wsFrame, WsFrameParser, WS_OPCODES, type WsFrameHandler } from '../protocol/ws-framing.js';
import { TokenBucket } from '../core/token-bucket.js';
import { CLOSE_LINGER_MS } from './link.js';
import { SocketLink, type PartialFrameHold } from './socket-link.js';
import { flushHeld, holdIfBackedUp } from './write-hold.js';

const WS_PONG_FRAME = Buffer.of(0x82, 0x01, FrameType.PONG);
const WS_PING_FRAME = Buffer.of(0x82, 0x01, FrameType.PING);
/** A bare PING's payload, as the parser would hand it over unmasked. */
const PING_PAYLOAD = Buffer.of(FrameType.PING);
const PONG_BACKLOG_BYTES = 16 * 1024;
/** WebSocket control pings answered (and unasked pongs taken): a burst, then this many a second (made on the first). */
const WS_PING_BURST = 10;
const WS_PINGS_PER_SEC = 1;
/** Each link's control-ping pace, beside it rather than in it: most peers never ping, and a field would cost every connection. */
const wsPingBuckets = new WeakMap<object, TokenBucket>();

/**
 * A link keeps a frame parser only while it holds something; between
 * messages (nearly always) one parser is lent to whichever link reads a
 * chunk, as TCP links do with their decoder (tcp-link.ts): 80 bytes less
 * per idle connection.
 */
let spare: WsFrameParser | null = null;

/**
 * A server-side WebSocket link on the raw socket, once `ws` has done the
 * upgrade and let go of it (ws-listener.ts): one longlink frame per binary
 * message, framed by ws-framing.ts. Closes as RFC 6455 asks: a close frame
 * each way, then the TCP close; a peer that never answers is dropped after
 * the linger.
 */
export class WsSocketLink extends SocketLink implements WsFrameHandler {
  // On the prototype: as a field it would cost every connection 8 bytes.
  get transport(): 'ws' {
    return 'ws';
  }
  /** Only while it holds something (part of a frame or a message, or a close read): see `spare`. */
  private parser: WsFrameParser | null = null;
  /** What the peer's close frame said (1006 if the socket ended without one). */
  private peerClose: { code: number; reason: string } | null = null;

  constructor(
    socket: Socket,
    maxFrameBytes: number,
    /** Sockets of links waiting out their close handshake, for the listener's owner to destroy on shutdown. */
    private readonly lingering: Set<Socket> | null = null,
    hold: PartialFrameHold | null = null,
  ) {
    super(socket, maxFrameBytes, hold);
    // Node's HTTP server makes its sockets half-open: the peer's FIN only ends the readable side,
    // and ws's own 'end' listener (which ended ours) was taken away with the socket. Without this,
    // a client whose TCP closed without a close frame (killed, terminated) stayed open here until
    // the heartbeat detector found it dead. Now its FIN ends our side too and 'close' follows.
    socket.allowHalfOpen = false;
  }

  /** @internal socket listener */
  onData(chunk: Buffer): void {
    if (this.poisoned || this.done) return;
    try {
      let p = this.parser;
      const had = p !== null;
      if (p === null) {
        p = spare !== null && spare.maxMessageBytes === this.maxFrameBytes ? spare : new WsFrameParser(this.maxFrameBytes);
        // Taken while it parses: a link reached from a message's handler gets one of its own.
        spare = null;
        this.parser = p;
      }
      p.push(chunk, this);
      if (p.idle) {
        this.parser = null;
        spare = p;
      }
      // What a partial frame or message holds is counted over all links (maxPartialFrameBytes): only a link that held or holds one asks.
      if (had || this.parser !== null) {
        const refused = this.charge(this.parser === null ? 0 : p.heldCapacity);
        if (refused) {
          this.parser = null;
          throw refused;
        }
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    this.poisoned = true;
    if (err instanceof ProtocolError && !this.closing) this.events?.onLinkError(err);
    else this.destroy();
  }

  /**
   * @internal socket read callback (socket-link.ts): a chunk that is one whole bare PING (a
   * masked binary frame of its one byte) is taken in place when no frame or message is under way.
   */
  override onRead(n: number, shared: Buffer): void {
    if (n === 7 && shared[0] === 0x82 && shared[1] === 0x81 && (shared[6] ^ shared[2]) === FrameType.PING && this.parser === null) {
      if (this.poisoned || this.done) return;
      try {
        this.onWsMessage(PING_PAYLOAD);
      } catch (err) {
        this.fail(err);
      }
      return;
    }
    super.onRead(n, shared);
  }

  /** @internal parser handler */
  onWsMessage(payload: Buffer): boolean {
    if (this.poisoned || this.done) return false;
    // Our close frame is out: what the peer still sends is dropped, but read on to its close frame.
    if (this.closing) return true;
    // Nearly all traffic: a bare PING, handed over as the one shared frame object.
    this.events?.onLinkFrame(payload.length === 1 && payload[0] === FrameType.PING ? BARE_PING : decodeFrame(payload));
    // Closed by the frame (a pace breach, a frame refused): not a stop, the rest is read as above,
    // to the peer's close frame. Stopped there, the parser never read it and the link lingered.
    return !(this.poisoned || this.done);
  }

  /**
   * @internal parser handler. A peer that pings and never reads would grow our write buffer
   * by a pong each: past PONG_BACKLOG_BYTES unsent, pings go unanswered.
   */
  onWsPing(payload: Buffer): void {
    if (this.poisoned || this.closing || this.socket.destroyed) return;
    // The backlog bound caps memory, not work: a peer that reads its pongs would be answered as
    // fast as it pings, before HELLO too, outside the gateway's PING pace. WebSocket keepalive
    // pings come every few seconds at most (browsers send none): past a burst, one a second.
    if (!this.controlPaced()) return;
    if (this.socket.writableLength < PONG_BACKLOG_BYTES) this.socket.write(wsFrame(WS_OPCODES.OP_PONG, payload));
  }

  /**
   * @internal parser handler. The gateway sends no WebSocket pings, so every pong is unasked (a
   * one-way keepalive at most): paced with pings. Ignored unpaced, they were the one frame a peer
   * could stream for ever at no cost to itself (1.2 GB in 3 s on loopback, the link never closed).
   */
  onWsPong(): void {
    if (this.poisoned || this.closing || this.socket.destroyed) return;
    this.controlPaced();
  }

  /** Takes a control frame from the link's pace; past it, the link is closed with too-many-pings. */
  private controlPaced(): boolean {
    const now = performance.now();
    let bucket = wsPingBuckets.get(this);
    if (!bucket) wsPingBuckets.set(this, (bucket = new TokenBucket(WS_PINGS_PER_SEC, WS_PING_BURST, now)));
    if (bucket.take(now)) return true;
    // Not poisoned: the frames are well formed, and the owner's close (closing set) has the rest read
    // on to the peer's close frame. Poisoned, that frame went unread and the link waited out the linger.
    this.events?.onLinkError(new ProtocolError('too-many-pings', `more than ${WS_PING_BURST} WebSocket ping or pong frames, then more than ${WS_PINGS_PER_SEC} a second`));
    // An owner that did not close it: nothing more of the peer is read.
    if (!this.closing && !this.done) {
      this.poisoned = true;
      this.destroy();
    }
    return false;
  }

  /**
   * @internal parser handler: the peer closes; answer with ours (unless sent) and end the TCP side.
   * Ending is not enough: a peer that never sends its FIN kept the socket open for good (the
   * socket waits for it), after the connection had long been counted gone. So the linger applies
   * here too, as when the close is ours.
   */
  onWsClose(code: number, reason: string): void {
    this.peerClose = { code, reason };
    if (this.socket.destroyed) return;
    if (!this.closing) {
      this.closing = true;
      flushHeld(this.socket);
      this.socket.write(wsCloseFrame(code === 1005 ? 1000 : code, ''));
      this.linger();
    }
    this.socket.end();
  }

  /** @internal socket listener */
  onClose(): void {
    this.finish(this.peerClose ?? { code: 1006, reason: '' });
  }

  send(f: Frame): void {
    if (this.done || this.closing || this.socket.destroyed) return;
    // wsFrame copies the frame out of the shared encoding buffer.
    const bytes = f === BARE_PONG ? WS_PONG_FRAME : f === BARE_PING ? WS_PING_FRAME : wsFrame(WS_OPCODES.OP_BINARY, encodeFrameTransient(f));
    // Backed up: held as bytes until the socket drains (write-hold.ts says why).
    if (!holdIfBackedUp(this.socket, bytes)) this.socket.write(bytes);
  }

  close(code: number, reason: string): void {
    if (this.done || this.socket.destroyed) return;
    if (this.closing) return;
    this.closing = true;
    flushHeld(this.socket);
    this.socket.write(wsFrame(WS_OPCODES.OP_BINARY, encodeFrameTransient({ type: FrameType.CLOSE, code, reason })));
    this.socket.write(wsCloseFrame(code, reason));
    // The peer answers with its close frame (then we end); a dead or frozen one never does.
    this.linger();
  }

  /** The peer's CLOSE is read: our close frame (no CLOSE), then read on to the peer's close frame, as after close(). */
  override closedByPeer(code: number): void {
    if (this.done || this.socket.destroyed || this.closing) return;
    this.closing = true;
    flushHeld(this.socket);
    this.socket.write(wsCloseFrame(isWsCloseCode(code) ? code : 1000, ''));
    this.linger();
  }

  /** Destroys the socket if it has not closed within CLOSE_LINGER_MS (once per link: closing is set first). */
  private linger(): void {
    const t = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS);
    t.unref();
    this.lingering?.add(this.socket);
    this.socket.once('close', () => {
      clearTimeout(t);
      this.lingering?.delete(this.socket);
    });
  }
}
