/**
 * GOAWAY for a WebSocket that was refused before its upgrade: an HTTP 503 whose
 * `Retry-After` any HTTP client understands, and whose `X-Longlink-Goaway` header
 * (`reason; ms`) gives the longlink client the exact reason and hint.
 */
export const GOAWAY_HEADER = 'x-longlink-goaway';

export function refusalResponse(r: { reason: string; retryAfterMs: number; message: string }): string {
  const { headers, body } = refusalAnswer(r);
  return 'HTTP/1.1 503 Service Unavailable\r\n' + Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n' + body;
}

/** The 503's headers and body, for an HTTP server's own response (a refused wss:// socket's plain request). */
export function refusalAnswer(r: { reason: string; retryAfterMs: number; message: string }): { headers: Record<string, string>; body: string } {
  const body = `longlink: ${r.message.replace(/[\r\n]/g, ' ')}\n`;
  const headers = {
    'Retry-After': String(Math.max(1, Math.ceil(r.retryAfterMs / 1000))),
    'X-Longlink-Goaway': `${r.reason}; ${Math.max(0, Math.round(r.retryAfterMs))}`,
    'Content-Type': 'text/plain',
    'Content-Length': String(Buffer.byteLength(body)),
    Connection: 'close',
  };
  return { headers, body };
}

/** Reads the header back: null when absent or malformed. */
export function parseGoawayHeader(value: string | string[] | undefined): { reason: string; retryAfterMs: number } | null {
  const v = Array.isArray(value) ? value[0] : value;
  const m = v ? /^([a-z-]{1,40});\s*(\d{1,12})$/.exec(v.trim()) : null;
  return m ? { reason: m[1], retryAfterMs: Number(m[2]) } : null;
}

/**
 * The most a `Retry-After` not from a longlink gateway (a proxy's, a load balancer's) holds the
 * client back: one of days, or a misconfigured one, would otherwise keep it away that long.
 */
export const MAX_RETRY_AFTER_MS = 600_000;

/**
 * A `Retry-After` header (delay-seconds or an HTTP-date, RFC 9110 §10.2.3) as ms from `now`,
 * bounded to 0..MAX_RETRY_AFTER_MS; undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  const ms = /^\d{1,12}$/.test(v) ? Number(v) * 1000 : Date.parse(v) - now;
  return Number.isNaN(ms) ? undefined : Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}
