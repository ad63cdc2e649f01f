import fc from 'fast-check';
import { FrameType, type Frame } from '../../src/protocol/frames.js';

const u = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const small = fc.nat({ max: 1_000_000 });
const str = fc.string({ maxLength: 20 });
const state = fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }), { minKeys: 1, maxKeys: 4 });
const dir = fc.constantFrom('client' as const, 'server' as const);
const bytes = fc.uint8Array({ maxLength: 64 });

/** Any valid frame, with optional fields present or absent. */
export const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record(
    { type: fc.constant(FrameType.HELLO), version: small, userId: str, deviceId: str, token: str, clientInfo: state, resumeToken: str, lastSeq: u, direction: dir, intervalMs: small },
    { requiredKeys: ['type', 'version', 'userId', 'deviceId'] },
  ),
  fc.record(
    {
      type: fc.constant(FrameType.WELCOME),
      sessionId: str,
      resumeToken: str,
      resumed: fc.boolean(),
      heartbeat: fc.record({ intervalMs: small, minIntervalMs: small, maxIntervalMs: small, missBudget: small, graceMs: small, direction: dir }),
      ack: u,
    },
    { requiredKeys: ['type', 'sessionId', 'resumeToken', 'resumed', 'heartbeat'] },
  ),
  fc.record({ type: fc.constant(FrameType.PING), seq: u, ack: u, state, intervalMs: small, rttMs: small }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant(FrameType.PONG), seq: u, ack: u }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant(FrameType.DATA), payload: bytes, seq: u, id: str, ack: u }, { requiredKeys: ['type', 'payload'] }),
  fc.record({ type: fc.constant(FrameType.ACK), ack: u }),
  fc.record({ type: fc.constant(FrameType.GOAWAY), code: small, reconnectAfterMs: small, reason: str }, { requiredKeys: ['type', 'code'] }),
  fc.record({ type: fc.constant(FrameType.CLOSE), code: small, reason: str }, { requiredKeys: ['type', 'code'] }),
) as fc.Arbitrary<Frame>;

/** Frames compare equal after a round trip once byte arrays are plain arrays. */
export function normalize(f: Frame): unknown {
  return JSON.parse(JSON.stringify(f, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v)));
}
