import { EventEmitter } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import type { WebSocketServer } from 'ws';
import { negotiate } from '../core/heartbeat-policy.js';
import type { RttSample } from '../core/rtt-tracker.js';
import { TimerWheel } from '../core/timer-wheel.js';
import type { Link } from '../link/link.js';
import { CloseCodes, LonglinkError, ProtocolError } from '../protocol/errors.js';
import { FrameType, type ClientState, type DataFrame, type HelloFrame } from '../protocol/frames.js';
import { ServerConnection, type ConnectionHost } from './connection.js';
import type { DisconnectReason } from './disconnect.js';
import { resolveGatewayOptions, type GatewayOptions, type ResolvedGatewayOptions } from './options.js';
import { Registry } from './registry.js';
import type { SessionRecord } from './stores/store.js';
import { listenTcp } from './transports/tcp-listener.js';
import { listenWs } from './transports/ws-listener.js';
import { WheelRunner } from './wheel-runner.js';

export interface DeviceRef {
  userId: string;
  deviceId: string;
  connectionId: string;
  sessionId: string;
  transport: 'tcp' | 'ws';
}

export interface OnlineEvent extends DeviceRef {
  resumed: boolean;
  clientInfo: ClientState;
}

export interface OfflineEvent extends DeviceRef {
  reason: DisconnectReason;
  code: number;
  /** Monotonic ms since the last frame arrived from the device. */
  silentForMs: number;
}

export interface MessageEvent extends DeviceRef {
  payload: Uint8Array;
  id?: string;
}

export interface StateEvent extends DeviceRef {
  delta: ClientState;
  state: ClientState;
}

export interface ProtocolErrorEvent {
  connectionId: string;
  remoteAddress: string;
  transport: 'tcp' | 'ws';
  error: ProtocolError;
}

export interface GatewayEvents {
  online: [OnlineEvent];
  offline: [OfflineEvent];
  message: [MessageEvent];
  state: [StateEvent];
  rtt: [DeviceRef & RttSample];
  'protocol-error': [ProtocolErrorEvent];
}

/** A snapshot of one connection, for the application and the admin view. */
export interface ConnectionInfo extends DeviceRef {
  remoteAddress: string;
  intervalMs: number;
  direction: 'client' | 'server';
  lastHeardMsAgo: number;
  rttMs: number | null;
  clientInfo: ClientState;
  clientState: ClientState;
}

/**
 * The gateway: listeners for TCP and WebSocket, the connection registry,
 * presence in the store, and one timer wheel for every connection's deadline.
 */
export class Gateway extends EventEmitter<GatewayEvents> {
  readonly options: ResolvedGatewayOptions;
  private readonly registry = new Registry();
  /** Every live connection, including those still in the handshake. */
  private readonly connections = new Set<ServerConnection>();
  private readonly host: ConnectionHost;
  private readonly runner: WheelRunner<ServerConnection>;
  private tcpServer: NetServer | null = null;
  private wsServer: { http: HttpServer; wss: WebSocketServer } | null = null;
  private closing = false;
  private readonly ownsStore: boolean;

  constructor(opts: GatewayOptions = {}) {
    super();
    this.options = resolveGatewayOptions(opts);
    this.ownsStore = opts.store === undefined;
    const o = this.options;
    const wheel = new TimerWheel<ServerConnection>({ tickMs: o.wheelTickMs, startMs: o.clock.now() });
    this.runner = new WheelRunner(wheel, o.clock, o.timers, (conn) => conn.onTimer(o.clock.now()));
    this.host = {
      clock: o.clock,
      wheel,
      policy: o.heartbeat,
      probes: o.probes,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      wake: () => this.runner.kick(),
      hello: (conn, hello) => this.onHello(conn, hello),
      message: (conn, f) => this.onMessage(conn, f),
      stateChanged: (conn, delta) => this.emit('state', { ...ref(conn), delta, state: { ...conn.clientState } }),
      rtt: (conn, sample) => this.emit('rtt', { ...ref(conn), ...sample }),
      protocolError: (conn, error) =>
        this.emit('protocol-error', { connectionId: conn.id, remoteAddress: conn.link.remoteAddress, transport: conn.transport, error }),
      closed: (conn, reason, code) => this.onClosed(conn, reason, code),
    };
  }

  /** Starts the configured listeners; resolves with their bound addresses. */
  async listen(): Promise<{ tcp?: AddressInfo; ws?: AddressInfo }> {
    const o = this.options;
    const out: { tcp?: AddressInfo; ws?: AddressInfo } = {};
    if (o.tcp) {
      this.tcpServer = await listenTcp({ ...o.tcp, maxFrameBytes: o.maxFrameBytes, keepalive: o.keepalive }, (l) => this.accept(l));
      out.tcp = this.tcpServer.address() as AddressInfo;
    }
    if (o.ws) {
      this.wsServer = await listenWs({ ...o.ws, maxFrameBytes: o.maxFrameBytes, keepalive: o.keepalive }, (l) => this.accept(l));
      out.ws = this.wsServer.http.address() as AddressInfo;
    }
    return out;
  }

  /** Adopts a link from any transport (also used by tests with in-memory links). */
  accept(link: Link): ServerConnection {
    const conn = new ServerConnection(link, this.host);
    if (this.closing) {
      conn.closeWith('going-away');
      return conn;
    }
    this.connections.add(conn);
    return conn;
  }

  private async onHello(conn: ServerConnection, hello: HelloFrame) {
    const o = this.options;
    let identity;
    try {
      identity = await o.authenticate(hello, { remoteAddress: conn.link.remoteAddress, transport: conn.transport });
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      throw new ProtocolError('auth-failed', err instanceof Error ? err.message : 'authentication failed');
    }
    conn.userId = identity.userId;
    conn.deviceId = identity.deviceId;
    const grant = negotiate(o.heartbeat, hello);
    const now = o.wallClock.now();
    let session: SessionRecord | undefined;
    if (hello.resumeToken) {
      const found = await o.store.loadSession(hello.resumeToken, now);
      // A token is only good for the identity it was issued to.
      if (found && found.userId === conn.userId && found.deviceId === conn.deviceId) session = found;
    }
    const resumed = session !== undefined;
    session ??= {
      sessionId: randomUUID(),
      resumeToken: randomBytes(18).toString('base64url'),
      userId: conn.userId,
      deviceId: conn.deviceId,
      clientInfo: conn.clientInfo,
      createdAt: now,
    };
    session.clientInfo = conn.clientInfo;
    await o.store.saveSession(session, now + o.sessionTtlMs);
    if (conn.phase === 'closed') throw new LonglinkError('LL_ERR_CLOSED', 'connection closed during handshake');

    conn.sessionId = session.sessionId;
    const previous = this.registry.add(conn);
    if (previous && previous !== conn) previous.closeWith('replaced', 'a newer connection for this device took over');
    await o.store.setOnline({
      userId: conn.userId,
      deviceId: conn.deviceId,
      connectionId: conn.id,
      nodeId: o.nodeId,
      transport: conn.transport,
      since: now,
      clientInfo: conn.clientInfo,
    });
    if (!previous) this.emit('online', { ...ref(conn), resumed, clientInfo: conn.clientInfo });
    return { sessionId: session.sessionId, resumeToken: session.resumeToken, resumed, grant };
  }

  private onMessage(conn: ServerConnection, f: DataFrame): void {
    this.emit('message', { ...ref(conn), payload: f.payload, ...(f.id !== undefined ? { id: f.id } : {}) });
  }

  private onClosed(conn: ServerConnection, reason: DisconnectReason, code: number): void {
    this.connections.delete(conn);
    if (!this.registry.remove(conn)) return;
    const o = this.options;
    const now = o.wallClock.now();
    const silentForMs = o.clock.now() - conn.lastHeardAt;
    this.emit('offline', { ...ref(conn), reason, code, silentForMs });
    // Presence and session bookkeeping are best effort: a store outage must
    // not keep a dead connection around.
    void o.store.setOffline(conn.userId, conn.deviceId, conn.id).catch(() => {});
    void o.store
      .saveSession(
        { sessionId: conn.sessionId, resumeToken: conn.resumeToken, userId: conn.userId, deviceId: conn.deviceId, clientInfo: conn.clientInfo, createdAt: now },
        now + o.sessionTtlMs,
      )
      .catch(() => {});
  }

  /** Sends a DATA frame to every connected device of `userId`; returns how many devices it went to. */
  send(userId: string, payload: Uint8Array | string, opts: { id?: string } = {}): number {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    let n = 0;
    for (const conn of this.registry.devices(userId)) {
      if (conn.phase !== 'open') continue;
      conn.send({ type: FrameType.DATA, payload: bytes, ...(opts.id !== undefined ? { id: opts.id } : {}) });
      n++;
    }
    return n;
  }

  /** Sends a probe PING to a device now (the answer updates its RTT). */
  probe(userId: string, deviceId: string): boolean {
    const conn = this.registry.get(userId, deviceId);
    if (!conn || conn.phase !== 'open') return false;
    conn.ping();
    this.runner.kick();
    return true;
  }

  /** Closes a device's connection with reason `kicked` (the client does not reconnect). */
  kick(userId: string, deviceId?: string): number {
    const targets = deviceId === undefined ? [...this.registry.devices(userId)] : [this.registry.get(userId, deviceId)].filter((c) => c !== undefined);
    for (const c of targets) c!.closeWith('kicked');
    return targets.length;
  }

  /** Presence as the store sees it (across nodes, with a shared store). */
  presence(userId: string) {
    return this.options.store.devices(userId);
  }

  connection(userId: string, deviceId: string): ConnectionInfo | undefined {
    const c = this.registry.get(userId, deviceId);
    return c && info(c, this.options.clock.now());
  }

  listConnections(): ConnectionInfo[] {
    const now = this.options.clock.now();
    return [...this.registry.all()].map((c) => info(c, now));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  get onlineDevices(): number {
    return this.registry.size;
  }

  /** Stops listening and closes every connection with `going-away`. */
  async close(opts: { reconnectAfterMs?: number } = {}): Promise<void> {
    this.closing = true;
    for (const conn of [...this.connections]) {
      if (conn.phase === 'open' && opts.reconnectAfterMs !== undefined) {
        conn.send({ type: FrameType.GOAWAY, code: CloseCodes['going-away'], reconnectAfterMs: opts.reconnectAfterMs, reason: 'going-away' });
      }
      conn.closeWith('going-away');
    }
    this.runner.stop();
    const closers: Promise<void>[] = [];
    if (this.tcpServer) {
      const s = this.tcpServer;
      closers.push(new Promise((r) => s.close(() => r())));
    }
    if (this.wsServer) {
      const { http, wss } = this.wsServer;
      closers.push(new Promise((r) => wss.close(() => http.close(() => r()))));
      for (const c of wss.clients) c.terminate();
      http.closeAllConnections();
    }
    await Promise.all(closers);
    // A store handed in may be shared with other gateways; only ours is closed.
    if (this.ownsStore) await this.options.store.close();
  }
}

function ref(c: ServerConnection): DeviceRef {
  return { userId: c.userId, deviceId: c.deviceId, connectionId: c.id, sessionId: c.sessionId, transport: c.transport };
}

function info(c: ServerConnection, now: number): ConnectionInfo {
  return {
    ...ref(c),
    remoteAddress: c.link.remoteAddress,
    intervalMs: c.grant?.intervalMs ?? 0,
    direction: c.grant?.direction ?? 'client',
    lastHeardMsAgo: now - c.lastHeardAt,
    rttMs: c.rtt.current()?.srttMs ?? null,
    clientInfo: c.clientInfo,
    clientState: { ...c.clientState },
  };
}
