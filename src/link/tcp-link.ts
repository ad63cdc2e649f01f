import type { Socket } from 'node:net';
import { ProtocolError } from '../protocol/errors.js';
import { FrameType, type Frame } from '../protocol/frames.js';
import { encodeDelimited } from '../protocol/frame-codec.js';
import { FrameDecoder } from '../protocol/frame-decoder.js';
import { CLOSE_LINGER_MS, type Link, type LinkEvents } from './link.js';

const noop = () => {};

/** A Link over a raw TCP (or TLS) socket: varint length-prefixed frames. */
export class TcpLink implements Link {
  readonly transport = 'tcp' as const;
  readonly remoteAddress: string;
  readonly remotePort: number;
  private readonly decoder: FrameDecoder;
  private events: LinkEvents | null = null;
  private done = false;
  private poisoned = false;

  constructor(
    readonly socket: Socket,
    maxFrameBytes: number,
  ) {
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.decoder = new FrameDecoder(maxFrameBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.finish({ error: err }));
    socket.on('close', () => this.finish({}));
  }

  get closed(): boolean {
    return this.done;
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  bind(events: LinkEvents): void {
    this.events = events;
  }

  private onData(chunk: Buffer): void {
    if (this.poisoned || this.done) return;
    try {
      this.decoder.push(chunk, this.deliver);
    } catch (err) {
      this.fail(err);
    }
  }

  private readonly deliver = (f: Frame): void => {
    if (!this.poisoned && !this.done) this.events?.frame(f);
  };

  private onEnd(): void {
    try {
      this.decoder.end();
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    this.poisoned = true;
    if (err instanceof ProtocolError) this.events?.error(err);
    else this.destroy();
  }

  private finish(info: { error?: Error }): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
    this.events?.close(info);
  }

  send(f: Frame): void {
    if (this.done || this.socket.destroyed) return;
    this.socket.write(encodeDelimited(f));
  }

  close(code: number, reason: string): void {
    if (this.done || this.socket.destroyed) return;
    this.socket.end(encodeDelimited({ type: FrameType.CLOSE, code, reason }));
    // A dead or frozen peer never answers our FIN; do not hold its socket.
    const t = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
    this.socket.on('error', noop);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
