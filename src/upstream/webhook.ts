import { createHmac, timingSafeEqual } from 'node:crypto';
import { isBase64 } from '../core/base64.js';
import http from 'node:http';
import https from 'node:https';
import { MAX_TIMER_MS } from '../core/heartbeat-policy.js';
import { LonglinkError } from '../protocol/errors.js';
import { redactUrl } from '../gateway/stores/redis-connect.js';
import { UpstreamBusyError, UpstreamRejectedError, type UpstreamAnswer, type UpstreamEvent, type UpstreamMessage, type UpstreamSink } from '../gateway/upstream.js';

export interface WebhookOptions {
  /** The backend's URL; each message is POSTed there as JSON. */
  url: string;
  /** Signs each request: `X-Longlink-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, anew at each attempt. */
  secret?: string;
  /** A request that takes longer fails (and is retried). */
  timeoutMs?: number;
  /** Connections kept open to the backend (keep-alive) for messages; lifecycle events have a quarter as many of their own. */
  maxSockets?: number;
  /**
   * An answer body read up to this many bytes (1 MiB by default). A 2xx over
   * it still accepts the message; its reply is not read, and the gateway
   * reports a `fault` (LL_ERR_PAYLOAD_TOO_LARGE) instead of losing it silently.
   */
  maxAnswerBytes?: number;
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

/** How far a signature's timestamp may be from the verifier's clock, by default: 5 minutes. */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/**
 * The `X-Longlink-Signature` value of a body sent at `timestamp` (Unix seconds,
 * now by default): `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`.
 * The time is in what is signed, so a captured delivery cannot be replayed
 * once it is older than the verifier's tolerance. Each attempt (a retry too) is
 * signed anew, with its own time. Any language can compute it.
 */
export function webhookSignature(secret: string, body: string | Uint8Array, timestamp: number = Math.floor(Date.now() / 1000)): string {
  const t = Math.floor(timestamp);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')}`;
}

export interface VerifyWebhookOptions {
  /** How far the timestamp may be from `now`, either way, in seconds (300). */
  toleranceSeconds?: number;
  /** The verifier's clock, in milliseconds (`Date.now()`). */
  now?: number;
}

/**
 * Whether `header` (the request's `X-Longlink-Signature`) signs `body`, the
 * raw bytes as received, at a time within `toleranceSeconds` (300) of now:
 * what a backend in Node calls. An older delivery (one captured in a log or a
 * proxy and sent again) is refused, as is one whose body or timestamp was
 * changed. Compared in constant time: a `===` on the strings tells an
 * attacker, by how fast it fails, how many leading characters of a forged
 * signature are right. Several `v1=` (a secret being rotated) pass if one does.
 */
export function verifyWebhookSignature(secret: string, body: string | Uint8Array, header: string | undefined | null, o: VerifyWebhookOptions = {}): boolean {
  if (typeof header !== 'string') return false;
  let t: string | undefined;
  const sigs: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't') t = v;
    else if (k === 'v1') sigs.push(v);
  }
  if (t === undefined || !/^\d{1,15}$/.test(t) || sigs.length === 0) return false;
  const tolerance = o.toleranceSeconds ?? WEBHOOK_TOLERANCE_SECONDS;
  const now = (o.now ?? Date.now()) / 1000;
  if (!(Math.abs(now - Number(t)) <= tolerance)) return false;
  const want = Buffer.from(createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex'));
  let ok = false;
  for (const sig of sigs) {
    const got = Buffer.from(sig);
    if (got.length === want.length && timingSafeEqual(got, want)) ok = true;
  }
  return ok;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The webhook sink: one POST per message; a 2xx answer means the backend has
 * it. The answer may carry `{"reply": {"text"|"base64"|"json": ...}}`, pushed
 * back to the device that sent the message. Anything else (a timeout, a
 * refused connection, a non-2xx status) fails the attempt, and it is retried.
 */
/**
 * A message id that can go in a header as it is: printable ASCII, not starting
 * or ending with a space. Others (any UTF-8 id a client may choose) would make
 * node:http throw before sending, for every retry; and a receiver trims a
 * header value's outer spaces, so ' a' would reach the backend as 'a', another
 * message's id. The id is in the signed body all the same.
 */
const HEADER_SAFE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/**
 * The error of an answer to retry: one with Retry-After (a 429, a 503: the backend asks for a pause)
 * says when, and the retry waits that long rather than the backoff's first 100 ms.
 */
function failed(what: string, retryAfter: string | undefined): Error {
  const ms = retryAfterMs(retryAfter);
  return ms === undefined ? new Error(what) : new UpstreamBusyError(`${what}, Retry-After: ${retryAfter}`, ms);
}

/** A Retry-After value (delta-seconds or an HTTP date) as ms from now; undefined when absent or unreadable. */
function retryAfterMs(v: string | undefined, now: number = Date.now()): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  if (/^\d{1,10}$/.test(t)) return Number(t) * 1000;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A webhook's 4xx answers that are retried, not taken as the message refused for good. */
const RETRIED_4XX = new Set([401, 403, 404, 407, 408, 425, 429]);

export function webhookSink(o: WebhookOptions): UpstreamSink {
  const timeoutMs = o.timeoutMs ?? 10_000;
  // The request's deadline is one timer: past MAX_TIMER_MS (or NaN) Node fires it after 1 ms, and every request failed at once.
  if (!(timeoutMs >= 1 && timeoutMs <= MAX_TIMER_MS)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `webhook timeoutMs must be from 1 to ${MAX_TIMER_MS} ms (got ${timeoutMs})`);
  // A reply's JSON is larger than its payload (base64 is 4/3, escaped text up to 6x): the bound is
  // the backend's answer, and the push of what it carries is then checked against maxFrameBytes.
  const maxAnswerBytes = o.maxAnswerBytes ?? 1024 * 1024;
  if (!(Number.isInteger(maxAnswerBytes) && maxAnswerBytes > 0)) throw new LonglinkError('LL_ERR_INVALID_OPTION', `webhook maxAnswerBytes must be a positive integer (got ${maxAnswerBytes})`);
  const url = new URL(o.url);
  // Credentials in the URL (Basic auth: node:http sends them) are not for messages, which reach the log.
  const shown = redactUrl(o.url);
  const lib = url.protocol === 'https:' ? https : http;
  // node:http with a keep-alive agent: about five times cheaper per request here than fetch.
  const agent = new lib.Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 256 });
  // Lifecycle events on sockets of their own: a burst of them (a connect-and-close loop makes two per
  // HELLO) must not queue ahead of devices' messages, which wait for their acknowledgement.
  const eventSockets = Math.max(1, Math.floor((o.maxSockets ?? 256) / 4));
  const eventAgent = new lib.Agent({ keepAlive: true, maxSockets: eventSockets });
  const post = (json: string, id?: string, via: http.Agent = agent) =>
    new Promise<{ ok: boolean; status: number; text: () => Promise<string>; cut: boolean; retryAfter: string | undefined }>((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method: 'POST',
          agent: via,
          timeout: timeoutMs,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), ...(id && HEADER_SAFE.test(id) ? { 'x-longlink-id': id } : {}), ...(o.secret ? { 'x-longlink-signature': webhookSignature(o.secret, json) } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          const status = res.statusCode ?? 0;
          const done = (cut: boolean) => {
            const text = cut ? '' : Buffer.concat(chunks).toString('utf8');
            resolve({ ok: status >= 200 && status < 300, status, text: async () => text, cut, retryAfter: res.headers['retry-after'] });
          };
          res.on('data', (d: Buffer) => {
            if ((size += d.length) <= maxAnswerBytes) return void chunks.push(d);
            // Not read on: the status has answered already; the socket goes, not the message.
            done(true);
            res.destroy();
          });
          res.on('end', () => done(false));
          res.on('error', reject);
        },
      );
      // `timeout` above is the socket's idle time: a backend that trickles its answer, or a request
      // queued behind busy sockets, would never reach it. This is the whole request's deadline.
      const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref();
      req.on('close', () => clearTimeout(deadline));
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(json);
    });
  return {
    name: 'webhook',
    maxSockets: (o.maxSockets ?? 256) + eventSockets,
    timeoutMs,
    async close(): Promise<void> {
      agent.destroy();
      eventAgent.destroy();
    },
    async sendEvent(e: UpstreamEvent): Promise<void> {
      // { type: 'online' | 'offline' | 'suspect' | 'replaced', user, device, connectionId, nodeId, reason?, code?, initiator?, silentForMs?, resumed?, cleared?, byConnectionId?, stale?, at }
      const { userId, deviceId, ...rest } = e;
      const res = await post(JSON.stringify({ ...rest, user: userId, device: deviceId }), undefined, eventAgent);
      await res.text();
      if (!res.ok) throw failed(`webhook ${shown} answered HTTP ${res.status}`, res.retryAfter);
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
      if (res.ok && res.cut) {
        return { replyError: new LonglinkError('LL_ERR_PAYLOAD_TOO_LARGE', `webhook ${shown} accepted message ${m.id ?? '(no id)'} with an answer over ${maxAnswerBytes} bytes: its reply was not read`) };
      }
      // A 4xx is the backend refusing this message, and it would refuse it again: not retried. But
      // not 408, 425 and 429, which ask to try later, nor 401, 403, 404 and 407, which say the
      // backend's configuration is wrong (a rotated secret, a proxy's login, a missing route), not the
      // message: discarding every device's messages until someone notices would lose them all.
      if (res.status >= 400 && res.status < 500 && !RETRIED_4XX.has(res.status)) {
        throw new UpstreamRejectedError(`webhook ${shown} refused message ${m.id ?? '(no id)'}: HTTP ${res.status}${answer ? ` ${answer.slice(0, 200)}` : ''}`);
      }
      if (!res.ok) throw failed(`webhook ${shown} answered HTTP ${res.status}`, res.retryAfter);
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
      if (typeof r.base64 === 'string') {
        if (!isBase64(r.base64)) return { replyError: new LonglinkError('LL_ERR_BAD_REPLY', `webhook ${shown} accepted message ${m.id ?? '(no id)'} with a reply whose base64 is not base64: it was not sent`) };
        return { reply: Buffer.from(r.base64, 'base64') };
      }
      if (r.json !== undefined) return { reply: JSON.stringify(r.json) };
    },
  };
}
