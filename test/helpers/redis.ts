import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';

/**
 * A private redis-server for one test file, on a free port of its own (a
 * Redis the machine may already run on 6379 is never touched). Nothing is
 * persisted. Null with the reason when redis-server is not installed.
 */
export interface TestRedis {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export function redisUnavailable(): string | null {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'redis-server is not installed (Debian package redis-server)';
  }
}

/** A port nothing listens on now (loopback). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  live.add(child);
  const url = `redis://127.0.0.1:${port}`;
  await waitForRedis(port);
  return {
    url,
    port,
    pid: child.pid!,
    stop: async () => {
      live.delete(child);
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((res) => child.once('exit', res));
    },
  };
}

/** Waits until a redis-server answers PING on `port` (loopback). */
export async function waitForRedis(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {}); // not up yet: retried below
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG') return r.disconnect();
    } catch {
      r.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not come up`);
      await new Promise((res) => setTimeout(res, 30));
    }
  }
}

/**
 * A redis-server of the test's own that can be killed and started again on
 * the same port: empty each time, or, with `dir`, from the RDB snapshot its
 * last SAVE wrote there.
 */
export async function restartableRedis(opts: { dir?: string } = {}) {
  const port = await freePort();
  let proc: ChildProcess | null = null;
  const start = async () => {
    const persist = opts.dir ? ['--dir', opts.dir] : [];
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', ...persist, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' });
    live.add(child);
    proc = child;
    await waitForRedis(port);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    start,
    /** A crash: SIGKILL, nothing saved. */
    async kill() {
      const p = proc!;
      live.delete(p);
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
    },
    stop() {
      if (proc) live.delete(proc);
      proc?.kill('SIGKILL');
    },
  };
}

/**
 * A private Redis Cluster: three masters with one replica each, on free
 * loopback ports, nothing persisted, a 1 s node timeout so a failover takes
 * seconds. Its URL lists every node as a seed.
 */
export interface TestRedisCluster {
  url: string;
  ports: number[];
  /** The port of the master serving a key's slot now. */
  masterOf(key: string): Promise<number>;
  /** SIGKILLs one node (a crash: no goodbye to the cluster). */
  kill(port: number): void;
  /** Starts a killed node again with its cluster config: it rejoins (as a replica, if it was failed over). */
  restart(port: number): Promise<void>;
  /** Whether a node is a replica in sync with its master. */
  replicating(port: number): Promise<boolean>;
  /** Replicas connected to a master now. */
  replicasOf(port: number): Promise<number>;
  /** The port of a master's replica. */
  replicaOf(master: number): Promise<number>;
  /** The local port of a master's connection to its replica (where the replication stream goes). */
  replicationPort(master: number): Promise<number>;
  /** EXISTS of a key on one node (a replica answers too). */
  readOn(port: number, key: string): Promise<number>;
  /** Each node's port, role and master id (CLUSTER NODES, abridged), for diagnostics. */
  clusterNodes(key?: string): Promise<string>;
  /** Waits until every slot is served again (cluster_state:ok seen from a live node) and the replica took over. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedisCluster(): Promise<TestRedisCluster> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'll-rcluster-'));
  const ports: number[] = [];
  const procs = new Map<number, ChildProcess>();
  for (let i = 0; i < 6; i++) {
    let p = await freePort();
    while (ports.includes(p) || p + 10000 > 65535) p = await freePort();
    ports.push(p);
  }
  const launch = (port: number) => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000', '--dir', dir,
        // Each node its own RDB file: a replica writes the RDB its master streams to it, then loads
        // that file by name, so nodes sharing `dump.rdb` in one dir could load each other's data.
        '--dbfilename', `dump-${port}.rdb`, '--repl-diskless-sync-delay', '0',
        // RC_LOG_DIR=dir keeps each node's log there (for a failure's post-mortem).
        ...(process.env.RC_LOG_DIR ? ['--logfile', `${process.env.RC_LOG_DIR}/${port}.log`] : [])],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
    );
    live.add(child);
    procs.set(port, child);
  };
  for (const port of ports) launch(port);
  const ping = async (port: number) => {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      return r;
    } catch {
      r.disconnect();
      return null;
    }
  };
  const deadline = Date.now() + 15_000;
  for (const port of ports) {
    for (;;) {
      const r = await ping(port);
      if (r) {
        r.disconnect();
        break;
      }
      if (Date.now() > deadline) throw new Error(`redis-server (cluster) on ${port} did not come up`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  await new Promise<void>((resolve, reject) => {
    const c = spawn('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --cluster create failed (${code}): ${out.slice(-500)}`))));
  });
  const state = async (port: number): Promise<string | null> => {
    const r = await ping(port);
    if (!r) return null;
    try {
      const info = (await r.call('CLUSTER', 'INFO')) as string;
      return /cluster_state:(\w+)/.exec(info)?.[1] ?? null;
    } catch {
      return null;
    } finally {
      r.disconnect();
    }
  };
  const dead = new Set<number>();
  const waitHealthy = async (timeoutMs = 20_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const alive = ports.filter((p) => !dead.has(p));
      const states = await Promise.all(alive.map(state));
      if (states.every((s) => s === 'ok')) {
        // And every slot has a live master.
        const r = await ping(alive[0]);
        if (r) {
          const slots = (await r.call('CLUSTER', 'SLOTS').catch(() => [])) as [number, number, [string, number]][];
          r.disconnect();
          const covered = slots.reduce((n, [a, b, m]) => n + (dead.has(Number(m[1])) ? 0 : b - a + 1), 0);
          if (covered === 16384) return;
        }
      }
      if (Date.now() > until) throw new Error(`the Redis Cluster did not become healthy within ${timeoutMs} ms (states ${states.join(',')})`);
      await new Promise((res) => setTimeout(res, 100));
    }
  };
  const replicating = async (port: number) => {
    const r = await ping(port);
    if (!r) return false;
    try {
      const info = (await r.info('replication')) as string;
      return /role:slave/.test(info) && /master_link_status:up/.test(info);
    } finally {
      r.disconnect();
    }
  };
  await waitHealthy();
  // A cluster in service has replicas in sync: the tests start from one (a write before the
  // first sync is on its master alone, and WAIT refuses it).
  for (const end = Date.now() + 20_000; ; ) {
    const synced = (await Promise.all(ports.map(replicating))).filter(Boolean).length;
    if (synced === ports.length / 2) break;
    if (Date.now() > end) throw new Error(`the Redis Cluster's replicas did not sync within 20 s (${synced} of ${ports.length / 2})`);
    await new Promise((res) => setTimeout(res, 100));
  }
  return {
    url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    ports,
    async masterOf(key: string) {
      const r = await ping(ports.find((p) => !dead.has(p))!);
      if (!r) throw new Error('no live node');
      try {
        const slot = (await r.call('CLUSTER', 'KEYSLOT', key)) as number;
        const slots = (await r.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        const range = slots.find(([a, b]) => slot >= a && slot <= b)!;
        return Number(range[2][1]);
      } finally {
        r.disconnect();
      }
    },
    kill(port: number) {
      dead.add(port);
      const child = procs.get(port);
      if (child) live.delete(child);
      child?.kill('SIGKILL');
    },
    async restart(port: number) {
      // Its nodes.conf survives, so it rejoins; a master that was failed over comes back as a replica.
      // Its data does not (no persistence): the RDB left from its last sync as a replica goes.
      rmSync(join(dir, `dump-${port}.rdb`), { force: true });
      launch(port);
      dead.delete(port);
      for (let i = 0; i < 200; i++) {
        const r = await ping(port);
        if (r) {
          r.disconnect();
          return;
        }
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error(`redis-server (cluster) on ${port} did not come back`);
    },
    replicating,
    async replicaOf(master: number) {
      const r = await ping(master);
      if (!r) throw new Error(`${master} is down`);
      try {
        const info = (await r.info('replication')) as string;
        const m = /slave0:ip=[^,]+,port=(\d+)/.exec(info);
        if (!m) throw new Error(`${master} has no replica`);
        return Number(m[1]);
      } finally {
        r.disconnect();
      }
    },
    async replicationPort(master: number) {
      const r = await ping(master);
      if (!r) throw new Error(`${master} is down`);
      try {
        const list = (await r.call('CLIENT', 'LIST', 'TYPE', 'replica')) as string;
        const m = /addr=[^ ]+:(\d+) /.exec(list);
        if (!m) throw new Error(`${master} has no replica connected`);
        return Number(m[1]);
      } finally {
        r.disconnect();
      }
    },
    async readOn(port: number, key: string) {
      const r = await ping(port);
      if (!r) throw new Error(`${port} is down`);
      try {
        await r.call('READONLY');
        return await r.exists(key);
      } finally {
        r.disconnect();
      }
    },
    async clusterNodes(key?: string) {
      const r = await ping(ports.find((p) => !dead.has(p))!);
      if (!r) throw new Error('no live node');
      try {
        const rows = ((await r.call('CLUSTER', 'NODES')) as string).trim().split('\n').map((l) => l.split(' '));
        const portOf = new Map(rows.map((f) => [f[0], f[1].split('@')[0].split(':')[1]]));
        const out: string[] = [];
        for (const f of rows) {
          const port = Number(portOf.get(f[0]));
          let keys = 'down';
          const n = dead.has(port) ? null : await ping(port);
          if (n) {
            keys = `${await n.dbsize()} keys${key ? `, ${key} ${await n.call('READONLY').then(() => n.exists(key)).catch((e: Error) => e.message.slice(0, 20))}` : ''}`;
            n.disconnect();
          }
          out.push(`${port} ${f[2].replace('myself,', '')}${f[3] !== '-' ? ` of ${portOf.get(f[3])}` : ''} (${keys})`);
        }
        return out.join(', ');
      } finally {
        r.disconnect();
      }
    },
    async replicasOf(port: number) {
      const r = await ping(port);
      if (!r) return 0;
      try {
        return Number(/connected_slaves:(\d+)/.exec((await r.info('replication')) as string)?.[1] ?? 0);
      } finally {
        r.disconnect();
      }
    },
    waitHealthy,
    async stop() {
      await Promise.all(
        [...procs.values()].map(async (child) => {
          live.delete(child);
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill('SIGTERM');
          await new Promise((res) => child.once('exit', res));
        }),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
