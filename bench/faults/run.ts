/**
 * The fault run (issue 19): is "acknowledged means delivered" true when the
 * world misbehaves? Three gateway nodes (bench/faults/node.ts, processes) on
 * a real Redis of the run's own; SDK clients over TCP and WebSocket, each
 * dialling the nodes through relays that can break links (bench/faults/proxy.ts);
 * a backend that pushes throughout (per user in order; some ids to several
 * users at once, as a group message) while every client sends too. Faults,
 * chosen by a seeded random: links reset, links made half-open, a node
 * SIGKILLed and restarted under the same id, Redis paused, Redis restarted
 * without its data, a node's lease deleted, a client's close() raced by
 * connect(). Then the faults stop, everything settles, and a checker reads
 * every side's log:
 *
 * - every device a push reported `delivered` received it (no result lies);
 * - every device reported `queued` received it by the end, unless it was
 *   reported expired or dropped, or it was in Redis when Redis lost its data;
 * - no device received a message twice, and each received its user's pushes
 *   in the order they were made;
 * - every client message acknowledged to its sender reached the application
 *   exactly once (twice only if Redis lost its dedup record in between);
 * - at the end every device is in presence.
 *
 *   npm run bench -- --faults [--duration-s 600] [--seed N]   (npm test runs 40 s)
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { LonglinkClient } from '../../src/client/client.js';
import { seededRandom } from '../../src/core/backoff.js';
import { Child } from '../proc-tools.js';
import { freePort } from '../../test/helpers/redis.js';
import { FaultProxy } from './proxy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const NODE = path.join(here, 'node.js');

export interface FaultOptions {
  seed: number;
  /** Seconds of faults; then the run settles and checks. */
  durationS: number;
  users: number;
  /** Seconds between faults, on average. */
  faultEveryS: number;
  /** Allow Redis to be restarted without its data (loses what it held; the checker allows exactly that). */
  redisRestart: boolean;
  settleS: number;
  log?: (m: string) => void;
}

export const FAULT_DEFAULTS: Omit<FaultOptions, 'seed'> = { durationS: 40, users: 12, faultEveryS: 1.5, redisRestart: true, settleS: 15 };

type Fault = 'cut' | 'half-open' | 'kill-node' | 'redis-pause' | 'redis-restart' | 'lease-lapse' | 'close-connect';

export interface FaultReport {
  seed: number;
  durationS: number;
  faults: Record<Fault, number>;
  pushes: number;
  pushOutcomes: Record<string, number>;
  clientSends: number;
  clientAcked: number;
  received: number;
  /** Queued messages lost because Redis lost its data while holding them (allowed). */
  lostToRedisReset: number;
  violations: string[];
  nodeCrashes: string[];
}

interface Device {
  user: string;
  device: string;
  client: LonglinkClient;
  received: string[];
  sent: Map<string, { at: number; ackedAt: number | null }>;
}

class RedisProc {
  private child: ReturnType<typeof spawn> | null = null;
  constructor(readonly port: number) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(this.port, '127.0.0.1', () => (s.end(), r(true)));
        s.on('error', () => r(false));
      });
      if (ok) return;
      await sleep(25);
    }
    throw new Error(`redis-server on ${this.port} did not come up`);
  }
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    c.kill('SIGCONT');
    c.kill('SIGKILL');
    await new Promise((r) => c.once('exit', r));
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface PushRecord {
  n: number;
  user: string;
  id: string;
  at: number;
  result: { devices: { deviceId: string; status: string }[] } | null;
  error?: string;
}

interface NodeSlot {
  id: string;
  child: Child | null;
  tcp: FaultProxy;
  ws: FaultProxy;
  pending: Map<number, (l: Record<string, unknown>) => void>;
}

export async function runFaults(opts: Partial<FaultOptions> & { seed: number }): Promise<FaultReport> {
  const o: FaultOptions = { ...FAULT_DEFAULTS, ...opts };
  const log = o.log ?? (() => {});
  const random = seededRandom(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const violations: string[] = [];
  const nodeCrashes: string[] = [];
  const faults: Record<Fault, number> = { cut: 0, 'half-open': 0, 'kill-node': 0, 'redis-pause': 0, 'redis-restart': 0, 'lease-lapse': 0, 'close-connect': 0 };
  const redis = new RedisProc(await freePort());
  await redis.start();
  /** Windows in which Redis lost its data: [when it died, when it was back]. */
  const resets: [number, number][] = [];
  // What the nodes logged.
  const nodeMessages = new Map<string, number>(); // client message id → times handed to the application
  const messageTimes = new Map<string, number[]>();
  const dropped = new Set<string>(); // user/device/id expired or dropped
  const nodes: NodeSlot[] = [];
  let stopping = false;

  const startNode = async (slot: NodeSlot) => {
    const child = new Child(spawn(process.execPath, [NODE, redis.url, slot.id], { stdio: ['pipe', 'pipe', 'inherit'] }));
    slot.child = child;
    // A node killed by a fault may still be asked something before its exit is seen: the write then
    // fails with EPIPE, and the ask times out (null) as for any node that does not answer.
    child.proc.stdin!.on('error', () => {});
    child.lines.push((l) => {
      if (l.ev === 'message' && typeof l.id === 'string') {
        nodeMessages.set(l.id, (nodeMessages.get(l.id) ?? 0) + 1);
        const ts = messageTimes.get(l.id) ?? [];
        ts.push(Number(l.t));
        messageTimes.set(l.id, ts);
      } else if (l.ev === 'expired' || l.ev === 'dropped') dropped.add(`${l.user}/${l.device}/${l.id}`);
      else if (l.ev === 'crash') nodeCrashes.push(`${slot.id}: ${l.err}`);
      else if (l.ev === 'push-result' || l.ev === 'presence') slot.pending.get(Number(l.n))?.(l);
    });
    child.proc.on('exit', (code, sig) => {
      if (!stopping && sig !== 'SIGKILL') nodeCrashes.push(`${slot.id} exited: ${code} ${sig}`);
    });
    const l = await child.next((x) => x.ev === 'listening', 20_000, `${slot.id} listening`);
    slot.tcp.targetPort = Number(l.tcp);
    slot.ws.targetPort = Number(l.ws);
  };
  let cmdN = 0;
  const ask = (slot: NodeSlot, cmd: Record<string, unknown>, ms = 8000): Promise<Record<string, unknown> | null> => {
    const c = slot.child;
    if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) return Promise.resolve(null);
    const n = ++cmdN;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        slot.pending.delete(n);
        resolve(null);
      }, ms);
      slot.pending.set(n, (l) => {
        clearTimeout(t);
        slot.pending.delete(n);
        resolve(l);
      });
      c.proc.stdin!.write(JSON.stringify({ ...cmd, n }) + '\n');
    });
  };

  const devices: Device[] = [];
  const pushes: PushRecord[] = [];
  let clientSends = 0;
  try {
    for (const id of ['A', 'B', 'C']) {
      const slot: NodeSlot = { id, child: null, tcp: new FaultProxy(0), ws: new FaultProxy(0), pending: new Map() };
      await slot.tcp.listen();
      await slot.ws.listen();
      await startNode(slot);
      nodes.push(slot);
    }
    log(`seed ${o.seed}: 3 nodes on Redis :${redis.port}, ${o.users} users`);
    // Clients: one or two devices per user, TCP or WebSocket, each with every node's relay in its own order.
    for (let u = 0; u < o.users; u++) {
      const user = `user${u}`;
      for (let d = 0; d < (u % 3 === 0 ? 2 : 1); d++) {
        const device = `dev${d}`;
        const ws = (u + d) % 2 === 1;
        const order = [...nodes].sort(() => random() - 0.5);
        const urls = order.map((s) => (ws ? `ws://127.0.0.1:${s.ws.port}/longlink` : `tcp://127.0.0.1:${s.tcp.port}`));
        const client = new LonglinkClient({
          url: urls,
          userId: user,
          deviceId: device,
          intervalMs: 500,
          handshakeTimeoutMs: 2000,
          probes: { pongTimeoutMs: 400, probeCount: 1, probeIntervalMs: 200 },
          reconnect: { initialDelayMs: 100, maxDelayMs: 800, minDelayMs: 50, stableAfterMs: 2000 },
          maxOutbox: 100_000,
        });
        const dev: Device = { user, device, client, received: [], sent: new Map() };
        client.on('message', (m) => dev.received.push(m.id ?? '?'));
        client.on('acked', (a) => {
          const s = dev.sent.get(a.id);
          if (s && s.ackedAt === null) s.ackedAt = Date.now();
        });
        devices.push(dev);
        await client.connect();
      }
    }
    const users = [...new Set(devices.map((d) => d.user))];
    const t0 = Date.now();
    const until = t0 + o.durationS * 1000;

    // The backend: per user, pushes one after another (so order is defined); across users at once.
    let pushN = 0;
    const liveNodes = () => nodes.filter((s) => s.child && s.child.proc.exitCode === null && s.child.proc.signalCode === null);
    const pushOnce = async (targets: string[], id: string) => {
      await Promise.all(
        targets.map(async (user) => {
          const slot = pick(liveNodes());
          const rec: PushRecord = { n: ++pushN, user, id, at: Date.now(), result: null };
          pushes.push(rec);
          const r = slot ? await ask(slot, { cmd: 'push', user, id, payload: id }) : null;
          if (r && r.result) rec.result = r.result as { devices: { deviceId: string; status: string }[] };
          else rec.error = r ? String(r.error) : 'no answer';
        }),
      );
    };
    const userChains = new Map<string, Promise<void>>();
    const backend = (async () => {
      let k = 0;
      while (Date.now() < until) {
        k++;
        const group = random() < 0.1;
        const targets = group ? [pick(users), pick(users), pick(users)].filter((x, i, a) => a.indexOf(x) === i) : [pick(users)];
        const id = `p${k}`;
        // Each user's pushes stay in order: a push to a user waits for that user's previous one.
        for (const user of targets) {
          const prev = userChains.get(user) ?? Promise.resolve();
          userChains.set(user, prev.then(() => pushOnce([user], id)));
        }
        await sleep(40 + random() * 60);
      }
      await Promise.all(userChains.values());
    })();
    const senders = (async () => {
      let k = 0;
      while (Date.now() < until) {
        const dev = pick(devices);
        const id = `${dev.user}/${dev.device}/c${++k}`;
        dev.sent.set(id, { at: Date.now(), ackedAt: null });
        dev.client.send(id, { id });
        clientSends++;
        await sleep(30 + random() * 40);
      }
    })();

    // Faults.
    const admin = () => new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: false });
    const faultLoop = (async () => {
      const kinds: Fault[] = ['cut', 'cut', 'half-open', 'half-open', 'kill-node', 'redis-pause', 'lease-lapse', 'close-connect', 'close-connect'];
      if (o.redisRestart) kinds.push('redis-restart');
      let restarted = false;
      while (Date.now() < until - 2000) {
        await sleep(o.faultEveryS * 1000 * (0.5 + random()));
        let f = pick(kinds);
        if (f === 'redis-restart' && restarted) f = 'cut'; // once a run: it loses data by design
        faults[f]++;
        log(`${((Date.now() - t0) / 1000).toFixed(1)} s fault: ${f}`);
        try {
          if (f === 'cut' || f === 'half-open') {
            const slot = pick(nodes);
            const proxy = random() < 0.5 ? slot.tcp : slot.ws;
            if (f === 'cut') proxy.cut(random);
            else proxy.freeze(random);
          } else if (f === 'kill-node') {
            const slot = pick(liveNodes());
            if (!slot) continue;
            slot.child!.proc.kill('SIGKILL');
            await sleep(500 + random() * 1500);
            await startNode(slot);
          } else if (f === 'redis-pause') {
            redis.signal('SIGSTOP');
            await sleep(500 + random() * 1500);
            redis.signal('SIGCONT');
          } else if (f === 'redis-restart') {
            restarted = true;
            const down = Date.now();
            await redis.stop();
            await sleep(300 + random() * 700);
            await redis.start();
            resets.push([down, Date.now()]);
          } else if (f === 'lease-lapse') {
            const r = admin();
            r.on('error', () => {});
            await r.del(`ll:node:${pick(nodes).id}`).catch(() => {});
            r.disconnect();
          } else if (f === 'close-connect') {
            const dev = pick(devices);
            dev.client.close();
            void dev.client.connect().catch(() => {});
          }
        } catch (err) {
          log(`fault ${f} failed: ${String(err)}`);
        }
      }
    })();
    await Promise.all([backend, senders, faultLoop]);
    // Faults stop: thaw nothing (frozen links time out by themselves), let everything settle.
    log(`faults over after ${((Date.now() - t0) / 1000).toFixed(0)} s; settling ${o.settleS} s`);
    const settleEnd = Date.now() + o.settleS * 1000;
    while (Date.now() < settleEnd) {
      const allAcked = devices.every((d) => d.client.pendingCount === 0);
      const allOpen = devices.every((d) => d.client.state === 'open');
      if (allAcked && allOpen && Date.now() > settleEnd - o.settleS * 500) break;
      await sleep(250);
    }
    // Wake every mailbox once more: pushes routed during a node's death may wait for a flush trigger.
    await sleep(1000);

    // Presence converges: every device is in presence, on some live node.
    for (const dev of devices) {
      if (dev.client.state !== 'open') {
        violations.push(`${dev.user}/${dev.device}: not open at the end (${dev.client.state})`);
        continue;
      }
      let found = false;
      for (let i = 0; i < 20 && !found; i++) {
        const r = await ask(pick(liveNodes()), { cmd: 'presence', user: dev.user });
        found = !!(r && Array.isArray(r.devices) && (r.devices as { deviceId: string }[]).some((e) => e.deviceId === dev.device));
        if (!found) await sleep(250);
      }
      if (!found) violations.push(`${dev.user}/${dev.device}: not in presence after the faults stopped`);
    }

    // The checker.
    const byKey = new Map(devices.map((d) => [`${d.user}/${d.device}`, d]));
    // Pushed before Redis lost its data: it may have been in Redis then, and gone with it.
    const beforeReset = (at: number) => resets.some(([down]) => at <= down);
    let lostToRedisReset = 0;
    const outcomes: Record<string, number> = {};
    const devicesOf = (user: string) => devices.filter((d) => d.user === user).map((d) => d.device).sort();
    for (const p of pushes) {
      if (!p.result) {
        outcomes.error = (outcomes.error ?? 0) + 1;
        continue;
      }
      // Every device connected before the first push: a result that leaves one out left it without the message.
      const named = p.result.devices.map((d) => d.deviceId).sort();
      // (Right after Redis lost its data, before the nodes wrote their presence again, the gateway
      // honestly knows no device: the result says so, and claims nothing.)
      const justReset = resets.some(([, up]) => p.at >= up - 5000 && p.at <= up + 3000);
      if (named.join() !== devicesOf(p.user).join() && !justReset) violations.push(`push ${p.id} to ${p.user}: result names ${named.join(',') || 'no device'}, the user has ${devicesOf(p.user).join(',')}`);
      for (const { deviceId, status } of p.result.devices) {
        outcomes[status] = (outcomes[status] ?? 0) + 1;
        const dev = byKey.get(`${p.user}/${deviceId}`);
        if (!dev) {
          violations.push(`push ${p.id} to ${p.user}: result names unknown device ${deviceId}`);
          continue;
        }
        const got = dev.received.includes(p.id);
        if (status === 'delivered' && !got) violations.push(`push ${p.id} to ${p.user}/${deviceId}: reported delivered, never received`);
        if (status === 'queued' && !got) {
          if (dropped.has(`${p.user}/${deviceId}/${p.id}`)) continue;
          if (beforeReset(p.at)) {
            lostToRedisReset++;
            continue;
          }
          violations.push(`push ${p.id} to ${p.user}/${deviceId}: queued at ${p.at - t0} ms, never received, not reported dropped`);
        }
      }
    }
    // Exactly once and in order, per device.
    const pushOrder = new Map<string, number>(); // user/id → order of the user's pushes
    for (const p of pushes) if (!pushOrder.has(`${p.user}/${p.id}`)) pushOrder.set(`${p.user}/${p.id}`, p.n);
    for (const dev of devices) {
      const seen = new Set<string>();
      let last = -1;
      for (const id of dev.received) {
        if (seen.has(id)) violations.push(`${dev.user}/${dev.device}: ${id} received twice`);
        seen.add(id);
        const n = pushOrder.get(`${dev.user}/${id}`);
        if (n === undefined) {
          violations.push(`${dev.user}/${dev.device}: received ${id}, never pushed to this user`);
          continue;
        }
        if (n < last) violations.push(`${dev.user}/${dev.device}: ${id} arrived after a later push`);
        last = Math.max(last, n);
      }
    }
    // Client → gateway: acknowledged means handed to the application, exactly once.
    let clientAcked = 0;
    for (const dev of devices) {
      for (const [id, s] of dev.sent) {
        if (s.ackedAt === null) {
          violations.push(`${id}: never acknowledged to its sender`);
          continue;
        }
        clientAcked++;
        const times = nodeMessages.get(id) ?? 0;
        if (times === 0) violations.push(`${id}: acknowledged to its sender, never handed to the application`);
        if (times > 1) {
          const ts = messageTimes.get(id)!;
          const acrossReset = resets.some(([down]) => ts[0] <= down && ts[ts.length - 1] >= down);
          if (!acrossReset) violations.push(`${id}: handed to the application ${times} times`);
        }
      }
    }
    for (const c of nodeCrashes) violations.push(`node crashed: ${c}`);
    return {
      seed: o.seed,
      durationS: o.durationS,
      faults,
      pushes: pushes.length,
      pushOutcomes: outcomes,
      clientSends,
      clientAcked,
      received: devices.reduce((a, d) => a + d.received.length, 0),
      lostToRedisReset,
      violations,
      nodeCrashes,
    };
  } finally {
    stopping = true;
    for (const d of devices) d.client.close();
    for (const s of nodes) {
      s.child?.proc.stdin?.end();
      s.child?.proc.kill('SIGKILL');
      await s.tcp.close();
      await s.ws.close();
    }
    await redis.stop();
  }
}

export function faultsMarkdown(r: FaultReport): string {
  const f = Object.entries(r.faults).map(([k, v]) => `${k} ${v}`).join(', ');
  const out = Object.entries(r.pushOutcomes).map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    `| seed | faults | pushes (per-user results) | client messages sent / acknowledged | received by devices | lost to a Redis restart without persistence | violations |`,
    `|---|---|---|---|---|---|---|`,
    `| ${r.seed} | ${f} | ${r.pushes} (${out}) | ${r.clientSends} / ${r.clientAcked} | ${r.received} | ${r.lostToRedisReset} | ${r.violations.length} |`,
    '',
    ...r.violations.slice(0, 20).map((v) => `- ${v}`),
  ].join('\n');
}
