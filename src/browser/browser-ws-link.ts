import { LonglinkError, ProtocolError } from '../protocol/errors.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { decodeFrame, encodeFrame } from '../protocol/frame-codec.js';
import type { DialOptions } from '../client/dial-options.js';
import type { Link, LinkCloseInfo, LinkEvents } from '../link/link.js';

/** How often `awaitDrain` looks at `bufferedAmount`: the browser WebSocket has no drain event. */
const DRAIN_POLL_MS = 50;

/** A Link over the browser's WebSocket: one frame per binary message, as on the gateway's side. */
export class BrowserWsLink implements Link {
  readonly transport = 'ws' as const;
  readonly remotePort: number;
  private events: LinkEvents | null = null;
  private done = false;
  private poisoned = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly maxFrameBytes: number,
    readonly remoteAddress: string,
  ) {
    this.remotePort = Number(new URL(ws.url).port) || 0;
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onerror = () => this.finish({ error: new Error('WebSocket error') });
    ws.onclose = (e) => this.finish({ code: e.code, reason: e.reason });
  }

  get closed(): boolean {
    return this.done;
  }

  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  private drainPolling = false;

  bind(events: LinkEvents): void {
    this.events = events;
  }

  awaitDrain(): void {
    // One poll at a time, however often it is asked for (at most one pending timer per purpose).
    if (this.drainPolling) return;
    this.drainPolling = true;
    const poll = () => {
      if (this.done) return void (this.drainPolling = false);
      if (this.ws.bufferedAmount === 0) {
        this.drainPolling = false;
        this.events?.onLinkDrain?.();
      } else setTimeout(poll, DRAIN_POLL_MS);
    };
    setTimeout(poll, DRAIN_POLL_MS);
  }

  private onMessage(data: unknown): void {
    if (this.poisoned || this.done) return;
    try {
      if (!(data instanceof ArrayBuffer)) throw new ProtocolError('malformed-frame', 'text messages are not frames');
      if (data.byteLength > this.maxFrameBytes) {
        throw new ProtocolError('frame-too-large', `frame of ${data.byteLength} bytes exceeds the limit of ${this.maxFrameBytes}`);
      }
      this.events?.onLinkFrame(decodeFrame(new Uint8Array(data)));
    } catch (err) {
      this.poisoned = true;
      if (err instanceof ProtocolError) this.events?.onLinkError(err);
      else this.destroy();
    }
  }

  private finish(info: LinkCloseInfo): void {
    if (this.done) return;
    this.done = true;
    this.events?.onLinkClose(info);
  }

  send(f: Frame): void {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(encodeFrame(f));
  }

  close(code: number, reason: string): void {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) return this.destroy();
    this.ws.send(encodeFrame({ type: FrameType.CLOSE, code, reason }));
    // The browser takes 1000 or 3000-4999, and at most 123 bytes of reason.
    this.ws.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, truncateUtf8(reason, 123));
  }

  closedByPeer(code: number): void {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) return this.destroy();
    // The browser answers the peer's close frame itself; this starts ours if none came.
    this.ws.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000);
  }

  destroy(): void {
    // A browser cannot drop a socket outright; close() without waiting is the nearest.
    try {
      this.ws.close();
    } catch {
      /* already closing */
    }
    this.finish({ code: 1006, reason: 'destroyed' });
  }
}

/** Opens a WebSocket link (`ws://` or `wss://`; the browser's own trust store applies). */
export function browserDial(url: string, opts: DialOptions): Promise<Link> {
  return new Promise((resolve, reject) => {
    const u = new URL(url, globalThis.location?.href);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
      reject(new LonglinkError('LL_ERR_BAD_URL', `the browser client speaks ws:// and wss:// only, not ${u.protocol}`));
      return;
    }
    if (opts.signal?.aborted) {
      reject(new LonglinkError('LL_ERR_CLOSED', `dial of ${u.host} abandoned`));
      return;
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(u);
    } catch (err) {
      // Thrown by the constructor, not a failed connection: an insecure ws:// from an https page
      // (SecurityError), a URL the browser refuses (SyntaxError). Every retry would throw the same.
      reject(new LonglinkError('LL_ERR_BAD_URL', `the browser refuses to open ${u.href}: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    const onAbort = () => {
      done();
      ws.close();
      reject(new LonglinkError('LL_ERR_CLOSED', `dial of ${u.host} abandoned`));
    };
    const done = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const timer = setTimeout(() => {
      done();
      ws.close();
      reject(new LonglinkError('LL_ERR_CONNECT_TIMEOUT', `WebSocket connect to ${u.host} timed out`));
    }, opts.timeoutMs);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    ws.onopen = () => {
      done();
      resolve(new BrowserWsLink(ws, opts.maxFrameBytes, u.hostname));
    };
    ws.onerror = ws.onclose = () => {
      done();
      reject(new LonglinkError('LL_ERR_CONNECT_FAILED', `WebSocket connect to ${u.host} failed`));
    };
  });
}

function truncateUtf8(s: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(s);
  if (bytes.length <= maxBytes) return s;
  return new TextDecoder().decode(bytes.subarray(0, maxBytes)).replace(/\uFFFD$/, '');
}
