import { ProtocolError } from './errors.js';

/**
 * Low-level field encoding shared by every frame: varints (LEB128, at most
 * Number.MAX_SAFE_INTEGER) and length-delimited bytes, keyed protobuf-style.
 */
export const WIRE_VARINT = 0;
export const WIRE_BYTES = 2;

const utf8 = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the string ('\uFEFFalice' is not 'alice').
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Strings up to this many bytes are checked for ASCII and read in place (see Reader.string). */
const INPLACE_STRING_MAX = 64;

export function varintSize(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

/** UTF-8 length of a string without encoding it, and without Buffer (the browser client shares this module). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Whether `s` takes more than `max` bytes in UTF-8; a string too short to (three bytes a unit at most) is not measured. */
export function utf8Exceeds(s: string, max: number): boolean {
  return s.length * 3 > max && utf8Length(s) > max;
}

/** A growable byte writer. `reserve` leaves room in front for a length prefix. */
export class Writer {
  buf: Uint8Array;
  pos: number;
  readonly start: number;

  constructor(capacity = 64, reserve = 0) {
    this.buf = new Uint8Array(Math.max(capacity, reserve + 16));
    this.pos = reserve;
    this.start = reserve;
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  varint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`varint out of range: ${value}`);
    }
    this.ensure(8);
    while (value >= 0x80) {
      this.buf[this.pos++] = (value % 128) | 0x80;
      value = Math.floor(value / 128);
    }
    this.buf[this.pos++] = value;
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.ensure(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  fieldVarint(tag: number, value: number): void {
    this.varint((tag << 3) | WIRE_VARINT);
    this.varint(value);
  }

  fieldBytes(tag: number, data: Uint8Array): void {
    this.varint((tag << 3) | WIRE_BYTES);
    this.bytes(data);
  }

  fieldString(tag: number, s: string): void {
    // Short strings (ids, tokens) go in place after a one-byte length: a UTF-16 unit is at most
    // 3 bytes of UTF-8, so 42 of them fit under 128. Saves an array per string.
    if (s.length <= 42) {
      this.varint((tag << 3) | WIRE_BYTES);
      this.ensure(1 + 3 * s.length);
      // ASCII (every id and token) is copied a unit a byte, without a view for encodeInto.
      const buf = this.buf;
      const at = this.pos + 1;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at + i] = c;
      }
      const n = i === s.length ? i : utf8.encodeInto(s, buf.subarray(at)).written;
      this.buf[this.pos] = n;
      this.pos += 1 + n;
      return;
    }
    this.fieldBytes(tag, utf8.encode(s));
  }

  /** Empties the writer for reuse (the reserved prefix stays). */
  reset(): void {
    this.pos = this.start;
  }

  /** The bytes written after the reserved prefix. */
  body(): Uint8Array {
    return this.buf.subarray(this.start, this.pos);
  }
}

/** Reads fields from one frame body; every overrun is a typed protocol error. */
export class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw new ProtocolError('truncated-frame', 'varint runs past the end of the frame');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER) break;
        return result;
      }
      scale *= 128;
    }
    throw new ProtocolError('malformed-frame', 'varint too long');
  }

  /** Reads a length and skips past that many bytes; returns where they start. */
  private span(): number {
    const len = this.varint();
    if (len > this.end - this.pos) throw new ProtocolError('truncated-frame', 'field runs past the end of the frame');
    const start = this.pos;
    this.pos += len;
    return start;
  }

  bytes(): Uint8Array {
    const start = this.span();
    return this.buf.subarray(start, this.pos);
  }

  string(): string {
    const start = this.span();
    const end = this.pos;
    // Ids and tokens are short ASCII and arrive in Node Buffers: read in place (no view, no
    // decoder call). Anything else, and every byte from 0x80 up, goes through the strict decoder.
    const buf = this.buf as Uint8Array & { latin1Slice?: (start: number, end: number) => string };
    if (end - start <= INPLACE_STRING_MAX && typeof buf.latin1Slice === 'function') {
      let i = start;
      while (i < end && buf[i] < 0x80) i++;
      if (i === end) return buf.latin1Slice(start, end);
    }
    try {
      return utf8Strict.decode(buf.subarray(start, end));
    } catch {
      throw new ProtocolError('malformed-frame', 'string field is not valid UTF-8');
    }
  }

  /** Skips a field of the given wire type (for unknown tags). */
  skip(wireType: number): void {
    if (wireType === WIRE_VARINT) this.varint();
    else if (wireType === WIRE_BYTES) this.bytes();
    else throw new ProtocolError('malformed-frame', `unknown wire type ${wireType}`);
  }
}
