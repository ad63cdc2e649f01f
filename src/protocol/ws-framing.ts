import { ProtocolError } from './errors.js';

/**
 * The server's side of RFC 6455 framing, for links the gateway takes over
 * from `ws` once the HTTP upgrade is done (`ws` keeps the handshake, its
 * header checks and error answers). Why by hand: after the upgrade `ws`
 * holds a WebSocket, a Receiver (a Writable stream with its state) and a
 * Sender per connection, about 2.3 KB of heap each, as much as all of
 * longlink's own state of a connection; the peer benchmark's RSS target
 * (docs/BENCHMARKS.md) cannot be met with them. What longlink needs of the
 * framing is small: binary messages (fragmented or not), close, ping and
 * pong, no extensions, no text.
 *
 * Pure: bytes in, calls out; no I/O. Client frames must be masked; any
 * violation is a ProtocolError (`malformed-frame`, or `frame-too-large` for a
 * message over the limit, refused from its header before it is buffered).
 */
export interface WsFrameHandler {
  /** A whole binary message. False stops the parser for good (the link is poisoned or gone; one closing reads on to the peer's close frame). */
  onWsMessage(payload: Buffer): boolean;
  onWsPing(payload: Buffer): void;
  /** A pong frame: unasked (the gateway sends no pings), so a handler may pace them. */
  onWsPong?(): void;
  onWsClose(code: number, reason: string): void;
}

const OP_CONT = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Fragments of one message: each is a buffer and a list entry, so empty ones must be bounded too. */
export const MAX_FRAGMENTS = 256;

export class WsFrameParser {
  /** Bytes of a frame not complete yet: one buffer grown as needed (a dripping peer costs one allocation, not one per chunk). */
  private acc: Buffer | null = null;
  private held = 0;
  /** Fragments of a message in progress (made for the first: most links never fragment), and their size. */
  private parts: Buffer[] | null = null;
  private partBytes = 0;
  private inMessage = false;
  private stopped = false;

  constructor(readonly maxMessageBytes: number) {}

  get bufferedBytes(): number {
    return this.held + this.partBytes;
  }

  /** Bytes allocated for a partial frame (its buffer grows ahead of what arrived) and the fragments of a message: what holding them costs. */
  get heldCapacity(): number {
    return (this.held > 0 ? this.acc!.length : 0) + this.partBytes;
  }

  /** Holds nothing (no partial frame, no message begun) and may parse more: it could serve another stream as if new. */
  get idle(): boolean {
    return this.held === 0 && !this.inMessage && this.parts === null && !this.stopped;
  }

  push(chunk: Buffer, h: WsFrameHandler): void {
    if (this.stopped) return;
    if (this.held === 0) {
      const used = this.parse(chunk, h);
      if (used < chunk.length && !this.stopped) this.keep(chunk.subarray(used));
      return;
    }
    this.keep(chunk);
    const acc = this.acc!;
    const held = this.held;
    const used = this.parse(acc.subarray(0, held), h);
    if (used === 0 || this.stopped) return;
    // Messages handed out of the buffer are views of it (the frame decoder keeps its payload as
    // a view): the buffer goes with them, and what is left of a partial frame gets a new one.
    this.acc = null;
    this.held = 0;
    if (used < held) this.keep(acc.subarray(used, held));
  }

  private keep(bytes: Buffer): void {
    const need = this.held + bytes.length;
    if (!this.acc || this.acc.length < need) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.maxMessageBytes + 14, (this.acc?.length ?? 64) * 4)));
      if (this.acc) this.acc.copy(grown, 0, 0, this.held);
      this.acc = grown;
    }
    bytes.copy(this.acc, this.held);
    this.held = need;
  }

  /** Parses every whole frame in `data`; returns the bytes used. */
  private parse(data: Buffer, h: WsFrameHandler): number {
    let off = 0;
    while (!this.stopped && data.length - off >= 2) {
      const b0 = data[off];
      const b1 = data[off + 1];
      const fin = (b0 & 0x80) !== 0;
      const op = b0 & 0x0f;
      if ((b0 & 0x70) !== 0) throw new ProtocolError('malformed-frame', 'WebSocket RSV bits set, and no extension was agreed');
      if ((b1 & 0x80) === 0) throw new ProtocolError('malformed-frame', 'a client WebSocket frame must be masked');
      let len = b1 & 0x7f;
      let hdr = 2;
      // A control frame is over 125 bytes by its 7-bit code alone: refused before an extended
      // length is read, whose 64-bit form would otherwise be refused as frame-too-large.
      if (op >= 0x8 && len > 125) throw new ProtocolError('malformed-frame', 'a WebSocket control frame must be whole and at most 125 bytes');
      if (len === 126) {
        if (data.length - off < 4) break;
        len = data.readUInt16BE(off + 2);
        hdr = 4;
      } else if (len === 127) {
        if (data.length - off < 10) break;
        if (data.readUInt32BE(off + 2) !== 0) throw new ProtocolError('frame-too-large', 'WebSocket frame over 4 GiB');
        len = data.readUInt32BE(off + 6);
        hdr = 10;
      }
      if (op >= 0x8) {
        if (!fin || len > 125) throw new ProtocolError('malformed-frame', 'a WebSocket control frame must be whole and at most 125 bytes');
        if (op !== OP_CLOSE && op !== OP_PING && op !== OP_PONG) throw new ProtocolError('malformed-frame', `unknown WebSocket opcode ${op}`);
      } else if (op === OP_TEXT) {
        throw new ProtocolError('malformed-frame', 'text messages are not frames; send binary');
      } else if (op === OP_BINARY || op === OP_CONT) {
        if ((op === OP_CONT) !== this.inMessage) throw new ProtocolError('malformed-frame', op === OP_CONT ? 'a continuation frame with no message begun' : 'a new message before the last one ended');
        if (this.partBytes + len > this.maxMessageBytes) {
          throw new ProtocolError('frame-too-large', `frame of ${this.partBytes + len} bytes exceeds the limit of ${this.maxMessageBytes}`);
        }
        // The final fragment counts too: at most MAX_FRAGMENTS in all (257 went through before).
        if (this.parts !== null && this.parts.length >= MAX_FRAGMENTS) throw new ProtocolError('malformed-frame', `a message in more than ${MAX_FRAGMENTS} fragments`);
      } else {
        throw new ProtocolError('malformed-frame', `unknown WebSocket opcode ${op}`);
      }
      const total = hdr + 4 + len;
      if (data.length - off < total) break;
      const m = off + hdr;
      off += total;
      // A pong's payload is never read: not unmasked either.
      if (op === OP_PONG) {
        h.onWsPong?.();
        continue;
      }
      const payload = data.subarray(m + 4, off);
      for (let i = 0; i < len; i++) payload[i] ^= data[m + (i & 3)];
      if (op === OP_PING) h.onWsPing(payload);
      else if (op === OP_CLOSE) {
        this.stopped = true;
        if (len === 1) throw new ProtocolError('malformed-frame', 'a WebSocket close frame of one byte');
        let reason = '';
        try {
          reason = len > 2 ? utf8.decode(payload.subarray(2)) : '';
        } catch {
          throw new ProtocolError('malformed-frame', 'a WebSocket close reason that is not UTF-8');
        }
        const code = len >= 2 ? payload.readUInt16BE(0) : 1005;
        // RFC 6455 7.4: echoed back, a forbidden code made the peer fail the connection in turn.
        if (len >= 2 && !isWsCloseCode(code)) throw new ProtocolError('malformed-frame', `WebSocket close code ${code} is not one a close frame may carry`);
        h.onWsClose(code, reason);
      } else if (fin && !this.inMessage) {
        // The usual case: a whole message in one frame, handed over as a view of the bytes read.
        if (!h.onWsMessage(payload)) this.stopped = true;
      } else {
        (this.parts ??= []).push(Buffer.from(payload));
        this.partBytes += len;
        this.inMessage = !fin;
        if (fin) {
          const whole = Buffer.concat(this.parts, this.partBytes);
          this.parts = null;
          this.partBytes = 0;
          if (!h.onWsMessage(whole)) this.stopped = true;
        }
      }
    }
    return off;
  }
}

/**
 * A close code a close frame may carry (RFC 6455 7.4, and the IANA registry: 1012-1014):
 * 1000-1003, 1007-1014, 3000-4999. Not 0-999, 1004 (reserved), 1005 and 1006 (never sent,
 * they say there was none), 1015 (TLS, never sent), the rest of 1016-2999 (unassigned) or 5000+.
 */
export function isWsCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** A server-to-client frame (unmasked, FIN). */
export function wsFrame(opcode: number, payload: Uint8Array): Buffer {
  const len = payload.length;
  const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hdr + len);
  out[0] = 0x80 | opcode;
  if (hdr === 2) out[1] = len;
  else if (hdr === 4) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(0, 2);
    out.writeUInt32BE(len, 6);
  }
  out.set(payload, hdr);
  return out;
}

/** A close reason as UTF-8, cut to the 123 bytes a close frame allows, at a character's start (the peer must fail one that is not UTF-8). */
export function wsCloseReason(reason: string): Buffer {
  const all = Buffer.from(reason);
  let n = Math.min(all.length, 123);
  if (n < all.length) while (n > 0 && (all[n] & 0xc0) === 0x80) n--;
  return all.subarray(0, n);
}

/** A close frame: the code, and the reason cut to the 123 bytes a control frame allows (at a character's start: the peer must fail a reason that is not UTF-8). */
export function wsCloseFrame(code: number, reason: string): Buffer {
  const r = wsCloseReason(reason);
  const p = Buffer.allocUnsafe(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return wsFrame(OP_CLOSE, p);
}

export const WS_OPCODES = { OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG } as const;
