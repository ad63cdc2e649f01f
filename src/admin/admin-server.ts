import { adminSocketBudget, MAX_ADMIN_SOCKETS, openFileLimit } from '../gateway/file-limit.js';
import { ApiError, openApiDocument, ServerApi } from './server-api.js';
import { sourceKey } from '../gateway/source-key.js';
import { LonglinkError } from '../protocol/errors.js';
import type { NonCloseErrorCode } from '../protocol/error-codes.js';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIPv4, type AddressInfo, type Socket } from 'node:net';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { ConnectionInfo, DrainOptions, Gateway } from '../gateway/gateway.js';
import { systemTimers } from '../core/clock.js';
import { GatewayMetrics, type MetricsOptions } from './metrics.js';
import { LiveFeed } from './live-feed.js';
import type { ClusterView, ConnectionDetail, ConnectionsPage, ConnectionView, Overview } from './api-types.js';

export interface AdminOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /**
   * When set, /api and /metrics need `Authorization: Bearer <token>`. GET /api/events, whose
   * EventSource cannot send headers, also takes `?token=`: the token, or its stream key
   * (GET /api/stream-key), which opens that stream only.
   */
  token?: string;
  /** What POST /api/drain does; default `gateway.drain(opts)`. `serve` drains and exits, as on SIGTERM. */
  onDrain?: (opts: DrainOptions) => void;
  /** Where the dashboard's files are (default: dist/web next to this module). */
  webRoot?: string;
  metrics?: MetricsOptions;
  log?: Logger;
  /**
   * The server API's key (/v1, for backends): `Authorization: Bearer <key>`.
   * Separate from `token`: neither opens the other's door. Without it the
   * server API answers only loopback callers.
   */
  apiKey?: string;
  /**
   * The URL other nodes reach this admin port at, kept in the shared store so
   * that any node's dashboard shows the whole cluster. Default
   * http://<host>:<port>, with 127.0.0.1 for a wildcard host.
   */
  advertiseUrl?: string;
}

/** What another node's dashboard may read through this one (GET only). */
const PROXIED = new Set(['overview', 'events', 'connections', 'presence']);
/** The event stream, this node's or another's through this one: the only path that takes `?token=`. */
const EVENT_STREAM = /^\/api\/(?:nodes\/[^/]+\/)?events$/;
const PEER_TIMEOUT_MS = 2000;
/**
 * An answer read through this node from another that goes this long without a byte is cut: a peer
 * paused or cut off without a reset sends nothing more, and its event stream ticks every second.
 */
export const PEER_STALL_MS = 10_000;

export const DEFAULT_ADMIN_PORT = 7422;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1']);

/** Whether an address only this machine can reach: the admin port may go without a token there. */
/** A peer address on this machine: 127.0.0.0/8, ::1, or 127.x as IPv4-mapped IPv6. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || (isIPv4(a) && a.startsWith('127.'));
}

/**
 * Why a caller without a credential is refused (403 LL_ERR_FORBIDDEN_HOST), or null for one on
 * this machine that names it by a loopback Host. For every door of the admin port that opens
 * without a token: the admin API, the server API without a key, the cluster primary's /metrics.
 */
export function notLoopback(req: IncomingMessage, hint: string): AdminError | null {
  const from = req.socket.remoteAddress ?? '';
  if (!isLoopbackAddress(from)) return new AdminError(403, 'LL_ERR_FORBIDDEN_HOST', `${from || 'a caller'} is not a loopback address; ${hint}`);
  const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '').toLowerCase();
  if (!isLoopbackHost(host)) return new AdminError(403, 'LL_ERR_FORBIDDEN_HOST', `Host ${host || '(none)'} is not a loopback name; ${hint}`);
  return null;
}

export function isLoopbackHost(host: string): boolean {
  // An address in 127.0.0.0/8 written as an address: "127.0.0.1.rebind.attacker.example" is a name
  // anyone can point at 127.0.0.1, and once passed this check as loopback (issue 20).
  return LOOPBACK_HOSTS.has(host) || (isIPv4(host) && host.startsWith('127.'));
}
const MAX_BODY_BYTES = 64 * 1024;
/** A server API request (a batch of pushes) may be larger. */
const API_MAX_BODY_BYTES = 1 << 20;
/** Server-API requests answered at once; more get 429 with Retry-After. */
export const MAX_API_IN_FLIGHT = 256;
/** Live event streams (dashboards) at once; more get 429. Each may buffer up to 1 MiB. */
export const MAX_EVENT_STREAMS = 64;
/**
 * Sockets the admin port holds at once, and from one address. Each is a file descriptor of the
 * process the gateway's devices need too: unbounded, one host opening sockets (no credential
 * needed to connect) could run the process out of files, and accept() would then reset devices.
 * One address may fill every request and stream slot, with room to spare for a keep-alive pool.
 */
export { MAX_ADMIN_SOCKETS };
export const MAX_ADMIN_SOCKETS_PER_ADDRESS = MAX_API_IN_FLIGHT + MAX_EVENT_STREAMS + 64;
/** The longest drain window or acknowledgement wait the admin API takes. */
const MAX_DRAIN_MS = 3_600_000;
/** A request's headers must arrive within this; a socket that sends none at all is closed then too. */
export const ADMIN_HEADERS_TIMEOUT_MS = 10_000;
const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
/** A page of the connection list: with clientInfo and state at their bounds (1 KiB each), under 3 MB of JSON. */
const MAX_LIST = 1000;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.png': 'image/png',
};

/** Request deadlines checked every second, not every 30 s (Node's default): a stalled request goes about when its time is up. */
export const ADMIN_SERVER_OPTIONS = { connectionsCheckingInterval: 1000 } as const;

/**
 * Each admin socket's deadline for its next request's headers (counted from its accept, then from the
 * answer that left it with no request in hand), and how many of its requests are being answered.
 */
const awaitingHeaders = new WeakMap<object, { deadline: NodeJS.Timeout | undefined; inHand: number }>();

/**
 * What one caller may hold of an admin port's HTTP server (created with ADMIN_SERVER_OPTIONS).
 * A request must arrive whole in time (the event stream is a GET whose request ends with its
 * headers, so its response may last). At most MAX_ADMIN_SOCKETS sockets,
 * MAX_ADMIN_SOCKETS_PER_ADDRESS from one address (an IPv6 one by its /64); more are closed at accept. A socket whose
 * next request's headers are not whole ADMIN_HEADERS_TIMEOUT_MS after its accept, or after the answer
 * that left it with no request in hand, is closed: Node's headersTimeout counts only from a request's
 * first byte, so silent sockets were held for ever, and ones silent for a while, then dripping
 * headers, for about two deadlines (on a kept-alive socket, its idle keep-alive timeout, then one).
 */
export function limitAdminSockets(server: Server): void {
  server.headersTimeout = ADMIN_HEADERS_TIMEOUT_MS;
  server.requestTimeout = 30_000;
  // Fewer under a low file limit; the gateway keeps this many files back from its devices.
  const budget = adminSocketBudget(openFileLimit());
  server.maxConnections = budget;
  const perAddressMax = Math.min(MAX_ADMIN_SOCKETS_PER_ADDRESS, budget);
  const perAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // Counted as the gateway's budgets count a source: an IPv6 peer by its /64, from any of whose
    // 2^64 addresses one laptop could otherwise open a full share each and take the whole port.
    const from = sourceKey(socket.remoteAddress ?? '');
    const n = (perAddress.get(from) ?? 0) + 1;
    if (n > perAddressMax) return void socket.destroy();
    perAddress.set(from, n);
    socket.once('close', () => {
      const left = (perAddress.get(from) ?? 1) - 1;
      if (left > 0) perAddress.set(from, left);
      else perAddress.delete(from);
    });
    // A deadline from the accept, not an idle timeout: Node's headersTimeout counts from a request's
    // first byte, so a socket silent for most of the deadline, then dripping its headers, was held
    // for about two. A request's headers, whole, clear it.
    const waiting = { deadline: headersDeadline(socket), inHand: 0 };
    awaitingHeaders.set(socket, waiting);
    socket.once('close', () => clearTimeout(waiting.deadline));
  });
  // While a request is in hand, Node's own deadlines cover the socket (a push may wait 30 s in silence).
  // Once its last one is answered, the next request's headers have a deadline of their own again: the
  // keep-alive timeout is an idle one (reset by every byte), so a kept-alive socket could drip each
  // next request's headers for about 15 s.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    // Kept: a response's close comes after the request has let go of its socket (req.socket is null by then).
    const socket = req.socket;
    const waiting = awaitingHeaders.get(socket);
    if (!waiting) return;
    clearTimeout(waiting.deadline);
    waiting.inHand++;
    res.once('close', () => {
      if (--waiting.inHand === 0 && !socket.destroyed) waiting.deadline = headersDeadline(socket);
    });
  });
}

function headersDeadline(socket: Socket): NodeJS.Timeout {
  return setTimeout(() => socket.destroy(), ADMIN_HEADERS_TIMEOUT_MS).unref();
}

/** A request the API refuses; `code` is stable, as for protocol errors. */
/** An admin request refused: its HTTP status and a stable code (docs/ERRORS.md). */
export class AdminError extends LonglinkError {
  constructor(
    readonly status: number,
    code: NonCloseErrorCode,
    message: string,
  ) {
    super(code, message);
    this.name = 'AdminError';
  }
}

/**
 * The admin port: Prometheus metrics, the JSON API (presence, connections
 * with their heartbeat state, kick, disconnect, probe, drain), the live event
 * stream and the dashboard that reads it. Bind it to a private address: with
 * no token it trusts whoever can reach it.
 */
export class AdminServer {
  readonly metrics: GatewayMetrics;
  readonly feed: LiveFeed;
  private readonly server: Server;
  private readonly files = new Map<string, { body: Buffer; type: string }>();
  private readonly streams = new Set<ServerResponse>();
  /** Server-API requests being answered now (a push may wait up to 30 s for its devices). */
  private apiInFlight = 0;
  /** The last live-feed event and its text: written to every stream, encoded once. */
  private lastEvent: unknown = null;
  private lastText = '';
  private readonly api: ServerApi;

  constructor(
    private readonly gw: Gateway,
    private readonly opts: AdminOptions = {},
  ) {
    this.metrics = new GatewayMetrics(gw, opts.metrics);
    this.api = new ServerApi(gw);
    this.feed = new LiveFeed(gw, { timers: systemTimers, wallNow: () => gw.options.wallClock.now(), now: () => gw.options.clock.now() });
    this.loadFiles(opts.webRoot ?? fileURLToPath(new URL('../../web/', import.meta.url)));
    this.server = createServer(ADMIN_SERVER_OPTIONS, (req, res) => {
      this.route(req, res).catch((err: unknown) => {
        const e = err instanceof AdminError ? err : new AdminError(500, 'LL_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
        // The URL without its query: a dashboard's ?token= must not reach the log.
        if (e.status === 500) opts.log?.error({ event: 'admin-error', err: e.message, url: (req.url ?? '').split('?')[0] }, 'admin request failed');
        drainThen(req, () => {
          if (!res.headersSent) {
            if (e.status === 429 || e.code === 'LL_ERR_CLOSED') res.setHeader('retry-after', '1');
            json(res, e.status, { error: { code: e.code, message: e.message } });
          } else res.end();
        });
      });
    });
    limitAdminSockets(this.server);
  }

  /** The dashboard's files, read once: only these names are served, so no path reaches outside. */
  private loadFiles(root: string): void {
    if (!existsSync(root)) return;
    for (const name of readdirSync(root)) {
      const ext = name.slice(name.lastIndexOf('.'));
      if (TYPES[ext]) this.files.set(name, { body: readFileSync(join(root, name)), type: TYPES[ext] });
    }
  }

  get hasDashboard(): boolean {
    return this.files.has('index.html');
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? DEFAULT_ADMIN_PORT, this.opts.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        const a = this.server.address() as AddressInfo;
        const host = !this.opts.host || this.opts.host === '0.0.0.0' || this.opts.host === '::' ? '127.0.0.1' : this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
        // Best effort: a node that cannot say where it is still serves its own dashboard.
        void this.gw.options.store.advertise?.(this.opts.advertiseUrl ?? `http://${host}:${a.port}`).catch(() => {});
        resolve(a);
      });
    });
  }

  async close(): Promise<void> {
    this.feed.close();
    this.metrics.close();
    for (const s of this.streams) s.end();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestTarget(req);
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path.startsWith('/v1/')) return this.serverApi(req, res, path, method);
    const isApi = path.startsWith('/api/');
    if (!isApi && path !== '/metrics') {
      if (method !== 'GET') throw new AdminError(405, 'LL_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
      return this.serveFile(res, path === '/' ? 'index.html' : path.slice(1));
    }
    if (!this.opts.token) this.checkHost(req);
    this.authorize(req, url);
    // Before the body checks below: any method (DELETE, PUT, a POST) was answered with a scrape.
    if (path === '/metrics' && method !== 'GET') throw new AdminError(405, 'LL_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    if (method === 'POST' && !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      // A browser cannot send this content type across origins without a preflight this server never answers.
      throw new AdminError(415, 'LL_ERR_UNSUPPORTED_MEDIA_TYPE', 'POST bodies must be application/json');
    }

    if (path === '/metrics') {
      const body = await this.metrics.text();
      res.writeHead(200, { 'content-type': this.metrics.contentType, 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    let parts: string[];
    try {
      parts = path.split('/').slice(2).map(decodeURIComponent);
    } catch {
      throw new AdminError(400, 'LL_ERR_BAD_PATH', `malformed escape in ${path}`);
    }
    const route = `${method} ${parts[0] ?? ''}`;
    switch (route) {
      case 'GET overview':
        return json(res, 200, this.feed.overview());
      case 'GET network':
        return json(res, 200, this.gw.networkStats());
      case 'GET events':
        return this.stream(req, res);
      case 'GET stream-key':
        return json(res, 200, { key: this.opts.token ? streamKey(this.opts.token) : null });
      case 'GET connections':
        if (parts[1] !== undefined) return json(res, 200, this.detail(parts[1]));
        return json(res, 200, this.list(url));
      case 'GET cluster':
        return json(res, 200, await this.cluster());
      case 'GET nodes':
        return this.viaNode(req, res, parts, url);
      case 'GET presence': {
        const userId = required(parts[1], 'userId');
        const devices = await fromStore(() => this.gw.presence(userId));
        const local = this.gw.listConnections({ userId }).map(view);
        return json(res, 200, { userId, online: devices.length > 0, devices, connections: local });
      }
      case 'POST kick': {
        const b = await body(req);
        const kicked = b.connectionId !== undefined ? this.gw.kickConnection(required(b.connectionId, 'connectionId')) : await fromStore(() => this.gw.closeAcrossCluster('kick', required(b.userId, 'userId'), optional(b.deviceId, 'deviceId')));
        this.opts.log?.info({ event: 'admin-kick', user: b.userId, device: b.deviceId, kicked }, 'kicked by admin');
        return json(res, 200, { kicked });
      }
      case 'POST disconnect': {
        const b = await body(req);
        const after = b.reconnectAfterMs;
        // As /v1/disconnect: a whole number of ms, at most an hour.
        if (after !== undefined && (typeof after !== 'number' || !Number.isInteger(after) || !(after >= 0 && after <= 3_600_000))) throw badRequest('reconnectAfterMs must be a whole number from 0 to 3600000');
        const userId = required(b.userId, 'userId');
        const deviceId = optional(b.deviceId, 'deviceId');
        const n = await fromStore(() => this.gw.closeAcrossCluster('disconnect', userId, deviceId, after !== undefined ? { reconnectAfterMs: after } : {}));
        this.opts.log?.info({ event: 'admin-disconnect', user: b.userId, device: b.deviceId, disconnected: n }, 'disconnected by admin');
        return json(res, 200, { disconnected: n });
      }
      case 'POST probe': {
        const b = await body(req);
        return json(res, 200, { probed: this.gw.probe(required(b.userId, 'userId'), required(b.deviceId, 'deviceId')) });
      }
      case 'POST drain': {
        const b = await body(req);
        const opts: DrainOptions = {};
        for (const k of ['windowMs', 'ackTimeoutMs'] as const) {
          const v = b[k];
          if (v === undefined) continue;
          // Bounded: past 2^31 ms Node's timers fire at once, and the drain would close everyone now.
          if (typeof v !== 'number' || !(v >= 0 && v <= MAX_DRAIN_MS)) throw badRequest(`${k} must be a number from 0 to ${MAX_DRAIN_MS} (an hour)`);
          opts[k] = v;
        }
        this.opts.log?.info({ event: 'admin-drain', ...opts, connections: this.gw.connectionCount }, 'drain requested by admin');
        json(res, 202, { draining: true, connections: this.gw.connectionCount, ...opts });
        if (this.opts.onDrain) this.opts.onDrain(opts);
        else void this.gw.drain(opts);
        return;
      }
    }
    if (['overview', 'network', 'events', 'stream-key', 'connections', 'presence', 'kick', 'disconnect', 'probe', 'drain', 'cluster', 'nodes'].includes(parts[0] ?? '')) {
      throw new AdminError(405, 'LL_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    }
    throw new AdminError(404, 'LL_ERR_NOT_FOUND', `no such endpoint: ${path}`);
  }

  /** Every node of the cluster with its overview, read from each node's own admin port. */
  private async cluster(): Promise<ClusterView> {
    const self = this.gw.options.nodeId;
    const dir = (await this.gw.options.store.directory?.().catch(() => null)) ?? [];
    if (!dir.some((d) => d.nodeId === self)) dir.unshift({ nodeId: self, adminUrl: null });
    const nodes: ClusterView['nodes'] = await Promise.all(
      dir.map(async (d) => {
        if (d.nodeId === self) return { nodeId: self, self: true, adminUrl: d.adminUrl, overview: this.feed.overview() };
        if (!d.adminUrl) return { nodeId: d.nodeId, self: false, adminUrl: null, error: 'no admin port advertised' };
        try {
          const r = await fetch(`${d.adminUrl}/api/overview`, { headers: this.peerHeaders(), signal: AbortSignal.timeout(PEER_TIMEOUT_MS) });
          if (!r.ok) throw new Error(`HTTP ${r.status}`);
          return { nodeId: d.nodeId, self: false, adminUrl: d.adminUrl, overview: (await r.json()) as Overview };
        } catch (err) {
          return { nodeId: d.nodeId, self: false, adminUrl: d.adminUrl, error: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
    const read = nodes.flatMap((n) => (n.overview ? [n.overview] : []));
    const sum = (f: (o: Overview) => number) => read.reduce((t, o) => t + f(o), 0);
    return {
      nodes,
      totals: {
        nodes: nodes.length,
        reachable: read.length,
        connections: sum((o) => o.connections.total),
        devices: sum((o) => o.online.devices),
        detections: sum((o) => o.detections),
        suspicions: sum((o) => o.suspicions),
        falseSuspicions: sum((o) => o.falseSuspicions),
      },
    };
  }

  /** The cluster's nodes share one admin token: this node's opens the others' doors. */
  private peerHeaders(): Record<string, string> {
    return this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {};
  }

  /**
   * GET /api/nodes/<id>/<overview|events|connections|presence>...: another
   * node's read-only API through this one, so one dashboard page can show any
   * node (the event stream too). Only nodes in the store's directory, only GET.
   */
  private async viaNode(req: IncomingMessage, res: ServerResponse, parts: string[], url: URL): Promise<void> {
    const id = required(parts[1], 'nodeId');
    const rest = parts.slice(2);
    if (!PROXIED.has(rest[0] ?? '')) throw new AdminError(404, 'LL_ERR_NOT_FOUND', `no such endpoint on a node: /${rest.join('/')} (overview, events, connections, presence)`);
    const search = new URLSearchParams(url.searchParams);
    search.delete('token');
    const q = search.size > 0 ? `?${search}` : '';
    const path = `/api/${rest.map(encodeURIComponent).join('/')}${q}`;
    if (id === this.gw.options.nodeId) {
      // This node: answered here, as if asked directly.
      req.url = path + (url.searchParams.has('token') ? `${q ? '&' : '?'}token=${encodeURIComponent(url.searchParams.get('token')!)}` : '');
      return this.route(req, res);
    }
    const dir = (await fromStore(async () => this.gw.options.store.directory?.())) ?? [];
    const peer = dir.find((d) => d.nodeId === id);
    if (!peer?.adminUrl) throw new AdminError(404, 'LL_ERR_NOT_FOUND', `no node ${id} with an admin port in the cluster`);
    // A caller gone during the look-up closed before anything below listened for it: the peer's
    // answer (an event stream, one of that node's MAX_EVENT_STREAMS) was still asked for and piped
    // into a response nobody reads, held until it filled the buffers and then went PEER_STALL_MS
    // unread (over a minute at one tick a second).
    if (res.destroyed || req.destroyed) return;
    const target = new URL(path, peer.adminUrl);
    await new Promise<void>((resolve) => {
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const up = send(target, { method: 'GET', headers: { ...this.peerHeaders(), accept: req.headers.accept ?? '*/*' }, timeout: PEER_TIMEOUT_MS }, (peerRes) => {
        // Streams (the event stream) last: from here the timeout is for silence (PEER_STALL_MS), not the whole answer.
        up.setTimeout(PEER_STALL_MS);
        res.writeHead(peerRes.statusCode ?? 502, { 'content-type': peerRes.headers['content-type'] ?? 'application/json', 'cache-control': 'no-store' });
        peerRes.pipe(res);
        // An answer the peer cut short (it died, the link broke) is cut here too: pipe() ends this
        // one only on the peer's end, so it was left open, unfinished, for ever (a stream read by
        // anything but the dashboard, with its watchdog, hung; a page never completed).
        peerRes.on('close', () => {
          if (!peerRes.complete) res.destroy();
          resolve();
        });
        peerRes.on('error', () => {}); // 'close' follows
      });
      up.on('timeout', () => up.destroy(new Error(res.headersSent ? `nothing for ${PEER_STALL_MS} ms` : `no answer within ${PEER_TIMEOUT_MS} ms`)));
      up.on('error', (err) => {
        if (!res.headersSent) json(res, 502, { error: { code: 'LL_ERR_PEER_UNAVAILABLE', message: `node ${id} at ${peer.adminUrl}: ${err.message}` } });
        else res.destroy(); // cut, not ended: what came is not the whole answer
        resolve();
      });
      req.on('close', () => up.destroy());
      up.end();
    });
  }

  /** /v1: the server API for backends (server-api.ts), behind its own key. */
  private async serverApi(req: IncomingMessage, res: ServerResponse, path: string, method: string): Promise<void> {
    const op = path.slice(4);
    if (op === 'openapi.json' && method === 'GET') return json(res, 200, openApiDocument(PACKAGE_VERSION));
    if (this.opts.apiKey) {
      if (!sameSecret(bearer(req), this.opts.apiKey)) throw new AdminError(401, 'LL_ERR_UNAUTHORIZED', 'a valid API key is required (Authorization: Bearer <key>)');
    } else {
      this.checkHost(req, 'set an API key (--api-key) to serve other names');
    }
    if (method !== 'POST') throw new AdminError(405, 'LL_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}: the server API takes POST with a JSON body`);
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new AdminError(415, 'LL_ERR_UNSUPPORTED_MEDIA_TYPE', 'POST bodies must be application/json');
    if (this.apiInFlight >= MAX_API_IN_FLIGHT) throw new AdminError(429, 'LL_ERR_TOO_MANY_REQUESTS', `${this.apiInFlight} server-API requests are being answered; retry shortly`);
    this.apiInFlight++;
    try {
      const args = await body(req, API_MAX_BODY_BYTES);
      json(res, 200, await this.api.run(op, args));
    } catch (err) {
      if (err instanceof ApiError) throw new AdminError(err.status, err.code, err.message);
      if (err instanceof LonglinkError && err.code === 'LL_ERR_STORE_UNAVAILABLE') throw new AdminError(503, err.code, err.message);
      throw err;
    } finally {
      this.apiInFlight--;
    }
  }

  /**
   * Without a credential, only loopback callers are served: from a loopback
   * address (the Host header is the caller's to write: on a public port a
   * caller from anywhere would send `Host: 127.0.0.1`), and with a loopback
   * Host name (no DNS rebinding from a browser on this machine).
   */
  private checkHost(req: IncomingMessage, hint = 'set an admin token to serve other names'): void {
    const refused = notLoopback(req, hint);
    if (refused) throw refused;
  }

  private authorize(req: IncomingMessage, url: URL): void {
    const want = this.opts.token;
    if (!want) return;
    let given = bearer(req);
    if (given === '' && url.searchParams.has('token')) {
      // Only the event stream takes the token in its URL (a browser's EventSource sends no headers):
      // a URL is logged by proxies and kept in histories, so a token there must not also kick or drain.
      if (req.method !== 'GET' || !EVENT_STREAM.test(url.pathname)) {
        throw new AdminError(401, 'LL_ERR_UNAUTHORIZED', 'the admin token goes in an Authorization: Bearer header here (?token= is taken only by GET /api/events)');
      }
      given = url.searchParams.get('token')!;
      // The dashboard's stream URL carries the stream key, not the token: such a URL, in a
      // proxy's log, opens this stream and nothing else.
      if (sameSecret(given, streamKey(want))) return;
    }
    if (!sameSecret(given, want)) throw new AdminError(401, 'LL_ERR_UNAUTHORIZED', 'a valid admin token is required');
  }

  private serveFile(res: ServerResponse, name: string): void {
    const f = this.files.get(name);
    if (!f) {
      const hint = this.files.size === 0 ? ' (the dashboard is not built: run `npm run build`)' : '';
      throw new AdminError(404, 'LL_ERR_NOT_FOUND', `no such file: /${name}${hint}`);
    }
    // Never in another site's frame: without a token the loopback page needs no credential, so any
    // page its operator visits could frame it under a decoy and have a row and Kick clicked.
    res.writeHead(200, { 'content-type': f.type, 'cache-control': 'no-cache', 'x-frame-options': 'DENY', 'content-security-policy': "frame-ancestors 'none'" });
    res.end(f.body);
  }

  private list(url: URL): ConnectionsPage {
    const user = url.searchParams.get('user');
    const limit = Math.min(MAX_LIST, Math.max(1, Number(url.searchParams.get('limit') ?? 200) || 200));
    const cursor = url.searchParams.get('before');
    if (cursor !== null && !/^[1-9]\d{0,15}$/.test(cursor)) throw badRequest('before: a cursor from a previous page');
    // Most recently accepted first: what an operator watching the page just caused. One more than
    // the page tells whether there is a next.
    const conns = this.gw.listConnections({ ...(user !== null ? { userId: user } : {}), limit: limit + 1, ...(cursor !== null ? { before: Number(cursor) } : {}) });
    const page = conns.slice(0, limit);
    return {
      total: user !== null ? this.gw.deviceCount(user) : this.gw.onlineDevices,
      connections: page.map(view),
      ...(conns.length > limit ? { next: String(page[page.length - 1].serial) } : {}),
    };
  }

  private detail(connectionId: string): ConnectionDetail {
    const c = this.gw.connectionById(connectionId);
    const trace = this.gw.traceConnection(connectionId);
    if (!c || !trace) throw new AdminError(404, 'LL_ERR_NOT_FOUND', `no open connection ${connectionId} on this node`);
    // Monotonic trace times to wall clock.
    const offset = this.gw.options.wallClock.now() - this.gw.options.clock.now();
    return {
      connection: view(c),
      timeline: {
        tracingSince: Math.round(trace.since + offset),
        keptSince: Math.round(trace.keptSince + offset),
        events: trace.points.map((p) => ({ t: Math.round(p.at + offset), kind: p.kind, ...(p.value !== undefined ? { value: Math.round(p.value * 100) / 100 } : {}) })),
      },
    };
  }

  /** Server-sent events: a snapshot, then every tick and online/offline notice. */
  private stream(req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= MAX_EVENT_STREAMS) throw new AdminError(429, 'LL_ERR_TOO_MANY_REQUESTS', `${this.streams.size} event streams are open`);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    req.socket.setNoDelay(true);
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    send('snapshot', this.feed.snapshot());
    const stop = this.feed.subscribe((e) => {
      // A dashboard that stopped reading is dropped rather than buffered for.
      if (res.writableLength > 1 << 20) return res.destroy();
      if (e !== this.lastEvent) {
        this.lastEvent = e;
        this.lastText = `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
      }
      res.write(this.lastText);
    });
    this.streams.add(res);
    res.on('close', () => {
      stop();
      this.streams.delete(res);
    });
  }
}

function view(c: ConnectionInfo): ConnectionView {
  return {
    connectionId: c.connectionId,
    userId: c.userId,
    deviceId: c.deviceId,
    sessionId: c.sessionId,
    transport: c.transport,
    remoteAddress: c.remoteAddress,
    policy: c.policy,
    announcedIntervalMs: c.announcedIntervalMs,
    connectedForMs: Math.round(c.connectedForMs),
    lastHeardMsAgo: Math.round(c.lastHeardMsAgo),
    rttMs: c.rttMs === null ? null : Math.round(c.rttMs * 100) / 100,
    suspected: c.suspected,
    clientInfo: c.clientInfo,
    clientState: c.clientState,
    stats: c.stats,
    unacked: c.unacked,
    path: c.path,
  };
}

/**
 * The request's target as a URL. Node's parser lets through targets the URL parser refuses
 * (`//[`, `http://[::1/`): thrown from a request handler, one such request with no credential
 * answered 500 with an error line logged each time, and ended the process of a cluster's primary.
 * A target starting with two slashes is refused too, though the URL parser takes it.
 */
export function requestTarget(req: IncomingMessage): URL {
  const target = req.url ?? '/';
  // `//host/...` (and `/\host`, a slash to the URL parser) is a scheme-relative reference, read as a
  // host: the dashboard was served at http://gw//evil.example/, and built its links from that path.
  if (/^[/\\]{2}/.test(target)) throw new AdminError(400, 'LL_ERR_BAD_PATH', 'the request target is not a path (it starts with //)');
  try {
    return new URL(target, 'http://admin');
  } catch {
    throw new AdminError(400, 'LL_ERR_BAD_PATH', 'the request target is not a path');
  }
}

/** The token of an `Authorization: Bearer <token>` header ('' without one). */
export function bearer(req: IncomingMessage): string {
  // The scheme is case-insensitive (RFC 9110 11.1): `bearer x` from a hand-written client is the same.
  const m = /^bearer +(.+)$/i.exec(req.headers.authorization ?? '');
  return m ? m[1].trim() : '';
}

/**
 * What the dashboard puts in its event stream's URL instead of the admin token (a URL is logged by
 * proxies): taken as `?token=` by GET /api/events only, and derived, so the nodes of a cluster,
 * which share one token, share it too.
 */
export function streamKey(token: string): string {
  return createHmac('sha256', token).update('longlink admin event stream').digest('base64url');
}

/**
 * Compares a secret given by a caller with the one expected, in constant time: their SHA-256
 * digests, one length whatever was given. Comparing the strings returned at once when the lengths
 * differed, so how long a refusal took told any caller the key's length.
 */
export function sameSecret(given: string, want: string): boolean {
  return timingSafeEqual(digest(given), digest(want));
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Most of a refused request body read and dropped before its error answer; past it, the socket is closed. */
const DRAIN_MAX_BYTES = 8 << 20;

/**
 * Answers an error once the request's body is in (read and dropped): answered while the client
 * was still writing it, and the socket closed, the client got a reset and never read the answer
 * (a 401 or 413 seen as a network error). A body over DRAIN_MAX_BYTES is not waited for: the
 * answer goes and the socket is closed. A body that never ends is Node's requestTimeout's.
 */
function drainThen(req: IncomingMessage, answer: () => void): void {
  if (req.complete || req.destroyed || req.readableEnded) return answer();
  if (Number(req.headers['content-length']) > DRAIN_MAX_BYTES) {
    answer();
    req.socket.destroySoon();
    return;
  }
  let read = 0;
  const onData = (chunk: Buffer) => {
    read += chunk.length;
    if (read > DRAIN_MAX_BYTES) {
      req.off('data', onData);
      req.off('end', answer);
      answer();
      req.socket.destroySoon();
    }
  };
  req.on('data', onData);
  req.once('end', answer);
  req.resume();
}

function json(res: ServerResponse, status: number, body: unknown): void {
  // Serialised before the status line: an answer that cannot be (a BigInt from an application's
  // Store, a cycle) throws while the caller's 500 can still be sent, not after a 200 left empty.
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * A call through the store (presence, the other nodes told of a kick): its failure (Redis down or
 * paused) is 503 LL_ERR_STORE_UNAVAILABLE, as in the server API, not a 500 logged as the admin
 * port's own fault. A kick or disconnect has closed this node's connections already; a retry
 * tells the others.
 */
async function fromStore<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof AdminError) throw err;
    throw new AdminError(503, 'LL_ERR_STORE_UNAVAILABLE', `the store is unavailable: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function badRequest(message: string): AdminError {
  return new AdminError(400, 'LL_ERR_BAD_REQUEST', message);
}

function required(v: unknown, name: string): string {
  if (typeof v !== 'string' || v === '') throw badRequest(`${name} is required (a non-empty string)`);
  return v;
}

function optional(v: unknown, name: string): string | undefined {
  return v === undefined ? undefined : required(v, name);
}

/**
 * The request's JSON body, at most `max` bytes. Over it, refused (413) without reading on: what is
 * left is read and dropped by the error answer (drainThen), not cut off with the socket, so a
 * client that writes its whole body before reading gets the 413, not a reset.
 */
async function body(req: IncomingMessage, max = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
  const tooLarge = () => new AdminError(413, 'LL_ERR_TOO_LARGE', `request body over ${max} bytes`);
  if (Number(req.headers['content-length']) > max) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
      else {
        stop();
        req.pause();
        reject(tooLarge());
      }
    };
    const onEnd = () => {
      stop();
      resolve();
    };
    // Cut short (the caller went away mid-upload, or Node's requestTimeout cut a slow one): the
    // caller's doing, not a 500 logged as the admin port's own failure.
    const onClose = (err?: Error) => {
      stop();
      reject(badRequest(`the request body did not arrive whole (${err?.message ?? 'aborted'})`));
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
    req.once('error', onClose);
  });
  if (size === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw badRequest('the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badRequest('the body must be a JSON object');
  return parsed as Record<string, unknown>;
}
