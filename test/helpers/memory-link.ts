import { ProtocolError } from '../../src/protocol/errors.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameDecoder } from '../../src/protocol/frame-decoder.js';
import { FrameType, type Frame } from '../../src/protocol/frames.js';
import type { Link, LinkEvents } from '../../src/link/link.js';

/**
 * An in-memory Link end. Frames go through the real codec (encode, then the
 * streaming decoder) so gateway tests exercise the same bytes as TCP, but
 * arrive synchronously, which lets them run on a ManualClock.
 */
export class MemoryLink implements Link {
  readonly transport = 'tcp' as const;
  /** One source for every link unless a test says otherwise (per-source budgets). */
  remoteAddress = '127.0.0.1';
  readonly remotePort = 1;
  peer!: MemoryLink;
  private events: LinkEvents | null = null;
  private readonly decoder = new FrameDecoder();
  private done = false;
  /** Frames this end received, in order (also before bind). */
  readonly received: Frame[] = [];
  /** Set by close(): what this end said when it closed. */
  closedWith: { code: number; reason: string } | null = null;
  /** When true, bytes sent to this end are dropped (a frozen or partitioned peer). */
  deaf = false;

  get closed(): boolean {
    return this.done;
  }

  get bufferedBytes(): number {
    return 0;
  }

  bind(events: LinkEvents): void {
    this.events = events;
  }

  /** Nothing is ever buffered here: drained at once. */
  awaitDrain(): void {
    queueMicrotask(() => this.events?.onLinkDrain?.());
  }

  send(f: Frame): void {
    if (this.done) return;
    this.peer.deliverBytes(encodeDelimited(f));
  }

  /** Raw bytes from the peer, as a socket would deliver them. */
  deliverBytes(bytes: Uint8Array): void {
    if (this.done || this.deaf) return;
    try {
      this.decoder.push(bytes, (f) => {
        this.received.push(f);
        this.events?.onLinkFrame(f);
      });
    } catch (err) {
      if (err instanceof ProtocolError) this.events?.onLinkError(err);
      else throw err;
    }
  }

  close(code: number, reason: string): void {
    if (this.done) return;
    this.closedWith = { code, reason };
    this.send({ type: FrameType.CLOSE, code, reason });
    this.finish();
    this.peer.finish(code, reason);
  }

  /** No close handshake in memory: as destroy(). */
  closedByPeer(_code: number): void {
    this.destroy();
  }

  destroy(): void {
    if (this.done) return;
    this.finish();
    this.peer.finish();
  }

  private finish(code?: number, reason?: string): void {
    if (this.done) return;
    this.done = true;
    this.events?.onLinkClose(code === undefined ? {} : { code, reason });
  }
}

export function memoryLinkPair(): [server: MemoryLink, client: MemoryLink] {
  const a = new MemoryLink();
  const b = new MemoryLink();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Lets pending promise callbacks (the async HELLO path) run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}
