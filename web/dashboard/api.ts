/**
 * Talking to the admin port: JSON fetches and the event stream URL, with the
 * optional admin token from the page URL: #token=... (a fragment is never
 * sent, so no server or proxy log gets it), or ?token=... as before.
 */
import type { ClusterView, ConnectionDetail, ConnectionsPage, KickResult, Overview } from '../../src/admin/api-types.js';

const query = new URLSearchParams(location.search);
const TOKEN_KEY = 'longlink-admin-token';
const token = takeToken();
// A token pasted into the address of an open page (a gateway restarted with another) changes only
// the fragment, which loads nothing: the page loads again to take it.
addEventListener('hashchange', () => {
  if (new URLSearchParams(location.hash.slice(1)).has('token')) location.reload();
});

/**
 * The token from the address, then taken out of it: left there, it stayed in the browser's
 * history (and its synced history, and any screenshot of the address bar) for good. Kept for the
 * tab's life in sessionStorage, so a reload still has it; a link to another node's view carries
 * it in the fragment (it may open in a new tab), and that page takes it out in turn.
 */
function takeToken(): string | null {
  const hash = new URLSearchParams(location.hash.slice(1));
  const given = hash.get('token') ?? query.get('token');
  let stored: string | null = null;
  try {
    if (given) sessionStorage.setItem(TOKEN_KEY, given);
    else stored = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    // Storage off (a sandboxed or private context): the token lives as long as the page.
  }
  if (given) {
    hash.delete('token');
    query.delete('token');
    const u = new URL(location.href);
    u.search = query.size ? `?${query}` : '';
    u.hash = hash.size ? `#${hash}` : '';
    history.replaceState(history.state, '', u.href);
  }
  return given ?? stored;
}
/** ?node=<id>: another node of the cluster, read through this admin port. */
export const viewedNode = query.get('node');
const base = viewedNode ? `/api/nodes/${encodeURIComponent(viewedNode)}` : '/api';

/**
 * This page's address for another node's view (null: this node's own). Absolute, from this page's
 * own origin: a path taken from location.pathname (`//evil.example/`) is a link to another host,
 * which would get the token in the fragment.
 */
export function nodeHref(nodeId: string | null): string {
  const q = new URLSearchParams();
  if (nodeId) q.set('node', nodeId);
  const u = new URL(location.href);
  u.search = q.size ? `?${q}` : '';
  u.hash = token ? `#${new URLSearchParams({ token })}` : '';
  return u.href;
}

export type { ConnectionsPage, KickResult };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The stream key, asked for once: it changes only with the token (the page's, or the gateway's at a restart). */
let streamKey: Promise<string> | null = null;

/** The stream was refused: the key is asked for again, so a token the gateway no longer takes shows as a 401. */
export function forgetStreamKey(): void {
  streamKey = null;
}

/**
 * EventSource cannot send headers, so a credential rides in the query string: the stream key
 * (GET /api/stream-key, asked for with the token in a header), which opens the stream only. The
 * token there was in every proxy log the stream passed, and kicks and drains. Asked for without a
 * token too: a gateway that wants one answers 401 (ApiError), which EventSource would not show.
 */
export async function eventsUrl(): Promise<string> {
  streamKey ??= request<{ key: string | null }>('/api/stream-key').then((r) => r.key ?? '');
  try {
    const key = await streamKey;
    return key ? `${base}/events?token=${encodeURIComponent(key)}` : `${base}/events`;
  } catch (err) {
    streamKey = null; // asked again on the next try
    throw err;
  }
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  const res = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (!res.ok) throw new ApiError(res.status, `${init.method ?? 'GET'} ${path.split('?')[0]}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export function getOverview(): Promise<Overview> {
  return request<Overview>(`${base}/overview`);
}

export function getConnections(limit: number, user: string): Promise<ConnectionsPage> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (user) q.set('user', user);
  return request<ConnectionsPage>(`${base}/connections?${q}`);
}

export function getConnection(id: string): Promise<ConnectionDetail> {
  return request<ConnectionDetail>(`${base}/connections/${encodeURIComponent(id)}`);
}

/**
 * Kicks the connection shown, not whatever connection its device has by now.
 * On another node's view, by its user and device (the kick reaches every node).
 */
export function kick(connectionId: string, who?: { userId: string; deviceId: string }): Promise<KickResult> {
  return request<KickResult>('/api/kick', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(viewedNode && who ? who : { connectionId }),
  });
}

export function getCluster(): Promise<ClusterView> {
  return request<ClusterView>('/api/cluster');
}
