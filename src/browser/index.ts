import { ClientCore } from '../client/client-core.js';
import type { ClientOptions } from '../client/options.js';
import type { Timers } from '../core/clock.js';
import { browserDial } from './browser-ws-link.js';
import { watchPage } from './page-signals.js';

export type { ClientEvents, ClientStateName, CloseEvent, UnsentMessage } from '../client/client-core.js';
export type { ClientState, WelcomeFrame } from '../protocol/frames.js';
export { CloseCodes, LonglinkError, ProtocolError } from '../protocol/errors.js';
export { BrowserWsLink, browserDial } from './browser-ws-link.js';

/** The browser's timers; unlike Node's they have no unref. */
const browserTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as number),
};

export type BrowserClientOptions = Omit<ClientOptions, 'tls' | 'localAddress' | 'keepalive'> & {
  /**
   * React to the page: `online`, a tab coming back into view and a page
   * resumed after it was frozen or restored from the back/forward cache
   * check the link at once (quick probes) or reconnect without waiting out
   * the backoff; `offline` checks it too, so a dead link is found in probe
   * time. A page going into the back/forward cache ends its link (CLOSE
   * 1000: the session is kept, and the gateway reports the device offline at
   * once) and reconnects, resuming the session, when it is restored.
   * Default true.
   */
  watchPage?: boolean;
};

/**
 * The browser client: the same protocol, session resume and acknowledgements
 * as the Node client, over the browser's WebSocket. Heartbeats are
 * server-sent by default: a background tab's timers are throttled (to once a
 * second, then once a minute), but its WebSocket messages are still handled
 * at once, so it answers the gateway's PINGs on time and is not convicted.
 */
export class LonglinkBrowserClient extends ClientCore {
  private unwatch: (() => void) | null = null;
  private readonly watching: boolean;
  /** Page signals seen, for the application and tests. */
  readonly pageStats = { online: 0, offline: 0, visible: 0, hidden: 0, resumed: 0, cached: 0 };

  constructor(opts: BrowserClientOptions) {
    super({ ...opts, direction: opts.direction ?? 'server', timers: opts.timers ?? browserTimers }, browserDial);
    this.watching = opts.watchPage !== false;
    this.watch();
    // A close for good from the gateway (kicked, refused) lets go of the page too: the window would
    // otherwise keep a dead client reachable. connect() watches again: one from a 'state' handler,
    // which runs before this event, has the client connecting again by now, and keeps the watch.
    this.on('close', (e) => {
      if (!e.willReconnect && this.state === 'closed') this.stopWatching();
    });
  }

  /** Listens to the page's signals, unless it does already (or was told not to). */
  private watch(): void {
    if (!this.watching || this.unwatch !== null) return;
    this.unwatch = watchPage({
      online: () => {
        this.pageStats.online++;
        this.networkChanged();
      },
      offline: () => {
        this.pageStats.offline++;
        // Check an open link now (a dead one is found in probe time); an attempt to reconnect would only fail.
        if (this.state === 'open' || this.state === 'suspect') this.networkChanged();
      },
      visible: () => {
        this.pageStats.visible++;
        this.networkChanged();
      },
      hidden: () => this.pageStats.hidden++,
      resumed: () => {
        this.pageStats.resumed++;
        this.networkChanged();
      },
      cached: () => {
        this.pageStats.cached++;
        this.leave('page in the back/forward cache');
      },
    });
  }

  private stopWatching(): void {
    this.unwatch?.();
    this.unwatch = null;
  }

  /** Connects (again, after a close()): the page's signals are listened to again too. */
  override connect(): ReturnType<ClientCore['connect']> {
    this.watch();
    return super.connect();
  }

  override close(opts?: Parameters<ClientCore['close']>[0]): ReturnType<ClientCore['close']> {
    this.stopWatching();
    return super.close(opts);
  }
}
