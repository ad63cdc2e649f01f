import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkInbound } from '../../src/protocol/frame-rules.js';
import { FrameType } from '../../src/protocol/frames.js';
import { ProtocolError } from '../../src/protocol/errors.js';

const unexpected = (fn: () => void) => assert.throws(fn, (e: unknown) => e instanceof ProtocolError && e.reason === 'unexpected-frame' && e.closeCode === 4503);

test('the server accepts only HELLO (or a CLOSE giving up) before the handshake', () => {
  checkInbound('server', 'handshake', FrameType.HELLO);
  checkInbound('server', 'handshake', FrameType.CLOSE);
  for (const t of [FrameType.PING, FrameType.DATA, FrameType.WELCOME, FrameType.ACK]) unexpected(() => checkInbound('server', 'handshake', t));
});

test('the server refuses HELLO, WELCOME and GOAWAY once open', () => {
  for (const t of [FrameType.PING, FrameType.PONG, FrameType.DATA, FrameType.ACK, FrameType.CLOSE]) checkInbound('server', 'open', t);
  for (const t of [FrameType.HELLO, FrameType.WELCOME, FrameType.GOAWAY]) unexpected(() => checkInbound('server', 'open', t));
});

test('the client refuses HELLO always and WELCOME once open', () => {
  checkInbound('client', 'handshake', FrameType.WELCOME);
  unexpected(() => checkInbound('client', 'handshake', FrameType.DATA));
  unexpected(() => checkInbound('client', 'open', FrameType.WELCOME));
  unexpected(() => checkInbound('client', 'open', FrameType.HELLO));
  checkInbound('client', 'open', FrameType.GOAWAY);
});
