import { createHmac } from 'node:crypto';
import type { UpstreamAnswer, UpstreamEvent, UpstreamMessage, UpstreamSink } from '../gateway/upstream.js';

export interface WebhookOptions {
  /** The backend's URL; each message is POSTed there as JSON. */
  url: string;
  /** Signs each body: `X-Longlink-Signature: sha256=<hex HMAC-SHA256 of the body>`. */
  secret?: string;
  /** A request that takes longer fails (and is retried). */
  timeoutMs?: number;
}

/** The body the backend receives (`type: 'message'`). */
export interface WebhookBody {
  type: 'message';
  user: string;
  device: string;
  connectionId: string;
  sessionId: string;
  /** The client's message id: the backend's idempotency key (a retry after a lost answer repeats it). */
  id: string | null;
  seq: number | null;
  /** The payload as base64, and as text when it is valid UTF-8. */
  payload: string;
  text: string | null;
  receivedAt: number;
}

/** Verifies a body's signature (what a backend in Node would do; any language can: HMAC-SHA256 over the raw body). */
export function webhookSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The webhook sink: one POST per message; a 2xx answer means the backend has
 * it. The answer may carry `{"reply": {"text"|"base64"|"json": ...}}`, pushed
 * back to the device that sent the message. Anything else (a timeout, a
 * refused connection, a non-2xx status) fails the attempt, and it is retried.
 */
export function webhookSink(o: WebhookOptions): UpstreamSink {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const post = (json: string, id?: string) =>
    fetch(o.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(id ? { 'x-longlink-id': id } : {}), ...(o.secret ? { 'x-longlink-signature': webhookSignature(o.secret, json) } : {}) },
      body: json,
      signal: AbortSignal.timeout(timeoutMs),
    });
  return {
    name: 'webhook',
    async sendEvent(e: UpstreamEvent): Promise<void> {
      // { type: 'online' | 'offline', user, device, connectionId, nodeId, reason?, code?, initiator?, silentForMs?, resumed?, at }
      const { userId, deviceId, ...rest } = e;
      const res = await post(JSON.stringify({ ...rest, user: userId, device: deviceId }));
      await res.text();
      if (!res.ok) throw new Error(`webhook ${o.url} answered HTTP ${res.status}`);
    },
    async send(m: UpstreamMessage): Promise<UpstreamAnswer | void> {
      let text: string | null = null;
      try {
        text = utf8.decode(m.payload);
      } catch {
        text = null;
      }
      const body: WebhookBody = {
        type: 'message',
        user: m.userId,
        device: m.deviceId,
        connectionId: m.connectionId,
        sessionId: m.sessionId,
        id: m.id ?? null,
        seq: m.seq ?? null,
        payload: Buffer.from(m.payload).toString('base64'),
        text,
        receivedAt: m.receivedAt,
      };
      const json = JSON.stringify(body);
      const res = await post(json, m.id);
      const answer = await res.text();
      if (!res.ok) throw new Error(`webhook ${o.url} answered HTTP ${res.status}`);
      if (!answer) return;
      let parsed: { reply?: { text?: string; base64?: string; json?: unknown } };
      try {
        parsed = JSON.parse(answer);
      } catch {
        return; // a 2xx is acceptance; a body that is not JSON is not a reply
      }
      const r = parsed?.reply;
      if (!r || typeof r !== 'object') return;
      if (typeof r.text === 'string') return { reply: r.text };
      if (typeof r.base64 === 'string') return { reply: Buffer.from(r.base64, 'base64') };
      if (r.json !== undefined) return { reply: JSON.stringify(r.json) };
    },
  };
}
