/**
 * Talking to the admin port: JSON fetches and the event stream URL, with the
 * optional admin token from the page URL (?token=...).
 */
import type { ConnectionDetail, ConnectionsPage, KickResult, Overview } from '../../src/admin/api-types.js';

const token = new URLSearchParams(location.search).get('token');

export type { ConnectionsPage, KickResult };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** EventSource cannot send headers, so the token rides in the query string. */
export function eventsUrl(): string {
  return token ? `/api/events?token=${encodeURIComponent(token)}` : '/api/events';
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  const res = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (!res.ok) throw new ApiError(res.status, `${init.method ?? 'GET'} ${path.split('?')[0]}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export function getOverview(): Promise<Overview> {
  return request<Overview>('/api/overview');
}

export function getConnections(limit: number, user: string): Promise<ConnectionsPage> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (user) q.set('user', user);
  return request<ConnectionsPage>(`/api/connections?${q}`);
}

export function getConnection(id: string): Promise<ConnectionDetail> {
  return request<ConnectionDetail>(`/api/connections/${encodeURIComponent(id)}`);
}

/** Kicks the connection shown, not whatever connection its device has by now. */
export function kick(connectionId: string): Promise<KickResult> {
  return request<KickResult>('/api/kick', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ connectionId }),
  });
}
