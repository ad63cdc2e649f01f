/**
 * The live event stream (/api/events). EventSource retries by itself after a
 * network error, but gives up for good on an HTTP error (readyState CLOSED)
 * and cannot tell a stalled stream from a quiet one; both cases reopen it here.
 */
import type { OfflineNotice, OnlineNotice, Snapshot, Tick } from '../../src/admin/api-types.js';
import { ApiError, eventsUrl, forgetStreamKey } from './api.js';

/** 'token refused': the admin port answered 401 (no token given, or not the one it takes now); tried again all the same. */
export type StreamState = 'live' | 'reconnecting' | 'token refused';

export interface StreamHandlers {
  snapshot(s: Snapshot): void;
  tick(t: Tick): void;
  online(n: OnlineNotice): void;
  offline(n: OfflineNotice): void;
  state(s: StreamState): void;
}

/** Ticks come once a second; this long without any event means the stream is stuck. */
const STALL_MS = 8000;
const RETRY_MS = 2000;

export function openStream(h: StreamHandlers): void {
  let es: EventSource | null = null;
  let watchdog = 0;
  let retry = 0;
  /** Bumped by every connect and restart: a stream URL that comes after either opens nothing. */
  let attempt = 0;

  const restart = (why: StreamState = 'reconnecting'): void => {
    attempt++;
    es?.close();
    es = null;
    h.state(why);
    clearTimeout(retry);
    retry = window.setTimeout(connect, RETRY_MS);
  };

  // Any event proves the stream is alive; arm the stall timer again.
  const alive = (): void => {
    clearTimeout(watchdog);
    watchdog = window.setTimeout(() => restart(), STALL_MS);
  };

  function on<T>(src: EventSource, name: string, fn: (data: T) => void): void {
    src.addEventListener(name, (ev) => {
      alive();
      let data: T;
      try {
        data = JSON.parse((ev as MessageEvent<string>).data) as T;
      } catch {
        return; // a malformed event should not take the page down
      }
      fn(data);
    });
  }

  function connect(): void {
    const mine = ++attempt;
    alive(); // the stream key may be slow to come too
    eventsUrl().then(
      (url) => mine === attempt && open(url),
      (err: unknown) => mine === attempt && restart(err instanceof ApiError && err.status === 401 ? 'token refused' : 'reconnecting'),
    );
  }

  function open(url: string): void {
    const src = new EventSource(url);
    es = src;
    alive();
    // Live once the snapshot has reset the page: an open stream with stale state is not live yet.
    on<Snapshot>(src, 'snapshot', (s) => {
      h.snapshot(s);
      h.state('live');
    });
    on<Tick>(src, 'tick', h.tick);
    on<OnlineNotice>(src, 'online', h.online);
    on<OfflineNotice>(src, 'offline', h.offline);
    src.onerror = () => {
      if (src !== es) return;
      if (src.readyState === EventSource.CLOSED) {
        // An HTTP error (a 401 among them: the gateway restarted with another token): the key is asked
        // for again, and its answer says which.
        forgetStreamKey();
        restart();
      }
      else h.state('reconnecting'); // the browser is retrying on its own
    };
  }

  h.state('reconnecting');
  connect();
}
