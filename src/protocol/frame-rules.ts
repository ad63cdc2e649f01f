import { ProtocolError } from './errors.js';
import { FrameType, frameName } from './frames.js';

/**
 * Which frame kinds each side may receive in each phase of a connection.
 * A frame outside these sets is `unexpected-frame` and closes the connection.
 */
export type Receiver = 'server' | 'client';
export type Phase = 'handshake' | 'open';

const allowed: Record<Receiver, Record<Phase, ReadonlySet<number>>> = {
  server: {
    handshake: new Set([FrameType.HELLO, FrameType.CLOSE]),
    open: new Set([FrameType.PING, FrameType.PONG, FrameType.DATA, FrameType.ACK, FrameType.CLOSE]),
  },
  client: {
    handshake: new Set([FrameType.WELCOME, FrameType.GOAWAY, FrameType.CLOSE]),
    open: new Set([FrameType.PING, FrameType.PONG, FrameType.DATA, FrameType.ACK, FrameType.GOAWAY, FrameType.CLOSE]),
  },
};

export function checkInbound(receiver: Receiver, phase: Phase, type: number): void {
  if (!allowed[receiver][phase].has(type)) {
    throw new ProtocolError('unexpected-frame', `${frameName[type] ?? type} is not allowed to the ${receiver} during ${phase}`);
  }
}
