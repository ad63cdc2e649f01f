import type { EpisodeResult, ScenarioReport } from './scenarios.js';

/** Report writers for lab runs: a Markdown table and an SVG chart. Pure. */

const sec = (ms: number | null) => (ms === null ? '—' : `${(ms / 1000).toFixed(2)} s`);

function detect(r: EpisodeResult, side: 'server' | 'client'): string {
  const ms = side === 'server' ? r.serverDetectMs : r.clientDetectMs;
  const bound = side === 'server' ? r.serverBoundMs : r.clientBoundMs;
  if (r.frozen === side) return 'frozen, cannot notice';
  if (r.kind !== 'fault') return ms === null ? 'no close' : `closed after ${sec(ms)}`;
  const b = bound === null ? '' : ` (bound ${sec(bound)})`;
  const windowMs = r.windowMs;
  if (ms === null) return `not within ${Math.round(windowMs / 1000)} s${b}`;
  // The bound is longlink's promise: a time past it is said, not left for the reader to compare.
  return `${sec(ms)}${b}${overBound(ms, bound) ? ' **over the bound**' : ''}`;
}

const overBound = (ms: number, bound: number | null) => bound !== null && ms > bound;

export function markdownTable(rep: ScenarioReport): string {
  const head = [
    `### ${rep.scenario}: ${rep.title}`,
    '',
    `NAT: conntrack TCP established timeout ${rep.lab.natTimeoutSec} s, ${rep.lab.strict ? 'strict (invalid dropped)' : 'loose'}${rep.lab.relay ? `; relay ${rep.lab.relay}` : ''}. Run ${rep.startedAt}.`,
    '',
    '| variant | fault | server detected | client detected | reconnect | in-flight / pushed message | false disconnects | heartbeats (client/server) | bytes at NAT (up/down) | note |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const rows = rep.results.map((r) =>
    [
      r.variant,
      r.fault + (r.kind === 'quiet' ? ` (${Math.round(r.windowMs / 1000)} s)` : ''),
      detect(r, 'server') + (r.serverReason ? ` ${r.serverReason}` : ''),
      detect(r, 'client'),
      sec(r.reconnectMs),
      r.delivered === null ? '—' : r.delivered ? `delivered in ${sec(r.deliveryMs)}` : r.kind === 'idle' ? 'lost on the dead link' : 'not delivered by the end of the run',
      String(r.falseDisconnects) + (r.falseBy ? ` (gateway ${r.falseBy.server}, client ${r.falseBy.client})` : ''),
      `${r.heartbeats.client}/${r.heartbeats.server}`,
      `${r.bytes.up}/${r.bytes.down}`,
      r.note,
    ].join(' | '),
  );
  return [...head, ...rows.map((x) => `| ${x} |`), '', ...tunedLines(rep)].join('\n');
}

/** The configurator's run: what was measured, asked and chosen. */
function tunedLines(rep: ScenarioReport): string[] {
  const t = rep.tuned;
  if (!t) return [];
  const r = t.result as { ok: boolean; reason?: string; detector?: string; intervalMs?: number; lateMs?: number; missBudget?: number; graceMs?: number; falseSuspicionsPerMonth?: number };
  return [
    `Measured by the gateway: ${t.network.heartbeats} heartbeat gaps, ${(t.network.lossRate * 100).toFixed(2)}% empty slots, lateness p99.9 ${t.network.lateP999Ms} ms, mean one-way delay ${t.network.delayMeanMs} ms (half the clients' RTT). Asked: detect within ${t.target.detectWithinMs / 1000} s, at most ${t.target.falseSuspicionsPerMonth} false suspicion per connection-month. ` +
      (r.ok
        ? `Chosen: the ${r.detector} detector, a heartbeat every ${r.intervalMs} ms, miss budget ${r.missBudget}, grace ${r.graceMs} ms (${r.detector === 'freshness' ? `lateMs ${r.lateMs}` : `silence limit ${r.lateMs}`} ms), ${r.falseSuspicionsPerMonth!.toPrecision(2)} false suspicions a month expected.`
        : `No policy: ${r.reason}.`),
    '',
  ];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Detection time per episode, server and client side, as horizontal bars on
 * one time axis; an undetected fault is a hatched bar to the end of its
 * window, the promised bound a black tick.
 */
export function svgChart(reports: ScenarioReport[]): string {
  const rows: { label: string; side: 'server' | 'client' | 'quiet' | 'idle'; r: EpisodeResult }[] = [];
  for (const rep of reports) for (const r of rep.results) {
    if (r.kind === 'idle') {
      rows.push({ label: `${r.variant}: ${r.fault}`, side: 'idle', r });
      continue;
    }
    if (r.kind === 'quiet') {
      rows.push({ label: `${r.variant}: ${r.fault}`, side: 'quiet', r });
      continue;
    }
    rows.push({ label: `${r.variant}: ${r.fault}`, side: 'server', r }, { label: '', side: 'client', r });
  }
  const maxMs = Math.max(1000, ...rows.filter((x) => x.side === 'server' || x.side === 'client').map(({ r }) => r.windowMs));
  const left = 430;
  const width = 1000;
  const plot = width - left - 30;
  const rowH = 16;
  const top = 40;
  const height = top + rows.length * rowH + 60;
  const x = (ms: number) => left + (Math.min(ms, maxMs) / maxMs) * plot;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    '<defs><pattern id="h" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eee"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c33" stroke-width="2"/></pattern></defs>',
    `<text x="10" y="18" font-size="14" font-weight="bold">Time from fault to close (server: blue, client: green; red: past the bound; hatched: not noticed within the window; tick: longlink's bound)</text>`,
  ];
  for (let s = 0; s <= maxMs; s += maxMs > 20_000 ? 5000 : 1000) {
    out.push(`<line x1="${x(s)}" y1="${top - 6}" x2="${x(s)}" y2="${top + rows.length * rowH}" stroke="#ddd"/>`);
    out.push(`<text x="${x(s)}" y="${top + rows.length * rowH + 14}" text-anchor="middle">${s / 1000} s</text>`);
  }
  rows.forEach(({ label, side, r }, i) => {
    const y = top + i * rowH;
    if (label) out.push(`<text x="${left - 8}" y="${y + 12}" text-anchor="end">${esc(label.length > 68 ? label.slice(0, 66) + '…' : label)}</text>`);
    if (side === 'idle') {
      const ok = r.delivered === true;
      out.push(`<text x="${left + 4}" y="${y + 12}" fill="${ok ? '#262' : '#900'}">${ok ? 'push after the idle span delivered on the same link' : 'push after the idle span lost: the NAT forgot the link and nobody noticed'}</text>`);
      return;
    }
    if (side === 'quiet') {
      const n = r.falseDisconnects;
      out.push(`<text x="${left + 4}" y="${y + 12}" fill="${n ? '#900' : '#262'}">no fault for ${Math.round(r.windowMs / 1000)} s: ${n} false disconnect${n === 1 ? '' : 's'}</text>`);
      return;
    }
    const ms = side === 'server' ? r.serverDetectMs : r.clientDetectMs;
    const bound = side === 'server' ? r.serverBoundMs : r.clientBoundMs;
    const frozenSide = r.frozen === side;
    if (frozenSide) {
      out.push(`<text x="${left + 4}" y="${y + 12}" fill="#888">${side}: frozen, cannot notice</text>`);
    } else if (ms === null) {
      out.push(`<rect x="${left}" y="${y + 2}" width="${x(r.windowMs) - left}" height="${rowH - 4}" fill="url(#h)"/>`);
      out.push(`<text x="${x(r.windowMs) - 4}" y="${y + 12}" text-anchor="end" fill="#900">${side}: not noticed</text>`);
    } else {
      const over = overBound(ms, bound);
      out.push(`<rect x="${left}" y="${y + 2}" width="${Math.max(1, x(ms) - left)}" height="${rowH - 4}" fill="${over ? '#c33' : side === 'server' ? '#3b6fd1' : '#3aa35b'}"/>`);
      out.push(`<text x="${x(ms) + 4}" y="${y + 12}"${over ? ' fill="#900"' : ''}>${(ms / 1000).toFixed(2)} s${over ? ', over the bound' : ''}</text>`);
    }
    if (bound !== null && !frozenSide) out.push(`<line x1="${x(bound)}" y1="${y}" x2="${x(bound)}" y2="${y + rowH}" stroke="#000" stroke-width="2"/>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
