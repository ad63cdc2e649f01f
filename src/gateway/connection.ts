import type { Clock } from '../core/clock.js';
import type { HeartbeatPolicy, ProbeOptions } from '../core/heartbeat-policy.js';
import { clampInterval } from '../core/heartbeat-policy.js';
import { HeartbeatScheduler } from '../core/heartbeat-scheduler.js';
import type { LivenessDetector } from '../core/liveness-detector.js';
import { RttTracker, type RttSample } from '../core/rtt-tracker.js';
import { TimerWheel, WheelTimer } from '../core/timer-wheel.js';
import { excusedEnd } from '../core/stall-guard.js';
import type { LatenessStats } from '../core/lateness-stats.js';
import type { Link, LinkCloseInfo, LinkEvents } from '../link/link.js';
import { CloseCodes, ProtocolError, reasonForCode, type CloseReason } from '../protocol/errors.js';
import { checkInbound } from '../protocol/frame-rules.js';
import {
  FrameType,
  PROTOCOL_VERSION,
  MAX_RECONNECT_HINT_MS,
  type ClientState,
  type DataFrame,
  type Frame,
  type HeartbeatGrant,
  type HelloFrame,
} from '../protocol/frames.js';
import { BARE_PING, BARE_PONG, putEntry } from '../protocol/frame-codec.js';
import type { DisconnectReason } from './disconnect.js';
import type { ResolvedLimits } from './options.js';
import { newId } from './ids.js';
import type { ConnectionTrace } from './connection-trace.js';
import type { LinkDelivery } from './link-delivery.js';
import { utf8Exceeds, utf8Length } from '../protocol/wire.js';

/** Shared until a connection has state of its own: most never do. */
const NO_STATE: ClientState = Object.freeze({});
/**
 * The CLOSE reason a device gets for a failure on the gateway's side (4004): the detail (a store's
 * address, a connect hook's redirect target, a key set URL's error) is the operator's, who has it in
 * the protocol-error or fault event, and was sent to any unauthenticated peer. The code says retry.
 */
export const SERVER_ERROR_REASON = 'the gateway could not serve this now; retry later';

/** Frames and heartbeats through a connection (and, summed, through a gateway). */
export interface TrafficStats {
  framesIn: number;
  framesOut: number;
  pingsIn: number;
  pingsOut: number;
  dataIn: number;
  dataOut: number;
}

/** What a connection needs from the gateway that owns it. */
export interface ConnectionHost {
  readonly clock: Clock;
  readonly wheel: TimerWheel<ServerConnection>;
  readonly policy: HeartbeatPolicy;
  readonly probes: ProbeOptions;
  readonly handshakeTimeoutMs: number;
  readonly limits: ResolvedLimits;
  /** The heartbeat lateness of every connection, per transport (the network, measured; see core/lateness-stats.ts). */
  readonly lateness: Record<'tcp' | 'ws', LatenessStats>;
  /** Builds the passive detector for a client-sent heartbeat. */
  newDetector(grant: HeartbeatGrant, now: number): LivenessDetector;
  wake(): void;
  /** How much of [from, to] the gateway itself was stalled; that part of a peer's silence is excused. */
  stalledWithin(from: number, to: number): number;
  /** Writes now the broadcasts still queued for this connection (see fan-out.ts), before anything else. */
  flushBroadcasts(conn: ServerConnection): void;
  /** Authenticates and registers: what to put in WELCOME, at once or as a promise. Throws (or rejects with) LonglinkError/ProtocolError to refuse. */
  hello(conn: ServerConnection, hello: HelloFrame): Opening | Promise<Opening>;
  message(conn: ServerConnection, frame: DataFrame): void;
  /** A cumulative acknowledgement of the gateway's DATA arrived. */
  acked(conn: ServerConnection, upTo: number): void;
  /** WELCOME is out: the connection is open (with what the session already carried, on a resume). */
  opened(conn: ServerConnection, opening: Opening): void;
  /** A probe before push was answered: what it held may go now. */
  probeAnswered(conn: ServerConnection): void;
  /** The write buffer drained after delivery paused for it: delivery may go on. */
  writable(conn: ServerConnection): void;
  /** A probe before push went unanswered; the link is being closed. */
  probeFailed(conn: ServerConnection): void;
  /** How often an open link's session record is saved again, counted from when the link was accepted. */
  readonly sessionRefreshMs: number;
  /** The open link's session record is due to be saved again (see OPEN_SESSION_TTL_MS). */
  refreshSession(conn: ServerConnection): void;
  stateChanged(conn: ServerConnection, delta: ClientState): void;
  rtt(conn: ServerConnection, sample: RttSample): void;
  /** The client reported its smoothed RTT on a PING. */
  clientRtt(conn: ServerConnection, rttMs: number): void;
  /** A heartbeat went overdue and a probe is out (cleared: false), or the peer was heard after all (cleared: true). */
  suspicion(conn: ServerConnection, cleared: boolean): void;
  protocolError(conn: ServerConnection, err: ProtocolError): void;
  /** The handshake was refused by a limit (not bad input): the device is told when to come back. */
  refused(conn: ServerConnection, reason: 'too-many-devices', message: string, retryAfterMs: number): void;
  closed(conn: ServerConnection, reason: DisconnectReason, code: number): void;
}

export type ConnectionPhase = 'handshake' | 'hello' | 'open' | 'closed';

/** What the gateway decided about a HELLO, for WELCOME. */
export interface Opening {
  sessionId: string;
  resumeToken: string;
  resumed: boolean;
  grant: HeartbeatGrant;
  /** Highest client DATA seq accepted in this session (0 for a new one). */
  inSeq: number;
  /** Highest gateway DATA seq the client confirmed having (its HELLO lastSeq, on resume). */
  outSeq: number;
}

/** A client's RTT report is kept at most this (ms): one client cannot skew its transport's figures without bound. */
const MAX_REPORTED_RTT_MS = 60_000;

/**
 * One client connection on the gateway: the protocol state machine and its
 * heartbeat, over any Link. Holds one wheel timer, re-armed lazily: inbound
 * frames only record the time they arrived.
 */
let serials = 0;

// A connection's yes-or-no state, as bits of one small integer: as seven fields
// they took 56 bytes of every connection, one field takes 8.
const OPENED = 1;
const CLOSED_BY_GATEWAY = 2;
const ANNOUNCED = 4;
const DRAINING = 8;
const SUSPECTED = 16;
const PING_WARNED = 32;
const DATA_WARNED = 64;
const PRESENCE_OUT = 128;
const ENDED_BY_PEER = 256;
const PROBE_EXCUSED = 512;

export class ServerConnection implements LinkEvents {
  // The fields a heartbeat touches come first (after link and host). V8 lays an object's fields
  // out in the order they are declared, 8 bytes each: these take the first 184 bytes, three or
  // four cache lines, where they spread over 352 bytes, six or seven, before. With 10,000
  // connections a line a heartbeat touches is often not in the cache (BENCHMARKS.md).
  phase: ConnectionPhase = 'handshake';
  private flags = 0;
  /** Set while a probe before push holds delivery: when it must be answered by. */
  probeDeadline: number | null = null;
  /** Traffic counts (with pingsOut, dataIn, dataOut below), as fields of the connection (an object of their own cost 72 bytes per connection); `stats` reads them. */
  framesIn = 0;
  pingsIn = 0;
  framesOut = 0;
  /** PING rate (GCRA): when the next PING is due at the allowed pace; and whether the client was warned. */
  private pingTat = 0;
  private detector: LivenessDetector | null = null;
  private scheduler: HeartbeatScheduler | null = null;
  /** Set while the admin view watches this connection. */
  trace: ConnectionTrace | null = null;
  /** Reliable delivery's state for this link (delivery.ts); null until it carries sequenced data. */
  delivery: LinkDelivery | null = null;
  grant: HeartbeatGrant | null = null;
  /** framesIn at the last heartbeat: a gap is measured only when nothing else came between. */
  private beatFrame = -1;
  /**
   * The path, as this link's heartbeats tell it (small integers, so they cost no heap numbers):
   * gaps measured between heartbeats, empty heartbeat slots seen, and the lateness of heartbeats against their slot, as a moving
   * mean and mean deviation (ms × 8, as TCP keeps its RTT) and the largest seen (ms).
   */
  beatGaps = 0;
  missedBeats = 0;
  lateAvg8 = 0;
  lateDev8 = 0;
  lateMaxMs = 0;
  readonly id = newId();
  /** Order of acceptance in this process: the admin list pages by it. */
  readonly serial = ++serials;
  userId = '';
  deviceId = '';
  sessionId = '';
  resumeToken = '';
  clientInfo: ClientState = NO_STATE;
  /** The client's piggybacked state (frozen and shared while empty). */
  clientState: ClientState = NO_STATE;
  readonly connectedAt: number;
  closeReason: DisconnectReason | null = null;
  /** Made at the first PING the gateway sends: a client-sent heartbeat may never need one. */
  rtt: RttTracker | null = null;
  pingsOut = 0;
  dataIn = 0;
  dataOut = 0;
  /** The client's smoothed RTT as it last reported it on a PING (ms), or -1. */
  clientRttMs = -1;
  /** How many times the open session record was saved again (see ConnectionHost.sessionRefreshMs). */
  private sessionRefreshes = 0;
  /** Flow control: when delivery paused for a full write buffer (monotonic ms), or -1. */
  writeStalledAt = -1;
  /** The interval the client announced in a PING (its adaptive heartbeat), if it did. */
  announcedIntervalMs: number | null = null;
  /** DATA rate (GCRA), as for PINGs. */
  private dataTat = 0;
  /** The broadcasts queued for this connection and written to it (FanOutTarget): what is owed lies between. */
  fanOutQueued = 0;
  fanOutWritten = 0;
  readonly timer: WheelTimer<ServerConnection>;

  constructor(
    readonly link: Link,
    private readonly host: ConnectionHost,
    /** How long the transport took before the link (a WebSocket's upgrade from its accept): part of the handshake deadline. */
    handshakeSpentMs = 0,
  ) {
    this.connectedAt = host.clock.now() - Math.max(0, handshakeSpentMs);
    this.timer = new WheelTimer<ServerConnection>(this);
    link.bind(this);
    this.arm(this.connectedAt + host.handshakeTimeoutMs);
  }

  get transport() {
    return this.link.transport;
  }

  private setFlag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  /** The handshake finished: WELCOME was sent (the link may have closed since). */
  get opened(): boolean {
    return (this.flags & OPENED) !== 0;
  }

  /** The gateway chose to close (a detection, a limit, a kick), rather than the peer or the transport. */
  get closedByGateway(): boolean {
    return (this.flags & CLOSED_BY_GATEWAY) !== 0;
  }

  /** `online` was emitted for this device's presence here (the link may have replaced an earlier one). */
  get announced(): boolean {
    return (this.flags & ANNOUNCED) !== 0;
  }
  set announced(on: boolean) {
    this.setFlag(ANNOUNCED, on);
  }

  /** Its handshake's presence write is out: the handshake, not the close, takes the entry back if the link goes. */
  get presenceOut(): boolean {
    return (this.flags & PRESENCE_OUT) !== 0;
  }
  set presenceOut(on: boolean) {
    this.setFlag(PRESENCE_OUT, on);
  }

  /** Draining: GOAWAY is out; nothing new is written, and the link closes once what was sent is acknowledged. */
  get draining(): boolean {
    return (this.flags & DRAINING) !== 0;
  }
  set draining(on: boolean) {
    this.setFlag(DRAINING, on);
  }

  /**
   * The peer ended the link on purpose (its CLOSE, or a WebSocket close frame): the client DATA it
   * sent before is still taken in. Read in the same chunk as the CLOSE, its turn came after the
   * close, and a client that closed to quit never re-sends it.
   */
  get endedByPeer(): boolean {
    return (this.flags & ENDED_BY_PEER) !== 0;
  }

  /** A heartbeat is overdue and a probe is out; the next frame clears it (a false suspicion). */
  get suspected(): boolean {
    return (this.flags & SUSPECTED) !== 0;
  }

  /** The traffic counts, as one object. */
  get stats(): TrafficStats {
    return { framesIn: this.framesIn, framesOut: this.framesOut, pingsIn: this.pingsIn, pingsOut: this.pingsOut, dataIn: this.dataIn, dataOut: this.dataOut };
  }

  /** Last time anything arrived from the client (monotonic ms). */
  get lastHeardAt(): number {
    return this.scheduler?.lastHeardAt ?? this.detector?.lastHeardAt ?? this.connectedAt;
  }

  /** When the gateway will close this link if nothing more arrives. */
  get deadline(): number {
    if (this.phase !== 'open') return this.connectedAt + this.host.handshakeTimeoutMs;
    return this.scheduler ? this.scheduler.nextWakeAt() : this.detector!.deadline();
  }

  private arm(at: number): void {
    // A write just before (a probe, a PONG, WELCOME) may have closed the link: a closed link's timer stays off the wheel.
    if (this.phase === 'closed') return;
    this.host.wheel.schedule(this.timer, at);
    this.host.wake();
  }

  /** @internal link event */
  onLinkFrame(f: Frame): void {
    // Fast path for nearly all traffic: a bare heartbeat on an open link with no probe out
    // (the decoder hands every bare PING over as the one shared BARE_PING object).
    if (f === BARE_PING && this.phase === 'open' && this.probeDeadline === null) {
      const now = this.host.clock.now();
      this.framesIn++;
      this.pingsIn++;
      const pace = this.pingPace(now);
      if (pace === PACE_CLOSED) return;
      if (this.detector !== null) {
        this.measureBeat(now, this.detector.lastHeardAt, this.detector.intervalMs);
        this.detector.heard(now, true);
      }
      // Settled: the next PING may be due sooner than what was armed, but not later than a stalled write's deadline.
      if (this.scheduler?.received(now)) this.arm(this.otherWake(this.scheduler.nextWakeAt()));
      if (this.suspected) this.unsuspect();
      this.trace?.add(now, 'ping-in');
      this.answerPing(pace === PACE_WARN);
      return;
    }
    if (this.phase === 'closed') return;
    const now = this.host.clock.now();
    this.framesIn++;
    try {
      // A client that gives up during the handshake may say so with CLOSE.
      if (this.phase === 'hello' && f.type !== FrameType.CLOSE) {
        throw new ProtocolError('unexpected-frame', 'no frame may follow HELLO before WELCOME');
      }
      checkInbound('server', this.phase === 'open' ? 'open' : 'handshake', f.type);
    } catch (err) {
      this.onProtocolError(err as ProtocolError);
      return;
    }
    if (this.phase === 'open') {
      if (this.detector !== null) {
        if (f.type === FrameType.PING) this.measureBeat(now, this.detector.lastHeardAt, this.detector.intervalMs);
        this.detector.heard(now, f.type === FrameType.PING);
      }
      if (this.scheduler?.received(now)) this.arm(this.otherWake(this.scheduler.nextWakeAt()));
      if (this.suspected) this.unsuspect();
      if (this.probeDeadline !== null) {
        this.probeDeadline = null;
        this.host.probeAnswered(this);
      }
      if ((f.type === FrameType.PING || f.type === FrameType.PONG || f.type === FrameType.DATA) && f.ack !== undefined) {
        this.host.acked(this, f.ack);
        // An ack beyond what was sent closed the link: the rest of the frame is not acted on.
        if ((this.phase as ConnectionPhase) === 'closed') return;
      }
    }
    switch (f.type) {
      case FrameType.HELLO:
        this.onHello(f);
        return;
      case FrameType.PING: {
        this.pingsIn++;
        const pace = this.pingPace(now);
        if (pace === PACE_CLOSED) return;
        this.trace?.add(now, 'ping-in');
        this.answerPing(pace === PACE_WARN);
        // The answer may have closed the link (a peer that does not read): nothing of the PING is acted on after its offline.
        if ((this.phase as ConnectionPhase) === 'closed') return;
        if (f.intervalMs !== undefined) this.setInterval(f.intervalMs);
        if (f.rttMs !== undefined) {
          // A smoothed figure from the client; bounded, since it feeds the transport's statistics.
          this.clientRttMs = Math.min(f.rttMs, MAX_REPORTED_RTT_MS);
          this.host.clientRtt(this, this.clientRttMs);
        }
        if (f.state !== undefined) this.mergeState(f.state);
        return;
      }
      case FrameType.PONG: {
        const sample = this.rtt?.pongReceived(now);
        if (!sample) {
          // Unasked (no PING of the gateway's out): paced with PINGs, so a flood of them is not free.
          const pace = this.pingPace(now);
          if (pace === PACE_CLOSED) return;
          if (pace === PACE_WARN) this.link.send({ type: FrameType.PONG, warn: CloseCodes['too-many-pings'] });
        }
        if (sample) this.host.rtt(this, sample);
        this.trace?.add(now, 'pong-in', sample?.sampleMs);
        return;
      }
      case FrameType.DATA:
        // Refused (GOAWAY out): the client re-sends it on its next link.
        if (this.delivery?.refusal) return;
        if (f.id !== undefined && utf8Exceeds(f.id, this.host.limits.maxMessageIdBytes)) {
          // An id is remembered for dedup after the message is gone.
          this.onProtocolError(new ProtocolError('field-too-large', `message id of ${utf8Length(f.id)} bytes exceeds the limit of ${this.host.limits.maxMessageIdBytes}`));
          return;
        }
        this.dataIn++;
        if (this.host.limits.maxDataPerSecond > 0) {
          const pace = this.dataPace(now);
          if (pace === PACE_CLOSED) return;
          if (pace === PACE_WARN) this.link.send({ type: FrameType.PONG, warn: CloseCodes['too-many-messages'] });
        }
        this.trace?.add(now, 'data-in');
        this.host.message(this, f);
        return;
      case FrameType.ACK: {
        const before = this.delivery?.ackedSeq ?? 0;
        this.host.acked(this, f.ack);
        // One that acknowledges nothing new is paced with DATA: those that do are bounded by what was sent.
        if (f.ack <= before && this.host.limits.maxDataPerSecond > 0 && this.phase === 'open') {
          const pace = this.dataPace(now);
          if (pace === PACE_WARN) this.link.send({ type: FrameType.PONG, warn: CloseCodes['too-many-messages'] });
        }
        return;
      }
      case FrameType.CLOSE:
        this.setFlag(ENDED_BY_PEER, true);
        this.finish(f.code === CloseCodes.normal ? 'client-close' : reasonOrClient(f.code), f.code);
        // Over WebSocket our close frame echoes the code if it is one of ours: the gateway sends no code it does not know.
        this.link.closedByPeer(CloseCodes[reasonForCode(f.code)] === f.code ? f.code : CloseCodes.normal);
        return;
    }
  }

  /**
   * A client heartbeat at `now`, the previous frame at `prev`: when that was a heartbeat too, the gap
   * is one measurement of the path (the client counts each interval from its last send).
   * `interval` is the detector's, the grant's interval: read from the detector, which the
   * heartbeat reads anyway, rather than from the grant, one cache line more.
   */
  private measureBeat(now: number, prev: number, interval: number): void {
    // framesIn already counts this PING.
    if (this.beatFrame === this.framesIn - 1) {
      const gap = now - prev;
      const missed = this.host.lateness[this.link.transport].observeGap(gap, interval);
      // Out of turn (a flushed state, a check): not a measurement; the next gap counts from it.
      if (missed === null) {
        this.beatFrame = this.framesIn;
        return;
      }
      const late = Math.round(gap - (missed + 1) * interval);
      this.beatGaps++;
      this.missedBeats += missed;
      // RFC 6298's gains: 1/8 for the mean, 1/4 for the deviation.
      const err = 8 * late - this.lateAvg8;
      this.lateAvg8 += err >> 3;
      this.lateDev8 += (Math.abs(err) - this.lateDev8) >> 2;
      if (late > this.lateMaxMs) this.lateMaxMs = late;
    }
    this.beatFrame = this.framesIn;
  }

  /** This link's heartbeats, as measurements of its path. */
  get pathStats(): { gaps: number; missed: number; lossRate: number; latenessMeanMs: number; latenessDevMs: number; latenessMaxMs: number } {
    const gaps = this.beatGaps;
    return {
      gaps,
      missed: this.missedBeats,
      lossRate: gaps + this.missedBeats ? this.missedBeats / (gaps + this.missedBeats) : 0,
      latenessMeanMs: this.lateAvg8 / 8,
      latenessDevMs: this.lateDev8 / 8,
      latenessMaxMs: this.lateMaxMs,
    };
  }

  private answerPing(warn: boolean): void {
    // The answer carries an owed acknowledgement for free.
    const d = this.delivery;
    this.framesOut++;
    if (warn) this.answer({ type: FrameType.PONG, warn: CloseCodes['too-many-pings'], ...(d?.ackOwed ? { ack: d.takeAck() } : {}) });
    else this.answer(d?.ackOwed ? { type: FrameType.PONG, ack: d.takeAck() } : BARE_PONG);
  }

  /**
   * Enforces the PING rate (a GCRA: one per minPingGapMs on average, bursts
   * of pingBurst), as gRPC servers do with too_many_pings: the first breach
   * is answered with a warning, a second before the client calms down
   * (its allowance refills) closes the link with GOAWAY.
   */
  private pingPace(now: number): number {
    const { minPingGapMs: gap, pingBurst } = this.host.limits;
    if (gap <= 0) return PACE_OK;
    let tat = this.pingTat;
    if (tat <= now) {
      tat = now;
      this.setFlag(PING_WARNED, false);
    }
    if (tat - now < gap * pingBurst) {
      this.pingTat = tat + gap;
      return PACE_OK;
    }
    if ((this.flags & PING_WARNED) === 0) {
      this.setFlag(PING_WARNED, true);
      return PACE_WARN;
    }
    this.goAway('too-many-pings', Math.max(gap * pingBurst, this.grant?.intervalMs ?? 0), `more than one PING per ${gap} ms (bursts of ${pingBurst})`);
    return PACE_CLOSED;
  }

  /** The DATA rate, as pingPace: warned once, then GOAWAY; a client that calms down is forgiven. */
  private dataPace(now: number): number {
    const { maxDataPerSecond, dataBurst } = this.host.limits;
    const gap = 1000 / maxDataPerSecond;
    let tat = this.dataTat;
    if (tat <= now) {
      tat = now;
      this.setFlag(DATA_WARNED, false);
    }
    if (tat - now < gap * dataBurst) {
      this.dataTat = tat + gap;
      return PACE_OK;
    }
    if ((this.flags & DATA_WARNED) === 0) {
      this.setFlag(DATA_WARNED, true);
      this.dataTat = tat + gap;
      return PACE_WARN;
    }
    this.refuse('too-many-messages', Math.max(1000, gap * dataBurst), `more than ${maxDataPerSecond} messages a second (bursts of ${dataBurst})`);
    return PACE_CLOSED;
  }

  /** GOAWAY with a hint for when to come back (on an open link), then close. */
  goAway(reason: CloseReason, reconnectAfterMs: number, message: string = reason): void {
    if (this.phase === 'open') this.send(goawayFrame(reason, reconnectAfterMs));
    this.closeWith(reason, message);
  }

  /**
   * GOAWAY for a budget the client's DATA broke (its pace, the inbound backlog). The messages it
   * sent before and that are still waiting their turn are taken in and acknowledged first, then
   * the link closes (at the latest REFUSAL_LINGER_MS later); DATA after the GOAWAY is not acted on.
   * Closed at once, a link dropped them all: a burst read in one go was refused having taken in
   * none of it, and a client that re-sent the same burst was refused the same way for ever.
   */
  refuse(reason: CloseReason, reconnectAfterMs: number, message: string): void {
    const d = this.delivery;
    if (this.phase !== 'open' || d === null || d.inboundWaiting === 0) return this.goAway(reason, reconnectAfterMs, message);
    if (d.refusal !== null) return;
    this.send(goawayFrame(reason, reconnectAfterMs));
    const now = this.host.clock.now();
    d.refusal = { reason, message, until: now + REFUSAL_LINGER_MS };
    this.arm(this.nextWake(now));
  }

  private onHello(hello: HelloFrame): void {
    this.phase = 'hello';
    if (hello.version !== PROTOCOL_VERSION) {
      this.onProtocolError(new ProtocolError('unsupported-version', `protocol version ${hello.version} is not supported (this gateway speaks ${PROTOCOL_VERSION})`));
      return;
    }
    // A token is handed to the authenticator (and a connect hook) as it is: bounded before that.
    if (hello.token !== undefined && hello.token.length > this.host.limits.maxTokenBytes) {
      this.onProtocolError(new ProtocolError('field-too-large', `token of ${hello.token.length} characters exceeds the limit of ${this.host.limits.maxTokenBytes}`));
      return;
    }
    // Every record of the device keeps both, in the store and in memory, for as long as it lives; a
    // resume token is a key the store looks up (the gateway's own are 24 characters), on Redis a
    // key name sent on every such HELLO.
    const maxId = this.host.limits.maxIdBytes;
    const long = utf8Exceeds(hello.userId, maxId) ? 'userId' : utf8Exceeds(hello.deviceId, maxId) ? 'deviceId' : hello.resumeToken !== undefined && utf8Exceeds(hello.resumeToken, maxId) ? 'resumeToken' : null;
    if (long !== null) {
      this.onProtocolError(new ProtocolError('field-too-large', `${long} of ${utf8Length(hello[long]!)} bytes exceeds the limit of ${maxId}`));
      return;
    }
    // The mailbox numbers the device's messages above it: near 2^53 they could no longer be encoded,
    // and every later delivery to the device, a new session's too, failed (4004 each time).
    if (hello.lastSeq !== undefined && hello.lastSeq > MAX_LAST_SEQ) {
      this.onProtocolError(new ProtocolError('field-too-large', `lastSeq ${hello.lastSeq} exceeds ${MAX_LAST_SEQ}`));
      return;
    }
    this.userId = hello.userId;
    this.deviceId = hello.deviceId;
    // Kept with the session after the link ends: 65,000 sessions of 60 KB each once ran the heap out.
    // Bounded in keys as well as bytes: 1,000 empty entries were 1 KB by the bytes and 50 KB of heap.
    const { maxClientInfoBytes, maxStateKeys } = this.host.limits;
    const infoBytes = hello.clientInfo ? stateBytes(hello.clientInfo) : 0;
    const infoKeys = hello.clientInfo ? Object.keys(hello.clientInfo).length : 0;
    if (infoBytes > maxClientInfoBytes || infoKeys > maxStateKeys) {
      this.onProtocolError(new ProtocolError('field-too-large', `clientInfo of ${infoKeys} keys and ${infoBytes} bytes exceeds the limit of ${maxStateKeys} keys and ${maxClientInfoBytes} bytes`));
      return;
    }
    this.clientInfo = hello.clientInfo ?? NO_STATE;
    if (hello.intervalMs !== undefined) this.announcedIntervalMs = clampInterval(this.host.policy, hello.intervalMs);
    // Opened in this turn when every step answered at once (the in-memory store), else when the last one does.
    let opening: Opening | Promise<Opening>;
    try {
      opening = this.host.hello(this, hello);
    } catch (err) {
      return this.helloFailed(err);
    }
    if (opening instanceof Promise) opening.then((w) => this.open(w), (err) => this.helloFailed(err));
    else this.open(opening);
  }

  private helloFailed(err: unknown): void {
    if (this.phase === 'closed') return;
    // Giving way to a newer link of the device is a race, not bad input: no protocol-error.
    if (err instanceof ProtocolError && err.reason === 'replaced') this.closeWith('replaced', err.message);
    // A limit, not bad input: told when to come back, as a refusal at accept is.
    else if (err instanceof ProtocolError && err.reason === 'too-many-devices') {
      const retryAfterMs = Math.round(DEVICE_LIMIT_RETRY_MS * (0.5 + Math.random()));
      this.host.refused(this, err.reason, err.message, retryAfterMs);
      this.send(goawayFrame(err.reason, retryAfterMs));
      this.closeWith(err.reason, err.message);
    } else if (err instanceof ProtocolError) this.onProtocolError(err);
    else this.closeWith('server-error', SERVER_ERROR_REASON);
  }

  private open(w: Opening): void {
    if (this.phase !== 'hello') return;
    const now = this.host.clock.now();
    this.phase = 'open';
    this.setFlag(OPENED, true);
    this.sessionId = w.sessionId;
    this.resumeToken = w.resumeToken;
    this.grant = w.grant;
    const g = w.grant;
    if (g.direction === 'server') this.scheduler = new HeartbeatScheduler(g.intervalMs, this.host.probes, now);
    else this.detector = this.host.newDetector(g, now);
    // Delivery learns what the session carried before WELCOME goes: a link that answers within the
    // write (in-process) sends its re-sent outbox with the ack owed from the old link at once, and
    // that ack must find the numbers resumed from, not read as one beyond anything sent (4501, for
    // good). Its first flush writes nothing before WELCOME: it awaits the store's take first.
    this.host.opened(this, w);
    // Two literals, not a spread of an optional part: no throwaway objects on every handshake.
    this.send(
      w.resumed
        ? { type: FrameType.WELCOME, sessionId: w.sessionId, resumeToken: w.resumeToken, resumed: true, heartbeat: g, ack: w.inSeq }
        : { type: FrameType.WELCOME, sessionId: w.sessionId, resumeToken: w.resumeToken, resumed: false, heartbeat: g },
    );
    this.arm(this.nextWake(now));
  }

  private setInterval(ms: number): void {
    if (!this.grant) return;
    // The policy's range (0: its default), then the grant's: one an authenticator pinned is its interval alone.
    const clamped = clampInterval(this.grant, clampInterval(this.host.policy, ms));
    this.announcedIntervalMs = clamped;
    if (clamped === this.grant.intervalMs) return;
    this.trace?.add(this.host.clock.now(), 'interval', clamped);
    this.grant = { ...this.grant, intervalMs: clamped };
    this.detector?.setIntervalMs(clamped);
    this.scheduler?.setIntervalMs(clamped);
    // A shorter interval moves the deadline earlier than the armed timer.
    this.arm(this.nextWake(this.host.clock.now()));
  }

  private mergeState(delta: ClientState): void {
    if (this.clientState === NO_STATE) this.clientState = {};
    for (const k of Object.keys(delta)) {
      if (delta[k] === '') delete this.clientState[k];
      else putEntry(this.clientState, k, delta[k]);
    }
    // Merged state lives as long as the link: bounded in keys and bytes, or one client could grow it without end.
    const { maxStateBytes, maxStateKeys } = this.host.limits;
    const keys = Object.keys(this.clientState).length;
    const bytes = stateBytes(this.clientState);
    if (keys > maxStateKeys || bytes > maxStateBytes) {
      this.onProtocolError(new ProtocolError('field-too-large', `client state of ${keys} keys and ${bytes} bytes exceeds the limit of ${maxStateKeys} keys and ${maxStateBytes} bytes`));
      return;
    }
    this.trace?.add(this.host.clock.now(), 'state');
    this.host.stateChanged(this, delta);
  }

  private nextWake(now: number): number {
    return this.otherWake(this.scheduler ? this.scheduler.nextWakeAt() : this.detector!.nextCheckAt(now));
  }

  /** `t`, or a probe's or a stalled write's deadline if sooner. */
  private otherWake(t: number): number {
    if (this.probeDeadline !== null) t = Math.min(t, this.probeDeadline);
    if (this.writeStalledAt >= 0) t = Math.min(t, this.writeStalledAt + this.host.limits.slowConsumerMs);
    const refusal = this.delivery?.refusal;
    if (refusal) t = Math.min(t, refusal.until);
    return t;
  }

  /** Whether reliable delivery should pause: a quarter of the write-buffer bound is taken. */
  get writeBackedUp(): boolean {
    return this.link.bufferedBytes >= this.host.limits.maxWriteBufferBytes / 4;
  }

  /** Pauses delivery until the link drains; a link that stays full past slowConsumerMs is closed. */
  stallWrites(): void {
    if (this.phase !== 'open' || this.writeStalledAt >= 0) return;
    const now = this.host.clock.now();
    this.writeStalledAt = now;
    this.link.awaitDrain();
    this.arm(this.nextWake(now));
  }

  /** @internal link event */
  onLinkDrain(): void {
    if (this.phase !== 'open' || this.writeStalledAt < 0) return;
    this.writeStalledAt = -1;
    this.host.writable(this);
  }

  /**
   * Holds delivery until the client shows life: sends a PING and expects any
   * frame back within `timeoutMs`, else the link is closed. Returns false if
   * a probe is already out.
   */
  probeBeforePush(timeoutMs: number, now = this.host.clock.now()): boolean {
    if (this.phase !== 'open' || this.probeDeadline !== null) return false;
    this.probeDeadline = now + timeoutMs;
    this.setFlag(PROBE_EXCUSED, false);
    this.ping(now);
    this.arm(this.nextWake(now));
    return true;
  }

  /** A probe's wait is over: moved later, once, by the gateway's stalls within it (excusedEnd). True if it was. */
  private excuseProbe(now: number): boolean {
    if ((this.flags & PROBE_EXCUSED) !== 0) return false;
    // Every probe before push waits pongTimeoutMs (delivery.ts).
    const wait = this.host.probes.pongTimeoutMs;
    const end = excusedEnd(this.probeDeadline! - wait, wait, now, this.host);
    if (end === null) return false;
    this.setFlag(PROBE_EXCUSED, true);
    this.probeDeadline = end;
    return true;
  }

  /** Sends a standalone ACK if one is still owed (nothing carried it). */
  flushAck(): void {
    const d = this.delivery;
    if (d?.ackOwed && this.phase === 'open') this.send({ type: FrameType.ACK, ack: d.takeAck() });
  }

  /** Called by the wheel when this connection's timer expires. */
  onTimer(now: number): void {
    if (this.phase === 'closed') return;
    if (this.phase !== 'open') {
      const what = this.phase === 'hello' ? 'HELLO arrived but the handshake did not finish' : 'no HELLO';
      this.closeWith('handshake-timeout', `${what} within ${this.host.handshakeTimeoutMs} ms`);
      return;
    }
    if (this.writeStalledAt >= 0 && now >= this.writeStalledAt + this.host.limits.slowConsumerMs) {
      return this.closeWith('slow-consumer', `the link did not drain for ${this.host.limits.slowConsumerMs} ms`);
    }
    const refusal = this.delivery?.refusal;
    if (refusal && now >= refusal.until) return this.closeWith(refusal.reason, refusal.message);
    if (this.probeDeadline !== null && now >= this.probeDeadline && !this.excuseProbe(now)) {
      this.probeDeadline = null;
      this.host.probeFailed(this);
      return this.closeWith('heartbeat-timeout', 'no answer to the probe before a push');
    }
    if (now - this.connectedAt >= (this.sessionRefreshes + 1) * this.host.sessionRefreshMs) {
      this.sessionRefreshes++;
      this.host.refreshSession(this);
    }
    if (this.scheduler) {
      // The gateway's own stalls during the last probe's wait are excused, as a detector's silence is.
      const action = this.scheduler.poll(now, this.host);
      if (action === 'dead') return this.closeWith('heartbeat-timeout');
      if (action === 'probe' && !this.suspected) this.suspect(now);
      if (action === 'ping' || action === 'probe') this.ping(now);
    } else {
      const verdict = this.detector!.check(now);
      if (verdict === 'dead') {
        // The part of the silence the gateway spent stalled proves nothing about the peer. But never
        // more than one silence limit in all: between stalls the sockets are read, so a gateway kept
        // busy by repeated stalls once excused a dead peer for as long as it stayed busy (issue 20).
        const limit = this.detector!.deadline() - this.detector!.lastHeardAt;
        const excused = Math.min(limit, this.host.stalledWithin(this.detector!.lastHeardAt, now));
        if (excused > 0 && now < this.detector!.deadline() + excused) {
          // A stall over the suspicion point as well as the deadline held back the probe that a live
          // client whose heartbeats were lost answers: sent now (none where the detector has no
          // suspicion before its deadline, missBudget 1).
          if (!this.suspected && this.detector!.nextCheckAt(now) < this.detector!.deadline()) {
            this.suspect(now);
            this.ping(now);
          }
          // A probe's or a stalled write's own deadline may come sooner. Not the detector's next check:
          // past by now, it re-armed the timer every tick for as long as the excuse lasted.
          this.arm(this.otherWake(this.detector!.deadline() + excused));
          return;
        }
        return this.closeWith('heartbeat-timeout');
      }
      // One probe when a heartbeat is overdue: a host that rebooted answers
      // it with a reset at once, and a live client's PONG settles the doubt.
      if (verdict === 'suspect') {
        this.suspect(now);
        this.ping(now);
      }
    }
    this.arm(this.nextWake(now));
  }

  private suspect(now: number): void {
    this.setFlag(SUSPECTED, true);
    this.trace?.add(now, 'suspect');
    this.host.suspicion(this, false);
  }

  private unsuspect(): void {
    this.setFlag(SUSPECTED, false);
    this.host.suspicion(this, true);
  }

  /** Sends a PING now (a probe); the answer updates RTT. */
  ping(now = this.host.clock.now()): void {
    if (this.phase !== 'open') return;
    (this.rtt ??= new RttTracker()).pingSent(now);
    this.scheduler?.sent(now);
    this.send(BARE_PING);
    this.pingsOut++;
    this.trace?.add(now, 'ping-out');
  }

  send(f: Frame): void {
    // A broadcast made before this frame, still queued for this connection (written a chunk a turn),
    // goes first: a device reads what the gateway writes to it in the order it was asked to.
    if (this.fanOutWritten < this.fanOutQueued) {
      this.host.flushBroadcasts(this);
      // Closed by one of them (slow-consumer): nothing more to write.
      if (this.phase === 'closed') return;
    }
    this.sendBroadcast(f);
  }

  /** A broadcast's own write (fan-out.ts keeps their order). */
  sendBroadcast(f: Frame): void {
    this.framesOut++;
    if (f.type === FrameType.DATA) {
      this.dataOut++;
      const now = this.host.clock.now();
      this.scheduler?.sent(now);
      this.trace?.add(now, 'data-out');
      if (this.delivery?.ackOwed) f = { ...f, ack: this.delivery.takeAck() };
    }
    this.link.send(f);
    this.boundBacklog();
  }

  /** Answers a PING: bounded like every other write (warnings, one per breach, need not be). */
  private answer(f: Frame): void {
    this.link.send(f);
    this.boundBacklog();
  }

  /**
   * A peer that does not read would have the gateway buffer for it without end: checked after
   * every write, answers to its PINGs too (a peer that pings without reading, with the PING
   * pace off, once piled 25 MB of PONGs, 800 MB of heap, past a 64 KiB bound).
   */
  private boundBacklog(): void {
    const buffered = this.link.bufferedBytes;
    if (buffered > this.host.limits.maxWriteBufferBytes && this.phase !== 'closed') {
      // The CLOSE queues behind the backlog; the link's linger destroys it if the peer never reads.
      this.closeWith('slow-consumer', `${buffered} bytes wait to be written (limit ${this.host.limits.maxWriteBufferBytes})`);
    }
  }

  /** Closes with a reason the gateway chose; the `offline` event fires now, not when the socket is gone. */
  closeWith(reason: CloseReason, message: string = reason): void {
    if (this.phase === 'closed') return;
    // Broadcasts made before the close reach the device before its CLOSE (not if it is too slow for them).
    if (reason !== 'slow-consumer' && this.fanOutWritten < this.fanOutQueued) {
      this.host.flushBroadcasts(this);
      if ((this.phase as ConnectionPhase) === 'closed') return;
    }
    this.setFlag(CLOSED_BY_GATEWAY, true);
    // Client messages already handed to the application are acknowledged before the CLOSE (the ack
    // waits up to ackDelayMs otherwise): unacknowledged, the client re-sends them, and a gateway
    // that restarts with a memory store no longer knows their ids and hands them over again.
    // Written past send()'s buffer check: the CLOSE follows anyway, and its reason stays this one.
    const d = this.delivery;
    if (d?.ackOwed && this.phase === 'open') {
      this.framesOut++;
      this.link.send({ type: FrameType.ACK, ack: d.takeAck() });
    }
    // Settle the reason first: a link may report its own close synchronously.
    this.finish(reason, CloseCodes[reason]);
    this.link.close(CloseCodes[reason], message);
  }

  private onProtocolError(err: ProtocolError): void {
    if (this.phase === 'closed') return;
    this.host.protocolError(this, err);
    this.closeWith(err.reason, err.reason === 'server-error' ? SERVER_ERROR_REASON : err.message);
  }

  /** @internal link event */
  onLinkError(err: ProtocolError): void {
    this.onProtocolError(err);
  }

  /** @internal link event */
  onLinkClose({ code }: LinkCloseInfo): void {
    if (this.phase === 'closed') return;
    // 1005: a close frame with no status code (a browser's ws.close()), a close the client chose all the same.
    if (code !== undefined && code !== 1006) {
      this.setFlag(ENDED_BY_PEER, true);
      this.finish(code === CloseCodes.normal || code === 1001 || code === 1005 ? 'client-close' : reasonOrClient(code), code);
    } else {
      this.finish('transport-close', 1006);
    }
  }

  private finish(reason: DisconnectReason, code: number): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closeReason = reason;
    this.host.wheel.cancel(this.timer);
    this.rtt?.clearOutstanding();
    this.host.closed(this, reason, code);
  }
}

/** GOAWAY for a close reason, with when to come back. */
export function goawayFrame(reason: CloseReason, reconnectAfterMs: number): Frame {
  return { type: FrameType.GOAWAY, code: CloseCodes[reason], reconnectAfterMs: Math.min(MAX_RECONNECT_HINT_MS, Math.max(0, Math.round(reconnectAfterMs))), reason };
}

/**
 * Keys plus values, in UTF-8 bytes, as the other field bounds count (ids, an authenticator's
 * clientInfo): in UTF-16 units a three-byte character counted one, and a budget held three times itself.
 */
function stateBytes(s: ClientState): number {
  let n = 0;
  for (const k of Object.keys(s)) n += utf8Length(k) + utf8Length(String(s[k]));
  return n;
}

/**
 * The highest resume `lastSeq` taken: 2^46 (7.0e13). A mailbox numbers above it, and the Redis
 * store's scripts write a seq exactly only below 10^14 (cjson's 14 digits): at 2^48 the next
 * messages all got one seq, the first was sent and the rest skipped, and its ACK removed them all.
 * 3.0e13 numbers of room remain.
 */
const MAX_LAST_SEQ = 2 ** 46;

/**
 * How long a device refused for its user's device limit waits, on average (spread ±50%): the user's
 * other devices go offline on a person's time scale, and each try costs a handshake's store writes.
 */
const DEVICE_LIMIT_RETRY_MS = 30_000;

/** How long a refused link may take to finish the messages it took in before the refusal (see refuse). */
const REFUSAL_LINGER_MS = 5_000;
const PACE_OK = 0;
const PACE_WARN = 1;
const PACE_CLOSED = 2;

/**
 * The reasons a client may give for closing: what its own detection and
 * decoding find. Any other code it sends (kicked, slow-consumer, auth-failed,
 * too-many-connections, ...) names a decision only the gateway makes, and a
 * client could otherwise pick the label its disconnect is counted under.
 */
const CLIENT_REASONS: ReadonlySet<DisconnectReason> = new Set<DisconnectReason>([
  'heartbeat-timeout',
  'handshake-timeout',
  'transport-error',
  'frame-too-large',
  'malformed-frame',
  'unknown-frame',
  'unexpected-frame',
  'truncated-frame',
  'unsupported-version',
]);

function reasonOrClient(code: number): DisconnectReason {
  if (code < 4000 || code > 4999) return 'client-close';
  const reason = reasonForCode(code);
  return CLIENT_REASONS.has(reason) ? reason : 'client-close';
}
