/** The live connections table: polled every 2 s, filterable by user, rows open the connection view. */
import type { ConnectionView } from '../../src/admin/api-types.js';
import { getConnections } from './api.js';
import { byId, byTestId, h, setText } from './dom.js';
import { DASH, fmtDuration, fmtInt, fmtKv, fmtMs } from './format.js';
import { Poller } from './poll.js';

const LIMIT = 200;

export class ConnectionsTable {
  private readonly body = byTestId<HTMLTableSectionElement>('connections');
  private readonly empty = byId('connections-empty');
  private readonly count = byId('connections-count');
  private readonly error = byId('connections-error');
  private readonly filter = byId<HTMLInputElement>('connections-filter');
  private readonly poller = new Poller(() => this.load(), 2000);
  private selected: string | null = null;
  /** The rows on screen, for the click handler. */
  private shown = new Map<string, ConnectionView>();

  constructor(private readonly onOpen: (c: ConnectionView) => void) {
    // Event delegation: rows are rebuilt every poll.
    const open = (target: EventTarget | null): void => {
      const tr = (target as Element | null)?.closest<HTMLTableRowElement>('tr[data-connection-id]');
      const c = tr && this.shown.get(tr.dataset['connectionId'] ?? '');
      if (c) this.onOpen(c);
    };
    this.body.addEventListener('click', (e) => open(e.target));
    this.body.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        open(e.target);
      }
    });
    let debounce = 0;
    this.filter.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = window.setTimeout(() => this.poller.soon(0), 300);
    });
  }

  start(): void {
    this.poller.start();
  }

  /**
   * A connection came or went: refresh without waiting for the period, but at most once a
   * second. Each refresh walks every connection of the gateway, and every open page asks.
   */
  refreshSoon(): void {
    this.poller.soon(250, 1000);
  }

  select(id: string | null): void {
    this.selected = id;
    for (const tr of this.body.rows) tr.classList.toggle('selected', tr.dataset['connectionId'] === id);
  }

  private async load(): Promise<void> {
    const user = this.filter.value.trim();
    try {
      const page = await getConnections(LIMIT, user);
      this.error.hidden = true;
      this.render(page.connections, page.total, user);
    } catch (err) {
      this.error.hidden = false;
      setText(this.error, `Could not load connections: ${(err as Error).message}`);
      throw err;
    }
  }

  private render(list: ConnectionView[], total: number, user: string): void {
    this.shown = new Map(list.map((c) => [c.connectionId, c]));
    // Keep keyboard focus on the same row across the rebuild.
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.['connectionId'];
    this.body.replaceChildren(...list.map((c) => this.row(c)));
    if (focused) this.body.querySelector<HTMLElement>(`tr[data-connection-id="${CSS.escape(focused)}"]`)?.focus();
    this.empty.hidden = list.length > 0;
    setText(this.empty, user ? `No connections for user “${user}”.` : 'No connections.');
    setText(this.count, total > list.length ? `showing ${fmtInt(list.length)} of ${fmtInt(total)}` : `${fmtInt(total)} total`);
  }

  private row(c: ConnectionView): HTMLTableRowElement {
    const p = c.policy;
    const state = fmtKv(c.clientState);
    return h(
      'tr',
      {
        class: [c.suspected ? 'suspected' : '', c.connectionId === this.selected ? 'selected' : ''].join(' ').trim(),
        attrs: { 'data-connection-id': c.connectionId, tabindex: '0', title: `${c.connectionId} · ${c.remoteAddress}` },
      },
      h('td', { class: 'ellipsis', text: c.userId }),
      h('td', { class: 'ellipsis', text: c.deviceId }),
      h('td', { text: c.transport }),
      h('td', { text: p?.direction ?? DASH }),
      h('td', { class: 'num', text: p ? fmtDuration(p.intervalMs) : DASH }),
      h('td', { class: 'num', text: c.announcedIntervalMs == null ? DASH : fmtDuration(c.announcedIntervalMs) }),
      h(
        'td',
        { class: 'num' },
        c.suspected ? h('span', { class: 'suspect-tag', text: 'suspect', title: 'a heartbeat is overdue and a probe is out' }) : null,
        `${fmtDuration(c.lastHeardMsAgo)} ago`,
      ),
      h('td', { class: 'num', text: fmtMs(c.rttMs) }),
      h('td', { class: 'kv ellipsis', text: state || DASH, title: state }),
    );
  }
}
