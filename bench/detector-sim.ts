/**
 * Fixed, phi and freshness detectors compared by deterministic simulation at
 * equal heartbeat rate and equal T_D (see src/sim/detector-sim.ts).
 *
 *   npm run sim -- [--hours 100000] [--out docs/lab]
 *   npm run sim -- --tune [--hours 100000]    (the configurator checked: docs/lab/tune-check.md)
 *   npm run sim -- --default-bound            (both detectors at the default policy: docs/lab/default-bound.md)
 *
 * For each jitter (10, 100, 500 ms, exponential, on 20 ms base delay) and
 * each target T_D, every detector's knob is calibrated on its own run so
 * its T_D (p99.9) equals the target, then all are scored on the same
 * heartbeats over `--hours` connection-hours.
 */
import fs from 'node:fs';
import path from 'node:path';
import { calibrate, DETECTORS, simulate, type Channel } from '../src/sim/detector-sim.js';
import { pointTable, sweepSvg, sweepTable, type SweepPoint } from '../src/sim/sim-report.js';
import { checkTuning } from '../src/sim/tune-check.js';
import { exitOnHelp } from './usage.js';

exitOnHelp(import.meta.url);

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const totalHours = Number(arg('hours', '100000'));
const out = arg('out', 'docs/lab');
const intervalMs = Number(arg('interval-ms', '9970'));
const jitters = arg('jitters', '10,100,500').split(',').map(Number);
const targets = arg('td', '29500,30000,30250,30500,31000,31500,32000,33000,34000,35000').split(',').map(Number);
const HOURS_PER_CONN = 10;

if (process.argv.includes('--tune')) {
  // The configurator, end to end in the simulation (src/sim/tune-check.ts): measured at a 25 s heartbeat,
  // tuned for "detect within 30 s, at most one false suspicion a month", scored on unseen connection-hours.
  const rows: string[] = [];
  const target = { detectWithinMs: 30_000, falseSuspicionsPerMonth: 1, minIntervalMs: 1000 };
  const settings = [
    { lossRate: 0.01, baseDelayMs: 20, jitterMs: 10 },
    { lossRate: 0.01, baseDelayMs: 20, jitterMs: 100 },
    { lossRate: 0.001, baseDelayMs: 20, jitterMs: 500 },
    { lossRate: 0.05, baseDelayMs: 20, jitterMs: 100 },
  ];
  const t1 = Date.now();
  for (const ch of settings) {
    const c = checkTuning(ch, target, { measuredAtIntervalMs: 25_000, measureHours: 1000, hours: totalHours, seed: 1 });
    const r = c.result;
    const s = c.scored;
    rows.push(
      r.ok && s
        ? `| ${ch.lossRate * 100}% | 20 ms + Exp(${ch.jitterMs} ms) | ${c.measuredHeartbeats.toLocaleString('en')} | ${r.detector} | ${(r.intervalMs / 1000).toFixed(2)} s | ${(r.lateMs / 1000).toFixed(3)} s | ${r.falseSuspicionsPerMonth.toPrecision(2)} | ${s.mistakes} in ${Math.round(s.connectionHours).toLocaleString('en')} h: **${s.mistakesPerConnectionMonth.toPrecision(2)}** | **${(s.tdP999Ms / 1000).toFixed(3)} s** | ${c.silence ? `${c.silence.mistakes}: **${c.silence.mistakesPerConnectionMonth.toPrecision(2)}** (T_D ${(c.silence.tdP999Ms / 1000).toFixed(3)} s; the model said ${r.other ? r.other.falseSuspicionsPerMonth.toPrecision(2) : '—'})` : '—'} |`
        : `| ${ch.lossRate * 100}% | 20 ms + Exp(${ch.jitterMs} ms) | ${c.measuredHeartbeats.toLocaleString('en')} | none: ${r.ok ? '' : r.reason} | | | | | | |`,
    );
    process.stderr.write(`tune check ${rows.length}/${settings.length} in ${((Date.now() - t1) / 1000).toFixed(0)} s\n`);
  }
  const md = [
    `Target: detect within 30 s, at most 1 false suspicion per connection-month. Measured at a 25 s heartbeat over 1,000 connection-hours, tuned, then scored over ${totalHours.toLocaleString('en')} connection-hours (seed 1).`,
    '',
    '| loss | delay | heartbeat gaps measured | detector chosen | interval chosen | lateMs or silence limit | expected / month | false suspicions (simulated) / month | T_D p99.9 (simulated) | the silence detector at that interval and T_D, simulated / month |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'tune-check.md'), md);
  console.log(md);
  process.exit(0);
}

if (process.argv.includes('--default-bound')) {
  // The default detector question: silence and freshness at the same documented bound (the default
  // policy: 25 s × missBudget 2 + 5 s grace), on the same simulated heartbeats.
  const I = 25_000;
  const mb = 2;
  const g = 5_000;
  const fixed = DETECTORS.find((d) => d.name === 'fixed')!;
  const fresh = DETECTORS.find((d) => d.name === 'freshness')!;
  const rows: string[] = [];
  for (const ch of [
    { lossRate: 0.01, baseDelayMs: 20, jitterMs: 10 },
    { lossRate: 0.01, baseDelayMs: 20, jitterMs: 100 },
    { lossRate: 0.001, baseDelayMs: 20, jitterMs: 500 },
    { lossRate: 0.05, baseDelayMs: 20, jitterMs: 100 },
    { lossRate: 0, baseDelayMs: 20, jitterMs: 2000 },
  ]) {
    const [sr, fr] = simulate({ ...ch, intervalMs: I }, [{ kind: fixed, knob: I * mb + g }, { kind: fresh, knob: (mb - 1) * I + g }], { connections: Math.ceil(totalHours / 50), hoursPerConnection: 50, seed: 1 });
    const cell = (r: typeof sr) => `${r.mistakes} (${r.mistakesPerConnectionMonth.toPrecision(2)}) | ${(r.tdMeanMs / 1000).toFixed(2)} s | ${(r.tdP999Ms / 1000).toFixed(2)} s`;
    rows.push(`| ${ch.lossRate * 100}% | 20 ms + Exp(${ch.jitterMs} ms) | ${cell(sr)} | ${cell(fr)} |`);
  }
  const md = [
    `Heartbeat every 25 s, missBudget 2, grace 5 s (the documented bound 55 s; freshness lateMs 30 s); ${totalHours.toLocaleString('en')} connection-hours per row, seed 1.`,
    '',
    '| loss | delay | silence: false suspicions (per month) | T_D mean | T_D p99.9 | freshness: false suspicions (per month) | T_D mean | T_D p99.9 |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'default-bound.md'), md);
  console.log(md);
  process.exit(0);
}

const points: SweepPoint[] = [];
const t0 = Date.now();
const total = jitters.length * targets.length;
for (const jitterMs of jitters) {
  const channel: Channel = { intervalMs, lossRate: 0.01, baseDelayMs: 20, jitterMs };
  for (const targetTdMs of targets) {
    const cal = { connections: 200, hoursPerConnection: 5, seed: 7 };
    const tuned = DETECTORS.map((kind) => ({ kind, knob: calibrate(kind, channel, targetTdMs, cal) }));
    const results = simulate(channel, tuned, { connections: Math.ceil(totalHours / HOURS_PER_CONN), hoursPerConnection: HOURS_PER_CONN, seed: 1 });
    points.push({ jitterMs, targetTdMs, results });
    const f = results.find((r) => r.name === 'fixed')!;
    const a = results.find((r) => r.name === 'freshness')!;
    process.stderr.write(
      `[${points.length}/${total}] ${((Date.now() - t0) / 1000).toFixed(0)} s: jitter ${jitterMs} ms, T_D ${targetTdMs / 1000} s: ` +
        `false suspicions fixed ${f.mistakes}, freshness ${a.mistakes} in ${Math.round(f.connectionHours)} connection-hours\n`,
    );
  }
}

fs.mkdirSync(out, { recursive: true });
const chen = points.filter((p) => p.targetTdMs === 30_000);
const md = [
  `Heartbeat every ${intervalMs / 1000} s, 1% loss, delay 20 ms + Exp(jitter); ${totalHours.toLocaleString('en')} connection-hours per point (${HOURS_PER_CONN} h per connection), seed 1; knobs calibrated on a separate run (seed 7).`,
  '',
  ...chen.flatMap((p) => [`#### T_D = 30 s, jitter ${p.jitterMs} ms`, '', pointTable(p)]),
  '#### Sweep over T_D',
  '',
  sweepTable(points),
].join('\n');
fs.writeFileSync(path.join(out, 'detector-sim.md'), md);
fs.writeFileSync(path.join(out, 'detector-sim.json'), JSON.stringify({ intervalMs, lossRate: 0.01, baseDelayMs: 20, totalHours, points }, null, 2) + '\n');
fs.writeFileSync(path.join(out, 'detector-sim.svg'), sweepSvg(points));
console.log(md);
process.stderr.write(`wrote ${out}/detector-sim.{md,json,svg} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
