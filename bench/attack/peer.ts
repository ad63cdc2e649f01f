/**
 * The attacker's socket: raw frames over TCP, written as an attacker would
 * (no SDK), with the close code the gateway gave (CLOSE frame) recorded.
 */
import net from 'node:net';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameDecoder } from '../../src/protocol/frame-decoder.js';
import { FrameType, PROTOCOL_VERSION, type ClientState, type Frame } from '../../src/protocol/frames.js';

export class AttackPeer {
  readonly socket: net.Socket;
  closeCode: number | undefined;
  welcomed = false;
  readonly closed: Promise<void>;
  readonly connected: Promise<boolean>;
  private readonly decoder = new FrameDecoder(1 << 20);
  private onWelcome: (() => void) | null = null;

  constructor(port: number, opts: { localAddress?: string; read?: boolean } = {}) {
    this.socket = net.connect({ port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    this.socket.on('error', () => {});
    this.connected = new Promise((r) => {
      this.socket.once('connect', () => r(true));
      this.socket.once('close', () => r(false));
    });
    this.closed = new Promise((r) => this.socket.once('close', () => r()));
    if (opts.read === false) {
      // Never reads: the gateway's writes pile up in its own buffers.
      this.socket.pause();
      return;
    }
    this.socket.on('data', (d) => {
      try {
        this.decoder.push(d, (f) => this.frame(f));
      } catch {
        this.socket.destroy();
      }
    });
  }

  private frame(f: Frame): void {
    if (f.type === FrameType.WELCOME) {
      this.welcomed = true;
      this.onWelcome?.();
    } else if (f.type === FrameType.CLOSE || f.type === FrameType.GOAWAY) {
      this.closeCode ??= f.code;
    }
  }

  /** Resolves true on WELCOME, false if the socket closed (or `ms` passed) first. */
  welcome(ms = 5000): Promise<boolean> {
    if (this.welcomed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.onWelcome = () => (clearTimeout(t), resolve(true));
      void this.closed.then(() => (clearTimeout(t), resolve(this.welcomed)));
    });
  }

  hello(userId: string, deviceId: string, clientInfo?: ClientState): void {
    this.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId, deviceId, ...(clientInfo ? { clientInfo } : {}) });
  }

  send(f: Frame): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(encodeDelimited(f));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `n` loops at once until `until` (ms since epoch), each awaiting `body` in turn. */
export async function workers(n: number, until: number, body: (worker: number, round: number) => Promise<void>): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, async (_, w) => {
      for (let round = 0; Date.now() < until; round++) await body(w, round);
    }),
  );
}
