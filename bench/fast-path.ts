/**
 * The gateway's heartbeat fast path alone: ns per bare PING through
 * ServerConnection.onLinkFrame on open connections with a no-op link, no
 * sockets. End-to-end round trips are about 20 µs of syscalls, whose spread
 * hides a change of a few ns here; this shows it.
 *
 *   node dist/bench/fast-path.js [--against /path/to/other/checkout] [--rounds 5] [--n 20000000] [--connections 1000] [--shuffle]
 *
 * With --against, the other checkout's build (its dist/) runs in alternating
 * child processes with this one, so both see the same machine. The default
 * 1,000 connections stay in the CPU's caches; with --connections 10000 or
 * more, and --shuffle (the heartbeats visit the connections in a random order
 * instead of the order they were made in), most of what a heartbeat reads is
 * a cache miss, as on a loaded gateway: that measures how many cache lines the
 * path touches rather than how many instructions it runs.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitOnHelp } from './usage.js';

exitOnHelp(import.meta.url);

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const here = fileURLToPath(import.meta.url);
const thisRoot = path.resolve(path.dirname(here), '../..');

async function child(root: string, n: number, count: number, shuffle: boolean): Promise<void> {
  const mod = (p: string) => import(path.join(root, 'dist/src', p));
  const { Gateway } = await mod('gateway/gateway.js');
  const { BARE_PING } = await mod('protocol/frame-codec.js');
  const { FrameType, PROTOCOL_VERSION } = await mod('protocol/frames.js');
  const gw = new Gateway({ tcp: false, ws: false, limits: { minPingGapMs: 0, handshakesPerSecond: 0, maxPendingHandshakes: 0, maxConnectionsPerSource: 0, maxConnections: 0 } });
  const conns: { onLinkFrame(f: unknown): void; phase: string }[] = [];
  for (let i = 0; i < count; i++) {
    const link = { transport: 'tcp', remoteAddress: '10.0.0.1', remotePort: 1, closed: false, bufferedBytes: 0, bind() {}, awaitDrain() {}, send() {}, close() {}, closedByPeer() {}, destroy() {} };
    const conn = gw.accept(link);
    conn.onLinkFrame({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    conns.push(conn);
    // Each opening finishes on a later tick: let them, so the store's work does not pile up.
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 100));
  if (conns.some((c) => c.phase !== 'open')) throw new Error('connections did not open');
  if (shuffle) {
    for (let i = conns.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [conns[i], conns[j]] = [conns[j], conns[i]];
    }
  }
  // A warm-up pass, then the measured one.
  for (let i = 0; i < n / 4; i++) conns[i % count].onLinkFrame(BARE_PING);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) conns[i % count].onLinkFrame(BARE_PING);
  process.stdout.write(String(Number(process.hrtime.bigint() - t0) / n));
  process.exit(0);
}

if (process.argv.includes('--child')) {
  await child(arg('child', thisRoot), Number(arg('n', '20000000')), Number(arg('connections', '1000')), process.argv.includes('--shuffle'));
} else {
  const rounds = Number(arg('rounds', '5'));
  const n = arg('n', '20000000');
  const trees = [thisRoot, ...(process.argv.includes('--against') ? [path.resolve(arg('against', ''))] : [])];
  const results = new Map<string, number[]>(trees.map((t) => [t, []]));
  for (let r = 0; r < rounds; r++) {
    for (const t of r % 2 ? [...trees].reverse() : trees) {
      const ns = Number(execFileSync(process.execPath, [here, '--child', t, '--n', n, '--connections', arg('connections', '1000'), ...(process.argv.includes('--shuffle') ? ['--shuffle'] : [])], { encoding: 'utf8' }));
      results.get(t)!.push(ns);
      process.stderr.write(`  round ${r + 1}: ${t}: ${ns.toFixed(1)} ns\n`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  process.stdout.write('| build | ns per heartbeat (median) | rounds |\n|---|---|---|\n');
  for (const [t, xs] of results) process.stdout.write(`| ${t} | ${median(xs).toFixed(1)} | ${xs.map((x) => x.toFixed(1)).join(', ')} |\n`);
}
