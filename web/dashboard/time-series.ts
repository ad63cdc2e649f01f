/**
 * A small live line chart over the tick window (online devices, heartbeats/s).
 * Its legend sits in the panel header and shows the latest values, or the
 * hovered ones with their time.
 */
import uPlot from 'uplot';
import { axis, fitWidth, fromZero, timeAxis, widthOf } from './chart-kit.js';
import { h, setText } from './dom.js';
import { DASH, fmtClock, fmtInt } from './format.js';

export interface Line {
  label: string;
  stroke: string;
  fill?: string;
  dash?: number[];
}

export class TimeSeriesChart {
  private readonly u: uPlot;
  private readonly values: HTMLElement[];
  private readonly at = h('span', { class: 'at' });

  constructor(el: HTMLElement, legendEl: HTMLElement, lines: Line[], height: number) {
    this.values = lines.map(() => h('b', { text: DASH }));
    legendEl.replaceChildren(
      ...lines.map((l, i) =>
        h('span', { class: 'key' }, h('i', { class: l.dash ? 'dashed' : '', attrs: { style: `border-color:${l.stroke}` } }), `${l.label} `, this.values[i]!),
      ),
      this.at,
    );
    const opts: uPlot.Options = {
      width: widthOf(el),
      height,
      padding: [8, 18, 0, 0], // right: room for the last time label
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: false },
      scales: { x: { time: true }, y: { range: fromZero } },
      axes: [timeAxis(), axis({ size: 44, values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? fmtInt(v) : '')) })],
      series: [
        {},
        ...lines.map(
          (l): uPlot.Series => ({ label: l.label, stroke: l.stroke, fill: l.fill, dash: l.dash, width: 1.5, points: { show: false } }),
        ),
      ],
      hooks: { setCursor: [(u) => this.showValues(u, u.cursor.idx ?? null)] },
    };
    this.u = new uPlot(opts, [[], ...lines.map(() => [])], el);
    fitWidth(this.u, el, height);
  }

  /** xs in ms since the epoch; one array of ys per line. */
  setData(xs: number[], ys: number[][]): void {
    this.u.setData([xs.map((t) => t / 1000), ...ys]);
    this.showValues(this.u, this.u.cursor.idx ?? null);
  }

  private showValues(u: uPlot, hovered: number | null): void {
    const xs = u.data[0];
    const i = hovered ?? xs.length - 1;
    const has = i >= 0 && i < xs.length;
    this.values.forEach((el, k) => setText(el, has ? fmtInt(u.data[k + 1]?.[i] ?? null) : DASH));
    setText(this.at, has && hovered != null ? `at ${fmtClock(xs[i]! * 1000)}` : '');
  }
}
