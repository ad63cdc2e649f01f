import http from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { applyKeepalive, type KeepaliveOptions } from '../../link/socket-tuning.js';
import { WsLink } from '../../link/ws-link.js';
import type { Link } from '../../link/link.js';

/** Accepts WebSocket upgrades on `path` and hands each to the gateway as a Link. */
export async function listenWs(
  opts: { port: number; host: string; path: string; maxFrameBytes: number; keepalive: KeepaliveOptions },
  onLink: (link: Link) => void,
): Promise<{ http: http.Server; wss: WebSocketServer }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('longlink: connect with a WebSocket\n');
  });
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
