/** What the page tells the client: the network came or went, the tab was shown or hidden, the page was frozen and brought back. */
export interface PageSignalHandlers {
  online(): void;
  offline(): void;
  visible(): void;
  hidden(): void;
  /**
   * The page ran again after it was frozen (the Page Lifecycle `resume`, a
   * phone's background tab) or restored from the back/forward cache
   * (`pageshow` with `persisted`): no code ran meanwhile, so a NAT mapping
   * or the gateway may have let the link go without the page hearing of it.
   */
  resumed(): void;
  /**
   * The page goes into the back/forward cache (`pagehide` with `persisted`): no code runs there
   * until it is restored (`resumed`) or evicted.
   */
  cached(): void;
}

/** Listens to `online`/`offline`, `visibilitychange`, `resume`, `pageshow` and `pagehide`; returns the function that stops listening. */
export function watchPage(h: PageSignalHandlers): () => void {
  const w = globalThis as unknown as Partial<Window>;
  const doc = w.document;
  const onVisibility = () => (doc?.visibilityState === 'visible' ? h.visible() : h.hidden());
  // A first load fires `pageshow` too, not persisted: only a restore from the cache is a resume.
  const onPageShow = (e: Event) => {
    if ((e as PageTransitionEvent).persisted) h.resumed();
  };
  // A page unloaded for good fires `pagehide` too, not persisted: its sockets go with it.
  const onPageHide = (e: Event) => {
    if ((e as PageTransitionEvent).persisted) h.cached();
  };
  const onResume = () => h.resumed();
  w.addEventListener?.('online', h.online);
  w.addEventListener?.('offline', h.offline);
  w.addEventListener?.('pageshow', onPageShow);
  w.addEventListener?.('pagehide', onPageHide);
  doc?.addEventListener('visibilitychange', onVisibility);
  doc?.addEventListener('resume', onResume);
  return () => {
    w.removeEventListener?.('online', h.online);
    w.removeEventListener?.('offline', h.offline);
    w.removeEventListener?.('pageshow', onPageShow);
    w.removeEventListener?.('pagehide', onPageHide);
    doc?.removeEventListener('visibilitychange', onVisibility);
    doc?.removeEventListener('resume', onResume);
  };
}
