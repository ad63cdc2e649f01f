import { LonglinkError } from './errors.js';
import { utf8Length, varintSize } from './wire.js';

/** A tag byte and a varint of up to 2^53 (eight 7-bit groups): a DATA frame's seq or ack at its widest. */
const WIDEST_NUMBER_FIELD = 1 + 8;

/**
 * The most bytes a DATA frame with this payload and id can take on the wire
 * (its body, which both sides hold to maxFrameBytes), whatever seq and ack
 * it is given when it is written: a message checked against it before it is
 * queued never grows past the limit on its way out.
 */
export function dataFrameBound(payloadBytes: number, idBytes: number | undefined): number {
  const field = (n: number) => 1 + varintSize(n) + n;
  // An id is written whenever there is one, an empty one too (2 bytes); an empty payload is not.
  return 1 + WIDEST_NUMBER_FIELD + (idBytes === undefined ? 0 : field(idBytes)) + (payloadBytes > 0 ? field(payloadBytes) : 0) + WIDEST_NUMBER_FIELD;
}

/** The largest payload that fits a DATA frame of `maxFrameBytes` with an id of `idBytes`. */
export function payloadRoom(maxFrameBytes: number, idBytes: number | undefined): number {
  let room = Math.max(0, maxFrameBytes - dataFrameBound(0, idBytes) - 1 - varintSize(maxFrameBytes));
  while (dataFrameBound(room + 1, idBytes) <= maxFrameBytes) room++;
  return room;
}

/**
 * Refuses, before anything is queued or written, a message whose DATA frame
 * could exceed `maxFrameBytes`: the device would close its link on it as
 * frame-too-large, and a queued one would do it again on every reconnect
 * until it expired.
 */
export function assertPayloadFits(payload: Uint8Array, id: string | undefined, maxFrameBytes: number): void {
  const idBytes = id === undefined ? undefined : utf8Length(id);
  if (dataFrameBound(payload.length, idBytes) <= maxFrameBytes) return;
  throw new LonglinkError('LL_ERR_PAYLOAD_TOO_LARGE', `a payload of ${payload.length} bytes does not fit a frame of maxFrameBytes (${maxFrameBytes}): at most ${payloadRoom(maxFrameBytes, idBytes)} bytes${idBytes ? ` with this id (${idBytes} bytes)` : ''}`);
}

/** As long as the id `push()` gives a message that has none (a UUID): for checking a payload before the push. */
export const GENERATED_ID_SHAPE = '00000000-0000-0000-0000-000000000000';

