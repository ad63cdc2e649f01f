import type { Link, LinkEvents } from '../../src/link/link.js';
import type { Frame } from '../../src/protocol/frames.js';

/**
 * A client link whose path can be cut silently, as when a NAT drops the
 * mapping: once cut, nothing goes out or comes in, and closing it sends
 * nothing either (no CLOSE frame, no FIN: the NAT would drop them), so the
 * gateway still holds its end open until its own deadline. The socket
 * underneath stays open until `release()`.
 */
export class CutLink implements Link {
  cut = false;
  private events: LinkEvents | null = null;
  private ended = false;
  constructor(private readonly inner: Link) {}
  get transport() {
    return this.inner.transport;
  }
  get remoteAddress() {
    return this.inner.remoteAddress;
  }
  get remotePort() {
    return this.inner.remotePort;
  }
  get closed() {
    return this.ended || this.inner.closed;
  }
  get bufferedBytes() {
    return this.inner.bufferedBytes;
  }
  bind(events: LinkEvents): void {
    this.events = events;
    this.inner.bind({
      onLinkFrame: (f) => this.cut || events.onLinkFrame(f),
      onLinkError: (e) => this.cut || events.onLinkError(e),
      onLinkClose: (i) => this.cut || this.end(i),
      onLinkDrain: () => this.cut || events.onLinkDrain?.(),
    });
  }
  awaitDrain(): void {
    this.inner.awaitDrain();
  }
  send(f: Frame): void {
    if (!this.cut) this.inner.send(f);
  }
  close(code: number, reason: string): void {
    if (this.cut) this.end({});
    else this.inner.close(code, reason);
  }
  destroy(): void {
    if (this.cut) this.end({});
    else this.inner.destroy();
  }
  /** Closes the socket underneath for good (the test's cleanup). */
  release(): void {
    this.inner.destroy();
  }
  private end(info: { error?: Error }): void {
    if (this.ended) return;
    this.ended = true;
    this.events?.onLinkClose(info);
  }
}
