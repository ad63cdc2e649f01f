/**
 * What one gateway node costs Redis, counted by Redis itself (INFO
 * commandstats and its own CPU time, INFO cpu), phase by phase:
 * connections opening, heartbeats only, pushes to online devices
 * (delivered and acknowledged), pushes to offline devices (queued),
 * messages from devices to a Redis stream (upstream), connections closing.
 *
 *   npm run bench:redis -- [--count 10000] [--interval-ms 1000] [--steady-s 30] [--cluster]
 *
 * A private redis-server (or, with --cluster, a private three-master Redis
 * Cluster), one gateway (in this process) on the Redis store, and the
 * clients in a child process (a process may hold at most 20,000 files here).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Gateway } from '../src/gateway/gateway.js';
import { RedisStore } from '../src/gateway/stores/redis-store.js';
import { streamSink } from '../src/upstream/redis-stream.js';
import { startRedis, startRedisCluster } from '../test/helpers/redis.js';
import { exitOnHelp } from './usage.js';

exitOnHelp(import.meta.url);

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const count = arg('count', 10_000);
const intervalMs = arg('interval-ms', 1000);
const steadyS = arg('steady-s', 30);
const onCluster = process.argv.includes('--cluster');

type Sample = { calls: Record<string, number>; cpuMs: number };

/** Every master's command counts and CPU, summed. */
async function sample(probes: Redis[]): Promise<Sample> {
  const calls: Record<string, number> = {};
  let cpuMs = 0;
  for (const r of probes) {
    const info = (await r.info('commandstats')) + (await r.info('cpu'));
    for (const m of info.matchAll(/cmdstat_(\S+?):calls=(\d+)/g)) calls[m[1]] = (calls[m[1]] ?? 0) + Number(m[2]);
    cpuMs += (Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0) + Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0)) * 1000;
  }
  return { calls, cpuMs };
}
const IGNORED = new Set(['info', 'cluster|slots', 'cluster|nodes', 'cluster', 'ping', 'client|setname', 'client|setinfo', 'command|docs', 'command', 'select', 'hello']);
function diff(a: Sample, b: Sample): { commands: number; cpuMs: number; byCommand: Record<string, number> } {
  const byCommand: Record<string, number> = {};
  // Our own probes, and the cluster's topology refreshes, are not the gateway's load.
  for (const k of Object.keys(b.calls)) if (!IGNORED.has(k) && (b.calls[k] ?? 0) - (a.calls[k] ?? 0) > 0) byCommand[k] = b.calls[k] - (a.calls[k] ?? 0);
  return { commands: Object.values(byCommand).reduce((s, x) => s + x, 0), cpuMs: b.cpuMs - a.cpuMs, byCommand };
}

const single = onCluster ? null : await startRedis();
const rc = onCluster ? await startRedisCluster() : null;
const url = single?.url ?? rc!.url;
const store = new RedisStore({ url, cluster: onCluster });
const sink = streamSink({ url, cluster: onCluster, stream: 'bench-up', maxLen: 100_000 });
let probes: Redis[];
if (single) probes = [new Redis(single.url)];
else {
  const seeds = rc!.ports.map((port) => new Redis(port, '127.0.0.1'));
  const roles = await Promise.all(seeds.map(async (r) => /role:master/.test(await r.info('replication'))));
  probes = seeds.filter((_, i) => roles[i]);
  seeds.filter((_, i) => !roles[i]).forEach((r) => r.disconnect());
}
/** Requests the gateway sends (a script is one), counted at the client: Redis's own counts include each script's inner calls. */
const sent: Record<string, number> = {};
for (const r of [store.redis, sink.redis]) {
  const c = r as unknown as { sendCommand(cmd: { name: string }): unknown };
  const orig = c.sendCommand.bind(c);
  c.sendCommand = (cmd: { name: string }) => {
    sent[cmd.name] = (sent[cmd.name] ?? 0) + 1;
    return orig(cmd);
  };
}
const sentTotal = () => Object.entries(sent).reduce((n, [k, v]) => n + (IGNORED.has(k) ? 0 : v), 0);
const gw = new Gateway({ tcp: { host: '127.0.0.1', port: 0 }, ws: false, store, heartbeat: { intervalMs, minIntervalMs: 100 }, upstream: { sink },
  // One source address for every client: the per-source budgets are not what is measured here.
  limits: { maxConnectionsPerSource: 0, handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 },
});
const { tcp } = await gw.listen();
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'load-clients.js');
const child = spawn(process.execPath, [script, JSON.stringify({ url: `tcp://127.0.0.1:${tcp!.port}`, count, intervalMs, maxMs: 900_000 })], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = readline.createInterface({ input: child.stdout! });
const waiters = new Map<string, () => void>();
lines.on('line', (l) => {
  const m = JSON.parse(l) as { ev: string; open?: number };
  if (m.ev === 'progress') process.stderr.write(`connected ${m.open}/${count}\n`);
  waiters.get(m.ev)?.();
});
const next = (ev: string) => new Promise<void>((resolve) => waiters.set(ev, resolve));
const tell = (m: unknown) => child.stdin!.write(JSON.stringify(m) + '\n');

const phases: Record<string, { ops: number; opName: string; seconds: number; requests: number; requestsPerOp: number; commands: number; perOp: number; redisCpuUsPerOp: number; byCommand: Record<string, number>; sentByCommand: Record<string, number> }> = {};
async function phase(name: string, opName: string, ops: number, run: () => Promise<void>): Promise<void> {
  const a = await sample(probes);
  const s0 = sentTotal();
  const sentBefore = { ...sent };
  const t = Date.now();
  await run();
  // Writes a phase caused after its last answer (offline bookkeeping) land before the count.
  await new Promise((r) => setTimeout(r, 300));
  const seconds = (Date.now() - t) / 1000;
  const d = diff(a, await sample(probes));
  const requests = sentTotal() - s0;
  const sentByCommand: Record<string, number> = {};
  for (const [k, v] of Object.entries(sent)) if (!IGNORED.has(k) && v - (sentBefore[k] ?? 0) > 0) sentByCommand[k] = v - (sentBefore[k] ?? 0);
  phases[name] = { ops, opName, seconds, requests, requestsPerOp: requests / ops, commands: d.commands, perOp: d.commands / ops, redisCpuUsPerOp: (d.cpuMs * 1000) / ops, byCommand: d.byCommand, sentByCommand };
  process.stderr.write(`${name}: ${ops} ${opName} in ${seconds.toFixed(1)} s: ${(requests / ops).toFixed(2)} requests, ${(d.commands / ops).toFixed(2)} commands executed and ${((d.cpuMs * 1000) / ops).toFixed(1)} µs of Redis CPU per op\n`);
}

const users = Array.from({ length: count }, (_, i) => `load${i}`);
const pushes = Math.min(count, 5000);

await phase('connect', 'connections', count, () => next('ready'));
const pingsBefore = gw.trafficStats().pingsIn;
await phase('steady', 'seconds', steadyS, () => new Promise((r) => setTimeout(r, steadyS * 1000)));
const heartbeats = gw.trafficStats().pingsIn - pingsBefore;
await phase('push-online', 'pushes', pushes, async () => {
  for (let i = 0; i < pushes; i += 500) {
    const rs = await Promise.all(users.slice(i, i + 500).map((u) => gw.push(u, 'x', { waitMs: 10_000 })));
    const bad = rs.filter((r) => r.devices[0]?.status !== 'delivered').length;
    if (bad > 0) throw new Error(`${bad} pushes not delivered: ${JSON.stringify(rs.find((r) => r.devices[0]?.status !== "delivered"))}`);
  }
});
await phase('upstream', 'messages', pushes, async () => {
  const done = next('sent');
  tell({ cmd: 'send', n: pushes });
  await done;
});
await phase('disconnect', 'connections', count, async () => {
  const done = next('closed');
  tell({ cmd: 'close' });
  await done;
  while (gw.connectionCount > 0) await new Promise((r) => setTimeout(r, 50));
});
await phase('push-offline', 'pushes', pushes, async () => {
  for (let i = 0; i < pushes; i += 500) await Promise.all(users.slice(i, i + 500).map((u) => gw.push(u, 'x', { waitMs: 0 })));
});

const steady = phases.steady;
const result = {
  redis: onCluster ? 'cluster of 3 masters (1 replica each)' : 'one server',
  count,
  intervalMs,
  heartbeatsDuringSteady: heartbeats,
  steadyCommandsPerSecond: steady.commands / steadyS,
  heartbeatsPerRedisCommand: heartbeats / Math.max(1, steady.commands),
  phases,
};
console.log(JSON.stringify(result, null, 2));
child.stdin!.end();
await new Promise((r) => child.once('exit', r));
await gw.close();
await store.close();
await sink.close?.();
for (const p of probes) p.disconnect();
await single?.stop();
await rc?.stop();
