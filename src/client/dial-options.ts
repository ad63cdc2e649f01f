import type { KeepaliveOptions } from '../link/keepalive-limits.js';

/**
 * The `tls` option: node:tls's `ConnectionOptions` in Node, where
 * client/connect.ts fills this interface in. Declared empty here so the
 * declarations of `longlink/browser` (which has no use for it) import no Node
 * types: a browser-only project checking them (skipLibCheck off, no
 * @types/node) could not compile them.
 */
export interface ClientTlsOptions {}

/** What a client hands its dial for each attempt (the Node dial and the browser's, or a custom one). */
export interface DialOptions {
  timeoutMs: number;
  maxFrameBytes: number;
  keepalive: KeepaliveOptions;
  /** For `tls://` and `wss://`: trust (`ca`), `servername`, client certificates; node:tls options. */
  tls?: ClientTlsOptions;
  /** Local address to connect from (a multi-homed host; load generators spreading over source addresses). */
  localAddress?: string;
  /** Aborted when the client no longer wants this dial (close() during it): the dial stops and rejects. */
  signal?: AbortSignal;
}
