import net from 'node:net';
import tls, { type TlsOptions } from 'node:tls';
import { applyKeepalive, type KeepaliveOptions } from '../../link/socket-tuning.js';
import { TcpLink } from '../../link/tcp-link.js';
import type { Link } from '../../link/link.js';
import type { PartialFrameHold } from '../../link/socket-link.js';

/** Accepts raw TCP (or TLS over TCP) connections and hands each to the gateway as a Link. */
export async function listenTcp(
  opts: { port: number; host: string; maxFrameBytes: number; keepalive: KeepaliveOptions; tls?: TlsOptions; handshakeTimeoutMs?: number; hold?: PartialFrameHold },
  /** `spentMs`: how long the socket took from its TCP accept to the link (its TLS handshake), part of the handshake deadline. */
  onLink: (link: Link, spentMs: number) => void,
): Promise<net.Server> {
  const handshakeMs = opts.handshakeTimeoutMs ?? 10_000;
  /** TLS sockets in their TLS handshake, by remote address and port: when their TCP accept was. */
  const accepted = new Map<string, { at: number; raw: net.Socket; onClose: () => void }>();
  const keyOf = (s: net.Socket) => `${s.remoteAddress}|${s.remotePort}`;
  const adopt = (socket: net.Socket) => {
    applyKeepalive(socket, opts.keepalive);
    let spentMs = 0;
    if (opts.tls) {
      const key = keyOf(socket);
      const a = accepted.get(key);
      if (a !== undefined) {
        spentMs = performance.now() - a.at;
        accepted.delete(key);
        a.raw.removeListener('close', a.onClose);
      }
    }
    onLink(new TcpLink(socket, opts.maxFrameBytes, opts.hold ?? null), spentMs);
  };
  const server = opts.tls
    ? // A peer that stalls in the TLS handshake is dropped at the same deadline as one that never says HELLO.
      tls.createServer({ ...opts.tls, handshakeTimeout: handshakeMs }, adopt)
    : net.createServer({ noDelay: true }, adopt);
  if (opts.tls) {
    // A failed or stalled TLS handshake: drop the socket (Node leaves that to the listener).
    server.on('tlsClientError', (_err, socket) => socket.destroy());
    // The handshake deadline counts from the TCP accept, not again from the end of the TLS handshake:
    // a peer that took most of it for TLS, then sent no HELLO, was held for up to twice handshakeTimeoutMs.
    server.on('connection', (raw: net.Socket) => {
      const key = keyOf(raw);
      const a = {
        at: performance.now(),
        raw,
        onClose: () => {
          if (accepted.get(key) === a) accepted.delete(key);
        },
      };
      accepted.set(key, a);
      raw.once('close', a.onClose);
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
