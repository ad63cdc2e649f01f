/**
 * Heartbeat cost, longlink beside its peers, in one run on the same load:
 *
 *   npm run bench -- [--count 10000] [--interval-ms 1000] [--steady-s 30] [--repeat 1] [--peers net,longlink-tcp,...] [--out docs/bench]
 *
 * With --repeat N every peer runs N times, the peers' order rotating each
 * round so none always runs first or last, and each figure reported is the
 * median of its N runs (this machine is shared and noisy; all runs are kept
 * in the JSON).
 *
 * For each peer: its server in a process of its own and the load generator
 * in another (bench/peers/). Reports server RSS and heap per connection, server
 * CPU per heartbeat round trip, connections set up per second and heartbeat
 * bytes per round trip, each also as a ratio to the bare node:net floor.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mosquittoUnavailable, PEERS, runPeer, type Peer, type PeerResult } from './peers/run.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
if (process.argv.includes('--scale')) {
  // The scale run (bench/scale-bench.ts): as many heartbeating connections as the machine holds.
  const { runScale } = await import('./scale-bench.js');
  const auto = (v: string) => (v === 'auto' ? 'auto' : Number(v));
  const t0 = Date.now();
  const r = await runScale(
    {
      target: Number(arg('target', '200000')),
      holdS: Number(arg('hold-s', '600')),
      intervalMs: Number(arg('interval-ms', '30000')),
      workers: auto(arg('workers', 'auto')),
      loadgens: auto(arg('loadgens', 'auto')),
      sources: Number(arg('sources', '128')),
      out: arg('out', 'docs/bench'),
      rampTimeoutS: Number(arg('ramp-timeout-s', '900')),
    },
    (m) => process.stderr.write(`  ${((Date.now() - t0) / 1000).toFixed(0)} s ${m}\n`),
  );
  process.stdout.write(fs.readFileSync(path.join(String((r.options as { out: string }).out), 'scale.md'), 'utf8'));
  process.exit(0);
}
if (process.argv.includes('--storm')) {
  // The reconnect storm (bench/storm-bench.ts): clients lose the gateway at once and come back.
  const { runStorm, stormMarkdown } = await import('./storm-bench.js');
  const t0 = Date.now();
  const r = await runStorm(
    {
      clients: Number(arg('clients', '24000')),
      workers: Number(arg('workers', '2')),
      loadgens: arg('loadgens', 'auto') === 'auto' ? 'auto' : Number(arg('loadgens', '3')),
      sources: Number(arg('sources', '128')),
      modes: arg('modes', 'crash,drain').split(',') as ('crash' | 'drain')[],
      downS: Number(arg('down-s', '3')),
      drainWindowMs: Number(arg('drain-window-ms', '10000')),
      maxBackS: Number(arg('max-back-s', '180')),
      rampTimeoutS: Number(arg('ramp-timeout-s', '300')),
      out: arg('out', 'docs/bench'),
    },
    (m) => process.stderr.write(`  ${((Date.now() - t0) / 1000).toFixed(0)} s ${m}\n`),
  );
  process.stdout.write(stormMarkdown(r));
  process.exit(r.results.every((x) => x.allBackS !== null && x.workerDeaths === 0) ? 0 : 1);
}
if (process.argv.includes('--fuzz')) {
  // The long fuzz run (bench/fuzz.ts); npm test runs the same engine for 10,000 cases.
  const { runFuzz, fuzzMarkdown } = await import('./fuzz.js');
  const cases = Number(arg('cases', '200000'));
  const r = await runFuzz({
    cases,
    seed: Number(arg('seed', String(Date.now() % 1e9))),
    concurrency: Number(arg('concurrency', '64')),
    onProgress: (done, rep) => process.stderr.write(`  ${done}/${cases} cases, ${rep.violations.length} violations\n`),
  });
  process.stdout.write(fuzzMarkdown(r) + '\n');
  process.exit(r.violations.length ? 1 : 0);
}
const count = Number(arg('count', '10000'));
const intervalMs = Number(arg('interval-ms', '1000'));
const steadyS = Number(arg('steady-s', '30'));
const fanoutRounds = Number(arg('fanout', '10'));
const out = arg('out', 'docs/bench');
const repeat = Math.max(1, Number(arg('repeat', '1')));
let peers = arg('peers', PEERS.join(',')).split(',') as Peer[];
const noMosq = mosquittoUnavailable();
if (noMosq && peers.includes('mosquitto')) {
  process.stderr.write(`skipping mosquitto: ${noMosq}\n`);
  peers = peers.filter((p) => p !== 'mosquitto');
}

const t0 = Date.now();
const runs: PeerResult[] = [];
let step = 0;
for (let round = 0; round < repeat; round++) {
  const order = peers.map((_, i) => peers[(i + round) % peers.length]);
  for (const peer of order) {
    process.stderr.write(`[${++step}/${peers.length * repeat}] ${peer}: ${count} connections, heartbeat every ${intervalMs} ms${repeat > 1 ? ` (round ${round + 1}/${repeat})` : ''}\n`);
    runs.push(await runPeer(peer, { count, intervalMs, steadyS, fanoutRounds }, (m) => process.stderr.write(`  ${((Date.now() - t0) / 1000).toFixed(0)} s ${m}\n`)));
  }
}
const results = peers.map((p) => medianResult(runs.filter((r) => r.peer === p)));

/** Each numeric figure the median of the peer's runs (the lower middle one for an even count). */
function medianResult(rs: PeerResult[]): PeerResult {
  const med = (get: (r: PeerResult) => number | null): number | null => {
    const v = rs.map(get).filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
    return v.length ? v[Math.floor((v.length - 1) / 2)] : null;
  };
  const r = { ...rs[0] };
  for (const k of Object.keys(r) as (keyof PeerResult)[]) {
    if (typeof r[k] === 'number') (r as Record<string, unknown>)[k] = med((x) => x[k] as number) ?? NaN;
  }
  return r;
}

const floor = results.find((r) => r.peer === 'net');
const ratio = (v: number, f: number | undefined) => (f ? (v / f).toFixed(2) + '×' : '—');
const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, Linux ${os.release()}`;
const md = [
  `${count.toLocaleString('en')} connections per peer${repeat > 1 ? `, each figure the median of ${repeat} runs` : ''}, one heartbeat round trip per connection every ${intervalMs} ms, ${steadyS} s measured, then ${fanoutRounds} one-byte messages sent to every connection at once (fan-out, fire-and-forget on every peer: longlink \`send\`, ws \`send\`, socket.io \`emit\`, MQTT QoS 0); ${machine}; ${new Date().toISOString()}.`,
  '',
  '| peer | connected | connections/s | server RSS per connection | heap per connection | server CPU per round trip | round trips/s | bytes per round trip | fan-out messages/s |',
  '|---|---|---|---|---|---|---|---|---|',
  ...results.map(
    (r) =>
      `| ${r.peer} | ${r.connections}${r.failed ? ` (${r.failed} failed)` : ''} | ${Math.round(r.connectsPerSecond)} (${ratio(r.connectsPerSecond, floor?.connectsPerSecond)}) | ${r.rssPerConnectionKB.toFixed(1)} KB (${ratio(r.rssPerConnectionKB, floor?.rssPerConnectionKB)}) | ${r.heapPerConnectionKB === null ? '—' : `${r.heapPerConnectionKB.toFixed(1)} KB`} | ${r.cpuUsPerRoundTrip.toFixed(1)} µs (${ratio(r.cpuUsPerRoundTrip, floor?.cpuUsPerRoundTrip)}) | ${Math.round(r.roundTripsPerSecond)} | ${r.bytesPerRoundTrip.toFixed(1)} (${ratio(r.bytesPerRoundTrip, floor?.bytesPerRoundTrip)}) | ${r.fanoutPerSecond === null ? '—' : `${Math.round(r.fanoutPerSecond)} (${ratio(r.fanoutPerSecond, floor?.fanoutPerSecond ?? undefined)})`} |`,
  ),
  '',
].join('\n');
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'heartbeat.json'), JSON.stringify({ count, intervalMs, steadyS, repeat, machine, results, runs }, null, 2) + '\n');
fs.writeFileSync(path.join(out, 'heartbeat.md'), md);
fs.writeFileSync(path.join(out, 'heartbeat.svg'), svg(results));
console.log(md);
process.stderr.write(`wrote ${out}/heartbeat.{json,md,svg} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);

function svg(rs: PeerResult[]): string {
  const metrics: { title: string; get: (r: PeerResult) => number; unit: string }[] = [
    { title: 'server CPU per round trip (µs)', get: (r) => r.cpuUsPerRoundTrip, unit: 'µs' },
    { title: 'server RSS per connection (KB)', get: (r) => r.rssPerConnectionKB, unit: 'KB' },
    { title: 'connections set up per second', get: (r) => r.connectsPerSecond, unit: '/s' },
    { title: 'bytes on the wire per round trip', get: (r) => r.bytesPerRoundTrip, unit: 'B' },
    { title: 'fan-out: messages delivered per second', get: (r) => r.fanoutPerSecond ?? NaN, unit: '/s' },
  ];
  const W = 480;
  const rowH = 18;
  const H = 40 + rs.length * rowH;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W * 2}" height="${H * 3 + 20}" font-family="sans-serif" font-size="11">`];
  metrics.forEach((m, k) => {
    const ox = (k % 2) * W;
    const oy = Math.floor(k / 2) * H + 10;
    const max = Math.max(...rs.map(m.get).filter(Number.isFinite), 1e-9);
    out.push(`<text x="${ox + 10}" y="${oy + 14}" font-weight="bold">${m.title}</text>`);
    rs.forEach((r, i) => {
      const y = oy + 26 + i * rowH;
      const v = m.get(r);
      const w = Number.isFinite(v) ? (v / max) * (W - 200) : 0;
      out.push(`<text x="${ox + 100}" y="${y + 11}" text-anchor="end">${r.peer}</text>`);
      out.push(`<rect x="${ox + 105}" y="${y}" width="${w}" height="13" fill="${r.peer.startsWith('longlink') ? '#2471a3' : r.peer === 'net' ? '#7f8c8d' : '#d68910'}"/>`);
      out.push(`<text x="${ox + 110 + w}" y="${y + 11}">${v.toFixed(v < 10 ? 1 : 0)} ${m.unit}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
