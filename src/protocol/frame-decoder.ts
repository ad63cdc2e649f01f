import { ProtocolError } from './errors.js';
import type { Frame } from './frames.js';
import { decodeFrame } from './frame-codec.js';

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;

/**
 * Streaming decoder for the TCP byte stream: varint length, then the frame.
 * Accepts chunks split or coalesced at any byte boundary. The declared length
 * is checked against `maxFrameBytes` as soon as the prefix is read, so an
 * oversized frame is refused before any of it is buffered. After an error the
 * decoder is poisoned: the connection is to be closed.
 */
export class FrameDecoder {
  private pending: Uint8Array | null = null;
  private failed = false;

  constructor(readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.pending?.length ?? 0;
  }

  /** Calls `onFrame` (with `self` as `this`, so a caller can pass a shared method, not a closure) per frame. */
  push<S = undefined>(chunk: Uint8Array, onFrame: (this: S, frame: Frame) => void, self?: S): void {
    if (this.failed) throw new ProtocolError('malformed-frame', 'decoder used after an error');
    let buf = chunk;
    if (this.pending !== null) {
      // A fresh buffer each time: decoded DATA payloads are views and must not
      // be overwritten by later reads.
      buf = new Uint8Array(this.pending.length + chunk.length);
      buf.set(this.pending, 0);
      buf.set(chunk, this.pending.length);
      this.pending = null;
    }
    let pos = 0;
    const end = buf.length;
    try {
      while (pos < end) {
        // Read the varint length prefix (at most 5 bytes).
        let len = 0;
        let scale = 1;
        let p = pos;
        let complete = false;
        while (p < end) {
          const b = buf[p++];
          len += (b & 0x7f) * scale;
          if ((b & 0x80) === 0) {
            complete = true;
            break;
          }
          scale *= 128;
          if (p - pos >= 5) throw new ProtocolError('malformed-frame', 'length prefix longer than 5 bytes');
        }
        if (len > this.maxFrameBytes) {
          throw new ProtocolError('frame-too-large', `frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
        }
        if (!complete) break;
        if (len === 0) throw new ProtocolError('malformed-frame', 'zero-length frame');
        if (end - p < len) break;
        const frame = decodeFrame(buf, p, p + len);
        pos = p + len;
        onFrame.call(self as S, frame);
      }
    } catch (err) {
      this.failed = true;
      throw err;
    }
    if (pos < end) this.pending = buf.slice(pos);
  }

  /** The stream ended: a partial frame left over is a truncated frame. */
  end(): void {
    if (this.pending !== null && this.pending.length > 0) {
      this.failed = true;
      throw new ProtocolError('truncated-frame', `stream ended inside a frame (${this.pending.length} bytes held)`);
    }
  }
}
