/** What every uPlot chart on the page shares: palette, axis style, sizing. */
import uPlot from 'uplot';
import { fmtClock } from './format.js';

export const color = {
  blue: '#2f6fdf',
  blueFill: 'rgba(47, 111, 223, 0.10)',
  slate: '#55667a',
  violet: '#7c5cd6',
  violetFill: 'rgba(124, 92, 214, 0.12)',
  green: '#1c9a74',
  grey: '#98a2b0',
  lightGrey: '#c3cad3',
  red: '#d64545',
  amber: '#d98e04',
  ink: '#1f2933',
  muted: '#6b7785',
  grid: '#eef0f3',
};

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

export function axis(opts: uPlot.Axis = {}): uPlot.Axis {
  return {
    stroke: color.muted,
    font: FONT,
    labelFont: FONT,
    grid: { stroke: color.grid, width: 1 },
    ticks: { stroke: color.grid, width: 1, size: 4 },
    ...opts,
  };
}

/**
 * An x axis of wall-clock times: HH:MM, with seconds once ticks are less than
 * a minute apart. Short spans get seconds, which need wider spacing.
 */
export function timeAxis(opts: uPlot.Axis = {}): uPlot.Axis {
  return axis({
    space: (_u, _axis, min, max) => (max - min > 300 ? 42 : 62),
    // uPlot's own steps jump from 1 to 5 minutes; 2 suits a ten-minute chart in a third of the page.
    incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400],
    size: 30,
    values: (_u, splits, _axis, _space, incr) => splits.map((s) => fmtClock(s * 1000, incr < 60)),
    ...opts,
  });
}

/** A y range from zero with a little headroom, never empty. */
export function fromZero(_u: uPlot, _min: number | null, max: number | null): uPlot.Range.MinMax {
  const top = max != null && Number.isFinite(max) && max > 0 ? max : 1;
  return uPlot.rangeNum(0, top, 0.1, true);
}

/**
 * uPlot draws at a fixed pixel size; follow the container's width (it changes
 * with the window and when a hidden panel is shown). Returns a stop function.
 */
export function fitWidth(u: uPlot, el: HTMLElement, height: number): () => void {
  const ro = new ResizeObserver((entries) => {
    const w = Math.floor(entries[0]?.contentRect.width ?? 0); // content box: the container's padding stays clear
    if (w > 0 && w !== u.width) u.setSize({ width: w, height });
  });
  ro.observe(el);
  return () => ro.disconnect();
}

/** Initial width before the ResizeObserver's first report, so the first draw is close. */
export function widthOf(el: HTMLElement): number {
  const cs = getComputedStyle(el);
  return Math.max(200, Math.floor(el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)));
}
