import http from 'node:http';
import https from 'node:https';
import type { TlsOptions } from 'node:tls';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { applyKeepalive, tuneListener, type KeepaliveOptions, type KeepaliveWarning } from '../../link/socket-tuning.js';
import { WsLink } from '../../link/ws-link.js';
import { WsSocketLink } from '../../link/ws-socket-link.js';
import type { Link } from '../../link/link.js';
import type { PartialFrameHold } from '../../link/socket-link.js';
import { refusalAnswer, refusalResponse } from '../../link/ws-refusal.js';
import { TokenBucket } from '../../core/token-bucket.js';

/** What the gateway decides about a raw socket at accept, before a byte of its upgrade is read. */
export interface UpgradeGate {
  /** Counts the socket in (null) or refuses it: reason and retry hint, as GOAWAY would carry. */
  admit(source: string): { reason: string; retryAfterMs: number; message: string } | null;
  /** An admitted socket ended before its upgrade finished. */
  abandoned(source: string): void;
  /** Whether a refused socket may be answered and wait for its peer to close (counted until refusedClosed), or is dropped at once. */
  holdRefused(source: string): boolean;
  refusedClosed(source: string): void;
}

/**
 * Accepts WebSocket upgrades on `path` and hands each to the gateway as a Link.
 * With a gate, admission happens at TCP accept like on the TCP port: a socket that
 * never finishes its HTTP upgrade is counted (per source, pending) from its first moment,
 * and a refused one gets an HTTP 503 carrying the GOAWAY hint, then a clean close.
 */
export async function listenWs(
  opts: { port: number; host: string; path: string; maxFrameBytes: number; keepalive: KeepaliveOptions; onKeepaliveWarning?: KeepaliveWarning; tls?: TlsOptions; handshakeTimeoutMs?: number; gate?: UpgradeGate; hold?: PartialFrameHold },
  /** `spentMs`: how long the socket took from its accept to the end of its upgrade (its TLS handshake included). */
  onLink: (link: Link, spentMs: number) => void,
): Promise<{ http: http.Server; wss: WebSocketServer; lingering: Set<Socket>; dropUpgrading: () => void }> {
  const handshakeMs = opts.handshakeTimeoutMs ?? 10_000;
  /** Refused sockets of a TLS listener, by remote address and port: answered once their TLS handshake is done. */
  const refusedTls = new Map<string, Refusal>();
  const keyOf = (s: Socket) => `${s.remoteAddress}|${s.remotePort}`;
  // Closed after the answer: a socket kept alive by a plain GET every few seconds would stay
  // counted as a pending handshake without ever finishing one.
  const refuse = (req: http.IncomingMessage, res: http.ServerResponse) => {
    // A refused wss:// socket gets its 503 and hint whatever it asks, as a refused ws:// one (answered at accept) does.
    const refusal = refusedTls.get(keyOf(req.socket as Socket));
    if (refusal) {
      const { headers, body } = refusalAnswer(refusal);
      res.writeHead(503, headers).end(body);
      return;
    }
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end('longlink: connect with a WebSocket\n');
  };
  // Node checks header deadlines every connectionsCheckingInterval (30 s by default): check often enough to matter.
  const httpOpts = { connectionsCheckingInterval: Math.max(100, Math.min(1000, handshakeMs / 2)) };
  const server: http.Server = opts.tls ? https.createServer({ ...httpOpts, ...opts.tls, handshakeTimeout: handshakeMs }, refuse) : http.createServer(httpOpts, refuse);
  if (opts.tls) server.on('tlsClientError', (_err, socket) => socket.destroy());
  // Slowloris on the upgrade request itself: the headers must come within the handshake deadline.
  server.headersTimeout = handshakeMs;
  server.requestTimeout = handshakeMs;
  const wss = new WebSocketServer({
    server,
    path: opts.path,
    perMessageDeflate: false,
    // longlink defines no subprotocol: ws would otherwise agree to the first one a client lists
    // (a client built for another protocol took the gateway for its server). None selected, such a
    // client (a browser too) fails the connection itself.
    handleProtocols: () => false,
    // Text messages are refused unread (frames are binary): validating their UTF-8 first would be work for nothing.
    skipUTF8Validation: true,
    // The gateway tracks every link it adopted (and destroys them on close): ws would hold each
    // WebSocket it made, and after a takeover never let go.
    clientTracking: false,
    // ws refuses (1009) above this; frames between the two limits get our own
    // frame-too-large code from WsLink, so ws's limit only bounds memory.
    maxPayload: opts.maxFrameBytes * 2,
  });
  /** Admitted raw sockets whose upgrade has not finished, by remote address and port, with their close listener and when they were accepted. */
  const upgrading = new Map<string, { socket: Socket; onClose: () => void; at: number; deadline: NodeJS.Timeout }>();
  if (opts.gate) {
    const gate = opts.gate;
    // The HTTP (or TLS) server's own accept handler runs only for sockets the gate admits (and, with TLS, refused ones).
    const inner = server.listeners('connection') as ((s: Socket) => void)[];
    server.removeAllListeners('connection');
    const refusalAnswers = new TokenBucket(REFUSED_TLS_PER_SEC, REFUSED_TLS_PER_SEC, performance.now());
    if (opts.tls) {
      // ws's upgrade handler runs only for sockets not refused; a refused one gets the 503 over TLS.
      const wsUpgrade = server.listeners('upgrade') as ((req: http.IncomingMessage, socket: Socket, head: Buffer) => void)[];
      server.removeAllListeners('upgrade');
      server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
        const refusal = refusedTls.get(keyOf(req.socket as Socket));
        if (refusal) answerRefused(socket, refusal);
        else for (const l of wsUpgrade) l.call(server, req, socket, head);
      });
    }
    server.on('connection', (socket: Socket) => {
      // Reset by its peer before it got here: no address, and nothing to serve. Admitted, all such
      // sockets shared one key below, each overwrote the last one's entry, and the overwritten ones
      // never gave their places back (2,000 resets held the whole pending backlog for ever).
      if (socket.remoteAddress === undefined) {
        socket.destroy();
        return;
      }
      const source = socket.remoteAddress;
      const refusal = gate.admit(source);
      if (refusal && opts.tls) {
        // Plaintext on a TLS port would reach the client as a TLS error ("wrong version number"), and
        // the hint would be lost: the refusal is answered inside TLS, so the handshake is done for it.
        // Not counted anywhere, so it is held briefly whatever the peer does; and the handshakes are
        // paced (a flood of refused sockets must not buy TLS work the admission refused): past the
        // pace a refused socket is dropped unanswered, and its client backs off on its own.
        if (!refusalAnswers.take(performance.now())) {
          socket.destroy();
          return;
        }
        const key = keyOf(socket);
        refusedTls.set(key, refusal);
        const t = setTimeout(() => socket.destroy(), Math.min(handshakeMs, REFUSED_TLS_MS));
        t.unref();
        socket.once('close', () => {
          clearTimeout(t);
          if (refusedTls.get(key) === refusal) refusedTls.delete(key);
        });
        for (const l of inner) l.call(server, socket);
        return;
      }
      if (refusal) {
        if (!gate.holdRefused(source)) {
          socket.destroy();
          return;
        }
        socket.once('close', () => gate.refusedClosed(source));
        refuseSocket(socket, refusal);
        return;
      }
      const key = keyOf(socket);
      // Released by its own close, whatever the map holds by then: a peer that resets a socket and
      // connects again from the same port has its new socket take the key before the old one's
      // close comes, and the old one, no longer found, used to keep its places for ever.
      const entry = {
        socket,
        at: performance.now(),
        // The handshake deadline from the accept, for the upgrade too: Node's headersTimeout counts from
        // a request's first byte, so a peer silent for most of the deadline, then dripping its headers,
        // held its pending slot for twice handshakeTimeoutMs (over TLS, its TLS handshake's on top).
        deadline: setTimeout(() => socket.destroy(), handshakeMs).unref(),
        onClose: () => {
          clearTimeout(entry.deadline);
          if (upgrading.get(key) === entry) upgrading.delete(key);
          gate.abandoned(source);
        },
      };
      upgrading.set(key, entry);
      socket.once('close', entry.onClose);
      for (const l of inner) l.call(server, socket);
    });
  }
  // What each upgraded socket sets itself once the listener holds the rest (tuneListener).
  let perSocket = opts.keepalive;
  /** Upgraded sockets whose link is closing (only those: an open link is the gateway's to close). */
  const lingering = new Set<Socket>();
  wss.on('connection', (ws, req) => {
    const socket = req.socket as Socket;
    // A TLS socket wraps the raw one; both have the peer's address and port. Upgraded: the
    // abandoned-upgrade listener has done its job.
    const key = keyOf(socket);
    const pending = upgrading.get(key);
    // The handshake deadline counts from the accept, as admission does: the upgrade does not start a second one.
    const spentMs = pending ? performance.now() - pending.at : 0;
    if (pending) {
      upgrading.delete(key);
      clearTimeout(pending.deadline);
      pending.socket.removeListener('close', pending.onClose);
    }
    applyKeepalive(socket, perSocket, opts.onKeepaliveWarning);
    // ws did the handshake; the link takes the socket from here (ws-framing.ts says why). Should a
    // later ws arrange its socket differently, its own WebSocket carries the link as before.
    if (takeOver(socket)) onLink(new WsSocketLink(socket, opts.maxFrameBytes, lingering, opts.hold ?? null), spentMs);
    else onLink(new WsLink(ws, opts.maxFrameBytes, socket.remoteAddress ?? '', socket.remotePort ?? 0), spentMs);
  });
  // ws re-emits its server's errors; the listen error below is the caller's (listen() rejects).
  wss.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      perSocket = tuneListener(server, opts.keepalive);
      resolve();
    });
  });
  // Admitted sockets whose TLS handshake or upgrade has not finished: no link yet, so the gateway's
  // close() reaches none, and (over TLS, where closeAllConnections does not see them either) the
  // server's close waited for each to time out.
  const dropUpgrading = () => {
    for (const u of [...upgrading.values()]) u.socket.destroy();
  };
  return { http: server, wss, lingering, dropUpgrading };
}

/** The listeners ws's WebSocket.setSocket puts on an upgraded socket, by function name. */
const WS_SOCKET_LISTENERS = [
  ['close', 'socketOnClose'],
  ['data', 'socketOnData'],
  ['end', 'socketOnEnd'],
  ['error', 'socketOnError'],
] as const;

/**
 * Detaches ws's WebSocket from a socket it just upgraded (in the 'connection'
 * event, before any byte after the handshake was read: ws put those back on
 * the socket with unshift). False, and nothing changed, when ws's listeners
 * are not the ones expected.
 */
function takeOver(socket: Socket): boolean {
  const found: [string, (...a: unknown[]) => void][] = [];
  for (const [event, name] of WS_SOCKET_LISTENERS) {
    const l = (socket.listeners(event) as ((...a: unknown[]) => void)[]).filter((f) => f.name === name);
    if (l.length !== 1) return false;
    found.push([event, l[0]]);
  }
  for (const [event, l] of found) socket.removeListener(event, l);
  // Cleared, not deleted: deleting a property puts the socket's properties in a dictionary (1.6 KB each).
  for (const sym of Object.getOwnPropertySymbols(socket)) {
    if (sym.description === 'websocket') (socket as unknown as Record<symbol, unknown>)[sym] = undefined;
  }
  return true;
}

type Refusal = { reason: string; retryAfterMs: number; message: string };

/**
 * How long a socket refused by a TLS listener may take for its TLS handshake and upgrade
 * request (at most handshakeTimeoutMs): it is counted in no budget.
 */
const REFUSED_TLS_MS = 2000;
/** Refused sockets of a TLS listener answered a second (burst as many); more are dropped unanswered. */
const REFUSED_TLS_PER_SEC = 100;

/**
 * Answers a refused socket with the 503 and closes it cleanly: its request is read and
 * dropped (closing with unread bytes would send a reset), and it is destroyed if the
 * peer has not closed within a second.
 */
function refuseSocket(socket: Socket, refusal: Refusal): void {
  answerRefused(socket, refusal);
  const t = setTimeout(() => socket.destroy(), 1000);
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

function answerRefused(socket: Socket, refusal: Refusal): void {
  socket.on('error', () => {});
  socket.resume();
  socket.end(refusalResponse(refusal));
}
