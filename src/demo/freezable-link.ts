import type { Link, LinkEvents } from '../link/link.js';
import type { Frame } from '../protocol/frames.js';

/**
 * A link that can be frozen: while frozen nothing goes out and nothing
 * coming in is handled, as when the app hangs but the kernel still holds the
 * socket open. Only the gateway's heartbeat detection can tell.
 */
export class FreezableLink implements Link {
  frozen = false;
  constructor(protected readonly inner: Link) {}
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
    return this.inner.closed;
  }
  get bufferedBytes() {
    return this.inner.bufferedBytes;
  }
  bind(events: LinkEvents): void {
    this.inner.bind({
      onLinkFrame: (f) => this.frozen || events.onLinkFrame(f),
      onLinkError: (e) => events.onLinkError(e),
      onLinkClose: (i) => events.onLinkClose(i),
      onLinkDrain: () => events.onLinkDrain?.(),
    });
  }
  awaitDrain(): void {
    this.inner.awaitDrain();
  }
  send(f: Frame): void {
    if (!this.frozen) this.inner.send(f);
  }
  close(code: number, reason: string): void {
    this.inner.close(code, reason);
  }
  closedByPeer(code: number): void {
    this.inner.closedByPeer(code);
  }
  destroy(): void {
    this.inner.destroy();
  }
}
