import type { Socket } from 'node:net';
import type { Frame } from '../protocol/frames.js';
import type { Link, LinkCloseInfo, LinkEvents, TransportKind } from './link.js';
import { heldBytes } from './write-hold.js';
import type { ProtocolError } from '../protocol/errors.js';

/**
 * What the links of a gateway may hold of frames not whole yet, over all of
 * them (gateway/partial-frames.ts): a link reports what it holds after each
 * chunk, and is closed with the error when that growth is refused.
 */
export interface PartialFrameHold {
  set(link: object, address: string, bytes: number): ProtocolError | null;
}

/**
 * The peer's address and port, read once for the link. Node keeps the
 * address as an object on the socket for its life once read (56 bytes per
 * connection); the link has what it needs, so it is cleared (not deleted: a
 * delete makes the socket a dictionary).
 */
export function takePeer(socket: Socket): { address: string; port: number } {
  const peer = { address: internAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
  (socket as unknown as { _peername: unknown })._peername = undefined;
  return peer;
}

/**
 * One string per peer address for the links that share it: behind a load
 * balancer or a carrier's NAT, thousands of connections come from a few
 * addresses, and Node makes a new string for each (32 bytes a connection).
 * Bounded: the table starts over once it holds INTERNED_MAX addresses.
 */
const INTERNED_MAX = 4096;
const interned = new Map<string, string>();
export function internAddress(address: string): string {
  const known = interned.get(address);
  if (known !== undefined) return known;
  if (interned.size >= INTERNED_MAX) interned.clear();
  interned.set(address, address);
  return address;
}

// The link rides on its socket, so the socket's listeners can be shared
// functions instead of four closures per connection (about 280 bytes each).
const kLink = Symbol('longlink.socketLink');
type LinkedSocket = Socket & { [kLink]: SocketLink };
function onSocketData(this: LinkedSocket, chunk: Buffer): void {
  this[kLink].onData(chunk);
}
function onSocketError(this: LinkedSocket, err: Error): void {
  this[kLink].finish({ error: err });
}
function onSocketClose(this: LinkedSocket): void {
  this[kLink].onClose();
}
function onSocketDrain(this: LinkedSocket): void {
  this[kLink].onDrain();
}
function onSocketRead(this: LinkedSocket, n: number, buf: Buffer): void {
  this[kLink].onRead(n, buf);
}

/**
 * Reads straight into one buffer the whole process shares: Node's own
 * user-buffer mode (the `onread` option of `net.connect`), which `net.Server`
 * offers no option for on the sockets it accepts, so it is switched on here
 * through the socket's own `kBuffer`/`kBufferCb` slots, found by their names
 * as ws-listener.ts finds ws's listeners. Each read then costs no buffer of
 * its own and skips the Readable stream (its push, 'data' event and the
 * read-more tick), which was most of Node's JavaScript per heartbeat
 * (BENCHMARKS.md, "Twenty-fourth run: reading past the stream"). Plain TCP handles only (TLS
 * decrypts through its own path); where the slots are not found, or hold
 * something already, the socket stays on 'data' as before. Bytes the
 * Readable already holds (ws's unshifted head) still come through 'data'.
 * In this mode `socket.pause()` stops the kernel read (Node's readStop)
 * rather than buffering in the stream; nothing here pauses a link's socket.
 */
const READ_BUFFER_BYTES = 64 * 1024;
let readBuffer: Buffer | null = null;
let readSlots: { buffer: symbol; callback: symbol } | null | undefined;
/** Whether a socket's reads come into the shared buffer (readDirect did its work on it). */
export function readsDirect(socket: Socket): boolean {
  return readSlots != null && readBuffer !== null && (socket as unknown as Record<symbol, unknown>)[readSlots.buffer] === readBuffer;
}

function readDirect(socket: Socket): boolean {
  const handle = (socket as unknown as { _handle: { constructor: { name: string }; useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  if (handle === null || handle.constructor.name !== 'TCP' || typeof handle.useUserBuffer !== 'function') return false;
  if (readSlots === undefined) {
    const own = Object.getOwnPropertySymbols(socket);
    const buffer = own.find((s) => s.description === 'kBuffer');
    const callback = own.find((s) => s.description === 'kBufferCb');
    readSlots = buffer && callback ? { buffer, callback } : null;
  }
  if (readSlots === null) return false;
  const slots = socket as unknown as Record<symbol, unknown>;
  if (slots[readSlots.buffer] !== null || slots[readSlots.callback] !== null) return false;
  readBuffer ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  slots[readSlots.buffer] = readBuffer;
  slots[readSlots.callback] = onSocketRead;
  handle.useUserBuffer(readBuffer);
  return true;
}

/**
 * What a link over a raw socket does whatever its framing (TcpLink's varint
 * prefix, WsSocketLink's RFC 6455 frames): the peer's address, the socket's
 * listeners, flow control, and ending exactly once. The framing's own part
 * is reading a chunk (`onData`), the socket's close, `send` and `close`.
 */
export abstract class SocketLink implements Link {
  abstract get transport(): TransportKind;
  readonly remoteAddress: string;
  readonly remotePort: number;
  protected events: LinkEvents | null = null;
  protected done = false;
  /** The peer sent what is not a frame: nothing more of it is read. */
  protected poisoned = false;
  /** Our close is out: what the peer still sends is not acted on. */
  protected closing = false;

  constructor(
    readonly socket: Socket,
    protected readonly maxFrameBytes: number,
    protected readonly hold: PartialFrameHold | null = null,
  ) {
    const peer = takePeer(socket);
    this.remoteAddress = peer.address;
    this.remotePort = peer.port;
    (socket as LinkedSocket)[kLink] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    readDirect(socket);
  }

  get closed(): boolean {
    return this.done;
  }

  get bufferedBytes(): number {
    return this.socket.writableLength + heldBytes(this.socket);
  }

  bind(events: LinkEvents): void {
    this.events = events;
  }

  awaitDrain(): void {
    // Registered only while a writer waits, so idle sockets carry no drain listener.
    if (!this.done) this.socket.once('drain', onSocketDrain);
  }

  /** @internal socket listener */
  onDrain(): void {
    if (!this.done) this.events?.onLinkDrain?.();
  }

  /**
   * After a chunk: what the framing holds of a frame not whole yet (`bytes`, 0 for none), told to
   * the budget; a growth it refuses is returned, and the link is to fail with it.
   */
  protected charge(bytes: number): ProtocolError | null {
    if (this.hold === null) return null;
    // A link that ended during the chunk holds nothing any more (finish let its charge go).
    return this.hold.set(this, this.remoteAddress, this.done ? 0 : bytes);
  }

  /** @internal socket listener: a chunk of the peer's bytes. */
  abstract onData(chunk: Buffer): void;

  /**
   * @internal socket read callback: `n` bytes in the process's shared read
   * buffer, overwritten by the next read of any socket. The framing may act
   * on a whole heartbeat in place; anything else is copied out first, since
   * frames and their payloads may outlive the read.
   */
  onRead(n: number, shared: Buffer): void {
    // Node's pooled memory for a small chunk (a buffer of its own for a large one): a payload kept
    // from a pooled chunk is copied out of the pool by the decoder (frame-codec.ts, ownedPayload).
    const chunk = Buffer.allocUnsafe(n);
    if (n <= 64) for (let i = 0; i < n; i++) chunk[i] = shared[i];
    else shared.copy(chunk, 0, 0, n);
    this.onData(chunk);
  }

  /** @internal socket listener: the socket closed, for whatever reason. */
  abstract onClose(): void;

  /** @internal socket listener, and the framing's own end: destroys the socket and tells the link's owner once. */
  finish(info: LinkCloseInfo): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
    this.hold?.set(this, this.remoteAddress, 0);
    this.events?.onLinkClose(info);
  }

  abstract send(f: Frame): void;
  abstract close(code: number, reason: string): void;

  closedByPeer(_code: number): void {
    this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
