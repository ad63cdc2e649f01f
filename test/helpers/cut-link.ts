import type { LinkEvents } from '../../src/link/link.js';
import { FreezableLink } from '../../src/demo/freezable-link.js';

/**
 * A client link whose path can be cut silently, as when a NAT drops the
 * mapping: a frozen link (nothing out, nothing in) whose close sends nothing
 * either (no CLOSE frame, no FIN: the NAT would drop them), so the gateway
 * still holds its end open until its own deadline. The socket underneath
 * stays open until `release()`.
 */
export class CutLink extends FreezableLink {
  private events: LinkEvents | null = null;
  private ended = false;

  get cut(): boolean {
    return this.frozen;
  }
  set cut(v: boolean) {
    this.frozen = v;
  }
  override get closed() {
    return this.ended || super.closed;
  }
  override bind(events: LinkEvents): void {
    this.events = events;
    super.bind({ ...events, onLinkError: (e) => this.frozen || events.onLinkError(e), onLinkClose: (i) => this.frozen || this.end(i) });
  }
  override close(code: number, reason: string): void {
    if (this.frozen) this.end({});
    else super.close(code, reason);
  }
  override destroy(): void {
    if (this.frozen) this.end({});
    else super.destroy();
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
