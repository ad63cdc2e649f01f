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
  /**
   * A partial frame, as the chunks it arrived in: joined once, when the whole
   * frame is there. (Joining on every chunk made reassembly quadratic: a 64 KB
   * frame in 1-byte chunks cost 449 ms, against 0.2 ms in one chunk.)
   */
  private chunks: Uint8Array[] = [];
  private held = 0;
  /** Bytes the partial frame needs in all, prefix included; -1 while its prefix is incomplete. */
  private need = -1;
  private failed = false;
  private stopped = false;
  /** Bytes copied while reassembling, since the decoder was made: at most about twice what arrived. */
  copiedBytes = 0;

  constructor(readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.held;
  }

  /**
   * Calls `onFrame` (with `self` as `this`, so a caller can pass a shared
   * method, not a closure) per frame. `onFrame` returning false stops the
   * decoder for good: the rest is dropped undecoded (a link being closed
   * does not decode the thousands of frames a flood left behind).
   */
  push<S = undefined>(chunk: Uint8Array, onFrame: (this: S, frame: Frame) => unknown, self?: S): void {
    if (this.stopped) return;
    if (this.failed) throw new ProtocolError('malformed-frame', 'decoder used after an error');
    try {
      if (this.held === 0) return this.decode(chunk, onFrame, self);
      this.chunks.push(chunk);
      this.held += chunk.length;
      if (this.need < 0) this.need = this.prefixNeed();
      if (this.need < 0 || this.held < this.need) return;
      // The frame is whole: one copy, into a fresh buffer (decoded DATA payloads are views of it).
      const buf = new Uint8Array(this.held);
      this.copiedBytes += this.held;
      let at = 0;
      for (const c of this.chunks) {
        buf.set(c, at);
        at += c.length;
      }
      this.chunks = [];
      this.held = 0;
      this.need = -1;
      this.decode(buf, onFrame, self);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  /** The held chunks' length prefix: the whole frame's size, or -1 if the prefix is not complete yet. */
  private prefixNeed(): number {
    let len = 0;
    let scale = 1;
    let n = 0;
    for (const c of this.chunks) {
      for (let i = 0; i < c.length; i++) {
        const b = c[i];
        len += (b & 0x7f) * scale;
        n++;
        if ((b & 0x80) === 0) return this.checked(len) + n;
        scale *= 128;
        if (n >= 5) throw new ProtocolError('malformed-frame', 'length prefix longer than 5 bytes');
      }
    }
    if (len > this.maxFrameBytes) this.checked(len);
    return -1;
  }

  private checked(len: number): number {
    if (len > this.maxFrameBytes) throw new ProtocolError('frame-too-large', `frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
    if (len === 0) throw new ProtocolError('malformed-frame', 'zero-length frame');
    return len;
  }

  private decode<S>(buf: Uint8Array, onFrame: (this: S, frame: Frame) => unknown, self?: S): void {
    let pos = 0;
    const end = buf.length;
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
      if (onFrame.call(self as S, frame) === false) {
        this.stopped = true;
        this.chunks = [];
        this.held = 0;
        return;
      }
    }
    if (pos < end) {
      // Copied: a socket's read buffer is not kept alive for a few bytes of the next frame.
      const rest = buf.slice(pos);
      this.copiedBytes += rest.length;
      this.chunks = [rest];
      this.held = rest.length;
      this.need = this.prefixNeed();
    }
  }

  /** The stream ended: a partial frame left over is a truncated frame. */
  end(): void {
    if (this.held > 0 && !this.stopped) {
      this.failed = true;
      throw new ProtocolError('truncated-frame', `stream ended inside a frame (${this.held} bytes held)`);
    }
  }
}
