/** What the page tells the client: the network came or went, the tab was shown or hidden. */
export interface PageSignalHandlers {
  online(): void;
  offline(): void;
  visible(): void;
  hidden(): void;
}

/** Listens to `online`/`offline` and `visibilitychange`; returns the function that stops listening. */
export function watchPage(h: PageSignalHandlers): () => void {
  const w = globalThis as unknown as Partial<Window>;
  const doc = w.document;
  const onVisibility = () => (doc?.visibilityState === 'visible' ? h.visible() : h.hidden());
  w.addEventListener?.('online', h.online);
  w.addEventListener?.('offline', h.offline);
  doc?.addEventListener('visibilitychange', onVisibility);
  return () => {
    w.removeEventListener?.('online', h.online);
    w.removeEventListener?.('offline', h.offline);
    doc?.removeEventListener('visibilitychange', onVisibility);
  };
}
