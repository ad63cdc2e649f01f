import { ProtocolError } from '../protocol/errors.js';
import { sourceKey } from './source-key.js';

/**
 * What the links of one gateway hold of frames not whole yet (a TCP link's
 * decoder buffer, a WebSocket link's parser buffer and fragments), by what is
 * allocated: a frame's buffer grows fourfold to its declared size, so a peer
 * that announced 64 KB and sent a quarter of it already had 64 KB held. Each
 * link was bounded by maxFrameBytes, and nothing else: with the default limits
 * 100,000 connections (1,000 from one address) could hold 6.4 GB for ever, each
 * completing a frame before its silence deadline and beginning the next.
 *
 * A link's charge is kept here only while it holds part of a frame (most never
 * do), so an idle connection pays nothing for it.
 */
export class PartialFrameBudget {
  private total = 0;
  private readonly charges = new Map<object, { source: string; bytes: number }>();
  private readonly bySource = new Map<string, number>();

  constructor(
    /** Bytes over all links; 0 turns the budget off. */
    readonly maxBytes: number,
    /** One source's share once half the budget is held (1: off); never less than one frame. */
    readonly sourceShare: number,
    readonly maxFrameBytes: number,
  ) {}

  /** Bytes held in partial frames over all links. */
  get heldBytes(): number {
    return this.total;
  }

  /**
   * Sets what `link` holds now. A growth past the budget (or past its source's
   * share) is refused: the link is charged nothing and is to be closed with the
   * error returned (4004 server-error: its client reconnects and re-sends).
   */
  set(link: object, address: string, bytes: number): ProtocolError | null {
    const had = this.charges.get(link);
    const before = had?.bytes ?? 0;
    if (bytes === before) return null;
    const source = had?.source ?? sourceKey(address);
    if (bytes > before && this.maxBytes > 0) {
      const grow = bytes - before;
      const mine = this.bySource.get(source) ?? 0;
      let why: string | null = null;
      if (this.total + grow > this.maxBytes) why = `${this.total} bytes of partial frames are held over all links (maxPartialFrameBytes)`;
      else if (this.sourceShare < 1 && this.total + grow > this.maxBytes / 2 && mine + grow > Math.max(this.maxFrameBytes, this.maxBytes * this.sourceShare)) {
        why = `${mine} bytes of partial frames are held from ${source} (a source's share of maxPartialFrameBytes)`;
      }
      if (why !== null) {
        this.set(link, address, 0);
        return new ProtocolError('server-error', why);
      }
    }
    this.total += bytes - before;
    const left = (this.bySource.get(source) ?? 0) + bytes - before;
    if (left > 0) this.bySource.set(source, left);
    else this.bySource.delete(source);
    if (bytes > 0) {
      if (had) had.bytes = bytes;
      else this.charges.set(link, { source, bytes });
    } else this.charges.delete(link);
    return null;
  }
}
