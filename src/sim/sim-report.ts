import type { DetectorResult } from './detector-sim.js';

/** Markdown and SVG for the detector simulation. Pure. */

export interface SweepPoint {
  jitterMs: number;
  targetTdMs: number;
  results: DetectorResult[];
}

const perMonth = (x: number) => (x === 0 ? '0' : x < 0.01 ? x.toExponential(1) : x.toFixed(x < 10 ? 2 : 0));
const hours = (h: number) => (h === Infinity ? 'none seen' : h >= 720 ? `${(h / 720).toFixed(1)} months` : `${h.toFixed(0)} h`);

export function pointTable(p: SweepPoint): string {
  const fixed = p.results.find((r) => r.name === 'fixed')!;
  const lines = [
    '| detector | setting | T_D mean | T_D p99.9 | false suspicions | per connection-month | T_MR | T_M mean | fixed ÷ this |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of p.results) {
    const ratio = r.mistakes === 0 ? (fixed.mistakes === 0 ? '—' : `> ${fixed.mistakes}`) : (fixed.mistakes / r.mistakes).toFixed(1);
    lines.push(
      `| ${r.name} | ${r.knobLabel} | ${(r.tdMeanMs / 1000).toFixed(2)} s | ${(r.tdP999Ms / 1000).toFixed(2)} s | ${r.mistakes} | ${perMonth(r.mistakesPerConnectionMonth)} | ${hours(r.mistakeRecurrenceHours)} | ${(r.meanMistakeMs / 1000).toFixed(2)} s | ${ratio} |`,
    );
  }
  return lines.join('\n') + '\n';
}

export function sweepTable(points: SweepPoint[]): string {
  const lines = ['| jitter | T_D (p99.9) | fixed / conn-month | phi / conn-month | freshness / conn-month | fixed ÷ freshness |', '|---|---|---|---|---|---|'];
  for (const p of points) {
    const by = (n: string) => p.results.find((r) => r.name === n)!;
    const f = by('fixed');
    const a = by('freshness');
    const ratio = a.mistakes === 0 ? (f.mistakes === 0 ? '—' : `> ${f.mistakes}`) : (f.mistakes / a.mistakes).toFixed(1);
    lines.push(`| ${p.jitterMs} ms | ${p.targetTdMs / 1000} s | ${perMonth(f.mistakesPerConnectionMonth)} | ${perMonth(by('phi').mistakesPerConnectionMonth)} | ${perMonth(a.mistakesPerConnectionMonth)} | ${ratio} |`);
  }
  return lines.join('\n') + '\n';
}

const COLORS: Record<string, string> = { fixed: '#c0392b', phi: '#8e44ad', freshness: '#2471a3' };

/** One panel per jitter: false suspicions per connection-month (log scale) against T_D. */
export function sweepSvg(points: SweepPoint[]): string {
  const jitters = [...new Set(points.map((p) => p.jitterMs))];
  const W = 330;
  const H = 260;
  const pad = { l: 50, r: 10, t: 30, b: 40 };
  const tds = points.map((p) => p.targetTdMs);
  const [tMin, tMax] = [Math.min(...tds), Math.max(...tds)];
  const floor = 1e-3;
  const vals = points.flatMap((p) => p.results.map((r) => Math.max(floor, r.mistakesPerConnectionMonth)));
  const yMax = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, 10))));
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W * jitters.length}" height="${H + 30}" font-family="sans-serif" font-size="11">`];
  out.push(`<text x="10" y="16" font-size="13" font-weight="bold">False suspicions per connection-month against detection time T_D (p99.9), 1% loss, equal heartbeat rate</text>`);
  jitters.forEach((j, pi) => {
    const ox = pi * W;
    const x = (t: number) => ox + pad.l + ((t - tMin) / Math.max(1, tMax - tMin)) * (W - pad.l - pad.r);
    const y = (v: number) => pad.t + 20 + (1 - (Math.log10(Math.max(floor, v)) - Math.log10(floor)) / (Math.log10(yMax) - Math.log10(floor))) * (H - pad.t - pad.b - 20);
    out.push(`<text x="${ox + W / 2}" y="${pad.t + 10}" text-anchor="middle" font-weight="bold">jitter ${j} ms</text>`);
    for (let e = Math.log10(floor); e <= Math.log10(yMax); e++) {
      const v = Math.pow(10, e);
      out.push(`<line x1="${x(tMin)}" x2="${x(tMax)}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${x(tMin) - 4}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toString()}</text>`);
    }
    out.push(`<line x1="${x(tMin)}" x2="${x(tMax)}" y1="${y(1)}" y2="${y(1)}" stroke="#999" stroke-dasharray="4 3"/>`);
    for (let t = Math.ceil(tMin / 1000) * 1000; t <= tMax; t += 1000) out.push(`<text x="${x(t)}" y="${H - pad.b + 20}" text-anchor="middle">${t / 1000}</text>`);
    out.push(`<text x="${ox + W / 2}" y="${H - 2}" text-anchor="middle">T_D (s)</text>`);
    for (const name of ['fixed', 'phi', 'freshness']) {
      const pts = points.filter((p) => p.jitterMs === j).map((p) => [x(p.targetTdMs), y(p.results.find((r) => r.name === name)!.mistakesPerConnectionMonth)]);
      out.push(`<polyline fill="none" stroke="${COLORS[name]}" stroke-width="2" points="${pts.map((q) => q.join(',')).join(' ')}"/>`);
      for (const [px, py] of pts) out.push(`<circle cx="${px}" cy="${py}" r="2.5" fill="${COLORS[name]}"/>`);
    }
  });
  let lx = 10;
  for (const name of ['fixed', 'phi', 'freshness']) {
    out.push(`<rect x="${lx}" y="${H + 12}" width="12" height="4" fill="${COLORS[name]}"/><text x="${lx + 16}" y="${H + 18}">${name}</text>`);
    lx += 90;
  }
  out.push(`<text x="${lx}" y="${H + 18}" fill="#666">dashed: one per month (Chen et al.'s target); points at ${floor} mean none seen</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
