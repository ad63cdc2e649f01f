import http from 'node:http';
import https from 'node:https';
import type { TlsOptions } from 'node:tls';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { applyKeepalive, type KeepaliveOptions } from '../../link/socket-tuning.js';
import { WsLink } from '../../link/ws-link.js';
import type { Link } from '../../link/link.js';

/** Accepts WebSocket upgrades on `path` and hands each to the gateway as a Link. */
export async function listenWs(
  opts: { port: number; host: string; path: string; maxFrameBytes: number; keepalive: KeepaliveOptions; tls?: TlsOptions; handshakeTimeoutMs?: number },
  onLink: (link: Link) => void,
): Promise<{ http: http.Server; wss: WebSocketServer }> {
  const handshakeMs = opts.handshakeTimeoutMs ?? 10_000;
  const refuse = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('longlink: connect with a WebSocket\n');
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
    // ws refuses (1009) above this; frames between the two limits get our own
    // frame-too-large code from WsLink, so ws's limit only bounds memory.
    maxPayload: opts.maxFrameBytes * 2,
  });
  wss.on('connection', (ws, req) => {
    const socket = req.socket as Socket;
    applyKeepalive(socket, opts.keepalive);
    onLink(new WsLink(ws, opts.maxFrameBytes, socket.remoteAddress ?? '', socket.remotePort ?? 0));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { http: server, wss };
}
