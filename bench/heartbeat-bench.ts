/**
 * Heartbeat cost, longlink beside its peers, in one run on the same load:
 *
 *   npm run bench -- [--count 10000] [--interval-ms 1000] [--steady-s 30] [--repeat 3] [--peers net,longlink-tcp,...] [--publish]
 *
 * and the other modes (--hold, --scale, --storm, --fuzz); `--help` lists them
 * all with their flags (bench/bench-args.ts). Results go to bench-out/<mode>
 * unless --publish (docs/bench) or --out is given.
 *
 * With --repeat N every peer runs N times, the peers' order rotating each
 * round so none always runs first or last. Each ratio to the bare node:net
 * floor is taken within a round (the floor drifts between rounds on a shared
 * machine), and the table shows the median of the per-round ratios with
 * their spread; absolute figures are medians of the runs. All runs are kept
 * in the JSON.
 *
 * For each peer: its server in a process of its own and the load generator
 * in another (bench/peers/). Reports server RSS and heap per connection, server
 * CPU per heartbeat round trip, connections set up per second and heartbeat
 * bytes per round trip.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchArgsError, benchUsage, parseBenchArgs, type BenchArgs } from './bench-args.js';
import { mosquittoUnavailable, type Peer, type PeerResult } from './peers/run.js';
import { median, roundRatios } from './ratios.js';

let args: BenchArgs;
try {
  args = parseBenchArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof BenchArgsError)) throw err;
  process.stderr.write(`bench: ${err.message}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(benchUsage());
  process.exit(0);
}
const t0 = Date.now();
const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, Linux ${os.release()}`;
const progress = (m: string) => process.stderr.write(`  ${((Date.now() - t0) / 1000).toFixed(0)} s ${m}\n`);
const out = args.out;
process.stderr.write(`bench ${args.mode}: results to ${out}${out === 'docs/bench' ? ' (published)' : ''}\n`);

if (args.mode === 'scale') {
  // The scale run (bench/scale-bench.ts): as many heartbeating connections as the machine holds.
  const { runScale } = await import('./scale-bench.js');
  const r = await runScale(
    {
      target: args.num('target'),
      holdS: args.num('hold-s'),
      intervalMs: args.num('interval-ms'),
      workers: args.auto('workers'),
      loadgens: args.auto('loadgens'),
      sources: args.num('sources'),
      out,
      rampTimeoutS: args.num('ramp-timeout-s'),
    },
    progress,
  );
  process.stdout.write(fs.readFileSync(path.join(String((r.options as { out: string }).out), 'scale.md'), 'utf8'));
  process.exit(0);
}
if (args.mode === 'hold') {
  // The long hold (bench/hold-bench.ts): does a heartbeat cost the same after half an hour?
  const { runHold, holdMarkdown, HOLD_PEERS } = await import('./hold-bench.js');
  const peers = args.get('peers').split(',') as (typeof HOLD_PEERS)[number][];
  const bad = peers.filter((p) => !HOLD_PEERS.includes(p));
  if (bad.length) {
    process.stderr.write(`bench: --peers takes ${HOLD_PEERS.join(', ')}; not ${bad.join(', ')}\n`);
    process.exit(2);
  }
  const r = await runHold(
    {
      connections: args.num('connections'),
      intervalMs: args.num('interval-ms'),
      holdS: args.num('hold-s'),
      sampleS: args.num('sample-s'),
      peers,
      servers: args.auto('servers'),
      out,
      rampTimeoutS: args.num('ramp-timeout-s'),
    },
    progress,
  );
  process.stdout.write(holdMarkdown(r));
  process.exit(0);
}
if (args.mode === 'storm') {
  // The reconnect storm (bench/storm-bench.ts): clients lose the gateway at once and come back.
  const { runStorm, stormMarkdown } = await import('./storm-bench.js');
  const r = await runStorm(
    {
      clients: args.num('clients'),
      workers: args.num('workers'),
      loadgens: args.auto('loadgens'),
      sources: args.num('sources'),
      modes: args.get('modes').split(',') as ('crash' | 'drain')[],
      downS: args.num('down-s'),
      drainWindowMs: args.num('drain-window-ms'),
      maxBackS: args.num('max-back-s'),
      rampTimeoutS: args.num('ramp-timeout-s'),
      out,
    },
    progress,
  );
  process.stdout.write(stormMarkdown(r));
  process.exit(r.results.every((x) => x.allBackS !== null && x.workerDeaths === 0) ? 0 : 1);
}
if (args.mode === 'faults') {
  // Delivery under faults (bench/faults/run.ts); npm test runs 40 s of the same.
  const { runFaults, faultsMarkdown } = await import('./faults/run.js');
  const seed = args.get('seed') === 'now' ? Date.now() % 1e9 : args.num('seed');
  const r = await runFaults({ seed, durationS: args.num('duration-s'), users: args.num('users'), faultEveryS: args.num('fault-every-s'), log: progress });
  const md = faultsMarkdown(r);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'faults.json'), JSON.stringify(r, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'faults.md'), md + '\n');
  process.stdout.write(md + '\n');
  process.exit(r.violations.length ? 1 : 0);
}
if (args.mode === 'api') {
  // The server API against the library's push() (bench/api-bench.ts).
  const { runApiBench, apiBenchMarkdown } = await import('./api-bench.js');
  const r = await runApiBench({ devices: args.num('devices'), messages: args.num('messages'), concurrency: args.num('concurrency'), batch: args.num('batch'), progress });
  const md = apiBenchMarkdown(r, `npm run bench -- --api --devices ${args.get('devices')} --messages ${args.get('messages')} --concurrency ${args.get('concurrency')} --batch ${args.get('batch')}`, machine);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'api.json'), JSON.stringify(r, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'api.md'), md + '\n');
  process.stdout.write(md + '\n');
  process.exit(0);
}
if (args.mode === 'webhook') {
  // Webhook upstream against the backend's own rate (bench/webhook-bench.ts).
  const { runWebhookBench, webhookBenchMarkdown } = await import('./webhook-bench.js');
  const r = await runWebhookBench({ messages: args.num('messages'), devices: args.num('devices'), concurrency: args.num('concurrency'), progress });
  const md = webhookBenchMarkdown(r, `npm run bench -- --webhook --messages ${args.get('messages')} --devices ${args.get('devices')} --concurrency ${args.get('concurrency')}`, machine);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'webhook.json'), JSON.stringify(r, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'webhook.md'), md + '\n');
  process.stdout.write(md + '\n');
  process.exit(0);
}
if (args.mode === 'attack') {
  // The attack suite (bench/attack/); npm test runs every scenario briefly at a fraction of the size.
  const { runAttack, attackMarkdown } = await import('./attack/run.js');
  const names = args.get('scenarios');
  const r = await runAttack({ durationS: args.num('duration-s'), scale: args.num('size'), ...(names === 'all' ? {} : { scenarios: names.split(',') }), progress });
  const cmd = `npm run bench -- --attack --duration-s ${args.get('duration-s')} --size ${args.get('size')}${names === 'all' ? '' : ` --scenarios ${names}`}`;
  const md = attackMarkdown(r, cmd, machine);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'attack.json'), JSON.stringify(r, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'attack.md'), md + '\n');
  process.stdout.write(md + '\n');
  process.exit(r.every((x) => x.pass) ? 0 : 1);
}
if (args.mode === 'fuzz') {
  // The long fuzz run (bench/fuzz.ts); npm test runs the same engine for 10,000 cases.
  const { runFuzz, fuzzMarkdown } = await import('./fuzz.js');
  const cases = args.num('cases');
  const seed = args.get('seed') === 'now' ? Date.now() % 1e9 : args.num('seed');
  const r = await runFuzz({
    cases,
    seed,
    concurrency: args.num('concurrency'),
    onProgress: (done, rep) => process.stderr.write(`  ${done}/${cases} cases, ${rep.violations.length} violations\n`),
  });
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'fuzz.md'), fuzzMarkdown(r) + '\n');
  process.stdout.write(fuzzMarkdown(r) + '\n');
  process.exit(r.violations.length ? 1 : 0);
}

const { PEERS, runPeer } = await import('./peers/run.js');
const count = args.num('count');
const intervalMs = args.num('interval-ms');
const steadyS = args.num('steady-s');
const fanoutRounds = args.num('fanout');
const repeat = Math.max(1, args.num('repeat'));
const warmup = Math.max(0, args.num('warmup'));
let peers = args.get('peers').split(',') as Peer[];
const unknownPeers = peers.filter((p) => !(PEERS as readonly string[]).includes(p));
if (unknownPeers.length) {
  process.stderr.write(`bench: --peers takes ${PEERS.join(', ')}; not ${unknownPeers.join(', ')}\n`);
  process.exit(2);
}
const noMosq = mosquittoUnavailable();
if (noMosq && peers.includes('mosquitto')) {
  process.stderr.write(`skipping mosquitto: ${noMosq}\n`);
  peers = peers.filter((p) => p !== 'mosquitto');
}

interface RoundRun extends PeerResult {
  round: number;
}
const runs: RoundRun[] = [];
let step = 0;
for (let round = 0; round < repeat; round++) {
  const order = peers.map((_, i) => peers[(i + round) % peers.length]);
  for (const peer of order) {
    process.stderr.write(`[${++step}/${peers.length * repeat}] ${peer}: ${count} connections, heartbeat every ${intervalMs} ms${repeat > 1 ? ` (round ${round + 1}/${repeat})` : ''}\n`);
    runs.push({ ...(await runPeer(peer, { count, intervalMs, steadyS, fanoutRounds, warmup }, progress)), round });
  }
}
const results = peers.map((p) => medianResult(runs.filter((r) => r.peer === p)));

/**
 * Each numeric figure the median of the peer's runs (the mean of the middle two for an even count),
 * but failures and closes the largest of any run: a median hid a round that lost connections.
 */
function medianResult(rs: PeerResult[]): PeerResult {
  const r = { ...rs[0] };
  for (const k of Object.keys(r) as (keyof PeerResult)[]) {
    if (typeof r[k] === 'number') (r as Record<string, unknown>)[k] = median(rs.map((x) => x[k] as number)) ?? NaN;
  }
  r.failed = Math.max(...rs.map((x) => x.failed));
  r.closed = Math.max(...rs.map((x) => x.closed ?? 0));
  return r;
}

type Metric = 'connectsPerSecond' | 'setupCpuUsPerConnection' | 'rssPerConnectionKB' | 'cpuUsPerRoundTrip' | 'bytesPerRoundTrip' | 'fanoutPerSecond';
const ratioOf = (peer: Peer, metric: Metric, base: Peer = 'net') => roundRatios(runs, (r) => r.peer === peer, (r) => r.peer === base, (r) => r[metric]);
const ratio = (peer: Peer, metric: Metric, base: Peer = 'net') => {
  const r = ratioOf(peer, metric, base);
  if (!r) return '—';
  return r.perRound.length > 1 && r.max - r.min >= 0.005 ? `${r.median.toFixed(2)}× (${r.min.toFixed(2)}–${r.max.toFixed(2)})` : `${r.median.toFixed(2)}×`;
};
const md = [
  `${count.toLocaleString('en')} connections per peer${warmup ? ` (each server first takes and loses ${warmup.toLocaleString('en')}, so the set-up is measured warm)` : ''}${repeat > 1 ? `, ${repeat} rounds in rotating order: figures are medians of the runs, ratios the median of the per-round ratios to node:net (range in brackets)` : ''}, one heartbeat round trip per connection every ${intervalMs} ms, ${steadyS} s measured, then ${fanoutRounds} one-byte messages sent to every connection at once (fan-out, fire-and-forget on every peer: longlink \`send\`, ws \`send\`, socket.io \`emit\`, MQTT QoS 0); ${machine}; ${new Date().toISOString()}.`,
  '',
  '| peer | connected | connections/s | server CPU per connection set up | server RSS per connection | heap per connection | server CPU per round trip | round trips/s | bytes per round trip | fan-out messages/s |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...results.map(
    (r) =>
      `| ${r.peer} | ${r.connections}${r.failed ? ` (${r.failed} failed)` : ''}${r.closed ? ` (${r.closed} closed)` : ''} | ${Math.round(r.connectsPerSecond)} (${ratio(r.peer, 'connectsPerSecond')}) | ${r.setupCpuUsPerConnection.toFixed(0)} µs (${ratio(r.peer, 'setupCpuUsPerConnection')}) | ${r.rssPerConnectionKB.toFixed(1)} KB (${ratio(r.peer, 'rssPerConnectionKB')}) | ${r.heapPerConnectionKB === null ? '—' : `${r.heapPerConnectionKB.toFixed(1)} KB`} | ${r.cpuUsPerRoundTrip.toFixed(1)} µs (${ratio(r.peer, 'cpuUsPerRoundTrip')}) | ${Math.round(r.roundTripsPerSecond)} | ${r.bytesPerRoundTrip.toFixed(1)} (${ratio(r.peer, 'bytesPerRoundTrip')}) | ${r.fanoutPerSecond === null ? '—' : `${Math.round(r.fanoutPerSecond)} (${ratio(r.peer, 'fanoutPerSecond')})`} |`,
  ),
  '',
  ...handshakeFloor(),
].join('\n');

/**
 * longlink's set-up beside the floor that makes the same handshake round
 * trip (net-hello): the part of its set-up time that is its own code, apart
 * from the one read and one write any protocol with a handshake pays.
 */
function handshakeFloor(): string[] {
  if (!peers.includes('net-hello')) return [];
  const time = (p: Peer, base: Peer) => {
    const r = ratioOf(p, 'connectsPerSecond', base);
    // Set-up time is the inverse of the rate: the ratio of times is the inverse ratio of rates, round by round.
    return r ? `${(1 / r.median).toFixed(2)}×${r.perRound.length > 1 ? ` (${(1 / r.max).toFixed(2)}–${(1 / r.min).toFixed(2)})` : ''}` : '—';
  };
  const rows = peers.filter((p) => p.startsWith('longlink') || p === 'net-hello' || p === 'net');
  const r = (p: Peer) => results.find((x) => x.peer === p)!;
  // The set-up's wall time is shared by two processes on two cores: the load generator's CPU shows when it, not the server, sets the pace.
  return [
    '| set-up time | ÷ node:net | ÷ net-hello (the floor with the handshake round trip) | server CPU per connection set up | ÷ net-hello | load generator CPU per connection set up |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (p) =>
        `| ${p} | ${p === 'net' ? '1.00×' : time(p, 'net')} | ${p === 'net' ? '—' : p === 'net-hello' ? '1.00×' : time(p, 'net-hello')} | ${r(p).setupCpuUsPerConnection.toFixed(0)} µs | ${p === 'net' ? '—' : p === 'net-hello' ? '1.00×' : ratio(p, 'setupCpuUsPerConnection', 'net-hello')} | ${r(p).clientSetupCpuUsPerConnection.toFixed(0)} µs |`,
    ),
    '',
  ];
}
const ratios = Object.fromEntries(peers.map((p) => [p, Object.fromEntries((['connectsPerSecond', 'setupCpuUsPerConnection', 'rssPerConnectionKB', 'cpuUsPerRoundTrip', 'bytesPerRoundTrip', 'fanoutPerSecond'] as Metric[]).map((m) => [m, ratioOf(p, m)]))]));
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'heartbeat.json'), JSON.stringify({ count, intervalMs, steadyS, repeat, machine, results, ratios, runs }, null, 2) + '\n');
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
