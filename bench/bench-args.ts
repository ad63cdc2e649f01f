/**
 * The benchmark's command line: one mode per run, each with its own flags,
 * parsed strictly (an unknown or misspelt flag is refused, never ignored), and
 * results written to a scratch folder unless --publish (or --out) says
 * otherwise, so a typo cannot overwrite the published figures in docs/bench.
 */
import { parseArgs } from 'node:util';

interface Flag {
  default: string;
  help: string;
}

export type Mode = 'peers' | 'scale' | 'storm' | 'fuzz' | 'hold' | 'faults' | 'attack' | 'api' | 'webhook';

export const MODES: Record<Mode, { flag: string | null; summary: string; flags: Record<string, Flag> }> = {
  peers: {
    flag: null,
    summary: 'heartbeat cost beside bare node:net, ws, socket.io, aedes and Mosquitto (alternating rounds)',
    flags: {
      count: { default: '10000', help: 'connections per peer' },
      'interval-ms': { default: '1000', help: 'heartbeat interval of every connection' },
      'steady-s': { default: '30', help: 'seconds measured once all are open' },
      fanout: { default: '10', help: 'one-byte messages sent to every connection after the window' },
      repeat: { default: '1', help: 'rounds; every ratio is taken within a round, then the median of the rounds' },
      peers: { default: 'net,net-hello,longlink-tcp,longlink-ws,ws,socketio,aedes,mosquitto', help: 'which peers, comma-separated' },
      warmup: { default: '2000', help: 'connections each server takes and loses before the measured set-up (its one-time costs, such as compiling its code, left out)' },
    },
  },
  hold: {
    flag: '--hold',
    summary: 'the long hold: CPU per heartbeat, event-loop delay and RSS every minute, beside bare node:net',
    flags: {
      connections: { default: '60000', help: 'connections per peer' },
      'interval-ms': { default: '30000', help: 'heartbeat interval' },
      'hold-s': { default: '1800', help: 'seconds held once all are open' },
      'sample-s': { default: '60', help: 'seconds per sample window' },
      peers: { default: 'net,longlink-tcp', help: 'which peers (net, longlink-tcp, longlink-ws), run at the same time' },
      servers: { default: 'auto', help: 'server processes per peer (auto: as the open-files limit needs)' },
      'ramp-timeout-s': { default: '600', help: 'longest the ramp may take' },
    },
  },
  scale: {
    flag: '--scale',
    summary: 'as many heartbeating connections as the machine holds, on cluster workers and Redis',
    flags: {
      target: { default: '200000', help: 'connections to open' },
      'hold-s': { default: '600', help: 'seconds held once all are open' },
      'interval-ms': { default: '30000', help: 'heartbeat interval' },
      workers: { default: 'auto', help: 'gateway workers (1 or more, or auto)' },
      loadgens: { default: 'auto', help: 'load-generator processes (or auto)' },
      sources: { default: '128', help: 'source addresses on 127.0.0.0/8' },
      'ramp-timeout-s': { default: '900', help: 'longest the ramp may take' },
    },
  },
  storm: {
    flag: '--storm',
    summary: 'the reconnect storm: SDK clients lose a gateway (crash, drain) and come back',
    flags: {
      clients: { default: '24000', help: 'SDK clients' },
      workers: { default: '2', help: 'gateway workers' },
      loadgens: { default: 'auto', help: 'client processes (or auto)' },
      sources: { default: '128', help: 'source addresses on 127.0.0.0/8' },
      modes: { default: 'crash,drain', help: 'crash, drain or both' },
      'down-s': { default: '3', help: 'seconds the gateway stays down after a crash' },
      'drain-window-ms': { default: '10000', help: 'window a drain spreads reconnects over' },
      'max-back-s': { default: '180', help: 'longest wait for every client to come back' },
      'ramp-timeout-s': { default: '300', help: 'longest the ramp may take' },
    },
  },
  faults: {
    flag: '--faults',
    summary: 'delivery under faults: 3 nodes on Redis, links cut and half-open, nodes killed, Redis paused and restarted; a checker reads every log',
    flags: {
      'duration-s': { default: '600', help: 'seconds of faults' },
      seed: { default: 'now', help: 'seed (now: from the clock, printed)' },
      users: { default: '12', help: 'users (every third has two devices)' },
      'fault-every-s': { default: '1.5', help: 'seconds between faults, on average' },
    },
  },
  attack: {
    flag: '--attack',
    summary: "the attack suite: one scenario per finding of issue 20 against a fresh gateway each, a healthy client on the side",
    flags: {
      'duration-s': { default: '30', help: 'seconds each attack runs' },
      size: { default: '1', help: "sizes as a fraction of the findings' (1: 50 sessions at a time, 500 idle sockets, 3,000 upgrades, 300 drippers...)" },
      scenarios: { default: 'all', help: 'which, comma-separated (sessions, ids, state, rebind, pending, flood, flood-seq, ws-upgrade, drip)' },
    },
  },
  api: {
    flag: '--api',
    summary: "pushes per second through the server API (single and batch) beside the library's push(), same gateway and devices",
    flags: {
      devices: { default: '1000', help: 'devices (one per user), in a child process' },
      messages: { default: '50000', help: 'pushes per mode' },
      concurrency: { default: '32', help: 'requests (or push() calls) in flight' },
      batch: { default: '100', help: 'pushes per batch request' },
    },
  },
  webhook: {
    flag: '--webhook',
    summary: "upstream through a webhook against the backend's own request rate, on the same backend in one run",
    flags: {
      messages: { default: '40000', help: 'messages (and direct requests)' },
      devices: { default: '200', help: 'devices sending them (each in order, one message at the backend at a time)' },
      concurrency: { default: '200', help: 'requests in flight in the direct load (match devices for a fair ratio)' },
    },
  },
  fuzz: {
    flag: '--fuzz',
    summary: 'the long fuzz run over real sockets (npm test runs 10,000 cases of the same engine)',
    flags: {
      cases: { default: '200000', help: 'cases' },
      seed: { default: 'now', help: 'seed (now: from the clock, printed)' },
      concurrency: { default: '64', help: 'cases at once' },
    },
  },
};

const COMMON: Record<string, { type: 'string' | 'boolean'; help: string }> = {
  help: { type: 'boolean', help: 'this text; runs nothing' },
  publish: { type: 'boolean', help: 'write the results to docs/bench (the published figures)' },
  out: { type: 'string', help: 'write the results here (default: bench-out/<mode>, a scratch folder git ignores)' },
};

export class BenchArgsError extends Error {}

export interface BenchArgs {
  mode: Mode;
  help: boolean;
  out: string;
  /** The mode's flags, as given or defaulted. */
  get(name: string): string;
  num(name: string): number;
  /** A number, or 'auto'. */
  auto(name: string): number | 'auto';
}

export function parseBenchArgs(argv: string[]): BenchArgs {
  const modeFlags = (Object.entries(MODES) as [Mode, (typeof MODES)[Mode]][]).filter(([, m]) => m.flag && argv.includes(m.flag));
  if (modeFlags.length > 1) throw new BenchArgsError(`one mode per run: ${modeFlags.map(([, m]) => m.flag).join(' and ')} given`);
  const mode: Mode = modeFlags[0]?.[0] ?? 'peers';
  const spec = MODES[mode];
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const [k, v] of Object.entries(COMMON)) options[k] = { type: v.type };
  for (const m of Object.values(MODES)) if (m.flag) options[m.flag.slice(2)] = { type: 'boolean' };
  for (const k of Object.keys(spec.flags)) options[k] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    const known = Object.keys(spec.flags).map((k) => `--${k}`);
    throw new BenchArgsError(`${(err as Error).message.split('\n')[0]} (the ${mode} mode takes ${known.join(', ')}; see --help)`);
  }
  const get = (name: string): string => {
    const f = spec.flags[name];
    if (!f) throw new BenchArgsError(`no flag --${name} in the ${mode} mode`);
    return (values[name] as string | undefined) ?? f.default;
  };
  const num = (name: string): number => {
    const v = Number(get(name));
    if (!Number.isFinite(v) || v < 0) throw new BenchArgsError(`--${name} must be a number ≥ 0, got ${get(name)}`);
    return v;
  };
  const out = (values.out as string | undefined) ?? (values.publish ? 'docs/bench' : `bench-out/${mode}`);
  return { mode, help: values.help === true, out, get, num, auto: (name) => (get(name) === 'auto' ? 'auto' : num(name)) };
}

export function benchUsage(): string {
  const lines = ['npm run bench -- [mode] [flags]', '', 'Modes (one per run):'];
  for (const [name, m] of Object.entries(MODES)) {
    lines.push('', `  ${m.flag ?? '(none)'}  ${name}: ${m.summary}`);
    for (const [k, f] of Object.entries(m.flags)) lines.push(`      --${k.padEnd(16)} ${f.help} (default ${f.default})`);
  }
  lines.push('', 'Every mode:');
  for (const [k, f] of Object.entries(COMMON)) lines.push(`      --${k.padEnd(16)} ${f.help}`);
  return lines.join('\n') + '\n';
}
