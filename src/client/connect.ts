import net from 'node:net';
import { WebSocket } from 'ws';
import { LonglinkError } from '../protocol/errors.js';
import { applyKeepalive, type KeepaliveOptions } from '../link/socket-tuning.js';
import { TcpLink } from '../link/tcp-link.js';
import { WsLink } from '../link/ws-link.js';
import type { Link } from '../link/link.js';

/**
 * Opens a Link to a gateway URL: `tcp://host:port` for the raw TCP transport,
 * `ws://host:port/path` for WebSocket.
 */
export async function dial(
  url: string,
  opts: { timeoutMs: number; maxFrameBytes: number; keepalive: KeepaliveOptions },
): Promise<Link> {
  const u = new URL(url);
  if (u.protocol === 'tcp:') return dialTcp(u, opts);
  if (u.protocol === 'ws:' || u.protocol === 'wss:') return dialWs(u, opts);
  throw new LonglinkError('LL_ERR_BAD_URL', `unsupported URL scheme ${u.protocol} (use tcp:// or ws://)`);
}

function dialTcp(u: URL, opts: { timeoutMs: number; maxFrameBytes: number; keepalive: KeepaliveOptions }): Promise<Link> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port), noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new LonglinkError('LL_ERR_CONNECT_TIMEOUT', `TCP connect to ${u.host} timed out`));
    }, opts.timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      applyKeepalive(socket, opts.keepalive);
      resolve(new TcpLink(socket, opts.maxFrameBytes));
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function dialWs(u: URL, opts: { timeoutMs: number; maxFrameBytes: number; keepalive: KeepaliveOptions }): Promise<Link> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(u, { perMessageDeflate: false, handshakeTimeout: opts.timeoutMs, maxPayload: opts.maxFrameBytes * 2 });
    let sock: net.Socket | undefined;
    ws.once('upgrade', (res) => {
      sock = res.socket as net.Socket;
      applyKeepalive(sock, opts.keepalive);
    });
    ws.once('open', () => {
      ws.removeAllListeners('error');
      resolve(new WsLink(ws, opts.maxFrameBytes, sock?.remoteAddress ?? u.hostname, sock?.remotePort ?? Number(u.port)));
    });
    ws.once('error', (err) => {
      ws.terminate();
      reject(err);
    });
  });
}
