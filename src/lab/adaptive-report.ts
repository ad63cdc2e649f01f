import type { AdaptiveReport } from './adaptive.js';

/** Markdown and SVG for the adaptive-heartbeat lab run. Pure. */

const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function adaptiveMarkdown(rep: AdaptiveReport): string {
  const o = rep.options;
  const lines = [
    `Strict NAT, timeouts ${o.timeoutsSec.map((t) => `${t} s`).join(', ')} (unknown to the client); adaptive client starting at ${s1(o.startMs)}; fixed ${o.fixedMs.map(s1).join(' and ')}; each lab ${o.spanMs / 1000} s. Run ${rep.startedAt}.`,
    '',
    '| NAT timeout T | client | settled interval (share of T) | probe steps | links lost while learning | learned in | links lost after | links lost in the span | heartbeats in the span | per hour | per hour once settled | minimum per hour ceil(3600/0.95T) | once settled vs minimum |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rep.rows) {
    const after = r.heartbeatsPerHourAfterSettled;
    lines.push(
      [
        `${r.timeoutSec} s`,
        r.variant,
        r.settledMs === null ? (r.adaptive ? 'did not settle' : '—') : `${s1(r.settledMs)} (${Math.round(r.settledShareOfT! * 100)}%)`,
        r.probeSteps ?? '—',
        r.dropsWhileLearning ?? '—',
        r.learnedInMs === null ? '—' : s1(r.learnedInMs),
        r.dropsAfterSettled ?? '—',
        r.drops,
        r.heartbeats,
        Math.round(r.heartbeatsPerHour),
        after === null ? '—' : Math.round(after),
        r.minimumPerHour,
        after === null ? '—' : `${after >= r.minimumPerHour ? '+' : ''}${Math.round((after / r.minimumPerHour - 1) * 100)}%`,
      ].join(' | '),
    );
  }
  return lines.map((l) => (l.startsWith('|') || l === '' || !l.includes(' | ') ? l : `| ${l} |`)).join('\n') + '\n';
}

/**
 * Left: the adaptive client's interval over time for each NAT timeout, with
 * T and the 80–95% band; crosses mark lost links. Right: heartbeats per hour
 * and links lost for every client, per timeout.
 */
export function adaptiveSvg(rep: AdaptiveReport): string {
  const W = 1000;
  const panelH = 170;
  const H = 40 + rep.timelines.length * (panelH + 30);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<text x="10" y="18" font-size="13" font-weight="bold">Adaptive heartbeat behind a strict NAT: interval over time (left), heartbeats per hour and links lost per client (right)</text>`,
  ];
  const spanMs = rep.options.spanMs;
  rep.timelines.forEach((tl, i) => {
    const top = 40 + i * (panelH + 30);
    const L = 60;
    const R = 560;
    const T = tl.timeoutSec * 1000;
    const yMax = Math.max(T * 1.6, ...tl.points.map((p) => p.intervalMs)) * 1.05;
    const x = (ms: number) => L + (Math.max(0, Math.min(ms, spanMs)) / spanMs) * (R - L);
    const y = (ms: number) => top + panelH - (ms / yMax) * panelH;
    out.push(`<text x="${L}" y="${top - 6}" font-weight="bold">NAT timeout ${tl.timeoutSec} s</text>`);
    out.push(`<rect x="${L}" y="${y(0.95 * T)}" width="${R - L}" height="${y(0.8 * T) - y(0.95 * T)}" fill="#d5f5e3"/>`);
    out.push(`<line x1="${L}" x2="${R}" y1="${y(T)}" y2="${y(T)}" stroke="#c0392b" stroke-dasharray="5 3"/>`);
    out.push(`<text x="${R + 4}" y="${y(T) + 4}" fill="#c0392b">T</text>`);
    out.push(`<line x1="${L}" x2="${L}" y1="${top}" y2="${top + panelH}" stroke="#999"/><line x1="${L}" x2="${R}" y1="${top + panelH}" y2="${top + panelH}" stroke="#999"/>`);
    for (let v = 0; v <= yMax; v += T / 2) out.push(`<text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${(v / 1000).toFixed(0)} s</text>`);
    for (let t = 0; t <= spanMs; t += 120_000) out.push(`<text x="${x(t)}" y="${top + panelH + 14}" text-anchor="middle">${t / 60_000} min</text>`);
    // A step line: each interval holds until the next change.
    const pts: string[] = [];
    let prev: number | null = null;
    for (const p of tl.points) {
      if (prev !== null) pts.push(`${x(p.atMs)},${y(prev)}`);
      pts.push(`${x(p.atMs)},${y(p.intervalMs)}`);
      prev = p.intervalMs;
    }
    if (prev !== null) pts.push(`${x(spanMs)},${y(prev)}`);
    out.push(`<polyline fill="none" stroke="#2471a3" stroke-width="2" points="${pts.join(' ')}"/>`);
    for (const d of tl.drops) out.push(`<text x="${x(d)}" y="${top + panelH - 4}" text-anchor="middle" fill="#c0392b" font-weight="bold">×</text>`);
    // Right: bars per client.
    const rows = rep.rows.filter((r) => r.timeoutSec === tl.timeoutSec);
    const maxHb = Math.max(...rows.map((r) => r.heartbeatsPerHour), 1);
    const bx = 640;
    const bw = 200;
    rows.forEach((r, k) => {
      const by = top + 10 + k * 50;
      out.push(`<text x="${bx}" y="${by}">${r.variant}</text>`);
      out.push(`<rect x="${bx}" y="${by + 4}" width="${(r.heartbeatsPerHour / maxHb) * bw}" height="12" fill="#2471a3"/>`);
      out.push(`<text x="${bx + (r.heartbeatsPerHour / maxHb) * bw + 4}" y="${by + 14}">${Math.round(r.heartbeatsPerHour)} heartbeats/h</text>`);
      out.push(`<text x="${bx}" y="${by + 30}" fill="${r.drops ? '#c0392b' : '#1e8449'}">${r.drops} link${r.drops === 1 ? '' : 's'} lost${r.adaptive && r.dropsAfterSettled !== null ? ` (${r.dropsAfterSettled} after settling)` : ''}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
