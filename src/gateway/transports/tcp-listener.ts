import net from 'node:net';
import tls, { type TlsOptions } from 'node:tls';
import { applyKeepalive, tuneListener, type KeepaliveOptions, type KeepaliveWarning } from '../../link/socket-tuning.js';
import { TcpLink } from '../../link/tcp-link.js';
import type { Link } from '../../link/link.js';
import type { PartialFrameHold } from '../../link/socket-link.js';

/** What the gateway decides about a raw socket of a TLS listener at its TCP accept, before its TLS handshake. */
export interface AcceptGate {
  /** Counts the socket in (null) or refuses it (non-null: it is closed, no TLS session exists to answer in). */
  admit(source: string): unknown;
  /** An admitted socket ended before its TLS handshake finished. */
  abandoned(source: string): void;
}

/** The listening server, and a way to drop the sockets it accepted that are no link yet. */
export type TcpListener = net.Server & {
  /**
   * Destroys the sockets still in their TLS handshake: not links yet, the gateway's close() reaches
   * none of them, and the server's close waited for each to time out (handshakeTimeoutMs).
   */
  dropHandshaking(): void;
};

/**
 * Accepts raw TCP (or TLS over TCP) connections and hands each to the gateway as a Link.
 * With TLS and a gate, admission happens at the TCP accept (as on the WebSocket port): a socket
 * stalled in its TLS handshake is counted per source and pending from its first moment.
 */
export async function listenTcp(
  opts: { port: number; host: string; maxFrameBytes: number; keepalive: KeepaliveOptions; onKeepaliveWarning?: KeepaliveWarning; tls?: TlsOptions; handshakeTimeoutMs?: number; hold?: PartialFrameHold; gate?: AcceptGate },
  /**
   * `spentMs`: how long the socket took from its TCP accept to the link (its TLS handshake), part of the handshake deadline;
   * `admitted`: the gate counted it at its TCP accept (the gateway must not count it again).
   */
  onLink: (link: Link, spentMs: number, admitted: boolean) => void,
): Promise<TcpListener> {
  const handshakeMs = opts.handshakeTimeoutMs ?? 10_000;
  /** TLS sockets in their TLS handshake, by remote address and port: when their TCP accept was. */
  const accepted = new Map<string, { at: number; raw: net.Socket; onClose: () => void; admitted: boolean }>();
  const keyOf = (s: net.Socket) => `${s.remoteAddress}|${s.remotePort}`;
  // What each accepted socket sets itself once the listener holds the rest (tuneListener).
  let perSocket = opts.keepalive;
  const adopt = (socket: net.Socket) => {
    applyKeepalive(socket, perSocket, opts.onKeepaliveWarning);
    let spentMs = 0;
    let admitted = false;
    if (opts.tls) {
      const key = keyOf(socket);
      const a = accepted.get(key);
      if (a !== undefined) {
        spentMs = performance.now() - a.at;
        admitted = a.admitted;
        accepted.delete(key);
        a.raw.removeListener('close', a.onClose);
      }
    }
    onLink(new TcpLink(socket, opts.maxFrameBytes, opts.hold ?? null), spentMs, admitted);
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
    // With a gate, admission happens here too, before the TLS handshake: sockets stalled in it were
    // counted nowhere (no per-source or pending limit), and one address could hold any number of them
    // for the handshake deadline each, up to the process's file limit. The TLS server's own accept
    // handler runs only for the sockets the gate admits; a refused one is closed unread.
    const gate = opts.gate;
    const inner = server.listeners('connection') as ((s: net.Socket) => void)[];
    if (gate) server.removeAllListeners('connection');
    server.on('connection', (raw: net.Socket) => {
      // Reset by its peer before it got here: no address, and nothing to serve (admitted, all such
      // sockets shared one key below and the overwritten ones never gave their places back).
      if (gate && raw.remoteAddress === undefined) {
        raw.destroy();
        return;
      }
      const source = raw.remoteAddress ?? '';
      if (gate && gate.admit(source) !== null) {
        raw.destroy();
        return;
      }
      const key = keyOf(raw);
      const a = {
        at: performance.now(),
        raw,
        admitted: gate !== undefined,
        onClose: () => {
          if (accepted.get(key) === a) accepted.delete(key);
          // Closed before its TLS handshake finished (a TLS error, the deadline, the peer gone): its places
          // come back, whatever the map holds by then (a peer that resets and connects again from the same
          // port has its new socket take the key before the old one's close comes).
          if (gate) gate.abandoned(source);
        },
      };
      accepted.set(key, a);
      raw.once('close', a.onClose);
      if (gate) for (const l of inner) l.call(server, raw);
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      perSocket = tuneListener(server, opts.keepalive);
      resolve();
    });
  });
  return Object.assign(server, {
    dropHandshaking: () => {
      for (const a of [...accepted.values()]) a.raw.destroy();
    },
  });
}
