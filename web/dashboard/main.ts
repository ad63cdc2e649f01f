/**
 * longlink dashboard: wires the event stream and the polled endpoints to the
 * views. State lives in the views; a snapshot (sent on every (re)connection)
 * resets it.
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { Overview, Tick } from '../../src/admin/api-types.js';
import { getOverview } from './api.js';
import { color } from './chart-kit.js';
import { ConnectionPanel } from './connection-view.js';
import { ClusterPanel } from './cluster.js';
import { ConnectionsTable } from './connections.js';
import { byId, byTestId, setText } from './dom.js';
import { Header } from './header.js';
import { Poller } from './poll.js';
import { RecentDisconnections } from './recent.js';
import { RttChart } from './rtt-chart.js';
import { openStream } from './stream.js';
import { TickWindow } from './ticks.js';
import { Tiles } from './tiles.js';
import { TimeSeriesChart } from './time-series.js';

const ticks = new TickWindow();
const header = new Header();
const tiles = new Tiles();
const recent = new RecentDisconnections();
const onlineChart = new TimeSeriesChart(
  byTestId('chart-online'),
  byId('legend-online'),
  [
    { label: 'devices', stroke: color.blue, fill: color.blueFill },
    { label: 'connections', stroke: color.slate, dash: [4, 3] },
  ],
  190,
);
const heartbeatChart = new TimeSeriesChart(
  byTestId('chart-heartbeats'),
  byId('legend-heartbeats'),
  [{ label: 'PINGs in + out', stroke: color.violet, fill: color.violetFill }],
  190,
);
const rttChart = new RttChart(byTestId('chart-rtt'), byId('rtt-note'), byId('rtt-empty'), 190);

const panel = new ConnectionPanel(
  () => ticks.serverNow(),
  (id) => recent.find(id),
  () => table.select(null),
);
const table = new ConnectionsTable((c) => {
  panel.open(c);
  table.select(c.connectionId);
});

function renderSeries(): void {
  const list = ticks.ticks;
  const xs = list.map((t) => t.t);
  onlineChart.setData(xs, [list.map((t) => t.online), list.map((t) => t.connections)]);
  heartbeatChart.setData(xs, [list.map((t) => t.heartbeatsPerSec)]);
  const span = spanText(list);
  setText(byId('span-online'), span);
  setText(byId('span-heartbeats'), span);
}

/** How much history the charts hold, since a fresh gateway has less than ten minutes. */
function spanText(list: readonly Tick[]): string {
  if (list.length < 2) return '';
  const min = Math.round((list[list.length - 1]!.t - list[0]!.t) / 60_000);
  return min >= 1 ? `last ${min} min` : 'last minute';
}

function applyOverview(o: Overview, fromSnapshot: boolean): void {
  header.setOverview(o);
  tiles.setOverview(o, fromSnapshot);
}

openStream({
  snapshot(s) {
    ticks.reset(s.history);
    applyOverview(s.overview, true);
    tiles.setCountsFromOverview(s.overview);
    const last = ticks.latest;
    if (last) tiles.setTick(last);
    rttChart.update(last ? last.rtt : null);
    renderSeries();
    recent.reset(s.recent);
    table.refreshSoon();
  },
  tick(t) {
    ticks.push(t); // one stamped before the last (the gateway's clock stepped back) drops the ticks after it
    tiles.setTick(t);
    rttChart.update(t.rtt);
    renderSeries();
    // Notices were skipped (a storm): the list had gaps; this is the gateway's whole list.
    if (t.recent) recent.reset(t.recent);
  },
  online() {
    table.refreshSoon();
  },
  offline(n) {
    recent.add(n);
    tiles.countOffline(n);
    panel.offline(n);
    table.refreshSoon();
  },
  state(s) {
    const el = byTestId('status');
    setText(el, s);
    el.dataset['state'] = s;
  },
});

// Ticks carry no uptime or per-transport split: refresh the overview now and then.
new Poller(async () => applyOverview(await getOverview(), false), 5000).start();
table.start();
const clusterPanel = new ClusterPanel();
new Poller(() => clusterPanel.refresh(), 5000).start();
