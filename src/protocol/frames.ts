/**
 * Frame kinds and their fields. A frame on the wire is one type byte followed
 * by a body of tagged fields (protobuf wire format: key = tag << 3 | wire type,
 * wire type 0 = varint, 2 = length-delimited). Unknown tags are skipped, so
 * fields can be added without a version bump. A frame with an empty body is
 * legal for every kind whose fields are all optional: a bare PING is one byte.
 */
export const FrameType = {
  HELLO: 1,
  WELCOME: 2,
  PING: 3,
  PONG: 4,
  DATA: 5,
  ACK: 6,
  GOAWAY: 7,
  CLOSE: 8,
} as const;

export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export const PROTOCOL_VERSION = 1;

/**
 * The longest reconnect hint a GOAWAY may carry, capped by the gateway when it
 * sends one and by the client when it reads one: above 2^31 − 1 ms a timer
 * overflows and fires after 1 ms, so a huge hint meant "reconnect at once".
 */
export const MAX_RECONNECT_HINT_MS = 3600_000;

/** Who sends heartbeats: the client (default) or the server (throttled clients such as background tabs). */
export type HeartbeatDirection = 'client' | 'server';

/** Piggybacked client state: string keys and values; an empty value deletes the key. */
export type ClientState = Record<string, string>;

export interface HelloFrame {
  type: typeof FrameType.HELLO;
  version: number;
  userId: string;
  deviceId: string;
  token?: string;
  clientInfo?: ClientState;
  resumeToken?: string;
  /** Highest DATA sequence number the client received in the session it resumes. */
  lastSeq?: number;
  /** Requested heartbeat direction. */
  direction?: HeartbeatDirection;
  /** The heartbeat interval the client intends to use; the server clamps it to its range. */
  intervalMs?: number;
}

/** The heartbeat policy the server grants in WELCOME. */
export interface HeartbeatGrant {
  intervalMs: number;
  minIntervalMs: number;
  maxIntervalMs: number;
  missBudget: number;
  graceMs: number;
  direction: HeartbeatDirection;
}

export interface WelcomeFrame {
  type: typeof FrameType.WELCOME;
  sessionId: string;
  resumeToken: string;
  resumed: boolean;
  heartbeat: HeartbeatGrant;
  /** On resume: the highest client DATA sequence number the gateway accepted in this session. */
  ack?: number;
}

export interface PingFrame {
  type: typeof FrameType.PING;
  seq?: number;
  /** Cumulative acknowledgement of DATA sequence numbers, piggybacked. */
  ack?: number;
  state?: ClientState;
  /** The sender's current heartbeat interval (announced when it changes). */
  intervalMs?: number;
  /** Client only: its smoothed RTT in whole ms (said when it has moved), for the gateway, which cannot time client-sent heartbeats. */
  rttMs?: number;
}

export interface PongFrame {
  type: typeof FrameType.PONG;
  seq?: number;
  ack?: number;
  /** A warning: the close code of a limit the sender is about to enforce (4006 too-many-pings). */
  warn?: number;
}

export interface DataFrame {
  type: typeof FrameType.DATA;
  payload: Uint8Array;
  seq?: number;
  id?: string;
  ack?: number;
}

export interface AckFrame {
  type: typeof FrameType.ACK;
  ack: number;
}

export interface GoawayFrame {
  type: typeof FrameType.GOAWAY;
  code: number;
  reconnectAfterMs?: number;
  reason?: string;
}

export interface CloseFrame {
  type: typeof FrameType.CLOSE;
  code: number;
  reason?: string;
}

export type Frame =
  | HelloFrame
  | WelcomeFrame
  | PingFrame
  | PongFrame
  | DataFrame
  | AckFrame
  | GoawayFrame
  | CloseFrame;

export const frameName: Record<number, string> = {
  1: 'HELLO',
  2: 'WELCOME',
  3: 'PING',
  4: 'PONG',
  5: 'DATA',
  6: 'ACK',
  7: 'GOAWAY',
  8: 'CLOSE',
};
