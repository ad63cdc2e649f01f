/**
 * The heartbeat RTT histogram of the latest tick: one bar per bucket (x is the
 * bucket's upper bound), with p50/p90/p99 drawn as markers on the same axis.
 */
import uPlot from 'uplot';
import type { RttSummary } from '../../src/admin/api-types.js';
import { axis, color, fitWidth, widthOf } from './chart-kit.js';
import { fmtBound, fmtInt, fmtMs } from './format.js';
import { setText } from './dom.js';

const MARKS: { key: 'p50' | 'p90' | 'p99'; stroke: string }[] = [
  { key: 'p50', stroke: color.green },
  { key: 'p90', stroke: color.amber },
  { key: 'p99', stroke: color.red },
];

export class RttChart {
  private readonly u: uPlot;
  /** Upper bounds of the buckets shown; null is the overflow bucket (Infinity does not survive JSON). */
  private bounds: (number | null)[] = [];
  private summary: RttSummary | null = null;

  constructor(
    el: HTMLElement,
    private readonly note: HTMLElement,
    private readonly empty: HTMLElement,
    height: number,
  ) {
    const opts: uPlot.Options = {
      width: widthOf(el),
      height,
      padding: [14, 8, 0, 0],
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      legend: { show: false },
      scales: {
        // Buckets are ordinal: bar i sits at x = i, whatever its bound.
        x: { time: false, range: () => [-0.5, Math.max(this.bounds.length, 1) - 0.5] },
        y: { range: (_u, _min, max) => [0, Math.max(max ?? 0, 1) * 1.15] },
      },
      axes: [
        axis({
          grid: { show: false },
          splits: () => this.bounds.map((_, i) => i),
          values: (u, splits) => {
            // Thin the labels out when the bars are narrow.
            const every = Math.max(1, Math.ceil((splits.length * 34) / Math.max(u.bbox.width / devicePixelRatio, 1)));
            return splits.map((i, n) => (n % every === 0 ? fmtBound(this.bounds[i] ?? null) : ''));
          },
          label: 'bucket upper bound, ms',
          labelSize: 16,
          labelGap: 0,
        }),
        axis({ size: 44, values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? fmtInt(v) : '')) }),
      ],
      series: [
        {},
        {
          label: 'samples',
          stroke: color.blue,
          fill: 'rgba(47, 111, 223, 0.55)',
          width: 0,
          paths: uPlot.paths.bars!({ size: [0.8, 48], radius: 0.1 }),
          points: { show: false },
        },
      ],
      hooks: { draw: [(u) => this.drawMarks(u)], setCursor: [(u) => this.renderNote(u.cursor.idx ?? null)] },
    };
    this.u = new uPlot(opts, [[], []], el);
    fitWidth(this.u, el, height);
    this.update(null);
  }

  update(rtt: RttSummary | null): void {
    this.summary = rtt;
    const buckets = rtt?.buckets ?? [];
    this.bounds = buckets.map((b) => (typeof b.le === 'number' && Number.isFinite(b.le) ? b.le : null));
    this.u.setData([buckets.map((_, i) => i), buckets.map((b) => b.count)]);
    this.empty.hidden = !!rtt && rtt.count > 0;
    this.renderNote(this.u.cursor.idx ?? null);
  }

  /** Percentiles, or the hovered bucket's count. */
  private renderNote(hovered: number | null): void {
    const s = this.summary;
    const bucket = hovered == null ? undefined : s?.buckets[hovered];
    let text: string;
    if (!s || s.count === 0) text = 'no samples';
    else if (bucket) text = `${this.bucketRange(hovered!)}: ${fmtInt(bucket.count)} of ${fmtInt(s.count)} samples`;
    else text = `p50 ${fmtMs(s.p50)} · p90 ${fmtMs(s.p90)} · p99 ${fmtMs(s.p99)}`;
    setText(this.note, text);
  }

  private bucketRange(i: number): string {
    const hi = this.bounds[i];
    if (hi != null) return `≤ ${fmtBound(hi)} ms`;
    const lo = i > 0 ? this.bounds[i - 1] : null;
    return lo != null ? `> ${fmtBound(lo)} ms` : 'all';
  }

  /** Where a value falls on the ordinal axis: inside its bucket's bar, linearly between the bounds. */
  private position(v: number): number | null {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      const hi = b[i];
      if (hi == null || v <= hi) {
        const lo = i > 0 ? (b[i - 1] ?? 0) : 0;
        const frac = hi == null || hi <= lo ? 0.5 : (v - lo) / (hi - lo);
        return i - 0.5 + Math.min(Math.max(frac, 0), 1);
      }
    }
    return b.length ? b.length - 0.5 : null;
  }

  private drawMarks(u: uPlot): void {
    const s = this.summary;
    if (!s || s.count === 0) return;
    const { ctx, bbox } = u;
    const dpr = devicePixelRatio;
    ctx.save();
    ctx.font = `${10 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    let lastX = -Infinity;
    let level = 0;
    for (const m of MARKS) {
      const v = s[m.key];
      if (v == null) continue;
      const pos = this.position(v);
      if (pos == null) continue;
      const x = Math.round(u.valToPos(pos, 'x', true));
      ctx.strokeStyle = m.stroke;
      ctx.fillStyle = m.stroke;
      ctx.lineWidth = dpr;
      ctx.setLineDash([3 * dpr, 3 * dpr]);
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      // Percentiles often share a bucket: step a label down when it would overlap the previous one.
      level = x - lastX < 26 * dpr ? level + 1 : 0;
      ctx.fillText(m.key, x, bbox.top + level * 11 * dpr);
      lastX = x;
    }
    ctx.restore();
  }
}
