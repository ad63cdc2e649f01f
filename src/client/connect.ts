import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { WebSocket } from 'ws';
import { LonglinkError, RefusedError, UpgradeRefusedError } from '../protocol/errors.js';
import { GOAWAY_HEADER, parseGoawayHeader, parseRetryAfter } from '../link/ws-refusal.js';
import { applyKeepalive } from '../link/socket-tuning.js';
import { TcpLink } from '../link/tcp-link.js';
import { WsLink } from '../link/ws-link.js';
import type { Link } from '../link/link.js';
import type { DialOptions } from './dial-options.js';

export type { DialOptions } from './dial-options.js';

// In Node the `tls` option (ClientOptions, DialOptions) is node:tls's; it is declared apart
// (dial-options.ts) so the browser entry's declarations need no Node types.
declare module './dial-options.js' {
  interface ClientTlsOptions extends ConnectionOptions {}
}

function abortedError(u: URL): LonglinkError {
  return new LonglinkError('LL_ERR_CLOSED', `dial of ${u.host} abandoned`);
}

/**
 * Opens a Link to a gateway URL: `tcp://host:port` for the raw TCP transport,
 * `tls://host:port` for it over TLS, `ws://host:port/path` or `wss://` for
 * WebSocket.
 */
export async function dial(url: string, opts: DialOptions): Promise<Link> {
  const u = new URL(url);
  if (u.protocol === 'tcp:' || u.protocol === 'tls:') {
    // No default port for these (ws:// has 80): Number('') would dial port 0, refused for ever.
    if (u.port === '') throw new LonglinkError('LL_ERR_BAD_URL', `${url}: a ${u.protocol}// URL needs a port (tcp://host:7001)`);
    return dialTcp(u, opts, u.protocol === 'tls:');
  }
  if (u.protocol === 'ws:' || u.protocol === 'wss:') return dialWs(u, opts);
  throw new LonglinkError('LL_ERR_BAD_URL', `unsupported URL scheme ${u.protocol} (use tcp://, tls://, ws:// or wss://)`);
}

function dialTcp(u: URL, opts: DialOptions, secure: boolean): Promise<Link> {
  return new Promise((resolve, reject) => {
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const port = Number(u.port);
    const local = opts.localAddress ? { localAddress: opts.localAddress } : {};
    const socket = secure
      ? tls.connect({ ...opts.tls, host, port, ...local, ...(net.isIP(host) || opts.tls?.servername ? {} : { servername: host }) })
      : net.connect({ host, port, noDelay: true, ...local });
    const timer = setTimeout(() => {
      done();
      socket.destroy();
      reject(new LonglinkError('LL_ERR_CONNECT_TIMEOUT', `${secure ? 'TLS' : 'TCP'} connect to ${u.host} timed out`));
    }, opts.timeoutMs);
    const onAbort = () => {
      done();
      socket.destroy();
      reject(abortedError(u));
    };
    const done = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      done();
      socket.removeAllListeners('error');
      applyKeepalive(socket, opts.keepalive);
      resolve(new TcpLink(socket, opts.maxFrameBytes));
    });
    socket.once('error', (err) => {
      done();
      reject(err);
    });
  });
}

function dialWs(u: URL, opts: DialOptions): Promise<Link> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(u, { ...(u.protocol === 'wss:' ? opts.tls : {}), ...(opts.localAddress ? { localAddress: opts.localAddress } : {}), perMessageDeflate: false, handshakeTimeout: opts.timeoutMs, maxPayload: opts.maxFrameBytes * 2 });
    let sock: net.Socket | undefined;
    const onAbort = () => {
      ws.terminate();
      reject(abortedError(u));
    };
    const done = () => opts.signal?.removeEventListener('abort', onAbort);
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    ws.once('upgrade', (res) => {
      sock = res.socket as net.Socket;
      applyKeepalive(sock, opts.keepalive);
    });
    // A gateway that refuses before the upgrade answers 503 with its GOAWAY in a header.
    // Anything else in the way (a proxy, a load balancer) may answer 503 or 429 with a Retry-After.
    ws.once('unexpected-response', (_req, res) => {
      done();
      const goaway = parseGoawayHeader(res.headers[GOAWAY_HEADER]);
      const status = res.statusCode ?? 0;
      const retryAfterMs = status === 503 || status === 429 ? parseRetryAfter(res.headers['retry-after'], Date.now()) : undefined;
      ws.terminate();
      res.resume();
      reject(
        goaway
          ? new RefusedError(goaway.reason, goaway.retryAfterMs, `${u.host} refused the connection (${goaway.reason}); retry after ${goaway.retryAfterMs} ms`)
          : new UpgradeRefusedError(status, retryAfterMs, `${u.host} answered the WebSocket upgrade with HTTP ${status}${retryAfterMs !== undefined ? `; retry after ${retryAfterMs} ms` : ''}`),
      );
    });
    ws.once('open', () => {
      done();
      ws.removeAllListeners('error');
      resolve(new WsLink(ws, opts.maxFrameBytes, sock?.remoteAddress ?? u.hostname, sock?.remotePort ?? Number(u.port)));
    });
    ws.once('error', (err) => {
      done();
      ws.terminate();
      reject(err);
    });
  });
}
