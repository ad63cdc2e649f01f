import { Backoff } from '../core/backoff.js';
import type { TimerHandle } from '../core/clock.js';
import { clampInterval, MAX_TIMER_MS, policyProblem } from '../core/heartbeat-policy.js';
import { HeartbeatScheduler } from '../core/heartbeat-scheduler.js';
import { IntervalLearner, type LearnerChange, type LearnerPhase } from '../core/interval-learner.js';
import { SilenceDetector } from '../core/liveness-detector.js';
import { RttTracker, type RttSample } from '../core/rtt-tracker.js';
import type { Link } from '../link/link.js';
import { CloseCodes, codeForReason, LonglinkError, OptionError, ProtocolError, RefusedError, reasonForCode, shouldReconnect, StreamEndedError, UpgradeRefusedError, type CloseReason } from '../protocol/errors.js';
import { checkInbound } from '../protocol/frame-rules.js';
import { BARE_PING, BARE_PONG, putEntry } from '../protocol/frame-codec.js';
import { assertPayloadFits } from '../protocol/data-frame-size.js';
import { utf8Length } from '../protocol/wire.js';
import { FrameType, MAX_RECONNECT_HINT_MS, PROTOCOL_VERSION, type ClientState, type Frame, type PingFrame, type WelcomeFrame } from '../protocol/frames.js';
import { RecentIds } from './recent-ids.js';
import { checkIntervalMs, resolveClientOptions, type ClientOptions, type ResolvedClientOptions } from './options.js';
import { typedEmitter } from '../core/typed-emitter.js';

const UTF8 = new TextEncoder();
/**
 * The least time between two attempts network changes start without waiting out the backoff
 * (the first goes at once): a page shown over and over, or a flapping network, while the gateway
 * is away would otherwise dial on every signal, each one resetting the backoff.
 */
const NETWORK_REDIAL_GAP_MS = 1000;

export type ClientStateName = 'idle' | 'connecting' | 'open' | 'suspect' | 'reconnecting' | 'closed';

export interface CloseEvent {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface ClientEvents {
  open: [WelcomeFrame];
  close: [CloseEvent];
  /** A reconnect is planned in `delayMs`; `attempt` counts them in a row (1 first), reset once a link stays up stableAfterMs. */
  reconnecting: [{ attempt: number; delayMs: number }];
  /** An attempt begins: the dial of `url` (the first, or one after a `reconnecting` delay). */
  connecting: [{ url: string }];
  /** A message from the gateway, handed over once (re-sends are dropped by seq and id). */
  message: [{ payload: Uint8Array; id?: string; seq?: number }];
  /** The gateway acknowledged one of our messages: it will not be re-sent. */
  acked: [{ id: string; seq: number }];
  /**
   * The gateway did not know our resume token (expired, or the gateway lost it): a new session began.
   * After that WELCOME's `open`; if a handler closed the client before it, with the next WELCOME.
   */
  'session-lost': [{ previousSessionId: string | undefined }];
  rtt: [RttSample];
  state: [ClientStateName];
  /** Adaptive heartbeat: the learned interval changed (a probe, a fallback, settling, a network switch). */
  interval: [{ network: string; intervalMs: number; phase: LearnerPhase; change: LearnerChange }];
  /** The gateway warned that a limit is near (a PONG with a close code, such as 4006 too-many-pings). */
  warning: [{ code: number; reason: string }];
}

export type Dialer = NonNullable<ClientOptions['dial']>;

/** A message of ours the gateway had not acknowledged when close() ended: what `close()` resolves with (re-send it with the same id, and the gateway drops it if it had it). */
export interface UnsentMessage {
  id: string;
  payload: Uint8Array;
}

/**
 * An updateState() delta as the PING carries it. Plain JavaScript passes what the types forbid: null
 * or undefined is read as deletion (the protocol's empty value); any other non-string is refused here,
 * at the call, with LL_ERR_INVALID_OPTION.
 */
function stateDelta(delta: ClientState): ClientState {
  const out: ClientState = {};
  for (const [k, v] of Object.entries(delta)) {
    const value: unknown = v;
    if (value === null || value === undefined) putEntry(out, k, '');
    else if (typeof value === 'string') putEntry(out, k, value);
    else throw new OptionError(`state.${k}`, `must be a string, or null to delete the key (got ${typeof value})`);
  }
  return out;
}

/** A heartbeat timer this late (ms) ran after a freeze of the process: it waits for the socket to be read first. */
const LATE_TIMER_MS = 10;

/**
 * The client, whatever carries it: connects, says HELLO, keeps the link
 * alive with the heartbeat the gateway granted, notices a dead link quickly
 * and reconnects with backoff. One link at a time; every timer comes from
 * `options.timers`. The Node client (client.ts) and the browser client
 * (browser/) differ only in how they dial and in what they listen to.
 */
export class ClientCore extends typedEmitter<ClientEvents>() {
  readonly options: ResolvedClientOptions;
  private readonly dialer: Dialer;
  private readonly backoff: Backoff;
  readonly rtt = new RttTracker();
  private link: Link | null = null;
  private stateName: ClientStateName = 'idle';
  private welcome: WelcomeFrame | null = null;
  private scheduler: HeartbeatScheduler | null = null;
  private detector: SilenceDetector | null = null;
  private heartbeatTimer: TimerHandle | null = null;
  /** When the heartbeat timer is due, and whether a late run of it already waited for the socket to be read (see onHeartbeatTimer). */
  private heartbeatDueAt = -1;
  private heartbeatReread = false;
  private attemptGen = 0;
  private connectTimer: TimerHandle | null = null;
  private stableTimer: TimerHandle | null = null;
  private resumeToken: string | undefined;
  private pendingState: ClientState | null = null;
  /** When the pending state was first set: it goes in a PING within one interval, even while traffic flows. */
  private pendingStateAt = 0;
  /** updateState({ flush: true }) came while no link was open: the pending state goes at the next WELCOME. */
  private stateFlushOwed = false;
  private pendingIntervalMs: number | undefined;
  private intervalMs: number | undefined;
  /** The smoothed RTT last told to the gateway on this link (ms), or -1. */
  private reportedRttMs = -1;
  /** Server direction: a shorter interval the detector adopts when the gateway's PONG shows it has read it. */
  private detectorIntervalOnPong: number | undefined;
  private goawayAfterMs: number | undefined;
  /** Closes in a row that came with a reconnect hint (reset once a link has stayed up stableAfterMs). */
  private hintsInARow = 0;
  /** Reconnects in a row, hinted and immediate ones too (the 'reconnecting' event's attempt; reset with the backoff). */
  private reconnectsInARow = 0;
  private peerClose: { code: number; reason: string } | null = null;
  private userClosed = false;
  /** close() waiting for the outbox to be acknowledged: what it resolves, and its time limit. */
  private closeFlush: { done: Promise<UnsentMessage[]>; resolve: (left: UnsentMessage[]) => void; timer: TimerHandle } | null = null;
  /** The network changed while an attempt was in flight: if it fails, the next one goes at once. */
  private retryAtOnce = false;
  /** When the last attempt a network change started (not the backoff's) began, and when the planned reconnect is due (-1: none planned). */
  private lastNetworkDialAt = -Infinity;
  private reconnectDueAt = -1;
  /** Which of `urls` the next attempt dials; it moves on after a failure. */
  private urlIndex = 0;
  /** Adaptive heartbeat: what it learned per network (export it to keep it across runs). */
  readonly learner: IntervalLearner | null = null;
  /** Last frame either way, and the longest idle gap before a frame we sent that nothing has answered yet. */
  private lastActivityAt = 0;
  private unansweredGap = 0;
  readonly stats = { pingsSent: 0, pongsReceived: 0, dataSent: 0, dataReceived: 0, reconnects: 0, acked: 0, resent: 0, duplicatesIn: 0 };
  /** Our messages not yet acknowledged, in order; re-sent after a reconnect. */
  private outbox: { seq: number; id: string; payload: Uint8Array }[] = [];
  /** Payload bytes in the outbox (maxOutboxBytes). */
  private outboxBytes = 0;
  /**
   * The outbox up to this seq has been written on the current link (0: none yet); the messages
   * written and not yet acknowledged, and their payload bytes, are bounded by maxInFlight(Bytes).
   */
  private writtenSeq = 0;
  private inFlightBytes = 0;
  /** flushOutbox() is running: an ack within one of its writes (an in-process link) leaves the room to its loop. */
  private outboxFlushing = false;
  /** The DATA pace on this link (a GCRA, as the gateway's): when the next DATA is due at maxDataPerSecond. */
  private dataTat = -Infinity;
  /** Writes the outbox on once the pace allows. */
  private paceTimer: TimerHandle | null = null;
  private outSeq = 0;
  private nextId = 0;
  private readonly idPrefix = Math.random().toString(36).slice(2, 10);
  /** Highest gateway DATA seq handed to the application in this session. */
  private lastSeq = 0;
  private ackOwed = 0;
  private ackTimer: TimerHandle | null = null;
  /** Listeners that threw, ever: onData() asks whether a 'message' handler did. */
  private listenerErrors = 0;
  private readonly recentIds = new RecentIds(4096);
  private lastSessionId: string | undefined;
  /**
   * A resume the gateway refused, not reported yet: a handler of the WELCOME's earlier events closed
   * the client before 'session-lost' went. The new session's token is kept, so the next WELCOME
   * resumes it and would never report the loss; that WELCOME reports it instead.
   */
  private sessionLostOwed: { previousSessionId: string | undefined } | null = null;
  /** WELCOME is being handled: a send() from one of its events only queues, the outbox going out in order after. */
  private welcoming = false;
  /** What connect() callers wait on until the next open or close for good. */
  private connecting: Promise<WelcomeFrame> | null = null;
  /** The interval the last HELLO asked for: one set after it is announced once WELCOME comes. */
  private helloIntervalMs: number | undefined;
  /**
   * The gateway's own interval (a WELCOME to a HELLO that announced none): where the learner
   * starts a network never seen. Not the interval in use, which is another network's learned one.
   */
  private gatewayIntervalMs: number | undefined;
  /** A check started by networkChanged() is running: a death it finds is the network's doing, not the NAT's. */
  private networkCheck = false;
  /**
   * When this link's last check asked for by networkChanged() went out, and when one asked for
   * within the check gap of it goes (-1: none): a page shown over and over, or a flapping network,
   * would otherwise send a PING per signal and be closed by the gateway as too-many-pings.
   */
  private lastCheckAt = -Infinity;
  private checkDueAt = -1;
  /**
   * The same pace for updateState({ flush: true }) on a link: an app flushing on every change (a
   * slider, a sensor) sent a PING each and was closed as too-many-pings. A flush within the gap
   * goes when it is over, with everything set meanwhile.
   */
  private lastFlushAt = -Infinity;
  private flushDueAt = -1;
  /** The pending reconnect was the gateway's hint (GOAWAY, a refusal): a network change does not cut it short. */
  private hintedWait = false;
  /** The attempt generation a close for good ends: connect() waiters of a later attempt ignore it. */
  private endedGen = 0;
  /** Aborts the attempt's dial when close() or a newer attempt makes it moot. */
  private dialAbort: AbortController | null = null;

  constructor(opts: ClientOptions, defaultDial: Dialer) {
    super();
    this.options = resolveClientOptions(opts);
    this.dialer = opts.dial ?? defaultDial;
    this.backoff = new Backoff(this.options.backoff, this.options.random);
    this.intervalMs = this.options.intervalMs;
    const a = this.options.adaptive;
    if (a) {
      const { network, state, ...learnerOpts } = a;
      this.learner = new IntervalLearner(learnerOpts, network ?? 'default');
      if (state) this.learner.import(state);
      if (network) this.learner.switchNetwork(network, this.options.clock.now());
      this.intervalMs = this.learner.intervalMs();
    }
  }

  get state(): ClientStateName {
    return this.stateName;
  }

  /**
   * Calls each listener on its own: one that throws must neither skip the others (connect()'s own,
   * which settles its promise) nor unwind the client mid-step. Thrown out of here, the error reached
   * the link's frame handler, which took it for a decoding fault and dropped the link: an 'open'
   * listener with a bug reconnected for ever, its error never shown. It is rethrown outside the
   * client instead (an uncaught exception in Node, as from any I/O listener; the console in a browser).
   */
  override emit<K extends keyof ClientEvents & string>(event: K, ...args: ClientEvents[K]): boolean {
    const listeners = this.rawListeners(event);
    for (const listener of listeners) {
      try {
        listener.apply(this, args);
      } catch (err) {
        this.listenerErrors++;
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    return listeners.length > 0;
  }

  /** The gateway this client dials (or is connected to). */
  get url(): string {
    return this.options.urls[this.urlIndex % this.options.urls.length];
  }

  get sessionId(): string | undefined {
    return this.welcome?.sessionId;
  }

  /** The heartbeat policy in force: the last WELCOME's, with the interval since set by `setIntervalMs`. */
  get heartbeat() {
    return this.welcome?.heartbeat;
  }

  private setState(s: ClientStateName): void {
    if (this.stateName === s) return;
    this.stateName = s;
    this.emit('state', s);
  }

  /** Starts connecting; resolves at the first WELCOME, rejects if the first attempt fails for good. */
  connect(): Promise<WelcomeFrame> {
    // close() still sending its outbox: that close ends now, and this is a new run.
    if (this.closeFlush !== null) this.closeNow();
    this.userClosed = false;
    // Already open: nothing to wait for (waiting for the next WELCOME would hang until a reconnect).
    // From one of WELCOME's own events too: the promise settles after them.
    if (this.welcome !== null) return Promise.resolve(this.welcome);
    const restart = this.stateName === 'idle' || this.stateName === 'closed';
    // One wait shared by every caller until it settles: an app calling connect() on each tap while
    // the gateway is down would otherwise add two listeners a call. A new attempt gets a new one (a
    // connect() from a permanent close's handler must not share the wait that close is ending).
    if (this.connecting && !restart) return this.connecting;
    // A connect() from a 'state' handler of a close for good starts its attempt before that close's
    // 'close' event goes out: the event ends an older attempt, not this one, and must not reject it.
    // (A restart's attempt, started below, takes the next generation.)
    const since = restart ? this.attemptGen + 1 : this.attemptGen;
    const mine: Promise<WelcomeFrame> = new Promise<WelcomeFrame>((resolve, reject) => {
      const done = () => {
        this.off('open', onOpen);
        this.off('close', onClose);
        if (this.connecting === mine) this.connecting = null;
      };
      const onOpen = (w: WelcomeFrame) => {
        done();
        resolve(w);
      };
      const onClose = (e: CloseEvent) => {
        if (e.willReconnect || this.endedGen < since) return;
        done();
        reject(new ProtocolError(reasonForCode(e.code), `closed: ${e.reason}`));
      };
      this.on('open', onOpen);
      this.on('close', onClose);
    });
    this.connecting = mine;
    if (restart) {
      // A new run: its first failure waits from the initial delay, not from where the last run's
      // failures (before a close() or a close for good) had taken the backoff, up to its cap.
      this.backoff.reset();
      this.hintsInARow = 0;
      this.reconnectsInARow = 0;
    }
    // Started after the wait is in place: a close() from a handler of the attempt's first events
    // ('state', 'connecting'), run before attempt() returns, would otherwise leave it waiting for ever.
    if (restart) void this.attempt();
    return mine;
  }

  private async attempt(): Promise<void> {
    const o = this.options;
    // Each attempt has a generation: close() or a newer attempt makes an older one's late dial or
    // token moot (a close() then connect() during a dial once ran two attempts, and the late one's
    // WELCOME failed the client for good).
    const gen = ++this.attemptGen;
    const stale = () => gen !== this.attemptGen || this.userClosed;
    this.reconnectDueAt = -1;
    this.setState('connecting');
    // A handler of the events here may close the client: the attempt ends before it dials.
    if (stale()) return;
    this.retryAtOnce = false;
    this.emit('connecting', { url: this.url });
    if (stale()) return;
    this.peerClose = null;
    this.goawayAfterMs = undefined;
    let link: Link;
    let token: string | undefined;
    try {
      token = typeof o.token === 'function' ? await this.withDeadline(o.token(), 'the token provider') : o.token;
      // A JavaScript provider may hand back null (storage read before a login) or a parsed object:
      // thrown by the HELLO encoder, it would escape as an unhandled rejection (fatal in Node).
      if (typeof token !== 'string' && token !== undefined) throw new TypeError(`the token is not a string (got ${token === null ? 'null' : typeof token})`);
    } catch (err) {
      if (stale()) return;
      // A provider that fails (its own fetch met the same outage that broke the link) or hangs is
      // retried with backoff; only the gateway's refusal of a token is final.
      this.lost(CloseCodes['transport-error'], `token provider failed: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (stale()) return;
    this.dialAbort?.abort();
    const abort = (this.dialAbort = new AbortController());
    try {
      link = await this.dialer(o.urls[this.urlIndex % o.urls.length], { timeoutMs: o.handshakeTimeoutMs, maxFrameBytes: o.maxFrameBytes, keepalive: o.keepalive, signal: abort.signal, ...(o.tls ? { tls: o.tls } : {}), ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    } catch (err) {
      if (this.dialAbort === abort) this.dialAbort = null;
      if (stale()) return;
      if (err instanceof RefusedError) {
        // Refused before the upgrade: the same as a GOAWAY, hint and reason.
        this.goawayAfterMs = Math.min(MAX_RECONNECT_HINT_MS, Math.max(0, err.retryAfterMs));
        const code = codeForReason(err.reason) ?? CloseCodes['going-away'];
        this.lost(code, err.message);
        return;
      }
      // Something in front of the gateway (a proxy, a load balancer) said when to come back: a hint
      // as a GOAWAY's, so the next attempt waits at least that (not cut short by a network change).
      if (err instanceof UpgradeRefusedError && err.retryAfterMs !== undefined) this.goawayAfterMs = Math.min(MAX_RECONNECT_HINT_MS, Math.max(0, err.retryAfterMs));
      // A URL no dial can ever open (a scheme the dialer does not speak, a browser's mixed-content
      // refusal) is final with one URL to try: retried, it would spin at backoff pace for ever.
      if (err instanceof LonglinkError && err.code === 'LL_ERR_BAD_URL' && o.urls.length === 1) {
        this.lost(CloseCodes['policy-violation'], err.message);
        return;
      }
      this.lost(CloseCodes['transport-error'], err instanceof Error ? err.message : String(err));
      return;
    }
    if (this.dialAbort === abort) this.dialAbort = null;
    if (stale()) {
      link.destroy();
      return;
    }
    this.link = link;
    this.lastActivityAt = o.clock.now();
    this.unansweredGap = 0;
    link.bind({
      onLinkFrame: (f) => this.link === link && this.onFrame(f),
      // A stream that ended inside a frame is a connection lost mid-write (a gateway killed, a proxy
      // closing), retried as WebSocket's 1006 is; any other bad frame is the gateway's fault, final.
      onLinkError: (err) => this.link === link && (err instanceof StreamEndedError ? this.lostInTransit(err.message) : this.fail(err.reason, err.message)),
      onLinkClose: (info) => {
        if (this.link !== link) return;
        const pc = this.peerClose;
        if (pc) this.lost(pc.code, pc.reason);
        else if (info.code !== undefined && info.code !== 1005 && info.code !== 1006) this.lost(info.code, info.reason ?? '');
        else this.lostInTransit(info.error?.message ?? 'connection lost');
      },
    });
    // HELLO → WELCOME is the first RTT sample (it includes the gateway's authentication time). Marked,
    // and the timer armed, before HELLO goes: an in-process link to a gateway that answers in the same
    // turn hands WELCOME back within send.
    this.rtt.clearOutstanding();
    this.rtt.pingSent(o.clock.now());
    // One pending timer per purpose: a timer left from an attempt that raced this one is replaced, not orphaned.
    if (this.connectTimer !== null) o.timers.clearTimeout(this.connectTimer);
    this.connectTimer = o.timers.setTimeout(() => {
      this.connectTimer = null;
      if (this.link === link && this.welcome === null) this.fail('handshake-timeout', `no WELCOME within ${o.handshakeTimeoutMs} ms`);
    }, o.handshakeTimeoutMs);
    // Noted before HELLO goes, as the RTT mark: a WELCOME within the write (in-process) found it unset,
    // and the client re-announced the interval HELLO carried, undoing what the gateway granted instead.
    this.helloIntervalMs = this.intervalMs;
    link.send({
      type: FrameType.HELLO,
      version: PROTOCOL_VERSION,
      userId: o.userId,
      deviceId: o.deviceId,
      ...(token !== undefined ? { token } : {}),
      ...(Object.keys(o.clientInfo).length ? { clientInfo: o.clientInfo } : {}),
      ...(this.resumeToken !== undefined ? { resumeToken: this.resumeToken, lastSeq: this.lastSeq } : {}),
      ...(o.direction !== 'client' ? { direction: o.direction } : {}),
      ...(this.intervalMs !== undefined ? { intervalMs: this.intervalMs } : {}),
    });
  }

  /** A promise that rejects if `p` has not settled within the handshake timeout (the client's own timers). */
  private withDeadline<T>(p: T | PromiseLike<T>, what: string): Promise<T> {
    const o = this.options;
    return new Promise<T>((resolve, reject) => {
      const t = o.timers.setTimeout(() => reject(new Error(`${what} did not answer within ${o.handshakeTimeoutMs} ms`)), o.handshakeTimeoutMs);
      Promise.resolve(p).then(
        (v) => {
          o.timers.clearTimeout(t);
          resolve(v);
        },
        (e) => {
          o.timers.clearTimeout(t);
          reject(e);
        },
      );
    });
  }

  private onFrame(f: Frame): void {
    const now = this.options.clock.now();
    const link = this.link;
    try {
      checkInbound('client', this.welcome ? 'open' : 'handshake', f.type);
    } catch (err) {
      this.fail('unexpected-frame', (err as Error).message);
      return;
    }
    this.networkCheck = false;
    this.detector?.heard(now);
    if (this.scheduler?.received(now)) this.armHeartbeat(now);
    if (this.learner && this.welcome) this.learnFromReceive(now);
    if (this.stateName === 'suspect') this.setState('open');
    // A handler of the events above ('state', 'interval') closed the client: this frame is not
    // handed over (a message would reach the application after the CLOSE carried the last ack).
    if (this.link !== link) return;
    if ((f.type === FrameType.PONG || f.type === FrameType.DATA || f.type === FrameType.ACK || f.type === FrameType.PING) && f.ack !== undefined && !this.onAcked(f.ack)) return;
    // An 'acked' handler closed the client (the app quits once its last message is through): the
    // rest of the frame is not handled. Its message, handed over after the CLOSE carried the last
    // ack, would reach the app unacknowledged and come again on its next run.
    if (this.link !== link) return;
    switch (f.type) {
      case FrameType.WELCOME: {
        const problem = policyProblem(f.heartbeat) ?? (f.resumed && f.ack !== undefined ? this.ackProblem(f.ack) : null);
        if (problem) {
          this.fail('malformed-frame', `WELCOME: ${problem}`);
          return;
        }
        this.onWelcome(f, now);
        return;
      }
      case FrameType.PING:
        this.link?.send(this.ackOwed ? { type: FrameType.PONG, ack: this.takeAck() } : BARE_PONG);
        this.scheduler?.sent(now);
        this.noteSent(now);
        return;
      case FrameType.PONG: {
        this.stats.pongsReceived++;
        if (this.detectorIntervalOnPong !== undefined) {
          this.detector?.setIntervalMs(this.detectorIntervalOnPong);
          this.detectorIntervalOnPong = undefined;
          this.armHeartbeat(now);
        }
        const sample = this.rtt.pongReceived(now);
        if (sample) this.emit('rtt', sample);
        // An 'rtt' handler closed the client: no 'warning' after its 'close'.
        if (this.link !== link) return;
        if (f.warn !== undefined) this.emit('warning', { code: f.warn, reason: reasonForCode(f.warn) });
        return;
      }
      case FrameType.DATA:
        this.onData(f.payload, f.seq, f.id);
        return;
      case FrameType.GOAWAY:
        this.goawayAfterMs = f.reconnectAfterMs === undefined ? undefined : Math.min(MAX_RECONNECT_HINT_MS, Math.max(0, f.reconnectAfterMs));
        this.peerClose = { code: f.code, reason: f.reason ?? reasonForCode(f.code) };
        return;
      case FrameType.CLOSE:
        this.peerClose = { code: f.code, reason: f.reason ?? reasonForCode(f.code) };
        return;
      case FrameType.ACK:
        return;
    }
  }

  private onWelcome(w: WelcomeFrame, now: number): void {
    // Handlers of the events below may send(): queued, not written, until the outbox (renumbered on
    // a new session) has gone out in order; written at once, a new message would overtake it and
    // the gateway's cumulative ack would settle older ones it dropped as duplicates.
    const link = this.link;
    this.welcoming = true;
    try {
      this.welcomed(w, now);
    } finally {
      this.welcoming = false;
    }
    // Still this link (a handler may have closed it; setIntervalMs replaces the WELCOME object).
    if (link !== null && this.link === link && this.welcome !== null) {
      this.stats.resent += this.outbox.length;
      this.flushOutbox();
      if (this.link !== link) return;
      // An interval set between HELLO and WELCOME: the HELLO did not carry it.
      if (this.intervalMs !== undefined && this.intervalMs !== this.helloIntervalMs) this.setIntervalMs(this.intervalMs);
      if (this.link !== link) return;
      // A flush asked for while no link was open: now, not one interval after the state was set.
      if (this.stateFlushOwed && this.pendingState !== null) {
        this.lastFlushAt = this.options.clock.now();
        this.sendPing(this.lastFlushAt);
        this.armHeartbeat(this.options.clock.now());
      }
    }
  }

  private welcomed(w: WelcomeFrame, now: number): void {
    const o = this.options;
    if (this.connectTimer !== null) o.timers.clearTimeout(this.connectTimer);
    this.connectTimer = null;
    // A network change during the attempt that succeeded says nothing about the next loss.
    this.retryAtOnce = false;
    const hadSession = this.resumeToken !== undefined;
    const previousSessionId = this.lastSessionId;
    this.lastSessionId = w.sessionId;
    // Noted before any event (a handler may close the client); the first loss not yet reported is kept.
    if (hadSession && !w.resumed) this.sessionLostOwed ??= { previousSessionId };
    this.welcome = w;
    this.resumeToken = w.resumeToken;
    this.reportedRttMs = -1; // a new link: tell it again
    // Nothing of the outbox is on this link yet (before the WELCOME's ack settles any of it).
    this.writtenSeq = 0;
    this.inFlightBytes = 0;
    this.dataTat = -Infinity;
    // WELCOME is traffic through the NAT like any frame: the idle gap the first heartbeat tests starts
    // here, not at the HELLO (timed from it, a slow handshake made a gap look longer than it was, and
    // the learner settled above the NAT's timeout).
    this.lastActivityAt = now;
    this.unansweredGap = 0;
    const g = w.heartbeat;
    if (this.helloIntervalMs === undefined) this.gatewayIntervalMs = g.intervalMs;
    this.scheduler = new HeartbeatScheduler(g.direction === 'client' ? g.intervalMs : Infinity, o.probes, now);
    this.detector = g.direction === 'server' ? new SilenceDetector(g.intervalMs, g.missBudget, g.graceMs, now) : null;
    if (this.stableTimer !== null) o.timers.clearTimeout(this.stableTimer);
    this.stableTimer = o.timers.setTimeout(() => {
      this.stableTimer = null;
      this.backoff.reset();
      this.hintsInARow = 0;
      this.reconnectsInARow = 0;
    }, o.stableAfterMs);
    if (!w.resumed) {
      // A new session: sequence numbers restart on both sides. What we had
      // not got acknowledged is renumbered and re-sent; the gateway drops
      // any it had already accepted by id. Done before any event: a handler
      // that closes the client must leave the numbers of the session it holds.
      this.lastSeq = 0;
      this.ackOwed = 0;
      this.outSeq = 0;
      for (const m of this.outbox) m.seq = ++this.outSeq;
    }
    // A handler below may close the client (or close and connect again): this WELCOME's events end
    // there, so no 'open' follows a 'close' and a new connect() is not settled by this old WELCOME.
    const link = this.link;
    const gone = () => this.link !== link;
    this.setState('open');
    if (gone()) return;
    this.armHeartbeat(now);
    // Either direction: the gateway clamps what it is told to its range, so a learner that does not
    // know the range probes intervals never used (server-sent, a probe past maxIntervalMs died at the
    // clamped one, was not counted, and was announced again on every link).
    // Not on a link whose range is one interval (an authenticator pinned it): the learner clamped its
    // records to it, and a network's learned interval became the pinned one, never proven there.
    if (this.learner && g.minIntervalMs < g.maxIntervalMs) {
      const change = this.learner.setRange(g.minIntervalMs, g.maxIntervalMs, this.startMs()!, now);
      const ms = this.learner.intervalMs(this.startMs());
      if (change || (ms !== undefined && ms !== g.intervalMs)) this.applyLearned(change ?? 'range', now);
    }
    // An 'interval' handler closed the client: the outbox is settled by the next link's WELCOME, not after the 'close'.
    if (gone()) return;
    if (w.resumed && w.ack !== undefined) this.onAcked(w.ack);
    if (gone()) return;
    this.emit('open', w);
    if (gone()) return;
    const sample = this.rtt.pongReceived(now);
    if (sample) this.emit('rtt', sample);
    if (gone()) return;
    const lost = this.sessionLostOwed;
    this.sessionLostOwed = null;
    if (lost) this.emit('session-lost', lost);
  }

  private onData(payload: Uint8Array, seq: number | undefined, id: string | undefined): void {
    if (seq === undefined) {
      this.stats.dataReceived++;
      this.emit('message', id !== undefined ? { payload, id } : { payload });
      return;
    }
    if (seq <= this.lastSeq) {
      this.stats.duplicatesIn++;
      this.owe();
      return;
    }
    this.lastSeq = seq;
    if (id !== undefined && !this.recentIds.add(id)) {
      this.stats.duplicatesIn++;
      this.owe();
      return;
    }
    this.stats.dataReceived++;
    // Owed before the handler (a frame it sends carries the ack), but the 64th is sent at once only
    // after it ran: sent before, a handler that threw (its error ends the process) lost a message the
    // gateway had been told was delivered, where with fewer owed the ack waited and it came again.
    this.ackOwed++;
    const link = this.link;
    const threw = this.listenerErrors;
    this.emit('message', id !== undefined ? { payload, id, seq } : { payload, seq });
    // A handler that closed the client (which acknowledged what it owed) or lost the link: nothing to arm.
    if (this.link === link) this.ackDue(this.listenerErrors !== threw);
  }

  private owe(): void {
    this.ackOwed++;
    this.ackDue(false);
  }

  /** Acks ride on our next frame; alone only after ackDelayMs, or at once when many are owed (not after a handler threw: its error goes first). */
  private ackDue(wait: boolean): void {
    if (this.ackOwed === 0) return;
    if (this.ackOwed >= 64 && !wait) return this.flushAck();
    if (this.ackTimer === null) this.ackTimer = this.options.timers.setTimeout(this.flushAck, this.options.ackDelayMs);
  }

  private takeAck(): number {
    this.ackOwed = 0;
    if (this.ackTimer !== null) this.options.timers.clearTimeout(this.ackTimer);
    this.ackTimer = null;
    return this.lastSeq;
  }

  private readonly flushAck = (): void => {
    // Cleared, not only forgotten: called at once (the 64th owed), the pending timer fired later, after close() too.
    if (this.ackTimer !== null) this.options.timers.clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.ackOwed === 0 || !this.link || !this.welcome) return;
    this.link.send({ type: FrameType.ACK, ack: this.takeAck() });
    this.scheduler?.sent(this.options.clock.now());
    this.noteSent(this.options.clock.now());
  };

  /** What is wrong with an acknowledgement, if anything: one beyond what was sent would report messages delivered that the gateway never had. */
  private ackProblem(upTo: number): string | null {
    return upTo > this.outSeq ? `acknowledgement ${upTo} is beyond the last sequence number sent (${this.outSeq})` : null;
  }

  /** Settles the outbox up to `upTo`; false (the link failed) if it acknowledges what was never sent. */
  private onAcked(upTo: number): boolean {
    const problem = this.ackProblem(upTo);
    if (problem) {
      this.fail('malformed-frame', problem);
      return false;
    }
    let settled = false;
    while (this.outbox.length > 0 && this.outbox[0].seq <= upTo) {
      const m = this.outbox.shift()!;
      this.outboxBytes -= m.payload.length;
      if (m.seq <= this.writtenSeq) this.inFlightBytes -= m.payload.length;
      settled = true;
      this.stats.acked++;
      this.emit('acked', { id: m.id, seq: m.seq });
    }
    // Room in the window: what waited behind it goes (not from WELCOME's ack: its step writes the outbox after).
    if (settled) this.flushOutbox();
    // close() was waiting for this: everything is through.
    if (settled && this.closeFlush !== null && this.outbox.length === 0) this.closeNow();
    return true;
  }

  /**
   * Writes the outbox messages not yet on this link, in order, while the window allows: at most
   * maxInFlight written and unacknowledged, and maxInFlightBytes of their payload (a lone message
   * always goes). The rest goes as acknowledgements free the window. The gateway takes client
   * messages in one at a time and closes a link whose waiting ones pass its budgets (GOAWAY 4004):
   * a whole outbox written at once after a reconnect was refused, and again on every reconnect.
   */
  private flushOutbox(): void {
    const link = this.link;
    if (!link || !this.welcome || this.welcoming || this.outboxFlushing) return;
    const o = this.options;
    this.outboxFlushing = true;
    try {
      while (this.outbox.length > 0 && this.link === link) {
        // Outbox seqs are consecutive (acknowledged from the front): the first `i` are on this link.
        const i = Math.max(0, this.writtenSeq - this.outbox[0].seq + 1);
        if (i >= this.outbox.length || i >= o.maxInFlight) return;
        const m = this.outbox[i];
        if (i > 0 && this.inFlightBytes + m.payload.length > o.maxInFlightBytes) return;
        const wait = this.dataSlot(o.clock.now());
        if (wait > 0) {
          // Capped: a pace below ~5e-7 a second waits past 2^31 - 1 ms, which Node fires after 1 ms (a
          // busy loop of wake-ups); a wait that long re-checks at the cap instead.
          this.paceTimer ??= o.timers.setTimeout(() => {
            this.paceTimer = null;
            this.flushOutbox();
          }, Math.min(Math.ceil(wait), MAX_TIMER_MS));
          return;
        }
        this.writtenSeq = m.seq;
        this.inFlightBytes += m.payload.length;
        // An in-process link can close (or ack) within a write: the loop stops at a link that is gone.
        this.writeData(m);
      }
    } finally {
      this.outboxFlushing = false;
    }
  }

  /**
   * Takes a slot for one DATA in the pace (0), or says how long until one is free (ms): bursts of
   * dataBurst, then one per 1000 / maxDataPerSecond ms. The gateway closes a link above its own
   * pace (GOAWAY 4009), and the outbox written at once after a reconnect went above it.
   */
  private dataSlot(now: number): number {
    const { maxDataPerSecond: rate, dataBurst } = this.options;
    if (rate === 0) return 0;
    const gap = 1000 / rate;
    const tat = Math.max(this.dataTat, now);
    const wait = tat - now - gap * (dataBurst - 1);
    if (wait > 0) return wait;
    this.dataTat = tat + gap;
    return 0;
  }

  private writeData(m: { seq: number; id: string; payload: Uint8Array }): void {
    const ack = this.ackOwed ? this.takeAck() : undefined;
    this.link!.send({ type: FrameType.DATA, seq: m.seq, id: m.id, payload: m.payload, ...(ack !== undefined ? { ack } : {}) });
    this.scheduler?.sent(this.options.clock.now());
    this.noteSent(this.options.clock.now());
    this.stats.dataSent++;
  }

  /** Messages sent but not yet acknowledged by the gateway. */
  get pendingCount(): number {
    return this.outbox.length;
  }

  private armHeartbeat(now: number): void {
    const o = this.options;
    if (this.heartbeatTimer !== null) o.timers.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (!this.scheduler) return;
    let at = this.scheduler.nextWakeAt();
    if (this.detector) at = Math.min(at, this.detector.deadline());
    if (this.checkDueAt >= 0) at = Math.min(at, this.checkDueAt);
    if (this.flushDueAt >= 0) at = Math.min(at, this.flushDueAt);
    const stateDue = this.stateDueAt();
    if (stateDue !== null) at = Math.min(at, stateDue);
    if (!Number.isFinite(at)) return;
    this.heartbeatDueAt = Math.max(at, now);
    this.heartbeatReread = false;
    this.heartbeatTimer = o.timers.setTimeout(this.onHeartbeatTimer, Math.max(0, at - now));
  }

  private readonly onHeartbeatTimer = (): void => {
    this.heartbeatTimer = null;
    const now = this.options.clock.now();
    if (!this.scheduler || !this.link) return;
    if (!this.heartbeatReread && now - this.heartbeatDueAt >= LATE_TIMER_MS) {
      // Late: this process was frozen (a laptop asleep, a long task, a frozen tab). Node runs due
      // timers before it reads the sockets, so what the gateway sent meanwhile is not read yet, and
      // its silence limit passed: judged now, a gateway that kept sending was declared dead. Judge
      // once the socket was read (a timer armed now runs after the next poll).
      this.heartbeatReread = true;
      this.heartbeatTimer = this.options.timers.setTimeout(this.onHeartbeatTimer, 1);
      return;
    }
    if (this.detector && this.detector.check(now) === 'dead') {
      const learned = this.learnFromDeath(now, this.detector.intervalMs);
      this.fail('heartbeat-timeout', 'the gateway sent nothing within the silence limit');
      learned?.();
      return;
    }
    if (this.checkDueAt >= 0 && now >= this.checkDueAt) {
      this.checkDueAt = -1;
      const link = this.link;
      this.startCheck(now);
      // A 'state' handler closed (or closed and restarted) the client: its link is gone.
      if (this.link !== link) return;
    }
    if (this.flushDueAt >= 0 && now >= this.flushDueAt) {
      this.flushDueAt = -1;
      // Unless a heartbeat took the state meanwhile.
      if (this.pendingState !== null) {
        this.lastFlushAt = now;
        this.sendPing(now);
      }
    }
    const action = this.scheduler.poll(now);
    if (action === 'dead') {
      const learned = this.learnFromDeath(now, this.unansweredGap);
      this.fail('heartbeat-timeout', 'no answer to heartbeat and quick probes');
      learned?.();
      return;
    }
    if (action === 'ping' || action === 'probe') {
      const link = this.link;
      if (action === 'probe') this.setState('suspect');
      // A 'state' handler closed (or closed and restarted) the client: its link is gone.
      if (this.link !== link) return;
      this.sendPing(now);
    } else {
      const stateDue = this.stateDueAt();
      if (stateDue !== null && now >= stateDue) this.sendPing(now);
    }
    this.armHeartbeat(now);
  };

  /**
   * When a pending updateState() must go in a PING of its own: the scheduler skips
   * heartbeats while traffic flows both ways, and the state rides only on a PING.
   * Null while a PING is out (its answer re-arms) or none is pending.
   */
  private stateDueAt(): number | null {
    if (this.pendingState === null || !this.welcome || this.scheduler?.phase !== 'healthy') return null;
    return this.pendingStateAt + this.welcome.heartbeat.intervalMs;
  }

  /**
   * Our heartbeat went unanswered through the fast recheck: the gap before it
   * is what failed. The new interval rides on the next HELLO; the returned
   * function reports it, after the close it caused.
   */
  private learnFromDeath(now: number, gapMs: number): (() => void) | null {
    // Found by the check a network change started: the old path went away, the NAT did not time out.
    if (!this.learner || this.networkCheck) return null;
    const change = this.learner.failed(gapMs, now);
    const ms = this.learner.intervalMs();
    const r = this.learner.record;
    if (!change || ms === undefined || !r) return null;
    this.intervalMs = ms;
    const learner = this.learner;
    return () => this.emit('interval', { network: learner.network, intervalMs: ms, phase: r.phase, change });
  }

  /**
   * The connection ended under us (a reset, a write error, a stream cut), no CLOSE from the gateway.
   * Right after a frame that ended an idle gap, with nothing heard since, it is the NAT's answer to
   * that gap as much as silence is: many NATs reset a connection whose mapping they forgot. Not
   * learned from, a probe that met a reset was announced again on every link, and reset again.
   */
  private lostInTransit(message: string): void {
    const learned = this.welcome ? this.learnFromDeath(this.options.clock.now(), this.unansweredGap) : null;
    this.lost(CloseCodes['transport-error'], message);
    learned?.();
  }

  private sendPing(now: number): void {
    let f: PingFrame = BARE_PING;
    const rttMs = this.rttToReport();
    if (this.pendingState !== null || this.pendingIntervalMs !== undefined || this.ackOwed || rttMs >= 0) {
      f = { type: FrameType.PING };
      if (this.pendingState !== null) f.state = this.pendingState;
      if (this.pendingIntervalMs !== undefined) f.intervalMs = this.pendingIntervalMs;
      if (this.ackOwed) f.ack = this.takeAck();
      if (rttMs >= 0) f.rttMs = this.reportedRttMs = rttMs;
      this.pendingState = null;
      this.stateFlushOwed = false;
      this.pendingIntervalMs = undefined;
    }
    this.rtt.pingSent(now);
    this.scheduler?.sent(now);
    this.noteSent(now);
    this.stats.pingsSent++;
    this.link!.send(f);
  }

  /**
   * The smoothed RTT to tell the gateway on this PING, or -1: only when it has
   * moved by a tenth (at least 1 ms) since it was last told on this link, so
   * nearly every heartbeat stays bare (the gateway cannot time client-sent
   * heartbeats; it shows this one and measures the path with it).
   */
  private rttToReport(): number {
    const srtt = this.rtt.srttMs;
    if (srtt === undefined) return -1;
    const ms = Math.round(srtt);
    const told = this.reportedRttMs;
    return told < 0 || Math.abs(ms - told) >= Math.max(1, told / 10) ? ms : -1;
  }

  /**
   * NAT mappings expire by idleness in either direction, so a gap is the time
   * since the last frame either way. A frame sent after a gap proves that gap
   * survivable once something comes back; one received proves it at once.
   */
  private noteSent(now: number): void {
    this.unansweredGap = Math.max(this.unansweredGap, now - this.lastActivityAt);
    this.lastActivityAt = now;
  }

  private learnFromReceive(now: number): void {
    const learner = this.learner!;
    const inbound = now - this.lastActivityAt;
    const sent = this.unansweredGap;
    this.lastActivityAt = now;
    this.unansweredGap = 0;
    const change = learner.held(Math.max(sent, inbound), now) ?? learner.poll(now);
    if (change) this.applyLearned(change, now);
  }

  /**
   * Where the learner starts a network never seen (it doubles this for the first probe): the
   * gateway's own interval; before one is known, the bottom of the granted range (slower to
   * learn, but never above what the gateway allows).
   */
  private startMs(): number | undefined {
    return this.gatewayIntervalMs ?? this.welcome?.heartbeat.minIntervalMs;
  }

  /** Puts the learner's interval in force (announced to the gateway at once) and reports it. */
  private applyLearned(change: LearnerChange, now: number): void {
    const learner = this.learner!;
    const ms = learner.intervalMs(this.startMs());
    const r = learner.record;
    if (ms === undefined || !r) {
      // A network never seen and no start known yet: announce none, so the gateway's own comes back and seeds it.
      if (!this.link) this.intervalMs = undefined;
      return;
    }
    this.emit('interval', { network: learner.network, intervalMs: ms, phase: r.phase, change });
    if (this.link && this.welcome && this.scheduler) this.setIntervalMs(ms);
    else this.intervalMs = ms;
    void now;
  }

  /**
   * Sends a message to the gateway, reliably: it is numbered, kept until the
   * gateway acknowledges it (the `acked` event), and re-sent after a
   * reconnect; the gateway drops re-sends it already has. While disconnected,
   * or while maxInFlight messages are written and unacknowledged, it waits in
   * the outbox. Returns the message id. Throws
   * LL_ERR_OUTBOX_FULL when `maxOutbox` messages are already waiting, and
   * LL_ERR_INVALID_OPTION for a payload neither a string nor a Uint8Array
   * (wrap an ArrayBuffer in one), or an `id` that is not a string (null or
   * undefined: one is generated), empty, or longer than maxMessageIdBytes.
   */
  send(payload: Uint8Array | string, opts: { id?: string } = {}): string {
    if (this.outbox.length >= this.options.maxOutbox) {
      throw new LonglinkError('LL_ERR_OUTBOX_FULL', `${this.outbox.length} messages are waiting for acknowledgement`);
    }
    const bytes = typeof payload === 'string' ? UTF8.encode(payload) : payload;
    // Plain JavaScript passes what the types forbid: a number, an object or an ArrayBuffer (no
    // `length`) went out as an empty message and made the outbox's byte count NaN (its bound gone).
    if (!ArrayBuffer.isView(bytes) || (bytes as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT !== 1) {
      throw new OptionError('payload', `must be a string or a Uint8Array (got ${bytes === null ? 'null' : Object.prototype.toString.call(bytes)})`);
    }
    if (this.outbox.length > 0 && this.outboxBytes + bytes.length > this.options.maxOutboxBytes) {
      throw new LonglinkError('LL_ERR_OUTBOX_FULL', `${this.outboxBytes} bytes are waiting for acknowledgement; ${bytes.length} more would pass maxOutboxBytes (${this.options.maxOutboxBytes})`);
    }
    // Plain JavaScript again: a number went out as its text ("5") while 'acked' and the id returned
    // were the number, so an app matching its acknowledgements by id never saw this one settle.
    const given: unknown = opts.id;
    if (given !== undefined && given !== null && typeof given !== 'string') {
      throw new OptionError('id', `must be a string (got ${typeof given})`);
    }
    // Kept for re-sending, an id the gateway refuses (field-too-large, a permanent close) would end
    // every later link the same way; an empty one would be one id, deduplicated, for every message.
    if (typeof given === 'string' && (given.length === 0 || utf8Length(given) > this.options.maxMessageIdBytes)) {
      throw new OptionError('id', given.length === 0 ? 'must not be empty' : `of ${utf8Length(given)} bytes exceeds maxMessageIdBytes (${this.options.maxMessageIdBytes})`);
    }
    const id = opts.id ?? `${this.idPrefix}-${this.nextId + 1}`;
    // Refused here, not by the gateway: it would close the link as frame-too-large, and the
    // message, kept for re-sending, would do it again on every connection.
    assertPayloadFits(bytes, id, this.options.maxFrameBytes);
    if (opts.id === undefined || opts.id === null) this.nextId++;
    const m = { seq: ++this.outSeq, id, payload: bytes };
    this.outbox.push(m);
    this.outboxBytes += bytes.length;
    this.flushOutbox();
    return m.id;
  }

  /**
   * Updates client state the gateway keeps for this connection (foreground,
   * network type, ...). It rides on the next heartbeat, or in a PING of its own
   * one interval after it was first set (heartbeats are skipped while traffic
   * flows both ways); `flush` sends it now, or with the next WELCOME while
   * no link is open. Flushes on a link go at most one per half the gateway's
   * shortest interval (2.5 s by default), as networkChanged()'s checks: one
   * asked for sooner goes when that time is up, with all state set meanwhile.
   * A key set to the empty string is deleted (null or undefined, from
   * JavaScript, too); any other value that is not a string throws
   * LL_ERR_INVALID_OPTION and nothing of the delta is kept.
   */
  updateState(delta: ClientState, opts: { flush?: boolean } = {}): void {
    // Checked before anything is kept: a value the encoder cannot write, kept pending, threw from
    // the heartbeat timer that carried it (an uncaught exception in Node), on every heartbeat.
    const checked = stateDelta(delta);
    if (this.pendingState === null) this.pendingStateAt = this.options.clock.now();
    this.pendingState = { ...(this.pendingState ?? {}), ...checked };
    if (opts.flush && this.link && this.welcome) {
      const now = this.options.clock.now();
      const due = this.lastFlushAt + this.checkGapMs();
      if (now >= due) {
        this.lastFlushAt = now;
        this.sendPing(now);
      } else if (this.flushDueAt < 0) this.flushDueAt = due;
    } else if (opts.flush) {
      this.stateFlushOwed = true;
    }
    // Also arms the deadline by which the state goes in a PING of its own.
    if (this.link && this.welcome) this.armHeartbeat(this.options.clock.now());
  }

  /**
   * Changes the heartbeat interval. It is announced at once in a PING: were it
   * to wait for the next heartbeat, a longer interval would let the gateway's
   * detector, still on the old one, convict a healthy link first.
   */
  setIntervalMs(ms: number): void {
    // Validated even while disconnected: the next HELLO carries it as a varint.
    checkIntervalMs('intervalMs', ms);
    this.intervalMs = ms;
    if (!this.link || !this.welcome || !this.scheduler) return;
    // The gateway clamps to the granted range; clamp the same way so both
    // sides time the link with the same number.
    const g = this.welcome.heartbeat;
    const clamped = clampInterval(g, ms);
    this.intervalMs = clamped;
    const current = this.detector?.intervalMs ?? this.scheduler.interval;
    if (clamped === current && this.detectorIntervalOnPong === undefined) return;
    this.pendingIntervalMs = clamped;
    this.welcome = { ...this.welcome, heartbeat: { ...g, intervalMs: clamped } };
    const now = this.options.clock.now();
    if (g.direction === 'client') {
      this.scheduler.setIntervalMs(clamped);
    } else if (this.detector) {
      // The gateway pings at the new interval once it has read this PING.
      // A longer limit is safe at once; a shorter one only from the PONG
      // that answers it, before which the gateway may still keep the old pace.
      if (clamped >= this.detector.intervalMs) {
        this.detector.setIntervalMs(clamped);
        this.detectorIntervalOnPong = undefined;
      } else {
        this.detectorIntervalOnPong = clamped;
      }
    }
    this.sendPing(now);
    this.armHeartbeat(now);
  }

  /**
   * The device's network changed (or may have): check the link now with quick
   * probes instead of waiting for the next heartbeat, and if no link is up,
   * reconnect at once rather than after the backoff delay (attempts started so
   * go at most one a second, the first at once; from a `close` handler too,
   * the next attempt then planned so). Checks on one link
   * go at most one per half the gateway's shortest interval (2.5 s by
   * default): one asked for sooner goes when that time is up, one for all, so
   * a page shown over and over or a flapping network stays within the
   * gateway's PING pace. With the adaptive heartbeat, `network` names the new
   * network: its learned interval (or a fresh start) applies from now.
   */
  networkChanged(network?: string): void {
    const now = this.options.clock.now();
    if (network !== undefined && this.learner && network !== this.learner.network) {
      // Gaps seen on the old network say nothing about the new one.
      this.lastActivityAt = now;
      this.unansweredGap = 0;
      this.applyLearned(this.learner.switchNetwork(network, now, this.startMs()), now);
    }
    if (this.link && this.welcome && this.scheduler) {
      // One check per checkGapMs at most; one asked for sooner goes when the gap is over (one for all).
      const due = this.lastCheckAt + this.checkGapMs();
      if (now < due) {
        if (this.checkDueAt < 0) {
          this.checkDueAt = due;
          this.armHeartbeat(now);
        }
        return;
      }
      this.startCheck(now);
      return;
    }
    // An attempt already under way may have started on the old network and be doomed. Open or
    // suspect with no link: called from a 'close' handler, before lost() plans the next attempt,
    // which then goes at once (within NETWORK_REDIAL_GAP_MS), not after the backoff.
    if (this.stateName === 'connecting' || (!this.link && (this.stateName === 'open' || this.stateName === 'suspect'))) this.retryAtOnce = true;
    // A wait the gateway asked for (a drain's spread, a full gateway's 503) is kept: the network is not why.
    if (this.stateName === 'reconnecting' && !this.hintedWait) {
      // Not sooner than NETWORK_REDIAL_GAP_MS after the last attempt, nor later than planned.
      const at = this.redialAt(now);
      if (this.connectTimer !== null && this.reconnectDueAt <= at) return;
      if (this.connectTimer !== null) this.options.timers.clearTimeout(this.connectTimer);
      this.connectTimer = null;
      this.backoff.reset();
      if (at > now) this.armReconnect(at - now, now, true);
      else {
        this.lastNetworkDialAt = now;
        void this.attempt();
      }
    }
  }

  /**
   * Ends the link (or the attempt under way) now, with a CLOSE 1000, which keeps the session, and
   * plans no reconnect: the next networkChanged() (or close() and connect()) dials. For a page
   * going into the back/forward cache: left open there, the link answered nothing, and the gateway
   * held the device online until its silence limit convicted it (a detection that was none); a
   * reconnect planned now could dial from the page on its way into the cache.
   */
  protected leave(reason: string): void {
    if ((this.link === null && this.stateName !== 'connecting') || this.closeFlush !== null) return;
    const link = this.link;
    // The attempt under way (its dial, its token) is moot, as after close().
    this.attemptGen++;
    this.dialAbort?.abort();
    this.dialAbort = null;
    if (link && this.welcome && this.ackOwed) link.send({ type: FrameType.ACK, ack: this.takeAck() });
    this.teardown();
    if (this.connectTimer !== null) this.options.timers.clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.reconnectDueAt = -1;
    this.hintedWait = false;
    link?.close(CloseCodes.normal, reason);
    const gen = this.attemptGen;
    if (link) this.emit('close', { code: CloseCodes.normal, reason, willReconnect: true });
    if (this.userClosed || gen !== this.attemptGen) return;
    this.setState('reconnecting');
  }

  /**
   * The least time between two checks networkChanged() starts on a link: half the gateway's
   * shortest interval, so they (with the heartbeats) stay well within its PING pace (by default
   * one a second on average, a fifth of that interval, in bursts of 20).
   */
  private checkGapMs(): number {
    return (this.welcome?.heartbeat.minIntervalMs ?? 0) / 2;
  }

  /** Checks the link now with quick probes (unless a check runs already). */
  private startCheck(now: number): void {
    this.networkCheck = true;
    if (!this.scheduler?.checkNow(now)) return;
    this.lastCheckAt = now;
    const link = this.link;
    this.setState('suspect');
    if (this.link !== link) return;
    this.sendPing(now);
    this.armHeartbeat(now);
  }

  /**
   * Closes for good: sends CLOSE (normal) and does not reconnect. With a link
   * open and messages in the outbox, it first sends them and waits for their
   * acknowledgement, at most `flushMs` (default `closeFlushMs`, 5,000; 0 closes
   * at once); the link lost meanwhile ends the wait. Resolves once closed with
   * the messages still unacknowledged (none when all went through): they are
   * not sent by this client again, unless connect() is called, and a new run
   * may re-send them with the same id. A second close() while one waits gets
   * the same promise (with `flushMs: 0`: the close ends now).
   */
  close(opts: { flushMs?: number } = {}): Promise<UnsentMessage[]> {
    const flushMs = opts.flushMs ?? this.options.closeFlushMs;
    if (!(flushMs >= 0 && flushMs <= MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `flushMs must be a number from 0 to ${MAX_TIMER_MS} ms (got ${flushMs})`);
    if (this.closeFlush !== null && flushMs > 0) return this.closeFlush.done;
    if (this.closeFlush === null && flushMs > 0 && this.link && this.welcome && this.outbox.length > 0) {
      let resolve!: (left: UnsentMessage[]) => void;
      const done = new Promise<UnsentMessage[]>((r) => (resolve = r));
      this.closeFlush = { done, resolve, timer: this.options.timers.setTimeout(() => this.closeNow(), flushMs) };
      this.flushOutbox();
      return done;
    }
    return Promise.resolve(this.closeNow());
  }

  /** Closes at once (close() without waiting, or once its wait ends); returns what the outbox still holds. */
  private closeNow(): UnsentMessage[] {
    const flush = this.closeFlush;
    this.closeFlush = null;
    if (flush) this.options.timers.clearTimeout(flush.timer);
    const left = this.outbox.map((m) => ({ id: m.id, payload: m.payload }));
    this.userClosed = true;
    this.attemptGen++;
    this.dialAbort?.abort();
    this.dialAbort = null;
    const link = this.link;
    // Messages handed to the application but not yet acknowledged (the ack waits up to ackDelayMs)
    // are acknowledged before the CLOSE: left owed, they would stay queued and be delivered again to
    // the next run of the app (a new client has no session and no record of their ids).
    if (link && this.welcome && this.ackOwed) link.send({ type: FrameType.ACK, ack: this.takeAck() });
    this.teardown();
    if (this.connectTimer !== null) this.options.timers.clearTimeout(this.connectTimer);
    this.connectTimer = null;
    if (link) link.close(CloseCodes.normal, 'client closed');
    const wasClosed = this.stateName === 'closed';
    this.endedGen = this.attemptGen;
    this.setState('closed');
    // Settled before the event: a 'close' handler's connect() and sends belong to the next run.
    flush?.resolve(left);
    if (!wasClosed) this.emit('close', { code: CloseCodes.normal, reason: 'client closed', willReconnect: false });
    return left;
  }

  /** We decided the link is unusable: tell the gateway why and treat it as lost. */
  private fail(reason: CloseReason, message: string): void {
    const link = this.link;
    if (!link) return;
    this.lost(CloseCodes[reason], message);
    link.close(CloseCodes[reason], message);
  }

  private teardown(): void {
    const t = this.options.timers;
    if (this.heartbeatTimer !== null) t.clearTimeout(this.heartbeatTimer);
    if (this.stableTimer !== null) t.clearTimeout(this.stableTimer);
    if (this.ackTimer !== null) t.clearTimeout(this.ackTimer);
    if (this.paceTimer !== null) t.clearTimeout(this.paceTimer);
    this.heartbeatTimer = this.stableTimer = this.ackTimer = this.paceTimer = null;
    this.link = null;
    this.welcome = null;
    this.scheduler = null;
    this.detector = null;
    this.detectorIntervalOnPong = undefined;
    this.networkCheck = false;
    this.lastCheckAt = -Infinity;
    this.checkDueAt = -1;
    this.lastFlushAt = -Infinity;
    this.flushDueAt = -1;
    this.rtt.clearOutstanding();
  }

  /** The link is gone (or never came up): report it and plan the next attempt. */
  private lost(code: number, reason: string): void {
    // close() was waiting for its outbox: the link is gone, so the close ends here, with what is left.
    if (this.closeFlush !== null) {
      this.closeNow();
      return;
    }
    if (this.userClosed) return;
    // A link lost while the check networkChanged() started was on: the network (or the page's
    // freeze) killed it, not the gateway's load, so the first attempt does not wait out the backoff.
    if (this.networkCheck) this.retryAtOnce = true;
    this.teardown();
    if (this.connectTimer !== null) this.options.timers.clearTimeout(this.connectTimer);
    this.connectTimer = null;
    // An expired token is worth another attempt only when the client can fetch a fresh one.
    const refreshable = code === CloseCodes['auth-expired'] && typeof this.options.token === 'function';
    const willReconnect = this.options.reconnectEnabled && (shouldReconnect(code) || refreshable);
    this.urlIndex++;
    if (!willReconnect) {
      // Closed before the event: a connect() from its handler starts a new attempt.
      this.endedGen = this.attemptGen;
      this.setState('closed');
      this.emit('close', { code, reason, willReconnect });
      return;
    }
    // Handlers of the events below may call close() (and connect() after it, which starts an attempt
    // of its own): either bumps the generation, and the attempt planned here is then not armed (armed,
    // it would dial for a closed client, or run a second attempt beside the new one).
    const gen = this.attemptGen;
    const moot = () => this.userClosed || gen !== this.attemptGen;
    this.emit('close', { code, reason, willReconnect });
    if (moot()) return;
    // The server's hint spreads a drain's reconnect wave; honour it over our backoff. Hinted closes
    // in a row (no stable link between) wait at least the backoff too: a hint of 0 must not loop.
    const hint = this.goawayAfterMs;
    const now = this.options.clock.now();
    const network = hint === undefined && this.retryAtOnce;
    const delayMs = hint !== undefined ? (this.hintsInARow++ > 0 ? Math.max(hint, this.backoff.next()) : hint) : network ? this.redialAt(now) - now : this.backoff.next();
    this.goawayAfterMs = undefined;
    this.hintedWait = hint !== undefined;
    this.retryAtOnce = false;
    this.stats.reconnects++;
    this.setState('reconnecting');
    if (moot()) return;
    // Not the backoff's count: a hinted or immediate reconnect does not advance it.
    this.emit('reconnecting', { attempt: ++this.reconnectsInARow, delayMs });
    if (moot()) return;
    this.armReconnect(delayMs, now, network);
  }

  /** Plans the next attempt; `network`: one a network change asked for, not the backoff's. */
  private armReconnect(delayMs: number, now: number, network: boolean): void {
    // One planned attempt at a time, the sooner: a handler of lost()'s events may have planned one
    // already (networkChanged()). Both armed ran two attempts, the later dialing over the link the
    // first had opened: its WELCOME came to an open client, which failed for good (4503).
    if (this.connectTimer !== null) {
      if (this.reconnectDueAt <= now + delayMs) return;
      this.options.timers.clearTimeout(this.connectTimer);
    }
    this.reconnectDueAt = now + delayMs;
    this.connectTimer = this.options.timers.setTimeout(() => {
      this.connectTimer = null;
      this.reconnectDueAt = -1;
      if (network) this.lastNetworkDialAt = this.options.clock.now();
      void this.attempt();
    }, delayMs);
  }

  /** When a network change may start an attempt: at once, unless the last one it started began under NETWORK_REDIAL_GAP_MS ago. */
  private redialAt(now: number): number {
    return Math.max(now, this.lastNetworkDialAt + NETWORK_REDIAL_GAP_MS);
  }
}
