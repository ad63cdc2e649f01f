import net from 'node:net';
import { applyKeepalive, type KeepaliveOptions } from '../../link/socket-tuning.js';
import { TcpLink } from '../../link/tcp-link.js';
import type { Link } from '../../link/link.js';

/** Accepts raw TCP connections and hands each to the gateway as a Link. */
export async function listenTcp(
  opts: { port: number; host: string; maxFrameBytes: number; keepalive: KeepaliveOptions },
  onLink: (link: Link) => void,
): Promise<net.Server> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    applyKeepalive(socket, opts.keepalive);
    onLink(new TcpLink(socket, opts.maxFrameBytes));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
