import net from 'node:net';
import tls, { type TlsOptions } from 'node:tls';
import { applyKeepalive, type KeepaliveOptions } from '../../link/socket-tuning.js';
import { TcpLink } from '../../link/tcp-link.js';
import type { Link } from '../../link/link.js';
import type { PartialFrameHold } from '../../link/socket-link.js';

/** Accepts raw TCP (or TLS over TCP) connections and hands each to the gateway as a Link. */
export async function listenTcp(
  opts: { port: number; host: string; maxFrameBytes: number; keepalive: KeepaliveOptions; tls?: TlsOptions; handshakeTimeoutMs?: number; hold?: PartialFrameHold },
  onLink: (link: Link) => void,
): Promise<net.Server> {
  const handshakeMs = opts.handshakeTimeoutMs ?? 10_000;
  const adopt = (socket: net.Socket) => {
    applyKeepalive(socket, opts.keepalive);
    onLink(new TcpLink(socket, opts.maxFrameBytes, opts.hold ?? null));
  };
  const server = opts.tls
    ? // A peer that stalls in the TLS handshake is dropped at the same deadline as one that never says HELLO.
      tls.createServer({ ...opts.tls, handshakeTimeout: handshakeMs }, adopt)
    : net.createServer({ noDelay: true }, adopt);
  // A failed or stalled TLS handshake: drop the socket (Node leaves that to the listener).
  if (opts.tls) server.on('tlsClientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
