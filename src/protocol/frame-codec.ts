import { ProtocolError } from './errors.js';
import {
  type ClientState,
  type Frame,
  FrameType,
  type HeartbeatDirection,
  type HelloFrame,
  type WelcomeFrame,
  type PingFrame,
  type PongFrame,
  type DataFrame,
  type AckFrame,
  type GoawayFrame,
  type CloseFrame,
} from './frames.js';
import { Reader, Writer, WIRE_BYTES, WIRE_VARINT } from './wire.js';

/**
 * Pure encode/decode of one frame (type byte + tagged fields). No I/O; the
 * length prefix used on TCP is added by `encodeDelimited` and stripped by the
 * streaming FrameDecoder. Field tags are listed in docs/PROTOCOL.md.
 */

/** Room in front of a frame for its varint length prefix (frames < 2^35 bytes). */
const PREFIX_ROOM = 5;

// The heartbeat path never allocates: bare PING/PONG decode to these shared
// objects and encode to these constant byte strings.
export const BARE_PING: Readonly<PingFrame> = Object.freeze({ type: FrameType.PING });
export const BARE_PONG: Readonly<PongFrame> = Object.freeze({ type: FrameType.PONG });
export const BARE_PING_BYTES = Uint8Array.of(FrameType.PING);
export const BARE_PONG_BYTES = Uint8Array.of(FrameType.PONG);
export const BARE_PING_DELIMITED = Uint8Array.of(1, FrameType.PING);
export const BARE_PONG_DELIMITED = Uint8Array.of(1, FrameType.PONG);

function directionCode(d: HeartbeatDirection): number {
  return d === 'server' ? 1 : 0;
}

function directionOf(n: number): HeartbeatDirection {
  if (n === 0) return 'client';
  if (n === 1) return 'server';
  throw new ProtocolError('malformed-frame', `unknown heartbeat direction ${n}`);
}

function writeState(w: Writer, tag: number, state: ClientState): void {
  for (const key of Object.keys(state)) {
    const entry = new Writer(32);
    entry.fieldString(1, key);
    entry.fieldString(2, state[key]);
    w.fieldBytes(tag, entry.body());
  }
}

function readStateEntry(r: Reader, into: ClientState): void {
  const raw = r.bytes();
  const e = new Reader(raw, 0, raw.length);
  let key: string | undefined;
  let value = '';
  while (!e.done()) {
    const [tag, wt] = key_(e);
    // A known tag of the wrong wire type is malformed, as in a frame: skipped, a varint value read
    // as the empty string, which deletes the key from a PING's state.
    if (tag === 1) { want(wt, WIRE_BYTES, 'entry key'); key = e.string(); }
    else if (tag === 2) { want(wt, WIRE_BYTES, 'entry value'); value = e.string(); }
    else e.skip(wt);
  }
  if (key === undefined) throw new ProtocolError('malformed-frame', 'state entry without a key');
  putEntry(into, key, value);
}

/** Sets a state entry; `__proto__` too, which a plain assignment would take for the prototype and drop. */
export function putEntry(into: ClientState, key: string, value: string): void {
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}

function key_(r: Reader): [number, number] {
  const k = r.varint();
  return [Math.floor(k / 8), k % 8];
}

function want(wt: number, expected: number, field: string): void {
  if (wt !== expected) throw new ProtocolError('malformed-frame', `field ${field} has wire type ${wt}`);
}

function writeBody(w: Writer, f: Frame): void {
  w.byte(f.type);
  switch (f.type) {
    case FrameType.HELLO:
      w.fieldVarint(1, f.version);
      w.fieldString(2, f.userId);
      w.fieldString(3, f.deviceId);
      if (f.token !== undefined) w.fieldString(4, f.token);
      if (f.clientInfo !== undefined) writeState(w, 5, f.clientInfo);
      if (f.resumeToken !== undefined) w.fieldString(6, f.resumeToken);
      if (f.lastSeq !== undefined) w.fieldVarint(7, f.lastSeq);
      if (f.direction !== undefined) w.fieldVarint(8, directionCode(f.direction));
      if (f.intervalMs !== undefined) w.fieldVarint(9, f.intervalMs);
      return;
    case FrameType.WELCOME: {
      const h = f.heartbeat;
      w.fieldString(1, f.sessionId);
      w.fieldString(2, f.resumeToken);
      w.fieldVarint(3, f.resumed ? 1 : 0);
      w.fieldVarint(4, h.intervalMs);
      w.fieldVarint(5, h.minIntervalMs);
      w.fieldVarint(6, h.maxIntervalMs);
      w.fieldVarint(7, h.missBudget);
      w.fieldVarint(8, h.graceMs);
      w.fieldVarint(9, directionCode(h.direction));
      if (f.ack !== undefined) w.fieldVarint(10, f.ack);
      return;
    }
    case FrameType.PING:
    case FrameType.PONG:
      if (f.seq !== undefined) w.fieldVarint(1, f.seq);
      if (f.ack !== undefined) w.fieldVarint(2, f.ack);
      if (f.type === FrameType.PING) {
        if (f.state !== undefined) writeState(w, 3, f.state);
        if (f.intervalMs !== undefined) w.fieldVarint(4, f.intervalMs);
        if (f.rttMs !== undefined) w.fieldVarint(5, f.rttMs);
      } else if (f.warn !== undefined) w.fieldVarint(3, f.warn);
      return;
    case FrameType.DATA:
      if (f.seq !== undefined) w.fieldVarint(1, f.seq);
      if (f.id !== undefined) w.fieldString(2, f.id);
      if (f.payload.length > 0) w.fieldBytes(3, f.payload);
      if (f.ack !== undefined) w.fieldVarint(4, f.ack);
      return;
    case FrameType.ACK:
      w.fieldVarint(1, f.ack);
      return;
    case FrameType.GOAWAY:
      w.fieldVarint(1, f.code);
      if (f.reconnectAfterMs !== undefined) w.fieldVarint(2, f.reconnectAfterMs);
      if (f.reason !== undefined) w.fieldString(3, f.reason);
      return;
    case FrameType.CLOSE:
      w.fieldVarint(1, f.code);
      if (f.reason !== undefined) w.fieldString(2, f.reason);
      return;
  }
}

/**
 * Frames are encoded into one reused writer and copied out (encoding calls
 * nothing that encodes again): a fresh writer per frame cost a buffer
 * outside the heap, two for a WELCOME that outgrew the first. One that grew
 * for a large frame is let go at the next encode.
 */
const SCRATCH_BYTES = 4096;
let scratch = new Writer(SCRATCH_BYTES, PREFIX_ROOM);

function encodeInScratch(f: Frame): Writer {
  if (scratch.buf.length > 16 * SCRATCH_BYTES) scratch = new Writer(SCRATCH_BYTES, PREFIX_ROOM);
  scratch.reset();
  writeBody(scratch, f);
  return scratch;
}

const isBarePong = (f: Frame) => f.type === FrameType.PONG && f.seq === undefined && f.ack === undefined && f.warn === undefined;

/** One frame as a WebSocket message carries it: type byte + fields. */
export function encodeFrame(f: Frame): Uint8Array {
  const b = encodeFrameTransient(f);
  return b === BARE_PING_BYTES || b === BARE_PONG_BYTES ? b : b.slice();
}

/**
 * encodeFrame's bytes as a view of the shared encoding buffer, valid only
 * until the next encode: for a caller that copies them at once (a socket
 * link framing them for the wire).
 */
export function encodeFrameTransient(f: Frame): Uint8Array {
  if (f.type === FrameType.PING && isBare(f)) return BARE_PING_BYTES;
  if (isBarePong(f)) return BARE_PONG_BYTES;
  return encodeInScratch(f).body();
}

/** One frame as TCP carries it: varint length, then the frame. */
export function encodeDelimited(f: Frame): Uint8Array {
  const b = encodeDelimitedTransient(f);
  return b === BARE_PING_DELIMITED || b === BARE_PONG_DELIMITED ? b : b.slice();
}

/** encodeDelimited's bytes as a view of the shared encoding buffer, valid only until the next encode (see encodeFrameTransient). */
export function encodeDelimitedTransient(f: Frame): Uint8Array {
  if (f.type === FrameType.PING && isBare(f)) return BARE_PING_DELIMITED;
  if (isBarePong(f)) return BARE_PONG_DELIMITED;
  const w = encodeInScratch(f);
  return prefixLength(w.buf, w.start, w.pos);
}

/** Adds a varint length prefix in the room left before `start`. */
export function prefixLength(buf: Uint8Array, start: number, end: number): Uint8Array {
  let len = end - start;
  const size = len < 0x80 ? 1 : len < 0x4000 ? 2 : len < 0x200000 ? 3 : len < 0x10000000 ? 4 : 5;
  let p = start - size;
  const first = p;
  while (len >= 0x80) {
    buf[p++] = (len % 128) | 0x80;
    len = Math.floor(len / 128);
  }
  buf[p] = len;
  return buf.subarray(first, end);
}

function isBare(f: PingFrame): boolean {
  return f.seq === undefined && f.ack === undefined && f.state === undefined && f.intervalMs === undefined && f.rttMs === undefined;
}

/**
 * Decodes one frame from `buf[start, end)`. Throws ProtocolError with reason
 * unknown-frame, malformed-frame or truncated-frame. No field of the result
 * shares memory with `buf`, except a DATA payload that is most of its buffer
 * (see ownedPayload): the application may keep any payload it is handed.
 */
export function decodeFrame(buf: Uint8Array, start = 0, end = buf.length): Frame {
  if (end <= start) throw new ProtocolError('truncated-frame', 'empty frame');
  const type = buf[start];
  // Nearly every frame is a bare heartbeat: the shared object, without a Reader made for it.
  if (end - start === 1) {
    if (type === FrameType.PING) return BARE_PING;
    if (type === FrameType.PONG) return BARE_PONG;
  }
  const r = new Reader(buf, start + 1, end);
  switch (type) {
    case FrameType.PING:
      return decodePing(r);
    case FrameType.PONG:
      return decodePong(r);
    case FrameType.HELLO:
      return decodeHello(r);
    case FrameType.WELCOME:
      return decodeWelcome(r);
    case FrameType.DATA:
      return decodeData(r);
    case FrameType.ACK:
      return decodeAck(r);
    case FrameType.GOAWAY:
      return decodeGoaway(r);
    case FrameType.CLOSE:
      return decodeClose(r);
    default:
      throw new ProtocolError('unknown-frame', `unknown frame type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

function decodeHello(r: Reader): HelloFrame {
  let version: number | undefined;
  let userId: string | undefined;
  let deviceId: string | undefined;
  const f: Partial<HelloFrame> = {};
  while (!r.done()) {
    const [tag, wt] = key_(r);
    switch (tag) {
      case 1: want(wt, WIRE_VARINT, 'version'); version = r.varint(); break;
      case 2: want(wt, WIRE_BYTES, 'userId'); userId = r.string(); break;
      case 3: want(wt, WIRE_BYTES, 'deviceId'); deviceId = r.string(); break;
      case 4: want(wt, WIRE_BYTES, 'token'); f.token = r.string(); break;
      case 5: want(wt, WIRE_BYTES, 'clientInfo'); readStateEntry(r, (f.clientInfo ??= {})); break;
      case 6: want(wt, WIRE_BYTES, 'resumeToken'); f.resumeToken = r.string(); break;
      case 7: want(wt, WIRE_VARINT, 'lastSeq'); f.lastSeq = r.varint(); break;
      case 8: want(wt, WIRE_VARINT, 'direction'); f.direction = directionOf(r.varint()); break;
      case 9: want(wt, WIRE_VARINT, 'intervalMs'); f.intervalMs = r.varint(); break;
      default: r.skip(wt);
    }
  }
  if (version === undefined || userId === undefined || deviceId === undefined) {
    throw new ProtocolError('malformed-frame', 'HELLO needs version, userId and deviceId');
  }
  return { type: FrameType.HELLO, version, userId, deviceId, ...f };
}

function decodeWelcome(r: Reader): WelcomeFrame {
  const v: Record<number, number> = {};
  let sessionId: string | undefined;
  let resumeToken: string | undefined;
  while (!r.done()) {
    const [tag, wt] = key_(r);
    if (tag === 1) { want(wt, WIRE_BYTES, 'sessionId'); sessionId = r.string(); }
    else if (tag === 2) { want(wt, WIRE_BYTES, 'resumeToken'); resumeToken = r.string(); }
    else if (tag >= 3 && tag <= 10) { want(wt, WIRE_VARINT, `#${tag}`); v[tag] = r.varint(); }
    else r.skip(wt);
  }
  for (let tag = 3; tag <= 9; tag++) {
    if (v[tag] === undefined) throw new ProtocolError('malformed-frame', `WELCOME misses field #${tag}`);
  }
  if (sessionId === undefined || resumeToken === undefined) {
    throw new ProtocolError('malformed-frame', 'WELCOME needs sessionId and resumeToken');
  }
  return {
    type: FrameType.WELCOME,
    sessionId,
    resumeToken,
    resumed: v[3] === 1,
    heartbeat: {
      intervalMs: v[4],
      minIntervalMs: v[5],
      maxIntervalMs: v[6],
      missBudget: v[7],
      graceMs: v[8],
      direction: directionOf(v[9]),
    },
    ...(v[10] !== undefined ? { ack: v[10] } : {}),
  };
}

function decodePing(r: Reader): PingFrame {
  const f: PingFrame = { type: FrameType.PING };
  while (!r.done()) {
    const [tag, wt] = key_(r);
    switch (tag) {
      case 1: want(wt, WIRE_VARINT, 'seq'); f.seq = r.varint(); break;
      case 2: want(wt, WIRE_VARINT, 'ack'); f.ack = r.varint(); break;
      case 3: want(wt, WIRE_BYTES, 'state'); readStateEntry(r, (f.state ??= {})); break;
      case 4: want(wt, WIRE_VARINT, 'intervalMs'); f.intervalMs = r.varint(); break;
      case 5: want(wt, WIRE_VARINT, 'rttMs'); f.rttMs = r.varint(); break;
      default: r.skip(wt);
    }
  }
  return f;
}

function decodePong(r: Reader): PongFrame {
  const f: PongFrame = { type: FrameType.PONG };
  while (!r.done()) {
    const [tag, wt] = key_(r);
    if (tag === 1) { want(wt, WIRE_VARINT, 'seq'); f.seq = r.varint(); }
    else if (tag === 2) { want(wt, WIRE_VARINT, 'ack'); f.ack = r.varint(); }
    else if (tag === 3) { want(wt, WIRE_VARINT, 'warn'); f.warn = r.varint(); }
    else r.skip(wt);
  }
  return f;
}

const EMPTY = new Uint8Array(0);

function decodeData(r: Reader): DataFrame {
  const f: DataFrame = { type: FrameType.DATA, payload: EMPTY };
  while (!r.done()) {
    const [tag, wt] = key_(r);
    switch (tag) {
      case 1: want(wt, WIRE_VARINT, 'seq'); f.seq = r.varint(); break;
      case 2: want(wt, WIRE_BYTES, 'id'); f.id = r.string(); break;
      case 3: want(wt, WIRE_BYTES, 'payload'); f.payload = ownedPayload(r.bytes()); break;
      case 4: want(wt, WIRE_VARINT, 'ack'); f.ack = r.varint(); break;
      default: r.skip(wt);
    }
  }
  return f;
}

/**
 * A payload goes to application code, which may keep it for as long as it likes. A view into a
 * socket read (tens of KB in a catch-up burst) kept the whole read alive: 1,000 kept 5-byte
 * payloads held 2 reads, 49,873 bytes. Copied unless it is most of its buffer (then the view
 * costs little more than a copy would). Only DATA pays this: bare heartbeats never get here.
 */
function ownedPayload(p: Uint8Array): Uint8Array {
  // TypedArray's slice, which copies: a Buffer's own slice() is a view, like subarray().
  return p.buffer.byteLength - p.length > Math.max(p.length, 256) ? Uint8Array.prototype.slice.call(p) : p;
}

function decodeAck(r: Reader): AckFrame {
  let ack: number | undefined;
  while (!r.done()) {
    const [tag, wt] = key_(r);
    if (tag === 1) { want(wt, WIRE_VARINT, 'ack'); ack = r.varint(); }
    else r.skip(wt);
  }
  if (ack === undefined) throw new ProtocolError('malformed-frame', 'ACK needs ack');
  return { type: FrameType.ACK, ack };
}

function decodeGoaway(r: Reader): GoawayFrame {
  let code: number | undefined;
  const f: Partial<GoawayFrame> = {};
  while (!r.done()) {
    const [tag, wt] = key_(r);
    if (tag === 1) { want(wt, WIRE_VARINT, 'code'); code = r.varint(); }
    else if (tag === 2) { want(wt, WIRE_VARINT, 'reconnectAfterMs'); f.reconnectAfterMs = r.varint(); }
    else if (tag === 3) { want(wt, WIRE_BYTES, 'reason'); f.reason = r.string(); }
    else r.skip(wt);
  }
  if (code === undefined) throw new ProtocolError('malformed-frame', 'GOAWAY needs code');
  return { type: FrameType.GOAWAY, code, ...f };
}

function decodeClose(r: Reader): CloseFrame {
  let code: number | undefined;
  let reason: string | undefined;
  while (!r.done()) {
    const [tag, wt] = key_(r);
    if (tag === 1) { want(wt, WIRE_VARINT, 'code'); code = r.varint(); }
    else if (tag === 2) { want(wt, WIRE_BYTES, 'reason'); reason = r.string(); }
    else r.skip(wt);
  }
  if (code === undefined) throw new ProtocolError('malformed-frame', 'CLOSE needs code');
  return reason === undefined ? { type: FrameType.CLOSE, code } : { type: FrameType.CLOSE, code, reason };
}
