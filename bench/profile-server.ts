/**
 * Where a peer server's time and memory go, for the cuts in docs/BENCHMARKS.md:
 *
 *   npm run build && node dist/bench/profile-server.js [peer=longlink-tcp] [--count 10000] [--steady-s 20] [--setup] [--perf [--leaves-of WORD] [--server-flag FLAG]...] [--warmup N] [--top 20] [--heap 3000] [--rss 10000]
 *
 * CPU: runs the server with the benchmark's load generator (one heartbeat per
 * connection per second) under V8's sampling profiler and prints the busy
 * time per round trip and the `--top` functions with the most self and
 * inclusive time over the steady window; with --setup, over the set-up of
 * the `count` connections instead (a cold server: profiling starts once it
 * listens and stops when the last connection is open). Heap: with --heap N, writes heap
 * snapshots before and after N connections and prints the retained growth per
 * connection by object kind. With --rss N, under `--expose-gc`: RSS and V8's
 * old space (committed and live) per connection once N are open, and again
 * after a full collection, which tells live state from promoted garbage (with
 * --warmup N, counted from before N connections opened and closed, as the bench).
 * With --perf (Linux `perf`, run as root): the same windows sampled by the
 * kernel instead, every thread and the kernel included, each sample put down
 * to what it is doing (see owner(): socket writes and reads, the event loop,
 * the garbage collector, longlink's JavaScript, Node's, the bench server's
 * handler, a library's), other threads apart. A socket write counts as
 * Node's and the kernel's, whoever asked for it: that path is what the floor
 * pays too. With --perf, the set-up is measured after a warm-up of 2,000
 * connections, as the benchmark does; the steady window after one only with
 * --warmup N (the benchmark's steady window comes after its warm-up's
 * closes, which change what V8 has seen; none by default).
 * --server-flag passes a flag to the server's node (repeatable), as in
 * `--server-flag --max-inlined-bytecode-size-cumulative=4000`, to test what
 * one of V8's choices costs.
 * The server runs with the benchmark's flags (--max-semi-space-size=16). Files
 * stay in a temporary directory, printed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CLK_TCK, proc } from './proc-tools.js';
import { exitOnHelp } from './usage.js';

exitOnHelp(import.meta.url);

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
/** Sample with Linux perf and attribute by whose code (see above). */
const usePerf = argv.includes('--perf');
/** With --perf: list the leaf functions of the owners whose name holds this word, not the server's own code. */
const leavesOf = argv.includes('--leaves-of') ? argv[argv.indexOf('--leaves-of') + 1] : undefined;
/** Functions listed in each table. */
const topN = arg('top', 20);
/** With --perf or --rss: connections opened and closed before the measured ones (2,000 for --setup, as the bench; none for the steady window unless asked). */
const warmup = arg('warmup', setup ? 2000 : 0);
/** With --perf: flags for the server's node, each after its own --server-flag. */
const serverFlags = argv.flatMap((a, i) => (a === '--server-flag' && argv[i + 1] !== undefined ? [argv[i + 1]] : []));
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

async function withLoad(
  serverArgs: string[],
  n: number,
  during: (srv: ChildProcess, wait: (ev: string) => Promise<Record<string, unknown>>) => Promise<void>,
  before?: (srv: ChildProcess, wait: (ev: string) => Promise<Record<string, unknown>>) => Promise<void>,
): Promise<number> {
  const srv = spawn(process.execPath, ['--max-semi-space-size=16', ...serverArgs, path.join(here, 'peers', 'server.js'), peer, '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const wait = lines(srv);
  const port = Number((await wait('listening')).port);
  await before?.(srv, wait);
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
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, topN)) console.log(`${((100 * v) / busy).toFixed(1).padStart(6)}% ${(v / roundTrips).toFixed(2).padStart(7)} µs  ${k}`);
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

const isJs = (f: string) => f.startsWith('JS:') || f.startsWith('Eval:') || f.startsWith('Function:');
const OWN = { longlink: 'longlink (its JavaScript, and the V8 built-ins it calls)', handler: 'bench server handler', library: 'libraries (ws)' };
/** The owners whose leaf functions are listed: the server's own code, whichever server it is. */
const OWN_CODE = new Set(Object.values(OWN));
function jsOwner(f: string): string {
  if (f.includes('/dist/src/')) return OWN.longlink;
  if (f.includes('/dist/bench/')) return OWN.handler;
  if (f.includes('/node_modules/')) return OWN.library;
  return "Node's JavaScript (streams, net, timers)";
}

/**
 * Where a sample is, by what it is doing rather than by the nearest function
 * name alone (optimized code inlines Node's stream calls into the caller, so
 * names blur): the frames from the leaf down to the first JavaScript frame
 * say whether it is a socket write or read in Node's native code and the
 * kernel, the event loop's poll, or the garbage collector; a sample in
 * JavaScript, or in a V8 built-in it called, goes to that JavaScript's owner.
 */
function owner(stack: string[]): string {
  const firstJs = stack.findIndex(isJs);
  const native = firstJs < 0 ? stack : stack.slice(0, firstJs);
  const has = (re: RegExp) => native.some((f) => re.test(f));
  if (has(/Heap::|Scavenger|MarkCompact|MinorMC|Sweeper|ConcurrentMarking|GCTracer/)) return 'garbage collector';
  if (has(/WriteBuffer|DoTryWrite|uv_try_write|uv__write|uv_write|writev|__x64_sys_write|sendmsg/)) return "socket writes (Node's native code and the kernel)";
  if (has(/uv__read|__x64_sys_read|recvmsg|OnStreamRead|EmitRead/)) return "socket reads (Node's native code and the kernel)";
  if (has(/epoll|uv__io_poll|uv__run_timers|uv__server_io|accept4|uv__stream_io|OnConnection/)) return 'event loop: poll, accept, timers (native)';
  if (firstJs >= 0) return jsOwner(stack[firstJs]);
  return 'other native (V8, Node)';
}

/**
 * perf resolves JIT code by Node's /tmp/perf-<pid>.map, which only ever grows:
 * where V8 has since put new code at an address, the earlier (dead) entry
 * would name it. Rewritten so that the latest entry for any address wins.
 */
function latestPerfMap(file: string): void {
  if (!fs.existsSync(file)) return;
  const entries: { start: number; end: number; line: string }[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) /.exec(line);
    if (!m) continue;
    const start = parseInt(m[1], 16);
    const end = start + parseInt(m[2], 16);
    // Binary search for the first entry ending after this one's start; drop every overlapped one.
    let lo = 0;
    let hi = entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (entries[mid].end <= start) lo = mid + 1;
      else hi = mid;
    }
    let n = 0;
    while (lo + n < entries.length && entries[lo + n].start < end) n++;
    entries.splice(lo, n, { start, end, line });
  }
  fs.writeFileSync(file, entries.map((e) => e.line).join('\n') + '\n');
}

const PERF_HZ = 2999;

/**
 * The set-up (after a warm-up) or the steady window under `perf record`,
 * every thread of the server, then each sample attributed by owner().
 */
async function perfProfile(): Promise<void> {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
  } catch {
    process.stderr.write('--perf needs Linux perf (Debian package linux-perf), run as root\n');
    process.exit(3);
  }
  const data = path.join(dir, 'perf.data');
  const srv = spawn(process.execPath, ['--max-semi-space-size=16', ...serverFlags, '--perf-basic-prof', '--interpreted-frames-native-stack', path.join(here, 'peers', 'server.js'), peer, '1000'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    // --perf-basic-prof leaves a V8 log in the working directory.
    cwd: dir,
  });
  const wait = lines(srv);
  const port = Number((await wait('listening')).port);
  const gen = spawn(process.execPath, [path.join(here, 'peers', 'loadgen.js'), peer, JSON.stringify({ port, count, intervalMs: 1000, maxMs: 600_000, sources: 16, warmup })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const genWait = lines(gen);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const record = async () => {
    const rec = spawn('perf', ['record', '-F', String(PERF_HZ), '-g', '-o', data, '-p', String(srv.pid)], { stdio: 'ignore' });
    await sleep(300);
    return async () => {
      rec.kill('SIGINT');
      await new Promise((r) => rec.once('exit', r));
    };
  };
  let units: number;
  let per: string;
  let procUs = NaN;
  if (setup) {
    await genWait('warm');
    const stop = await record();
    gen.stdin!.write('go\n');
    units = Number((await genWait('ready')).open);
    await stop();
    per = 'connection set up';
  } else {
    if (warmup > 0) {
      await genWait('warm');
      gen.stdin!.write('go\n');
    }
    await genWait('ready');
    await sleep(3000);
    gen.stdin!.write('stats\n');
    const s0 = Number((await genWait('stats')).pongs);
    const stop = await record();
    const t0 = proc(srv.pid!)?.ticks ?? 0;
    await sleep(steadyS * 1000);
    gen.stdin!.write('stats\n');
    units = Number((await genWait('stats')).pongs) - s0;
    // The bench's own measure over the same window, beside the samples': they should agree.
    procUs = ((((proc(srv.pid!)?.ticks ?? 0) - t0) / CLK_TCK) * 1e6) / units;
    await stop();
    per = 'round trip';
  }
  gen.stdin!.end();
  srv.stdin!.end();
  await new Promise((r) => srv.once('exit', r));
  latestPerfMap(`/tmp/perf-${srv.pid}.map`);
  const text = execFileSync('perf', ['script', '-i', data, '-F', 'tid,ip,sym'], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  fs.rmSync(`/tmp/perf-${srv.pid}.map`, { force: true });
  const usEach = 1e6 / PERF_HZ / units;
  const byOwner = new Map<string, { all: number; kernel: number }>();
  const leaves = new Map<string, number>();
  let others = 0;
  let total = 0;
  for (const block of text.split('\n\n')) {
    const rows = block.split('\n').filter((l) => l.trim());
    if (rows.length < 2) continue;
    total++;
    // The main thread's id is the process id.
    if (Number(rows[0].trim()) !== srv.pid) {
      others++;
      continue;
    }
    // Each frame is "<address> <symbol>"; a JS symbol has spaces (its URL). Kernel addresses are the top half.
    const frames = rows.slice(1).map((l) => l.trim());
    const stack = frames.map((l) => l.replace(/^[0-9a-f]+ /, ''));
    const who = owner(stack);
    const o = byOwner.get(who) ?? { all: 0, kernel: 0 };
    o.all++;
    if (frames[0].startsWith('ffffffff')) o.kernel++;
    byOwner.set(who, o);
    if (leavesOf ? who.includes(leavesOf) : OWN_CODE.has(who)) {
      // With --leaves-of, a native leaf is named with the JavaScript that led to it.
      const js = leavesOf ? stack.find(isJs) : undefined;
      const k = (js && js !== stack[0] ? `${stack[0].slice(0, 60)} <- ${js}` : stack[0]).slice(0, 140);
      leaves.set(k, (leaves.get(k) ?? 0) + 1);
    }
  }
  const f = (n: number) => `${(n * usEach).toFixed(2).padStart(7)} µs`;
  console.log(`\n${peer}: perf at ${PERF_HZ} Hz, ${units} ${per}s${setup ? ' (after a warm-up of 2,000)' : ''}: ${f(total).trim()} of CPU per ${per}, every thread${Number.isNaN(procUs) ? '' : ` (${procUs.toFixed(2)} µs by /proc, as the bench counts)`}`);
  console.log('-- the main thread, by what it is doing (see owner()); in brackets, the part in the kernel');
  for (const [k, v] of [...byOwner].sort((x, y) => y[1].all - x[1].all)) console.log(`${f(v.all)}  (${f(v.kernel).trim()})  ${k}`);
  console.log(`${f(others)}  other threads (V8's compiler and collector helpers, libuv)`);
  console.log(leavesOf ? `-- in what holds "${leavesOf}", by leaf function` : "-- in the server's own code, by leaf function");
  for (const [k, v] of [...leaves].sort((x, y) => y[1] - x[1]).slice(0, topN)) console.log(`${f(v)}  ${k}`);
}

const prof = path.join(dir, 'cpu');
if (usePerf) {
  await perfProfile();
} else if (setup) {
  // Only the set-up is profiled: sampling starts once the server listens (its start-up left out)
  // and stops when the load generator has every connection open.
  fs.mkdirSync(prof);
  const file = path.join(prof, 'setup.cpuprofile');
  await withLoad(
    [],
    count,
    async (srv, wait) => {
      srv.stdin!.write(`prof stop ${file}\n`);
      await wait('prof');
    },
    async (srv, wait) => {
      srv.stdin!.write('prof start 200\n');
      await wait('prof');
    },
  );
  summarizeCpu(file, 1e6, count, 'connection set up');
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
  const srv = spawn(process.execPath, ['--max-semi-space-size=16', '--expose-gc', path.join(here, 'peers', 'server.js'), peer, '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const wait = lines(srv);
  const port = Number((await wait('listening')).port);
  await new Promise((r) => setTimeout(r, 500));
  const mem = async () => (srv.stdin!.write('mem\n'), (await wait('mem')) as { rss: number; spaces: Record<string, number>; used: Record<string, number> });
  const m0 = await mem();
  const gen = spawn(process.execPath, [path.join(here, 'peers', 'loadgen.js'), peer, JSON.stringify({ port, count: rssN, intervalMs: 1000, maxMs: 600_000, sources: 16, warmup })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const genWait = lines(gen);
  if (warmup > 0) {
    // As the bench: memory counted from before the warm-up, so what the server keeps of closed connections counts.
    await genWait('warm');
    gen.stdin!.write('go\n');
  }
  await genWait('ready');
  await new Promise((r) => setTimeout(r, 10_000));
  const m1 = await mem();
  srv.stdin!.write('gc\n');
  await wait('gc');
  const m2 = await mem();
  gen.stdin!.end();
  srv.stdin!.end();
  const kb = (a: number, b: number) => ((b - a) / 1024 / rssN).toFixed(2);
  console.log(`\n${peer}: per connection, ${rssN} open for 10 s${warmup ? ` (after ${warmup} opened and closed)` : ''}: RSS ${kb(m0.rss, m1.rss)} KB; old space committed ${kb(m0.spaces.old_space, m1.spaces.old_space)} KB, live ${kb(m0.used.old_space, m1.used.old_space)} KB`);
  console.log(`${peer}: after a full collection: RSS ${kb(m0.rss, m2.rss)} KB; old space committed ${kb(m0.spaces.old_space, m2.spaces.old_space)} KB, live ${kb(m0.used.old_space, m2.used.old_space)} KB; large objects ${kb(m0.spaces.large_object_space, m2.spaces.large_object_space)} KB`);
}
console.log(`\nprofiles in ${dir}`);
