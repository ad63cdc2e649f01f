/** Recent disconnections, newest first, with detections (liveness closes) marked. */
import type { OfflineNotice } from '../../src/admin/api-types.js';
import { byId, byTestId, h, setText } from './dom.js';
import { fmtClock, fmtDuration } from './format.js';

const MAX_ROWS = 50;

/**
 * Reasons a reader sees often get their own colour; the rest share one.
 * Red is kept for detections (a heartbeat-timeout can also be the client's
 * own verdict, sent as its close code, and that one is not the gateway's).
 */
const REASON_CLASS: Record<string, string> = {
  'heartbeat-timeout': 'reason-timeout',
  'client-close': 'reason-client',
  'transport-close': 'reason-transport',
  'kicked': 'reason-admin',
  'replaced': 'reason-admin',
};

export class RecentDisconnections {
  private readonly body = byTestId<HTMLTableSectionElement>('detections');
  private readonly empty = byId('recent-empty');
  private readonly count = byId('recent-count');
  private readonly detected = byId('recent-detected');
  private readonly key = byId('recent-key');
  private rows: OfflineNotice[] = [];

  reset(recent: OfflineNotice[]): void {
    this.rows = recent.slice().sort((a, b) => b.t - a.t).slice(0, MAX_ROWS);
    this.body.replaceChildren(...this.rows.map(row));
    this.renderMeta();
  }

  add(n: OfflineNotice): void {
    this.rows.unshift(n);
    this.body.prepend(row(n));
    while (this.rows.length > MAX_ROWS) {
      this.rows.pop();
      this.body.lastElementChild?.remove();
    }
    this.renderMeta();
  }

  /** The latest notice for a connection, if it is still in the list (the connection view explains a 404 with it). */
  find(connectionId: string): OfflineNotice | undefined {
    return this.rows.find((r) => r.connectionId === connectionId);
  }

  private renderMeta(): void {
    this.empty.hidden = this.rows.length > 0;
    const detected = this.rows.filter((r) => r.detection).length;
    setText(this.count, this.rows.length ? `${this.rows.length} latest ·` : '');
    setText(this.detected, this.rows.length ? `${detected} detected` : '');
    this.key.hidden = this.rows.length === 0;
  }
}

function row(n: OfflineNotice): HTMLTableRowElement {
  const cls = n.detection ? 'reason-detect' : (REASON_CLASS[n.reason] ?? 'reason-other');
  const title = n.detection
    ? `closed by the gateway's liveness detection · code ${n.code}`
    : n.stale
      ? `the device came back on a newer link after this one had gone quiet past its heartbeat interval: it had died unnoticed · code ${n.code}`
      : `close code ${n.code}`;
  const reason = h('span', { class: `reason ${cls}`, text: n.stale ? `${n.reason} (dead)` : n.reason, title });
  return h(
    'tr',
    {
      class: n.detection ? 'is-detection' : '',
      attrs: { 'data-reason': n.reason, 'data-detection': String(n.detection), ...(n.stale !== undefined ? { 'data-stale': String(n.stale) } : {}) },
    },
    h('td', { class: 'time muted', text: fmtClock(n.t) }),
    h('td', { class: 'ellipsis', text: n.userId, title: n.userId }),
    h('td', { class: 'ellipsis', text: n.deviceId, title: n.deviceId }),
    h('td', { text: n.transport }),
    h('td', { class: 'ellipsis' }, reason),
    h('td', { class: 'num', text: fmtDuration(n.silentForMs) }),
  );
}
