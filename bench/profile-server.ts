/**
 * Where a peer server's time and memory go, for the cuts in docs/BENCHMARKS.md:
 *
 *   npm run build && node dist/bench/profile-server.js [peer=longlink-tcp] [--count 10000] [--steady-s 20] [--setup] [--heap 3000]
 *
 * CPU: runs the server under `--cpu-prof` with the benchmark's load generator
 * (one heartbeat per connection per second) and prints the busy time per
 * round trip and the functions with the most self and inclusive time over the
 * steady window (the set-up is left out; with --setup, the set-up alone). Heap: with --heap N, writes heap
 * snapshots before and after N connections and prints the retained growth per
 * connection by object kind. With --rss N, under `--expose-gc`: RSS and V8's
 * old space (committed and live) per connection once N are open, and again
 * after a full collection, which tells live state from promoted garbage.
 * The server runs with the benchmark's flags (--max-semi-space-size=16). Files
 * stay in a temporary directory, printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const peer = argv[0] && !argv[0].startsWith('--') ? argv[0] : 'longlink-tcp';
const arg = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const count = arg('count', 10000);
const steadyS = arg('steady-s', 20);
const heapN = arg('heap', 0);
const rssN = arg('rss', 0);
/** Profile the set-up (the `count` connections opening) instead of the steady window. */
const setup = argv.includes('--setup');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'll-profile-'));

function lines(c: ChildProcess): (ev: string) => Promise<Record<string, unknown>> {
  let waiters: ((l: Record<string, unknown>) => boolean)[] = [];
  readline.createInterface({ input: c.stdout! }).on('line', (t) => {
    try {
      const l = JSON.parse(t);
      waiters = waiters.filter((w) => !w(l));
    } catch {
      /* not ours */
    }
  });
  return (ev) => new Promise((r) => waiters.push((l) => (l.ev === ev ? (r(l), true) : false)));
}

async function withLoad(serverArgs: string[], n: number, during: (srv: ChildProcess, wait: (ev: string) => Promise<Record<string, unknown>>) => Promise<void>): Promise<number> {
  const srv = spawn(process.execPath, ['--max-semi-space-size=16', ...serverArgs, path.join(here, 'peers', 'server.js'), peer, '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const wait = lines(srv);
  const port = Number((await wait('listening')).port);
  const gen = spawn(process.execPath, [path.join(here, 'peers', 'loadgen.js'), peer, JSON.stringify({ port, count: n, intervalMs: 1000, maxMs: 600_000, sources: 16 })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const genWait = lines(gen);
  await genWait('ready');
  const t = Date.now();
  await during(srv, wait);
  gen.stdin!.write('stats\n');
  const pongs = Number((await genWait('stats')).pongs);
  gen.stdin!.end();
  srv.stdin!.end();
  await new Promise((r) => srv.once('exit', r));
  process.stderr.write(`${peer}: ${n} connections, ${((Date.now() - t) / 1000).toFixed(0)} s under load\n`);
  return pongs;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

function summarizeCpu(file: string, windowS: number, roundTrips: number, per: string): void {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };
  let t = p.startTime;
  const ts = p.timeDeltas.map((d) => (t += d));
  const from = p.endTime - windowS * 1e6;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
    if (ts[i] < from) continue;
    const d = p.timeDeltas[i + 1] ?? 0;
    const n = byId.get(p.samples[i])!;
    if (n.callFrame.functionName === '(idle)') continue;
    busy += d;
    self.set(key(n), (self.get(key(n)) ?? 0) + d);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const k = key(byId.get(id)!);
      if (!seen.has(k)) incl.set(k, (incl.get(k) ?? 0) + d);
      seen.add(k);
    }
  }
  const perRt = roundTrips > 0 ? busy / roundTrips : NaN;
  console.log(`\n${peer}: busy ${(busy / 1e6).toFixed(2)} s, ${perRt.toFixed(1)} µs per ${per} (profiler on; about ${roundTrips})`);
  const top = (m: Map<string, number>, title: string) => {
    console.log(`-- ${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${((100 * v) / busy).toFixed(1).padStart(6)}%  ${k}`);
  };
  top(self, 'self time');
  top(incl, 'inclusive time');
}

function heapCounts(file: string): Map<string, [number, number]> {
  const s = JSON.parse(fs.readFileSync(file, 'utf8'));
  const m = s.snapshot.meta;
  const nf = m.node_fields.length;
  const ti = m.node_fields.indexOf('type');
  const ni = m.node_fields.indexOf('name');
  const si = m.node_fields.indexOf('self_size');
  const types: string[] = m.node_types[0];
  const out = new Map<string, [number, number]>();
  for (let i = 0; i < s.nodes.length; i += nf) {
    const type = types[s.nodes[i + ti]];
    const name = type.includes('string') ? '' : String(s.strings[s.nodes[i + ni]]).slice(0, 50);
    const k = `${type} ${name}`.trim();
    const a = out.get(k) ?? [0, 0];
    a[0]++;
    a[1] += s.nodes[i + si];
    out.set(k, a);
  }
  return out;
}

const prof = path.join(dir, 'cpu');
if (setup) {
  // The whole profile is the set-up: the server exits as soon as the load generator is ready.
  await withLoad(['--cpu-prof', `--cpu-prof-dir=${prof}`], count, async () => {});
  const file = fs.readdirSync(prof).find((f) => f.endsWith('.cpuprofile'));
  if (file) summarizeCpu(path.join(prof, file), 1e6, count, 'connection set up');
} else {
  const windowS = Math.max(5, steadyS - 2);
  const pongs = await withLoad(['--cpu-prof', `--cpu-prof-dir=${prof}`], count, async () => {
    await new Promise((r) => setTimeout(r, (steadyS - windowS) * 1000));
    await new Promise((r) => setTimeout(r, windowS * 1000));
  });
  const file = fs.readdirSync(prof).find((f) => f.endsWith('.cpuprofile'));
  if (file) summarizeCpu(path.join(prof, file), windowS, Math.round((pongs * windowS) / steadyS), 'round trip');
}

if (heapN > 0) {
  const h0 = path.join(dir, 'before.heapsnapshot');
  const h1 = path.join(dir, 'after.heapsnapshot');
  const srv = spawn(process.execPath, [path.join(here, 'peers', 'server.js'), peer, '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const wait = lines(srv);
  const port = Number((await wait('listening')).port);
  srv.stdin!.write(`heap ${h0}\n`);
  await wait('heap');
  const gen = spawn(process.execPath, [path.join(here, 'peers', 'loadgen.js'), peer, JSON.stringify({ port, count: heapN, intervalMs: 1000, maxMs: 600_000, sources: 16 })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await lines(gen)('ready');
  await new Promise((r) => setTimeout(r, 3000));
  srv.stdin!.write(`heap ${h1}\n`);
  await wait('heap');
  gen.stdin!.end();
  srv.stdin!.end();
  const a = heapCounts(h0);
  const b = heapCounts(h1);
  const rows = [...b].map(([k, [n, size]]) => [k, (n - (a.get(k)?.[0] ?? 0)) / heapN, (size - (a.get(k)?.[1] ?? 0)) / heapN] as const).sort((x, y) => y[2] - x[2]);
  console.log(`\n${peer}: heap retained per connection, ${rows.reduce((s, r) => s + r[2], 0).toFixed(0)} bytes (snapshots after GC, ${heapN} connections)`);
  for (const [k, n, bytes] of rows.slice(0, 25)) console.log(`${bytes.toFixed(0).padStart(6)} B  ${n.toFixed(2).padStart(5)} objects  ${k}`);
}
if (rssN > 0) {
  const srv = spawn(process.execPath, ['--expose-gc', path.join(here, 'peers', 'server.js'), peer, '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const wait = lines(srv);
  const port = Number((await wait('listening')).port);
  await new Promise((r) => setTimeout(r, 500));
  const mem = async () => (srv.stdin!.write('mem\n'), (await wait('mem')) as { rss: number; spaces: Record<string, number>; used: Record<string, number> });
  const m0 = await mem();
  const gen = spawn(process.execPath, [path.join(here, 'peers', 'loadgen.js'), peer, JSON.stringify({ port, count: rssN, intervalMs: 1000, maxMs: 600_000, sources: 16 })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await lines(gen)('ready');
  await new Promise((r) => setTimeout(r, 10_000));
  const m1 = await mem();
  srv.stdin!.write('gc\n');
  await wait('gc');
  const m2 = await mem();
  gen.stdin!.end();
  srv.stdin!.end();
  const kb = (a: number, b: number) => ((b - a) / 1024 / rssN).toFixed(2);
  console.log(`\n${peer}: per connection, ${rssN} open for 10 s: RSS ${kb(m0.rss, m1.rss)} KB; old space committed ${kb(m0.spaces.old_space, m1.spaces.old_space)} KB, live ${kb(m0.used.old_space, m1.used.old_space)} KB`);
  console.log(`${peer}: after a full collection: RSS ${kb(m0.rss, m2.rss)} KB; old space committed ${kb(m0.spaces.old_space, m2.spaces.old_space)} KB, live ${kb(m0.used.old_space, m2.used.old_space)} KB; large objects ${kb(m0.spaces.large_object_space, m2.spaces.large_object_space)} KB`);
}
console.log(`\nprofiles in ${dir}`);
