/**
 * One connection's timeline as two uPlot charts sharing an x range and cursor:
 * event lanes on top (a dot per ping, pong, data frame, suspicion, state
 * change), and below the interval in force (a step line) with the RTT of each
 * answered gateway PING on a second y axis.
 */
import uPlot from 'uplot';
import type { ConnectionDetail, TraceKind } from '../../src/admin/api-types.js';
import { axis, color, fitWidth, fromZero, timeAxis, widthOf } from './chart-kit.js';
import { fmtDuration, fmtMs } from './format.js';
import { h } from './dom.js';

const LANES: { kind: TraceKind; color: string; label: string }[] = [
  { kind: 'ping-in', color: color.blue, label: 'ping in' },
  { kind: 'ping-out', color: color.violet, label: 'ping out' },
  { kind: 'pong-in', color: color.green, label: 'pong in' },
  { kind: 'data-in', color: color.slate, label: 'data in' },
  { kind: 'data-out', color: color.lightGrey, label: 'data out' },
  { kind: 'suspect', color: color.red, label: 'suspect' },
  { kind: 'state', color: color.amber, label: 'state' },
];
const laneIndex = new Map(LANES.map((l, i) => [l.kind, i]));
/** Lane i's y on the 'lane' scale: the first lane on top. */
const laneY = (i: number): number => LANES.length - 1 - i;

/** Show at most this much history, and at least this much time (a fresh trace would be a sliver). */
const MAX_SPAN_MS = 5 * 60_000;
const MIN_SPAN_MS = 60_000;
const AXIS_LEFT = 64;
const AXIS_RIGHT = 56;
const LANES_HEIGHT = 150;
const LINES_HEIGHT = 170;

export class Timeline {
  private readonly lanes: uPlot;
  private readonly lines: uPlot;
  /** x range shown, in seconds (uPlot's time unit). */
  private range: [number, number] = [0, 1];
  /** Before this (seconds) nothing was recorded: shaded so a gap doesn't read as silence. */
  private tracedFrom = 0;
  /** No RTT yet: the right axis stays blank rather than scaled to nothing. */
  private hasRtt = false;
  /** The shaded stretch was traced, but its events were dropped (only the last 1,024 are kept). */
  private dropped = false;

  constructor(el: HTMLElement) {
    const lanesEl = h('div', { class: 'timeline-lanes' });
    const linesEl = h('div', { class: 'timeline-lines' });
    el.append(lanesEl, linesEl, legend());
    const xScale: uPlot.Scale = { time: true, range: () => this.range };
    const cursor: uPlot.Cursor = { sync: { key: 'conn-timeline' }, drag: { x: false, y: false } };
    const shade = (u: uPlot): void => this.shadeUntraced(u);

    this.lanes = new uPlot(
      {
        width: widthOf(el),
        height: LANES_HEIGHT,
        // Right padding as wide as the RTT axis below, so both plots line up.
        padding: [8, AXIS_RIGHT, 4, 0],
        cursor: { ...cursor, points: { show: false } },
        legend: { show: false },
        scales: { x: xScale, lane: { auto: false, range: [-0.6, LANES.length - 0.4] } },
        axes: [
          axis({ show: false }),
          axis({
            scale: 'lane',
            size: AXIS_LEFT,
            splits: () => LANES.map((_, i) => i),
            values: (_u, splits) => splits.map((v) => LANES[laneY(v)]?.label ?? ''),
            ticks: { show: false },
          }),
        ],
        series: [
          {},
          ...LANES.map(
            (l): uPlot.Series => ({
              label: l.label,
              scale: 'lane',
              stroke: l.color,
              paths: () => null, // dots only
              points: { show: true, size: 7, width: 1, stroke: l.color, fill: l.color },
            }),
          ),
        ],
        hooks: { drawClear: [shade] },
      },
      [[], ...LANES.map(() => [])],
      lanesEl,
    );

    this.lines = new uPlot(
      {
        width: widthOf(el),
        height: LINES_HEIGHT,
        padding: [8, 0, 0, 0],
        cursor: { ...cursor, points: { size: 6 } },
        legend: { show: false },
        scales: { x: xScale, iv: { range: fromZero }, rtt: { range: fromZero } },
        axes: [
          timeAxis(),
          axis({ scale: 'iv', size: AXIS_LEFT, values: (_u, splits) => splits.map((v) => (v === 0 ? '0' : fmtDuration(v))) }),
          axis({
            scale: 'rtt',
            side: 1,
            size: AXIS_RIGHT,
            grid: { show: false },
            values: (_u, splits) => splits.map((v) => (this.hasRtt ? fmtMs(v) : '')),
          }),
        ],
        series: [
          {},
          {
            label: 'interval',
            scale: 'iv',
            stroke: color.slate,
            width: 2,
            paths: uPlot.paths.stepped!({ align: 1 }),
            points: { show: false },
            value: (_u, v) => fmtDuration(v),
          },
          {
            label: 'RTT',
            scale: 'rtt',
            stroke: color.green,
            width: 1.5,
            spanGaps: true,
            points: { show: true, size: 5, fill: color.green },
            value: (_u, v) => fmtMs(v),
          },
        ],
        hooks: { drawClear: [shade] },
      },
      [[], [], []],
      linesEl,
    );
    fitWidth(this.lanes, el, LANES_HEIGHT);
    fitWidth(this.lines, el, LINES_HEIGHT);
  }

  /** Redraws from a fresh detail; `now` is the gateway's clock. */
  update(detail: ConnectionDetail, now: number): void {
    const events = detail.timeline.events.slice().sort((a, b) => a.t - b.t);
    const last = events.length ? events[events.length - 1]!.t : 0;
    const to = Math.max(now, last);
    const from = Math.max(to - MAX_SPAN_MS, Math.min(detail.timeline.tracingSince, to - MIN_SPAN_MS));
    this.range = [from / 1000, to / 1000];
    // Before keptSince the events were dropped (or never recorded): shaded, not drawn as silence.
    const kept = detail.timeline.keptSince ?? detail.timeline.tracingSince;
    this.tracedFrom = kept / 1000;
    this.dropped = kept > detail.timeline.tracingSince;
    const shown = events.filter((e) => e.t >= from);

    // Lanes: one x per distinct time, a dot at the lane's height for each kind seen then.
    const times = [...new Set(shown.filter((e) => laneIndex.has(e.kind)).map((e) => e.t))];
    const row = new Map(times.map((t, i) => [t, i]));
    const ys = LANES.map(() => new Array<number | null>(times.length).fill(null));
    for (const e of shown) {
      const lane = laneIndex.get(e.kind);
      const i = row.get(e.t);
      if (lane != null && i != null) ys[lane]![i] = laneY(lane);
    }
    this.lanes.setData([times.map((t) => t / 1000), ...ys]);

    // Lines: the interval steps at each 'interval' event; until the first one
    // it is unknown, unless none came, in which case the policy's is in force throughout.
    const intervals = shown.filter((e) => e.kind === 'interval');
    let current: number | null = intervals.length ? null : (detail.connection.policy?.intervalMs ?? null);
    const xs: number[] = [];
    const iv: (number | null)[] = [];
    const rtt: (number | null)[] = [];
    const push = (t: number, r: number | null): void => {
      xs.push(t / 1000);
      iv.push(current);
      rtt.push(r);
    };
    // From the start of the trace (or an earlier event the server kept), so xs stay in order.
    const start = Math.max(from, kept);
    push(shown.length ? Math.min(start, shown[0]!.t) : start, null);
    for (const e of shown) {
      if (e.kind === 'interval' && e.value != null) {
        current = e.value;
        push(e.t, null);
      } else if (e.kind === 'pong-in' && e.value != null) {
        push(e.t, e.value);
      }
    }
    push(to, null);
    this.hasRtt = rtt.some((r) => r != null);
    this.lines.setData([xs, iv, rtt]);
  }

  clear(): void {
    this.lanes.setData([[], ...LANES.map(() => [])]);
    this.lines.setData([[], [], []]);
  }

  private shadeUntraced(u: uPlot): void {
    const [min] = this.range;
    if (this.tracedFrom <= min) return;
    const { ctx, bbox } = u;
    const x0 = bbox.left;
    const x1 = Math.min(u.valToPos(this.tracedFrom, 'x', true), bbox.left + bbox.width);
    ctx.save();
    ctx.fillStyle = 'rgba(107, 119, 133, 0.07)';
    ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
    if (u === this.lanes && x1 - x0 > 70 * devicePixelRatio) {
      ctx.fillStyle = color.muted;
      ctx.font = `${10 * devicePixelRatio}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      // Between two lanes, clear of their grid lines.
      ctx.fillText(this.dropped ? 'not kept' : 'not traced', (x0 + x1) / 2, u.valToPos(LANES.length / 2 - 1, 'lane', true));
    }
    ctx.restore();
  }
}

function legend(): HTMLElement {
  const line = (label: string, stroke: string): HTMLElement =>
    h('span', { class: 'key' }, h('i', { class: 'line', attrs: { style: `border-color:${stroke}` } }), label);
  return h(
    'div',
    { class: 'timeline-legend' },
    ...LANES.map((l) => h('span', { class: 'key' }, h('i', { attrs: { style: `background:${l.color}` } }), l.label)),
    line('interval in force', color.slate),
    line('RTT (right axis)', color.green),
  );
}
