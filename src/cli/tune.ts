import fs from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { fmtRate, tuneDetector, type NetworkModel, type TuneResult } from '../core/detector-tuning.js';
import { LatenessStats, type LatenessSnapshot } from '../core/lateness-stats.js';
import { exponentialNetwork, measuredNetwork, prometheusNetwork } from '../core/network-model.js';
import type { NetworkStats } from '../gateway/gateway.js';
import { exitOnUsageError, positiveNumber } from './parse.js';

/**
 * `longlink tune`: the heartbeat policy and freshness detector that meet a
 * detection time and a false-suspicion rate with the fewest heartbeats, from
 * the network a running gateway measured (`--from` its admin URL or its
 * `/api/network` JSON saved to a file) or from a model (`--loss`, `--delay`,
 * `--jitter`). Exit code 0 with a policy, 3 when none meets the target.
 */
export function tuneCommand(): Command {
  return new Command('tune')
    .exitOverride(exitOnUsageError)
    .description('pick the heartbeat interval and detector settings that detect a dead link within a time, with at most so many false suspicions a month')
    .requiredOption('--detect-within <duration>', 'detection time T_D: a dead peer is closed within this long of its last heartbeat (e.g. 30s)', positiveDuration)
    .option('--false-suspicions-per-month <n>', 'false suspicions allowed per connection per 30 days', positiveNumber, 1)
    .option('--from <source>', 'the measured network: a gateway admin URL (http://host:port reads /api/network; .../metrics reads the Prometheus figures), a file holding /api/network\'s JSON, or a lab report (longlink lab run tuned)')
    .addOption(new Option('--transport <t>', 'which transport\'s measurements').choices(['tcp', 'ws']).default('tcp'))
    .option('--loss <p>', 'without --from: chance a heartbeat is lost (0 to below 1)', fraction, 0.01)
    // Durations take units (a bare number is ms): the defaults are shown with theirs, not as a bare 10 beside "e.g. 30s".
    .option('--delay <duration>', 'mean one-way delay, base part (without --from: default 20ms; with it, overrides half the measured RTT)', duration)
    .addOption(new Option('--jitter <duration>', 'without --from: mean of the exponential part of the delay').argParser(duration).default(10, '10ms'))
    .addOption(new Option('--min-interval <duration>', 'shortest heartbeat interval allowed').argParser(intervalDuration).default(1000, '1s'))
    .addOption(new Option('--max-interval <duration>', 'longest heartbeat interval allowed').argParser(intervalDuration).default(600_000, '10m'))
    .option('--token <token>', 'admin bearer token for --from URL (or LONGLINK_ADMIN_TOKEN)')
    .option('--json', 'print the result as JSON')
    .action(async (o: TuneOptions, cmd: Command) => {
      const misuse = tuneMisuse(cmd);
      if (misuse.errors.length > 0) fail(misuse.errors.join('; '));
      for (const w of misuse.warnings) console.error(`longlink tune: ${w}`);
      if (o.minInterval > o.maxInterval) fail(`--min-interval (${o.minInterval} ms) is above --max-interval (${o.maxInterval} ms)`);
      const net = await network(o);
      const result = tuneDetector({ detectWithinMs: o.detectWithin, falseSuspicionsPerMonth: o.falseSuspicionsPerMonth, minIntervalMs: o.minInterval, maxIntervalMs: o.maxInterval }, net);
      if (o.json) console.log(JSON.stringify({ network: { source: net.source, heartbeats: net.heartbeats, lossRate: net.lossRate, delayMeanMs: net.delayMeanMs, lateP999Ms: net.lateP999Ms }, result }, null, 2));
      else console.log(report(result, net, o));
      process.exitCode = result.ok ? 0 : 3;
    });
}

/**
 * Options given where they do nothing. --loss and --jitter model the network only without --from:
 * with it they were dropped without a word and the policy was picked for the measured network, not
 * the worse one asked for (more false suspicions than the target): refused. --transport and --token
 * only choose what is read from --from (--token from a URL): said, and ignored.
 */
export function tuneMisuse(cmd: Command): { errors: string[]; warnings: string[] } {
  const o = cmd.opts() as TuneOptions;
  const given = (attr: string) => cmd.getOptionValueSource(attr) === 'cli';
  const errors: string[] = [];
  const warnings: string[] = [];
  if (o.from !== undefined) {
    const model = (['loss', 'jitter'] as const).filter(given).map((a) => `--${a}`);
    if (model.length > 0) errors.push(`${model.join(' and ')} model${model.length > 1 ? '' : 's'} a network without --from; with --from the measured one is used (--delay alone may override it)`);
    if (given('token') && !/^https?:\/\//.test(o.from)) warnings.push('--token needs --from with an admin URL: ignored');
  } else {
    for (const a of ['transport', 'token']) if (given(a)) warnings.push(`--${a} needs --from: ignored`);
  }
  return { errors, warnings };
}

interface TuneOptions {
  detectWithin: number;
  falseSuspicionsPerMonth: number;
  from?: string;
  transport: 'tcp' | 'ws';
  loss: number;
  delay?: number;
  jitter: number;
  minInterval: number;
  maxInterval: number;
  token?: string;
  json?: boolean;
}

async function network(o: TuneOptions): Promise<NetworkModel> {
  if (!o.from) return exponentialNetwork({ lossRate: o.loss, baseDelayMs: o.delay ?? 20, jitterMs: o.jitter });
  let stats: NetworkStats;
  if (/^https?:\/\/.*\/metrics$/.test(o.from)) {
    const r = await get(o.from, o);
    const net = prometheusNetwork(await r.text(), o.transport, `${o.from} (${o.transport}, from the scraped quantiles)`);
    if (!net) unreadable(`${o.from} shows no ${o.transport} heartbeat lateness (longlink_heartbeat_lateness_seconds): no client heartbeats measured yet?`);
    if (net.heartbeats < 100) unreadable(`${o.from}: only ${net.heartbeats} ${o.transport} heartbeat gaps measured; let clients heartbeat longer (a few hundred at least)`);
    return o.delay !== undefined ? { ...net, delayMeanMs: o.delay } : net;
  }
  if (/^https?:\/\//.test(o.from)) {
    const url = new URL(o.from);
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/api/network';
    const r = await get(url.href, o);
    try {
      stats = (await r.json()) as NetworkStats;
    } catch (err) {
      unreadable(`${url}: not JSON (${(err as Error).message}); give a gateway's admin URL, http://host:7422`);
    }
  } else {
    try {
      const j = JSON.parse(fs.readFileSync(o.from, 'utf8')) as NetworkStats & { tuned?: { measured?: NetworkStats } };
      // A lab report (longlink lab run tuned) carries the gateway's measurements under tuned.measured.
      stats = j.tuned?.measured ?? j;
    } catch (err) {
      unreadable(`${o.from}: ${(err as Error).message}`);
    }
  }
  const t = stats[o.transport];
  if (!t?.heartbeats) unreadable(`${o.from} holds no ${o.transport} heartbeat measurements (expected the JSON of a gateway's /api/network)`);
  const snap: LatenessSnapshot = t.heartbeats;
  if (snap.count < 100) unreadable(`${o.from}: only ${snap.count} ${o.transport} heartbeat gaps measured; let clients heartbeat longer (a few hundred at least)`);
  const delay = o.delay ?? (t.rtt ? t.rtt.meanMs / 2 : 0);
  return measuredNetwork(LatenessStats.fromSnapshot(snap), delay, `measured by ${stats.nodeId} over ${o.transport}: ${snap.count} heartbeat gaps${t.rtt ? `, RTT ${t.rtt.meanMs} ms` : ', no RTT sample (delay taken as 0; give --delay)'}`);
}

/**
 * GETs a gateway's admin URL; a refused connection, a timeout or an error
 * status ends the run (exit 1) with one line saying what to check, not a stack trace.
 */
async function get(url: string, o: TuneOptions): Promise<Response> {
  const token = o.token ?? process.env.LONGLINK_ADMIN_TOKEN;
  let r: Response;
  try {
    r = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
    unreadable(`cannot read ${url}: ${cause} (is the gateway's admin port there? serve --admin-port, 7422 by default)`);
  }
  if (r.status === 401) unreadable(`${url}: HTTP 401: the admin port wants its token (--token, or LONGLINK_ADMIN_TOKEN)`);
  if (!r.ok) unreadable(`${url}: HTTP ${r.status}`);
  return r;
}

function report(r: TuneResult, net: NetworkModel, o: TuneOptions): string {
  const s = (ms: number) => (ms >= 1000 ? `${+(ms / 1000).toFixed(2)}s` : `${Math.round(ms)}ms`);
  const head = [
    `network: ${net.source}`,
    `  heartbeats lost: ${+(net.lossRate * 100).toFixed(3)}%, lateness p99.9: ${s(net.lateP999Ms)}, mean one-way delay: ${s(net.delayMeanMs)}`,
    `target: detect within ${s(o.detectWithin)}, at most ${o.falseSuspicionsPerMonth} false suspicion(s) per connection-month`,
    '',
  ];
  if (!r.ok) {
    return [
      ...head,
      `no policy meets it: ${r.reason}.`,
      ...(r.detectWithinMsNeeded ? [`with this network, --detect-within ${s(r.detectWithinMsNeeded)} can be met.`] : []),
    ].join('\n');
  }
  return [
    ...head,
    `policy: a heartbeat every ${s(r.intervalMs)} (${r.heartbeatsPerHour.toFixed(0)} an hour), ${r.detector} detector, ${fmtRate(r.falseSuspicionsPerMonth)} false suspicions a month expected`,
    ...(r.other ? [`  (the ${r.other.detector} detector at this interval and detection time: ${fmtRate(r.other.falseSuspicionsPerMonth)} a month)`] : []),
    '',
    'longlink serve flags:',
    `  --heartbeat-interval-ms ${r.intervalMs} --heartbeat-min-interval-ms ${Math.min(r.intervalMs, o.minInterval)} --heartbeat-max-interval-ms ${r.intervalMs} --miss-budget ${r.missBudget} --grace-ms ${r.graceMs} --detector ${r.detector}`,
    'gateway options:',
    `  heartbeat: { intervalMs: ${r.intervalMs}, minIntervalMs: ${Math.min(r.intervalMs, o.minInterval)}, maxIntervalMs: ${r.intervalMs}, missBudget: ${r.missBudget}, graceMs: ${r.graceMs} },`,
    r.detector === 'freshness' ? `  detector: { kind: 'freshness', lateMs: ${r.lateMs} },` : `  detector: { kind: 'silence' },   // closes at interval × missBudget + grace = ${r.lateMs} ms of silence`,
    `(maxIntervalMs keeps clients from asking for a longer interval, which would break the detection time.)`,
  ].join('\n');
}

function duration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('expected a duration: 500ms, 30s, 5m, 1h (a bare number is ms)');
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms'];
}

/** At least 1 ms: 0 made tuneDetector throw, a stack trace and exit 1 instead of a refused option. */
function positiveDuration(v: string): number {
  const n = duration(v);
  if (!(n >= 1)) throw new InvalidArgumentError('expected a duration of at least 1 ms');
  return n;
}

/** What `serve --heartbeat-*-interval-ms` takes (whole ms, at least 1), since tune prints it as that flag. */
function intervalDuration(v: string): number {
  const n = duration(v);
  if (!(Number.isInteger(n) && n >= 1)) throw new InvalidArgumentError('expected a whole number of ms, at least 1 (500ms, 30s, 5m)');
  return n;
}

function fraction(v: string): number {
  const n = Number(v);
  // Number('') is 0: an empty value is no loss measured.
  if (v.trim() === '' || !(n >= 0 && n < 1)) throw new InvalidArgumentError('expected a probability, 0 to below 1');
  return n;
}

/** Ends the run with one line: exit 2 for a usage error, as every command's. */
function fail(message: string, exitCode: 1 | 2 = 2): never {
  console.error(`longlink tune: ${message}`);
  process.exit(exitCode);
}

/**
 * The measured network could not be read (nothing answers at --from, a file
 * that is not a gateway's measurements, too few heartbeats measured yet):
 * exit 1, so a script tells it from a refused option (2) and from a target no
 * interval meets (3).
 */
function unreadable(message: string): never {
  return fail(message, 1);
}
