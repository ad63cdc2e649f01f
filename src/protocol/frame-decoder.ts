import { ProtocolError, StreamEndedError } from './errors.js';
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
   * A partial frame, in one buffer that grows fourfold up to the frame's
   * declared size: each byte is copied about once and a dripping peer holds
   * one allocation, not one per chunk. (Joining every pending chunk on each
   * push made reassembly quadratic: a 64 KB frame in 1-byte chunks cost
   * 449 ms; a list of 64-byte chunks cost about 1 KB of heap each.)
   */
  private acc: Uint8Array | null = null;
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

  /** Bytes allocated for the partial frame (its buffer grows ahead of what arrived): what holding it costs. */
  get heldCapacity(): number {
    return this.held > 0 ? this.acc!.length : 0;
  }

  /** Holds nothing and may decode more: it could serve another stream as if new. */
  get idle(): boolean {
    return this.held === 0 && !this.stopped && !this.failed;
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
      let rest = chunk;
      if (this.held > 0) {
        // The prefix first (at most 5 bytes, a byte at a time), then exactly the frame's remaining bytes.
        let i = 0;
        while (this.need < 0 && i < rest.length) {
          this.append(rest.subarray(i, i + 1));
          i++;
          this.need = this.prefixNeed();
        }
        if (this.need < 0) return;
        rest = rest.subarray(i);
        const take = Math.min(rest.length, this.need - this.held);
        this.append(rest.subarray(0, take));
        rest = rest.subarray(take);
        if (this.held < this.need) return;
        // Whole: decoded from its own buffer, which is let go (a payload that is most of it keeps it, as its view).
        const frame = this.acc!.subarray(0, this.held);
        this.acc = null;
        this.held = 0;
        this.need = -1;
        this.decode(frame, onFrame, self);
        if (this.stopped || rest.length === 0) return;
      }
      this.decode(rest, onFrame, self);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  private append(bytes: Uint8Array): void {
    const want = this.held + bytes.length;
    if (!this.acc || want > this.acc.length) {
      const cap = this.need > 0 ? Math.min(this.need, Math.max(want, 4 * (this.acc?.length ?? 0))) : Math.max(want, 8);
      const next = new Uint8Array(cap);
      if (this.acc && this.held > 0) {
        next.set(this.acc.subarray(0, this.held));
        this.copiedBytes += this.held;
      }
      this.acc = next;
    }
    this.acc.set(bytes, this.held);
    this.copiedBytes += bytes.length;
    this.held = want;
  }

  /** The held bytes' length prefix: the whole frame's size, or -1 if the prefix is not complete yet. */
  private prefixNeed(): number {
    let len = 0;
    let scale = 1;
    const acc = this.acc!;
    for (let i = 0; i < this.held; i++) {
      const b = acc[i];
      len += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return this.checked(len) + i + 1;
      scale *= 128;
      if (i + 1 >= 5) throw new ProtocolError('malformed-frame', 'length prefix longer than 5 bytes');
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
        this.acc = null;
        this.held = 0;
        return;
      }
    }
    if (pos < end) {
      // Copied: a socket's read buffer is not kept alive for a few bytes of the next frame.
      this.append(buf.subarray(pos, end));
      this.need = this.prefixNeed();
    }
  }

  /** The stream ended: a partial frame left over is a truncated frame. */
  end(): void {
    if (this.held > 0 && !this.stopped) {
      this.failed = true;
      throw new StreamEndedError(`stream ended inside a frame (${this.held} bytes held)`);
    }
  }
}
