import type { Socket } from 'node:net';

/**
 * Frames written to a socket whose write buffer is backed up, held as bytes
 * in one buffer until it drains, instead of one queued write each.
 *
 * Why: Node queues every write it cannot hand to the kernel as an entry of
 * its own (an object, and the frame's Buffer), 60 to 130 bytes of heap that
 * `writableLength` does not count. The gateway bounds a slow reader by
 * `writableLength` (maxWriteBufferBytes): with small frames (fire-and-forget
 * sends of a few bytes, PONGs) a peer that stopped reading held 73 MB of heap
 * under a 4 MiB bound, and a few hundred of them could run the process out
 * of memory for everyone. Held here, a frame costs its bytes and no more, and
 * the bound is what it says.
 *
 * A side table, not a field: most links are never backed up, and a field
 * would cost every connection its bytes.
 */
interface Held {
  buf: Buffer;
  len: number;
}
const held = new WeakMap<Socket, Held>();

/**
 * Holds `bytes` (copied: they may be a view of a shared encoding buffer) if
 * the socket is backed up (a write returned false and it has not drained
 * since); false if it is not, and the caller writes them itself. While bytes
 * are held the socket is still backed up (they go at its next 'drain', before
 * anyone else hears of it), so order is kept.
 */
export function holdIfBackedUp(socket: Socket, bytes: Uint8Array): boolean {
  if (!socket.writableNeedDrain) return false;
  let h = held.get(socket);
  if (h === undefined) {
    h = { buf: Buffer.allocUnsafe(Math.max(4096, bytes.length)), len: 0 };
    held.set(socket, h);
    // First among the 'drain' listeners: a writer woken by the drain (flow control) writes after these bytes.
    socket.prependOnceListener('drain', onDrain);
  } else if (h.len + bytes.length > h.buf.length) {
    const grown = Buffer.allocUnsafe(Math.max(h.len + bytes.length, 2 * h.buf.length));
    h.buf.copy(grown, 0, 0, h.len);
    h.buf = grown;
  }
  h.buf.set(bytes, h.len);
  h.len += bytes.length;
  return true;
}

/** Bytes held for the socket (not yet in its write buffer). */
export function heldBytes(socket: Socket): number {
  return socket.writableNeedDrain ? (held.get(socket)?.len ?? 0) : 0;
}

/** Writes what is held now: before a last write (a close) that must come after it. */
export function flushHeld(socket: Socket): void {
  const h = held.get(socket);
  if (h === undefined) return;
  held.delete(socket);
  socket.removeListener('drain', onDrain);
  if (!socket.destroyed && !socket.writableEnded) socket.write(h.buf.subarray(0, h.len));
}

function onDrain(this: Socket): void {
  flushHeld(this);
}
