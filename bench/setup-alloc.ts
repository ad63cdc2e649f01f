/**
 * What one connection's set-up allocates on the server, garbage
 * included, and where: the set-up's cost that CPU ratios are too noisy to
 * show (a cut of a few hundred bytes is a few µs, under the machine's
 * ±15 %). The server (longlink-tcp, net-hello, longlink-ws or ws, as in the
 * benchmark; ws without its heartbeat's timer) runs
 * in this process; a child opens `--count` connections (200 in flight from
 * 16 source addresses, the same HELLO as the benchmark's), after a warm-up
 * of `--warmup` opened and closed; every one must be answered by WELCOME. V8's sampling heap profiler keeps every sample, collected or not.
 *
 *   node dist/bench/setup-alloc.js [longlink-tcp|net-hello|longlink-ws|ws] [--count 10000] [--warmup 2000] [--top 30] [--against /other/checkout] [--compiles] [--kept live|promoted]
 *
 * Prints bytes allocated per set-up, the server's CPU per set-up (all its
 * threads, with the sampler on: for comparing runs of this tool only), and
 * the `--top` allocation sites by their three innermost frames. With
 * --against, the other checkout's build runs the same peer after this one's.
 * With --compiles, instead of sampling allocations: how many functions V8's
 * optimizing compiler finished during the measured set-ups (--trace-opt),
 * work of a server not yet warm. With --kept live, only what a full
 * collection after the set-ups keeps is counted; with --kept promoted, also
 * what survived a scavenge and died later: the difference is the garbage
 * the set-up promotes to the old space, which V8 commits and RSS counts.
 */
import { fork } from 'node:child_process';
import inspector from 'node:inspector/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { markAlive } from './peers/ws-readme.js';
import { exitOnHelp } from './usage.js';

exitOnHelp(import.meta.url);

const argv = process.argv.slice(2);
const arg = (n: string, d: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : d;
};
const here = fileURLToPath(import.meta.url);
const thisRoot = path.resolve(path.dirname(here), '../..');

interface Step {
  cmd: 'open' | 'closeall' | 'exit';
  n?: number;
  base?: number;
}

/** The client side: opens and closes connections when the parent says. */
async function client(root: string, peer: string, port: number): Promise<void> {
  const { encodeDelimited, encodeFrame } = await import(path.join(root, 'dist/src/protocol/frame-codec.js'));
  const { FrameType, PROTOCOL_VERSION } = await import(path.join(root, 'dist/src/protocol/frames.js'));
  const open: { destroy(): void }[] = [];
  const hello = (i: number) => ({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd', intervalMs: 1000 });
  const failed = (i: number) => (err: Error) => {
    // A connection that fails would never be counted: end the run, do not wait for it.
    console.error(`connection ${i} failed: ${err.message}`);
    process.exit(1);
  };
  /** One WebSocket (longlink-ws: HELLO sent at open, WELCOME awaited; ws: open is set up). */
  const openWs = (i: number, done: () => void) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${peer === 'ws' ? '' : '/longlink'}`, { localAddress: `127.0.0.${1 + (i % 16)}`, perMessageDeflate: false });
    ws.on('error', failed(i));
    const opened = () => {
      open.push({ destroy: () => ws.terminate() });
      done();
    };
    if (peer === 'ws') ws.once('open', opened);
    else {
      ws.once('open', () => ws.send(encodeFrame(hello(i))));
      ws.once('message', (d: Buffer) => {
        if (d[0] !== FrameType.WELCOME) throw new Error(`connection ${i} was answered with frame type ${d[0]}, not WELCOME`);
        opened();
      });
    }
  };
  const openN = (n: number, base: number) =>
    new Promise<void>((resolve) => {
      let started = 0;
      let done = 0;
      const next = () => {
        while (started - done < 200 && started < n) {
          const i = base + started++;
          if (peer === 'longlink-ws' || peer === 'ws') {
            openWs(i, () => {
              if (++done === n) resolve();
              else next();
            });
            continue;
          }
          // From 16 source addresses, as the load generator's: one would meet the gateway's per-source handshake bound (50 at once).
          const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${1 + (i % 16)}` }, () => s.write(encodeDelimited(hello(i))));
          s.on('error', failed(i));
          s.once('data', (d: Buffer) => {
            // The first frame must be WELCOME (type 2 after a one-byte length): a refusal would measure another path.
            if (d[1] !== FrameType.WELCOME) throw new Error(`connection ${i} was answered with frame type ${d[1]}, not WELCOME`);
            open.push(s);
            if (++done === n) resolve();
            else next();
          });
        }
      };
      next();
    });
  process.on('message', async (m: Step) => {
    if (m.cmd === 'open') await openN(m.n!, m.base!);
    if (m.cmd === 'closeall') {
      for (const s of open.splice(0)) s.destroy();
      // The server has seen the closes and settled.
      await new Promise((r) => setTimeout(r, 1500));
    }
    if (m.cmd === 'exit') process.exit(0);
    process.send!('done');
  });
}

async function server(root: string, peer: string, count: number, warmup: number, top: number, sample: boolean, kept: string): Promise<void> {
  let port: number;
  let stop: () => Promise<unknown>;
  if (peer === 'net-hello') {
    // As bench/peers/server.ts: HELLO answered by a 64-byte frame typed WELCOME.
    const welcome = Buffer.alloc(64);
    welcome[0] = 63;
    welcome[1] = 2;
    const srv = net.createServer({ noDelay: true }, (s) => {
      s.on('data', (d) => d.length > 2 && s.write(welcome));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    port = (srv.address() as net.AddressInfo).port;
    stop = () => new Promise((r) => srv.close(r));
  } else if (peer === 'ws') {
    // As bench/peers/server.ts, but for its heartbeat round (a timer over all clients, not set-up work).
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    markAlive(wss);
    await new Promise<void>((r) => wss.once('listening', () => r()));
    port = (wss.address() as net.AddressInfo).port;
    stop = () => new Promise((r) => wss.close(r));
  } else {
    const { Gateway } = await import(path.join(root, 'dist/src/gateway/gateway.js'));
    const tcp = peer === 'longlink-tcp';
    // The benchmark's options: admission does not cap the set-up rate.
    const gw = new Gateway({
      tcp: tcp ? { host: '127.0.0.1', port: 0 } : false,
      ws: tcp ? false : { host: '127.0.0.1', port: 0 },
      heartbeat: { intervalMs: 1000, minIntervalMs: 100, maxIntervalMs: 600_000 },
      limits: { handshakesPerSecond: 0, maxConnectionsPerSource: 0, maxConnections: 0 },
    });
    const a = await gw.listen();
    port = (tcp ? a.tcp : a.ws).port;
    stop = () => gw.close();
  }
  const c = fork(here, ['--client', root, peer, String(port)], { execArgv: [] });
  const ask = (m: Step) =>
    new Promise<void>((resolve, reject) => {
      const exited = (code: number | null) => reject(new Error(`the client exited with ${code} during ${m.cmd}`));
      c.once('exit', exited);
      c.once('message', () => {
        c.off('exit', exited);
        resolve();
      });
      c.send(m);
    });
  // Warm-up identities numbered after the measured ones, as the benchmark's.
  if (warmup > 0) {
    await ask({ cmd: 'open', n: warmup, base: count });
    await ask({ cmd: 'closeall' });
  }
  const session = new inspector.Session();
  session.connect();
  // --kept: what outlives the young generation. 'live' samples only what a full collection keeps; 'promoted' adds
  // what survived a scavenge and died later (promoted garbage, the old space V8 commits beyond the live state).
  if (sample) await session.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: kept !== 'live', includeObjectsCollectedByMinorGC: kept === '' });
  const cpu0 = process.cpuUsage();
  console.log(WINDOW_START);
  await ask({ cmd: 'open', n: count, base: 0 });
  console.log(WINDOW_END);
  const cpu = process.cpuUsage(cpu0);
  if (sample && kept) {
    // Young garbage first, by a scavenge (not sampled with --kept): a full collection alone would count it as
    // collected by a major GC, as if it had been promoted.
    (globalThis as { gc?: (o: { type: string }) => void }).gc?.({ type: 'minor' });
    await session.post('HeapProfiler.collectGarbage');
  }
  const profile = sample ? ((await session.post('HeapProfiler.stopSampling')) as { profile: { head: SampleNode } }).profile : null;
  session.disconnect();
  await ask({ cmd: 'closeall' });
  c.send({ cmd: 'exit' });
  await stop();
  if (!profile) {
    console.log(`${peer} (${root}): ${((cpu.user + cpu.system) / count).toFixed(1)} µs of CPU per set-up; ${count} set-ups after a warm-up of ${warmup}`);
    return;
  }

  const sites = new Map<string, number>();
  let total = 0;
  const walk = (n: SampleNode, stack: string[]) => {
    const f = n.callFrame;
    const frames = [...stack, `${f.functionName || '(anonymous)'} ${f.url.replace(/.*\/(dist|node_modules)\//, '')}:${f.lineNumber + 1}`];
    if (n.selfSize > 0) {
      total += n.selfSize;
      const key = frames.slice(-3).reverse().join(' < ');
      sites.set(key, (sites.get(key) ?? 0) + n.selfSize);
    }
    for (const ch of n.children) walk(ch, frames);
  };
  walk(profile.head, []);
  console.log(`${peer} (${root}): ${(total / count).toFixed(0)} bytes ${kept ? `allocated and ${kept === 'live' ? 'live after a full collection' : 'outliving the young generation'}` : 'allocated'} per set-up; ${((cpu.user + cpu.system) / count).toFixed(1)} µs of CPU per set-up with the sampler on; ${count} set-ups after a warm-up of ${warmup}`);
  for (const [k, v] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${(v / count).toFixed(0).padStart(7)}  ${k}`);
}

/** Around the measured set-ups in the server's output, for --compiles. */
const WINDOW_START = '--- measured set-ups begin';
const WINDOW_END = '--- measured set-ups end';

interface SampleNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SampleNode[];
}

if (argv[0] === '--client') {
  await client(argv[1], argv[2], Number(argv[3]));
} else if (argv[0] === '--server') {
  await server(argv[1], argv[2], Number(argv[3]), Number(argv[4]), Number(argv[5]), argv[6] !== 'compiles', argv[7] ?? '');
  process.exit(0);
} else {
  const peer = argv[0] && !argv[0].startsWith('--') ? argv[0] : 'longlink-tcp';
  if (!['longlink-tcp', 'net-hello', 'longlink-ws', 'ws'].includes(peer)) throw new Error(`peer must be longlink-tcp, net-hello, longlink-ws or ws (got ${peer})`);
  const roots = [thisRoot, ...(argv.includes('--against') ? [path.resolve(arg('against', '.'))] : [])];
  // Each build in a fresh process of its own, so neither inherits the other's compiled code or heap.
  // --compiles: the server runs under V8's --trace-opt, and the functions TurboFan finished
  // optimizing during the measured set-ups are counted (one-time work the warm-up did not cover).
  const compiles = argv.includes('--compiles');
  for (const root of roots) {
    const child = fork(here, ['--server', root, peer, arg('count', '10000'), arg('warmup', '2000'), arg('top', '30'), compiles ? 'compiles' : 'sample', arg('kept', '')], {
      execArgv: ['--max-semi-space-size=16', ...(compiles ? ['--trace-opt'] : []), ...(argv.includes('--kept') ? ['--expose-gc'] : [])],
      stdio: ['inherit', 'pipe', 'inherit', 'ipc'],
    });
    let inWindow = false;
    let optimized = 0;
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === WINDOW_START) inWindow = true;
      else if (line === WINDOW_END) inWindow = false;
      else if (line.startsWith('[completed optimizing')) optimized += inWindow ? 1 : 0;
      else if (!line.startsWith('[')) console.log(line);
    });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    if (code !== 0) throw new Error(`the server for ${root} exited with ${code}`);
    if (compiles) console.log(`${peer} (${root}): ${optimized} functions optimized by TurboFan during the measured set-ups`);
  }
}
