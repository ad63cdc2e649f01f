/**
 * The attack suite: one scenario per finding of issue 20, each against a fresh
 * `longlink serve` with its default settings. While an attack runs, a healthy
 * client (its own process, the real CLI) keeps a 1 s heartbeat; the gateway's
 * RSS is sampled from /proc and its event-loop delay read from its own
 * histogram (/metrics). A scenario passes when the gateway stays under 1 GB
 * (under 300 MB above idle where the attack holds no connections), its
 * event-loop delay p99 under 100 ms, the healthy client is never
 * disconnected, and the scenario's own checks hold.
 */
import http from 'node:http';
import { proc } from '../proc-tools.js';
import { spawnCli, type JsonProc } from '../../test/helpers/procs.js';
import { freePort } from '../../test/helpers/redis.js';
import { SCENARIOS, type Check, type Scenario } from './scenarios.js';

export interface AttackOptions {
  /** Scenario names, or all. */
  scenarios?: string[];
  /** Seconds each attack runs. */
  durationS: number;
  /** 1 = the sizes of the issue's findings; the test runs a fraction. */
  scale: number;
  /** Flags for every gateway (the test lowers the per-source limit to match its smaller sizes). */
  serveArgs?: string[];
  progress?: (line: string) => void;
}

export interface AttackResult {
  name: string;
  finding: string;
  title: string;
  summary: string;
  rssIdleMB: number;
  rssPeakMB: number;
  /** V8 heap in use when the attack ends (live objects and garbage not yet collected). */
  heapEndMB: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /** The gateway's CPU while attacked, in % of one core. */
  cpuPct: number;
  healthyDisconnects: number;
  logLines: number;
  checks: Check[];
  limits: Check[];
  pass: boolean;
}

export const RSS_LIMIT_MB = 1024;
export const RSS_GROWTH_LIMIT_MB = 300;
export const LOOP_P99_LIMIT_MS = 100;

export async function runAttack(opts: AttackOptions): Promise<AttackResult[]> {
  const chosen = opts.scenarios ? SCENARIOS.filter((s) => opts.scenarios!.includes(s.name)) : SCENARIOS;
  const unknown = (opts.scenarios ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')} (have: ${SCENARIOS.map((s) => s.name).join(', ')})`);
  const out: AttackResult[] = [];
  for (const s of chosen) {
    opts.progress?.(`attack ${s.name}: ${s.title}`);
    const r = await runOne(s, opts);
    opts.progress?.(`  ${r.pass ? 'pass' : 'FAIL'}: RSS ${r.rssIdleMB} → ${r.rssPeakMB} MB, loop p99 ${r.loopP99Ms} ms, healthy disconnects ${r.healthyDisconnects}; ${r.summary}`);
    out.push(r);
  }
  return out;
}

async function runOne(s: Scenario, opts: AttackOptions): Promise<AttackResult> {
  const [tcpPort, wsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const serve = spawnCli(['serve', '--tcp-port', String(tcpPort), '--ws-port', String(wsPort), '--admin-port', String(adminPort), ...(opts.serveArgs ?? []), ...(s.serveArgs ?? [])]);
  let healthy: JsonProc | null = null;
  try {
    await serve.waitFor((l) => l.event === 'listening', 15_000, 'the gateway listening');
    healthy = spawnCli(['client', '--json', '--url', `tcp://127.0.0.1:${tcpPort}`, '--user', 'healthy', '--device', 'h', '--interval-ms', '1000']);
    await healthy.waitFor((l) => l.event === 'open', 10_000, 'the healthy client open');
    await sleep(1000);
    const pid = serve.child.pid!;
    const rssIdleMB = mb(proc(pid)?.rssKB ?? 0);
    const linesBefore = serve.lines.length;
    const cpu0 = proc(pid)?.ticks ?? 0;
    const t0 = Date.now();
    let peakKB = 0;
    const sampler = setInterval(() => (peakKB = Math.max(peakKB, proc(pid)?.rssKB ?? 0)), 200);
    const until = Date.now() + opts.durationS * 1000;
    let outcome: { summary: string; checks: Check[] };
    try {
      outcome = await s.run({ tcpPort, wsPort, adminPort, until, scale: opts.scale, admin: (p, init) => admin(adminPort, p, init) });
    } finally {
      clearInterval(sampler);
    }
    peakKB = Math.max(peakKB, proc(pid)?.rssKB ?? 0);
    const cpuPct = Math.round((((proc(pid)?.ticks ?? 0) - cpu0) / 100 / ((Date.now() - t0) / 1000)) * 100);
    const metrics = (await admin(adminPort, '/metrics')).body;
    // A healthy heartbeat after the attack, then its close count.
    await sleep(1500);
    const healthyDisconnects = healthy.lines.filter((l) => l.event === 'close').length;
    const q = (name: string) => Number(new RegExp(`longlink_event_loop_delay_seconds\\{quantile="${name}"\\} ([0-9.e+-]+)`).exec(metrics)?.[1] ?? NaN) * 1000;
    const r = {
      name: s.name,
      finding: s.finding,
      title: s.title,
      summary: outcome.summary,
      rssIdleMB,
      rssPeakMB: mb(peakKB),
      heapEndMB: Math.round(Number(/^nodejs_heap_size_used_bytes ([0-9.e+]+)/m.exec(metrics)?.[1] ?? NaN) / 2 ** 20),
      loopP99Ms: Math.round(q('0.99') * 10) / 10,
      loopMaxMs: Math.round(q('1')),
      cpuPct,
      healthyDisconnects,
      logLines: serve.lines.length - linesBefore,
      checks: outcome.checks,
    };
    const limits: Check[] = [
      { what: `RSS under ${RSS_LIMIT_MB} MB`, ok: r.rssPeakMB < RSS_LIMIT_MB },
      ...(s.holdsConnections ? [] : [{ what: `RSS under ${RSS_GROWTH_LIMIT_MB} MB above idle`, ok: r.rssPeakMB - r.rssIdleMB < RSS_GROWTH_LIMIT_MB }]),
      { what: `event-loop delay p99 under ${LOOP_P99_LIMIT_MS} ms`, ok: r.loopP99Ms < LOOP_P99_LIMIT_MS },
      { what: 'the healthy client never disconnected', ok: r.healthyDisconnects === 0 },
    ];
    return { ...r, limits, pass: [...limits, ...r.checks].every((c) => c.ok) };
  } finally {
    await healthy?.kill();
    await serve.kill();
  }
}

const mb = (kb: number) => Math.round(kb / 1024);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface AdminAnswer {
  status: number;
  body: string;
  ms: number;
}

/** One admin request (5 s deadline); `host` overrides the Host header. */
function admin(port: number, path: string, init: { method?: string; host?: string; body?: string } = {}): Promise<AdminAnswer> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: init.method ?? 'GET', headers: { ...(init.host ? { host: init.host } : {}), ...(init.body ? { 'content-type': 'application/json' } : {}) }, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '', ms: performance.now() - t0 }));
    req.end(init.body);
  });
}

export function attackMarkdown(results: AttackResult[], cmd: string, machine: string): string {
  const rows = results.map(
    (r) =>
      `| ${r.finding} | ${r.name} | ${r.summary} | ${r.rssIdleMB} → ${r.rssPeakMB} (heap ${r.heapEndMB}) | ${r.loopP99Ms} (max ${r.loopMaxMs}) | ${r.cpuPct}% | ${r.healthyDisconnects} | ${r.logLines} | ${r.pass ? 'pass' : `**fail**: ${[...r.limits, ...r.checks].filter((c) => !c.ok).map((c) => c.what).join('; ')}`} |`,
  );
  const checks = results.flatMap((r) => r.checks.map((c) => `- ${r.name}: ${c.ok ? '✓' : '✗'} ${c.what}`));
  return [
    `Command: \`${cmd}\`  `,
    `Machine: ${machine}`,
    '',
    '| finding | scenario | the attack | RSS idle → peak (MB) | loop delay p99 (ms) | gateway CPU | healthy client disconnects | log lines | verdict |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'Checks of each scenario:',
    '',
    ...checks,
  ].join('\n');
}
