/**
 * The cluster panel: every node of a cluster on a shared store, with its own
 * numbers and the sums, and a link to each node's view (the rest of the page
 * then reads that node through this admin port). Hidden on a lone node.
 */
import type { ClusterView } from '../../src/admin/api-types.js';
import { getCluster, nodeHref, viewedNode } from './api.js';
import { byId, byTestId, h, setText } from './dom.js';
import { fmtDuration, fmtInt, fmtMs } from './format.js';

export class ClusterPanel {
  private readonly panel = byTestId('cluster');
  private readonly rows = byId('cluster-rows');
  private readonly note = byId('cluster-note');
  private readonly scope = byTestId('view-scope');

  async refresh(): Promise<void> {
    this.render(await getCluster());
  }

  private render(v: ClusterView): void {
    const alone = v.nodes.length <= 1;
    this.panel.hidden = alone;
    const self = v.nodes.find((n) => n.self)?.nodeId ?? '';
    setText(this.scope, viewedNode && viewedNode !== self ? `viewing node ${viewedNode} through ${self}` : alone ? '' : `viewing node ${self}`);
    if (alone) return;
    const t = v.totals;
    setText(this.note, `${t.reachable} of ${t.nodes} nodes read`);
    const shown = viewedNode ?? self;
    const body: HTMLElement[] = v.nodes.map((n) => {
      const o = n.overview;
      const link = h('a', { text: n.nodeId, attrs: { href: nodeHref(n.self ? null : n.nodeId) } });
      return h(
        'tr',
        { class: n.nodeId === shown ? 'selected' : '', attrs: { 'data-node': n.nodeId, ...(n.error ? { 'data-error': 'true' } : {}) } },
        h('td', {}, link, n.self ? h('span', { class: 'note', text: ' (this one)' }) : null),
        h('td', { class: 'num', text: o ? fmtInt(o.connections.total) : '—' }),
        h('td', { class: 'num', text: o ? fmtInt(o.online.devices) : '—' }),
        h('td', { class: 'num', text: o ? fmtInt(o.detections) : '—' }),
        h('td', { class: 'num', text: o ? fmtInt(o.falseSuspicions) : '—' }),
        h('td', { class: 'num', text: o?.eventLoop ? fmtMs(o.eventLoop.p99Ms) : '—' }),
        h('td', { class: 'num', text: o?.eventLoop ? fmtMs(o.eventLoop.gcLongestMs) : '—' }),
        h('td', { class: 'num', text: o ? fmtDuration(Math.floor(o.uptimeMs / 1000) * 1000) : '—' }),
        h('td', { class: 'err', text: n.error ?? '' }),
      );
    });
    const total = h(
      'tr',
      { class: 'total', attrs: { 'data-testid': 'cluster-total' } },
      h('td', { text: 'whole cluster' }),
      h('td', { class: 'num', attrs: { 'data-testid': 'cluster-connections' }, text: fmtInt(t.connections) }),
      h('td', { class: 'num', attrs: { 'data-testid': 'cluster-devices' }, text: fmtInt(t.devices) }),
      h('td', { class: 'num', text: fmtInt(t.detections) }),
      h('td', { class: 'num', text: fmtInt(t.falseSuspicions) }),
      h('td', {}),
      h('td', {}),
      h('td', {}),
      h('td', {}),
    );
    this.rows.replaceChildren(...body, total);
  }
}
