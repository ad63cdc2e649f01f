/**
 * GOAWAY for a WebSocket that was refused before its upgrade: an HTTP 503 whose
 * `Retry-After` any HTTP client understands, and whose `X-Longlink-Goaway` header
 * (`reason; ms`) gives the longlink client the exact reason and hint.
 */
export const GOAWAY_HEADER = 'x-longlink-goaway';

export function refusalResponse(r: { reason: string; retryAfterMs: number; message: string }): string {
  const body = `longlink: ${r.message.replace(/[\r\n]/g, ' ')}\n`;
  return (
    'HTTP/1.1 503 Service Unavailable\r\n' +
    `Retry-After: ${Math.max(1, Math.ceil(r.retryAfterMs / 1000))}\r\n` +
    `X-Longlink-Goaway: ${r.reason}; ${Math.max(0, Math.round(r.retryAfterMs))}\r\n` +
    'Content-Type: text/plain\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

/** Reads the header back: null when absent or malformed. */
export function parseGoawayHeader(value: string | string[] | undefined): { reason: string; retryAfterMs: number } | null {
  const v = Array.isArray(value) ? value[0] : value;
  const m = v ? /^([a-z-]{1,40});\s*(\d{1,12})$/.exec(v.trim()) : null;
  return m ? { reason: m[1], retryAfterMs: Number(m[2]) } : null;
}
