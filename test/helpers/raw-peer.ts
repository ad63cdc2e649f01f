import net from 'node:net';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameDecoder } from '../../src/protocol/frame-decoder.js';
import { FrameType, PROTOCOL_VERSION, type Frame } from '../../src/protocol/frames.js';

/**
 * A hand-driven peer over a real TCP socket, for tests that must send what
 * the client SDK never would: it writes frames or raw bytes and records every
 * frame the gateway sends until the socket closes.
 */
export class RawPeer {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  readonly connected: Promise<void>;
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder(16 << 20);
  private waiters: { match: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];

  constructor(port: number, opts: { localAddress?: string } = {}) {
    this.socket = net.connect({ port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    this.socket.on('error', () => {});
    this.connected = new Promise((r) => this.socket.once('connect', () => r()));
    this.closed = new Promise((r) => this.socket.once('close', () => r()));
    this.socket.on('data', (d) => {
      try {
        this.decoder.push(d, (f) => {
          this.frames.push(f);
          this.waiters = this.waiters.filter((w) => !(w.match(f) && (w.resolve(f), true)));
        });
      } catch {
        this.socket.destroy();
      }
    });
  }

  send(...frames: Frame[]): void {
    for (const f of frames) this.socket.write(encodeDelimited(f));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  hello(userId: string, deviceId = 'd', extra: Record<string, unknown> = {}): void {
    this.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId, deviceId, ...extra } as Frame);
  }

  /** The first frame (already received or yet to come) that matches. */
  next(match: (f: Frame) => boolean, timeoutMs = 3000): Promise<Frame> {
    const have = this.frames.find(match);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms (got ${this.frames.map((f) => f.type).join(',')})`)), timeoutMs);
      this.waiters.push({ match, resolve: (f) => (clearTimeout(t), resolve(f)) });
    });
  }

  welcome(timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.type === FrameType.WELCOME, timeoutMs);
  }

  /** The CLOSE code received, if any. */
  get closeCode(): number | undefined {
    return this.frames.find((f): f is Extract<Frame, { type: 8 }> => f.type === FrameType.CLOSE)?.code;
  }

  get goaway(): Extract<Frame, { type: 7 }> | undefined {
    return this.frames.find((f): f is Extract<Frame, { type: 7 }> => f.type === FrameType.GOAWAY);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
