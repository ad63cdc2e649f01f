import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { BARE_PING, BARE_PING_DELIMITED, BARE_PONG, BARE_PONG_DELIMITED, encodeDelimited, encodeDelimitedTransient } from '../protocol/frame-codec.js';
import { FrameDecoder } from '../protocol/frame-decoder.js';
import { CLOSE_LINGER_MS } from './link.js';
import { SocketLink } from './socket-link.js';
import { flushHeld, holdIfBackedUp } from './write-hold.js';

const noop = () => {};
// Buffers, not Uint8Arrays: the socket would wrap a Uint8Array in a new Buffer on every write.
const PING_BYTES = Buffer.from(BARE_PING_DELIMITED);
const PONG_BYTES = Buffer.from(BARE_PONG_DELIMITED);

/**
 * A link keeps a decoder only while it holds part of a frame. Between frames
 * (nearly always) it has none, and a chunk is decoded by this one, lent to
 * whichever link needs it: at 10,000 idle connections that is 10,000 decoders
 * (80 bytes each) fewer. A link that ends a chunk inside a frame keeps the
 * decoder it used until the frame is whole.
 */
let spare: FrameDecoder | null = null;

/** A Link over a raw TCP (or TLS) socket: varint length-prefixed frames. */
export class TcpLink extends SocketLink {
  // On the prototype: as a field it would cost every connection 8 bytes.
  get transport(): 'tcp' {
    return 'tcp';
  }
  /** Only while part of a frame is held (see `spare`); a heartbeat reads no other object to know. */
  private decoder: FrameDecoder | null = null;

  /** @internal socket listener */
  onData(chunk: Buffer): void {
    if (this.poisoned || this.done || this.closing) return;
    try {
      // Nearly every chunk is one bare heartbeat on its own (01 03): straight to the connection,
      // past the decoder, when no partial frame is held.
      if (chunk.length === 2 && chunk[0] === 1 && chunk[1] === FrameType.PING && this.decoder === null) {
        this.events?.onLinkFrame(BARE_PING);
        return;
      }
      let d = this.decoder;
      if (d === null) {
        d = spare !== null && spare.maxFrameBytes === this.maxFrameBytes ? spare : new FrameDecoder(this.maxFrameBytes);
        // Taken while it decodes: a link reached from a frame's handler gets one of its own.
        spare = null;
      }
      // Kept before decoding: a failure poisons the link, and a close during the chunk must not end a lent decoder.
      const had = this.decoder !== null;
      this.decoder = d;
      d.push(chunk, this.deliver, this);
      if (d.bufferedBytes === 0) {
        this.decoder = null;
        if (d.idle) spare = d;
      }
      // What a partial frame holds is counted over all links (maxPartialFrameBytes): only a link that held or holds one asks.
      if (had || this.decoder !== null) {
        const refused = this.charge(this.decoder === null ? 0 : d.heldCapacity);
        if (refused) {
          this.decoder = null;
          throw refused;
        }
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** @internal socket read callback (socket-link.ts): a bare heartbeat is read in place. */
  override onRead(n: number, shared: Buffer): void {
    if (n === 2 && shared[0] === 1 && shared[1] === FrameType.PING) this.onData(PING_BYTES);
    else super.onRead(n, shared);
  }

  private deliver(f: Frame): boolean {
    if (this.poisoned || this.done || this.closing) return false;
    this.events?.onLinkFrame(f);
    // The frame may have closed the link (a pace breach, a bad field): stop decoding the chunk.
    return !(this.poisoned || this.done || this.closing);
  }

  /**
   * @internal socket listener. A clean end with half a frame held is a
   * truncated frame; checked here rather than on 'end' to save a listener
   * array per socket ('close' always follows 'end' without allowHalfOpen).
   */
  onClose(): void {
    if (!this.done && !this.poisoned && !this.closing) {
      try {
        this.decoder?.end();
      } catch (err) {
        this.fail(err);
      }
    }
    this.finish({});
  }

  private fail(err: unknown): void {
    this.poisoned = true;
    if (err instanceof ProtocolError) this.events?.onLinkError(err);
    else this.destroy();
  }

  send(f: Frame): void {
    if (this.done || this.socket.destroyed) return;
    const bytes = f === BARE_PONG ? PONG_BYTES : f === BARE_PING ? PING_BYTES : encodeDelimitedTransient(f);
    // Backed up: held as bytes until the socket drains (write-hold.ts says why).
    if (holdIfBackedUp(this.socket, bytes)) return;
    // Copied out of the shared encoding buffer into Node's pooled memory (a Buffer, so the write does not wrap it again).
    this.socket.write(bytes === PONG_BYTES || bytes === PING_BYTES ? bytes : Buffer.from(bytes));
  }

  close(code: number, reason: string): void {
    if (this.done || this.socket.destroyed) return;
    this.closing = true;
    flushHeld(this.socket);
    this.socket.end(encodeDelimited({ type: FrameType.CLOSE, code, reason }));
    // A dead or frozen peer never answers our FIN; do not hold its socket.
    const t = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
    this.socket.on('error', noop);
  }
}
