import type { Authenticate, Identity } from '../gateway/options.js';
import { MAX_TIMER_MS } from '../core/heartbeat-policy.js';
import { LonglinkError, ProtocolError } from '../protocol/errors.js';
import type { ClientState, HelloFrame } from '../protocol/frames.js';

export interface ConnectHookOptions {
  /** The backend's URL: POSTed on every HELLO. */
  url: string;
  /** Longest wait for its answer, 1 to 2^31 − 1 ms; past it the device is told to come back (4004, retryable). */
  timeoutMs?: number;
  /** Sent as `Authorization: Bearer <secret>`, so the backend knows the caller is the gateway. */
  secret?: string;
}

/** What the backend receives. */
export interface ConnectHookRequest {
  user: string;
  device: string;
  token: string | null;
  clientInfo: ClientState;
  resume: boolean;
  remoteAddress: string;
  transport: string;
}

/** What the backend answers (200): allow or refuse, and what to set. */
export interface ConnectHookAnswer {
  allow: boolean;
  /** Why, when refused: the device sees it in its close reason. */
  reason?: string;
  /** Replace the user (a backend that maps tokens to users) or the device. */
  user?: string;
  device?: string;
  /** Replace the client info kept with the session. */
  clientInfo?: ClientState;
  /** The heartbeat to grant, within the gateway's bounds (clamped like a client's own ask); an interval binds the link (see Identity). */
  heartbeat?: { intervalMs?: number; direction?: 'client' | 'server' };
}

/** The most of a hook's answer read: an identity, client info and a heartbeat fit in far less. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** The body as text, or a rejection past `max` bytes (read no further). */
export async function cappedText(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel();
      throw new Error(`answer over ${max} bytes`);
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * The connect hook: on HELLO, the backend decides. 200 `{"allow": true, ...}`
 * opens the session (with the user, client info and heartbeat it sets);
 * `{"allow": false}` or 401/403 refuses it with auth-failed (4510, the device
 * does not retry); no answer within the timeout, a refused connection, a 5xx
 * or any other status (a redirect, which is not followed; a 404) closes with
 * server-error (4004, the device comes back with backoff), so a
 * backend outage never locks devices out for good. `inner` runs first (JWT),
 * and the hook sees the identity it established.
 */
export function connectHook(o: ConnectHookOptions, inner?: Authenticate): Authenticate {
  const timeoutMs = o.timeoutMs ?? 2000;
  // One timer: beyond MAX_TIMER_MS Node fires it after 1 ms (and throws on Infinity or NaN), so every
  // call failed as "no answer" and every device got 4004, for good.
  if (!(Number.isFinite(timeoutMs) && timeoutMs >= 1 && timeoutMs <= MAX_TIMER_MS)) {
    throw new LonglinkError('LL_ERR_INVALID_OPTION', `connectHook: timeoutMs must be from 1 to ${MAX_TIMER_MS} ms (got ${timeoutMs})`);
  }
  return async (hello: HelloFrame, peer): Promise<Identity> => {
    const base = inner ? await inner(hello, peer) : { userId: hello.userId, deviceId: hello.deviceId };
    const request: ConnectHookRequest = {
      user: base.userId,
      device: base.deviceId,
      token: hello.token ?? null,
      clientInfo: hello.clientInfo ?? {},
      resume: hello.resumeToken !== undefined,
      remoteAddress: peer.remoteAddress,
      transport: peer.transport,
    };
    let res: Response;
    let text: string;
    try {
      res = await fetch(o.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(o.secret ? { authorization: `Bearer ${o.secret}` } : {}) },
        body: JSON.stringify(request),
        // Ended by the link's close too: a device that sent HELLO and left kept the backend asked for
        // the whole timeout, so hook calls in flight were bounded by nothing (the link's admission place was already free).
        signal: peer.signal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), peer.signal]) : AbortSignal.timeout(timeoutMs),
        // Not followed: to another origin (http to https is one) fetch drops the Authorization
        // header, the backend answered 401, and every device was refused for good (4510).
        redirect: 'manual',
      });
      // A refusal's body is not read (a proxy's error page may be large): the status decides.
      text = res.ok ? await cappedText(res, MAX_ANSWER_BYTES) : (await res.body?.cancel(), '');
    } catch (err) {
      throw new ProtocolError('server-error', `connect hook unavailable: ${err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : err instanceof Error ? err.message : String(err)}`);
    }
    if (res.status === 401 || res.status === 403) throw new ProtocolError('auth-failed', `refused by the connect hook (HTTP ${res.status})`);
    if (res.status >= 300 && res.status < 400) {
      const to = res.headers.get('location');
      throw new ProtocolError('server-error', `connect hook answered a redirect (HTTP ${res.status}${to ? ` to ${to.slice(0, 200)}` : ''}): give the gateway the URL it leads to`);
    }
    if (!res.ok) throw new ProtocolError('server-error', `connect hook answered HTTP ${res.status}`);
    let a: ConnectHookAnswer;
    try {
      a = JSON.parse(text) as ConnectHookAnswer;
    } catch {
      throw new ProtocolError('server-error', 'connect hook answered something that is not JSON');
    }
    if (a?.allow !== true) throw new ProtocolError('auth-failed', `refused by the connect hook${a?.reason ? `: ${String(a.reason).slice(0, 100)}` : ''}`);
    return {
      userId: typeof a.user === 'string' && a.user ? a.user : base.userId,
      deviceId: typeof a.device === 'string' && a.device ? a.device : base.deviceId,
      ...(a.clientInfo && typeof a.clientInfo === 'object' ? { clientInfo: a.clientInfo } : base.clientInfo ? { clientInfo: base.clientInfo } : {}),
      ...(a.heartbeat && typeof a.heartbeat === 'object' ? { heartbeat: a.heartbeat } : base.heartbeat ? { heartbeat: base.heartbeat } : {}),
    };
  };
}
