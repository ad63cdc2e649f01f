/**
 * Redis commands per second a gateway node costs, per 10,000 connections:
 * during connection set-up and while the connections only heartbeat.
 *
 *   npm run build && node dist/bench/redis-load.js [--count 10000] [--interval-ms 1000] [--steady-s 30]
 *
 * A private redis-server, one gateway (in this process) on the Redis store,
 * and the clients in a child process (a process may hold at most 20,000
 * files here). Commands are counted by Redis itself (INFO commandstats).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Gateway } from '../src/gateway/gateway.js';
import { RedisStore } from '../src/gateway/stores/redis-store.js';
import { startRedis } from '../test/helpers/redis.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const count = arg('count', 10_000);
const intervalMs = arg('interval-ms', 1000);
const steadyS = arg('steady-s', 30);

async function commandCalls(r: Redis): Promise<Record<string, number>> {
  const info = await r.info('commandstats');
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/cmdstat_(\S+?):calls=(\d+)/g)) out[m[1]] = Number(m[2]);
  return out;
}
const diff = (a: Record<string, number>, b: Record<string, number>) => {
  const out: Record<string, number> = {};
  // Our own INFO probes are not the gateway's load.
  for (const k of Object.keys(b)) if (k !== 'info' && (b[k] ?? 0) - (a[k] ?? 0) > 0) out[k] = b[k] - (a[k] ?? 0);
  return out;
};
const total = (o: Record<string, number>) => Object.values(o).reduce((s, x) => s + x, 0);

const redis = await startRedis();
const probe = new Redis(redis.url);
const store = new RedisStore({ url: redis.url });
const gw = new Gateway({ tcp: { host: '127.0.0.1', port: 0 }, ws: false, store, heartbeat: { intervalMs, minIntervalMs: 100 } });
const { tcp } = await gw.listen();
const t0 = await commandCalls(probe);
const started = Date.now();
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'load-clients.js');
const child = spawn(process.execPath, [script, JSON.stringify({ url: `tcp://127.0.0.1:${tcp!.port}`, count, intervalMs, maxMs: 600_000 })], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = readline.createInterface({ input: child.stdout! });
await new Promise<void>((resolve) =>
  lines.on('line', (l) => {
    const m = JSON.parse(l);
    if (m.ev === 'progress') process.stderr.write(`connected ${m.open}/${count}\n`);
    if (m.ev === 'ready') resolve();
  }),
);
const setupMs = Date.now() - started;
const t1 = await commandCalls(probe);
process.stderr.write(`all ${count} connected in ${(setupMs / 1000).toFixed(1)} s; measuring ${steadyS} s of heartbeats every ${intervalMs} ms\n`);
const pingsBefore = gw.trafficStats().pingsIn;
await new Promise((r) => setTimeout(r, steadyS * 1000));
const t2 = await commandCalls(probe);
const pings = gw.trafficStats().pingsIn - pingsBefore;
const setup = diff(t0, t1);
const steady = diff(t1, t2);
const per10k = (x: number) => (x * 10_000) / count;
const result = {
  count,
  intervalMs,
  setup: { seconds: setupMs / 1000, commands: total(setup), perConnection: total(setup) / count, byCommand: setup },
  steady: {
    seconds: steadyS,
    heartbeats: pings,
    commands: total(steady),
    commandsPerSecond: total(steady) / steadyS,
    // Heartbeats never reach Redis: the steady load is the node's lease and expiry sweep, whatever the count.
    commandsPerSecondPer10k: per10k(total(steady) / steadyS),
    heartbeatsPerRedisCommand: pings / Math.max(1, total(steady)),
    byCommand: steady,
  },
};
console.log(JSON.stringify(result, null, 2));
child.stdin!.end();
await new Promise((r) => child.once('exit', r));
await gw.close();
await store.close();
probe.disconnect();
await redis.stop();
